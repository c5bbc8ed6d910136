#!/usr/bin/env python3
"""revokerd's benchmark (issue 5): revokerd against the machine's limits.

Usually started by tests/bench/run.sh, which installs nginx, wrk and gnuplot,
builds a release revokerd and then runs this file:

    python3 tests/bench/bench.py --revokerd BUILD/daemon/revokerd --out DIR [--quick] [--big]

It starts its own nginx on 127.0.0.1 (tests/bench/nginx.conf.in) answering
200 to POST /v2/token/logout and logging each request's time ($msec) and
token, builds token tables with SQLite (cached in --cache), and runs every
scenario --reps times:

  drain    N due tokens in a table of 10 N rows: revocations/s from the
           daemon's start to the last outcome committed, CPU per revocation,
           peak RSS, commits/s (commits counted with a perf uprobe on
           db_commit when perf can; else n/a)
  cold     (alternating with the drain) the same number of due rows written
           while the daemon was down, new and unhashed: its rate over the
           warm drain's
  startup  READY=1 time and RSS with 1 M (and with --big 10 M) rows, nothing due
  idle     CPU over 60 s with 1 M active tokens, nothing due
  hashing  20,000 new tokens written by another process (2,000 a second, one
           per transaction) while the daemon runs: the daemon's CPU per new
           token, the part of it that hashing takes (what schema 3 moved off
           the revocation path: a second run has the writer store the hash),
           and how long after the last write all of them are hashed
  latency  expiry -> request (tokens expiring spread over a minute),
           flag committed by another process -> request, socket revoke -> request
  storm    N tokens expiring in the same second while a client pings the
           control socket every 10 ms: drain rate, ping round trip; each run
           is compared with a drain run right before it (a shared host's slow
           minute slows both alike)
  outage   tokens falling due while nginx is stopped: requests during the
           outage, time from its return to the last revocation
  wrk      wrk with a different token per request at the same concurrency,
           against the same nginx: the ceiling of loopback HTTP here

It prints a table of medians with min and max beside the issue's targets,
writes DIR/results.json and DIR/results.png (gnuplot, when installed).
Exit status: 0 when every scenario ran (targets missed or not: timing is
reported, not asserted), 1 when a scenario failed, 77 when nginx is missing.
Python 3 stdlib only. Every process it starts is killed on the way out.
"""

import argparse
import atexit
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CONCURRENCY = 16
FAR_MARKED = 4000000000   # expires_at of the rows the scenarios make due (2096)
FAR_OTHERS = 4100000000   # every other row: far in the future
GEN_VERSION = "3"         # bump when the generated table changes

# Sizes and durations per mode. quick: a smoke run of about 5 s of scenarios.
MODES = {
    "normal": dict(rows=1_000_000, due=100_000, big_rows=10_000_000, reps=3,
                   idle_s=60.0, expiry_window_s=60, expiry_tokens=600, flags=200,
                   flag_gap_s=0.05, socket_revokes=200, socket_gap_s=0.02,
                   storm=100_000, outage_s=30.0, outage_tokens=20_000, new_tokens=20_000,
                   retry_base="1s", retry_max="15min", wrk_s=5, lead_s=2),
    "quick": dict(rows=20_000, due=2_000, big_rows=200_000, reps=1,
                  idle_s=0.8, expiry_window_s=1, expiry_tokens=20, flags=10,
                  flag_gap_s=0.03, socket_revokes=10, socket_gap_s=0.01,
                  storm=2_000, outage_s=1.0, outage_tokens=400, new_tokens=2_000,
                  retry_base="100ms", retry_max="400ms", wrk_s=1, lead_s=1),
}

# The issue's targets: (key in the summary, comparison, bound, text).
TARGETS = [
    ("drain.rate", ">=", 10000, "drain >= 10,000 revocations/s"),
    ("drain.ratio_wrk", ">=", 0.2, "drain >= 0.2 of wrk's rate"),
    ("drain.ratio_reference", ">=", 0.9, "drain >= 0.9 of the reference's rate"),
    ("drain.cpu_ratio_reference", "<=", 1.15, "CPU <= 1.15 x the reference's"),
    ("drain.cpu_us_per_rev", "<=", 80, "CPU <= 80 us per revocation"),
    ("drain.peak_rss_mib", "<=", 64, "peak RSS <= 64 MiB"),
    ("drain_https.ratio_http", ">=", 0.75, "HTTPS drain >= 0.75 of the HTTP drain"),
    ("drain_https.requests_per_handshake", ">=", 100, "no TLS handshake per request (>= 100 per handshake)"),
    ("startup.big.ready_ms", "<=", 100, "READY <= 100 ms with 10 M rows"),
    ("startup.big.rss_mib", "<=", 32, "RSS <= 32 MiB with 10 M rows"),
    ("idle.cpu_ms_per_60s", "<=", 60, "idle <= 60 ms CPU per 60 s"),
    ("cold.ratio_warm", ">=", 0.8, "a backlog written while down drains >= 0.8 of the warm drain"),
    ("hashing.cpu_us_per_token", "<=", 25, "<= 25 us daemon CPU per new token (one per commit)"),
    ("latency.expiry_p99_ms", "<=", 20, "expiry -> request p99 <= 20 ms"),
    ("latency.flag_p99_ms", "<=", 50, "flag -> request p99 <= 50 ms"),
    ("latency.socket_p99_ms", "<=", 10, "socket revoke -> request p99 <= 10 ms"),
    ("storm.rate_vs_drain", ">=", 0.9, "storm rate within 10 % of drain"),
    ("storm.ping_p99_ms", "<=", 10, "ping p99 <= 10 ms during the storm"),
    ("outage.probe_gap_ok", "==", 1, "<= 1 request per backoff interval in the outage"),
    ("outage.recovery_ok", "==", 1, "full rate within one interval of the return"),
]


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# --------------------------------------------------------------------------
# processes: every one we start is in its own session and killed on exit

_procs = []


NICE = 0  # --nice: the priority of everything the benchmark starts


def _set_nice():
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_set_nice, **kw)
    _procs.append(p)
    return p


