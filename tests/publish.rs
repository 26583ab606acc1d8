//! Both routes publish every sample to the real broker: key, murmur2 partition, CloudEvents
//! headers and the exact body bytes.

mod support;

use std::collections::HashSet;

use http::StatusCode;
use rdkafka::Message;
use support::*;

const PARTITIONS: i32 = 6;

fn process_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = ["bp-minimal.json", "bp-in-progress.json", "bp-failed-expired.json", "bp-resolved-uuid-v5.json"]
        .into_iter()
        .map(sample)
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
    let topics = Topics::create(&bootstrap(), PARTITIONS).await;
    let relay = TestRelay::start(&topics, &["--ce-source", "urn:test:relay"]).await;
    let bodies = process_bodies();
    let mut acks = Vec::new();
    for body in &bodies {
        let answer = relay.send_process(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        acks.push(answer.json());
    }
    let records = consume(&topics.bootstrap, &topics.processes, bodies.len());
    for (body, ack) in bodies.iter().zip(&acks) {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let id = json["id"].as_str().unwrap();
        let record = records
            .iter()
            .find(|r| r.key() == Some(id.as_bytes()))
            .unwrap_or_else(|| panic!("no record keyed {id}"));
        assert_eq!(record.payload(), Some(&body[..]), "value is the exact body");
        assert_eq!(record.partition(), java_partition(id.as_bytes(), PARTITIONS), "murmur2 partition of {id}");
        assert_eq!(ack["topic"], topics.processes.as_str());
        assert_eq!(ack["partition"], record.partition());
        assert_eq!(ack["offset"], record.offset());
        let headers = headers_of(record);
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], sha256_hex(body));
        assert_eq!(headers["ce_source"], "urn:test:relay");
        assert_eq!(headers["ce_type"], "business_processes.update");
        assert_eq!(headers["ce_subject"], id);
        assert_eq!(headers["content-type"], "application/json");
        assert!(time::OffsetDateTime::parse(&headers["ce_time"], &time::format_description::well_known::Rfc3339).is_ok());
        assert!(headers["ce_time"].ends_with('Z') && headers["ce_time"].len() == 24, "{}", headers["ce_time"]);
        assert!(bp_relay::traceparent::TraceParent::parse(&headers["ce_traceparent"]).is_some());
        match json.get("version") {
            Some(version) => assert_eq!(headers["ce_processversion"], version.to_string()),
            None => assert!(!headers.contains_key("ce_processversion")),
        }
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_are_keyed_by_their_owning_process_and_share_its_partition() {
    let topics = Topics::create(&bootstrap(), PARTITIONS).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let process = sample("bp-in-progress.json");
    let action = sample("action-update.json");
    assert_eq!(relay.send_process(&process).await.status, StatusCode::OK);
    let answer = relay.send_action(&action).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let process_record = &consume(&topics.bootstrap, &topics.processes, 1)[0];
    let action_record = &consume(&topics.bootstrap, &topics.actions, 1)[0];
    let owner = b"3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33";
    assert_eq!(action_record.key(), Some(&owner[..]));
    assert_eq!(action_record.partition(), process_record.partition());
    assert_eq!(action_record.payload(), Some(&action[..]));
    let headers = headers_of(action_record);
    assert_eq!(headers["ce_type"], "business_processes_actions.update");
    assert_eq!(headers["ce_subject"], "3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_of_the_same_body_carries_the_same_ce_id_and_a_new_body_another() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let body = sample("bp-minimal.json");
    let mut changed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    changed["status"] = "in-progress".into();
    let changed = serde_json::to_vec(&changed).unwrap();
    for body in [&body, &body, &changed] {
        assert_eq!(relay.send_process(body).await.status, StatusCode::OK);
    }
    let ids: Vec<String> = consume(&topics.bootstrap, &topics.processes, 3).iter().map(|r| headers_of(r)["ce_id"].clone()).collect();
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_traceparent_continues_into_the_record() {
    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let mut headers = signed_headers(SECRET);
    headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
    let answer = post(&relay.url("/webhooks/business-processes"), headers, sample("bp-minimal.json")).await;
    assert_eq!(answer.status, StatusCode::OK);
    let record = &consume(&topics.bootstrap, &topics.processes, 1)[0];
    let traceparent = &headers_of(record)["ce_traceparent"];
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    assert!(!traceparent.contains("00f067aa0ba902b7"), "the relay's own span id: {traceparent}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge_requests_are_served() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let topics = Topics::create(&bootstrap(), 1).await;
    let relay = TestRelay::start(&topics, &[]).await;
    let client = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let mut request = http::Request::post(relay.url("/webhooks/business-processes"))
        .body(Full::new(Bytes::from(sample("bp-minimal.json"))))
        .unwrap();
    *request.headers_mut() = signed_headers(SECRET);
    let response = client.request(request).await.expect("h2c request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await;
    assert_eq!(consume(&topics.bootstrap, &topics.processes, 1).len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_are_all_acknowledged_once() {
    let topics = Topics::create(&bootstrap(), 3).await;
    let relay = std::sync::Arc::new(TestRelay::start(&topics, &[]).await);
    let mut tasks = Vec::new();
    for n in 0..40 {
        let relay = relay.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"id":"p-{n}","partner":"P","merchant":"M","customer":"c","status":"scheduled","expiration":"2026-12-01T00:00:00Z","actions":[],"addresses":[]}}"#);
            relay.send_process(body.as_bytes()).await
        }));
    }
    let mut positions = HashSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let ack = answer.json();
        assert!(positions.insert((ack["partition"].as_i64().unwrap(), ack["offset"].as_i64().unwrap())));
    }
    assert_eq!(consume(&topics.bootstrap, &topics.processes, 40).len(), 40);
}
