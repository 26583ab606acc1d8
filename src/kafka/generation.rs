//! One producer and what its callbacks observed: a [`Generation`] serves until it fails fatally
//! and the supervisor replaces it with the next one.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, Producer, PurgeConfig},
    ClientConfig,
};
use tokio::sync::Notify;
use tracing::warn;

use super::{wakeup::Wakeup, Context};

/// How long a retired producer waits for the last requests still holding it before it is
/// destroyed anyway (they have been answered 503 by the purge; this only bounds the wait).
const RETIRE_WAIT: Duration = Duration::from_secs(10);
const RETIRE_POLL: Duration = Duration::from_millis(50);

/// Events served from the main queue before the serving task lets other tasks run.
const SERVE_BATCH: usize = 64;
/// The serving task looks at least this often whether its producer is gone, so that it ends.
const SERVE_IDLE_CHECK: Duration = Duration::from_millis(500);

/// A producer, with the flags its context sets.
pub(super) struct Generation {
    // Declared first, so dropped first: librdkafka wants its queue handles gone before the
    // client is destroyed.
    wakeup: Wakeup,
    pub(super) producer: BaseProducer<Context>,
    // Whether the last statistics saw a broker connection up.
    pub(super) any_broker_up: Arc<AtomicBool>,
    // Whether the last statistics listed any configured or learned broker.
    brokers_known: Arc<AtomicBool>,
    // The latest client error, as the context saw it.
    pub(super) last_error: Arc<Mutex<Option<String>>>,
    fatal: Arc<AtomicBool>,
}

impl Generation {
    /// Creates a producer (it connects lazily) with `context`, and the task that serves its
    /// delivery reports on the current runtime. Outside a runtime (`check-config`) nothing
    /// serves them: such a producer is only built to check the configuration.
    pub(super) fn build(
        config: &ClientConfig,
        context: Context,
    ) -> Result<Arc<Generation>, KafkaError> {
        let any_broker_up = context.any_broker_up();
        let brokers_known = context.brokers_known();
        let fatal = context.fatal();
        let last_error = context.last_error();
        let producer: BaseProducer<Context> = config.create_with_context(context)?;
        // SAFETY: the client handle is live; `Generation` drops the wake-up before the
        // producer.
        #[allow(unsafe_code)]
        let wakeup = unsafe { Wakeup::register(producer.client().native_ptr()) };
        let generation = Arc::new(Generation {
            wakeup,
            producer,
            any_broker_up,
            brokers_known,
            last_error,
            fatal,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(Generation::serve_reports(
                Arc::downgrade(&generation),
                generation.wakeup.wakeups(),
            ));
        }
        Ok(generation)
    }

    /// Serves the producer's main queue whenever librdkafka signals it, for as long as the
    /// producer lives: delivery reports (each answers its request), statistics and errors.
    /// Holds the producer only while serving, so that retiring it is not held up.
    async fn serve_reports(generation: Weak<Generation>, wakeups: Arc<Notify>) {
        loop {
            let Some(current) = generation.upgrade() else {
                return;
            };
            let emptied = current.serve_batch();
            Generation::release(current);
            if emptied {
                // Bounded, so that the task ends soon after its producer did.
                let _ = tokio::time::timeout(SERVE_IDLE_CHECK, wakeups.notified()).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Serves up to [`SERVE_BATCH`] events; whether the queue is empty now. One poll serves
    /// one event (a delivery report covers a batch of records). Each poll of a non-empty queue
    /// takes at least one entry off it (librdkafka dequeues every op it pops, outdated ones
    /// included, before handling it), so a queue that stays non-empty is one that keeps
    /// receiving work, never an entry left behind that would keep this task spinning.
    fn serve_batch(&self) -> bool {
        for _ in 0..SERVE_BATCH {
            if self.wakeup.is_empty() {
                return true;
            }
            self.producer.poll(Duration::ZERO);
        }
        self.wakeup.is_empty()
    }

    /// Lets go of a generation on the runtime: if it was the last holder, the producer is
    /// destroyed on a blocking thread (destroying flushes and joins librdkafka's threads).
    fn release(generation: Arc<Generation>) {
        if let Some(last) = Arc::into_inner(generation) {
            tokio::task::spawn_blocking(move || drop(last));
        }
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

/// Against the real broker (feature `kafka-tests`).
#[cfg(all(test, feature = "kafka-tests"))]
mod tests {
    use prometheus::Registry;
    use rdkafka::producer::BaseRecord;
    use tokio::sync::oneshot;

    use super::*;
    use crate::{
        health::Health,
        kafka::{test_broker, ClientMetrics},
    };

    const WITHIN: Duration = Duration::from_secs(10);

    /// A producer with the relay's delivery guarantees, built in the calling context (inside a
    /// runtime, a task serves its reports; outside, nothing does).
    fn build() -> Arc<Generation> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", test_broker::bootstrap())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0");
        let context = Context::new(
            ClientMetrics::register(&Registry::new()).unwrap(),
            Arc::new(Health::new(Duration::from_secs(3), 0.8)),
            Arc::new(Notify::new()),
        );
        Generation::build(&config, context).unwrap()
    }

    /// Sends one record to `topic` whose report goes to the returned receiver.
    fn send(
        generation: &Generation,
        topic: &str,
    ) -> oneshot::Receiver<super::super::context::Report> {
        let (report_to, report) = oneshot::channel();
        generation
            .producer
            .send(
                BaseRecord::<str, str, _>::with_opaque_to(topic, Box::new(report_to)).payload("{}"),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        report
    }

    /// No task serves a producer built outside a runtime: each report must come through a
    /// wake-up of its own, the queue going from empty to non-empty again after being served.
    #[test]
    fn every_report_wakes_whoever_serves_the_queue() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let topic = runtime.block_on(test_broker::fresh_topic("wakeup"));
        let generation = build();
        let wakeups = generation.wakeup.wakeups();
        for round in 0..5 {
            let mut report = send(&generation, &topic);
            let served = async {
                loop {
                    wakeups.notified().await;
                    while !generation.serve_batch() {}
                    if let Ok(report) = report.try_recv() {
                        return report;
                    }
                }
            };
            let landed = runtime.block_on(async { tokio::time::timeout(WITHIN, served).await });
            let landed =
                landed.unwrap_or_else(|_| panic!("round {round}: no wake-up served the report"));
            assert_eq!(landed.unwrap().offset, round, "the records land in order");
        }
    }

    /// The serving task answers reports while the producer lives, holds it only while serving,
    /// and ends after it is gone.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_serving_task_answers_reports_and_ends_with_its_producer() {
        let topic = test_broker::fresh_topic("serving").await;
        let generation = build();
        // More reports than one turn of the task serves.
        let reports: Vec<_> = (0..3 * SERVE_BATCH)
            .map(|_| send(&generation, &topic))
            .collect();
        for report in reports {
            let landed = tokio::time::timeout(WITHIN, report).await;
            assert!(matches!(landed, Ok(Ok(Ok(_)))), "{landed:?}");
        }
        let wakeups = generation.wakeup.wakeups();
        let held = Arc::downgrade(&generation);
        tokio::task::spawn_blocking(move || drop(generation))
            .await
            .unwrap();
        tokio::time::timeout(WITHIN, async {
            // The task holds the other reference to the wake-ups until it ends.
            while held.upgrade().is_some() || Arc::strong_count(&wakeups) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the producer is destroyed and its serving task ends");
    }
}
