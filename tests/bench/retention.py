#!/usr/bin/env python3
"""Retention's benchmark (issue 16): a first pruning pass over a large
backlog while a drain runs.

    python3 tests/bench/retention.py --revokerd BUILD/daemon/revokerd
                                     [--finished 1000000] [--drain 100000] [--pairs 3]
                                     [--upgrade]

A database holding --finished revoked tokens finished two days ago and
their two audit rows each (a valid hash chain, written directly: minutes
of the daemon's work otherwise) is copied for two runs against nginx on
loopback (tests/bench/nginx.conf.in, one worker), 16 requests in flight:

  without  [retention] tokens = 0, audit = 0: nothing is pruned
  with     [retention] tokens = 1d, audit = 1d: the first pass runs

--pairs times in turn (the host's noise between two drains is large).
In each, --drain expired tokens are inserted and drained; a thread pings
the control socket every 10 ms meanwhile. Printed side by side: the
drain's rate (requests per second, first to last), the ping's p50/p99/max,
and for the run with pruning the rows it deleted during the drain and the
time its whole first pass took (--pass-timeout caps the wait). Goals
(issue 16): the drain's rate within 10 % of the run without pruning, ping
p99 <= 10 ms. Timing is reported, not asserted; the machine line and
/proc/loadavg before and after say how shared the host was.

--upgrade measures instead what an existing database's upgrade costs (see
upgrade()).
"""

import argparse
import contextlib
import hashlib
import multiprocessing
import os
import platform
import shutil
import socket
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402

import bench  # noqa: E402  (its Nginx)
from lanes import percentile  # noqa: E402

CONCURRENCY = 16


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


