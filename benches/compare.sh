#!/usr/bin/env bash
# bp-relay against the relays a team would write by hand, and against the two upper bounds, on one
# machine, against one real Kafka broker (scripts/kafka.sh, KRaft), back to back:
#
#   bp-relay     target/<profile>/bp-relay, default flags plus ports, brokers, secret, topics
#   go           benches/peers/go: net/http + franz-go (acks=all, idempotent, lz4, linger 5ms, murmur2)
#   python       benches/peers/python: FastAPI + uvicorn (2 workers) + confluent-kafka (same settings)
#   http-bound   target/<profile>/bp-relay-http-bound: bp-relay whose publisher answers at once
#   kafka-bound  target/<profile>/bp-relay-kafka-bound: the relay's producer and records, no HTTP
#
# Every HTTP system gets the same load from benches/loadgen: the samples docs/examples/bp-*.json
# with a distinct id and a distinct, correctly signed X-AUTHVIA-VALUE per request. The runs, each on
# a fresh process of the system, interleaved (for rep in 1..N, for each system, for each load):
#   1. closed loop at 64 and 256 connections (the Kafka bound: as many records in flight);
#   2. open loop at the same absolute rates for every system: 1,000/s, 4,000/s, 8,000/s and 75 % of
#      the slowest HTTP system's (bp-relay, go, python) median closed-loop rate at 64 connections.
# Each run records the system's process CPU and the broker's CPU over the measured window, checks
# that every 2xx answer is in Kafka, and (bp-relay, http-bound) reads the admin /metrics after the
# run: bp_relay_replay_guard_refusals_total must be 0, the guard being sized for the run with
# --replay-capacity (rate × (warm-up + duration) × 1.25 + 16,384). Latency percentiles count every
# non-2xx answer, transport error and dropped arrival (over 4,096 outstanding) as a failure at the
# request timeout (10 s). Then benches/loadgen/report.py writes results.md, results.json (every run,
# and per system and load the median, minimum and maximum), throughput.svg and latency.svg.
#
#   benches/compare.sh [--smoke] [--reps N] [--duration S] [--warmup S] [--open-rates LIST]
#                      [--out DIR] [--systems LIST] [--keep-work]
#
#   --smoke          1 rep of 2 s runs, open loop at 500/s and the 75 % rate only, results in a
#                    temp dir; the debug binaries unless BP_RELAY_BENCH_PROFILE says otherwise
#                    (scripts/bench-smoke.sh)
#   --reps N         interleaved repetitions of every run (default 5, smoke 1; env BP_RELAY_BENCH_REPS)
#   --duration S     measured seconds per run (default 20, smoke 2; env BP_RELAY_BENCH_DURATION)
#   --warmup S       unmeasured seconds before each run, same load (default 2, smoke 0.5;
#                    env BP_RELAY_BENCH_WARMUP)
#   --open-rates L   open-loop rates, per second or 75pct (default 1000,4000,8000,75pct; smoke
#                    500,75pct; env BP_RELAY_BENCH_OPEN_RATES)
#   --out DIR        where the results go (default docs/benchmarks; smoke: a new temp dir)
#   --systems LIST   comma-separated subset of bp-relay,go,python,http-bound,kafka-bound
#   --keep-work      keep the work dir (process logs, raw run files) even on success
#
# Environment:
#   BP_RELAY_BENCH_PROFILE      release (default) or debug: which target/<profile> binaries
#   BP_RELAY_BENCH_BUILD=0      do not run cargo build; use the binaries as they are
#   BP_RELAY_BIN, BP_RELAY_HTTP_BOUND_BIN, BP_RELAY_KAFKA_BOUND_BIN   binaries to use instead
#   BP_RELAY_BENCH_KAFKA_PORT   broker port (default 19092; controller +1); not the test broker's
#   BP_RELAY_BENCH_PORT_BASE    first of six HTTP ports on 127.0.0.1 (default 19180; keep them below
#                               the ephemeral range, /proc/sys/net/ipv4/ip_local_port_range)
#   BP_RELAY_BENCH_GUARD_RATE   the closed-loop rate the replay guard is sized for (default 50000;
#                               http-bound 100000); a run faster than that fails with guard refusals
#   BP_RELAY_BENCH_BROKER_WARMUP   seconds of flat-out producing before the first system
#                               (default 20, smoke 3; 0: none)
#   BP_RELAY_BENCH_KAFKA_JVM_OPTS  extra broker JVM flags (default -XX:TieredStopAtLevel=4: the
#                               full JIT; scripts/kafka.sh stops at C1 for quick test starts)
#   BP_RELAY_CACHE              cache root (default ~/.cache/bp-relay): Kafka jars, the venv
#
# Needs: Go (>= 1.26; modules come from the Go module proxy), Python 3 with venv (packages from
# PyPI, pinned), Java 17+ and Maven (scripts/kafka.sh), curl, the Rust toolchain unless
# BP_RELAY_BENCH_BUILD=0. All traffic goes to 127.0.0.1. Every process it starts is stopped on
# exit (trap); every wait polls a condition with a deadline. Exits non-zero if a system failed to
# start or run, or any run's "every 2xx is in Kafka" check failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd -P)"
# The command as run, with the settings that change what it measures.
COMMAND_LINE="$(for v in BP_RELAY_BENCH_PROFILE BP_RELAY_BENCH_DURATION BP_RELAY_BENCH_WARMUP BP_RELAY_BENCH_BROKER_WARMUP \
  BP_RELAY_BENCH_REPS BP_RELAY_BENCH_OPEN_RATES BP_RELAY_BENCH_GUARD_RATE \
  BP_RELAY_BENCH_KAFKA_JVM_OPTS BP_RELAY_KAFKA_JVM_OPTS BP_RELAY_KAFKA_LINGER BP_RELAY_BIN BP_RELAY_HTTP_BOUND_BIN BP_RELAY_KAFKA_BOUND_BIN RUST_LOG; do
  if [[ -n "${!v+set}" ]]; then printf '%s=%q ' "$v" "${!v}"; fi
