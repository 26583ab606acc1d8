//! The access log: one line per request (ids and outcomes, never bodies or secrets), the same
//! outcome on the request span, and the request's place in the sender's trace.

use std::collections::HashMap;

use http::{HeaderMap, StatusCode};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{debug, info, warn, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{
    config::AccessLog,
    ingress::{error::Error, publish::Delivered, traceparent::TraceParent, webhook::Rejection},
};

/// The target of the request span and of the access log.
pub const REQUEST_TARGET: &str = "bp_relay::request";

/// The W3C trace-context header, and its key in OpenTelemetry's carrier.
const TRACEPARENT: &str = "traceparent";

/// A durable record and where it is.
pub struct Stored<'a> {
    pub topic: &'a str,
    pub delivered: Delivered,
    pub rejection: Option<Rejection>,
    /// Answered with the record an earlier copy of a redriven delivery left.
    pub stored_before: bool,
}

/// What one request's log line says: ids and outcomes, never bodies or secrets.
pub struct Access {
    pub route: &'static str,
    pub traceparent: TraceParent,
    pub key: Option<String>,
    pub topic: Option<String>,
    pub status: u16,
    pub latency_us: u64,
}

impl Access {
    /// The one log line of a request: every failure and dead letter at info or warn, the rest
    /// at debug unless `--access-log all`.
    pub fn log(&self, outcome: &Result<Stored<'_>, Error>, policy: AccessLog) {
        let (route, status, latency_us) = (self.route, self.status, self.latency_us);
        // Formatted only for a line that is written (tracing evaluates fields once enabled).
        let trace_id = tracing::field::display(TraceId(&self.traceparent));
        let (key, topic) = (self.key.as_deref(), self.topic.as_deref());
        match outcome {
            Ok(Stored {
                delivered,
                stored_before: true,
                ..
            }) => {
                info!(target: REQUEST_TARGET, route, key, topic, partition = delivered.partition, offset = delivered.offset, trace_id, status, latency_us, outcome = "stored_before", "Request answered with the record an earlier copy of this delivery left: nothing written.");
            }
            Ok(Stored {
                delivered,
                rejection: None,
                ..
            }) if policy == AccessLog::All => {
                info!(target: REQUEST_TARGET, route, key, topic, partition = delivered.partition, offset = delivered.offset, trace_id, status, latency_us, outcome = "published", "Request answered.");
            }
            Ok(Stored {
                delivered,
                rejection: None,
                ..
            }) => {
                debug!(target: REQUEST_TARGET, route, key, topic, partition = delivered.partition, offset = delivered.offset, trace_id, status, latency_us, outcome = "published", "Request answered.");
            }
            Ok(Stored {
                delivered,
                rejection: Some(rejection),
                ..
            }) => {
                warn!(target: REQUEST_TARGET, route, key, topic, partition = delivered.partition, offset = delivered.offset, trace_id, status, latency_us, outcome = "dead_lettered", reason = rejection.reason.code(), detail = %rejection.detail, "Request answered: not a valid delivery of its route, published to the dead-letter topic.");
            }
            Err(error @ Error::Publish(publish)) => {
                let source = publish.source.as_ref().map(tracing::field::display);
                warn!(target: REQUEST_TARGET, route, key, topic, trace_id, status, latency_us, code = error.code(), error = source, "Request refused: Kafka did not acknowledge the record.");
            }
            // 401 and every 5xx at warn (a forged or broken signing, or a delivery Authvia must
            // retry); the other 4xx, the sender's own mistakes, at info.
            Err(error)
                if error.status() == StatusCode::UNAUTHORIZED
                    || error.status().is_server_error() =>
            {
                warn!(target: REQUEST_TARGET, route, trace_id, status, latency_us, code = error.code(), "Request refused.");
            }
            Err(error) => {
                info!(target: REQUEST_TARGET, route, trace_id, status, latency_us, code = error.code(), "Request refused.");
            }
        }
    }

    /// The outcome on the request span, for the OTLP export (a no-op when the span is disabled).
    pub fn record_on(&self, span: &Span, outcome: &Result<Stored<'_>, Error>) {
        if span.is_disabled() {
            return;
        }
        span.record("key", self.key.as_deref());
        span.record("topic", self.topic.as_deref());
        span.record("status", self.status);
        match outcome {
            Ok(stored) => {
                span.record("partition", stored.delivered.partition);
                span.record("offset", stored.delivered.offset);
                span.record(
                    "outcome",
                    if stored.stored_before {
                        "stored_before"
                    } else if stored.rejection.is_some() {
                        "dead_lettered"
                    } else {
                        "published"
                    },
                );
            }
            Err(error) => {
                span.record("outcome", error.code());
            }
        }
        if self.status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
}

/// Shows a trace id without allocating it until a line is written.
struct TraceId<'a>(&'a TraceParent);

impl std::fmt::Display for TraceId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.trace_id())
    }
}

/// Makes `span` part of the sender's trace when spans are exported, and returns the traceparent
/// the record carries: the exported span's own ids. Without export, it is the sender's trace with
/// a new span id, or a fresh trace when the request carried none.
///
/// Call before `span` is first entered: its parent is fixed from then on.
pub fn join_trace(span: &Span, incoming: Option<TraceParent>) -> TraceParent {
    if span.is_disabled() {
        // Nothing is exported: no OpenTelemetry context to join or read.
        return incoming.map_or_else(TraceParent::fresh, |parent| parent.child());
    }
    let propagator = TraceContextPropagator::new();
    if let Some(parent) = incoming {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.to_string())]);
        // Fails only without the OpenTelemetry layer (or with the span filtered out), when
        // there is no exported span to attach.
        let _ = span.set_parent(propagator.extract(&carrier));
    }
    let mut carrier = HashMap::new();
    propagator.inject_context(&span.context(), &mut carrier);
    carrier
        .get(TRACEPARENT)
        .and_then(|text| TraceParent::parse(text))
        .unwrap_or_else(|| incoming.map_or_else(TraceParent::fresh, |parent| parent.child()))
}

pub fn incoming_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get(TRACEPARENT)?
        .to_str()
        .ok()
        .and_then(TraceParent::parse)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn without_export_the_record_continues_the_senders_trace() {
        let sender =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let joined = join_trace(&Span::none(), Some(sender));
        assert_eq!(joined.trace_id(), sender.trace_id());
        assert_ne!(joined, sender);
        assert!(TraceParent::parse(&join_trace(&Span::none(), None).to_string()).is_some());
    }

    #[test]
    fn with_export_the_request_span_joins_the_senders_trace_and_the_record_names_it() {
        use opentelemetry::trace::TraceContextExt as _;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let sender =
                TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .unwrap();
            let span = tracing::info_span!("request");
            let joined = join_trace(&span, Some(sender));
            let exported = span.context().span().span_context().clone();
            assert_eq!(exported.trace_id().to_string(), sender.trace_id());
            assert_eq!(
                joined.to_string(),
                format!("00-{}-{}-01", exported.trace_id(), exported.span_id())
            );
            assert_ne!(joined, sender);

            let root = tracing::info_span!("request");
            let fresh = join_trace(&root, None);
            assert_eq!(
                fresh.trace_id(),
                root.context().span().span_context().trace_id().to_string()
            );
        });
    }
}
