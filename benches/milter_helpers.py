#!/usr/bin/env python3
"""Helpers for benches/milter.sh (standard library only).

  ports K                 print K free TCP ports on 127.0.0.1, taken from
                          20000-32000 (below the ephemeral range, like
                          tests/postfix/run.sh)
  wait PORT TIMEOUT [PID] wait until 127.0.0.1:PORT accepts a connection;
                          exit 1 on timeout or when PID has died
  load JSON_ARGS          one measured load: run smtp-source, wait until the
                          counting smtp-sink has all the messages, print the
                          result as one JSON object (see load() below)
  hwm PID                 VmHWM of PID in kB
  metric PORT NAME        value of one sample of GET http://127.0.0.1:PORT/metrics
                          (0 when absent)
  report FILE             print the result table from FILE (one JSON object a
                          line, written by milter.sh)
  tickets                 read `ticketgate tickets list --json` on stdin and
                          print the count, then counts by status, by sector
                          and by number of messages per ticket
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def ports(k):
    got = []
    while len(got) < k:
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
    return 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(port, timeout, pid=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            print(f"process {pid} exited before listening on {port}", file=sys.stderr)
            return 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return 0
        except OSError:
            time.sleep(0.1)
    print(f"nothing listens on 127.0.0.1:{port} after {timeout}s", file=sys.stderr)
    return 1


# --- CPU accounting ---------------------------------------------------------

def proc_stats():
    """pid -> (ppid, utime+stime, cutime+cstime) in clock ticks, for every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (field 3 of stat): ppid is field 4,
        # utime/stime 14/15, cutime/cstime 16/17.
        out[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                          int(fields[13]) + int(fields[14]))
    return out


def tree_ticks(stats, root):
    """CPU of ROOT and all its descendants, including what their reaped
    children left in cutime/cstime: monotonic while processes come and go
    (a child's time moves into its parent's cutime when it is reaped)."""
    if root not in stats:
        return None
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        _, own, reaped = stats[pid]
        total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def own_ticks(stats, pid):
    """utime+stime of one process (all its threads)."""
    return stats[pid][1] if pid in stats else None


