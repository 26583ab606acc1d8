"""The report of benches/compare.sh: results.json, results.md, throughput.svg, latency.svg.

    python report.py --work WORK_DIR --out OUT_DIR
    python report.py --from-json docs/benchmarks/results.json --out docs/benchmarks   (re-render)

WORK_DIR holds what compare.sh collected: meta.json (machine, versions, command), runs/SYSTEM.jsonl
(one JSON line per run, from the load generator or the Kafka bound), runs/SYSTEM.idle.json and
runs/SYSTEM.peak.json (memory of the process tree before and after the runs), notes.txt
("system|note" lines) and failures.txt. Prints the throughput table to stdout.
"""

import argparse
import json
import pathlib
import statistics

SYSTEMS = [
    ("bp-relay", "relay", "bp-relay (Rust: hyper 1, tokio, rdkafka)"),
    ("go", "peer", "Go peer (net/http + franz-go)"),
    ("python", "peer", "Python peer (FastAPI + uvicorn, 2 workers + confluent-kafka)"),
    ("http-bound", "bound", "HTTP bound (bp-relay whose publisher answers at once)"),
    ("kafka-bound", "bound", "Kafka bound (the relay's producer and records, no HTTP)"),
]
COLORS = {"bp-relay": "#d62728", "go": "#1f77b4", "python": "#2ca02c", "http-bound": "#7f7f7f", "kafka-bound": "#9467bd"}


def load(work):
    meta = json.loads((work / "meta.json").read_text())
    notes = {}
    for line in (work / "notes.txt").read_text().splitlines() if (work / "notes.txt").exists() else []:
        if "|" in line:
            name, text = line.split("|", 1)
            notes.setdefault(name, []).append(text)
    rates = (work / "open-rates.txt")
    for line in rates.read_text().splitlines() if rates.exists() else []:
        label, rate, base, base_rate = line.split("|")
        meta["open_75pct"] = {"label": label, "rate": int(rate), "of": base, "of_median_rate": float(base_rate)}
    failures = [f for f in (work / "failures.txt").read_text().splitlines() if f.strip()] \
        if (work / "failures.txt").exists() else []
    systems = []
    for name, kind, description in SYSTEMS:
        runs_file = work / "runs" / f"{name}.jsonl"
        runs = [json.loads(l) for l in runs_file.read_text().splitlines() if l.strip()] if runs_file.exists() else []
        idle_file = work / "runs" / f"{name}.idle.json"
        idle_default = json.loads(idle_file.read_text()) if idle_file.exists() and idle_file.read_text().strip() else {}
        failed = [f for f in failures if f.startswith(name + " ") or f.startswith(name + ":")]
        if runs or failed or name in notes:
            status = "failed" if failed else ("ok" if runs else "skipped")
            systems.append({
                "name": name, "kind": kind, "description": description, "status": status,
                "notes": notes.get(name, []), "failures": failed,
                # bp-relay: a separate start with its default flags (the guard's default capacity);
                # the others: the median over the runs of the RSS before each run's load.
                "idle_rss_kb_default_flags": idle_default.get("rss_kb"),
                "procs": max((r.get("procs") or 0 for r in runs), default=None) or None,
                "runs": runs,
            })
    return meta, systems, failures


# ---- per-run figures and their medians -------------------------------------------------------

def per_delivery_us(r, key):
    v, ok = r.get(key), r.get("ok") or 0
    return None if v is None or ok <= 0 else v / ok * 1e6


def derive(r):
    """The per-delivery CPU figures of one run, in µs: the system's own process tree, the broker's
    process, and their sum (the loadgen's raw cpu_s and broker_cpu_s are seconds over the window)."""
    r["cpu_us_per_delivery"] = per_delivery_us(r, "cpu_s")
    r["broker_cpu_us_per_delivery"] = per_delivery_us(r, "broker_cpu_s")
    # The Kafka bound reports no broker CPU of its own: compare.sh reads the broker's over the
    # bound's whole run (warm-up included), which is divided by every record of that run.
    whole, records = r.get("broker_cpu_s_whole_run"), (r.get("check") or {}).get("acked_2xx")
    if r["broker_cpu_us_per_delivery"] is None and whole is not None and records:
        r["broker_cpu_us_per_delivery"] = whole / records * 1e6
    a, b = r["cpu_us_per_delivery"], r["broker_cpu_us_per_delivery"]
    r["total_cpu_us_per_delivery"] = None if a is None or b is None else a + b
    return r


