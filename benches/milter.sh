#!/usr/bin/env bash
# ticketgate as a Postfix milter: what it costs in the Postfix chain.
# One private Postfix instance, three measured rows, one table:
#
#   1. Postfix alone:  smtp-source -> smtpd (no milter) -> queue -> smtp ->
#                      smtp-sink, mail to a non-helpdesk address
#   2. + milter, pass-through: the same through a second smtpd of the same
#                      instance with the shipped packaging/postfix/
#                      milter.main.cf (smtpd_milters = ticketgate), mail to
#                      a non-helpdesk address (ticketgate accepts at DATA)
#   3. + milter, helpdesk mail: the same to nuovocaso@projectpp.it; every
#                      message opens a ticket before Postfix queues it
#
# Per row: wall time from the start of smtp-source until the sink has
# received the last message (not until smtp-source exits), msg/s, the ratio
# to row 1, CPU per message of ticketgate, of the whole Postfix instance
# (master and all its daemons), and of smtp-source + smtp-sink, how busy the
# machine's CPUs were (and how much the hypervisor stole), and ticketgate's
# peak RSS. A row during which a build or CI run (cargo, rustc, a CI clone,
# the Postfix end-to-end test) was seen says so in its check column. After
# the rows: ticketgate's replies (delivery rate and CPU per reply), the
# ticket count (must equal the helpdesk messages sent), metrics and logs.
# Method and results: benches/README.md, section "Milter benchmark".
#
#   bash benches/milter.sh
#   KEEP=1 WAIT_QUIET=0 N_PLAIN=1000 N_MILTER=1000 N_HELP=300 bash benches/milter.sh
#
# Environment (defaults in brackets):
#   TICKETGATE_BIN  release binary [$HOME/.cache/ticketgate-release/release/ticketgate]
#                   (the script never builds)
#   N_PLAIN   messages of row 1 [3000]
#   N_MILTER  messages of row 2 [3000]
#   N_HELP    messages of row 3 [2000]
#   SESS      parallel smtp-source sessions [20]
#   SIZE      smtp-source payload bytes (-l) [5120]
#   WARM      warm-up messages before each row, not counted [200]
#   DRAIN     seconds to wait for ticketgate's replies after row 3 [60]
#   WAIT_QUIET  1: first wait (<= 20 min) until no build or CI job runs [1]
#   KEEP      1: keep the scratch directory (logs, queue, data) [0]
#
# Needs root (Postfix's master does), the postfix package (postfix,
# postconf, postqueue, smtp-source, smtp-sink) and python3 (standard library
# only, helper in milter_helpers.py). Nothing touches /etc/postfix, the
# system queue or port 25: config, queue, data and logs live in one mktemp
# directory, ports are picked free on 127.0.0.1, and an EXIT trap stops
# everything started here and removes the directory.
# shellcheck disable=SC2317  # cleanup and what it calls run from the EXIT trap
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
HELP=$HERE/milter_helpers.py

