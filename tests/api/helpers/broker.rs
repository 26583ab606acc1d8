//! The Kafka side: fresh topics per test, reading records back, and brokers of a test's own.
//! Every librdkafka call that blocks (polling, metadata, watermarks) and every run of
//! scripts/kafka.sh happens on a blocking thread, never on the runtime's workers.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message, OwnedMessage},
    ClientConfig, TopicPartitionList,
};

use super::{blocking, eventually, free_port, unique, RelayArgs};

/// How long a test waits for records to arrive, or for a topic to get leaders.
const KAFKA_WAIT: Duration = Duration::from_secs(30);

/// One topic on one cluster, to read back what a relay wrote.
#[derive(Debug, Clone)]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    bootstrap: String,
}

impl Topic {
    /// The topic `name` on the cluster at `bootstrap` (created elsewhere).
    pub fn on(bootstrap: &str, name: &str) -> Topic {
        Topic {
            name: name.to_owned(),
            bootstrap: bootstrap.to_owned(),
        }
    }

    /// Bootstrap servers of its cluster.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Reads `expected` records from the beginning, failing after 30 s, then checks that
    /// nothing more is there.
    pub async fn consume(&self, expected: usize) -> Vec<OwnedMessage> {
        let topic = self.clone();
        let records = blocking(move || topic.consume_blocking(expected)).await;
        assert_eq!(
            self.count().await,
            expected as i64,
            "no more records than expected in {}",
            self.name
        );
        records
    }

    /// Records in the topic: the sum of its partitions' high watermarks (it started empty).
    pub async fn count(&self) -> i64 {
        let topic = self.clone();
        blocking(move || topic.count_blocking()).await
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", unique("test-group"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    fn partitions(&self, consumer: &BaseConsumer) -> Vec<i32> {
        let metadata = consumer
            .fetch_metadata(Some(&self.name), Duration::from_secs(10))
            .expect("metadata");
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|partition| partition.id())
            .collect()
    }

    fn consume_blocking(&self, expected: usize) -> Vec<OwnedMessage> {
        let consumer = self.consumer();
        let mut assignment = TopicPartitionList::new();
        for partition in self.partitions(&consumer) {
            assignment
                .add_partition_offset(&self.name, partition, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let deadline = Instant::now() + KAFKA_WAIT;
        let mut records = Vec::new();
        while records.len() < expected && Instant::now() < deadline {
            if let Some(result) = consumer.poll(Duration::from_millis(200)) {
                records.push(result.expect("consume").detach());
            }
        }
        assert_eq!(
            records.len(),
            expected,
            "records in {} after {KAFKA_WAIT:?}",
            self.name
        );
        records
    }

    fn count_blocking(&self) -> i64 {
        let consumer = self.consumer();
        self.partitions(&consumer)
            .into_iter()
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&self.name, partition, Duration::from_secs(10))
                    .expect("watermarks");
                high - low
            })
            .sum()
    }

    fn has_leaders(&self) -> bool {
        let consumer = self.consumer();
        let Ok(metadata) = consumer.fetch_metadata(Some(&self.name), Duration::from_secs(5)) else {
            return false;
        };
        metadata.topics().iter().any(|t| {
            t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        })
    }
}

/// The three topics of one relay, created fresh (unique names) for one test.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Bootstrap servers of their cluster.
    pub bootstrap: String,
    /// `--topic`.
    pub processes: Topic,
    /// `--actions-topic`.
    pub actions: Topic,
    /// `--dead-letter-topic`.
    pub dead_letter: Topic,
}

impl Topics {
    /// Creates three topics with `partitions` each (the business-process one with
    /// `process_config`) and waits until every partition has a leader.
    pub async fn create(
        bootstrap: &str,
        partitions: i32,
        process_config: &[(String, String)],
    ) -> Topics {
        let topics = Topics::named(bootstrap);
        topics.create_them(partitions, process_config).await;
        topics
    }

    /// Fresh names on the cluster at `bootstrap`, not created yet ([`Topics::create_them`]).
    pub fn named(bootstrap: &str) -> Topics {
        Topics {
            bootstrap: bootstrap.to_owned(),
            processes: Topic::on(bootstrap, &unique("bp")),
            actions: Topic::on(bootstrap, &unique("actions")),
            dead_letter: Topic::on(bootstrap, &unique("dlq")),
        }
    }

    /// Creates the three topics and waits until every partition has a leader.
    pub async fn create_them(&self, partitions: i32, process_config: &[(String, String)]) {
        let topics = self;
        let bootstrap = self.bootstrap.as_str();
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
        let mut processes = NewTopic::new(
            &topics.processes.name,
            partitions,
            TopicReplication::Fixed(1),
        );
        for (key, value) in process_config {
            processes = processes.set(key, value);
        }
        let new_topics = [
            processes,
            NewTopic::new(&topics.actions.name, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(
                &topics.dead_letter.name,
                partitions,
                TopicReplication::Fixed(1),
            ),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .expect("create topics");
        for result in results {
            result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
        }
        // The controller answers before every broker's metadata knows the topics.
        for topic in topics.all() {
            let probe = topic.clone();
            eventually(
                &format!("{} to get partition leaders", topic.name),
                KAFKA_WAIT,
                || {
                    let probe = probe.clone();
                    async move { blocking(move || probe.has_leaders()).await }
                },
            )
            .await;
        }
    }

    fn all(&self) -> [&Topic; 3] {
        [&self.processes, &self.actions, &self.dead_letter]
    }

    /// The relay flags naming the broker and these topics.
    pub fn args(&self) -> RelayArgs {
        RelayArgs::new().brokers(&self.bootstrap).topics(
            &self.processes.name,
            &self.actions.name,
            &self.dead_letter.name,
        )
    }
}

/// A record's headers as a map of UTF-8 strings (each at most once).
pub fn headers_of(record: &OwnedMessage) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if let Some(headers) = record.headers() {
        for header in headers.iter() {
            let value =
                String::from_utf8(header.value.unwrap_or_default().to_vec()).expect("UTF-8 header");
            assert!(
                map.insert(header.key.to_owned(), value).is_none(),
                "duplicate header {}",
                header.key
            );
        }
    }
    map
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const KAFKA_SEED: u32 = 0x9747_b28c;
    ((murmur2::murmur2(key, KAFKA_SEED) & 0x7fff_ffff) % partitions as u32) as i32
}

/// A single-node broker of one test's own (scripts/kafka.sh on free ports, in a temporary
/// directory), so stopping or freezing it disturbs no other test. Stopped on drop.
pub struct DedicatedBroker {
    port: u16,
    controller_port: u16,
    data_dir: tempfile::TempDir,
    frozen: AtomicBool,
    // A SASL_SSL listener's port, beside the plaintext one (see `with_sasl_ssl`).
    sasl_ssl_port: Option<u16>,
}

impl DedicatedBroker {
    /// Starts a fresh broker and waits until it answers.
    pub async fn start() -> DedicatedBroker {
        let broker = DedicatedBroker::unstarted();
        broker.restart().await;
        broker
    }

