#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, unit,
# integration and end-to-end tests (Postfix tools included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# Unit, integration and end-to-end tests (doc tests: none). The last line
# sums every test binary's result.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets -- --test-threads=4 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
