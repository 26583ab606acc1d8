//! The in-process replay store: a bounded map of signing fingerprints that never forgets a
//! signing before its `remember_until`.
//!
//! Memory is bounded by `capacity` entries of fixed size (a 128-bit fingerprint of the signing,
//! its 128-bit binding to a route and body, and its expiry in a heap: about 100 bytes each with
//! the map's own overhead), reserved up front, so a request never allocates. Expired signings are reclaimed first, in expiry order. When every
//! entry is still live the guard is full: a new signing is refused (503, counted and logged, for
//! the operator to raise `--replay-capacity` or use a shared store) rather than let an evicted
//! live signing carry a second body. A signing already remembered is still answered.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{Mutex, PoisonError},
};

use prometheus::{IntCounter, IntGauge, Registry};

use super::{Binding, Signing};
use crate::ingress::warning::RepeatedWarning;

/// The guard's own metrics.
#[derive(Clone)]
pub struct GuardMetrics {
    entries: IntGauge,
    refusals: IntCounter,
}

impl GuardMetrics {
    /// Creates the guard's metrics and registers them on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<GuardMetrics> {
        let metrics = GuardMetrics {
            entries: IntGauge::new("bp_relay_replay_guard_entries", "Signings the in-memory replay guard remembers.")?,
            refusals: IntCounter::new(
                "bp_relay_replay_guard_refusals_total",
                "New signings the in-memory replay guard refused (503 replay_guard_full) because it was full of signings still inside the timestamp window.",
            )?,
        };
        registry.register(Box::new(metrics.entries.clone()))?;
        registry.register(Box::new(metrics.refusals.clone()))?;
        Ok(metrics)
    }
}

/// The guard holds `--replay-capacity` signings still inside the window: a new one cannot be
/// remembered without forgetting one that could still carry a second body.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory replay guard is full of signings still inside the timestamp window")]
pub struct GuardFull;

/// Shards split the lock; a shard holds at least this many entries, so a small guard is one
/// shard and its bound is exact whichever signings come.
const MIN_SHARD_CAPACITY: u64 = 1024;
const MAX_SHARDS: u64 = 16;

/// One lock's worth of signings.
struct Shard {
    /// Fingerprint → binding.
    seen: HashMap<u128, Binding>,
    /// Each remembered fingerprint once, soonest expiry on top: expired ones are reclaimed
    /// from the top, without a scan.
    expiries: BinaryHeap<Reverse<(i64, u128)>>,
    capacity: usize,
}

impl Shard {
    /// Forgets the signings whose `remember_until` is not after `now`; returns how many.
    fn reclaim(&mut self, now: i64) -> usize {
        let mut reclaimed = 0;
        while let Some(&Reverse((until, key))) = self.expiries.peek() {
            if until > now {
                break;
            }
            self.expiries.pop();
            self.seen.remove(&key);
            reclaimed += 1;
        }
        reclaimed
    }
}

/// Remembers the binding of each recently verified signing, in this process.
pub struct MemoryGuard {
    shards: Box<[Mutex<Shard>]>,
    metrics: GuardMetrics,
    full_warning: RepeatedWarning,
}

impl MemoryGuard {
    /// A guard holding at most `capacity` signings.
    pub fn new(capacity: u64, metrics: GuardMetrics) -> Self {
        let count = (capacity / MIN_SHARD_CAPACITY).clamp(1, MAX_SHARDS);
        // The capacity is split exactly: the shards together hold `capacity` at most.
        let shards = (0..count)
            .map(|n| {
                let share = capacity / count + u64::from(n < capacity % count);
                let share = usize::try_from(share).unwrap_or(usize::MAX);
                Mutex::new(Shard {
                    seen: HashMap::with_capacity(share),
                    expiries: BinaryHeap::with_capacity(share),
                    capacity: share,
                })
            })
            .collect();
        metrics.entries.set(0);
        Self {
            shards,
            metrics,
            full_warning: RepeatedWarning::new(),
        }
    }

    /// The binding remembered for `signing` at Unix second `now`: `bound` if it is new.
    ///
    /// # Errors
    /// [`GuardFull`]: the signing is new and its shard holds only signings still live at `now`.
    pub fn remember(
        &self,
        signing: Signing<'_>,
        bound: Binding,
        now: i64,
    ) -> Result<Binding, GuardFull> {
        let key = signing.fingerprint();
        let index = (key % self.shards.len() as u128) as usize;
        // Under the shard's lock: of two racing requests with one signing, one inserts, the
        // other sees it. A panic elsewhere cannot leave a shard half-updated, so a poisoned
        // lock's data is still sound.
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A redelivery is answered from memory, full or not.
        if let Some(&remembered) = shard.seen.get(&key) {
            return Ok(remembered);
        }
        let reclaimed = shard.reclaim(now);
        if reclaimed > 0 {
            self.metrics.entries.sub(reclaimed as i64);
        }
        if shard.seen.len() >= shard.capacity {
            drop(shard);
            self.refuse(now);
            return Err(GuardFull);
        }
        shard.seen.insert(key, bound);
        shard.expiries.push(Reverse((signing.remember_until, key)));
        drop(shard);
        self.metrics.entries.inc();
        Ok(bound)
    }

