#!/usr/bin/env python3
"""A tiny Sendmail milter (protocol version 6) that records what the MTA says.

Standard library only (no libmilter, no pymilter). It listens on
127.0.0.1:PORT and, for every connection N, writes

    OUTDIR/conn-N.bin          every byte the MTA sent, exactly as read
    OUTDIR/conn-N.replies.bin  every byte this milter answered

and answers like a well-behaved filter that adds one header:

    SMFIC_OPTNEG 'O'   -> 'O' version 6, actions ADDHDRS|CHGHDRS (0x11) and
                          protocol NOUNKNOWN (0x100), each ANDed with what
                          the MTA offered
    'D' 'A' 'Q' 'K'    -> no reply (macros, abort, quit, quit-new-connection)
    'C' 'H' 'M' 'R' 'T' 'L' 'N' 'B'
                       -> 'c' (continue)
    'E' (end of body)  -> 'i' insert header at index 0 "X-Captured: yes",
                          then 'a' (accept)

Packets both ways are a 4-byte big-endian length (counting the command
byte), the command byte and the data.

    capture_milter.py --port PORT --out DIR [--once N]
        serve; --once N: exit after N connections have ended
    capture_milter.py --dump FILE
        list the packets of a recorded file, one a line

Used once to make tests/fixtures/milter/ (see the README there).
"""

import argparse
import os
import socket
import struct
import sys
import threading

SMFIF_ADDHDRS = 0x01
SMFIF_CHGHDRS = 0x10
SMFIP_NOUNKNOWN = 0x100

NO_REPLY = set(b"DAQK")
CONTINUE = set(b"CHMRTLNB")


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def read_exact(conn, n, log):
    """n bytes, each one also appended to log; None on a clean EOF first."""
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            if buf:
                raise EOFError("connection closed mid-packet")
            return None
        log.write(chunk)
        log.flush()
        buf += chunk
    return buf


def answer(cmd, data):
    """The reply packets (bytes) to one command, b"" for none."""
    if cmd == b"O":
        version, actions, protocol = struct.unpack(">III", data[:12])
        return packet(
            b"O",
            struct.pack(
                ">III",
                6,
                actions & (SMFIF_ADDHDRS | SMFIF_CHGHDRS),
                protocol & SMFIP_NOUNKNOWN,
            ),
        )
    if cmd[0] in NO_REPLY:
        return b""
    if cmd[0] in CONTINUE:
        return packet(b"c")
    if cmd == b"E":
        return packet(b"i", struct.pack(">I", 0) + b"X-Captured\0yes\0") + packet(b"a")
    # Unknown to this milter: continue rather than hang the MTA.
    return packet(b"c")


def session(conn, n, outdir):
    base = os.path.join(outdir, "conn-%d" % n)
    with conn, open(base + ".bin", "wb") as got, open(base + ".replies.bin", "wb") as sent:
        while True:
            head = read_exact(conn, 4, got)
            if head is None:
                break
            (length,) = struct.unpack(">I", head)
            if length < 1:
                raise ValueError("zero-length packet")
            body = read_exact(conn, length, got)
            if body is None:
                raise EOFError("connection closed after a length")
            cmd, data = body[:1], body[1:]
            reply = answer(cmd, data)
            if reply:
                sent.write(reply)
                sent.flush()
                conn.sendall(reply)
            if cmd == b"Q":
                # The MTA closes (after K, QUIT_NC, it would reuse the connection).
                break
    print("capture_milter: connection %d done: %s" % (n, base), file=sys.stderr, flush=True)


def serve(port, outdir, once):
    os.makedirs(outdir, exist_ok=True)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    print("capture_milter: listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    done = threading.Semaphore(0)
    n = 0
    threads = []

    def run(conn, k):
        try:
            session(conn, k, outdir)
        except Exception as e:  # keep serving the others
            print("capture_milter: connection %d: %s" % (k, e), file=sys.stderr, flush=True)
        finally:
            done.release()

    ls.settimeout(0.5)
    finished = 0
    while once is None or finished < once:
        try:
            conn, _ = ls.accept()
        except socket.timeout:
            while done.acquire(blocking=False):
                finished += 1
            continue
        n += 1
        t = threading.Thread(target=run, args=(conn, n), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


def describe(cmd, data):
    """One human line for a packet."""
    c = cmd.decode("latin-1")
    if c == "O" and len(data) >= 12:
        v, a, p = struct.unpack(">III", data[:12])
        extra = " + %d more bytes" % (len(data) - 12) if len(data) > 12 else ""
        return "OPTNEG version %d actions 0x%x protocol 0x%x%s" % (v, a, p, extra)
    if c == "D":
        parts = data[1:].split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        pairs = ["%s=%s" % (parts[i].decode("latin-1"), parts[i + 1].decode("latin-1"))
                 for i in range(0, len(parts) - 1, 2)]
        return "DEFINE_MACRO for '%s': %s" % (data[:1].decode("latin-1"), " ".join(pairs))
    if c == "C":
        host, rest = data.split(b"\0", 1)
        fam = rest[:1].decode("latin-1")
        if fam in "46":
            (port,) = struct.unpack(">H", rest[1:3])
            addr = rest[3:].rstrip(b"\0").decode("latin-1")
            return "CONNECT host %s family %s port %d address %s" % (host.decode(), fam, port, addr)
        return "CONNECT host %s family %s" % (host.decode(), fam)
    if c in "HMR":
        args = [x.decode("latin-1") for x in data.split(b"\0")[:-1]]
        name = {"H": "HELO", "M": "MAIL", "R": "RCPT"}[c]
        return "%s %s" % (name, " ".join(args))
    if c == "L":
        name, value = data.split(b"\0")[:2]
        return "HEADER %s: %r" % (name.decode("latin-1"), value.decode("latin-1"))
    if c == "B":
        return "BODY chunk %d bytes" % len(data)
    names = {"T": "DATA", "N": "EOH (end of headers)", "E": "BODYEOB (end of body)",
             "A": "ABORT", "Q": "QUIT", "K": "QUIT_NC", "U": "UNKNOWN",
             "c": "CONTINUE", "a": "ACCEPT", "t": "TEMPFAIL", "r": "REJECT",
             "y": "REPLYCODE"}
    if c == "i":
        (idx,) = struct.unpack(">I", data[:4])
        name, value = data[4:].split(b"\0")[:2]
        return "INSHEADER index %d %s: %s" % (idx, name.decode(), value.decode())
    return names.get(c, "?") + (" %d data bytes" % len(data) if data else "")


def dump(path):
    raw = open(path, "rb").read()
    off = 0
    while off < len(raw):
        (length,) = struct.unpack(">I", raw[off:off + 4])
        cmd, data = raw[off + 4:off + 5], raw[off + 5:off + 4 + length]
        print("%6d  '%s'  len %4d  %s" % (off, cmd.decode("latin-1"), length, describe(cmd, data)))
        off += 4 + length


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int)
    p.add_argument("--out", default=".")
    p.add_argument("--once", type=int, default=None)
    p.add_argument("--dump")
    a = p.parse_args()
    if a.dump:
        dump(a.dump)
    elif a.port:
        serve(a.port, a.out, a.once)
    else:
        p.error("--port or --dump")


if __name__ == "__main__":
    main()