FIGURES = {
    "deliveries_per_s": lambda r: r.get("deliveries_per_s"),
    "p50_ms": lambda r: lat(r, "p50"),
    "p99_ms": lambda r: lat(r, "p99"),
    "p999_ms": lambda r: lat(r, "p999"),
    "cpu_us_per_delivery": lambda r: r.get("cpu_us_per_delivery"),
    "broker_cpu_us_per_delivery": lambda r: r.get("broker_cpu_us_per_delivery"),
    "total_cpu_us_per_delivery": lambda r: r.get("total_cpu_us_per_delivery"),
    "idle_rss_kb": lambda r: r.get("idle_rss_kb"),
    "peak_rss_kb": lambda r: r.get("hwm_kb"),
    "guard_entries": lambda r: (r.get("replay_guard") or {}).get("entries"),
}


def spread(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}


def summarize(system):
    """Per load (label): the median, minimum and maximum of every figure over the reps, and the
    counts summed over the reps."""
    out = {}
    for label in labels(system):
        runs = [r for r in system["runs"] if r.get("label") == label]
        s = {k: spread(f(r) for r in runs) for k, f in FIGURES.items()}
        s["reps"] = len(runs)
        s["mode"] = runs[0].get("mode")
        s["offered_rate"] = runs[0].get("offered_rate")
        s["failed"] = sum(r.get("failed") or 0 for r in runs)
        s["drops"] = sum(r.get("drops") or 0 for r in runs)
        guards = [r["replay_guard"] for r in runs if r.get("replay_guard")]
        if guards:
            s["guard_capacity"] = max(g.get("capacity") or 0 for g in guards) or None
            refusals = [g.get("refusals") for g in guards]
            s["guard_refusals"] = None if None in refusals else sum(refusals)
        out[label] = s
    return out


def labels(system):
    order = {"closed": 0, "open": 1}
    seen = {}
    for r in system["runs"]:
        seen.setdefault(r.get("label"), (order.get(r.get("mode"), 2), r.get("connections") or 0, r.get("offered_rate") or 0))
    return [l for l, _ in sorted(seen.items(), key=lambda kv: kv[1])]


def med(system, label, key):
    s = system.get("summary", {}).get(label, {}).get(key)
    return s["median"] if s else None


# ---- formatting ------------------------------------------------------------------------------

