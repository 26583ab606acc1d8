//! Every authenticated delivery that is not a business process lands in the dead-letter topic,
//! byte for byte, with its reason, and is answered 2xx so Authvia does not retry it for days.

use bp_relay::demo::samples;
use http::StatusCode;
use rdkafka::Message;
use serde_json::json;

use crate::helpers::*;

/// The id of the bp-minimal sample.
const MINIMAL_ID: &str = "0b8e6d4c-1a2f-4e3d-9c5b-7a6f8e9d0c1b";

fn minimal() -> serde_json::Value {
    serde_json::from_slice(samples::get("bp-minimal.json")).unwrap()
}

fn without(field: &str) -> Vec<u8> {
    let mut json = minimal();
    json.as_object_mut().unwrap().remove(field);
    serde_json::to_vec(&json).unwrap()
}

fn with(field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut json = minimal();
    json[field] = value;
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_validation_failure_class_is_dead_lettered_with_2xx() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("not_json", b"ping".to_vec(), None),
        ("not_json", Vec::new(), None),
        ("not_an_object", b"[1,2,3]".to_vec(), None),
        (
            "missing_key",
            fixture("subscription-test-payload.json"),
            None,
        ),
        ("missing_key", without("id"), None),
        ("invalid_key", with("id", json!("")), None),
        ("invalid_key", with("id", json!(17)), None),
        ("missing_field", without("status"), Some(MINIMAL_ID)),
        (
            "invalid_field",
            with("status", json!(["resolved"])),
            Some(MINIMAL_ID),
        ),
        (
            "invalid_field",
            with("expiration", json!("soon")),
            Some(MINIMAL_ID),
        ),
        (
            "invalid_field",
            with("version", json!("seven")),
            Some(MINIMAL_ID),
        ),
    ];
    for (reason, body, _) in &cases {
        let answer = relay.send_process(body).await;
        assert_eq!(answer.status, StatusCode::OK, "{reason}: {}", answer.text());
        let ack = answer.json();
        assert_eq!(ack["topic"], relay.topics.dead_letter.name.as_str());
        assert_eq!(ack["deadLetterReason"], *reason);
    }
    let records = relay.topics.dead_letter.consume(cases.len()).await;
    for ((reason, body, key), record) in cases.iter().zip(&records) {
        let headers = headers_of(record);
        assert_eq!(
            record.payload().unwrap_or_default(),
            &body[..],
            "{reason}: value is the exact body"
        );
        assert_eq!(headers["bp_relay_dead_letter_reason"], *reason);
        assert_eq!(headers["bp_relay_route"], "business-processes");
        assert_eq!(headers["ce_type"], "business_processes.update");
        assert_eq!(headers["ce_id"], sha256_hex(body));
        assert!(!headers["bp_relay_dead_letter_detail"].is_empty());
        assert_eq!(
            record.key().map(|k| std::str::from_utf8(k).unwrap()),
            *key,
            "{reason}"
        );
        assert_eq!(headers.get("ce_subject").map(String::as_str), *key);
    }
    assert_eq!(relay.topics.processes.count().await, 0);
    let metrics = relay.metrics().await;
    assert_eq!(
        metrics
            ["bp_relay_dead_letter_total{reason=\"invalid_field\",route=\"business_processes\"}"],
        3.0
    );
    assert_eq!(
        metrics["bp_relay_dead_letter_total{reason=\"missing_key\",route=\"business_processes\"}"],
        2.0
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_without_its_owning_process_is_dead_lettered() {
    let relay = spawn_relay(RelayOptions::default()).await;
    let mut action: serde_json::Value = serde_json::from_slice(samples::ACTION).unwrap();
    action.as_object_mut().unwrap().remove("businessProcess");
    let body = serde_json::to_vec(&action).unwrap();
    let answer = relay.send_action(&body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["deadLetterReason"], "missing_key");
    let record = &relay.topics.dead_letter.consume(1).await[0];
    let headers = headers_of(record);
    assert_eq!(headers["bp_relay_route"], "business-process-actions");
    assert_eq!(headers["ce_type"], "business_processes_actions.update");
    assert_eq!(relay.topics.actions.count().await, 0);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_key_pointer_and_required_fields_replace_the_inferred_names() {
    let relay = spawn_relay(RelayOptions::default().flags(&[
        "--key-pointer",
        "/processId",
        "--required-fields",
        "processId,status",
    ]))
    .await;
    let renamed = br#"{"processId":"p-renamed","status":"resolved"}"#;
    let answer = relay.send_process(renamed).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["topic"], relay.topics.processes.name.as_str());
    let record = &relay.topics.processes.consume(1).await[0];
    assert_eq!(record.key(), Some(&b"p-renamed"[..]));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_not_labelled_as_json() {
    let relay = spawn_relay(RelayOptions::default()).await;
    assert_eq!(
        relay.send_process(b"\x00\x01 binary").await.status,
        StatusCode::OK
    );
    assert_eq!(relay.send_process(b"[]").await.status, StatusCode::OK);
    let records = relay.topics.dead_letter.consume(2).await;
    assert_eq!(
        headers_of(&records[0])["content-type"],
        "application/octet-stream"
    );
    assert_eq!(headers_of(&records[1])["content-type"], "application/json");
    relay.stop().await;
}
