//! A TCP proxy in front of one Kafka node, which that node advertises to clients (clients learn
//! broker addresses from metadata, so only an advertised proxy sees their traffic). It forwards
//! at once, or holds every chunk for a set latency: a slow broker, without slowing its
//! replication (the cluster replicates on another listener).
//!
//! The latency is added per chunk and does not limit throughput: chunks are stamped when read
//! and written when due, in order, so a pipelined request still overtakes nothing.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::mpsc,
    task::JoinHandle,
    time::Instant,
};

/// How long the proxy tries to reach the node for a new client connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The latency each direction adds, and the chunks still held back.
#[derive(Default)]
struct Shared {
    to_broker_ms: AtomicU64,
    to_client_ms: AtomicU64,
    held_chunks: AtomicUsize,
}

/// A proxy listening on a local port. Stops accepting on drop (open connections end with their
/// peers).
pub struct SlowProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a free local port and forwards every connection to `upstream`, without delay.
    pub async fn start(upstream: SocketAddr) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        SlowProxy {
            addr,
            shared,
            accept,
        }
    }

    /// Where clients reach it: what the node behind it advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The latency added to each chunk towards the broker and towards the client, from now on.
    pub fn set_latency(&self, to_broker: Duration, to_client: Duration) {
        self.shared
            .to_broker_ms
            .store(to_broker.as_millis() as u64, Ordering::SeqCst);
        self.shared
            .to_client_ms
            .store(to_client.as_millis() as u64, Ordering::SeqCst);
    }

    /// Chunks read but not yet delivered: a produce request held here may still land.
    pub fn held_chunks(&self) -> usize {
        self.shared.held_chunks.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            // A node that is down: the client sees its connection closed, as it would see it
            // refused without the proxy.
            let Ok(Ok(broker)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
            else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = broker.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (broker_read, broker_write) = broker.into_split();
            tokio::spawn(pump(
                client_read,
                broker_write,
                shared.clone(),
                Direction::ToBroker,
            ));
            tokio::spawn(pump(broker_read, client_write, shared, Direction::ToClient));
        });
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToBroker,
    ToClient,
}

impl Direction {
    fn latency(self, shared: &Shared) -> Duration {
        let ms = match self {
            Direction::ToBroker => &shared.to_broker_ms,
            Direction::ToClient => &shared.to_client_ms,
        };
        Duration::from_millis(ms.load(Ordering::SeqCst))
    }
}

/// Copies one direction: a reader stamps each chunk with the time it is due, a writer delivers
/// it then. End of stream is passed on (a half close) after the chunks before it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    direction: Direction,
) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let writer = tokio::spawn(async move {
        let mut broken = false;
        while let Some((at, chunk)) = due.recv().await {
            if !broken {
                tokio::time::sleep_until(at).await;
                broken = to.write_all(&chunk).await.is_err();
            }
            writer_shared.held_chunks.fetch_sub(1, Ordering::SeqCst);
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                shared.held_chunks.fetch_add(1, Ordering::SeqCst);
                let at = Instant::now() + direction.latency(&shared);
                if chunks.send((at, buffer[..read].to_vec())).is_err() {
                    shared.held_chunks.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
            }
        }
    }
    drop(chunks);
    let _ = writer.await;
}
