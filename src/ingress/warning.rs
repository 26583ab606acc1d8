//! A warning that repeats at most once a minute, however many requests meet its cause: a full
//! memory is met by every request until it drains, and one line a minute says it as well as
//! thousands (the metric beside it counts each one).

use std::sync::atomic::{AtomicI64, Ordering};

/// How often a repeated warning is written at most.
const INTERVAL_SECONDS: i64 = 60;

/// Whether a repeated warning is due, shared by every thread that may write it.
#[derive(Debug)]
pub struct RepeatedWarning {
    /// Unix seconds of the last time it was written.
    last: AtomicI64,
}

impl RepeatedWarning {
    pub const fn new() -> Self {
        Self {
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// True for the one caller that should write the warning at `now` (Unix seconds): the first
    /// ever, then the first a minute or more after the last.
    pub fn due(&self, now: i64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        now.saturating_sub(last) >= INTERVAL_SECONDS
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for RepeatedWarning {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_due_once_a_minute_however_often_it_is_asked() {
        let warning = RepeatedWarning::new();
        assert!(warning.due(1_000));
        assert!(!warning.due(1_000));
        assert!(!warning.due(1_059));
        assert!(warning.due(1_060));
        assert!(!warning.due(1_061));
    }

    #[test]
    fn of_threads_asking_at_once_exactly_one_writes_it() {
        let warning = RepeatedWarning::new();
        let due: usize = std::thread::scope(|scope| {
            let asks: Vec<_> = (0..8).map(|_| scope.spawn(|| warning.due(5_000))).collect();
            asks.into_iter()
                .map(|ask| usize::from(ask.join().unwrap()))
                .sum()
        });
        assert_eq!(due, 1);
    }
}
