//! What the ingress needs from a publisher, as a small trait with the words of its answers
//! (where a record landed, why it did not): [`crate::kafka::Publisher`] in production,
//! [`Memory`] in handler tests and in the benchmark of the HTTP side alone. Nothing here knows
//! librdkafka.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use crate::ingress::record::Record;

/// Why a record did not reach Kafka (a closed set: metric label and error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No acknowledgement before the deadline while a broker was up (broker slow).
    Timeout,
    /// The producer queue is full: back-pressure.
    QueueFull,
    /// Connection, leadership or replication trouble that retrying can cure, including no
    /// acknowledgement before the deadline while no broker was up.
    Transport,
    /// The broker refused our credentials or ACLs.
    Authorization,
    /// The record exceeds a size limit of the producer, broker or topic.
    MessageTooLarge,
    /// The topic does not exist.
    UnknownTopic,
    /// Anything else.
    Other,
}

impl FailureReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [FailureReason; 7] = [
        Self::Timeout,
        Self::QueueFull,
        Self::Transport,
        Self::Authorization,
        Self::MessageTooLarge,
        Self::UnknownTopic,
        Self::Other,
    ];

    /// The stable code: the answer's `code` and the metric's `reason` label.
    pub fn code(self) -> &'static str {
        match self {
            Self::Timeout => "kafka_timeout",
            Self::QueueFull => "kafka_queue_full",
            Self::Transport => "kafka_unavailable",
            Self::Authorization => "kafka_authorization",
            Self::MessageTooLarge => "kafka_message_too_large",
            Self::UnknownTopic => "kafka_unknown_topic",
            Self::Other => "kafka_error",
        }
    }

    /// Whether a retry by the sender can succeed without an operator fixing something.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Timeout | Self::QueueFull | Self::Transport)
    }
}

/// A record that did not reach Kafka.
#[derive(Debug, thiserror::Error)]
#[error("record not published ({})", reason.code())]
pub struct PublishError {
    pub reason: FailureReason,
    /// The producer's error, when there was one (none for our own deadline).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PublishError {
    /// A failure without an error from the producer (our own deadline, an in-memory publisher).
    pub fn because(reason: FailureReason) -> Self {
        Self {
            reason,
            source: None,
        }
    }

    /// A failure the producer reported with `source`, classified as `reason`.
    pub fn caused_by(
        reason: FailureReason,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            reason,
            source: Some(Box::new(source)),
        }
    }
}

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A record the broker did not acknowledge before the answer's deadline, and, when the producer
/// still holds it, the report of its fate that is yet to come.
pub struct Unacknowledged {
    /// Why the answer is not 2xx.
    pub error: PublishError,
    /// The record's own report, still to come: it may land after all.
    pub report: Option<LateReport>,
}

impl From<PublishError> for Unacknowledged {
    fn from(error: PublishError) -> Self {
        Self {
            error,
            report: None,
        }
    }
}

/// The fate of a record whose request was answered 5xx, as the producer finally reports it.
pub type LateReport = Pin<Box<dyn Future<Output = Fate> + Send>>;

/// What became of a record after its request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The broker acknowledged it after all: it is in Kafka, here.
    Landed(Delivered),
    /// It is not in Kafka.
    Failed,
    /// The producer gave up waiting for the broker's answer: it may or may not have landed.
    TimedOut,
}

impl Fate {
    /// Every outcome label, for pre-registering metric series (with `untracked`: a report
    /// the relay did not wait for).
    pub const LABELS: [&'static str; 4] = ["landed", "failed", "timed_out", "untracked"];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Landed(_) => "landed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Publishes records and reports where they landed, once they are durable.
pub trait Publish: Send + Sync + 'static {
    /// Sends `record` to `topic` and waits for it to be durable, until `deadline` at most.
    fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> impl Future<Output = Result<Delivered, Unacknowledged>> + Send;

    /// Waits up to `timeout` until nothing is queued; returns whether everything was delivered.
    fn flush(&self, timeout: Duration) -> impl Future<Output = bool> + Send;
}

/// A publisher that answers at once, with increasing offsets on partition 0, optionally
/// keeping what it was given, failing every record with a chosen reason, or holding every
/// record's acknowledgement past the answer until [`Memory::land_held`].
#[derive(Default)]
pub struct Memory {
    landed: Arc<Landed>,
    failing: Mutex<Option<FailureReason>>,
    // While set, records land only after their answer: when the sender says so.
    held: Mutex<Option<watch::Sender<bool>>>,
}

/// The records that landed, shared with the reports of held ones.
#[derive(Default)]
struct Landed {
    next_offset: AtomicI64,
    keep: bool,
    kept: Mutex<Vec<(String, Record)>>,
}

impl Landed {
    fn land(&self, topic: &str, record: Record) -> Delivered {
        let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
        if self.keep {
            if let Ok(mut kept) = self.kept.lock() {
                kept.push((topic.to_owned(), record));
            }
        }
        Delivered {
            partition: 0,
            offset,
        }
    }
}

impl Memory {
    /// Keeps every published record, for [`Memory::published`].
    pub fn keeping() -> Self {
        Self {
            landed: Arc::new(Landed {
                keep: true,
                ..Landed::default()
            }),
            ..Self::default()
        }
    }

    /// Keeps nothing: memory stays flat under any load (the HTTP-side benchmark).
    pub fn discarding() -> Self {
        Self::default()
    }

    /// Fails every record from now on with `reason`, or succeeds again with `None`.
    pub fn fail_with(&self, reason: Option<FailureReason>) {
        if let Ok(mut failing) = self.failing.lock() {
            *failing = reason;
        }
    }

    /// From now on every record's acknowledgement comes after its request was answered 503
    /// `kafka_timeout`: the record lands (is kept, with its offset) when [`Memory::land_held`]
    /// is called, as a record does whose broker answered late.
    pub fn hold_acknowledgements(&self) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(watch::channel(false).0);
        }
    }

    /// Lands every held record, and acknowledges at once again from now on.
    pub fn land_held(&self) {
        if let Some(sender) = self.held.lock().ok().and_then(|mut held| held.take()) {
            sender.send_replace(true);
        }
    }

    /// The (topic, record) pairs published so far, oldest first.
    pub fn published(&self) -> Vec<(String, Record)> {
        self.landed
            .kept
            .lock()
            .map(|kept| kept.clone())
            .unwrap_or_default()
    }
}

impl Publish for Memory {
    async fn publish(
        &self,
        topic: &str,
        record: Record,
        _deadline: Instant,
    ) -> Result<Delivered, Unacknowledged> {
        if let Some(reason) = self.failing.lock().ok().and_then(|failing| *failing) {
            return Err(PublishError::because(reason).into());
        }
        let held = self
            .held
            .lock()
            .ok()
            .and_then(|held| held.as_ref().map(watch::Sender::subscribe));
        let Some(mut landing) = held else {
            return Ok(self.landed.land(topic, record));
        };
        let landed = self.landed.clone();
        let topic = topic.to_owned();
        let report: LateReport = Box::pin(async move {
            match landing.wait_for(|landed| *landed).await {
                Ok(_) => Fate::Landed(landed.land(&topic, record)),
                // Dropped without landing (the publisher went away): nothing was written.
                Err(_) => Fate::Failed,
            }
        });
        Err(Unacknowledged {
            error: PublishError::because(FailureReason::Timeout),
            report: Some(report),
        })
    }

    async fn flush(&self, _timeout: Duration) -> bool {
        true
    }
}
