//! The fault matrix: the `bp-relay` binary against a real 3-node KRaft cluster while brokers
//! crash, stop, freeze or turn slow, and while the relay itself is killed or stopped (issue 9,
//! item 6). `cargo test --features fault-tests --test faults` (scripts/test.sh runs it).
//!
//! One test starts the cluster once (scripts/kafka.sh `cluster start`, client ports from
//! BP_RELAY_FAULTS_KAFKA_PORT, default 19192: clear of the test and bench brokers), then runs
//! every scenario of [`scenarios::ALL`] in order, restoring the cluster before each. Every
//! scenario gets fresh topics (6 partitions, 3 replicas, min ISR 2) and its own relay process,
//! sends signed deliveries from several senders while it breaks something, then reads the topics
//! back and judges the ledger ([`verdict`]). A scenario that fails does not stop the others;
//! the test fails at the end, naming them. Node 2 advertises a proxy in the harness to clients
//! in every scenario ([`proxy`]): it only forwards, except in g, where it makes the node slow.
//!
//! The load retries like Authvia (issue 17, item 3; [`retry`]): every signed delivery not
//! answered 2xx is sent again, half with its original signing, half signed afresh, soon and then
//! after the (short) signing window, until a 2xx. The verdict then asserts that no delivery is
//! missing and none is written twice except where the relay cannot know a record's fate (relay
//! killed, producer replaced, record timed out in flight), each counted with its cause.
//!
//! Output: one line per scenario on stderr as it finishes, the table in
//! target/fault-matrix/summary.md, each relay's log in target/fault-matrix/<scenario>-relay.log
//! and the cluster's logs in target/fault-matrix/cluster/node-*/kafka.log.
//!
//! Environment: BP_RELAY_FAULTS_SCENARIOS=a,c runs only those; BP_RELAY_FAULTS_RELAY_ARGS adds
//! relay flags in every scenario, to compare settings under the faults;
//! BP_RELAY_FAULTS_REPEAT=30 runs each selected scenario that many times (default once), its
//! relays logging librdkafka's `broker,metadata,eos` debug, the logs of a repetition kept only
//! if it fails (as <scenario>.<repetition>-relay.log), and prints the distribution of the
//! recovery times the scenarios measure (b: first 2xx after every broker was back);
//! BP_RELAY_KAFKA_SCRIPT names scripts/kafka.sh.

mod cluster;
mod load;
mod proxy;
mod readback;
mod relay;
mod retry;
mod scenarios;
#[path = "../support/mod.rs"]
mod support;
mod verdict;

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use cluster::Cluster;
use proxy::SlowProxy;
use scenarios::{Report, Scenario, World, PROXIED_NODE};

