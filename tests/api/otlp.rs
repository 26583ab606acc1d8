//! Optional OTLP trace export, run as an operator runs it: with `--otlp-endpoint`, the request
//! span reaches a collector before the process exits, as a child of the sender's `traceparent`,
//! and the record's `ce_traceparent` names that span; without the flag nothing is sent.
//!
//! The collector is a fake in this process that records the protobuf bodies; the checks look
//! for the bytes a span must contain (ids, names, attribute values) without decoding them.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::helpers::*;

const SENDER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A fake OTLP/HTTP collector: records the path and body of every request, answers 200.
struct Collector {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        // Recorded before answering: once the relay saw the 200, the body is here.
                        recorded.lock().unwrap().push((path, body));
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Collector { addr, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<(String, Bytes)> {
        self.requests.lock().unwrap().clone()
    }
}

/// The binary on the test broker with fresh topics, unsigned, with `args` and `env`.
async fn spawn_on_broker(args: RelayArgs, env: &[(&str, &str)]) -> (RelayProcess, Topics) {
    let topics = Topics::create(&bootstrap(), 1, &[]).await;
    let all = RelayArgs::new()
        .brokers(&bootstrap())
        .topics(
            &topics.processes.name,
            &topics.actions.name,
            &topics.dead_letter.name,
        )
        .switch("--insecure-skip-signature")
        .on_free_ports()
        .args(args);
    (RelayProcess::spawn(&all, env), topics)
}

/// Sends a small process keyed `p-otlp` with the sender's traceparent; returns the relay's answer.
async fn send_process(relay: &RelayProcess) -> Answer {
    let (ingress, _admin) = relay.started().await;
    let mut headers = unsigned_headers();
    headers.insert("traceparent", SENDER.parse().unwrap());
    post(
        &format!("http://{ingress}{PROCESS_PATH}"),
        headers,
        process_body("p-otlp"),
    )
    .await
}

/// SIGTERM, then the exit code.
async fn terminate(relay: &mut RelayProcess) -> Option<i32> {
    relay.stop(Duration::from_secs(25)).await.code()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn id_bytes(hex_id: &str) -> Vec<u8> {
    hex::decode(hex_id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_span_is_exported_before_exit_as_a_child_of_the_senders_trace() {
    let collector = Collector::start().await;
    let (mut relay, topics) = spawn_on_broker(
        RelayArgs::new().flag("--otlp-endpoint", &collector.endpoint()),
        &[],
    )
    .await;

    let answer = send_process(&relay).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let record = topics.processes.consume(1).await.remove(0);
    let record_traceparent = headers_of(&record)["ce_traceparent"].clone();
    // Spans are exported in batches every 5 s; the shutdown flush must deliver the last ones.
    assert_eq!(terminate(&mut relay).await, Some(0), "{}", relay.logs());

    let requests = collector.requests();
    assert!(
        !requests.is_empty(),
        "the collector received nothing:\n{}",
        relay.logs()
    );
    assert!(
        requests.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        requests.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let spans: Vec<u8> = requests
        .iter()
        .flat_map(|(_, body)| body.to_vec())
        .collect();
    for (what, bytes) in [
        ("the span name", b"request".to_vec()),
        ("the route attribute", b"business_processes".to_vec()),
        (
            "the topic attribute",
            topics.processes.name.as_bytes().to_vec(),
        ),
        ("the key attribute", b"p-otlp".to_vec()),
        ("the service name", b"bp-relay".to_vec()),
        (
            "the sender's trace id",
            id_bytes("4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
        (
            "the sender's span id as parent",
            id_bytes("00f067aa0ba902b7"),
        ),
    ] {
        assert!(contains(&spans, &bytes), "the exported span carries {what}");
    }
    assert!(
        !contains(&spans, b"2026-12-01T00:00:00Z"),
        "the body is never exported"
    );

    let parts: Vec<&str> = record_traceparent.split('-').collect();
    assert_eq!(
        parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{record_traceparent}"
    );
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the record names the relay's span, not the sender's"
    );
    assert!(
        contains(&spans, &id_bytes(parts[2])),
        "the record's span id {} is the exported span's",
        parts[2]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_flag_nothing_is_exported_even_with_otel_environment_variables() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let (mut relay, _topics) = spawn_on_broker(
        RelayArgs::new(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ],
    )
    .await;

    let answer = send_process(&relay).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(terminate(&mut relay).await, Some(0), "{}", relay.logs());
    assert!(
        collector.requests().is_empty(),
        "no --otlp-endpoint, no export"
    );
}