done)benches/compare.sh${*:+ $*}"

# --- Options ----------------------------------------------------------------------------------

SMOKE=0
DURATION="${BP_RELAY_BENCH_DURATION:-}"
WARMUP="${BP_RELAY_BENCH_WARMUP:-}"
OUT=""
SYSTEMS="bp-relay,go,python,http-bound,kafka-bound"
KEEP_WORK=0
REPS="${BP_RELAY_BENCH_REPS:-}"
OPEN_RATES="${BP_RELAY_BENCH_OPEN_RATES:-}"
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --duration) DURATION="${2:?--duration needs seconds}"; shift 2 ;;
    --warmup) WARMUP="${2:?--warmup needs seconds}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --systems) SYSTEMS="${2:?--systems needs a list}"; shift 2 ;;
    --keep-work) KEEP_WORK=1; shift ;;
    --reps) REPS="${2:?--reps needs a count}"; shift 2 ;;
    --open-rates) OPEN_RATES="${2:?--open-rates needs a list}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ((SMOKE)); then
  DURATION="${DURATION:-2}"
  WARMUP="${WARMUP:-0.5}"
  REPS="${REPS:-1}"
  OPEN_RATES="${OPEN_RATES:-500,75pct}"
  PROFILE="${BP_RELAY_BENCH_PROFILE:-debug}"
else
  DURATION="${DURATION:-20}"
  WARMUP="${WARMUP:-2}"
  REPS="${REPS:-5}"
  OPEN_RATES="${OPEN_RATES:-1000,4000,8000,75pct}"
  PROFILE="${BP_RELAY_BENCH_PROFILE:-release}"
fi
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare.sh: --duration must be seconds, got '$DURATION'" >&2; exit 2; }
[[ "$WARMUP" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare.sh: --warmup must be seconds, got '$WARMUP'" >&2; exit 2; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --reps must be a positive count, got '$REPS'" >&2; exit 2; }
[[ "$OPEN_RATES" =~ ^(([1-9][0-9]*|75pct)(,|$))+$ ]] || { echo "compare.sh: --open-rates must be a comma-separated list of rates per second or 75pct, got '$OPEN_RATES'" >&2; exit 2; }
[[ "$PROFILE" == release || "$PROFILE" == debug ]] || { echo "compare.sh: BP_RELAY_BENCH_PROFILE must be release or debug" >&2; exit 2; }
DURATION_MS="$(awk -v s="$DURATION" 'BEGIN { printf "%d", s * 1000 }')"
WARMUP_MS="$(awk -v s="$WARMUP" 'BEGIN { printf "%d", s * 1000 }')"
((DURATION_MS > 0)) || { echo "compare.sh: --duration must be positive" >&2; exit 2; }

CACHE_DIR="${BP_RELAY_CACHE:-${HOME:-/tmp}/.cache/bp-relay}"
KAFKA_PORT="${BP_RELAY_BENCH_KAFKA_PORT:-19092}"
PORT_BASE="${BP_RELAY_BENCH_PORT_BASE:-19180}"
BROKERS="127.0.0.1:$KAFKA_PORT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bp-relay-bench.XXXXXX")"
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/bin"
if [[ -z "$OUT" ]]; then
  if ((SMOKE)); then OUT="$(mktemp -d "${TMPDIR:-/tmp}/bp-relay-bench-smoke.XXXXXX")"; else OUT="$ROOT/docs/benchmarks"; fi
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd -P)"
RUN_ID="$(date +%s)"
SECRET="whsec_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

