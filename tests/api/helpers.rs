//! The harness: every test owns its world. [`spawn_relay`] creates fresh topics on the test
//! broker, builds a relay in this process on port 0 and hands back what a test needs to talk to
//! it; [`RelayProcess`] runs the binary as an operator does; [`DedicatedBroker`] is a broker of the
//! test's own, to stop or freeze. Kafka reads run on blocking threads; every wait is bounded.
//!
//! `TEST_LOG=1` shows the in-process relays' logs in a failing test's output, filtered by
//! `RUST_LOG` (default `info`).

mod broker;
mod client;
mod redis;
#[path = "../support/mod.rs"]
mod support;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    ops::Index,
    path::PathBuf,
    sync::{LazyLock, Mutex, Once},
    time::Duration,
};

use bp_relay::{kafka::Publisher, App};
use http::HeaderMap;
use rand::{distr::Alphanumeric, Rng};
use tokio::sync::oneshot;

pub use broker::{headers_of, java_partition, DedicatedBroker, Topic, Topics};
pub use client::{
    hold, post, send, signed_headers, signed_headers_at, try_send, Answer, HeldRequest,
};
pub use redis::DedicatedRedis;
pub use support::{
    relay_args::RelayArgs,
    relay_process::{run_to_end, RelayProcess, Signal},
    wait::{blocking, eventually},
};

/// The secret every test relay is configured with, unless a test chooses others.
pub const SECRET: &str = "whsec_integration_7c1d";

pub use bp_relay::ingress::http::{ACTION_PATH, PROCESS_PATH};

/// Bootstrap servers of the shared test broker (started by scripts/test.sh).
pub fn bootstrap() -> String {
    std::env::var("BP_RELAY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// One of the project's own delivery cases in tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A valid business process keyed `id`, small and without personal data.
pub fn process_body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","partner":"P","merchant":"M","customer":"c","status":"scheduled","expiration":"2026-12-01T00:00:00Z","actions":[],"addresses":[]}}"#)
        .into_bytes()
}

/// A random suffix for names this test owns.
pub fn unique(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("{prefix}-{}", suffix.to_lowercase())
}

/// A free local port that no other test of this process was handed, for a child process or a
/// broker that needs its port on the command line. (Port 0 is used wherever it can be.)
pub fn free_port() -> u16 {
    static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Mutex::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("bind a free local port")
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Installs a test-output subscriber for the in-process relays' logs, once, if `TEST_LOG` is set.
fn init_test_log() {
    static INIT: Once = Once::new();
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}

/// What [`spawn_relay`] sets up: by default one-partition topics on the shared broker and a
/// relay with [`SECRET`] and default flags.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    partitions: i32,
    flags: RelayArgs,
    secrets: Vec<String>,
    bootstrap: Option<String>,
    process_topic_config: Vec<(String, String)>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            partitions: 1,
            flags: RelayArgs::new(),
            secrets: vec![SECRET.to_owned()],
            bootstrap: None,
            process_topic_config: Vec::new(),
        }
    }
}

impl RelayOptions {
    /// Partitions of each of the three topics.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// More relay flags, e.g. `["--max-body", "1KiB"]`.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags = self.flags.args(flags.iter().copied());
        self
    }

    /// The signing secrets instead of [`SECRET`]; none to give them as a file in [`RelayOptions::flags`].
    pub fn secrets(mut self, secrets: &[&str]) -> Self {
        self.secrets = secrets.iter().map(|secret| secret.to_string()).collect();
        self
    }

    /// Another broker than the shared one (a [`DedicatedBroker`]).
    pub fn broker(mut self, bootstrap: &str) -> Self {
        self.bootstrap = Some(bootstrap.to_owned());
        self
    }

    /// A topic-level config of the business-process topic, e.g. `max.message.bytes`.
    pub fn process_topic_config(mut self, key: &str, value: &str) -> Self {
        self.process_topic_config
            .push((key.to_owned(), value.to_owned()));
        self
    }
}

