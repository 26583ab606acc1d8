#!/usr/bin/env python3
"""Where bp-relay's CPU goes, by thread, in each run of benches/compare.sh.

    benches/threads.py record SAMPLES.jsonl &      # while compare.sh runs; stop it with kill
    benches/compare.sh --systems bp-relay --reps 1 --duration 8 --out DIR
    benches/threads.py split SAMPLES.jsonl DIR/results.json

`record` reads /proc every 0.5 s: each bp-relay process's threads (name, user + system CPU) and
its minor page faults. `split` takes each run's measured window from results.json (its start,
warm-up and duration) and prints, per run, the CPU per delivery of each thread name (tokio's
workers, librdkafka's broker thread, and in builds before the delivery reports were served on the
runtime, rust-rdkafka's polling thread) and the minor page faults per delivery. Linux only; no dependencies beyond Python 3.
"""

import collections
import datetime
import json
import os
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INTERVAL_S = 0.5


def read_process(pid):
    """(per-thread CPU ticks by thread id, minor faults) of one bp-relay process, or None."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            # A copy of the binary under another name (bp-relay-new, say) counts too.
            if not comm.read().startswith("bp-relay"):
                return None
        threads = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                name, fields = split_stat(stat.read())
            threads[tid] = [name, int(fields[11]) + int(fields[12])]
        with open(f"/proc/{pid}/stat") as stat:
            _, fields = split_stat(stat.read())
        return {"threads": threads, "minflt": int(fields[7])}
    except (FileNotFoundError, ProcessLookupError):
        return None


def split_stat(text):
    """The name and the fields after it of a /proc stat line (names may hold spaces)."""
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def record(path):
    with open(path, "w") as out:
        while True:
            now = time.time()
            for pid in filter(str.isdigit, os.listdir("/proc")):
                process = read_process(pid)
                if process:
                    out.write(json.dumps({"t": now, "pid": pid, **process}) + "\n")
            out.flush()
            time.sleep(INTERVAL_S)


def split(samples_path, results_path):
    with open(samples_path) as samples_file:
        samples = [json.loads(line) for line in samples_file]
    with open(results_path) as results_file:
        systems = json.load(results_file)["systems"]
    for system in systems:
        for run in system["runs"]:
            report_run(system["name"], run, samples)


def report_run(system, run, samples):
    start = datetime.datetime.fromisoformat(run["started_at"].replace("Z", "+00:00")).timestamp()
    start += run["warmup_s"]
    end = start + run["duration_s"]
    inside = [s for s in samples if start <= s["t"] <= end]
    if len(inside) < 2 or inside[0]["pid"] != inside[-1]["pid"]:
        print(f"{system} {run['label']}: no samples of one process inside the run")
        return
    first, last = inside[0], inside[-1]
    deliveries = run["deliveries_per_s"] * (last["t"] - first["t"])
    by_name = collections.Counter()
    for tid, (name, ticks) in last["threads"].items():
        by_name[name] += ticks - first["threads"].get(tid, [name, 0])[1]
    per_delivery = {name: ticks / CLOCK_TICKS / deliveries * 1e6 for name, ticks in by_name.items()}
    faults = (last["minflt"] - first["minflt"]) / deliveries
    threads = ", ".join(f"{name} {us:.1f}" for name, us in sorted(per_delivery.items(), key=lambda kv: -kv[1]) if us >= 0.05)
    print(f"{system} {run['label']}: {sum(per_delivery.values()):.1f} µs per delivery ({threads}); {faults:.3f} minor faults per delivery")


def main(argv):
    if len(argv) == 3 and argv[1] == "record":
        record(argv[2])
    elif len(argv) == 4 and argv[1] == "split":
        split(argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