START_S=$SECONDS
say() { printf '[compare.sh +%ss] %s\n' "$((SECONDS - START_S))" "$*" >&2; }
FAILURES=()
fail() { FAILURES+=("$*"); say "FAILED: $*"; }

# --- Processes and cleanup --------------------------------------------------------------------

STARTED_PIDS=() # session leaders started by this script (setsid): their whole group is ours
BROKER_STARTED=0

# True while $1 runs and is not a zombie.
alive() {
  local state
  state="$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Stops process group $1 (TERM, then KILL after $2 seconds) and reaps it.
stop_group() {
  local pid="$1" grace="${2:-30}" deadline
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if alive "$pid"; then
    say "pid $pid still running after ${grace}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  # Stragglers of the group (e.g. uvicorn workers whose parent went first).
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "${STARTED_PIDS[@]}"; do stop_group "$pid" 10; done
  if ((BROKER_STARTED)); then
    "$ROOT/scripts/kafka.sh" stop --data-dir "$WORK/kafka" >/dev/null 2>&1 ||
      "$ROOT/scripts/kafka.sh" stop --data-dir "$WORK/kafka" --kill >/dev/null 2>&1
  fi
  if ((rc != 0 || KEEP_WORK)); then
    say "work dir kept: $WORK (process logs in $WORK/logs)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Polls command "$@" every 0.1 s until it succeeds, for at most $1 seconds, while pid $2 lives.
wait_for() {
  local limit="$1" pid="$2"
  shift 2
  local deadline=$((SECONDS + limit))
  while ((SECONDS < deadline)); do
    if [[ -n "$pid" ]] && ! alive "$pid"; then return 2; fi
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# --- Tools ------------------------------------------------------------------------------------

need() { command -v "$1" >/dev/null 2>&1 || { echo "compare.sh: '$1' not found on PATH ($2)" >&2; exit 1; }; }
need go "Go 1.26+ builds the load generator and the Go peer"
need python3 "the Python peer and the charts"
need curl "readiness probes"
need java "the Kafka broker (scripts/kafka.sh)"
need jq "JSON handling"

for p in "$KAFKA_PORT" "$((KAFKA_PORT + 1))" $(seq "$PORT_BASE" "$((PORT_BASE + 5))"); do
  if port_open "$p"; then
    echo "compare.sh: port 127.0.0.1:$p is in use (BP_RELAY_BENCH_KAFKA_PORT / BP_RELAY_BENCH_PORT_BASE pick others)" >&2
    exit 1
  fi
done

# Every run starts its system afresh, so its port is bound many times during a run: a port inside
# the kernel's ephemeral range can meanwhile be the local end of some outgoing connection (the load
# generator's own, thousands in an open loop), and the bind then fails.
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LO="" EPH_HI=""
if [[ -n "$EPH_LO" ]] && ((PORT_BASE + 5 >= EPH_LO && PORT_BASE <= EPH_HI)); then
  say "warning: HTTP ports $PORT_BASE-$((PORT_BASE + 5)) lie in the ephemeral range $EPH_LO-$EPH_HI: a start can fail with 'Address already in use' (set BP_RELAY_BENCH_PORT_BASE below $EPH_LO)"
fi

say "building the load generator and the Go peer (modules from the Go module proxy)"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
(cd benches/loadgen && go build -o "$WORK/bin/loadgen" .)
(cd benches/peers/go && go build -o "$WORK/bin/peer-go" .)
LOADGEN="$WORK/bin/loadgen"

# One venv for the Python peer and the charts, rebuilt when a requirements file or Python changes.
VENV="$CACHE_DIR/bench-venv"
REQS=(benches/peers/python/requirements.txt benches/loadgen/requirements-report.txt)
venv_key="$({ python3 --version; cat "${REQS[@]}"; } | sha256sum | cut -c1-16)"
if [[ "$(cat "$VENV/.bench-key" 2>/dev/null)" != "$venv_key" ]]; then
  say "installing the Python peer and chart packages into $VENV (pinned, from PyPI)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check --no-input -q $(printf -- '-r %s ' "${REQS[@]}")
  printf '%s\n' "$venv_key" >"$VENV/.bench-key"
fi

# The Rust binaries. cargo only rebuilds what changed; BP_RELAY_BENCH_BUILD=0 skips it.
cargo_flags=(--locked)
[[ "$PROFILE" == release ]] && cargo_flags+=(--release)
build() { # build BIN [FEATURES]
  [[ "${BP_RELAY_BENCH_BUILD:-1}" == 0 ]] && return 0
  need cargo "to build $1 (or set BP_RELAY_BENCH_BUILD=0)"
  say "cargo build ${cargo_flags[*]} ${2:+--features $2 }--bin $1"
  cargo build "${cargo_flags[@]}" ${2:+--features "$2"} --bin "$1" >"$WORK/logs/cargo-$1.log" 2>&1 ||
    { tail -n 30 "$WORK/logs/cargo-$1.log" >&2; return 1; }
}
RELAY_BIN="${BP_RELAY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/bp-relay}"
HTTP_BOUND_BIN="${BP_RELAY_HTTP_BOUND_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/bp-relay-http-bound}"
KAFKA_BOUND_BIN="${BP_RELAY_KAFKA_BOUND_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/bp-relay-kafka-bound}"
want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
if want bp-relay && [[ -z "${BP_RELAY_BIN:-}" ]]; then build bp-relay || fail "bp-relay: cargo build failed"; fi
for pair in "http-bound:bp-relay-http-bound:HTTP_BOUND_BIN" "kafka-bound:bp-relay-kafka-bound:KAFKA_BOUND_BIN"; do
  IFS=: read -r sys bin var <<<"$pair"
  want "$sys" || continue
  env_var="BP_RELAY_${var/_BIN/}_BIN"
  [[ -n "${!env_var:-}" ]] && continue
  build "$bin" bench || fail "$sys: cargo build --features bench --bin $bin failed"
done

# --- Broker -----------------------------------------------------------------------------------

say "starting Kafka on $BROKERS (scripts/kafka.sh, data in $WORK/kafka)"
BROKER_STARTED=1
BP_RELAY_KAFKA_JVM_OPTS="${BP_RELAY_KAFKA_JVM_OPTS:-} ${BP_RELAY_BENCH_KAFKA_JVM_OPTS--XX:TieredStopAtLevel=4}" \
  "$ROOT/scripts/kafka.sh" start --port "$KAFKA_PORT" --data-dir "$WORK/kafka" 2>"$WORK/logs/kafka-start.log" ||
  { cat "$WORK/logs/kafka-start.log" >&2; exit 1; }
BROKER_PID="$(cat "$WORK/kafka/kafka.pid")"
# A fresh JVM is slow until its JIT has compiled the produce path: warm it up before the first
# system, so that the order of the systems matters less.
BROKER_WARMUP_S="${BP_RELAY_BENCH_BROKER_WARMUP:-$( ((SMOKE)) && echo 3 || echo 20)}"
if ((BROKER_WARMUP_S > 0)); then
  say "warming the broker up for ${BROKER_WARMUP_S}s"
  "$LOADGEN" topics --brokers "$BROKERS" --partitions 6 "bench.warmup.$RUN_ID" 2>>"$WORK/logs/loadgen.log" &&
    timeout $((BROKER_WARMUP_S + 60)) "$LOADGEN" warm-broker --brokers "$BROKERS" --topic "bench.warmup.$RUN_ID" \
      --duration "${BROKER_WARMUP_S}s" 2>>"$WORK/logs/loadgen.log" ||
    { tail -n 5 "$WORK/logs/loadgen.log" >&2; fail "broker: the warm-up could not produce"; exit 1; }
fi

# --- Machine description ----------------------------------------------------------------------

KAFKA_VERSION="$(basename "$(ls "$CACHE_DIR"/kafka-*/libs/kafka_2.13-*.jar 2>/dev/null | grep -v -- '-test' | head -n 1)" .jar | sed 's/^kafka_2.13-//')"
{
  printf '{\n'
  printf '  "cpu": %s,\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' | jq -Rs 'rtrimstr("\n")' 2>/dev/null || echo '"?"')"
  printf '  "nproc": %s,\n' "$(nproc)"
  printf '  "memory": %s,\n' "$(free -h | awk '/^Mem:/ {print $2}' | jq -Rs 'rtrimstr("\n")')"
  printf '  "free": %s,\n' "$(free -h | jq -Rs .)"
  printf '  "kernel": %s,\n' "$(uname -srm | jq -Rs 'rtrimstr("\n")')"
  printf '  "go": %s,\n' "$(go version | jq -Rs 'rtrimstr("\n")')"
  printf '  "python": %s,\n' "$(python3 --version 2>&1 | jq -Rs 'rtrimstr("\n")')"
  printf '  "rustc": %s,\n' "$( (rustc --version 2>/dev/null || echo unknown) | jq -Rs 'rtrimstr("\n")')"
  printf '  "java": %s,\n' "$(java -version 2>&1 | head -n 1 | jq -Rs 'rtrimstr("\n")')"
  printf '  "kafka": %s,\n' "$(printf 'Apache Kafka %s (KRaft, scripts/kafka.sh, one node, JVM extra: %s)' "${KAFKA_VERSION:-?}" "${BP_RELAY_BENCH_KAFKA_JVM_OPTS--XX:TieredStopAtLevel=4}" | jq -Rs .)"
  printf '  "librdkafka_rust": %s,\n' "$(grep -A1 '^name = "rdkafka-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/rdkafka-sys \1/p' | jq -Rs 'rtrimstr("\n")')"
  printf '  "librdkafka_python": %s,\n' "$("$VENV/bin/python" -c 'import confluent_kafka as c; v = c.version(); v = v[0] if isinstance(v, tuple) else v; print("confluent-kafka %s, librdkafka %s" % (v, c.libversion()[0]))' | jq -Rs 'rtrimstr("\n")')"
  printf '  "franz_go": %s,\n' "$(awk '$1 == "github.com/twmb/franz-go" || ($1 == "require" && $2 == "github.com/twmb/franz-go") { print $NF == "indirect" ? $(NF-2) : $NF; exit }' benches/peers/go/go.mod | jq -Rs 'rtrimstr("\n")')"
  printf '  "git": %s,\n' "$( (git rev-parse --short HEAD 2>/dev/null || echo unknown) | jq -Rs 'rtrimstr("\n")')"
  printf '  "profile": "%s",\n' "$PROFILE"
  printf '  "smoke": %s,\n' "$( ((SMOKE)) && echo true || echo false)"
  printf '  "duration_s": %s,\n' "$DURATION"
  printf '  "warmup_s": %s,\n' "$WARMUP"
  printf '  "reps": %s,\n' "$REPS"
  printf '  "open_rates": "%s",\n' "$OPEN_RATES"
  printf '  "request_timeout_s": 10,\n'
  printf '  "command": %s,\n' "$(printf '%s' "$COMMAND_LINE" | jq -Rs .)"
  printf '  "started_at": "%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '}\n'
} >"$WORK/meta.json"
jq -e . "$WORK/meta.json" >/dev/null

# --- Runs -------------------------------------------------------------------------------------

# One load run against an HTTP system: run_load SYSTEM LABEL PORT PID CHECK_TOPICS LOADGEN-ARGS...
# Prints its JSON line (the caller adds the rep and the guard's figures, then records it).
run_load() {
  local sys="$1" label="$2" port="$3" pid="$4" topics="$5"
  shift 5
  local check=(--brokers "$BROKERS" --check-topics "$topics")
  [[ -z "$topics" ]] && check=(--no-check)
  local limit=$(((WARMUP_MS + DURATION_MS) / 1000 + 90))
  if ! LOADGEN_SECRET="$SECRET" timeout "$limit" "$LOADGEN" run --system "$sys" --label "$label" \
    --url "http://127.0.0.1:$port/webhooks/business-processes" --samples 'docs/examples/bp-*.json' \
    --duration "${DURATION_MS}ms" --warmup "${WARMUP_MS}ms" --pid "$pid" --broker-pid "$BROKER_PID" \
    "${check[@]}" "$@" 2>>"$WORK/logs/loadgen.log"; then
    tail -n 5 "$WORK/logs/loadgen.log" >&2
    return 1
  fi
}

summary() { # one line per run, for the log
  jq -r '"\(.system) rep \(.rep) \(.label): \(.deliveries_per_s|floor)/s p50 \(.latency_ms.p50 // "-") ms p99 \(.latency_ms.p99 // "-") ms, status \(.status|tostring)\(if (.drops // 0) > 0 then ", dropped \(.drops)" else "" end), cpu/delivery \(if .cpu_s and .ok > 0 then (.cpu_s / .ok * 1e6 | floor | tostring) + " µs" else "-" end), broker \(if .broker_cpu_s and .ok > 0 then (.broker_cpu_s / .ok * 1e6 | floor | tostring) + " µs" else "-" end)\(if .replay_guard then ", guard refusals \(.replay_guard.refusals // "?")" else "" end), check \(if .check.done then (if .check.ok then "ok" else "FAILED" end) else "n/a" end)"'
}

# Judges a run line: a run without any 2xx, with a failed check, or in which the replay guard
# refused a delivery (it was too small for the run) is a failure.
judge() {
  local sys="$1" line="$2" what
  printf '%s\n' "$line" | summary >&2
  what="$sys rep $(jq -r '.rep // 1' <<<"$line") $(jq -r .label <<<"$line")"
  if [[ "$(jq -r '.ok' <<<"$line")" == 0 ]]; then
    fail "$what: no 2xx answer ($(jq -r '.first_error // "no error recorded"' <<<"$line"))"
  fi
  if [[ "$(jq -r '.check.done and (.check.ok | not)' <<<"$line")" == true ]]; then
    fail "$what: a 2xx is not in Kafka: $(jq -c '.check.problems' <<<"$line")"
  fi
  case "$(jq -r 'if .replay_guard == null then "none" elif .replay_guard.refusals == null then "unread" else (.replay_guard.refusals | tostring) end' <<<"$line")" in
    none | 0) ;;
    unread) fail "$what: bp_relay_replay_guard_refusals_total could not be read from the admin /metrics" ;;
    *) fail "$what: the replay guard refused $(jq -r .replay_guard.refusals <<<"$line") deliveries (--replay-capacity $(jq -r .replay_guard.capacity <<<"$line") too small: raise BP_RELAY_BENCH_GUARD_RATE)" ;;
  esac
}

