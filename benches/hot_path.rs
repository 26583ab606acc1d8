//! The relay's own work per delivery, without the network or the broker: signature check,
//! body digest, parse and key lookup, record assembly. Run: `cargo bench --bench hot_path`.

use std::{
    hint::black_box,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bp_relay::{
    record::{now_millis, Envelope, Record},
    replay::ReplayGuard,
    signature::{self, Verifier},
    traceparent::TraceParent,
    webhook::{EventKind, Rules, Webhook},
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::HeaderMap;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const SAMPLE: &str = "../shared/spec/samples/bp-in-progress.json";

fn rules() -> Rules {
    Rules {
        process_key: "/id".parse().unwrap(),
        action_key: "/businessProcess".parse().unwrap(),
        version: "/version".parse().unwrap(),
        process_required: ["id", "partner", "merchant", "customer", "status", "expiration", "actions", "addresses"].map(String::from).to_vec(),
        action_required: ["id", "type", "status"].map(String::from).to_vec(),
    }
}

fn signed_headers(secret: &str, value: &str) -> HeaderMap {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut headers = HeaderMap::new();
    headers.insert("x-authvia-signature", signature::sign(secret, value, &timestamp).parse().unwrap());
    headers.insert("x-authvia-value", value.parse().unwrap());
    headers.insert("x-authvia-timestamp", timestamp.parse().unwrap());
    headers.insert("x-authvia-algorithm", "SHA-256".parse().unwrap());
    headers
}

fn body() -> Bytes {
    let path = format!("{}/{SAMPLE}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn bench(c: &mut Criterion) {
    let body = body();
    let rules = rules();
    let secrets = [SecretString::from("whsec_old"), SecretString::from("whsec_bench")];
    let verifier = Verifier::new(&secrets, Duration::from_secs(300));
    let headers = signed_headers("whsec_bench", "b7d1e0a4c93f");
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Bytes(body.len() as u64));

    group.bench_function("verify_signature", |b| {
        b.iter(|| verifier.verify(black_box(&headers), SystemTime::now()).unwrap())
    });
    group.bench_function("sha256_body", |b| b.iter(|| Sha256::digest(black_box(&body[..]))));
    group.bench_function("parse_webhook", |b| {
        b.iter(|| Webhook::parse(EventKind::BusinessProcess, black_box(&body), &rules).unwrap())
    });

    let guard = ReplayGuard::new(Duration::from_secs(300), 100_000);
    let mut counter = 0u64;
    group.bench_function("replay_guard_new_signing", |b| {
        b.iter(|| {
            counter += 1;
            let signed = bp_relay::signature::Signed { value: counter.to_string(), timestamp: 1 };
            guard.check(signed, [7; 32]).unwrap()
        })
    });
    group.bench_function("build_record", |b| {
        let webhook = Webhook::parse(EventKind::BusinessProcess, &body, &rules).unwrap();
        b.iter(|| {
            let envelope = Envelope { kind: EventKind::BusinessProcess, digest: [1; 32], received: now_millis(), traceparent: TraceParent::fresh() };
            Record::accepted(&envelope, "urn:authvia:webhooks", &webhook, body.clone())
        })
    });

    // Everything the handler does besides HTTP I/O and the broker, per delivery: a fresh
    // replay-guard entry each time (setup outside the measured part), as in production.
    let guard = ReplayGuard::new(Duration::from_secs(300), 100_000);
    let mut counter = 0u64;
    group.bench_function("whole_request_without_io", |b| {
        b.iter_batched(
            || {
                counter += 1;
                (body.clone(), counter)
            },
            |(body, n)| {
                let signed = verifier.verify(&headers, SystemTime::now()).unwrap();
                let digest: [u8; 32] = Sha256::digest(&body).into();
                guard.check(bp_relay::signature::Signed { value: n.to_string(), ..signed }, digest).unwrap();
                let webhook = Webhook::parse(EventKind::BusinessProcess, &body, &rules).unwrap();
                let envelope = Envelope { kind: EventKind::BusinessProcess, digest, received: now_millis(), traceparent: TraceParent::fresh() };
                black_box(Record::accepted(&envelope, "urn:authvia:webhooks", &webhook, body))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
