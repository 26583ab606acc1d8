//! Back-pressure and terminal Kafka errors: a full producer queue or too many requests in flight
//! are refused at once with 503 + Retry-After; a record the broker can never take is a 500 with
//! a code, counted, and not retried silently.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bp_relay::demo::samples;
use http::StatusCode;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_producer_queue_is_refused_at_once_with_503_and_the_queued_record_still_lands() {
    let broker = DedicatedBroker::start().await;
    let options = RelayOptions::default().broker(&broker.bootstrap()).flags(&[
        "--kafka-queue-max-messages",
        "1",
        "--ack-timeout",
        "4900ms",
    ]);
    let relay = Arc::new(spawn_relay(options).await);
    // A frozen broker acknowledges nothing: the first record stays in the queue, filling it.
    broker.freeze().await;
    let first = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.send_process(&process_body("bp-1")).await })
    };
    eventually(
        "the first record to fill the producer queue",
        Duration::from_secs(10),
        || async { relay.metrics().await["bp_relay_kafka_queue_messages"] >= 1.0 },
    )
    .await;

    let started = Instant::now();
    let second = relay.send_process(&process_body("bp-2")).await;
    let waited = started.elapsed();
    broker.thaw().await;
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.text()
    );
    assert_eq!(second.code(), "kafka_queue_full");
    assert_eq!(second.headers["retry-after"], "5");
    assert!(
        waited < Duration::from_secs(2),
        "refused at once, not at the ack timeout: answered after {waited:?}"
    );

    let first = first.await.unwrap();
    assert_eq!(
        first.status,
        StatusCode::OK,
        "the queued record still lands: {}",
        first.text()
    );
    assert_eq!(
        relay.metrics().await
            ["bp_relay_kafka_delivery_failures_total{reason=\"kafka_queue_full\"}"],
        1.0
    );
    relay.topics.processes.consume(1).await;
    Arc::into_inner(relay)
        .expect("no other handle is left")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_inflight_get_503_overloaded() {
    let relay = spawn_relay(RelayOptions::default().flags(&["--max-inflight", "1"])).await;
    // Its body held back, the first request keeps the only permit.
    let first = relay.hold_process(&process_body("bp-1")).await;
    eventually(
        "the held request to be in flight",
        Duration::from_secs(10),
        || async { relay.metrics().await["bp_relay_inflight_requests"] >= 1.0 },
    )
    .await;

    let second = relay.send_process(&process_body("bp-2")).await;
    assert_eq!(
        second.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        second.text()
    );
    assert_eq!(second.code(), "overloaded");
    assert_eq!(second.headers["retry-after"], "5");

    let first = first.finish().await.expect("the held request is answered");
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    relay.topics.processes.consume(1).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_topic_cannot_take_is_a_counted_500_with_a_code() {
    // The topic refuses records over 256 bytes: the in-progress sample (1.2 KB, headers besides)
    // cannot fit even compressed.
    let relay =
        spawn_relay(RelayOptions::default().process_topic_config("max.message.bytes", "256")).await;
    let answer = relay.send_process(samples::BUSINESS_PROCESS).await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.text()
    );
    assert_eq!(answer.code(), "kafka_message_too_large");
    assert_eq!(
        answer.json()["message"],
        "the delivery was not stored",
        "5xx reveal nothing"
    );
    assert!(answer.headers.get("retry-after").is_none());
    assert_eq!(
        relay.metrics().await
            ["bp_relay_kafka_delivery_failures_total{reason=\"kafka_message_too_large\"}"],
        1.0
    );
    assert_eq!(relay.topics.processes.count().await, 0);
    relay.stop().await;
}