def audit_hash(prev, seq, at, token_id, fp, event, detail, duration):
    def text(v):
        return "\\N" if v is None else v.replace("\\", "\\\\").replace("|", "\\|")

    def num(v):
        return "\\N" if v is None else str(v)

    parts = [prev, str(seq), str(at), num(token_id), text(fp), text(event), "\\N",
             num(200 if event == "revoked" else None), text(detail), num(duration)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def make_template(args, workdir):
    """The schema from a daemon's first start, then the finished rows."""
    notify = harness.NotifySocket()
    d = harness.Daemon(workdir, notify, url="http://127.0.0.1:9/v2/token/logout")
    d.write_config()
    d.start()
    d.stop()
    notify.close()
    fill(args, d.db_path)
    return d.db_path


def fill(args, path):
    """--finished revoked tokens and their audit rows, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    t0 = time.monotonic()
    old = harness.now_ms() - 2 * 86400 * 1000
    conn.execute("BEGIN IMMEDIATE")
    prev, seq = "0" * 64, 0

    def rows():
        for i in range(1, args.finished + 1):
            h = hashlib.sha256(b"bench-%d" % i).digest()
            yield (i, h, h.hex()[:16], old + i // 1000, old + i // 1000)

    conn.executemany("INSERT INTO tokens (id, token, state, token_sha256, fingerprint, due_reason, due_at, "
                     "finished_at, last_event) VALUES (?, NULL, 'revoked', ?, ?, 'expired', ?, ?, 'revoked')",
                     rows())

    def audit():
        nonlocal prev, seq
        for i in range(1, args.finished + 1):
            fp = hashlib.sha256(b"bench-%d" % i).hexdigest()[:16]
            at = old + i // 1000
            for event, detail, duration in (("due", "expired", None), ("revoked", None, 3)):
                seq += 1
                prev = audit_hash(prev, seq, at, i, fp, event, detail, duration)
                yield (seq, at, i, fp, event, 200 if event == "revoked" else None, detail, duration, prev)

    conn.executemany("INSERT INTO audit (seq, at, token_id, fingerprint, event, http_status, detail, duration_ms, "
                     "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", audit())
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print("template: %d finished tokens, %d audit rows, %.0f MB, written in %.0f s" % (
        args.finished, seq, os.path.getsize(path) / 1e6, time.monotonic() - t0), flush=True)


def upgrade(args):
    """What an existing database's upgrade costs: a schema 8 file made as
    revokerd 8 made it (auto_vacuum NONE) with --finished rows; the start of
    this revokerd on it (migration 9: the index tokens_finished, and the
    schema check) to READY, against a start on the migrated file; then the
    optional conversion to auto_vacuum=INCREMENTAL by VACUUM."""
    workdir = tempfile.mkdtemp(prefix="revokerd-retention-upgrade-")
    try:
        notify = harness.NotifySocket()
        d = harness.Daemon(workdir, notify, url="http://127.0.0.1:9/v2/token/logout")
        d.write_config()
        conn = sqlite3.connect(d.db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        sql = os.path.join(os.path.dirname(os.path.dirname(HERE)), "sql")
        for name in sorted(os.listdir(sql)):
            if name[:3].isdigit() and int(name[:3]) <= 8:
                with open(os.path.join(sql, name)) as f:
                    conn.executescript(f.read())
        conn.execute("PRAGMA user_version = 8")
        conn.close()
        fill(args, d.db_path)
        times = []
        for _ in range(2):
            t0 = time.monotonic()
            d.start(timeout=600)
            times.append(time.monotonic() - t0)
            d.stop()
        notify.close()
        conn = sqlite3.connect(d.db_path, isolation_level=None)
        before = os.path.getsize(d.db_path)
        t0 = time.monotonic()
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        vac = time.monotonic() - t0
        mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        conn.close()
        print("upgrade of a schema 8 file with %d finished tokens (%.0f MB): start with migration 9 %.1f s, "
              "a start after it %.1f s; PRAGMA auto_vacuum=INCREMENTAL; VACUUM: %.1f s, %.0f MB after, "
              "auto_vacuum %d" % (args.finished, before / 1e6, times[0], times[1], vac,
                                   os.path.getsize(d.db_path) / 1e6, mode), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pinger(path, stop, conn):
    """In a process of its own, so that a round trip is the daemon's, not a
    wait for this process's GIL while the application's executemany() runs."""
    out = []
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rb")
    while not stop.is_set():
        t0 = time.monotonic()
        s.sendall(b'{"op":"ping"}\n')
        f.readline()
        out.append(time.monotonic() - t0)
        time.sleep(0.01)
    s.close()
    conn.send(out)


def run(args, name, template, config, wait_pass=True):
    workdir = tempfile.mkdtemp(prefix="revokerd-retention-%s-" % name)
    nginx = bench.Nginx(workdir, harness.free_port(), 1)
    nginx.start()
    notify = harness.NotifySocket()
    d = harness.Daemon(workdir, notify, url=nginx.url,
                       config=dict({"logout.concurrency": str(CONCURRENCY)}, **config))
    d.write_config()
    shutil.copy(template, d.db_path)
    app = None
    try:
        d.start(timeout=120)
        app = harness.AppDB(d.db_path)
        started = time.monotonic()
        time.sleep(1)  # the first pass under way
        stop = multiprocessing.Event()
        recv, send = multiprocessing.Pipe(duplex=False)
        th = multiprocessing.Process(target=pinger, args=(d.socket_path, stop, send))
        th.start()
        with app.transaction():
            app.conn.executemany("INSERT INTO tokens (token, expires_at) VALUES (?, ?)",
                                 (("rout-%07d-%s" % (i, "r" * 24), harness.now_s() - 1)
                                  for i in range(args.drain)))
        # The secret is erased once revoked: the drain's rows by id.
        harness.wait_until(lambda: app.query("SELECT count(*) AS n FROM tokens WHERE id > ? AND state = 'revoked'",
                                             (args.finished,))[0]["n"] >= args.drain, 3600, "the drain",
                           interval=0.5)
        stop.set()
        pings = recv.recv()
        th.join()
        pruned = harness.request(d.socket_path, {"op": "stats"})["database"]["pruned"]
        harness.wait_until(lambda: len(nginx.requests(0)) >= args.drain, 10, "nginx's log")
        arrivals = sorted(t for t, tok in nginx.requests(0) if tok.startswith("rout-"))
        rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        out = {"rate": rate, "pings": pings, "pruned_during": pruned, "pass_s": None}
        if wait_pass and config.get("retention.tokens", "0") != "0":
            want = args.finished

            def done():
                p = harness.request(d.socket_path, {"op": "stats"})["database"]["pruned"]
                return p["tokens"] >= want and p["audit"] >= 2 * want - 1
            with contextlib.suppress(Exception):
                harness.wait_until(done, args.pass_timeout, "the first pass", interval=1)
                out["pass_s"] = time.monotonic() - started
            st = harness.request(d.socket_path, {"op": "stats"})["database"]
            out["size_after"] = st["size_bytes"]
            out["free_after"] = st["free_bytes"]
            out["pruned_end"] = st["pruned"]
            # Then the free pages go back to the file system (auto_vacuum=INCREMENTAL).
            t0 = time.monotonic()

            def given_back():
                db = harness.request(d.socket_path, {"op": "stats"})["database"]
                return db["free_bytes"] <= max(4 << 20, db["size_bytes"] // 8) + (1 << 20)
            with contextlib.suppress(Exception):
                harness.wait_until(given_back, args.pass_timeout, "the free pages given back", interval=1)
            st = harness.request(d.socket_path, {"op": "stats"})["database"]
            out["vacuum_s"] = time.monotonic() - t0
            out["size_vacuumed"], out["free_vacuumed"] = st["size_bytes"], st["free_bytes"]
        return out
    finally:
        with contextlib.suppress(Exception):
            d.stop(timeout=60)
        if app:
            app.close()
        d.cleanup()
        nginx.stop()
        notify.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--revokerd", required=True)
    p.add_argument("--finished", type=int, default=1000000)
    p.add_argument("--drain", type=int, default=100000)
    p.add_argument("--pass-timeout", type=float, default=1800)
    p.add_argument("--pairs", type=int, default=3, help="drains without and with pruning, in turn")
    p.add_argument("--upgrade", action="store_true", help="only measure an existing database's upgrade")
    args = p.parse_args()
    os.environ["REVOKERD"] = os.path.abspath(args.revokerd)
    os.environ.setdefault("ENDPOINT", os.path.join(os.path.dirname(HERE), "endpoint.py"))

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print("machine: %s, %d CPUs, %s %s; endpoint nginx (1 worker), concurrency %d; loadavg %s"
          % (cpu, os.cpu_count(), platform.system(), platform.release(), CONCURRENCY, loadavg()), flush=True)
    if args.upgrade:
        upgrade(args)
        print("loadavg after: %s" % loadavg())
        return 0
    tdir = tempfile.mkdtemp(prefix="revokerd-retention-template-")
    try:
        template = make_template(args, tdir)
        pairs = []
        for i in range(args.pairs):
            last = i == args.pairs - 1
            pairs.append((run(args, "without", template, {"retention.tokens": "0", "retention.audit": "0"}),
                          run(args, "with", template, {"retention.tokens": "1d", "retention.audit": "1d"},
                              wait_pass=last)))
    finally:
        shutil.rmtree(tdir, ignore_errors=True)

    def ms(v):
        return "%.1f ms" % (v * 1000)

    print("%-36s %10s %10s %10s %10s" % ("%d-row drain" % args.drain, "rate", "ping p50", "ping p99", "ping max"))
    for i, (without, with_) in enumerate(pairs):
        for name, r in (("%d: without pruning" % (i + 1), without), ("%d: with the first pruning pass" % (i + 1), with_)):
            print("%-36s %8.0f/s %10s %10s %10s" % (name, r["rate"], ms(percentile(r["pings"], .5)),
                                                   ms(percentile(r["pings"], .99)), ms(max(r["pings"]))))
        pd = with_["pruned_during"]
        print("%-36s %+.1f %%; pruned meanwhile: %d tokens, %d audit rows"
              % ("   drain rate with pruning", 100.0 * (with_["rate"] / without["rate"] - 1), pd["tokens"], pd["audit"]))
    ratios = sorted(w["rate"] / o["rate"] - 1 for o, w in pairs)
    print("drain rate with pruning, median of %d pairs: %+.1f %% (%+.1f..%+.1f; goal: within 10 %%); ping p99 with "
          "pruning %s, without %s (goal: <= 10 ms)"
          % (len(pairs), 100.0 * ratios[len(ratios) // 2], 100.0 * ratios[0], 100.0 * ratios[-1],
             ms(percentile([p for _, w in pairs for p in w["pings"]], .99)),
             ms(percentile([p for o, _ in pairs for p in o["pings"]], .99))))
    with_ = pairs[-1][1]
    if with_["pass_s"] is not None:
        print("the whole first pass (%d tokens, %d audit rows): %.0f s; file %.0f MB, %.0f MB of it free"
              % (with_["pruned_end"]["tokens"], with_["pruned_end"]["audit"], with_["pass_s"],
                 with_["size_after"] / 1e6, with_["free_after"] / 1e6))
        print("then the free pages given back in %.0f s: file %.0f MB, %.0f MB of it free"
              % (with_["vacuum_s"], with_["size_vacuumed"] / 1e6, with_["free_vacuumed"] / 1e6))
    else:
        print("the first pass did not end within %.0f s (pruned %r)" % (args.pass_timeout, with_.get("pruned_end")))
    print("loadavg after: %s" % loadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
