#!/usr/bin/env bash
# End to end through a real Postfix, in ticketgate's three modes:
#
#   A. before-queue proxy:    swaks -> smtpd(P, smtpd_proxy_filter) ->
#                             ticketgate(T) -> smtpd(R) -> queue -> smtp-sink
#   B. after-queue filter:    swaks -> smtpd(P) -> queue -> ticketgate
#                             transport -> ticketgate(T) -> smtpd(R) ->
#                             queue -> smtp-sink
#   C. milter:                swaks -> smtpd(P, smtpd_milters) <-> ticketgate
#                             (--milter-only) ; smtpd(P) -> queue -> smtp-sink
#
# The seed scenarios (01S and Project++ tickets, confirmations, forged tags,
# pass-through, close/reopen by mail, suspend and resume, three messages in
# one session, store failure) run in modes A and C with the same checks; in
# those modes ticketgate's automatic replies go to the smtp-sink too, where
# they are read back. Mode C adds the snippet packaging/postfix/
# milter.main.cf, local submission through non_smtpd_milters, and
# ticketgate down (Postfix tempfails the client, the retry gets through).
#
# Everything runs in a private Postfix instance under a mktemp directory
# (own config, queue and data directories, loopback ports chosen at run
# time, log in a file); nothing touches /etc/postfix, the system queue or
# port 25. Builds nothing: the binary comes from $TICKETGATE_BIN (default
# $CARGO_TARGET_DIR/debug/ticketgate). Needs root (Postfix's master does),
# the postfix package (smtp-sink, smtp-source), swaks, python3 and ss.
#
# Prints "postfix-e2e: N passed, M failed" last; exits non-zero on any
# failure, after printing the Postfix and ticketgate log tails.
# KEEP=1 keeps the work directory for a look afterwards.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ticketgate-target}
BIN=${TICKETGATE_BIN:-$TARGET_DIR/debug/ticketgate}
CONFIG=$ROOT/config/ticketgate.toml
T0=$SECONDS

say() { printf 'postfix-e2e: %s\n' "$*"; }
die() {
    say "FATAL: $*"
    FAILED=$((FAILED + 1))
    exit 1
}

PASSED=0
FAILED=0
ok() {
    PASSED=$((PASSED + 1))
    say "ok   $*"
}
bad() {
    FAILED=$((FAILED + 1))
    say "FAIL $*"
}
# check DESCRIPTION COMMAND...: one counted check.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# not COMMAND...: succeeds when COMMAND fails.
not() { ! "$@"; }
# wait_for SECONDS COMMAND...: poll until COMMAND succeeds, at most SECONDS.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# --------------------------------------------------------------------------
# Work directory and clean-up.
W=
PF=
SPOOL=
LOGS=
PFLOG=
SINK_PID=
TG_PID=
TG_EXIT=
TG_LOG=
CTL=
MODE=setup

master_pid() {
    local f=$SPOOL/pid/master.pid
    [[ -s $f ]] || return 1
    local pid
    pid=$(tr -d ' \n' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_ticketgate() {
    [[ -n $TG_PID ]] || return 0
    kill -TERM "$TG_PID" 2>/dev/null || true
    # shutdown_grace_secs is 30 in the shipped config.
    if ! wait_for 40 not kill -0 "$TG_PID" 2>/dev/null; then
        say "ticketgate did not stop on SIGTERM; killing it"
        kill -KILL "$TG_PID" 2>/dev/null || true
    fi
    TG_EXIT=0
    wait "$TG_PID" 2>/dev/null || TG_EXIT=$?
    TG_PID=
}

stop_postfix() {
    local pid
    pid=$(master_pid) || return 0
    timeout 30 postfix -c "$PF" stop >>"$LOGS/postfix-cmd.log" 2>&1 || true
    if ! wait_for 20 not kill -0 "$pid" 2>/dev/null; then
        timeout 10 postfix -c "$PF" abort >>"$LOGS/postfix-cmd.log" 2>&1 || true
        wait_for 5 not kill -0 "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_sink() {
    [[ -n $SINK_PID ]] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait_for 5 not kill -0 "$SINK_PID" 2>/dev/null || kill -KILL "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
}

show_logs() {
    say "---- mode $MODE: Postfix warnings and errors ($PFLOG)"
    grep -E 'warning|error|fatal|panic|reject|status=(deferred|bounced)' "$PFLOG" | tail -n 30
    say "---- last lines of the Postfix log"
    tail -n 40 "$PFLOG" 2>/dev/null || true
    [[ -s $LOGS/postfix-cmd.log ]] && {
        say "---- postfix command output"
        tail -n 20 "$LOGS/postfix-cmd.log"
    }
    local f
    for f in "$W"/tg-*/ticketgate.log; do
        [[ -f $f ]] || continue
        say "---- last lines of $f"
        tail -n 40 "$f"
    done
    for f in "$LOGS"/sink-*.log; do
        [[ -s $f ]] || continue
        say "---- $f"
        tail -n 10 "$f"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $W ]]; then
        ((FAILED > 0 || rc != 0)) && show_logs
        stop_ticketgate
        stop_postfix
        stop_sink
        if [[ ${KEEP:-} == 1 ]]; then
            say "work directory kept: $W"
        else
            rm -rf "$W"
        fi
    fi
    ((rc == 0 && FAILED > 0)) && rc=1
    ((rc != 0 && FAILED == 0)) && FAILED=1
    say "$PASSED passed, $FAILED failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in postfix postconf postqueue smtp-sink smtp-source swaks python3 timeout ss; do
    command -v "$tool" >/dev/null || die "$tool not installed (apt-get install postfix swaks)"
done
[[ $(id -u) == 0 ]] || die "must run as root (Postfix's master needs it)"
[[ -x $BIN ]] || die "ticketgate binary not found: $BIN (cargo build, or set TICKETGATE_BIN)"
id postfix >/dev/null 2>&1 || die "no postfix user (mail_owner)"
getent group postdrop >/dev/null || die "no postdrop group (setgid_group)"

W=$(mktemp -d /tmp/ticketgate-postfix-e2e.XXXXXX)
# Postfix daemons (user postfix) and smtp-sink (user nobody) must get in.
chmod 0755 "$W"
PF=$W/postfix          # config_directory
SPOOL=$W/spool         # queue_directory
PFDATA=$W/pfdata       # data_directory
LOGS=$W/log
mkdir -p "$PF" "$LOGS"
PFLOG=$LOGS/postfix.log
touch "$PFLOG"

# --------------------------------------------------------------------------
# Ports: free loopback ports below the ephemeral range (32768-), so the
# port-0 listeners of the other tests running alongside never take them.
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
want, got = int(sys.argv[1]), []
while len(got) < want:
    p = random.randint(20000, 32000)
    if p in got:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        got.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, got)))
