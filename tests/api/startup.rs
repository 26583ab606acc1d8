//! Starting before Kafka: the relay listens at once, `/healthz` answers, `/readyz` and every
//! delivery say why not yet (no broker, then the missing topics by name), and once the broker
//! and the topics exist a delivery gets 2xx, with no restart.

use std::time::Duration;

use http::StatusCode;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_started_before_kafka_waits_for_it_and_then_publishes_without_a_restart() {
    let broker = DedicatedBroker::unstarted();
    let topics = Topics::named(&broker.bootstrap());
    let args = topics.args().signing_secrets(&[SECRET]).on_free_ports();
    let process = RelayProcess::spawn(&args, &[]);
    let (ingress, admin) = process.listening().await;

    assert_eq!(
        admin_get(admin, "/healthz").await.status,
        StatusCode::OK,
        "alive without Kafka"
    );
    let ready = admin_get(admin, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().contains("starting"), "{}", ready.text());
    let early = post(
        &format!("http://{ingress}{PROCESS_PATH}"),
        signed_headers(SECRET),
        process_body("early"),
    )
    .await;
    assert_eq!(
        (early.status, early.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        "{}",
        early.text()
    );
    assert_eq!(early.headers["retry-after"], "5");

    broker.restart().await;
    eventually(
        "/readyz to name the missing topics",
        Duration::from_secs(30),
        || async {
            let text = admin_get(admin, "/readyz").await.text();
            text.contains("topics_missing") && text.contains(&topics.actions.name)
        },
    )
    .await;
    topics.create_them(1, &[]).await;
    eventually(
        "the relay to accept deliveries",
        Duration::from_secs(30),
        || async { admin_get(admin, "/readyz").await.status == StatusCode::OK },
    )
    .await;
    let delivered = post(
        &format!("http://{ingress}{PROCESS_PATH}"),
        signed_headers(SECRET),
        process_body("after"),
    )
    .await;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.text());
    assert_eq!(
        topics.processes.count().await,
        1,
        "only the delivery after startup was written"
    );
    assert!(
        !process.logs().contains("\"level\":\"ERROR\""),
        "waiting for Kafka is not an error:\n{}",
        process.logs()
    );
}