def machine():
    """(busy, steal, total) clock ticks over all CPUs since boot; idle and
    iowait count as not busy, steal (time the hypervisor gave to others
    while this guest wanted to run) as busy and on its own."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])  # user nice system idle iowait irq softirq steal
    return total - v[3] - v[4], v[7], total


OTHER_NAMES = {"cargo", "rustc"}
OTHER_PATHS = ("ci-clone", "ticketgate-postfix-e2e")


def other_jobs():
    """Pids of builds and CI runs (what milter.sh waits for before it
    starts), not counting this process's own ancestors and descendants."""
    found, parent = set(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{name}/stat") as f:
                st = f.read()
            comm = st[st.index("(") + 1:st.rindex(")")]
            parent[pid] = int(st.rsplit(")", 1)[1].split()[1])
            if comm in OTHER_NAMES:
                found.add(pid)
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            if any(p.encode() in cmd for p in OTHER_PATHS):
                found.add(pid)
        except (OSError, ValueError):
            continue
    ours = set()
    p = os.getpid()
    while p > 1:  # ancestors: milter.sh and whatever started it
        ours.add(p)
        p = parent.get(p, 0)
    def descends(pid):
        seen = 0
        while pid > 1 and seen < 64:
            if pid == os.getpid():
                return True
            pid, seen = parent.get(pid, 0), seen + 1
        return False
    return {p for p in found if p not in ours and not descends(p)}


def snapshot(pids):
    stats = proc_stats()
    snap = {}
    for name, (pid, kind) in pids.items():
        snap[name] = tree_ticks(stats, pid) if kind == "tree" else own_ticks(stats, pid)
    snap["_machine"] = machine()
    return snap


# --- one measured load ------------------------------------------------------

def sink_count(path):
    """Messages a `smtp-sink -c` has counted: the last "mesg=N" it wrote."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 400))
            tail = f.read()
    except OSError:
        return 0
    i = tail.rfind(b"mesg=")
    if i < 0:
        return 0
    digits = b""
    for c in tail[i + 5:]:
        if not 48 <= c <= 57:
            break
        digits += bytes([c])
    return int(digits or b"0")


def load(a):
    """a: port, n, sessions, size, sender, rcpt, subject, sink_file,
    sink_base, timeout, stall, out_prefix, pids {name: [pid, "tree"|"own"]}.

    Starts smtp-source, then watches (every 20 ms) its exit and the sink's
    count. Elapsed time ends when the sink has sink_base + n messages: the
    moment Postfix has delivered the last one, not when smtp-source exits.
    Gives up after `timeout` seconds, or when smtp-source has exited and the
    sink has not moved for `stall` seconds."""
    pids = {k: (int(v[0]), v[1]) for k, v in a["pids"].items()}
    want = a["sink_base"] + a["n"]
    cmd = ["smtp-source", "-s", str(a["sessions"]), "-m", str(a["n"]),
           "-l", str(a["size"]), "-f", a["sender"], "-t", a["rcpt"]]
    if a.get("subject"):
        cmd += ["-S", a["subject"]]
    cmd.append(f"127.0.0.1:{a['port']}")
    out = open(a["out_prefix"] + ".out", "ab")
    err = open(a["out_prefix"] + ".err", "ab")

    before = snapshot(pids)
    t0 = time.monotonic()
    src = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def stop_source(*_):
        try:
            src.kill()
        except OSError:
            pass
        sys.exit(1)

    signal.signal(signal.SIGTERM, stop_source)
    signal.signal(signal.SIGINT, stop_source)

    t_src = t_sink = None
    rc = rusage = None
    last_count, last_move = -1, t0
    result = "ok"
    others, next_look = set(), t0
    while True:
        now = time.monotonic()
        if now >= next_look:  # builds or CI runs that start during the load
            others |= other_jobs()
            next_look = now + 1.0
        if t_src is None:
            pid, status, ru = os.wait4(src.pid, os.WNOHANG)
            if pid:
                t_src, rusage = now, ru
                rc = os.waitstatus_to_exitcode(status)
                src.returncode = rc
        c = sink_count(a["sink_file"])
        if c != last_count:
            last_count, last_move = c, now
        if t_sink is None and c >= want:
            t_sink = now
        if t_sink is not None and t_src is not None:
            break
        if now - t0 > a["timeout"]:
            result = "timeout"
            break
        if t_src is not None and now - last_move > a["stall"]:
            result = "stalled"
            break
        time.sleep(0.02)
    if t_src is None:
        src.kill()
        _, status, rusage = os.wait4(src.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        t_src = time.monotonic()
    after = snapshot(pids)

    hz = os.sysconf("SC_CLK_TCK")
    res = {
        "result": result,
        "n": a["n"],
        "sessions": a["sessions"],
        "secs": round((t_sink if t_sink is not None else time.monotonic()) - t0, 3),
        "source_secs": round(t_src - t0, 3),
        "source_rc": rc,
        "source_cpu_s": round(rusage.ru_utime + rusage.ru_stime, 3),
        "sink_got": sink_count(a["sink_file"]) - a["sink_base"],
        "hz": hz,
    }
    (b_busy, b_steal, b_total), (a_busy, a_steal, a_total) = before["_machine"], after["_machine"]
    # busy and steal shares of the whole machine (all CPUs) over the run
    res["machine_busy_pct"] = round(100.0 * (a_busy - b_busy) / max(1, a_total - b_total), 1)
    res["machine_steal_pct"] = round(100.0 * (a_steal - b_steal) / max(1, a_total - b_total), 1)
    res["other_jobs"] = sorted(others)
    for name in pids:
        if before.get(name) is None or after.get(name) is None:
            res[f"{name}_cpu_s"] = None
        else:
            res[f"{name}_cpu_s"] = round((after[name] - before[name]) / hz, 3)
    print(json.dumps(res), flush=True)
    return 0 if result == "ok" else 1


def hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                print(line.split()[1])
                return 0
    return 1


def tickets():
    data = json.load(sys.stdin)
    if isinstance(data, dict):  # tolerate {"tickets": [...]}
        data = data.get("tickets", [])
    count = {}
    for t in data:
        for key, v in (("status", t.get("status")), ("sector", t.get("sector")),
                       ("messages", len(t.get("messages") or []))):
            c = count.setdefault(key, {})
            c[str(v)] = c.get(str(v), 0) + 1
    print(len(data))
    print("; ".join(
        key + " " + ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
        for key, c in count.items()))
    return 0


def metric(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError as e:
        print(f"metrics: {e}", file=sys.stderr)
        print("-")
        return 1
    for line in text.splitlines():
        k, _, v = line.rpartition(" ")
        if k == name:
            print(v)
            return 0
    print(0)
    return 0


def report(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    base = next((r for r in rows if r.get("base")), None)

    def ms(r, key):
        v = r.get(key)
        return "-" if v is None else "%.3f" % (v * 1000 / r["n"])

    head = ["row", "msgs", "src s", "secs", "msg/s", "x (1)", "tg CPU ms/msg",
            "Postfix CPU ms/msg", "src+sink CPU ms/msg", "busy (steal)", "tg VmHWM",
            "milter conns", "check"]
    lines = []
    for r in rows:
        rate = r["n"] / r["secs"] if r["secs"] else 0
        ratio = "-" if base is None or r is base else "%.2f" % (rate / (base["n"] / base["secs"]))
        src_sink = None
        if r.get("source_cpu_s") is not None and r.get("sink_cpu_s") is not None:
            src_sink = r["source_cpu_s"] + r["sink_cpu_s"]
        lines.append([
            r["label"], str(r["n"]), "%.2f" % r["source_secs"], "%.2f" % r["secs"],
            "%.0f" % rate, ratio,
            ms(r, "tg_cpu_s") if r.get("uses_milter") else "-",
            ms(r, "postfix_cpu_s"),
            "-" if src_sink is None else "%.3f" % (src_sink * 1000 / r["n"]),
            "%.0f %%" % r["machine_busy_pct"]
            + ("" if r.get("machine_steal_pct") is None else " (%.0f)" % r["machine_steal_pct"]),
            "%d MB" % round(r["hwm_kb"] / 1024) if r.get("uses_milter") and r.get("hwm_kb") else "-",
            str(r.get("milter_conns", "-")), r.get("check", ""),
        ])
    widths = [max(len(x[i]) for x in lines + [head]) for i in range(len(head))]

    def fmt(cols):
        out = []
        for i, c in enumerate(cols):
            out.append(c.ljust(widths[i]) if i in (0, len(cols) - 1) else c.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    print(fmt(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for l in lines:
        print(fmt(l))
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "ports":
        return ports(int(argv[2]))
    if cmd == "wait":
        return wait(int(argv[2]), float(argv[3]), int(argv[4]) if len(argv) > 4 else None)
    if cmd == "load":
        return load(json.loads(argv[2]))
    if cmd == "hwm":
        return hwm(int(argv[2]))
    if cmd == "tickets":
        return tickets()
    if cmd == "metric":
        return metric(int(argv[2]), argv[3])
    if cmd == "report":
        return report(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
