//! Properties of the webhook ingress over generated input, with the in-memory publisher (no
//! broker; plain `cargo test` runs them):
//!
//! - any request gets a status and error code from README's status table, never a panic;
//! - a request that is not authenticated (no, bad, forged, stale or replayed signature) never
//!   writes a record, and is answered 2xx only on the unsigned disable callback;
//! - a correctly signed delivery of any body is answered 200 with exactly that body in Kafka, or
//!   refused with the documented code and nothing written;
//! - `Webhook::parse` agrees with serde_json on the key of every body it accepts, and signature
//!   verification passes only for the HMAC of a configured secret.
//!
//! `PROPTEST_CASES=N` runs more cases than the default. The fuzz targets in `fuzz/` explore the
//! same ground by coverage; these run on every `cargo test`.

mod attacker;
mod frames;
#[path = "../support/relay_args.rs"]
mod relay_args;
mod status_table;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::STANDARD, Engine};
use bp_relay::{
    demo::samples,
    ingress::http::{Ingress, ACTION_PATH, DISABLED_PATH, PROCESS_PATH},
    ingress::publish::{FailureReason, Memory},
    ingress::signature,
    ingress::webhook::{EventKind, RejectReason, Webhook},
    process::parts::Parts,
    Config,
};
use frames::{End, Frames};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use proptest::prelude::*;
use relay_args::RelayArgs;
use secrecy::SecretString;

const SECRET: &str = "whsec_property_tests";
const MAX_BODY: usize = 2048;
const DEAD_LETTER_TOPIC: &str = "authvia.webhooks.dead-letter";

fn config() -> Config {
    let config = RelayArgs::new()
        .brokers("unused:9092")
        .signing_secrets(&[SECRET])
        .flag("--max-body", "2KiB")
        .flag("--replay-capacity", "64")
        .parse()
        .unwrap();
    config.validate().unwrap();
    config
}

fn ingress(failing: Option<FailureReason>) -> Ingress<Memory> {
    let (ingress, _) = Parts::over(&config(), Memory::keeping()).unwrap();
    ingress.publisher().fail_with(failing);
    ingress
}

/// A runtime whose clock jumps to the next timer when idle: a stalled body meets its deadline
/// at once, without waiting the real `--ack-timeout`.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One generated request, before it is built.
#[derive(Debug, Clone)]
struct Sent {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    chunk: usize,
    end: End,
}

impl Sent {
    fn request(&self, signing: Option<&HeaderMap>) -> Request<Frames> {
        let mut request = Request::new(Frames::new(&self.body, self.chunk, self.end));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        for (name, value) in &self.headers {
            request.headers_mut().append(name, value.clone());
        }
        for (name, value) in signing.into_iter().flatten() {
            request.headers_mut().insert(name, value.clone());
        }
        request
    }
}

/// What came back, read.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    json: serde_json::Value,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.json.get("code").and_then(serde_json::Value::as_str)
    }
}

async fn read(response: Response<bp_relay::ingress::response::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("a body that is not JSON ({e}): {bytes:?}"));
    Answer {
        status,
        headers,
        json,
    }
}

/// The checks every answer must pass, whoever sent the request.
fn assert_documented(answer: &Answer) -> Result<(), TestCaseError> {
    let rows = status_table::rows();
    prop_assert!(
        status_table::documented(&rows, answer.status, answer.code()),
        "undocumented answer {answer:?}"
    );
    if answer.status != 200 {
        let object = answer.json.as_object().unwrap();
        prop_assert!(
            object.len() == 2 && object["message"].is_string(),
            "an error body is {{code, message}}: {answer:?}"
        );
    }
    prop_assert_eq!(
        answer.headers.contains_key(header::RETRY_AFTER),
        answer.status == 503
    );
    prop_assert_eq!(
        answer.headers.contains_key(header::ALLOW),
        answer.status == 405
    );
    Ok(())
}

fn is_delivery_route(path: &str) -> bool {
    bp_relay::ingress::route::Route::of(path).is_some_and(|route| route.kind().is_some())
}

/// Authvia's disable callback: unsigned, it writes nothing and only `GET`/`HEAD` get 200.
fn is_disable_callback(path: &str) -> bool {
    path.trim_end_matches('/') == DISABLED_PATH
}

