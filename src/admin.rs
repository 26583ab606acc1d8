//! The admin listener: `/metrics` for Prometheus, `/healthz` for liveness, `/readyz` for
//! readiness. Kept off the webhook port so it is never exposed to the internet with it.

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus::Registry;
use serde::Serialize;

use crate::{
    health::Health,
    http::{json_response, ResponseBody},
    metrics::{self, Metrics},
};

/// Shared state of the admin endpoints.
pub struct Admin {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Readiness state.
    pub health: Arc<Health>,
    /// For the readiness gauge.
    pub metrics: Metrics,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<&'static str>,
}

impl Admin {
    /// Answers one admin request.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Result<Response<ResponseBody>, Infallible> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Ok(json_response(StatusCode::METHOD_NOT_ALLOWED, &code("method_not_allowed", "admin endpoints accept GET only")));
        }
        let response = match request.uri().path() {
            "/metrics" => self.metrics_text(),
            "/healthz" => json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/readyz" => self.readiness(),
            _ => json_response(StatusCode::NOT_FOUND, &code("not_found", "try /metrics, /healthz or /readyz")),
        };
        Ok(response)
    }

    fn metrics_text(&self) -> Response<ResponseBody> {
        // Refresh the gauge so a scrape sees the same answer /readyz would give.
        self.readiness();
        let (content_type, body) = metrics::encode(&self.registry);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    }

    fn readiness(&self) -> Response<ResponseBody> {
        let reasons: Vec<&'static str> = self.health.check(Instant::now()).into_iter().map(|r| r.code()).collect();
        let ready = reasons.is_empty();
        self.metrics.ready.set(i64::from(ready));
        let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        json_response(status, &Readiness { ready, reasons })
    }
}

fn code(code: &'static str, message: &'static str) -> serde_json::Value {
    serde_json::json!({"code": code, "message": message})
}
