//! The relay's Prometheus metrics, registered on a registry the app owns (no globals).
//!
//! Names follow `bp_relay_<name>_<unit>[_total]`; every label comes from a closed set (route,
//! HTTP status, reason codes, configured broker names), never from request data. Series of the
//! closed sets are created at registration so dashboards see zeros instead of gaps.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{
    kafka::FailureReason,
    signature::SignatureError,
    webhook::{EventKind, RejectReason},
};

/// Latency buckets from 0.5 ms to Authvia's 5 s deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Route label for requests that matched no webhook route.
pub const OTHER_ROUTE: &str = "other";

/// Every metric the relay exports.
#[derive(Clone)]
pub struct Metrics {
    /// Requests answered, by route and HTTP status.
    pub http_requests: IntCounterVec,
    /// Time from request start to response, by route.
    pub http_request_duration: HistogramVec,
    /// Time from receipt to the broker's acknowledgement, by route.
    pub delivery_lag: HistogramVec,
    /// Records acknowledged by Kafka on the route's topic, by route.
    pub published: IntCounterVec,
    /// Records that could not be published, by reason.
    pub kafka_delivery_failures: IntCounterVec,
    /// Authenticated deliveries sent to the dead-letter topic, by route and reason.
    pub dead_letters: IntCounterVec,
    /// Refused signatures, by reason.
    pub signature_failures: IntCounterVec,
    /// Requests being handled now.
    pub inflight: IntGauge,
    /// Records waiting in the producer queue.
    pub queue_messages: IntGauge,
    /// Bytes waiting in the producer queue.
    pub queue_bytes: IntGauge,
    /// Configured queue capacity in records.
    pub queue_max_messages: IntGauge,
    /// Configured queue capacity in bytes.
    pub queue_max_bytes: IntGauge,
    /// 1 while librdkafka reports the broker connection UP.
    pub broker_up: IntGaugeVec,
    /// Average request round-trip time per broker over the last statistics interval.
    pub broker_rtt: GaugeVec,
    /// Transmission errors per broker.
    pub broker_tx_errors: IntCounterVec,
    /// Request retries per broker.
    pub broker_tx_retries: IntCounterVec,
    /// Request timeouts per broker.
    pub broker_request_timeouts: IntCounterVec,
    /// 1 while /readyz answers 200.
    pub ready: IntGauge,
}

