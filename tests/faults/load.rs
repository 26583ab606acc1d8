//! Bounded load and its ledger: several senders post distinct signed deliveries at a steady
//! pace, with a bound on each one's requests in flight, a few unauthenticated ones among them,
//! and note every answer (or lost connection) with its timing. A signed delivery answered
//! anything but 2xx is sent again as Authvia would ([`crate::retry`]); each attempt is an entry of
//! the ledger.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bp_relay::{demo::samples, ingress::signature};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{
    net::TcpStream,
    sync::{mpsc, Semaphore},
    task::{JoinHandle, JoinSet},
    time::MissedTickBehavior,
};

use crate::{cluster::PARTITIONS, relay::SECRET, retry::Redrive};

/// Concurrent senders.
pub const SENDERS: usize = 8;

/// Each sender starts a request this often, whether or not earlier ones were answered (Authvia's
/// deliveries do not wait for each other either): SENDERS / PACE requests a second, a load three
/// JVMs and a debug relay carry on two cores.
pub const PACE: Duration = Duration::from_millis(40);

/// Requests one sender has in flight at most. The bound on the load: while answers are slow (an
/// outage: 4 s each) a sender waits for a free slot, so the rate drops instead of piling up.
pub const IN_FLIGHT_PER_SENDER: usize = 32;

/// Every this-many-th request of a sender is signed with a wrong secret.
pub const UNAUTHENTICATED_EVERY: u64 = 10;

/// A request without an answer after this long is a hang (recorded as lost; the latency check
/// fails it).
const HANG: Duration = Duration::from_secs(30);

/// One delivery: a business process with its own id (the record key).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The process id: the record key, unique in the run.
    pub key: String,
    /// The exact body bytes.
    pub body: Bytes,
    /// Signed with the relay's secret; otherwise with a wrong one (must get 401, write nothing).
    pub signed: bool,
    /// X-AUTHVIA-TIMESTAMP of its first attempt (Unix seconds): what a retry with the original
    /// signing carries again.
    pub signed_at: i64,
    /// How its retries are signed. Authvia's docs do not say whether a retry is signed afresh or
    /// carries the first attempt's headers: the load does both, half of the deliveries each.
    pub retry_signing: Signing,
}

/// The X-AUTHVIA-* headers of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// The first attempt's headers, timestamp and all.
    Original,
    /// Signed again at the attempt's time.
    Fresh,
}

impl Delivery {
    /// The sample business process of docs/examples with `key` as its id.
    pub fn new(key: String, signed: bool) -> Delivery {
        let mut process: serde_json::Value =
            serde_json::from_slice(samples::BUSINESS_PROCESS).expect("the sample is JSON");
        process["id"] = serde_json::Value::String(key.clone());
        Delivery {
            key,
            body: Bytes::from(serde_json::to_vec(&process).unwrap()),
            signed,
            signed_at: unix_now(),
            retry_signing: Signing::Original,
        }
    }

    /// The same delivery, its retries signed as `signing` says.
    pub fn retried_with(self, signing: Signing) -> Delivery {
        Delivery {
            retry_signing: signing,
            ..self
        }
    }

    /// The partition its key hashes to: the Java client's default partitioner, which the relay's
    /// `murmur2_random` matches.
    pub fn partition(&self) -> i32 {
        const KAFKA_SEED: u32 = 0x9747_b28c;
        ((murmur2::murmur2(self.key.as_bytes(), KAFKA_SEED) & 0x7fff_ffff) % PARTITIONS as u32)
            as i32
    }

