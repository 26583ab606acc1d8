//! `bp-relay sign`: signs a JSON file the way Authvia does and POSTs it to a relay, so the
//! quick start is a real end-to-end demo and operators have a smoke test.

use std::{path::PathBuf, time::{SystemTime, UNIX_EPOCH}};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rand::{distr::Alphanumeric, Rng};

use crate::signature::{self, ALGORITHM_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, VALUE_HEADER};

/// Arguments of `bp-relay sign`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The subscription secret to sign with.
    #[arg(long, env = "BP_RELAY_SIGN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Where to POST (a relay route).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/business-processes")]
    pub url: Uri,
    /// The JSON body to send.
    pub file: PathBuf,
}

/// Signs and sends; returns whether the relay answered 2xx.
///
/// # Errors
/// The file cannot be read or the relay cannot be reached.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let body = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let value: String = rand::rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs().to_string();
    let request = Request::post(args.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature::sign(&args.secret, &value, &timestamp))
        .header(VALUE_HEADER, &value)
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(ALGORITHM_HEADER, "SHA-256")
        .body(Full::new(Bytes::from(body)))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.with_context(|| format!("POST {}", args.url))?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    println!("{} {}", status.as_u16(), String::from_utf8_lossy(&answer));
    Ok(status.is_success())
}
