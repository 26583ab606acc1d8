//! The accept loop both listeners share: each connection is served by hyper (HTTP/1.1 or h2c)
//! on its own task, within [`Limits`] of number, time and memory, and drained on shutdown.
//!
//! The webhook listener faces the internet, so nothing a client does, or fails to do, keeps a
//! connection or its memory for long: at most `--max-connections` are open (more wait in the
//! kernel's accept backlog), each has `--request-head-timeout` to deliver a request head
//! (HTTP/2 preface included) and `--idle-timeout` between requests, and its buffers are capped
//! by `--max-request-head` (HTTP/1) and the protocol's initial window (HTTP/2).

mod deadlines;

use std::{
    convert::Infallible,
    future::{poll_fn, Future},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use deadlines::{Deadline, Deadlines, Timeouts, TrackedIo};
use http::{Request, Response};
use hyper::{
    body::Incoming,
    service::{service_fn, Service},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tracing::{debug, warn};

use crate::{
    config::Listeners,
    ingress::metrics::{ConnectionDeadline, Metrics},
    ingress::response::Body,
};

/// First pause after a failed accept (out of file descriptors, say); it doubles up to
/// [`MAX_ACCEPT_BACKOFF`] while accepting keeps failing, so the loop never spins.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Streams one HTTP/2 connection may have open. A handler's own work is bounded by
/// `--max-inflight`; this bounds the per-stream state a single peer can make the relay keep.
const HTTP2_MAX_STREAMS: u32 = 100;

/// HTTP/2 flow-control windows, stream and connection: what a peer may send ahead of the
/// handlers. The protocol's own initial window (hyper's default is 1 MiB); the connection's
/// cannot start lower.
const HTTP2_WINDOW: u32 = 65_535;

/// What the connections of one listener may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; `None` leaves them unbounded (the admin listener, which is
    /// not exposed).
    pub max_connections: Option<usize>,
    /// From the accept, or an idle HTTP/1 connection's next first byte, to a complete head.
    pub request_head_timeout: Duration,
    /// Without a request in flight.
    pub idle_timeout: Duration,
    /// HTTP/1 request line and headers, and so its read buffer; HTTP/2 header list.
    pub max_request_head: usize,
    pub http2_ping_interval: Duration,
    pub http2_ping_timeout: Duration,
}

impl Limits {
    /// The webhook listener's limits: every bound of the `Listeners` flags.
    pub fn webhook(listeners: &Listeners) -> Self {
        Self {
            max_connections: Some(listeners.max_connections),
            request_head_timeout: listeners.request_head_timeout,
            idle_timeout: listeners.idle_timeout,
            // Validated to at most 1MiB: it fits.
            max_request_head: usize::try_from(listeners.max_request_head.as_u64())
                .unwrap_or(usize::MAX),
            http2_ping_interval: listeners.http2_ping_interval,
            http2_ping_timeout: listeners.http2_ping_timeout,
        }
    }

    /// The admin listener's: the same deadlines and buffers, no cap on the count (probes and
    /// scrapes must get through whatever the webhook port is suffering).
    pub fn admin(listeners: &Listeners) -> Self {
        Self {
            max_connections: None,
            ..Self::webhook(listeners)
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            request_head: self.request_head_timeout,
            idle: self.idle_timeout,
        }
    }

    /// hyper's connection builder with these buffers and pings.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // [`Deadlines`] replaces hyper's: it runs while a keep-alive connection is idle too,
            // so it would also be the idle timeout, and close before the load balancer does.
            .header_read_timeout(None)
            // A head must fit the read buffer whole, so this caps the head too (hyper-util's
            // builder has no separate head limit).
            .max_buf_size(self.max_request_head);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.http2_ping_interval)
            .keep_alive_timeout(self.http2_ping_timeout)
            .max_header_list_size(u32::try_from(self.max_request_head).unwrap_or(u32::MAX))
            .initial_stream_window_size(HTTP2_WINDOW)
            .initial_connection_window_size(HTTP2_WINDOW)
            .max_concurrent_streams(HTTP2_MAX_STREAMS);
        builder
    }
}

/// The connections of a listener that stopped accepting, still serving.
pub struct Connections {
    stop: watch::Sender<()>,
}

impl Connections {
    /// Asks every connection to finish (HTTP/1 after its current answer, HTTP/2 with GOAWAY)
    /// and resolves once all are closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.stop.closed().await;
    }
}

