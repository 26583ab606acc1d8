//! The budget of request body bytes held in memory across all webhook requests
//! (`--max-inflight-bytes`). `--max-inflight` bounds how many requests run; this bounds what
//! their bodies weigh, which is what exhausts memory.
//!
//! Bytes are taken as they arrive ([`collect`]), not as a request declares them: a client that
//! declares a large body and trickles it holds at most twice what it has sent, so slow clients
//! cannot drain the budget without spending the bandwidth.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::ingress::metrics::Metrics;

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
    #[cfg(test)]
    fn held(&self) -> u64 {
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

/// The whole of `body` (at most `largest` bytes: the caller limits it) in one buffer, every
/// byte it holds in memory counted in `share` as it arrives.
///
/// A body in one piece is kept as it came. From the second piece on, the pieces are copied
/// into one buffer that grows to at most `largest` (doubling, so a client holds at most about
/// twice what it has sent), and each piece is let go once copied. So what a body holds never
/// depends on its framing, and at its peak (a growth: the old buffer and the new one) stays
/// below `2 * largest`: a budget of twice the largest body always takes one on an idle relay.
///
/// # Errors
/// The budget cannot cover the next piece, or the body fails.
pub async fn collect<B>(body: B, largest: u64, share: &mut Share<'_>) -> Result<Bytes, CollectError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut held = Held::Nothing;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame
            .map_err(|error| CollectError::Read(error.into()))?
            .into_data()
        else {
            continue;
        };
        if !data.is_empty() {
            held = held
                .add(data, largest, share)
                .map_err(|Exhausted| CollectError::Exhausted)?;
        }
    }
    Ok(match held {
        Held::Nothing => Bytes::new(),
        Held::One(piece) => piece,
        Held::Joined(buffer) => Bytes::from(buffer),
    })
}

/// What a body being collected holds.
enum Held {
    Nothing,
    /// Its only piece so far, as it came.
    One(Bytes),
    /// Its pieces copied into one buffer, whose whole capacity is counted.
    Joined(Vec<u8>),
}

impl Held {
    fn add(self, data: Bytes, largest: u64, share: &mut Share<'_>) -> Result<Held, Exhausted> {
        match self {
            Held::Nothing => {
                share.take(data.len() as u64)?;
                Ok(Held::One(data))
            }
            Held::One(first) => {
                let buffer = grown(&first, first.len(), &data, largest, share)?;
                share.give_back(first.len() as u64);
                Ok(Held::Joined(buffer))
            }
            Held::Joined(mut buffer) if buffer.len() + data.len() <= buffer.capacity() => {
                buffer.extend_from_slice(&data);
                Ok(Held::Joined(buffer))
            }
            Held::Joined(buffer) => {
                let bigger = grown(&buffer, buffer.capacity(), &data, largest, share)?;
                share.give_back(buffer.capacity() as u64);
                Ok(Held::Joined(bigger))
            }
        }
    }
}

/// A new buffer holding `held` then `data`, of twice the room `held` takes (at most `largest`,
/// at least what it holds), its capacity taken from `share` before it is allocated.
fn grown(
    held: &[u8],
    room: usize,
    data: &[u8],
    largest: u64,
    share: &mut Share<'_>,
) -> Result<Vec<u8>, Exhausted> {
    let needed = held.len() + data.len();
    let largest = usize::try_from(largest).unwrap_or(usize::MAX);
    let capacity = room.saturating_mul(2).min(largest).max(needed);
    share.take(capacity as u64)?;
    let mut buffer = Vec::with_capacity(capacity);
    buffer.extend_from_slice(held);
    buffer.extend_from_slice(data);
    Ok(buffer)
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

    /// A body in pieces of these sizes, one frame each.
    struct Pieces(std::collections::VecDeque<Bytes>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(
                self.0
                    .pop_front()
                    .map(|piece| Ok(hyper::body::Frame::data(piece))),
            )
        }
    }

    fn framed(body: &[u8], sizes: impl IntoIterator<Item = usize>) -> Pieces {
        let mut rest = body;
        let mut pieces = std::collections::VecDeque::new();
        for size in sizes.into_iter().chain(std::iter::repeat(usize::MAX)) {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(size.clamp(1, rest.len()));
            pieces.push_back(Bytes::copy_from_slice(piece));
            rest = after;
        }
        Pieces(pieces)
    }

    async fn collect_within(
        body: &[u8],
        sizes: Vec<usize>,
        limit: u64,
    ) -> Result<Bytes, CollectError> {
        let budget = budget(limit);
        let mut share = budget.share();
        let collected = collect(framed(body, sizes), body.len() as u64, &mut share).await;
        drop(share);
        assert_eq!(budget.held(), 0, "everything given back");
        collected
    }

    #[tokio::test]
    async fn a_largest_body_fits_twice_its_size_in_any_framing() {
        const LARGEST: usize = 1 << 20;
        let body: Vec<u8> = (0..LARGEST).map(|n| n as u8).collect();
        let framings: [(&str, Vec<usize>); 6] = [
            ("one piece", vec![LARGEST]),
            ("16 KiB pieces", vec![16 << 10; LARGEST / (16 << 10)]),
            ("1-byte pieces", vec![1; LARGEST]),
            ("a byte, then the rest", vec![1, LARGEST - 1]),
            (
                "half and one byte, then the rest",
                vec![LARGEST / 2 + 1, LARGEST / 2 - 1],
            ),
            (
                "growing pieces",
                (1..)
                    .map(|n: usize| n * 997)
                    .take_while(|n| *n < LARGEST)
                    .collect(),
            ),
        ];
        for (name, sizes) in framings {
            let collected = collect_within(&body, sizes, 2 * LARGEST as u64)
                .await
                .unwrap_or_else(|error| panic!("{name}: {error:?}"));
            assert!(collected == body, "{name}: the body, whole and in order");
        }
    }

    #[tokio::test]
    async fn a_budget_below_the_body_is_exhausted() {
        let body = vec![b'x'; 4096];
        assert!(matches!(
            collect_within(&body, vec![1024; 4], 4095).await,
            Err(CollectError::Exhausted)
        ));
    }
}
