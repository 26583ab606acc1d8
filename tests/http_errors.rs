//! Requests that are not deliveries: unknown paths, wrong methods and oversized bodies get a
//! JSON error and write nothing.

mod support;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_wrong_methods_get_404_and_405_with_a_json_error() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;

    let not_found = post(&relay.url("/webhooks/customers"), signed_headers(SECRET), b"{}".to_vec()).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.json()["code"], "not_found");
    assert!(not_found.json()["message"].is_string());

    let get = http::Request::get(relay.url("/webhooks/business-processes")).body(Full::new(Bytes::new())).unwrap();
    let wrong_method = send(get).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json()["code"], "method_not_allowed");
    assert_eq!(wrong_method.headers["allow"], "POST");

    for topic in [&topics.processes, &topics.actions, &topics.dead_letter] {
        assert_eq!(record_count(&topics.bootstrap, topic), 0);
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_rejected_with_413_and_writes_nothing() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &["--max-body", "1KiB"]).await;
    let mut json: serde_json::Value = serde_json::from_slice(&sample("bp-minimal.json")).unwrap();
    json["padding"] = "x".repeat(2048).into();
    let answer = relay.send_process(&serde_json::to_vec(&json).unwrap()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json()["code"], "payload_too_large");

    // A body within the limit still goes through, and is the only record.
    let fits = relay.send_process(&sample("bp-minimal.json")).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert_eq!(fits.json()["offset"], 0);
    consume(&topics.bootstrap, &topics.processes, 1);
    assert_eq!(record_count(&topics.bootstrap, &topics.dead_letter), 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_answer_health_readiness_and_metrics() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let health = relay.admin_get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = relay.admin_get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["ready"], true);
    relay.send_process(&sample("bp-minimal.json")).await;
    let metrics = relay.metrics().await;
    assert_eq!(metrics["bp_relay_http_requests_total{route=\"business_processes\",status=\"200\"}"], 1.0);
    assert_eq!(metrics["bp_relay_published_records_total{route=\"business_processes\"}"], 1.0);
    assert_eq!(metrics["bp_relay_ready"], 1.0);
    assert_eq!(relay.admin_get("/nope").await.status, StatusCode::NOT_FOUND);
    relay.stop().await;
}
