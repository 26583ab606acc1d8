//! The 3-node KRaft cluster of the fault matrix, run by scripts/kafka.sh (`cluster` and `node`
//! commands): started once for every scenario, broken by the scenarios, restored between them,
//! stopped on drop. Every run of the script and every blocking librdkafka call happens on a
//! blocking thread.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use rand::{distr::Alphanumeric, Rng};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

use crate::support::{
    relay_args::RelayArgs,
    wait::{blocking, eventually},
};

/// Nodes of the cluster, ids 0..NODES.
pub const NODES: usize = 3;

/// Partitions of every scenario topic: two led by each node when the topic is created.
pub const PARTITIONS: i32 = 6;

/// Every record on three replicas, acknowledged once two have it.
const REPLICATION_FACTOR: i32 = 3;
const MIN_INSYNC_REPLICAS: &str = "2";

/// Longest wait for fresh topics to have a leader and all replicas in sync on every partition.
const TOPICS_SETTLE: Duration = Duration::from_secs(60);

/// What a scenario does to one node (`scripts/kafka.sh node ACTION`).
#[derive(Debug, Clone, Copy)]
pub enum NodeAction {
    /// Restart a stopped node on its data and wait until it is back in the cluster.
    Start,
    /// SIGTERM, waiting until the process is gone.
    Stop,
    /// SIGKILL.
    Kill,
    /// SIGSTOP: the process holds its sockets and answers nothing.
    Pause,
    /// SIGCONT.
    Resume,
}

impl NodeAction {
    fn arg(self) -> &'static str {
        match self {
            NodeAction::Start => "start",
            NodeAction::Stop => "stop",
            NodeAction::Kill => "kill",
            NodeAction::Pause => "pause",
            NodeAction::Resume => "resume",
        }
    }
}

/// The running cluster. Stopped on drop.
pub struct Cluster {
    data_dir: PathBuf,
    base_port: u16,
    /// Nodes that advertise another client address (a proxy) than their own port.
    advertised: Vec<(usize, SocketAddr)>,
}

impl Cluster {
    /// Starts a fresh cluster in `data_dir` (anything left there by an aborted run is stopped and
    /// removed first) with client ports from `base_port`, and waits until every node is in it.
    pub async fn start(
        data_dir: PathBuf,
        base_port: u16,
        advertised: Vec<(usize, SocketAddr)>,
    ) -> Cluster {
        let cluster = Cluster {
            data_dir,
            base_port,
            advertised,
        };
        if cluster.data_dir.exists() {
            let _ = script_status(&["cluster", "stop", "--kill", "--data-dir", &cluster.dir()]);
            std::fs::remove_dir_all(&cluster.data_dir).expect("remove the previous run's cluster");
        }
        cluster.restore().await;
        cluster
    }

