#!/usr/bin/env bash
# Runs the README's quick start exactly as a new user would: the commands are read out of
# README.md ("### The two commands") at run time, never copied here, so a change that breaks one
# of them fails this check.
#
#   scripts/check-readme.sh
#
# 1. Reads the run command, the two `sign` commands and the `kcat` line from README.md (and fails
#    naming what it expected if the section was reshaped).
# 2. Fails at once, saying so, when port 8080 or 9090 is taken: the README's commands use them.
# 3. Builds the release binary first (scripts/release-build.sh, CI's one release build, shared
#    by `cargo run --release`, the attack test and the image), so the relay starts without
#    compiling.
# 4. Starts the relay with the README's run command, waits for its bootstrap line and for
#    /readyz, runs each `sign` command (each must print 200 with a topic, partition and offset),
#    runs the `kcat` line with the logged bootstrap address in place of `NNNNN` (the one
#    substitution) and finds the record the first `sign` wrote, then stops the relay with
#    SIGTERM and expects exit 0.
#
# Environment:
#   BP_RELAY_README_TIMEOUT   seconds to wait for the relay's bootstrap line and readiness (60)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd -P)"
README="$ROOT/README.md"
WAIT_S="${BP_RELAY_README_TIMEOUT:-60}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bp-relay-readme.XXXXXX")"
RELAY_PID=""

say() { printf '[check-readme] %s\n' "$*"; }
fail() {
  printf '[check-readme] FAILED: %s\n' "$*" >&2
  if [[ -s $WORK/relay.log ]]; then
    printf '[check-readme] the relay'"'"'s last log lines:\n' >&2
    tail -n 20 "$WORK/relay.log" >&2
  fi
  exit 1
}

