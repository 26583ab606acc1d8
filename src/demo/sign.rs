//! The demo client behind `bp-relay sign`: signs a body the way Authvia does and POSTs it to a
//! relay, so the quick start is a real end-to-end demo and operators have a smoke test.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rand::{distr::Alphanumeric, Rng};

use crate::ingress::signature;

/// `bp-relay sign`'s own flags: it takes none of the relay's.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subscription secret to sign with.
    #[arg(
        long,
        env = "BP_RELAY_SIGN_SECRET",
        hide_env_values = true,
        required_unless_present = "secret_file",
        conflicts_with = "secret_file"
    )]
    pub secret: Option<String>,
    /// A file of secrets, one per line, as the relay reads them (a mounted Secret): signs
    /// with the first (the relay accepts any of them).
    #[arg(long, env = "BP_RELAY_SIGN_SECRET_FILE")]
    pub secret_file: Option<std::path::PathBuf>,
    /// Where to POST (a relay route).
    #[arg(
        long,
        env = "BP_RELAY_SIGN_URL",
        default_value = "http://127.0.0.1:8080/webhooks/business-processes"
    )]
    pub url: http::Uri,
    /// The JSON body to send; without it, the sample business process docs/examples/bp-in-progress.json.
    pub file: Option<std::path::PathBuf>,
}

/// What the relay answered.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

/// Signs `body` with `secret` (a fresh random value, the current time) and POSTs it to `url`.
///
/// # Errors
/// The relay cannot be reached or its answer cannot be read.
pub async fn send(url: &Uri, secret: &str, body: Bytes) -> anyhow::Result<Answer> {
    let value: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mut request = Request::post(url.clone()).body(Full::new(body))?;
    *request.headers_mut() = signature::signed_headers(secret, &value, timestamp)?;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&answer).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use clap::{Args as _, Command};

    use super::Args;

    /// README's `bp-relay sign` table lists exactly its flags and argument, with their variables
    /// and defaults.
    #[test]
    fn the_readme_sign_table_is_the_sign_flags() {
        let command = Args::augment_args(Command::new("sign"));
        let rows = crate::readme::rows_between("**`bp-relay sign`**", "**Reserved librdkafka");
        let names: Vec<&str> = rows.iter().filter_map(|row| row.code(0)).collect();
        let expected: Vec<String> = command
            .get_arguments()
            .map(|arg| match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().as_str().to_uppercase(),
            })
            .collect();
        assert_eq!(
            names, expected,
            "README's sign table and `bp-relay sign --help`"
        );
        for (row, arg) in rows.iter().zip(command.get_arguments()) {
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            let documented_env = row.code(1).map(str::to_owned);
            assert_eq!(
                documented_env,
                env,
                "{:?}: environment variable",
                row.code(0)
            );
            if let [default] = arg.get_default_values() {
                assert_eq!(row.code(2), default.to_str(), "{:?}: default", row.code(0));
            }
        }
    }
}
