#!/usr/bin/env python3
"""The ops on many tokens (hold and release by subject or all, revoke by
subject) against a client that pings the control socket meanwhile: how long
each op takes, how many pings were answered during it, and the worst ping
round trip while it ran. Timing is printed, never asserted.

    python3 tests/bench/bulk.py --revokerd BUILD/daemon/revokerd [--tokens 100000,1000000] [--label after]
        [--ops hold,release,revoke]

For each size: a fresh database with that many active tokens of one subject
(one SQL transaction), revokerd started (and its hashing of the new rows
waited for) against a stand-in endpoint that is
down (what the revoke makes due stays pending: the numbers are the op's,
not the engine's), then hold by subject, release all, revoke by subject in
turn, each while a separate process pings back to back. Prints one line per
op with the load average. Python 3 stdlib only.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402

# The pinger runs in a process of its own, so that this script's work never
# shows up as the daemon's latency: one ping at a time, back to back; it
# prints "start_mono round_trip_s" a line.
PINGER = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = open(sys.argv[2], "w", buffering=1)
buf = b""
while True:
    t = time.monotonic()
    s.sendall(b'{"op":"ping"}\n')
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    buf = buf.split(b"\n", 1)[1]
    f.write("%.6f %.6f\n" % (t, time.monotonic() - t))
"""


def seed(db, n):
    app = harness.AppDB(db)
    far = int(time.time()) + 86400 * 30
    with app.transaction():
        app.conn.executemany("INSERT INTO tokens (token, subject, expires_at) VALUES (?, 'bench', ?)",
                             (("bench-%08d-%s" % (i, "x" * 24), far) for i in range(n)))
    app.close()


def cpu_s(pid):
    """The process's user + system CPU seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_op(d, obj, workdir):
    out = os.path.join(workdir, "pings.txt")
    pinger = subprocess.Popen([sys.executable, "-c", PINGER, d.socket_path, out])
    time.sleep(0.3)
    c0 = cpu_s(d.pid)
    t0 = time.monotonic()
    try:
        reply = harness.request(d.socket_path, obj, timeout=900)
    except (OSError, ValueError) as e:
        # main's revokerd closes a client idle through a long op (client_idle, 30 s): no reply, or half of it
        reply = {"ok": False, "error": "no reply: %s" % e.__class__.__name__}
    reply = reply or {"ok": False, "error": "no reply: closed"}
    t1 = time.monotonic()
    cpu = cpu_s(d.pid) - c0
    time.sleep(0.1)
    pinger.kill()
    pinger.wait()
    during, worst = 0, 0.0
    with open(out) as f:
        for line in f:
            start, rtt = (float(x) for x in line.split())
            if start + rtt < t0 or start > t1:
                continue
            worst = max(worst, rtt)
            if start >= t0 and start + rtt <= t1:
                during += 1
    return reply, t1 - t0, cpu, during, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--revokerd", required=True)
    ap.add_argument("--tokens", default="100000")
    ap.add_argument("--label", default="")
    ap.add_argument("--ops", default="hold,release,revoke", help="which, in this order")
    args = ap.parse_args()
    os.environ["REVOKERD"] = os.path.abspath(args.revokerd)
    ops = [("hold by subject", {"op": "hold", "subject": "bench"}),
           ("release all", {"op": "release", "all": True}),
           ("revoke by subject", {"op": "revoke", "subject": "bench"})]
    ops = [o for o in ops if o[0].split()[0] in args.ops.split(",")]
    for n in (int(x) for x in args.tokens.split(",")):
        with tempfile.TemporaryDirectory(prefix="revokerd-bulk-") as workdir:
            notify = harness.NotifySocket()
            ep = harness.Endpoint(workdir)  # never started: the endpoint is down
            d = harness.Daemon(workdir, notify, url=ep.url)
            d.start()
            d.stop()
            seed(d.db_path, n)
            d.start()
            # The daemon hashes new rows in the background: done before the
            # ops, so that its work is not counted in theirs.
            app = harness.AppDB(d.db_path)
            harness.wait_until(lambda: app.query("SELECT count(*) AS n FROM tokens WHERE token_sha256 IS NULL")
                               [0]["n"] == 0, 600, "every new token hashed")
            app.close()
            try:
                for name, obj in ops:
                    reply, took, cpu, during, worst = one_op(d, obj, workdir)
                    count = reply.get("count") if reply.get("ok") else repr(reply.get("error"))
                    load = open("/proc/loadavg").read().split()[:3]
                    print("%s %8d  %-18s %7.2f s (CPU %6.2f s)  count %-8s pings during %6d  worst ping %8.1f ms"
                          "  load %s" % (args.label, n, name, took, cpu, count, during, worst * 1000, " ".join(load)),
                          flush=True)
            finally:
                d.stop(timeout=120)
                notify.close()
                for line in open(d.stderr_paths[-1]):
                    if "part(s)" in line:
                        print("    daemon: " + line.strip())


if __name__ == "__main__":
    main()
