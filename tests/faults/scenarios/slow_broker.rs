//! One slow broker (g): the proxy in front of one node delays its answers past the deadline.
//! Deliveries whose partition another node leads must keep getting 2xx.

use std::time::{Duration, Instant};

use super::{hold_until, Report, Run, World, PROXIED_NODE, RECOVERY_BOUND};
use crate::{
    cluster::PARTITIONS,
    load::Entry,
    support::{relay_args::RelayArgs, wait::eventually},
    verdict::Allowances,
};

/// How long one broker is slow in g, and by how much.
const SLOW: Duration = Duration::from_secs(20);
const SLOW_LATENCY: Duration = Duration::from_millis(4500);

/// g. The proxied node answers 4.5 s late for 20 s mid-load.
pub async fn one_slow_broker(world: &World) -> Report {
    let run = Run::start(world, "g", RelayArgs::new()).await;
    let leaders = world.cluster.leaders(&run.topics.processes).await;
    let slow_partitions: Vec<i32> = (0..PARTITIONS)
        .filter(|partition| leaders[*partition as usize] == PROXIED_NODE as i32)
        .collect();
    assert!(
        !slow_partitions.is_empty() && slow_partitions.len() < PARTITIONS as usize,
        "the slow node leads some partitions, not all: {leaders:?}"
    );
    let slow_from = Instant::now();
    // Its answers are late, the requests reach it at once: it writes and replicates what it gets,
    // so a record answered 503 (no acknowledgement in time) may land all the same.
    world.proxy.set_latency(Duration::ZERO, SLOW_LATENCY);
    hold_until(slow_from + SLOW).await;
    world.proxy.set_latency(Duration::ZERO, Duration::ZERO);
    let slow_until = Instant::now();
    let leaders_after = world.cluster.leaders(&run.topics.processes).await;
    eventually(
        "the slow node's partitions to acknowledge again",
        RECOVERY_BOUND,
        || async {
            run.load.count(|entry| {
                entry.is_2xx()
                    && entry.sent >= slow_until
                    && slow_partitions.contains(&entry.delivery.partition())
            }) > 0
        },
    )
    .await;
    let mut notes = Vec::new();
    if leaders_after != leaders {
        notes.push(format!("leadership moved while the node was slow: {leaders:?} -> {leaders_after:?} (rates below use the first)"));
    }
    let (mut report, entries) = run.finish(world, Allowances::default(), notes).await;
    // Deliveries sent while the node was slow, early enough that their answer was due before it
    // was fast again (later ones could ride on a prompt answer).
    let answerable_by = slow_until - SLOW_LATENCY;
    let during = |slow: bool| {
        let sent: Vec<&Entry> = entries
            .iter()
            .filter(|entry| {
                entry.delivery.signed
                    && !entry.is_retry()
                    && entry.sent >= slow_from
                    && entry.sent < answerable_by
            })
            .filter(|entry| slow_partitions.contains(&entry.delivery.partition()) == slow)
            .collect();
        (
            sent.iter().filter(|entry| entry.is_2xx()).count(),
            sent.len(),
        )
    };
    let (healthy_ok, healthy_sent) = during(false);
    let (slow_ok, slow_sent) = during(true);
    report.notes.push(format!(
        "2xx rate while node {PROXIED_NODE} was slow: partitions led by healthy nodes {} ({healthy_ok}/{healthy_sent}), by the slow one {} ({slow_ok}/{slow_sent})",
        percent(healthy_ok, healthy_sent),
        percent(slow_ok, slow_sent)
    ));
    if healthy_ok < healthy_sent {
        report.violations.push(format!("only {healthy_ok} of {healthy_sent} deliveries to healthy-led partitions got a 2xx while one broker was slow"));
    }
    report
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "n/a".to_owned();
    }
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}
