"""Shared helpers for revokerd's end-to-end tests (Python 3 stdlib only).

Every e2e test file does:

    import harness
    class T(harness.E2ETestCase):
        def test_x(self):
            ep = self.endpoint()              # stand-in endpoint, started
            d = self.daemon(ep)               # config written, revokerd started, READY=1 seen
            app = self.app(d)                 # a second sqlite3 connection, as an application
            tid = app.insert("tok-1", expires_at=harness.now_s() - 1)
            self.wait_until(lambda: app.state(tid) == "revoked", 5, "token revoked")
            self.assertEqual(d.stop(), 0)
    if __name__ == "__main__":
        harness.main()

What it gives:
- E2ETestCase: a temp dir per test (self.dir), cleanup of every process it
  started (the daemon's whole process group is killed on failure), a dump of
  the daemon's stderr and notify messages when a test fails, a failure when
  any run's stderr holds an ASan/UBSan/LSan report, and KEEP_E2E=1 (or
  KEEP_E2E_ON_FAILURE=1) to keep the temp dir.
- Endpoint: tests/endpoint.py ($ENDPOINT) on a port fixed for the whole test,
  so stop()/start()/restart() make outages; requests() reads its JSON log.
- NotifySocket: an AF_UNIX datagram socket with SO_PASSCRED playing systemd's
  NOTIFY_SOCKET; a reader thread records each datagram with arrival times and
  the sender's pid.
- Daemon: write_config() (INI with short test timeouts), start() (env
  $REVOKERD, own process group, stderr to a file, NOTIFY_SOCKET owned by the
  test), wait_ready(), stop() (SIGTERM, exit code), kill9(), check_config().
- AppDB: a second sqlite3 connection, as an application would use: insert
  tokens, flag them, read rows and the audit table.
- wait_until(predicate, timeout): poll with a deadline, never a bare sleep.
- assert_no_secrets(): no token secret in the daemon's stderr, the notify
  messages or the audit table.

Environment: REVOKERD, REVOKERCTL (binaries), ENDPOINT (tests/endpoint.py);
meson sets them. Without ENDPOINT the endpoint next to this directory is used.
REVOKERD_WRAPPER (optional) goes before the daemon at every start, e.g.
valgrind (see WRAPPER_ERROR_EXIT); Daemon.stop() fails on the wrapper's
error exit and assert_no_sanitizer_errors() on its "==PID==" reports.
"""

import array
import contextlib
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ENDPOINT_SCRIPT = os.environ.get("ENDPOINT") or os.path.join(os.path.dirname(HERE), "endpoint.py")
LOGOUT_PATH = "/v2/token/logout"
FINAL_EVENTS = ("revoked", "already_invalid", "rejected", "gave_up")
ALL_EVENTS = ("due", "revoked", "already_invalid", "retry", "rejected", "gave_up", "requeued")

# Settings for tests: short enough that retries and outages take seconds.
TEST_CONFIG = {
    "logout.timeout": "2s",
    "logout.concurrency": "16",
    "logout.rate_limit": "0",
    "logout.down_after": "3",
    "retry.base": "100ms",
    "retry.max_delay": "1s",
    "retry.max_attempts": "8",
    "retry.retry_after_max": "1h",
}

# REVOKERD_WRAPPER: a command put before the daemon at every start, e.g.
#   REVOKERD_WRAPPER="valgrind --error-exitcode=99 --leak-check=full
#       --errors-for-leak-kinds=definite,indirect --track-fds=no -q"
# It must run the daemon in its own process (valgrind does, as exec would):
# signals, the notify pid and the exit code stay the daemon's. Exit code
# WRAPPER_ERROR_EXIT from a wrapped daemon is the wrapper reporting errors.
WRAPPER_ERROR_EXIT = 99


def wrapper():
    """$REVOKERD_WRAPPER as a list of words ([] when unset)."""
    return shlex.split(os.environ.get("REVOKERD_WRAPPER", ""))


# --------------------------------------------------------------------------
# small helpers

def now_s():
    """Unix seconds (float)."""
    return time.time()


def now_ms():
    return int(time.time() * 1000)


