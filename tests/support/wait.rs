//! Bounded waits on conditions, shared by the integration tests (`tests/api`) and the fault
//! matrix (`tests/faults`) through `tests/support`: a test never sleeps to synchronise.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds and returns how long that took, or panics after `timeout`
/// naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(timeout, condition)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// Polls `condition` until it holds and returns how long that took, or `None` after `timeout`:
/// for a caller that has more to say than [`eventually`] when the time is up.
pub async fn within<F, Fut>(timeout: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs a blocking call (librdkafka, a child process) on a blocking thread; a panic in it
/// panics the caller.
pub async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}
