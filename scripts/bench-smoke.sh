#!/usr/bin/env bash
# Smoke test of the benchmark: benches/compare.sh --smoke, i.e. every system (bp-relay, the Go
# and Python peers, the HTTP and Kafka bounds where they are built), one rep of 2 s per run (closed
# loop at 64 and 256 connections, open loop at 500/s and at the 75 % rate) against its own Kafka
# broker on 127.0.0.1:19092, with the "every 2xx is in Kafka" check and (bp-relay) the replay
# guard's refusal count after each run. The report goes to a temp dir (printed at the end), never
# to docs/benchmarks/.
#
#   scripts/bench-smoke.sh [more compare.sh options]
#
# Uses the debug binaries (target/debug, as `cargo test` leaves them) unless
# BP_RELAY_BENCH_PROFILE=release. Exits non-zero if any system failed its check, any runner broke
# (a system that does not start, a load generator or bound that fails, a run without any 2xx, a
# replay guard that refused a delivery), or the report could not be written. About a minute once the Go modules, the Python venv and
# the Kafka jars are cached (~/.cache/bp-relay, ~/go/pkg/mod).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BP_RELAY_BENCH_PROFILE="${BP_RELAY_BENCH_PROFILE:-debug}"
exec benches/compare.sh --smoke "$@"
