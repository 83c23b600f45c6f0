#!/usr/bin/env bash
# ticketgate benchmarks: pass-through and ticketed throughput against a
# direct smtp-source -> smtp-sink baseline and against Haraka, CPU per
# message, peak RSS, and reply latency. One run, one table. See README.md.
#
#   bash benches/run.sh
#
# Environment (defaults in brackets):
#   TICKETGATE_BIN  binary [$HOME/.cache/ticketgate-release/release/ticketgate,
#                   else $CARGO_TARGET_DIR/release/ticketgate]
#   N       messages per pass-through / direct run [20000]
#   NT      messages per ticketed run [5000]
#   NH      messages per Haraka run [5000]
#   WARM    warm-up messages before each measured target [300]
#   SIZE    smtp-source message length in bytes [5120]
#   BIG_MB  size of the big message [60]
#   PARSE_MB  size of a helpdesk message still parsed (< max_parse_bytes) [30]
#   NLAT    messages of the reply-latency test [50]
#   DRAIN   seconds to watch the reply backlog drain after the ticketed runs [60]
#   WAIT_QUIET  1: first wait (<= 20 min) for loadavg < 0.7 during 30 s [1]
#   HARAKA  0: skip the Haraka row [1]
#   KEEP    1: keep the scratch directory (logs) [0]
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
HELP="$HERE/helpers.py"

N=${N:-20000}
NT=${NT:-5000}
NH=${NH:-5000}
WARM=${WARM:-300}
SIZE=${SIZE:-5120}
BIG_MB=${BIG_MB:-60}
PARSE_MB=${PARSE_MB:-30}
NLAT=${NLAT:-50}
DRAIN=${DRAIN:-60}
WAIT_QUIET=${WAIT_QUIET:-1}
HARAKA=${HARAKA:-1}
KEEP=${KEEP:-0}
LOAD_TIMEOUT=600          # seconds, for any single load generator run
TICKETED_RCPT="nuovocaso@projectpp.it"
PLAIN_RCPT="someone@example.com"
SENDER="bench@example.org"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}
BIN=${TICKETGATE_BIN:-$HOME/.cache/ticketgate-release/release/ticketgate}
[[ -x $BIN ]] || BIN=$CARGO_TARGET_DIR/release/ticketgate
if [[ ! -x $BIN ]]; then
    echo "no ticketgate binary (set TICKETGATE_BIN or build with cargo build --release)" >&2
    exit 2
fi
for tool in smtp-source smtp-sink python3 curl getconf; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "missing: $tool" >&2; exit 2; }
done
export PATH=$PATH:/usr/sbin

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tgbench.XXXXXX")
PIDS=()
HZ=$(getconf CLK_TCK)

cleanup() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 1 50); do               # at most 5 s for a clean exit
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    if ((KEEP)); then echo "scratch kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# Stop one process we started, bounded; the EXIT trap covers the rest.
stop() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