# Memory of a process tree now (JSON): mem PID
mem() { "$LOADGEN" proc --pid "$1" 2>>"$WORK/logs/loadgen.log" || echo '{}'; }

# Starts a server in its own session (its pid is the group id): start SYSTEM LOG CMD...
start_server() {
  local sys="$1" log="$2"
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
}

http_answers() { curl -s -o /dev/null --max-time 2 "$1"; } # any HTTP answer at all
readyz() { curl -fs -o /dev/null --max-time 2 "$1"; }

# Waits until the server $SERVER_PID of SYSTEM answers READY_URL: await_ready SYSTEM READY_URL
await_ready() {
  local sys="$1" ready="$2" rc probe=http_answers
  [[ "$ready" == */readyz || "$ready" == */healthz ]] && probe=readyz
  wait_for 60 "$SERVER_PID" "$probe" "$ready" && rc=0 || rc=$?
  if ((rc != 0)); then
    fail "$sys did not become ready within 60 s ($([[ $rc == 2 ]] && echo exited || echo timeout)); log: $WORK/logs/$sys.log"
    tail -n 20 "$WORK/logs/$sys.log" >&2 || true
    stop_group "$SERVER_PID" 10
    return 1
  fi
}

# A metric of a relay's admin /metrics (an unlabelled counter or gauge), empty if unread.
scrape() { curl -fs --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { printf "%d", $2; exit }'; }

topics() { "$LOADGEN" topics --brokers "$BROKERS" --partitions 6 "$@" 2>>"$WORK/logs/loadgen.log"; }

# Every system gets its topics once; each run's check compares the high watermarks before and after.
declare -A CHECK_TOPICS=()
prepare_topics() {
  local sys="$1" t="bench.$1.$RUN_ID"
  case "$sys" in
    bp-relay) topics "$t.bp" "$t.actions" "$t.dead-letter" && CHECK_TOPICS[$sys]="$t.bp,$t.dead-letter" ;;
    http-bound) topics "$t.bp" "$t.actions" "$t.dead-letter" && CHECK_TOPICS[$sys]="" ;; # writes nothing
    go | python | kafka-bound) topics "$t.bp" && CHECK_TOPICS[$sys]="$t.bp" ;;
    *) return 1 ;;
  esac
}

