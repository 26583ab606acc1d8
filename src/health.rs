//! Readiness: whether this pod should receive webhooks now.
//!
//! Ready means a delivery sent here can be made durable: not draining, a broker connection was up
//! and a broker answered a request within the last `broker_down_grace`, the producer queue is
//! below its high-water mark, the producer has not failed fatally (or its replacement has
//! seen a broker), and a shared replay store, if configured, answers. Both broker signals count: a broker that keeps its connections open
//! but answers nothing (a paused process, a network black hole) stays "up" to the client.
//! Liveness (`/healthz`) is deliberately not here: it never depends on Kafka, or an outage
//! would make Kubernetes restart every pod for nothing.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Why the relay is not ready (closed set, listed by `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Shutdown has begun.
    Draining,
    /// No broker connection has been up within the grace period.
    NoBroker,
    /// The producer queue is above its high-water mark.
    QueueHigh,
    /// The producer hit a fatal error; its replacement has not seen a broker yet.
    ProducerFailed,
    /// The shared replay store did not answer its last probe, or refused the guard's command.
    ReplayStoreDown,
    /// Startup has not yet confirmed the topics (no broker has answered yet).
    Starting,
    /// The brokers answer, but topics the relay writes to do not exist (yet).
    TopicsMissing,
    /// A topic is less durable than the cluster allows (replication, min.insync.replicas,
    /// unclean leader election).
    TopicsNotDurable,
}

impl NotReady {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::NoBroker => "no_broker",
            Self::QueueHigh => "queue_high",
            Self::ProducerFailed => "producer_failed",
            Self::ReplayStoreDown => "replay_store_down",
            Self::Starting => "starting",
            Self::TopicsMissing => "topics_missing",
            Self::TopicsNotDurable => "topics_not_durable",
        }
    }
}

/// How far startup got in confirming the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Startup {
    Checking,
    TopicsMissing(Vec<String>),
    Done,
}

/// Shared readiness state, written by shutdown and the producer's statistics.
pub struct Health {
    draining: AtomicBool,
    startup: Mutex<Startup>,
    // Whether `startup` is Done, for the request path: read by every delivery, written with
    // `startup` only (in `set_startup`).
    started: AtomicBool,
    producer_failed: AtomicBool,
    // False while a configured shared replay store does not answer; true without one.
    replay_store_up: AtomicBool,
    // Why the store cannot serve as the guard, while it cannot.
    replay_store_problem: Mutex<Option<String>>,
    // How the topics fall short of the durability required, one line each.
    not_durable: Mutex<Vec<String>>,
    broker_last_up: Mutex<Option<Instant>>,
    // Since when a request to the brokers has gone unanswered; `None` while they answer.
    broker_unanswered_since: Mutex<Option<Instant>>,
    broker_down_grace: Duration,
    // Queue fill in parts per million, so it fits an atomic.
    queue_fill_ppm: AtomicU64,
    high_water_ppm: u64,
}

impl Health {
    /// Readiness with these thresholds; no broker has been seen yet.
    pub fn new(broker_down_grace: Duration, queue_high_water: f64) -> Self {
        Self {
            draining: AtomicBool::new(false),
            // A relay without Kafka (the HTTP bound) has nothing to confirm.
            startup: Mutex::new(Startup::Done),
            started: AtomicBool::new(true),
            producer_failed: AtomicBool::new(false),
            replay_store_up: AtomicBool::new(true),
            replay_store_problem: Mutex::new(None),
            not_durable: Mutex::new(Vec::new()),
            broker_last_up: Mutex::new(None),
            broker_unanswered_since: Mutex::new(None),
            broker_down_grace,
            queue_fill_ppm: AtomicU64::new(0),
            high_water_ppm: (queue_high_water * 1e6) as u64,
        }
    }

    /// Shutdown has begun: readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Startup is confirming the topics: not ready until it has.
    pub fn startup_checking(&self) {
        self.set_startup(Startup::Checking);
    }

    /// The brokers answered, and these topics are missing.
    pub fn topics_missing(&self, missing: Vec<String>) {
        self.set_startup(Startup::TopicsMissing(missing));
    }

    /// Every topic exists: startup is complete.
    pub fn startup_done(&self) {
        self.set_startup(Startup::Done);
    }

