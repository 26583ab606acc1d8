//! Every unauthenticated request is refused with 401 and a reason code, and writes nothing.
//!
//! Each test uses one-partition topics and ends with a valid delivery: had a refused request
//! been produced, it would sit before the valid one, so "the valid one is at offset 0 and the
//! only record" proves nothing else was written.

use std::time::{SystemTime, UNIX_EPOCH};

use bp_relay::demo::samples;
use http::{HeaderMap, StatusCode};
use rdkafka::Message;

use crate::helpers::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn assert_only_the_control_delivery_was_written(relay: &TestRelay) {
    let answer = relay.send_process(samples::get("bp-minimal.json")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["offset"], 0, "an earlier request was written");
    relay.topics.processes.consume(1).await;
    assert_eq!(relay.topics.dead_letter.count().await, 0);
}

/// POSTs and expects a 401; returns its code.
async fn refused(relay: &TestRelay, headers: HeaderMap) -> String {
    let answer = post(
        &relay.url(PROCESS_PATH),
        headers,
        samples::BUSINESS_PROCESS.to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    answer.code()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_get_401_with_a_reason_are_counted_and_write_nothing() {
    let relay = spawn_relay(RelayOptions::default()).await;

    assert_eq!(
        refused(&relay, unsigned_headers()).await,
        "missing_signature_header"
    );

    let stale = signed_headers_at(SECRET, "v-stale", now() - 301);
    assert_eq!(refused(&relay, stale).await, "stale_timestamp");

    let future = signed_headers_at(SECRET, "v-future", now() + 301);
    assert_eq!(refused(&relay, future).await, "future_timestamp");

    let wrong_secret = signed_headers("whsec_someone_else");
    assert_eq!(refused(&relay, wrong_secret).await, "signature_mismatch");

    let mut tampered = signed_headers(SECRET);
    tampered.insert("x-authvia-value", "tampered-value".parse().unwrap());
    assert_eq!(refused(&relay, tampered).await, "signature_mismatch");

    let mut wrong_algorithm = signed_headers(SECRET);
    wrong_algorithm.insert("x-authvia-algorithm", "SHA-1".parse().unwrap());
    assert_eq!(
        refused(&relay, wrong_algorithm).await,
        "unsupported_algorithm"
    );

    let mut malformed_timestamp = signed_headers(SECRET);
    malformed_timestamp.insert("x-authvia-timestamp", "yesterday".parse().unwrap());
    assert_eq!(
        refused(&relay, malformed_timestamp).await,
        "malformed_timestamp"
    );

    let mut malformed_signature = signed_headers(SECRET);
    malformed_signature.insert("x-authvia-signature", "not base64!".parse().unwrap());
    assert_eq!(
        refused(&relay, malformed_signature).await,
        "malformed_signature"
    );

    // Refusals are counted by reason.
    let metrics = relay.metrics().await;
    for reason in [
        "missing_signature_header",
        "stale_timestamp",
        "future_timestamp",
        "unsupported_algorithm",
        "malformed_timestamp",
        "malformed_signature",
    ] {
        assert_eq!(
            metrics[&format!("bp_relay_signature_failures_total{{reason=\"{reason}\"}}")],
            1.0,
            "{reason}"
        );
    }
    assert_eq!(
        metrics["bp_relay_signature_failures_total{reason=\"signature_mismatch\"}"],
        2.0
    );

    assert_only_the_control_delivery_was_written(&relay).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_replayed_with_another_body_is_refused_but_a_redelivery_passes() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let headers = signed_headers_at(SECRET, "v-replay", now());
    let original = samples::get("bp-minimal.json").to_vec();
    let url = relay.url(PROCESS_PATH);

    let first = post(&url, headers.clone(), original.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let redelivery = post(&url, headers.clone(), original.clone()).await;
    assert_eq!(
        redelivery.status,
        StatusCode::OK,
        "same signing, same body: a duplicate delivery"
    );
    let attack = post(&url, headers, samples::BUSINESS_PROCESS.to_vec()).await;
    assert_eq!(attack.status, StatusCode::UNAUTHORIZED);
    assert_eq!(attack.code(), "replayed_signature");

    let records = relay.topics.processes.consume(2).await;
    assert!(records.iter().all(|r| r.payload() == Some(&original[..])));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_secret_of_a_rotation_is_accepted() {
    let relay = spawn_relay(RelayOptions::default().secrets(&["whsec_old", "whsec_new"])).await;
    let url = relay.url(PROCESS_PATH);
    for secret in ["whsec_old", "whsec_new"] {
        let answer = post(
            &url,
            signed_headers(secret),
            samples::get("bp-minimal.json").to_vec(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{secret}: {}", answer.text());
    }
    let other = post(
        &url,
        signed_headers(SECRET),
        samples::get("bp-minimal.json").to_vec(),
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "a secret outside the rotation: {}",
        other.text()
    );
    relay.topics.processes.consume(2).await;
    relay.stop().await;
}
