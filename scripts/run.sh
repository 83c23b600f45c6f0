#!/usr/bin/env bash
# Builds ticketgate and runs it with the shipped config, as a trial with
# nothing else running: mail goes into the Maildir ./maildir, automatic
# replies (the confirmations with the case number) into the Maildir
# ./replies, tickets into ./data, and `ticketgate tickets ...` run from
# this directory finds the server (it looks for data/control.sock).
#
# Any `serve` flag passed here wins, e.g. --next-hop HOST:PORT or
# --reply-relay HOST:PORT. TICKETGATE_TRIAL_DIR puts the three folders
# somewhere else; TICKETGATE_BIN runs that binary instead of building
# (the tests use both).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
trial=${TICKETGATE_TRIAL_DIR:-$root}
if [[ -n "${TICKETGATE_BIN:-}" ]]; then
    bin=$TICKETGATE_BIN
else
    bash scripts/setup.sh
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}"
    cargo build --release --locked
    bin=$CARGO_TARGET_DIR/release/ticketgate
fi
cat >&2 <<EOF
ticketgate trial run: SMTP on 127.0.0.1:10025 (unless --listen says otherwise)
  mail for the next hop:  $trial/maildir/new
  automatic replies:      $trial/replies/new
  tickets:                $bin tickets list   (from $trial)
  health and metrics:     http://127.0.0.1:9325/readyz and /metrics (unless --metrics says otherwise)
EOF
exec "$bin" serve --config "$root/config/ticketgate.toml" \
    --next-hop "maildir:$trial/maildir" \
    --reply-relay "maildir:$trial/replies" \
    --data-dir "$trial/data" "$@"