# The replay guard's size for one run of bp-relay or its HTTP bound: every signing of a run is
# still inside the window (2 × --signature-tolerance = 10 min, longer than any run) at its end, so
# the guard must hold all of them: the run's highest rate × (warm-up + duration), plus a quarter
# for the retries of the open loop and the unevenness of the 16 shards.
guard_capacity() { # guard_capacity RATE
  awk -v r="$1" -v s="$(((WARMUP_MS + DURATION_MS)))" 'BEGIN { printf "%d", r * s / 1000 * 1.25 + 16384 }'
}
# The highest closed-loop rate a guard is sized for (a run above it fails with guard refusals).
# Fixed rather than taken from an earlier rep, so that every rep's peak RSS carries the same guard.
closed_guard_rate() {
  case "$1" in
    http-bound) echo "${BP_RELAY_BENCH_GUARD_RATE:-100000}" ;;
    *) echo "${BP_RELAY_BENCH_GUARD_RATE:-50000}" ;;
  esac
}

# Starts an HTTP system for one run, sized for RATE deliveries/s: start_system SYSTEM RATE [default]
# Sets SERVER_PID, PORT, ADMIN (empty unless the system has an admin port), READY, CAPACITY.
start_system() {
  local sys="$1" rate="$2" flags="${3:-}"
  ADMIN="" CAPACITY=""
  case "$sys" in
    bp-relay | http-bound)
      local bin="$RELAY_BIN" t="bench.$sys.$RUN_ID" guard=()
      PORT="$PORT_BASE" ADMIN="$((PORT_BASE + 1))" READY="http://127.0.0.1:$((PORT_BASE + 1))/readyz"
      if [[ "$sys" == http-bound ]]; then
        bin="$HTTP_BOUND_BIN" PORT="$((PORT_BASE + 4))" ADMIN="$((PORT_BASE + 5))"
        READY="http://127.0.0.1:$ADMIN/healthz" # never connects to a broker: never "ready"
      fi
      if [[ "$flags" != default ]]; then
        CAPACITY="$(guard_capacity "$rate")"
        guard=(--replay-capacity "$CAPACITY")
      fi
      start_server "$sys" "$WORK/logs/$sys.log" env RUST_LOG="${RUST_LOG:-info}" "$bin" \
        --kafka-brokers "$BROKERS" --signing-secrets "$SECRET" \
        --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" \
        --topic "$t.bp" --actions-topic "$t.actions" --dead-letter-topic "$t.dead-letter" --log-format json "${guard[@]}"
      ;;
    go)
      PORT="$((PORT_BASE + 2))" READY="http://127.0.0.1:$((PORT_BASE + 2))/"
      start_server go "$WORK/logs/go.log" env SIGNING_SECRET="$SECRET" "$WORK/bin/peer-go" \
        --listen "127.0.0.1:$PORT" --brokers "$BROKERS" --topic "bench.go.$RUN_ID.bp"
      ;;
    python)
      PORT="$((PORT_BASE + 3))" READY="http://127.0.0.1:$((PORT_BASE + 3))/"
      start_server python "$WORK/logs/python.log" env PYTHONDONTWRITEBYTECODE=1 SIGNING_SECRET="$SECRET" \
        KAFKA_BROKERS="$BROKERS" TOPIC="bench.python.$RUN_ID.bp" \
        "$VENV/bin/uvicorn" app:app --app-dir "$ROOT/benches/peers/python" --host 127.0.0.1 \
        --port "$PORT" --workers 2 --no-access-log
      ;;
  esac
}

