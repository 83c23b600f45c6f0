#!/usr/bin/env bash
# Builds target/debian/ticketgate_<version>_<arch>.deb with cargo-deb.
# The release build of RocksDB takes about 15 minutes the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}"
cargo deb --locked --strip --output "$CARGO_TARGET_DIR/debian/"
ls -l "$CARGO_TARGET_DIR"/debian/*.deb
