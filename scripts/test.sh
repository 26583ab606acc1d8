#!/usr/bin/env bash
# Runs bp-relay's whole test suite against a real Kafka broker.
#
#   scripts/test.sh [EXTRA CARGO TEST ARGS...]     e.g. scripts/test.sh -- outage --nocapture
#
# 1. Builds every test target (`cargo test --locked --all-targets --features kafka-tests
#    --no-run`, plus the cargo options given before a `--`). If that fails it stops there, with
#    the compiler's output, before any broker is started.
# 2. Makes sure a broker listens on 127.0.0.1:$BP_RELAY_TEST_KAFKA_PORT (default 9092): one already
#    reachable there is used and left running; otherwise scripts/kafka.sh starts a fresh one (empty
#    data dir) and this script stops it again when it is done, however it exits.
# 3. Runs `cargo test --locked --all-targets --features kafka-tests --no-fail-fast ARGS...` with, in
#    the environment:
#      BP_RELAY_TEST_KAFKA=127.0.0.1:<port>     bootstrap servers of that broker
#      BP_RELAY_KAFKA_SCRIPT=<abs path>          scripts/kafka.sh, for tests that start their own
#                                                broker (e.g. to stop and restart it for an outage)
#    The `kafka-tests` feature turns on the tests that need a real broker; plain `cargo test`
#    runs the others without one. Cargo's output is also written to a log file.
# 4. Runs the fault matrix (tests/faults): `cargo test --locked --features fault-tests --test
#    faults`, which starts a 3-node Kafka cluster of its own (client ports 19192.., clear of this
#    broker and the bench broker), breaks it scenario by scenario under load, and writes its table
#    to target/fault-matrix/summary.md (printed here). About 2.5 minutes. Built in step 1 too.
# 5. Runs the further checks listed in EXTRA_CHECKS below.
# 6. Stops the broker it started. If anything failed, prints the broker's ERROR/WARN lines (at
#    most 20; the tail of its log is saved to a file), then the failing tests with their output
#    (the `failures:` sections of cargo's logs). The summary (ok / FAILED per step) comes last.
# Exits non-zero if anything failed.
#
# Environment:
#   BP_RELAY_TEST_KAFKA_PORT      broker port (default 9092; the controller uses port+1)
#   BP_RELAY_TEST_KAFKA_DATA_DIR  data dir of a broker this script starts
#                                 (default ${TMPDIR:-/tmp}/bp-relay-test-kafka-<port>)
#   BP_RELAY_TEST_LOG_DIR         where cargo's logs and the broker log tail go
#                                 (default <data dir>/test-logs, overwritten by the next run)
#   BP_RELAY_TEST_FAULTS=0        skip the fault matrix (step 4), e.g. while iterating on one test
#   BP_RELAY_FAULTS_*             the fault matrix's own settings (see tests/faults/main.rs)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd -P)"
KAFKA_SCRIPT="$ROOT/scripts/kafka.sh"
PORT="${BP_RELAY_TEST_KAFKA_PORT:-9092}"
DATA_DIR="${BP_RELAY_TEST_KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/bp-relay-test-kafka-$PORT}"
LOG_DIR="${BP_RELAY_TEST_LOG_DIR:-$DATA_DIR/test-logs}"
CARGO_LOG="$LOG_DIR/cargo-test.log"
FAULTS_LOG="$LOG_DIR/cargo-test-faults.log"
FAULTS_SUMMARY="${CARGO_TARGET_DIR:-$ROOT/target}/fault-matrix/summary.md"
BROKER_LOG="$LOG_DIR/kafka-broker-tail.log"
CARGO_TEST=(cargo test --locked --all-targets --features kafka-tests)
FAULT_TEST=(cargo test --locked --features fault-tests --test faults)
RUN_FAULTS="${BP_RELAY_TEST_FAULTS:-1}"
BROKER_PROBLEM='^\[[^]]*\] (ERROR|WARN|FATAL) ' # kafka.sh's log4j pattern: [date] LEVEL message

