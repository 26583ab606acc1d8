//! The webhook ingress: routing, the body limit and the handler. Errors become answers in
//! [`crate::ingress::response`]; each is logged and counted once, here.
//!
//! A request is answered 2xx only after its record is durable, either on the route's topic or,
//! for an authenticated body that is not a business process, on the dead-letter topic.

use std::{
    sync::{Arc, LazyLock},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Body;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tracing::{error, field::Empty, Instrument};

use crate::{
    config::{AccessLog, Config, Rules, Topics},
    health::Health,
    ingress::access::{self, Access, Stored},
    ingress::body_budget::{self, BodyBudget, Share},
    ingress::error::Error,
    ingress::metrics::{self, Metrics},
    ingress::publish::{Delivered, Publish, Unacknowledged},
    ingress::record::{self, Envelope, Outgoing},
    ingress::redrive::{self, Claim, Failed, Redrives},
    ingress::replay::Digest,
    ingress::response,
    ingress::route::{self, Route},
    ingress::signature::{Admitted, Authenticator},
    ingress::traceparent::TraceParent,
    ingress::webhook::{EventKind, Rejection, Webhook},
};

/// Path of the `business_processes.update` subscription.
pub const PROCESS_PATH: &str = Route::BusinessProcesses.path();
/// Path of the `business_processes_actions.update` subscription.
pub const ACTION_PATH: &str = Route::BusinessProcessActions.path();
/// Where Authvia's `disableCallbackURL` should point (see [`disabled`]).
pub const DISABLED_PATH: &str = Route::SubscriptionDisabled.path();

/// The webhook routes, for the 404 message: written once, from [`Route::ALL`].
static ROUTES: LazyLock<String> = LazyLock::new(|| route::Listing.to_string());

/// Everything the webhook handler needs, shared by all connections.
pub struct Ingress<P> {
    authenticator: Authenticator,
    // Deliveries answered 5xx, for Authvia's retries of them.
    redrives: Arc<Redrives>,
    rules: Rules,
    topics: Topics,
    publisher: P,
    metrics: Metrics,
    max_body: u64,
    ack_timeout: Duration,
    inflight: Semaphore,
    body_budget: BodyBudget,
    access_log: AccessLog,
    // Deliveries get 503 `starting` until it says startup confirmed the topics.
    health: Arc<Health>,
    // The wall clock the timestamp window is checked against (a test may move it).
    clock: fn() -> SystemTime,
}

/// A durable record: what the 2xx body reports.
#[derive(Debug, Serialize)]
struct Ack<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    #[serde(rename = "deadLetterReason", skip_serializing_if = "Option::is_none")]
    dead_letter_reason: Option<&'static str>,
    /// A redrive answered with the record an earlier copy left: nothing was written.
    #[serde(rename = "storedBefore", skip_serializing_if = "std::ops::Not::not")]
    stored_before: bool,
}

impl<P: Publish> Ingress<P> {
    /// The ingress for `config` with its parts ([`crate::process::parts::Parts`] builds them): it
    /// authenticates with `authenticator`, remembers 5xx'd deliveries in `redrives`, publishes
    /// through `publisher`, and lets deliveries in once `health` says startup is done.
    pub fn new(
        config: &Config,
        authenticator: Authenticator,
        redrives: Arc<Redrives>,
        publisher: P,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Self {
        Self {
            authenticator,
            redrives,
            rules: config.rules.clone(),
            topics: config.topics.clone(),
            publisher,
            body_budget: BodyBudget::new(
                config.listeners.max_inflight_bytes.as_u64(),
                metrics.clone(),
            ),
            metrics,
            max_body: config.listeners.max_body.as_u64(),
            ack_timeout: config.kafka.ack_timeout,
            inflight: Semaphore::new(config.listeners.max_inflight),
            access_log: config.telemetry.access_log,
            health,
            clock: SystemTime::now,
        }
    }

    /// The same ingress checking the timestamp window against `clock` instead of the system's
    /// wall clock: for tests that move time (the property tests, on tokio's paused clock).
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
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
        let route = Route::of(request.uri().path());
        if route == Some(Route::SubscriptionDisabled) {
            return self.subscription_disabled(&request, started);
        }
        let kind = route.and_then(Route::kind);
        let route_label = metrics::route_label(kind);
        // Exported over OTLP when that is on; at debug level, so it costs nothing otherwise.
        let span = tracing::debug_span!(
            target: access::REQUEST_TARGET, "request", route = route_label, key = Empty, topic = Empty,
            partition = Empty, offset = Empty, outcome = Empty, status = Empty,
            // Read by the OTLP exporter (tracing-opentelemetry's special fields).
            "otel.kind" = "server", "otel.status_code" = Empty,
        );
        // Before the span is first entered: an exported span joins the sender's trace.
        let traceparent =
            access::join_trace(&span, access::incoming_traceparent(request.headers()));
        let mut access = Access {
            route: route_label,
            traceparent,
            key: None,
            topic: None,
            status: 0,
            latency_us: 0,
        };
        let outcome = async {
            match (kind, request.method()) {
                (None, _) => Err(Error::NotFound {
                    routes: ROUTES.as_str(),
                }),
                (Some(kind), &Method::POST) => {
                    self.ingest(kind, request, started, traceparent, &mut access)
                        .await
                }
                (Some(kind), _) => Err(Error::MethodNotAllowed {
                    allow: Route::carrying(kind).methods(),
                }),
            }
        }
        .instrument(span.clone())
        .await;
        let response = match &outcome {
            Ok(stored) => acknowledge(stored),
            Err(error) => {
                self.count_refusal(error);
                response::error(error)
            }
        };
        let elapsed = started.elapsed();
        self.metrics
            .request_answered(kind, response.status(), elapsed);
        access.status = response.status().as_u16();
        access.latency_us = elapsed.as_micros() as u64;
        access.record_on(&span, &outcome);
        access.log(&outcome, self.access_log);
        response
    }