# utime+stime (clock ticks) of PID and its direct children (Haraka workers).
cpu_ticks() {
    local p total=0 f
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        set -- $f
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

wait_quiet() {
    local start=$SECONDS quiet_since=-1 load busy
    log "waiting for a quiet machine (loadavg < 0.7 for 30 s, no cargo/rustc/cc1plus; at most 20 min)"
    while ((SECONDS - start < 1200)); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        busy=$(for c in cargo rustc cc1plus; do pgrep -x "$c"; done | head -1)
        if [[ -z $busy ]] && python3 -c "import sys; sys.exit(0 if $load < 0.7 else 1)"; then
            ((quiet_since < 0)) && quiet_since=$SECONDS
            ((SECONDS - quiet_since >= 30)) && { log "quiet (load $load)"; return 0; }
        else
            quiet_since=-1
        fi
        sleep 2
    done
    log "WARNING: machine not quiet after 20 min (load $(cut -d' ' -f1 /proc/loadavg)); measuring anyway"
}

# ---- processes --------------------------------------------------------------

free_ports() { python3 "$HELP" ports "$1"; }

# start_sink NAME PORT -> pid in SINK_PID; counters in $TMP/NAME.count
start_sink() {
    local name=$1 port=$2
    smtp-sink -u nobody -c "127.0.0.1:$port" 1024 >"$TMP/$name.count" 2>"$TMP/$name.err" &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    python3 "$HELP" wait "$port" 10 "$SINK_PID" || { cat "$TMP/$name.err" >&2; return 1; }
}
# messages a counting smtp-sink has received so far
sink_count() {
    tr '\r' '\n' <"$TMP/$1.count" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}
# wait (<= $3 s) until sink $1 has counted $2 messages; prints the count
sink_wait() {
    local name=$1 want=$2 limit=$3 t0=$SECONDS c
    while :; do
        c=$(sink_count "$name")
        ((c >= want || SECONDS - t0 >= limit)) && break
        sleep 0.2
    done
    echo "$c"
}

# Bench config: the shipped config and templates, with two changes only:
# outbox.rate_limit_per_hour raised (smtp-source sends everything from one
# sender, so the default 20/h would suppress almost every reply) and a
# metrics listener (to check the message counts).
make_config() {
    local name=$1 metrics_port=$2 conf="$TMP/conf/$1.toml"
    mkdir -p "$TMP/conf"
    [[ -d $TMP/conf/templates ]] || cp -r "$ROOT/config/templates" "$TMP/conf/templates"
    sed -e 's/^rate_limit_per_hour = .*/rate_limit_per_hour = 100000000/' \
        -e "s/^\[metrics\]\$/[metrics]\nlisten = \"127.0.0.1:$metrics_port\"/" \
        "$ROOT/config/ticketgate.toml" >"$conf"
    "$BIN" check-config --config "$conf" >/dev/null || return 1
    echo "$conf"
}

# start_tg NAME NEXT_HOP_PORT RELAY_PORT -> TG_PID, TG_PORT, TG_DIR, TG_METRICS
start_tg() {
    local name=$1 next=$2 relay=$3 ports conf
    read -r TG_PORT TG_METRICS <<<"$(free_ports 2)"
    TG_DIR="$TMP/$name"
    mkdir -p "$TG_DIR"
    conf=$(make_config "$name" "$TG_METRICS") || { log "config check failed"; return 1; }
    "$BIN" serve --config "$conf" --listen "127.0.0.1:$TG_PORT" \
        --next-hop "127.0.0.1:$next" --reply-relay "127.0.0.1:$relay" \
        --data-dir "$TG_DIR/data" --control "$TG_DIR/c.sock" \
        2>"$TG_DIR/log" &
    TG_PID=$!
    PIDS+=("$TG_PID")
    python3 "$HELP" wait "$TG_PORT" 30 "$TG_PID" || { tail -20 "$TG_DIR/log" >&2; return 1; }
}
metric() { # metric PORT 'name{labels}' -> value (0 if absent)
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print 0}'
}

# load PORT SESSIONS MSGS RCPT -> prints elapsed seconds; errors to $TMP/load.err
load() {
    local port=$1 s=$2 m=$3 rcpt=$4 t0 t1 rc
    t0=$(now)
    timeout -k 5 "$LOAD_TIMEOUT" smtp-source -s "$s" -m "$m" -l "$SIZE" \
        -f "$SENDER" -t "$rcpt" "127.0.0.1:$port" >>"$TMP/load.out" 2>>"$TMP/load.err"
    rc=$?
    t1=$(now)
    ((rc == 0)) || log "smtp-source exited $rc (see errors below)"
    calc "round($t1 - $t0, 3)"
}

# ---- results ----------------------------------------------------------------

ROWS=()
FMT='| %-34s | %4s | %6s | %7s | %6s | %10s | %8s | %-14s | %-4s | %s\n'
# row LABEL SESSIONS N ELAPSED CPU_TICKS|- BASE_RATE|- TARGET_RATIO|- NOTE [TARGET_TEXT VERDICT]
row() {
    local label=$1 s=$2 n=$3 el=$4 ticks=$5 base=$6 target=$7 note=${8:-} ttext=${9:-} verdict=${10:-}
    local rate cpu ratio
    rate=$(calc "round($n / $el)")
    if [[ $ticks == - ]]; then cpu=-; else cpu=$(calc "'%.3f' % ($ticks * 1000 / $HZ / $n)"); fi
    if [[ $base == - ]]; then ratio=-; else ratio=$(calc "'%.2f' % ($rate / $base)"); fi
    if [[ $target != - ]]; then
        verdict=$(calc "'ok' if $rate / $base >= $target else 'MISS'")
        ttext=">=${target}x direct"
    fi
    ROWS+=("$(printf "$FMT" "$label" "$s" "$n" "$el" "$rate" "$cpu" "$ratio" "${ttext:--}" "${verdict:--}" "$note")")
}
EXTRA=()
extra() { EXTRA+=("$*"); log "$*"; }

