//! Handler-level tests: an [`Ingress`] over an in-memory publisher (or the embedded mock
//! cluster, where the broker's own behaviour matters), called directly with in-memory requests.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use prometheus::Registry;

use super::*;
use crate::{
    demo::samples,
    ingress::publish::{FailureReason, Memory},
    ingress::signature,
    ingress::webhook::RejectReason,
    process::parts::Parts,
};

const SECRET: &str = "whsec_handler_tests";

fn config(extra: &[&str]) -> Config {
    let args = [
        "bp-relay",
        "--kafka-brokers",
        "unused:9092",
        "--signing-secrets",
        SECRET,
    ]
    .iter()
    .chain(extra);
    let config = Config::try_parse_from(args).unwrap();
    config.validate().unwrap();
    config
}

fn ingress(extra: &[&str]) -> (Ingress<Memory>, Registry) {
    Parts::over(&config(extra), Memory::keeping()).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed(path: &str, body: &[u8], value: &str, timestamp: i64) -> Request<Full<Bytes>> {
    let mut request = Request::post(path)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    *request.headers_mut() = signature::signed_headers(SECRET, value, timestamp).unwrap();
    request
}

fn process(body: &[u8]) -> Request<Full<Bytes>> {
    signed(
        PROCESS_PATH,
        body,
        &format!("v{}", rand::random::<u64>()),
        now(),
    )
}

async fn json(response: Response<response::Body>) -> serde_json::Value {
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn a_signed_business_process_is_published_keyed_by_its_id() {
    let (ingress, registry) = ingress(&[]);
    let response = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json(response).await,
        serde_json::json!({"topic": "authvia.business-processes", "partition": 0, "offset": 0})
    );
    let published = ingress.publisher().published();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].1.key.as_deref(),
        Some("3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33")
    );
    assert_eq!(&published[0].1.value[..], samples::BUSINESS_PROCESS);
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_published_records_total{route=\"business_processes\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn an_action_goes_to_the_actions_topic_keyed_by_its_process() {
    let (ingress, _) = ingress(&[]);
    let request = signed(ACTION_PATH, samples::ACTION, "action-1", now());
    assert_eq!(ingress.handle(request).await.status(), StatusCode::OK);
    let (topic, record) = &ingress.publisher().published()[0];
    assert_eq!(topic, "authvia.business-process-actions");
    assert_eq!(
        record.key.as_deref(),
        Some("3f6c2a9e-8b1d-4c7a-9e52-0d4b7f1a6c33")
    );
}

#[tokio::test]
async fn the_disable_callback_is_counted_and_writes_nothing() {
    let (ingress, registry) = ingress(&[]);
    let callback = Request::get(format!("{DISABLED_PATH}?id=sub_42&timestamp=1767225600"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(ingress.handle(callback).await.status(), StatusCode::OK);
    let posted = Request::post(DISABLED_PATH)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let refused = ingress.handle(posted).await;
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.headers()[http::header::ALLOW], "GET, HEAD");
    assert!(
        ingress.publisher().published().is_empty(),
        "the callback never writes to Kafka"
    );
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_subscription_disabled_total 1"),
        "only the GET counts: {text}"
    );
}