/// Serves connections from `listener` with `service` within `limits` until `shutdown`
/// resolves, then closes the listener and returns the open connections, for the caller to drain
/// within its budget. `metrics`, when given, counts the connections and their timeouts.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    metrics: Option<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Connections
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = Arc::new(limits.builder());
    let slots = limits
        .max_connections
        .map(|max| Arc::new(Semaphore::new(max)));
    let (stop, stopped) = watch::channel(());
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    let mut shutdown = pin!(shutdown);
    loop {
        // At the cap, accepting waits: new connections queue in the kernel's backlog, which
        // costs the relay nothing, until a connection closes.
        let slot = match &slots {
            None => None,
            Some(slots) => tokio::select! {
                slot = slots.clone().acquire_owned() => slot.ok(),
                () = &mut shutdown => break,
            },
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                let connection = Connection {
                    builder: builder.clone(),
                    limits,
                    metrics: metrics.clone(),
                    stop: stopped.clone(),
                    _slot: slot,
                };
                tokio::spawn(connection.serve(stream, service.clone()));
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
    Connections { stop }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    metrics: Option<Metrics>,
    stop: watch::Receiver<()>,
    // Frees its place under --max-connections when the connection ends.
    _slot: Option<OwnedSemaphorePermit>,
}

/// How a connection ended.
enum Ended {
    /// It closed, or hyper gave up on it.
    Closed(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    /// The relay closed it: a deadline passed.
    TimedOut(Deadline),
}

impl Connection {
    async fn serve<S>(self, stream: TcpStream, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let _open = self.metrics.as_ref().map(Metrics::connection_opened);
        // Answers are small single writes: send them now, not after the peer's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "Cannot disable Nagle's algorithm on a connection.");
        }
        let deadlines = Arc::new(Deadlines::new(Instant::now(), self.limits.timeouts()));
        let io = TokioIo::new(TrackedIo::new(stream, deadlines.clone()));
        let tracked = {
            let deadlines = deadlines.clone();
            service_fn(move |request: Request<Incoming>| {
                let started = deadlines.request_started(&request);
                let answer = service.call(request);
                async move {
                    let answer = answer.await;
                    drop(started);
                    answer
                }
            })
        };
        let mut connection = pin!(self.builder.serve_connection(io, tracked));
        let mut stop = self.stop.clone();
        let mut stopped = pin!(async move {
            // Ends with the sender too: the listener is gone either way.
            let _ = stop.changed().await;
        });
        let mut stopping = false;
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        let ended = poll_fn(|cx| loop {
            if !stopping && stopped.as_mut().poll(cx).is_ready() {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ended::Closed(result));
            }
            // Recomputed after every poll of the connection: a byte or an answer may have moved it.
            let Some(due) = deadlines.due() else {
                return Poll::Pending;
            };
            if armed != Some(due.at) {
                timer.as_mut().reset(due.at);
                armed = Some(due.at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match due.deadline {
                Deadline::RequestHead | Deadline::Closing => {
                    return Poll::Ready(Ended::TimedOut(due.deadline))
                }
                Deadline::Idle => {
                    // Gracefully: an HTTP/2 peer gets a GOAWAY, so a request racing this close
                    // is refused cleanly instead of being cut off.
                    self.count(ConnectionDeadline::Idle);
                    deadlines.closing(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
        })
        .await;
        match ended {
            Ended::Closed(Ok(())) => {}
            Ended::Closed(Err(error)) => {
                if head_too_large(&*error) {
                    // hyper answered 431 itself (empty body) before any handler saw the request.
                    if let Some(metrics) = &self.metrics {
                        metrics.head_too_large();
                    }
                }
                debug!(%error, "Connection ended with an error.")
            }
            Ended::TimedOut(Deadline::RequestHead) => {
                self.count(ConnectionDeadline::RequestHead);
                debug!(
                    "Connection closed: no complete request head within --request-head-timeout."
                );
            }
            Ended::TimedOut(_) => {
                debug!("Connection closed: it did not finish closing after --idle-timeout.")
            }
        }
    }

    fn count(&self, deadline: ConnectionDeadline) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_timed_out(deadline);
        }
    }
}

/// Whether a connection ended because its HTTP/1 request head outgrew `--max-request-head`:
/// hyper then answers 431 and closes.
fn head_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_parse_too_large)
}

#[cfg(test)]
mod tests;