# ---- run --------------------------------------------------------------------

((WAIT_QUIET)) && wait_quiet
log "binary: $BIN"
log "N=$N NT=$NT NH=$NH WARM=$WARM SIZE=$SIZE scratch=$TMP"
: >"$TMP/load.err"

read -r SINK_PORT RSINK_PORT <<<"$(free_ports 2)"
start_sink sink "$SINK_PORT" || exit 1
SINK=$SINK_PID
start_sink rsink "$RSINK_PORT" || exit 1

declare -A DIRECT
# 0. direct baselines (warm-up first)
load "$SINK_PORT" 20 "$WARM" "$PLAIN_RCPT" >/dev/null
for s in 20 100; do
    before=$(sink_count sink)
    el=$(load "$SINK_PORT" "$s" "$N" "$PLAIN_RCPT")
    got=$(( $(sink_wait sink $((before + N)) 10) - before ))
    DIRECT[$s]=$(calc "$N / $el")
    row "direct smtp-source -> smtp-sink" "$s" "$N" "$el" - - - "sink got $got"
done

# 1. pass-through
start_tg pass "$SINK_PORT" "$RSINK_PORT" || exit 1
PASS=$TG_PID PASS_PORT=$TG_PORT PASS_METRICS=$TG_METRICS
load "$PASS_PORT" 20 "$WARM" "$PLAIN_RCPT" >/dev/null
declare -A TG_RATE
for s in 20 100; do
    before=$(sink_count sink)
    c0=$(cpu_ticks "$PASS")
    el=$(load "$PASS_PORT" "$s" "$N" "$PLAIN_RCPT")
    c1=$(cpu_ticks "$PASS")
    got=$(( $(sink_wait sink $((before + N)) 10) - before ))
    TG_RATE[$s]=$(calc "$N / $el")
    row "1 ticketgate pass-through" "$s" "$N" "$el" $((c1 - c0)) "${DIRECT[$s]}" 0.6 "sink got $got"
    HWM[$s]=$(hwm_kb "$PASS")
done
passed=$(metric "$PASS_METRICS" 'ticketgate_messages_total{action="passed"}')
extra "pass-through: ticketgate counted $passed messages passed (expected $((WARM + 2 * N)))"

# 4. memory: after the 100-session run, then one big message
hwm_before=$(hwm_kb "$PASS")
big_el=$(python3 "$HELP" bigmsg "$PASS_PORT" "$BIG_MB" "$PLAIN_RCPT" 2>"$TMP/big.err") || {
    big_el="failed: $(tail -1 "$TMP/big.err")"
}
hwm_after=$(hwm_kb "$PASS")
MEM_ROWS=()
MEM_ROWS+=("$(printf '| %-44s | %8s | %s' "VmHWM after 20-session pass-through" "$((HWM[20] / 1024)) MB" "target < 50 MB")")
MEM_ROWS+=("$(printf '| %-44s | %8s | %s' "VmHWM after 100-session pass-through" "$((HWM[100] / 1024)) MB" \
    "target < 50 MB: $( ((HWM[100] < 50 * 1024)) && echo ok || echo MISS)")")
MEM_ROWS+=("$(printf '| %-44s | %8s | %s' "VmHWM after one ${BIG_MB} MB message (pass-through)" "$((hwm_after / 1024)) MB" \
    "before $((hwm_before / 1024)) MB, +$(((hwm_after - hwm_before) / 1024)) MB; sent in ${big_el} s")")
stop "$PASS"

# 2. ticketed
start_tg ticket "$SINK_PORT" "$RSINK_PORT" || exit 1
TKT=$TG_PID TKT_PORT=$TG_PORT TKT_DIR=$TG_DIR TKT_METRICS=$TG_METRICS
load "$TKT_PORT" 20 "$WARM" "$PLAIN_RCPT" >/dev/null   # warm-up without tickets
rs0=$(sink_count rsink)
c_start=$(cpu_ticks "$TKT")
for s in 20 100; do
    before=$(sink_count sink)
    c0=$(cpu_ticks "$TKT")
    el=$(load "$TKT_PORT" "$s" "$NT" "$TICKETED_RCPT")
    c1=$(cpu_ticks "$TKT")
    got=$(( $(sink_wait sink $((before + NT)) 10) - before ))
    row "2 ticketgate ticketed" "$s" "$NT" "$el" $((c1 - c0)) "${DIRECT[$s]}" 0.4 "sink got $got"
