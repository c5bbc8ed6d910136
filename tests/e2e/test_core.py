"""End-to-end tests of revokerd's core (issue 2): schema, due tokens (expiry
and flags written by another process), the request on the wire, the row and
audit afterwards, crash recovery, sd_notify, the command line and config."""

import os
import secrets
import signal
import sqlite3
import statistics
import sys
import time

import harness
from harness import E2ETestCase, fingerprint, now_ms, now_s, sha256


def tok(prefix="tok"):
    return "%s-%s" % (prefix, secrets.token_hex(12))


class Schema(E2ETestCase):
    def test_schema_created_on_first_start(self):
        ep = self.endpoint()
        d = self.daemon(ep, start=False)
        self.assertFalse(os.path.exists(d.db_path))
        d.start()
        self.assertTrue(os.path.exists(d.db_path), "database file created")
        self.assertEqual(os.stat(d.db_path).st_mode & 0o777, 0o600, "database mode 0600")
        app = self.app(d)
        objs = app.schema()
        for kind, name in [
                ("table", "tokens"), ("table", "audit"),
                ("index", "tokens_expiry"), ("index", "tokens_flagged"), ("index", "tokens_next"),
                ("index", "tokens_failed"), ("index", "tokens_subject"), ("index", "tokens_sha256"),
                ("index", "tokens_unhashed"),
                ("index", "audit_token"), ("index", "audit_at"),
                ("trigger", "audit_no_update"), ("trigger", "audit_no_delete"),
                ("view", "audit_log"), ("view", "outcomes_per_hour"), ("view", "failed_tokens")]:
            self.assertIn((kind, name), objs)
        self.assertEqual(app.execute("PRAGMA journal_mode").fetchone()[0].lower(), "wal")
        self.assertGreaterEqual(app.execute("PRAGMA user_version").fetchone()[0], 1)
        cols = {r[1] for r in app.execute("PRAGMA table_info(tokens)")}
        self.assertTrue({"id", "token", "subject", "expires_at", "flagged", "flag_reason",
                         "state"} <= cols, cols)
        acols = {r[1] for r in app.execute("PRAGMA table_info(audit)")}
        self.assertTrue({"at", "token_id", "fingerprint", "event", "attempt", "http_status",
                         "detail", "duration_ms"} <= acols, acols)

        # The application's plain INSERT gets the daemon's defaults.
        secret = tok()
        tid = app.insert(secret, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "flagged token revoked")
        self.assertGreaterEqual(len(app.audit()), 2)

        # The audit is append-only, also for the application's connection.
        before = app.audit()
        for sql in ("UPDATE audit SET detail = 'x'", "DELETE FROM audit",
                    "UPDATE audit SET event = 'revoked' WHERE token_id = %d" % tid):
            with self.assertRaises(sqlite3.DatabaseError) as cm:
                app.execute(sql)
            self.assertIn("append-only", str(cm.exception))
        self.assertEqual(app.audit(), before, "audit unchanged")
        # The views answer.
        rows = app.query("SELECT * FROM audit_log WHERE token_id = ?", (tid,))
        self.assertTrue(rows and rows[0]["time_utc"].endswith("Z"), rows)
        app.query("SELECT * FROM outcomes_per_hour")
        app.query("SELECT * FROM failed_tokens")

        # A second start on the same file migrates nothing and loses nothing.
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(app.state(tid), "revoked")
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets([secret], d, app)


