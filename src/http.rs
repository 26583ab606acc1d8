//! The webhook ingress: routing, the body limit, the handler, and the one place where an
//! [`Error`] becomes an HTTP response.
//!
//! A request is answered 2xx only after Kafka acknowledged its record, either on the route's
//! topic or, for an authenticated body that is not a business process, on the dead-letter topic.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tracing::{field::Empty, info, warn, Instrument, Span};

use crate::{
    error::Error,
    kafka::{Delivered, Publisher},
    metrics::{self, Metrics},
    record::{self, Envelope, Record},
    replay::ReplayGuard,
    signature::Verifier,
    telemetry,
    traceparent::TraceParent,
    webhook::{EventKind, RejectReason, Rules, Webhook},
};

/// Path of the `business_processes.update` subscription.
pub const PROCESS_PATH: &str = "/webhooks/business-processes";
/// Path of the `business_processes_actions.update` subscription.
pub const ACTION_PATH: &str = "/webhooks/business-process-actions";

/// The response body type of both listeners.
pub type ResponseBody = Full<Bytes>;

/// Where each kind of delivery goes.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Business processes.
    pub processes: String,
    /// Actions.
    pub actions: String,
    /// Authenticated deliveries that did not parse.
    pub dead_letter: String,
}

/// How a request is authenticated.
pub enum Authentication {
    /// X-AUTHVIA-* signatures with a replay guard.
    Signed {
        /// Checks the headers.
        verifier: Verifier,
        /// Remembers signings and their bodies.
        replay: ReplayGuard,
    },
    /// `--insecure-skip-signature`: everything is accepted.
    Skipped,
}

/// Everything the webhook handler needs, shared by all connections.
pub struct Ingress {
    /// Request authentication.
    pub authentication: Authentication,
    /// Key pointers and required fields.
    pub rules: Rules,
    /// Destination topics.
    pub topics: Topics,
    /// CloudEvents `source`.
    pub source: String,
    /// The Kafka producer.
    pub publisher: Publisher,
    /// Metrics.
    pub metrics: Metrics,
    /// `--max-body` in bytes.
    pub max_body: u64,
    /// `--ack-timeout`: the request's whole budget, from arrival.
    pub ack_timeout: std::time::Duration,
    /// Bounds requests in flight (`--max-inflight`).
    pub inflight: Semaphore,
}

/// A durable record: what the 2xx body reports.
#[derive(Debug, Serialize)]
struct Ack<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    #[serde(rename = "deadLetterReason", skip_serializing_if = "Option::is_none")]
    dead_letter_reason: Option<&'static str>,
}

impl Ingress {
    /// Handles one request; never fails at the HTTP level (errors become responses).
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Result<Response<ResponseBody>, Infallible>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let kind = route(request.uri().path());
        let route = metrics::route_label(kind);
        let span = tracing::info_span!(
            "request", route, key = Empty, topic = Empty, partition = Empty, offset = Empty,
            trace_id = Empty, outcome = Empty, status = Empty, latency_us = Empty,
            // Read by the OTLP exporter (tracing-opentelemetry's special fields).
            "otel.kind" = "server", "otel.status_code" = Empty,
        );
        // Before the span is first entered: an exported span joins the sender's trace.
        let traceparent = telemetry::join_trace(&span, incoming_traceparent(request.headers()));
        let outcome = async {
            match (kind, request.method()) {
                (None, _) => Err(Error::NotFound),
                (Some(kind), &Method::POST) => self.ingest(kind, request, started, traceparent).await,
                (Some(_), _) => Err(Error::MethodNotAllowed),
            }
        }
        .instrument(span.clone())
        .await;
        let response = match outcome {
            Ok(response) => response,
            Err(error) => self.refuse(&error, &span),
        };
        let elapsed = started.elapsed();
        self.metrics.observe_request(route, response.status(), elapsed.as_secs_f64());
        span.record("status", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
        span.record("latency_us", elapsed.as_micros() as u64);
        span.in_scope(|| info!("Request answered."));
        Ok(response)
    }

