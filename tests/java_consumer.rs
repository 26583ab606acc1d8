//! Interop with a real downstream consumer: the Java client (kafka-clients) reads what the
//! relay produced and checks key, headers, ce_id and that each record sits on the partition
//! Java's default partitioner picks for its key (tests/java-consumer).

mod support;

use std::process::Command;

use http::StatusCode;
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use support::*;

fn java_check(topics: &Topics, topic: &str, expected: usize, extra: &[&str]) -> (bool, String) {
    let script = format!("{}/tests/java-consumer/run.sh", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(script)
        .args([&topics.bootstrap, topic, &expected.to_string(), "--timeout-seconds", "30"])
        .args(extra)
        .output()
        .expect("run the Java consumer");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(matches!(output.status.code(), Some(0 | 1)), "the check ran (exit {:?}): {report}", output.status.code());
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread")]
async fn java_consumer_accepts_every_record_the_relay_produced() {
    let topics = Topics::create(&bootstrap(), 5).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let processes = ["bp-minimal.json", "bp-in-progress.json", "bp-failed-expired.json", "bp-resolved-uuid-v5.json"];
    for name in processes {
        assert_eq!(relay.send_process(&sample(name)).await.status, StatusCode::OK, "{name}");
    }
    assert_eq!(relay.send_process(&fixture("bp-new-fields-and-status.json")).await.status, StatusCode::OK);
    assert_eq!(relay.send_action(&sample("action-update.json")).await.status, StatusCode::OK);
    for body in [&b"ping"[..], &fixture("subscription-test-payload.json")] {
        assert_eq!(relay.send_process(body).await.status, StatusCode::OK);
    }
    relay.stop().await;

    let (ok, report) = java_check(&topics, &topics.processes, 5, &["--type", "business_processes.update"]);
    assert!(ok, "{report}");
    let (ok, report) = java_check(&topics, &topics.actions, 1, &["--type", "business_processes_actions.update"]);
    assert!(ok, "{report}");
    let (ok, report) = java_check(&topics, &topics.dead_letter, 2, &["--dead-letter"]);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn java_consumer_refuses_a_record_on_the_wrong_partition() {
    let topics = Topics::create(&bootstrap(), 5).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let body = sample("bp-minimal.json");
    let answer = relay.send_process(&body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let right = answer.json()["partition"].as_i64().unwrap() as i32;
    relay.stop().await;

    // The same record copied by hand to another partition must fail the check.
    let record = consume(&topics.bootstrap, &topics.processes, 1).remove(0);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &topics.bootstrap).create().unwrap();
    let headers = rdkafka::Message::headers(&record).unwrap().clone();
    let copy = FutureRecord::to(&topics.processes)
        .key("0b8e6d4c-1a2f-4e3d-9c5b-7a6f8e9d0c1b")
        .payload(&body[..])
        .headers(headers)
        .partition((right + 1) % 5);
    producer.send(copy, std::time::Duration::from_secs(10)).await.expect("copy produced");
    let (ok, report) = java_check(&topics, &topics.processes, 2, &[]);
    assert!(!ok, "a wrong partition must be reported: {report}");
    assert!(report.contains("partition"), "{report}");
}
