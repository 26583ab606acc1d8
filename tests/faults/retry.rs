//! Authvia's redrive as the matrix plays it (issue 17, item 3): Authvia retries every non-2xx
//! delivery, first within seconds, then for days. Here a signed delivery answered anything but
//! 2xx, or not answered, is sent again [`RETRY_DELAY`] after that answer; if that is not a 2xx
//! either, again once the window of its original signing has passed; then every
//! [`RETRY_BACKOFF`] until a 2xx. Half of the deliveries carry their first attempt's headers on
//! every retry, the other half are signed afresh each time ([`Signing`]).
//!
//! Bounded: a retry waits for one of [`RETRIES_IN_FLIGHT`] slots (an outage does not pile up
//! requests), a delivery is tried [`MAX_ATTEMPTS`] times at most, and none is retried later than
//! [`RETRY_TAIL`] after the load stopped (the fault healed before). A 401 ends a delivery's
//! retries: its headers only age, and a fresh signing must never get one (the verdict says so).
//! Unauthenticated deliveries are never retried.

use std::{
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::StatusCode;
use tokio::sync::Semaphore;

use crate::load::{post, Delivery, Entry, HttpClient, Signing};

/// The first retry, after the first answer.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Between later retries.
pub const RETRY_BACKOFF: Duration = Duration::from_secs(2);

/// `--signature-tolerance` of every relay of the matrix: short, so that "after the window" is
/// seconds away, and longer than `--ack-timeout` + [`RETRY_DELAY`], so that the first retry of a
/// delivery answered 503 at the deadline still falls inside its original signing's window.
pub const WINDOW: Duration = Duration::from_secs(6);

/// A retry "after the window" is sent this long after the window's end: the relay compares whole
/// seconds.
const PAST_WINDOW: Duration = Duration::from_secs(2);

/// Retries in flight at once, for the whole load.
pub const RETRIES_IN_FLIGHT: usize = 64;

/// Attempts per delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 30;

/// How long after [`crate::load::Load::stop`] deliveries are still retried.
pub const RETRY_TAIL: Duration = Duration::from_secs(20);

/// The retries of one load. Cheap to clone.
#[derive(Clone)]
pub struct Redrive {
    client: HttpClient,
    target: Arc<RwLock<String>>,
    ledger: Arc<Mutex<Vec<Entry>>>,
    stopped_at: Arc<OnceLock<Instant>>,
    slots: Arc<Semaphore>,
}

impl Redrive {
    pub fn new(
        client: HttpClient,
        target: Arc<RwLock<String>>,
        ledger: Arc<Mutex<Vec<Entry>>>,
        stopped_at: Arc<OnceLock<Instant>>,
    ) -> Redrive {
        Redrive {
            client,
            target,
            ledger,
            stopped_at,
            slots: Arc::new(Semaphore::new(RETRIES_IN_FLIGHT)),
        }
    }

    /// Notes `first` (a delivery's first attempt) in the ledger, then retries the delivery until
    /// it gets a 2xx, a 401, or the bounds end it; each retry is noted too.
    pub async fn follow(&self, first: Entry) {
        let mut last = first;
        loop {
            let next = next_attempt(&last, self.give_up_at());
            self.ledger.lock().unwrap().push(last.clone());
            let Some((at, signing)) = next else {
                return;
            };
            tokio::time::sleep_until(at.into()).await;
            let slot = self
                .slots
                .acquire()
                .await
                .expect("the semaphore stays open");
            let url = self.target.read().unwrap().clone();
            let delivery = last.delivery.clone();
            last = post(&self.client, &url, delivery, last.attempt + 1, signing).await;
            drop(slot);
        }
    }

    fn give_up_at(&self) -> Option<Instant> {
        self.stopped_at.get().map(|stopped| *stopped + RETRY_TAIL)
    }
}

/// When and how `last`'s delivery is tried next, if at all.
fn next_attempt(last: &Entry, give_up_at: Option<Instant>) -> Option<(Instant, Signing)> {
    if !last.delivery.signed || last.is_2xx() || last.status() == Some(StatusCode::UNAUTHORIZED) {
        return None;
    }
    if last.attempt + 1 >= MAX_ATTEMPTS {
        return None;
    }
    let at = match last.attempt {
        0 => last.answered + RETRY_DELAY,
        1 => (last.answered + RETRY_DELAY).max(window_end(&last.delivery)),
        _ => last.answered + RETRY_BACKOFF,
    };
    if give_up_at.is_some_and(|end| at > end) {
        return None;
    }
    Some((at, last.delivery.retry_signing))
}

/// The instant the window of `delivery`'s original signing is over (with a margin).
pub fn window_end(delivery: &Delivery) -> Instant {
    let end =
        UNIX_EPOCH + Duration::from_secs(delivery.signed_at.max(0) as u64) + WINDOW + PAST_WINDOW;
    let left = end
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

    fn answered(attempt: u32, status: Option<u16>, signing: Signing) -> Entry {
        let delivery = Delivery::new("k".into(), true).retried_with(signing);
        let now = Instant::now();
        Entry {
            delivery,
            attempt,
            signing: Signing::Original,
            sent: now,
            sent_at: SystemTime::now(),
            answered: now,
            outcome: match status {
                Some(status) => Outcome::Answered {
                    status: StatusCode::from_u16(status).unwrap(),
                    code: None,
                    ack: None,
                },
                None => Outcome::Lost("reset".into()),
            },
        }
    }

    #[test]
    fn a_503_or_a_lost_connection_is_retried_soon_then_after_the_window() {
        let first = answered(0, Some(503), Signing::Original);
        let (at, signing) = next_attempt(&first, None).expect("a retry");
        assert_eq!(
            (at, signing),
            (first.answered + RETRY_DELAY, Signing::Original)
        );
        let second = answered(1, None, Signing::Fresh);
        let (at, signing) = next_attempt(&second, None).expect("a retry");
        assert_eq!(signing, Signing::Fresh);
        assert!(at >= window_end(&second.delivery) - Duration::from_millis(50));
        assert!(at >= second.answered + WINDOW);
        let later = answered(5, Some(503), Signing::Fresh);
        assert_eq!(
            next_attempt(&later, None).map(|(at, _)| at),
            Some(later.answered + RETRY_BACKOFF)
        );
    }

    #[test]
    fn a_2xx_a_401_an_unsigned_delivery_and_the_bounds_end_the_retries() {
        assert!(next_attempt(&answered(0, Some(200), Signing::Fresh), None).is_none());
        assert!(next_attempt(&answered(1, Some(401), Signing::Original), None).is_none());
        let mut unsigned = answered(0, Some(401), Signing::Original);
        unsigned.delivery.signed = false;
        unsigned.outcome = Outcome::Lost("reset".into());
        assert!(next_attempt(&unsigned, None).is_none());
        let last = answered(MAX_ATTEMPTS - 1, Some(503), Signing::Fresh);
        assert!(next_attempt(&last, None).is_none());
        let late = answered(3, Some(503), Signing::Fresh);
        assert!(next_attempt(&late, Some(late.answered)).is_none());
        assert!(next_attempt(&late, Some(late.answered + RETRY_BACKOFF)).is_some());
    }
}