/// Creates fresh topics, then builds and starts a relay on them in this process, on port 0.
///
/// The relay runs on a runtime of its own, on its own thread, as it does in production: the
/// test's client and Kafka reads never share its workers.
pub async fn spawn_relay(options: RelayOptions) -> TestRelay {
    init_test_log();
    let bootstrap = options.bootstrap.unwrap_or_else(bootstrap);
    let topics = Topics::create(
        &bootstrap,
        options.partitions,
        &options.process_topic_config,
    )
    .await;
    let mut args = RelayArgs::new().on_free_ports();
    // No secrets: the test gives them another way (--signing-secrets-file in its flags).
    if !options.secrets.is_empty() {
        let secrets: Vec<&str> = options.secrets.iter().map(String::as_str).collect();
        args = args.signing_secrets(&secrets);
    }
    let args = args.args(topics.args()).args(options.flags);
    let config = args
        .parse()
        .unwrap_or_else(|error| panic!("relay flags {args:?}: {error}"));
    let (started, addresses) = oneshot::channel();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("relay".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the relay's runtime");
            runtime.block_on(async move {
                let app = match App::build(&config).await {
                    Ok(app) => app,
                    Err(error) => {
                        let _ = started.send(Err(error.to_string()));
                        return;
                    }
                };
                let _ = started.send(Ok((
                    app.ingress_addr(),
                    app.admin_addr(),
                    app.publisher().clone(),
                )));
                if let Err(error) = app
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                {
                    tracing::error!(%error, "The test relay stopped on its own.");
                }
            });
        })
        .expect("start the relay's thread");
    let (addr, admin, publisher) = addresses
        .await
        .expect("the relay's thread reports its start")
        .unwrap_or_else(|error| panic!("the relay builds with {args:?}: {error}"));
    // It listens before it has confirmed its topics; deliveries are let in only after.
    eventually(
        "the relay to confirm its topics",
        Duration::from_secs(30),
        || async {
            let text = admin_get(admin, "/readyz").await.text();
            !text.contains("starting") && !text.contains("topics_missing")
        },
    )
    .await;
    TestRelay {
        addr,
        admin,
        topics,
        publisher,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// A relay running in this process, and the topics it writes to. Stopped on drop.
pub struct TestRelay {
    /// The webhook ingress.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its three topics.
    pub topics: Topics,
    /// Its publisher, to inject faults.
    pub publisher: Publisher,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestRelay {
    /// The URL of `path` on the ingress.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a delivery signed with [`SECRET`] to the business-process route.
    pub async fn send_process(&self, body: &[u8]) -> Answer {
        post(
            &self.url(PROCESS_PATH),
            signed_headers(SECRET),
            body.to_vec(),
        )
        .await
    }

    /// Sends a delivery signed with [`SECRET`] to the action route.
    pub async fn send_action(&self, body: &[u8]) -> Answer {
        post(
            &self.url(ACTION_PATH),
            signed_headers(SECRET),
            body.to_vec(),
        )
        .await
    }

    /// Starts a signed business-process delivery and holds back the second half of its body:
    /// the request stays in flight until [`HeldRequest::finish`].
    pub async fn hold_process(&self, body: &[u8]) -> HeldRequest {
        hold(
            self.addr,
            PROCESS_PATH,
            signed_headers(SECRET),
            body.to_vec(),
        )
        .await
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Answer {
        admin_get(self.admin, path).await
    }

    /// The series of `/metrics`.
    pub async fn metrics(&self) -> Scrape {
        scrape(self.admin).await
    }

    /// Stops the relay and waits for its drain to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let joined = tokio::time::timeout(
                Duration::from_secs(30),
                tokio::task::spawn_blocking(move || thread.join()),
            )
            .await
            .expect("the relay drains in time")
            .expect("joining the relay's thread");
            if let Err(panic) = joined {
                std::panic::resume_unwind(panic);
            }
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

/// GET `path` on an admin listener (in this process or a child's).
pub async fn admin_get(admin: SocketAddr, path: &str) -> Answer {
    send(
        http::Request::get(format!("http://{admin}{path}"))
            .body(Default::default())
            .unwrap(),
    )
    .await
}

/// Scrapes `/metrics` of an admin listener.
pub async fn scrape(admin: SocketAddr) -> Scrape {
    Scrape::parse(&admin_get(admin, "/metrics").await.text())
}

/// One scrape of `/metrics`: series (name and labels, as printed) to value.
#[derive(Debug)]
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape(series)
    }

    /// The value of `series`, if it was exported.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// The sum of every series of the metric `name` (all label values).
    pub fn sum(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.0
            .iter()
            .filter(|(series, _)| series.starts_with(&prefix))
            .map(|(_, value)| value)
            .sum()
    }

    /// Whether any series of the metric `name` was exported.
    pub fn has(&self, name: &str) -> bool {
        let prefix = format!("{name}{{");
        self.0
            .keys()
            .any(|series| *series == name || series.starts_with(&prefix))
    }
}

impl Index<&str> for Scrape {
    type Output = f64;

    fn index(&self, series: &str) -> &f64 {
        self.0
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in /metrics"))
    }
}

/// Headers with only a content type: a delivery without any signature.
pub fn unsigned_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers
}

/// SHA-256 hex of `bytes`: the `ce_id` a record of this body carries.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
