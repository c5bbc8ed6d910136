"""End-to-end tests of how revokerd treats the secrets it is given (issue 6,
"Hostile input and secrets"), against the real binaries:

- no token (nor the client credential) in anything the daemon or revokerctl
  writes, through every outcome, retries, timeouts, resets, socket requests
  good and bad, reloads, restarts and --check-config; nor when the logout
  endpoint echoes the token back in its error answers;
- the process is not dumpable: a process of the daemon's own uid can read
  neither its memory nor its environment;
- a revoked token's bytes leave the database file and its WAL (while the
  daemon runs, after a checkpoint, after it stopped); a failed token keeps
  its secret; daemon.keep_secrets = true keeps them all;
- the database, its -wal and -shm are 0600 and the socket 0660, whatever
  the umask;
- the audit log's hash chain catches a row altered, inserted or deleted
  behind the daemon's back, and `revokerctl audit --verify` names it."""

import hashlib
import http.server
import json
import grp
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import threading
import time
import unittest

import harness
from harness import now_s

NOBODY = 65534


def tok(kind):
    """A realistic bearer token: the endpoint's behaviour prefix, then 32
    url-safe random characters."""
    return "%s-%s" % (kind, secrets.token_urlsafe(24))


def needles(secret):
    """What a leak of `secret` may look like: the whole of it, its random
    part alone (a prefix cut off), and its hex encoding (a dump)."""
    tail = secret.rsplit("-", 1)[-1]
    out = {secret, secret.encode().hex()}
    if len(tail) >= 16:
        out.add(tail)
    return out


