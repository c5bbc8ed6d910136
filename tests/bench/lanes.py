#!/usr/bin/env python3
"""The priority lanes' benchmark (issue 14, item 1).

    python3 tests/bench/lanes.py --revokerd BUILD/daemon/revokerd [--rows 100000]
                                 [--endpoint nginx|slow] [--delay-ms 5] [--flag-every-ms 10]
                                 [--scenarios alone,idle,drain,outage]

--rows 1000000 measures a million-row routine backlog (the rows are written
in one transaction first: about 15 s; a drain at nginx's speed takes minutes).

Against nginx on loopback (tests/bench/nginx.conf.in, as bench.py; the
default when installed) or the stand-in endpoint (`slow`: tests/endpoint.py,
--delay-ms per answer), 16 requests in flight, it measures:

  idle     flag -> request latency (p50/p99) of tokens flagged one every
           50 ms by another process on a daemon with nothing else to do
  drain    the same latency while --rows expired tokens drain, one flag
           every --flag-every-ms; and the routine drain's rate
           (routine requests per second, first to last)
  alone    the routine drain's rate without urgent traffic
  outage   the same latency during the return from an outage: the endpoint
           down while --rows expired tokens fall due (all pending, probed
           one at a time), then up, one flag every --flag-every-ms from the
           moment it is back; and the time to the first request after it

and prints them side by side with the issue's goals (urgent p99 during the
drain within 2x the idle p99; routine rate within 5 %) and the machine.
Times are the endpoint's arrival time minus the time just before the flag's
UPDATE. Timing is reported, not asserted. Not part of the default suite.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402

import bench  # noqa: E402  (its Nginx)

CONCURRENCY = 16


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def read_log(run):
    """{token: first arrival time}, and the arrival times of routine tokens."""
    first, routine = {}, []
    if run.nginx:
        entries = run.nginx.requests(0)
    else:
        entries = []
        with open(run.ep.log_path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                r = json.loads(line)
                entries.append((r["t"], r.get("token") or ""))
    for t, tok in entries:
        first.setdefault(tok, t)
        if tok.startswith("rout-"):
            routine.append(t)
    return first, routine


class Run:
    """One daemon and endpoint in a fresh directory."""

    def __init__(self, args, name, config=None):
        self.dir = tempfile.mkdtemp(prefix="revokerd-lanes-%s-" % name)
        self.notify = harness.NotifySocket()
        self.nginx = self.ep = None
        if args.endpoint == "nginx":
            self.nginx = bench.Nginx(self.dir, harness.free_port(), 1)
            self.nginx.start()
            url = self.nginx.url
        else:
            self.ep = harness.Endpoint(self.dir, delay_ms=args.delay_ms)
            self.ep.start()
            url = self.ep.url
        self.d = harness.Daemon(self.dir, self.notify, url=url,
                                config=dict({"logout.concurrency": str(CONCURRENCY)}, **(config or {})))
        self.d.write_config()
        self.d.start()
        self.app = harness.AppDB(self.d.db_path)

    def close(self):
        with contextlib.suppress(Exception):
            self.d.stop(timeout=60)
        self.d.cleanup()
        if self.nginx:
            self.nginx.stop()
        else:
            self.ep.stop()
        self.notify.close()
        self.app.close()

    def count(self, state):
        return self.app.query("SELECT count(*) AS n FROM tokens WHERE state = ?", (state,))[0]["n"]


def flagger(run, ids, every_s, stop, out):
    """Flag ids one every every_s until stop is set, each in its own
    transaction on a connection of its own; out: [(token, t0, committed)]."""
    app = harness.AppDB(run.d.db_path)
    nxt = time.monotonic()
    for tok, tid in ids:
        if stop.is_set():
            break
        t0 = time.time()
        app.execute("UPDATE tokens SET flagged = 1, flag_reason = 'bench' WHERE id = ?", (tid,))
        out.append((tok, t0, time.time()))
        nxt += every_s
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    app.close()


def urgent_latencies(first, flags, committed=False):
    """From just before the UPDATE (or from its commit: without the wait
    for SQLite's write lock) to the request's arrival."""
    return [first[f[0]] - f[2 if committed else 1] for f in flags if f[0] in first]


def scenario(args, name, rows, flag_every_ms, n_flags):
    run = Run(args, name)
    try:
        far = harness.now_s() + 86400
        urgent = ["urg-%06d-%s" % (i, "u" * 24) for i in range(n_flags)]
        ids = run.app.insert_many(urgent, expires_at=far)
        if rows:
            with run.app.transaction():
                run.app.conn.executemany(
                    "INSERT INTO tokens (token, expires_at) VALUES (?, ?)",
                    (("rout-%07d-%s" % (i, "r" * 24), harness.now_s() - 1) for i in range(rows)))
            # The drain under way before the first flag.
            harness.wait_until(lambda: run.count("revoked") >= 200, 60, "the drain under way")
        flags, stop = [], threading.Event()
        th = None
        if n_flags:
            th = threading.Thread(target=flagger, args=(run, list(ids.items()), flag_every_ms / 1000.0, stop,
                                                        flags))
            th.start()
        total = rows + n_flags
        if rows:
            harness.wait_until(lambda: run.count("revoked") - len(flags) >= rows or
                               (th is not None and not th.is_alive() and run.count("revoked") >= total),
                               3600, "the drain", interval=0.5)
            stop.set()
        if th:
            th.join()
        harness.wait_until(lambda: run.count("revoked") >= rows + len(flags), 120, "every flag revoked",
                           interval=0.1)
        if run.nginx:  # it flushes its log every 100 ms
            harness.wait_until(lambda: (lambda f, r: len(r) >= rows and all(x[0] in f for x in flags))(
                *read_log(run)), 10, "nginx's log")
        first, routine = read_log(run)
        if rows:  # only flags raised while routine work was still being sent
            flags = [f for f in flags if routine and f[1] <= routine[-1]]
        lat = urgent_latencies(first, flags)
        span = routine[-1] - routine[0] if len(routine) > 1 else float("nan")
        urgent_in = sum(1 for f in flags if f[0] in first and routine[0] <= first[f[0]] <= routine[-1]) \
            if routine else 0
        return {"latencies": lat, "after_commit": urgent_latencies(first, flags, True), "routine_rate": (len(routine) - 1) / span, "routine": len(routine),
                "flags": len(flags), "total_rate": (len(routine) - 1 + urgent_in) / span}
    finally:
        run.close()


def endpoint_down(run):
    if run.nginx:
        run.nginx.stop()
    else:
        run.ep.stop()


def endpoint_up(run):
    if run.nginx:
        run.nginx.start()
    else:
        run.ep.start()


def outage(args, rows, flag_every_ms, n_flags):
    """The endpoint down while rows fall due, then up: flags from the moment
    it is back, while the backlog drains."""
    run = Run(args, "outage")
    try:
        far = harness.now_s() + 86400
        urgent = ["urg-%06d-%s" % (i, "u" * 24) for i in range(n_flags)]
        ids = run.app.insert_many(urgent, expires_at=far)
        endpoint_down(run)
        with run.app.transaction():
            run.app.conn.executemany(
                "INSERT INTO tokens (token, expires_at) VALUES (?, ?)",
                (("rout-%07d-%s" % (i, "r" * 24), harness.now_s() - 1) for i in range(rows)))
        harness.wait_until(lambda: run.count("pending") >= rows, 3600, "the backlog pending", interval=0.5)
        harness.wait_until(lambda: any(m.startswith("endpoint down") for m in run.d.notify.statuses(run.d.pid)),
                           60, "the endpoint down")
        back = time.time()
        endpoint_up(run)
        flags, stop = [], threading.Event()
        th = threading.Thread(target=flagger, args=(run, list(ids.items()), flag_every_ms / 1000.0, stop, flags))
        th.start()
        harness.wait_until(lambda: run.count("revoked") - len(flags) >= rows or
                           (not th.is_alive() and run.count("revoked") >= rows + n_flags),
                           3600, "the drain", interval=0.5)
        stop.set()
        th.join()
        harness.wait_until(lambda: run.count("revoked") >= rows + len(flags), 120, "every flag revoked",
                           interval=0.1)
        if run.nginx:
            harness.wait_until(lambda: (lambda f, r: len(r) >= rows and all(x[0] in f for x in flags))(
                *read_log(run)), 10, "nginx's log")
        first, routine = read_log(run)
        routine = [t for t in routine if t >= back]
        flags = [f for f in flags if routine and f[1] <= routine[-1]]
        after = [t for t in list(first.values()) if t >= back]
        return {"latencies": urgent_latencies(first, flags), "flags": len(flags),
                "first_request_s": (min(after) - back) if after else float("nan"),
                "routine_rate": (len(routine) - 1) / (routine[-1] - routine[0]) if len(routine) > 1 else float("nan")}
    finally:
        run.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--revokerd", required=True)
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--endpoint", choices=("nginx", "slow"),
                   default="nginx" if bench.shutil.which("nginx") or os.path.exists("/usr/sbin/nginx") else "slow")
    p.add_argument("--delay-ms", type=int, default=5, help="the slow endpoint's delay per answer")
    p.add_argument("--flag-every-ms", type=float, default=10)
    p.add_argument("--idle-flags", type=int, default=200)
    p.add_argument("--alone-only", action="store_true", help="only the routine drain without urgent traffic")
    p.add_argument("--scenarios", default="alone,idle,drain,outage",
                   help="which to run (comma-separated; drain and outage size their flags from alone's rate)")
    args = p.parse_args()
    want = set(args.scenarios.split(","))
    os.environ["REVOKERD"] = os.path.abspath(args.revokerd)
    os.environ.setdefault("ENDPOINT", os.path.join(os.path.dirname(HERE), "endpoint.py"))

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print("machine: %s, %d CPUs, %s %s, load %.1f; endpoint %s, concurrency %d"
          % (cpu, os.cpu_count(), platform.system(), platform.release(), os.getloadavg()[0],
             "nginx (1 worker)" if args.endpoint == "nginx" else
             "tests/endpoint.py --delay-ms %d" % args.delay_ms, CONCURRENCY))

    def ms(v):
        return "%.1f ms" % (v * 1000)

    def line(what, lat):
        print("%-44s %12s %12s" % ("%s (%d)" % (what, len(lat)), ms(percentile(lat, .5)), ms(percentile(lat, .99))),
              flush=True)

    # A flag per 10 ms for the whole drain: more urgent tokens than it lasts.
    alone = scenario(args, "alone", args.rows, 0, 0) if "alone" in want or args.alone_only else None
    if args.alone_only:
        print("routine drain rate alone: %.0f/s" % alone["routine_rate"])
        return 0
    rate = alone["routine_rate"] if alone and alone["routine_rate"] > 0 else 3000.0
    expect_s = args.rows / rate
    n_flags = int(expect_s * 1.5 * 1000 / args.flag_every_ms) + 100
    # Each line as soon as its scenario ends: a million-row run takes long.
    print("%-44s %12s %12s" % ("", "p50", "p99"), flush=True)
    idle = scenario(args, "idle", 0, 50, args.idle_flags) if "idle" in want else None
    if idle:
        line("urgent flag -> request, idle daemon", idle["latencies"])
    drain = scenario(args, "drain", args.rows, args.flag_every_ms, n_flags) if "drain" in want else None
    if drain:
        line("urgent flag -> request, %d-row drain" % args.rows, drain["latencies"])
    back = outage(args, args.rows, args.flag_every_ms, n_flags) if "outage" in want else None
    if back:
        line("urgent flag -> request, return from outage", back["latencies"])
    if idle and drain:
        ic, dc = idle["after_commit"], drain["after_commit"]
        print("%-44s %12s %12s" % ("  the same from the flag's commit, idle", ms(percentile(ic, .5)), ms(percentile(ic, .99))))
        print("%-44s %12s %12s" % ("  the same from the flag's commit, drain", ms(percentile(dc, .5)), ms(percentile(dc, .99))))
        print("urgent p99 drain / idle: %.2fx (goal: within 2x)"
              % (percentile(drain["latencies"], .99) / percentile(idle["latencies"], .99)))
    if idle and back:
        print("urgent p99 return from outage / idle: %.2fx; first request %.0f ms after the endpoint came back "
              "(the next probe: retry.max_delay at most)"
              % (percentile(back["latencies"], .99) / percentile(idle["latencies"], .99), back["first_request_s"] * 1000))
    if alone and drain:
        print("routine drain rate: %.0f/s alone, %.0f/s with a flag every %g ms: %+.1f %% (goal: within 5 %%)"
              % (alone["routine_rate"], drain["routine_rate"], args.flag_every_ms,
                 100.0 * (drain["routine_rate"] / alone["routine_rate"] - 1)))
        print("all requests during the drain: %.0f/s alone, %.0f/s with the flags (the urgent ones take slots)"
              % (alone["total_rate"], drain["total_rate"]))
    if back:
        print("routine rate after the outage, with the flags: %.0f/s" % back["routine_rate"])
    return 0

if __name__ == "__main__":
    sys.exit(main())