# One run of an HTTP system on a fresh process: bench_run SYSTEM REP LABEL RATE LOADGEN-ARGS...
# RATE sizes bp-relay's replay guard. Records the run's line (with its rep, idle RSS and guard
# figures) in $WORK/runs/SYSTEM.jsonl.
bench_run() {
  local sys="$1" rep="$2" label="$3" rate="$4"
  shift 4
  start_system "$sys" "$rate"
  await_ready "$sys" "$READY" || return 1
  local idle line refusals="" entries="" guard=null
  idle="$(mem "$SERVER_PID")"
  if ! line="$(run_load "$sys" "$label" "$PORT" "$SERVER_PID" "${CHECK_TOPICS[$sys]}" "$@")"; then
    fail "$sys rep $rep $label: the load generator broke (see $WORK/logs/loadgen.log)"
    stop_group "$SERVER_PID" 30
    return 1
  fi
  if [[ -n "$ADMIN" ]]; then
    refusals="$(scrape "$ADMIN" bp_relay_replay_guard_refusals_total)"
    entries="$(scrape "$ADMIN" bp_relay_replay_guard_entries)"
    guard="$(jq -nc --arg c "$CAPACITY" --arg r "$refusals" --arg e "$entries" \
      '{capacity: ($c | tonumber? // null), refusals: ($r | tonumber? // null), entries: ($e | tonumber? // null)}')"
  fi
  alive "$SERVER_PID" || fail "$sys rep $rep $label: the system exited during the run; log: $WORK/logs/$sys.log"
  stop_group "$SERVER_PID" 30
  line="$(jq -c --argjson rep "$rep" --argjson idle "$idle" --argjson guard "$guard" \
    '. + {rep: $rep, idle_rss_kb: ($idle.rss_kb // null), replay_guard: $guard}' <<<"$line")"
  printf '%s\n' "$line" >>"$WORK/runs/$sys.jsonl"
  judge "$sys" "$line"
}

