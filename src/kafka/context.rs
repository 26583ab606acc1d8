//! librdkafka callbacks: statistics feed the client metrics and readiness; client errors are
//! logged once each, as structured events, and not again while the same error repeats; each one
//! wakes the supervisor, which asks librdkafka whether the producer is now in its fatal state
//! (the error event itself carries the underlying code, not whether it was fatal).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::{
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::Message,
    producer::{DeliveryResult, ProducerContext},
    ClientContext,
};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, info, warn};

use super::statistics::{Broker, Statistics};
use crate::{health::Health, ingress::publish::Delivered};

/// The same client error is logged at most once per this interval; the next line says how
/// many were left out (librdkafka repeats them every reconnect attempt while a broker is down).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The producer's queue and per-broker metrics, fed by librdkafka's statistics.
#[derive(Clone)]
pub struct ClientMetrics {
    queue_messages: IntGauge,
    queue_bytes: IntGauge,
    queue_max_messages: IntGauge,
    queue_max_bytes: IntGauge,
    broker_up: IntGaugeVec,
    broker_rtt: GaugeVec,
    broker_tx_errors: IntCounterVec,
    broker_tx_retries: IntCounterVec,
    broker_request_timeouts: IntCounterVec,
    pub(super) fatal_errors: IntCounter,
    pub(super) producer_restarts: IntCounter,
}

impl ClientMetrics {
    /// Creates the client metrics and registers them on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<ClientMetrics> {
        let by_broker =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["broker"]);
        let metrics = ClientMetrics {
            queue_messages: IntGauge::new(
                "bp_relay_kafka_queue_messages",
                "Records in the producer queue (not yet acknowledged).",
            )?,
            queue_bytes: IntGauge::new(
                "bp_relay_kafka_queue_bytes",
                "Bytes in the producer queue (not yet acknowledged).",
            )?,
            queue_max_messages: IntGauge::new(
                "bp_relay_kafka_queue_max_messages",
                "Producer queue capacity in records.",
            )?,
            queue_max_bytes: IntGauge::new(
                "bp_relay_kafka_queue_max_bytes",
                "Producer queue capacity in bytes.",
            )?,
            broker_up: IntGaugeVec::new(
                Opts::new(
                    "bp_relay_kafka_broker_up",
                    "1 while the connection to the broker is up.",
                ),
                &["broker"],
            )?,
            broker_rtt: GaugeVec::new(
                Opts::new(
                    "bp_relay_kafka_broker_rtt_seconds",
                    "Average broker round-trip time over the last statistics interval.",
                ),
                &["broker"],
            )?,
            broker_tx_errors: by_broker(
                "bp_relay_kafka_broker_tx_errors_total",
                "Transmission errors, by broker.",
            )?,
            broker_tx_retries: by_broker(
                "bp_relay_kafka_broker_tx_retries_total",
                "Request retries, by broker.",
            )?,
            broker_request_timeouts: by_broker(
                "bp_relay_kafka_broker_request_timeouts_total",
                "Requests that timed out, by broker.",
            )?,
            fatal_errors: IntCounter::new(
                "bp_relay_kafka_fatal_errors_total",
                "Fatal errors of the Kafka producer (it is replaced after each).",
            )?,
            producer_restarts: IntCounter::new(
                "bp_relay_producer_restarts_total",
                "Kafka producers built to replace one that failed fatally.",
            )?,
        };
        registry.register(Box::new(metrics.queue_messages.clone()))?;
        registry.register(Box::new(metrics.queue_bytes.clone()))?;
        registry.register(Box::new(metrics.queue_max_messages.clone()))?;
        registry.register(Box::new(metrics.queue_max_bytes.clone()))?;
        registry.register(Box::new(metrics.broker_up.clone()))?;
        registry.register(Box::new(metrics.broker_rtt.clone()))?;
        registry.register(Box::new(metrics.broker_tx_errors.clone()))?;
        registry.register(Box::new(metrics.broker_tx_retries.clone()))?;
        registry.register(Box::new(metrics.broker_request_timeouts.clone()))?;
        registry.register(Box::new(metrics.fatal_errors.clone()))?;
        registry.register(Box::new(metrics.producer_restarts.clone()))?;
        Ok(metrics)
    }

    /// Removes every series of `broker`: it left the cluster, and its last values must not keep
    /// an alert firing.
    fn forget_broker(&self, broker: &str) {
        let _ = self.broker_up.remove_label_values(&[broker]);
        let _ = self.broker_rtt.remove_label_values(&[broker]);
        for counter in [
            &self.broker_tx_errors,
            &self.broker_tx_retries,
            &self.broker_request_timeouts,
        ] {
            let _ = counter.remove_label_values(&[broker]);
        }
    }

    /// Gives every per-broker family a series for `broker`, so a test can see every name.
    #[cfg(test)]
    pub fn touch_broker(&self, broker: &str) {
        self.broker_up.with_label_values(&[broker]);
        self.broker_rtt.with_label_values(&[broker]);
        for counter in [
            &self.broker_tx_errors,
            &self.broker_tx_retries,
            &self.broker_request_timeouts,
        ] {
            counter.with_label_values(&[broker]);
        }
    }
}

