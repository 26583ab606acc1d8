//! The relay's own work per delivery, without the network or the broker: signature check,
//! body digest, parse and key lookup, record assembly, and the whole handler over an in-memory
//! publisher. Run: `cargo bench --bench hot_path`.

#[path = "../tests/support/relay_args.rs"]
mod relay_args;

use std::{
    hint::black_box,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bp_relay::{
    demo::samples,
    ingress::http::PROCESS_PATH,
    ingress::publish::Memory,
    ingress::record::{now_millis, Envelope, Record},
    ingress::replay::{GuardMetrics, MemoryGuard, Signing},
    ingress::signature::{self, Verifier},
    ingress::traceparent::TraceParent,
    ingress::webhook::{EventKind, Webhook},
    process::parts::Parts,
    Config,
};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::Request;
use http_body_util::Full;
use relay_args::RelayArgs;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const SECRET: &str = "whsec_bench";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config() -> Config {
    RelayArgs::new()
        .brokers("unused:9092")
        .signing_secrets(&["whsec_old", SECRET])
        // Room for every signing of a run (each iteration is a new one): a full guard answers
        // 503 at once (or, before, evicted live signings), which would measure a short cut.
        .flag("--replay-capacity", "5000000")
        .parse()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let body = Bytes::from_static(samples::BUSINESS_PROCESS);
    let rules = config().rules;
    let secrets = [SecretString::from("whsec_old"), SecretString::from(SECRET)];
    let verifier = Verifier::new(&secrets, Duration::from_secs(300));
    let headers = signature::signed_headers(SECRET, "b7d1e0a4c93f", now()).unwrap();
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Bytes(body.len() as u64));

    group.bench_function("verify_signature", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&headers), SystemTime::now())
                .unwrap()
        })
    });
    group.bench_function("sha256_body", |b| {
        b.iter(|| Sha256::digest(black_box(&body[..])))
    });
    group.bench_function("parse_webhook", |b| {
        b.iter(|| Webhook::parse(EventKind::BusinessProcess, black_box(&body), &rules).unwrap())
    });

    let guard = MemoryGuard::new(
        100_000,
        GuardMetrics::register(&prometheus::Registry::new()).unwrap(),
    );
    // A steady state: each signing stays live for the next 50 000 (half the capacity), so each
    // new one also reclaims an expired one, as under a constant delivery rate.
    let mut counter = 0i64;
    group.bench_function("replay_guard_new_signing", |b| {
        b.iter(|| {
            counter += 1;
            let value = counter.to_string();
            guard
                .remember(
                    Signing {
                        value: &value,
                        timestamp: 1,
                        remember_until: counter + 50_000,
                    },
                    7,
                    counter,
                )
                .expect("half the capacity is live")
        })
    });
    group.bench_function("build_record", |b| {
        let webhook = Webhook::parse(EventKind::BusinessProcess, &body, &rules).unwrap();
        b.iter(|| {
            let envelope = Envelope {
                kind: EventKind::BusinessProcess,
                digest: [1; 32],
                received: now_millis(),
                traceparent: TraceParent::fresh(),
            };
            Record::accepted(&envelope, "urn:authvia:webhooks", &webhook, body.clone())
        })
    });

    // The whole handler, as a connection calls it, over a publisher that answers at once: a
    // fresh signing each time (made outside the measured part), as Authvia sends them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ingress, _registry) = Parts::over(&config(), Memory::discarding()).unwrap();
    let mut counter = 0u64;
    let mut request = || {
        counter += 1;
        let mut request = Request::post(PROCESS_PATH)
            .body(Full::new(body.clone()))
            .unwrap();
        *request.headers_mut() =
            signature::signed_headers(SECRET, &format!("bench-{counter}"), now()).unwrap();
        request
    };
    group.bench_function("handler_without_io", |b| {
        b.iter_batched(
            &mut request,
            |request| runtime.block_on(ingress.handle(request)),
            BatchSize::SmallInput,
        )
    });
    // The same with the JSON access log the binary writes (to a sink here), to see its cost.
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("handler_with_json_log", |b| {
            b.iter_batched(
                &mut request,
                |request| runtime.block_on(ingress.handle(request)),
                BatchSize::SmallInput,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
