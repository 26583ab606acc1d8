#!/usr/bin/env bash
# Supply-chain check of the dependency tree against deny.toml: allowed licences, banned crates
# (duplicate versions are warnings only), and crates.io as the only source.
#
#   scripts/check-deny.sh
#
# Only `licenses bans sources`: no advisory database is fetched, so with the crates of
# Cargo.lock already downloaded (any earlier build) it runs without a network. Needs cargo-deny
# (`cargo install --locked cargo-deny`; .ci/run installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "cargo-deny is not installed: cargo install --locked cargo-deny (.ci/run installs it)" >&2
  exit 1
fi
cargo deny --version
# --locked: the check is of Cargo.lock as committed, never of a re-resolved tree.
# --hide-inclusion-graph: a duplicate is named with its versions, not with every path to it.
cargo deny --locked check --hide-inclusion-graph licenses bans sources
