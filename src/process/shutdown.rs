//! When the process is asked to stop: the first SIGTERM (Kubernetes) or SIGINT (a terminal).

use tracing::{info, warn};

/// Resolves on the first SIGTERM or SIGINT. Without a SIGTERM handler (it could not be
/// registered) it says so and waits for SIGINT alone.
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    warn!(%error, "Cannot listen for SIGTERM; only SIGINT will stop the relay.");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => info!("SIGINT received."),
            _ = terminate.recv() => info!("SIGTERM received."),
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
