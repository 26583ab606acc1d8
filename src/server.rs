//! The accept loop both listeners share: each connection is served by hyper (HTTP/1.1 or h2c)
//! on its own task and watched for a graceful shutdown.

use std::{convert::Infallible, future::Future, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::response::Body;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause after a failed accept (out of file descriptors, say); it doubles up to
/// [`MAX_ACCEPT_BACKOFF`] while accepting keeps failing, so the loop never spins.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves connections from `listener` with `service` until `shutdown` resolves, then closes
/// the listener and returns the open connections, for the caller to drain within its budget.
pub async fn serve<S>(listener: TcpListener, service: S, shutdown: impl Future<Output = ()>) -> GracefulShutdown
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                // Answers are small single writes: send them now, not after the peer's delayed ACK.
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%error, "Cannot disable Nagle's algorithm on a connection.");
                }
                let connection = builder.serve_connection(TokioIo::new(stream), service.clone()).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%error, "Connection ended with an error.");
                    }
                });
            }
            Err(error) => {
                warn!(%error, backoff_ms = backoff.as_millis() as u64, "Accepting a connection failed; pausing.");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
    drop(listener);
    graceful
}
