//! Both routes publish every sample to the real broker: key, murmur2 partition, CloudEvents
//! headers and the exact body bytes, over HTTP/1.1 and h2c.

use std::{collections::HashSet, sync::Arc};

use bp_relay::demo::samples;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rdkafka::Message;

use crate::helpers::*;

const PARTITIONS: i32 = 6;

/// Every business-process sample, and the project's case with fields the spec does not list.
fn process_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = samples::BUSINESS_PROCESSES
        .iter()
        .map(|(_, body)| body.to_vec())
        .collect();
    bodies.push(fixture("bp-new-fields-and-status.json"));
    bodies
}

#[test]
fn java_partition_matches_kafkas_reference_vector() {
    // From Kafka's UtilsTest: murmur2("21") == -973932308.
    assert_eq!(murmur2::murmur2(b"21", 0x9747_b28c) as i32, -973_932_308);
}

#[tokio::test(flavor = "multi_thread")]
async fn business_processes_are_published_with_key_partition_headers_and_exact_bytes() {
    let relay = spawn_relay(
        RelayOptions::default()
            .partitions(PARTITIONS)
            .flags(&["--ce-source", "urn:test:relay"]),
    )
    .await;
    let bodies = process_bodies();
    let mut acks = Vec::new();
    for body in &bodies {
        let answer = relay.send_process(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        acks.push(answer.json());
    }
    let records = relay.topics.processes.consume(bodies.len()).await;
    for (body, ack) in bodies.iter().zip(&acks) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let id = json["id"].as_str().unwrap();
        let record = records
            .iter()
            .find(|r| r.key() == Some(id.as_bytes()))
            .unwrap_or_else(|| panic!("no record keyed {id}"));
        assert_eq!(record.payload(), Some(&body[..]), "value is the exact body");
        assert_eq!(
            record.partition(),
            java_partition(id.as_bytes(), PARTITIONS),
            "murmur2 partition of {id}"
        );
        assert_eq!(ack["topic"], relay.topics.processes.name.as_str());
        assert_eq!(ack["partition"], record.partition());
        assert_eq!(ack["offset"], record.offset());
        let headers = headers_of(record);
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], sha256_hex(body));
        assert_eq!(headers["ce_source"], "urn:test:relay");
        assert_eq!(headers["ce_type"], "business_processes.update");
        assert_eq!(headers["ce_subject"], id);
        assert_eq!(headers["content-type"], "application/json");
        assert!(time::OffsetDateTime::parse(
            &headers["ce_time"],
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
        assert!(
            headers["ce_time"].ends_with('Z') && headers["ce_time"].len() == 24,
            "{}",
            headers["ce_time"]
        );
        assert!(
            bp_relay::ingress::traceparent::TraceParent::parse(&headers["ce_traceparent"])
                .is_some()
        );
        match json.get("version") {
            Some(version) => assert_eq!(headers["ce_processversion"], version.to_string()),
            None => assert!(!headers.contains_key("ce_processversion")),
        }
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_are_keyed_by_their_owning_process_and_share_its_partition() {
    let relay = spawn_relay(RelayOptions::default().partitions(PARTITIONS)).await;
    assert_eq!(
        relay.send_process(samples::BUSINESS_PROCESS).await.status,
        StatusCode::OK
    );
    let answer = relay.send_action(samples::ACTION).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let process_record = &relay.topics.processes.consume(1).await[0];
    let action_record = &relay.topics.actions.consume(1).await[0];
    let owner = "3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33";
    assert_eq!(
        process_record.key(),
        Some(owner.as_bytes()),
        "the action's owner is the sample process"
    );
    assert_eq!(action_record.key(), Some(owner.as_bytes()));
    assert_eq!(action_record.partition(), process_record.partition());
    assert_eq!(action_record.payload(), Some(samples::ACTION));
    let headers = headers_of(action_record);
    assert_eq!(headers["ce_type"], "business_processes_actions.update");
    assert_eq!(headers["ce_subject"], owner);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_of_the_same_body_carries_the_same_ce_id_and_a_new_body_another() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let body = samples::get("bp-minimal.json").to_vec();
    let mut changed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    changed["status"] = "in-progress".into();
    let changed = serde_json::to_vec(&changed).unwrap();
    for body in [&body, &body, &changed] {
        assert_eq!(relay.send_process(body).await.status, StatusCode::OK);
    }
    let ids: Vec<String> = relay
        .topics
        .processes
        .consume(3)
        .await
        .iter()
        .map(|r| headers_of(r)["ce_id"].clone())
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_traceparent_continues_into_the_record() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let mut headers = signed_headers(SECRET);
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let answer = post(
        &relay.url(PROCESS_PATH),
        headers,
        samples::get("bp-minimal.json").to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let record = &relay.topics.processes.consume(1).await[0];
    let traceparent = &headers_of(record)["ce_traceparent"];
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the relay's own span id: {traceparent}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_requests_are_served() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut request = http::Request::post(relay.url(PROCESS_PATH))
        .body(Full::new(Bytes::from_static(samples::get(
            "bp-minimal.json",
        ))))
        .unwrap();
    *request.headers_mut() = signed_headers(SECRET);
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .expect("the relay answers within 30 s")
            .expect("h2c request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await;
    assert_eq!(relay.topics.processes.consume(1).await.len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_are_all_acknowledged_once() {
    let relay = Arc::new(spawn_relay(RelayOptions::default().partitions(3)).await);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            relay.send_process(&process_body(&format!("p-{n}"))).await
        }));
    }
    let mut positions = HashSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let ack = answer.json();
        assert!(positions.insert((
            ack["partition"].as_i64().unwrap(),
            ack["offset"].as_i64().unwrap()
        )));
    }
    assert_eq!(relay.topics.processes.consume(40).await.len(), 40);
}
