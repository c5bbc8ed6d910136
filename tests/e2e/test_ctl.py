"""End-to-end tests of the control socket (issue 3) against the real daemon,
the real socket, the stand-in endpoint and a real database: every request,
several per write and per connection, hundreds of concurrent clients, peer
credentials, a stale socket, a second daemon, socket activation, and every
kind of bad input the issue lists."""

import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

import harness


class Client:
    """A control-socket client speaking newline-delimited JSON."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        """The next reply line (bytes, without '\\n'); None at EOF or reset."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def reply(self):
        line = self.line()
        if line is None:
            raise AssertionError("connection closed without a reply")
        return json.loads(line)

    def request(self, obj):
        self.send(json.dumps(obj) + "\n")
        return self.reply()

    def at_eof(self):
        """True once the daemon closed the connection (after any queued lines)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk

    def close(self):
        self.sock.close()


def as_nobody(extra=()):
    """setpriv prefix to run a command as uid/gid 65534 without groups."""
    return ["setpriv", "--reuid=65534", "--regid=65534"] + list(extra or ["--clear-groups"])


# A client run under another uid: sends a ping, prints the reply line or the
# connect error.
FOREIGN_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-error", e.errno)
    sys.exit(0)
try:
    s.sendall(b'{"op":"ping"}\n')
except OSError:
    pass  # refused and closed already: the reply is still there to read
buf = b""
while b"\n" not in buf:
    c = s.recv(4096)
    if not c:
        break
    buf += c
print(buf.split(b"\n")[0].decode())
"""


