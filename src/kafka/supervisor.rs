//! Recovery from fatal producer errors. After one (out-of-order sequence, unknown producer id
//! with requests in flight, an authorization failure on InitProducerId, ...) librdkafka fails
//! every produce call of that producer for good. The supervisor replaces it with a fresh one and
//! gives up, so that the pod is restarted, when that keeps happening.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::{error, info};

use super::{generation::Generation, Publisher};

/// At most this many replacements within [`RESTART_WINDOW`]; one more means giving up.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(600);
/// Pause before building again when librdkafka refused to build a producer.
const REBUILD_BACKOFF: Duration = Duration::from_secs(1);

/// The producer kept failing fatally; only a restart of the process can help now.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Kafka producer failed fatally more than {MAX_RESTARTS} times within {}; giving up",
    humantime::format_duration(RESTART_WINDOW)
)]
pub struct ProducerGaveUp;

impl Publisher {
    /// Replaces the producer each time it fails fatally, until that happens more than
    /// [`MAX_RESTARTS`] times within [`RESTART_WINDOW`]. Runs as long as the relay does.
    pub async fn supervise(self) -> ProducerGaveUp {
        let mut restarts: VecDeque<Instant> = VecDeque::new();
        loop {
            // Any client error, or a produce call that failed with `Fatal`.
            self.shared.error_signal.notified().await;
            let failed = self.shared.current.load_full();
            let Some((code, reason)) = failed.check_fatal() else {
                continue;
            };
            self.shared.metrics.fatal_errors.inc();
            self.shared.health.producer_failed();
            error!(code = ?code, reason, "The Kafka producer failed fatally; replacing it.");
            let now = Instant::now();
            restarts.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
            if restarts.len() >= MAX_RESTARTS {
                return ProducerGaveUp;
            }
            restarts.push_back(now);
            let Some(fresh) = self.build_generation_with_retries().await else {
                return ProducerGaveUp;
            };
            self.shared.current.store(fresh);
            self.shared.metrics.producer_restarts.inc();
            failed.retire();
            info!(
                "A new Kafka producer is in place; the relay is ready again once it sees a broker."
            );
        }
    }

    /// A new producer with the same settings. Building fails only if librdkafka cannot start
    /// (threads, memory): it is tried [`MAX_RESTARTS`] times, [`REBUILD_BACKOFF`] apart.
    async fn build_generation_with_retries(&self) -> Option<Arc<Generation>> {
        for attempt in 1..=MAX_RESTARTS {
            match self.build_generation() {
                Ok(generation) => return Some(generation),
                Err(error) => {
                    error!(%error, attempt, "Cannot build a new Kafka producer.");
                    tokio::time::sleep(REBUILD_BACKOFF).await;
                }
            }
        }
        None
    }
}

/// Against the real broker (feature `kafka-tests`); the fatal errors are injected, as no
/// broker makes librdkafka's idempotence give up on demand.
#[cfg(all(test, feature = "kafka-tests"))]
mod tests {
    use prometheus::Registry;
    use rdkafka::ClientConfig;

    use super::*;
    use crate::{
        health::{Health, NotReady},
        kafka::{test_broker, ClientMetrics},
    };

    /// Waits (at most 10 s) until `condition` holds.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} within 10 s"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_producer_is_replaced_until_it_fails_too_often() {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", test_broker::bootstrap())
            .set("enable.idempotence", "true");
        let metrics = ClientMetrics::register(&Registry::new()).unwrap();
        let health = Arc::new(Health::new(Duration::from_secs(3), 0.8));
        let publisher = Publisher::build(&config, metrics.clone(), health.clone()).unwrap();
        let supervisor = tokio::spawn(publisher.clone().supervise());

        for restart in 1..=MAX_RESTARTS as u64 {
            publisher.inject_fatal_error();
            until("a replacement", || {
                metrics.producer_restarts.get() == restart
            })
            .await;
            assert_eq!(metrics.fatal_errors.get(), restart);
        }
        assert!(
            !supervisor.is_finished(),
            "{MAX_RESTARTS} replacements are within the budget"
        );
        publisher.inject_fatal_error();
        let _gave_up: ProducerGaveUp = tokio::time::timeout(Duration::from_secs(10), supervisor)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            metrics.producer_restarts.get(),
            MAX_RESTARTS as u64,
            "no replacement beyond the budget"
        );
        assert!(health
            .check(std::time::Instant::now())
            .contains(&NotReady::ProducerFailed));
    }
}
