//! A broker outage: requests get 503 with Retry-After within the ack timeout (never a hang),
//! readiness turns false, and publishing resumes by itself when the broker is back.
//!
//! The test owns a dedicated broker, so stopping it disturbs no other test.

use std::time::{Duration, Instant};

use bp_relay::demo::samples;
use http::StatusCode;
use rdkafka::Message;

use crate::helpers::*;

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
    let broker = DedicatedBroker::start().await;
    let relay = spawn_relay(RelayOptions::default().broker(&broker.bootstrap()).flags(&[
        "--ack-timeout",
        "2s",
        "--broker-down-grace",
        "2s",
    ]))
    .await;
    let mut tally = Tally::default();
    let minimal = samples::get("bp-minimal.json");
    let before = relay.send_process(minimal).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    tally.published += 1;
    for body in [&b"not json"[..], b"{}"] {
        assert_eq!(
            relay.send_process(body).await.json()["topic"],
            relay.topics.dead_letter.name.as_str()
        );
        tally.dead_lettered += 1;
    }
    let unsigned = post(
        &relay.url(PROCESS_PATH),
        http::HeaderMap::new(),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    tally.unauthorized += 1;

    broker.stop().await;
    let started = Instant::now();
    let during = relay.send_process(samples::BUSINESS_PROCESS).await;
    let waited = started.elapsed();
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        during.text()
    );
    tally.unavailable += 1;
    assert_eq!(during.headers["retry-after"], "5");
    assert_eq!(
        during.code(),
        "kafka_unavailable",
        "no broker is up at the deadline: {}",
        during.text()
    );
    assert!(
        waited < Duration::from_millis(3500),
        "answered after {waited:?}, ack timeout is 2s"
    );
    eventually(
        "readiness to fail while the broker is down",
        Duration::from_secs(20),
        || async {
            let ready = relay.admin_get("/readyz").await;
            ready.status == StatusCode::SERVICE_UNAVAILABLE && ready.text().contains("no_broker")
        },
    )
    .await;
    assert_eq!(
        relay.admin_get("/healthz").await.status,
        StatusCode::OK,
        "liveness never depends on Kafka"
    );

    broker.restart().await;
    let body = samples::get("bp-failed-expired.json");
    // Polls the condition "a delivery is acknowledged again", counting every 503 on the way.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let answer = relay.send_process(body).await;
        if answer.status == StatusCode::OK {
            tally.published += 1;
            break answer;
        }
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.text()
        );
        tally.unavailable += 1;
        assert!(
            Instant::now() < deadline,
            "publishing did not resume within 60 s of the broker's restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eventually("readiness to return", Duration::from_secs(20), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;

    // Both acknowledged deliveries are in Kafka, at the offsets the relay reported.
    let after = after.json();
    let acked = [(0, minimal), (after["offset"].as_i64().unwrap(), body)];
    let total = relay.topics.processes.count().await as usize;
    let records = relay.topics.processes.consume(total).await;
    for (offset, body) in acked {
        let record = records
            .iter()
            .find(|r| r.offset() == offset)
            .expect("acked record present");
        assert_eq!(record.payload(), Some(body));
    }
    assert_metrics_match(&relay.metrics().await, &tally);
    relay.stop().await;
}

/// `/metrics` must count exactly what the test did.
fn assert_metrics_match(metrics: &Scrape, tally: &Tally) {
    let requests = |status: &str| {
        metrics[&format!(
            "bp_relay_http_requests_total{{route=\"business_processes\",status=\"{status}\"}}"
        )]
    };
    assert_eq!(
        requests("200"),
        f64::from(tally.published + tally.dead_lettered)
    );
    assert_eq!(requests("401"), f64::from(tally.unauthorized));
    assert_eq!(requests("503"), f64::from(tally.unavailable));
    assert_eq!(
        metrics["bp_relay_published_records_total{route=\"business_processes\"}"],
        f64::from(tally.published)
    );
    assert_eq!(
        metrics.sum("bp_relay_dead_letter_total"),
        f64::from(tally.dead_lettered)
    );
    assert_eq!(
        metrics["bp_relay_signature_failures_total{reason=\"missing_signature_header\"}"],
        f64::from(tally.unauthorized)
    );
    assert_eq!(
        metrics.sum("bp_relay_kafka_delivery_failures_total"),
        f64::from(tally.unavailable),
        "every 503 is one counted delivery failure"
    );
    assert!(
        metrics["bp_relay_kafka_delivery_failures_total{reason=\"kafka_unavailable\"}"] >= 1.0,
        "the 503 while no broker was up is counted as kafka_unavailable"
    );
    // The lag histogram counts every record the broker answered for, by outcome: failures too.
    let lag = |outcome: &str| {
        metrics[&format!("bp_relay_delivery_lag_seconds_count{{outcome=\"{outcome}\",route=\"business_processes\"}}")]
    };
    assert_eq!(lag("published"), f64::from(tally.published));
    assert_eq!(lag("dead_lettered"), f64::from(tally.dead_lettered));
    assert_eq!(lag("failed"), f64::from(tally.unavailable));
    assert_eq!(
        metrics["bp_relay_http_request_duration_seconds_count{route=\"business_processes\"}"],
        f64::from(tally.published + tally.dead_lettered + tally.unauthorized + tally.unavailable)
    );
    assert_eq!(metrics["bp_relay_inflight_requests"], 0.0);
    assert_eq!(metrics["bp_relay_ready"], 1.0);
    assert!(
        metrics.has("bp_relay_kafka_broker_up"),
        "broker statistics are exported"
    );
    assert_eq!(metrics["bp_relay_kafka_queue_max_messages"], 100_000.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_answers_nothing_makes_the_relay_unready_within_10_s_with_no_traffic_and_ready_again_after(
) {
    let broker = DedicatedBroker::start().await;
    let relay = spawn_relay(RelayOptions::default().broker(&broker.bootstrap())).await;
    eventually("the relay to be ready", Duration::from_secs(15), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;

    // Paused, the broker keeps its connections open and answers nothing; no delivery is sent.
    broker.freeze().await;
    eventually(
        "/readyz to turn 503 no_broker within 10 s",
        Duration::from_secs(10),
        || async {
            let answer = relay.admin_get("/readyz").await;
            answer.status == StatusCode::SERVICE_UNAVAILABLE && answer.text().contains("no_broker")
        },
    )
    .await;

    broker.thaw().await;
    eventually(
        "/readyz to turn 200 within 10 s of the broker answering",
        Duration::from_secs(10),
        || async { relay.admin_get("/readyz").await.status == StatusCode::OK },
    )
    .await;
    assert_eq!(
        relay
            .send_process(&process_body("after-the-pause"))
            .await
            .status,
        StatusCode::OK
    );
    relay.stop().await;
}
