//! Reading one librdkafka statistics report, as the relay does every second on the thread that
//! hands out delivery reports: its own reader (the queue and the brokers, the rest skipped)
//! against rust-rdkafka's whole `Statistics` type, which the relay parsed before.
//! Run: `cargo bench --bench statistics`.
//!
//! The report is `fixtures/librdkafka-statistics.json`: a producer with the relay's client
//! settings and three 6-partition topics, one broker, captured from librdkafka 2.16.

use std::hint::black_box;

use bp_relay::kafka::statistics::Statistics;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const REPORT: &[u8] = include_bytes!("fixtures/librdkafka-statistics.json");

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("statistics");
    group.throughput(Throughput::Bytes(REPORT.len() as u64));
    group.bench_function("relay_reader", |b| {
        b.iter(|| Statistics::parse(black_box(REPORT)).unwrap().msg_cnt)
    });
    group.bench_function("rdkafka_statistics", |b| {
        b.iter(|| {
            serde_json::from_slice::<rdkafka::Statistics>(black_box(REPORT))
                .unwrap()
                .msg_cnt
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