def fingerprint(token):
    """First 16 hex digits of the SHA-256 of the token, as revokerd stores it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def sha256(token):
    return hashlib.sha256(token.encode()).digest()


def binary(name):
    """Path of a built binary from the environment (REVOKERD, REVOKERCTL)."""
    path = os.environ.get(name)
    if not path:
        raise unittest.SkipTest("%s is not set (run through meson test)" % name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s=%s is not executable" % (name, path))
    return path


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_certificate(workdir, host):
    """A throwaway self-signed certificate for host (its own CA, so it is
    also the daemon's ca_file): returns (cert file, key file)."""
    cert, key = os.path.join(workdir, host + ".crt"), os.path.join(workdir, host + ".key")
    rc, out, err = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=" + host, "-addext", "subjectAltName=DNS:" + host,
                        "-keyout", key, "-out", cert])
    assert rc == 0, "openssl req failed: " + err
    return cert, key


def wait_until(predicate, timeout, what="condition", interval=0.02):
    """Poll predicate() until it returns something truthy; return that value.
    Raise AssertionError naming `what` after `timeout` seconds. Exceptions
    from the predicate (for example sqlite3 busy) count as "not yet" until
    the deadline, then propagate."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except (sqlite3.OperationalError, OSError, ValueError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            if last_exc is not None:
                raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)"
                                     % (timeout, what, last_exc))
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def _kill_group(proc, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# --------------------------------------------------------------------------
# the stand-in endpoint

class Endpoint:
    """tests/endpoint.py on a fixed port: start(), stop(), kill(), restart().

    The port is chosen at construction (or given) and kept across restarts,
    so a stopped endpoint is "connection refused" at the daemon's URL."""

    def __init__(self, workdir, port=None, delay_ms=0, name="endpoint", tls=None):
        self.workdir = workdir
        self.tls = tls  # (cert file, key file): HTTPS
        self.port = port or free_port()
        self.delay_ms = delay_ms
        self.name = name
        self.log_path = os.path.join(workdir, name + ".jsonl")
        self.port_file = os.path.join(workdir, name + ".port")
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return "http://127.0.0.1:%d%s" % (self.port, LOGOUT_PATH)

    def start(self, delay_ms=None, timeout=10):
        """Start (the log is appended to across restarts); wait until it listens."""
        assert self.proc is None, "endpoint already running"
        if delay_ms is not None:
            self.delay_ms = delay_ms
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port_file)
        self.starts += 1
        out = open(os.path.join(self.workdir, "%s-%d.out" % (self.name, self.starts)), "wb")
        cmd = [sys.executable, ENDPOINT_SCRIPT, "--port", str(self.port),
               "--port-file", self.port_file, "--log", self.log_path,
               "--delay-ms", str(self.delay_ms)]
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_until(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                           max(0.1, deadline - time.monotonic()), "endpoint port file")
            except AssertionError:
                self.kill()
                raise
            if self.proc.poll() is None:
                break
            # The port may still be held briefly by a previous instance: retry.
            self.proc = None
            if time.monotonic() >= deadline:
                raise AssertionError("endpoint failed to start on port %d" % self.port)
            time.sleep(0.1)
        out.close()
        return self

    def stop(self, timeout=5):
        """SIGTERM and wait. Connections are closed: the daemon sees refusals."""
        if self.proc is None:
            return
        _kill_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc is None:
            return
        _kill_group(self.proc)
        self.proc.wait()
        self.proc = None

    def restart(self, delay_ms=None):
        self.stop()
        return self.start(delay_ms=delay_ms)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def requests(self, token=None):
        """Every logged request (dicts as in the contract), in arrival order;
        with token: only those that carried it."""
        out = []
        try:
            with open(self.log_path, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # being written
                    r = json.loads(line)
                    if token is None or r.get("token") == token:
                        out.append(r)
        except FileNotFoundError:
            pass
        return out

    def tokens_seen(self):
        """Set of tokens that reached the endpoint."""
        return {r["token"] for r in self.requests() if r.get("token")}

    def wait_requests(self, token, n=1, timeout=10):
        """Wait until `token` has been received n times; return its requests."""
        return wait_until(lambda: (lambda rs: rs if len(rs) >= n else None)(self.requests(token)),
                          timeout, "%d request(s) for %s" % (n, token))


# --------------------------------------------------------------------------
# NOTIFY_SOCKET

class NotifyMessage:
    __slots__ = ("mono", "wall", "text", "pid", "uid", "fds")

    def __init__(self, mono, wall, text, pid, uid, fds):
        self.mono, self.wall, self.text, self.pid, self.uid, self.fds = mono, wall, text, pid, uid, fds

    def fields(self):
        """[(key, value)] of the datagram's KEY=VALUE lines."""
        out = []
        for line in self.text.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                out.append((k, v))
        return out

    def __repr__(self):
        return "<notify +%.3f pid=%s %r>" % (self.mono, self.pid, self.text)


class NotifySocket:
    """An AF_UNIX SOCK_DGRAM socket in a short path with SO_PASSCRED; a reader
    thread appends each datagram to self.messages. Pass .path as
    NOTIFY_SOCKET. File descriptors sent with the messages (FDSTORE=1) are
    kept in msg.fds and closed by close()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rvn", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(self.path)
        self.messages = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="notify-reader", daemon=True)
        self.thread.start()

    def _run(self):
        fd_space = socket.CMSG_SPACE(struct.calcsize("3i")) + socket.CMSG_SPACE(64 * 4)
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, fd_space)
            except OSError:
                if self._stop:
                    return
                continue
            mono, wall = time.monotonic(), time.time()
            pid = uid = None
            fds = []
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid, uid, _gid = struct.unpack("3i", cdata[:12])
                elif level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                    fds.extend(a)
            msg = NotifyMessage(mono, wall, data.decode("utf-8", "replace"), pid, uid, fds)
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def values(self, key, pid=None):
        """[(monotonic arrival, value)] for every KEY=value line."""
        out = []
        for m in self.snapshot():
            if pid is not None and m.pid != pid:
                continue
            for k, v in m.fields():
                if k == key:
                    out.append((m.mono, v))
        return out

    def count(self, key, value=None, pid=None):
        return sum(1 for _, v in self.values(key, pid) if value is None or v == value)

    def statuses(self, pid=None):
        """The STATUS= texts in order."""
        return [v for _, v in self.values("STATUS", pid)]

    def last_status(self):
        s = self.statuses()
        return s[-1] if s else None

    def wait_for(self, key, value=None, timeout=10, after=0.0):
        """Wait for a KEY[=value] line that arrived after monotonic `after`;
        return its value. value may be a string or a predicate."""
        def match():
            for mono, v in self.values(key):
                if mono < after:
                    continue
                if value is None or (v == value if isinstance(value, str) else value(v)):
                    return (v,)
            return None
        return wait_until(match, timeout, "notify %s%s" % (key, "" if value is None else
                                                          "=" + str(value)))[0]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        for m in self.snapshot():
            for fd in m.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# revokerd

def write_ini(path, settings):
    """Write {"section.key": value} as an INI file (sections in first-seen order)."""
    sections = {}
    for full, value in settings.items():
        section, key = full.split(".", 1)
        sections.setdefault(section, []).append((key, value))
    with open(path, "w") as f:
        for section, items in sections.items():
            f.write("[%s]\n" % section)
            for key, value in items:
                f.write("%s = %s\n" % (key, value))
            f.write("\n")
    return path


class Daemon:
    """One revokerd under test: its config, database, socket and runs.

    Each start() writes stderr to daemon-<n>.stderr in the test dir and gets
    the test's NotifySocket (shared across restarts; messages carry the pid)."""

    def __init__(self, workdir, notify, url=None, config=None, name="revokerd"):
        self.workdir = workdir
        self.notify = notify
        self.name = name
        self.db_path = os.path.join(workdir, name + ".db")
        self.socket_path = os.path.join(workdir, name + ".sock")
        self.config_path = os.path.join(workdir, name + ".conf")
        self.settings = {"daemon.database": self.db_path, "daemon.socket": self.socket_path}
        if url:
            self.settings["logout.url"] = url
        self.settings.update(TEST_CONFIG)
        if config:
            self.settings.update(config)
        self.proc = None
        self.runs = 0
        self.stderr_paths = []
        self.ready_mono = None
        self.start_mono = None
        self.exit_codes = []
        self.wrapper = wrapper()

    def write_config(self, **overrides):
        """Write the INI config; overrides use "section.key" names given as
        section__key keyword arguments or through set()."""
        for k, v in overrides.items():
            self.settings[k.replace("__", ".", 1)] = v
        return write_ini(self.config_path, self.settings)

    def set(self, settings):
        self.settings.update(settings)
        return self.write_config()

    def start(self, args=(), env=None, wait_ready=True, timeout=15, prefix=()):
        """Start [prefix] [$REVOKERD_WRAPPER] revokerd --config <file> [args]
        in its own process group. prefix must exec the daemon (setpriv)."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        if not os.path.exists(self.config_path):
            self.write_config()
        self.runs += 1
        path = os.path.join(self.workdir, "%s-%d.stderr" % (self.name, self.runs))
        self.stderr_paths.append(path)
        e = dict(os.environ)
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                  "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"):
            e.pop(k, None)
        if self.notify is not None:
            e["NOTIFY_SOCKET"] = self.notify.path
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if env:
            e.update(env)
        cmd = list(prefix) + self.wrapper + [binary("REVOKERD"), "--config", self.config_path] + list(args)
        with open(path, "wb") as err:
            self.start_mono = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=e, cwd=self.workdir, start_new_session=True)
        self.ready_mono = None
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def wait_ready(self, timeout=15):
        """Wait for READY=1 from this run's pid; fail early if it exits."""
        assert self.notify is not None, "no notify socket"
        pid = self.proc.pid

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("revokerd exited with %s before READY=1; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()[-3000:]))
            for m in self.notify.snapshot():
                if m.mono >= self.start_mono and ("READY", "1") in m.fields() and \
                        (m.pid is None or m.pid == pid):
                    return m.mono
            return None
        self.ready_mono = wait_until(ready, timeout, "READY=1")
        return self.ready_mono

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send sig (SIGTERM) and wait for the exit; return the exit code
        (negative: killed by a signal). On timeout the group is killed and
        AssertionError raised."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
                self.proc.wait()
                raise AssertionError("revokerd did not exit within %ss of signal %d" % (timeout, sig))
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        if self.wrapper and rc == WRAPPER_ERROR_EXIT:
            raise AssertionError("%s reported errors (exit %d); stderr:\n%s"
                                 % (self.wrapper[0], rc, self.stderr()[-6000:]))
        return rc

    def kill9(self):
        """kill -9 the whole group, as a crash or power loss would."""
        if self.proc is None:
            return
        _kill_group(self.proc)
        self.proc.wait()
        self.exit_codes.append(self.proc.returncode)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait()

    def stderr(self, run=None):
        """This run's stderr (run None: the latest; "all": every run joined)."""
        paths = self.stderr_paths if run == "all" else \
            self.stderr_paths[-1:] if run is None else [self.stderr_paths[run - 1]]
        out = []
        for p in paths:
            with contextlib.suppress(FileNotFoundError), open(p, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        return "".join(out)

    def sanitizer_errors(self):
        """AddressSanitizer / UBSan / LeakSanitizer reports in any run's stderr."""
        text = self.stderr("all")
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "ERROR: UndefinedBehaviorSanitizer")
        # A wrapping valgrind -q prints its errors as "==PID== ...", and also
        # "possibly lost" records that --errors-for-leak-kinds does not count.
        valgrind = re.compile(r"^==\d+== (?!Warning|WARNING)(?!.* are (possibly lost|still reachable) )\S") \
            if self.wrapper else None
        return [line for line in text.splitlines()
                if any(m in line for m in marks) or (valgrind and valgrind.match(line))]

    def check_config(self, config_path=None, args=(), timeout=15):
        """revokerd --config F --check-config; returns (rc, stdout, stderr)."""
        cmd = [binary("REVOKERD"), "--config", config_path or self.config_path,
               "--check-config"] + list(args)
        return run(cmd, timeout=timeout)


def sanitized(pid):
    """True when the process runs with AddressSanitizer (its RSS is then
    dominated by shadow memory and the quarantine, not by the daemon)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def request(path, obj, timeout=5):
    """One request on a new connection to the control socket at path: the
    reply as an object, or None when the daemon closed without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0]) if buf else None