    /// A broker with its ports and data dir, not started yet ([`DedicatedBroker::restart`]
    /// starts it): for a relay that starts before Kafka.
    pub fn unstarted() -> DedicatedBroker {
        DedicatedBroker {
            port: free_port(),
            controller_port: free_port(),
            data_dir: tempfile::tempdir().unwrap(),
            frozen: AtomicBool::new(false),
            sasl_ssl_port: None,
        }
    }

    /// Starts a fresh broker with a SASL_SSL listener too (a test CA, the users `relay-plain`
    /// (PLAIN) and `relay-scram` (SCRAM-SHA-512) with `password`), and waits until it answers.
    pub async fn with_sasl_ssl(password: &str) -> DedicatedBroker {
        let mut broker = DedicatedBroker::unstarted();
        broker.sasl_ssl_port = Some(free_port());
        std::fs::write(broker.data_dir.path().join("sasl-password"), password).unwrap();
        broker.restart().await;
        broker
    }

    /// The SASL_SSL listener's bootstrap servers.
    pub fn sasl_ssl_bootstrap(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.sasl_ssl_port.expect("started with_sasl_ssl")
        )
    }

    /// The CA that signed the SASL_SSL listener's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.path().join("tls/ca.pem")
    }

    /// Its bootstrap servers.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again after [`DedicatedBroker::stop`], with its data, and waits until it answers.
    pub async fn restart(&self) {
        let (port, controller_port) = (self.port.to_string(), self.controller_port.to_string());
        let mut args = vec![
            "start",
            "--port",
            &port,
            "--controller-port",
            &controller_port,
        ];
        let sasl_port = self.sasl_ssl_port.map(|port| port.to_string());
        let password_file = self
            .data_dir
            .path()
            .join("sasl-password")
            .display()
            .to_string();
        if let Some(sasl_port) = &sasl_port {
            args.extend([
                "--sasl-ssl-port",
                sasl_port,
                "--sasl-password-file",
                &password_file,
            ]);
        }
        self.script(&args).await;
    }

    /// Stops it cleanly and waits until the process is gone.
    pub async fn stop(&self) {
        self.script(&["stop"]).await;
    }

    /// Freezes the broker process (SIGSTOP): connections stay open, nothing is answered.
    pub async fn freeze(&self) {
        self.signal("STOP").await;
        self.frozen.store(true, Ordering::SeqCst);
        // The signal is delivered asynchronously: a request sent before the process stops
        // would still be answered.
        let status = self.data_dir.path().join("kafka.pid");
        let pid = std::fs::read_to_string(&status).unwrap_or_default();
        let proc_status = format!("/proc/{}/status", pid.trim());
        crate::helpers::eventually("the broker to be stopped", Duration::from_secs(5), || {
            let proc_status = proc_status.clone();
            async move {
                std::fs::read_to_string(&proc_status)
                    .is_ok_and(|text| text.lines().any(|line| line.starts_with("State:\tT")))
            }
        })
        .await;
    }

    /// Lets a frozen broker run again (SIGCONT).
    pub async fn thaw(&self) {
        self.signal("CONT").await;
        self.frozen.store(false, Ordering::SeqCst);
    }

    async fn signal(&self, signal: &str) {
        let pid_file = self.data_dir.path().join("kafka.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|error| panic!("{}: {error}", pid_file.display()));
        let args = [format!("-{signal}"), pid.trim().to_owned()];
        let status = blocking(move || Command::new("kill").args(args).status())
            .await
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} of the dedicated broker failed"
        );
    }

    async fn script(&self, args: &[&str]) {
        run_script(script(), args, self.data_dir.path()).await;
    }
}

/// Runs one of the project's server scripts (`scripts/kafka.sh`, `scripts/redis.sh`) with
/// `args` and `--data-dir`, failing the test with its output if it fails.
pub(super) async fn run_script(script: PathBuf, args: &[&str], data_dir: &std::path::Path) {
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    let output = blocking(move || command.output())
        .await
        .unwrap_or_else(|error| panic!("run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        // A frozen broker cannot stop: let it run first (a test failed between freeze and thaw).
        if self.frozen.load(Ordering::SeqCst) {
            if let Ok(pid) = std::fs::read_to_string(self.data_dir.path().join("kafka.pid")) {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            }
        }
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .output();
    }
}

/// scripts/kafka.sh, as scripts/test.sh names it.
fn script() -> PathBuf {
    std::env::var_os("BP_RELAY_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
}
