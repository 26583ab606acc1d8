//! Every unauthenticated request is refused with 401 and a reason code, and writes nothing.
//!
//! Each test uses one-partition topics and ends with a valid delivery: had a refused request
//! been produced, it would sit before the valid one, so "the valid one is at offset 0 and the
//! only record" proves nothing else was written.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use support::*;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn assert_only_the_control_delivery_was_written(relay: &TestRelay, topics: &Topics) {
    let answer = relay.send_process(&sample("bp-minimal.json")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["offset"], 0, "an earlier request was written");
    consume(&topics.bootstrap, &topics.processes, 1);
    assert_eq!(record_count(&topics.bootstrap, &topics.dead_letter), 0);
}

async fn refused(relay: &TestRelay, headers: HeaderMap, body: Vec<u8>) -> String {
    let answer = post(&relay.url("/webhooks/business-processes"), headers, body).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    answer.json()["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_get_401_with_a_reason_and_write_nothing() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let body = sample("bp-in-progress.json");

    let mut unsigned = HeaderMap::new();
    unsigned.insert("content-type", "application/json".parse().unwrap());
    assert_eq!(refused(&relay, unsigned, body.clone()).await, "missing_signature_header");

    let stale = signed_headers_at(SECRET, "v-stale", now() - 301);
    assert_eq!(refused(&relay, stale, body.clone()).await, "stale_timestamp");

    let future = signed_headers_at(SECRET, "v-future", now() + 301);
    assert_eq!(refused(&relay, future, body.clone()).await, "future_timestamp");

    let wrong_secret = signed_headers("whsec_someone_else");
    assert_eq!(refused(&relay, wrong_secret, body.clone()).await, "signature_mismatch");

    let mut tampered = signed_headers(SECRET);
    tampered.insert("x-authvia-value", "tampered-value".parse().unwrap());
    assert_eq!(refused(&relay, tampered, body.clone()).await, "signature_mismatch");

    let mut wrong_algorithm = signed_headers(SECRET);
    wrong_algorithm.insert("x-authvia-algorithm", "SHA-1".parse().unwrap());
    assert_eq!(refused(&relay, wrong_algorithm, body.clone()).await, "unsupported_algorithm");

    // Refusals are counted by reason.
    let metrics = relay.metrics().await;
    for reason in ["missing_signature_header", "stale_timestamp", "future_timestamp", "unsupported_algorithm"] {
        assert_eq!(metrics[&format!("bp_relay_signature_failures_total{{reason=\"{reason}\"}}")], 1.0, "{reason}");
    }
    assert_eq!(metrics["bp_relay_signature_failures_total{reason=\"signature_mismatch\"}"], 2.0);

    assert_only_the_control_delivery_was_written(&relay, &topics).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_replayed_with_another_body_is_refused_but_a_redelivery_passes() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let headers = signed_headers_at(SECRET, "v-replay", now());
    let original = sample("bp-minimal.json");
    let url = relay.url("/webhooks/business-processes");

    let first = post(&url, headers.clone(), original.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let redelivery = post(&url, headers.clone(), original.clone()).await;
    assert_eq!(redelivery.status, StatusCode::OK, "same signing, same body: a duplicate delivery");
    let attack = post(&url, headers, sample("bp-in-progress.json")).await;
    assert_eq!(attack.status, StatusCode::UNAUTHORIZED);
    assert_eq!(attack.json()["code"], "replayed_signature");

    let records = consume(&topics.bootstrap, &topics.processes, 2);
    assert!(records.iter().all(|r| rdkafka::Message::payload(r) == Some(&original[..])));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_secret_of_a_rotation_is_accepted() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let mut args: Vec<String> = ["bp-relay", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--signing-secrets", "whsec_old,whsec_new"]
        .map(String::from)
        .to_vec();
    args.extend(topics.args());
    let relay = TestRelay::start_with(args).await;
    let url = relay.url("/webhooks/business-processes");
    for secret in ["whsec_old", "whsec_new"] {
        let answer = post(&url, signed_headers(secret), sample("bp-minimal.json")).await;
        assert_eq!(answer.status, StatusCode::OK, "{secret}: {}", answer.text());
    }
    assert_eq!(post(&url, signed_headers(SECRET), sample("bp-minimal.json")).await.status, StatusCode::UNAUTHORIZED);
    consume(&topics.bootstrap, &topics.processes, 2);
    relay.stop().await;
}
