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
# with a distinct id and a distinct, correctly signed X-AUTHVIA-VALUE per request. Runs per system:
# closed loop at 64 and 256 connections; open loop at 1,000/s and at 25 %, 50 %, 75 % of the
# system's own 64-connection rate. Each run checks that every 2xx answer is in Kafka. Then
# benches/loadgen/report.py writes results.md, results.json, throughput.svg and latency.svg.
#
#   benches/compare.sh [--smoke] [--duration S] [--warmup S] [--out DIR] [--systems LIST] [--keep-work]
#
#   --smoke          2 s runs, one open-loop rate (50 % of max), results in a temp dir; the debug
#                    binaries unless BP_RELAY_BENCH_PROFILE says otherwise (scripts/bench-smoke.sh)
#   --duration S     measured seconds per run (default 20, smoke 2; env BP_RELAY_BENCH_DURATION)
#   --warmup S       unmeasured seconds before each run, same load (default 2, smoke 0.5;
#                    env BP_RELAY_BENCH_WARMUP)
#   --out DIR        where the results go (default docs/benchmarks; smoke: a new temp dir)
#   --systems LIST   comma-separated subset of bp-relay,go,python,http-bound,kafka-bound
#   --keep-work      keep the work dir (process logs, raw run files) even on success
#
# Environment:
#   BP_RELAY_BENCH_PROFILE      release (default) or debug: which target/<profile> binaries
#   BP_RELAY_BENCH_BUILD=0      do not run cargo build; use the binaries as they are
#   BP_RELAY_BIN, BP_RELAY_HTTP_BOUND_BIN, BP_RELAY_KAFKA_BOUND_BIN   binaries to use instead
#   BP_RELAY_BENCH_KAFKA_PORT   broker port (default 19092; controller +1); not the test broker's
#   BP_RELAY_BENCH_PORT_BASE    first of six HTTP ports on 127.0.0.1 (default 19180)
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
  BP_RELAY_BENCH_KAFKA_JVM_OPTS BP_RELAY_KAFKA_JVM_OPTS BP_RELAY_BIN BP_RELAY_HTTP_BOUND_BIN BP_RELAY_KAFKA_BOUND_BIN RUST_LOG; do
  if [[ -n "${!v+set}" ]]; then printf '%s=%q ' "$v" "${!v}"; fi
done)benches/compare.sh${*:+ $*}"

# --- Options ----------------------------------------------------------------------------------

SMOKE=0
DURATION="${BP_RELAY_BENCH_DURATION:-}"
WARMUP="${BP_RELAY_BENCH_WARMUP:-}"
OUT=""
SYSTEMS="bp-relay,go,python,http-bound,kafka-bound"
KEEP_WORK=0
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --duration) DURATION="${2:?--duration needs seconds}"; shift 2 ;;
    --warmup) WARMUP="${2:?--warmup needs seconds}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --systems) SYSTEMS="${2:?--systems needs a list}"; shift 2 ;;
    --keep-work) KEEP_WORK=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ((SMOKE)); then
  DURATION="${DURATION:-2}"
  WARMUP="${WARMUP:-0.5}"
  PROFILE="${BP_RELAY_BENCH_PROFILE:-debug}"
else
  DURATION="${DURATION:-20}"
  WARMUP="${WARMUP:-2}"
  PROFILE="${BP_RELAY_BENCH_PROFILE:-release}"
fi
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare.sh: --duration must be seconds, got '$DURATION'" >&2; exit 2; }
[[ "$WARMUP" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "compare.sh: --warmup must be seconds, got '$WARMUP'" >&2; exit 2; }
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
  printf '  "command": %s,\n' "$(printf '%s' "$COMMAND_LINE" | jq -Rs .)"
  printf '  "started_at": "%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '}\n'
} >"$WORK/meta.json"
jq -e . "$WORK/meta.json" >/dev/null

# --- Runs -------------------------------------------------------------------------------------

# One load run against an HTTP system: run_load SYSTEM LABEL PORT PID CHECK_TOPICS LOADGEN-ARGS...
# Appends its JSON line to $WORK/runs/SYSTEM.jsonl and prints it.
run_load() {
  local sys="$1" label="$2" port="$3" pid="$4" topics="$5"
  shift 5
  local check=(--brokers "$BROKERS" --check-topics "$topics")
  [[ -z "$topics" ]] && check=(--no-check)
  local limit=$(((WARMUP_MS + DURATION_MS) / 1000 + 90))
  local line
  if ! line="$(LOADGEN_SECRET="$SECRET" timeout "$limit" "$LOADGEN" run --system "$sys" --label "$label" \
    --url "http://127.0.0.1:$port/webhooks/business-processes" --samples 'docs/examples/bp-*.json' \
    --duration "${DURATION_MS}ms" --warmup "${WARMUP_MS}ms" --pid "$pid" --broker-pid "$BROKER_PID" \
    "${check[@]}" "$@" 2>>"$WORK/logs/loadgen.log")"; then
    tail -n 5 "$WORK/logs/loadgen.log" >&2
    return 1
  fi
  printf '%s\n' "$line" >>"$WORK/runs/$sys.jsonl"
  printf '%s\n' "$line"
}