# The Kafka bound's closed loops of one rep (no HTTP; the binary measures itself).
bench_kafka_bound() {
  local rep="$1" n line t="bench.kafka-bound.$RUN_ID.bp"
  local before after
  for n in 64 256; do
    # The bound measures its own CPU; the broker's is read here, over the bound's whole run.
    before="$(mem "$BROKER_PID")"
    if line="$(timeout $(((WARMUP_MS + DURATION_MS) / 1000 + 90)) "$KAFKA_BOUND_BIN" --brokers "$BROKERS" \
      --topic "$t" --inflight "$n" --duration "${DURATION_MS}ms" --warmup "${WARMUP_MS}ms" \
      --label "closed-$n" 2>>"$WORK/logs/kafka-bound.log")"; then
      after="$(mem "$BROKER_PID")"
      line="$(jq -c --argjson rep "$rep" --argjson a "$before" --argjson b "$after" \
        '. + {rep: $rep, broker_cpu_s_whole_run: (if $a.cpu_s and $b.cpu_s then $b.cpu_s - $a.cpu_s else null end)}' <<<"$line")"
      printf '%s\n' "$line" >>"$WORK/runs/kafka-bound.jsonl"
      judge kafka-bound "$line"
    else
      fail "kafka-bound rep $rep closed-$n: the binary failed (see $WORK/logs/kafka-bound.log)"
      tail -n 20 "$WORK/logs/kafka-bound.log" >&2 || true
      return 1
    fi
  done
}

