//! What the ingress needs from a publisher, as a small trait: [`crate::kafka::Publisher`] in
//! production, [`Memory`] in handler tests and in the benchmark of the HTTP side alone.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    kafka::{self, Delivered, FailureReason, PublishError},
    record::Record,
};

/// Publishes records and reports where they landed, once they are durable.
pub trait Publish: Send + Sync + 'static {
    /// Sends `record` to `topic` and waits for it to be durable, until `deadline` at most.
    fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> impl Future<Output = Result<Delivered, PublishError>> + Send;

    /// Waits up to `timeout` until nothing is queued; returns whether everything was delivered.
    fn flush(&self, timeout: Duration) -> impl Future<Output = bool> + Send;
}

impl Publish for kafka::Publisher {
    fn publish(
        &self,
        topic: &str,
        record: Record,
        deadline: Instant,
    ) -> impl Future<Output = Result<Delivered, PublishError>> + Send {
        kafka::Publisher::publish(self, topic, record, deadline)
    }

    async fn flush(&self, timeout: Duration) -> bool {
        kafka::Publisher::flush(self, timeout).await.is_ok()
    }
}

/// A publisher that answers at once, with increasing offsets on partition 0, optionally
/// keeping what it was given or failing every record with a chosen reason.
#[derive(Default)]
pub struct Memory {
    next_offset: AtomicI64,
    keep: bool,
    kept: Mutex<Vec<(String, Record)>>,
    failing: Mutex<Option<FailureReason>>,
}

impl Memory {
    /// Keeps every published record, for [`Memory::published`].
    pub fn keeping() -> Self {
        Self {
            keep: true,
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

    /// The (topic, record) pairs published so far, oldest first.
    pub fn published(&self) -> Vec<(String, Record)> {
        self.kept
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
    ) -> Result<Delivered, PublishError> {
        if let Some(reason) = self.failing.lock().ok().and_then(|failing| *failing) {
            return Err(PublishError::because(reason));
        }
        let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
        if self.keep {
            if let Ok(mut kept) = self.kept.lock() {
                kept.push((topic.to_owned(), record));
            }
        }
        Ok(Delivered {
            partition: 0,
            offset,
        })
    }

    async fn flush(&self, _timeout: Duration) -> bool {
        true
    }
}
