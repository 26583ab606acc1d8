//! Back-pressure and terminal Kafka errors: a full producer queue or too many requests in flight
//! are refused at once with 503 + Retry-After; a record the broker can never take is a 500 with
//! a code, counted, and not retried silently.

mod support;

use std::{sync::Arc, time::Duration};

use http::StatusCode;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    ClientConfig,
};
use support::*;

fn process(n: usize) -> Vec<u8> {
    format!(r#"{{"id":"bp-{n}","partner":"P","merchant":"M","customer":"c","status":"scheduled","expiration":"2026-12-01T00:00:00Z","actions":[],"addresses":[]}}"#).into_bytes()
}

/// Sends `first`, and once it is in flight (the gauge says so) sends `second`.
async fn second_while_first_in_flight(relay: Arc<TestRelay>) -> (Answer, Answer) {
    let first = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.send_process(&process(1)).await })
    };
    eventually("the first request to be in flight", Duration::from_secs(10), || {
        let relay = relay.clone();
        async move { relay.metrics().await["bp_relay_inflight_requests"] >= 1.0 }
    })
    .await;
    let second = relay.send_process(&process(2)).await;
    (first.await.unwrap(), second)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_producer_queue_is_refused_at_once_with_503() {
    let topics = Topics::create(&bootstrap(), 1).await;
    // One record fills the queue, and the long linger keeps it there.
    let relay = Arc::new(TestRelay::start(&topics, &["--kafka-queue-max-messages", "1", "--kafka-linger", "1500ms"]).await);
    let (first, second) = second_while_first_in_flight(relay.clone()).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text());
    assert_eq!(second.json()["code"], "kafka_queue_full");
    assert_eq!(second.headers["retry-after"], "5");
    assert_eq!(first.status, StatusCode::OK, "the queued record still lands: {}", first.text());
    assert_eq!(relay.metrics().await["bp_relay_kafka_delivery_failures_total{reason=\"queue_full\"}"], 1.0);
    consume(&topics.bootstrap, &topics.processes, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_inflight_get_503_overloaded() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = Arc::new(TestRelay::start(&topics, &["--max-inflight", "1", "--kafka-linger", "1500ms"]).await);
    let (first, second) = second_while_first_in_flight(relay.clone()).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text());
    assert_eq!(second.json()["code"], "overloaded");
    assert_eq!(second.headers["retry-after"], "5");
    assert_eq!(first.status, StatusCode::OK);
    consume(&topics.bootstrap, &topics.processes, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_topic_cannot_take_is_a_500_with_a_code() {
    let topics = Topics::create(&bootstrap(), 1).await;
    // A topic that refuses records over 256 bytes: the in-progress sample (1.2 KB, headers besides) cannot fit even compressed.
    let small = unique("small");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &topics.bootstrap).create().unwrap();
    let topic = NewTopic::new(&small, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "256");
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap()[0].as_ref().unwrap();
    let small_topics = Topics { processes: small.clone(), ..topics.clone() };
    let relay = TestRelay::start(&small_topics, &[]).await;
    let answer = relay.send_process(&sample("bp-in-progress.json")).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", answer.text());
    assert_eq!(answer.json()["code"], "kafka_message_too_large");
    assert_eq!(answer.json()["message"], "the delivery was not stored", "5xx reveal nothing");
    assert!(answer.headers.get("retry-after").is_none());
    assert_eq!(relay.metrics().await["bp_relay_kafka_delivery_failures_total{reason=\"message_too_large\"}"], 1.0);
    assert_eq!(record_count(&topics.bootstrap, &small), 0);
    relay.stop().await;
}
