#!/usr/bin/env python3
"""The `track` benchmark (issue 18).

    python3 tests/bench/track.py --revokerd BUILD/daemon/revokerd [--tokens 50000]

Hands --tokens JWTs (about 190 bytes each, their exp a day ahead) to a fresh
daemon in each scenario and prints tokens per second acknowledged and the
daemon's CPU time per token (utime + stime from /proc/PID/stat, before and
after), with the machine:

  track, 1 connection, pipelined    every line written at once, replies read
                                    as they come (the lines of one read share
                                    a commit)
  track, 16 connections, pipelined  the same split over 16 connections
  track, 1 connection, one by one   each request waits for its reply
  app SQL, one per transaction      an application writing the same rows
                                    (token, subject, expires_at) with python
                                    sqlite3, autocommit; the daemon's CPU
                                    includes hashing them once it sees them

Nothing expires during a run: no request reaches the endpoint. Timing is
reported, not asserted. Not part of the default suite.
"""

import argparse
import base64
import contextlib
import json
import os
import platform
import socket
import sqlite3
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwts(n, exp):
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    out = []
    for i in range(n):
        payload = b64url(json.dumps({"sub": "user-%d" % (i % 1000), "exp": exp, "jti": os.urandom(8).hex()}).encode())
        out.append("%s.%s.%s" % (header, payload, b64url(os.urandom(32))))
    return out


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class Run:
    """One daemon on a fresh database."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="revokerd-track-%s-" % name)
        self.notify = harness.NotifySocket()
        self.ep = harness.Endpoint(self.dir)
        self.ep.start()
        self.d = harness.Daemon(self.dir, self.notify, url=self.ep.url)
        self.d.write_config()
        self.d.start()

    def close(self):
        with contextlib.suppress(Exception):
            self.d.stop(timeout=60)
        self.d.cleanup()
        self.ep.stop()
        self.notify.close()


def pipelined(path, lines, out, idx):
    """Write every line, read every reply; out[idx] = ok replies."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(300)
    sock.connect(path)
    data = b"".join(lines)
    got = {"n": 0, "ok": 0}

    def read():
        tail = b""
        while got["n"] < len(lines):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf = tail + chunk
            end = buf.rfind(b"\n") + 1
            got["n"] += buf.count(b"\n", 0, end)
            got["ok"] += buf.count(b'"ok":true', 0, end)
            tail = buf[end:]

    reader = threading.Thread(target=read)
    reader.start()
    sock.sendall(data)
    reader.join()
    sock.close()
    out[idx] = got["ok"]


def one_by_one(path, lines, out, idx):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(path)
    ok = 0
    buf = b""
    for line in lines:
        sock.sendall(line)
        while b"\n" not in buf:
            buf += sock.recv(65536)
        reply, buf = buf.split(b"\n", 1)
        ok += b'"ok":true' in reply
    sock.close()
    out[idx] = ok


def track_scenario(tokens, conns, fn):
    run = Run("sock%d" % conns)
    try:
        lines = [json.dumps({"op": "track", "token": t}).encode() + b"\n" for t in tokens]
        parts = [lines[i::conns] for i in range(conns)]
        out = [0] * conns
        threads = [threading.Thread(target=fn, args=(run.d.socket_path, parts[i], out, i)) for i in range(conns)]
        pid = run.d.pid
        c0, t0 = cpu_s(pid), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu = cpu_s(pid) - c0
        rows = sqlite3.connect(run.d.db_path).execute("SELECT count(*) FROM tokens").fetchone()[0]
        if sum(out) != len(tokens) or rows != len(tokens):
            raise SystemExit("track: %d of %d acknowledged, %d rows" % (sum(out), len(tokens), rows))
        return len(tokens) / wall, cpu / len(tokens) * 1e6, wall
    finally:
        run.close()


def app_scenario(tokens, exp):
    run = Run("app")
    try:
        db = sqlite3.connect(run.d.db_path, timeout=30, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 30000")
        pid = run.d.pid
        c0, t0 = cpu_s(pid), time.perf_counter()
        for i, t in enumerate(tokens):
            db.execute("INSERT INTO tokens (token, subject, expires_at) VALUES (?, ?, ?)",
                       (t, "user-%d" % (i % 1000), exp))
        wall = time.perf_counter() - t0
        # The daemon hashes what it sees about a second later: count that too.
        harness.wait_until(lambda: db.execute("SELECT count(*) FROM tokens WHERE token_sha256 IS NULL")
                           .fetchone()[0] == 0, 300, "every row hashed", interval=0.2)
        cpu = cpu_s(pid) - c0
        db.close()
        return len(tokens) / wall, cpu / len(tokens) * 1e6, wall
    finally:
        run.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--revokerd", required=True)
    p.add_argument("--tokens", type=int, default=50000)
    p.add_argument("--one-by-one", type=int, default=5000, help="tokens for the one-by-one scenario")
    args = p.parse_args()
    os.environ["REVOKERD"] = os.path.abspath(args.revokerd)
    os.environ.setdefault("ENDPOINT", os.path.join(os.path.dirname(HERE), "endpoint.py"))

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print("machine: %s, %d CPUs, %s %s, load average %s" % (
        cpu, os.cpu_count(), platform.system(), platform.release(),
        " ".join("%.2f" % x for x in os.getloadavg())))
    exp = int(time.time()) + 86400
    tokens = jwts(args.tokens, exp)
    print("tokens: %d JWTs of %d bytes (exp a day ahead)" % (len(tokens), len(tokens[0])))
    print("%-36s %12s %14s %9s" % ("scenario", "tokens/s", "daemon CPU/token", "wall"))
    rows = [
        ("track, 1 connection, pipelined", lambda: track_scenario(tokens, 1, pipelined), len(tokens)),
        ("track, 16 connections, pipelined", lambda: track_scenario(tokens, 16, pipelined), len(tokens)),
        ("track, 1 connection, one by one",
         lambda: track_scenario(tokens[:args.one_by_one], 1, one_by_one), args.one_by_one),
        ("app SQL, one row per transaction", lambda: app_scenario(tokens, exp), len(tokens)),
    ]
    for name, fn, n in rows:
        rate, us, wall = fn()
        print("%-36s %12.0f %11.1f us %8.1fs   (%d tokens)" % (name, rate, us, wall, n), flush=True)
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
