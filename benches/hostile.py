#!/usr/bin/env python3
"""Hostile-mail benchmark (issue 18): memory and time per hostile shape,
against a release build with the shipped config (DNS off), smtp-sink as the
next hop and as the reply relay.

    python3 benches/hostile.py [--bin PATH] [--quick]

Prints one markdown table per part:
  1. peak RSS (VmHWM) of ticketgate while six 30 MB plain-text helpdesk
     messages arrive at once (target: at most 128 MB above the idle RSS),
     and after 100 concurrent sessions of 5 KB helpdesk mail (< 50 MB);
  2. time from end of DATA to the answer for each hostile shape at 1x, 2x
     and 4x its size, and the ratio of the 4x time to the 1x time (linear:
     about 4).
Timings are wall clock on a shared machine: compare ratios, not absolutes.
"""

import argparse
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RCPT = "nuovocaso@projectpp.it"
SENDER = "bench@cliente.example"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(2)
                s.recv(512)
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_hwm(pid):
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Rig:
    def __init__(self, binary, tmp):
        self.tmp = tmp
        self.procs = []
        hop, relay, self.port = free_port(), free_port(), free_port()
        for p in (hop, relay):
            sink = subprocess.Popen(
                ["smtp-sink", "-u", "nobody", f"127.0.0.1:{p}", "1024"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append(sink)
            wait_port(p, sink)
        conf_dir = os.path.join(tmp, "conf")
        os.makedirs(conf_dir)
        shutil.copytree(os.path.join(ROOT, "config", "templates"), os.path.join(conf_dir, "templates"))
        conf = os.path.join(conf_dir, "ticketgate.toml")
        with open(os.path.join(ROOT, "config", "ticketgate.toml")) as src, open(conf, "w") as dst:
            for line in src:
                # One sender sends everything here: the hourly reply limit
                # would otherwise suppress the replies after the 20th.
                if line.startswith("rate_limit_per_hour"):
                    line = "rate_limit_per_hour = 100000000\n"
                dst.write(line)
        self.log = open(os.path.join(tmp, "ticketgate.log"), "w")
        self.tg = subprocess.Popen(
            [
                binary, "serve", "--config", conf,
                "--listen", f"127.0.0.1:{self.port}",
                "--next-hop", f"127.0.0.1:{hop}",
                "--reply-relay", f"127.0.0.1:{relay}",
                "--data-dir", os.path.join(tmp, "data"),
                "--control", os.path.join(tmp, "c.sock"),
            ],
            stderr=self.log,
        )
        self.procs.append(self.tg)
        wait_port(self.port, self.tg)

    def send(self, msg, rcpt=RCPT):
        """Seconds from the end of DATA to the answer; raises on a refusal."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=600) as s:
            s.ehlo("bench.example")
            s.mail(SENDER)
            s.rcpt(rcpt)
            code, _ = s.docmd("DATA")
            assert code == 354, code
            data = msg.replace(b"\r\n.", b"\r\n..")
            s.sock.sendall(data)
            t0 = time.monotonic()
            s.sock.sendall(b".\r\n")
            code, text = s.getreply()
            elapsed = time.monotonic() - t0
            if code != 250:
                raise RuntimeError(f"{code} {text!r}")
            return elapsed

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


def header(msgid, subject="Stampa fatture bloccata", extra=""):
    return (
        f"From: Mario Rossi <{SENDER}>\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{msgid}>\r\n{extra}"
    )


BODY = "La stampa delle fatture si blocca all'avvio del programma, errore 42.\r\n"


def plain_text(mb, tag):
    line = b"Il gestionale si blocca durante la stampa del registro IVA mensile.\r\n"
    n = mb * 1000 * 1000 // len(line)
    return (header(f"plain.{tag}.{os.getpid()}@cliente.example") + "\r\n").encode() + line * n


def empty_lines(n, tag):
    return (header(f"empty.{tag}@x") + "\r\n").encode() + b"\r\n" * n + BODY.encode()


def references(n, tag):
    refs = "References:" + "".join(f" <r{i}@thread.example>\r\n" for i in range(n))
    return (header(f"refs.{tag}@x", extra=refs) + "\r\n" + BODY).encode()


def mime_parts(n, tag):
    head = header(
        f"parts.{tag}@x",
        extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n',
    )
    parts = "".join(
        f'--B\r\nContent-Disposition: attachment; filename="f{i}.txt"\r\n\r\nx{i}\r\n'
        for i in range(n)
    )
    return (head + "\r\n--B\r\nContent-Type: text/plain\r\n\r\n" + BODY + parts + "--B--\r\n").encode()


def header_fields(n, tag):
    pad = "".join(f"X-Pad-{i}: padding padding padding\r\n" for i in range(n))
    return (header(f"fields.{tag}@x", extra=pad) + "\r\n" + BODY).encode()


def long_lines(n, tag):
    # One line of n KiB: no line ending for the parser to rest on.
    return (header(f"long.{tag}@x") + "\r\n").encode() + b"a" * (n * 1024) + b"\r\n"


def html_quotes(n, tag):
    head = header(f"html.{tag}@x", extra="Content-Type: text/html; charset=utf-8\r\n")
    return (head + "\r\n" + "<blockquote>" * n + "x" + "</blockquote>" * 3 + "\r\n").encode()


SHAPES = [
    ("empty lines in the body", empty_lines, 250_000),
    ("References ids", references, 25_000),
    ("MIME parts", mime_parts, 25_000),
    ("header fields", header_fields, 25_000),
    ("one long line (KiB)", long_lines, 2_000),
    ("nested <blockquote>", html_quotes, 100_000),
]


def send_all(rig, msgs):
    """Sends every message on its own connection at once; the refusals."""
    errors = []

    def one(m):
        try:
            rig.send(m)
        except Exception as e:  # noqa: BLE001 - reported in the table
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(m,)) for m in msgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def memory(rig, quick):
    rows = []
    pid = rig.tg.pid
    idle = kb(pid, "VmRSS")
    reset_hwm(pid)
    small = [(header(f"small.{i}@x") + "\r\n" + BODY * 70).encode() for i in range(100)]
    errors2 = send_all(rig, small)
    peak2 = kb(pid, "VmHWM")
    # Measured first, on a fresh process: freed heap is not given back.
    rows.append(("100 concurrent sessions of 5 KB helpdesk mail", idle, peak2,
                 "peak < 50 MB", peak2 < 50 * 1024 and not errors2, errors2))
    before = kb(pid, "VmRSS")
    reset_hwm(pid)
    n, mb = (2, 10) if quick else (6, 30)
    msgs = [plain_text(mb, i) for i in range(n)]
    errors = send_all(rig, msgs)
    del msgs
    peak = kb(pid, "VmHWM")
    rows.append((f"{n} concurrent {mb} MB plain-text helpdesk messages", before, peak,
                 "peak - before <= 128 MB", (peak - before) <= 128 * 1024 and not errors, errors))
    print("| memory | RSS before | peak RSS | target | met |")
    print("|---|---|---|---|---|")
    for name, idle_kb, peak_kb, target, ok, errs in rows:
        note = f" ({len(errs)} refused: {errs[0]})" if errs else ""
        print(f"| {name} | {idle_kb // 1024} MB | {peak_kb // 1024} MB | {target} | {'yes' if ok else 'NO'}{note} |")
    print()


def timings(rig, quick):
    print("| shape | 1x size | 1x s | 2x s | 4x s | 4x / 1x |")
    print("|---|---|---|---|---|---|")
    for name, make, base in SHAPES:
        if quick:
            base //= 4
        times = []
        sizes = []
        for k in (1, 2, 4):
            msg = make(base * k, f"{k}.{time.monotonic_ns()}")
            sizes.append(len(msg))
            times.append(min(rig.send(msg) for _ in range(2)))
        ratio = times[2] / times[0] if times[0] > 0 else float("nan")
        print(f"| {name} | {base} ({sizes[0] / 1e6:.1f} MB) | {times[0]:.3f} | {times[1]:.3f} | {times[2]:.3f} | {ratio:.1f} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("TICKETGATE_BIN", os.path.expanduser("~/.cache/ticketgate-release/release/ticketgate")))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"no ticketgate binary at {args.bin} (cargo build --release)")
    os.environ["PATH"] += ":/usr/sbin"
    tmp = tempfile.mkdtemp(prefix="tghostile.")
    rig = Rig(args.bin, tmp)
    try:
        memory(rig, args.quick)
        timings(rig, args.quick)
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
