#!/usr/bin/env bash
# The flamegraph of bp-relay under load: benches/compare.sh runs bp-relay alone against its own
# broker, and perf samples the relay (all threads, kernel included) during the closed-loop run
# at 64 connections. Writes docs/benchmarks/flamegraph.svg (or the path given).
#
#   benches/flamegraph.sh [OUT.svg]
#
# Needs perf (Debian linux-perf) and inferno (`cargo install inferno`); installs neither if
# absent, but says how. The release binary carries symbols but no debug info, so the relay's
# own frames are named without their callers' inlined chains; kernel stacks are whole.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-docs/benchmarks/flamegraph.svg}"
command -v perf >/dev/null || { echo "flamegraph.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }
command -v inferno-flamegraph >/dev/null || { echo "flamegraph.sh: needs inferno (cargo install inferno)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'kill "$compare" 2>/dev/null || true; wait "$compare" 2>/dev/null || true; rm -rf "$work"' EXIT
benches/compare.sh --systems bp-relay --reps 1 --open-rates 1000 --duration 12 --out "$work/report" >"$work/compare.log" 2>&1 &
compare=$!

# Wait (bounded) for the closed-loop run at 64 connections to start.
deadline=$((SECONDS + 600))
until pgrep -f "loadgen run --system bp-relay --label closed-64" >/dev/null; do
  kill -0 "$compare" 2>/dev/null || { cat "$work/compare.log" >&2; echo "flamegraph.sh: compare.sh ended early" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "flamegraph.sh: the 64-connection run did not start in 10 min" >&2; exit 1; }
  sleep 0.5
done
relay="$(pgrep -f -n "bp-relay --kafka-brokers")"
# Past the run's warm-up, inside its measured window.
sleep 3
perf record -F 499 -g -p "$relay" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf |
  inferno-flamegraph --title "bp-relay, closed loop at 64 connections against a real broker (perf -F 499 -g, 8 s)" \
    --countname samples >"$OUT"
wait "$compare"
echo "flamegraph.sh: wrote $OUT"