done
# replies are delivered after the 250, one at a time: see how far the
# outbox got, and how fast it goes once the load has stopped (<= DRAIN s)
t_drain=$(now)
rs_load=$(( $(sink_count rsink) - rs0 ))
replies=$(( $(sink_wait rsink $((rs0 + 2 * NT)) "$DRAIN") - rs0 ))
drain_el=$(calc "$(now) - $t_drain")
c_end=$(cpu_ticks "$TKT")
extra "ticketed: replies at the reply relay: $rs_load of $((2 * NT)) when the load ended, $replies after" \
    "$(calc "round($drain_el, 1)") s more ($(calc "round(($replies - $rs_load) / $drain_el, 1)") replies/s while draining);" \
    "ticketgate CPU from load start to then: $(calc "'%.1f' % (($c_end - $c_start) / $HZ)") s for $((2 * NT)) messages + $replies replies"
tickets=$("$BIN" tickets --control "$TKT_DIR/c.sock" --json list 2>"$TMP/tickets.err" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>>"$TMP/tickets.err") || tickets="error: $(tail -1 "$TMP/tickets.err")"
extra "ticketed: ticket count $tickets, expected $((2 * NT)) -> $([[ $tickets == $((2 * NT)) ]] && echo ok || echo MISMATCH)"
extra "ticketed: VmHWM $(( $(hwm_kb "$TKT") / 1024 )) MB, data dir $(du -sm "$TKT_DIR/data" | cut -f1) MB"
hwm_before=$(hwm_kb "$TKT")
big_el=$(python3 "$HELP" bigmsg "$TKT_PORT" "$BIG_MB" "$TICKETED_RCPT" 2>"$TMP/big.err") || {
    big_el="failed: $(tail -1 "$TMP/big.err")"
}
hwm_after=$(hwm_kb "$TKT")
MEM_ROWS+=("$(printf '| %-44s | %8s | %s' "VmHWM after one ${BIG_MB} MB message (helpdesk)" "$((hwm_after / 1024)) MB" \
    "before $((hwm_before / 1024)) MB, +$(((hwm_after - hwm_before) / 1024)) MB; sent in ${big_el} s")")
# a helpdesk message just under limits.max_parse_bytes: parsed for a ticket
hwm_before=$hwm_after
big_el=$(python3 "$HELP" bigmsg "$TKT_PORT" "$PARSE_MB" "$TICKETED_RCPT" 2>"$TMP/big.err") || {
    big_el="failed: $(tail -1 "$TMP/big.err")"
}
hwm_after=$(hwm_kb "$TKT")
MEM_ROWS+=("$(printf '| %-44s | %8s | %s' "VmHWM after one ${PARSE_MB} MB message (helpdesk)" "$((hwm_after / 1024)) MB" \
    "before $((hwm_before / 1024)) MB, +$(((hwm_after - hwm_before) / 1024)) MB; sent in ${big_el} s")")
stop "$TKT"

