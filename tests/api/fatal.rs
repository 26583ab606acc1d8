//! A fatal producer error (librdkafka's idempotence gave up): requests meanwhile get 503, never
//! 500; readiness is false until a fresh producer has a broker; publishing resumes without a
//! restart of the process, and every 2xx is in Kafka at the offset it named.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use http::StatusCode;
use rdkafka::Message;

use crate::helpers::*;

const SENDERS: usize = 4;

/// What one sender saw: the 2xx answers with the body they acknowledged, and every other answer.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<(i32, i64, Vec<u8>)>,
    refused: Vec<(StatusCode, String)>,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_producer_error_under_load_is_503_until_a_new_producer_takes_over() {
    let relay = Arc::new(spawn_relay(RelayOptions::default()).await);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| tokio::spawn(send_until(relay.clone(), sender, stop.clone())))
        .collect();

    eventually("deliveries to flow", Duration::from_secs(20), || async {
        relay
            .metrics()
            .await
            .sum("bp_relay_published_records_total")
            >= 20.0
    })
    .await;
    relay.publisher.inject_fatal_error();
    eventually(
        "a new producer to replace the failed one",
        Duration::from_secs(20),
        || async {
            relay
                .metrics()
                .await
                .get("bp_relay_producer_restarts_total")
                == Some(1.0)
        },
    )
    .await;
    let published_at_restart = relay
        .metrics()
        .await
        .sum("bp_relay_published_records_total");
    eventually(
        "the new producer to publish",
        Duration::from_secs(20),
        || async {
            relay
                .metrics()
                .await
                .sum("bp_relay_published_records_total")
                >= published_at_restart + 20.0
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut ledger = Ledger::default();
    for sender in senders {
        let mine = sender.await.expect("a sender finished");
        ledger.acknowledged.extend(mine.acknowledged);
        ledger.refused.extend(mine.refused);
    }

    for (status, code) in &ledger.refused {
        assert_eq!(
            (*status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"),
            "a fatal error is retryable: never a 500"
        );
    }
    let metrics = relay.metrics().await;
    assert_eq!(metrics.get("bp_relay_kafka_fatal_errors_total"), Some(1.0));
    assert_eq!(metrics.get("bp_relay_producer_restarts_total"), Some(1.0));
    assert_every_acknowledgement_is_in_kafka(&relay, &ledger.acknowledged).await;
    eventually(
        "readiness with the new producer",
        Duration::from_secs(10),
        || async { relay.admin_get("/readyz").await.status == StatusCode::OK },
    )
    .await;
    Arc::into_inner(relay)
        .expect("the senders are done")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_fatal_error_the_relay_is_unready_until_the_new_producer_sees_a_broker() {
    let broker = DedicatedBroker::start().await;
    let relay = spawn_relay(
        RelayOptions::default()
            .broker(&broker.bootstrap())
            .flags(&["--ack-timeout", "2s"]),
    )
    .await;
    assert_eq!(
        relay.send_process(&process_body("before")).await.status,
        StatusCode::OK
    );

    // With the broker down, the replacement cannot see a broker: the window stays open.
    broker.stop().await;
    relay.publisher.inject_fatal_error();
    eventually(
        "/readyz to say producer_failed",
        Duration::from_secs(10),
        || async {
            let ready = relay.admin_get("/readyz").await;
            ready.status == StatusCode::SERVICE_UNAVAILABLE
                && ready.text().contains("producer_failed")
        },
    )
    .await;
    let during = relay.send_process(&process_body("during")).await;
    assert_eq!(
        (during.status, during.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"),
        "{}",
        during.text()
    );
    assert!(
        relay
            .admin_get("/readyz")
            .await
            .text()
            .contains("producer_failed"),
        "still unready: no broker for the new producer"
    );

    broker.restart().await;
    eventually(
        "readiness once the new producer sees the broker",
        Duration::from_secs(30),
        || async { relay.admin_get("/readyz").await.status == StatusCode::OK },
    )
    .await;
    let after = relay.send_process(&process_body("after")).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    let after = after.json();
    let acknowledged = [(
        after["partition"].as_i64().unwrap() as i32,
        after["offset"].as_i64().unwrap(),
        process_body("after"),
    )];
    assert_every_acknowledgement_is_in_kafka(&relay, &acknowledged).await;
    relay.stop().await;
}

/// Sends distinct deliveries one after another until `stop`, recording every answer.
async fn send_until(relay: Arc<TestRelay>, sender: usize, stop: Arc<AtomicBool>) -> Ledger {
    let mut ledger = Ledger::default();
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let body = process_body(&format!("fatal-{sender}-{n}"));
        let answer = relay.send_process(&body).await;
        if answer.status == StatusCode::OK {
            let json = answer.json();
            ledger.acknowledged.push((
                json["partition"].as_i64().unwrap() as i32,
                json["offset"].as_i64().unwrap(),
                body,
            ));
        } else {
            ledger.refused.push((answer.status, answer.code()));
        }
    }
    ledger
}

/// Every acknowledged body is in the process topic at the partition and offset it was given.
async fn assert_every_acknowledgement_is_in_kafka(
    relay: &TestRelay,
    acknowledged: &[(i32, i64, Vec<u8>)],
) {
    let total = relay.topics.processes.count().await as usize;
    let records = relay.topics.processes.consume(total).await;
    let stored: HashMap<(i32, i64), &[u8]> = records
        .iter()
        .map(|r| ((r.partition(), r.offset()), r.payload().unwrap_or_default()))
        .collect();
    for (partition, offset, body) in acknowledged {
        assert_eq!(
            stored.get(&(*partition, *offset)).copied(),
            Some(&body[..]),
            "2xx at {partition}/{offset} is in Kafka with its bytes"
        );
    }
}