    /// The node's own client listener (not what it advertises).
    pub fn client_addr(base_port: u16, node: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], base_port + 3 * node as u16))
    }

    /// Bootstrap servers: what every node advertises.
    pub fn bootstrap(&self) -> String {
        (0..NODES)
            .map(|node| self.advertised_addr(node).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn advertised_addr(&self, node: usize) -> SocketAddr {
        self.advertised
            .iter()
            .find(|(advertising, _)| *advertising == node)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| Cluster::client_addr(self.base_port, node))
    }

    fn dir(&self) -> String {
        self.data_dir.display().to_string()
    }

    /// Makes every node run (stopped ones start, paused ones resume) and waits until each one
    /// answers and knows all the others: the state every scenario starts from.
    pub async fn restore(&self) {
        let mut args: Vec<String> = [
            "cluster",
            "start",
            "--nodes",
            &NODES.to_string(),
            "--base-port",
            &self.base_port.to_string(),
            "--data-dir",
            &self.dir(),
        ]
        .map(String::from)
        .to_vec();
        for (node, addr) in &self.advertised {
            args.extend(["--advertise".to_owned(), format!("{node}={addr}")]);
        }
        script(args).await;
    }

    /// Applies `action` to `node` and returns when the script has (a stop once the process is
    /// gone, a start once the node is back in the cluster).
    pub async fn node(&self, action: NodeAction, node: usize) {
        script(self.node_args(action, node)).await;
    }

    /// Applies `action` to every node at once (all in parallel).
    pub async fn every_node(&self, action: NodeAction) {
        let mut runs = tokio::task::JoinSet::new();
        for node in 0..NODES {
            runs.spawn(script(self.node_args(action, node)));
        }
        while let Some(run) = runs.join_next().await {
            run.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        }
    }

    fn node_args(&self, action: NodeAction, node: usize) -> Vec<String> {
        [
            "node",
            action.arg(),
            "--data-dir",
            &self.dir(),
            "--node",
            &node.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// The last warnings and errors in one node's log, for a failure message (its INFO lines
    /// are too many to be of use there; the whole log stays in the data dir).
    pub fn log_problems(&self, node: usize) -> String {
        const SHOWN: usize = 10;
        let log = self.data_dir.join(format!("node-{node}/kafka.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let problems: Vec<&str> = text
            .lines()
            .filter(|line| {
                [" WARN ", " ERROR ", " FATAL "]
                    .iter()
                    .any(|level| line.contains(level))
            })
            .collect();
        let last = &problems[problems.len().saturating_sub(SHOWN)..];
        let shortened: Vec<String> = last
            .iter()
            .map(|line| line.chars().take(300).collect())
            .collect();
        format!(
            "{} ({})\n{}",
            log.display(),
            problems.len(),
            shortened.join("\n")
        )
    }

    /// Three fresh topics (unique names) for one scenario, 6 partitions, 3 replicas, min ISR 2;
    /// returns once every partition has a leader and all three replicas in sync.
    pub async fn create_topics(&self, scenario: &str) -> Topics {
        let run: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(6)
            .map(char::from)
            .collect::<String>()
            .to_lowercase();
        let name = |kind: &str| format!("faults-{scenario}-{kind}-{run}");
        let topics = Topics {
            processes: name("bp"),
            actions: name("actions"),
            dead_letter: name("dlq"),
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
        let names = topics.all();
        let new_topics: Vec<NewTopic> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    PARTITIONS,
                    TopicReplication::Fixed(REPLICATION_FACTOR),
                )
                .set("min.insync.replicas", MIN_INSYNC_REPLICAS)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin
            .create_topics(&new_topics, &options)
            .await
            .expect("create topics")
        {
            result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
        }
        self.wait_in_sync(&topics).await;
        topics
    }

    /// Waits until every partition of the three topics has a leader and all three replicas in
    /// sync: a fresh topic is usable, and after a fault every record that will ever be
    /// committed is (so a read up to the high watermarks sees all of them).
    pub async fn wait_in_sync(&self, topics: &Topics) {
        for topic in topics.all() {
            let bootstrap = self.bootstrap();
            eventually(
                &format!("{topic} to have all replicas in sync"),
                TOPICS_SETTLE,
                || {
                    let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
                    async move { blocking(move || fully_replicated(&bootstrap, &topic)).await }
                },
            )
            .await;
        }
    }

    /// The leader of each partition of `topic` (index: partition), as the metadata says now.
    pub async fn leaders(&self, topic: &str) -> Vec<i32> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_owned());
        blocking(move || {
            let consumer = metadata_client(&bootstrap);
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .expect("topic metadata");
            let mut partitions: Vec<(i32, i32)> = metadata.topics()[0]
                .partitions()
                .iter()
                .map(|p| (p.id(), p.leader()))
                .collect();
            partitions.sort();
            partitions.into_iter().map(|(_, leader)| leader).collect()
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `cluster stop` resumes paused nodes first, so a scenario that failed mid-pause is fine.
        let _ = script_status(&["cluster", "stop", "--data-dir", &self.dir()]);
    }
}

/// The three topics of one scenario's relay.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `--topic`: where every delivery the load sends belongs.
    pub processes: String,
    /// `--actions-topic`: stays empty.
    pub actions: String,
    /// `--dead-letter-topic`: stays empty (the load sends valid business processes only).
    pub dead_letter: String,
}

impl Topics {
    /// All three names.
    pub fn all(&self) -> [String; 3] {
        [
            self.processes.clone(),
            self.actions.clone(),
            self.dead_letter.clone(),
        ]
    }

    /// The relay flags naming them.
    pub fn args(&self) -> RelayArgs {
        RelayArgs::new().topics(&self.processes, &self.actions, &self.dead_letter)
    }
}

/// A client for metadata and watermarks only.
pub fn metadata_client(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "faults-metadata")
        .set("enable.auto.commit", "false")
        .create()
        .expect("metadata client")
}

fn fully_replicated(bootstrap: &str, topic: &str) -> bool {
    let consumer = metadata_client(bootstrap);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return false;
    };
    metadata.topics().iter().all(|t| {
        t.error().is_none()
            && t.partitions().len() == PARTITIONS as usize
            && t.partitions()
                .iter()
                .all(|p| p.leader() >= 0 && p.isr().len() == REPLICATION_FACTOR as usize)
    })
}

/// scripts/kafka.sh: BP_RELAY_KAFKA_SCRIPT (as scripts/test.sh sets it), else the repo's own.
pub fn script_path() -> PathBuf {
    std::env::var_os("BP_RELAY_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
}

/// Runs the script with `args` on a blocking thread; panics with its output if it fails.
async fn script(args: Vec<String>) {
    let output = blocking(move || {
        Command::new("bash")
            .arg(script_path())
            .args(&args)
            .output()
            .map(|output| (args, output))
    })
    .await
    .expect("run scripts/kafka.sh");
    let (args, output) = output;
    assert!(
        output.status.success(),
        "kafka.sh {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the script synchronously (for drop); whether it succeeded.
fn script_status(args: &[&str]) -> bool {
    Command::new("bash")
        .arg(script_path())
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}