/// Where the cluster's client ports start unless BP_RELAY_FAULTS_KAFKA_PORT says otherwise.
const DEFAULT_BASE_PORT: u16 = 19192;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix() {
    let started = Instant::now();
    let out_dir = out_dir();
    forget_previous_run(&out_dir);
    let scenarios = selected_scenarios();
    let repeat = repetitions();
    let base_port = base_port();
    let proxy = SlowProxy::start(Cluster::client_addr(base_port, PROXIED_NODE)).await;
    progress(&format!("starting a 3-node cluster on ports {base_port}.. (node {PROXIED_NODE} behind a proxy at {})", proxy.addr()));
    let cluster = Cluster::start(
        out_dir.join("cluster"),
        base_port,
        vec![(PROXIED_NODE, proxy.addr())],
    )
    .await;
    progress(&format!(
        "cluster up after {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let world = Arc::new(World {
        cluster,
        proxy,
        out_dir: out_dir.clone(),
        kafka_debug: repeat > 1,
    });

    let mut rows = Vec::new();
    for scenario in &scenarios {
        for repetition in 1..=repeat {
            world.proxy.set_latency(Duration::ZERO, Duration::ZERO);
            world.cluster.restore().await;
            let began = Instant::now();
            let outcome = tokio::spawn(scenario.run(world.clone()))
                .await
                .map_err(|error| panic_message(error.into_panic()));
            let row = Row {
                scenario: *scenario,
                repetition: (repeat > 1).then_some(repetition),
                took: began.elapsed(),
                outcome,
            };
            progress(&row.line());
            if row.repetition.is_some() {
                keep_logs_only_of_a_failure(&out_dir, &row);
            }
            rows.push(row);
        }
    }
    let mut summary = summary_table(&rows, started.elapsed());
    if repeat > 1 {
        let distributions: Vec<String> = scenarios
            .iter()
            .filter_map(|scenario| recovery_distribution(&rows, scenario.id))
            .collect();
        for line in &distributions {
            progress(line);
        }
        let _ = write!(
            summary,
            "\n## Recovery over {repeat} repetitions\n\n{}\n",
            distributions
                .iter()
                .map(|line| format!("- {line}\n"))
                .collect::<String>()
        );
    }
    std::fs::write(out_dir.join("summary.md"), &summary).unwrap();
    progress(&format!(
        "whole matrix {:.0} s; table in {}",
        started.elapsed().as_secs_f64(),
        out_dir.join("summary.md").display()
    ));

    let failures: Vec<String> = rows.iter().filter_map(Row::failure).collect();
    if !failures.is_empty() {
        let logs: String = (0..cluster::NODES)
            .map(|node| {
                format!(
                    "\n--- node {node}: last warnings and errors of {}",
                    world.cluster.log_problems(node)
                )
            })
            .collect();
        panic!(
            "{} of {} scenarios failed:\n\n{}\n\n{summary}\nRelay logs: {}/{}-relay.log\n{logs}",
            failures.len(),
            rows.len(),
            failures.join("\n\n"),
            out_dir.display(),
            if repeat > 1 {
                "<scenario>.<repetition>"
            } else {
                "<scenario>"
            }
        );
    }
}

/// One scenario's result.
struct Row {
    scenario: Scenario,
    /// Which run of the scenario, when BP_RELAY_FAULTS_REPEAT asks for several.
    repetition: Option<usize>,
    took: Duration,
    /// The report, or the panic that ended the scenario early.
    outcome: Result<Report, String>,
}

impl Row {
    fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(report) if report.violations.is_empty())
    }

    /// The scenario's letter, with the repetition's number if there are several: b, b.7.
    fn label(&self) -> String {
        match self.repetition {
            Some(repetition) => format!("{}.{repetition}", self.scenario.id),
            None => self.scenario.id.to_owned(),
        }
    }

    fn line(&self) -> String {
        let verdict = if self.passed() { "ok" } else { "FAILED" };
        let head = format!(
            "[{}] {} ({:.0} s): {verdict}",
            self.label(),
            self.scenario.title,
            self.took.as_secs_f64()
        );
        match &self.outcome {
            Ok(report) => format!(
                "{head}: {}{}",
                report.counts.line(),
                report
                    .notes
                    .iter()
                    .map(|note| format!("; {note}"))
                    .collect::<String>()
            ),
            Err(panic) => format!("{head}: {}", panic.lines().next().unwrap_or_default()),
        }
    }

    fn failure(&self) -> Option<String> {
        let name = format!("[{}] {}", self.label(), self.scenario.title);
        match &self.outcome {
            Ok(report) if report.violations.is_empty() => None,
            Ok(report) => Some(format!(
                "{name}: {} violations\n{}",
                report.violations.len(),
                verdict::summarize(&report.violations)
            )),
            Err(panic) => Some(format!("{name}: {panic}")),
        }
    }
}

