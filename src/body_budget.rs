//! The budget of request body bytes held in memory across all webhook requests
//! (`--max-inflight-bytes`). `--max-inflight` bounds how many requests run; this bounds what
//! their bodies weigh, which is what exhausts memory.
//!
//! Bytes are taken as they arrive ([`collect`]), not as a request declares them: a client that
//! declares a large body and trickles it holds only what it has sent, so slow clients cannot
//! drain the budget without spending the bandwidth.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::metrics::Metrics;

/// Room a held piece of a body takes besides its bytes: its `Bytes` handle in the list.
pub const PIECE_OVERHEAD: u64 = std::mem::size_of::<Bytes>() as u64;

/// The bytes all requests may hold at once, and those they hold now.
pub struct BodyBudget {
    limit: u64,
    held: AtomicU64,
    metrics: Metrics,
}

/// Bytes could not be taken: the budget is spent.
#[derive(Debug, PartialEq, Eq)]
pub struct Exhausted;

impl BodyBudget {
    /// A budget of `limit` bytes, reported in `bp_relay_inflight_body_bytes`.
    pub fn new(limit: u64, metrics: Metrics) -> Self {
        Self {
            limit,
            held: AtomicU64::new(0),
            metrics,
        }
    }

    /// An empty share for one request; it gives back what it holds when dropped.
    pub fn share(&self) -> Share<'_> {
        Share {
            budget: self,
            held: 0,
        }
    }

    /// Bytes held by all requests now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) -> Result<(), Exhausted> {
        // Never past the limit, even for a moment: a compare-and-swap, not add-then-undo.
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .map_err(|_| Exhausted)?;
        self.metrics.body_bytes_held(bytes as i64);
        Ok(())
    }

    fn give_back(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.metrics.body_bytes_held(-(bytes as i64));
    }
}

/// What one request holds of the budget.
pub struct Share<'a> {
    budget: &'a BodyBudget,
    held: u64,
}

impl Share<'_> {
    /// Takes `bytes` more, or nothing if they do not fit.
    ///
    /// # Errors
    /// The budget cannot cover them now.
    pub fn take(&mut self, bytes: u64) -> Result<(), Exhausted> {
        self.budget.take(bytes)?;
        self.held += bytes;
        Ok(())
    }

    /// Gives back `bytes` of what this share holds (at most all of it).
    pub fn give_back(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.budget.give_back(bytes);
        self.held -= bytes;
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
        }
    }
}

/// Why a body could not be collected.
#[derive(Debug)]
pub enum CollectError {
    /// Its next bytes did not fit the budget.
    Exhausted,
    /// The body failed (the client went away, broken framing, a length limit).
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// The whole of `body` in one buffer, every byte it holds in memory counted in `share`: each
/// piece as it arrives, and, when there are several, the joined copy before the pieces are let
/// go (a body is briefly held twice).
///
/// # Errors
/// The budget cannot cover the next piece, or the body fails.
pub async fn collect<B>(body: B, share: &mut Share<'_>) -> Result<Bytes, CollectError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame
            .map_err(|error| CollectError::Read(error.into()))?
            .into_data()
        else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        share
            .take(data.len() as u64 + PIECE_OVERHEAD)
            .map_err(|Exhausted| CollectError::Exhausted)?;
        length += data.len() as u64;
        pieces.push(data);
    }
    if pieces.len() <= 1 {
        return Ok(pieces.pop().unwrap_or_default());
    }
    share
        .take(length)
        .map_err(|Exhausted| CollectError::Exhausted)?;
    let mut joined = Vec::with_capacity(usize::try_from(length).unwrap_or(usize::MAX));
    for piece in &pieces {
        joined.extend_from_slice(piece);
    }
    let pieces_held = length + pieces.len() as u64 * PIECE_OVERHEAD;
    drop(pieces);
    share.give_back(pieces_held);
    Ok(Bytes::from(joined))
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;

    fn budget(limit: u64) -> BodyBudget {
        BodyBudget::new(limit, Metrics::register(&Registry::new()).unwrap())
    }

    #[test]
    fn shares_take_up_to_the_limit_and_give_everything_back_when_dropped() {
        let budget = budget(100);
        let mut first = budget.share();
        let mut second = budget.share();
        first.take(60).unwrap();
        assert_eq!(
            second.take(41),
            Err(Exhausted),
            "61 + 41 > 100: refused whole"
        );
        assert_eq!(budget.held(), 60, "a refused take holds nothing");
        second.take(40).unwrap();
        assert_eq!(budget.held(), 100);
        first.give_back(10);
        assert_eq!(budget.held(), 90);
        drop(first);
        assert_eq!(budget.held(), 40);
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn giving_back_more_than_held_gives_back_only_what_is_held() {
        let budget = budget(100);
        let mut share = budget.share();
        share.take(5).unwrap();
        let other = {
            let mut other = budget.share();
            other.take(7).unwrap();
            other
        };
        share.give_back(50);
        assert_eq!(budget.held(), 7, "the other share's bytes stay taken");
        drop(other);
        assert_eq!(budget.held(), 0);
    }
}
