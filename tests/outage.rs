//! A broker outage: requests get 503 with Retry-After within the ack timeout (never a hang),
//! readiness turns false, and publishing resumes by itself when the broker is back.
//!
//! This test owns a dedicated broker (scripts/kafka.sh on free ports) so stopping it does not
//! disturb the other tests.

mod support;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use http::StatusCode;
use support::*;

struct DedicatedBroker {
    port: u16,
    controller_port: u16,
    data_dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    std::env::var_os("BP_RELAY_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl DedicatedBroker {
    fn start() -> DedicatedBroker {
        let broker = DedicatedBroker { port: free_port(), controller_port: free_port(), data_dir: tempfile::tempdir().unwrap() };
        broker.run("start");
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn run(&self, command: &str) {
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg(command).arg("--data-dir").arg(self.data_dir.path());
        if command == "start" {
            cmd.args(["--port", &self.port.to_string(), "--controller-port", &self.controller_port.to_string()]);
        }
        let output = cmd.output().expect("run scripts/kafka.sh");
        assert!(
            output.status.success(),
            "kafka.sh {command} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg("--data-dir").arg(self.data_dir.path()).output();
    }
}

/// What the test sent and saw, to compare with `/metrics` at the end.
#[derive(Default)]
struct Tally {
    published: u32,
    dead_lettered: u32,
    unauthorized: u32,
    unavailable: u32,
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_gets_503_then_publishing_resumes_without_restart() {
    let broker = DedicatedBroker::start();
    let topics = Topics::create(&broker.bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &["--ack-timeout", "2s", "--broker-down-grace", "1s"]).await;
    let mut tally = Tally::default();
    let before = relay.send_process(&sample("bp-minimal.json")).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    tally.published += 1;
    for body in [&b"not json"[..], b"{}"] {
        assert_eq!(relay.send_process(body).await.json()["topic"], topics.dead_letter.as_str());
        tally.dead_lettered += 1;
    }
    let unsigned = post(&relay.url("/webhooks/business-processes"), http::HeaderMap::new(), b"{}".to_vec()).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    tally.unauthorized += 1;

    broker.run("stop");
    let started = Instant::now();
    let during = relay.send_process(&sample("bp-in-progress.json")).await;
    let waited = started.elapsed();
    assert_eq!(during.status, StatusCode::SERVICE_UNAVAILABLE, "{}", during.text());
    tally.unavailable += 1;
    assert_eq!(during.headers["retry-after"], "5");
    assert!(during.json()["code"].as_str().unwrap().starts_with("kafka_"), "{}", during.text());
    assert!(waited < Duration::from_millis(3500), "answered after {waited:?}, ack timeout is 2s");
    eventually("readiness to fail while the broker is down", Duration::from_secs(20), || async {
        let ready = relay.admin_get("/readyz").await;
        ready.status == StatusCode::SERVICE_UNAVAILABLE && ready.text().contains("no_broker")
    })
    .await;
    assert_eq!(relay.admin_get("/healthz").await.status, StatusCode::OK, "liveness never depends on Kafka");

    broker.run("start");
    let body = sample("bp-failed-expired.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let answer = relay.send_process(&body).await;
        if answer.status == StatusCode::OK {
            tally.published += 1;
            break answer;
        }
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.text());
        tally.unavailable += 1;
        assert!(Instant::now() < deadline, "publishing did not resume within 60 s of the broker's restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eventually("readiness to return", Duration::from_secs(20), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;

    // Both acknowledged deliveries are in Kafka, at the offsets the relay reported.
    let after = after.json();
    let acked = [(0, &sample("bp-minimal.json")), (after["offset"].as_i64().unwrap(), &body)];
    let total = record_count(&topics.bootstrap, &topics.processes) as usize;
    let records = consume(&topics.bootstrap, &topics.processes, total);
    for (offset, body) in acked {
        let record = records.iter().find(|r| rdkafka::Message::offset(*r) == offset).expect("acked record present");
        assert_eq!(rdkafka::Message::payload(record), Some(&body[..]));
    }
    assert_metrics_match(&relay.metrics().await, &tally);
    relay.stop().await;
}

/// `/metrics` must count exactly what the test did.
fn assert_metrics_match(metrics: &std::collections::HashMap<String, f64>, tally: &Tally) {
    let get = |series: &str| metrics.get(series).copied().unwrap_or_else(|| panic!("no series {series}"));
    let requests = |status: &str| get(&format!("bp_relay_http_requests_total{{route=\"business_processes\",status=\"{status}\"}}"));
    assert_eq!(requests("200"), f64::from(tally.published + tally.dead_lettered));
    assert_eq!(requests("401"), f64::from(tally.unauthorized));
    assert_eq!(requests("503"), f64::from(tally.unavailable));
    assert_eq!(get("bp_relay_published_records_total{route=\"business_processes\"}"), f64::from(tally.published));
    let dead_letters: f64 = metrics.iter().filter(|(k, _)| k.starts_with("bp_relay_dead_letter_total{")).map(|(_, v)| v).sum();
    assert_eq!(dead_letters, f64::from(tally.dead_lettered));
    assert_eq!(get("bp_relay_signature_failures_total{reason=\"missing_signature_header\"}"), f64::from(tally.unauthorized));
    let failures: f64 = metrics.iter().filter(|(k, _)| k.starts_with("bp_relay_kafka_delivery_failures_total{")).map(|(_, v)| v).sum();
    assert_eq!(failures, f64::from(tally.unavailable), "every 503 is one counted delivery failure");
    // The lag histogram counts every record the broker acknowledged, dead letters included.
    assert_eq!(get("bp_relay_delivery_lag_seconds_count{route=\"business_processes\"}"), f64::from(tally.published + tally.dead_lettered));
    assert_eq!(get("bp_relay_http_request_duration_seconds_count{route=\"business_processes\"}"), f64::from(tally.published + tally.dead_lettered + tally.unauthorized + tally.unavailable));
    assert_eq!(get("bp_relay_inflight_requests"), 0.0);
    assert_eq!(get("bp_relay_ready"), 1.0);
    assert!(metrics.keys().any(|k| k.starts_with("bp_relay_kafka_broker_up{")), "broker statistics are exported");
    assert_eq!(get("bp_relay_kafka_queue_max_messages"), 100_000.0);
}
