//! The relay's request-side Prometheus metrics, registered on a registry the app owns (no
//! globals), with one typed method per thing that happens. The Kafka client's own metrics are
//! registered by [`crate::kafka::ClientMetrics`] on the same registry.
//!
//! Names follow `bp_relay_<name>_<unit>[_total]`; every label comes from a closed set (route,
//! HTTP status, reason codes, configured broker names), never from request data. Series of the
//! closed sets are created at registration so dashboards see zeros instead of gaps.

use std::time::Duration;

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{
    ingress::publish::FailureReason,
    ingress::redrive::RedriveMetrics,
    ingress::replay::GuardMetrics,
    ingress::signature::SignatureError,
    ingress::webhook::{EventKind, RejectReason},
};

/// Latency buckets from 0.5 ms to Authvia's 5 s deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Signing ages from one second to past Authvia's four days of retries: how old the signings
/// of its deliveries are when they arrive tells whether its retries are signed afresh.
const SIGNING_AGE_BUCKETS: &[f64] = &[
    1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 10_800.0, 21_600.0, 43_200.0, 86_400.0, 172_800.0,
    259_200.0, 345_600.0, 432_000.0,
];

/// Route label for requests that matched no webhook route.
pub const OTHER_ROUTE: &str = "other";

/// The `outcome` labels of the delivery lag: acknowledged on the route's topic, acknowledged on
/// the dead-letter topic, or not acknowledged (the answer was 5xx).
const PUBLISHED: &str = "published";
const DEAD_LETTERED: &str = "dead_lettered";
const FAILED: &str = "failed";

/// The deadline that closed a webhook connection: `request_head` (no complete request head within
/// `--request-head-timeout` of the accept or of a keep-alive connection's next first byte) or
/// `idle` (no request for `--idle-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionDeadline {
    RequestHead,
    Idle,
}

impl ConnectionDeadline {
    /// Every deadline, for series created at registration.
    pub const ALL: [ConnectionDeadline; 2] = [Self::RequestHead, Self::Idle];

    /// The `deadline` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RequestHead => "request_head",
            Self::Idle => "idle",
        }
    }
}

/// The route label of a request: its kind's label, or `other`.
pub fn route_label(kind: Option<EventKind>) -> &'static str {
    kind.map_or(OTHER_ROUTE, EventKind::label)
}

/// Every request-side metric the relay exports.
#[derive(Clone)]
pub struct Metrics {
    // The series every delivery touches, looked up once: a label lookup hashes its values.
    per_route: [RouteSeries; 2],
    http_requests: IntCounterVec,
    http_request_duration: HistogramVec,
    delivery_lag: HistogramVec,
    published: IntCounterVec,
    kafka_delivery_failures: IntCounterVec,
    dead_letters: IntCounterVec,
    signature_failures: IntCounterVec,
    inflight: IntGauge,
    inflight_body_bytes: IntGauge,
    open_connections: IntGauge,
    connection_timeouts: IntCounterVec,
    ready: IntGauge,
    replay_guard: GuardMetrics,
    redrive: RedriveMetrics,
    signing_age: HistogramVec,
    subscription_disabled: IntCounter,
    signing_secrets_reloads: IntCounter,
    signing_secrets_readable: IntGauge,
}

