//! bp-relay-kafka-bound: the Kafka side's upper bound for `benches/compare.sh`.
//!
//! No HTTP at all: one rdkafka producer with exactly the relay's producer settings (built by
//! `bp_relay::kafka::client_config` from the relay's own default configuration: acks=all,
//! idempotence, murmur2_random, lz4, linger 5 ms, message.timeout.ms 4000, the queue bounds)
//! sends the records the relay would send for the same deliveries: the business-process samples
//! of `docs/examples/bp-*.json` (`bp_relay::demo::samples`) with a distinct top-level `id` each, built
//! by the relay's own `Record::accepted` (key = id, the `ce_*` headers). `--inflight` tasks each
//! send one record and await its delivery report, then the next, for `--warmup` + `--duration`;
//! the measured phase's deliveries/s and latencies (send -> delivery report) are printed as one
//! JSON line, in the shape of the load generator's results, together with the "every
//! acknowledged record is in Kafka" check.
//!
//! ```sh
//! cargo build --release --locked --features bench --bin bp-relay-kafka-bound
//! target/release/bp-relay-kafka-bound --brokers 127.0.0.1:19092 --topic bench.kafka --inflight 64
//! ```
//!
//! Not a product: built only with `--features bench`.

#[path = "../tests/support/relay_args.rs"]
mod relay_args;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{anyhow, bail, ensure, Context as _};
use bp_relay::{
    demo::samples,
    ingress::record::{now_millis, Envelope, Record},
    ingress::traceparent::TraceParent,
    ingress::webhook::{EventKind, Webhook},
};
use bytes::Bytes;
use clap::Parser;
use rdkafka::{
    message::OwnedHeaders,
    producer::{FutureProducer, FutureRecord, Producer},
};
use relay_args::RelayArgs;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::time::Instant;

/// The kernel reports utime/stime in USER_HZ, 100 on every Linux architecture this runs on.
const USER_HZ: f64 = 100.0;

#[derive(Parser, Debug)]
#[command(
    about = "Produce the relay's records with the relay's producer settings, as fast as a bounded number in flight allows"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Topic (it must exist).
    #[arg(long)]
    topic: String,
    /// Records in flight: each of this many tasks awaits its delivery report before the next.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Measured phase.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured phase before it (same load).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// System name for the result.
    #[arg(long, default_value = "kafka-bound")]
    system: String,
    /// Free-form run label.
    #[arg(long, default_value = "")]
    label: String,
}

/// A sample body split around the value of its top-level `id`.
struct Template {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    version: Option<String>,
}

fn load_templates() -> anyhow::Result<Vec<Template>> {
    samples::BUSINESS_PROCESSES
        .iter()
        .map(|(name, body)| template(body).context(*name))
        .collect()
}

