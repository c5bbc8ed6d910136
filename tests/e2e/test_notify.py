"""revokerd and systemd's notify protocol, with the test owning NOTIFY_SOCKET
(issue 4): the watchdog cadence and a stalled loop, RELOADING/READY around
SIGHUP with live settings applied and a bad file refused, STOPPING at the
end, and socket activation through systemd-socket-activate."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness


def ping(path, timeout=5):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b'{"op":"ping"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


class Watchdog(harness.E2ETestCase):
    def test_pings_at_half_the_interval_and_stop_when_the_loop_stalls(self):
        ep = self.endpoint()
        d = self.daemon(ep, start=False)
        d.start(env={"WATCHDOG_USEC": "400000"})
        time.sleep(1.5)
        pings = [t for t, v in d.notify.values("WATCHDOG", d.pid) if v == "1"]
        self.assertGreaterEqual(len(pings), 5, "pings every ~200 ms expected")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), 0.35, "a ping gap above the 400 ms watchdog's half: %r" % gaps)

        # A stalled loop (SIGSTOP) sends nothing; it resumes after SIGCONT.
        d.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        time.sleep(1.0)
        d.send_signal(signal.SIGCONT)
        during = [t for t in (t for t, _ in d.notify.values("WATCHDOG", d.pid))
                  if stopped + 0.05 < t < stopped + 0.95]
        self.assertEqual(during, [], "pings while the process was stopped")
        d.notify.wait_for("WATCHDOG", "1", timeout=2, after=stopped + 1.0)
        self.assertEqual(d.stop(), 0)

    def test_no_pings_without_watchdog_usec(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        time.sleep(0.8)
        self.assertEqual(d.notify.count("WATCHDOG", pid=d.pid), 0)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(d.notify.count("STOPPING", "1", pid=d.pid), 1)


class Reload(harness.E2ETestCase):
    def test_sighup_reloads_live_settings_around_reloading_and_ready(self):
        ep1 = self.endpoint()
        ep2 = self.endpoint()
        d = self.daemon(ep1, config={"daemon.log_level": "info"})
        app = self.app(d)
        first = app.insert("reload-one", flagged=1)
        self.wait_until(lambda: app.state(first) == "revoked", 5, "first token revoked")

        # New endpoint and log level: RELOADING=1 with MONOTONIC_USEC, then READY=1.
        d.set({"logout.url": ep2.url, "daemon.log_level": "debug"})
        before = time.monotonic()
        d.send_signal(signal.SIGHUP)
        reloading = d.notify.wait_for("RELOADING", "1", timeout=5, after=before)
        self.assertIsNotNone(reloading)
        msgs = [m for m in d.notify.snapshot() if m.mono >= before and ("RELOADING", "1") in m.fields()]
        self.assertTrue(any(k == "MONOTONIC_USEC" and int(v) > 0 for k, v in msgs[0].fields()),
                        "RELOADING=1 without MONOTONIC_USEC: %r" % msgs[0].text)
        d.notify.wait_for("READY", "1", timeout=5, after=msgs[0].mono)
        second = app.insert("reload-two", flagged=1)
        self.wait_until(lambda: app.state(second) == "revoked", 5, "second token revoked")
        self.assertEqual(len(ep2.requests("reload-two")), 1, "the reloaded url was not used")
        self.assertEqual(ep1.requests("reload-two"), [])
        self.assertIn("configuration reloaded", d.stderr())
        self.assertEqual(d.stop(), 0)

    def test_reload_while_a_request_hangs_at_the_old_url(self):
        """A request to the old URL that times out after a reload to a new
        one says nothing about the new one: the endpoint stays up and the
        token goes to the new URL at once, not after retry.base."""
        slow = self.endpoint(delay_ms=4000)  # answers after the timeout: an endpoint-level failure
        good = self.endpoint()
        d = self.daemon(slow, config={"logout.timeout": "2s", "logout.down_after": "1",
                                      "retry.base": "1min", "retry.max_delay": "15min"})
        app = self.app(d)
        tid = app.insert("reload-hang", flagged=1)
        self.wait_until(lambda: slow.requests("reload-hang"), 5, "the request in flight at the old URL")
        d.set({"logout.url": good.url})
        d.send_signal(signal.SIGHUP)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "revoked at the new URL within seconds")
        self.assertEqual(len(good.requests("reload-hang")), 1)
        self.assertNotIn("logout endpoint is down", d.stderr())
        self.assertEqual(d.stop(), 0)

    def test_bad_file_is_refused_and_the_old_configuration_kept(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        with open(d.config_path, "a") as f:
            f.write("[logout]\nconcurrency = lots\n")
        before = time.monotonic()
        d.send_signal(signal.SIGHUP)
        d.notify.wait_for("RELOADING", "1", timeout=5, after=before)
        d.notify.wait_for("READY", "1", timeout=5, after=before)
        self.wait_until(lambda: "reload refused" in d.stderr(), 5, "refusal logged")
        self.assertRegex(d.stderr(), r"revokerd[0-9]*\.conf:\d+: \[logout\] concurrency")
        tid = app.insert("after-bad-reload", flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 5, "still revoking with the old configuration")
        self.assertEqual(d.stop(), 0)

    def test_restart_only_settings_are_named(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        d.set({"daemon.database": os.path.join(self.dir, "other.db")})
        d.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "daemon.database changed" in d.stderr(), 5, "restart-only setting named")
        self.assertIn("takes effect at the next restart", d.stderr())
        self.assertEqual(d.stop(), 0)


@unittest.skipUnless(shutil.which("systemd-socket-activate"), "systemd-socket-activate is not installed")
class SocketActivation(harness.E2ETestCase):
    def test_listening_socket_from_systemd_is_used_and_left_in_place(self):
        ep = self.endpoint()
        d = self.daemon(ep, start=False)
        sock = os.path.join(self.dir, "activated.sock")
        d.set({"daemon.socket": os.path.join(self.dir, "unused.sock")})
        cmd = ["systemd-socket-activate", "-l", sock, "-E", "NOTIFY_SOCKET",
               "-E", "ASAN_OPTIONS", "-E", "UBSAN_OPTIONS"]
        # systemd-socket-activate execs the daemon once a client connects.
        d.start(prefix=cmd, wait_ready=False)
        self.wait_until(lambda: os.path.exists(sock), 5, "activation socket bound")
        inode = os.stat(sock).st_ino
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        client.connect(sock)
        client.sendall(b'{"op":"ping"}\n')
        self.assertTrue(client.recv(4096).startswith(b'{"ok":true'))
        client.close()
        d.wait_ready()
        self.assertTrue(ping(sock)["ok"])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "unused.sock")),
                         "the configured path was bound although systemd passed a socket")
        self.assertEqual(d.stop(), 0)
        self.assertTrue(os.path.exists(sock), "the daemon unlinked systemd's socket")
        self.assertEqual(os.stat(sock).st_ino, inode, "the socket was re-created")


if __name__ == "__main__":
    harness.main()