/// The context of one producer: owns nothing but handles to shared state.
pub struct Context {
    metrics: ClientMetrics,
    health: Arc<Health>,
    any_broker_up: Arc<AtomicBool>,
    // Whether the last statistics listed a configured or learned broker at all (see
    // `Generation::rebootstrap_if_brokerless`).
    brokers_known: Arc<AtomicBool>,
    // Set by the supervisor once this producer is in librdkafka's fatal state.
    fatal: Arc<AtomicBool>,
    // Wakes the supervisor, which replaces a producer that failed fatally.
    error_signal: Arc<Notify>,
    // The latest client error (code: reason), for a startup that gives up to say why.
    last_error: Arc<Mutex<Option<String>>>,
    // librdkafka reports cumulative counters; Prometheus counters take increments.
    last_counters: Mutex<HashMap<String, [u64; 3]>>,
    error_log: Mutex<HashMap<String, LoggedError>>,
}

/// When an error was last logged and how often it came since.
struct LoggedError {
    at: Instant,
    suppressed: u64,
}

impl Context {
    /// A context reporting into `metrics` and `health`, and signalling each client error on
    /// `error_signal`.
    pub fn new(metrics: ClientMetrics, health: Arc<Health>, error_signal: Arc<Notify>) -> Self {
        Self {
            metrics,
            health,
            any_broker_up: Arc::new(AtomicBool::new(false)),
            brokers_known: Arc::new(AtomicBool::new(true)),
            fatal: Arc::new(AtomicBool::new(false)),
            error_signal,
            last_error: Arc::default(),
            last_counters: Mutex::new(HashMap::new()),
            error_log: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the last statistics saw a broker connection up, readable after the context has
    /// moved into the producer.
    pub(super) fn any_broker_up(&self) -> Arc<AtomicBool> {
        self.any_broker_up.clone()
    }

    /// Whether the last statistics listed any configured or learned broker, readable after the
    /// context has moved into the producer.
    pub(super) fn brokers_known(&self) -> Arc<AtomicBool> {
        self.brokers_known.clone()
    }

    /// The latest client error, readable after the context has moved into the producer.
    pub(super) fn last_error(&self) -> Arc<Mutex<Option<String>>> {
        self.last_error.clone()
    }

    /// The flag marking this producer failed, shared with its [`super::Generation`].
    pub(super) fn fatal(&self) -> Arc<AtomicBool> {
        self.fatal.clone()
    }

    fn record_queue(&self, stats: &Statistics<'_>) {
        let m = &self.metrics;
        m.queue_messages.set(stats.msg_cnt as i64);
        m.queue_bytes.set(stats.msg_size as i64);
        m.queue_max_messages.set(stats.msg_max as i64);
        m.queue_max_bytes.set(stats.msg_size_max as i64);
        let fill = |used: u64, max: u64| {
            if max == 0 {
                0.0
            } else {
                used as f64 / max as f64
            }
        };
        self.health.set_queue_fill(
            fill(stats.msg_cnt, stats.msg_max).max(fill(stats.msg_size, stats.msg_size_max)),
        );
    }

    fn record_broker(&self, broker: &Broker<'_>) {
        let m = &self.metrics;
        let name = broker.name.as_ref();
        m.broker_up
            .with_label_values(&[name])
            .set(i64::from(broker.state == "UP"));
        if let Some(rtt) = &broker.rtt {
            m.broker_rtt
                .with_label_values(&[name])
                .set(rtt.avg as f64 / 1e6);
        }
        let now = [broker.txerrs, broker.txretries, broker.req_timeouts];
        let Ok(mut last_counters) = self.last_counters.lock() else {
            return;
        };
        let last = last_counters.insert(name.to_owned(), now).unwrap_or([0; 3]);
        let counters = [
            &m.broker_tx_errors,
            &m.broker_tx_retries,
            &m.broker_request_timeouts,
        ];
        for ((counter, now), last) in counters.into_iter().zip(now).zip(last) {
            counter
                .with_label_values(&[name])
                .inc_by(now.saturating_sub(last));
        }
    }

    /// Drops the series and counters of brokers that are no longer cluster members.
    fn forget_departed(&self, members: &[&Broker<'_>]) {
        let Ok(mut last_counters) = self.last_counters.lock() else {
            return;
        };
        let departed: Vec<String> = last_counters
            .keys()
            .filter(|name| !members.iter().any(|broker| broker.name == name.as_str()))
            .cloned()
            .collect();
        for name in departed {
            self.metrics.forget_broker(&name);
            last_counters.remove(&name);
        }
    }

    /// Metrics and readiness from one statistics report.
    fn stats(&self, stats: &Statistics<'_>) {
        if self.fatal.load(Ordering::SeqCst) {
            // A failed producer's connections say nothing about whether the relay can publish.
            return;
        }
        self.record_queue(stats);
        self.brokers_known.store(
            stats
                .brokers
                .values()
                .any(|broker| matches!(broker.source.as_ref(), "configured" | "learned")),
            Ordering::Relaxed,
        );
        // Bootstrap entries (node id -1) stand for configured addresses, not cluster members.
        let members: Vec<&Broker<'_>> = stats
            .brokers
            .values()
            .filter(|broker| broker.nodeid >= 0)
            .collect();
        let mut any_up = false;
        for broker in &members {
            any_up |= broker.state == "UP";
            self.record_broker(broker);
        }
        self.forget_departed(&members);
        let was_up = self.any_broker_up.swap(any_up, Ordering::Relaxed);
        if any_up {
            self.health.broker_seen_up(Instant::now());
            self.health.producer_recovered();
            if !was_up {
                if let Ok(mut log) = self.error_log.lock() {
                    // A new outage is news again.
                    log.clear();
                }
                info!("A Kafka broker connection is up.");
            }
        }
    }

    /// Whether to log this occurrence of `key` now, and how many were left out before it.
    fn should_log(&self, key: &str, now: Instant) -> Option<u64> {
        let mut log = self.error_log.lock().ok()?;
        match log.get_mut(key) {
            Some(entry) if now.duration_since(entry.at) < ERROR_LOG_INTERVAL => {
                entry.suppressed += 1;
                None
            }
            Some(entry) => {
                let suppressed = entry.suppressed;
                *entry = LoggedError {
                    at: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                log.insert(
                    key.to_owned(),
                    LoggedError {
                        at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

impl ClientContext for Context {
    fn stats_raw(&self, json: &[u8]) {
        match Statistics::parse(json) {
            Ok(stats) => self.stats(&stats),
            Err(error) => debug!(%error, "librdkafka's statistics could not be read."),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.error_signal.notify_one();
        let code = error
            .rdkafka_error_code()
            .map_or_else(|| "unknown".to_owned(), |code| format!("{code:?}"));
        // "All brokers down" follows every other connection error: keep the one that says why.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            if let Ok(mut last) = self.last_error.lock() {
                // librdkafka's reasons name brokers and mechanisms, never credentials.
                *last = Some(format!("{code}: {reason}"));
            }
        }
        if let Some(suppressed) = self.should_log(&code, Instant::now()) {
            warn!(
                code = code.as_str(),
                reason, suppressed, "Kafka client error."
            );
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Every problem librdkafka logs it also reports to `error` above, which logs it once;
        // its own lines stay available with RUST_LOG=bp_relay=debug.
        debug!(?level, facility = fac, message = log_message, "librdkafka");
    }
}

/// What a delivery report says of one record: where it landed, or why it did not.
pub(super) type Report = Result<Delivered, KafkaError>;

impl ProducerContext for Context {
    /// Where the record's report goes: the request waiting for it, or its redrive.
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report_to: Self::DeliveryOpaque) {
        let report = match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, _message)) => Err(error.clone()),
        };
        // Whoever waited may be gone (a request answered at its deadline with no redrive).
        let _ = report_to.send(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(brokers: &[(&str, i32)]) -> Vec<u8> {
        let learned: Vec<_> = brokers
            .iter()
            .map(|&(name, id)| (name, id, "learned"))
            .collect();
        stats_from(&learned)
    }

    /// A statistics report listing `brokers` as (name, node id, source), each up.
    fn stats_from(brokers: &[(&str, i32, &str)]) -> Vec<u8> {
        let brokers: serde_json::Map<String, serde_json::Value> = brokers
            .iter()
            .map(|(name, id, source)| {
                let broker = serde_json::json!({
                    "name": name, "nodeid": id, "nodename": name, "source": source, "state": "UP",
                    "stateage": 1, "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 0, "waitresp_msg_cnt": 0,
                    "tx": 1, "txbytes": 1, "txerrs": 2, "txretries": 0, "txidle": 0, "req_timeouts": 0, "rx": 1, "rxbytes": 1, "rxidle": 0,
                    "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "zbuf_grow": 0, "buf_grow": 0, "wakeups": 0,
                    "connects": 1, "disconnects": 0, "req": {}, "toppars": {}
                });
                ((*name).to_owned(), broker)
            })
            .collect();
        let json = serde_json::json!({
            "name": "p", "client_id": "c", "type": "producer", "ts": 1, "time": 1, "age": 1, "replyq": 0,
            "msg_cnt": 0, "msg_size": 0, "msg_max": 10, "msg_size_max": 10, "simple_cnt": 0,
            "metadata_cache_cnt": 1, "brokers": brokers, "topics": {}, "tx": 0, "tx_bytes": 0, "rx": 0,
            "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0
        });
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn a_broker_that_leaves_the_cluster_loses_its_series() {
        let registry = Registry::new();
        let health = Arc::new(Health::new(Duration::from_secs(3), 0.8));
        let context = Context::new(
            ClientMetrics::register(&registry).unwrap(),
            health,
            Arc::default(),
        );
        context.stats_raw(&stats_with(&[("b1:9092/1", 1), ("b2:9092/2", 2)]));
        let text = || String::from_utf8(crate::ingress::metrics::encode(&registry).1).unwrap();
        assert!(
            text().contains("bp_relay_kafka_broker_up{broker=\"b2:9092/2\"} 1"),
            "{}",
            text()
        );
        context.stats_raw(&stats_with(&[("b1:9092/1", 1)]));
        assert!(!text().contains("b2:9092/2"), "{}", text());
        assert!(
            text().contains("bp_relay_kafka_broker_tx_errors_total{broker=\"b1:9092/1\"} 2"),
            "{}",
            text()
        );
    }

    #[test]
    fn a_client_left_with_no_configured_or_learned_broker_is_brokerless() {
        let context = context();
        let known = context.brokers_known();
        assert!(
            known.load(Ordering::Relaxed),
            "known until statistics say otherwise"
        );
        context.stats_raw(&stats_from(&[(":0/internal", -1, "internal")]));
        assert!(!known.load(Ordering::Relaxed));
        context.stats_raw(&stats_with(&[]));
        assert!(!known.load(Ordering::Relaxed));
        context.stats_raw(&stats_from(&[("b1:9092/bootstrap", -1, "configured")]));
        assert!(known.load(Ordering::Relaxed));
        context.stats_raw(&stats_with(&[]));
        context.stats_raw(&stats_with(&[("b1:9092/1", 1)]));
        assert!(known.load(Ordering::Relaxed));
    }

    fn context() -> Context {
        let metrics = ClientMetrics::register(&Registry::new()).unwrap();
        Context::new(
            metrics,
            Arc::new(Health::new(Duration::from_secs(3), 0.8)),
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn every_client_error_wakes_the_supervisor() {
        let signal = Arc::new(Notify::new());
        let metrics = ClientMetrics::register(&Registry::new()).unwrap();
        let context = Context::new(
            metrics,
            Arc::new(Health::new(Duration::from_secs(3), 0.8)),
            signal.clone(),
        );
        context.error(
            KafkaError::Global(rdkafka::error::RDKafkaErrorCode::OutOfOrderSequenceNumber),
            "reason",
        );
        tokio::time::timeout(Duration::from_secs(1), signal.notified())
            .await
            .expect("a pending wake-up");
    }

    #[test]
    fn a_repeating_error_is_logged_once_per_interval_with_the_count_left_out() {
        let context = context();
        let start = Instant::now();
        assert_eq!(context.should_log("AllBrokersDown", start), Some(0));
        for second in 1..=5 {
            assert_eq!(
                context.should_log("AllBrokersDown", start + Duration::from_secs(second)),
                None
            );
        }
        assert_eq!(
            context.should_log("Resolve", start + Duration::from_secs(1)),
            Some(0),
            "another error is news"
        );
        assert_eq!(
            context.should_log("AllBrokersDown", start + ERROR_LOG_INTERVAL),
            Some(5)
        );
    }
}
