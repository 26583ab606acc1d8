//! The deadlines of one connection, shared by the three places that see what it is doing: the
//! IO under hyper (bytes arriving), the service above it (requests starting and ending) and the
//! task that drives it (which closes it when a deadline passes).
//!
//! hyper alone cannot bound this: hyper-util's auto builder waits for the HTTP/2 preface with no
//! timeout at all, and hyper's HTTP/1 `header_read_timeout` runs from the moment a connection is
//! idle, so it cannot be both short for a head and long for a keep-alive connection.
//!
//! A connection is always in one of these phases:
//! - **awaiting a head**: from the accept, and on HTTP/1 from the first byte after an idle
//!   spell, until a request head is complete; bounded by `--request-head-timeout`.
//! - **busy**: a request is being handled; bounded by the request's own budget (`--ack-timeout`).
//! - **idle**: no request in flight, no byte of a new HTTP/1 request yet; bounded by
//!   `--idle-timeout`. On HTTP/2 bytes do not end it: pings and window updates are not requests.
//! - **closing**: the idle deadline passed and the connection was asked to close gracefully
//!   (HTTP/2: GOAWAY); it gets `--request-head-timeout` more to finish, then it is dropped.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Version};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// The phase of a connection without a request in flight, stored with the time it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHead,
    Idle,
    Closing,
}

impl Phase {
    fn bits(self) -> u64 {
        match self {
            Self::AwaitingHead => 0,
            Self::Idle => 1,
            Self::Closing => 2,
        }
    }

    fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0 => Self::AwaitingHead,
            1 => Self::Idle,
            _ => Self::Closing,
        }
    }
}

/// Which deadline is due next, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Instant,
    pub deadline: Deadline,
}

/// The deadline a connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `--request-head-timeout`: close at once.
    RequestHead,
    /// `--idle-timeout`: close gracefully.
    Idle,
    /// The grace after a graceful close was asked for: drop.
    Closing,
}

/// The two timeouts the phases are bounded by.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub request_head: Duration,
    pub idle: Duration,
}

/// The shared state of one connection.
pub struct Deadlines {
    opened: Instant,
    timeouts: Timeouts,
    /// Requests whose handler is running (HTTP/2 runs several at once).
    inflight: AtomicUsize,
    /// Milliseconds since `opened` when the phase began, shifted left by two, and the phase.
    mark: AtomicU64,
    /// Set by the first HTTP/2 request: from then on, bytes do not end an idle spell.
    http2: AtomicBool,
}

impl Deadlines {
    /// A connection accepted at `opened`: awaiting its first head.
    pub fn new(opened: Instant, timeouts: Timeouts) -> Self {
        Self {
            opened,
            timeouts,
            inflight: AtomicUsize::new(0),
            mark: AtomicU64::new(Phase::AwaitingHead.bits()),
            http2: AtomicBool::new(false),
        }
    }

    /// The deadline the connection is under now; none while a request is in flight.
    pub fn due(&self) -> Option<Due> {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let (phase, since) = self.phase();
        let (timeout, deadline) = match phase {
            Phase::AwaitingHead => (self.timeouts.request_head, Deadline::RequestHead),
            Phase::Idle => (self.timeouts.idle, Deadline::Idle),
            Phase::Closing => (self.timeouts.request_head, Deadline::Closing),
        };
        Some(Due {
            at: since + timeout,
            deadline,
        })
    }

    /// A request head is complete and its handler starts; the returned guard ends it.
    pub fn request_started<B>(self: &Arc<Self>, request: &Request<B>) -> RequestGuard {
        if request.version() == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.inflight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// The idle deadline passed and a graceful close was asked for.
    pub fn closing(&self, now: Instant) {
        self.mark
            .store(self.mark_of(Phase::Closing, now), Ordering::Release);
    }

    /// Bytes arrived: on HTTP/1, the first byte after an idle spell starts the next head's
    /// deadline.
    fn bytes_arrived(&self) {
        let mark = self.mark.load(Ordering::Acquire);
        if Phase::from_bits(mark) != Phase::Idle || self.http2.load(Ordering::Relaxed) {
            return;
        }
        let awaiting = self.mark_of(Phase::AwaitingHead, Instant::now());
        // Lost only to another change of phase, which then stands.
        let _ = self
            .mark
            .compare_exchange(mark, awaiting, Ordering::AcqRel, Ordering::Acquire);
    }

    fn request_ended(&self) {
        if self.inflight.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let idle = self.mark_of(Phase::Idle, Instant::now());
        // A connection already closing stays closing.
        let _ = self
            .mark
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |mark| {
                (Phase::from_bits(mark) != Phase::Closing).then_some(idle)
            });
    }