// --- strategies -------------------------------------------------------------------------------

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        6 => Just(Method::POST),
        2 => prop::sample::select(vec![Method::GET, Method::PUT, Method::DELETE, Method::HEAD, Method::OPTIONS, Method::PATCH]),
        1 => "[A-Z][A-Z-]{0,11}".prop_map(|name| Method::from_bytes(name.as_bytes()).unwrap()),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    let near_routes = prop::sample::select(vec![
        PROCESS_PATH,
        ACTION_PATH,
        "/webhooks/business-processes/",
        "/webhooks/business-process-actions//",
        "/webhooks/business-processes?x=1",
        "/webhooks/business-processes/1",
        DISABLED_PATH,
        "/webhooks/subscription-disabled/?id=sub_8f2c-01&timestamp=1767225600",
        "/WEBHOOKS/business-processes",
        "/webhooks",
        "/",
        "/metrics",
        "*",
        "http://relay.example/webhooks/business-processes",
    ]);
    prop_oneof![
        8 => near_routes.prop_map(String::from),
        1 => "/[a-zA-Z0-9._~%/?=&-]{0,60}",
    ]
    .prop_filter_map("a valid request target", |text| text.parse::<Uri>().ok())
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => prop::sample::select(vec![
            signature::SIGNATURE_HEADER,
            signature::VALUE_HEADER,
            signature::TIMESTAMP_HEADER,
            signature::ALGORITHM_HEADER,
            "content-length",
            "content-type",
            "traceparent",
        ])
        .prop_map(HeaderName::from_static),
        1 => "[a-z][a-z0-9-]{0,20}".prop_map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap()),
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    let now = now();
    prop_oneof![
        "[0-9]{0,12}".prop_map(|text| HeaderValue::from_str(&text).unwrap()),
        (now - 400..now + 400).prop_map(HeaderValue::from),
        "[A-Za-z0-9+/]{0,44}={0,2}".prop_map(|text| HeaderValue::from_str(&text).unwrap()),
        prop::sample::select(vec!["SHA-256", "sha-256", "SHA-1", ""])
            .prop_map(HeaderValue::from_static),
        "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
            .prop_map(|text| HeaderValue::from_str(&text).unwrap()),
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_filter_map("a header value", |bytes| HeaderValue::from_bytes(&bytes)
                .ok()),
    ]
}

fn sample_bodies() -> Vec<&'static [u8]> {
    samples::BUSINESS_PROCESSES
        .iter()
        .chain(samples::ACTIONS.iter())
        .map(|(_, body)| *body)
        .collect()
}

/// Samples, samples with one byte changed or cut short, small JSON objects, and noise, some of it
/// over `--max-body`.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let sample = prop::sample::select(sample_bodies());
    prop_oneof![
        2 => sample.clone().prop_map(<[u8]>::to_vec),
        2 => (sample.clone(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(body, at, byte)| {
            let mut body = body.to_vec();
            let at = at.index(body.len());
            body[at] = byte;
            body
        }),
        1 => (sample, any::<prop::sample::Index>()).prop_map(|(body, at)| body[..at.index(body.len())].to_vec()),
        2 => r#"\{("(id|businessProcess|version|status|actions|expiration)": ?("[a-z0-9 ]{0,8}"|-?[0-9]{1,3}(\.[0-9])?|null|true|\[\]|\{\}),?){0,4}\}"#
            .prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => prop::collection::vec(any::<u8>(), MAX_BODY - 8..MAX_BODY + 64),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![8 => Just(End::Complete), 1 => Just(End::Broken), 1 => Just(End::Stalled)]
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        method(),
        uri(),
        prop::collection::vec((header_name(), header_value()), 0..8),
        body(),
        1..2048usize,
        end(),
    )
        .prop_map(|(method, uri, headers, body, chunk, end)| Sent {
            method,
            uri,
            headers,
            body,
            chunk,
            end,
        })
}

