//! The scenarios of the fault matrix (issue 9, item 6), each against fresh topics and a fresh
//! relay, under load, on a cluster that is whole when it starts:
//!
//! a. kill -9 of a partition leader mid-load;
//! b. every broker stopped for a while mid-load, then started again;
//! c. every broker paused (SIGSTOP) for 20 s, then resumed;
//! d. two of three brokers stopped: fewer replicas than min.insync.replicas;
//! e. kill -9 of the relay mid-load;
//! f. SIGTERM to the relay mid-load;
//! g. one slow broker (a proxy adds 4.5 s to its answers).
//!
//! Holding a fault for some seconds while the load runs is the scenario's duration, not a
//! synchronisation: every wait for an effect is a condition with a timeout.

mod broker_faults;
mod relay_faults;
mod slow_broker;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    cluster::{Cluster, Topics, PARTITIONS},
    load::{Entry, Load},
    proxy::SlowProxy,
    readback::read_topic,
    relay::Relay,
    retry::WINDOW,
    support::{relay_args::RelayArgs, wait::eventually},
    verdict::{judge, Allowances, Counts},
};

/// The node behind the proxy: it advertises the proxy's address to clients.
pub const PROXIED_NODE: usize = 2;

/// What every scenario shares: the cluster, the proxy in front of one node, where logs go.
pub struct World {
    pub cluster: Cluster,
    pub proxy: SlowProxy,
    pub out_dir: PathBuf,
    /// Whether relays log librdkafka's connection, metadata and idempotence debug
    /// ([`KAFKA_DEBUG`]): in repeated runs, whose logs are kept only when they fail.
    pub kafka_debug: bool,
}

/// librdkafka's debug contexts a repeated run logs: connections and their states, metadata
/// (leaders), the idempotent producer's id and epoch. What explains a slow recovery.
pub const KAFKA_DEBUG: &str = "broker,metadata,eos";

impl World {
    /// RUST_LOG of its relays: with [`KAFKA_DEBUG`], librdkafka's debug lines too (the relay
    /// logs them at debug level from its client context, and librdkafka sends them only when
    /// its `librdkafka` target is enabled at debug).
    fn relay_log_filter(&self) -> &'static str {
        if self.kafka_debug {
            "info,librdkafka=debug,bp_relay::kafka::context=debug"
        } else {
            "info"
        }
    }
}

/// One scenario of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its letter in the issue.
    pub id: &'static str,
    pub title: &'static str,
}

/// Every scenario, in the order they run.
pub const ALL: [Scenario; 7] = [
    Scenario::new("a", "kill -9 of a partition leader"),
    Scenario::new("b", "every broker stopped 15 s, then started"),
    Scenario::new("c", "every broker paused 20 s (SIGSTOP)"),
    Scenario::new("d", "two of three brokers stopped (ISR < min ISR)"),
    Scenario::new("e", "kill -9 of the relay"),
    Scenario::new("f", "SIGTERM to the relay"),
    Scenario::new("g", "one slow broker (+4.5 s per answer)"),
];

/// What a scenario found.
pub struct Report {
    pub counts: Counts,
    /// What it measured besides the counts (recovery times, rates).
    pub notes: Vec<String>,
    /// Its recovery time, where it measures one (b: the first 2xx after every broker was
    /// back): what a repeated run reports the distribution of.
    pub recovery: Option<Duration>,
    /// Broken promises; the scenario fails if there is any.
    pub violations: Vec<String>,
}

impl Scenario {
    const fn new(id: &'static str, title: &'static str) -> Scenario {
        Scenario { id, title }
    }

    /// Runs it.
    pub async fn run(self, world: Arc<World>) -> Report {
        match self.id {
            "a" => broker_faults::kill_a_partition_leader(&world).await,
            "b" => broker_faults::stop_every_broker(&world).await,
            "c" => broker_faults::pause_every_broker(&world).await,
            "d" => broker_faults::stop_two_of_three_brokers(&world).await,
            "e" => relay_faults::kill_the_relay(&world).await,
            "f" => relay_faults::terminate_the_relay(&world).await,
            "g" => slow_broker::one_slow_broker(&world).await,
            other => panic!("no scenario {other}"),
        }
    }
}

/// Bound on a fault's effect becoming visible, and on the recovery after it.
const READINESS_BOUND: Duration = Duration::from_secs(10);
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

/// Keeps the fault in place (the load runs meanwhile) until `at`.
async fn hold_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// Every partition has acknowledged a delivery sent at or after `since`.
fn every_partition_acknowledged_since(load: &Load, since: Instant) -> bool {
    (0..PARTITIONS).all(|partition| {
        load.count(|entry| {
            entry.is_2xx() && entry.sent >= since && entry.delivery.partition() == partition
        }) > 0
    })
}