summary() { # one line per run, for the log
  jq -r '"\(.system) \(.label): \(.deliveries_per_s|floor)/s p50 \(.latency_ms.p50 // "-") ms p99 \(.latency_ms.p99 // "-") ms, status \(.status|tostring), cpu/10k \(.cpu_s_per_10k // "-" | tostring | .[0:5]) s, check \(if .check.done then (if .check.ok then "ok" else "FAILED" end) else "n/a" end)"'
}

# Judges a run line: a run without any 2xx, or with a failed check, is a failure.
judge() {
  local sys="$1" line="$2"
  printf '%s\n' "$line" | summary >&2
  if [[ "$(jq -r '.ok' <<<"$line")" == 0 ]]; then
    fail "$sys $(jq -r .label <<<"$line"): no 2xx answer ($(jq -r '.first_error // "no error recorded"' <<<"$line"))"
  fi
  if [[ "$(jq -r '.check.done and (.check.ok | not)' <<<"$line")" == true ]]; then
    fail "$sys $(jq -r .label <<<"$line"): a 2xx is not in Kafka: $(jq -c '.check.problems' <<<"$line")"
  fi
}

# The run plan of one HTTP system whose server runs as pid $3 on port $2.
run_plan() {
  local sys="$1" port="$2" pid="$3" topics="$4" line max
  line="$(run_load "$sys" closed-64 "$port" "$pid" "$topics" --mode closed --connections 64)" ||
    { fail "$sys closed-64: the load generator broke (see $WORK/logs/loadgen.log)"; return 1; }
  judge "$sys" "$line"
  max="$(jq -r '.deliveries_per_s' <<<"$line")"
  line="$(run_load "$sys" closed-256 "$port" "$pid" "$topics" --mode closed --connections 256)" ||
    { fail "$sys closed-256: the load generator broke"; return 1; }
  judge "$sys" "$line"
  local rates=()
  if ((SMOKE)); then
    rates=("open-50pct:$(awk -v m="$max" 'BEGIN { r = int(m * 0.5); print (r < 1 ? 1 : r) }')")
  else
    rates=("open-1000:1000")
    for pct in 25 50 75; do
      rates+=("open-${pct}pct:$(awk -v m="$max" -v p="$pct" 'BEGIN { r = int(m * p / 100); print (r < 1 ? 1 : r) }')")
    done
  fi
  local spec label rate
  for spec in "${rates[@]}"; do
    label="${spec%%:*}"
    rate="${spec#*:}"
    line="$(run_load "$sys" "$label" "$port" "$pid" "$topics" --mode open --rate "$rate")" ||
      { fail "$sys $label: the load generator broke"; return 1; }
    judge "$sys" "$line"
  done
}

# Records idle (before load) or peak (after) memory of a system: mem SYSTEM PID idle|peak
mem() {
  "$LOADGEN" proc --pid "$2" >"$WORK/runs/$1.$3.json" 2>>"$WORK/logs/loadgen.log" || true
}

# Starts a server in its own session (its pid is the group id): start SYSTEM LOG CMD...
start_server() {
  local sys="$1" log="$2"
  shift 2
  setsid "$@" </dev/null >"$log" 2>&1 &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
}

http_answers() { curl -s -o /dev/null --max-time 2 "$1"; } # any HTTP answer at all
readyz() { curl -fs -o /dev/null --max-time 2 "$1"; }

# bench_http SYSTEM PORT READY_URL CHECK_TOPICS: waits for readiness, runs the plan, stops it.
bench_http() {
  local sys="$1" port="$2" ready="$3" topics="$4" rc
  local probe=http_answers
  [[ "$ready" == */readyz || "$ready" == */healthz ]] && probe=readyz
  wait_for 60 "$SERVER_PID" "$probe" "$ready" && rc=0 || rc=$?
  if ((rc != 0)); then
    fail "$sys did not become ready within 60 s ($([[ $rc == 2 ]] && echo exited || echo timeout)); log: $WORK/logs/$sys.log"
    tail -n 20 "$WORK/logs/$sys.log" >&2 || true
    stop_group "$SERVER_PID" 10
    return 0
  fi
  mem "$sys" "$SERVER_PID" idle
  say "$sys ready on 127.0.0.1:$port (pid $SERVER_PID); runs of ${DURATION}s after ${WARMUP}s warm-up"
  run_plan "$sys" "$port" "$SERVER_PID" "$topics" || true
  mem "$sys" "$SERVER_PID" peak
  alive "$SERVER_PID" || fail "$sys exited during the runs; log: $WORK/logs/$sys.log"
  stop_group "$SERVER_PID" 30
}

topics() { "$LOADGEN" topics --brokers "$BROKERS" --partitions 6 "$@" 2>>"$WORK/logs/loadgen.log"; }