impl Metrics {
    /// Creates every metric and registers it on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let http_requests = counter_vec(
            "bp_relay_http_requests_total",
            "HTTP requests answered, by route and status code.",
            &["route", "status"],
        )?;
        let http_request_duration = histogram_vec(
            "bp_relay_http_request_duration_seconds",
            "Time from request start to response, by route.",
            &["route"],
        )?;
        let delivery_lag = histogram_vec(
            "bp_relay_delivery_lag_seconds",
            "Time from receipt of a delivery to the broker's answer for its record, by route and outcome (published, dead_lettered, failed).",
            &["route", "outcome"],
        )?;
        let published = counter_vec(
            "bp_relay_published_records_total",
            "Records acknowledged by Kafka on the route's topic (dead letters not included).",
            &["route"],
        )?;
        let signing_age = HistogramVec::new(
            HistogramOpts::new(
                "bp_relay_signature_age_seconds",
                "Age of each genuine signing when its request arrived (now minus X-AUTHVIA-TIMESTAMP, 0 for one from the future), by route: retries signed with their first attempt's headers show as ages past the window.",
            )
            .buckets(SIGNING_AGE_BUCKETS.to_vec()),
            &["route"],
        )?;
        let per_route = EventKind::ALL.map(|kind| {
            let route = kind.label();
            RouteSeries {
                answered_ok: http_requests.with_label_values(&[route, StatusCode::OK.as_str()]),
                duration: http_request_duration.with_label_values(&[route]),
                delivery_lag: delivery_lag.with_label_values(&[route, PUBLISHED]),
                published: published.with_label_values(&[route]),
                signing_age: signing_age.with_label_values(&[route]),
            }
        });
        let metrics = Metrics {
            per_route,
            http_requests,
            http_request_duration,
            delivery_lag,
            published,
            kafka_delivery_failures: counter_vec("bp_relay_kafka_delivery_failures_total", "Records that could not be published, by reason.", &["reason"])?,
            dead_letters: counter_vec("bp_relay_dead_letter_total", "Authenticated deliveries published to the dead-letter topic, by route and reason.", &["route", "reason"])?,
            signature_failures: counter_vec("bp_relay_signature_failures_total", "Requests refused with 401, by reason.", &["reason"])?,
            inflight: IntGauge::new("bp_relay_inflight_requests", "Webhook requests being handled now.")?,
            inflight_body_bytes: IntGauge::new(
                "bp_relay_inflight_body_bytes",
                "Request body bytes held by the webhook requests being handled now (bounded by --max-inflight-bytes).",
            )?,
            open_connections: IntGauge::new("bp_relay_open_connections", "Open connections on the webhook listener (bounded by --max-connections).")?,
            connection_timeouts: counter_vec(
                "bp_relay_connection_timeouts_total",
                "Webhook connections closed by a deadline: request_head (--request-head-timeout) or idle (--idle-timeout).",
                &["deadline"],
            )?,
            ready: IntGauge::new("bp_relay_ready", "1 while the relay reports ready.")?,
            replay_guard: GuardMetrics::register(registry)?,
            redrive: RedriveMetrics::register(registry)?,
            signing_age,
            signing_secrets_reloads: IntCounter::new("bp_relay_signing_secrets_reloads_total", "Changes of a route's signing secrets file applied without a restart.")?,
            signing_secrets_readable: IntGauge::new(
                "bp_relay_signing_secrets_readable",
                "1 while the signing secrets files could be read, each route's list its own, at their last reload (0: the last good secrets stay in force).",
            )?,
            subscription_disabled: IntCounter::new(
                "bp_relay_subscription_disabled_total",
                "Calls of Authvia's disable callback: a Subscription was disabled and sends nothing more.",
            )?,
        };
        register_build_info(registry)?;
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
        registry.register(Box::new(self.subscription_disabled.clone()))?;
        registry.register(Box::new(self.signing_secrets_reloads.clone()))?;
        registry.register(Box::new(self.signing_secrets_readable.clone()))?;
        registry.register(Box::new(self.inflight_body_bytes.clone()))?;
        registry.register(Box::new(self.open_connections.clone()))?;
        registry.register(Box::new(self.connection_timeouts.clone()))?;
        registry.register(Box::new(self.signing_age.clone()))?;
        registry.register(Box::new(self.ready.clone()))
    }

    fn initialise_series(&self) {
        // Read at startup, or there would be no relay: readable until a reload says otherwise.
        self.signing_secrets_readable.set(1);
        for kind in EventKind::ALL {
            let route = kind.label();
            for outcome in [PUBLISHED, DEAD_LETTERED, FAILED] {
                self.delivery_lag.with_label_values(&[route, outcome]);
            }
            self.http_request_duration.with_label_values(&[route]);
            self.signing_age.with_label_values(&[route]);
            self.published.with_label_values(&[route]);
            for reason in RejectReason::ALL {
                self.dead_letters.with_label_values(&[route, reason.code()]);
            }
        }
        for reason in FailureReason::ALL {
            self.kafka_delivery_failures
                .with_label_values(&[reason.code()]);
        }
        for reason in SignatureError::ALL {
            self.signature_failures.with_label_values(&[reason.code()]);
        }
        for deadline in ConnectionDeadline::ALL {
            self.connection_timeouts
                .with_label_values(&[deadline.label()]);
        }
    }

    /// A genuine signing made at Unix second `signed_at` arrived at `now` on `kind`'s route.
    pub fn signing_received(&self, kind: EventKind, signed_at: i64, now: std::time::SystemTime) {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        let age = now.saturating_sub(signed_at).max(0);
        self.series(kind).signing_age.observe(age as f64);
    }

    /// One request answered with `status` after `elapsed`.
    pub fn request_answered(&self, kind: Option<EventKind>, status: StatusCode, elapsed: Duration) {
        match kind {
            Some(kind) if status == StatusCode::OK => {
                let series = self.series(kind);
                series.answered_ok.inc();
                series.duration.observe(elapsed.as_secs_f64());
            }
            _ => {
                let route = route_label(kind);
                self.http_requests
                    .with_label_values(&[route, status.as_str()])
                    .inc();
                self.http_request_duration
                    .with_label_values(&[route])
                    .observe(elapsed.as_secs_f64());
            }
        }
    }

    /// A request head larger than `--max-request-head`, answered 431 by hyper before it reached
    /// a route: counted as `route="other", status="431"` (no duration: it never started).
    pub fn head_too_large(&self) {
        self.http_requests
            .with_label_values(&[
                OTHER_ROUTE,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.as_str(),
            ])
            .inc();
    }

    /// A record acknowledged on the route's topic, `lag` after its request arrived.
    pub fn published(&self, kind: EventKind, lag: Duration) {
        let series = self.series(kind);
        series.delivery_lag.observe(lag.as_secs_f64());
        series.published.inc();
    }

    /// A dead letter acknowledged, `lag` after its request arrived.
    pub fn dead_lettered(&self, kind: EventKind, reason: RejectReason, lag: Duration) {
        self.delivery_lag
            .with_label_values(&[kind.label(), DEAD_LETTERED])
            .observe(lag.as_secs_f64());
        self.dead_letters
            .with_label_values(&[kind.label(), reason.code()])
            .inc();
    }

    /// A request refused with 401.
    pub fn signature_refused(&self, reason: SignatureError) {
        self.signature_failures
            .with_label_values(&[reason.code()])
            .inc();
    }

    /// A record Kafka did not acknowledge, `lag` after its request arrived: in the lag too, so
    /// the tail shows during an outage.
    pub fn delivery_failed(&self, kind: EventKind, reason: FailureReason, lag: Duration) {
        self.delivery_lag
            .with_label_values(&[kind.label(), FAILED])
            .observe(lag.as_secs_f64());
        self.kafka_delivery_failures
            .with_label_values(&[reason.code()])
            .inc();
    }

    /// A change of the signing secrets file was applied.
    pub fn signing_secrets_reloaded(&self) {
        self.signing_secrets_reloads.inc();
    }

    /// Whether the signing secrets file could be read at the last reload.
    pub fn signing_secrets_readable(&self, readable: bool) {
        self.signing_secrets_readable.set(i64::from(readable));
    }

    /// Authvia called the disable callback.
    pub fn subscription_disabled(&self) {
        self.subscription_disabled.inc();
    }

    /// The redrive memory's own metrics.
    pub fn redrive(&self) -> RedriveMetrics {
        self.redrive.clone()
    }

    /// The in-memory replay guard's metrics.
    pub fn replay_guard(&self) -> GuardMetrics {
        self.replay_guard.clone()
    }

    /// Whether `/readyz` answers 200 now.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts a request in `bp_relay_inflight_requests` until the guard is dropped.
    pub fn inflight(&self) -> Inflight<'_> {
        self.inflight.inc();
        Inflight(&self.inflight)
    }

    /// Request body bytes taken from (positive) or given back to (negative) the in-flight budget.
    pub fn body_bytes_held(&self, delta: i64) {
        self.inflight_body_bytes.add(delta);
    }

    /// Counts a webhook connection in `bp_relay_open_connections` until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }

    /// A webhook connection closed by `deadline`.
    pub fn connection_timed_out(&self, deadline: ConnectionDeadline) {
        self.connection_timeouts
            .with_label_values(&[deadline.label()])
            .inc();
    }

    fn series(&self, kind: EventKind) -> &RouteSeries {
        match kind {
            EventKind::BusinessProcess => &self.per_route[0],
            EventKind::Action => &self.per_route[1],
        }
    }
}