    /// Counts a refusal, and warns at most once a minute.
    fn refuse(&self, now: i64) {
        self.metrics.refusals.inc();
        if self.full_warning.due(now) {
            tracing::warn!(
                "The replay guard is full of signings still inside the timestamp window: new deliveries get 503 replay_guard_full until some expire. Raise --replay-capacity or use --replay-store (bp_relay_replay_guard_refusals_total counts them)."
            );
        }
    }

    /// Signings remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .seen
                    .len()
            })
            .sum()
    }

    /// Whether no signing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    fn signing(value: &str, remember_until: i64) -> Signing<'_> {
        Signing {
            value,
            timestamp: 1,
            remember_until,
        }
    }

    fn guard(capacity: u64) -> (MemoryGuard, GuardMetrics) {
        let metrics = GuardMetrics::register(&Registry::new()).unwrap();
        (MemoryGuard::new(capacity, metrics.clone()), metrics)
    }

    #[test]
    fn a_guard_full_of_live_signings_refuses_a_new_one_and_forgets_none() {
        let (guard, metrics) = guard(3);
        for value in ["a", "b", "c"] {
            assert_eq!(guard.remember(signing(value, NOW + 10), 1, NOW).unwrap(), 1);
        }
        assert!(guard.remember(signing("d", NOW + 10), 2, NOW).is_err());
        assert_eq!(metrics.refusals.get(), 1);
        for value in ["a", "b", "c"] {
            assert_eq!(
                guard
                    .remember(signing(value, NOW + 10), 2, NOW + 9)
                    .unwrap(),
                1,
                "{value} is still bound to its first body until it expires"
            );
        }
        assert_eq!(guard.len(), 3);
        assert_eq!(metrics.entries.get(), 3);
    }

    #[test]
    fn a_redelivery_is_answered_while_the_guard_is_full() {
        let (guard, metrics) = guard(1);
        assert_eq!(guard.remember(signing("a", NOW + 10), 1, NOW).unwrap(), 1);
        assert!(guard.remember(signing("b", NOW + 10), 1, NOW).is_err());
        assert_eq!(
            guard.remember(signing("a", NOW + 10), 1, NOW).unwrap(),
            1,
            "the same signing is a redelivery"
        );
        assert_eq!(
            guard.remember(signing("a", NOW + 10), 2, NOW).unwrap(),
            1,
            "another body with it is still told apart"
        );
        assert_eq!(metrics.refusals.get(), 1);
    }

    #[test]
    fn expired_signings_are_reclaimed_first_in_expiry_order() {
        let (guard, metrics) = guard(2);
        guard.remember(signing("early", NOW + 5), 1, NOW).unwrap();
        guard.remember(signing("late", NOW + 50), 1, NOW).unwrap();
        assert!(guard
            .remember(signing("new", NOW + 60), 1, NOW + 4)
            .is_err());
        // At `remember_until` no replica can admit "early" any more: its room is free.
        assert_eq!(
            guard
                .remember(signing("new", NOW + 60), 3, NOW + 5)
                .unwrap(),
            3
        );
        assert_eq!(
            guard
                .remember(signing("late", NOW + 50), 2, NOW + 5)
                .unwrap(),
            1,
            "the live signing was kept"
        );
        assert_eq!(guard.len(), 2);
        assert_eq!(metrics.entries.get(), 2);
        assert_eq!(metrics.refusals.get(), 1);
    }

    #[test]
    fn memory_stays_within_capacity_across_shards() {
        let capacity = 5_000;
        let (guard, metrics) = guard(capacity);
        assert!(guard.shards.len() > 1, "a guard this size is sharded");
        let mut accepted = 0;
        for n in 0..10_000 {
            if guard
                .remember(signing(&n.to_string(), NOW + 10), 7, NOW)
                .is_ok()
            {
                accepted += 1;
            }
        }
        assert!(guard.len() <= capacity as usize, "{}", guard.len());
        assert_eq!(guard.len(), accepted);
        assert!(
            accepted as u64 > capacity * 9 / 10,
            "refusals start only near capacity: {accepted}"
        );
        assert_eq!(metrics.refusals.get(), 10_000 - accepted as u64);
        // Once they expire, the room is back.
        for n in 10_000..20_000 {
            guard
                .remember(signing(&n.to_string(), NOW + 20), 7, NOW + 10)
                .ok();
        }
        assert!(guard.len() <= capacity as usize);
        assert_eq!(metrics.entries.get(), guard.len() as i64);
        assert!(
            guard
                .remember(signing("new", NOW + 30), 8, NOW + 20)
                .is_ok(),
            "an expired signing's room is reused"
        );
    }
}