class Transcript:
    """Everything the daemon and revokerctl said, with where it came from."""

    def __init__(self):
        self.items = []

    def add(self, where, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.items.append((where, text))
        return text

    def find(self, secrets_):
        """[(where, secret, excerpt)] for every needle found."""
        hits = []
        for s in secrets_:
            for n in needles(s):
                for where, text in self.items:
                    i = text.find(n)
                    if i >= 0:
                        hits.append((where, s, text[max(0, i - 60):i + len(n) + 20]))
        return hits


class Client:
    """A control-socket client that records every reply byte for byte."""

    def __init__(self, path, transcript, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.transcript = transcript

    def send_line(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("control socket closed without a reply")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        self.transcript.add("socket reply", line)
        return json.loads(line)

    def request(self, obj):
        self.send_line(json.dumps(obj) + "\n")
        return self.reply()

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------
# an endpoint that echoes the token back in its error answers

class EchoHandler(http.server.BaseHTTPRequestHandler):
    """POST answers chosen by the token's prefix, each quoting the token:
    echo-json-  422 FastAPI-style, the token inside the validation message
    echo-text-  400 text/plain "invalid bearer token <token>"
    echo-cut-   403 JSON whose message is cut by revokerd's 200-byte detail
                limit in the middle of the token
    echo-raw-   400 non-JSON body, the token cut by the same limit
    echo-ra-    503 with "Retry-After: <token>" once, then 200."""

    protocol_version = "HTTP/1.1"
    seen = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        auth = self.headers.get("Authorization") or ""
        t = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with self.lock:
            self.seen[t] = self.seen.get(t, 0) + 1
            count = self.seen[t]
        if t.startswith("echo-json-"):
            body = json.dumps({"detail": [{"loc": ["header", "authorization"],
                                           "msg": "not a valid session token: %s" % t,
                                           "type": "value_error"}]}).encode()
            return self.answer(422, body)
        if t.startswith("echo-text-"):
            return self.answer(400, ("invalid bearer token %s\n" % t).encode(), "text/plain")
        if t.startswith("echo-cut-"):
            body = json.dumps({"detail": "refused %s: %s" % ("x" * 170, t)}).encode()
            return self.answer(403, body)
        if t.startswith("echo-raw-"):
            return self.answer(400, ("error: %s %s" % ("y" * 170, t)).encode(), "text/plain")
        if t.startswith("echo-ra-") and count == 1:
            return self.answer(503, b"{}", headers=[("Retry-After", t)])
        return self.answer(200, b"{}")


# --------------------------------------------------------------------------
# the audit hash chain, computed independently from auditrow.h's description

def audit_hash(prev, row):
    def text(v):
        if v is None:
            return "\\N"
        return v.replace("\\", "\\\\").replace("|", "\\|")

    def num(v):
        return "\\N" if v is None else str(v)

    parts = [prev, num(row["seq"]), num(row["at"]), num(row["token_id"]), text(row["fingerprint"]),
             text(row["event"]), num(row["attempt"]), num(row["http_status"]), text(row["detail"]),
             num(row["duration_ms"])]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


GENESIS = "0" * 64


class Secrets(harness.E2ETestCase):

    def ctl(self, d, transcript, *args, input=None):  # noqa: A002 - mirrors subprocess
        cmd = [harness.binary("REVOKERCTL"), "--config", d.config_path] + list(args)
        rc, out, err = harness.run(cmd, input=input, env={"TZ": "UTC"})
        transcript.add("revokerctl %s: stdout" % " ".join(args), out)
        transcript.add("revokerctl %s: stderr" % " ".join(args), err)
        return rc, out, err

    def assert_clean(self, transcript, secrets_):
        hits = transcript.find(secrets_)
        self.assertEqual(hits, [], "secrets found in what revokerd wrote (where, secret, excerpt)")

    def record_daemon_output(self, transcript, d, app):
        """stderr of every run, every notify datagram, every audit column,
        every tokens column but the secret itself."""
        transcript.add("stderr", d.stderr("all"))
        for m in d.notify.snapshot():
            transcript.add("notify", m.text)
        for r in app.query("SELECT * FROM audit ORDER BY seq"):
            transcript.add("audit seq %d" % r["seq"], json.dumps(r))
        for r in app.query("SELECT * FROM tokens ORDER BY id"):
            r.pop("token")
            r = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in r.items()}
            transcript.add("tokens id %d" % r["id"], json.dumps(r))

    # -- (a) no secret in anything written --------------------------------

    def test_no_secret_in_anything_written(self):
        t0 = time.monotonic()
        tr = Transcript()
        cred = "cred-" + secrets.token_urlsafe(24)
        credir = os.path.join(self.dir, "credentials")
        os.mkdir(credir, 0o700)
        with open(os.path.join(credir, "logout-credential"), "w") as f:
            f.write(cred + "\n")
        env = {"CREDENTIALS_DIRECTORY": credir}
        ep = self.endpoint()
        d = self.daemon(ep, start=False, config={
            "daemon.log_level": "debug",
            "logout.timeout": "1s",
            "logout.credential_header": "X-Client-Credential",
            "retry.max_attempts": "3",
        })
        d.start(env=env)
        app = self.app(d)
        every = [cred]

        # 1. Applications insert tokens that meet every outcome.
        counts = {"plain": 200, "s401": 5, "s422": 5, "s500x2": 5, "s500": 3, "s503x2": 3,
                  "s429x1ra1": 3, "garbage": 3, "s404x1": 2, "s302x1": 2}
        phase1 = [tok(k) for k, n in counts.items() for _ in range(n)]
        expiring = [tok("exp") for _ in range(20)]
        ids = app.insert_many(phase1, flagged=1)
        ids.update(app.insert_many(expiring, expires_at=now_s()))
        every += phase1 + expiring
        self.wait_until(lambda: app.all_in(ids.values(), ("revoked", "failed")), 60,
                        "every application token final")
        failed = {t for t in phase1 if t.startswith(("s422", "s500-"))}
        self.assertEqual({t for t, i in ids.items() if app.state(i) == "failed"}, failed)

        # 2. The control socket: good requests, then bad ones carrying secrets.
        c = Client(d.socket_path, tr)
        self.addCleanup(c.close)
        far = now_s() + 86400
        dormant = [tok("app") for _ in range(5)]
        dormant_ids = app.insert_many(dormant, expires_at=far)
        handed = [tok("sock") for _ in range(10)]
        every += dormant + handed
        sock_ids = {}
        for t in dormant + handed:
            r = c.request({"op": "revoke", "token": t, "reason": "test"})
            self.assertEqual((r["ok"], r["state"]), (True, "pending"), r)
            sock_ids[t] = r["id"]
        for t in dormant:
            self.assertEqual(sock_ids[t], dormant_ids[t], "found by its secret")
        r = c.request({"op": "revoke", "token": phase1[0], "subject": "someone"})
        self.assertEqual(r["state"], "revoked", r)
        r = c.request({"op": "revoke", "token": sorted(failed)[0]})
        self.assertEqual(r["state"], "failed", r)
        self.wait_until(lambda: app.all_in(sock_ids.values(), "revoked"), 30, "socket tokens revoked")
        for i in list(sock_ids.values()) + [ids[t] for t in sorted(failed)]:
            self.assertTrue(c.request({"op": "status", "id": i})["ok"])
        self.assertTrue(c.request({"op": "stats"})["ok"])
        r = c.request({"op": "retry", "failed": True})
        self.assertEqual(r["count"], len(failed), r)
        self.wait_until(lambda: app.all_in([ids[t] for t in failed], "failed"), 30, "failed again")

        bad = [tok("bad") for _ in range(20)]
        every += bad
        b = iter(bad)
        bad_lines = [
            '{"op":"revoke","token":"%s","id":1}' % next(b),
            '{"op":"revoke","token":"%s x"}' % next(b),
            '{"op":"revoke","token":"%s\\u0007"}' % next(b),
            '{"op":"revoke","token":"%s\\u0000"}' % next(b),
            '{"op":"revoke","token":"%s' % next(b),
            '{"op":"revoke","token":"%s"}}' % next(b),
            '{"op":"revoke","token":"%s","token":"%s"}' % (next(b), next(b)),
            '{"op":"revoke","tokn":"%s"}' % next(b),
            '{"op":"%s"}' % next(b),
            '{"%s":1}' % next(b),
            '{"op":"status","id":"%s"}' % next(b),
            '{"op":"retry","id":"%s"}' % next(b),
            '["%s"]' % next(b),
            '"%s"' % next(b),
            '%s' % next(b),
            '{"op":"revoke","token":"%s%s"}' % (next(b), "A" * 9000),
            '{"op":"revoke","token":"%s","extra":[1,2' % next(b),
        ]
        for line in bad_lines:
            c.send_line(line + "\n")
            r = c.reply()
            self.assertFalse(r["ok"], line[:80])
        c.send_line(b'{"op":"revoke","token":"' + next(b).encode() + b'\xff\xfe"}\n')
        self.assertFalse(c.reply()["ok"])
        # A line over the 64 KiB cap: refused, then the connection is closed.
        c2 = Client(d.socket_path, tr)
        self.addCleanup(c2.close)
        c2.send_line('{"op":"revoke","token":"%s","pad":"%s"}\n' % (next(b), "p" * 70000))
        self.assertFalse(c2.reply()["ok"])
        self.assertTrue(c.request({"op": "ping"})["ok"], "the daemon still serves")

        # 3. revokerctl, good and bad.
        ctl_tokens = [tok("ctl") for _ in range(3)]
        every += ctl_tokens
        ctl_ids = []
        for t in ctl_tokens:
            rc, out, err = self.ctl(d, tr, "revoke", "--token-stdin", input=t.encode() + b"\n")
            self.assertEqual(rc, 0, err)
            ctl_ids.append(int(re.match(r"token (\d+) ", out).group(1)))
        self.wait_until(lambda: app.all_in(ctl_ids, "revoked"), 30, "revokerctl tokens revoked")
        for i in ctl_ids:
            self.assertEqual(self.ctl(d, tr, "status", str(i))[0], 0)
            self.assertEqual(self.ctl(d, tr, "--json", "status", str(i))[0], 0)
        ctl_bad = [tok("ctlbad") for _ in range(4)]
        every += ctl_bad
        self.assertNotEqual(self.ctl(d, tr, "revoke", "--token-stdin",
                                     input=("%s with spaces\n" % ctl_bad[0]).encode())[0], 0)
        self.assertEqual(self.ctl(d, tr, "revoke", "--token=%s" % ctl_bad[1])[0], 2)
        self.assertEqual(self.ctl(d, tr, "revoke", ctl_bad[2])[0], 2)
        self.assertEqual(self.ctl(d, tr, "revoke", "--token", ctl_bad[3])[0], 2)
        for args in (["stats"], ["--json", "stats"], ["ping"], ["audit"], ["--json", "audit"],
                     ["audit", "--verify"]):
            self.assertEqual(self.ctl(d, tr, *args)[0], 0, args)

        # 4. Reload, then tokens that time out and reset; stop with them in
        # flight; start again (they are read back); stop again.
        d.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "configuration reloaded" in d.stderr(), 10, "reload")
        stuck = [tok("hang") for _ in range(2)] + [tok("reset") for _ in range(2)]
        every += stuck
        app.insert_many(stuck, flagged=1)
        for t in stuck:
            ep.wait_requests(t, 2, 30)
        self.assertEqual(d.stop(), 0)
        d.start(env=env)
        for t in stuck:
            ep.wait_requests(t, 3, 30)
        self.assertEqual(d.stop(), 0)
        rc, out, err = d.check_config()
        self.assertEqual(rc, 0, err)
        tr.add("--check-config stdout", out)
        tr.add("--check-config stderr", err)

        # Positive controls: these very strings went over the wire, and the
        # daemon said plenty about them.
        seen = ep.tokens_seen()
        for t in phase1 + expiring + dormant + handed + ctl_tokens + stuck:
            self.assertIn(t, seen)
        self.assertFalse(seen & set(bad + ctl_bad), "a refused request reached the endpoint")
        self.assertEqual({r["headers"].get("x-client-credential") for r in ep.requests()}, {cred})
        digests = {row["token_sha256"] for row in app.query("SELECT token_sha256 FROM tokens")}
        self.assertFalse(digests & {harness.sha256(t) for t in bad}, "a refused request was recorded")
        self.record_daemon_output(tr, d, app)
        for word in ("already_invalid", "rejected", "gave_up", "retry", "Operation timed out",
                     "configuration reloaded"):
            self.assertIn(word, d.stderr("all"))

        self.assert_clean(tr, every)
        self.assert_no_sanitizer_errors(d)
        print("\n  %d secrets, %d requests, %d bytes of output checked in %.1f s"
              % (len(every), len(ep.requests()), sum(len(t) for _, t in tr.items),
                 time.monotonic() - t0))

    def test_endpoint_echoing_the_token(self):
        EchoHandler.seen = {}
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = "http://127.0.0.1:%d%s" % (server.server_address[1], harness.LOGOUT_PATH)
        d = self.daemon(url=url, config={"daemon.log_level": "debug"})
        app = self.app(d)
        rejected = [tok(k) for k in ("echo-json", "echo-text", "echo-cut", "echo-raw") for _ in range(2)]
        paused = [tok("echo-ra") for _ in range(2)]
        ids = app.insert_many(rejected + paused, flagged=1)
        self.wait_until(lambda: app.all_in([ids[t] for t in rejected], "failed") and
                        app.all_in([ids[t] for t in paused], "revoked"), 30, "every token final")
        self.assertEqual(d.stop(), 0)
        tr = Transcript()
        self.record_daemon_output(tr, d, app)
        self.assert_clean(tr, rejected + paused)
        # The cut ones leave only a prefix: the fixed part and 8 random characters.
        prefixes = [t[:len("echo-cut-") + 8] for t in rejected if t.startswith(("echo-cut", "echo-raw"))]
        for where, text in tr.items:
            for p in prefixes:
                self.assertNotIn(p, text, "the start of a token, cut off, in %s" % where)
        # The answers were still worth recording: the detail says why.
        for t in rejected:
            detail = app.audit(ids[t], "rejected")[0]["detail"]
            self.assertRegex(detail, r"^HTTP 4\d\d: ", t)

    # -- (b) not dumpable ---------------------------------------------------

    def test_process_is_not_dumpable(self):
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            raise unittest.SkipTest("needs root and setpriv to run the daemon as another user")
        as_nobody = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]
        # The daemon as nobody, in a directory nobody owns.
        os.chown(self.dir, NOBODY, NOBODY)
        ep = self.endpoint()
        notify = self.notify_socket()
        os.chmod(notify.dir, 0o711)
        os.chmod(notify.path, 0o666)
        d = self.daemon(ep, start=False, notify=notify)
        d.start(prefix=as_nobody)
        app = self.app(d)
        t = tok("plain")
        i = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(i) == "revoked", 10, "revoked while running as nobody")

        def owner_and_peer_read(pid):
            """(uid owning /proc/pid/mem, uid in its status, what a peer
            process of uid nobody gets reading /proc/pid/environ)."""
            with open("/proc/%d/status" % pid) as f:
                uid = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
            owner = os.stat("/proc/%d/mem" % pid).st_uid
            rc, out, err = harness.run(as_nobody + ["head", "-c", "1", "/proc/%d/environ" % pid])
            return owner, uid, ("read" if rc == 0 else "refused" if "ermission denied" in err else err)

        # Control: an ordinary process of the same uid is open to its peers.
        peer = subprocess.Popen(as_nobody + ["sleep", "60"])
        self.addCleanup(peer.wait)
        self.addCleanup(peer.kill)
        self.wait_until(lambda: owner_and_peer_read(peer.pid)[1] == NOBODY, 5, "sleep as nobody")
        self.assertEqual(owner_and_peer_read(peer.pid), (NOBODY, NOBODY, "read"),
                         "the check itself: a dumpable process of uid nobody")
        # The daemon: its /proc files belong to root, its peers read nothing.
        self.assertEqual(owner_and_peer_read(d.pid), (0, NOBODY, "refused"),
                         "revokerd is dumpable: PR_SET_DUMPABLE 0 missing?")
        self.assertEqual(d.stop(), 0)

    # -- (c) a revoked token's bytes leave the file --------------------------

    def file_bytes(self, d):
        """{name: bytes} of the database file and its WAL, as they are now."""
        out = {}
        for suffix in ("", "-wal"):
            try:
                with open(d.db_path + suffix, "rb") as f:
                    out[os.path.basename(d.db_path + suffix)] = f.read()
            except FileNotFoundError:
                pass
        return out

    def holding(self, d, tokens_):
        """{token: [files holding its bytes]} for the tokens found on disk."""
        files = self.file_bytes(d)
        out = {}
        for t in tokens_:
            where = [name for name, data in files.items() if t.encode() in data]
            if where:
                out[t] = where
        return out

    def revoke_mix(self, d, app):
        """Tokens that end revoked (by the application, already invalid,
        handed over on the socket) and one that ends failed."""
        revoked = [tok("plain") for _ in range(30)] + [tok("s401") for _ in range(3)]
        failed = tok("s422")
        ids = app.insert_many(revoked + [failed], flagged=1)
        c = Client(d.socket_path, Transcript())
        self.addCleanup(c.close)
        for _ in range(3):
            t = tok("sock")
            ids[t] = c.request({"op": "revoke", "token": t})["id"]
            revoked.append(t)
        self.wait_until(lambda: app.all_in([ids[t] for t in revoked], "revoked") and
                        app.state(ids[failed]) == "failed", 20, "outcomes")
        return revoked, failed, ids

    def test_revoked_secret_leaves_the_file(self):
        d = self.daemon(self.endpoint())
        app = self.app(d)
        revoked, failed, ids = self.revoke_mix(d, app)
        for t in revoked:
            row = app.row(ids[t])
            self.assertIsNone(row["token"], "secret kept in the row")
            self.assertEqual((row["fingerprint"], row["token_sha256"]),
                             (harness.fingerprint(t), harness.sha256(t)), "identity kept")
        self.assertEqual(app.row(ids[failed])["token"], failed, "a failed token keeps its secret")
        # While the daemon runs, without anybody's checkpoint: the WAL frames
        # written before the secret was cleared go too.
        self.wait_until(lambda: not self.holding(d, revoked), 10,
                        "no revoked secret in the database file or its WAL")
        self.assertIn(failed, self.holding(d, [failed]), "the check itself: a kept secret is found")
        # After a checkpoint: the pages now in the database file are clean.
        app.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.assertEqual(self.holding(d, revoked), {})
        self.assertIn(failed, self.holding(d, [failed]))
        # After a clean stop, with every connection closed.
        self.assertEqual(d.stop(), 0)
        app.close()
        self.assertEqual(self.holding(d, revoked), {})
        self.assertEqual(self.holding(d, [failed]), {failed: [os.path.basename(d.db_path)]})

    def test_revoked_secret_leaves_rebuilt_pages(self):
        """10,000 rows that grow in random order split and rebuild the table's leaf
        pages (btree.c's rebuildPage()), which leaves old copies of cells,
        secrets included, between the cell pointers and the cells, where
        secure_delete does not reach (issue 20, item 3; at 100,000 tokens:
        test_secrets_scale.py, suite slow)."""
        d = self.daemon(self.endpoint(), config={"logout.concurrency": "32"})
        app = self.app(d)
        revoked = [tok("plain") for _ in range(10000)]
        ids = app.insert_many(revoked)
        order = list(ids.values())
        for column in ("subject", "flag_reason"):
            random.Random(column).shuffle(order)
            with app.transaction():
                for i in order:
                    app.execute("UPDATE tokens SET %s = ? WHERE id = ?" % column, ("%040d" % i, i))
        with app.transaction():
            app.execute("UPDATE tokens SET flagged = 1")
        self.wait_until(lambda: app.states() == {"revoked": len(revoked)}, 120, "every token revoked",
                        interval=0.2)
        wanted = {t.encode() for t in revoked}

        def left():
            # One pass over each file: holding() scans a file per token.
            return sorted({m for data in self.file_bytes(d).values()
                           for m in re.findall(rb"plain-[A-Za-z0-9_-]{32}", data)} & wanted)

        self.wait_until(lambda: not left(), 10, "no revoked secret in the database file or its WAL")
        self.assertEqual(d.stop(), 0)
        self.assertEqual(app.query("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
        app.close()
        self.assertEqual(left(), [])

    def test_keep_secrets_keeps_them(self):
        d = self.daemon(self.endpoint(), config={"daemon.keep_secrets": "true"})
        app = self.app(d)
        revoked, failed, ids = self.revoke_mix(d, app)
        for t in revoked + [failed]:
            self.assertEqual(app.row(ids[t])["token"], t)
        self.assertEqual(d.stop(), 0)
        app.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.assertEqual(set(self.holding(d, revoked + [failed])), set(revoked + [failed]))

    # -- (d) modes whatever the umask ----------------------------------------

    def test_modes_whatever_the_umask(self):
        ep = self.endpoint()
        for mask in (0o000, 0o077):
            d = self.daemon(ep, start=False)
            old = os.umask(mask)
            try:
                d.start()
            finally:
                os.umask(old)
            modes = {suffix: stat.S_IMODE(os.stat(d.db_path + suffix).st_mode)
                     for suffix in ("", "-wal", "-shm")}
            modes["socket"] = stat.S_IMODE(os.stat(d.socket_path).st_mode)
            self.assertEqual(modes, {"": 0o600, "-wal": 0o600, "-shm": 0o600, "socket": 0o660},
                             "umask %03o" % mask)
            self.assertTrue(stat.S_ISSOCK(os.stat(d.socket_path).st_mode))
            self.assertEqual(d.stop(), 0)
            self.assertEqual(stat.S_IMODE(os.stat(d.db_path).st_mode), 0o600)

    def test_existing_database_open_to_others_is_made_private(self):
        # Issue 20, item 9: a database that exists with 0644 (an operator's
        # copy, say), and -wal/-shm left 0644 by an earlier run.
        ep = self.endpoint()
        d = self.daemon(ep)
        self.assertEqual(d.stop(), 0)
        conn = sqlite3.connect(d.db_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("INSERT INTO tokens (token) VALUES ('mode-test')")
        conn.commit()  # keeps -wal and -shm while the connection is open
        for suffix in ("", "-wal", "-shm"):
            os.chmod(d.db_path + suffix, 0o644)
        d.start()
        conn.close()
        modes = {suffix: stat.S_IMODE(os.stat(d.db_path + suffix).st_mode) for suffix in ("", "-wal", "-shm")}
        # No database group: the group's bits go too (issue 20).
        self.assertEqual(modes, {"": 0o600, "-wal": 0o600, "-shm": 0o600})
        gid = os.getgid()
        self.assertIn("%s had mode 0644 group %d; now 0600" % (d.db_path, gid), d.stderr())
        self.assertIn("%s-wal had mode 0644" % d.db_path, d.stderr())
        self.assertEqual(d.stop(), 0)

    def test_database_group_gets_0660(self):
        # Issue 15: with daemon.control_group the files are the group's,
        # 0660, whatever they had (0644 with root's group here).
        try:
            group = grp.getgrnam("users")
        except KeyError:
            self.skipTest("no group 'users'")
        ep = self.endpoint()
        d = self.daemon(ep, config={"daemon.control_group": "users"})
        self.assertEqual(d.stop(), 0)
        conn = sqlite3.connect(d.db_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("INSERT INTO tokens (token) VALUES ('group-test')")
        conn.commit()
        for suffix in ("", "-wal", "-shm"):
            os.chown(d.db_path + suffix, -1, 0)
            os.chmod(d.db_path + suffix, 0o644)
        d.start()
        conn.close()
        files = {suffix: (stat.S_IMODE(st.st_mode), st.st_gid)
                 for suffix in ("", "-wal", "-shm") for st in [os.stat(d.db_path + suffix)]}
        self.assertEqual(files, {s: (0o660, group.gr_gid) for s in ("", "-wal", "-shm")})
        self.assertIn("%s had mode 0644 group 0; now 0660 in the database group" % d.db_path,
                      d.stderr())
        # The directory is not the group's: the daemon says what members lack.
        self.assertIn("does not belong to daemon.control_group users", d.stderr())
        self.assertEqual(d.stop(), 0)

    # -- (e) tamper evidence -------------------------------------------------

    def verify(self, db_path):
        """revokerctl --database db_path audit --verify: (rc, bad seq or
        None, stderr)."""
        rc, out, err = harness.run([harness.binary("REVOKERCTL"), "--database", db_path,
                                    "--json", "audit", "--verify"])
        self.assertIn(rc, (0, 1), err)
        reply = json.loads(out)
        self.assertEqual(reply["ok"], rc == 0, out)
        rc2, out2, err2 = harness.run([harness.binary("REVOKERCTL"), "--database", db_path,
                                       "audit", "--verify"])
        self.assertEqual(rc2, rc)
        return rc, reply.get("bad_seq"), (out2 + err2).strip()

    def tampered(self, original, sql, params=()):
        """A copy of the database with the triggers dropped and sql run."""
        path = os.path.join(self.dir, "copy-%s.db" % secrets.token_hex(4))
        shutil.copyfile(original, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for statement in sql if isinstance(sql, list) else [sql]:
            if callable(statement):
                statement(conn)
            else:
                conn.execute(statement, params)
        conn.close()
        return path

    def test_audit_tampering_is_caught(self):
        ep = self.endpoint()
        d = self.daemon(ep, config={"retry.max_attempts": "2"})
        app = self.app(d)
        toks = [tok(k) for k in ("plain", "s401", "s422", "s500x1", "s500", "plain", "plain")]
        ids = app.insert_many(toks, flagged=1)
        self.wait_until(lambda: app.all_in(ids.values(), ("revoked", "failed")), 20, "outcomes")
        self.assertEqual(d.stop(), 0)
        app.close()
        self.assertEqual(sorted(os.listdir(self.dir)).count(os.path.basename(d.db_path) + "-wal"), 0,
                         "the WAL was checkpointed at the last close")
        conn = sqlite3.connect(d.db_path)
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]
        conn.close()
        n = len(rows)
        self.assertGreaterEqual(n, 12)
        # The documented chain, recomputed here, matches every stored hash.
        prev = GENESIS
        for r in rows:
            self.assertEqual(audit_hash(prev, r), r["hash"], "seq %d" % r["seq"])
            prev = r["hash"]

        self.assertEqual(self.verify(d.db_path), (0, None, "audit log intact: %d rows, hash chain verified" % n))
        self.assertEqual(self.verify(self.tampered(d.db_path, [])), (0, None,
                         "audit log intact: %d rows, hash chain verified" % n), "dropping the triggers alone")

        k = next(r["seq"] for r in rows if r["event"] == "rejected")
        mid = n // 2
        cases = []
        # Altered: a rejection turned into a revocation; only the hash column.
        cases.append(("rejected made revoked", k,
                      "UPDATE audit SET event = 'revoked', http_status = 200, detail = 'HTTP 200' "
                      "WHERE seq = %d" % k))
        cases.append(("hash replaced", mid,
                      "UPDATE audit SET hash = '%s' WHERE seq = %d" % ("ab" * 32, mid)))

        # Altered and re-hashed by a forger who knows the format: the next
        # row no longer chains.
        def forge_alter(conn):
            r = dict(rows[mid - 1], detail="HTTP 200 (edited)")
            conn.execute("UPDATE audit SET detail = ?, hash = ? WHERE seq = ?",
                         (r["detail"], audit_hash(rows[mid - 2]["hash"], r), mid))
        cases.append(("altered and re-hashed", mid + 1, forge_alter))

        # Inserted in the middle (later rows renumbered), with a made-up hash
        # and with a correctly chained one.
        def insert_at(seq, chained):
            def run(conn):
                for s in range(n, seq - 1, -1):
                    conn.execute("UPDATE audit SET seq = seq + 1 WHERE seq = ?", (s,))
                r = dict(rows[seq - 1], seq=seq, event="revoked", http_status=200, detail="HTTP 200")
                r["hash"] = audit_hash(rows[seq - 2]["hash"], r) if chained else hashlib.sha256(b"x").hexdigest()
                conn.execute("INSERT INTO audit (seq, at, token_id, fingerprint, event, attempt, http_status, "
                             "detail, duration_ms, hash) VALUES (:seq, :at, :token_id, :fingerprint, :event, "
                             ":attempt, :http_status, :detail, :duration_ms, :hash)", r)
            return run
        cases.append(("inserted, made-up hash", mid, insert_at(mid, False)))
        cases.append(("inserted, chained hash", mid + 1, insert_at(mid, True)))
        # Appended at the end with another row's hash.
        cases.append(("appended", n + 1,
                      "INSERT INTO audit (seq, at, token_id, fingerprint, event, hash) "
                      "SELECT %d, at, token_id, fingerprint, 'revoked', hash FROM audit WHERE seq = %d"
                      % (n + 1, n)))
        # Deleted: a middle row, the first row.
        cases.append(("deleted in the middle", mid + 1, "DELETE FROM audit WHERE seq = %d" % mid))
        cases.append(("first row deleted", 2, "DELETE FROM audit WHERE seq = 1"))

        for what, bad_seq, sql in cases:
            with self.subTest(what):
                rc, seq, message = self.verify(self.tampered(d.db_path, sql))
                self.assertEqual((rc, seq), (1, bad_seq), message)
                self.assertTrue(message.startswith("revokerctl: audit log damaged at seq %d: " % bad_seq),
                                message)
                if what.startswith("deleted"):
                    self.assertIn("seq %d is missing" % (bad_seq - 1), message)
        # The original is untouched by all this.
        self.assertEqual(self.verify(d.db_path)[0], 0)


if __name__ == "__main__":
    harness.main()
