//! What the ingress needs from a publisher, as a small trait: [`crate::kafka::Publisher`] in
//! production, [`Memory`] in handler tests and in the benchmark of the HTTP side alone.

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

use crate::{
    kafka::{self, Delivered, FailureReason, PublishError},
    record::Record,
};

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

impl Publish for kafka::Publisher {
    fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> impl Future<Output = Result<Delivered, Unacknowledged>> + Send {
        kafka::Publisher::publish(self, topic, record, deadline)
    }

    async fn flush(&self, timeout: Duration) -> bool {
        kafka::Publisher::flush(self, timeout).await.is_ok()
    }
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
