#!/usr/bin/env python3
"""Small helpers for benches/run.sh (standard library only).

  ports K                       print K free TCP ports on 127.0.0.1
  wait PORT TIMEOUT [PID]       wait until 127.0.0.1:PORT accepts (exit 1 on timeout
                                or when PID died)
  bigmsg PORT MB RCPT           send one MB-megabyte message; print seconds
  latency PORT RELAY_PORT N RCPT  reply-latency test: listen on RELAY_PORT as the
                                reply relay (ticketgate's --reply-relay), send N
                                messages one at a time to PORT, each from its own
                                sender, waiting (<= 10 s) for its confirmation;
                                print latency stats as JSON
"""
import asyncio
import json
import os
import smtplib
import socket
import sys
import threading
import time


def ports(k):
    socks = []
    for _ in range(k):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def wait(port, timeout, pid=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"process {pid} died before listening on {port}", file=sys.stderr)
                return 1
            # a zombie still answers kill(0): look at its state
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        print(f"process {pid} exited", file=sys.stderr)
                        return 1
            except OSError:
                return 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.settimeout(2)
                try:
                    s.recv(512)  # the greeting, so the server sees a clean close
                except OSError:
                    pass
                return 0
        except OSError:
            time.sleep(0.1)
    print(f"nothing listens on 127.0.0.1:{port} after {timeout}s", file=sys.stderr)
    return 1


def bigmsg(port, mb, rcpt):
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    target = mb * 1000 * 1000
    body = line * (target // len(line))
    head = (
        "From: <big@example.org>\r\nTo: <%s>\r\nSubject: big message\r\n"
        "Message-ID: <big.%d@example.org>\r\n\r\n" % (rcpt, os.getpid())
    ).encode()
    msg = head + body
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as s:
        s.ehlo("bench.example.org")
        s.sendmail("big@example.org", [rcpt], msg)
    print(f"{time.monotonic() - t0:.2f}")
    return 0


# --- reply latency ---------------------------------------------------------

arrivals = {}  # in-reply-to (without <>) -> monotonic arrival time
arrived = threading.Condition()


async def relay_session(reader, writer):
    def send(line):
        writer.write(line.encode() + b"\r\n")

    send("220 bench-relay ESMTP")
    await writer.drain()
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), 60)
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                send("250-bench-relay")
                send("250-PIPELINING")
                send("250 8BITMIME")
            elif verb == b"HELO":
                send("250 bench-relay")
            elif verb == b"DATA":
                send("354 go ahead")
                await writer.drain()
                lines = []
                while True:
                    l = await asyncio.wait_for(reader.readline(), 60)
                    if not l or l == b".\r\n":
                        break
                    lines.append(l)
                t = time.monotonic()
                irt = None
                for l in lines:
                    if l in (b"\r\n", b"\n"):
                        break
                    if l.lower().startswith(b"in-reply-to:"):
                        irt = l.split(b":", 1)[1].strip().strip(b"<>").decode(errors="replace")
                with arrived:
                    arrivals.setdefault(irt, t)
                    arrived.notify_all()
                send("250 2.0.0 ok")
            elif verb == b"QUIT":
                send("221 bye")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP
                send("250 ok")
            await writer.drain()
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


def relay_thread(port, ready):
    async def main():
        server = await asyncio.start_server(relay_session, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def latency(port, relay_port, n, rcpt):
    ready = threading.Event()
    threading.Thread(target=relay_thread, args=(relay_port, ready), daemon=True).start()
    if not ready.wait(10):
        print(json.dumps({"error": "relay did not start"}))
        return 1
    lat = []
    missing = 0
    stamp = f"{os.getpid()}.{int(time.time())}"
    for i in range(n):
        mid = f"lat.{stamp}.{i}@bench.example.org"
        sender = f"utente{i}@example.org"
        msg = (
            f"From: Utente {i} <{sender}>\r\nTo: <{rcpt}>\r\n"
            f"Subject: Problema emissione fatture numero {i}\r\n"
            f"Message-ID: <{mid}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
            "Buongiorno, emettendo una fattura dal gestionale compare un errore\r\n"
            "di validazione sul codice destinatario. Grazie.\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("bench.example.org")
            s.sendmail(sender, [rcpt], msg)
            t250 = time.monotonic()
        deadline = t250 + 10
        with arrived:
            while mid not in arrivals and time.monotonic() < deadline:
                arrived.wait(deadline - time.monotonic())
            t = arrivals.get(mid)
        if t is None:
            missing += 1
        else:
            lat.append(max(0.0, t - t250))
    lat.sort()

    def pct(p):
        if not lat:
            return None
        k = min(len(lat) - 1, max(0, int(round(p / 100 * len(lat) + 0.5)) - 1))
        return lat[k]

    print(json.dumps({
        "n": n, "received": len(lat), "missing": missing,
        "p50_ms": None if not lat else round(pct(50) * 1000, 1),
        "p99_ms": None if not lat else round(pct(99) * 1000, 1),
        "max_ms": None if not lat else round(lat[-1] * 1000, 1),
        "min_ms": None if not lat else round(lat[0] * 1000, 1),
    }), flush=True)
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "ports":
        ports(int(argv[2]))
        return 0
    if cmd == "wait":
        return wait(int(argv[2]), float(argv[3]), int(argv[4]) if len(argv) > 4 else None)
    if cmd == "bigmsg":
        return bigmsg(int(argv[2]), int(argv[3]), argv[4])
    if cmd == "latency":
        return latency(int(argv[2]), int(argv[3]), int(argv[4]), argv[5])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