    async fn ingest<'s, B>(
        &'s self,
        kind: EventKind,
        request: Request<B>,
        started: Instant,
        traceparent: TraceParent,
        access: &mut Access,
    ) -> Result<Stored<'s>, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if !self.health.is_started() {
            return Err(Error::Starting);
        }
        let _permit = self.inflight.try_acquire().map_err(|_| Error::Overloaded)?;
        let _inflight = self.metrics.inflight();
        // On tokio's clock (the same as the system's outside tests): a test on a paused clock
        // then meets deadlines as the request would.
        let deadline =
            tokio::time::Instant::now() + self.ack_timeout.saturating_sub(started.elapsed());
        let received = record::now_millis();
        let Received {
            body,
            digest,
            admitted,
        } = self.receive(kind, request, deadline).await?;
        let envelope = Envelope {
            kind,
            digest,
            received,
            traceparent,
        };
        let parsed = Webhook::parse(kind, &body, &self.rules);
        let Outgoing {
            topic,
            record,
            rejection,
        } = Outgoing::new(&self.topics, &envelope, parsed, body);
        access.key.clone_from(&record.key);
        access.topic = Some(topic.to_owned());
        let delivered = self
            .write(topic, record, access.key.as_deref(), admitted, deadline)
            .await
            .inspect_err(|error| {
                if let Error::Publish(failure) = error {
                    self.metrics
                        .delivery_failed(kind, failure.reason, started.elapsed());
                }
            })?;
        if !delivered.stored_before {
            self.count_stored(kind, rejection.as_ref(), started);
        }
        Ok(Stored {
            topic,
            delivered: delivered.at,
            rejection,
            stored_before: delivered.stored_before,
        })
    }

    /// Authenticates a request and reads its body: the headers first (outside the window only
    /// a remembered 5xx'd delivery's signing goes on), then the body within the budget, then
    /// the window again and the replay guard.
    async fn receive<B>(
        &self,
        kind: EventKind,
        request: Request<B>,
        deadline: tokio::time::Instant,
    ) -> Result<Received, Error>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let now = (self.clock)();
        let mut verified = self.authenticator.verify(kind, &parts.headers, now)?;
        if let Some(signed_at) = verified.signed_at() {
            self.metrics.signing_received(kind, signed_at, now);
        }
        verified.recall(&self.redrives, deadline).await?;
        // Held until the answer: the body lives in this request until then.
        let mut share = self.body_budget.share();
        let body = read_body(body, &parts.headers, self.max_body, deadline, &mut share).await?;
        let digest: [u8; 32] = Sha256::digest(&body).into();
        // The window again, now that the body is here: a body trickled past the window's end
        // must not reach the guard after it forgot the signing.
        let admitted = verified
            .admit(
                kind.label(),
                digest,
                (self.clock)(),
                &self.redrives,
                deadline,
            )
            .await?;
        Ok(Received {
            body,
            digest,
            admitted,
        })
    }

    /// Writes `record` (its `key` apart: the record moves to the producer), unless it is a
    /// redrive of one that landed already (then answered with that one); a record not
    /// acknowledged in time is remembered for Authvia's redrive.
    async fn write(
        &self,
        topic: &str,
        record: record::Record,
        key: Option<&str>,
        admitted: Admitted,
        deadline: tokio::time::Instant,
    ) -> Result<Written, Error> {
        let binding = admitted.binding;
        let writer = match self.redrives.claim(binding, deadline).await? {
            Claim::Stored(at) => {
                return Ok(Written {
                    at,
                    stored_before: true,
                })
            }
            Claim::Write(writer) => writer,
        };
        let subject = || redrive::subject(topic, key);
        match self.publisher.publish(topic, record, deadline).await {
            Ok(at) => {
                match writer {
                    Some(writer) => writer.landed(subject(), at),
                    None if self.redrives.watches() => self.redrives.written(subject(), at),
                    None => {}
                }
                Ok(Written {
                    at,
                    stored_before: false,
                })
            }
            Err(Unacknowledged { error, report }) => {
                self.redrives.failed(Failed {
                    signing: admitted.signing(),
                    binding,
                    subject: subject(),
                    report,
                    now: unix_seconds((self.clock)()),
                });
                // After the memory took over: the writer's claim is settled by it.
                drop(writer);
                Err(error.into())
            }
        }
    }

    fn count_stored(&self, kind: EventKind, rejection: Option<&Rejection>, started: Instant) {
        match rejection {
            None => self.metrics.published(kind, started.elapsed()),
            Some(rejection) => {
                self.metrics
                    .dead_lettered(kind, rejection.reason, started.elapsed())
            }
        }
    }

    /// Authvia disabled the Subscription: log it at error level, count it (a critical alert
    /// watches the counter), answer 200. No body is read and nothing is written.
    fn subscription_disabled<B>(
        &self,
        request: &Request<B>,
        started: Instant,
    ) -> Response<response::Body> {
        let response = match *request.method() {
            Method::GET | Method::HEAD => {
                let notice = Disabled::from_query(request.uri().query());
                self.metrics.subscription_disabled();
                error!(
                    subscription = notice.subscription.as_deref().unwrap_or("<not given>"),
                    disabled_at = notice.timestamp,
                    "Authvia DISABLED a webhook Subscription after 50 failed attempts of one event: nothing reaches Kafka until it is re-enabled in Authvia (docs/runbook.md#bprelaysubscriptiondisabled)."
                );
                response::json(StatusCode::OK, &serde_json::json!({ "acknowledged": true }))
            }
            _ => response::error(&Error::MethodNotAllowed {
                allow: Route::SubscriptionDisabled.methods(),
            }),
        };
        self.metrics
            .request_answered(None, response.status(), started.elapsed());
        response
    }

    /// Counts a refused signature once (a failed publish is counted where it fails, with its
    /// lag; every failure is logged once, by the access log).
    fn count_refusal(&self, error: &Error) {
        if let Error::Unauthorized(reason) = error {
            self.metrics.signature_refused(*reason);
        }
    }
}

