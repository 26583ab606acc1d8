//! `Webhook::parse` against the samples and against every way a body can be wrong.

use serde_json::Value;

use super::*;

fn rules() -> Rules {
    Rules {
        key_pointer: "/id".parse().unwrap(),
        actions_key_pointer: "/businessProcess".parse().unwrap(),
        version_pointer: "/version".parse().unwrap(),
        required_fields: [
            "id",
            "partner",
            "merchant",
            "customer",
            "status",
            "expiration",
            "actions",
            "addresses",
        ]
        .map(String::from)
        .to_vec(),
        actions_required_fields: ["id", "type", "status"].map(String::from).to_vec(),
    }
}

fn sample(name: &str) -> &'static [u8] {
    crate::demo::samples::get(name)
}

fn process(json: Value) -> Result<Webhook, Rejection> {
    Webhook::parse(
        EventKind::BusinessProcess,
        json.to_string().as_bytes(),
        &rules(),
    )
}

fn minimal() -> Value {
    serde_json::from_slice(sample("bp-minimal.json")).unwrap()
}

#[test]
fn every_shared_business_process_sample_parses_with_its_id_as_key() {
    for (name, body) in crate::demo::samples::BUSINESS_PROCESSES {
        let webhook = Webhook::parse(EventKind::BusinessProcess, body, &rules())
            .unwrap_or_else(|r| panic!("{name}: {r}"));
        let json: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(webhook.key, json["id"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn version_is_carried_when_present() {
    let webhook = Webhook::parse(
        EventKind::BusinessProcess,
        sample("bp-in-progress.json"),
        &rules(),
    )
    .unwrap();
    assert_eq!(webhook.version.as_deref(), Some("4"));
    assert_eq!(process(minimal()).unwrap().version, None);
}

#[test]
fn action_is_keyed_by_its_owning_process() {
    let webhook =
        Webhook::parse(EventKind::Action, sample("action-update.json"), &rules()).unwrap();
    assert_eq!(webhook.key, "3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33");
}

#[test]
fn new_fields_and_new_enum_values_are_accepted() {
    let mut json = minimal();
    json["status"] = "paused-by-agent".into();
    json["statusReason"] = "cancelled".into();
    json["someFutureField"] = serde_json::json!({"nested": [1, 2]});
    json["actions"] =
        serde_json::json!([{"type": "crypto-payment", "status": "pending", "brandNew": true}]);
    json["addresses"] =
        serde_json::json!([{"value": "x", "type": "mobilePhone", "status": "verified"}]);
    assert!(process(json).is_ok());
}

#[test]
fn body_that_is_not_json_is_rejected_as_not_json() {
    let rejection = Webhook::parse(EventKind::BusinessProcess, b"ping", &rules()).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::NotJson);
    assert_eq!(rejection.key, None);
}

#[test]
fn json_array_is_not_an_object() {
    let rejection = process(serde_json::json!([1])).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::NotAnObject);
}

/// The top level is read in one pass: a body is JSON or not as a whole, whatever its first
/// value says.
#[test]
fn a_body_is_json_only_if_all_of_it_is() {
    let reason = |body: &[u8]| {
        Webhook::parse(EventKind::BusinessProcess, body, &rules())
            .unwrap_err()
            .reason
    };
    for body in [
        &b"[1, oops"[..],
        b"\"open",
        b"{\"id\": \"p-1\"} trailing",
        b"{\"id\": \"p-1\", \"actions\": [1,}",
        b"{\"id\": \"p-1\"",
        b"",
    ] {
        assert_eq!(
            reason(body),
            RejectReason::NotJson,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [&b"[1, 2]"[..], b" \"text\" ", b"42", b"null"] {
        assert_eq!(
            reason(body),
            RejectReason::NotAnObject,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn missing_empty_or_non_string_key_is_rejected() {
    let mut json = minimal();
    json.as_object_mut().unwrap().remove("id");
    assert_eq!(process(json).unwrap_err().reason, RejectReason::MissingKey);
    let mut json = minimal();
    json["id"] = "  ".into();
    assert_eq!(process(json).unwrap_err().reason, RejectReason::InvalidKey);
    let mut json = minimal();
    json["id"] = 42.into();
    assert_eq!(process(json).unwrap_err().reason, RejectReason::InvalidKey);
}

#[test]
fn missing_required_field_is_rejected_with_the_key_kept() {
    let mut json = minimal();
    json.as_object_mut().unwrap().remove("merchant");
    let rejection = process(json).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::MissingField);
    assert_eq!(
        rejection.key.as_deref(),
        Some("0b8e6d4c-1a2f-4e3d-9c5b-7a6f8e9d0c1b")
    );
    assert!(rejection.detail.contains("merchant"));
}

#[test]
fn required_fields_are_configurable() {
    let mut json = minimal();
    json.as_object_mut().unwrap().remove("merchant");
    let mut relaxed = rules();
    relaxed.required_fields.retain(|f| f != "merchant");
    assert!(Webhook::parse(
        EventKind::BusinessProcess,
        json.to_string().as_bytes(),
        &relaxed
    )
    .is_ok());
}

#[test]
fn wrongly_typed_known_fields_are_rejected() {
    let cases = [
        ("status", serde_json::json!(3)),
        ("expiration", serde_json::json!("next tuesday")),
        ("version", serde_json::json!("4")),
        ("actions", serde_json::json!({})),
        ("actions", serde_json::json!([1])),
        ("actions", serde_json::json!([{"union": -1}])),
        ("addresses", serde_json::json!([{"value": 5}])),
    ];
    for (field, bad) in cases {
        let mut json = minimal();
        json[field] = bad.clone();
        let rejection = process(json).unwrap_err();
        assert_eq!(
            rejection.reason,
            RejectReason::InvalidField,
            "{field} = {bad}"
        );
        assert!(rejection.detail.contains(field), "{}", rejection.detail);
    }
}

/// An item of an array of objects is read once, as the object it is; any other kind of item is
/// named by its index, and a well-typed item after it does not hide it.
#[test]
fn an_item_that_is_not_an_object_is_named_by_its_index() {
    let ok = serde_json::json!({"id": "a", "type": "t", "status": "s"});
    for (index, bad) in [
        serde_json::json!([1, [2]]),
        serde_json::json!("text"),
        serde_json::Value::Null,
        serde_json::json!(2.5),
        serde_json::json!(true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut json = minimal();
        json["actions"] = serde_json::json!([ok.clone(), bad.clone(), ok.clone()]);
        let rejection = process(json).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::InvalidField, "case {index}");
        assert_eq!(rejection.detail, "/actions/1 is not an object", "{bad}");
    }
    let mut json = minimal();
    json["actions"] =
        serde_json::json!([ok.clone(), {"id": "b", "type": "t", "status": "s", "union": "x"}]);
    assert_eq!(
        process(json).unwrap_err().detail,
        "/actions/1/union is not a non-negative integer"
    );
}

#[test]
fn rejection_detail_never_contains_payload_values() {
    let mut json = minimal();
    json["customer"] = serde_json::json!({"secretName": "Jane Roe"});
    let rejection = process(json).unwrap_err();
    assert!(!rejection.detail.contains("Jane"), "{}", rejection.detail);
    let rejection = Webhook::parse(
        EventKind::BusinessProcess,
        b"{\"card\": 4111111111111111",
        &rules(),
    )
    .unwrap_err();
    assert!(!rejection.detail.contains("4111"), "{}", rejection.detail);
}

#[test]
fn custom_key_pointer_reaches_nested_fields() {
    let mut custom = rules();
    custom.key_pointer = "/process/uuid".parse().unwrap();
    custom.required_fields.clear();
    let body = br#"{"process": {"uuid": "p-1"}}"#;
    assert_eq!(
        Webhook::parse(EventKind::BusinessProcess, body, &custom)
            .unwrap()
            .key,
        "p-1"
    );
}

#[test]
fn pointer_must_name_a_field() {
    assert!("".parse::<Pointer>().is_err());
    assert!("/".parse::<Pointer>().is_err());
    assert!("id".parse::<Pointer>().is_err());
}

#[test]
fn null_known_fields_pass_and_a_null_key_is_missing() {
    let mut json = minimal();
    json["status"] = Value::Null;
    assert!(process(json).is_ok());
    let mut json = minimal();
    json["id"] = Value::Null;
    assert_eq!(process(json).unwrap_err().reason, RejectReason::MissingKey);
}

#[test]
fn escaped_keys_and_duplicate_members_read_like_other_json_readers() {
    let body = br#"{"id": "first", "partner": "p", "merchant": "m", "customer": "c", "status": "s", "expiration": "2026-01-01T00:00:00Z", "actions": [], "addresses": [], "id": "p\u002d1"}"#;
    assert_eq!(
        Webhook::parse(EventKind::BusinessProcess, body, &rules())
            .unwrap()
            .key,
        "p-1"
    );
}

#[test]
fn integer_fields_refuse_fractions_and_exponents() {
    for bad in [serde_json::json!(1.5), serde_json::json!(-1)] {
        let mut json = minimal();
        json["actions"] = serde_json::json!([{"union": bad}]);
        assert_eq!(
            process(json).unwrap_err().reason,
            RejectReason::InvalidField
        );
    }
}

#[test]
fn the_version_is_printed_as_a_json_reader_prints_the_number() {
    let minimal = String::from_utf8(sample("bp-minimal.json").to_vec()).unwrap();
    for (spelled, printed) in [("4", "4"), ("4.0", "4.0"), ("1e2", "100.0"), ("-0", "-0.0")] {
        let body = minimal.replacen('{', &format!(r#"{{"version": {spelled}, "#), 1);
        let webhook =
            Webhook::parse(EventKind::BusinessProcess, body.as_bytes(), &rules()).unwrap();
        assert_eq!(webhook.version.as_deref(), Some(printed), "{spelled}");
    }
}