    /// Whether startup confirmed the topics: deliveries are let in.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn set_startup(&self, startup: Startup) {
        let started = matches!(startup, Startup::Done);
        if let Ok(mut current) = self.startup.lock() {
            *current = startup;
        }
        self.started.store(started, Ordering::Release);
    }

    /// The topics startup found missing, for `/readyz`.
    pub fn missing_topics(&self) -> Vec<String> {
        match self.startup.lock().as_deref() {
            Ok(Startup::TopicsMissing(missing)) => missing.clone(),
            _ => Vec::new(),
        }
    }

    /// The producer hit a fatal error: it cannot publish until it is replaced.
    pub fn producer_failed(&self) {
        self.producer_failed.store(true, Ordering::SeqCst);
    }

    /// A producer that has not failed saw a broker connection up.
    pub fn producer_recovered(&self) {
        self.producer_failed.store(false, Ordering::SeqCst);
    }

    /// Whether the shared replay store answered its last probe, and if not, why not.
    pub fn set_replay_store(&self, problem: Option<String>) {
        self.replay_store_up
            .store(problem.is_none(), Ordering::SeqCst);
        if let Ok(mut current) = self.replay_store_problem.lock() {
            *current = problem;
        }
    }

    /// Why the shared replay store cannot serve as the guard now, for `/readyz`.
    pub fn replay_store_problem(&self) -> Option<String> {
        self.replay_store_problem
            .lock()
            .ok()
            .and_then(|problem| problem.clone())
    }

    /// How the topics fall short of the durability required (empty: they do not).
    pub fn set_not_durable(&self, shortfalls: Vec<String>) {
        if let Ok(mut current) = self.not_durable.lock() {
            *current = shortfalls;
        }
    }

    /// How the topics fall short of the durability required, for `/readyz`.
    pub fn not_durable(&self) -> Vec<String> {
        self.not_durable
            .lock()
            .map(|shortfalls| shortfalls.clone())
            .unwrap_or_default()
    }

    /// A broker connection was seen up at `at`.
    pub fn broker_seen_up(&self, at: Instant) {
        if let Ok(mut last) = self.broker_last_up.lock() {
            *last = Some(at);
        }
    }

    /// A broker answered a request.
    pub fn broker_answered(&self) {
        if let Ok(mut since) = self.broker_unanswered_since.lock() {
            *since = None;
        }
    }

    /// A request sent at `sent` went unanswered (the first such time is kept until an answer).
    pub fn broker_unanswered(&self, sent: Instant) {
        if let Ok(mut since) = self.broker_unanswered_since.lock() {
            since.get_or_insert(sent);
        }
    }

    /// The fuller of the queue's record and byte fill, as a fraction of capacity.
    pub fn set_queue_fill(&self, fill: f64) {
        self.queue_fill_ppm
            .store((fill.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Every reason the relay is not ready at `now`; empty when ready.
    pub fn check(&self, now: Instant) -> Vec<NotReady> {
        let mut reasons = Vec::new();
        if self.is_draining() {
            reasons.push(NotReady::Draining);
        }
        match self.startup.lock().as_deref() {
            Ok(Startup::Checking) => reasons.push(NotReady::Starting),
            Ok(Startup::TopicsMissing(_)) => reasons.push(NotReady::TopicsMissing),
            _ => {}
        }
        let within_grace =
            |at: Instant| now.saturating_duration_since(at) <= self.broker_down_grace;
        let connected = self
            .broker_last_up
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(within_grace);
        let answering = self
            .broker_unanswered_since
            .lock()
            .ok()
            .and_then(|since| *since)
            .is_none_or(within_grace);
        if !(connected && answering) {
            reasons.push(NotReady::NoBroker);
        }
        if self.queue_fill_ppm.load(Ordering::Relaxed) > self.high_water_ppm {
            reasons.push(NotReady::QueueHigh);
        }
        if self.producer_failed.load(Ordering::SeqCst) {
            reasons.push(NotReady::ProducerFailed);
        }
        if !self.replay_store_up.load(Ordering::SeqCst) {
            reasons.push(NotReady::ReplayStoreDown);
        }
        if self
            .not_durable
            .lock()
            .is_ok_and(|shortfalls| !shortfalls.is_empty())
        {
            reasons.push(NotReady::TopicsNotDurable);
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(Duration::from_secs(3), 0.8)
    }

    fn healthy_broker(health: &Health, at: Instant) {
        health.broker_seen_up(at);
        health.broker_answered();
    }

    #[test]
    fn not_ready_until_a_broker_is_seen() {
        let health = health();
        let now = Instant::now();
        assert_eq!(health.check(now), [NotReady::NoBroker]);
        healthy_broker(&health, now);
        assert!(health.check(now).is_empty());
    }

    #[test]
    fn broker_unseen_beyond_the_grace_makes_it_unready() {
        let health = health();
        let then = Instant::now();
        healthy_broker(&health, then);
        assert!(health.check(then + Duration::from_secs(3)).is_empty());
        assert_eq!(
            health.check(then + Duration::from_secs(4)),
            [NotReady::NoBroker]
        );
    }

    #[test]
    fn a_connected_broker_that_stops_answering_makes_it_unready() {
        let health = health();
        let then = Instant::now();
        healthy_broker(&health, then);
        // The connection still reports up, but a request sent at `then` + 1 s is unanswered.
        health.broker_unanswered(then + Duration::from_secs(1));
        health.broker_unanswered(then + Duration::from_secs(3));
        health.broker_seen_up(then + Duration::from_secs(4));
        assert!(
            health.check(then + Duration::from_secs(4)).is_empty(),
            "within the grace"
        );
        health.broker_seen_up(then + Duration::from_secs(5));
        assert_eq!(
            health.check(then + Duration::from_secs(5)),
            [NotReady::NoBroker],
            "unanswered since 1 s, for 4 s"
        );
        health.broker_answered();
        assert!(health.check(then + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn draining_and_a_full_queue_are_reported() {
        let health = health();
        let now = Instant::now();
        healthy_broker(&health, now);
        health.set_queue_fill(0.81);
        health.start_draining();
        assert_eq!(health.check(now), [NotReady::Draining, NotReady::QueueHigh]);
    }

    #[test]
    fn not_ready_while_startup_checks_or_misses_topics() {
        let health = health();
        let now = Instant::now();
        healthy_broker(&health, now);
        health.startup_checking();
        assert_eq!(health.check(now), [NotReady::Starting]);
        health.topics_missing(vec!["t".into()]);
        assert_eq!(health.check(now), [NotReady::TopicsMissing]);
        assert_eq!(health.missing_topics(), ["t"]);
        health.startup_done();
        assert!(health.check(now).is_empty());
        assert!(health.missing_topics().is_empty());
    }

    #[test]
    fn a_failed_producer_is_unready_until_its_replacement_sees_a_broker() {
        let health = health();
        let now = Instant::now();
        healthy_broker(&health, now);
        health.producer_failed();
        assert_eq!(health.check(now), [NotReady::ProducerFailed]);
        health.producer_recovered();
        assert!(health.check(now).is_empty());
    }
}