/// Signature headers that must not authenticate: another secret, a timestamp outside the
/// window, or a signed value changed afterwards.
fn forged() -> impl Strategy<Value = HeaderMap> {
    let skew = prop_oneof![-1_000_000i64..-310, 310i64..1_000_000];
    prop_oneof![
        ("[a-z]{1,12}", "[a-zA-Z0-9]{1,16}", -300i64..300).prop_map(|(secret, value, skew)| {
            signature::signed_headers(&format!("not-{secret}"), &value, now() + skew).unwrap()
        }),
        ("[a-zA-Z0-9]{1,16}", skew).prop_map(|(value, skew)| signature::signed_headers(
            SECRET,
            &value,
            now() + skew
        )
        .unwrap()),
        ("[a-zA-Z0-9]{1,16}", "[a-zA-Z0-9]{1,4}").prop_map(|(value, suffix)| {
            let mut headers = signature::signed_headers(SECRET, &value, now()).unwrap();
            headers.insert(
                signature::VALUE_HEADER,
                HeaderValue::from_str(&format!("{value}{suffix}")).unwrap(),
            );
            headers
        }),
    ]
}

fn failure() -> impl Strategy<Value = Option<FailureReason>> {
    prop_oneof![3 => Just(None), 1 => prop::sample::select(FailureReason::ALL.to_vec()).prop_map(Some)]
}