    async fn ingest<B>(&self, kind: EventKind, request: Request<B>, started: Instant, traceparent: TraceParent) -> Result<Response<ResponseBody>, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let _permit = self.inflight.try_acquire().map_err(|_| Error::Overloaded)?;
        let _inflight = InflightGauge::enter(&self.metrics.inflight);
        let deadline = tokio::time::Instant::from_std(started + self.ack_timeout);
        let received = record::now_millis();
        let (parts, body) = request.into_parts();
        let signed = match &self.authentication {
            Authentication::Signed { verifier, .. } => Some(verifier.verify(&parts.headers, SystemTime::now())?),
            Authentication::Skipped => None,
        };
        let body = read_body(body, &parts.headers, self.max_body, deadline).await?;
        let digest: [u8; 32] = Sha256::digest(&body).into();
        if let (Some(signed), Authentication::Signed { replay, .. }) = (signed, &self.authentication) {
            replay.check(signed, digest)?;
        }
        Span::current().record("trace_id", traceparent.trace_id());
        let envelope = Envelope { kind, digest, received, traceparent };
        let (topic, record, rejected) = self.record_for(&envelope, body);
        if let Some(key) = &record.key {
            Span::current().record("key", key.as_str());
        }
        Span::current().record("topic", topic);
        let delivered = self.publisher.publish(topic, record, deadline).await?;
        self.count_delivery(kind, rejected, started);
        Ok(acknowledge(topic, delivered, rejected))
    }

    fn record_for(&self, envelope: &Envelope, body: Bytes) -> (&str, Record, Option<RejectReason>) {
        match Webhook::parse(envelope.kind, &body, &self.rules) {
            Ok(webhook) => {
                let topic = match envelope.kind {
                    EventKind::BusinessProcess => &self.topics.processes,
                    EventKind::Action => &self.topics.actions,
                };
                (topic, Record::accepted(envelope, &self.source, &webhook, body), None)
            }
            Err(rejection) => {
                warn!(reason = rejection.reason.code(), detail = %rejection.detail, "Delivery is not a valid {}; publishing it to the dead-letter topic.", envelope.kind.event_type());
                let record = Record::dead_letter(envelope, &self.source, &rejection, body);
                (&self.topics.dead_letter, record, Some(rejection.reason))
            }
        }
    }

    fn count_delivery(&self, kind: EventKind, rejected: Option<RejectReason>, started: Instant) {
        let route = metrics::route_label(Some(kind));
        self.metrics.delivery_lag.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
        match rejected {
            None => self.metrics.published.with_label_values(&[route]).inc(),
            Some(reason) => self.metrics.dead_letters.with_label_values(&[route, reason.code()]).inc(),
        }
    }

    /// Logs and counts a failed request once, then answers it.
    fn refuse(&self, error: &Error, span: &Span) -> Response<ResponseBody> {
        span.record("outcome", error.code());
        let _entered = span.enter();
        match error {
            Error::Unauthorized(reason) => {
                self.metrics.signature_failures.with_label_values(&[reason.code()]).inc();
                warn!(code = error.code(), "Refused an unauthenticated delivery.");
            }
            Error::Publish(publish) => {
                self.metrics.delivery_failure(publish.reason).inc();
                match &publish.source {
                    Some(source) => warn!(code = error.code(), error = %source, "Kafka did not acknowledge the record."),
                    None => warn!(code = error.code(), "Kafka did not acknowledge the record in time."),
                }
            }
            Error::Overloaded => warn!(code = error.code(), "Refused a request: --max-inflight reached."),
            _ => info!(code = error.code(), "Refused a request."),
        }
        error_response(error)
    }
}

/// The route of a path, if it is a webhook route.
pub fn route(path: &str) -> Option<EventKind> {
    match path.trim_end_matches('/') {
        PROCESS_PATH => Some(EventKind::BusinessProcess),
        ACTION_PATH => Some(EventKind::Action),
        _ => None,
    }
}

fn incoming_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    headers.get("traceparent")?.to_str().ok().and_then(TraceParent::parse)
}

/// Reads at most `limit` bytes before `deadline`; a declared length over the limit is refused
/// before anything is read.
async fn read_body<B>(body: B, headers: &HeaderMap, limit: u64, deadline: tokio::time::Instant) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout_at(deadline, limited.collect()).await {
        Err(_elapsed) => Err(Error::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(Error::PayloadTooLarge { limit }),
        Ok(Err(error)) => Err(Error::BodyRead(error)),
    }
}

fn acknowledge(topic: &str, delivered: Delivered, rejected: Option<RejectReason>) -> Response<ResponseBody> {
    let span = Span::current();
    span.record("partition", delivered.partition);
    span.record("offset", delivered.offset);
    span.record("outcome", if rejected.is_some() { "dead_lettered" } else { "published" });
    let ack = Ack {
        topic,
        partition: delivered.partition,
        offset: delivered.offset,
        dead_letter_reason: rejected.map(RejectReason::code),
    };
    json_response(StatusCode::OK, &ack)
}

/// The one place an [`Error`] becomes a response: `{"code": ..., "message": ...}`.
pub fn error_response(error: &Error) -> Response<ResponseBody> {
    #[derive(Serialize)]
    struct Body<'a> {
        code: &'a str,
        message: String,
    }
    let mut response = json_response(error.status(), &Body { code: error.code(), message: error.public_message() });
    if let Some(seconds) = error.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if matches!(error, Error::MethodNotAllowed) {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<ResponseBody> {
    // Serialising these plain structs cannot fail; an empty body would still be a valid answer.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Counts a request in `bp_relay_inflight_requests` until dropped, on every exit path
/// (including a client that disconnects mid-request, which drops the handler future).
struct InflightGauge<'a>(&'a prometheus::IntGauge);

impl<'a> InflightGauge<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InflightGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_paths_only() {
        assert_eq!(route("/webhooks/business-processes"), Some(EventKind::BusinessProcess));
        assert_eq!(route("/webhooks/business-processes/"), Some(EventKind::BusinessProcess));
        assert_eq!(route("/webhooks/business-process-actions"), Some(EventKind::Action));
        assert_eq!(route("/webhooks/business-processes/x"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn method_not_allowed_names_the_allowed_method() {
        let response = error_response(&Error::MethodNotAllowed);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn declared_oversized_body_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(11));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let body = Full::new(Bytes::from_static(b"hello world"));
        let error = read_body(body, &headers, 10, deadline).await.unwrap_err();
        assert!(matches!(error, Error::PayloadTooLarge { limit: 10 }));
    }

    #[tokio::test]
    async fn undeclared_oversized_body_is_refused_while_reading() {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let body = Full::new(Bytes::from_static(b"hello world"));
        let error = read_body(body, &HeaderMap::new(), 10, deadline).await.unwrap_err();
        assert!(matches!(error, Error::PayloadTooLarge { limit: 10 }));
        let body = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(read_body(body, &HeaderMap::new(), 10, deadline).await.unwrap(), "hello");
    }
}