# 3. Haraka
haraka_row() {
    local dir="$HERE/.haraka" hk="$TMP/haraka" hport ver el c0 c1 before got s
    if [[ ! -x $dir/node_modules/.bin/haraka ]]; then
        log "installing Haraka with npm into $dir"
        mkdir -p "$dir"
        if ! timeout 300 npm install --prefix "$dir" Haraka --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
            extra "Haraka: npm install failed: $(grep -m1 -i 'err' "$TMP/npm.log" || tail -1 "$TMP/npm.log")"
            return 1
        fi
    fi
    "$dir/node_modules/.bin/haraka" -i "$hk" >"$TMP/haraka-init.log" 2>&1 || {
        extra "Haraka: haraka -i failed: $(tail -1 "$TMP/haraka-init.log")"; return 1; }
    read -r hport <<<"$(free_ports 1)"
    ver=$(node -e 'process.stdout.write(require(process.argv[1]).version)' "$dir/node_modules/Haraka/package.json")
    # single process (nodes=0: no cluster), no DNS plugins; mail to
    # example.com is "inbound" (rcpt_to.in_host_list), forwarded by
    # queue/smtp_forward to the sink before the 250, like ticketgate.
    printf '[main]\nlisten=127.0.0.1:%s\nnodes=0\n' "$hport" >"$hk/config/smtp.ini"
    printf 'rcpt_to.in_host_list\nqueue/smtp_forward\n' >"$hk/config/plugins"
    echo "${PLAIN_RCPT#*@}" >"$hk/config/host_list"
    printf 'host=127.0.0.1\nport=%s\n' "$SINK_PORT" >"$hk/config/smtp_forward.ini"
    printf '[main]\nlevel=warn\n' >"$hk/config/log.ini"
    "$dir/node_modules/.bin/haraka" -c "$hk" >"$TMP/haraka.log" 2>&1 &
    HK=$!
    PIDS+=("$HK")
    python3 "$HELP" wait "$hport" 30 "$HK" || { extra "Haraka: did not start: $(tail -2 "$TMP/haraka.log")"; return 1; }
    load "$hport" 20 "$WARM" "$PLAIN_RCPT" >/dev/null
    for s in 20 100; do
        before=$(sink_count sink)
        c0=$(cpu_ticks "$HK")
        el=$(load "$hport" "$s" "$NH" "$PLAIN_RCPT")
        c1=$(cpu_ticks "$HK")
        got=$(( $(sink_wait sink $((before + NH)) 10) - before ))
        HK_RATE[$s]=$(calc "$NH / $el")
        local tg_x
        tg_x=$(calc "'%.1f' % (${TG_RATE[$s]} / ${HK_RATE[$s]})")
        row "3 Haraka $ver pass-through" "$s" "$NH" "$el" $((c1 - c0)) "${DIRECT[$s]}" - \
            "sink got $got; ticketgate = ${tg_x}x Haraka" "tg >=5x this" \
            "$(calc "'ok' if $tg_x >= 5 else 'MISS'")"
    done
    stop "$HK"
}
declare -A HK_RATE
if ((HARAKA)); then haraka_row || log "Haraka row skipped"; else extra "Haraka row skipped (HARAKA=0)"; fi

# 5. reply latency
read -r LRELAY <<<"$(free_ports 1)"
start_tg latency "$SINK_PORT" "$LRELAY" || exit 1
LAT=$(timeout -k 5 $((NLAT * 12 + 30)) python3 "$HELP" latency "$TG_PORT" "$LRELAY" "$NLAT" "$TICKETED_RCPT" 2>"$TMP/lat.err") ||
    LAT="{\"error\": \"$(tail -1 "$TMP/lat.err")\"}"
stop "$TG_PID"

# ---- report -----------------------------------------------------------------

smtp_errors=$(grep -c . "$TMP/load.err")
echo
echo "ticketgate benchmarks  $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "message size $SIZE B, CPU = utime+stime of the server process / messages (CLK_TCK $HZ)"
echo
printf "$FMT" "row" "sess" "msgs" "secs" "msg/s" "CPU ms/msg" "x direct" "target" "" "check"
printf "$FMT" "----------------------------------" "----" "------" "-------" "------" "----------" "--------" "--------------" "----" "-----"
printf '%s\n' "${ROWS[@]}"
echo
printf '| %-44s | %8s | %s\n' "memory (ticketgate)" "VmHWM" "remark"
printf '|%s|----------|-------\n' "----------------------------------------------"
printf '%s\n' "${MEM_ROWS[@]}"
echo
echo "reply latency (250 to the client -> confirmation at the relay, $NLAT messages one at a time): $LAT"
python3 - "$LAT" <<'EOF'
import json, sys
try:
    d = json.loads(sys.argv[1])
    p99 = d.get("p99_ms")
    print("  p99 < 1000 ms:", "ok" if p99 is not None and p99 < 1000 and not d.get("missing") else "MISS")
except Exception as e:
    print("  latency: no result", e)
EOF
echo
printf '%s\n' "${EXTRA[@]}"
echo "smtp-source error lines: $smtp_errors"
((smtp_errors)) && sort "$TMP/load.err" | uniq -c | sort -rn | head -5
exit 0