/// The series of one route that a delivery answered 200 touches.
#[derive(Clone)]
struct RouteSeries {
    answered_ok: IntCounter,
    duration: Histogram,
    delivery_lag: Histogram,
    published: IntCounter,
    signing_age: Histogram,
}

/// One request in `bp_relay_inflight_requests`, on every exit path (including a client that
/// disconnects mid-request, which drops the handler future).
pub struct Inflight<'a>(&'a IntGauge);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection in `bp_relay_open_connections`, however the connection ends. Owned (not
/// borrowed like [`Inflight`]): it lives in the connection's task.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn register_build_info(registry: &Registry) -> prometheus::Result<()> {
    let build_info = IntGaugeVec::new(
        Opts::new(
            "bp_relay_build_info",
            "Always 1; labels name the running build.",
        ),
        &["version", "revision"],
    )?;
    build_info
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            option_env!("BP_RELAY_REVISION").unwrap_or("unknown"),
        ])
        .set(1);
    registry.register(Box::new(build_info))
}

/// Prometheus text exposition of everything in `registry`: (content type, body).
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
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "kafka")]
    use crate::kafka::ClientMetrics;

    fn text(registry: &Registry) -> String {
        String::from_utf8(encode(registry).1).unwrap()
    }

    #[test]
    fn every_metric_registers_with_the_house_naming() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        metrics.request_answered(
            Some(EventKind::BusinessProcess),
            StatusCode::OK,
            Duration::from_millis(1),
        );
        metrics.delivery_failed(
            EventKind::Action,
            FailureReason::Timeout,
            Duration::from_secs(4),
        );
        let text = text(&registry);
        for family in registry.gather() {
            assert!(family.name().starts_with("bp_relay_"), "{}", family.name());
            assert!(!family.help().is_empty(), "{}", family.name());
        }
        assert!(
            text.contains(
                "bp_relay_http_requests_total{route=\"business_processes\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("bp_relay_kafka_delivery_failures_total{reason=\"kafka_timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("bp_relay_kafka_delivery_failures_total{reason=\"kafka_queue_full\"} 0"),
            "{text}"
        );
        assert!(text.contains("bp_relay_delivery_lag_seconds_count{outcome=\"failed\",route=\"business_process_actions\"} 1"), "{text}");
        assert!(text.contains("bp_relay_delivery_lag_seconds_bucket{outcome=\"failed\",route=\"business_process_actions\",le=\"2.5\"} 0"), "{text}");
    }

    #[test]
    fn inflight_counts_until_the_guard_is_dropped() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let first = metrics.inflight();
        let second = metrics.inflight();
        assert!(text(&registry).contains("bp_relay_inflight_requests 2"));
        drop((first, second));
        assert!(text(&registry).contains("bp_relay_inflight_requests 0"));
    }

    #[test]
    fn connections_and_body_bytes_are_counted_and_given_back() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let text_now = || text(&registry);
        assert!(
            text_now().contains("bp_relay_connection_timeouts_total{deadline=\"idle\"} 0"),
            "series exist from the start"
        );
        let connection = metrics.connection_opened();
        metrics.body_bytes_held(1000);
        metrics.connection_timed_out(ConnectionDeadline::RequestHead);
        let during = text_now();
        assert!(during.contains("bp_relay_open_connections 1"), "{during}");
        assert!(
            during.contains("bp_relay_inflight_body_bytes 1000"),
            "{during}"
        );
        assert!(
            during.contains("bp_relay_connection_timeouts_total{deadline=\"request_head\"} 1"),
            "{during}"
        );
        drop(connection);
        metrics.body_bytes_held(-1000);
        let after = text_now();
        assert!(after.contains("bp_relay_open_connections 0"), "{after}");
        assert!(after.contains("bp_relay_inflight_body_bytes 0"), "{after}");
    }

    #[test]
    #[cfg(feature = "kafka")]
    fn the_list_the_dashboard_and_alerts_are_checked_against_is_the_registered_set() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let client = ClientMetrics::register(&registry).unwrap();
        // Families without a series are not gathered: give the per-broker and per-status ones one.
        metrics.request_answered(None, StatusCode::NOT_FOUND, Duration::ZERO);
        client.touch_broker("b");
        let mut registered: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        registered.sort();
        let text = include_str!("../../scripts/chart/metrics.txt");
        let mut listed: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("bp_relay_"))
            .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
            .collect();
        listed.sort();
        assert_eq!(
            listed, registered,
            "scripts/chart/metrics.txt must list exactly the registered metrics"
        );
    }

    /// README's metrics table lists exactly the registered metrics, each with its type.
    #[test]
    #[cfg(feature = "kafka")]
    fn the_readme_metrics_table_is_the_registered_set() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let client = ClientMetrics::register(&registry).unwrap();
        metrics.request_answered(None, StatusCode::NOT_FOUND, Duration::ZERO);
        client.touch_broker("b");
        let mut registered: Vec<(String, String)> = registry
            .gather()
            .iter()
            .map(|family| {
                let kind = format!("{:?}", family.get_field_type()).to_lowercase();
                (family.name().to_owned(), kind)
            })
            .collect();
        registered.sort();
        let rows = crate::readme::rows_between("- `GET /metrics` exposes", "- **Logs**");
        let mut documented: Vec<(String, String)> = rows
            .iter()
            .map(|row| {
                (
                    row.code(0).unwrap_or_default().to_owned(),
                    row.cells[1].clone(),
                )
            })
            .collect();
        documented.sort();
        assert_eq!(
            documented, registered,
            "README's metrics table and /metrics"
        );
    }
}
