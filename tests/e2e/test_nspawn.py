"""revokerd under a real systemd as PID 1.

A throwaway systemd-nspawn container over the host's own /usr (the recipe in
shared/notes/systemd-testing.md): --volatile=yes gives it a tmpfs root with
an empty /etc, so nothing of the host starts. The test installs the units
meson configured (unchanged, but for a drop-in that points ExecStart= at the
built binary, copied to /srv/t, and shortens the watchdog), the sysusers
entry, a test config and an application user in the group revokerd, starts
the stand-in endpoint inside, and then walks through what an operator does:

  systemctl start revokerd.socket; a revocation queued through the socket as
  a member of revokerd (socket activation starts the daemon); systemctl stop
  and start (returning only after READY=1); systemctl status with the STATUS=
  line; systemctl reload to a new endpoint; a restart that keeps the socket
  (same inode) working; a watchdog restart of a stalled (SIGSTOPped) daemon;
  journalctl with priorities and structured fields, and no secret in it.
Beside the walk: an application user in revokerd writes the table with
sqlite3 and verifies the audit while a user outside the group can do
neither; a reload that fixes a down endpoint's URL is tried at once; and what
`meson install` puts down answers there (man revokerd, completion) and a
second install keeps an edited configuration.

Needs root, systemd-nspawn (apt-get install systemd-container), nsenter,
unshare and setpriv (util-linux). Takes about 15 s.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import unittest

import harness

GUEST = "/srv/t"
PYTHON = "/usr/bin/python3"  # the container sees the host's /usr, not ~/.pyenv
SOCKET = "/run/revokerd.sock"
PORTS = (18080, 18081)
METRICS_PORT = 18469  # [metrics] listen: the HTTP listener under the unit's sandbox
STEP_TIMEOUT = 30            # any one command in the container
GUEST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}

# Request lines on stdin, reply lines on stdout. A secret on argv would be
# visible to every user in ps.
CLIENT = textwrap.dedent("""\
    import socket, sys
    reqs = [ln for ln in sys.stdin.read().splitlines() if ln]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(sys.argv[1])
    s.sendall("".join(r + "\\n" for r in reqs).encode())
    buf = b""
    while buf.count(b"\\n") < len(reqs):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    sys.stdout.write(buf.decode())
""")

# The built binary (copied to GUEST) instead of the installed one, in
# ExecStart= and in the shipped unit's own ExecReload= lines; timeouts short
# enough for a test; everything else is the shipped unit. A SIGSTOPped
# process keeps the watchdog's SIGABRT pending: SIGKILL follows after
# TimeoutAbortSec= (by default TimeoutStopSec=, 30 s). A sanitized build
# needs detect_leaks=0: LeakSanitizer's ptrace is outside SystemCallFilter=,
# its tracer dies of SIGSYS and the daemon spins at exit.
DROP_IN = textwrap.dedent("""\
    [Service]
    ExecStart=
    ExecStart=%s/revokerd --config /etc/revokerd/revokerd.conf
    TimeoutStartSec=15s
    WatchdogSec=2s
    TimeoutAbortSec=2s
    Environment=ASAN_OPTIONS=detect_leaks=0
    ExecReload=