# bp-relay and its HTTP bound: the same flags, as a user runs the relay.
bench_relay() {
  local sys="$1" bin="$2" port="$3" admin="$4"
  local t="bench.$sys.$RUN_ID"
  if [[ ! -x "$bin" ]]; then
    fail "$sys: $bin does not exist (build it, or set BP_RELAY_BENCH_BUILD / BP_RELAY_BIN)"
    return 0
  fi
  topics "$t.bp" "$t.actions" "$t.dead-letter" || { fail "$sys: could not create its topics"; return 0; }
  start_server "$sys" "$WORK/logs/$sys.log" env RUST_LOG="${RUST_LOG:-info}" "$bin" \
    --kafka-brokers "$BROKERS" --signing-secrets "$SECRET" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --topic "$t.bp" --actions-topic "$t.actions" --dead-letter-topic "$t.dead-letter" --log-format json
  local check="$t.bp,$t.dead-letter" ready="http://127.0.0.1:$admin/readyz"
  if [[ "$sys" == http-bound ]]; then
    check=""                                    # it writes nothing: no Kafka check
    ready="http://127.0.0.1:$admin/healthz"     # never connects to a broker: never "ready"
  fi
  bench_http "$sys" "$port" "$ready" "$check"
}

for sys in ${SYSTEMS//,/ }; do
  case "$sys" in
    bp-relay)
      say "== bp-relay ($RELAY_BIN)"
      bench_relay bp-relay "$RELAY_BIN" "$PORT_BASE" "$((PORT_BASE + 1))"
      ;;
    go)
      say "== go peer (net/http + franz-go)"
      t="bench.go.$RUN_ID.bp"
      if topics "$t"; then
        start_server go "$WORK/logs/go.log" env SIGNING_SECRET="$SECRET" "$WORK/bin/peer-go" \
          --listen "127.0.0.1:$((PORT_BASE + 2))" --brokers "$BROKERS" --topic "$t"
        bench_http go "$((PORT_BASE + 2))" "http://127.0.0.1:$((PORT_BASE + 2))/" "$t"
      else
        fail "go: could not create its topic"
      fi
      ;;
    python)
      say "== python peer (FastAPI + uvicorn, 2 workers + confluent-kafka)"
      t="bench.python.$RUN_ID.bp"
      if topics "$t"; then
        start_server python "$WORK/logs/python.log" env PYTHONDONTWRITEBYTECODE=1 SIGNING_SECRET="$SECRET" KAFKA_BROKERS="$BROKERS" TOPIC="$t" \
          "$VENV/bin/uvicorn" app:app --app-dir "$ROOT/benches/peers/python" --host 127.0.0.1 \
          --port "$((PORT_BASE + 3))" --workers 2 --no-access-log
        bench_http python "$((PORT_BASE + 3))" "http://127.0.0.1:$((PORT_BASE + 3))/" "$t"
      else
        fail "python: could not create its topic"
      fi
      ;;
    http-bound)
      # A bound that was not built is a failure, not a skip: the comparison needs it.
      [[ -x "$HTTP_BOUND_BIN" ]] || { fail "http-bound: $HTTP_BOUND_BIN does not exist (build it, or unset BP_RELAY_BENCH_BUILD=0)"; continue; }
      say "== http-bound ($HTTP_BOUND_BIN: bp-relay whose publisher answers at once)"
      bench_relay http-bound "$HTTP_BOUND_BIN" "$((PORT_BASE + 4))" "$((PORT_BASE + 5))"
      ;;
    kafka-bound)
      # A bound that was not built is a failure, not a skip: the comparison needs it.
      [[ -x "$KAFKA_BOUND_BIN" ]] || { fail "kafka-bound: $KAFKA_BOUND_BIN does not exist (build it, or unset BP_RELAY_BENCH_BUILD=0)"; continue; }
      say "== kafka-bound ($KAFKA_BOUND_BIN: the relay's producer settings and records, no HTTP)"
      t="bench.kafka-bound.$RUN_ID.bp"
      topics "$t" || { fail "kafka-bound: could not create its topic"; continue; }
      for n in 64 256; do
        if line="$(timeout $(((WARMUP_MS + DURATION_MS) / 1000 + 90)) "$KAFKA_BOUND_BIN" --brokers "$BROKERS" \
          --topic "$t" --inflight "$n" --duration "${DURATION_MS}ms" --warmup "${WARMUP_MS}ms" \
          --label "closed-$n" 2>>"$WORK/logs/kafka-bound.log")"; then
          printf '%s\n' "$line" >>"$WORK/runs/kafka-bound.jsonl"
          judge kafka-bound "$line"
        else
          fail "kafka-bound closed-$n: the binary failed (see $WORK/logs/kafka-bound.log)"
          tail -n 20 "$WORK/logs/kafka-bound.log" >&2 || true
          break
        fi
      done
      ;;
    *) fail "unknown system '$sys' in --systems" ;;
  esac
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
