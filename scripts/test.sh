#!/usr/bin/env bash
# Runs bp-relay's whole test suite against a real Kafka broker.
#
#   scripts/test.sh [EXTRA CARGO TEST ARGS...]     e.g. scripts/test.sh --test outage -- --nocapture
#
# 1. Makes sure a broker listens on 127.0.0.1:$BP_RELAY_TEST_KAFKA_PORT (default 9092): one already
#    reachable there is used and left running; otherwise scripts/kafka.sh starts a fresh one (empty
#    data dir) and this script stops it again when it exits, however it exits.
# 2. Runs `cargo test --locked --all-targets` with, in the environment:
#      BP_RELAY_TEST_KAFKA=127.0.0.1:<port>     bootstrap servers of that broker
#      BP_RELAY_KAFKA_SCRIPT=<abs path>          scripts/kafka.sh, for tests that start their own
#                                                broker (e.g. to stop and restart it for an outage)
# 3. Runs the further checks listed in EXTRA_CHECKS below.
# Exits non-zero if anything failed, after printing the end of the broker's log.
#
# Environment:
#   BP_RELAY_TEST_KAFKA_PORT      broker port (default 9092; the controller uses port+1)
#   BP_RELAY_TEST_KAFKA_DATA_DIR  data dir of a broker this script starts
#                                 (default ${TMPDIR:-/tmp}/bp-relay-test-kafka-<port>)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd -P)"
KAFKA_SCRIPT="$ROOT/scripts/kafka.sh"
PORT="${BP_RELAY_TEST_KAFKA_PORT:-9092}"
DATA_DIR="${BP_RELAY_TEST_KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/bp-relay-test-kafka-$PORT}"

# --- Extension point: further checks ----------------------------------------------------------
# Scripts (paths relative to the repo root) run in this order after cargo test, with the same
# environment (the broker is still up). Each one that exists and is executable runs; one that is
# absent, or not executable (chmod +x it!), is skipped with a note. Any that fails fails the run.
# Add yours here.
EXTRA_CHECKS=(
  scripts/check-asyncapi.sh # docs/asyncapi.yaml and its JSON Schemas, by a real AsyncAPI parser
  scripts/check-chart.sh    # the Helm chart under deploy/helm (lint, render, policy checks)
)
# -----------------------------------------------------------------------------------------------

START_S=$SECONDS
section() { printf '\n===== [test.sh +%ss] %s =====\n' "$((SECONDS - START_S))" "$*"; }

STARTED_BROKER=0
PASSED=()
FAILED=()

broker_log_tail() {
  printf '\n----- end of the Kafka broker log (127.0.0.1:%s) -----\n' "$PORT" >&2
  if ((STARTED_BROKER)); then
    "$KAFKA_SCRIPT" logs --data-dir "$DATA_DIR" -n 50 >&2 || true
  else
    "$KAFKA_SCRIPT" logs --port "$PORT" -n 50 >&2 || true
  fi
  printf '%s\n' "----- end of broker log -----" >&2
}

on_exit() {
  local status=$?
  trap - EXIT INT TERM
  if ((status != 0)); then broker_log_tail; fi
  if ((STARTED_BROKER)); then
    section "stopping the test broker"
    "$KAFKA_SCRIPT" stop --data-dir "$DATA_DIR" || true
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

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

section "cargo test --locked --all-targets${*:+ $*}"
if cargo test --locked --all-targets "$@"; then
  PASSED+=("cargo test")
else
  FAILED+=("cargo test (exit $?)")
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
  else
    FAILED+=("$check (exit $?)")
  fi
done

section "summary"
if ((${#PASSED[@]} > 0)); then printf 'ok:     %s\n' "${PASSED[@]}"; fi
if ((${#FAILED[@]} > 0)); then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