def run(cmd, timeout=30, env=None, input=None):  # noqa: A002 - mirrors subprocess
    """Run a command to completion: (rc, stdout, stderr) as text."""
    e = dict(os.environ)
    e.pop("NOTIFY_SOCKET", None)
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=e, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# the database, as an application sees it

class AppDB:
    """A second sqlite3 connection to the daemon's database (autocommit, like
    an application or the sqlite3 command line writing with plain SQL)."""

    def __init__(self, path):
        self.path = path
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None,
                                    check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = 10000")

    def close(self):
        self.conn.close()

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params)

    def query(self, sql, params=()):
        """Rows as dicts."""
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def insert(self, token, expires_at=None, subject=None, flagged=0, flag_reason=None):
        """One token; returns its id."""
        cur = self.conn.execute(
            "INSERT INTO tokens (token, subject, expires_at, flagged, flag_reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (token, subject, None if expires_at is None else int(expires_at), flagged, flag_reason))
        return cur.lastrowid

    def insert_many(self, tokens, expires_at=None, subject=None, flagged=0):
        """Many tokens in one transaction; returns {token: id}."""
        ids = {}
        with self.transaction():
            for t in tokens:
                ids[t] = self.insert(t, expires_at=expires_at, subject=subject, flagged=flagged)
        return ids

    @contextlib.contextmanager
    def transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def flag(self, ids, reason="leaked"):
        """Set flagged = 1 on one id or a list of ids (one transaction)."""
        if isinstance(ids, int):
            ids = [ids]
        with self.transaction():
            for i in ids:
                self.conn.execute("UPDATE tokens SET flagged = 1, flag_reason = ? WHERE id = ?",
                                  (reason, i))

    def row(self, token_id):
        r = self.conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return dict(r) if r else None

    def state(self, token_id):
        r = self.conn.execute("SELECT state FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return r[0] if r else None

    def states(self, ids=None):
        """{state: count} over all rows (or the given ids)."""
        out = {}
        if ids is None:
            rows = self.conn.execute("SELECT state, count(*) FROM tokens GROUP BY state")
            return {s: n for s, n in rows}
        for i in ids:
            s = self.state(i)
            out[s] = out.get(s, 0) + 1
        return out

    def all_in(self, ids, states):
        """True when every id's state is in `states` (a str or tuple)."""
        if isinstance(states, str):
            states = (states,)
        return all(self.state(i) in states for i in ids)

    def audit(self, token_id=None, event=None):
        """Audit rows (dicts) in seq order, optionally for one token / event."""
        sql, params, where = "SELECT * FROM audit", [], []
        if token_id is not None:
            where.append("token_id = ?")
            params.append(token_id)
        if event is not None:
            where.append("event = ?")
            params.append(event)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.query(sql + " ORDER BY seq", params)

    def events(self, token_id):
        """The event names of one token, in order."""
        return [r["event"] for r in self.audit(token_id)]

    def final_events(self, token_id):
        return [r for r in self.audit(token_id) if r["event"] in FINAL_EVENTS]

    def schema(self):
        """{(type, name)} of sqlite_master."""
        return {(r[0], r[1]) for r in
                self.conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


# --------------------------------------------------------------------------
# the test case base

class E2ETestCase(unittest.TestCase):
    """Base class: a temp dir per test and cleanup of everything started."""

    maxDiff = None

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="revokerd-e2e-")
        self._daemons, self._endpoints, self._notifies, self._dbs = [], [], [], []
        self.addCleanup(self._cleanup)

    # factories -------------------------------------------------------------

    def notify_socket(self):
        n = NotifySocket()
        self._notifies.append(n)
        return n

    def endpoint(self, start=True, **kw):
        """A stand-in endpoint (started unless start=False)."""
        ep = Endpoint(self.dir, name="endpoint%s" % (len(self._endpoints) or ""), **kw)
        self._endpoints.append(ep)
        if start:
            ep.start()
        return ep

    def daemon(self, endpoint=None, config=None, start=True, args=(), url=None, notify=None):
        """A revokerd pointed at endpoint (or url), with TEST_CONFIG plus
        config ({"section.key": value}); started and READY unless start=False."""
        if notify is None:
            notify = self.notify_socket()
        d = Daemon(self.dir, notify, url=url or (endpoint.url if endpoint else None), config=config,
                   name="revokerd%s" % (len(self._daemons) or ""))
        self._daemons.append(d)
        d.write_config()
        if start:
            d.start(args=args)
        return d

    def app(self, daemon_or_path):
        """A second connection to the daemon's database."""
        path = daemon_or_path.db_path if isinstance(daemon_or_path, Daemon) else daemon_or_path
        db = AppDB(path)
        self._dbs.append(db)
        return db

    # assertions ------------------------------------------------------------

    def wait_until(self, predicate, timeout, what="condition", interval=0.02):
        return wait_until(predicate, timeout, what, interval)

    def assert_no_secrets(self, secrets, daemon, app=None):
        """No secret in the daemon's stderr (all runs), its notify messages
        or the audit table."""
        secrets = [s for s in secrets if s]
        text = daemon.stderr("all")
        notes = "\n".join(m.text for m in (daemon.notify.snapshot() if daemon.notify else []))
        audit_text = ""
        if app is not None:
            audit_text = "\n".join(json.dumps(r, default=str) for r in app.audit())
        for s in secrets:
            self.assertNotIn(s, text, "secret %r in revokerd's stderr" % s)
            self.assertNotIn(s, notes, "secret %r in a notify message" % s)
            self.assertNotIn(s, audit_text, "secret %r in the audit table" % s)

    def assert_audit_rows(self, app, tokens, since_ms=0, until_ms=None):
        """Check every audit row of the given tokens ({id: secret}) has the
        issue's fields right: at in Unix ms within [since_ms, until_ms],
        token_id, fingerprint = first 16 hex of sha256(secret), a known
        event, attempt NULL or >= 1, http_status NULL or 100..599 (and set
        for answers: revoked, already_invalid, rejected), due detail one of
        expired/flagged/requested, duration_ms NULL or >= 0 (set for events
        after a request). Returns {id: [rows]}."""
        until_ms = until_ms or now_ms() + 1000
        out = {}
        for tid, secret in tokens.items():
            rows = app.audit(tid)
            out[tid] = rows
            for r in rows:
                where = "audit row %r" % r
                self.assertIsInstance(r["at"], int, where)
                self.assertGreaterEqual(r["at"], since_ms - 1000, where + ": at before the test")
                self.assertLessEqual(r["at"], until_ms, where + ": at in the future")
                self.assertEqual(r["token_id"], tid, where)
                self.assertEqual(r["fingerprint"], fingerprint(secret), where + ": fingerprint")
                self.assertIn(r["event"], ALL_EVENTS, where)
                if r["attempt"] is not None:
                    self.assertIsInstance(r["attempt"], int, where)
                    self.assertGreaterEqual(r["attempt"], 1, where)
                if r["http_status"] is not None:
                    self.assertTrue(100 <= r["http_status"] <= 599, where + ": http_status")
                if r["event"] in ("revoked", "already_invalid", "rejected"):
                    self.assertIsNotNone(r["http_status"], where + ": an answer has a status")
                    self.assertIsNotNone(r["duration_ms"], where + ": a request has a duration")
                if r["event"] == "revoked":
                    self.assertTrue(200 <= r["http_status"] <= 299, where)
                if r["event"] == "already_invalid":
                    self.assertEqual(r["http_status"], 401, where)
                if r["event"] == "due":
                    self.assertIn(r["detail"], ("expired", "flagged", "requested"), where)
                    self.assertIsNone(r["http_status"], where)
                if r["duration_ms"] is not None:
                    self.assertGreaterEqual(r["duration_ms"], 0, where)
                    self.assertLess(r["duration_ms"], 600000, where)
            seqs = [r["seq"] for r in rows]
            self.assertEqual(seqs, sorted(seqs))
            ats = [r["at"] for r in rows]
            self.assertEqual(ats, sorted(ats), "audit times of token %d go backwards" % tid)
        return out

    def assert_no_sanitizer_errors(self, daemon):
        errs = daemon.sanitizer_errors()
        self.assertEqual(errs, [], "sanitizer reports in revokerd's stderr")

    # cleanup -----------------------------------------------------------------

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        for test, _ in list(getattr(result, "errors", [])) + list(getattr(result, "failures", [])):
            if test is self:
                return True
        return not getattr(outcome, "success", True)

    def _cleanup(self):
        failed = self._failed()
        for d in self._daemons:
            d.cleanup()
        for ep in self._endpoints:
            ep.kill()
        for db in self._dbs:
            with contextlib.suppress(Exception):
                db.close()
        if failed:
            for d in self._daemons:
                sys.stderr.write("\n---- %s stderr (%s, %d run(s)) ----\n%s\n"
                                 % (d.name, self.id(), d.runs, d.stderr("all")[-6000:]))
                if d.notify:
                    msgs = d.notify.snapshot()[-40:]
                    sys.stderr.write("---- notify (last %d) ----\n%s\n"
                                     % (len(msgs), "\n".join(repr(m) for m in msgs)))
        for n in self._notifies:
            n.close()
        # A sanitizer report in any run fails the test, whatever it checked.
        reports = [line for d in self._daemons for line in d.sanitizer_errors()]
        if os.environ.get("KEEP_E2E") or (failed and os.environ.get("KEEP_E2E_ON_FAILURE")):
            sys.stderr.write("kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if reports and not failed:
            raise AssertionError("sanitizer reports in revokerd's stderr:\n" + "\n".join(reports[:20]))


def main():
    """Entry point for test files: verbose unittest.main()."""
    unittest.main(verbosity=2)
