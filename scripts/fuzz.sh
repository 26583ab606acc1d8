#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each one for a bounded time from the corpus
# kept in the repo. Fails on the first crash (a panic or a failed check in a target).
#
#   scripts/fuzz.sh [SECONDS]      seconds per target (default 60)
#
# Targets (fuzz/fuzz_targets/): signature_headers (X-AUTHVIA-* verification and the replay
# guard), webhook_parse (Webhook::parse), handler (the whole request handler over the in-memory
# publisher). Each run starts from fuzz/corpus/<target>/ (the minimised corpus) and
# fuzz/seeds/<target>/ (hand-made inputs, named for what they show) and writes what it discovers
# to a scratch directory, so the committed corpus changes only by hand (README, "Fuzzing and
# supply chain").
# A crash leaves its input in fuzz/artifacts/<target>/ and the script prints how to replay it.
# At the end: executions per target.
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`) and, as cargo-fuzz expects, a nightly
# compiler: the rustup toolchain BP_RELAY_FUZZ_TOOLCHAIN (default `nightly`) when it is
# installed, else the stable one with RUSTC_BOOTSTRAP=1. (Without a sanitizer, cargo-fuzz 0.13
# passes no nightly-only flag and stable 1.95 builds these targets; the variable covers a later
# cargo-fuzz that does.) .ci/run installs cargo-fuzz and the nightly toolchain.
#
# Built without a sanitizer (`-s none`) but with debug assertions and overflow checks (`-a`):
# AddressSanitizer would also instrument the vendored C libraries (cc-rs passes it on to zstd),
# and librdkafka's build then fails to link them; the fuzzed code is safe Rust, where a bug
# shows as a panic.
#
# Environment:
#   BP_RELAY_FUZZ_TARGETS     the targets to run, space-separated (default: all three)
#   BP_RELAY_FUZZ_TARGET_DIR  cargo's target dir (default ~/.cache/bp-relay/fuzz-target): the fuzz
#                             build compiles librdkafka and OpenSSL again, about ten minutes on two
#                             cores, and a cached target dir keeps later runs, from any clone,
#                             incremental
#   BP_RELAY_FUZZ_TOOLCHAIN   the rustup toolchain to build with (default nightly)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_PER_TARGET="${1:-60}"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS per target]" >&2; exit 64; }
# shellcheck disable=SC2206 # a space-separated list, split on purpose
TARGETS=(${BP_RELAY_FUZZ_TARGETS:-signature_headers webhook_parse handler})
TARGET_DIR="${BP_RELAY_FUZZ_TARGET_DIR:-${HOME:-/root}/.cache/bp-relay/fuzz-target}"
TOOLCHAIN="${BP_RELAY_FUZZ_TOOLCHAIN:-nightly}"
# -a: debug assertions and overflow checks; -s none: see above.
FUZZ_FLAGS=(-a -s none --target-dir "$TARGET_DIR")
# Per input: 10 s at most (a stalled body meets its deadline at once on the paused clock), 2 GiB
# of memory; inputs up to 8 KiB, so bodies reach past the handler's 4 KiB --max-body.
LIBFUZZER_FLAGS=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)

section() { printf '\n===== [fuzz.sh] %s =====\n' "$*"; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz (.ci/run installs it)" >&2
  exit 1
fi

# The nightly toolchain if there is one; otherwise stable, told to accept nightly-only flags.
if rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  CARGO=(cargo "+$TOOLCHAIN")
  compiler="$(rustup run "$TOOLCHAIN" rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  CARGO=(cargo)
  compiler="$(rustc --version) with RUSTC_BOOTSTRAP=1 (no '$TOOLCHAIN' toolchain installed)"
fi

section "build: ${CARGO[*]} fuzz build ${FUZZ_FLAGS[*]}"
echo "compiler: $compiler"
cargo fuzz --version
# cargo fuzz has no --locked. fuzz/Cargo.lock pins what the fuzz crate adds (and, copied from
# Cargo.lock, the relay's dependencies); one the relay gained since is resolved now, and said.
lock_before="$(cksum <fuzz/Cargo.lock)"
"${CARGO[@]}" fuzz build "${FUZZ_FLAGS[@]}"
if [[ "$(cksum <fuzz/Cargo.lock)" != "$lock_before" ]]; then
  echo "note: fuzz/Cargo.lock changed (the relay's dependencies did): commit it"
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/bp-relay-fuzz.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

declare -A EXECUTIONS=()
FAILED=()
for target in "${TARGETS[@]}"; do
  corpus=("fuzz/corpus/$target" "fuzz/seeds/$target")
  for dir in "${corpus[@]}"; do [[ -d "$dir" ]] || { echo "no corpus at $dir" >&2; exit 1; }; done
  section "$target: ${SECONDS_PER_TARGET}s from ${corpus[*]} ($(find "${corpus[@]}" -type f | wc -l) inputs)"
  log="$SCRATCH/$target.log"
  mkdir -p "$SCRATCH/$target" "fuzz/artifacts/$target"
  # New inputs go to the first directory (scratch); the committed corpus is only read.
  # The target's words (field names, header names, the harness's fuzz- lines), found sooner.
  dict=()
  [[ -f "fuzz/dict/$target.dict" ]] && dict=(-dict="fuzz/dict/$target.dict")
  set +e
  "${CARGO[@]}" fuzz run "${FUZZ_FLAGS[@]}" "$target" "$SCRATCH/$target" "${corpus[@]}" -- "${LIBFUZZER_FLAGS[@]}" "${dict[@]}" >"$log" 2>&1
  status=$?
  set -e
  # libFuzzer's progress lines are many: its status lines and the final stats are enough here.
  grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::)' "$log" || true
  EXECUTIONS[$target]="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  if ((status != 0)); then
    FAILED+=("$target")
    echo "----- $target FAILED (exit $status); the end of its output:"
    tail -n 60 "$log"
    artifact="$(grep -oE 'fuzz/artifacts/[^ ]+' "$log" | tail -n 1 || true)"
    if [[ -n "$artifact" ]]; then
      echo "----- replay it: ${CARGO[*]} fuzz run ${FUZZ_FLAGS[*]} $target $artifact"
    fi
  fi
done

section "executions per target (${SECONDS_PER_TARGET}s each)"
for target in "${TARGETS[@]}"; do
  printf '%-20s %s\n' "$target" "${EXECUTIONS[$target]:-?}"
done
if ((${#FAILED[@]} > 0)); then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "no crash"