# --- Extension point: further checks ----------------------------------------------------------
# Scripts (paths relative to the repo root) run in this order after cargo test, with the same
# environment (the broker is still up). Each one that exists and is executable runs; one that is
# absent, or not executable (chmod +x it!), is skipped with a note. Any that fails fails the run.
# Add yours here.
EXTRA_CHECKS=(
  scripts/check-style.sh    # cargo fmt --check (main crate, fuzz/) and cargo clippy --all-targets --all-features -D warnings
  scripts/check-asyncapi.sh # docs/asyncapi.yaml and its JSON Schemas, by a real AsyncAPI parser
  scripts/check-chart.sh    # the Helm chart under deploy/helm (lint, render, policy checks)
  scripts/bench-smoke.sh    # benches/compare.sh --smoke: every system, 2 s runs, so the script cannot rot
  scripts/check-deny.sh     # cargo deny: licences, banned and duplicate crates, sources (deny.toml)
  scripts/fuzz.sh           # the cargo-fuzz targets of fuzz/, 60 s each from fuzz/corpus; a crash fails
  scripts/release-build.sh  # the one release build (cargo auditable, static zlib): BP_RELAY_BIN below
  scripts/attack.sh         # short mode: the release relay under a connection and memory attack
  scripts/image.sh          # the image as an OCI layout in target/image, inspected
  scripts/check-container.sh # that image under the chart's security context, against the broker
  scripts/check-cluster.sh  # the chart on a real kube-apiserver (restricted PSA, CRDs, kwok nodes)
)
# -----------------------------------------------------------------------------------------------

START_S=$SECONDS
section() { printf '\n===== [test.sh +%ss] %s =====\n' "$((SECONDS - START_S))" "$*"; }

STARTED_BROKER=0
PASSED=()
FAILED=()

stop_broker() {
  if ((STARTED_BROKER)); then
    STARTED_BROKER=0
    section "stopping the test broker"
    "$KAFKA_SCRIPT" stop --data-dir "$DATA_DIR" || true
  fi
}