""" % GUEST)


def drop_in(unit_path):
    with open(unit_path) as f:
        lines = f.read().splitlines()
    binary, _, config = next(l for l in lines if l.startswith("ExecStart=")).split("=", 1)[1].split()[:3]
    reload = [l.replace(binary, GUEST + "/revokerd").replace(config, "/etc/revokerd/revokerd.conf")
              for l in lines if l.startswith("ExecReload=")]
    return DROP_IN + "\n".join(reload) + "\n"

APP_SYSUSERS = 'u app - "revokerd test application"\nm app revokerd\n'


def test_config(port):
    return textwrap.dedent("""\
        [daemon]
        control_group = revokerd
        log_level = info
        [logout]
        url = http://127.0.0.1:%d/v2/token/logout
        timeout = 2s
        [retry]
        base = 100ms
        max_delay = 1s
        [metrics]
        listen = 127.0.0.1:%d
    """ % (port, METRICS_PORT))


def missing_tools():
    tools = ("systemd-nspawn", "nsenter", "unshare", "setpriv", "timeout")
    return [t for t in tools if not shutil.which(t)]


class Container:
    """One booted container; run() executes a command inside it."""

    def __init__(self, srv, log_path):
        self.srv = srv
        self.log_path = log_path
        self.name = "revtest%d" % os.getpid()
        self.proc = None
        self.leader = None

    def boot(self, timeout=30):
        # Own mount namespace, so that the tmpfs over /run/systemd (where
        # nspawn keeps its files) vanishes with the test; unshare and sh
        # exec, so self.proc is nspawn itself.
        script = ('mount -t tmpfs -o mode=755 tmpfs /run/systemd && '
                  'exec systemd-nspawn --quiet -D / --volatile=yes --register=no --keep-unit '
                  '-M "$1" --console=pipe --private-network --bind-ro="$2":%s '
                  '-b systemd.unit=basic.target systemd.mask=systemd-firstboot.service' % GUEST)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                 self.name, self.srv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.leader = harness.wait_until(self._find_leader, timeout, "the container's systemd")

        def running():
            rc, out, _ = self.run(["systemctl", "is-system-running"], timeout=5)
            state = out.strip()
            if state in ("running", "degraded"):
                return state
            if state in ("maintenance", "stopping"):
                raise AssertionError("container is %s" % state)
            # "offline": the container's systemd does not answer on its bus
            # yet (early in the boot, and for longer on a loaded machine).
            return None
        return harness.wait_until(running, timeout, "the container's boot", interval=0.1)

    def _find_leader(self):
        if self.proc.poll() is not None:
            raise AssertionError("systemd-nspawn exited with %d:\n%s" % (self.proc.returncode, self.log()))
        pid = self.proc.pid
        try:
            for task in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                    for child in f.read().split():
                        if os.readlink("/proc/%s/exe" % child) == "/usr/lib/systemd/systemd":
                            return child
        except (FileNotFoundError, ProcessLookupError):
            pass
        return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def run(self, cmd, timeout=STEP_TIMEOUT, input=None):  # noqa: A002 - mirrors subprocess
        """(rc, stdout, stderr) of cmd inside the container."""
        full = ["timeout", "-s", "KILL", str(timeout), "nsenter", "-t", self.leader, "-a"] + cmd
        p = subprocess.run(full, capture_output=True, env=GUEST_ENV, timeout=timeout + 5,
                           input=input.encode() if input is not None else None,
                           stdin=None if input is not None else subprocess.DEVNULL)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def check(self, cmd, timeout=STEP_TIMEOUT, input=None):  # noqa: A002
        rc, out, err = self.run(cmd, timeout, input)
        if rc != 0:
            raise AssertionError("%s exited with %d:\n%s%s" % (" ".join(cmd), rc, out, err))
        return out

    def shutdown(self):
        """Power off; kill PID 1 of the container (and so all of it) if that
        does not end it within 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.leader:
            self.run(["systemctl", "poweroff", "--no-block"], timeout=10)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            if self.leader:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(self.leader), 9)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        # nspawn leaves its empty payload/ and supervisor/ cgroups behind when
        # PID 1 of the host is not systemd; rmdir fails on any in use.
        for h in ("unified", "systemd"):
            for top in ("payload", "supervisor"):
                root = os.path.join("/sys/fs/cgroup", h, top)
                for d, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
                    with contextlib.suppress(OSError):
                        os.rmdir(d)


class NspawnTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (systemd-nspawn boots a container)")
        missing = missing_tools()
        if missing:
            raise unittest.SkipTest("missing %s (apt-get install systemd-container util-linux)"
                                    % ", ".join(missing))
        if not os.path.exists("/usr/lib/systemd/systemd"):
            raise unittest.SkipTest("no /usr/lib/systemd/systemd (apt-get install systemd)")
        cls.revokerd = os.path.abspath(harness.binary("REVOKERD"))
        cls.revokerctl = os.path.abspath(harness.binary("REVOKERCTL"))
        cls.units_dir = os.path.join(os.path.dirname(os.path.dirname(cls.revokerd)), "systemd")
        cls.source_systemd = os.path.join(os.path.dirname(os.path.dirname(harness.HERE)), "systemd")
        for name in ("revokerd.service", "revokerd.socket"):
            if not os.path.exists(os.path.join(cls.units_dir, name)):
                raise AssertionError("%s missing in %s" % (name, cls.units_dir))

    # -- setup ---------------------------------------------------------------

    def prepare_srv(self):
        srv = os.path.join(self.dir, "srv")
        os.mkdir(srv)
        os.chmod(srv, 0o755)  # the daemon runs as revokerd and execs /srv/t/revokerd
        shutil.copy(self.revokerd, os.path.join(srv, "revokerd"))
        shutil.copy(self.revokerctl, os.path.join(srv, "revokerctl"))
        for name in ("revokerd.service", "revokerd.socket"):
            shutil.copy(os.path.join(self.units_dir, name), srv)
        shutil.copy(os.path.join(self.source_systemd, "revokerd.sysusers"), srv)
        shutil.copy(harness.ENDPOINT_SCRIPT, os.path.join(srv, "endpoint.py"))
        files = {
            "test.conf": drop_in(os.path.join(self.units_dir, "revokerd.service")),
            "app.sysusers": APP_SYSUSERS,
            "client.py": CLIENT,
            "revokerd.conf": test_config(PORTS[0]),
            "revokerd-reload.conf": test_config(PORTS[1]),
            # Nothing listens on PORTS[1] + 1: down after one refusal, and
            # then a minute before the next probe.
            "revokerd-down.conf": test_config(PORTS[1] + 1).replace("base = 100ms", "base = 1min")
                                  .replace("max_delay = 1s", "max_delay = 15min") + "[logout]\ndown_after = 1\n",
        }
        for name, text in files.items():
            with open(os.path.join(srv, name), "w") as f:
                f.write(text)
        for name in os.listdir(srv):
            os.chmod(os.path.join(srv, name), 0o755 if name in ("revokerd", "revokerctl") else 0o644)
        return srv

    def setUp(self):
        super().setUp()
        self.secrets = []
        self.ct = Container(self.prepare_srv(), os.path.join(self.dir, "nspawn.log"))
        self.addCleanup(self.stop_container)
        t0 = time.monotonic()
        state = self.ct.boot()
        print("\ncontainer %s in %.1f s" % (state, time.monotonic() - t0))

    def stop_container(self):
        if self._failed() and self.ct.leader:
            for cmd in (["systemctl", "status", "--no-pager", "revokerd.service", "revokerd.socket"],
                        ["journalctl", "--no-pager", "-n", "150", "-o", "short-monotonic"]):
                rc, out, err = self.ct.run(cmd, timeout=10)
                sys.stderr.write("\n---- %s ----\n%s%s\n" % (" ".join(cmd), out, err))
            sys.stderr.write("\n---- nspawn log ----\n%s\n" % self.ct.log())
        self.ct.shutdown()

    # -- helpers -------------------------------------------------------------

    def C(self, cmd):
        """Run cmd in the container; its stdout, or fail the test."""
        return self.ct.check(cmd)

    def show(self, *props, unit="revokerd.service"):
        out = self.C(["systemctl", "show", "-P", ",".join(props), unit]) if len(props) == 1 else \
            self.C(["systemctl", "show", "-p", ",".join(props), unit])
        if len(props) == 1:
            return out.strip()
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def client(self, requests, user="app", groups=("--init-groups",)):
        """Send request objects through the socket as user; the replies."""
        lines = "".join(json.dumps(r) + "\n" for r in requests)
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + user] + list(groups) + \
            [PYTHON, GUEST + "/client.py", SOCKET]
        rc, out, err = self.ct.run(cmd, input=lines)
        return rc, [json.loads(ln) for ln in out.splitlines() if ln.strip()], err

    def revoke(self, token):
        self.secrets.append(token)
        rc, replies, err = self.client([{"op": "revoke", "token": token, "subject": "alice",
                                         "reason": "logout"}])
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(replies), 1, replies)
        self.assertIs(replies[0].get("ok"), True, replies)
        return replies[0]

    def start_endpoint(self, n):
        port = PORTS[n]
        self.C(["systemd-run", "--unit=endpoint%d" % n, "--collect", PYTHON, GUEST + "/endpoint.py",
                "--port", str(port), "--port-file", "/run/endpoint%d.port" % n,
                "--log", "/run/endpoint%d.jsonl" % n])
        self.wait_until(lambda: self.ct.run(["test", "-s", "/run/endpoint%d.port" % n])[0] == 0,
                        10, "endpoint %d listening" % n, interval=0.05)

    def endpoint_tokens(self, n):
        rc, out, _ = self.ct.run(["cat", "/run/endpoint%d.jsonl" % n])
        if rc != 0:
            return []
        return [json.loads(ln)["token"] for ln in out.splitlines() if ln.strip()]

    def wait_active(self, what):
        def active():
            s = self.show("ActiveState", "SubState", "MainPID")
            if s["ActiveState"] == "failed":
                raise AssertionError("revokerd.service failed (%s)" % what)
            return s if (s["ActiveState"], s["SubState"]) == ("active", "running") else None
        return self.wait_until(active, 15, "revokerd.service active after " + what, interval=0.05)

    # -- the walk ------------------------------------------------------------

    def install(self):
        # Installed as README's "Install as a service" does, but for the binary.
        self.C(["sh", "-ec",
                "mkdir -p /etc/systemd/system/revokerd.service.d /etc/sysusers.d /etc/revokerd\n"
                "cp {g}/revokerd.service {g}/revokerd.socket /etc/systemd/system/\n"
                "cp {g}/test.conf /etc/systemd/system/revokerd.service.d/\n"
                "cp {g}/revokerd.sysusers /etc/sysusers.d/revokerd.conf\n"
                "cp {g}/app.sysusers /etc/sysusers.d/app.conf\n"
                "cp {g}/revokerd.conf /etc/revokerd/revokerd.conf\n"
                "systemd-sysusers\n"
                "systemctl daemon-reload\n".format(g=GUEST)])

    def as_user(self, user, cmd, groups=("--init-groups",), input=None):  # noqa: A002
        """(rc, out, err) of cmd run in the container as user."""
        return self.ct.run(["setpriv", "--reuid=" + user, "--regid=" + user] + list(groups) + cmd,
                           input=input)

    def test_app_user_writes_the_table(self):
        # Issue 15: an application user (app, in revokerd; neither root nor
        # revokerd) writes and flags tokens with its own sqlite3, the
        # service revokes them, and app reads and verifies the audit; a
        # user outside the group can do none of it.
        db = "/var/lib/revokerd/revokerd.db"
        self.install()
        self.start_endpoint(0)
        self.C(["systemctl", "start", "revokerd.socket", "revokerd.service"])
        self.wait_active("start")
        self.assertEqual(self.C(["stat", "-c", "%U:%G %a", "/var/lib/revokerd"]).strip(),
                         "revokerd:revokerd 2770")
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(self.C(["stat", "-c", "%G %a", db + suffix]).strip(), "revokerd 660", suffix)

        def sql(user, text, groups=("--init-groups",)):
            return self.as_user(user, ["sqlite3", "-bail", "-cmd", ".timeout 5000", db, text], groups=groups)

        self.secrets += ["app-tok-1", "app-tok-2", "app-tok-3"]
        rc, out, err = sql("app", "INSERT INTO tokens (token, subject) VALUES ('app-tok-1', 'alice');"
                                  "INSERT INTO tokens (token, subject, flagged) VALUES ('app-tok-2', 'bob', 1);")
        self.assertEqual(rc, 0, err)
        rc, out, err = sql("app", "UPDATE tokens SET flagged = 1 WHERE token = 'app-tok-1';")
        self.assertEqual(rc, 0, err)
        self.wait_until(lambda: {"app-tok-1", "app-tok-2"} <= set(self.endpoint_tokens(0)), 15,
                        "app's tokens at the endpoint")

        # With the daemon stopped, app's sqlite3 creates -wal and -shm
        # itself (the directory's setgid gives them the group); the next
        # start takes the row.
        self.C(["systemctl", "stop", "revokerd.service"])
        rc, out, err = sql("app", "PRAGMA journal_mode=WAL; BEGIN; "
                                  "INSERT INTO tokens (token, flagged) VALUES ('app-tok-3', 1); COMMIT;")
        self.assertEqual(rc, 0, err)
        self.C(["systemctl", "start", "revokerd.service"])
        self.wait_until(lambda: "app-tok-3" in self.endpoint_tokens(0), 15, "app-tok-3 at the endpoint")
        for suffix in ("", "-wal", "-shm"):
            self.assertRegex(self.C(["stat", "-c", "%G %a", db + suffix]).strip(), r"^revokerd 660$", suffix)

        ctl = [GUEST + "/revokerctl", "--database", db, "audit"]
        rc, out, err = self.as_user("app", ctl + ["--verify"])
        self.assertEqual(rc, 0, out + err)
        rc, out, err = self.as_user("app", ctl)
        self.assertEqual(rc, 0, err)
        self.assertIn("revoked", out)

        # Outside the group: no read, no write, no audit.
        nobody = ("--clear-groups",)
        rc, out, err = sql("65534", "SELECT count(*) FROM tokens;", groups=nobody)
        self.assertNotEqual(rc, 0, out)
        rc, out, err = sql("65534", "INSERT INTO tokens (token) VALUES ('x');", groups=nobody)
        self.assertNotEqual(rc, 0, out)
        rc, out, err = self.as_user("65534", ctl + ["--verify"], groups=nobody)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("Permission denied", err)
        export = self.C(["journalctl", "--no-pager", "-o", "export"])
        for token in self.secrets:
            self.assertNotIn(token, export, "a token secret in the journal")

    def test_reload_to_a_new_url_ends_the_wait(self):
        # Issue 15: a reload that fixes the URL ends the 'endpoint down'
        # wait (here a minute, retry.base) at once: health and the pending
        # token's wait start afresh.
        self.install()
        self.C(["cp", GUEST + "/revokerd-down.conf", "/etc/revokerd/revokerd.conf"])
        self.C(["systemctl", "start", "revokerd.socket", "revokerd.service"])
        self.wait_active("start")
        self.revoke("nspawn-down-1")
        self.wait_until(lambda: "endpoint down" in self.show("StatusText"), 15, "endpoint down")
        self.start_endpoint(0)
        # The file still carries its 1 min waits; only the URL is fixed.
        self.C(["sed", "-i", "s/:%d/:%d/" % (PORTS[1] + 1, PORTS[0]), "/etc/revokerd/revokerd.conf"])
        t0 = time.monotonic()
        self.C(["systemctl", "reload", "revokerd.service"])
        self.wait_until(lambda: "nspawn-down-1" in self.endpoint_tokens(0), 20,
                        "nspawn-down-1 at the new URL before the old wait (60 s) ended")
        took = time.monotonic() - t0
        print("token at the new URL %.1f s after the reload" % took)
        self.assertLess(took, 30)
        self.wait_until(lambda: "endpoint up" in self.show("StatusText"), 10, "endpoint up")
        journal = self.C(["journalctl", "-u", "revokerd.service", "--no-pager", "-o", "cat"])
        self.assertIn("the endpoint changed: its health starts afresh, 1 pending token is due now", journal)

    def test_service_lifecycle(self):
        t0 = time.monotonic()
        self.install()
        group = self.C(["getent", "group", "revokerd"]).strip()
        self.assertRegex(group, r"^revokerd:x:\d+:app$")
        self.start_endpoint(0)

        # The socket alone; the service is not running yet.
        self.C(["systemctl", "start", "revokerd.socket"])
        self.assertEqual(self.C(["stat", "-c", "%U:%G %a %F", SOCKET]).strip(),
                         "root:revokerd 660 socket")
        self.assertEqual(self.show("ActiveState"), "inactive")
        # A user outside the group cannot even connect.
        rc, replies, err = self.client([{"op": "ping"}], user="65534", groups=("--clear-groups",))
        self.assertNotEqual(rc, 0)
        self.assertIn("Permission denied", err)

        # A revocation queued by a member of revokerd starts the daemon.
        self.revoke("nspawn-tok-1")
        self.wait_until(lambda: "nspawn-tok-1" in self.endpoint_tokens(0), 15,
                        "nspawn-tok-1 at the endpoint")
        self.wait_active("socket activation")

        # stop keeps the socket; start returns once READY=1 arrived.
        self.C(["systemctl", "stop", "revokerd.service"])
        self.assertEqual(self.show("ActiveState", unit="revokerd.socket"), "active")
        inode = self.C(["stat", "-c", "%i", SOCKET]).strip()
        self.C(["systemctl", "start", "revokerd.service"])
        s = self.show("ActiveState", "SubState", "ExecMainStartTimestampMonotonic",
                      "ActiveEnterTimestampMonotonic", "NRestarts")
        self.assertEqual((s["ActiveState"], s["SubState"]), ("active", "running"))
        self.assertGreaterEqual(int(s["ActiveEnterTimestampMonotonic"]),
                                int(s["ExecMainStartTimestampMonotonic"]))

        # systemctl status shows the daemon's STATUS= line.
        status = self.wait_until(lambda: self.show("StatusText"), 5, "a STATUS= line")
        out = self.ct.run(["systemctl", "status", "--no-pager", "revokerd.service"])[1]
        self.assertIn('Status: "%s"' % status, out)
        print("status: %s" % status)

        # The metrics listener works inside the unit's sandbox.
        scraped = self.C(["curl", "-sS", "--fail", "http://127.0.0.1:%d/metrics" % METRICS_PORT])
        self.assertIn('\nrevokerd_outcomes_total{event="revoked"} ', scraped)
        self.assertIn("\nrevokerd_db_commit_duration_seconds_count ", scraped)

        # reload of a bad file: systemctl reload fails and says why; the
        # daemon runs on with the old configuration.
        pid = self.show("MainPID")
        self.C(["sh", "-c", "printf '[logout]\\nconcurrency = banana\\n' >> /etc/revokerd/revokerd.conf"])
        rc, out, err = self.ct.run(["systemctl", "reload", "revokerd.service"])
        self.assertNotEqual(rc, 0, "systemctl reload of a bad file succeeded: " + out + err)
        self.assertEqual((self.show("MainPID"), self.show("ActiveState")), (pid, "active"))
        journal = self.C(["journalctl", "-u", "revokerd.service", "--no-pager", "-o", "cat"])
        self.assertIn("banana", journal, "the reason is in the journal")

        # reload: same process, new endpoint.
        self.start_endpoint(1)
        self.C(["cp", GUEST + "/revokerd-reload.conf", "/etc/revokerd/revokerd.conf"])
        self.C(["systemctl", "reload", "revokerd.service"])
        self.wait_active("reload")
        self.assertEqual(self.show("MainPID"), pid, "reload restarted the daemon")
        self.revoke("nspawn-tok-2")
        self.wait_until(lambda: "nspawn-tok-2" in self.endpoint_tokens(1), 15,
                        "nspawn-tok-2 at the endpoint of the reloaded config")
        self.assertNotIn("nspawn-tok-2", self.endpoint_tokens(0))

        # restart: a new process, the same socket file, still serving.
        self.C(["systemctl", "restart", "revokerd.service"])
        s = self.wait_active("restart")
        self.assertNotEqual(s["MainPID"], pid)
        self.assertEqual(self.C(["stat", "-c", "%i", SOCKET]).strip(), inode,
                         "the socket file was re-created")
        rc, replies, err = self.client([{"op": "ping"}])
        self.assertEqual((rc, [r.get("ok") for r in replies]), (0, [True]), err)

        # watchdog: a stalled loop gets the daemon restarted.
        restarts = int(self.show("NRestarts"))
        pid = s["MainPID"]
        self.C(["kill", "-STOP", pid])
        self.wait_until(lambda: int(self.show("NRestarts")) > restarts, 20,
                        "a watchdog restart", interval=0.1)
        s = self.wait_active("the watchdog restart")
        self.assertNotEqual(s["MainPID"], pid)
        journal = self.C(["journalctl", "--no-pager", "-o", "cat", "-u", "revokerd.service"])
        self.assertIn("Watchdog timeout", journal)
        self.revoke("nspawn-tok-3")
        self.wait_until(lambda: "nspawn-tok-3" in self.endpoint_tokens(1), 15,
                        "nspawn-tok-3 after the watchdog restart")

        # A final 4xx is a warning line with the token's fields (routine
        # outcomes may be below the configured log level).
        self.revoke("s422-nspawn-tok-4")
        self.wait_until(lambda: "s422-nspawn-tok-4" in self.endpoint_tokens(1), 15,
                        "s422-nspawn-tok-4 at the endpoint")

        def rejected_entry():
            out = self.C(["journalctl", "--no-pager", "-o", "json", "-u", "revokerd.service",
                          "EVENT=rejected"])
            return [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        entry = self.wait_until(rejected_entry, 10, "the journal entry of the rejected token")[0]
        self.assertEqual((entry.get("PRIORITY"), entry.get("HTTP_STATUS")), ("4", "422"), entry)
        self.assertRegex(entry.get("TOKEN_ID", ""), r"^\d+$")
        self.assertRegex(entry.get("FINGERPRINT", ""), r"^[0-9a-f]{16}$")

        # A clean stop: exit 0 after STOPPING=1.
        self.C(["systemctl", "stop", "revokerd.service"])
        s = self.show("Result", "ExecMainStatus")
        self.assertEqual((s["Result"], s["ExecMainStatus"]), ("success", "0"))

        # journalctl: the daemon's lines carry priorities and fields, no secret.
        out = self.C(["journalctl", "--no-pager", "-o", "json", "-u", "revokerd.service"])
        entries = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        own = [e for e in entries if e.get("_COMM") == "revokerd"]
        self.assertTrue(own, "no journal entry from revokerd itself")
        prios = {}
        for e in own:
            self.assertIn("PRIORITY", e)
            prios[e["PRIORITY"]] = prios.get(e["PRIORITY"], 0) + 1
        print("journal priorities of revokerd's %d lines: %s" % (len(own), sorted(prios.items())))
        self.assertGreaterEqual(len(prios), 2, "one priority for everything")
        export = self.C(["journalctl", "--no-pager", "-o", "export"])
        for token in self.secrets:
            self.assertNotIn(token, export, "a token secret in the journal")
        print("walk took %.1f s" % (time.monotonic() - t0))

    # -- journal fields (issue 15 item 7), apart from the walk ----------------

    def test_journal_fields(self):
        """journald shows the caller's CODE_FILE/CODE_LINE/CODE_FUNC, not
        log.c's, and every line about a token carries TOKEN_ID."""
        self.install()
        self.start_endpoint(0)
        self.C(["systemctl", "start", "revokerd.socket"])
        tid = self.revoke("s422-nspawn-journal")["id"]
        self.wait_active("socket activation")

        def entries(*match):
            out = self.C(["journalctl", "--no-pager", "-o", "json", "-u", "revokerd.service"] + list(match))
            return [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        rejected = self.wait_until(lambda: entries("EVENT=rejected"), 15, "the rejected token's entry")[0]
        self.assertEqual((rejected.get("CODE_FILE"), rejected.get("CODE_FUNC")), ("report.c", "report_outcome"))
        self.assertRegex(rejected.get("CODE_LINE", ""), r"^\d+$")
        self.assertEqual(rejected.get("TOKEN_ID"), str(tid))
        requested = [e for e in entries("TOKEN_ID=%d" % tid)
                     if e.get("MESSAGE", "").startswith("control: revocation requested")]
        self.assertEqual(len(requested), 1, "the socket's request line carries TOKEN_ID")
        self.assertEqual((requested[0].get("CODE_FILE"), requested[0].get("CODE_FUNC")),
                         ("proto.c", "op_revoke_token"))
        own = [e for e in entries() if e.get("_COMM") == "revokerd"]
        self.assertTrue(own)
        self.assertEqual([e for e in own if e.get("CODE_FILE") in (None, "log.c")], [],
                         "every line of revokerd names its caller")

    def test_installed_pages_completion_and_config(self):
        """What `meson install` puts down answers in the container: `man
        revokerd`, `man 5 revokerd.conf` and `man revokerctl` from the
        installed man tree, bash-completion's loader completing revokerctl
        from the installed file; and a second install keeps an edited
        configuration."""
        build = os.path.dirname(os.path.dirname(self.revokerd))
        dest = os.path.join(self.dir, "srv", "dest")  # GUEST/dest in the container

        def install():
            r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", dest],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        install()
        installed = json.loads(subprocess.run(["meson", "introspect", "--installed", build], check=True,
                                              capture_output=True, text=True).stdout)
        by_name = {os.path.basename(p): p for p in installed.values()}
        # The container's /etc is empty; man-db's configuration is the host's, as Debian installs it.
        shutil.copy("/etc/manpath.config", os.path.join(self.dir, "srv"))
        self.C(["cp", GUEST + "/manpath.config", "/etc/manpath.config"])
        mandir = os.path.dirname(os.path.dirname(by_name["revokerd.8"]))
        for page, want in ((["revokerd"], "revokerd - "), (["5", "revokerd.conf"], "revokerd.conf - "),
                           (["revokerctl"], "revokerctl - ")):
            out = self.C(["env", "MANPATH=%s/dest%s" % (GUEST, mandir), "MANWIDTH=80", "man", "-P", "cat"] + page)
            self.assertIn(want, out, page)

        completion = next(p for p in installed.values() if p.endswith("/completions/revokerctl"))
        script = ("source /usr/share/bash-completion/bash_completion; source %s/dest%s; "
                  "COMP_WORDS=(revokerctl st); COMP_CWORD=1; COMP_LINE='revokerctl st'; COMP_POINT=13; "
                  "f=$(complete -p revokerctl | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p'); "
                  "$f revokerctl st revokerctl; printf '%%s\\n' \"${COMPREPLY[@]}\"" % (GUEST, completion))
        out = self.C(["bash", "-c", script])
        self.assertEqual(sorted(out.split()), ["stats", "status"], out)

        opts = {o["name"]: o["value"] for o in json.loads(subprocess.run(
            ["meson", "introspect", "--buildoptions", build], check=True, capture_output=True, text=True).stdout)}
        config = dest + os.path.join(opts["prefix"], opts["sysconfdir"], "revokerd", "revokerd.conf")
        with open(config, "a") as f:
            f.write("# edited by the operator\n")
        install()
        with open(config) as f:
            self.assertTrue(f.read().endswith("# edited by the operator\n"), "a second install replaced " + config)


if __name__ == "__main__":
    harness.main()
