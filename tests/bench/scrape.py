#!/usr/bin/env python3
"""The cost of scraping the metrics over HTTP (issue 17's benchmark).

    python3 tests/bench/scrape.py --revokerd BUILD/daemon/revokerd [--rows 100000] [--idle-rows 1000000]

With `[metrics] listen` on a loopback port, against nginx on loopback (as
tests/bench/lanes.py; the stand-in endpoint without nginx), 16 requests in
flight, it measures:

  drain    --rows expired tokens draining: the rate (requests per second,
           first to last) without a scraper and with a scrape every second,
           --rounds times in turn (a shared host's slow minute slows a pair
           alike), then once with a scrape every 100 ms; each scrape's
           latency (connect to the last byte) during the drains, p50 and p99
           (goal: p99 <= 50 ms), beside a control socket ping's every 100 ms
  idle     the CPU of the daemon's loop thread (where a scrape runs; the
           token counter runs on the threadpool) per scrape with --idle-rows
           active tokens and nothing due: 1,000 scrapes back to back, minus
           what the thread spends idle over the same time (goal: <= 1 ms)

and prints them side by side with the goals (the drain rate with a scrape
every second within 1 % of the rate without) and the machine. Timing is
reported, not asserted. Not part of the default suite.
"""

import argparse
import contextlib
import hashlib
import http.client
import os
import platform
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import harness  # noqa: E402

import bench  # noqa: E402  (its Nginx, through lanes)
import lanes  # noqa: E402  (Run, read_log, percentile)