/// Violations: 2xx answers to deliveries first sent at or after `from` and answered before
/// `until`, a window in which `why` and no record could be acknowledged. (A retry may get a 2xx
/// from memory then, naming a record that landed before; the verdict checks that record.)
fn acknowledged_within(entries: &[Entry], from: Instant, until: Instant, why: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|entry| !entry.is_retry())
        .filter(|entry| entry.is_2xx() && entry.sent >= from && entry.answered < until)
        .map(|entry| format!("{}: 2xx while {why}", entry.delivery.key))
        .collect()
}

/// One scenario's relay, topics and load.
struct Run {
    scenario: &'static str,
    topics: Topics,
    /// Every flag of its relays.
    flags: RelayArgs,
    relay: Relay,
    /// Relays it killed or stopped and replaced (their logs are read at the end).
    retired: Vec<Relay>,
    load: Load,
}

impl Run {
    /// Fresh topics, a relay on them with `flags` (and the matrix's short signing window), load
    /// flowing (2xx answers coming back).
    async fn start(world: &World, scenario: &'static str, flags: RelayArgs) -> Run {
        let topics = world.cluster.create_topics(scenario).await;
        let mut all_flags = topics
            .args()
            .flag("--signature-tolerance", &format!("{}s", WINDOW.as_secs()))
            .args(flags)
            // BP_RELAY_FAULTS_RELAY_ARGS (space-separated): settings to compare under every fault.
            .args(
                std::env::var("BP_RELAY_FAULTS_RELAY_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            );
        if world.kafka_debug {
            all_flags = all_flags.flag("--kafka-option", &format!("debug={KAFKA_DEBUG}"));
        }
        let log = world.out_dir.join(format!("{scenario}-relay.log"));
        let relay = Relay::start(
            &world.cluster.bootstrap(),
            &all_flags,
            log,
            world.relay_log_filter(),
        )
        .await;
        eventually("the relay to be ready", RECOVERY_BOUND, || relay.ready()).await;
        let load = Load::start(&relay.process_url(), scenario);
        eventually("the load to get 2xx answers", RECOVERY_BOUND, || async {
            load.count(Entry::is_2xx) >= 20
        })
        .await;
        Run {
            scenario,
            topics,
            flags: all_flags,
            relay,
            retired: Vec::new(),
            load,
        }
    }

    /// Starts a relay in place of the one that was killed or stopped (as its supervisor would),
    /// with the same flags, and sends the load and its retries to it once it is ready.
    async fn replace_relay(&mut self, world: &World) {
        let log = world
            .out_dir
            .join(format!("{}-replacement-relay.log", self.scenario));
        let relay = Relay::start(
            &world.cluster.bootstrap(),
            &self.flags,
            log,
            world.relay_log_filter(),
        )
        .await;
        eventually("the replacement relay to be ready", RECOVERY_BOUND, || {
            relay.ready()
        })
        .await;
        self.load.retarget(&relay.process_url());
        self.retired.push(std::mem::replace(&mut self.relay, relay));
    }

    async fn relay_ready(&self) -> bool {
        self.relay.ready().await
    }

    async fn relay_unready(&self) -> bool {
        !self.relay.ready().await
    }

    /// Stops the load, then the relay (if it still runs), reads the topics back once nothing
    /// can still be on its way to them, and judges. Returns the ledger too, for the scenario's
    /// own checks.
    async fn finish(
        self,
        world: &World,
        allowances: Allowances,
        notes: Vec<String>,
    ) -> (Report, Vec<Entry>) {
        let Run {
            scenario,
            topics,
            mut relay,
            retired,
            load,
            ..
        } = self;
        let entries = load.stop().await;
        let mut allowances = allowances;
        allowances.producer_replacements = std::iter::once(&relay)
            .chain(&retired)
            .map(Relay::producer_replacements)
            .sum();
        let mut notes = notes;
        if let Ok(extra) = std::env::var("BP_RELAY_FAULTS_RELAY_ARGS") {
            notes.push(format!("relay flags added: {extra}"));
        }
        if relay.process.exited().is_none() {
            allowances.late = relay.late_reports().await;
            notes.push(relay.redrive_note().await);
            let status = relay.process.stop(Duration::from_secs(30)).await;
            assert!(
                status.success(),
                "scenario {scenario}: the relay exited with {status} after the load:\n{}",
                relay.process.log_tail()
            );
        }
        // A produce request the proxy still holds could land after the read.
        eventually(
            "the proxy to deliver what it holds",
            Duration::from_secs(15),
            || {
                let held = world.proxy.held_chunks();
                async move { held == 0 }
            },
        )
        .await;
        world.cluster.wait_in_sync(&topics).await;
        let bootstrap = world.cluster.bootstrap();
        let mut records = Vec::new();
        for topic in topics.all() {
            records.extend(read_topic(&bootstrap, &topic).await);
        }
        let (counts, violations) = judge(
            &entries,
            &records,
            &topics.processes,
            relay.ack_timeout,
            allowances,
        );
        (
            Report {
                counts,
                notes,
                violations,
                recovery: None,
            },
            entries,
        )
    }
}