cleanup() {
  if [[ -n $RELAY_PID ]] && kill -0 "$RELAY_PID" 2>/dev/null; then
    kill -KILL "$RELAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. The commands, from the README -----------------------------------------------------------
# The section's ```sh blocks: the run command, then the sign and kcat lines, then the test command.
section="$(awk '/^### The two commands$/ { on = 1; next } on && /^## / { exit } on' "$README")"
[[ -n $section ]] || fail "README.md has no '### The two commands' section"
blocks="$(awk '/^```sh$/ { n++; on = 1; next } /^```$/ { on = 0; next } on { print n "\t" $0 }' <<<"$section")"
block() { awk -F'\t' -v n="$1" '$1 == n { sub(/^[^\t]*\t/, ""); print }' <<<"$blocks" | grep -v '^[[:space:]]*\(#\|$\)' || true; }

RUN_CMD="$(block 1)"
[[ $(wc -l <<<"$RUN_CMD") == 1 && $RUN_CMD == "cargo run --release -- "* ]] ||
  fail "the first sh block of 'The two commands' should be the one line 'cargo run --release -- ...', found: $RUN_CMD"
mapfile -t SIGN_CMDS < <(block 2 | grep -E '^cargo run --release -- sign ' || true)
((${#SIGN_CMDS[@]} == 2)) || fail "expected two 'cargo run --release -- sign' lines in the second sh block, found ${#SIGN_CMDS[@]}"
KCAT_CMD="$(block 2 | grep -E '^kcat ' || true)"
[[ $(wc -l <<<"$KCAT_CMD") == 1 && $KCAT_CMD == *NNNNN* ]] ||
  fail "expected one 'kcat ... NNNNN ...' line in the second sh block, found: $KCAT_CMD"
say "run:  $RUN_CMD"
for cmd in "${SIGN_CMDS[@]}"; do say "sign: $cmd"; done
say "kcat: $KCAT_CMD"

# --- 2. The ports the README's commands use ----------------------------------------------------
port_taken() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
for port in 8080 9090; do
  if port_taken "$port"; then
    fail "port $port is taken on this machine, and the README's commands use it (the relay's default --listen/--admin-listen): free it rather than change the commands"
  fi
done

# --- 3. The release build (shared with `cargo run --release`, the attack test and the image) ---
# scripts/release-build.sh makes CI's one release binary and writes the environment of its build;
# in that environment the README's `cargo run --release` compiles nothing. Without cargo-auditable
# (a developer's machine) a plain release build does the same job.
if command -v cargo-auditable >/dev/null 2>&1; then
  say "scripts/release-build.sh"
  scripts/release-build.sh >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "the release build failed"; }
  # shellcheck disable=SC1091
  . "${CARGO_TARGET_DIR:-$ROOT/target}/release-build.env"
else
  say "cargo build --release --locked --bin bp-relay (no cargo-auditable here)"
  cargo build --release --locked --bin bp-relay >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "the release build failed"; }
fi

# --- 4. The quick start -------------------------------------------------------------------------
say "starting the relay: $RUN_CMD"
# `cargo run` execs the relay on Unix, so RELAY_PID is the relay itself once it runs.
bash -c "exec $RUN_CMD" >"$WORK/relay.log" 2>&1 </dev/null &
RELAY_PID=$!

bootstrap=""
deadline=$((SECONDS + WAIT_S))
while [[ -z $bootstrap ]]; do
  kill -0 "$RELAY_PID" 2>/dev/null || fail "the relay exited before logging its bootstrap address"
  ((SECONDS < deadline)) || fail "no bootstrap line within ${WAIT_S}s"
  bootstrap="$(grep -oE 'bootstrap["=:]+127\.0\.0\.1:[0-9]+' "$WORK/relay.log" | head -n 1 | grep -oE '127\.0\.0\.1:[0-9]+' || true)"
  [[ -n $bootstrap ]] || sleep 0.2
done
say "the relay logged bootstrap=$bootstrap"

until [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/readyz || true)" == 200 ]]; do
  kill -0 "$RELAY_PID" 2>/dev/null || fail "the relay exited before it was ready"
  ((SECONDS < deadline)) || fail "/readyz on 127.0.0.1:9090 not 200 within ${WAIT_S}s"
  sleep 0.2
done
say "/readyz answers 200"

first_answer=""
for cmd in "${SIGN_CMDS[@]}"; do
  out="$(bash -c "$cmd" 2>"$WORK/sign.err" </dev/null)" || { cat "$WORK/sign.err" >&2; fail "'$cmd' exited $? and printed: $out"; }
  say "  -> $out"
  python3 - "$out" <<'EOF' || fail "'$cmd' did not print 200 with a topic, partition and offset: $out"
import json, sys
status, _, body = sys.argv[1].partition(" ")
answer = json.loads(body)
assert status == "200", status
assert isinstance(answer["topic"], str) and isinstance(answer["partition"], int) and isinstance(answer["offset"], int), answer
EOF
  [[ -n $first_answer ]] || first_answer="${out#* }"
done

kcat_cmd="${KCAT_CMD//NNNNN/${bootstrap##*:}}"
say "reading back: $kcat_cmd"
bash -c "timeout 30 $kcat_cmd" >"$WORK/kcat.out" 2>"$WORK/kcat.err" </dev/null || { cat "$WORK/kcat.err" >&2; fail "the kcat line failed"; }
python3 - "$WORK/kcat.out" "$first_answer" "$ROOT" <<'EOF' || fail "the kcat line did not show the record the first sign command wrote"
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
answer = json.loads(sys.argv[2])
found = [r for r in records if r["topic"] == answer["topic"] and r["partition"] == answer["partition"] and r["offset"] == answer["offset"]]
assert found, f"no record at {answer} among {len(records)}"
record = found[0]
body = json.loads(record["payload"])
assert record["key"] == body["id"], (record["key"], body["id"])
print(f"[check-readme] kcat shows the record: topic {record['topic']} partition {record['partition']} offset {record['offset']} key {record['key']}")
EOF

say "SIGTERM to the relay"
kill -TERM "$RELAY_PID"
status=0
wait "$RELAY_PID" || status=$?
RELAY_PID=""
((status == 0)) || fail "the relay exited $status after SIGTERM (expected 0)"
say "the relay exited 0"
say "ok: the README's run, sign and kcat commands work as written"
