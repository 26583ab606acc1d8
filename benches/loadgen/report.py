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
    failures = [f for f in (work / "failures.txt").read_text().splitlines() if f.strip()] \
        if (work / "failures.txt").exists() else []
    systems = []
    for name, kind, description in SYSTEMS:
        runs_file = work / "runs" / f"{name}.jsonl"
        runs = [json.loads(l) for l in runs_file.read_text().splitlines() if l.strip()] if runs_file.exists() else []
        mem = {}
        for which in ("idle", "peak"):
            f = work / "runs" / f"{name}.{which}.json"
            if f.exists() and f.read_text().strip():
                mem[which] = json.loads(f.read_text())
        failed = [f for f in failures if f.startswith(name + " ") or f.startswith(name + ":")]
        if runs or failed or name in notes:
            status = "failed" if failed else ("ok" if runs else "skipped")
            systems.append({
                "name": name, "kind": kind, "description": description, "status": status,
                "notes": notes.get(name, []), "failures": failed,
                "idle_rss_kb": mem.get("idle", {}).get("rss_kb"),
                # VmHWM is reset before each run: each run carries its own peak.
                "peak_rss_kb": max((r.get("hwm_kb") or 0 for r in runs), default=None) or mem.get("peak", {}).get("hwm_kb"),
                "max_rate_peak_rss_kb": max((r.get("hwm_kb") or 0 for r in runs if r.get("mode") == "closed"), default=None),
                "procs": mem.get("peak", {}).get("procs") or mem.get("idle", {}).get("procs"),
                "runs": runs,
            })
    return meta, systems, failures


def run(system, label):
    for r in system["runs"]:
        if r.get("label") == label:
            return r
    return None


def open_runs(system):
    return sorted((r for r in system["runs"] if r.get("mode") == "open"), key=lambda r: r.get("offered_rate", 0))


def rate(system, label):
    r = run(system, label)
    return r["deliveries_per_s"] if r else None


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


def fmt_mb(kb):
    return "—" if not kb else f"{kb / 1024:.1f} MiB"