// --- properties -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives without a valid signing: a documented refusal, never a record.
    #[test]
    fn an_unauthenticated_request_gets_a_documented_refusal_and_writes_nothing(
        sent in sent(),
        forged in prop::option::of(forged()),
        failing in failure(),
    ) {
        let ingress = ingress(failing);
        let answer = runtime().block_on(async { read(ingress.handle(sent.request(forged.as_ref())).await).await });
        assert_documented(&answer)?;
        prop_assert!(ingress.publisher().published().is_empty(), "a record was written for {:?}", sent);
        let path = sent.uri.path();
        let expected = if is_disable_callback(path) {
            if matches!(sent.method, Method::GET | Method::HEAD) { 200 } else { 405 }
        } else if !is_delivery_route(path) {
            404
        } else if sent.method != Method::POST {
            405
        } else {
            // The signature is checked before the body is read: refused whatever the body.
            401
        };
        prop_assert_eq!(answer.status, expected, "{:?}", answer);
    }

    /// A delivery signed with the secret: 200 with exactly its body in Kafka (its route's topic
    /// or the dead-letter topic), or the documented refusal with nothing written; the same
    /// signing then refuses another body.
    #[test]
    fn a_signed_delivery_is_stored_whole_or_refused_as_documented(
        action in any::<bool>(),
        body in body(),
        chunk in 1..2048usize,
        end in end(),
        value in "[a-zA-Z0-9_.-]{1,24}",
        failing in failure(),
    ) {
        let path = if action { ACTION_PATH } else { PROCESS_PATH };
        let sent = Sent { method: Method::POST, uri: Uri::from_static(path), headers: Vec::new(), body, chunk, end };
        let signing = signature::signed_headers(SECRET, &value, now()).unwrap();
        let ingress = ingress(failing);
        let runtime = runtime();
        let answer = runtime.block_on(async { read(ingress.handle(sent.request(Some(&signing))).await).await });
        assert_documented(&answer)?;
        let published = ingress.publisher().published();
        let expected = match (sent.end, sent.body.len() > MAX_BODY, failing) {
            (_, true, _) => (413, Some("payload_too_large")),
            (End::Broken, false, _) => (400, Some("body_unreadable")),
            (End::Stalled, false, _) => (408, Some("body_timeout")),
            (End::Complete, false, Some(reason)) => (if reason.is_transient() { 503 } else { 500 }, Some(reason.code())),
            (End::Complete, false, None) => (200, None),
        };
        prop_assert_eq!((answer.status, answer.code()), expected, "{:?}", answer);
        if answer.status == 200 {
            prop_assert_eq!(published.len(), 1);
            let (topic, record) = &published[0];
            prop_assert_eq!(&record.value[..], &sent.body[..], "the exact body is the value");
            prop_assert_eq!(answer.json["topic"].as_str(), Some(topic.as_str()));
            prop_assert_eq!(answer.json.get("deadLetterReason").is_some(), topic == DEAD_LETTER_TOPIC);
        } else {
            prop_assert!(published.is_empty());
        }

        // The body was read and admitted (or refused for its size, before the replay guard): the
        // same signing with another body is a replay from now on.
        if matches!(answer.status, 200 | 500 | 503) {
            let mut other = sent.clone();
            match other.body.last_mut() {
                Some(last) => *last ^= 1, // the same length: under the limit as the first was
                None => other.body.push(b' '),
            }
            let replayed = runtime.block_on(async { read(ingress.handle(other.request(Some(&signing))).await).await });
            prop_assert_eq!((replayed.status, replayed.code()), (401, Some("replayed_signature")));
            prop_assert_eq!(ingress.publisher().published().len(), published.len(), "nothing more was written");
        }
    }

    /// Any body, either kind: a webhook or a rejection, never a panic; an accepted key is what
    /// serde_json finds at the key pointer.
    #[test]
    fn webhook_parse_takes_any_body_and_agrees_with_serde_json_on_the_key(body in body()) {
        let rules = config().rules;
        for (kind, pointer) in [(EventKind::BusinessProcess, "/id"), (EventKind::Action, "/businessProcess")] {
            let parsed = Webhook::parse(kind, &body, &rules);
            let tree = serde_json::from_slice::<serde_json::Value>(&body).ok();
            match parsed {
                Ok(webhook) => {
                    prop_assert!(!webhook.key.trim().is_empty());
                    if let Some(tree) = &tree {
                        prop_assert_eq!(tree.pointer(pointer).and_then(|key| key.as_str()), Some(webhook.key.as_str()));
                    }
                }
                // serde_json's tree refuses more than the relay (numbers beyond f64), never less.
                Err(rejection) if rejection.reason == RejectReason::NotJson => prop_assert!(tree.is_none()),
                Err(_) => {}
            }
        }
    }

    /// Signature headers of any content: a verdict, never a panic; a pass only for the HMAC of a
    /// configured secret over the value and timestamp given, inside the window.
    #[test]
    fn signature_verification_passes_only_the_hmac_of_a_secret(
        headers in prop::collection::vec((header_name(), header_value()), 0..8),
        signed in prop::option::of(("[a-zA-Z0-9]{1,16}", -400i64..400)),
    ) {
        const NOW: i64 = 1_767_225_600;
        let secrets = [SecretString::from("whsec_rotated_out"), SecretString::from(SECRET)];
        let verifier = signature::Verifier::new(&secrets, Duration::from_secs(300));
        let mut map = HeaderMap::new();
        if let Some((value, skew)) = &signed {
            map = signature::signed_headers(SECRET, value, NOW + skew).unwrap();
        }
        for (name, value) in headers {
            map.append(name, value);
        }
        if let Ok(verified) = verifier.verify(&map, UNIX_EPOCH + Duration::from_secs(NOW as u64)) {
            let text = |name: &str| map[name].to_str().unwrap().to_owned();
            let timestamp = text(signature::TIMESTAMP_HEADER);
            prop_assert_eq!(&verified.value, &text(signature::VALUE_HEADER));
            prop_assert!((verified.timestamp - NOW).abs() <= 300);
            let given = STANDARD.decode(text(signature::SIGNATURE_HEADER).trim()).unwrap();
            let expected = ["whsec_rotated_out", SECRET]
                .map(|secret| STANDARD.decode(signature::sign(secret, &verified.value, &timestamp)).unwrap());
            prop_assert!(expected.contains(&given), "passed without the HMAC of a secret: {:?}", map);
        }
    }
}

/// The README's table and the code's closed sets of codes name the same codes: a new refusal
/// reason must be documented.
#[test]
fn every_error_code_of_the_code_is_in_the_readme_table() {
    let rows = status_table::rows();
    for reason in signature::SignatureError::ALL {
        assert!(
            status_table::documented(&rows, 401, Some(reason.code())),
            "401 {} is not in README's table",
            reason.code()
        );
    }
    for reason in FailureReason::ALL {
        let status = if reason.is_transient() { 503 } else { 500 };
        assert!(
            status_table::documented(&rows, status, Some(reason.code())),
            "{status} {} is not in README's table",
            reason.code()
        );
    }
    let others = [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (408, "body_timeout"),
        (413, "payload_too_large"),
        (400, "body_unreadable"),
        (503, "overloaded"),
        (503, "starting"),
        (503, "replay_store_unavailable"),
        (503, "replay_guard_full"),
        (503, "redrive_pending"),
    ];
    for (status, code) in others {
        assert!(
            status_table::documented(&rows, status, Some(code)),
            "{status} {code} is not in README's table"
        );
    }
    assert!(status_table::documented(&rows, 200, None));
    assert!(
        !status_table::documented(&rows, 200, Some("not_found")),
        "the reader tells rows apart"
    );
}