def kill_group(p, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


def reap(p, timeout=10):
    """Wait for p; kill its group if it does not exit in time."""
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        p.wait()
    # Whatever the group left behind (nginx workers) goes too.
    kill_group(p)
    if p in _procs:
        _procs.remove(p)


def cleanup_all():
    for p in list(_procs):
        if p.poll() is None:
            kill_group(p)
            with contextlib.suppress(Exception):
                p.wait(5)
        else:
            kill_group(p)
        _procs.remove(p)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def wait_until(pred, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise BenchError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# /proc

def proc_cpu_s(pid):
    """utime + stime of the process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_sched_ns(pid):
    """CPU time in ns from /proc/PID/task/*/schedstat (finer than ticks), or None."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def proc_status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def proc_io(pid):
    """{rchar, wchar, syscr, syscw} of /proc/PID/io (bytes and calls of
    read/write-family system calls: SQLite's file I/O and the sockets)."""
    out = {}
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, v = line.split(":")
                out[k] = int(v)
    return out


def system_busy_s():
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / CLK_TCK, sum(v[:8]) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Contention:
    """How much CPU others used while a scenario ran: machine busy time minus
    our own processes' (the bench, the daemon, nginx, wrk). This machine may be
    shared; a busy neighbour explains a slow throughput number."""

    def __init__(self, pids):
        self.pids = pids
        self.start()

    def _ours(self):
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += proc_cpu_s(pid)
        # this Python process and what it reaped
        t = os.times()
        return total + t.user + t.system + t.children_user + t.children_system

    def start(self):
        self.t0 = time.monotonic()
        self.busy0, _ = system_busy_s()
        self.ours0 = self._ours()

    def stop(self):
        dt = time.monotonic() - self.t0
        busy, _ = system_busy_s()
        others = max(0.0, (busy - self.busy0) - (self._ours() - self.ours0))
        return {"others_cores": round(others / dt, 2) if dt > 0 else 0.0, "loadavg": loadavg()}


# --------------------------------------------------------------------------
# nginx

def throwaway_ca(d):
    """A CA and a server certificate for 127.0.0.1 signed by it, in d:
    returns the CA's file (the daemon's ca_file)."""
    def openssl(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("openssl %s failed: %s" % (args[0], r.stderr.strip()[-500:]))
    p = lambda name: os.path.join(d, name)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=revokerd bench CA",
            "-keyout", p("ca.key"), "-out", p("ca.crt"))
    openssl("req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", p("server.key"), "-out", p("server.csr"))
    with open(p("san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", p("san.ext"), "-out", p("server.crt"))
    return p("ca.crt")


class Nginx:
    def __init__(self, workdir, port, workers):
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "body"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "proxy"), exist_ok=True)
        self.port = port
        self.tls_port = free_port()
        self.ca_file = throwaway_ca(self.dir)
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.access = os.path.join(self.dir, "access.log")
        self.tls_log = os.path.join(self.dir, "tls.log")
        with open(os.path.join(HERE, "nginx.conf.in")) as f:
            text = f.read()
        text = text.replace("@DIR@", self.dir).replace("@PORT@", str(port)) \
                   .replace("@TLSPORT@", str(self.tls_port)).replace("@WORKERS@", str(workers))
        with open(self.conf, "w") as f:
            f.write(text)
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = None
        rc = subprocess.run([self.binary, "-t", "-q", "-p", self.dir, "-c", self.conf,
                             "-e", os.path.join(self.dir, "error.log")],
                            capture_output=True, text=True)
        if rc.returncode != 0:
            raise BenchError("nginx -t failed: %s" % rc.stderr.strip())

    @property
    def url(self):
        return "http://127.0.0.1:%d/v2/token/logout" % self.port

    @property
    def https_url(self):
        return "https://127.0.0.1:%d/v2/token/logout" % self.tls_port

    def tls_connections(self, offset):
        """(requests, connections, resumed connections) in the HTTPS log
        since byte offset, once nginx has flushed it (every 100 ms)."""
        time.sleep(0.3)
        conns, resumed, n = set(), set(), 0
        with contextlib.suppress(FileNotFoundError):
            with open(self.tls_log, "rb") as f:
                f.seek(offset)
                for line in f.read().split(b"\n"):
                    parts = line.split(b" ")
                    if len(parts) == 3:
                        n += 1
                        conns.add(parts[1])
                        if parts[2] == b"r":
                            resumed.add(parts[1])
        return n, len(conns), len(resumed)

    def tls_log_size(self):
        try:
            return os.path.getsize(self.tls_log)
        except FileNotFoundError:
            return 0

    def listening(self):
        with socket.socket() as s:
            s.settimeout(0.2)
            try:
                s.connect(("127.0.0.1", self.port))
                return True
            except OSError:
                return False

    def start(self):
        assert self.proc is None
        err = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = spawn([self.binary, "-p", self.dir, "-c", self.conf,
                           "-e", os.path.join(self.dir, "error.log")], stdout=err, stderr=err)
        err.close()
        wait_until(lambda: self.listening() or self.proc.poll() is not None, 10, "nginx to listen")
        if self.proc.poll() is not None:
            raise BenchError("nginx exited with %s; see %s" % (self.proc.returncode, self.dir))
        return time.time()

    def stop(self):
        """Fast shutdown (SIGTERM): connections are closed, the port refuses."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        reap(self.proc)
        self.proc = None

    def log_size(self):
        try:
            return os.path.getsize(self.access)
        except FileNotFoundError:
            return 0

    def requests(self, offset):
        """[(unix time float, token)] logged since byte offset."""
        out = []
        try:
            with open(self.access, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return out
        for line in data.split(b"\n"):
            parts = line.split(b" ")
            if len(parts) >= 3 and parts[1] == b"Bearer":
                out.append((float(parts[0]), parts[2].decode()))
        return out

    def wait_tokens(self, offset, tokens, timeout):
        """{token: first arrival time} once every token in `tokens` was logged
        (nginx flushes its log buffer every 100 ms)."""
        want = set(tokens)
        seen = {}
        pos = offset

        def check():
            nonlocal pos
            size = self.log_size()
            if size > pos:
                with open(self.access, "rb") as f:
                    f.seek(pos)
                    data = f.read(size - pos)
                cut = data.rfind(b"\n") + 1
                pos += cut
                for line in data[:cut].split(b"\n"):
                    parts = line.split(b" ")
                    if len(parts) >= 3 and parts[1] == b"Bearer":
                        t = parts[2].decode()
                        if t in want and t not in seen:
                            seen[t] = float(parts[0])
            return len(seen) == len(want)
        wait_until(check, timeout, "%d token(s) at nginx (%d seen)" % (len(want), len(seen)),
                   interval=0.05)
        return seen


# --------------------------------------------------------------------------
# sd_notify and the control socket

class NotifySocket:
    def __init__(self, path):
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def ready_after(self, t0):
        with self.lock:
            for mono, text in self.messages:
                if mono >= t0 and "READY=1" in text.split("\n"):
                    return mono
        return None

    def close(self):
        self.stopped = True
        self.thread.join(1)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class Ctl:
    """One connection to the control socket: a request line, a reply line."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""

    def call(self, req):
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("control socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------
# revokerd

class CommitCounter:
    """Counts db_commit calls with a perf uprobe (perf stat -e probe); None
    when perf or uprobes are not available here."""

    EVENT = "probe_revokerd:rvbench_commit"

    def __init__(self, binary):
        self.ok = False
        self.perf = shutil.which("perf")
        if not self.perf or os.environ.get("BENCH_NO_PERF"):
            return
        subprocess.run([self.perf, "probe", "-q", "-d", self.EVENT], capture_output=True)
        r = subprocess.run([self.perf, "probe", "-q", "-x", binary, "-a", "rvbench_commit=db_commit"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            log("commits/s not measured: perf probe failed: %s" % r.stderr.strip()[:200])
            return
        r = subprocess.run([self.perf, "stat", "-x,", "-e", self.EVENT, "true"],
                           capture_output=True, text=True)
        self.ok = r.returncode == 0

    def wrap(self, cmd, out):
        if os.environ.get("BENCH_PERF_RECORD"):  # profiling: see --profile
            return [self.perf, "record", "-q", "-e", "cpu-clock", "-F", os.environ.get("BENCH_PERF_FREQ", "4999"), "--call-graph", os.environ.get("BENCH_PERF_CG", "fp"), "-o",
                    os.environ["BENCH_PERF_RECORD"], "--"] + cmd
        return [self.perf, "stat", "-x,", "-e", self.EVENT, "-o", out, "--"] + cmd if self.ok else cmd

    @staticmethod
    def read(out):
        with contextlib.suppress(OSError, ValueError):
            with open(out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and "rvbench_commit" in line:
                        return int(parts[0])
        return None

    def close(self):
        if self.ok:
            subprocess.run([self.perf, "probe", "-q", "-d", self.EVENT], capture_output=True)


class Daemon:
    def __init__(self, bench, name, db_path, config=None, count_commits=False):
        self.bench = bench
        self.dir = os.path.join(bench.workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db_path = db_path
        self.socket = os.path.join(self.dir, "ctl.sock")
        self.conf = os.path.join(self.dir, "revokerd.conf")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.perf_out = os.path.join(self.dir, "commits.txt")
        self.count_commits = count_commits and bench.commits.ok
        mode = bench.mode
        settings = {
            "daemon": {"database": db_path, "socket": self.socket, "log_level": "notice"},
            "logout": {"url": bench.nginx.url, "timeout": "10s", "concurrency": str(CONCURRENCY),
                       "rate_limit": "0", "down_after": "5"},
            "retry": {"base": mode["retry_base"], "max_delay": mode["retry_max"], "max_attempts": "8"},
        }
        for k, v in (config or {}).items():
            sec, key = k.split(".", 1)
            settings[sec][key] = v
        with open(self.conf, "w") as f:
            for sec, items in settings.items():
                f.write("[%s]\n" % sec)
                for k, v in items.items():
                    f.write("%s = %s\n" % (k, v))
        self.proc = None
        self.pid = None

    def start(self):
        """Start and wait for READY=1; returns (t0 monotonic, ready monotonic)."""
        env = dict(os.environ)
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(k, None)
        env["NOTIFY_SOCKET"] = self.bench.notify.path
        cmd = [self.bench.revokerd, "--config", self.conf]
        if self.count_commits:
            cmd = self.bench.commits.wrap(cmd, self.perf_out)
        err = open(self.stderr_path, "ab")
        t0 = time.monotonic()
        self.proc = spawn(cmd, stdout=err, stderr=err, env=env, cwd=self.dir)
        err.close()
        if self.count_commits:
            self.pid = wait_until(self._child_of_perf, 10, "revokerd under perf", interval=0.0005)
            t0 = time.monotonic()  # the daemon's start, not perf's
        else:
            self.pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                raise BenchError("revokerd exited with %s before READY=1: %s"
                                 % (self.proc.returncode, self.stderr()[-2000:]))
            return self.bench.notify.ready_after(t0)
        t_ready = wait_until(ready, 120, "READY=1", interval=0.001)
        return t0, t_ready

    def _child_of_perf(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
        except OSError:
            return None
        for k in kids:
            with contextlib.suppress(OSError):
                if os.path.basename(os.readlink("/proc/%s/exe" % k)) == "revokerd":
                    return int(k)
        return None

    def metrics(self):
        """{name or name{labels}: value} from the socket op metrics."""
        c = Ctl(self.socket)
        try:
            text = c.call({"op": "metrics"})["text"]
        finally:
            c.close()
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.M)}

    def settle(self):
        """Wait for the start-up's one-time work: the first scan; the sweep
        of the whole file that every start asks for (a killed run may have
        left cleared secrets); and the token counts that the first scrape (of
        this wait) starts on the threadpool. Returns the CPU in ms since the
        start."""
        def done():
            m = self.metrics()
            return (m.get("revokerd_checkpoint_sweeps_total", 0) >= 1 and m.get("revokerd_sweep_pending") == 0
                    and 'revokerd_tokens{state="active"}' in m)
        wait_until(done, 120, "the start-up sweep and the first token count", interval=0.05)
        # The counter counts again 5 s later when anything changed since its
        # first count (the start's checkpoint does): settled once the daemon
        # used no CPU for longer than that, 6 s in a row (at most 30 s).
        end, quiet_since, last = time.monotonic() + 30, time.monotonic(), self.sched_ns()
        while time.monotonic() < end and time.monotonic() - quiet_since < 6:
            time.sleep(0.1)
            now = self.sched_ns()
            if now is None or last is None or now - last > 1_000_000:  # 1 ms in 100 ms
                quiet_since = time.monotonic()
            last = now
        return self.cpu_s() * 1000

    def cpu_s(self):
        return proc_cpu_s(self.pid)

    def sched_ns(self):
        return proc_sched_ns(self.pid)

    def hwm_mib(self):
        return proc_status_kib(self.pid, "VmHWM") / 1024

    def rss_mib(self):
        return proc_status_kib(self.pid, "VmRSS") / 1024

    def stop(self):
        """SIGTERM and wait; returns the number of commits if counted."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        reap(self.proc, 30)
        rc = self.proc.returncode
        self.proc = None
        if rc not in (0, None):
            raise BenchError("revokerd exited with %s: %s" % (rc, self.stderr()[-2000:]))
        return CommitCounter.read(self.perf_out) if self.count_commits else None

    def stderr(self):
        with contextlib.suppress(OSError), open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")
        return ""


# --------------------------------------------------------------------------
# databases

def sql_fingerprint():
    h = hashlib.sha256(GEN_VERSION.encode())
    for name in sorted(os.listdir(os.path.join(ROOT, "sql"))):
        if name.endswith(".sql"):
            with open(os.path.join(ROOT, "sql", name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:12]


def connect(path):
    c = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA busy_timeout = 30000")
    return c


def token_sha256(token):
    return None if token is None else hashlib.sha256(str(token).encode()).digest()


def build_base(bench, path, rows):
    """A table of `rows` active tokens: every 10th row (id % 10 == 0) expires
    at FAR_MARKED (the scenarios move those), the others far in the future.
    The schema is the daemon's own: revokerd creates the empty file. Rows are
    inserted in one transaction without the indexes, which are then built
    (sorting once is much faster than a million b-tree inserts). The rows
    are hashed as a running daemon leaves them shortly after they are
    written (scenario `hashing` measures that cost)."""
    tmp = path + ".tmp"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp + suffix)
    t0 = time.monotonic()
    d = Daemon(bench, "schema", tmp)
    d.start()
    d.stop()
    c = connect(tmp)
    c.execute("PRAGMA journal_mode=DELETE")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("PRAGMA cache_size=-1000000")
    c.execute("PRAGMA threads=4")
    c.create_function("token_sha256", 1, token_sha256, deterministic=True)
    indexes = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = 'tokens' AND sql IS NOT NULL").fetchall()
    c.execute("BEGIN")
    for name, _ in indexes:
        c.execute('DROP INDEX "%s"' % name)
    c.execute("""
        INSERT INTO tokens (id, token, subject, expires_at)
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
        SELECT i, printf('%s%08x', lower(hex(randomblob(12))), i), 'user-' || (i % 50000),
               CASE WHEN i % 10 = 0 THEN ?2 ELSE ?3 + i % 86400 END
          FROM s""", (rows, FAR_MARKED, FAR_OTHERS))
    c.execute("UPDATE tokens SET token_sha256 = token_sha256(token)")
    for _, sql in indexes:
        c.execute(sql)
    c.execute("COMMIT")
    c.execute("PRAGMA journal_mode=WAL")
    c.close()
    os.replace(tmp, path)
    log("built %s (%d rows, %.0f MiB) in %.1f s" % (os.path.basename(path), rows,
        os.path.getsize(path) / 2**20, time.monotonic() - t0))


def base_db(bench, rows):
    path = os.path.join(bench.cache, "tokens-%d-%s.db" % (rows, sql_fingerprint()))
    if not os.path.exists(path):
        build_base(bench, path, rows)
    return path


def fresh_copy(bench, rows, name):
    """A private copy of the cached table for one run."""
    src = base_db(bench, rows)
    dst = os.path.join(bench.workdir, name + ".db")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst + suffix)
    subprocess.run(["cp", "--reflink=auto", src, dst], check=True)
    # Write the copy back now: its writeback would otherwise compete with the
    # daemon's own I/O (a 1.5 GB copy made a 40 ms start-up take 200 ms).
    os.sync()
    return dst


def set_expiry(db, expires_at, limit=None, spread=None):
    """Give the marked rows (id % 10 == 0; the first `limit` of them) the
    expiry `expires_at`, or spread them over [expires_at, expires_at + spread)
    seconds. Returns the number of rows."""
    c = connect(db)
    top = "" if limit is None else " AND id <= %d" % (limit * 10)
    if spread:
        n = c.execute("UPDATE tokens SET expires_at = ?1 + (id / 10) %% ?2 WHERE id %% 10 = 0%s"
                      % top, (expires_at, spread)).rowcount
    else:
        n = c.execute("UPDATE tokens SET expires_at = ? WHERE id %% 10 = 0%s" % top,
                      (expires_at,)).rowcount
    c.close()
    return n


class Progress:
    """Watches the audit table from a second connection, cheaply: max(seq)
    is one b-tree descent. Done when `n` final outcomes were committed after
    seq0 (the final rows are then counted exactly)."""

    FINAL = "('revoked', 'already_invalid', 'rejected', 'gave_up')"

    def __init__(self, db):
        self.c = connect(db)
        self.seq0 = self.max_seq()

    def max_seq(self):
        return self.c.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0]

    def finals(self):
        return self.c.execute("SELECT count(*) FROM audit WHERE seq > ? AND event IN %s"
                              % self.FINAL, (self.seq0,)).fetchone()[0]

    def wait(self, n, rows_per_token, timeout, interval=0.005):
        """Poll until n final outcomes are committed; return the monotonic
        time it was seen."""
        deadline = time.monotonic() + timeout
        last_exact = time.monotonic()
        while True:
            now = time.monotonic()
            # The exact count reads every new audit row: only when the cheap
            # one says done, or now and then (retries add rows).
            if self.max_seq() - self.seq0 >= n * rows_per_token or now - last_exact > 5:
                last_exact = now
                if self.finals() >= n:
                    return now
            if now > deadline:
                raise BenchError("timed out: %d of %d outcomes committed" % (self.finals(), n))
            time.sleep(interval)

    def events(self, since_seq=None):
        return self.c.execute("SELECT seq, at, token_id, event FROM audit WHERE seq > ? ORDER BY seq",
                              (self.seq0 if since_seq is None else since_seq,)).fetchall()

    def close(self):
        self.c.close()


def pct(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(math.ceil(p / 100.0 * len(s))) - 1))
    return s[k]


# --------------------------------------------------------------------------
# scenarios: each returns a dict of numbers for one repetition

def write_cold_backlog(db, n):
    """n new rows, due an hour ago, written as an application would while
    the daemon is down: not hashed yet, each to be noticed, hashed and
    promoted by the next start."""
    c = connect(db)
    past = int(time.time()) - 3600
    with c:
        c.execute("BEGIN")
        c.executemany("INSERT INTO tokens (token, subject, expires_at) VALUES (?, ?, ?)",
                      (("cold-%s" % os.urandom(16).hex(), "user-%d" % (i % 50000), past) for i in range(n)))
    c.close()
    return n


def scenario_drain(b, https=False, cold=False):
    m = b.mode
    db = fresh_copy(b, m["rows"], "drain")
    n = write_cold_backlog(db, m["due"]) if cold else set_expiry(db, int(time.time()) - 3600, limit=m["due"])
    prog = Progress(db)
    config = {"logout.url": b.nginx.https_url, "logout.ca_file": b.nginx.ca_file} if https else None
    tls0 = b.nginx.tls_log_size()
    d = Daemon(b, "drain", db, config=config, count_commits=True)
    cont = Contention(lambda: [p for p in (d.pid, ) if p] + b.nginx_pids())
    t0, t_ready = d.start()
    t_end = prog.wait(n, 2, timeout=600)
    cpu = d.cpu_s()
    hwm = d.hwm_mib()
    io = proc_io(d.pid)
    c = cont.stop()
    commits = d.stop()
    prog.close()
    dur = t_end - t0
    r = {"n": n, "seconds": dur, "rate": n / dur, "cpu_us_per_rev": cpu * 1e6 / n,
         "peak_rss_mib": hwm, "ready_ms": (t_ready - t0) * 1000,
         "written_kib_per_rev": io.get("wchar", 0) / 1024 / n, "read_kib_per_rev": io.get("rchar", 0) / 1024 / n,
         "syscalls_per_rev": (io.get("syscr", 0) + io.get("syscw", 0)) / n, **c}
    if commits is not None:
        r["commits_per_s"] = commits / dur
        r["outcomes_per_commit"] = 2 * n / commits if commits else None
    if https:
        reqs, conns, resumed = b.nginx.tls_connections(tls0)
        r.update({"tls_requests": reqs, "tls_connections": conns, "tls_resumed": resumed,
                  "requests_per_handshake": reqs / conns if conns else None})
    return r


def scenario_drain_https(b):
    """The drain over HTTPS (TLS 1.3, the throwaway CA as ca_file)."""
    return scenario_drain(b, https=True)


def scenario_cold(b):
    """The drain of a backlog written while the daemon was down (new,
    unhashed rows), against the warm drain of rows it had hashed before."""
    return scenario_drain(b, cold=True)


def scenario_startup(b, rows):
    db = fresh_copy(b, rows, "startup")
    d = Daemon(b, "startup", db)
    # Page cache warm (just copied): the cost measured is the daemon's.
    t0, t_ready = d.start()
    time.sleep(0.2)
    rss = d.rss_mib()
    hwm = d.hwm_mib()
    d.stop()
    return {"rows": rows, "ready_ms": (t_ready - t0) * 1000, "rss_mib": rss, "peak_rss_mib": hwm,
            "file_mib": os.path.getsize(db) / 2**20}


def scenario_idle(b):
    m = b.mode
    db = fresh_copy(b, m["rows"], "idle")
    d = Daemon(b, "idle", db)
    d.start()
    start_cpu_ms = d.settle()
    ns0, cpu0, t0 = d.sched_ns(), d.cpu_s(), time.monotonic()
    time.sleep(m["idle_s"])
    ns1, cpu1, t1 = d.sched_ns(), d.cpu_s(), time.monotonic()
    d.stop()
    used_ms = (ns1 - ns0) / 1e6 if ns0 is not None and ns1 is not None else (cpu1 - cpu0) * 1000
    return {"seconds": t1 - t0, "cpu_ms": used_ms, "cpu_ms_per_60s": used_ms * 60.0 / (t1 - t0),
            "start_cpu_ms": start_cpu_ms}


def unhashed(c):
    return c.execute("SELECT count(*) FROM tokens INDEXED BY tokens_unhashed "
                     "WHERE token_sha256 IS NULL AND token IS NOT NULL").fetchone()[0]


NEW_TOKEN_RATE = 2000   # tokens an application writes per second, one per transaction


def write_new_tokens(b, prehashed):
    """One run of the hashing scenario: the daemon's CPU per new token and
    the time from the last write until every new row is hashed. prehashed:
    the writer stores token_sha256 itself, so the daemon only notices the
    commits (the baseline that hashing adds to)."""
    m = b.mode
    db = fresh_copy(b, m["rows"], "hashing")
    d = Daemon(b, "hashing", db)
    d.start()
    d.settle()
    app = connect(db)
    n = m["new_tokens"]
    ns0, cpu0, t0 = d.sched_ns(), d.cpu_s(), time.monotonic()
    for i in range(n):
        pause = t0 + i / NEW_TOKEN_RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        token = "new-%s" % os.urandom(16).hex()
        app.execute("INSERT INTO tokens (token, subject, expires_at, token_sha256) VALUES (?, ?, ?, ?)",
                    (token, "user-%d" % (i % 50000), FAR_OTHERS, token_sha256(token) if prehashed else None))
    t_written = time.monotonic()
    wait_until(lambda: unhashed(app) == 0, 120, "new tokens hashed", interval=0.005)
    t_hashed = time.monotonic()
    ns1, cpu1 = d.sched_ns(), d.cpu_s()
    app.create_function("token_sha256", 1, token_sha256, deterministic=True)
    wrong = app.execute("SELECT count(*) FROM tokens WHERE id > ? AND "
                        "token_sha256 IS NOT token_sha256(token)", (m["rows"],)).fetchone()[0]
    app.close()
    d.stop()
    if wrong:
        raise BenchError("%d new tokens hashed wrongly" % wrong)
    used_s = (ns1 - ns0) / 1e9 if ns0 is not None and ns1 is not None else cpu1 - cpu0
    return n / (t_written - t0), used_s * 1e6 / n, (t_hashed - t_written) * 1000


def scenario_hashing(b):
    """An application writes new tokens, one per transaction (a login each),
    NEW_TOKEN_RATE a second, into the base table while the daemon runs: once
    as they come, once with the hash already stored (the cost of noticing
    the commits alone)."""
    rate, cpu, lag = write_new_tokens(b, prehashed=False)
    _, cpu_notice, _ = write_new_tokens(b, prehashed=True)
    return {"n": b.mode["new_tokens"], "write_rate": rate, "cpu_us_per_token": cpu,
            "notice_us_per_token": cpu_notice, "hash_us_per_token": cpu - cpu_notice, "lag_ms": lag}


def scenario_latency(b):
    m = b.mode
    db = fresh_copy(b, m["rows"], "latency")
    d = Daemon(b, "latency", db)
    d.start()
    app = connect(db)
    res = {}

    # 1. expiry -> request: new tokens expiring over the window, a few per second.
    window, count = m["expiry_window_s"], m["expiry_tokens"]
    s0 = int(time.time()) + m["lead_s"]
    tokens = {}
    app.execute("BEGIN IMMEDIATE")
    for i in range(count):
        tok = "exp-%d-%d-%s" % (s0, i, os.urandom(6).hex())
        exp = s0 + (i * window) // count
        app.execute("INSERT INTO tokens (token, subject, expires_at) VALUES (?, 'latency', ?)", (tok, exp))
        tokens[tok] = exp
    app.execute("COMMIT")
    off = b.nginx.log_size()
    seen = b.nginx.wait_tokens(off, tokens, window + 30)
    lat = [(seen[t] - e) * 1000 for t, e in tokens.items()]
    res.update(expiry_p50_ms=pct(lat, 50), expiry_p99_ms=pct(lat, 99), expiry_max_ms=max(lat))
    # Where that time goes: the due second -> the row marked due (due_at, the
    # daemon's clock) -> the request at nginx.
    due = dict(app.execute("SELECT token_sha256, due_at FROM tokens WHERE subject = 'latency'").fetchall())
    marked = [(due[hashlib.sha256(t.encode()).digest()] - e * 1000) for t, e in tokens.items()
              if due.get(hashlib.sha256(t.encode()).digest())]
    sent = [seen[t] * 1000 - due[hashlib.sha256(t.encode()).digest()] for t in tokens
            if due.get(hashlib.sha256(t.encode()).digest())]
    res.update(expiry_to_due_p50_ms=pct(marked, 50), due_to_request_p50_ms=pct(sent, 50))

    # 2. flag committed by another process -> request.
    rows = app.execute("SELECT id, token FROM tokens WHERE id %% 10 = 3 ORDER BY id LIMIT %d"
                       % m["flags"]).fetchall()
    off = b.nginx.log_size()
    committed = {}
    for rid, tok in rows:
        app.execute("UPDATE tokens SET flagged = 1, flag_reason = 'bench' WHERE id = ?", (rid,))
        committed[tok] = time.time()
        time.sleep(m["flag_gap_s"])
    seen = b.nginx.wait_tokens(off, committed, 30)
    lat = [(seen[t] - c) * 1000 for t, c in committed.items()]
    res.update(flag_p50_ms=pct(lat, 50), flag_p99_ms=pct(lat, 99), flag_max_ms=max(lat))

    # 3. socket revoke -> request (a token already in the table, by its secret).
    rows = app.execute("SELECT token FROM tokens WHERE id %% 10 = 7 ORDER BY id LIMIT %d"
                       % m["socket_revokes"]).fetchall()
    ctl = Ctl(d.socket)
    off = b.nginx.log_size()
    sent = {}
    for (tok,) in rows:
        t = time.time()
        reply = ctl.call({"op": "revoke", "token": tok})
        if not reply.get("ok"):
            raise BenchError("revoke refused: %r" % reply)
        sent[tok] = t
        time.sleep(m["socket_gap_s"])
    ctl.close()
    seen = b.nginx.wait_tokens(off, sent, 30)
    lat = [(seen[t] - s) * 1000 for t, s in sent.items()]
    res.update(socket_p50_ms=pct(lat, 50), socket_p99_ms=pct(lat, 99), socket_max_ms=max(lat))
    app.close()
    d.stop()
    # nginx's $msec has millisecond resolution: a latency below 1 ms reads as 0 or 1.
    return res


class Pinger(threading.Thread):
    """{"op":"ping"} every 10 ms on one connection; records (send time, rtt)."""

    def __init__(self, path, period=0.01):
        super().__init__(daemon=True)
        self.ctl = Ctl(path)
        self.period = period
        self.samples = []
        self.stop_flag = False
        self.error = None

    def run(self):
        # Real-time priority (root only): the round trip then measures the
        # daemon's loop, not this thread waiting for a CPU on a busy machine.
        with contextlib.suppress(OSError, AttributeError, PermissionError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        nxt = time.monotonic()
        try:
            while not self.stop_flag:
                t = time.monotonic()
                reply = self.ctl.call({"op": "ping"})
                rtt = time.monotonic() - t
                if not reply.get("ok"):
                    raise BenchError("ping refused: %r" % reply)
                self.samples.append((t, rtt))
                nxt += self.period
                delay = nxt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    nxt = time.monotonic()
        except Exception as e:  # reported by the scenario
            self.error = e
        finally:
            self.ctl.close()


def scenario_storm(b):
    m = b.mode
    # Judged against a drain run right before it: on a shared host a slow
    # minute slows both alike, and the drain scenario may have run long ago.
    drain_rate = scenario_drain(b)["rate"]
    db = fresh_copy(b, m["rows"], "storm")
    # The storm second: after the copy, the start and a settled loop.
    t_storm = int(time.time()) + 3 * m["lead_s"]
    n = set_expiry(db, t_storm, limit=m["storm"])
    prog = Progress(db)
    d = Daemon(b, "storm", db)
    cont = Contention(lambda: [p for p in (d.pid, ) if p] + b.nginx_pids())
    d.start()
    if time.time() > t_storm - 0.3:
        raise BenchError("storm set-up took too long")
    pinger = Pinger(d.socket)
    pinger.start()
    mono_storm = time.monotonic() + (t_storm - time.time())
    t_end = prog.wait(n, 2, timeout=600)
    pinger.stop_flag = True
    pinger.join(5)
    c = cont.stop()
    d.stop()
    prog.close()
    if pinger.error:
        raise BenchError("pinger: %s" % pinger.error)
    rtts = [rtt * 1000 for t, rtt in pinger.samples if mono_storm <= t <= t_end]
    dur = t_end - mono_storm
    return {"n": n, "seconds": dur, "rate": n / dur, "drain_rate_before": drain_rate,
            "rate_vs_drain": n / dur / drain_rate, "pings": len(rtts),
            "ping_p50_ms": pct(rtts, 50), "ping_p99_ms": pct(rtts, 99), "ping_max_ms": max(rtts), **c}


def parse_duration_ms(text):
    units = {"ms": 1, "s": 1000, "min": 60000, "h": 3600000}
    mm = re.fullmatch(r"(\d+)(ms|s|min|h)", text)
    return int(mm.group(1)) * units[mm.group(2)]


def scenario_outage(b):
    m = b.mode
    base_ms, max_ms = parse_duration_ms(m["retry_base"]), parse_duration_ms(m["retry_max"])
    db = fresh_copy(b, m["rows"], "outage")
    d = Daemon(b, "outage", db)
    d.start()
    prog = Progress(db)
    outage = m["outage_s"]
    t_down = time.time() + 1.0
    # The tokens fall due during the outage, evenly (whole seconds: expires_at).
    first = int(math.ceil(t_down))
    span = max(1, int(outage) - 1)
    n = set_expiry(db, first, limit=m["outage_tokens"], spread=span)
    time.sleep(max(0.0, t_down - time.time()))
    b.nginx.stop()
    t_down = time.time()
    time.sleep(max(0.0, t_down + outage - time.time()))
    t_return = b.nginx.start()
    mono_return = time.monotonic()
    cpu0, io0 = d.cpu_s(), proc_io(d.pid)
    t_end = prog.wait(n, 2, timeout=600 + max_ms / 1000)
    cpu1, io1 = d.cpu_s(), proc_io(d.pid)
    events = prog.events()
    d.stop()
    prog.close()
    # Each request gives one outcome row: a failed one a `retry`.
    failed = sorted(at / 1000.0 for _, at, _, ev in events if ev == "retry")
    during = [t for t in failed if t_down <= t <= t_return]
    after = [t for t in failed if t > t_return]
    ok = sorted(at / 1000.0 for _, at, _, ev in events if ev == "revoked")
    first_ok = ok[0] if ok else None
    # The first failures come together (what was in flight when it broke,
    # down_after of them turn it DOWN); then one probe per interval.
    burst = [t for t in during if during and t - during[0] < 0.05]
    burst_max = CONCURRENCY + 5 - 1  # in flight, refilled until down_after (5) failed
    probes = during[len(burst):]
    # Backoff runs from the failure that turned it DOWN (the down_after-th).
    start = [during[4]] if len(during) >= 5 else burst[-1:]
    gaps = [b2 - a for a, b2 in zip(start + probes, probes)]
    min_gap_ms = min(gaps) * 1000 if gaps else None
    in_force_ms = min(max_ms, base_ms * 2 ** len(probes))   # the interval after the last probe
    wait_ms = (first_ok - t_return) * 1000 if first_ok else None
    post_rate = n / (t_end - mono_return - (wait_ms or 0) / 1000) if first_ok else None
    probe_gap_ok = len(burst) <= burst_max and (min_gap_ms is None or min_gap_ms >= base_ms - 2)
    return {"n": n, "outage_s": t_return - t_down, "requests_during": len(during), "burst": len(burst),
            "probes": len(probes), "min_probe_gap_ms": min_gap_ms, "failed_after_return": len(after),
            "interval_in_force_ms": in_force_ms, "first_ok_after_return_ms": wait_ms,
            "return_to_last_s": t_end - mono_return, "post_return_rate": post_rate,
            # What the revocations after the return cost, less noisy than their rate.
            "post_cpu_us_per_rev": (cpu1 - cpu0) * 1e6 / n,
            "post_written_kib_per_rev": (io1.get("wchar", 0) - io0.get("wchar", 0)) / 1024 / n,
            "probe_gap_ok": int(probe_gap_ok),
            "_recovery_wait_ok": int(wait_ms is not None and wait_ms <= in_force_ms + 100)}


def scenario_reference(b):
    """The in-run reference (tests/bench/reference.c): the same due rows of a
    copy of the same table, the same nginx and concurrency, the least durable
    recording (one row update and one audit row per outcome, 100 per
    commit). Timed from its start to its exit, as the drain is from the
    daemon's start to its last outcome."""
    m = b.mode
    db = fresh_copy(b, m["rows"], "reference")
    n = set_expiry(db, int(time.time()) - 3600, limit=m["due"])
    cont = Contention(b.nginx_pids)
    t0 = time.monotonic()
    p = spawn([b.reference, db, b.nginx.url, str(CONCURRENCY)], stdout=subprocess.PIPE,
              stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=600)
    dur = time.monotonic() - t0
    reap(p)
    c = cont.stop()
    if p.returncode != 0:
        raise BenchError("the reference failed: %s" % err.decode()[-500:])
    r = json.loads(out)
    if r["revoked"] != n:
        raise BenchError("the reference revoked %d of %d due rows" % (r["revoked"], n))
    return {"n": n, "seconds": dur, "rate": n / dur, "cpu_us_per_rev": r["cpu_s"] * 1e6 / n, **c}


def scenario_wrk(b):
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    dur = b.mode["wrk_s"]
    cmd = [wrk, "-t2", "-c%d" % CONCURRENCY, "-d%ds" % dur, "--latency", "-s",
           os.path.join(HERE, "wrk-tokens.lua"), b.nginx.url]
    cont = Contention(b.nginx_pids)
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = p.communicate(timeout=dur + 30)
    reap(p)
    c = cont.stop()
    mm = re.search(r"Requests/sec:\s+([\d.]+)", out.decode())
    if p.returncode != 0 or not mm:
        raise BenchError("wrk failed: %s" % out.decode()[-500:])
    lat = re.search(r"99%\s+([\d.]+)(us|ms|s)", out.decode())
    p99 = None
    if lat:
        p99 = float(lat.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[lat.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.decode())
    if non2xx:
        raise BenchError("wrk got %s non-2xx answers" % non2xx.group(1))
    return {"rate": float(mm.group(1)), "p99_ms": p99, **c}


def profile_drain(b):
    """One more drain with revokerd under perf record (cpu-clock, DWARF call
    graphs: Debian's libraries have no frame pointers), then cpu_profile.py's
    breakdown. None when perf cannot sample here."""
    if not b.commits.perf:
        log("no perf: profile skipped")
        return None
    data = os.path.join(b.out, "drain.perf.data")
    os.environ["BENCH_PERF_RECORD"] = data
    os.environ.setdefault("BENCH_PERF_FREQ", "499")
    os.environ.setdefault("BENCH_PERF_CG", "dwarf")
    ok = b.commits.ok
    b.commits.ok = True  # Daemon wraps the command when counting commits
    try:
        log("drain under perf record")
        r = scenario_drain(b)
    finally:
        b.commits.ok = ok
        del os.environ["BENCH_PERF_RECORD"]
    sys.path.insert(0, HERE)
    import cpu_profile as prof  # tests/bench/cpu_profile.py
    with open(os.path.join(b.out, "profile.txt"), "w") as f:
        rep = prof.report(data, f)
    with open(os.path.join(b.out, "profile.txt")) as f:
        sys.stdout.write(f.read() + "\n")
    rep["drain_under_perf"] = {k: r[k] for k in ("rate", "cpu_us_per_rev")}
    return rep


# --------------------------------------------------------------------------
# the run

class Bench:
    def __init__(self, args):
        self.args = args
        self.mode = dict(MODES["quick" if args.quick else "normal"])
        if args.reps:
            self.mode["reps"] = args.reps
        self.revokerd = os.path.abspath(args.revokerd)
        self.reference = os.path.abspath(args.reference) if args.reference else None
        self.out = os.path.abspath(args.out)
        self.cache = os.path.abspath(args.cache or os.path.join(self.out, "cache"))
        os.makedirs(self.out, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        # Short paths: a UNIX socket path must fit in 108 bytes.
        self.workdir = tempfile.mkdtemp(prefix="rvbench-", dir="/tmp")
        self.notify = NotifySocket(os.path.join(self.workdir, "notify"))
        self.nginx = Nginx(self.workdir, args.port or free_port(), args.nginx_workers)
        self.commits = CommitCounter(self.revokerd)
        self.results = {}
        self.profile = None

    def nginx_pids(self):
        if not self.nginx.proc:
            return []
        pids = [self.nginx.proc.pid]
        with contextlib.suppress(OSError):
            with open("/proc/%d/task/%d/children" % (pids[0], pids[0])) as f:
                pids += [int(x) for x in f.read().split()]
        return pids

    def close(self):
        self.nginx.stop()
        self.notify.close()
        self.commits.close()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            log("kept %s" % self.workdir)

    def repeat(self, name, fn, *a):
        runs = []
        for i in range(self.mode["reps"]):
            log("%s %d/%d" % (name, i + 1, self.mode["reps"]))
            r = fn(self, *a)
            if r is None:
                return None
            log("  " + ", ".join("%s=%s" % (k, fmt(v)) for k, v in r.items()))
            runs.append(r)
        return runs

    def run(self):
        only = set(self.args.only.split(",")) if self.args.only else None

        def want(s):
            return only is None or s in only
        self.nginx.start()
        if want("wrk"):
            self.results["wrk"] = self.repeat("wrk", scenario_wrk)
        if want("drain"):
            # Alternating with the reference, so that a slow phase of a shared
            # host weighs on both sides of each ratio.
            pairs = [("drain", scenario_drain)] + ([("reference", scenario_reference)] if self.reference else [])
            if want("https"):
                pairs.append(("drain_https", scenario_drain_https))
            if want("cold"):
                pairs.append(("cold", scenario_cold))
            for name, _ in pairs:
                self.results[name] = []
            for i in range(self.mode["reps"]):
                for name, fn in pairs:
                    log("%s %d/%d" % (name, i + 1, self.mode["reps"]))
                    r = fn(self)
                    log("  " + ", ".join("%s=%s" % (k, fmt(v)) for k, v in r.items()))
                    self.results[name].append(r)
        if want("startup"):
            self.results["startup"] = self.repeat("startup", scenario_startup, self.mode["rows"])
            if self.args.big:
                self.results["startup.big"] = self.repeat("startup 10M", scenario_startup,
                                                          self.mode["big_rows"])
        if want("idle"):
            self.results["idle"] = self.repeat("idle", scenario_idle)
        if want("hashing"):
            self.results["hashing"] = self.repeat("hashing", scenario_hashing)
        if want("latency"):
            self.results["latency"] = self.repeat("latency", scenario_latency)
        if want("storm"):
            self.results["storm"] = self.repeat("storm", scenario_storm)
        if want("outage"):
            self.results["outage"] = self.repeat("outage", scenario_outage)
        if self.args.profile:
            self.profile = profile_drain(self)


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 100:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.2f" % v
    return str(v)


def summarize(results):
    """{scenario: {metric: {median, min, max}}} over the repetitions, plus
    derived ratios."""
    s = {}
    for name, runs in results.items():
        if not runs:
            continue
        keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
        s[name] = {}
        for k in keys:
            vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            if vals:
                s[name][k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    wrk = s.get("wrk", {}).get("rate")
    drain = s.get("drain", {}).get("rate")
    if wrk and drain:
        s["drain"]["ratio_wrk"] = {k: drain[k] / wrk["median"] for k in ("median", "min", "max")}
    ref = results.get("reference")
    if ref and results.get("drain") and len(ref) == len(results["drain"]):
        # Per pair (each drain with the reference run right after it).
        rate = [d["rate"] / r["rate"] for d, r in zip(results["drain"], ref)]
        cpu = [d["cpu_us_per_rev"] / r["cpu_us_per_rev"] for d, r in zip(results["drain"], ref)]
        s["drain"]["ratio_reference"] = {"median": statistics.median(rate), "min": min(rate), "max": max(rate)}
        s["drain"]["cpu_ratio_reference"] = {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)}
    https = results.get("drain_https")
    if https and results.get("drain") and len(https) == len(results["drain"]):
        rate = [h["rate"] / d["rate"] for d, h in zip(results["drain"], https)]
        cpu = [h["cpu_us_per_rev"] / d["cpu_us_per_rev"] for d, h in zip(results["drain"], https)]
        s["drain_https"]["ratio_http"] = {"median": statistics.median(rate), "min": min(rate), "max": max(rate)}
        s["drain_https"]["cpu_ratio_http"] = {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)}
    cold = results.get("cold")
    if cold and results.get("drain") and len(cold) == len(results["drain"]):
        rate = [c["rate"] / d["rate"] for d, c in zip(results["drain"], cold)]
        s["cold"]["ratio_warm"] = {"median": statistics.median(rate), "min": min(rate), "max": max(rate)}
    out = s.get("outage")
    if out:
        # Full rate within one interval: the first request after the return
        # succeeds within the interval in force, and the rest goes at full rate.
        runs = results["outage"]
        ok = [r["_recovery_wait_ok"] and r["failed_after_return"] == 0 and
              (not drain or (r["post_return_rate"] or 0) >= 0.9 * min(drain["median"], r["n"] / 0.5))
              for r in runs]
        out["recovery_ok"] = {"median": int(all(ok)), "min": int(all(ok)), "max": int(any(ok))}
        out["probe_gap_ok"] = {"median": int(all(r["probe_gap_ok"] for r in runs)),
                               "min": min(r["probe_gap_ok"] for r in runs),
                               "max": max(r["probe_gap_ok"] for r in runs)}
        out.pop("_recovery_wait_ok", None)
    return s


def lookup(summary, key):
    scen, metric = key.rsplit(".", 1)
    return summary.get(scen, {}).get(metric)


def judge(summary):
    out = []
    for key, op, bound, text in TARGETS:
        v = lookup(summary, key)
        if v is None:
            out.append({"key": key, "target": text, "value": None, "status": "not run"})
            continue
        m = v["median"]
        met = {">=": m >= bound, "<=": m <= bound, "==": m == bound}[op]
        # The worst repetition too: a target met by the median only is flagged.
        worst = v["min"] if op == ">=" else v["max"]
        worst_met = {">=": worst >= bound, "<=": worst <= bound, "==": worst == bound}[op]
        out.append({"key": key, "target": text, "value": m, "worst": worst,
                    "status": "met" if met and worst_met else ("met (median)" if met else "MISSED")})
    return out


ROWS = [
    # (title, scenario, metric, unit)
    ("wrk ceiling (same nginx, c=16)", "wrk", "rate", "req/s"),
    ("drain: ratio to the reference", "drain", "ratio_reference", ""),
    ("drain: CPU ratio to the reference", "drain", "cpu_ratio_reference", ""),
    ("drain: ratio to wrk", "drain", "ratio_wrk", ""),
    ("drain: revocations/s", "drain", "rate", "/s"),
    ("reference: revocations/s", "reference", "rate", "/s"),
    ("reference: CPU per revocation", "reference", "cpu_us_per_rev", "us"),
    ("drain: CPU per revocation", "drain", "cpu_us_per_rev", "us"),
    ("drain: peak RSS", "drain", "peak_rss_mib", "MiB"),
    ("drain: commits/s", "drain", "commits_per_s", "/s"),
    ("drain: audit rows per commit", "drain", "outcomes_per_commit", ""),
    ("drain: bytes written per revocation", "drain", "written_kib_per_rev", "KiB"),
    ("drain: bytes read per revocation", "drain", "read_kib_per_rev", "KiB"),
    ("drain: read+write calls per rev.", "drain", "syscalls_per_rev", ""),
    ("drain: others' CPU meanwhile", "drain", "others_cores", "cores"),
    ("https drain: ratio to the HTTP drain", "drain_https", "ratio_http", ""),
    ("https drain: CPU ratio to HTTP", "drain_https", "cpu_ratio_http", ""),
    ("https drain: revocations/s", "drain_https", "rate", "/s"),
    ("https drain: CPU per revocation", "drain_https", "cpu_us_per_rev", "us"),
    ("https drain: TLS connections", "drain_https", "tls_connections", ""),
    ("https drain: requests per handshake", "drain_https", "requests_per_handshake", ""),
    ("cold backlog: ratio to the warm drain", "cold", "ratio_warm", ""),
    ("cold backlog: revocations/s", "cold", "rate", "/s"),
    ("cold backlog: CPU per revocation", "cold", "cpu_us_per_rev", "us"),
    ("start-up: READY, base table", "startup", "ready_ms", "ms"),
    ("start-up: RSS, base table", "startup", "rss_mib", "MiB"),
    ("start-up: READY, big table", "startup.big", "ready_ms", "ms"),
    ("start-up: RSS, big table", "startup.big", "rss_mib", "MiB"),
    ("idle: CPU per 60 s", "idle", "cpu_ms_per_60s", "ms"),
    ("  the start (scan, sweep, count)", "idle", "start_cpu_ms", "ms"),
    ("hashing: new tokens written/s", "hashing", "write_rate", "/s"),
    ("hashing: daemon CPU per new token", "hashing", "cpu_us_per_token", "us"),
    ("  noticing the commit (pre-hashed)", "hashing", "notice_us_per_token", "us"),
    ("  hashing it (the difference)", "hashing", "hash_us_per_token", "us"),
    ("hashing: last write -> all hashed", "hashing", "lag_ms", "ms"),
    ("latency: expiry p50", "latency", "expiry_p50_ms", "ms"),
    ("latency: expiry p99", "latency", "expiry_p99_ms", "ms"),
    ("  expiry -> marked due, p50", "latency", "expiry_to_due_p50_ms", "ms"),
    ("  marked due -> request, p50", "latency", "due_to_request_p50_ms", "ms"),
    ("latency: flag p50", "latency", "flag_p50_ms", "ms"),
    ("latency: flag p99", "latency", "flag_p99_ms", "ms"),
    ("latency: socket revoke p50", "latency", "socket_p50_ms", "ms"),
    ("latency: socket revoke p99", "latency", "socket_p99_ms", "ms"),
    ("storm: revocations/s", "storm", "rate", "/s"),
    ("storm: drain right before it", "storm", "drain_rate_before", "/s"),
    ("storm: rate / drain rate", "storm", "rate_vs_drain", ""),
    ("storm: ping p50", "storm", "ping_p50_ms", "ms"),
    ("storm: ping p99", "storm", "ping_p99_ms", "ms"),
    ("storm: others' CPU meanwhile", "storm", "others_cores", "cores"),
    ("outage: requests during outage", "outage", "requests_during", ""),
    ("outage: smallest probe gap", "outage", "min_probe_gap_ms", "ms"),
    ("outage: return -> first revocation", "outage", "first_ok_after_return_ms", "ms"),
    ("outage: return -> last revocation", "outage", "return_to_last_s", "s"),
    ("outage: rate after return", "outage", "post_return_rate", "/s"),
    ("outage: CPU per revocation after", "outage", "post_cpu_us_per_rev", "us"),
    ("outage: written per revocation after", "outage", "post_written_kib_per_rev", "KiB"),
]

TARGET_OF = {
    "drain.rate": "drain.rate", "drain.ratio_wrk": "drain.ratio_wrk",
    "drain_https.ratio_http": "drain_https.ratio_http",
    "drain_https.requests_per_handshake": "drain_https.requests_per_handshake",
    "drain.ratio_reference": "drain.ratio_reference", "drain.cpu_ratio_reference": "drain.cpu_ratio_reference",
    "drain.cpu_us_per_rev": "drain.cpu_us_per_rev", "drain.peak_rss_mib": "drain.peak_rss_mib",
    "startup.big.ready_ms": "startup.big.ready_ms", "startup.big.rss_mib": "startup.big.rss_mib",
    "idle.cpu_ms_per_60s": "idle.cpu_ms_per_60s", "latency.expiry_p99_ms": "latency.expiry_p99_ms",
    "latency.flag_p99_ms": "latency.flag_p99_ms", "latency.socket_p99_ms": "latency.socket_p99_ms",
    "storm.rate_vs_drain": "storm.rate_vs_drain", "storm.ping_p99_ms": "storm.ping_p99_ms",
    "outage.min_probe_gap_ms": "outage.probe_gap_ok",
    "outage.first_ok_after_return_ms": "outage.recovery_ok",
    "cold.ratio_warm": "cold.ratio_warm", "hashing.cpu_us_per_token": "hashing.cpu_us_per_token",
}


def table(summary, verdicts, mode_name, reps, mode=None):
    by_key = {v["key"]: v for v in verdicts}
    lines = []
    if mode:
        lines.append("tables: base %d rows (drain %d due, storm %d), big %d rows (--big); idle %g s; "
                     "outage %g s with %d tokens" % (mode["rows"], mode["due"], mode["storm"], mode["big_rows"],
                                                    mode["idle_s"], mode["outage_s"], mode["outage_tokens"]))
    head = "%-36s %12s %12s %12s  %-6s %s" % ("metric (%s, %d run%s)" % (mode_name, reps, "s" * (reps > 1)),
                                             "median", "min", "max", "unit", "target")
    lines.append(head)
    lines.append("-" * len(head))
    for title, scen, metric, unit in ROWS:
        v = summary.get(scen, {}).get(metric)
        if v is None:
            continue
        tgt = ""
        key = TARGET_OF.get("%s.%s" % (scen, metric))
        if key and key in by_key:
            t = by_key[key]
            tgt = "%s: %s" % (t["target"], t["status"])
        lines.append("%-36s %12s %12s %12s  %-6s %s" % (title, fmt(v["median"]), fmt(v["min"]),
                                                        fmt(v["max"]), unit, tgt))
    notrun = [v for v in verdicts if v["status"] == "not run"]
    if notrun:
        lines.append("not run: " + "; ".join(v["target"] for v in notrun))
    met = sum(1 for v in verdicts if v["status"].startswith("met"))
    lines.append("targets: %d met, %d missed, %d not run" % (
        met, sum(1 for v in verdicts if v["status"] == "MISSED"), len(notrun)))
    return "\n".join(lines)


def chart(summary, path):
    """Two panels: throughput (wrk, drain, storm, after an outage) and
    latencies (p50 and p99) with min-max bars, as a PNG through gnuplot."""
    gp = shutil.which("gnuplot")
    if not gp:
        log("no gnuplot: chart skipped")
        return False
    work = tempfile.mkdtemp(prefix="rvchart-", dir="/tmp")
    try:
        thr = [("wrk", "wrk", "rate"), ("drain", "drain", "rate"), ("storm", "storm", "rate"),
               ("after outage", "outage", "post_return_rate")]
        with open(os.path.join(work, "thr.dat"), "w") as f:
            for i, (label, s, k) in enumerate(thr):
                v = summary.get(s, {}).get(k)
                if v:
                    f.write('%d "%s" %g %g %g\n' % (i, label, v["median"], v["min"], v["max"]))
        lat = [("expiry", "latency", "expiry"), ("flag", "latency", "flag"),
               ("socket revoke", "latency", "socket"), ("ping in storm", "storm", "ping")]
        with open(os.path.join(work, "lat.dat"), "w") as f:
            for i, (label, s, k) in enumerate(lat):
                p50 = summary.get(s, {}).get(k + "_p50_ms")
                p99 = summary.get(s, {}).get(k + "_p99_ms")
                if p50 and p99:
                    f.write('%d "%s" %g %g %g %g %g %g\n' % (i, label, p50["median"], p50["min"],
                            p50["max"], p99["median"], p99["min"], p99["max"]))
        panels = []
        if os.path.getsize(os.path.join(work, "thr.dat")):
            panels.append("""
set title "throughput (requests or revocations per second)"
set ylabel "per second"
set boxwidth 0.6
plot "%s/thr.dat" using 1:3:xtic(2) with boxes lc rgb "#4477aa" notitle, \\
     "" using 1:3:4:5 with yerrorbars lc rgb "black" pt 0 notitle, \\
     10000 with lines dt 2 lc rgb "#cc3311" title "target 10,000/s"
""" % work)
        if os.path.getsize(os.path.join(work, "lat.dat")):
            panels.append("""
set title "latency (ms): p50 and p99"
set key left top
set ylabel "ms"
set boxwidth 0.35
plot "%s/lat.dat" using ($1-0.18):3:xtic(2) with boxes lc rgb "#66ccee" title "p50", \\
     "" using ($1-0.18):3:4:5 with yerrorbars lc rgb "black" pt 0 notitle, \\
     "" using ($1+0.18):6 with boxes lc rgb "#ee6677" title "p99", \\
     "" using ($1+0.18):6:7:8 with yerrorbars lc rgb "black" pt 0 notitle
""" % work)
        if not panels:
            return False
        script = """
set terminal pngcairo size %d,560 font ",11"
set output "%s"
set multiplot layout 1,%d title "revokerd benchmark (median, min-max bars; concurrency 16, nginx on loopback)"
set style fill solid 0.6 border -1
set grid ytics
set yrange [0:*]
set xrange [-0.6:3.6]
%s
unset multiplot
""" % (700 * len(panels), path, len(panels), "".join(panels))
        with open(os.path.join(work, "chart.gp"), "w") as f:
            f.write(script)
        r = subprocess.run([gp, os.path.join(work, "chart.gp")], capture_output=True, text=True)
        if r.returncode != 0:
            log("gnuplot failed: %s" % r.stderr.strip()[:500])
            return False
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def versions(revokerd):
    def run(cmd):
        with contextlib.suppress(Exception):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        return None
    cpu = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {
        "revokerd": run([revokerd, "--version"]), "nginx": run(["nginx", "-v"]),
        "wrk": run(["wrk", "-v"]), "curl": run(["curl-config", "--version"]) or run(["curl", "--version"]),
        "sqlite": sqlite3.sqlite_version, "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu": cpu, "git": run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        # What revokerd and the reference were built against.
        "libs": {lib: run(["pkg-config", "--modversion", lib]) for lib in ("sqlite3", "libcurl", "libuv")},
    }


def machine_line(v, load):
    """The machine a result belongs to: absolute numbers hold only there."""
    libs = v.get("libs") or {}
    return ("machine: %s, %s cores, kernel %s; SQLite %s, curl %s, libuv %s; load average %s" % (
        v.get("cpu"), v.get("cpus"), v.get("kernel"), libs.get("sqlite3"), libs.get("libcurl"),
        libs.get("libuv"), " -> ".join("%.2f" % x for x in load)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revokerd", default=os.environ.get("REVOKERD"), help="the revokerd binary")
    ap.add_argument("--out", default=os.path.join(ROOT, "build-bench", "bench"),
                    help="where results.json, results.txt and results.png go")
    ap.add_argument("--reference", default=os.environ.get("REVOKERD_REFERENCE"),
                    help="the reference revoker (tests/bench/reference.c), run beside each drain")
    ap.add_argument("--cache", help="where generated tables are kept (default OUT/cache)")
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repetition")
    ap.add_argument("--big", action="store_true", help="also start-up with 10 M rows (a 1 GB file)")
    ap.add_argument("--reps", type=int, help="repetitions per scenario (default 3; quick 1)")
    ap.add_argument("--only", help="comma-separated scenarios: wrk,drain,https,cold,startup,idle,hashing,latency,storm,outage "
                         "(https, cold: alternating with the drain)")
    ap.add_argument("--port", type=int, help="nginx port (default: a free one)")
    ap.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the benchmark's processes at this nice level (e.g. -10 on a shared machine)")
    ap.add_argument("--profile", action="store_true",
                    help="after the scenarios, one more drain under perf record: CPU by library and phase")
    args = ap.parse_args()
    if not args.revokerd:
        ap.error("--revokerd (or $REVOKERD) is required")
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        print("SKIP: nginx is not installed (tests/bench/run.sh installs it)")
        return 77
    global NICE
    NICE = args.nice
    _set_nice()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(cleanup_all)
    mode_name = "quick" if args.quick else "normal"

    bench = Bench(args)
    t0 = time.monotonic()
    load = [loadavg()]
    failed = None
    try:
        bench.run()
    except BenchError as e:
        failed = str(e)
        log("FAILED: %s" % e)
    finally:
        bench.close()
        cleanup_all()
    load.append(loadavg())
    summary = summarize({k: v for k, v in bench.results.items() if v})
    verdicts = judge(summary)
    vers = versions(bench.revokerd)
    text = machine_line(vers, load) + "\n" + table(summary, verdicts, mode_name, bench.mode["reps"], bench.mode)
    print(text)
    result = {"mode": mode_name, "reps": bench.mode["reps"], "sizes": bench.mode, "nice": NICE,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "elapsed_s": round(time.monotonic() - t0, 1), "versions": vers, "loadavg": load,
              "commits_counted": bench.commits.ok, "summary": summary, "targets": verdicts,
              "runs": bench.results, "profile": bench.profile, "failed": failed}
    with open(os.path.join(bench.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    with open(os.path.join(bench.out, "results.txt"), "w") as f:
        f.write(text + "\n")
    png = os.path.join(bench.out, "results.png")
    if chart(summary, png):
        print("chart: %s" % png)
    print("results: %s" % os.path.join(bench.out, "results.json"))
    if failed:
        print("FAILED: %s" % failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
