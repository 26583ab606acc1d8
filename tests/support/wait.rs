//! Bounded waits on conditions, shared by the integration tests (`tests/api`) and the fault
//! matrix (`tests/faults`), each of which includes this file: a test never sleeps to
//! synchronise.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds and returns how long that took, or panics after `timeout`
/// naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Runs a blocking call (librdkafka, a child process) on a blocking thread; a panic in it
/// panics the caller.
#[allow(dead_code)] // Each including crate uses what it needs.
pub async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}
