//! Requests that are not deliveries: unknown paths, wrong methods and oversized bodies get a
//! JSON error that says what to fix, and write nothing. The admin listener answers the same way.

use bp_relay::demo::samples;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_wrong_methods_get_404_and_405_with_a_json_error_naming_the_routes() {
    let relay = spawn_relay(RelayOptions::default()).await;

    let not_found = post(
        &relay.url("/webhooks/customers"),
        signed_headers(SECRET),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.code(), "not_found");
    let message = not_found.json()["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(
        message.contains(PROCESS_PATH) && message.contains(ACTION_PATH),
        "the 404 lists the routes: {message}"
    );

    let get = http::Request::get(relay.url(PROCESS_PATH))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let wrong_method = send(get).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
    assert_eq!(wrong_method.headers["allow"], "POST");

    for topic in [
        &relay.topics.processes,
        &relay.topics.actions,
        &relay.topics.dead_letter,
    ] {
        assert_eq!(topic.count().await, 0, "{}", topic.name);
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_rejected_with_413_and_writes_nothing() {
    let relay = spawn_relay(RelayOptions::default().flags(&["--max-body", "1KiB"])).await;
    let mut json: serde_json::Value =
        serde_json::from_slice(samples::get("bp-minimal.json")).unwrap();
    json["padding"] = "x".repeat(2048).into();
    let answer = relay
        .send_process(&serde_json::to_vec(&json).unwrap())
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "payload_too_large");

    // A body within the limit still goes through, and is the only record.
    let fits = relay.send_process(samples::get("bp-minimal.json")).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert_eq!(fits.json()["offset"], 0);
    relay.topics.processes.consume(1).await;
    assert_eq!(relay.topics.dead_letter.count().await, 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_answer_health_readiness_and_metrics_and_refuse_other_methods() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let health = relay.admin_get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = relay.admin_get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["ready"], true);
    assert_eq!(
        relay
            .send_process(samples::get("bp-minimal.json"))
            .await
            .status,
        StatusCode::OK
    );
    let metrics = relay.metrics().await;
    assert_eq!(
        metrics["bp_relay_http_requests_total{route=\"business_processes\",status=\"200\"}"],
        1.0
    );
    assert_eq!(
        metrics["bp_relay_published_records_total{route=\"business_processes\"}"],
        1.0
    );
    assert_eq!(metrics["bp_relay_ready"], 1.0);

    let not_found = relay.admin_get("/nope").await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.code(), "not_found");
    let post_metrics = post(
        &format!("http://{}/metrics", relay.admin),
        unsigned_headers(),
        Vec::new(),
    )
    .await;
    assert_eq!(post_metrics.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_metrics.code(), "method_not_allowed");
    assert_eq!(post_metrics.headers["allow"], "GET, HEAD");
    relay.stop().await;
}
