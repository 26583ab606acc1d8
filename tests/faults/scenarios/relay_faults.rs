//! Faults of the relay itself: killed (e) or stopped (f) mid-load. Every 2xx it gave before is in
//! Kafka; a stopped relay first answers what it had in flight and exits 0 within its grace. Then
//! another relay takes its place, as a supervisor would start one, and gets the retries.

use std::time::{Duration, Instant};

use super::{Report, Run, World, READINESS_BOUND, RECOVERY_BOUND};
use crate::{
    load::{Delivery, Entry, HeldRequest, SENDERS},
    support::{relay_args::RelayArgs, relay_process::Signal, wait::eventually},
    verdict::Allowances,
};

/// e. SIGKILL to the relay mid-load: every 2xx it answered before is in Kafka.
pub async fn kill_the_relay(world: &World) -> Report {
    let mut run = Run::start(world, "e", RelayArgs::new()).await;
    // Mid-load: a good number acknowledged, more in flight.
    eventually(
        "200 deliveries acknowledged before the kill",
        RECOVERY_BOUND,
        || async { run.load.count(Entry::is_2xx) >= 200 },
    )
    .await;
    let killed = Instant::now();
    run.relay.process.signal(Signal::Kill);
    run.relay.process.wait_exit(Duration::from_secs(5)).await;
    let acknowledged = run.load.count(Entry::is_2xx);
    eventually(
        "every sender to see the relay gone",
        RECOVERY_BOUND,
        || async {
            run.load
                .count(|entry| entry.status().is_none() && entry.answered >= killed)
                >= SENDERS
        },
    )
    .await;
    let replacing = Instant::now();
    run.replace_relay(world).await;
    let notes = vec![format!(
        "{acknowledged} 2xx before the kill, all must be in Kafka; a replacement ready {:.1} s after the kill, {:.1} s to start",
        killed.elapsed().as_secs_f64(),
        replacing.elapsed().as_secs_f64()
    )];
    let (mut report, _) = run
        .finish(
            world,
            Allowances {
                lost_after: Some(killed),
                ..Allowances::default()
            },
            notes,
        )
        .await;
    report.notes.push(format!(
        "{} deliveries lost their connection at the kill and landed anyway",
        report.counts.landed_after_lost
    ));
    report
}

/// f. SIGTERM mid-load: every request in flight is answered (and its 2xx is in Kafka), and the
/// relay exits 0 within --shutdown-grace.
pub async fn terminate_the_relay(world: &World) -> Report {
    const HELD: usize = 5;
    const GRACE: Duration = Duration::from_secs(10);
    let mut run = Run::start(
        world,
        "f",
        RelayArgs::new().flag("--shutdown-grace", &format!("{}s", GRACE.as_secs())),
    )
    .await;
    eventually(
        "200 deliveries acknowledged before the signal",
        RECOVERY_BOUND,
        || async { run.load.count(Entry::is_2xx) >= 200 },
    )
    .await;
    // Requests the signal certainly catches in flight: headers and half the body sent.
    let mut held = Vec::new();
    for n in 0..HELD {
        held.push(
            HeldRequest::start(
                run.relay.ingress,
                Delivery::new(format!("f-held-{n}"), true),
            )
            .await,
        );
    }
    eventually(
        "the held requests to be in flight",
        READINESS_BOUND,
        || async { run.relay.metric("bp_relay_inflight_requests").await >= HELD as f64 },
    )
    .await;
    let terminated = Instant::now();
    run.relay.process.signal(Signal::Term);
    let mut violations = Vec::new();
    let mut held_ok = 0;
    for request in held {
        let entry = request.finish().await;
        if entry.is_2xx() {
            held_ok += 1;
        } else {
            violations.push(format!(
                "{}: in flight at SIGTERM, answered {:?}",
                entry.delivery.key, entry.outcome
            ));
        }
        run.load.record(entry);
    }
    let status = run
        .relay
        .process
        .wait_exit(GRACE + Duration::from_secs(5))
        .await;
    let took = terminated.elapsed();
    if !status.success() || took > GRACE {
        violations.push(format!(
            "exited with {status} after {took:?}: expected 0 within --shutdown-grace {GRACE:?}"
        ));
    }
    run.replace_relay(world).await;
    let notes = vec![format!(
        "{held_ok} of {HELD} requests held in flight at SIGTERM answered 2xx; exit code {} {:.1} s after the signal; a replacement ready {:.1} s after it",
        status.code().map_or("none".to_owned(), |code| code.to_string()),
        took.as_secs_f64(),
        terminated.elapsed().as_secs_f64()
    )];
    let (mut report, _) = run
        .finish(
            world,
            Allowances {
                lost_after: Some(terminated),
                ..Allowances::default()
            },
            notes,
        )
        .await;
    report.violations.extend(violations);
    report
}
