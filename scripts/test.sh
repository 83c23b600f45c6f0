#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, unit,
# integration and end-to-end tests (Postfix tools included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked -- --test-threads=4
