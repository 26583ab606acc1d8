//! The demo client behind `bp-relay sign`: signs a body the way Authvia does and POSTs it to a
//! relay, so the quick start is a real end-to-end demo and operators have a smoke test.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rand::{distr::Alphanumeric, Rng};

use crate::signature;

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
