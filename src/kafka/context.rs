//! librdkafka callbacks: statistics feed the queue and broker metrics and readiness; client
//! errors are logged as structured events.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use rdkafka::{
    error::KafkaError,
    statistics::{Broker, Statistics},
    ClientContext,
};
use tracing::warn;

use crate::{health::Health, metrics::Metrics};

/// The producer's context: owns nothing but handles to shared state.
pub struct Context {
    metrics: Metrics,
    health: Arc<Health>,
    // librdkafka reports cumulative counters; Prometheus counters take increments.
    last_counters: Mutex<HashMap<String, [u64; 3]>>,
}

impl Context {
    /// A context reporting into `metrics` and `health`.
    pub fn new(metrics: Metrics, health: Arc<Health>) -> Self {
        Self { metrics, health, last_counters: Mutex::new(HashMap::new()) }
    }

    fn record_queue(&self, stats: &Statistics) {
        let m = &self.metrics;
        m.queue_messages.set(stats.msg_cnt as i64);
        m.queue_bytes.set(stats.msg_size as i64);
        m.queue_max_messages.set(stats.msg_max as i64);
        m.queue_max_bytes.set(stats.msg_size_max as i64);
        let fill = |used: u64, max: u64| if max == 0 { 0.0 } else { used as f64 / max as f64 };
        self.health
            .set_queue_fill(fill(stats.msg_cnt, stats.msg_max).max(fill(stats.msg_size, stats.msg_size_max)));
    }

    fn record_broker(&self, broker: &Broker) {
        let m = &self.metrics;
        let name = broker.name.as_str();
        m.broker_up.with_label_values(&[name]).set(i64::from(broker.state == "UP"));
        if let Some(rtt) = &broker.rtt {
            m.broker_rtt.with_label_values(&[name]).set(rtt.avg as f64 / 1e6);
        }
        let now = [broker.txerrs, broker.txretries, broker.req_timeouts];
        let Ok(mut last_counters) = self.last_counters.lock() else { return };
        let last = last_counters.insert(name.to_owned(), now).unwrap_or([0; 3]);
        let counters = [&m.broker_tx_errors, &m.broker_tx_retries, &m.broker_request_timeouts];
        for ((counter, now), last) in counters.into_iter().zip(now).zip(last) {
            counter.with_label_values(&[name]).inc_by(now.saturating_sub(last));
        }
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        self.record_queue(&stats);
        // Bootstrap entries (node id -1) stand for configured addresses, not cluster members.
        let members = stats.brokers.values().filter(|broker| broker.nodeid >= 0);
        let mut any_up = false;
        for broker in members {
            any_up |= broker.state == "UP";
            self.record_broker(broker);
        }
        if any_up {
            self.health.broker_seen_up(Instant::now());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(%error, reason, "Kafka client error.");
    }
}