    /// Signed headers as Authvia sends them: its first attempt's, or signed now.
    fn headers(&self, signing: Signing) -> HeaderMap {
        let secret = if self.signed {
            SECRET
        } else {
            "whsec_not_the_relays"
        };
        let timestamp = match signing {
            Signing::Original => self.signed_at,
            Signing::Fresh => unix_now(),
        };
        let mut headers = signature::signed_headers(secret, &self.key, timestamp)
            .expect("the key is a header value");
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Where the relay says a 2xx record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What came back.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An HTTP answer: status, the error `code` of a non-2xx, the record of a 2xx.
    Answered {
        status: StatusCode,
        code: Option<String>,
        ack: Option<Ack>,
    },
    /// No answer: the connection was refused or closed, or the request hung.
    Lost(String),
}

/// One request of the ledger.
#[derive(Debug, Clone)]
pub struct Entry {
    pub delivery: Delivery,
    /// 0 for the first attempt, then 1, 2... for the retries.
    pub attempt: u32,
    /// How this attempt was signed (the first is the original).
    pub signing: Signing,
    pub sent: Instant,
    /// `sent` on the wall clock, to compare with a record's timestamp.
    pub sent_at: SystemTime,
    pub answered: Instant,
    pub outcome: Outcome,
}

impl Entry {
    /// The HTTP status, if answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.outcome {
            Outcome::Answered { status, .. } => Some(*status),
            Outcome::Lost(_) => None,
        }
    }

    /// A 2xx.
    pub fn is_2xx(&self) -> bool {
        self.status().is_some_and(|status| status.is_success())
    }

    /// A retry.
    pub fn is_retry(&self) -> bool {
        self.attempt > 0
    }

    /// The error `code` of a non-2xx answer.
    pub fn code(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Answered { code, .. } => code.as_deref(),
            Outcome::Lost(_) => None,
        }
    }

    /// A 503.
    pub fn is_503(&self) -> bool {
        self.status() == Some(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// From the request's start to its answer (or loss).
    pub fn latency(&self) -> Duration {
        self.answered - self.sent
    }
}

/// The load on one relay: running until [`Load::stop`] (or drop).
pub struct Load {
    ledger: Arc<Mutex<Vec<Entry>>>,
    stopping: Arc<AtomicBool>,
    /// When [`Load::stop`] was called: retries go on for a bounded time after it.
    stopped_at: Arc<OnceLock<Instant>>,
    /// The URL every request (new or retried) goes to: another relay's after [`Load::retarget`].
    target: Arc<RwLock<String>>,
    senders: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the senders against `url`; keys start with `tag`.
    pub fn start(url: &str, tag: &str) -> Load {
        let ledger = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let stopped_at = Arc::new(OnceLock::new());
        let target = Arc::new(RwLock::new(url.to_owned()));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let redrive = Redrive::new(
            client.clone(),
            target.clone(),
            ledger.clone(),
            stopped_at.clone(),
        );
        let senders = (0..SENDERS)
            .map(|sender| {
                tokio::spawn(send_until_stopped(
                    client.clone(),
                    target.clone(),
                    format!("{tag}-s{sender}"),
                    redrive.clone(),
                    stopping.clone(),
                ))
            })
            .collect();
        Load {
            ledger,
            stopping,
            stopped_at,
            target,
            senders,
        }
    }

    /// Sends every request from now on, retries included, to `url` (a relay that replaced the
    /// first one).
    pub fn retarget(&self, url: &str) {
        *self.target.write().unwrap() = url.to_owned();
    }

    /// How many entries so far match `predicate`.
    pub fn count(&self, predicate: impl Fn(&Entry) -> bool) -> usize {
        self.ledger
            .lock()
            .unwrap()
            .iter()
            .filter(|entry| predicate(entry))
            .count()
    }

    /// Adds an entry made elsewhere (a held request).
    pub fn record(&self, entry: Entry) {
        self.ledger.lock().unwrap().push(entry);
    }

    /// Stops starting deliveries, waits for those in flight and for their retries (which give up
    /// a bounded time after this call), and returns the ledger.
    pub async fn stop(mut self) -> Vec<Entry> {
        let _ = self.stopped_at.set(Instant::now());
        self.stopping.store(true, Ordering::SeqCst);
        for sender in self.senders.drain(..) {
            sender.await.expect("a sender panicked");
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for sender in &self.senders {
            sender.abort();
        }
    }
}

/// One sender: a delivery every [`PACE`], each one's retries in the same task as its first
/// attempt (its slot freed once the first answer is in).
async fn send_until_stopped(
    client: HttpClient,
    target: Arc<RwLock<String>>,
    tag: String,
    redrive: Redrive,
    stopping: Arc<AtomicBool>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_PER_SENDER));
    let mut requests = JoinSet::new();
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for seq in 1.. {
        pace.tick().await;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore stays open");
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        // Alternating over the signed deliveries (the n-th signed one is `seq` less the
        // unauthenticated before it), so that each way of signing retries gets half of them.
        let nth_signed = seq - seq / UNAUTHENTICATED_EVERY;
        let signing = if nth_signed % 2 == 0 {
            Signing::Original
        } else {
            Signing::Fresh
        };
        let delivery = Delivery::new(format!("{tag}-{seq}"), seq % UNAUTHENTICATED_EVERY != 0)
            .retried_with(signing);
        let url = target.read().unwrap().clone();
        let (client, redrive) = (client.clone(), redrive.clone());
        requests.spawn(async move {
            let first = post(&client, &url, delivery, 0, Signing::Original).await;
            drop(slot);
            redrive.follow(first).await;
        });
        while let Some(done) = requests.try_join_next() {
            done.expect("a request task panicked");
        }
    }
    while let Some(done) = requests.join_next().await {
        done.expect("a request task panicked");
    }
}