N_PLAIN=${N_PLAIN:-3000}
N_MILTER=${N_MILTER:-3000}
N_HELP=${N_HELP:-2000}
SESS=${SESS:-20}
SIZE=${SIZE:-5120}
WARM=${WARM:-200}
DRAIN=${DRAIN:-60}
WAIT_QUIET=${WAIT_QUIET:-1}
KEEP=${KEEP:-0}
LOAD_TIMEOUT=300          # seconds, for any single measured load
PLAIN_RCPT=rcpt@example.net
HELP_RCPT=nuovocaso@projectpp.it
SENDER=bench@example.org
# The same subject in every row; in row 3 it names a sector keyword (mago).
SUBJECT="Mago4 non stampa le fatture elettroniche"
BIN=${TICKETGATE_BIN:-$HOME/.cache/ticketgate-release/release/ticketgate}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (Postfix's master needs it)"
[[ -x $BIN ]] || die "no ticketgate binary at $BIN (build it, or set TICKETGATE_BIN)"
for tool in postfix postconf postqueue smtp-source smtp-sink python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not installed (apt-get install postfix python3)"
done
id postfix >/dev/null 2>&1 || die "no postfix user (mail_owner)"
getent group postdrop >/dev/null || die "no postdrop group (setgid_group)"

# ---- wait for a machine without builds and CI runs --------------------------
# cargo and rustc are matched by process name: a match on the whole command
# line also finds long-running processes whose arguments merely mention
# cargo (an environment passed as an argument). CI clones and the Postfix
# end-to-end test are matched by path. This script and its children never
# count (in case it runs from such a path).
# mine PID: PID is this script or one of its descendants
mine() {
    local p=$1
    while [[ -n $p && $p != 0 && $p != 1 ]]; do
        [[ $p == "$$" ]] && return 0
        p=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
    done
    return 1
}
busy_jobs() {
    local p
    for p in $({ pgrep -x cargo; pgrep -x rustc; pgrep -f 'ci-clone|ticketgate-postfix-e2e'; } 2>/dev/null); do
        mine "$p" || echo "$p"
    done
}
wait_quiet() {
    local start=$SECONDS jobs
    while :; do
        jobs=$(busy_jobs | tr '\n' ' ')
        if [[ -z $jobs ]]; then
            log "no build or CI job running (load $(cut -d' ' -f1-3 /proc/loadavg)); measuring"
            return 0
        fi
        if ((SECONDS - start >= 1200)); then
            log "WARNING: still busy after 20 min (pids $jobs); measuring anyway"
            return 0
        fi
        log "busy (pids $jobs); checking again in 10 s"
        sleep 10
    done
}
((WAIT_QUIET)) && wait_quiet

# ---- scratch directory and clean-up -----------------------------------------
TMP=$(mktemp -d /tmp/tgmilter-bench.XXXXXX) || die "mktemp failed"
chmod 0755 "$TMP"        # Postfix daemons (postfix) and smtp-sink (nobody) get in
PF=$TMP/postfix          # config_directory
SPOOL=$TMP/spool         # queue_directory
PFDATA=$TMP/pfdata       # data_directory
LOGS=$TMP/log
TGDIR=$TMP/tg
mkdir -p "$PF" "$LOGS" "$TGDIR"
PFLOG=$LOGS/postfix.log
touch "$PFLOG"
RESULTS=$TMP/rows.jsonl
: >"$RESULTS"

SINK_PID=
RSINK_PID=
TG_PID=
LOAD_PID=

master_pid() {
    local f=$SPOOL/pid/master.pid pid
    [[ -s $f ]] || return 1
    pid=$(tr -d ' \n' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
# stop_pid PID SECONDS: TERM, wait, KILL
stop_pid() {
    local p=$1 i
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
stop_postfix() {
    local pid i
    pid=$(master_pid) || return 0
    timeout 30 postfix -c "$PF" stop >>"$LOGS/postfix-cmd.log" 2>&1
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    timeout 10 postfix -c "$PF" abort >>"$LOGS/postfix-cmd.log" 2>&1
    sleep 1
    kill -KILL "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$LOAD_PID" 10
    stop_pid "$TG_PID" 40    # shutdown_grace_secs is 30 in the shipped config
    stop_postfix
    stop_pid "$SINK_PID" 5
    stop_pid "$RSINK_PID" 5
    if ((KEEP)); then log "scratch directory kept: $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports, sinks -----------------------------------------------------------
read -r PLAIN_PORT MSMTPD_PORT MILTER_PORT SINK_PORT RSINK_PORT METRICS_PORT \
    < <(python3 "$HELP" ports 6)
[[ -n $METRICS_PORT ]] || die "no free ports"

# Counting sinks: the destination of all mail (relayhost), and ticketgate's
# reply relay (its automatic replies are counted apart from the load).
smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1024 </dev/null >"$LOGS/sink.count" 2>"$LOGS/sink.err" &
SINK_PID=$!
smtp-sink -u nobody -c "127.0.0.1:$RSINK_PORT" 1024 </dev/null >"$LOGS/rsink.count" 2>"$LOGS/rsink.err" &
RSINK_PID=$!
python3 "$HELP" wait "$SINK_PORT" 10 "$SINK_PID" || die "smtp-sink did not start: $(cat "$LOGS/sink.err")"
python3 "$HELP" wait "$RSINK_PORT" 10 "$RSINK_PID" || die "smtp-sink did not start: $(cat "$LOGS/rsink.err")"
# the last "mesg=N" a counting sink wrote
sink_count() { tail -c 400 "$LOGS/$1.count" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1 | grep . || echo 0; }

# ---- ticketgate -------------------------------------------------------------
# The shipped config and templates with two changes, as in benches/run.sh:
# outbox.rate_limit_per_hour raised (smtp-source sends everything from one
# sender; the shipped 20 per hour would suppress all but 20 replies) and a
# metrics listener (milter connections are counted there).
mkdir -p "$TMP/conf"
cp -r "$ROOT/config/templates" "$TMP/conf/templates"
CONF=$TMP/conf/ticketgate.toml
sed -e 's/^rate_limit_per_hour = .*/rate_limit_per_hour = 100000000/' \
    -e "s/^\[metrics\]\$/[metrics]\nlisten = \"127.0.0.1:$METRICS_PORT\"/" \
    "$ROOT/config/ticketgate.toml" >"$CONF"
grep -q '^rate_limit_per_hour = 100000000$' "$CONF" || die "config: no outbox.rate_limit_per_hour to raise"
grep -q "^listen = \"127.0.0.1:$METRICS_PORT\"" "$CONF" || die "config: no [metrics] section"
"$BIN" check-config --config "$CONF" >"$LOGS/check-config.log" 2>&1 ||
    die "check-config failed: $(tail -n 3 "$LOGS/check-config.log")"

TG_LOG=$TGDIR/ticketgate.log
CTL=$TGDIR/control.sock
"$BIN" serve --config "$CONF" --milter "127.0.0.1:$MILTER_PORT" --milter-only \
    --reply-relay "127.0.0.1:$RSINK_PORT" --data-dir "$TGDIR/data" --control "$CTL" \
    --log-format json </dev/null >>"$TG_LOG" 2>&1 &
TG_PID=$!
python3 "$HELP" wait "$MILTER_PORT" 60 "$TG_PID" || die "ticketgate did not start: $(tail -n 5 "$TG_LOG")"
python3 "$HELP" wait "$METRICS_PORT" 10 "$TG_PID" || die "ticketgate metrics listener did not start"
metric() { python3 "$HELP" metric "$METRICS_PORT" "$1"; }
milter_conns() { metric ticketgate_connections_total; }
hwm_mb() { python3 -c 'import sys; print(round(int(sys.argv[1]) / 1024))' "$(python3 "$HELP" hwm "$TG_PID")"; }
# utime+stime of ticketgate (all threads), clock ticks: stat fields 14 and
# 15, i.e. 12 and 13 once "pid (comm) " is cut off
tg_ticks() { sed 's/^.*) //' "/proc/$TG_PID/stat" | awk '{print $12 + $13}'; }

# ---- the private Postfix instance -------------------------------------------
# As in tests/postfix/run.sh: own config, queue and data directories,
# loopback only, log in a file (postlogd), relayhost = the sink. Otherwise
# Postfix's defaults (in_flow_delay, concurrency, fsync of queue files).
cat >"$PF/main.cf" <<EOF
# Private instance for benches/milter.sh.
compatibility_level = 3.6
queue_directory = $SPOOL
data_directory = $PFDATA
mail_owner = postfix
setgid_group = postdrop
myhostname = tgmilter-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery in this instance
relay_domains =
relayhost = [127.0.0.1]:$SINK_PORT
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtputf8_enable = no
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file = $PFLOG
maillog_file_prefixes = $TMP
smtp_connect_timeout = 5s
EOF
# The shipped milter snippet without its comments, its port the one above.
SNIPPET=$ROOT/packaging/postfix/milter.main.cf
grep -qE '^smtpd_milters = inet:127\.0\.0\.1:8890$' "$SNIPPET" ||
    die "$SNIPPET: smtpd_milters is not inet:127.0.0.1:8890"
{
    echo "# packaging/postfix/milter.main.cf, port 8890 -> $MILTER_PORT"
    grep -vE '^[[:space:]]*(#|$)' "$SNIPPET" | sed "s/127\.0\.0\.1:8890/127.0.0.1:$MILTER_PORT/g"
} >>"$PF/main.cf"

# master.cf.proto without chroot and the optional delivery agents, and two
# public smtpd listeners sharing queue, cleanup, qmgr and smtp: row 1's with
# smtpd_milters emptied, rows 2 and 3's with main.cf's (ticketgate).
cat >"$PF/master.cf" <<EOF
127.0.0.1:$PLAIN_PORT inet n  -       n       -       100     smtpd
  -o syslog_name=postfix/plain
  -o smtpd_milters=
127.0.0.1:$MSMTPD_PORT inet n  -       n       -       100     smtpd
  -o syslog_name=postfix/milter
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
mkdir -p "$SPOOL"
chmod 0755 "$SPOOL"
out=$(timeout 60 postfix -c "$PF" check 2>&1)
[[ $out != *fatal* ]] || die "postfix check: $out"
timeout 60 postfix -c "$PF" start </dev/null >>"$LOGS/postfix-cmd.log" 2>&1 ||
    die "postfix start failed: $(tail -n 5 "$LOGS/postfix-cmd.log")"
python3 "$HELP" wait "$PLAIN_PORT" 20 || die "Postfix does not listen on $PLAIN_PORT"
python3 "$HELP" wait "$MSMTPD_PORT" 20 || die "Postfix does not listen on $MSMTPD_PORT"
MASTER=$(master_pid) || die "no Postfix master pid"
PF_VERSION=$(postconf -c "$PF" -h mail_version)
log "Postfix $PF_VERSION master $MASTER: plain smtpd :$PLAIN_PORT, milter smtpd :$MSMTPD_PORT" \
    "<-> ticketgate :$MILTER_PORT (pid $TG_PID); relayhost sink :$SINK_PORT, replies -> :$RSINK_PORT"

queue_empty() { [[ -z $(timeout 10 postqueue -c "$PF" -j 2>/dev/null) ]]; }
# wait_queue_empty SECONDS -> "yes" or "NO (N entries)"
wait_queue_empty() {
    local end=$((SECONDS + $1))
    until queue_empty; do
        if ((SECONDS >= end)); then
            echo "NO ($(timeout 10 postqueue -c "$PF" -j 2>/dev/null | grep -c .) entries)"
            return 1
        fi
        sleep 0.2
    done
    echo yes
}

# ---- loads ------------------------------------------------------------------
# run_load PORT N RCPT PREFIX: one smtp-source run through the helper; its
# JSON result goes to $LOGS/result.json. Started in the background (not in
# a command substitution) so a signal reaches the trap at once and the
# EXIT trap can stop it (the helper kills smtp-source on TERM).
run_load() {
    local args rc
    args=$(python3 -c 'import json, sys
port, n, rcpt, prefix, sub, sess, size, sender, sinkf, base, tmo, master, tg, sink = sys.argv[1:]
print(json.dumps({"port": int(port), "n": int(n), "rcpt": rcpt, "out_prefix": prefix,
    "subject": sub, "sessions": int(sess), "size": int(size), "sender": sender,
    "sink_file": sinkf, "sink_base": int(base), "timeout": float(tmo), "stall": 30,
    "pids": {"postfix": [master, "tree"], "tg": [tg, "own"], "sink": [sink, "own"]}}))' \
        "$1" "$2" "$3" "$4" "$SUBJECT" "$SESS" "$SIZE" "$SENDER" "$LOGS/sink.count" \
        "$(sink_count sink)" "$LOAD_TIMEOUT" "$MASTER" "$TG_PID" "$SINK_PID")
    timeout -k 10 $((LOAD_TIMEOUT + 30)) python3 "$HELP" load "$args" >"$LOGS/result.json" &
    LOAD_PID=$!
    wait "$LOAD_PID"
    rc=$?
    LOAD_PID=
    return "$rc"
}

# warm PORT RCPT: WARM messages, not counted; then an empty queue
warm() {
    run_load "$1" "$WARM" "$2" "$LOGS/warm" || log "warm-up: $(cat "$LOGS/result.json")"
    wait_queue_empty 60 >/dev/null || log "warm-up: the queue did not drain"
}

# measure LABEL PORT N RCPT USES_MILTER BASE: one row into $RESULTS
measure() {
    local label=$1 port=$2 n=$3 rcpt=$4 uses=$5 base=$6 c0 c1 j drained hwm
    c0=$(milter_conns)
    log "$label: $n messages, $SESS sessions, to $rcpt"
    run_load "$port" "$n" "$rcpt" "$LOGS/load" || log "$label: load did not complete: $(cat "$LOGS/result.json")"
    j=$(cat "$LOGS/result.json")
    [[ -n $j ]] || j='{"result": "no result", "n": '"$n"', "secs": 0, "source_secs": 0, "machine_busy_pct": 0, "sink_got": 0}'
    drained=$(wait_queue_empty 60)
    c1=$(milter_conns)
    hwm=$(python3 "$HELP" hwm "$TG_PID")
    LAST=$(python3 -c 'import json, sys
r = json.loads(sys.argv[1])
label, uses, base, c0, c1, hwm, drained = sys.argv[2:]
r.update(label=label, uses_milter=uses == "1", base=base == "1", hwm_kb=int(hwm or 0))
try:
    r["milter_conns"] = int(c1) - int(c0)
except ValueError:
    r["milter_conns"] = "?"
check = ["sink got %s" % r.get("sink_got"), "queue empty: " + drained]
if r.get("result") != "ok":
    check.insert(0, "LOAD " + str(r.get("result")).upper())
if r.get("source_rc"):
    check.append("smtp-source exit %s" % r["source_rc"])
if r.get("other_jobs"):
    check.append("OTHER JOBS RAN: %d build/CI processes" % len(r["other_jobs"]))
r["check"] = "; ".join(check)
print(json.dumps(r))' "$j" "$label" "$uses" "$base" "$c0" "$c1" "$hwm" "$drained")
    echo "$LAST" >>"$RESULTS"
    log "$label: $LAST"
}

EXTRA=()
extra() { EXTRA+=("$*"); log "$*"; }

# ---- run --------------------------------------------------------------------
log "binary $BIN; SESS=$SESS SIZE=$SIZE WARM=$WARM N_PLAIN=$N_PLAIN N_MILTER=$N_MILTER N_HELP=$N_HELP; scratch $TMP"

# 1. Postfix alone
warm "$PLAIN_PORT" "$PLAIN_RCPT"
measure "1 Postfix alone, pass-through" "$PLAIN_PORT" "$N_PLAIN" "$PLAIN_RCPT" 0 1

# 2. + ticketgate milter, pass-through
extra "ticketgate VmHWM before row 2 (started, idle during row 1): $(hwm_mb) MB"
warm "$MSMTPD_PORT" "$PLAIN_RCPT"
measure "2 + milter, pass-through" "$MSMTPD_PORT" "$N_MILTER" "$PLAIN_RCPT" 1 0

# 3. + ticketgate milter, helpdesk mail (a ticket per message)
rs0=$(sink_count rsink)
warm "$MSMTPD_PORT" "$HELP_RCPT"
# let the warm-up's replies go out first (bounded), so they do not run
# into the measured window
for ((i = 0; i < 300; i++)); do
    (($(sink_count rsink) - rs0 >= WARM)) && break
    sleep 0.1
done
rs1=$(sink_count rsink)
tg_c0=$(tg_ticks)
measure "3 + milter, helpdesk" "$MSMTPD_PORT" "$N_HELP" "$HELP_RCPT" 1 0
# replies still going out: wait for them (<= DRAIN s); ticketgate's CPU
# from the end of the row's load to then is (nearly) all reply delivery
rs_load=$(($(sink_count rsink) - rs1))
tg_c1=$(tg_ticks)
t1=$(date +%s.%N)
end=$((SECONDS + DRAIN))
while (($(sink_count rsink) - rs1 < N_HELP && SECONDS < end)); do sleep 0.2; done
rs_all=$(($(sink_count rsink) - rs1))
tg_c2=$(tg_ticks)
t2=$(date +%s.%N)
extra "$(python3 -c 'import sys
n, rs_load, rs_all, c0, c1, c2, t1, t2, hz = map(float, sys.argv[1:])
d = rs_all - rs_load
print("row 3 replies at the reply relay: %d of %d when the load was done (queue empty), %d after %.1f s more"
      " (%.0f replies/s, one at a time); ticketgate CPU while only replies went out: %.1f s = %s ms per reply;"
      " over the whole row incl. all replies: %.2f ms per helpdesk message"
      % (rs_load, n, rs_all, t2 - t1, d / (t2 - t1), (c2 - c1) / hz,
         "%.2f" % ((c2 - c1) * 1000 / hz / d) if d else "-", (c2 - c0) * 1000 / hz / n))' \
    "$N_HELP" "$rs_load" "$rs_all" "$tg_c0" "$tg_c1" "$tg_c2" "$t1" "$t2" "$(getconf CLK_TCK)")"
extra "ticketgate VmHWM after row 3 and the replies: $(hwm_mb) MB (before listing tickets)"
extra "ticketgate metrics: messages_total passed=$(metric 'ticketgate_messages_total{action="passed"}')" \
    "created=$(metric 'ticketgate_messages_total{action="created"}'), connections_total=$(milter_conns)" \
    "(rows 2 and 3 with their warm-ups: $((2 * WARM + N_MILTER + N_HELP)) messages, $((WARM + N_HELP)) to the helpdesk)"
# per helpdesk message of row 3: duration_ms of ticketgate's summary line
# (from MAIL to the verdict, so it includes the time Postfix took to pass
# the message on)
extra "row 3 summary lines, duration_ms (MAIL to verdict): $(grep '"ticketgate::message"' "$TG_LOG" |
    tail -n "$N_HELP" | python3 -c 'import json, sys
d = sorted(json.loads(l).get("duration_ms", 0) for l in sys.stdin)
pick = lambda p: d[min(len(d) - 1, int(p / 100 * len(d)))]
print("n=%d p50=%s p90=%s p99=%s max=%s" % (len(d), pick(50), pick(90), pick(99), d[-1]) if d else "none")')"

# tickets: one per helpdesk message, warm-up included
want=$((WARM + N_HELP))
if out=$(timeout 120 "$BIN" tickets --control "$CTL" list --json 2>"$LOGS/tickets.err" |
    python3 "$HELP" tickets 2>>"$LOGS/tickets.err"); then
    got=$(head -n 1 <<<"$out")
    extra "tickets: $got, expected $want (warm-up $WARM + row 3 $N_HELP) -> $([[ $got == "$want" ]] && echo ok || echo MISMATCH)"
    extra "tickets by $(sed -n 2p <<<"$out")"
else
    extra "tickets: listing failed: $(tail -n 2 "$LOGS/tickets.err")"
fi
extra "data dir after row 3: $(du -sm "$TGDIR/data" | cut -f1) MB"

# what the logs say
extra "Postfix log: $(grep -c 'warning:' "$PFLOG") warnings ($(grep -ci 'warning:.*milter' "$PFLOG") about milters)," \
    "$(grep -cE 'status=sent' "$PFLOG") status=sent, $(grep -cE 'status=(deferred|bounced)' "$PFLOG") deferred/bounced," \
    "$(grep -cE ' (reject|milter-reject):' "$PFLOG") rejects"
extra "ticketgate log: $(grep -c . "$TG_LOG") lines, $(grep -c '"level":"WARN"' "$TG_LOG") WARN, $(grep -c '"level":"ERROR"' "$TG_LOG") ERROR"
serr=$(cat "$LOGS"/warm.err "$LOGS"/load.err 2>/dev/null | grep -c .)
extra "smtp-source error lines: $serr"
((serr)) && cat "$LOGS"/warm.err "$LOGS"/load.err 2>/dev/null | sort | uniq -c | sort -rn | head -n 5 >&2

# ---- report -----------------------------------------------------------------
echo
echo "ticketgate milter benchmark  $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) CPU," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), Postfix $PF_VERSION"
echo "smtp-source -s $SESS -l $SIZE (one message per connection), warm-up $WARM per row;" \
    "secs = until the sink has the last message; CPU = utime+stime / messages (CLK_TCK $(getconf CLK_TCK));" \
    "busy = share of all $(nproc) CPUs in use during the row, steal = share the hypervisor gave to other guests"
echo
python3 "$HELP" report "$RESULTS"
echo
printf '%s\n' "${EXTRA[@]}"
exit 0