class CtlTest(harness.E2ETestCase):

    def client(self, d, timeout=10):
        c = Client(d.socket_path, timeout)
        self.addCleanup(c.close)
        return c

    def start(self, config=None, endpoint=True):
        ep = self.endpoint() if endpoint else None
        d = self.daemon(ep, config=config)
        return ep, d, self.app(d)

    # --- every request ----------------------------------------------------

    def test_every_request(self):
        ep, d, app = self.start()
        c = self.client(d)
        secrets = []

        r = c.request({"op": "ping"})
        self.assertTrue(r["ok"])
        self.assertIn("version", r)

        # revoke by token (new to the table), with subject and reason
        tok = "e2e-ctl-token-1"
        secrets.append(tok)
        r = c.request({"op": "revoke", "token": tok, "subject": "alice", "reason": "logout"})
        self.assertEqual(r["ok"], True, r)
        self.assertEqual(r["state"], "pending")
        tid = r["id"]
        row = app.row(tid)
        self.assertEqual((row["subject"], row["flag_reason"], row["due_reason"]),
                         ("alice", "logout", "requested"))
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "token revoked")
        self.assertEqual(ep.wait_requests(tok)[0]["token"], tok)
        due = [e for e in app.audit(tid) if e["event"] == "due"]
        self.assertEqual([e["detail"] for e in due], ["requested"])

        # the same token again: same row, reported as revoked, no duplicate
        r = c.request({"op": "revoke", "token": tok})
        self.assertEqual((r["ok"], r["id"], r["state"]), (True, tid, "revoked"))
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens WHERE fingerprint = ?",
                                   (harness.fingerprint(tok),))[0]["n"], 1)

        # revoke by id
        far = harness.now_s() + 86400
        tok2 = "e2e-ctl-token-2"
        secrets.append(tok2)
        id2 = app.insert(tok2, expires_at=far, subject="bob")
        r = c.request({"op": "revoke", "id": id2, "reason": "compromised"})
        self.assertEqual((r["ok"], r["count"], r["ids"]), (True, 1, [id2]), r)
        self.wait_until(lambda: app.state(id2) == "revoked", 10, "token by id revoked")
        r = c.request({"op": "revoke", "id": id2})
        self.assertEqual((r["count"], r["ids"], r["state"]), (0, [], "revoked"))

        # revoke by subject: only that subject's active tokens
        subj = ["e2e-ctl-carol-%d" % i for i in range(3)]
        secrets += subj
        ids = [app.insert(t, expires_at=far, subject="carol") for t in subj]
        other = app.insert("e2e-ctl-dave", expires_at=far, subject="dave")
        secrets.append("e2e-ctl-dave")
        r = c.request({"op": "revoke", "subject": "carol", "reason": "offboarded"})
        self.assertEqual((r["ok"], r["count"], sorted(r["ids"])), (True, 3, sorted(ids)), r)
        self.wait_until(lambda: app.all_in(ids, ("revoked",)), 10, "subject's tokens revoked")
        self.assertEqual(app.state(other), "active")

        # status
        r = c.request({"op": "status", "id": tid})
        self.assertTrue(r["ok"])
        self.assertEqual((r["id"], r["state"], r["subject"], r["fingerprint"]),
                         (tid, "revoked", "alice", harness.fingerprint(tok)))
        self.assertEqual(r["last_event"], "revoked")
        self.assertIsNone(r["next_attempt_at"])
        self.assertRegex(r["finished_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(r["attempts"], 0)

        # retry: a token the endpoint rejects (422) fails; retry requeues it
        bad = "s422-e2e-ctl-rejected"
        secrets.append(bad)
        r = c.request({"op": "revoke", "token": bad})
        bid = r["id"]
        self.wait_until(lambda: app.state(bid) == "failed", 10, "rejected token failed")
        n_before = len(ep.requests(bad))
        r = c.request({"op": "retry", "id": bid})
        self.assertEqual((r["ok"], r["count"], r["ids"]), (True, 1, [bid]), r)
        self.assertIn("requeued", app.events(bid))
        self.wait_until(lambda: len(ep.requests(bad)) > n_before and app.state(bid) == "failed",
                        10, "retried and failed again")
        r = c.request({"op": "retry", "failed": True})
        self.assertEqual((r["ok"], r["count"]), (True, 1), r)
        self.assertEqual(app.events(bid).count("requeued"), 2)
        r = c.request({"op": "retry", "id": tid})
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"], "token %d is revoked, not failed; only failed tokens can be "
                                     "retried" % tid)

        # stats: counts as the table has them, totals since start; rows
        # only the hasher can have hashed (never due, never looked up)
        fresh = [app.insert("e2e-ctl-fresh-%d" % i, expires_at=far) for i in range(3)]
        self.wait_until(lambda: all(app.row(i)["token_sha256"] for i in fresh), 10, "new rows hashed")
        self.wait_until(lambda: app.state(bid) == "failed", 10, "failed again")
        r = c.request({"op": "stats"})
        self.assertTrue(r["ok"])
        for state in ("active", "pending", "revoked", "failed"):
            n = app.query("SELECT count(*) AS n FROM tokens WHERE state = ?", (state,))[0]["n"]
            self.assertEqual(r["states"][state], n, state)
        self.assertGreaterEqual(r["totals"]["revoked"], 5)
        self.assertGreaterEqual(r["totals"]["rejected"], 2)
        self.assertGreaterEqual(r["totals"]["hashed"], 3)
        self.assertEqual(r["endpoint"]["health"], "up")
        self.assertGreaterEqual(r["uptime_s"], 0)
        for key in ("queued", "in_flight", "uncommitted", "db_errors"):
            self.assertIsInstance(r[key], int, key)

        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(secrets, d, app)
        self.assertEqual(d.sanitizer_errors(), [])

    # --- framing ------------------------------------------------------------

    def test_several_requests_per_write_and_connection(self):
        _, d, _ = self.start()
        c = self.client(d)
        # 200 requests in one write; each status names its id, so order shows.
        ids = list(range(900001, 900201))
        c.send("".join('{"op":"status","id":%d}\n' % i for i in ids))
        for i in ids:
            self.assertEqual(c.reply()["error"], "no token with id %d" % i)
        # cut at arbitrary places, with "\r\n" and blank lines between
        data = b'{"op":"ping"}\r\n\n{"op":"status","id":5}\n{"op":"fly"}\n'
        for k in range(0, len(data), 3):
            c.send(data[k:k + 3])
            time.sleep(0.001)
        self.assertTrue(c.reply()["ok"])
        self.assertEqual(c.reply()["error"], "no token with id 5")
        self.assertTrue(c.reply()["error"].startswith("unknown op 'fly'"))
        self.assertTrue(c.request({"op": "ping"})["ok"])

    def test_many_concurrent_clients(self):
        n = 320
        _, d, app = self.start(config={"daemon.max_clients": "400"})
        clients = [Client(d.socket_path, 30) for _ in range(n)]
        for c in clients:
            self.addCleanup(c.close)
        # All connected at once, then each sends two requests in one write.
        for i, c in enumerate(clients):
            c.send('{"op":"revoke","token":"e2e-many-%d"}\n{"op":"ping"}\n' % i)
        ids = []
        for c in clients:
            r = c.reply()
            self.assertTrue(r["ok"], r)
            ids.append(r["id"])
            self.assertTrue(c.reply()["ok"])
        self.assertEqual(len(set(ids)), n)
        self.wait_until(lambda: app.all_in(ids, ("revoked",)), 60, "every token revoked")
        for c in clients:
            c.close()
        self.assertEqual(d.stop(), 0)
        self.assertEqual(d.sanitizer_errors(), [])

    # --- access -------------------------------------------------------------

    def open_up(self, d):
        """Let other uids reach the socket file, so that the daemon's own
        credentials check is what decides."""
        os.chmod(self.dir, 0o755)
        os.chmod(d.socket_path, 0o666)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a client as another uid")
    def test_peer_refused_by_uid(self):
        _, d, _ = self.start()
        os.chmod(self.dir, 0o755)
        # The file mode (0660, root's group) already keeps nobody out...
        rc, out, _ = harness.run(as_nobody() + [sys.executable, "-c", FOREIGN_CLIENT,
                                                d.socket_path])
        self.assertEqual(out.strip(), "connect-error %d" % errno.EACCES)
        self.assertEqual(os.stat(d.socket_path).st_mode & 0o7777, 0o660)
        # ...and past it, SO_PEERCRED does.
        self.open_up(d)
        rc, out, err = harness.run(as_nobody() + [sys.executable, "-c", FOREIGN_CLIENT,
                                                  d.socket_path])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"ok": False, "error": "permission denied"})
        self.wait_until(lambda: "permission denied for uid 65534" in d.stderr(), 5,
                        "log line naming the uid")
        # Root is still served.
        self.assertTrue(self.client(d).request({"op": "ping"})["ok"])

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a client as another uid")
    def test_control_group_accepted(self):
        _, d, _ = self.start(config={"daemon.control_group": "users"})
        os.chmod(self.dir, 0o755)
        st = os.stat(d.socket_path)
        self.assertEqual((st.st_mode & 0o7777, st.st_gid), (0o660, 100))  # given to the group
        # A member through a supplementary group, with no other access: the
        # socket file's group lets it connect, SO_PEERGROUPS lets it in.
        rc, out, err = harness.run(as_nobody(["--groups=100"]) +
                                   [sys.executable, "-c", FOREIGN_CLIENT, d.socket_path])
        self.assertEqual(rc, 0, err)
        self.assertTrue(json.loads(out)["ok"], out)
        # Through its primary group.
        rc, out, _ = harness.run(["setpriv", "--reuid=65534", "--regid=100", "--clear-groups",
                                  sys.executable, "-c", FOREIGN_CLIENT, d.socket_path])
        self.assertTrue(json.loads(out)["ok"], out)
        # Not a member: refused.
        self.open_up(d)
        rc, out, err = harness.run(as_nobody() + [sys.executable, "-c", FOREIGN_CLIENT,
                                                  d.socket_path])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["error"], "permission denied", (out, err))

    # --- the socket file ----------------------------------------------------

    def test_stale_socket_replaced(self):
        ep = self.endpoint()
        d = self.daemon(ep, start=False)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.socket_path)  # a crashed run's file: nobody listens
        s.close()
        d.start()
        self.assertTrue(self.client(d).request({"op": "ping"})["ok"])
        self.assertIn("replaced the stale socket file %s" % d.socket_path, d.stderr())
        # After a kill -9 the file stays behind; the next start replaces it.
        d.kill9()
        self.assertTrue(os.path.exists(d.socket_path))
        d.start()
        self.assertTrue(self.client(d).request({"op": "ping"})["ok"])
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(d.socket_path), "removed at a clean stop")

    def test_second_daemon_refused(self):
        ep, d, _ = self.start()
        d2 = self.daemon(ep, config={"daemon.socket": d.socket_path}, start=False)
        d2.start(wait_ready=False)
        d2.proc.wait(15)
        self.assertEqual(d2.proc.returncode, 1)
        self.assertIn("another revokerd is already listening on %s" % d.socket_path, d2.stderr())
        self.assertTrue(self.client(d).request({"op": "ping"})["ok"], "the first one still serves")

        # A file that is not a socket is never replaced.
        path = os.path.join(self.dir, "not-a-socket")
        with open(path, "w") as f:
            f.write("keep me")
        d3 = self.daemon(ep, config={"daemon.socket": path}, start=False)
        d3.start(wait_ready=False)
        d3.proc.wait(15)
        self.assertEqual(d3.proc.returncode, 1)
        self.assertIn("%s exists and is not a socket" % path, d3.stderr())
        with open(path) as f:
            self.assertEqual(f.read(), "keep me")

    def test_socket_activation(self):
        """LISTEN_FDS: the daemon serves the socket it is given and leaves
        the file alone at exit (systemd owns it)."""
        ep = self.endpoint()
        d = self.daemon(ep, start=False,
                        config={"daemon.socket": os.path.join(self.dir, "unused.sock")})
        path = os.path.join(self.dir, "activated.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ls.listen(16)
        self.addCleanup(ls.close)
        wrapper = ("import os, sys\n"
                   "os.dup2(int(sys.argv[1]), 3)\n"
                   "os.environ['LISTEN_FDS'] = '1'\n"
                   "os.environ['LISTEN_PID'] = str(os.getpid())\n"
                   "os.execv(sys.argv[2], sys.argv[2:])\n")
        env = dict(os.environ, NOTIFY_SOCKET=d.notify.path)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC"):
            env.pop(k, None)
        errpath = os.path.join(self.dir, "activated.stderr")
        with open(errpath, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", wrapper, str(ls.fileno()),
                                     harness.binary("REVOKERD"), "--config", d.config_path],
                                    pass_fds=(ls.fileno(),), stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, env=env, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        d.notify.wait_for("READY", "1", timeout=15)
        c = Client(path)
        self.assertTrue(c.request({"op": "ping"})["ok"])
        c.close()
        self.assertFalse(os.path.exists(os.path.join(self.dir, "unused.sock")))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 0)
        self.assertTrue(os.path.exists(path), "a socket-activated file is never unlinked")

    # --- bad input ----------------------------------------------------------

    def test_line_over_64k(self):
        _, d, _ = self.start()
        other = self.client(d)
        c = self.client(d)
        c.send(b'{"op":"ping","pad":"' + b"x" * (64 * 1024 + 1))
        r = c.reply()
        self.assertEqual(r, {"ok": False, "error": "request line longer than 65536 bytes; "
                                                   "closing the connection"})
        self.assertTrue(c.at_eof())
        self.assertTrue(other.request({"op": "ping"})["ok"], "other clients unaffected")
        # 64 KiB exactly (JSON padded with spaces) is served.
        c2 = self.client(d)
        line = b'{"op":"ping"}'
        c2.send(line + b" " * (65536 - len(line)) + b"\n")
        self.assertTrue(c2.reply()["ok"])

    def test_binary_garbage(self):
        _, d, app = self.start()
        c = self.client(d)
        garbage = bytes(range(256)) * 8 + os.urandom(8192)
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in garbage.split(b"\n")]
        expected = sum(1 for ln in lines[:-1] if ln)
        c.send(garbage + b"\n")
        if lines[-1]:
            expected += 1
        for _ in range(expected):
            r = c.reply()
            self.assertFalse(r["ok"])
            self.assertTrue(r["error"].startswith(("invalid JSON", "a request must be",
                                                   "empty request")), r)
        self.assertTrue(c.request({"op": "ping"})["ok"], "the connection still works")
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens")[0]["n"], 0)

    def test_bad_requests(self):
        _, d, app = self.start()
        c = self.client(d)
        cases = [
            (b"{", "invalid JSON at line 1, column 1 (byte 1)"),
            (b"[]", "a request must be a JSON object"),
            (b'{"op":"nope"}', "unknown op 'nope'; valid ops: revoke, status, retry, stats, metrics, ping, track, hold, release, drop, queue, shape"),
            (b'{"op":"revoke"}', "revoke needs one of"),
            (b'{"op":"revoke","id":"7"}', "field 'id' must be a positive integer, got a string"),
            (b'{"op":"revoke","token":""}', "field 'token' must not be empty"),
            (b'{"op":"revoke","token":"' + b"k" * 8193 + b'"}',
             "field 'token' is 8193 bytes long; at most 8192 are allowed"),
            (b'{"op":"revoke","token":"e2e-SECRET\\u0000x"}', "invalid JSON"),
            (b'{"op":"revoke","token":"e2e-SECRET\x00x"}', "invalid JSON"),
            (b'{"op":"revoke","token":"a","token":"b"}', "invalid JSON"),
            (b'{"op":"revoke","tokn":"e2e-SECRET"}', "unknown field 'tokn' for op revoke"),
            (b'{"op":"status"}', "status needs 'id'"),
            (b'{"op":"retry","failed":false}', "field 'failed' must be true"),
        ]
        for line, want in cases:
            c.send(line + b"\n")
            raw = c.line()
            self.assertIsNotNone(raw, line[:40])
            self.assertNotIn(b"e2e-SECRET", raw)
            r = json.loads(raw)
            self.assertFalse(r["ok"], line[:40])
            self.assertTrue(r["error"].startswith(want), (line[:40], r))
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens")[0]["n"], 0)
        self.assertEqual(app.query("SELECT count(*) AS n FROM audit")[0]["n"], 0)
        self.assertTrue(c.request({"op": "ping"})["ok"])

    def test_idle_client_closed(self):
        _, d, _ = self.start(config={"daemon.client_idle": "2s"})
        quiet = self.client(d)
        busy = self.client(d)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:   # busy keeps asking: it stays
            self.assertTrue(busy.request({"op": "ping"})["ok"])
            time.sleep(0.1)
        r = quiet.reply()
        self.assertFalse(r["ok"])
        self.assertTrue(r["error"].startswith("idle timeout"), r)
        self.assertTrue(quiet.at_eof())
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.assertTrue(busy.request({"op": "ping"})["ok"])

    def test_max_clients(self):
        _, d, _ = self.start(config={"daemon.max_clients": "3"})
        first = [self.client(d) for _ in range(3)]
        for c in first:
            self.assertTrue(c.request({"op": "ping"})["ok"])
        extra = self.client(d)
        self.assertEqual(extra.reply(), {"ok": False, "error": "too many clients (max 3)"})
        self.assertTrue(extra.at_eof())
        self.assertTrue(first[0].request({"op": "ping"})["ok"], "the others unaffected")
        first[1].close()

        def room():
            c = Client(d.socket_path)
            try:
                return c.request({"op": "ping"})["ok"]
            finally:
                c.close()
        self.wait_until(room, 5, "room for a new client once one left")

    def test_client_gone_before_reply(self):
        ep, d, app = self.start()
        for i in range(20):
            c = Client(d.socket_path)
            c.send('{"op":"revoke","token":"e2e-gone-%d","subject":"gone"}\n' % i)
            # RST instead of FIN where it applies, and never read the reply
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

        def all_revoked():
            rows = app.query("SELECT state FROM tokens WHERE subject = 'gone'")
            return len(rows) == 20 and all(r["state"] == "revoked" for r in rows)
        self.wait_until(all_revoked, 15, "every abandoned request carried out")
        self.assertTrue(self.client(d).request({"op": "ping"})["ok"])
        self.assertEqual(d.stop(), 0)
        self.assertEqual(d.sanitizer_errors(), [])

    def test_database_busy(self):
        _, d, app = self.start()
        c = self.client(d)
        app.execute("BEGIN IMMEDIATE")
        try:
            r = c.request({"op": "revoke", "token": "e2e-busy-1"})
            self.assertEqual(r, {"ok": False, "error": "database is busy (another process holds "
                                                       "a write lock); try again"})
            self.assertTrue(c.request({"op": "ping"})["ok"], "the socket keeps answering")
        finally:
            app.execute("COMMIT")
        r = c.request({"op": "revoke", "token": "e2e-busy-1"})
        self.assertTrue(r["ok"], r)


if __name__ == "__main__":
    harness.main()