def fmt_ratio(a, b, invert=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    x = b / a if invert else a / b
    return f"{x:.2f}×"


def lat(r, q):
    return (r or {}).get("latency_ms", {}).get(q) if r else None


def non2xx(r):
    if not r:
        return "—"
    bad = {k: v for k, v in r.get("status", {}).items() if not (k.isdigit() and 200 <= int(k) < 300) and k != "acked"}
    parts = [f"{k}: {v:,}" for k, v in sorted(bad.items())]
    if r.get("drops"):
        parts.append(f"dropped: {r['drops']:,}")
    return ", ".join(parts) if parts else "0"


def check_verdict(system):
    if system["status"] == "skipped":
        return "skipped"
    checked = [r for r in system["runs"] if r.get("check", {}).get("done")]
    if not checked:
        return "n/a (writes nothing)" if system["name"] == "http-bound" else "—"
    bad = [r for r in checked if not r["check"].get("ok")]
    return f"FAILED in {len(bad)} of {len(checked)} runs" if bad else f"ok ({len(checked)} of {len(checked)} runs)"


def best(systems, kind, key, lower=False):
    """(value, system name) of the best system of a kind by key(system), ignoring None."""
    values = [(key(s), s["name"]) for s in systems if s["kind"] == kind and key(s) is not None]
    if not values:
        return None, None
    return (min if lower else max)(values)


def cpu10k(s, label):
    r = run(s, label)
    return r.get("cpu_s_per_10k") if r else None


def markdown(meta, systems, failures):
    by = {s["name"]: s for s in systems}
    out = []
    w = out.append
    title = "Benchmark: bp-relay against hand-written peers and the HTTP/Kafka bounds"
    w(f"# {title}{' (smoke run)' if meta.get('smoke') else ''}\n")
    w(f"Generated by `{meta['command']}` on {meta['started_at']} (commit {meta['git']}, {meta['profile']} "
      f"binaries), {meta['duration_s']} s measured per run after {meta['warmup_s']} s of warm-up at the same load. "
      "Raw figures: [results.json](results.json).\n")
    w("Every system runs on the same machine as the Kafka broker and the load generator (2 cores shared "
      "by all three), one after the other, each on fresh 6-partition topics (replication factor 1). "
      "Every HTTP system gets the same deliveries: the business-process samples `docs/examples/bp-*.json`, "
      "each request with its own top-level `id` and its own `X-AUTHVIA-VALUE`, signed when sent. "
      "A delivery is a 2xx answer, which every system gives only once the broker acknowledged the record "
      "(`acks=all`, idempotent producer, lz4, murmur2 partitioning), except the HTTP bound, "
      "which answers without Kafka. Batching is each system's own: bp-relay's defaults (linger 0, one "
      "produce request in flight per broker), linger 5 ms in the peers as written by hand.\n")
    w("![deliveries per second](throughput.svg)\n")
    w("![latency versus offered rate](latency.svg)\n")

    w("## Throughput (closed loop: C keep-alive connections, each sending one request after another)\n")
    w("| system | deliveries/s, 64 connections | deliveries/s, 256 connections | non-2xx answers (64 / 256) | every 2xx in Kafka |")
    w("|---|--:|--:|---|---|")
    for s in systems:
        w(f"| {s['description']} | {fmt_int(rate(s, 'closed-64'))} | {fmt_int(rate(s, 'closed-256'))} | "
          f"{non2xx(run(s, 'closed-64'))} / {non2xx(run(s, 'closed-256'))} | {check_verdict(s)} |")
    w("")

    w("## Latency, closed loop (ms, of 2xx answers)\n")
    w("| system | 64: p50 | p99 | p99.9 | 256: p50 | p99 | p99.9 |")
    w("|---|--:|--:|--:|--:|--:|--:|")
    for s in systems:
        a, b = run(s, "closed-64"), run(s, "closed-256")
        w(f"| {s['name']} | {fmt_ms(lat(a, 'p50'))} | {fmt_ms(lat(a, 'p99'))} | {fmt_ms(lat(a, 'p999'))} | "
          f"{fmt_ms(lat(b, 'p50'))} | {fmt_ms(lat(b, 'p99'))} | {fmt_ms(lat(b, 'p999'))} |")
    w("")

    w("## Latency, open loop (ms, from each request's scheduled send time: no coordinated omission)\n")
    w("Arrivals at a fixed rate, sent on schedule whatever is still outstanding (at most 4,096 in flight; "
      "more would be dropped and counted). The rates are 1,000/s and 25 %, 50 %, 75 % of the system's own "
      "64-connection throughput.\n")
    w("| system | run | offered/s | deliveries/s | p50 | p99 | p99.9 | non-2xx |")
    w("|---|---|--:|--:|--:|--:|--:|---|")
    for s in systems:
        for r in open_runs(s):
            w(f"| {s['name']} | {r['label']} | {fmt_int(r.get('offered_rate'))} | {fmt_int(r['deliveries_per_s'])} | "
              f"{fmt_ms(lat(r, 'p50'))} | {fmt_ms(lat(r, 'p99'))} | {fmt_ms(lat(r, 'p999'))} | {non2xx(r)} |")
    w("")

    w("## CPU and memory\n")
    w("CPU is utime + stime of every thread of the system's process tree during the measured window "
      "(`/proc/PID/stat`), per 10,000 deliveries. Idle RSS is `VmRSS` after startup, before any load; "
      "peak RSS is `VmHWM`, reset before each run (`/proc/PID/clear_refs`), so each run has its own: the "
      "largest over the closed-loop runs (the maximum rate) and over all runs (the open-loop runs past "
      "the maximum queue thousands of requests); all are summed over the process tree (the Python peer is a "
      "uvicorn parent with 2 worker processes). The broker's CPU is in results.json (`broker_cpu_s`).\n")
    open_mid = lambda s: next((r["label"] for r in open_runs(s) if r["label"] == "open-50pct"), None)
    w("| system | CPU s / 10k, closed 64 | closed 256 | open 1,000/s | open 50 % | idle RSS | peak RSS, max rate | peak RSS, all runs | processes |")
    w("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for s in systems:
        f = lambda v: "—" if v is None else f"{v:.2f}"
        mid = open_mid(s)
        w(f"| {s['name']} | {f(cpu10k(s, 'closed-64'))} | {f(cpu10k(s, 'closed-256'))} | {f(cpu10k(s, 'open-1000'))} | "
          f"{f(cpu10k(s, mid) if mid else None)} | {fmt_mb(s['idle_rss_kb'])} | {fmt_mb(s['max_rate_peak_rss_kb'])} | {fmt_mb(s['peak_rss_kb'])} | {s.get('procs') or '—'} |")
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

    w("## Ratios\n")
    relay = by.get("bp-relay")
    if relay and relay["runs"]:
        rows = []
        for label, what in (("closed-64", "deliveries/s, 64 connections"), ("closed-256", "deliveries/s, 256 connections")):
            mine = rate(relay, label)
            peer_v, peer_n = best(systems, "peer", lambda s: rate(s, label))
            rows.append((what, fmt_int(mine), f"{fmt_ratio(mine, peer_v)} ({peer_n or '—'})",
                         fmt_ratio(mine, rate(by["http-bound"], label)) if "http-bound" in by else "—",
                         fmt_ratio(mine, rate(by["kafka-bound"], label)) if "kafka-bound" in by else "—"))
        open_label = "open-1000" if run(relay, "open-1000") else next((r["label"] for r in open_runs(relay)), "open-1000")
        for label in ("closed-64", open_label):
            mine = cpu10k(relay, label)
            peer_v, peer_n = best(systems, "peer", lambda s: cpu10k(s, label), lower=True)
            rows.append((f"CPU s per 10k deliveries, {label}",
                         "—" if mine is None else f"{mine:.2f}", f"{fmt_ratio(mine, peer_v, invert=True)} ({peer_n or '—'})",
                         "—", "—"))
        where = "1,000/s" if open_label == "open-1000" else open_label.replace("open-", "").replace("pct", " % of each system's own max")
        for q in ("p50", "p99"):
            mine = lat(run(relay, open_label), q)
            peer_v, peer_n = best(systems, "peer", lambda s: lat(run(s, open_label), q), lower=True)
            rows.append((f"{q} at {where}, open loop, ms", fmt_ms(mine),
                         f"{fmt_ratio(mine, peer_v, invert=True)} ({peer_n or '—'})", "—", "—"))
        for key, what in (("max_rate_peak_rss_kb", "peak RSS at the maximum rate"), ("peak_rss_kb", "peak RSS, all runs")):
            mine = relay[key]
            peer_v, peer_n = best(systems, "peer", lambda s: s[key], lower=True)
            rows.append((what, fmt_mb(mine),
                         f"{fmt_ratio(mine, peer_v, invert=True)} ({peer_n or '—'})", "—", "—"))
        w("bp-relay's figure, then its ratio to the best peer for that measure (which peer in brackets): "
          "above 1× bp-relay is better (more deliveries/s; or less CPU, latency, memory: those ratios are "
          "peer ÷ bp-relay). Against the bounds, bp-relay's deliveries/s ÷ the bound's at the same "
          "concurrency: the share of the bound it reaches.\n")
        w("| measure | bp-relay | vs best peer | vs HTTP bound | vs Kafka bound |")
        w("|---|--:|--:|--:|--:|")
        for row in rows:
            w("| " + " | ".join(row) + " |")
        w("")
    else:
        w("bp-relay did not run: no ratios.\n")

    w("## What each system does per delivery\n")
    w("- **bp-relay**: default flags plus ports, brokers, secret and topics; `RUST_LOG=info`, JSON logs to a file "
      "(every failure and dead letter; 2xx answers at debug, the default `--access-log failures`), "
      "metrics on its admin port, linger 0 and one produce request in flight per broker (its defaults). Checks the signature, timestamp window and replay guard, parses and type-checks "
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


def charts(systems, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bp-relay-bench"  # stable ids: diffs show data changes only
    plt.rcParams["svg.fonttype"] = "none"
    names = [s["name"] for s in systems if s["runs"]]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.38
    for i, (label, hatch) in enumerate((("closed-64", ""), ("closed-256", "//"))):
        xs = [j + (i - 0.5) * width for j in range(len(names))]
        ys = [rate(next(s for s in systems if s["name"] == n), label) or 0 for n in names]
        bars = ax.bar(xs, ys, width, label=f"{label.split('-')[1]} connections", hatch=hatch,
                      color=[COLORS.get(n, "#333") for n in names], edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("deliveries/s (2xx after the broker's ack)")
    ax.set_title("Closed-loop throughput, 64 and 256 connections (hatched: 256)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.18)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.svg", metadata={"Date": None})
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.6))
    plotted = False
    for s in systems:
        runs = open_runs(s)
        if not runs:
            continue
        xs = [r["offered_rate"] for r in runs]
        for q, style in (("p50", "--"), ("p99", "-")):
            ys = [lat(r, q) for r in runs]
            pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", markersize=3, color=COLORS.get(s["name"], "#333"),
                        label=f"{s['name']} {q}")
                plotted = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("offered rate (requests/s, open loop)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title("Open-loop latency versus offered rate (solid p99, dashed p50)")
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "systems": systems, "failures": failures}, indent=1) + "\n")
    md = markdown(meta, systems, failures)
    (args.out / "results.md").write_text(md)
    charts(systems, args.out)
    # The throughput table on stdout, for logs.
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("## Throughput"))
    end = next(i for i in range(start + 2, len(lines)) if not lines[i].startswith("|"))
    print("\n".join(lines[start:end]))


if __name__ == "__main__":
    main()