fn template(body: &[u8]) -> anyhow::Result<Template> {
    let doc: serde_json::Value = serde_json::from_slice(body)?;
    let id = doc
        .get("id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("no string top-level id"))?;
    let version = doc
        .get("version")
        .filter(|v| v.is_number())
        .map(ToString::to_string);
    let quoted = serde_json::to_string(id)?;
    // The top-level "id" is the one whose value is `id` (nested actions have other ids).
    let hits: Vec<usize> = (0..body.len().saturating_sub(quoted.len() - 1))
        .filter(|&at| body[at..].starts_with(quoted.as_bytes()) && preceded_by_id_key(body, at))
        .collect();
    ensure!(
        hits.len() == 1,
        "the top-level id occurs {} times, expected once",
        hits.len()
    );
    let at = hits[0];
    Ok(Template {
        prefix: body[..=at].to_vec(),
        suffix: body[at + quoted.len() - 1..].to_vec(),
        version,
    })
}

fn preceded_by_id_key(body: &[u8], at: usize) -> bool {
    let mut i = at;
    while i > 0 && body[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    if i == 0 || body[i - 1] != b':' {
        return false;
    }
    i -= 1;
    while i > 0 && body[i - 1].is_ascii_whitespace() {
        i -= 1;
    }
    body[..i].ends_with(b"\"id\"")
}

struct Shared {
    templates: Vec<Template>,
    topic: String,
    ce_source: String,
    nonce: [u8; 6],
    counter: AtomicU64,
}

#[derive(Default)]
struct Tally {
    ok_measured: u64,
    errors_measured: u64,
    ok_all: u64,
    latencies_us: Vec<u32>,
    acked: Vec<(i32, i64)>,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// A UUID-shaped id: 6 random bytes of this run, then the sequence number.
fn process_id(nonce: &[u8; 6], n: u64) -> String {
    let mut raw = [0u8; 16];
    raw[..6].copy_from_slice(nonce);
    raw[8..].copy_from_slice(&n.to_be_bytes());
    raw[6] = 0x40 | (raw[6] & 0x0f);
    raw[8] = 0x80 | (raw[8] & 0x3f);
    let h = hex::encode(raw);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn worker(
    shared: Arc<Shared>,
    producer: FutureProducer,
    measure_start: Instant,
    stop: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let measured = now >= measure_start;
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let t = &shared.templates[(n % shared.templates.len() as u64) as usize];
        let id = process_id(&shared.nonce, n);
        let mut value = Vec::with_capacity(t.prefix.len() + id.len() + t.suffix.len());
        value.extend_from_slice(&t.prefix);
        value.extend_from_slice(id.as_bytes());
        value.extend_from_slice(&t.suffix);

        // The relay's own record for this delivery: key, value, CloudEvents headers.
        let envelope = Envelope {
            kind: EventKind::BusinessProcess,
            digest: Sha256::digest(&value).into(),
            received: now_millis(),
            traceparent: TraceParent::fresh(),
        };
        let webhook = Webhook {
            key: id,
            version: t.version.clone(),
        };
        let record = Record::accepted(&envelope, &shared.ce_source, &webhook, Bytes::from(value));
        let mut future_record = FutureRecord::<str, [u8]>::to(&shared.topic)
            .payload(&record.value[..])
            .headers(OwnedHeaders::from(&record.headers));
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_str());
        }

        let sent = Instant::now();
        let outcome = match producer.send_result(future_record) {
            Ok(delivery) => match delivery.await {
                Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
                Ok(Err((error, _))) => Err(error.to_string()),
                Err(_canceled) => Err("delivery canceled".to_owned()),
            },
            Err((error, _)) => Err(error.to_string()),
        };
        let done = Instant::now();
        tally.last_done = Some(done);
        match outcome {
            Ok(position) => {
                tally.ok_all += 1;
                tally.acked.push(position);
                if measured {
                    tally.ok_measured += 1;
                    tally.latencies_us.push(
                        u32::try_from(done.duration_since(sent).as_micros()).unwrap_or(u32::MAX),
                    );
                }
            }
            Err(error) => {
                if measured {
                    tally.errors_measured += 1;
                }
                tally.first_error.get_or_insert(error);
            }
        }
    }
    tally
}

/// utime+stime of this process (all threads), seconds.
fn self_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// (VmRSS, VmHWM) of this process, kB.
fn self_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The high watermark of every partition. A topic created a moment ago may still answer "not
/// leader" for a while: ask again every 200 ms for up to 30 s.
fn watermarks(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Result<BTreeMap<i32, i64>, _> = (0..partitions)
            .map(|p| {
                producer
                    .client()
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map(|(_low, high)| (p, high))
            })
            .collect();
        match listed {
            Ok(marks) => return Ok(marks),
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("bp-relay-kafka-bound: watermarks of {topic}: {error}; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => return Err(anyhow!("watermarks of {topic}: {error}")),
        }
    }
}

/// How many partitions `topic` has, waiting up to 30 s for a topic that was just created.
fn partition_count(producer: &FutureProducer, topic: &str) -> anyhow::Result<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map(|m| {
                m.topics().first().map_or(0, |t| {
                    if t.error().is_some() {
                        0
                    } else {
                        t.partitions().len()
                    }
                })
            });
        match count {
            Ok(n) if n > 0 => return Ok(i32::try_from(n)?),
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(_) => bail!("topic {topic} does not exist (or has no partitions)"),
            Err(error) => bail!("metadata of {topic}: {error}"),
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.inflight > 0, "--inflight must be positive");
    let templates = load_templates()?;
    let started_at = OffsetDateTime::now_utc();

    // The relay's producer settings, from the relay's own code and default configuration.
    let relay = RelayArgs::new()
        .brokers(&args.brokers)
        .signing_secrets(&["unused-by-the-kafka-bound"])
        .parse()
        .map_err(|e| anyhow!("the relay's default configuration: {e}"))?;
    let client = bp_relay::kafka::client_config(
        &relay.kafka,
        &args.brokers,
        relay.listeners.max_body.as_u64(),
        relay.message_timeout(),
    )
    .map_err(|e| anyhow!("the relay's producer settings: {e}"))?;
    let producer: FutureProducer = client.create()?;

    let partitions = partition_count(&producer, &args.topic)?;
    let hw_start = watermarks(&producer, &args.topic, partitions)?;

    let shared = Arc::new(Shared {
        templates,
        topic: args.topic.clone(),
        ce_source: relay.topics.ce_source.clone(),
        nonce: rand::random(),
        counter: AtomicU64::new(0),
    });
    let begin = Instant::now();
    let measure_start = begin + args.warmup;
    let stop = measure_start + args.duration;
    let workers: Vec<_> = (0..args.inflight)
        .map(|_| {
            tokio::spawn(worker(
                shared.clone(),
                producer.clone(),
                measure_start,
                stop,
            ))
        })
        .collect();
    tokio::time::sleep_until(measure_start).await;
    let cpu_start = self_cpu();
    let (rss_start, _) = self_memory();

    let mut tally = Tally::default();
    for w in workers {
        let t = w.await?;
        tally.ok_measured += t.ok_measured;
        tally.errors_measured += t.errors_measured;
        tally.ok_all += t.ok_all;
        tally.latencies_us.extend(t.latencies_us);
        tally.acked.extend(t.acked);
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
        tally.last_done = tally.last_done.max(t.last_done);
    }
    let end = tally.last_done.unwrap_or(stop).max(stop);
    let cpu = self_cpu() - cpu_start;
    let (rss_end, hwm) = self_memory();
    let elapsed = end.duration_since(measure_start).as_secs_f64();

    // Every acknowledged (partition, offset) must be distinct and below the high watermark, and
    // the topic must have grown by at least as many records.
    let hw_end = watermarks(&producer, &args.topic, partitions)?;
    let mut problems = Vec::new();
    let mut acked = tally.acked.clone();
    acked.sort_unstable();
    acked.dedup();
    let mut below = true;
    for &(p, offset) in &acked {
        let (Some(&start), Some(&end)) = (hw_start.get(&p), hw_end.get(&p)) else {
            problems.push(format!("partition {p} does not exist"));
            continue;
        };
        if offset >= end || offset < start {
            below &= offset < end;
            if problems.len() < 20 {
                problems.push(format!(
                    "{}/{p}: acknowledged offset {offset} outside [{start}, {end})",
                    args.topic
                ));
            }
        }
    }
    let added: i64 = hw_end
        .iter()
        .map(|(p, hw)| hw - hw_start.get(p).copied().unwrap_or(0))
        .sum();
    if acked.len() as u64 != tally.ok_all {
        problems.push(format!(
            "{} acknowledgements but {} distinct positions",
            tally.ok_all,
            acked.len()
        ));
    }
    if (added as u64) < tally.ok_all {
        problems.push(format!(
            "{} acknowledgements but the topic grew by only {added} records",
            tally.ok_all
        ));
    }

    let mut lat = tally.latencies_us;
    lat.sort_unstable();
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| f64::from(v)).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let mut status = serde_json::Map::new();
    status.insert("acked".into(), tally.ok_measured.into());
    if tally.errors_measured > 0 {
        status.insert("error".into(), tally.errors_measured.into());
    }
    let result = serde_json::json!({
        "system": args.system,
        "label": args.label,
        "mode": "closed",
        "connections": args.inflight,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "elapsed_s": elapsed,
        "sent": tally.ok_measured + tally.errors_measured,
        "ok": tally.ok_measured,
        "deliveries_per_s": tally.ok_measured as f64 / elapsed,
        "status": status,
        "drops": 0,
        "dead_lettered": 0,
        "first_error": tally.first_error,
        "latency_ms": {
            "p50": percentile(&lat, 50.0), "p90": percentile(&lat, 90.0), "p99": percentile(&lat, 99.0),
            "p999": percentile(&lat, 99.9), "max": percentile(&lat, 100.0), "mean": mean,
        },
        "cpu_s": cpu,
        "cpu_s_per_10k": if tally.ok_measured > 0 { cpu / tally.ok_measured as f64 * 10_000.0 } else { 0.0 },
        "procs": 1,
        "rss_kb_start": rss_start,
        "rss_kb_end": rss_end,
        "hwm_kb": hwm,
        "loadgen_cpu_s": 0.0,
        "check": {
            "done": true,
            "ok": problems.is_empty(),
            "acked_2xx": tally.ok_all,
            "distinct_positions": acked.len(),
            "records_added": added,
            "all_below_high_watermark": below,
            "topics": [args.topic],
            "problems": problems,
        },
        "started_at": started_at.format(&time::format_description::well_known::Rfc3339)?,
    });
    println!("{result}");
    producer.flush(Duration::from_secs(5))?;
    Ok(())
}