#[tokio::test]
async fn every_401_reason_writes_nothing_and_names_its_code() {
    let (ingress, registry) = ingress(&[]);
    let body = samples::BUSINESS_PROCESS;
    let mut cases: Vec<(Request<Full<Bytes>>, &str)> = Vec::new();
    cases.push((
        Request::post(PROCESS_PATH)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap(),
        "missing_signature_header",
    ));
    let mut wrong_algorithm = process(body);
    wrong_algorithm.headers_mut().insert(
        signature::ALGORITHM_HEADER,
        HeaderValue::from_static("SHA-1"),
    );
    cases.push((wrong_algorithm, "unsupported_algorithm"));
    let mut bad_timestamp = process(body);
    bad_timestamp.headers_mut().insert(
        signature::TIMESTAMP_HEADER,
        HeaderValue::from_static("yesterday"),
    );
    cases.push((bad_timestamp, "malformed_timestamp"));
    cases.push((
        signed(PROCESS_PATH, body, "stale", now() - 301),
        "stale_timestamp",
    ));
    cases.push((
        signed(PROCESS_PATH, body, "future", now() + 301),
        "future_timestamp",
    ));
    let mut bad_base64 = process(body);
    bad_base64.headers_mut().insert(
        signature::SIGNATURE_HEADER,
        HeaderValue::from_static("not base64!"),
    );
    cases.push((bad_base64, "malformed_signature"));
    let mut other_secret = process(body);
    *other_secret.headers_mut() = signature::signed_headers("another-secret", "x", now()).unwrap();
    cases.push((other_secret, "signature_mismatch"));
    assert_eq!(
        ingress
            .handle(signed(PROCESS_PATH, body, "once", now()))
            .await
            .status(),
        StatusCode::OK
    );
    cases.push((
        signed(PROCESS_PATH, b"{\"forged\": true}", "once", now()),
        "replayed_signature",
    ));

    for (request, code) in cases {
        let response = ingress.handle(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(json(response).await["code"], code);
    }
    assert_eq!(
        ingress.publisher().published().len(),
        1,
        "only the control delivery was published"
    );
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_signature_failures_total{reason=\"replayed_signature\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_redelivery_of_the_same_body_is_published_again() {
    let (ingress, _) = ingress(&[]);
    let timestamp = now();
    for _ in 0..2 {
        let response = ingress
            .handle(signed(
                PROCESS_PATH,
                samples::BUSINESS_PROCESS,
                "same",
                timestamp,
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(ingress.publisher().published().len(), 2);
}

#[tokio::test]
async fn captured_headers_on_the_other_route_or_with_another_body_write_nothing() {
    let (ingress, _) = ingress(&[]);
    let timestamp = now();
    let genuine = ingress
        .handle(signed(
            PROCESS_PATH,
            samples::BUSINESS_PROCESS,
            "captured",
            timestamp,
        ))
        .await;
    assert_eq!(genuine.status(), StatusCode::OK);
    let forgeries: [(&str, &[u8]); 4] = [
        (ACTION_PATH, samples::ACTION),
        (ACTION_PATH, samples::BUSINESS_PROCESS),
        (PROCESS_PATH, b"{\"id\":\"forged\"}"),
        (PROCESS_PATH, b"not json: a dead letter if it were admitted"),
    ];
    for (path, body) in forgeries {
        let response = ingress
            .handle(signed(path, body, "captured", timestamp))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(json(response).await["code"], "replayed_signature", "{path}");
    }
    let published = ingress.publisher().published();
    assert_eq!(published.len(), 1, "only the genuine delivery");
    assert_eq!(&published[0].1.value[..], samples::BUSINESS_PROCESS);
}

const ACTIONS_SECRET: &str = "whsec_handler_tests_actions";

fn signed_with(secret: &str, path: &str, body: &[u8], value: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post(path)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    *request.headers_mut() = signature::signed_headers(secret, value, now()).unwrap();
    request
}

#[tokio::test]
async fn with_a_secret_per_route_a_signing_for_one_route_does_not_verify_on_the_other() {
    let (ingress, registry) = ingress(&["--actions-signing-secrets", ACTIONS_SECRET]);
    let captured = signed_with(SECRET, PROCESS_PATH, samples::BUSINESS_PROCESS, "captured");
    let headers = captured.headers().clone();
    assert_eq!(ingress.handle(captured).await.status(), StatusCode::OK);
    let mut rerouted = Request::post(ACTION_PATH)
        .body(Full::new(Bytes::from_static(samples::ACTION)))
        .unwrap();
    *rerouted.headers_mut() = headers;
    let forgeries = [
        ("captured headers on the actions route", rerouted),
        (
            "a fresh signing with the processes route's secret",
            signed_with(SECRET, ACTION_PATH, samples::ACTION, "fresh"),
        ),
        (
            "a signing with the actions route's secret on the processes route",
            signed_with(
                ACTIONS_SECRET,
                PROCESS_PATH,
                samples::BUSINESS_PROCESS,
                "crossed",
            ),
        ),
    ];
    for (attempt, request) in forgeries {
        let response = ingress.handle(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{attempt}");
        assert_eq!(
            json(response).await["code"],
            "signature_mismatch",
            "{attempt}: it does not even verify"
        );
    }
    let own = signed_with(ACTIONS_SECRET, ACTION_PATH, samples::ACTION, "own");
    assert_eq!(ingress.handle(own).await.status(), StatusCode::OK);
    let published = ingress.publisher().published();
    let topics: Vec<&str> = published.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "authvia.business-processes",
            "authvia.business-process-actions"
        ],
        "only the two genuine deliveries"
    );
    assert_eq!(&published[1].1.value[..], samples::ACTION);
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_signature_failures_total{reason=\"signature_mismatch\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_replay_guard_refuses_a_new_signing_with_503_and_still_knows_the_old_ones() {
    let (ingress, registry) = ingress(&["--replay-capacity", "2"]);
    let timestamp = now();
    let deliver =
        |path, body: &[u8], value: &str| ingress.handle(signed(path, body, value, timestamp));
    for value in ["first", "second"] {
        let response = deliver(PROCESS_PATH, samples::BUSINESS_PROCESS, value).await;
        assert_eq!(response.status(), StatusCode::OK, "{value}");
    }

    let refused = deliver(PROCESS_PATH, samples::BUSINESS_PROCESS, "third").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[http::header::RETRY_AFTER], "5");
    assert_eq!(json(refused).await["code"], "replay_guard_full");
    assert_eq!(
        ingress.publisher().published().len(),
        2,
        "nothing written for it"
    );

    // The guard forgot nothing to make room: a redelivery passes, a forgery does not.
    let redelivery = deliver(PROCESS_PATH, samples::BUSINESS_PROCESS, "first").await;
    assert_eq!(redelivery.status(), StatusCode::OK);
    let forged = deliver(ACTION_PATH, samples::ACTION, "first").await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(forged).await["code"], "replayed_signature");
    assert_eq!(ingress.publisher().published().len(), 3);

    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_replay_guard_refusals_total 1\n"),
        "{text}"
    );
    assert!(text.contains("bp_relay_replay_guard_entries 2\n"), "{text}");
}

/// A body that waits until `at` (tokio's clock) before its only piece.
struct ArrivesAt(Option<(tokio::time::Instant, Bytes)>);

impl Body for ArrivesAt {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some((at, _)) = &self.0 else {
            return Poll::Ready(None);
        };
        if tokio::time::Instant::now() < *at {
            let waker = context.waker().clone();
            let at = *at;
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                waker.wake();
            });
            return Poll::Pending;
        }
        let (_, piece) = self.0.take().expect("checked above");
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }
}

