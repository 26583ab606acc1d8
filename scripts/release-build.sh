#!/usr/bin/env bash
# CI's one release build of bp-relay, made the way deploy/Dockerfile makes it: static zlib
# (LIBZ_SYS_STATIC=1, also set for every build by .cargo/config.toml) and `cargo auditable build
# --release --locked --bin bp-relay`, which embeds the dependency tree in the binary's .dep-v0
# section. The revision is compiled in as the Dockerfile does (BP_RELAY_REVISION).
#
#   scripts/release-build.sh            build (or find up to date) and check, then print the path
#
# Everything that needs the release binary uses this one: scripts/image.sh, the attack test
# (BP_RELAY_BIN) and the README's `cargo run --release -- ...`. cargo fingerprints the workspace
# wrapper that `cargo auditable` installs (RUSTC_WORKSPACE_WRAPPER) and BP_RELAY_REVISION, so a
# plain `cargo run --release` would compile bp-relay a second time, without the audit data. This
# script therefore writes the environment of its build to
#   <target dir>/release-build.env
# and a caller that sources it before `cargo run --release` gets the same binary with no compile.
# The script checks that on every run: a second `cargo build --release` in that environment must
# find every unit fresh.
#
# Needs cargo-auditable (.ci/run installs it at the version of the Dockerfile's
# CARGO_AUDITABLE_VERSION). Prints build output on stderr, the binary's path on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/bp-relay
ENV_FILE=$TARGET_DIR/release-build.env
BUILD=(build --release --locked --bin bp-relay)

say() { printf 'release-build: %s\n' "$*" >&2; }

wanted=$(sed -n 's/^ARG CARGO_AUDITABLE_VERSION=//p' deploy/Dockerfile)
# (`cargo auditable --version` prints cargo's version: ask cargo which one it installed.)
have=$(cargo install --list | sed -n 's/^cargo-auditable v\([^:]*\):$/\1/p')
if [[ -z $have ]] || ! command -v cargo-auditable >/dev/null; then
  say "cargo-auditable is not installed: cargo install --locked cargo-auditable --version $wanted"
  exit 1
fi
[[ $have == "$wanted" ]] || say "note: cargo-auditable $have, the Dockerfile pins $wanted"

auditable=$(readlink -f "$(command -v cargo-auditable)")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The environment `cargo auditable build` gives cargo (src/cargo_auditable.rs of cargo-auditable):
# its own path as the workspace wrapper, and the cargo flags it cares about as JSON (CargoArgs). LIBZ_SYS_STATIC is
# in .cargo/config.toml; it is repeated so that a build without that file behaves the same.
cat >"$ENV_FILE.tmp" <<EOF
export LIBZ_SYS_STATIC=1
export BP_RELAY_REVISION=$revision
export RUSTC_WORKSPACE_WRAPPER=$auditable
export CARGO_AUDITABLE_ORIG_ARGS='{"offline":false,"locked":true,"frozen":false,"config":[]}'
export BP_RELAY_BIN=$BIN
EOF

t0=$SECONDS
say "LIBZ_SYS_STATIC=1 BP_RELAY_REVISION=$revision cargo auditable ${BUILD[*]}"
LIBZ_SYS_STATIC=1 BP_RELAY_REVISION=$revision nice -n 10 cargo auditable "${BUILD[@]}" >&2
mv "$ENV_FILE.tmp" "$ENV_FILE"
say "built in $((SECONDS - t0))s: $BIN"

# The promise to the other users of the binary: in the written environment, cargo compiles
# nothing. `--message-format json` reports every unit with "fresh".
stale=$(
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  cargo "${BUILD[@]}" --message-format json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .fresh == false) | .target.name'
)
if [[ -n $stale ]]; then
  say "a second build in $ENV_FILE's environment recompiled: $stale"
  exit 1
fi
say "a second build in the environment of $ENV_FILE is fresh (nothing recompiled)"

# The audit data must be in the binary (the section cargo-auditable writes).
if ! readelf -S -W "$BIN" | grep -q '\.dep-v0'; then
  say "no .dep-v0 section in $BIN: the audit data is missing"
  exit 1
fi
printf '%s\n' "$BIN"
