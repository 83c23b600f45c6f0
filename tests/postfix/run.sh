#!/usr/bin/env bash
# End to end through a real Postfix, in ticketgate's two SMTP modes:
#
#   A. before-queue proxy:    swaks -> smtpd(P, smtpd_proxy_filter) ->
#                             ticketgate(T) -> smtpd(R) -> queue -> smtp-sink
#   B. after-queue filter:    swaks -> smtpd(P) -> queue -> ticketgate
#                             transport -> ticketgate(T) -> smtpd(R) ->
#                             queue -> smtp-sink
#
# Everything runs in a private Postfix instance under a mktemp directory
# (own config, queue and data directories, loopback ports chosen at run
# time, log in a file); nothing touches /etc/postfix, the system queue or
# port 25. Builds nothing: the binary comes from $TICKETGATE_BIN (default
# $CARGO_TARGET_DIR/debug/ticketgate). Needs root (Postfix's master does),
# the postfix package (smtp-sink, smtp-source) and swaks.
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
    if ! wait_for 40 eval '! kill -0 "$TG_PID" 2>/dev/null'; then
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
    if ! wait_for 20 eval '! kill -0 "$pid" 2>/dev/null'; then
        timeout 10 postfix -c "$PF" abort >>"$LOGS/postfix-cmd.log" 2>&1 || true
        wait_for 5 eval '! kill -0 "$pid" 2>/dev/null' || kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_sink() {
    [[ -n $SINK_PID ]] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait_for 5 eval '! kill -0 "$SINK_PID" 2>/dev/null' || kill -KILL "$SINK_PID" 2>/dev/null || true
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

for tool in postfix postconf postqueue smtp-sink smtp-source swaks python3 timeout; do
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

write_master_cf() {
    local mode=$1
    {
        echo "$BASE_MASTER_CF"
        if [[ $mode == A ]]; then
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
    write_main_cf "$mode"
    write_master_cf "$mode" || { say "cannot write master.cf"; return 1; }
    # Like /var/spool/postfix: root's; postfix creates what is inside.
    mkdir -p "$SPOOL"
    chmod 0755 "$SPOOL"
    local out
    out=$(timeout 60 postfix -c "$PF" check 2>&1) && [[ $out != *fatal* ]] &&
        ok "mode $mode: postfix -c DIR check passes" ||
        { bad "mode $mode: postfix -c DIR check passes"; printf '%s\n' "$out"; return 1; }
    timeout 60 postfix -c "$PF" start </dev/null >>"$LOGS/postfix-cmd.log" 2>&1 ||
        { say "postfix start failed"; return 1; }
    wait_for 20 listening "$PUBLIC_PORT" && wait_for 20 listening "$REINJECT_PORT" &&
        { [[ $mode == B ]] || wait_for 20 listening "$DIRECT_PORT"; } ||
        { say "Postfix does not listen on $PUBLIC_PORT / $REINJECT_PORT"; return 1; }
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
start_ticketgate() {
    local dir=$1
    mkdir -p "$dir"
    TG_LOG=$dir/ticketgate.log
    "$BIN" serve --config "$CONFIG" \
        --listen "127.0.0.1:$TG_PORT" \
        --next-hop "127.0.0.1:$REINJECT_PORT" \
        --reply-relay "127.0.0.1:$DEAD_PORT" \
        --data-dir "$dir/data" \
        --control "$dir/control.sock" \
        --log-format json \
        </dev/null >>"$TG_LOG" 2>&1 &
    TG_PID=$!
    local end=$((SECONDS + 60))
    until listening "$TG_PORT"; do
        kill -0 "$TG_PID" 2>/dev/null || { say "ticketgate exited at start"; TG_PID=; return 1; }
        ((SECONDS < end)) || { say "ticketgate does not listen on $TG_PORT"; return 1; }
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
queue_empty() {
    [[ -z $(timeout 10 postqueue -c "$PF" -j 2>/dev/null) ]]
}

# ==========================================================================
# Mode A: before-queue proxy.
MODE=A
read -r PUBLIC_PORT DIRECT_PORT TG_PORT REINJECT_PORT < <(free_ports 4)
say "mode A: public 127.0.0.1:$PUBLIC_PORT (and :$DIRECT_PORT without speed_adjust) -> ticketgate :$TG_PORT -> reinject :$REINJECT_PORT -> sink :$SINK_PORT"
start_ticketgate "$W/tg-A" || die "mode A: ticketgate did not start"
start_postfix A || die "mode A: Postfix did not start"
check "mode A: Postfix daemons run as postfix" check_daemon_users

rc=0; send_mago A-helpdesk || rc=$?
check "mode A: swaks to nuovocaso@projectpp.it accepted" test "$rc" = 0
check_tagged A A-helpdesk

rc=0; send A-other someone@example.net --header "Subject: Pranzo" \
    --body "Ci vediamo alle 13 davanti all'ufficio, come al solito." || rc=$?
check "mode A: swaks to someone@example.net accepted" test "$rc" = 0
check_untagged A A-other

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
    eval '! has_dump "X-E2E-Id: A-reject"'

# XFORWARD: the real client address reaches ticketgate's log.
rc=0; send_mago A-xforward --local-interface 127.0.0.2 || rc=$?
check "mode A: swaks from 127.0.0.2 accepted" test "$rc" = 0
check_tagged A A-xforward
check 'mode A: summary log line has "client":"127.0.0.2"' \
    wait_for 10 summary_client_is A-xforward 127.0.0.2

stop_postfix
stop_ticketgate

# ==========================================================================
# Mode B: after-queue content filter.
MODE=B
rm -rf "$SPOOL" "$PFDATA"
read -r PUBLIC_PORT TG_PORT REINJECT_PORT < <(free_ports 3)
say "mode B: public 127.0.0.1:$PUBLIC_PORT -> queue -> ticketgate :$TG_PORT -> reinject :$REINJECT_PORT -> sink :$SINK_PORT"
start_ticketgate "$W/tg-B" || die "mode B: ticketgate did not start"
start_postfix B || die "mode B: Postfix did not start"
check "mode B: Postfix daemons run as postfix" check_daemon_users

rc=0; send_mago B-helpdesk || rc=$?
check "mode B: swaks to nuovocaso@projectpp.it accepted" test "$rc" = 0
check_tagged B B-helpdesk

rc=0; send B-other someone@example.net --header "Subject: Pranzo" \
    --body "Ci vediamo alle 13 davanti all'ufficio, come al solito." || rc=$?
check "mode B: swaks to someone@example.net accepted" test "$rc" = 0
check_untagged B B-other

check_smtp_source B

rc=0; send_mago B-xforward --local-interface 127.0.0.2 || rc=$?
check "mode B: swaks from 127.0.0.2 accepted" test "$rc" = 0
check_tagged B B-xforward
check 'mode B: summary log line has "client":"127.0.0.2"' \
    wait_for 10 summary_client_is B-xforward 127.0.0.2

# ticketgate down: Postfix keeps the message queued, deferred; nothing lost.
stop_ticketgate
check "mode B: ticketgate exits 0 on SIGTERM (got $TG_EXIT)" test "$TG_EXIT" = 0
check "mode B: nothing listens on the ticketgate port" eval '! listening "$TG_PORT"'
rc=0; FROM=deferred@example.org send_mago B-deferred || rc=$?
check "mode B: swaks accepted while ticketgate is down" test "$rc" = 0
check "mode B: the message is deferred in the private queue" \
    wait_for 30 queued_from deferred@example.org deferred
check "mode B: the deferred message did not reach the sink" eval '! has_dump "X-E2E-Id: B-deferred"'

start_ticketgate "$W/tg-B" || die "mode B: ticketgate did not restart"
timeout 10 postqueue -c "$PF" -f >>"$LOGS/postfix-cmd.log" 2>&1 || true
check_tagged B B-deferred
check "mode B: B-deferred delivered exactly once" \
    test "$(grep -rlF -- "X-E2E-Id: B-deferred" "$SINK" | wc -l)" = 1
check "mode B: the queue is empty after the flush" wait_for 30 queue_empty

say "run time $((SECONDS - T0))s"
