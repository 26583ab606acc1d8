//! The shared replay guard (`--replay-store` on a real Redis): a captured set of X-AUTHVIA-*
//! headers cannot carry a second body through another replica, nor after a restart; a store
//! that does not answer fails closed (503, nothing written) and turns readiness false.

use std::time::Duration;

use http::StatusCode;

use crate::helpers::*;

fn with_store(redis: &DedicatedRedis) -> RelayOptions {
    let (url, password_file) = (redis.url(), redis.password_file());
    RelayOptions::default().flags(&[
        "--replay-store",
        &url,
        "--replay-store-password-file",
        &password_file,
    ])
}

async fn ready(relay: &TestRelay) {
    eventually("the relay to be ready", Duration::from_secs(15), || async {
        relay.admin_get("/readyz").await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_body_with_the_same_headers_is_refused_by_another_replica_and_after_a_restart() {
    let redis = DedicatedRedis::start().await;
    let first = spawn_relay(with_store(&redis)).await;
    let second = spawn_relay(with_store(&redis)).await;
    ready(&first).await;
    ready(&second).await;
    let headers = signed_headers(SECRET);

    let original = post(
        &first.url(PROCESS_PATH),
        headers.clone(),
        process_body("original"),
    )
    .await;
    assert_eq!(original.status, StatusCode::OK, "{}", original.text());
    let redelivered = post(
        &second.url(PROCESS_PATH),
        headers.clone(),
        process_body("original"),
    )
    .await;
    assert_eq!(
        redelivered.status,
        StatusCode::OK,
        "the same body again is a redelivery, on any replica: {}",
        redelivered.text()
    );
    let forged = post(
        &second.url(PROCESS_PATH),
        headers.clone(),
        process_body("forged"),
    )
    .await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "replayed_signature"),
        "{}",
        forged.text()
    );

    // A relay started after the first delivery (a restart) asks the same store.
    first.stop().await;
    let restarted = spawn_relay(with_store(&redis)).await;
    ready(&restarted).await;
    let forged_again = post(
        &restarted.url(PROCESS_PATH),
        headers.clone(),
        process_body("forged-again"),
    )
    .await;
    assert_eq!(
        forged_again.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        forged_again.text()
    );

    // The same headers on the other route are another signing, not a replay of this one.
    let other_route = post(
        &restarted.url(ACTION_PATH),
        headers,
        bp_relay::samples::ACTION.to_vec(),
    )
    .await;
    assert_eq!(
        other_route.status,
        StatusCode::OK,
        "not a replay of the process route's signing: {}",
        other_route.text()
    );

    assert_eq!(
        second.topics.processes.count().await,
        1,
        "only the redelivery was written through the second relay"
    );
    assert_eq!(
        restarted.topics.processes.count().await,
        0,
        "nothing written for the forgeries"
    );
    assert_eq!(
        second.metrics().await["bp_relay_signature_failures_total{reason=\"replayed_signature\"}"],
        1.0
    );
    second.stop().await;
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_fails_closed_and_makes_the_relay_unready() {
    let redis = DedicatedRedis::start().await;
    let relay = spawn_relay(with_store(&redis).flags(&["--ack-timeout", "2s"])).await;
    ready(&relay).await;
    assert_eq!(
        relay.send_process(&process_body("before")).await.status,
        StatusCode::OK
    );

    redis.stop().await;
    let during = relay.send_process(&process_body("during")).await;
    assert_eq!(
        (during.status, during.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "replay_store_unavailable"),
        "{}",
        during.text()
    );
    assert_eq!(during.headers["retry-after"], "5");
    eventually(
        "/readyz to say replay_store_down",
        Duration::from_secs(10),
        || async {
            let answer = relay.admin_get("/readyz").await;
            answer.status == StatusCode::SERVICE_UNAVAILABLE
                && answer.text().contains("replay_store_down")
        },
    )
    .await;
    assert_eq!(
        relay.topics.processes.count().await,
        1,
        "nothing written while the store is down"
    );

    redis.restart().await;
    ready(&relay).await;
    let after = relay.send_process(&process_body("after")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_store_password_keeps_the_relay_unready_and_takes_nothing() {
    let redis = DedicatedRedis::start().await;
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-the-password").unwrap();
    let relay = spawn_relay(RelayOptions::default().flags(&[
        "--replay-store",
        &redis.url(),
        "--replay-store-password-file",
        &wrong.path().display().to_string(),
        "--ack-timeout",
        "2s",
    ]))
    .await;
    let answer = relay.send_process(&process_body("refused")).await;
    assert_eq!(
        answer.code(),
        "replay_store_unavailable",
        "{}",
        answer.text()
    );
    assert!(relay
        .admin_get("/readyz")
        .await
        .text()
        .contains("replay_store_down"));
    assert_eq!(relay.topics.processes.count().await, 0);
    relay.stop().await;
}