#[tokio::test]
async fn a_body_trickled_past_the_window_is_stale_and_writes_nothing() {
    let (ingress, _) = ingress(&["--signature-tolerance", "1s", "--ack-timeout", "4s"]);
    // Fresh headers; the body comes after the one-second window has passed.
    let timestamp = now();
    let late = tokio::time::Instant::now() + std::time::Duration::from_millis(2_100);
    let mut request = Request::post(ACTION_PATH)
        .body(ArrivesAt(Some((late, Bytes::from_static(samples::ACTION)))))
        .unwrap();
    *request.headers_mut() = signature::signed_headers(SECRET, "edge", timestamp).unwrap();
    let response = ingress.handle(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(response).await["code"], "stale_timestamp");
    assert!(ingress.publisher().published().is_empty());
}

#[tokio::test]
async fn the_smallest_body_budget_takes_a_largest_body_in_small_pieces() {
    let (ingress, _) = ingress(&["--max-body", "1MiB", "--max-inflight-bytes", "2MiB"]);
    let mut body = samples::BUSINESS_PROCESS.to_vec();
    body.resize(1 << 20, b' ');
    let pieces = body.chunks(16 << 10).map(Bytes::copy_from_slice).collect();
    let mut request = Request::post(PROCESS_PATH).body(Pieces(pieces)).unwrap();
    *request.headers_mut() = signature::signed_headers(SECRET, "largest", now()).unwrap();
    let response = ingress.handle(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(ingress.publisher().published()[0].1.value.len(), 1 << 20);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404_and_405() {
    let (ingress, _) = ingress(&[]);
    let not_found = ingress
        .handle(
            Request::post("/webhooks/other")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(not_found).await["code"], "not_found");
    let wrong_method = ingress
        .handle(
            Request::get(PROCESS_PATH)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers()[header::ALLOW], "POST");
    assert!(ingress.publisher().published().is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_declared_or_not() {
    let (ingress, _) = ingress(&["--max-body", "100B"]);
    let response = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut declared = process(b"{}");
    declared
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(101));
    assert_eq!(
        ingress.handle(declared).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(ingress.publisher().published().is_empty());
}

/// A body whose end never arrives.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

/// A body that sends its first piece and then never another.
struct Stalls(Option<Bytes>);

impl Body for Stalls {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(piece) => Poll::Ready(Some(Ok(Frame::data(piece)))),
            None => Poll::Pending,
        }
    }
}

#[tokio::test]
async fn body_bytes_beyond_the_budget_are_refused_with_503_and_given_back_when_answered() {
    let (ingress, registry) = ingress(&["--max-body", "4KiB", "--max-inflight-bytes", "8KiB"]);
    let stalled = || {
        let mut request = Request::post(PROCESS_PATH)
            .body(Stalls(Some(Bytes::from(vec![b' '; 4000]))))
            .unwrap();
        *request.headers_mut() =
            signature::signed_headers(SECRET, &format!("v{}", rand::random::<u64>()), now())
                .unwrap();
        ingress.handle(request)
    };
    let (mut first, mut second) = (Box::pin(stalled()), Box::pin(stalled()));
    // Each takes its first 4000 bytes and waits for more: 8000 of 8192 bytes are held.
    assert!(futures_poll_once(first.as_mut()).await.is_none());
    assert!(futures_poll_once(second.as_mut()).await.is_none());
    let gauge = |registry: &Registry| {
        let text = String::from_utf8(metrics::encode(registry).1).unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix("bp_relay_inflight_body_bytes ")
                    .map(str::to_owned)
            })
            .unwrap()
    };
    assert_eq!(gauge(&registry), "8000");
    let refused = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[http::header::RETRY_AFTER], "5");
    assert_eq!(json(refused).await["code"], "overloaded_bytes");
    // Answering (here: the client going away) gives the bytes back.
    drop((first, second));
    assert_eq!(gauge(&registry), "0");
    assert_eq!(
        ingress
            .handle(process(samples::BUSINESS_PROCESS))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(gauge(&registry), "0");
}