    fn phase(&self) -> (Phase, Instant) {
        let mark = self.mark.load(Ordering::Acquire);
        (
            Phase::from_bits(mark),
            self.opened + Duration::from_millis(mark >> 2),
        )
    }

    fn mark_of(&self, phase: Phase, now: Instant) -> u64 {
        let millis = u64::try_from(now.saturating_duration_since(self.opened).as_millis())
            .unwrap_or(u64::MAX >> 2);
        (millis << 2) | phase.bits()
    }
}

/// One request in flight on the connection, until its handler's future is dropped (answered,
/// or reset by an HTTP/2 peer).
pub struct RequestGuard(Arc<Deadlines>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The connection's socket, telling its [`Deadlines`] when bytes arrive.
pub struct TrackedIo<T> {
    inner: T,
    deadlines: Arc<Deadlines>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, deadlines: Arc<Deadlines>) -> Self {
        Self { inner, deadlines }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.deadlines.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        request_head: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    fn request(version: Version) -> Request<()> {
        Request::builder().version(version).body(()).unwrap()
    }

    fn due(deadlines: &Deadlines, after: u64, deadline: Deadline) -> Option<Due> {
        Some(Due {
            at: deadlines.opened + Duration::from_secs(after),
            deadline,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_awaits_its_head_and_a_request_holds_every_deadline_off() {
        let deadlines = Arc::new(Deadlines::new(Instant::now(), TIMEOUTS));
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 10, Deadline::RequestHead),
            "from the accept, not from a first byte"
        );
        deadlines.bytes_arrived();
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 10, Deadline::RequestHead),
            "bytes do not extend it"
        );
        let request = deadlines.request_started(&request(Version::HTTP_11));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(deadlines.due(), None);
        drop(request);
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 3 + 75, Deadline::Idle),
            "idle from the answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_http1_the_first_byte_after_an_idle_spell_starts_the_next_heads_deadline() {
        let deadlines = Arc::new(Deadlines::new(Instant::now(), TIMEOUTS));
        drop(deadlines.request_started(&request(Version::HTTP_11)));
        tokio::time::advance(Duration::from_secs(30)).await;
        deadlines.bytes_arrived();
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 30 + 10, Deadline::RequestHead)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        deadlines.bytes_arrived();
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 30 + 10, Deadline::RequestHead),
            "trickling does not extend it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn on_http2_bytes_do_not_end_an_idle_spell_and_streams_overlap() {
        let deadlines = Arc::new(Deadlines::new(Instant::now(), TIMEOUTS));
        let first = deadlines.request_started(&request(Version::HTTP_2));
        let second = deadlines.request_started(&request(Version::HTTP_2));
        drop(first);
        assert_eq!(deadlines.due(), None, "one stream still in flight");
        drop(second);
        tokio::time::advance(Duration::from_secs(20)).await;
        deadlines.bytes_arrived(); // a ping's answer
        assert_eq!(deadlines.due(), due(&deadlines, 75, Deadline::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closing_connection_stays_closing_and_gets_a_heads_time_to_finish() {
        let deadlines = Arc::new(Deadlines::new(Instant::now(), TIMEOUTS));
        drop(deadlines.request_started(&request(Version::HTTP_2)));
        tokio::time::advance(Duration::from_secs(75)).await;
        let raced = deadlines.request_started(&request(Version::HTTP_2));
        deadlines.closing(Instant::now());
        drop(raced);
        assert_eq!(deadlines.due(), due(&deadlines, 75 + 10, Deadline::Closing));
    }

    #[tokio::test(start_paused = true)]
    async fn the_socket_reports_bytes_that_arrive_and_not_an_end_of_stream() {
        let deadlines = Arc::new(Deadlines::new(Instant::now(), TIMEOUTS));
        drop(deadlines.request_started(&request(Version::HTTP_11)));
        let idle = deadlines.due();
        let (client, server) = tokio::io::duplex(64);
        let mut io = TrackedIo::new(server, deadlines.clone());
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(deadlines.due(), idle, "an end of stream is not a byte");

        let (mut client, server) = tokio::io::duplex(64);
        let mut io = TrackedIo::new(server, deadlines.clone());
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"P")
            .await
            .unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        assert_eq!(
            deadlines.due(),
            due(&deadlines, 1 + 10, Deadline::RequestHead)
        );
    }
}
