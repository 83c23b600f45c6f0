#!/usr/bin/env bash
# Builds ticketgate and runs it with the shipped config. With nothing else
# running, mail goes into the Maildir ./maildir; pass --next-hop HOST:PORT
# (or any other `serve` flag) to change that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}"
cargo build --release --locked
exec "$CARGO_TARGET_DIR/release/ticketgate" serve --config config/ticketgate.toml \
    --next-hop "maildir:$PWD/maildir" --data-dir "$PWD/data" "$@"