/// A body that arrives in the given pieces, one frame each.
struct Pieces(std::collections::VecDeque<Bytes>);

impl Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }
}

#[tokio::test]
async fn a_body_in_many_pieces_is_joined_whole_and_its_bytes_given_back() {
    let (ingress, registry) = ingress(&[]);
    let pieces = samples::BUSINESS_PROCESS
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect();
    let mut request = Request::post(PROCESS_PATH).body(Pieces(pieces)).unwrap();
    *request.headers_mut() = signature::signed_headers(SECRET, "pieces", now()).unwrap();
    let response = ingress.handle(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, record) = &ingress.publisher().published()[0];
    assert_eq!(&record.value[..], samples::BUSINESS_PROCESS);
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.lines()
            .any(|line| line == "bp_relay_inflight_body_bytes 0"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_ends_is_408_at_the_deadline() {
    let (ingress, _) = ingress(&["--ack-timeout", "300ms"]);
    let mut request = Request::post(PROCESS_PATH).body(Endless).unwrap();
    *request.headers_mut() = signature::signed_headers(SECRET, "slow", now()).unwrap();
    let response = ingress.handle(request).await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(json(response).await["code"], "body_timeout");
}

#[tokio::test]
async fn each_dead_letter_reason_is_routed_to_the_dead_letter_topic_with_a_2xx() {
    let (ingress, registry) = ingress(&[]);
    let minimal: serde_json::Value =
        serde_json::from_slice(samples::get("bp-minimal.json")).unwrap();
    let without = |field: &str| {
        let mut json = minimal.clone();
        json.as_object_mut().unwrap().remove(field);
        json.to_string().into_bytes()
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut json = minimal.clone();
        json[field] = value;
        json.to_string().into_bytes()
    };
    let cases: [(Vec<u8>, RejectReason); 6] = [
        (b"ping".to_vec(), RejectReason::NotJson),
        (b"[1]".to_vec(), RejectReason::NotAnObject),
        (without("id"), RejectReason::MissingKey),
        (with("id", 42.into()), RejectReason::InvalidKey),
        (without("merchant"), RejectReason::MissingField),
        (with("status", 3.into()), RejectReason::InvalidField),
    ];
    for (body, reason) in &cases {
        let response = ingress.handle(process(body)).await;
        assert_eq!(response.status(), StatusCode::OK, "{reason:?}");
        assert_eq!(json(response).await["deadLetterReason"], reason.code());
    }
    let published = ingress.publisher().published();
    assert_eq!(published.len(), cases.len());
    for ((topic, record), (body, reason)) in published.iter().zip(&cases) {
        assert_eq!(topic, "authvia.webhooks.dead-letter");
        assert_eq!(&record.value[..], &body[..], "the exact body is kept");
        assert_eq!(
            record.headers.get("bp_relay_dead_letter_reason"),
            Some(reason.code())
        );
    }
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains(
            "bp_relay_dead_letter_total{reason=\"not_json\",route=\"business_processes\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn transient_publish_failures_are_503_with_retry_after_and_terminal_ones_500() {
    let (ingress, registry) = ingress(&[]);
    for (reason, status) in [
        (FailureReason::Transport, StatusCode::SERVICE_UNAVAILABLE),
        (FailureReason::QueueFull, StatusCode::SERVICE_UNAVAILABLE),
        (FailureReason::Timeout, StatusCode::SERVICE_UNAVAILABLE),
        (
            FailureReason::UnknownTopic,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ] {
        ingress.publisher().fail_with(Some(reason));
        let response = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
        assert_eq!(response.status(), status, "{reason:?}");
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).is_some(),
            status == StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(json(response).await["code"], reason.code());
    }
    let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
    assert!(
        text.contains("bp_relay_kafka_delivery_failures_total{reason=\"kafka_unavailable\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn requests_beyond_max_inflight_are_refused_at_once() {
    let (ingress, _) = ingress(&["--max-inflight", "1", "--ack-timeout", "2s"]);
    let mut held = Request::post(PROCESS_PATH).body(Endless).unwrap();
    *held.headers_mut() = signature::signed_headers(SECRET, "held", now()).unwrap();
    let holding = ingress.handle(held);
    tokio::pin!(holding);
    // Poll the first request until it waits for its body, holding the only permit.
    assert!(futures_poll_once(holding.as_mut()).await.is_none());
    let refused = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(refused).await["code"], "overloaded");
}

/// Polls `future` once; `Some` if it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// The lines a JSON subscriber at `info` writes while `work` runs on a current-thread runtime.
fn info_log_of(work: impl std::future::Future<Output = ()>) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || runtime.block_on(work));
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn by_default_every_failure_and_dead_letter_is_logged_and_2xx_answers_are_not() {
    let (failures_only, _) = ingress(&[]);
    let log = info_log_of(async {
        assert_eq!(
            failures_only
                .handle(process(samples::BUSINESS_PROCESS))
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            failures_only.handle(process(b"ping")).await.status(),
            StatusCode::OK
        );
        let unsigned = Request::post(PROCESS_PATH)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(
            failures_only.handle(unsigned).await.status(),
            StatusCode::UNAUTHORIZED
        );
    });
    assert!(!log.contains("\"outcome\":\"published\""), "{log}");
    assert!(
        log.contains("\"outcome\":\"dead_lettered\"") && log.contains("\"reason\":\"not_json\""),
        "{log}"
    );
    assert!(
        log.contains("\"code\":\"missing_signature_header\""),
        "{log}"
    );
    let (all, _) = ingress(&["--access-log", "all"]);
    let log = info_log_of(async {
        assert_eq!(
            all.handle(process(samples::BUSINESS_PROCESS))
                .await
                .status(),
            StatusCode::OK
        );
    });
    assert!(
        log.contains("\"outcome\":\"published\"") && log.contains("\"partition\":0"),
        "{log}"
    );
}

#[test]
fn every_5xx_is_logged_at_warn_and_a_senders_own_mistake_at_info() {
    let health = Arc::new(Health::new(Duration::from_secs(3), 0.8));
    let metrics = Metrics::register(&Registry::new()).unwrap();
    let ingress = Parts::build(&config(&[]), Memory::keeping(), metrics, health.clone())
        .unwrap()
        .ingress;
    health.startup_checking();
    let log = info_log_of(async {
        let answer = ingress.handle(process(samples::BUSINESS_PROCESS)).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let answer = ingress
            .handle(
                Request::post("/nowhere")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    });
    let level_of = |code: &str| {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("\"code\":\"{code}\"")))
            .unwrap_or_else(|| panic!("no line for {code}: {log}"));
        serde_json::from_str::<serde_json::Value>(line).unwrap()["level"].clone()
    };
    assert_eq!(level_of("starting"), "WARN", "{log}");
    assert_eq!(level_of("not_found"), "INFO", "{log}");
}

/// Issue 17's table at the handler: Authvia's redrive of a delivery answered 503, with its
/// original signing after the window or with a fresh one, against an in-memory publisher.
mod redrive {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        // How far the handler's clock is ahead of the system's, on this test's thread (a
        // current-thread runtime runs the handler there).
        static AHEAD: Cell<u64> = const { Cell::new(0) };
    }

    fn clock() -> SystemTime {
        SystemTime::now() + Duration::from_secs(AHEAD.get())
    }

    /// Moves the handler's clock a day on: every signing made now is outside the window.
    fn a_day_later() {
        AHEAD.set(86_400);
    }

    fn redriving_ingress() -> Ingress<Memory> {
        AHEAD.set(0);
        let (ingress, _) = ingress(&[]);
        ingress.with_clock(clock)
    }

    fn original(body: &[u8]) -> Request<Full<Bytes>> {
        signed(PROCESS_PATH, body, "first-attempt", now())
    }

    async fn answer(
        ingress: &Ingress<Memory>,
        request: Request<Full<Bytes>>,
    ) -> (StatusCode, serde_json::Value) {
        let response = ingress.handle(request).await;
        (response.status(), json(response).await)
    }

    #[tokio::test]
    async fn a_503d_delivery_redriven_with_its_original_signing_after_the_window_is_written_once() {
        let ingress = redriving_ingress();
        ingress
            .publisher()
            .fail_with(Some(FailureReason::Transport));
        let (status, _) = answer(&ingress, original(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        ingress.publisher().fail_with(None);
        a_day_later();
        let (status, body) = answer(&ingress, original(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body.get("storedBefore"), None, "it was written now");
        let (status, body) = answer(&ingress, original(samples::BUSINESS_PROCESS)).await;
        assert_eq!(
            (status, &body["storedBefore"]),
            (StatusCode::OK, &serde_json::json!(true)),
            "the first 2xx closed it: {body}"
        );
        assert_eq!(ingress.publisher().published().len(), 1, "written once");
    }

    #[tokio::test]
    async fn the_same_stale_signing_with_another_body_or_on_the_other_route_writes_nothing() {
        let ingress = redriving_ingress();
        ingress
            .publisher()
            .fail_with(Some(FailureReason::Transport));
        let (status, _) = answer(&ingress, original(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        ingress.publisher().fail_with(None);
        a_day_later();
        let other_bodies: [&[u8]; 3] = [
            samples::get("bp-minimal.json"),
            b"{}",
            b"not json: a dead letter if it were admitted",
        ];
        for body in other_bodies {
            let (status, answer) = answer(&ingress, original(body)).await;
            assert_eq!(
                (status, &answer["code"]),
                (
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!("stale_timestamp")
                )
            );
        }
        let rerouted = signed(
            ACTION_PATH,
            samples::BUSINESS_PROCESS,
            "first-attempt",
            now(),
        );
        assert_eq!(answer(&ingress, rerouted).await.0, StatusCode::UNAUTHORIZED);
        assert!(ingress.publisher().published().is_empty());
    }

    #[tokio::test]
    async fn a_stale_signing_the_relay_never_answered_5xx_is_401() {
        let ingress = redriving_ingress();
        let (status, _) = answer(&ingress, original(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::OK, "answered 2xx: nothing to remember");
        a_day_later();
        for value in ["first-attempt", "never-seen"] {
            let request = signed(PROCESS_PATH, samples::BUSINESS_PROCESS, value, now());
            let (status, body) = answer(&ingress, request).await;
            assert_eq!(
                (status, &body["code"]),
                (
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!("stale_timestamp")
                ),
                "{value}"
            );
        }
        assert_eq!(ingress.publisher().published().len(), 1);
    }

    #[tokio::test]
    async fn a_record_that_landed_after_its_503_answers_the_redrive_and_is_not_written_again() {
        let ingress = redriving_ingress();
        ingress.publisher().hold_acknowledgements();
        let (status, body) = answer(&ingress, process(samples::BUSINESS_PROCESS)).await;
        assert_eq!(
            (status, &body["code"]),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!("kafka_timeout")
            )
        );
        ingress.publisher().land_held();
        let (status, body) = answer(&ingress, process(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["storedBefore"], true);
        assert_eq!(body["offset"], 0, "the record that landed");
        assert_eq!(ingress.publisher().published().len(), 1, "no second record");

        // A → B → A: a newer record of the same process was written; the repeat is a real event.
        let mut changed: serde_json::Value =
            serde_json::from_slice(samples::BUSINESS_PROCESS).unwrap();
        changed["status"] = serde_json::json!("changed-by-test");
        let changed = serde_json::to_vec(&changed).unwrap();
        assert_eq!(answer(&ingress, process(&changed)).await.0, StatusCode::OK);
        let (status, body) = answer(&ingress, process(samples::BUSINESS_PROCESS)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.get("storedBefore"), None, "written again: {body}");
        assert_eq!(ingress.publisher().published().len(), 3);
    }

    #[tokio::test]
    async fn the_age_of_every_genuine_signing_is_exported_by_route() {
        AHEAD.set(0);
        let (ingress, registry) = ingress(&[]);
        let ingress = ingress.with_clock(clock);
        let old = signed(PROCESS_PATH, samples::BUSINESS_PROCESS, "aged", now() - 100);
        assert_eq!(ingress.handle(old).await.status(), StatusCode::OK);
        let forged = signed_with(
            "whsec_not_ours",
            PROCESS_PATH,
            samples::BUSINESS_PROCESS,
            "forged",
        );
        assert_eq!(
            ingress.handle(forged).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let text = String::from_utf8(metrics::encode(&registry).1).unwrap();
        for line in [
            "bp_relay_signature_age_seconds_bucket{route=\"business_processes\",le=\"60\"} 0",
            "bp_relay_signature_age_seconds_bucket{route=\"business_processes\",le=\"300\"} 1",
            "bp_relay_signature_age_seconds_count{route=\"business_processes\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
