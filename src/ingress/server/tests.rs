//! The accept loop over real sockets: each deadline closes what it should and spares what it
//! should, and the connection cap holds new connections back.

use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use prometheus::Registry;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    time::timeout,
};

use super::*;
use crate::ingress::metrics;

const HEAD: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(1500);
/// Far more than any deadline here: a test that waits this long has failed.
const PATIENCE: Duration = Duration::from_secs(10);

fn limits(max_connections: Option<usize>) -> Limits {
    Limits {
        max_connections,
        request_head_timeout: HEAD,
        idle_timeout: IDLE,
        max_request_head: 16 * 1024,
        http2_ping_interval: Duration::from_millis(100),
        http2_ping_timeout: Duration::from_secs(1),
    }
}

struct Server {
    addr: SocketAddr,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        let service = service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, service, limits, Some(metrics), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            registry,
            _stop: stop,
        }
    }

    fn metric(&self, line: &str) -> bool {
        String::from_utf8(metrics::encode(&self.registry).1)
            .unwrap()
            .lines()
            .any(|l| l == line)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

/// Reads until the server closes the connection; how long that took from `since`.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    timeout(PATIENCE, async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .expect("the server closed the connection");
    since.elapsed()
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n";

async fn answer(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    let n = timeout(PATIENCE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_a_preface_is_closed_at_the_head_deadline() {
    let server = Server::start(limits(None)).await;
    let started = Instant::now();
    let mut silent = server.connect().await;
    let mut half_preface = server.connect().await;
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for stream in [&mut silent, &mut half_preface] {
        let after = closed_after(stream, started).await;
        assert!(after >= HEAD && after < HEAD * 4, "closed after {after:?}");
    }
    assert!(server.metric("bp_relay_connection_timeouts_total{deadline=\"request_head\"} 2"));
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_closed_at_the_deadline_of_its_first_byte() {
    let server = Server::start(limits(None)).await;
    let mut stream = server.connect().await;
    let started = Instant::now();
    let trickle = async {
        for byte in b"POST /webhooks/business-processes HTTP/1.1\r\nHost: relay\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(HEAD / 10).await;
        }
    };
    timeout(PATIENCE, trickle).await.unwrap();
    let after = closed_after(&mut stream, started).await;
    assert!(
        after >= HEAD && after < HEAD * 4,
        "closed after {after:?}, while bytes kept coming"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_until_the_idle_deadline_not_the_head_one() {
    let server = Server::start(limits(None)).await;
    let mut stream = server.connect().await;
    stream.write_all(REQUEST).await.unwrap();
    assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let after = closed_after(&mut stream, answered).await;
    assert!(
        after >= IDLE - Duration::from_millis(50) && after < IDLE * 2,
        "closed after {after:?}"
    );
    assert!(server.metric("bp_relay_connection_timeouts_total{deadline=\"idle\"} 1"));
    assert!(server.metric("bp_relay_connection_timeouts_total{deadline=\"request_head\"} 0"));
}

#[tokio::test]
async fn after_an_idle_spell_the_next_heads_first_byte_starts_its_deadline() {
    let server = Server::start(limits(None)).await;
    let mut stream = server.connect().await;
    stream.write_all(REQUEST).await.unwrap();
    assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream.write_all(b"GE").await.unwrap();
    let started = Instant::now();
    let after = closed_after(&mut stream, started).await;
    assert!(
        after < IDLE,
        "closed after {after:?}: by the head deadline, before the idle one"
    );
    assert!(server.metric("bp_relay_connection_timeouts_total{deadline=\"request_head\"} 1"));
}

#[tokio::test]
async fn an_http2_connection_that_answers_pings_is_still_closed_when_idle() {
    let server = Server::start(limits(None)).await;
    let stream = server.connect().await;
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let driven = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/", server.addr))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    let answered = Instant::now();
    // The client answers the server's pings every 100 ms meanwhile.
    timeout(PATIENCE, driven)
        .await
        .expect("the server ended the connection")
        .unwrap()
        .unwrap();
    let after = answered.elapsed();
    assert!(
        after >= IDLE - Duration::from_millis(50) && after < IDLE * 2,
        "closed after {after:?}"
    );
    assert!(server.metric("bp_relay_connection_timeouts_total{deadline=\"idle\"} 1"));
}

#[tokio::test]
async fn beyond_the_cap_a_connection_waits_in_the_backlog_until_one_closes() {
    let server = Server::start(limits(Some(2))).await;
    let started = Instant::now();
    let _first = server.connect().await;
    let _second = server.connect().await;
    // The kernel completes the handshake; the relay does not accept it yet.
    let mut third = server.connect().await;
    third.write_all(REQUEST).await.unwrap();
    let answered = answer(&mut third).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(
        started.elapsed() >= HEAD,
        "served only once the silent ones were closed by their deadline"
    );
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431_and_is_counted() {
    let server = Server::start(limits(None)).await;
    let mut stream = server.connect().await;
    // Just over the 16 KiB limit: hyper stops reading there, and the less it leaves unread, the
    // less likely its close turns into a reset that overtakes the answer.
    let padding = "a".repeat(16 * 1024);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nhost: x\r\nx-pad: {padding}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let counted = "bp_relay_http_requests_total{route=\"other\",status=\"431\"} 1";
    timeout(PATIENCE, async {
        while !server.metric(counted) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{counted} never appeared"));
}