EOF
}
read -r SINK_PORT DEAD_PORT < <(free_ports 2)
# Where ticketgate sends its automatic replies: the sink in modes A and C
# (the scenarios read them there), a closed port in mode B.
RELAY_PORT=$DEAD_PORT

listening() { timeout 2 bash -c ": </dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# --------------------------------------------------------------------------
# smtp-sink: the final destination; one file per message (with X-Rcpt-Args
# etc. on top) so the headers can be checked.
SINK=$W/sink
mkdir -p "$SINK"
chmod 0777 "$SINK"
smtp-sink -u nobody -d "$SINK/msg." "127.0.0.1:$SINK_PORT" 100 \
    </dev/null >"$LOGS/sink-$SINK_PORT.log" 2>&1 &
SINK_PID=$!
wait_for 10 listening "$SINK_PORT" || die "smtp-sink did not start on 127.0.0.1:$SINK_PORT"

dumps() { find "$SINK" -type f -name 'msg.*' | wc -l; }
# Ticket ids start again with every data directory: before each mode the
# dumps of the previous one move aside, so a search finds this mode's.
sink_aside() {
    local d=$W/sink-before-$MODE
    mkdir -p "$d"
    find "$SINK" -type f -name 'msg.*' -exec mv -t "$d" {} +
}
# dump_with TEXT: the sink dump holding TEXT (a unique marker).
dump_with() { grep -rlF -- "$1" "$SINK" 2>/dev/null | head -n 1; }
has_dump() { [[ -n $(dump_with "$1") ]]; }
at_least_dumps() { (($(dumps) >= $1)); }

# --------------------------------------------------------------------------
# The private Postfix instance.
write_main_cf() {
    local mode=$1
    cat >"$PF/main.cf" <<EOF
# Private instance for tests/postfix/run.sh (mode $mode).
compatibility_level = 3.6
queue_directory = $SPOOL
data_directory = $PFDATA
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-e2e.localdomain
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
# No system log: postlogd writes this file.
maillog_file = $PFLOG
maillog_file_prefixes = $W
# Quick and bounded: short waits, retry when told (postqueue -f).
smtp_connect_timeout = 5s
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
# The re-injection smtpd turns down this recipient (reject test).
e2e_reinject_recipient_restrictions =
    check_recipient_access texthash:$PF/reject_recipients,
    permit_mynetworks, reject
EOF
    if [[ $mode == B ]]; then
        echo "content_filter = ticketgate:[127.0.0.1]:$TG_PORT" >>"$PF/main.cf"
    fi
    if [[ $mode == C ]]; then
        milter_snippet >>"$PF/main.cf" || return 1
    fi
    printf 'reject@example.net 550 5.1.1 <reject@example.net>: e2e says no such user\n' \
        >"$PF/reject_recipients"
}

# The services every instance needs (master.cf.proto without chroot, the
# optional delivery agents left out).
BASE_MASTER_CF='pickup    unix  n       -       n       60      1       pickup
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
postlog   unix-dgram n  -       n       -       1       postlogd'

# The shipped snippet packaging/postfix/FILE, made private: its ports
# (10025 ticketgate, 10026 re-injection, the public "smtp inet") become
# the ones picked above, chroot is off (a private queue directory has no
# chroot jail), each service gets its own syslog_name, and the
# re-injection smtpd's recipient restrictions gain the e2e reject map.
# Fails if the snippet no longer has what is replaced.
snippet() {
    python3 - "$ROOT/packaging/postfix/$1" "$PUBLIC_PORT" "$TG_PORT" "$REINJECT_PORT" <<'PYEOF'
import sys
path, public, tg, reinject = sys.argv[1:]
out, seen = [], set()
for line in open(path):
    line = line.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    if line[0].isspace():
        if "smtpd_recipient_restrictions=permit_mynetworks,reject" in line:
            line = line.replace("permit_mynetworks,reject", "$e2e_reinject_recipient_restrictions")
            seen.add("restrictions")
        if "127.0.0.1:10025" in line:
            seen.add("filter")
        out.append(line.replace("127.0.0.1:10025", "127.0.0.1:" + tg))
        continue
    f = line.split()
    if f[0] == "smtp" and f[1] == "inet":
        f[0], name = "127.0.0.1:" + public, "public"
        seen.add("public")
    elif f[0] == "127.0.0.1:10026":
        f[0], name = "127.0.0.1:" + reinject, "reinject"
        seen.add("reinject")
    else:
        name = f[0]
    f[4] = "n"
    out.append("  ".join(f))
    out.append("  -o syslog_name=postfix/" + name)
need = {"reinject", "restrictions"} | ({"public", "filter"} if "before-queue" in path else set())
if need - seen:
    sys.exit("%s: no %s to adapt" % (path, ", ".join(sorted(need - seen))))
print("\n".join(out))
PYEOF
}

# The shipped packaging/postfix/milter.main.cf without its comments, the
# milter's port the one picked above. Fails if the snippet no longer has
# the settings the mode relies on.
milter_snippet() {
    local f=$ROOT/packaging/postfix/milter.main.cf key
    for key in smtpd_milters non_smtpd_milters milter_default_action milter_protocol; do
        grep -qE "^$key = " "$f" || { say "$f: no $key"; return 1; }
    done
    grep -qE '^smtpd_milters = inet:127\.0\.0\.1:8890$' "$f" ||
        { say "$f: smtpd_milters is not inet:127.0.0.1:8890"; return 1; }
    echo "# packaging/postfix/milter.main.cf, port 8890 -> $MILTER_PORT"
    grep -vE '^[[:space:]]*(#|$)' "$f" | sed "s/127\.0\.0\.1:8890/127.0.0.1:$MILTER_PORT/g"
}

write_master_cf() {
    local mode=$1
    {
        echo "$BASE_MASTER_CF"
        if [[ $mode == C ]]; then
            # One public smtpd; Postfix delivers to the sink itself.
            cat <<EOF
127.0.0.1:$PUBLIC_PORT inet n  -       n       -       20      smtpd
  -o syslog_name=postfix/public
EOF
        elif [[ $mode == A ]]; then
            snippet before-queue-proxy.master.cf
            # The same proxy without speed_adjust: refusals at RCPT time.
            cat <<EOF
127.0.0.1:$DIRECT_PORT inet n  -       n       -       20      smtpd
  -o syslog_name=postfix/direct
  -o smtpd_proxy_filter=127.0.0.1:$TG_PORT
  -o smtpd_proxy_timeout=300s
EOF
        else
            cat <<EOF
127.0.0.1:$PUBLIC_PORT inet n  -       n       -       20      smtpd
  -o syslog_name=postfix/public
EOF
            snippet content-filter.master.cf
        fi
    } >"$PF/master.cf"
}

start_postfix() {
    local mode=$1
    write_main_cf "$mode" || { say "cannot write main.cf"; return 1; }
    write_master_cf "$mode" || { say "cannot write master.cf"; return 1; }
    # Like /var/spool/postfix: root's; postfix creates what is inside.
    mkdir -p "$SPOOL"
    chmod 0755 "$SPOOL"
    local out
    if out=$(timeout 60 postfix -c "$PF" check 2>&1) && [[ $out != *fatal* ]]; then
        ok "mode $mode: postfix -c DIR check passes"
    else
        bad "mode $mode: postfix -c DIR check passes"
        printf '%s\n' "$out"
        return 1
    fi
    timeout 60 postfix -c "$PF" start </dev/null >>"$LOGS/postfix-cmd.log" 2>&1 ||
        { say "postfix start failed"; return 1; }
    local port ports=("$PUBLIC_PORT")
    [[ $mode == C ]] || ports+=("$REINJECT_PORT")
    [[ $mode != A ]] || ports+=("$DIRECT_PORT")
    for port in "${ports[@]}"; do
        wait_for 20 listening "$port" || { say "Postfix does not listen on $port"; return 1; }
    done
}

# Every Postfix daemon of the instance runs as mail_owner; only the master
# stays root. (A daemon is root for the moment between fork and dropping
# privileges, hence the retry.)
ROOT_DAEMONS=
DAEMON_COUNT=0
daemons_unprivileged() {
    local master
    master=$(master_pid) || return 1
    local procs
    procs=$(ps -o user=,pid=,args= --ppid "$master")
    DAEMON_COUNT=$(grep -c . <<<"$procs")
    ROOT_DAEMONS=$(awk '$1 != "postfix"' <<<"$procs")
    ((DAEMON_COUNT > 0)) && [[ -z $ROOT_DAEMONS ]]
}
check_daemon_users() {
    wait_for 5 daemons_unprivileged || {
        say "daemons not running as postfix: $ROOT_DAEMONS"
        return 1
    }
    say "$DAEMON_COUNT daemons of master $(master_pid), all user postfix"
}

# --------------------------------------------------------------------------
# ticketgate
# start_ticketgate DIR: ticketgate for the current mode (SMTP listener in
# A and B, milter only in C) with its data, control socket and log in DIR.
# With TG_FSIZE=N it runs under `ulimit -f N` (1 KiB blocks) with SIGXFSZ
# ignored, so writing a larger file fails with EFBIG: a full store.
start_ticketgate() {
    local dir=$1 port
    mkdir -p "$dir"
    TG_LOG=$dir/ticketgate.log
    CTL=$dir/control.sock
    local args=(serve --config "$CONFIG")
    if [[ $MODE == C ]]; then
        args+=(--milter "127.0.0.1:$MILTER_PORT" --milter-only)
        port=$MILTER_PORT
    else
        args+=(--listen "127.0.0.1:$TG_PORT" --next-hop "127.0.0.1:$REINJECT_PORT")
        port=$TG_PORT
    fi
    args+=(--reply-relay "127.0.0.1:$RELAY_PORT" --data-dir "$dir/data"
        --control "$CTL" --log-format json --metrics off)
    if [[ -n ${TG_FSIZE:-} ]]; then
        (trap '' XFSZ; ulimit -f "$TG_FSIZE"; exec "$BIN" "${args[@]}") \
            </dev/null >>"$TG_LOG" 2>&1 &
    else
        "$BIN" "${args[@]}" </dev/null >>"$TG_LOG" 2>&1 &
    fi
    TG_PID=$!
    local end=$((SECONDS + 60))
    until listening "$port"; do
        kill -0 "$TG_PID" 2>/dev/null || { say "ticketgate exited at start"; TG_PID=; return 1; }
        ((SECONDS < end)) || { say "ticketgate does not listen on $port"; return 1; }
        sleep 0.1
    done
}

# --------------------------------------------------------------------------
# Mail
BODY_MAGO="Buongiorno, da stamattina Mago4 non stampa piu' le fatture elettroniche: il programma si chiude con un errore di memoria. Grazie."

# send ID TO [swaks args...]: one message through the public smtpd; the
# transcript lands in $LOGS/swaks-ID.log, swaks' exit code is returned.
send() {
    local id=$1 to=$2
    shift 2
    local rc=0
    timeout 60 swaks --server "127.0.0.1:${PUBLIC:-$PUBLIC_PORT}" --timeout 30 \
        --helo client.example.org \
        --from "${FROM:-mario.rossi@example.org}" --to "$to" \
        --header "Message-Id: <$id@e2e.example.org>" \
        --header "X-E2E-Id: $id" \
        "$@" >"$LOGS/swaks-$id.log" 2>&1 || rc=$?
    return "$rc"
}
send_mago() {
    local id=$1
    shift
    send "$id" nuovocaso@projectpp.it \
        --header "Subject: Mago4 non stampa le fatture, urgente" \
        --body "$BODY_MAGO" "$@"
}

dump_has() { grep -q -- "$2" "$1"; }
dump_lacks() { ! grep -qi -- "$2" "$1"; }

# check_tagged MODE ID: the dump of message ID carries a Project++ ticket
# in sector gestionale.
check_tagged() {
    local mode=$1 id=$2 f
    if wait_for 30 has_dump "X-E2E-Id: $id"; then
        ok "mode $mode: $id delivered to the sink"
    else
        bad "mode $mode: $id delivered to the sink"
        return 0
    fi
    f=$(dump_with "X-E2E-Id: $id")
    check "mode $mode: $id has X-Ticketgate-Ticket: PP-" dump_has "$f" '^X-Ticketgate-Ticket: PP-'
    check "mode $mode: $id has X-Ticketgate-Sector: gestionale" dump_has "$f" '^X-Ticketgate-Sector: gestionale'
}

check_untagged() {
    local mode=$1 id=$2 f
    if wait_for 30 has_dump "X-E2E-Id: $id"; then
        ok "mode $mode: $id (not a helpdesk) delivered to the sink"
    else
        bad "mode $mode: $id (not a helpdesk) delivered to the sink"
        return 0
    fi
    f=$(dump_with "X-E2E-Id: $id")
    check "mode $mode: $id has no X-Ticketgate header" dump_lacks "$f" '^X-Ticketgate-'
}

# The JSON summary line of message ID names CLIENT.
summary_client_is() {
    local id=$1 client=$2
    grep -F "$id@e2e.example.org" "$TG_LOG" | grep -F '"ticketgate::message"' |
        grep -qF "\"client\":\"$client\""
}

# check_helpdesk_and_other MODE: a Project++ message comes out tagged,
# a message to someone else untouched.
check_helpdesk_and_other() {
    local m=$1 rc=0
    send_mago "$m-helpdesk" || rc=$?
    check "mode $m: swaks to nuovocaso@projectpp.it accepted" test "$rc" = 0
    check_tagged "$m" "$m-helpdesk"
    rc=0
    send "$m-other" someone@example.net --header "Subject: Pranzo" \
        --body "Ci vediamo alle 13 davanti all'ufficio, come al solito." || rc=$?
    check "mode $m: swaks to someone@example.net accepted" test "$rc" = 0
    check_untagged "$m" "$m-other"
}

# check_client_address MODE ID: a message from 127.0.0.2 is tagged and its
# summary line names that client (XFORWARD, or the milter's connect data).
check_client_address() {
    local m=$1 id=$2 rc=0
    send_mago "$id" --local-interface 127.0.0.2 || rc=$?
    check "mode $m: swaks from 127.0.0.2 accepted" test "$rc" = 0
    check_tagged "$m" "$id"
    check "mode $m: summary log line has \"client\":\"127.0.0.2\"" \
        wait_for 10 summary_client_is "$id" 127.0.0.2
}

check_smtp_source() {
    local mode=$1 before rc=0
    before=$(dumps)
    timeout 90 smtp-source -m 20 -s 4 -l 2000 -f sender@example.org -t rcpt@example.net \
        "127.0.0.1:$PUBLIC_PORT" >"$LOGS/smtp-source-$mode.log" 2>&1 || rc=$?
    check "mode $mode: smtp-source -m 20 -s 4 exits 0" test "$rc" = 0
    if wait_for 60 at_least_dumps $((before + 20)); then
        ok "mode $mode: 20 more dumps at the sink"
    else
        bad "mode $mode: 20 more dumps at the sink (got $(($(dumps) - before)))"
    fi
}

# Queue entries (postqueue -j) from SENDER in queue QUEUE.
queued_from() {
    timeout 10 postqueue -c "$PF" -j 2>/dev/null |
        grep -F "\"sender\": \"$1\"" | grep -qF "\"queue_name\": \"$2\""
}
# Anything from SENDER in the queue, whatever the queue.
in_queue() {
    timeout 10 postqueue -c "$PF" -j 2>/dev/null | grep -qF "\"sender\": \"$1\""
}
queue_empty() {
    [[ -z $(timeout 10 postqueue -c "$PF" -j 2>/dev/null) ]]
}

# --------------------------------------------------------------------------
# The seed scenarios, the same checks in mode A and in mode C.
YEAR=$(date -u +%Y)
LONG_BODY="Buongiorno, la procedura di emissione ddt sul registro VENIMM dal 1 al 10 dicembre si blocca per il ddt n. 12345 con errore di calcolo."

# tg ARGS...: the tickets command against the running ticketgate.
tg() { timeout 30 "$BIN" tickets --control "$CTL" --as e2e "$@"; }
# jget FIELD: FIELD of the JSON object on stdin (strings bare, the rest
# as JSON: null, numbers).
jget() {
    python3 -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}
# listed ID FIELD: FIELD of ticket ID as `tickets list --json` shows it.
listed() {
    tg list --json | python3 -c 'import json, sys
t = [t for t in json.load(sys.stdin) if t.get("id") == sys.argv[1]]
v = t[0].get(sys.argv[2]) if t else "(not listed)"
print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}
shown() { tg show "$1" --json | jget "$2"; }

# got_reply RC REPLY EXIT PREFIX: swaks exited EXIT (any: not 0) and the
# refusal it saw starts with PREFIX.
got_reply() {
    if [[ $3 == any ]]; then [[ $1 != 0 ]] || return 1; else [[ $1 == "$3" ]] || return 1; fi
    [[ $2 == "$4"* ]]
}
# is DESCRIPTION GOT WANT: one counted check of a value, shown if wrong.
is() {
    if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1 (got '$2')"; fi
}
# hdr FILE NAME: the first NAME header of a sink dump (not folded ones).
hdr() { grep -i -m1 "^$2:" "$1" | sed 's/^[^:]*: *//' | tr -d '\r'; }
hdr_count() { grep -ci "^$2:" "$1"; }

# dump_of ID: the sink dump of the message with X-E2E-Id: ID (the line
# whole, so A-close does not find A-close-2).
dump_of() { grep -rlxF -- "X-E2E-Id: $1" "$SINK" 2>/dev/null | head -n 1; }
has_dump_of() { [[ -n $(dump_of "$1") ]]; }
has_dumps_of() {
    local id
    for id; do has_dump_of "$id" || return 1; done
}
# reply_to ID: ticketgate's automatic reply to message ID.
reply_to() { grep -rlixF -- "In-Reply-To: <$1@e2e.example.org>" "$SINK" 2>/dev/null | head -n 1; }
has_reply_to() { [[ -n $(reply_to "$1") ]]; }
# info_request TICKET: the information request of ticket TICKET.
info_request() { grep -rlE -- "^Subject: \[$1\] Richiesta informazioni" "$SINK" 2>/dev/null | head -n 1; }
has_info_request() { [[ -n $(info_request "$1") ]]; }

# through M LABEL ID TO [swaks args...]: send message ID, check that
# swaks got 250 and the message reached the sink; F is its dump.
F=
through() {
    local m=$1 label=$2 id=$3 to=$4 rc=0
    shift 4
    F=
    send "$id" "$to" "$@" || rc=$?
    if ((rc != 0)); then
        bad "mode $m: [$label] $id to $to accepted (swaks exit $rc: $(grep -m1 '^<\*\*' "$LOGS/swaks-$id.log"))"
        return 1
    fi
    if wait_for 30 has_dump_of "$id"; then
        F=$(dump_of "$id")
        ok "mode $m: [$label] $id to $to accepted and delivered"
    else
        bad "mode $m: [$label] $id to $to accepted and delivered (not at the sink)"
        return 1
    fi
}
# reply_check M LABEL ID TICKET RCPT: ticketgate's reply to message ID
# reached the sink, to RCPT from <>, naming TICKET, auto-replied; R is it.
R=
reply_check() {
    local m=$1 label=$2 id=$3 tid=$4 rcpt=$5
    R=
    if wait_for 30 has_reply_to "$id"; then
        R=$(reply_to "$id")
    else
        bad "mode $m: [$label] automatic reply to $id at the sink"
        return 1
    fi
    is "mode $m: [$label] reply to $id goes to <$rcpt> from <>" \
        "$(hdr "$R" X-Rcpt-Args | cut -d' ' -f1) $(hdr "$R" X-Mail-Args | cut -d' ' -f1)" "<$rcpt> <>"
    is "mode $m: [$label] reply subject names $tid" \
        "$(hdr "$R" Subject | grep -oF -- "[$tid]")" "[$tid]"
    is "mode $m: [$label] reply has Auto-Submitted: auto-replied" \
        "$(hdr "$R" Auto-Submitted)" auto-replied
}

# 1. 01S: a procedure address opens a SIS ticket with the procedure named
# in the subject, tagged, confirmed to the sender.
scenario_01s() {
    local m=$1 id=$1-sis tid
    FROM=mario.rossi@example.org through "$m" 01S "$id" helpdesk.sisemplice.730@01s.it \
        --header "Subject: Dichiarativo 730: rimborso errato" --body "$LONG_BODY" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    check "mode $m: [01S] X-Ticketgate-Ticket: SIS-$YEAR-N (got '$tid')" \
        grep -qE "^SIS-$YEAR-[0-9]+\$" <<<"$tid"
    is "mode $m: [01S] X-Ticketgate-Action: created" "$(hdr "$F" X-Ticketgate-Action)" created
    is "mode $m: [01S] X-Ticketgate-Helpdesk: 01S SiSemplice" "$(hdr "$F" X-Ticketgate-Helpdesk)" "01S SiSemplice"
    is "mode $m: [01S] X-Ticketgate-Queue: 730" "$(hdr "$F" X-Ticketgate-Queue)" 730
    is "mode $m: [01S] tickets list --json: procedure Dichiarativo 730" \
        "$(listed "$tid" procedure)" "Dichiarativo 730"
    is "mode $m: [01S] tickets list --json: status open" "$(listed "$tid" status)" open
    reply_check "$m" 01S "$id" "$tid" mario.rossi@example.org
}

# 2. Project++ nuovocaso: Mago4 sets sector gestionale, "urgente" in the
# subject the urgency, "Contratto: 1234" the contract.
scenario_nuovocaso() {
    local m=$1 id=$1-pp tid
    FROM=anna.bianchi@example.org through "$m" PP "$id" nuovocaso@projectpp.it \
        --header "Subject: Mago4 non stampa le fatture, urgente" \
        --body "$BODY_MAGO
Contratto: 1234" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    check "mode $m: [PP] X-Ticketgate-Ticket: PP-$YEAR-N (got '$tid')" \
        grep -qE "^PP-$YEAR-[0-9]+\$" <<<"$tid"
    is "mode $m: [PP] X-Ticketgate-Helpdesk: Project++" "$(hdr "$F" X-Ticketgate-Helpdesk)" "Project++"
    is "mode $m: [PP] X-Ticketgate-Queue: nuovocaso" "$(hdr "$F" X-Ticketgate-Queue)" nuovocaso
    is "mode $m: [PP] X-Ticketgate-Sector: gestionale" "$(hdr "$F" X-Ticketgate-Sector)" gestionale
    is "mode $m: [PP] X-Ticketgate-Urgency: urgente" "$(hdr "$F" X-Ticketgate-Urgency)" urgente
    is "mode $m: [PP] X-Ticketgate-Contract: 1234" "$(hdr "$F" X-Ticketgate-Contract)" 1234
    is "mode $m: [PP] tickets show --json: sector, urgency, contract" \
        "$(shown "$tid" sector) $(shown "$tid" urgency) $(shown "$tid" contract)" "gestionale urgente 1234"
    reply_check "$m" PP "$id" "$tid" anna.bianchi@example.org
}

# 3. A sector address of Project++: the address sets the sector (no
# keyword; the helpdesk's default would be tecnico).
scenario_sector_address() {
    local m=$1 id=$1-sector tid
    FROM=luca.verdi@example.org through "$m" sector "$id" supporto.gestionale@projectpp.it \
        --header "Subject: Registro IVA vendite non si aggiorna" --body "$LONG_BODY" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    is "mode $m: [sector] X-Ticketgate-Queue: supporto.gestionale" "$(hdr "$F" X-Ticketgate-Queue)" supporto.gestionale
    is "mode $m: [sector] X-Ticketgate-Sector: gestionale" "$(hdr "$F" X-Ticketgate-Sector)" gestionale
    is "mode $m: [sector] tickets show --json: sector gestionale" "$(shown "$tid" sector)" gestionale
}

# 4. Forged X-Ticketgate-* headers in helpdesk mail (two of one name, in
# any case): gone, ours in place.
scenario_forged() {
    local m=$1 id=$1-forged tid
    FROM=furbo@example.org through "$m" forged "$id" supporto.tecnico@projectpp.it \
        --header "Subject: Stampante di rete non risponde" \
        --header "X-Ticketgate-Ticket: FORGED" --header "x-ticketgate-status: closed" \
        --header "X-TICKETGATE-TICKET: FORGED-2" \
        --body "$LONG_BODY" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    is "mode $m: [forged] one X-Ticketgate-Ticket header" "$(hdr_count "$F" X-Ticketgate-Ticket)" 1
    check "mode $m: [forged] it is ticketgate's (got '$tid')" grep -qE "^PP-$YEAR-[0-9]+\$" <<<"$tid"
    check "mode $m: [forged] FORGED appears nowhere in the delivered mail" not grep -q FORGED "$F"
    is "mode $m: [forged] one X-Ticketgate-Status, open" \
        "$(hdr_count "$F" X-Ticketgate-Status) $(hdr "$F" X-Ticketgate-Status)" "1 open"
}

# 5. Not a helpdesk address (a staff member of a helpdesk domain): the
# message arrives as sent, below Postfix's Received headers, forged tag
# and all; no ticket.
scenario_passthrough() {
    local m=$1 id=$1-pass data=$LOGS/pass-$1.eml before
    cat >"$data" <<EOF
From: Mario Rossi <mario.rossi@example.org>
To: Paolo Neri <paolo.neri@projectpp.it>
Subject: Pranzo di giovedi
 (riga piegata dell'oggetto)
Date: Mon, 23 Nov 2026 10:00:00 +0100
Message-Id: <$id@e2e.example.org>
X-E2E-Id: $id
X-Ticketgate-Ticket: PP-2026-999999
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Ciao Paolo,
  ci vediamo alle 13 davanti all'ufficio, come al solito.
Porta il contratto: 1234.

Mario
EOF
    before=$(tg list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    local rc=0
    timeout 60 swaks --server "127.0.0.1:$PUBLIC_PORT" --timeout 30 --helo client.example.org \
        --from mario.rossi@example.org --to paolo.neri@projectpp.it --data "$data" \
        >"$LOGS/swaks-$id.log" 2>&1 || rc=$?
    check "mode $m: [pass] $id to paolo.neri@projectpp.it accepted (swaks exit $rc)" test "$rc" = 0
    if ! wait_for 30 has_dump_of "$id"; then
        bad "mode $m: [pass] $id delivered to the sink"
        return 0
    fi
    F=$(dump_of "$id")
    # swaks sends the file and then "\r\n.\r\n" (an empty last line);
    # smtp-sink stores lines with LF and one more LF at the end.
    check "mode $m: [pass] delivered byte for byte below Postfix's Received headers" \
        python3 -c 'import sys
d, s = (open(p, "rb").read().replace(b"\r\n", b"\n") for p in sys.argv[1:])
sys.exit(not d.endswith(b"\n" + s + b"\n\n"))' "$F" "$data"
    is "mode $m: [pass] no X-Ticketgate header added" "$(grep -c '^X-Ticketgate-' "$F")" 1
    is "mode $m: [pass] no ticket opened" \
        "$(tg list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" "$before"
    check "mode $m: [pass] no automatic reply" not has_reply_to "$id"
}

# 6. The requester answers the confirmation asking to close, then to
# reopen: the case follows (a reply to our own Message-ID authenticates).
scenario_close_reopen() {
    local m=$1 id=$1-case tid mid
    FROM=cli@ditta.example through "$m" close "$id" nuovocaso@projectpp.it \
        --header "Subject: Mago4: fido calcolato male" --body "$LONG_BODY" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    wait_for 30 has_reply_to "$id" || { bad "mode $m: [close] confirmation of $tid at the sink"; return 0; }
    mid=$(hdr "$(reply_to "$id")" Message-ID)
    FROM=cli@ditta.example through "$m" close "$m-close" nuovocaso@projectpp.it \
        --header "Subject: Re: [$tid] chiudere pure, risolto" \
        --header "In-Reply-To: $mid" --header "References: $mid" \
        --body "Grazie, risolto." || return 0
    is "mode $m: [close] X-Ticketgate-Action: closed" "$(hdr "$F" X-Ticketgate-Action)" closed
    is "mode $m: [close] tickets show --json: status closed" "$(shown "$tid" status)" closed
    FROM=cli@ditta.example through "$m" reopen "$m-reopen" nuovocaso@projectpp.it \
        --header "Subject: Re: [$tid] riaprire" \
        --header "In-Reply-To: $mid" --header "References: $mid" \
        --body "Il problema si ripresenta." || return 0
    is "mode $m: [reopen] X-Ticketgate-Action: reopened" "$(hdr "$F" X-Ticketgate-Action)" reopened
    is "mode $m: [reopen] tickets show --json: status open" "$(shown "$tid" status)" open
}

# 7. The workgroup suspends a ticket with an information request; the
# requester's answer to it resumes the ticket.
scenario_suspend_resume() {
    local m=$1 id=$1-paghe tid mid out
    FROM=op@caf.example through "$m" suspend "$id" helpdesk.sisemplice.paghe@01s.it \
        --header "Subject: Paghe: cedolino errato" --body "$LONG_BODY" || return 0
    tid=$(hdr "$F" X-Ticketgate-Ticket)
    out=$(tg suspend "$tid" --message "Indichi il codice fiscale del dipendente." --json 2>&1)
    is "mode $m: [suspend] tickets suspend --json: status suspended" \
        "$(jget status <<<"$out" 2>/dev/null)" suspended
    if ! wait_for 30 has_info_request "$tid"; then
        bad "mode $m: [suspend] information request for $tid at the sink"
        return 0
    fi
    local info
    info=$(info_request "$tid")
    is "mode $m: [suspend] information request to <op@caf.example>, auto-replied, asking" \
        "$(hdr "$info" X-Rcpt-Args | cut -d' ' -f1) $(hdr "$info" Auto-Submitted) $(grep -c 'codice fiscale' "$info")" \
        "<op@caf.example> auto-replied 1"
    mid=$(hdr "$info" Message-ID)
    FROM=op@caf.example through "$m" resume "$m-answer" helpdesk.sisemplice.paghe@01s.it \
        --header "Subject: R: [$tid] Richiesta informazioni" \
        --header "In-Reply-To: $mid" --header "References: $mid" \
        --body "Il codice fiscale e' RSSMRA80A01H501U." || return 0
    is "mode $m: [resume] X-Ticketgate-Action: resumed" "$(hdr "$F" X-Ticketgate-Action)" resumed
    is "mode $m: [resume] tickets show --json: status open" "$(shown "$tid" status)" open
}

# 8. The store cannot write (file size limit, as on a full disk): the
# client hears 4xx, nothing reaches the sink, Postfix queues nothing, so
# the client keeps the message. ticketgate runs with a fresh data
# directory under `ulimit -f 64` for this, then as before.
scenario_store_full() {
    local m=$1 id=$1-full dir=$W/tg-$1 rc=0 reply
    python3 -c 'import sys
line = "Allego il tracciato completo del calcolo, riga per riga, per la verifica.\n"
sys.stdout.write(line * 2800)' >"$LOGS/big-body.txt"
    stop_ticketgate
    TG_FSIZE=64 start_ticketgate "$W/tg-$m-full" || { bad "mode $m: [full] ticketgate starts under ulimit -f 64"; start_ticketgate "$dir"; return 0; }
    FROM=grande@example.org send "$id" helpdesk.sisemplice.bi@01s.it \
        --header "Subject: BI: report annuale non si genera" --body "$LOGS/big-body.txt" || rc=$?
    reply=$(grep -E '^<\*\* +[45][0-9][0-9]' "$LOGS/swaks-$id.log" | head -n 1 | sed 's/^<\*\* *//')
    if [[ $m == A ]]; then
        check "mode $m: [full] the client got 451 4.3.0 at end of DATA (swaks exit $rc: $reply)" \
            got_reply "$rc" "$reply" 26 "451 4.3.0"
    else
        check "mode $m: [full] the client got 4xx (swaks exit $rc: $reply)" \
            got_reply "$rc" "$reply" any 4
    fi
    sleep 1
    check "mode $m: [full] nothing reached the sink" not has_dump_of "$id"
    check "mode $m: [full] nothing queued by Postfix" not in_queue grande@example.org
    stop_ticketgate
    start_ticketgate "$dir" || die "mode $m: ticketgate did not restart"
}

# 9. Three messages in one SMTP session, RSET before the third: each
# is classified on its own (in mode C the milter sees them on one
# connection, separated by ABORT only, see tests/fixtures/milter/).
scenario_one_session() {
    local m=$1 rc=0 f1 f2 f3
    timeout 60 python3 - "$PUBLIC_PORT" "$m" >"$LOGS/session-$m.log" 2>&1 <<'EOF' || rc=$?
import smtplib, sys
port, m = int(sys.argv[1]), sys.argv[2]
body = ("Buongiorno, la procedura di emissione ddt sul registro VENIMM si "
        "blocca per il ddt n. 12345 con errore di calcolo.")
def msg(n, to, subject):
    return ("From: op2@caf.example\r\nTo: %s\r\nSubject: %s\r\n"
            "Message-Id: <%s-s%d@e2e.example.org>\r\nX-E2E-Id: %s-s%d\r\n\r\n%s\r\n"
            % (to, subject, m, n, m, n, body))
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=30)
s.sendmail("op2@caf.example", ["helpdesk.sisemplice.isee@01s.it"],
           msg(1, "helpdesk.sisemplice.isee@01s.it", "ISEE: attestazione non scaricabile"))
s.sendmail("op2@caf.example", ["someone@example.net"],
           msg(2, "someone@example.net", "ISEE: ci vediamo domani"))
s.rset()
s.sendmail("op2@caf.example", ["supporto.tecnico@projectpp.it"],
           msg(3, "supporto.tecnico@projectpp.it", "Antivirus blocca la posta"))
s.quit()
EOF
    check "mode $m: [session] three messages in one SMTP session accepted (python exit $rc)" test "$rc" = 0
    if ! wait_for 30 has_dumps_of "$m-s1" "$m-s2" "$m-s3"; then
        bad "mode $m: [session] all three delivered"
        return 0
    fi
    f1=$(dump_of "$m-s1") f2=$(dump_of "$m-s2") f3=$(dump_of "$m-s3")
    is "mode $m: [session] 1st: 01S queue isee, one ticket header" \
        "$(hdr "$f1" X-Ticketgate-Queue) $(hdr_count "$f1" X-Ticketgate-Ticket)" "isee 1"
    is "mode $m: [session] 2nd (not a helpdesk): no X-Ticketgate header" "$(grep -c '^X-Ticketgate-' "$f2")" 0
    is "mode $m: [session] 3rd (after RSET): Project++ queue supporto.tecnico, one ticket header" \
        "$(hdr "$f3" X-Ticketgate-Queue) $(hdr_count "$f3" X-Ticketgate-Ticket)" "supporto.tecnico 1"
    is "mode $m: [session] 1st and 3rd: tickets of their own helpdesks" \
        "$(hdr "$f1" X-Ticketgate-Ticket | cut -d- -f1) $(hdr "$f3" X-Ticketgate-Ticket | cut -d- -f1)" "SIS PP"
}

seed_scenarios() {
    local m=$1
    scenario_01s "$m"
    scenario_nuovocaso "$m"
    scenario_sector_address "$m"
    scenario_forged "$m"
    scenario_passthrough "$m"
    scenario_close_reopen "$m"
    scenario_suspend_resume "$m"
    scenario_one_session "$m"
    scenario_store_full "$m"
}

# ==========================================================================
# Mode A: before-queue proxy.
MODE=A
read -r PUBLIC_PORT DIRECT_PORT TG_PORT REINJECT_PORT < <(free_ports 4)
RELAY_PORT=$SINK_PORT
say "mode A: public 127.0.0.1:$PUBLIC_PORT (and :$DIRECT_PORT without speed_adjust) -> ticketgate :$TG_PORT -> reinject :$REINJECT_PORT -> sink :$SINK_PORT"
start_ticketgate "$W/tg-A" || die "mode A: ticketgate did not start"
start_postfix A || die "mode A: Postfix did not start"
check "mode A: Postfix daemons run as postfix" check_daemon_users

check_helpdesk_and_other A

check_smtp_source A

# The next hop's 550 for a recipient reaches the client through the proxy.
# With speed_adjust Postfix talks to ticketgate only once the whole message
# is in, so the refusal comes at end of DATA (swaks exits 26); without it
# (the $DIRECT_PORT listener) ticketgate relays it at RCPT (swaks exits 24,
# "no recipient accepted").
REJECT_RE='^ *<\*\* +550[ -]5\.1\.1 .*e2e says no such user'
rc=0; send A-reject-speed reject@example.net --header "Subject: prova" --body "prova" || rc=$?
check "mode A (speed_adjust): swaks to reject@example.net refused after DATA (exit 26, got $rc)" \
    test "$rc" = 26
check "mode A (speed_adjust): the client saw the next hop's 550" \
    grep -qE "$REJECT_RE" "$LOGS/swaks-A-reject-speed.log"
rc=0; PUBLIC=$DIRECT_PORT send A-reject-rcpt reject@example.net --header "Subject: prova" --body "prova" || rc=$?
check "mode A (no speed_adjust): swaks to reject@example.net refused at RCPT (exit 24, got $rc)" \
    test "$rc" = 24
rcpt_reply_rejected() {
    grep -A1 -F -- '-> RCPT TO:<reject@example.net>' "$LOGS/swaks-A-reject-rcpt.log" |
        grep -qE "$REJECT_RE"
}
check "mode A (no speed_adjust): the 550 is the reply to RCPT" rcpt_reply_rejected
check "mode A: no refused message reached the sink" \
    not has_dump "X-E2E-Id: A-reject"

# XFORWARD: the real client address reaches ticketgate's log.
check_client_address A A-xforward

seed_scenarios A

stop_postfix
stop_ticketgate

# ==========================================================================
# Mode B: after-queue content filter.
MODE=B
rm -rf "$SPOOL" "$PFDATA"
sink_aside
read -r PUBLIC_PORT TG_PORT REINJECT_PORT < <(free_ports 3)
RELAY_PORT=$DEAD_PORT
say "mode B: public 127.0.0.1:$PUBLIC_PORT -> queue -> ticketgate :$TG_PORT -> reinject :$REINJECT_PORT -> sink :$SINK_PORT"
start_ticketgate "$W/tg-B" || die "mode B: ticketgate did not start"
start_postfix B || die "mode B: Postfix did not start"
check "mode B: Postfix daemons run as postfix" check_daemon_users

check_helpdesk_and_other B

check_smtp_source B

check_client_address B B-xforward

# ticketgate down: Postfix keeps the message queued, deferred; nothing lost.
stop_ticketgate
check "mode B: ticketgate exits 0 on SIGTERM (got $TG_EXIT)" test "$TG_EXIT" = 0
check "mode B: nothing listens on the ticketgate port" not listening "$TG_PORT"
rc=0; FROM=deferred@example.org send_mago B-deferred || rc=$?
check "mode B: swaks accepted while ticketgate is down" test "$rc" = 0
check "mode B: the message is deferred in the private queue" \
    wait_for 30 queued_from deferred@example.org deferred
check "mode B: the deferred message did not reach the sink" not has_dump "X-E2E-Id: B-deferred"

start_ticketgate "$W/tg-B" || die "mode B: ticketgate did not restart"
timeout 10 postqueue -c "$PF" -f >>"$LOGS/postfix-cmd.log" 2>&1 || true
check_tagged B B-deferred
check "mode B: B-deferred delivered exactly once" \
    test "$(grep -rlF -- "X-E2E-Id: B-deferred" "$SINK" | wc -l)" = 1
check "mode B: the queue is empty after the flush" wait_for 30 queue_empty

stop_postfix
stop_ticketgate

# ==========================================================================
# Mode C: milter.
MODE=C
rm -rf "$SPOOL" "$PFDATA"
sink_aside
read -r PUBLIC_PORT MILTER_PORT < <(free_ports 2)
RELAY_PORT=$SINK_PORT
say "mode C: public 127.0.0.1:$PUBLIC_PORT <-> milter ticketgate :$MILTER_PORT; queue -> sink :$SINK_PORT"
start_ticketgate "$W/tg-C" || die "mode C: ticketgate did not start"
start_postfix C || die "mode C: Postfix did not start"
check "mode C: Postfix daemons run as postfix" check_daemon_users
is "mode C: Postfix runs with the milter snippet's settings" \
    "$(postconf -c "$PF" -h smtpd_milters milter_default_action milter_protocol | tr '\n' ' ')" \
    "inet:127.0.0.1:$MILTER_PORT tempfail 6 "
# Its only listening socket is the milter's, whatever server.listen says.
tg_listeners() { ss -ltnpH | grep -F "pid=$TG_PID," | awk '{print $4}' | sort | tr '\n' ' '; }
is "mode C: ticketgate listens on the milter port only (--milter-only)" \
    "$(tg_listeners)" "127.0.0.1:$MILTER_PORT "

check_helpdesk_and_other C
# Accepted at DATA, unseen: still one summary line, with Postfix's queue id.
passthrough_logged() {
    grep -F '"ticketgate::message"' "$TG_LOG" | grep -F '"rcpts":"someone@example.net"' |
        grep -F '"next_hop_reply":"250 2.0.0 Milter verdict: accept"' |
        grep -qE '"queue_id":"[0-9A-F]+"'
}
check "mode C: mail accepted unseen has a summary log line with Postfix's queue id" \
    wait_for 10 passthrough_logged

check_smtp_source C

# The client's address reaches ticketgate from the milter's connect data.
check_client_address C C-client

seed_scenarios C

# The same scenario gets the same tags in both modes (ticket numbers aside).
tag_block() {
    grep -E '^(X-Ticketgate-[A-Za-z]+|Authentication-Results):' "$1" |
        sed -E 's/^(X-Ticketgate-Ticket: [A-Z]+)-[0-9]+-[0-9]+$/\1-N/'
}
tags_differ() {
    local id a c out=
    for id; do
        a=$(grep -rlxF -- "X-E2E-Id: A-$id" "$W"/sink-before-* 2>/dev/null | head -n 1)
        c=$(dump_of "C-$id")
        if [[ -z $a || -z $c || $(tag_block "$a") != "$(tag_block "$c")" ]]; then
            out+=" $id"
        fi
    done
    echo "${out# }"
}
is "mode C: the tags are mode A's for the same scenarios" \
    "$(tags_differ sis pp sector forged case close reopen paghe answer s1 s3)" ""

# Local submission (sendmail command, pickup): non_smtpd_milters.
cat >"$LOGS/local.eml" <<EOF
From: op3@caf.example
To: helpdesk.sisemplice.f24@01s.it
Subject: F24: delega non trasmessa
Message-Id: <C-local@e2e.example.org>
X-E2E-Id: C-local

$LONG_BODY
EOF
rc=0; timeout 30 sendmail -C "$PF" -f op3@caf.example -i helpdesk.sisemplice.f24@01s.it \
    <"$LOGS/local.eml" >"$LOGS/sendmail-C.log" 2>&1 || rc=$?
check "mode C: sendmail -C DIR (local submission) exits 0 (got $rc)" test "$rc" = 0
if wait_for 30 has_dump_of C-local; then
    F=$(dump_of C-local)
    is "mode C: locally submitted helpdesk mail tagged (non_smtpd_milters)" \
        "$(hdr "$F" X-Ticketgate-Queue) $(hdr "$F" X-Ticketgate-Action)" "f24 created"
else
    bad "mode C: locally submitted helpdesk mail delivered"
fi

milter_warnings() { grep -ciE 'warning:.*milter' "$PFLOG" || true; }
is "mode C: no milter warnings in the Postfix log while ticketgate runs" "$(milter_warnings)" 0

# ticketgate down: milter_default_action = tempfail, so Postfix answers
# 4xx and takes nothing; the client retries later and gets through.
stop_ticketgate
check "mode C: ticketgate exits 0 on SIGTERM (got $TG_EXIT)" test "$TG_EXIT" = 0
rc=0; FROM=down@example.org send_mago C-down || rc=$?
reply=$(grep -E '^<\*\* +[45][0-9][0-9]' "$LOGS/swaks-C-down.log" | head -n 1 | sed 's/^<\*\* *//')
check "mode C: with ticketgate down the client gets 4xx (swaks exit $rc: $reply)" \
    got_reply "$rc" "$reply" any 4
check "mode C: Postfix logged the unreachable milter" \
    grep -qF "warning: connect to Milter service inet:127.0.0.1:$MILTER_PORT" "$PFLOG"
sleep 1
check "mode C: nothing from the refused client reached the sink" not has_dump_of C-down
check "mode C: nothing from the refused client is queued" not in_queue down@example.org
start_ticketgate "$W/tg-C" || die "mode C: ticketgate did not restart"
rc=0; FROM=down@example.org send_mago C-down || rc=$?
check "mode C: the client's retry after the restart is accepted" test "$rc" = 0
check_tagged C C-down
check "mode C: C-down delivered exactly once" \
    test "$(grep -rlxF -- "X-E2E-Id: C-down" "$SINK" | wc -l)" = 1
check "mode C: the queue is empty" wait_for 30 queue_empty

say "run time $((SECONDS - T0))s"
