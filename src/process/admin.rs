//! The admin listener: `/metrics` for Prometheus, `/healthz` for liveness, `/readyz` for
//! readiness. Kept off the webhook port so it is never exposed to the internet with it.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus::Registry;
use serde::Serialize;

use crate::{
    health::Health,
    ingress::error::Error,
    ingress::metrics::{self, Metrics},
    ingress::response::{self, Body},
};

/// The admin routes, for the 404 message.
const ROUTES: &str = "/metrics, /healthz and /readyz";

/// Shared state of the admin endpoints.
pub struct Admin {
    registry: Registry,
    health: Arc<Health>,
    metrics: Metrics,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<&'static str>,
    // With `topics_missing`: which ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing_topics: Vec<String>,
    // With `replay_store_down`: what the store answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_store: Option<String>,
    // With `topics_not_durable`: each topic and setting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_durable: Vec<String>,
}

impl Admin {
    /// The admin endpoints over `registry` (what `/metrics` encodes) and `health`.
    pub fn new(registry: Registry, health: Arc<Health>, metrics: Metrics) -> Self {
        Self {
            registry,
            health,
            metrics,
        }
    }

    /// Answers one admin request.
    pub fn handle<B>(&self, request: &Request<B>) -> Response<Body> {
        let is_read = request.method() == Method::GET || request.method() == Method::HEAD;
        let response = match request.uri().path() {
            "/metrics" | "/healthz" | "/readyz" if !is_read => {
                response::error(&Error::MethodNotAllowed { allow: "GET, HEAD" })
            }
            "/metrics" => self.metrics_text(),
            "/healthz" => response::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            "/readyz" => self.readiness(),
            _ => response::error(&Error::NotFound { routes: ROUTES }),
        };
        response
    }

    fn metrics_text(&self) -> Response<Body> {
        // Refresh the gauge so a scrape sees the same answer /readyz would give.
        self.readiness();
        let (content_type, body) = metrics::encode(&self.registry);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    }

    fn readiness(&self) -> Response<Body> {
        let reasons: Vec<&'static str> = self
            .health
            .check(Instant::now())
            .into_iter()
            .map(|r| r.code())
            .collect();
        let ready = reasons.is_empty();
        self.metrics.set_ready(ready);
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        response::json(
            status,
            &Readiness {
                ready,
                reasons,
                missing_topics: self.health.missing_topics(),
                replay_store: self.health.replay_store_problem(),
                not_durable: self.health.not_durable(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admin() -> Admin {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        Admin::new(
            registry,
            Arc::new(Health::new(Duration::from_secs(3), 0.8)),
            metrics,
        )
    }

    async fn answer(method: Method, path: &str) -> Response<Body> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        admin().handle(&request)
    }

    #[tokio::test]
    async fn admin_errors_use_the_same_code_and_message_shape_as_the_ingress() {
        use http_body_util::BodyExt as _;
        let not_found = answer(Method::GET, "/nope").await;
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value =
            serde_json::from_slice(&not_found.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["code"], "not_found");
        assert!(
            body["message"].as_str().unwrap().contains("/readyz"),
            "{body}"
        );
        let wrong_method = answer(Method::POST, "/metrics").await;
        assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong_method.headers()[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn liveness_is_ok_while_readiness_waits_for_a_broker() {
        assert_eq!(
            answer(Method::GET, "/healthz").await.status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(Method::GET, "/readyz").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