class DueTokens(E2ETestCase):
    def test_expiring_token_revoked_after_expires_at(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        t0 = now_ms()
        exp = int(now_s()) + 2
        expiring, later, never = tok("exp"), tok("later"), tok("never")
        eid = app.insert(expiring, expires_at=exp, subject="user-1")
        lid = app.insert(later, expires_at=int(now_s()) + 3600, subject="user-1")
        nid = app.insert(never, subject="user-2")
        past = tok("past")
        pid = app.insert(past, expires_at=int(now_s()) - 10)

        self.wait_until(lambda: app.state(eid) == "revoked", exp - now_s() + 5, "expiring token revoked")
        self.wait_until(lambda: app.state(pid) == "revoked", 5, "already expired token revoked")
        (req,) = ep.requests(expiring)
        print("\n  expiring token: request %.3f s after expires_at" % (req["t"] - exp), file=sys.stderr)
        self.assertGreaterEqual(req["t"], exp - 0.02, "not revoked before it expired")
        self.assertLess(req["t"], exp + 2.0, "revoked shortly after it expired")
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], "/v2/token/logout")
        self.assertEqual(req["headers"].get("authorization"), "Bearer " + expiring)
        self.assertEqual(req["status"], 200)

        row = app.row(eid)
        self.assertEqual(row["state"], "revoked")
        self.assertIsNone(row["token"], "the secret is removed once revoked")
        self.assertEqual(row["fingerprint"], fingerprint(expiring))
        self.assertEqual(row["token_sha256"], sha256(expiring))
        self.assertEqual(row["due_reason"], "expired")
        self.assertIsNotNone(row["finished_at"])
        self.assertGreaterEqual(row["finished_at"], exp * 1000)
        self.assertEqual(row["attempts"], 0)

        rows = self.assert_audit_rows(app, {eid: expiring, pid: past}, since_ms=t0)
        self.assertEqual([r["event"] for r in rows[eid]], ["due", "revoked"])
        due, rev = rows[eid]
        self.assertEqual(due["detail"], "expired")
        self.assertGreaterEqual(due["at"], exp * 1000)
        self.assertEqual(rev["http_status"], 200)
        self.assertIsNotNone(rev["duration_ms"])

        # Tokens that are not due are not revoked, only hashed (schema 3:
        # soon after they are written, so that revoking them later touches
        # no lookup index).
        for tid, secret in ((lid, later), (nid, never)):
            row = app.row(tid)
            self.assertEqual(row["state"], "active")
            self.assertEqual(row["token"], secret)
            self.assertEqual(row["token_sha256"], sha256(secret))
            self.assertEqual(app.audit(tid), [])
            self.assertEqual(ep.requests(secret), [])
        # One written while the daemon idles is hashed within moments.
        idle = tok("idle")
        iid = app.insert(idle, expires_at=int(now_s()) + 3600)
        self.wait_until(lambda: app.row(iid)["token_sha256"] == sha256(idle), 5, "new token hashed")
        self.assertEqual(app.state(iid), "active")
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets([expiring, later, never, past], d, app)
        self.assert_no_sanitizer_errors(d)

    def test_flagged_by_other_process_revoked_quickly(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        n = 30
        toks = [tok("flag") for _ in range(n)]
        ids = app.insert_many(toks)
        # Nothing is due yet: no request.
        sentinel = tok("sentinel")
        sid = app.insert(sentinel, flagged=1)
        self.wait_until(lambda: app.state(sid) == "revoked", 5, "sentinel revoked")
        self.assertEqual(ep.tokens_seen(), {sentinel})

        t0 = now_ms()
        lat = []
        for t in toks:
            committed = now_s()
            app.flag(ids[t], "leaked")
            (req,) = ep.wait_requests(t, 1, timeout=5)
            lat.append((req["t"] - committed) * 1000)
        lat.sort()
        print("\n  flag -> request latency over %d flags: p50 %.1f ms, p90 %.1f ms, max %.1f ms"
              % (n, statistics.median(lat), lat[int(n * 0.9) - 1], lat[-1]), file=sys.stderr)
        self.assertLess(lat[-1], 2000, "a flagged token reaches the endpoint within 2 s")

        self.wait_until(lambda: app.all_in(ids.values(), "revoked"), 10, "all flagged revoked")
        rows = self.assert_audit_rows(app, {ids[t]: t for t in toks}, since_ms=t0)
        for t in toks:
            self.assertEqual([r["event"] for r in rows[ids[t]]], ["due", "revoked"])
            self.assertEqual(rows[ids[t]][0]["detail"], "flagged")
            row = app.row(ids[t])
            self.assertEqual(row["due_reason"], "flagged")
            self.assertIsNone(row["token"])
            self.assertEqual(row["flag_reason"], "leaked", "the application's columns are kept")
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(toks, d, app)

    def test_keep_alive_connections_reused(self):
        ep = self.endpoint()
        d = self.daemon(ep, config={"logout.concurrency": "4"})
        app = self.app(d)
        toks = [tok("ka") for _ in range(200)]
        ids = app.insert_many(toks, flagged=1)
        self.wait_until(lambda: app.all_in(ids.values(), "revoked"), 30, "200 tokens revoked")
        reqs = ep.requests()
        conns = {r["conn"] for r in reqs}
        print("\n  200 requests over %d connections" % len(conns), file=sys.stderr)
        self.assertLessEqual(len(conns), 20, "connections are kept alive and reused")
        self.assertEqual(d.stop(), 0)


class Crash(E2ETestCase):
    def test_kill9_with_requests_in_flight_then_restart(self):
        ep = self.endpoint(delay_ms=3000)
        d = self.daemon(ep, config={"logout.timeout": "10s", "logout.concurrency": "8"})
        app = self.app(d)
        toks = [tok("crash") for _ in range(20)]
        ids = app.insert_many(toks, flagged=1)
        # Requests have reached the endpoint, whose answers are 3 s away.
        self.wait_until(lambda: len(ep.requests()) >= 8, 10, "8 requests in flight")
        self.assertTrue(app.all_in(ids.values(), ("pending", "active")), app.states(ids.values()))
        d.kill9()
        ep.restart(delay_ms=0)
        d.start()
        self.wait_until(lambda: app.all_in(ids.values(), "revoked"), 20, "all revoked after restart")
        for t in toks:
            finals = app.final_events(ids[t])
            self.assertEqual(len(finals), 1, "exactly one final event for %s: %r" % (t, finals))
            self.assertEqual(finals[0]["event"], "revoked")
            self.assertEqual(len(app.audit(ids[t], "due")), 1, "one due event per token")
            self.assertTrue(any(r["status"] == 200 for r in ep.requests(t)),
                            "revoked only after a recorded 2xx")
        self.assert_audit_rows(app, {ids[t]: t for t in toks})
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(toks, d, app)


class Notify(E2ETestCase):
    def test_ready_status_stopping(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        pid = d.pid
        app = self.app(d)
        # Work spread over ~3 s so that counts change many times.
        toks = [tok("st") for _ in range(30)]
        ids = app.insert_many(toks)
        for i, t in enumerate(toks):
            app.flag(ids[t])
            if i % 10 == 9:
                time.sleep(1.0)  # spread the load; not a synchronisation
        self.wait_until(lambda: app.all_in(ids.values(), "revoked"), 10, "all revoked")
        self.wait_until(lambda: any("30" in s for s in d.notify.statuses(pid)), 5,
                        "a STATUS line with the final count 30")
        rc = d.stop()
        self.assertEqual(rc, 0, "exit 0 on SIGTERM")
        msgs = [m for m in d.notify.snapshot()]
        self.assertTrue(msgs)
        for m in msgs:
            self.assertEqual(m.pid, pid, "notify messages come from the daemon's pid")
        self.assertEqual(d.notify.count("READY", "1"), 1, "READY=1 exactly once")
        self.assertEqual(d.notify.count("STOPPING", "1"), 1, "STOPPING=1 on SIGTERM")
        ready_at = d.notify.values("READY")[0][0]
        stopping_at = d.notify.values("STOPPING")[0][0]
        statuses = d.notify.values("STATUS")
        self.assertGreaterEqual(len(statuses), 2)
        last = statuses[-1][1].lower()
        for word in ("pending", "revoked", "failed"):
            self.assertTrue(any(word in s.lower() for _, s in statuses),
                            "STATUS mentions %s: %r" % (word, statuses))
        self.assertTrue(any(ch.isdigit() for ch in last))
        self.assertLess(ready_at, stopping_at)
        # At most about once a second (the STOPPING-time line may come sooner).
        gaps = [b[0] - a[0] for a, b in zip(statuses, statuses[1:]) if b[0] < stopping_at]
        print("\n  %d STATUS lines, min gap %.3f s; last: %r"
              % (len(statuses), min(gaps) if gaps else -1, statuses[-1][1]), file=sys.stderr)
        self.assertTrue(all(g >= 0.9 for g in gaps), "STATUS at most once a second: %r" % gaps)
        self.assert_no_secrets(toks, d, app)

    def test_sigint_drains_and_exits_0(self):
        ep = self.endpoint(delay_ms=500)
        d = self.daemon(ep)
        app = self.app(d)
        toks = [tok("int") for _ in range(4)]
        ids = app.insert_many(toks, flagged=1)
        self.wait_until(lambda: len(ep.requests()) >= 4, 10, "requests in flight")
        t = time.monotonic()
        self.assertEqual(d.stop(signal.SIGINT), 0)
        print("\n  drained in %.3f s" % (time.monotonic() - t), file=sys.stderr)
        # In-flight requests finished and their outcomes were committed.
        self.assertTrue(app.all_in(ids.values(), "revoked"), app.states(ids.values()))
        self.assertGreaterEqual(d.notify.count("STOPPING", "1"), 1)


class CommandLine(E2ETestCase):
    def _conf(self, text):
        path = os.path.join(self.dir, "bad-%d.conf" % len(os.listdir(self.dir)))
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, text, args=()):
        rc, out, err = harness.run([harness.binary("REVOKERD"), "--config", self._conf(text),
                                    "--check-config"] + list(args))
        return rc, out + err

    def test_check_config_good(self):
        ep = self.endpoint(start=False)
        d = self.daemon(ep, start=False)
        rc, out, err = d.check_config()
        self.assertEqual(rc, 0, out + err)
        self.assertFalse(os.path.exists(d.db_path), "--check-config starts nothing")

    def test_check_config_bad_values_name_file_line_key(self):
        db = os.path.join(self.dir, "x.db")
        cases = [
            # (file text, line, section, key)
            ("[daemon]\ndatabase = %s\n[logout]\nurl = https://a.example/v2/token/logout\n"
             "timeout = banana\n" % db, 5, "logout", "timeout"),
            ("[daemon]\ndatabase = %s\n\n[retry]\nbase = 100ms\nmax_attempts = -3\n" % db,
             6, "retry", "max_attempts"),
            ("[daemon]\ndatabase = %s\n[retry]\nbogus_key = 1\n" % db, 4, "retry", "bogus_key"),
            ("[daemon]\ndatabase = %s\n[logout]\nconcurrency = 0\n" % db, 4, "logout", "concurrency"),
            ("[daemon]\ndatabase = %s\n[retry]\nmax_delay = 5 parsecs\n" % db, 4, "retry", "max_delay"),
            ("[daemon]\ndatabase = %s\n[logout]\nurl = ftp://a.example/x\n" % db, 4, "logout", "url"),
        ]
        for text, line, section, key in cases:
            with self.subTest(key=key):
                rc, out = self.check(text)
                self.assertEqual(rc, 2, out)
                self.assertIn(":%d:" % line, out, "names the line")
                self.assertIn(key, out, "names the key")
                self.assertIn("[%s]" % section, out, "names the section")
                self.assertIn(".conf", out, "names the file")
        self.assertFalse(os.path.exists(db), "nothing started")

    def test_missing_control_group_says_what_to_do(self):
        # Issue 15: installed, run by hand before systemd-sysusers.
        rc, out = self.check("[daemon]\ndatabase = %s\ncontrol_group = no-such-group-x\n"
                             % os.path.join(self.dir, "x.db"))
        self.assertEqual(rc, 2, out)
        self.assertIn("there is no group named 'no-such-group-x' (set in %s" % self.dir, out)
        self.assertIn("systemd-sysusers", out)
        self.assertIn("control_group =", out)
        # A number is a group too, as revokerd.conf(5) says.
        rc, out = self.check("[daemon]\ndatabase = %s\ncontrol_group = %d\n"
                             % (os.path.join(self.dir, "x.db"), os.getgid()))
        self.assertEqual(rc, 0, out)

    def test_missing_config_file(self):
        rc, out, err = harness.run([harness.binary("REVOKERD"), "--config",
                                    os.path.join(self.dir, "nope.conf"), "--check-config"])
        self.assertEqual(rc, 2, out + err)
        self.assertIn("nope.conf", out + err)

    def test_http_refused_unless_loopback(self):
        db = os.path.join(self.dir, "x.db")
        for url, ok in [("http://api.loyalty.dog/v2/token/logout", False),
                        ("http://10.1.2.3:8080/v2/token/logout", False),
                        ("http://127.0.0.1.example.com/v2/token/logout", False),
                        ("http://127.0.0.1:9/v2/token/logout", True),
                        ("http://127.8.9.10/v2/token/logout", True),
                        ("http://localhost:9/v2/token/logout", True),
                        ("http://[::1]:9/v2/token/logout", True),
                        ("https://api.loyalty.dog/v2/token/logout", True)]:
            with self.subTest(url=url):
                rc, out = self.check("[daemon]\ndatabase = %s\n[logout]\nurl = %s\n" % (db, url))
                self.assertEqual(rc, 0 if ok else 2, out)
                if not ok:
                    self.assertIn("url", out)
        # --url on the command line is checked the same way.
        rc, out = self.check("[daemon]\ndatabase = %s\n" % db,
                             ["--url", "http://api.loyalty.dog/v2/token/logout"])
        self.assertEqual(rc, 2, out)

    def test_bad_config_does_not_start(self):
        ep = self.endpoint(start=False)
        d = self.daemon(ep, start=False, config={"logout.url": "http://api.loyalty.dog/v2/token/logout"})
        d.start(wait_ready=False)
        rc = d.proc.wait(15)
        self.assertEqual(rc, 2)
        self.assertEqual(d.notify.count("READY"), 0)
        self.assertFalse(os.path.exists(d.db_path))

    def test_version_help_usage(self):
        rd = harness.binary("REVOKERD")
        rc, out, err = harness.run([rd, "--version"])
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.strip(), "--version prints something")
        rc, out, err = harness.run([rd, "--help"])
        self.assertEqual(rc, 0, err)
        self.assertIn("--config", out)
        rc, out, err = harness.run([rd, "--no-such-option"])
        self.assertEqual(rc, 2, out + err)

    def test_command_line_overrides(self):
        ep = self.endpoint()
        other_db = os.path.join(self.dir, "override.db")
        d = self.daemon(None, start=False, url="http://127.0.0.1:9/v2/token/logout")
        d.start(args=["--database", other_db, "--url", ep.url])
        self.assertTrue(os.path.exists(other_db))
        self.assertFalse(os.path.exists(d.db_path))
        app = self.app(other_db)
        secret = tok()
        tid = app.insert(secret, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "revoked through --url")
        self.assertEqual(len(ep.requests(secret)), 1)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
