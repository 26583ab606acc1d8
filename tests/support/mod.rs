//! Test harness: every test owns its world — fresh topics on the real Kafka broker, a relay on
//! port 0, its own consumer — and waits only on conditions, each with a timeout.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod process;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bp_relay::{config::Cli, signature, App};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rand::{distr::Alphanumeric, Rng};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message, OwnedMessage},
    ClientConfig, TopicPartitionList,
};
use tokio::{sync::oneshot, task::JoinHandle};

/// The secret every test relay is configured with.
pub const SECRET: &str = "whsec_integration_7c1d";

/// Bootstrap servers of the test broker (started by scripts/test.sh).
pub fn bootstrap() -> String {
    std::env::var("BP_RELAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A shared sample delivery from ../shared/spec/samples.
pub fn sample(name: &str) -> Vec<u8> {
    read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/samples").join(name))
}

/// One of the project's own extra cases in tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name))
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A random suffix for names this test owns.
pub fn unique(prefix: &str) -> String {
    let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(10).map(char::from).collect();
    format!("{prefix}-{}", suffix.to_lowercase())
}

/// The three topics of one relay, created fresh on `bootstrap`.
#[derive(Debug, Clone)]
pub struct Topics {
    pub bootstrap: String,
    pub processes: String,
    pub actions: String,
    pub dead_letter: String,
}

impl Topics {
    /// Creates the three topics with `partitions` each.
    pub async fn create(bootstrap: &str, partitions: i32) -> Topics {
        let topics = Topics {
            bootstrap: bootstrap.to_owned(),
            processes: unique("bp"),
            actions: unique("actions"),
            dead_letter: unique("dlq"),
        };
        create_topics(bootstrap, &[&topics.processes, &topics.actions, &topics.dead_letter], partitions).await;
        topics
    }

    /// The relay flags pointing at these topics.
    pub fn args(&self) -> Vec<String> {
        [
            "--kafka-brokers", &self.bootstrap,
            "--topic", &self.processes,
            "--actions-topic", &self.actions,
            "--dead-letter-topic", &self.dead_letter,
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Creates topics and waits until the broker confirms them.
pub async fn create_topics(bootstrap: &str, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new_topics: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await.expect("create topics");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
    // The controller answers before every broker's metadata knows the topic: wait until it does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names.iter().all(|name| has_leaders(bootstrap, name)) {
        assert!(Instant::now() < deadline, "topics {names:?} did not get partition leaders within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_leaders(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return false };
    metadata.topics().iter().any(|t| t.error().is_none() && !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0))
}

/// A relay running in this process.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestRelay {
    /// Builds and starts a relay with the test secret, the given topics and `extra` flags.
    pub async fn start(topics: &Topics, extra: &[&str]) -> TestRelay {
        let mut args: Vec<String> = ["bp-relay", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--signing-secrets", SECRET]
            .map(String::from)
            .to_vec();
        args.extend(topics.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(args).await
    }

    /// Builds and starts a relay from a full argument list.
    pub async fn start_with(args: Vec<String>) -> TestRelay {
        let config = Cli::try_parse_from(&args).expect("test config parses").config;
        config.validate().expect("test config is valid");
        let brokers = config.kafka_brokers.clone().expect("tests use a real broker");
        let app = App::build(&config, &brokers).await.expect("relay builds");
        let (addr, admin) = (app.ingress_addr(), app.admin_addr());
        let (shutdown, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        TestRelay { addr, admin, shutdown: Some(shutdown), task: Some(task) }
    }

    /// The URL of `path` on the ingress.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a delivery signed with the test secret to the business-process route.
    pub async fn send_process(&self, body: &[u8]) -> Answer {
        post(&self.url("/webhooks/business-processes"), signed_headers(SECRET), body.to_vec()).await
    }

    /// Sends a delivery signed with the test secret to the action route.
    pub async fn send_action(&self, body: &[u8]) -> Answer {
        post(&self.url("/webhooks/business-process-actions"), signed_headers(SECRET), body.to_vec()).await
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Answer {
        send(Request::get(format!("http://{}{path}", self.admin)).body(Full::new(Bytes::new())).unwrap()).await
    }

    /// Parsed `/metrics`: series (name plus labels, as printed) to value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let answer = self.admin_get("/metrics").await;
        parse_metrics(&answer.text())
    }

    /// Stops the relay and waits for its drain to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task).await.expect("relay drains in time").expect("relay task");
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Prometheus text to a map of series to value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Headers Authvia would send now, signed with `secret`.
pub fn signed_headers(secret: &str) -> HeaderMap {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    signed_headers_at(secret, &unique("value"), now)
}

/// Headers signed with `secret` for a chosen value and timestamp.
pub fn signed_headers_at(secret: &str, value: &str, timestamp: i64) -> HeaderMap {
    let timestamp = timestamp.to_string();
    let mut headers = HeaderMap::new();
    headers.insert("x-authvia-signature", signature::sign(secret, value, &timestamp).parse().unwrap());
    headers.insert("x-authvia-value", value.parse().unwrap());
    headers.insert("x-authvia-timestamp", timestamp.parse().unwrap());
    headers.insert("x-authvia-algorithm", "SHA-256".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// POSTs `body` with `headers` (HTTP/1.1).
pub async fn post(url: &str, headers: HeaderMap, body: Vec<u8>) -> Answer {
    let mut request = Request::post(url).body(Full::new(Bytes::from(body))).unwrap();
    *request.headers_mut() = headers;
    send(request).await
}

/// Sends a request with a 30 s bound (well past every relay deadline: a hang fails the test).
pub async fn send(request: Request<Full<Bytes>>) -> Answer {
    try_send(request).await.expect("request reaches the relay")
}

/// Like [`send`], but a refused or reset connection is an `Err` instead of a panic (a request
/// that was not yet accepted when the relay began draining). A hang still fails.
pub async fn try_send(request: Request<Full<Bytes>>) -> Result<Answer, String> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("the relay answers within 30 s")
        .map_err(|error| format!("{error:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|error| format!("{error:?}"))?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body })
}

/// Reads `expected` records of `topic` from the beginning, failing after `timeout`, then
/// checks nothing more is there.
pub fn consume(bootstrap: &str, topic: &str, expected: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test-group"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            records.push(result.expect("consume").detach());
        }
    }
    assert_eq!(records.len(), expected, "records in {topic} after 30 s");
    assert_eq!(record_count(bootstrap, topic), expected as i64, "no more records than expected in {topic}");
    records
}

/// Records in `topic`: the sum of its partitions' high watermarks (it starts empty).
pub fn record_count(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("watermarks"))
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// A record's headers as a map of UTF-8 strings.
pub fn headers_of(record: &OwnedMessage) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = record.headers() {
        for header in headers.iter() {
            let value = String::from_utf8(header.value.unwrap_or_default().to_vec()).expect("UTF-8 header");
            assert!(map.insert(header.key.to_owned(), value).is_none(), "duplicate header {}", header.key);
        }
    }
    map
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const KAFKA_SEED: u32 = 0x9747_b28c;
    ((murmur2::murmur2(key, KAFKA_SEED) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Waits until `condition` holds, polling, or panics after `timeout` naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SHA-256 hex of `bytes` (the expected ce_id).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
