//! Interop with a real downstream consumer: the Java client (kafka-clients) reads what the
//! relay produced and checks key, headers, ce_id and that each record sits on the partition
//! Java's default partitioner picks for its key (tests/java-consumer).

use std::{process::Command, time::Duration};

use bp_relay::demo::samples;
use http::StatusCode;
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Message,
};

use crate::helpers::*;

const PARTITIONS: i32 = 5;

/// Runs the Java contract check on `topic` (on a blocking thread): (passed, its report).
async fn java_check(topic: &Topic, expected: usize, extra: &[&str]) -> (bool, String) {
    let script = format!("{}/tests/java-consumer/run.sh", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("bash");
    command
        .arg(script)
        .args([
            topic.bootstrap(),
            &topic.name,
            &expected.to_string(),
            "--timeout-seconds",
            "30",
        ])
        .args(extra);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the Java consumer");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "the check ran (exit {:?}): {report}",
        output.status.code()
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn java_consumer_accepts_every_record_the_relay_produced() {
    let relay = spawn_relay(RelayOptions::default().partitions(PARTITIONS)).await;
    for (name, body) in samples::BUSINESS_PROCESSES {
        assert_eq!(
            relay.send_process(body).await.status,
            StatusCode::OK,
            "{name}"
        );
    }
    assert_eq!(
        relay
            .send_process(&fixture("bp-new-fields-and-status.json"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        relay.send_action(samples::ACTION).await.status,
        StatusCode::OK
    );
    for body in [&b"ping"[..], &fixture("subscription-test-payload.json")] {
        assert_eq!(relay.send_process(body).await.status, StatusCode::OK);
    }
    let topics = relay.topics.clone();
    relay.stop().await;

    let (ok, report) = java_check(
        &topics.processes,
        5,
        &["--type", "business_processes.update"],
    )
    .await;
    assert!(ok, "{report}");
    let (ok, report) = java_check(
        &topics.actions,
        1,
        &["--type", "business_processes_actions.update"],
    )
    .await;
    assert!(ok, "{report}");
    let (ok, report) = java_check(&topics.dead_letter, 2, &["--dead-letter"]).await;
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn java_consumer_refuses_a_record_on_the_wrong_partition() {
    let relay = spawn_relay(RelayOptions::default().partitions(PARTITIONS)).await;
    let body = samples::get("bp-minimal.json");
    let answer = relay.send_process(body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let right = answer.json()["partition"].as_i64().unwrap() as i32;
    let topics = relay.topics.clone();
    relay.stop().await;

    // The same record copied by hand to another partition must fail the check.
    let record = topics.processes.consume(1).await.remove(0);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &topics.bootstrap)
        .create()
        .unwrap();
    let copy = FutureRecord::to(&topics.processes.name)
        .key("0b8e6d4c-1a2f-4e3d-9c5b-7a6f8e9d0c1b")
        .payload(body)
        .headers(record.headers().expect("the relay's headers").clone())
        .partition((right + 1) % PARTITIONS);
    producer
        .send(copy, Duration::from_secs(10))
        .await
        .expect("copy produced");
    let (ok, report) = java_check(&topics.processes, 2, &[]).await;
    assert!(!ok, "a wrong partition must be reported: {report}");
    assert!(report.contains("partition"), "{report}");
}
