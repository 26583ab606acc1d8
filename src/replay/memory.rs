//! The in-process replay store: a bounded cache of signing fingerprints.
//!
//! Memory is bounded by `capacity` entries of fixed size (a 128-bit fingerprint of the signing,
//! its 128-bit binding to a route and body, and an expiry: well under 100 bytes each with the cache's own
//! overhead). Past capacity the cache evicts: an expired signing costs nothing, but evicting
//! one still inside the window weakens the guard for it, so those evictions are counted apart,
//! and logged, for the operator to raise `--replay-capacity` or use a shared store.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use quick_cache::{sync::Cache, DefaultHashBuilder, Lifecycle, UnitWeighter};

use super::{Binding, Signing};

/// The guard's own metrics.
#[derive(Clone)]
pub struct GuardMetrics {
    entries: IntGauge,
    evictions: IntCounterVec,
}

impl GuardMetrics {
    /// Creates the guard's metrics and registers them on `registry`.
    ///
    /// # Errors
    /// A metric is already registered there (a programming error caught at startup).
    pub fn register(registry: &Registry) -> prometheus::Result<GuardMetrics> {
        let metrics = GuardMetrics {
            entries: IntGauge::new("bp_relay_replay_guard_entries", "Signings the in-memory replay guard remembers.")?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "bp_relay_replay_guard_evictions_total",
                    "Signings the in-memory replay guard forgot to make room, by whether they were still inside the timestamp window (live) or not (expired).",
                ),
                &["state"],
            )?,
        };
        for state in [LIVE, EXPIRED] {
            metrics.evictions.with_label_values(&[state]);
        }
        registry.register(Box::new(metrics.entries.clone()))?;
        registry.register(Box::new(metrics.evictions.clone()))?;
        Ok(metrics)
    }
}

const LIVE: &str = "live";
const EXPIRED: &str = "expired";

/// What is remembered of a signing: the route and body it came with, and until when it matters.
#[derive(Clone, Copy)]
struct Entry {
    bound: Binding,
    remember_until: i64,
}

/// The warning about live evictions is logged at most once per this many seconds.
const WARN_INTERVAL_SECONDS: i64 = 60;

/// Counts what the cache evicts.
#[derive(Clone)]
struct Evictions {
    metrics: GuardMetrics,
    last_warned: Arc<AtomicI64>,
}

impl Lifecycle<u128, Entry> for Evictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _key: u128, entry: Entry) {
        let now = unix_now();
        let live = entry.remember_until > now;
        self.metrics
            .evictions
            .with_label_values(&[if live { LIVE } else { EXPIRED }])
            .inc();
        let last = self.last_warned.load(Ordering::Relaxed);
        if live
            && now - last >= WARN_INTERVAL_SECONDS
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "The replay guard is full and forgets signings still inside the timestamp window: raise --replay-capacity or use --replay-store (bp_relay_replay_guard_evictions_total counts them)."
            );
        }
    }
}

/// Remembers the binding of each recently verified signing, in this process.
pub struct MemoryGuard {
    seen: Cache<u128, Entry, UnitWeighter, DefaultHashBuilder, Evictions>,
    metrics: GuardMetrics,
}

impl MemoryGuard {
    /// A guard holding at most `capacity` signings.
    pub fn new(capacity: u64, metrics: GuardMetrics) -> Self {
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        let seen = Cache::with(
            items,
            capacity,
            UnitWeighter,
            DefaultHashBuilder::default(),
            Evictions {
                metrics: metrics.clone(),
                last_warned: Arc::new(AtomicI64::new(0)),
            },
        );
        Self { seen, metrics }
    }

    /// The binding remembered for `signing`: `bound` if it is new.
    pub fn remember(&self, signing: Signing<'_>, bound: Binding) -> Binding {
        // Atomic: of two racing requests with one signing, one inserts, the other sees it.
        let entry = Entry {
            bound,
            remember_until: signing.remember_until,
        };
        let remembered = self
            .seen
            .get_or_insert_with(&signing.fingerprint(), || Ok::<_, ()>(entry))
            .map_or(bound, |entry| entry.bound);
        self.metrics.entries.set(self.seen.len() as i64);
        remembered
    }

    /// Signings remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no signing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing(value: &str, remember_until: i64) -> Signing<'_> {
        Signing {
            value,
            timestamp: 1,
            remember_until,
        }
    }

    #[test]
    fn memory_stays_within_capacity_and_evictions_are_counted_by_state() {
        let registry = Registry::new();
        let metrics = GuardMetrics::register(&registry).unwrap();
        let guard = MemoryGuard::new(1_000, metrics.clone());
        let live = unix_now() + 300;
        for n in 0..5_000 {
            guard.remember(signing(&n.to_string(), 0), 7);
        }
        for n in 5_000..10_000 {
            guard.remember(signing(&n.to_string(), live), 7);
        }
        assert!(guard.len() <= 1_000, "{}", guard.len());
        assert_eq!(
            guard.remember(signing("9999", live), 8),
            7,
            "the newest signing is remembered"
        );
        let evicted = |state: &str| metrics.evictions.with_label_values(&[state]).get();
        assert_eq!(
            evicted(LIVE) + evicted(EXPIRED),
            9_000,
            "every signing beyond capacity was evicted and counted"
        );
        assert!(evicted(LIVE) > 0, "live signings had to go too");
        assert_eq!(metrics.entries.get(), guard.len() as i64);
    }
}