# Which systems can run: built, with topics. A system that cannot is a failure, not a skip.
RUNNABLE=()
for sys in ${SYSTEMS//,/ }; do
  case "$sys" in
    bp-relay) bin="$RELAY_BIN" ;;
    http-bound) bin="$HTTP_BOUND_BIN" ;;
    kafka-bound) bin="$KAFKA_BOUND_BIN" ;;
    go | python) bin="" ;;
    *) fail "unknown system '$sys' in --systems"; continue ;;
  esac
  if [[ -n "$bin" && ! -x "$bin" ]]; then
    fail "$sys: $bin does not exist (build it, or set BP_RELAY_BENCH_BUILD / BP_RELAY_BIN)"
    continue
  fi
  prepare_topics "$sys" || { fail "$sys: could not create its topics"; continue; }
  RUNNABLE+=("$sys")
done
http_systems() { local s; for s in "${RUNNABLE[@]}"; do [[ "$s" != kafka-bound ]] && echo "$s"; done; }

# bp-relay's idle memory as a user starts it (default --replay-capacity), once per invocation.
if [[ " ${RUNNABLE[*]} " == *" bp-relay "* ]]; then
  start_system bp-relay 0 default
  if await_ready bp-relay "$READY"; then
    mem "$SERVER_PID" >"$WORK/runs/bp-relay.idle.json"
    stop_group "$SERVER_PID" 30
  fi
fi

# Closed loops first, interleaved: for each rep, each system, each concurrency. Each run on a fresh
# process, so each run's peak RSS and replay guard are its own.
for rep in $(seq 1 "$REPS"); do
  say "== closed loops, rep $rep of $REPS (${DURATION}s runs after ${WARMUP}s warm-up)"
  for sys in "${RUNNABLE[@]}"; do
    if [[ "$sys" == kafka-bound ]]; then
      bench_kafka_bound "$rep" || true
      continue
    fi
    for n in 64 256; do
      bench_run "$sys" "$rep" "closed-$n" "$(closed_guard_rate "$sys")" --mode closed --connections "$n" || true
    done
  done
done

# The open loops' rates: the same absolute rates for every system; "75pct" is 75 % of the slowest
# HTTP system's median closed-loop rate at 64 connections, among the peers and bp-relay (not the
# bounds): a high rate that every compared system can carry.
median_rate() { # median_rate SYSTEM LABEL
  [[ -s "$WORK/runs/$1.jsonl" ]] || return 0
  jq -s --arg l "$2" '[.[] | select(.label == $l) | .deliveries_per_s] | sort |
    if length == 0 then empty else (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) end' \
    "$WORK/runs/$1.jsonl"
}
SLOWEST="" SLOWEST_RATE=""
for sys in go python bp-relay; do
  [[ " ${RUNNABLE[*]} " == *" $sys "* ]] || continue
  r="$(median_rate "$sys" closed-64)"
  [[ -n "$r" ]] || continue
  if [[ -z "$SLOWEST_RATE" ]] || awk -v a="$r" -v b="$SLOWEST_RATE" 'BEGIN { exit !(a < b) }'; then
    SLOWEST="$sys" SLOWEST_RATE="$r"
  fi
done
OPEN=() # label:rate
for spec in ${OPEN_RATES//,/ }; do
  if [[ "$spec" == 75pct ]]; then
    if [[ -z "$SLOWEST_RATE" ]]; then fail "open-75pct: no HTTP system has a closed-loop rate at 64 connections"; continue; fi
    r="$(awk -v m="$SLOWEST_RATE" 'BEGIN { r = int(m * 0.75); print (r < 1 ? 1 : r) }')"
    printf 'open-75pct|%s|%s|%s\n' "$r" "$SLOWEST" "$SLOWEST_RATE" >>"$WORK/open-rates.txt"
    OPEN+=("open-75pct:$r")
    say "open-75pct: $r/s (75 % of $SLOWEST's median $(printf '%.0f' "$SLOWEST_RATE")/s at 64 connections)"
  else
    OPEN+=("open-$spec:$spec")
  fi
done

for rep in $(seq 1 "$REPS"); do
  say "== open loops, rep $rep of $REPS (${OPEN[*]})"
  for sys in $(http_systems); do
    for spec in "${OPEN[@]}"; do
      bench_run "$sys" "$rep" "${spec%%:*}" "${spec#*:}" --mode open --rate "${spec#*:}" || true
    done
  done
done

# --- Report -----------------------------------------------------------------------------------

printf '%s\n' "${FAILURES[@]}" >"$WORK/failures.txt"
say "writing the report into $OUT"
PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg MPLCONFIGDIR="$WORK/mpl" "$VENV/bin/python" benches/loadgen/report.py --work "$WORK" --out "$OUT" ||
  fail "the report could not be written"

if ((${#FAILURES[@]})); then
  say "${#FAILURES[@]} failure(s):"
  printf '  - %s\n' "${FAILURES[@]}" >&2
  exit 1
fi
say "done: $OUT/results.md"