/// The Markdown table of target/fault-matrix/summary.md.
fn summary_table(rows: &[Row], took: Duration) -> String {
    let mut table = String::new();
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = writeln!(
        table,
        "# Fault matrix: bp-relay against a 3-node KRaft cluster\n"
    );
    let _ = writeln!(
        table,
        "{when}, {} relay build, whole matrix {:.0} s. Topics: 6 partitions, replication factor 3, min.insync.replicas 2. \
         Load: {} senders, each starting a request every {} ms with at most {} in flight, every {}th signed with a wrong secret.\n",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        took.as_secs_f64(),
        load::SENDERS,
        load::PACE.as_millis(),
        load::IN_FLIGHT_PER_SENDER,
        load::UNAUTHENTICATED_EVERY
    );
    let _ = writeln!(
        table,
        "Retries as Authvia's: every signed delivery not answered 2xx is sent again {} s after the answer, then once its original signing is past the window (`--signature-tolerance {}s`), then every {} s until a 2xx (at most {} attempts, none later than {} s after the load stopped); half of the deliveries with their first attempt's headers, half signed afresh. \
         Counts of sent, 2xx, 503 and other are of first attempts; a duplicate is a record beyond the first of a delivery, with its cause; late reports are the last relay's `bp_relay_late_reports_total`.\n",
        retry::RETRY_DELAY.as_secs(),
        retry::WINDOW.as_secs(),
        retry::RETRY_BACKOFF.as_secs(),
        retry::MAX_ATTEMPTS,
        retry::RETRY_TAIL.as_secs()
    );
    let _ = writeln!(table, "| scenario | result | sent | 2xx | 503 | other | records | landed after 503 | missing | duplicates (relay killed / producer replaced / timed out / producer resend / unexplained) | late reports (landed, caught share / timed_out / failed / untracked) | retries (original / fresh; deliveries) | retries 2xx (from memory) / 401 stale | 401 / unauthenticated | slowest answer | notes |");
    let _ = writeln!(
        table,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|---|"
    );
    for row in rows {
        let title = format!("{}. {}", row.label(), row.scenario.title);
        match &row.outcome {
            Ok(report) => {
                let c = &report.counts;
                let (d, l, r) = (&c.duplicates, &c.late, &c.retries);
                let _ = writeln!(
                    table,
                    "| {title} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({} / {} / {} / {} / {}) | {}, {} / {} / {} / {} | {} / {}; {} | {} ({}) / {} | {} / {} | {:.2} s | {} |",
                    if row.passed() { "ok" } else { "FAILED" },
                    c.sent,
                    c.ok,
                    c.unavailable,
                    c.other,
                    c.records,
                    c.landed_after_503,
                    c.missing_text(),
                    d.total(),
                    d.relay_killed,
                    d.producer_replaced,
                    d.timed_out,
                    d.producer_resend,
                    d.unexplained,
                    l.landed,
                    c.caught_text(),
                    l.timed_out,
                    l.failed,
                    l.untracked,
                    r.original,
                    r.fresh,
                    r.deliveries,
                    r.ok,
                    r.from_memory,
                    r.stale,
                    c.refused,
                    c.unauthenticated,
                    c.max_latency.as_secs_f64(),
                    report.notes.join("; ").replace('|', "/")
                );
            }
            Err(panic) => {
                let _ = writeln!(
                    table,
                    "| {title} | FAILED | | | | | | | | | | | | | | {} |",
                    panic.lines().next().unwrap_or_default().replace('|', "/")
                );
            }
        }
    }
    table
}

/// Straight to stderr: libtest captures `eprintln!`, and the progress of a run that takes
/// minutes should show as it happens.
fn progress(line: &str) {
    let _ = writeln!(std::io::stderr(), "[faults] {line}");
}

