//! Authvia's redrive against a real broker (issue 17's table): a delivery answered 503 while
//! every broker was down, retried with its original signing after the window, is written once;
//! the same stale signing with another body, and a stale signing the relay never answered 5xx,
//! write nothing; a record that landed after its 503 answers a fresh-signed redrive and is not
//! written again. With `--replay-store` another replica knows the 5xx'd signing too.
//!
//! The window is 3 s here, so "after the window" is seconds away: each test waits until the
//! window of the signing it made has passed (a deadline, not a pause).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use rdkafka::Message;

use crate::helpers::*;

/// `--signature-tolerance` of these relays.
const TOLERANCE_SECONDS: i64 = 3;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until a signing made at `timestamp` is outside the window (whole seconds).
async fn until_stale(timestamp: i64) {
    let stale_at = UNIX_EPOCH + Duration::from_secs((timestamp + TOLERANCE_SECONDS + 1) as u64);
    if let Ok(left) = stale_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

fn redriving(broker: &str) -> RelayOptions {
    RelayOptions::default().broker(broker).flags(&[
        "--signature-tolerance",
        "3s",
        "--ack-timeout",
        "2s",
        "--broker-down-grace",
        "2s",
    ])
}

async fn ready(relay: &TestRelay) {
    eventually("the relay to be ready", Duration::from_secs(30), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;
}

fn body(id: &str) -> Vec<u8> {
    process_body(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503d_delivery_redriven_with_its_original_signing_after_the_window_is_written_once() {
    let broker = DedicatedBroker::start().await;
    let relay = spawn_relay(redriving(&broker.bootstrap())).await;
    let url = relay.url(PROCESS_PATH);
    let answered = post(&url, signed_headers(SECRET), body("answered-2xx")).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text());
    let answered_signing = signed_headers_at(SECRET, "answered", unix_now());
    let first = post(&url, answered_signing.clone(), body("answered-once")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());

    broker.stop().await;
    let signed_at = unix_now();
    let original: HeaderMap = signed_headers_at(SECRET, "first-attempt", signed_at);
    let during = post(&url, original.clone(), body("redriven")).await;
    assert_eq!(
        (during.status, during.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"),
        "{}",
        during.text()
    );
    broker.restart().await;
    ready(&relay).await;
    until_stale(signed_at).await;

    let forged = post(&url, original.clone(), body("another-body")).await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        "the same stale signing with another body: {}",
        forged.text()
    );
    let never_failed = post(&url, answered_signing, body("answered-once")).await;
    assert_eq!(
        (never_failed.status, never_failed.code().as_str()),
        (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        "a stale signing the relay answered 2xx: {}",
        never_failed.text()
    );
    // The producer reconnects by itself; Authvia would retry a 503 minutes later.
    let give_up = Instant::now() + Duration::from_secs(20);
    let redriven = loop {
        let answer = post(&url, original.clone(), body("redriven")).await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > give_up {
            break answer;
        }
    };
    assert_eq!(redriven.status, StatusCode::OK, "{}", redriven.text());
    let again = post(&url, original, body("redriven")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.json()["storedBefore"], true, "{}", again.text());
    assert_eq!(again.json()["offset"], redriven.json()["offset"]);

    let records = relay.topics.processes.consume(3).await;
    let redriven_records = records
        .iter()
        .filter(|record| record.payload() == Some(&body("redriven")[..]))
        .count();
    assert_eq!(redriven_records, 1, "written once");
    let scrape = relay.metrics().await;
    let accepted = scrape
        .get("bp_relay_redrive_original_signings_total")
        .unwrap_or_default();
    assert!(accepted >= 2.0, "the redrive and its copy: {accepted}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_landed_after_its_503_answers_the_redrive_and_is_not_written_again() {
    let broker = DedicatedBroker::start().await;
    let relay = spawn_relay(redriving(&broker.bootstrap()).flags(&[
        // librdkafka keeps the record past the answer's deadline, as a slow broker's would be.
        "--kafka-message-timeout",
        "30s",
    ]))
    .await;
    let url = relay.url(PROCESS_PATH);
    let warm = post(&url, signed_headers(SECRET), body("before")).await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.text());

    broker.freeze().await;
    let late = post(&url, signed_headers(SECRET), body("late")).await;
    assert_eq!(
        (late.status, late.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "kafka_timeout"),
        "{}",
        late.text()
    );
    broker.thaw().await;
    eventually(
        "the late record's report",
        Duration::from_secs(30),
        || async {
            relay
                .metrics()
                .await
                .get("bp_relay_late_reports_total{outcome=\"landed\"}")
                == Some(1.0)
        },
    )
    .await;

    let redrive = post(&url, signed_headers(SECRET), body("late")).await;
    assert_eq!(redrive.status, StatusCode::OK, "{}", redrive.text());
    assert_eq!(redrive.json()["storedBefore"], true, "{}", redrive.text());
    let records = relay.topics.processes.consume(2).await;
    let landed = records
        .iter()
        .find(|record| record.payload() == Some(&body("late")[..]))
        .expect("the late record is in Kafka");
    assert_eq!(redrive.json()["offset"], landed.offset());
    assert_eq!(redrive.json()["partition"], landed.partition());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_shared_store_another_replica_takes_the_original_signing_of_a_503d_delivery() {
    let redis = DedicatedRedis::start().await;
    let store = |options: RelayOptions| {
        options.flags(&[
            "--replay-store",
            &redis.url(),
            "--replay-store-password-file",
            &redis.password_file(),
        ])
    };
    let broker = DedicatedBroker::start().await;
    // Room for one 5xx'd signing in the store: the older of two is forgotten.
    let failing =
        spawn_relay(store(redriving(&broker.bootstrap())).flags(&["--redrive-capacity", "1"]))
            .await;
    let other = spawn_relay(store(redriving(&bootstrap()))).await;
    ready(&failing).await;
    ready(&other).await;

    broker.stop().await;
    let signed_at = unix_now();
    let forgotten = signed_headers_at(SECRET, "shared-forgotten", signed_at);
    let original = signed_headers_at(SECRET, "shared-first-attempt", signed_at);
    for (headers, id) in [(&forgotten, "forgotten"), (&original, "shared")] {
        let during = post(&failing.url(PROCESS_PATH), headers.clone(), body(id)).await;
        assert_eq!(
            during.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            during.text()
        );
    }
    eventually(
        "the store to forget the older 5xx'd signing",
        Duration::from_secs(10),
        || async {
            failing
                .metrics()
                .await
                .get("bp_relay_redrive_forgotten_total")
                .is_some_and(|forgotten| forgotten >= 2.0)
        },
    )
    .await;
    assert_eq!(
        redis
            .command(&["ZCARD", "bp-relay:replay:redrive:expiries"])
            .await,
        redis::Value::Int(1)
    );
    until_stale(signed_at).await;

    let forged = post(&other.url(PROCESS_PATH), original.clone(), body("forged")).await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        "{}",
        forged.text()
    );
    let lost = post(&other.url(PROCESS_PATH), forgotten, body("forgotten")).await;
    assert_eq!(
        (lost.status, lost.code().as_str()),
        (StatusCode::UNAUTHORIZED, "stale_timestamp"),
        "a forgotten signing: {}",
        lost.text()
    );
    let redriven = post(&other.url(PROCESS_PATH), original, body("shared")).await;
    assert_eq!(redriven.status, StatusCode::OK, "{}", redriven.text());
    let records = other.topics.processes.consume(1).await;
    assert_eq!(records[0].payload(), Some(&body("shared")[..]));
}
