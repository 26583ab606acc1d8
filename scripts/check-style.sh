#!/usr/bin/env bash
# The gates no reviewer should have to check by eye: formatting and lints.
#
#   scripts/check-style.sh
#
# 1. `cargo fmt --check` on the main crate and on fuzz/ (a workspace of its own), against
#    rustfmt.toml: prints the diff and fails when a file is not formatted (`cargo fmt` fixes it).
# 2. `cargo clippy --locked --all-targets --all-features -- -D warnings`: every target (library,
#    binaries, tests, benches) with every feature, warnings as errors. The lints allowed on
#    purpose are set, each with its reason, at the top of src/lib.rs.
# Exits non-zero if either fails; runs both either way.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0

echo "[check-style] cargo fmt --check (main crate, fuzz/)"
cargo fmt --check || { echo "[check-style] FAILED: not formatted: run cargo fmt" >&2; status=1; }
(cd fuzz && cargo fmt --check) || { echo "[check-style] FAILED: fuzz/ not formatted: run cargo fmt in fuzz/" >&2; status=1; }

echo "[check-style] cargo clippy --locked --all-targets --all-features -- -D warnings"
cargo clippy --locked --all-targets --all-features -- -D warnings || { echo "[check-style] FAILED: clippy" >&2; status=1; }

exit "$status"