/// Removes the previous run's summary and relay logs, so nothing stale is read as this run's.
/// (Its cluster directory is for [`Cluster::start`] to clear: it stops what still runs there.)
fn forget_previous_run(out_dir: &Path) {
    std::fs::create_dir_all(out_dir).unwrap();
    for entry in std::fs::read_dir(out_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "summary.md" || name.ends_with("-relay.log") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

/// Of one repetition's relay logs (<scenario>-relay.log, <scenario>-replacement-relay.log,
/// overwritten by the next repetition): removes them if it passed, keeps them as
/// <scenario>.<repetition>-... if it failed.
fn keep_logs_only_of_a_failure(out_dir: &Path, row: &Row) {
    for kind in ["relay", "replacement-relay"] {
        let log = out_dir.join(format!("{}-{kind}.log", row.scenario.id));
        if !log.exists() {
            continue;
        }
        if row.passed() {
            std::fs::remove_file(&log).unwrap();
        } else {
            let kept = out_dir.join(format!("{}-{kind}.log", row.label()));
            std::fs::rename(&log, &kept).unwrap();
            progress(&format!("kept its relay log: {}", kept.display()));
        }
    }
}

/// The distribution of the recovery times that the repetitions of scenario `id` measured
/// (none if it measures none): nearest-rank percentiles, and the repetitions without a figure
/// (ended by a panic before measuring it).
fn recovery_distribution(rows: &[Row], id: &str) -> Option<String> {
    let of_scenario: Vec<&Row> = rows.iter().filter(|row| row.scenario.id == id).collect();
    let mut times: Vec<Duration> = of_scenario
        .iter()
        .filter_map(|row| row.outcome.as_ref().ok()?.recovery)
        .collect();
    if times.is_empty() {
        return None;
    }
    times.sort_unstable();
    let seconds = |time: Duration| format!("{:.2}", time.as_secs_f64());
    let over = |limit: u64| {
        times
            .iter()
            .filter(|time| **time > Duration::from_secs(limit))
            .count()
    };
    Some(format!(
        "{id}: recovery (s) over {} measured runs: min {} / p50 {} / p90 {} / p99 {} / max {}; over 3 s: {}, over 10 s: {}; runs without a figure: {}; runs failed: {}; all (s): {}",
        times.len(),
        seconds(times[0]),
        seconds(percentile(&times, 50)),
        seconds(percentile(&times, 90)),
        seconds(percentile(&times, 99)),
        seconds(times[times.len() - 1]),
        over(3),
        over(10),
        of_scenario.len() - times.len(),
        of_scenario.iter().filter(|row| !row.passed()).count(),
        times
            .iter()
            .map(|time| seconds(*time))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

/// The nearest-rank percentile of sorted, non-empty `times`.
fn percentile(times: &[Duration], percent: usize) -> Duration {
    let rank = (times.len() * percent).div_ceil(100).max(1);
    times[rank - 1]
}

/// BP_RELAY_FAULTS_REPEAT: how many times each selected scenario runs (default once).
fn repetitions() -> usize {
    std::env::var("BP_RELAY_FAULTS_REPEAT").map_or(1, |count| {
        count
            .parse()
            .ok()
            .filter(|count| *count >= 1)
            .expect("BP_RELAY_FAULTS_REPEAT is a count of at least 1")
    })
}

/// BP_RELAY_FAULTS_SCENARIOS (letters, comma-separated), or all of them.
fn selected_scenarios() -> Vec<Scenario> {
    let Ok(wanted) = std::env::var("BP_RELAY_FAULTS_SCENARIOS") else {
        return scenarios::ALL.to_vec();
    };
    let wanted: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    for id in &wanted {
        assert!(
            scenarios::ALL.iter().any(|scenario| scenario.id == *id),
            "BP_RELAY_FAULTS_SCENARIOS: no scenario {id:?}"
        );
    }
    scenarios::ALL
        .into_iter()
        .filter(|scenario| wanted.contains(&scenario.id))
        .collect()
}

fn base_port() -> u16 {
    std::env::var("BP_RELAY_FAULTS_KAFKA_PORT").map_or(DEFAULT_BASE_PORT, |port| {
        port.parse().expect("BP_RELAY_FAULTS_KAFKA_PORT is a port")
    })
}

/// target/fault-matrix (next to the target dir's tmp/ that cargo names for integration tests).
fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("fault-matrix")
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