def scrape_once(port):
    """Seconds from connect to the last byte of one GET /metrics."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or b"revokerd_build_info" not in body:
            raise RuntimeError("scrape answered %d" % r.status)
    finally:
        c.close()
    return time.perf_counter() - t0


def scraper(port, every_s, stop, out):
    nxt = time.monotonic()
    while not stop.is_set():
        out.append(scrape_once(port))
        nxt += every_s
        stop.wait(max(0, nxt - time.monotonic()))


def pinger(path, stop, out):
    """The control socket's ping round trip every 100 ms: the same loop's
    latency without HTTP, for comparison."""
    while not stop.is_set():
        t0 = time.perf_counter()
        harness.request(path, {"op": "ping"}, timeout=10)
        out.append(time.perf_counter() - t0)
        stop.wait(0.1)


def drain(args, name, every_ms):
    port = harness.free_port()
    run = lanes.Run(args, name, config={"metrics.listen": "127.0.0.1:%d" % port})
    try:
        latencies, pings, stop = [], [], threading.Event()
        threads = []
        if every_ms:
            threads = [threading.Thread(target=scraper, args=(port, every_ms / 1000.0, stop, latencies)),
                       threading.Thread(target=pinger, args=(run.d.socket_path, stop, pings))]
        for th in threads:
            th.start()
        with run.app.transaction():
            run.app.conn.executemany(
                "INSERT INTO tokens (token, expires_at) VALUES (?, ?)",
                (("rout-%07d-%s" % (i, "r" * 24), harness.now_s() - 1) for i in range(args.rows)))
        harness.wait_until(lambda: run.count("revoked") >= args.rows, 3600, "the drain", interval=0.5)
        stop.set()
        for th in threads:
            th.join()
        if run.nginx:  # it flushes its log every 100 ms
            harness.wait_until(lambda: len(lanes.read_log(run)[1]) >= args.rows, 10, "nginx's log")
        _, routine = lanes.read_log(run)
        span = routine[-1] - routine[0]
        return {"rate": (len(routine) - 1) / span, "latencies": latencies, "pings": pings,
                "load": os.getloadavg()[0]}
    finally:
        run.close()


def build_table(run, rows):
    """rows active tokens, hashed as the daemon leaves them, far from due."""
    c = run.app.conn
    c.create_function("sha", 1, lambda t: hashlib.sha256(t.encode()).digest(), deterministic=True)
    with run.app.transaction():
        c.execute("""
            INSERT INTO tokens (token, token_sha256, expires_at)
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
            SELECT printf('idle-%08d-%s', i, lower(hex(randomblob(12)))), NULL, ?2 FROM s""",
                  (rows, harness.now_s() + 86400 * 365))
        c.execute("UPDATE tokens SET token_sha256 = sha(token) WHERE token_sha256 IS NULL")


def loop_thread_ns(pid):
    """CPU time of the main thread (the loop), from its schedstat."""
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        return int(f.read().split()[0])


def idle_cpu(args):
    port = harness.free_port()
    run = lanes.Run(args, "idle", config={"metrics.listen": "127.0.0.1:%d" % port})
    try:
        build_table(run, args.idle_rows)

        def counted():
            text = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            text.request("GET", "/metrics")
            body = text.getresponse().read().decode()
            text.close()
            return 'revokerd_tokens{state="active"} %d\n' % args.idle_rows in body
        harness.wait_until(counted, 300, "the count of %d rows" % args.idle_rows, interval=1)
        time.sleep(3)  # the count's own wait, the checkpoint after the insert
        pid = run.d.pid
        n, per, lat = 1000, [], []
        for _ in range(3):
            c0, t0 = loop_thread_ns(pid), time.monotonic()
            lat += [scrape_once(port) for _ in range(n)]
            c1, t1 = loop_thread_ns(pid), time.monotonic()
            time.sleep(t1 - t0)  # the same time, idle
            c2 = loop_thread_ns(pid)
            per.append(((c1 - c0) - (c2 - c1)) / n / 1e6)
        return {"cpu_ms": per, "idle_ms": (c2 - c1) / 1e6, "took_s": t1 - t0,
                "latencies": lat, "load": os.getloadavg()[0]}
    finally:
        run.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--revokerd", required=True)
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--idle-rows", type=int, default=1000000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--endpoint", choices=("nginx", "slow"),
                   default="nginx" if bench.shutil.which("nginx") or os.path.exists("/usr/sbin/nginx") else "slow")
    p.add_argument("--delay-ms", type=int, default=5, help="the slow endpoint's delay per answer")
    args = p.parse_args()
    os.environ["REVOKERD"] = os.path.abspath(args.revokerd)
    os.environ.setdefault("ENDPOINT", os.path.join(os.path.dirname(HERE), "endpoint.py"))

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        load = f.read().strip()
    print("machine: %s, %d CPUs, %s %s, loadavg %s; endpoint %s, concurrency %d"
          % (cpu, os.cpu_count(), platform.system(), platform.release(), load,
             "nginx (1 worker)" if args.endpoint == "nginx" else
             "tests/endpoint.py --delay-ms %d" % args.delay_ms, lanes.CONCURRENCY))

    def ms(v):
        return "%.2f ms" % (v * 1000)
    pairs = [(drain(args, "alone", 0), drain(args, "every1s", 1000)) for _ in range(args.rounds)]
    every_100 = drain(args, "every100ms", 100)
    print("%-40s %10s %10s %8s %8s" % ("%d-row drain, round" % args.rows, "no scrape", "1 s", "vs", "load"))
    for i, (a, b) in enumerate(pairs):
        print("%-40s %8.0f/s %8.0f/s %+7.1f%% %8.1f" % (i + 1, a["rate"], b["rate"],
                                                        100.0 * (b["rate"] / a["rate"] - 1), b["load"]))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    ra, rb = med([a["rate"] for a, _ in pairs]), med([b["rate"] for _, b in pairs])
    print("%-40s %8.0f/s %8.0f/s %+7.1f%% (goal: within 1 %%)" % ("median", ra, rb, 100.0 * (rb / ra - 1)))
    print("%-40s %19.0f/s %+7.1f%% vs the median alone" % ("a scrape every 100 ms", every_100["rate"],
                                                            100.0 * (every_100["rate"] / ra - 1)))
    lat = [x for _, b in pairs for x in b["latencies"]] + every_100["latencies"]
    print("scrape latency during the drains (%d scrapes): p50 %s, p99 %s, max %s (goal: p99 <= 50 ms)"
          % (len(lat), ms(lanes.percentile(lat, .5)), ms(lanes.percentile(lat, .99)), ms(max(lat))))
    pings = [x for _, b in pairs for x in b["pings"]] + every_100["pings"]
    print("control socket ping meanwhile, every 100 ms (%d): p50 %s, p99 %s (the same loop, without HTTP)"
          % (len(pings), ms(lanes.percentile(pings, .5)), ms(lanes.percentile(pings, .99))))
    idle = idle_cpu(args)
    print("idle daemon, %d rows: the loop's CPU per scrape %s ms in 3 rounds of 1,000 (goal: <= 1 ms; the last "
          "round took %.1f s, the loop's idle CPU over the same time, %.1f ms, subtracted); latency p50 %s, p99 %s; "
          "load %.1f" % (args.idle_rows, " / ".join("%.3f" % c for c in idle["cpu_ms"]), idle["took_s"],
                         idle["idle_ms"], ms(lanes.percentile(idle["latencies"], .5)),
                         ms(lanes.percentile(idle["latencies"], .99)), idle["load"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
