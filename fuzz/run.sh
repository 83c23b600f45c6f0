#!/usr/bin/env bash
# Coverage-guided fuzzing of everything that reads bytes from outside
# (libFuzzer, targets laid out as cargo-fuzz expects). Not part of CI: run
# by hand, e.g.
#
#   bash fuzz/run.sh 10            # 10 minutes per target, one after another
#   JOBS=2 bash fuzz/run.sh 10     # two targets at a time
#   bash fuzz/run.sh 1 message     # one target
#
# The toolchain here is stable Rust; the fuzz build alone runs with
# RUSTC_BOOTSTRAP=1 for per-package rustflags (Cargo.toml: coverage on our
# code and the parsers, not on RocksDB). The first build compiles RocksDB
# once (about 20 minutes on 2 cores) in $FUZZ_TARGET_DIR. `cargo fuzz run
# <target>` works as well, at the price of an instrumented RocksDB build. Each target
# starts from its corpus in fuzz/corpus/<target>, seeded from fuzz/seeds
# (inputs of the tests); what libFuzzer adds stays there. A crash lands in
# fuzz/artifacts/<target> and becomes a regression test named after it.
# Prints one line per target: executions, coverage (edges), features,
# corpus size and findings.
set -euo pipefail
cd "$(dirname "$0")"
MINUTES=${1:-10}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(data_decoder smtp_command milter_codec control_request message)
JOBS=${JOBS:-1}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/ticketgate-fuzz}
# The main package's lock: the same versions as the service.
[[ -f Cargo.lock ]] || cp ../Cargo.lock Cargo.lock
cargo build --release --bins >/dev/null
BIN=$CARGO_TARGET_DIR/release
mkdir -p logs
run_one() {
    local t=$1 log=logs/$1.log
    mkdir -p "corpus/$t" "artifacts/$t"
    [[ -d seeds/$t ]] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    local start=$SECONDS
    "$BIN/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time=$((MINUTES * 60)) -print_final_stats=1 -max_len=1048576 \
        -rss_limit_mb=2048 -timeout=20 >"$log" 2>&1 || true
    local secs=$((SECONDS - start)) execs cov ft findings
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # From libFuzzer's status lines only: a panic message can hold "ft: ".
    cov=$(grep -a '^#[0-9]' "$log" | grep -o ' cov: [0-9]*' | tail -1 | cut -d' ' -f3)
    ft=$(grep -a '^#[0-9]' "$log" | grep -o ' ft: [0-9]*' | tail -1 | cut -d' ' -f3)
    findings=$(find "artifacts/$t" -type f | wc -l)
    # The time it ran: a finding stops the target before MINUTES.
    printf '| %-16s | %7ss | %12s | %6s | %7s | %6s | %s |\n' \
        "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "$(find "corpus/$t" -type f | wc -l)" "$findings"
}
printf '| %-16s | %8s | %12s | %6s | %7s | %6s | %s |\n' target time executions cov ft corpus findings
printf '|%s|\n' "------------------|----------|--------------|--------|---------|--------|---------"
running=0
for t in "${TARGETS[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if ((running >= JOBS)); then
        wait -n
        running=$((running - 1))
    fi
done
wait