impl Metrics {
    /// Creates every metric and registers it on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let metrics = Metrics {
            http_requests: counter_vec("bp_relay_http_requests_total", "HTTP requests answered, by route and status code.", &["route", "status"])?,
            http_request_duration: histogram_vec("bp_relay_http_request_duration_seconds", "Time from request start to response, by route.", &["route"])?,
            delivery_lag: histogram_vec("bp_relay_delivery_lag_seconds", "Time from receipt of a delivery to the broker's acknowledgement of its record, by route.", &["route"])?,
            published: counter_vec("bp_relay_published_records_total", "Records acknowledged by Kafka on the route's topic (dead letters not included).", &["route"])?,
            kafka_delivery_failures: counter_vec("bp_relay_kafka_delivery_failures_total", "Records that could not be published, by reason.", &["reason"])?,
            dead_letters: counter_vec("bp_relay_dead_letter_total", "Authenticated deliveries published to the dead-letter topic, by route and reason.", &["route", "reason"])?,
            signature_failures: counter_vec("bp_relay_signature_failures_total", "Requests refused with 401, by reason.", &["reason"])?,
            inflight: IntGauge::new("bp_relay_inflight_requests", "Webhook requests being handled now.")?,
            queue_messages: IntGauge::new("bp_relay_kafka_queue_messages", "Records in the producer queue (not yet acknowledged).")?,
            queue_bytes: IntGauge::new("bp_relay_kafka_queue_bytes", "Bytes in the producer queue (not yet acknowledged).")?,
            queue_max_messages: IntGauge::new("bp_relay_kafka_queue_max_messages", "Producer queue capacity in records.")?,
            queue_max_bytes: IntGauge::new("bp_relay_kafka_queue_max_bytes", "Producer queue capacity in bytes.")?,
            broker_up: IntGaugeVec::new(Opts::new("bp_relay_kafka_broker_up", "1 while the connection to the broker is up."), &["broker"])?,
            broker_rtt: GaugeVec::new(Opts::new("bp_relay_kafka_broker_rtt_seconds", "Average broker round-trip time over the last statistics interval."), &["broker"])?,
            broker_tx_errors: counter_vec("bp_relay_kafka_broker_tx_errors_total", "Transmission errors, by broker.", &["broker"])?,
            broker_tx_retries: counter_vec("bp_relay_kafka_broker_tx_retries_total", "Request retries, by broker.", &["broker"])?,
            broker_request_timeouts: counter_vec("bp_relay_kafka_broker_request_timeouts_total", "Requests that timed out, by broker.", &["broker"])?,
            ready: IntGauge::new("bp_relay_ready", "1 while the relay reports ready.")?,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("bp_relay_build_info", "Always 1; labels name the running build."),
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("BP_RELAY_REVISION").unwrap_or("unknown")])
            .set(1);
        registry.register(Box::new(build_info))?;
        metrics.register_all(registry)?;
        metrics.initialise_series();
        Ok(metrics)
    }

    fn register_all(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.http_requests.clone()))?;
        registry.register(Box::new(self.http_request_duration.clone()))?;
        registry.register(Box::new(self.delivery_lag.clone()))?;
        registry.register(Box::new(self.published.clone()))?;
        registry.register(Box::new(self.kafka_delivery_failures.clone()))?;
        registry.register(Box::new(self.dead_letters.clone()))?;
        registry.register(Box::new(self.signature_failures.clone()))?;
        registry.register(Box::new(self.inflight.clone()))?;
        registry.register(Box::new(self.queue_messages.clone()))?;
        registry.register(Box::new(self.queue_bytes.clone()))?;
        registry.register(Box::new(self.queue_max_messages.clone()))?;
        registry.register(Box::new(self.queue_max_bytes.clone()))?;
        registry.register(Box::new(self.broker_up.clone()))?;
        registry.register(Box::new(self.broker_rtt.clone()))?;
        registry.register(Box::new(self.broker_tx_errors.clone()))?;
        registry.register(Box::new(self.broker_tx_retries.clone()))?;
        registry.register(Box::new(self.broker_request_timeouts.clone()))?;
        registry.register(Box::new(self.ready.clone()))
    }

    fn initialise_series(&self) {
        for kind in EventKind::ALL {
            let route = route_label(Some(kind));
            self.delivery_lag.with_label_values(&[route]);
            self.http_request_duration.with_label_values(&[route]);
            self.published.with_label_values(&[route]);
            for reason in RejectReason::ALL {
                self.dead_letters.with_label_values(&[route, reason.code()]);
            }
        }
        for reason in FailureReason::ALL {
            self.kafka_delivery_failures.with_label_values(&[reason.label()]);
        }
        for reason in SignatureError::ALL {
            self.signature_failures.with_label_values(&[reason.code()]);
        }
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, status: http::StatusCode, seconds: f64) {
        self.http_requests.with_label_values(&[route, status.as_str()]).inc();
        self.http_request_duration.with_label_values(&[route]).observe(seconds);
    }

    /// The counter of one delivery failure reason.
    pub fn delivery_failure(&self, reason: FailureReason) -> IntCounter {
        self.kafka_delivery_failures.with_label_values(&[reason.label()])
    }
}

/// The metric label of a route (`other` for requests that matched none).
pub fn route_label(kind: Option<EventKind>) -> &'static str {
    match kind {
        Some(EventKind::BusinessProcess) => "business_processes",
        Some(EventKind::Action) => "business_process_actions",
        None => OTHER_ROUTE,
    }
}

/// Prometheus text exposition of everything in `registry`.
pub fn encode(registry: &Registry) -> (String, Vec<u8>) {
    let encoder = TextEncoder::new();
    let mut buffer = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec only fails on invalid metric families, which registration rules out.
    let _ = encoder.encode(&registry.gather(), &mut buffer);
    (encoder.format_type().to_owned(), buffer)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_with_the_house_naming() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        metrics.observe_request("business_processes", http::StatusCode::OK, 0.001);
        let (_, text) = encode(&registry);
        let text = String::from_utf8(text).unwrap();
        for family in registry.gather() {
            assert!(family.name().starts_with("bp_relay_"), "{}", family.name());
            assert!(!family.help().is_empty(), "{}", family.name());
        }
        assert!(text.contains("bp_relay_http_requests_total{route=\"business_processes\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("bp_relay_kafka_delivery_failures_total{reason=\"queue_full\"} 0"), "{text}");
    }

    #[test]
    fn the_list_the_dashboard_and_alerts_are_checked_against_is_the_registered_set() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        // Families without a series are not gathered: give the per-broker and per-status ones one.
        metrics.observe_request("business_processes", http::StatusCode::OK, 0.001);
        metrics.broker_up.with_label_values(&["b"]).set(1);
        metrics.broker_rtt.with_label_values(&["b"]).set(0.001);
        for counter in [&metrics.broker_tx_errors, &metrics.broker_tx_retries, &metrics.broker_request_timeouts] {
            counter.with_label_values(&["b"]).inc();
        }
        let mut registered: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
        registered.sort();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chart/metrics.txt");
        let text = std::fs::read_to_string(path).unwrap();
        let mut listed: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("bp_relay_"))
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, registered, "scripts/chart/metrics.txt must list exactly the registered metrics");
    }
}