def fmt_int(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_us(v):
    return "—" if v is None else (f"{v:.0f}" if v >= 10 else f"{v:.1f}")


def fmt_mb(kb):
    return "—" if not kb else f"{kb / 1024:.1f}"


def fmt_spread(s, fmt):
    """median, then (min–max) when there was more than one rep."""
    if not s:
        return "—"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def fmt_ratio(a, b):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def lat(r, q):
    return (r or {}).get("latency_ms", {}).get(q) if r else None


def check_verdict(system):
    if system["status"] == "skipped":
        return "skipped"
    checked = [r for r in system["runs"] if r.get("check", {}).get("done")]
    if not checked:
        return "n/a (writes nothing)" if system["name"] == "http-bound" else "—"
    bad = [r for r in checked if not r["check"].get("ok")]
    return f"FAILED in {len(bad)} of {len(checked)} runs" if bad else f"ok ({len(checked)} of {len(checked)} runs)"


def failures_cell(summary):
    parts = []
    if summary.get("failed"):
        parts.append(f"{summary['failed']:,} failed")
    if summary.get("drops"):
        parts.append(f"{summary['drops']:,} dropped")
    return ", ".join(parts) if parts else "0"


# ---- the report ------------------------------------------------------------------------------

def markdown(meta, systems, failures):
    by = {s["name"]: s for s in systems}
    reps = meta.get("reps", 1)
    out = []
    w = out.append
    title = "Benchmark: bp-relay against hand-written peers and the HTTP/Kafka bounds"
    w(f"# {title}{' (smoke run)' if meta.get('smoke') else ''}\n")
    w(f"Generated by `{meta['command']}` on {meta['started_at']} (commit {meta['git']}, {meta['profile']} "
      f"binaries): {reps} interleaved repetition(s) of every run (for each rep, each system, each load), "
      f"{meta['duration_s']} s measured per run after {meta['warmup_s']} s of warm-up at the same load, each run "
      "on a fresh process of the system. Raw figures, every run and every median: [results.json](results.json).\n")
    w("Every figure below is the **median over the reps, with the minimum–maximum in brackets**; ratios are "
      "taken between medians. Every system runs on the same machine as the Kafka broker and the load generator "
      "(all sharing the cores), each on its own 6-partition topics (replication factor 1). "
      "Every HTTP system gets the same deliveries: the business-process samples `docs/examples/bp-*.json`, "
      "each request with its own top-level `id` and its own `X-AUTHVIA-VALUE`, signed when sent. "
      "A delivery is a 2xx answer, which every system gives only once the broker acknowledged the record "
      "(`acks=all`, idempotent producer, lz4, murmur2 partitioning), except the HTTP bound, "
      "which answers without Kafka. Batching is each system's own: bp-relay's defaults (linger 1 ms, one "
      "produce request in flight per broker), linger 5 ms in the peers as written by hand.\n")
    w("## Headline (the README's table)\n")
    w(headline(by))
    w("![deliveries per second](throughput.svg)\n")
    w("![latency versus offered rate](latency.svg)\n")

    w("## Throughput (closed loop: C keep-alive connections, each sending one request after another)\n")
    w("| system | deliveries/s, 64 connections | deliveries/s, 256 connections | failed requests (64 / 256, all reps) | every 2xx in Kafka |")
    w("|---|--:|--:|---|---|")
    for s in systems:
        sm = s["summary"]
        a, b = sm.get("closed-64", {}), sm.get("closed-256", {})
        w(f"| {s['description']} | {fmt_spread(a.get('deliveries_per_s'), fmt_int)} | {fmt_spread(b.get('deliveries_per_s'), fmt_int)} | "
          f"{failures_cell(a) if a else '—'} / {failures_cell(b) if b else '—'} | {check_verdict(s)} |")
    w("")

    w("## CPU per delivery (µs)\n")
    w("Three columns per run, each divided by the run's deliveries (2xx answers in the measured window): "
      "**system** is utime + stime of every thread of the system's own process tree (bp-relay, the Go peer, "
      "the Python peer's uvicorn parent and workers, a bound), **broker** is the same of the Kafka broker's "
      "JVM over the same window (read from `/proc/PID/stat` by the load generator), **sum** is the two "
      "together: what the machine pays for a delivery besides the load generator. The Kafka bound measures "
      "its own CPU; its broker CPU is read over its whole run (warm-up included) and divided by every record of it.\n")
    w("| system | run | system CPU | broker CPU | system + broker |")
    w("|---|---|--:|--:|--:|")
    for s in systems:
        for label, sm in s["summary"].items():
            w(f"| {s['name']} | {label} | {fmt_spread(sm['cpu_us_per_delivery'], fmt_us)} | "
              f"{fmt_spread(sm['broker_cpu_us_per_delivery'], fmt_us)} | {fmt_spread(sm['total_cpu_us_per_delivery'], fmt_us)} |")
    w("")

    w("## Latency, closed loop (ms)\n")
    w("| system | 64: p50 | p99 | p99.9 | 256: p50 | p99 | p99.9 |")
    w("|---|--:|--:|--:|--:|--:|--:|")
    for s in systems:
        a, b = s["summary"].get("closed-64", {}), s["summary"].get("closed-256", {})
        w(f"| {s['name']} | " + " | ".join(fmt_spread(x.get(k), fmt_ms) for x in (a, b) for k in ("p50_ms", "p99_ms", "p999_ms")) + " |")
    w("")

    o75 = meta.get("open_75pct")
    w("## Latency, open loop (ms, from each request's scheduled send time: no coordinated omission)\n")
    w("Arrivals at a fixed rate, sent on schedule whatever is still outstanding, at the same absolute rates "
      "for every system" + (f"; open-75pct is {o75['rate']:,}/s, 75 % of the median closed-loop rate at 64 "
                            f"connections of the slowest HTTP system ({o75['of']}, {o75['of_median_rate']:,.0f}/s)" if o75 else "")
      + f". **Every request that failed counts in the percentiles at the request timeout "
      f"({meta.get('request_timeout_s', 10)} s)**: a non-2xx answer, a transport error, or an arrival dropped "
      "because 4,096 requests were already outstanding; the last column counts them over all reps.\n")
    w("| system | run | offered/s | deliveries/s | p50 | p99 | p99.9 | failed / dropped (all reps) |")
    w("|---|---|--:|--:|--:|--:|--:|---|")
    for s in systems:
        for label, sm in s["summary"].items():
            if sm["mode"] != "open":
                continue
            w(f"| {s['name']} | {label} | {fmt_int(sm['offered_rate'])} | {fmt_spread(sm['deliveries_per_s'], fmt_int)} | "
              f"{fmt_spread(sm['p50_ms'], fmt_ms)} | {fmt_spread(sm['p99_ms'], fmt_ms)} | {fmt_spread(sm['p999_ms'], fmt_ms)} | {failures_cell(sm)} |")
    w("")

    w("## Replay guard (bp-relay and its HTTP bound)\n")
    w("bp-relay refuses a new signing (503 `replay_guard_full`) rather than forget a live one, so each run "
      "starts it with `--replay-capacity` sized for that run: every signing of a run is still inside the window "
      "(2 × `--signature-tolerance`, 10 min) at its end, so the guard holds the run's rate × (warm-up + "
      "duration) × 1.25 + 16,384 (closed loops: sized for `BP_RELAY_BENCH_GUARD_RATE`, 50,000/s; "
      "100,000/s for the HTTP bound). After each run compare.sh reads `bp_relay_replay_guard_refusals_total` "
      "and `bp_relay_replay_guard_entries` from the admin `/metrics`; a run with a refusal fails. "
      "The guard's memory is part of the peak RSS (a hash map of 32-byte entries and a heap of 32-byte "
      "expiries, allocated at start for the whole capacity and touched as it fills).\n")
    w("The guard's allocation is computed from the capacity as bp-relay lays it out (up to 16 shards, each a "
      "hashbrown map of 16-byte keys and 16-byte values with one control byte per bucket, buckets a power of "
      "two ≥ 8/7 of the shard's share, and a heap of 32-byte expiries): the most the guard adds to the RSS, "
      "reached as it fills (the map's pages are touched at random).\n")
    w("| system | run | `--replay-capacity` | guard's allocation, MiB | entries at the end | refusals (all reps) | idle RSS, MiB | peak RSS, MiB |")
    w("|---|---|--:|--:|--:|--:|--:|--:|")
    for s in systems:
        for label, sm in s["summary"].items():
            if "guard_capacity" not in sm:
                continue
            ref = sm.get("guard_refusals")
            w(f"| {s['name']} | {label} | {fmt_int(sm['guard_capacity'])} | {fmt_mb(guard_bytes(sm['guard_capacity']) / 1024)} | "
              f"{fmt_spread(sm['guard_entries'], fmt_int)} | "
              f"{'unread' if ref is None else f'{ref:,}'} | {fmt_spread(sm['idle_rss_kb'], fmt_mb)} | {fmt_spread(sm['peak_rss_kb'], fmt_mb)} |")
    w("")

    w("## Memory (MiB)\n")
    w("Idle RSS is `VmRSS` after startup, before any load: bp-relay's from a separate start with its default "
      "flags (`--replay-capacity` 100,000), the others' the median over their runs. Peak RSS is `VmHWM` of the "
      "run (each run on a fresh process); summed over the process tree.\n")
    w("| system | idle RSS | peak RSS, closed 64 | peak RSS, closed 256 | peak RSS, highest open rate | processes |")
    w("|---|--:|--:|--:|--:|--:|")
    for s in systems:
        sm = s["summary"]
        opens = [l for l, x in sm.items() if x["mode"] == "open"]
        top = max(opens, key=lambda l: sm[l]["offered_rate"] or 0) if opens else None
        idle = fmt_mb(s.get("idle_rss_kb_default_flags")) if s.get("idle_rss_kb_default_flags") else \
            fmt_spread(spread(x["idle_rss_kb"]["median"] for x in sm.values() if x.get("idle_rss_kb")), fmt_mb)
        w(f"| {s['name']} | {idle} | {fmt_spread(sm.get('closed-64', {}).get('peak_rss_kb'), fmt_mb)} | "
          f"{fmt_spread(sm.get('closed-256', {}).get('peak_rss_kb'), fmt_mb)} | "
          f"{fmt_spread(sm[top]['peak_rss_kb'], fmt_mb) if top else '—'}{f' ({top})' if top else ''} | {s.get('procs') or '—'} |")
    w("")

    w("## Every 2xx is in Kafka\n")
    w("After each run the load generator lists the topics' high watermarks (franz-go kadm) and checks: every "
      "acknowledged (partition, offset) lies between the watermark before the run and the one after it, "
      "the acknowledged positions are distinct (as many as 2xx answers, warm-up included), and the topics "
      "grew by at least that many records.\n")
    w("| system | runs checked | 2xx answers | distinct positions | records added | verdict |")
    w("|---|--:|--:|--:|--:|---|")
    for s in systems:
        checked = [r for r in s["runs"] if r.get("check", {}).get("done")]
        total = lambda k: sum(r["check"].get(k, 0) for r in checked)
        w(f"| {s['name']} | {len(checked)} | {fmt_int(total('acked_2xx')) if checked else '—'} | "
          f"{fmt_int(total('distinct_positions')) if checked else '—'} | {fmt_int(total('records_added')) if checked else '—'} | "
          f"{check_verdict(s)} |")
    w("")

    relay, go = by.get("bp-relay"), by.get("go")
    w("## bp-relay against the Go peer (ratios of medians)\n")
    if relay and go and relay["runs"] and go["runs"]:
        w("bp-relay's median ÷ the Go peer's median, per run. Deliveries/s: above 1× bp-relay delivers more. "
          "CPU and latency: below 1× bp-relay spends less / answers sooner.\n")
        w("| run | deliveries/s | system CPU / delivery | system + broker CPU / delivery | p50 | p99 | p99.9 |")
        w("|---|--:|--:|--:|--:|--:|--:|")
        for label in relay["summary"]:
            if label not in go["summary"]:
                continue
            r = lambda k: fmt_ratio(med(relay, label, k), med(go, label, k))
            w(f"| {label} | {r('deliveries_per_s')} | {r('cpu_us_per_delivery')} | {r('total_cpu_us_per_delivery')} | "
              f"{r('p50_ms')} | {r('p99_ms')} | {r('p999_ms')} |")
        w("")
        w("### Targets of issue 20\n")
        w("| target | bp-relay | Go peer | met |")
        w("|---|--:|--:|---|")
        for row in targets(relay, go, by):
            w("| " + " | ".join(row) + " |")
        w("")
    else:
        w("bp-relay or the Go peer did not run: no ratios.\n")

    bounds = [(n, by[n]) for n in ("http-bound", "kafka-bound") if n in by]
    if relay and bounds:
        w("bp-relay's median deliveries/s ÷ each bound's at the same concurrency: the share of the bound it reaches.\n")
        w("| run | " + " | ".join(f"vs {n}" for n, _ in bounds) + " |")
        w("|---|" + "--:|" * len(bounds))
        for label in ("closed-64", "closed-256"):
            w(f"| {label} | " + " | ".join(fmt_ratio(med(relay, label, 'deliveries_per_s'), med(b, label, 'deliveries_per_s')) for _, b in bounds) + " |")
        w("")

    w("## What each system does per delivery\n")
    w("- **bp-relay**: default flags plus ports, brokers, secret, topics and `--replay-capacity` (above); "
      "`RUST_LOG=info`, JSON logs to a file (every failure and dead letter; 2xx answers at debug, the default "
      "`--access-log failures`), metrics on its admin port, linger 1 ms and one produce request in flight per broker "
      "(its defaults). Checks the signature, timestamp window and replay guard, parses and type-checks "
      "the body, and writes the record with its CloudEvents headers (`ce_id` is a SHA-256 of the body).")
    w("- **Go peer** (`benches/peers/go`, ~100 lines): signature and ±5 min window, JSON parse for `id`, "
      "franz-go `ProduceSync` (acks=all, idempotent, lz4, linger 5 ms, sticky-key murmur2 partitioner). "
      "No headers, no replay guard, no logging per request.")
    w("- **Python peer** (`benches/peers/python`): the same checks in FastAPI on uvicorn (2 workers, uvloop, "
      "httptools, access log off); confluent-kafka with acks=all, idempotence, lz4, linger 5 ms, murmur2_random; "
      "a poll thread resolves each request's future from the delivery report. No headers, no replay guard.")
    w("- **HTTP bound**: bp-relay's whole HTTP path with a publisher that answers at once: what bp-relay could "
      "deliver with an infinitely fast broker.")
    w("- **Kafka bound**: no HTTP; the relay's producer settings (from `bp_relay::kafka::client_config`) and the "
      "relay's records, as many in flight as connections: what the broker and librdkafka allow on this machine "
      "with the load generator's CPU left idle.")
    w("- **Not included**: Benthos / Redpanda Connect (`http_server` input, `kafka` output, `sync_response`). "
      "Benthos' Kafka components live in the Redpanda Connect module, whose licence is not an open-source "
      "one; the MIT core (`github.com/redpanda-data/benthos/v4`) has an `http_server` input but no Kafka "
      "output. Kafka REST proxies take their own envelope, not a raw signed webhook, so they would measure "
      "something else.")
    w("")

    notes = [(s["name"], n) for s in systems for n in s["notes"]]
    if notes or failures:
        w("## Notes and failures\n")
        for name, n in notes:
            w(f"- {name}: {n}")
        for f in failures:
            w(f"- FAILED: {f}")
        w("")

    w("## Machine\n")
    w("| | |")
    w("|---|---|")
    for key, label in (("cpu", "CPU (/proc/cpuinfo)"), ("nproc", "nproc"), ("memory", "memory (free -h)"),
                       ("kernel", "kernel"), ("go", "Go"), ("python", "Python"), ("rustc", "rustc"),
                       ("java", "Java"), ("kafka", "Kafka broker"), ("librdkafka_rust", "bp-relay's librdkafka"),
                       ("librdkafka_python", "Python peer's client"), ("franz_go", "franz-go")):
        w(f"| {label} | {str(meta.get(key, '?')).strip()} |")
    w("")
    w("```")
    w(meta.get("free", "").rstrip())
    w("```\n")
    w("Reproduce (from the repository root; it installs what it needs, starts its own broker on "
      "127.0.0.1:19092 and stops everything it started):\n")
    w("```sh")
    w(meta["command"])
    w("```")
    return "\n".join(out) + "\n"


def guard_bytes(capacity):
    """The in-memory replay guard's allocation for --replay-capacity (src/ingress/replay/memory.rs:
    capacity / 1024 shards, 1 to 16; per shard a HashMap<u128, u128> and a BinaryHeap of
    (i64, u128), both with_capacity(share))."""
    if not capacity:
        return 0
    shards = max(1, min(16, capacity // 1024))
    total = 0
    for n in range(shards):
        share = capacity // shards + (1 if n < capacity % shards else 0)
        buckets = 4 if share < 4 else 8 if share < 8 else 1 << ((share * 8 // 7) - 1).bit_length()
        total += buckets * 32 + buckets + 16 + share * 32
    return total


def headline(by):
    """The README's table: medians of this run for bp-relay and the peers, and bp-relay ÷ Go."""
    cols = [n for n in ("bp-relay", "go", "python") if n in by and by[n]["runs"]]
    if not cols:
        return "No HTTP system ran.\n"
    head = {"bp-relay": "bp-relay", "go": "Go (net/http + franz-go)", "python": "Python (FastAPI + confluent-kafka)"}
    rows = []

    def m(n, label, key):
        return med(by[n], label, key)

    def both(n, label, key, fmt):
        return " / ".join(fmt(m(n, l, key)) for l in label)

    def add(what, cell, ratio):
        go_ok = "go" in cols and "bp-relay" in cols
        rows.append(f"| {what} | " + " | ".join(cell(n) for n in cols) + (f" | {ratio()} |" if go_ok else " | — |"))

    add("deliveries/s, 64 / 256 connections", lambda n: both(n, ("closed-64", "closed-256"), "deliveries_per_s", fmt_int),
        lambda: " / ".join(fmt_ratio(m("bp-relay", l, "deliveries_per_s"), m("go", l, "deliveries_per_s")) for l in ("closed-64", "closed-256")))
    opens = sorted({l for n in cols for l, x in by[n]["summary"].items() if x["mode"] == "open"},
                   key=lambda l: next(by[n]["summary"][l]["offered_rate"] for n in cols if l in by[n]["summary"]))
    for label in opens:
        rate = next(by[n]["summary"][label]["offered_rate"] for n in cols if label in by[n]["summary"])
        add(f"p50 / p99 / p99.9 at {rate:,.0f}/s, open loop, ms", lambda n: " / ".join(fmt_ms(m(n, label, k)) for k in ("p50_ms", "p99_ms", "p999_ms")),
            lambda: " / ".join(fmt_ratio(m("bp-relay", label, k), m("go", label, k)) for k in ("p50_ms", "p99_ms", "p999_ms")))
    for label in ["closed-64"] + [l for l in opens if l in ("open-4000", "open-8000")]:
        add(f"CPU per delivery, {label}: system / system + broker, µs",
            lambda n: " / ".join(fmt_us(m(n, label, k)) for k in ("cpu_us_per_delivery", "total_cpu_us_per_delivery")),
            lambda: " / ".join(fmt_ratio(m("bp-relay", label, k), m("go", label, k)) for k in ("cpu_us_per_delivery", "total_cpu_us_per_delivery")))

    def idle(n):
        v = by[n].get("idle_rss_kb_default_flags")
        if v:
            return v
        s = spread(x["idle_rss_kb"]["median"] for x in by[n]["summary"].values() if x.get("idle_rss_kb"))
        return s["median"] if s else None
    add("idle RSS / peak RSS at 64 connections, MiB", lambda n: f"{fmt_mb(idle(n))} / {fmt_mb(m(n, 'closed-64', 'peak_rss_kb'))}",
        lambda: f"{fmt_ratio(idle('bp-relay'), idle('go'))} / {fmt_ratio(m('bp-relay', 'closed-64', 'peak_rss_kb'), m('go', 'closed-64', 'peak_rss_kb'))}")
    lines = ["Medians of this run (ratios: bp-relay ÷ Go; latency, CPU and memory: below 1× is better).\n",
             "| | " + " | ".join(head[n] for n in cols) + " | bp-relay ÷ Go |",
             "|---|" + "--:|" * (len(cols) + 1)]
    return "\n".join(lines + rows) + "\n"


def targets(relay, go, by):
    """The targets of issue 20, judged on the medians of this run: rows of (target, bp-relay, Go, met)."""
    rows = []

    def row(what, mine, theirs, ok, fmt):
        met = "—" if ok is None else ("yes" if ok else "**no**")
        rows.append((what, fmt(mine), fmt(theirs), met))

    def cmp(a, b, f):
        return None if a is None or b is None else f(a, b)

    for label in ("closed-64", "closed-256"):
        v = med(relay, label, "cpu_us_per_delivery")
        row(f"system CPU ≤ 25 µs per delivery, {label}", v, med(go, label, "cpu_us_per_delivery"),
            None if v is None else v <= 25, fmt_us)
    for label in ("open-4000", "open-8000"):
        for key, limit, what in (("cpu_us_per_delivery", 0.7, "system CPU"), ("total_cpu_us_per_delivery", 0.8, "system + broker CPU")):
            a, b = med(relay, label, key), med(go, label, key)
            row(f"{what} ≤ {limit}× Go's, {label} (µs)", a, b, cmp(a, b, lambda x, y: x <= limit * y), fmt_us)
    for label in ("closed-64", "closed-256"):
        a, b = med(relay, label, "deliveries_per_s"), med(go, label, "deliveries_per_s")
        row(f"deliveries/s ≥ 1.15× Go's, {label}", a, b, cmp(a, b, lambda x, y: x >= 1.15 * y), fmt_int)
    for label, sm in relay["summary"].items():
        if sm["mode"] != "open" or label not in go["summary"]:
            continue
        a, b = med(relay, label, "p99_ms"), med(go, label, "p99_ms")
        row(f"p99 ≤ Go's, {label} (ms)", a, b, cmp(a, b, lambda x, y: x <= y), fmt_ms)
        a, b = med(relay, label, "p999_ms"), med(go, label, "p999_ms")
        row(f"p99.9 ≤ 1.5× Go's, {label} (ms)", a, b, cmp(a, b, lambda x, y: x <= 1.5 * y), fmt_ms)
    a = med(relay, "open-1000", "p50_ms")
    row("p50 ≤ 1 ms at 1,000/s (ms)", a, med(go, "open-1000", "p50_ms"), None if a is None else a <= 1, fmt_ms)
    idle = relay.get("idle_rss_kb_default_flags")
    go_idle = med(go, "closed-64", "idle_rss_kb")
    row("idle RSS ≤ 12 MiB (MiB)", idle, go_idle, None if idle is None else idle <= 12 * 1024, fmt_mb)
    return rows


def charts(systems, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bp-relay-bench"  # stable ids: diffs show data changes only
    plt.rcParams["svg.fonttype"] = "none"
    shown = [s for s in systems if s["summary"]]
    names = [s["name"] for s in shown]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.38
    for i, (label, hatch) in enumerate((("closed-64", ""), ("closed-256", "//"))):
        xs = [j + (i - 0.5) * width for j in range(len(names))]
        sp = [s["summary"].get(label, {}).get("deliveries_per_s") for s in shown]
        ys = [x["median"] if x else 0 for x in sp]
        err = [[(x["median"] - x["min"]) if x else 0 for x in sp], [(x["max"] - x["median"]) if x else 0 for x in sp]]
        bars = ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"{label.split('-')[1]} connections", hatch=hatch,
                      color=[COLORS.get(n, "#333") for n in names], edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("deliveries/s (2xx after the broker's ack)")
    ax.set_title("Closed-loop throughput, median of the reps (bars: min–max; hatched: 256)", fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.18)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.svg", metadata={"Date": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.6))
    plotted = False
    for s in shown:
        opens = sorted(((x["offered_rate"], x) for x in s["summary"].values() if x["mode"] == "open"), key=lambda t: t[0])
        for q, style in (("p50_ms", "--"), ("p99_ms", "-")):
            pts = [(rate, x[q]) for rate, x in opens if x.get(q)]
            if pts:
                xs = [p[0] for p in pts]
                ys = [p[1]["median"] for p in pts]
                err = [[p[1]["median"] - p[1]["min"] for p in pts], [p[1]["max"] - p[1]["median"] for p in pts]]
                ax.errorbar(xs, ys, yerr=err, fmt=style, marker="o", markersize=3, capsize=2,
                            color=COLORS.get(s["name"], "#333"), label=f"{s['name']} {q.split('_')[0]}")
                plotted = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("offered rate (requests/s, open loop, the same for every system)")
    ax.set_ylabel("latency from scheduled send (ms; failures at the timeout)")
    ax.set_title("Open-loop latency versus offered rate, median of the reps (solid p99, dashed p50)", fontsize=10)
    ax.grid(which="both", alpha=0.3)
    if plotted:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "latency.svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=pathlib.Path, help="compare.sh's work dir")
    ap.add_argument("--from-json", type=pathlib.Path, help="an earlier results.json instead (re-render only)")
    ap.add_argument("--out", required=True, type=pathlib.Path)
    args = ap.parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        meta, systems, failures = data["meta"], data["systems"], data["failures"]
    elif args.work:
        meta, systems, failures = load(args.work)
    else:
        ap.error("give --work or --from-json")
    for s in systems:
        for r in s["runs"]:
            derive(r)
        s["summary"] = summarize(s)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "systems": systems, "failures": failures}, indent=1) + "\n")
    md = markdown(meta, systems, failures)
    (args.out / "results.md").write_text(md)
    charts(systems, args.out)
    # The throughput, CPU and open-loop tables on stdout, for logs.
    lines = md.splitlines()
    for heading in ("## Throughput", "## CPU per delivery", "## Latency, open loop", "## Replay guard", "## bp-relay against"):
        start = next((i for i, l in enumerate(lines) if l.startswith(heading)), None)
        if start is None:
            continue
        first = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("|")), None)
        if first is None:
            continue
        end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
        print(lines[start])
        print("\n".join(lines[first:end]))
        print()


if __name__ == "__main__":
    main()
