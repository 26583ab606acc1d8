//! The webhook ingress: routing, the body limit and the handler. Errors become answers in
//! [`crate::response`]; each is logged and counted once, here.
//!
//! A request is answered 2xx only after its record is durable, either on the route's topic or,
//! for an authenticated body that is not a business process, on the dead-letter topic.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tracing::{field::Empty, info, warn, Instrument, Span};

use crate::{
    config::{Config, ConfigError},
    error::Error,
    kafka::Delivered,
    metrics::{self, Metrics},
    publish::Publish,
    record::{self, Envelope, Outgoing, Routes},
    response,
    signature::Authenticator,
    telemetry,
    traceparent::TraceParent,
    webhook::{EventKind, RejectReason, Rules, Webhook},
};

/// Path of the `business_processes.update` subscription.
pub const PROCESS_PATH: &str = "/webhooks/business-processes";
/// Path of the `business_processes_actions.update` subscription.
pub const ACTION_PATH: &str = "/webhooks/business-process-actions";

/// The webhook routes, for the 404 message.
const ROUTES: &str = "POST /webhooks/business-processes and POST /webhooks/business-process-actions";

/// Everything the webhook handler needs, shared by all connections.
pub struct Ingress<P> {
    authenticator: Authenticator,
    rules: Rules,
    routes: Routes,
    publisher: P,
    metrics: Metrics,
    max_body: u64,
    ack_timeout: Duration,
    inflight: Semaphore,
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

impl<P: Publish> Ingress<P> {
    /// The ingress for `config`, publishing through `publisher`. Reads the signing secrets.
    ///
    /// # Errors
    /// The secrets file cannot be read or holds no secret.
    pub fn build(config: &Config, publisher: P, metrics: Metrics) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: authenticator(config)?,
            rules: config.rules.clone(),
            routes: config.routes.clone(),
            publisher,
            metrics,
            max_body: config.listeners.max_body.as_u64(),
            ack_timeout: config.kafka.ack_timeout,
            inflight: Semaphore::new(config.listeners.max_inflight),
        })
    }

    /// The publisher, for draining it at shutdown.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// Handles one request. Every failure becomes an answer, so this never fails.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<response::Body>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let kind = route(request.uri().path());
        let span = tracing::info_span!(
            "request", route = metrics::route_label(kind), key = Empty, topic = Empty, partition = Empty, offset = Empty,
            trace_id = Empty, outcome = Empty, status = Empty, latency_us = Empty,
            // Read by the OTLP exporter (tracing-opentelemetry's special fields).
            "otel.kind" = "server", "otel.status_code" = Empty,
        );
        // Before the span is first entered: an exported span joins the sender's trace.
        let traceparent = telemetry::join_trace(&span, incoming_traceparent(request.headers()));
        let outcome = async {
            match (kind, request.method()) {
                (None, _) => Err(Error::NotFound { routes: ROUTES }),
                (Some(kind), &Method::POST) => self.ingest(kind, request, started, traceparent).await,
                (Some(_), _) => Err(Error::MethodNotAllowed { allow: "POST" }),
            }
        }
        .instrument(span.clone())
        .await;
        let response = match outcome {
            Ok(response) => response,
            Err(error) => self.refuse(&error, &span),
        };
        let elapsed = started.elapsed();
        self.metrics.request_answered(kind, response.status(), elapsed);
        span.record("status", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
        span.record("latency_us", elapsed.as_micros() as u64);
        span.in_scope(|| info!("Request answered."));
        response
    }

    async fn ingest<B>(&self, kind: EventKind, request: Request<B>, started: Instant, traceparent: TraceParent) -> Result<Response<response::Body>, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let _permit = self.inflight.try_acquire().map_err(|_| Error::Overloaded)?;
        let _inflight = self.metrics.inflight();
        let deadline = tokio::time::Instant::from_std(started + self.ack_timeout);
        let received = record::now_millis();
        let (parts, body) = request.into_parts();
        let verified = self.authenticator.verify(&parts.headers, SystemTime::now())?;
        let body = read_body(body, &parts.headers, self.max_body, deadline).await?;
        let digest: [u8; 32] = Sha256::digest(&body).into();
        verified.admit(digest)?;
        Span::current().record("trace_id", traceparent.trace_id());
        let envelope = Envelope { kind, digest, received, traceparent };
        let parsed = Webhook::parse(kind, &body, &self.rules);
        let Outgoing { topic, record, rejection } = self.routes.route(&envelope, parsed, body);
        if let Some(rejection) = &rejection {
            warn!(reason = rejection.reason.code(), detail = %rejection.detail, "Delivery is not a valid {}; publishing it to the dead-letter topic.", kind.event_type());
        }
        if let Some(key) = &record.key {
            Span::current().record("key", key.as_str());
        }
        Span::current().record("topic", topic);
        let delivered = self.publisher.publish(topic, record, deadline).await?;
        let dead_letter = rejection.map(|rejection| rejection.reason);
        match dead_letter {
            None => self.metrics.published(kind, started.elapsed()),
            Some(reason) => self.metrics.dead_lettered(kind, reason, started.elapsed()),
        }
        Ok(acknowledge(topic, delivered, dead_letter))
    }

    /// Logs and counts a failed request once, then answers it.
    fn refuse(&self, error: &Error, span: &Span) -> Response<response::Body> {
        span.record("outcome", error.code());
        let _entered = span.enter();
        match error {
            Error::Unauthorized(reason) => {
                self.metrics.signature_refused(*reason);
                warn!(code = error.code(), "Refused an unauthenticated delivery.");
            }
            Error::Publish(publish) => {
                self.metrics.delivery_failed(publish.reason);
                match &publish.source {
                    Some(source) => warn!(code = error.code(), error = %source, "Kafka did not acknowledge the record."),
                    None => warn!(code = error.code(), "Kafka did not acknowledge the record in time."),
                }
            }
            Error::Overloaded => warn!(code = error.code(), "Refused a request: --max-inflight reached."),
            _ => info!(code = error.code(), "Refused a request."),
        }
        response::error(error)
    }
}

fn authenticator(config: &Config) -> Result<Authenticator, ConfigError> {
    let signing = &config.signing;
    if signing.insecure_skip_signature {
        warn!("SIGNATURE VERIFICATION IS OFF (--insecure-skip-signature): anyone who can reach this port can write to Kafka. Never run like this in production.");
        return Ok(Authenticator::Skipped);
    }
    Ok(Authenticator::signed(&signing.secrets()?, signing.signature_tolerance, signing.replay_capacity))
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

fn acknowledge(topic: &str, delivered: Delivered, dead_letter: Option<RejectReason>) -> Response<response::Body> {
    let span = Span::current();
    span.record("partition", delivered.partition);
    span.record("offset", delivered.offset);
    span.record("outcome", if dead_letter.is_some() { "dead_lettered" } else { "published" });
    let ack = Ack {
        topic,
        partition: delivered.partition,
        offset: delivered.offset,
        dead_letter_reason: dead_letter.map(RejectReason::code),
    };
    response::json(StatusCode::OK, &ack)
}

#[cfg(test)]
mod tests;