/// The client every request of a load goes through.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends attempt `attempt` of `delivery`, signed as `signing` says: its ledger entry.
pub async fn post(
    client: &HttpClient,
    url: &str,
    delivery: Delivery,
    attempt: u32,
    signing: Signing,
) -> Entry {
    let mut request = Request::post(url)
        .body(Full::new(delivery.body.clone()))
        .unwrap();
    *request.headers_mut() = delivery.headers(signing);
    let sent = Instant::now();
    let sent_at = SystemTime::now();
    let outcome = match tokio::time::timeout(HANG, client.request(request)).await {
        Err(_) => Outcome::Lost(format!("no answer within {HANG:?}")),
        Ok(Err(error)) => Outcome::Lost(format!("{error:?}")),
        Ok(Ok(response)) => read_outcome(response).await,
    };
    Entry {
        delivery,
        attempt,
        signing,
        sent,
        sent_at,
        answered: Instant::now(),
        outcome,
    }
}

async fn read_outcome<B>(response: http::Response<B>) -> Outcome
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return Outcome::Lost(format!("body of a {status}: {error:?}")),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let ack = status.is_success().then(|| Ack {
        topic: json["topic"].as_str().unwrap_or_default().to_owned(),
        partition: json["partition"]
            .as_i64()
            .map_or(-1, |partition| partition as i32),
        offset: json["offset"].as_i64().unwrap_or(-1),
    });
    Outcome::Answered {
        status,
        code: json["code"].as_str().map(str::to_owned),
        ack,
    }
}

/// A delivery sent on its own connection with the second half of its body held back: the relay
/// is reading it, so it is in flight (counted by `bp_relay_inflight_requests`) until
/// [`HeldRequest::finish`].
pub struct HeldRequest {
    delivery: Delivery,
    sent: Instant,
    sent_at: SystemTime,
    rest: Bytes,
    chunks: mpsc::Sender<Bytes>,
    answer: JoinHandle<Outcome>,
}

impl HeldRequest {
    /// Connects, sends the headers and the first half of the body.
    pub async fn start(ingress: SocketAddr, delivery: Delivery) -> HeldRequest {
        let stream = TcpStream::connect(ingress)
            .await
            .expect("connect to the relay");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let (chunks, received) = mpsc::channel(2);
        let mut request = Request::post("/webhooks/business-processes")
            .body(ChannelBody(received))
            .unwrap();
        *request.headers_mut() = delivery.headers(Signing::Original);
        request.headers_mut().insert(
            header::HOST,
            HeaderValue::from_str(&ingress.to_string()).unwrap(),
        );
        request.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(delivery.body.len()),
        );
        let half = delivery.body.len() / 2;
        let sent = Instant::now();
        let sent_at = SystemTime::now();
        chunks
            .send(delivery.body.slice(..half))
            .await
            .expect("the connection takes the first half");
        let answer = tokio::spawn(async move {
            match tokio::time::timeout(HANG, sender.send_request(request)).await {
                Err(_) => Outcome::Lost(format!("no answer within {HANG:?}")),
                Ok(Err(error)) => Outcome::Lost(format!("{error:?}")),
                Ok(Ok(response)) => read_outcome(response).await,
            }
        });
        let rest = delivery.body.slice(half..);
        HeldRequest {
            delivery,
            sent,
            sent_at,
            rest,
            chunks,
            answer,
        }
    }

    /// Sends the rest of the body and waits for the answer: the ledger entry.
    pub async fn finish(self) -> Entry {
        // A send error means the connection is gone already; the outcome says why.
        let _ = self.chunks.send(self.rest).await;
        drop(self.chunks);
        let outcome = self.answer.await.expect("the held request's task");
        Entry {
            delivery: self.delivery,
            attempt: 0,
            signing: Signing::Original,
            sent: self.sent,
            sent_at: self.sent_at,
            answered: Instant::now(),
            outcome,
        }
    }
}

/// A request body fed chunk by chunk from a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}
