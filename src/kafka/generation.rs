//! One producer and what its callbacks observed: a [`Generation`] serves until it fails fatally
//! and the supervisor replaces it with the next one.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, Producer, PurgeConfig},
    ClientConfig,
};
use tracing::warn;

use super::Context;

/// How long a retired producer waits for the last requests still holding it before it is
/// destroyed anyway (they have been answered 503 by the purge; this only bounds the wait).
const RETIRE_WAIT: Duration = Duration::from_secs(10);
const RETIRE_POLL: Duration = Duration::from_millis(50);

/// A producer, with the flags its context sets.
pub(super) struct Generation {
    pub(super) producer: FutureProducer<Context>,
    // Whether the last statistics saw a broker connection up.
    pub(super) any_broker_up: Arc<AtomicBool>,
    // Whether the last statistics listed any configured or learned broker.
    brokers_known: Arc<AtomicBool>,
    // The latest client error, as the context saw it.
    pub(super) last_error: Arc<Mutex<Option<String>>>,
    fatal: Arc<AtomicBool>,
}

impl Generation {
    /// Creates a producer (it connects lazily) with `context`.
    pub(super) fn build(config: &ClientConfig, context: Context) -> Result<Generation, KafkaError> {
        let any_broker_up = context.any_broker_up();
        let brokers_known = context.brokers_known();
        let fatal = context.fatal();
        let last_error = context.last_error();
        let producer = config.create_with_context(context)?;
        Ok(Generation {
            producer,
            any_broker_up,
            brokers_known,
            last_error,
            fatal,
        })
    }

    /// Whether this producer was found failed: it is being replaced.
    pub(super) fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::SeqCst)
    }

    /// librdkafka's fatal error, if the producer is in that state (every produce call fails from
    /// then on); marks the producer failed, so that its statistics no longer count.
    pub(super) fn check_fatal(&self) -> Option<(RDKafkaErrorCode, String)> {
        let error = self.producer.client().fatal_error()?;
        self.fatal.store(true, Ordering::SeqCst);
        Some(error)
    }

    /// Gives librdkafka `bootstrap` (the configured servers) again if its last statistics listed
    /// no broker at all; returns whether it did. librdkafka (2.10 and later) drops the brokers
    /// a metadata answer leaves out, and a broker shutting down can answer with none: the client
    /// is then left with no broker, and its own re-bootstrap can be cancelled by that same
    /// answer (librdkafka issue 5301), so it never connects again (1 of 45 measured outages of
    /// every broker, docs/reliability.md). Blocks briefly (a lock, a thread per broker added).
    pub(super) fn rebootstrap_if_brokerless(&self, bootstrap: &str) -> bool {
        if self.brokers_known.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(list) = std::ffi::CString::new(bootstrap) else {
            return false;
        };
        // SAFETY: the pointer is a live client handle (held by `self.producer` for the whole
        // call), and the list is a NUL-terminated string librdkafka copies. Servers it already
        // has are not added twice.
        #[allow(unsafe_code)]
        let added = unsafe {
            rdkafka::bindings::rd_kafka_brokers_add(
                self.producer.client().native_ptr(),
                list.as_ptr(),
            )
        };
        // Not again before the next statistics say whether that helped.
        self.brokers_known.store(true, Ordering::Relaxed);
        added > 0
    }

    /// Fails every record still queued or in flight at once, so each waiting request is
    /// answered 503 now rather than at its deadline, then destroys the producer on a blocking
    /// thread once no request holds it any more (destroying joins librdkafka's threads).
    pub(super) fn retire(self: Arc<Self>) {
        tokio::task::spawn_blocking(move || {
            // On the blocking thread too: a purge waits for librdkafka's broker threads to let
            // go of their queues, which a runtime thread must never do.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let give_up = std::time::Instant::now() + RETIRE_WAIT;
            while Arc::strong_count(&self) > 1 && std::time::Instant::now() < give_up {
                std::thread::sleep(RETIRE_POLL);
            }
            if Arc::strong_count(&self) > 1 {
                warn!("A retired Kafka producer is still held after {RETIRE_WAIT:?}; it is destroyed with its last holder.");
            }
        });
    }
}