/// An authenticated request's body.
struct Received {
    body: Bytes,
    digest: Digest,
    admitted: Admitted,
}

/// Where a delivery's record is.
struct Written {
    at: Delivered,
    /// An earlier copy left it: nothing was written now.
    stored_before: bool,
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Reads at most `limit` bytes before `deadline`, taking each piece from the body budget as it
/// arrives; a declared length over the limit is refused before anything is read.
async fn read_body<B>(
    body: B,
    headers: &HeaderMap,
    limit: u64,
    deadline: tokio::time::Instant,
    share: &mut Share<'_>,
) -> Result<Bytes, Error>
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
    match tokio::time::timeout_at(deadline, body_budget::collect(limited, limit, share)).await {
        Err(_elapsed) => Err(Error::BodyTimeout),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(body_budget::CollectError::Exhausted)) => Err(Error::OverloadedBytes),
        Ok(Err(body_budget::CollectError::Read(error))) if error.is::<LengthLimitError>() => {
            Err(Error::PayloadTooLarge { limit })
        }
        Ok(Err(body_budget::CollectError::Read(error))) => Err(Error::BodyRead(error)),
    }
}

fn acknowledge(stored: &Stored<'_>) -> Response<response::Body> {
    let ack = Ack {
        topic: stored.topic,
        partition: stored.delivered.partition,
        offset: stored.delivered.offset,
        dead_letter_reason: stored
            .rejection
            .as_ref()
            .map(|rejection| rejection.reason.code()),
        stored_before: stored.stored_before,
    };
    response::json(StatusCode::OK, &ack)
}

mod disabled;
#[cfg(test)]
mod tests;

use disabled::Disabled;