on_exit() {
  local status=$?
  trap - EXIT INT TERM
  stop_broker
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# The cargo options of the arguments (those before a `--`) also apply to the build.
BUILD_ARGS=()
for arg in "$@"; do
  [[ $arg == -- ]] && break
  BUILD_ARGS+=("$arg")
done

section "build the tests: ${CARGO_TEST[*]} --no-run${BUILD_ARGS[*]:+ ${BUILD_ARGS[*]}}"
if ! "${CARGO_TEST[@]}" --no-run "${BUILD_ARGS[@]}"; then
  section "summary"
  printf 'FAILED: %s\n' "building the tests (compiler output above); no broker was started, nothing ran"
  exit 1
fi
# The fault matrix takes none of the arguments: they name tests of the run above.
if [[ "$RUN_FAULTS" != 0 ]]; then
  section "build the fault matrix: ${FAULT_TEST[*]} --no-run"
  if ! "${FAULT_TEST[@]}" --no-run; then
    section "summary"
    printf 'FAILED: %s\n' "building the fault matrix (compiler output above); no broker was started, nothing ran"
    exit 1
  fi
fi

section "Kafka broker on 127.0.0.1:$PORT"
if port_open "$PORT"; then
  echo "a broker is already listening on 127.0.0.1:$PORT: using it and leaving it running"
else
  # A fresh broker for every run: nothing left over from an earlier run (topics, offsets) leaks in.
  # Only what kafka.sh itself writes there is removed.
  rm -rf "${DATA_DIR:?}/data" "$DATA_DIR/kafka.log" "$DATA_DIR/format.log"
  STARTED_BROKER=1
  "$KAFKA_SCRIPT" start --port "$PORT" --data-dir "$DATA_DIR"
fi
export BP_RELAY_TEST_KAFKA="127.0.0.1:$PORT"
export BP_RELAY_KAFKA_SCRIPT="$KAFKA_SCRIPT"
echo "BP_RELAY_TEST_KAFKA=$BP_RELAY_TEST_KAFKA"
echo "BP_RELAY_KAFKA_SCRIPT=$BP_RELAY_KAFKA_SCRIPT"

mkdir -p "$LOG_DIR"
rm -f "$CARGO_LOG" "$FAULTS_LOG" "$BROKER_LOG"
section "${CARGO_TEST[*]} --no-fail-fast${*:+ $*}"
echo "(cargo's output is also written to $CARGO_LOG)"
set +e
"${CARGO_TEST[@]}" --no-fail-fast "$@" 2>&1 | tee "$CARGO_LOG"
cargo_status=${PIPESTATUS[0]}
set -e
if ((cargo_status == 0)); then
  PASSED+=("cargo test")
else
  FAILED+=("cargo test (exit $cargo_status; log: $CARGO_LOG)")
fi

faults_status=0
if [[ "$RUN_FAULTS" == 0 ]]; then
  section "fault matrix: skipped (BP_RELAY_TEST_FAULTS=0)"
else
  section "fault matrix: ${FAULT_TEST[*]} -- --test-threads=1"
  echo "(cargo's output is also written to $FAULTS_LOG)"
  rm -f "$FAULTS_SUMMARY"
  set +e
  "${FAULT_TEST[@]}" -- --test-threads=1 2>&1 | tee "$FAULTS_LOG"
  faults_status=${PIPESTATUS[0]}
  set -e
  if [[ -f "$FAULTS_SUMMARY" ]]; then
    echo
    cat "$FAULTS_SUMMARY"
  fi
  if ((faults_status == 0)); then
    PASSED+=("fault matrix")
  else
    FAILED+=("fault matrix (exit $faults_status; log: $FAULTS_LOG; cluster logs: ${FAULTS_SUMMARY%/*}/cluster)")
  fi
fi

for check in "${EXTRA_CHECKS[@]}"; do
  if [[ ! -e "$check" ]]; then
    section "$check: not present, skipped"
    continue
  fi
  if [[ ! -x "$check" ]]; then
    section "$check: WARNING: present but not executable, skipped (chmod +x it)"
    continue
  fi
  section "$check"
  if "./$check"; then
    PASSED+=("$check")
    # The checks after it use that one release binary (release-build.sh's comment says how the
    # README's `cargo run --release` reuses it too).
    if [[ $check == scripts/release-build.sh ]]; then
      export BP_RELAY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/bp-relay"
    fi
  else
    FAILED+=("$check (exit $?)")
  fi
done

# Keep the end of the broker's log before stopping it (stopping appends shutdown noise).
BROKER_LOG_OK=0
if ((cargo_status != 0)); then
  if ((STARTED_BROKER)); then
    "$KAFKA_SCRIPT" logs --data-dir "$DATA_DIR" -n 500 >"$BROKER_LOG" 2>&1 && BROKER_LOG_OK=1
  else
    "$KAFKA_SCRIPT" logs --port "$PORT" -n 500 >"$BROKER_LOG" 2>&1 && BROKER_LOG_OK=1
  fi
fi
stop_broker

# The failing tests of cargo's log: for each test binary with failures, its `Running` line and
# everything from its first `failures:` line to its `test result:` line (each failed test's
# captured stdout, then the list of their names). Then cargo's own `error:` lines, which also
# name binaries that crashed or did not build. At most MAX lines; the rest is in the log.
print_test_failures() {
  local log="$1" max=400
  awk -v max="$max" -v logfile="$log" '
    function emit(line) {
      if (printed < max) print line
      else skipped++
      printed++
    }
    /^ *(Running|Doc-tests) / { target = $0; sub(/^ +/, "", target); in_failures = 0; next }
    /^failures:$/ && !in_failures { in_failures = 1; emit(""); emit("----- " target) }
    in_failures { emit($0); if ($0 ~ /^test result: /) in_failures = 0; next }
    in_targets && /^    `/ { errors[++n] = $0; next }
    { in_targets = 0 }
    /^error: [0-9]+ targets? failed:$/ { in_targets = 1 }
    /^error(\[E[0-9]+\])?: / || /^  process didn.t exit successfully/ { errors[++n] = $0 }
    END {
      if (skipped > 0) printf "\n... %d more lines in %s\n", skipped, logfile
      if (n > 0) { print ""; for (i = 1; i <= n; i++) print errors[i] }
      if (printed == 0 && n == 0) print "(no failing test found in the log; see " logfile ")"
    }
  ' "$log"
}

# When cargo test failed: the broker's last ERROR/WARN lines (context only, so they come first),
# then the failing tests themselves.
if ((cargo_status != 0)); then
  section "Kafka broker on 127.0.0.1:$PORT: its last ERROR and WARN lines"
  if ((!BROKER_LOG_OK)); then
    echo "no broker log to show: $(tail -n 1 "$BROKER_LOG" 2>/dev/null)"
  elif grep -qE "$BROKER_PROBLEM" "$BROKER_LOG"; then
    grep -E "$BROKER_PROBLEM" "$BROKER_LOG" | tail -n 20 | cut -c1-300
  else
    echo "none in the log's last 500 lines"
  fi
  ((!BROKER_LOG_OK)) || echo "(the log's last 500 lines: $BROKER_LOG)"
  section "failing tests (full output: $CARGO_LOG)"
  print_test_failures "$CARGO_LOG"
fi
if ((faults_status != 0)); then
  section "failing fault scenarios (full output: $FAULTS_LOG)"
  print_test_failures "$FAULTS_LOG"
fi

section "summary"
if ((${#PASSED[@]} > 0)); then printf 'ok:     %s\n' "${PASSED[@]}"; fi
if ((${#FAILED[@]} > 0)); then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
