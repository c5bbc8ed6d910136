"""End-to-end tests of revokerd's outcomes, retry and backoff (issue 2):
401, 422, 500 N times, 500 always, 503 / connection refused / reset (endpoint
down and back), 429 with Retry-After, 404 (misconfigured), a hang past the
timeout, a garbage body; and no secret anywhere."""

import json
import secrets
import sys
import time

import harness
from harness import E2ETestCase, now_ms


def tok(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(12))


class Outcomes(E2ETestCase):
    def setup_daemon(self, config=None, **kw):
        self.ep = self.endpoint(**kw)
        self.d = self.daemon(self.ep, config=config)
        self.app_db = self.app(self.d)
        self.t0 = now_ms()
        return self.ep, self.d, self.app_db

    def sentinel(self):
        """Revoke a fresh plain token and wait for it: everything flagged
        before it has had its chance to be (wrongly) sent again."""
        s = tok("sentinel")
        sid = self.app_db.insert(s, flagged=1)
        self.wait_until(lambda: self.app_db.state(sid) == "revoked", 10, "sentinel revoked")
        return s

    def finish(self, secrets_):
        self.assertEqual(self.d.stop(), 0, "exit 0 on SIGTERM")
        self.assert_no_secrets(secrets_, self.d, self.app_db)
        self.assert_no_sanitizer_errors(self.d)

    # -- final answers ------------------------------------------------------

    def test_401_already_invalid(self):
        ep, d, app = self.setup_daemon()
        t = tok("s401")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "401 token final")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        self.assertEqual([r["event"] for r in rows], ["due", "already_invalid"])
        self.assertEqual(rows[1]["http_status"], 401)
        row = app.row(tid)
        self.assertEqual(row["state"], "revoked")
        self.assertIsNone(row["token"])
        self.assertEqual(row["attempts"], 0)
        self.sentinel()
        self.assertEqual(len(ep.requests(t)), 1, "no retry after 401")
        self.finish([t])

    def test_422_rejected_keeps_token(self):
        ep, d, app = self.setup_daemon()
        t = tok("s422")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "failed", 10, "422 token failed")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        self.assertEqual([r["event"] for r in rows], ["due", "rejected"])
        rej = rows[1]
        self.assertEqual(rej["http_status"], 422)
        self.assertIn("token is not a valid session token", rej["detail"] or "",
                      "the validation message is in the detail")
        row = app.row(tid)
        self.assertEqual(row["state"], "failed")
        self.assertEqual(row["token"], t, "a failed token keeps its secret")
        self.assertIsNotNone(row["finished_at"])
        self.assertIn(tid, [r["id"] for r in app.query("SELECT id FROM failed_tokens")])
        self.sentinel()
        self.assertEqual(len(ep.requests(t)), 1, "no retry after 422")
        self.finish([t])

    def test_garbage_body_200_is_revoked(self):
        ep, d, app = self.setup_daemon()
        t = tok("garbage")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "garbage-body token revoked")
        self.assertEqual(app.events(tid), ["due", "revoked"])
        self.finish([t])

    # -- token-level retries ------------------------------------------------

    def test_500x3_retried_with_backoff_then_revoked(self):
        base, cap = 0.1, 1.0
        ep, d, app = self.setup_daemon()
        t = tok("s500x3")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 15, "500x3 token revoked")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        self.assertEqual([r["event"] for r in rows], ["due", "retry", "retry", "retry", "revoked"])
        retries = [r for r in rows if r["event"] == "retry"]
        self.assertEqual([r["http_status"] for r in retries], [500, 500, 500])
        self.assertEqual([r["attempt"] for r in retries], [1, 2, 3])
        self.assertEqual(rows[-1]["attempt"], 4)
        for r in retries:
            self.assertTrue(r["detail"], "a retry says why and when")
            self.assertIsNotNone(r["duration_ms"])
        row = app.row(tid)
        self.assertEqual(row["attempts"], 3, "three token-level failures counted")
        self.assertIsNone(row["token"])
        reqs = ep.requests(t)
        self.assertEqual([r["status"] for r in reqs], [500, 500, 500, 200])
        # The n-th retry waits in [base, min(max, base * 2^(n-1))] after the failure.
        gaps = []
        for n, (retry, nxt) in enumerate(zip(retries, reqs[1:]), 1):
            wait = nxt["t"] - retry["at"] / 1000.0
            gaps.append(wait)
            hi = min(cap, base * 2 ** (n - 1))
            self.assertGreaterEqual(wait, base - 0.02, "retry %d too early (%.3f s)" % (n, wait))
            self.assertLessEqual(wait, hi + 0.5, "retry %d too late (%.3f s > %.3f)" % (n, wait, hi))
        print("\n  waits before retries: %s" % ", ".join("%.3f" % g for g in gaps), file=sys.stderr)
        self.finish([t])

    def test_500_always_gives_up(self):
        ep, d, app = self.setup_daemon(config={"retry.max_attempts": "4"})
        t = tok("s500")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "failed", 20, "500 token failed")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        events = [r["event"] for r in rows]
        self.assertEqual(events, ["due", "retry", "retry", "retry", "gave_up"])
        self.assertEqual(rows[-1]["http_status"], 500)
        self.assertEqual(rows[-1]["attempt"], 4)
        row = app.row(tid)
        self.assertEqual(row["attempts"], 4)
        self.assertEqual(row["token"], t, "a failed token keeps its secret")
        self.assertIsNotNone(row["last_error"])
        self.sentinel()
        self.assertEqual(len(ep.requests(t)), 4, "max_attempts requests, then none")
        self.finish([t])

    # -- endpoint-level failures --------------------------------------------

    def test_503_does_not_count_towards_attempts(self):
        # 503 five times with max_attempts 2: a token-level count would fail it.
        ep, d, app = self.setup_daemon(config={"retry.max_attempts": "2", "logout.down_after": "10"})
        t = tok("s503x5")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "503x5 token revoked")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        retries = [r for r in rows if r["event"] == "retry"]
        self.assertEqual(len(retries), 5)
        self.assertEqual({r["http_status"] for r in retries}, {503})
        self.assertEqual(rows[-1]["event"], "revoked")
        self.assertEqual(app.row(tid)["attempts"], 0, "503 never counts")
        # the audit's attempt: none counted yet (NULL), the success was attempt 1
        self.assertEqual([r["attempt"] for r in retries], [None] * 5)
        self.assertEqual(rows[-1]["attempt"], 1)
        self.finish([t])

    def test_endpoint_failure_keeps_the_attempt_count(self):
        # 500 (attempt 1), then the endpoint is gone: its retry rows say
        # attempt 1, as the count stands; restarted, it answers 500 once more
        # (attempt 2, its counts start again) and then 200 (attempt 3).
        ep, d, app = self.setup_daemon(config={"retry.base": "2s", "retry.max_delay": "2s",
                                               "retry.max_attempts": "5"})
        t = tok("s500x1")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.audit(tid, "retry"), 10, "the first 500")
        ep.stop()  # within the 2 s before the next attempt
        self.wait_until(lambda: any(r["http_status"] is None for r in app.audit(tid, "retry")), 15,
                        "a retry without an answer")
        ep.start()
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "revoked once the endpoint is back")
        rows = self.assert_audit_rows(app, {tid: t}, since_ms=self.t0)[tid]
        answered = [(r["event"], r["http_status"], r["attempt"]) for r in rows if r["http_status"] is not None]
        self.assertEqual(answered, [("retry", 500, 1), ("retry", 500, 2), ("revoked", 200, 3)])
        unanswered = [r for r in rows if r["event"] == "retry" and r["http_status"] is None]
        self.assertTrue(unanswered)
        self.assertEqual({r["attempt"] for r in unanswered}, {1}, "not counted: the count as it stands")
        self.assertTrue(all(r["seq"] > rows[1]["seq"] and r["seq"] < rows[-2]["seq"] for r in unanswered))
        self.assertEqual(app.row(tid)["attempts"], 2)
        self.finish([t])

    def test_endpoint_error_texts_are_whole(self):
        # A refused connection's reason is curl's message (about 100 bytes);
        # stats showed the audit detail around it cut at 160 bytes
        # ("...retried when the endpoint answ").
        ep, d, app = self.setup_daemon(config={"logout.down_after": "1"})
        ep.stop()
        t = tok("whole")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.audit(tid, "retry"), 10, "a retry")
        why = app.row(tid)["last_error"]
        self.assertRegex(why, r"^curl error 7 \(Failed to connect to 127\.0\.0\.1 port \d+ .*\)$")
        self.assertEqual(app.audit(tid, "retry")[0]["detail"],
                         "endpoint failure: %s; not counted towards attempts; retried when the endpoint "
                         "answers" % why)
        rc, out, err = harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path, "--json", "stats"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["endpoint"], {"health": "down", "last_error": why})
        self.wait_until(lambda: "down after 1 failures in a row (%s); probing" % why in d.stderr(), 5,
                        "the log's line names the reason whole")
        self.assertNotIn("\u2026", d.stderr(), "nothing was cut")
        self.finish([t])

    def test_reset_is_endpoint_level(self):
        ep, d, app = self.setup_daemon(config={"retry.max_attempts": "1"})
        t = tok("reset")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: len(app.audit(tid, "retry")) >= 3, 20, "3 retries of a reset")
        for r in app.audit(tid, "retry"):
            self.assertIsNone(r["http_status"], "no response: http_status NULL")
            self.assertTrue(r["detail"])
        self.assertEqual(app.state(tid), "pending")
        self.assertEqual(app.row(tid)["attempts"], 0)
        self.finish([t])

    def test_outage_endpoint_down_then_back(self):
        n = 20
        ep, d, app = self.setup_daemon(config={"retry.max_attempts": "2"})
        ep.stop()  # connection refused from now on
        toks = [tok("outage") for _ in range(n)]
        ids = app.insert_many(toks, flagged=1)
        self.wait_until(lambda: any("down" in s.lower() for s in d.notify.statuses()), 15,
                        "STATUS says the endpoint is down")
        self.wait_until(lambda: "down" in d.stderr().lower(), 5, "the log says the endpoint is down")
        # Keep it down for a while: probes go on, nothing fails.
        t_down = time.monotonic()
        self.wait_until(lambda: len(app.audit(event="retry")) >= n + 5, 15, "probes while down")
        first_window = len(app.audit(event="retry"))
        time.sleep(2.0)  # an outage of 2 s more; the daemon must only probe
        second_window = len(app.audit(event="retry"))
        probes = second_window - first_window
        print("\n  retry events: %d before, %d probes during 2 s of outage"
              % (first_window, probes), file=sys.stderr)
        self.assertLessEqual(probes, 22, "while down: about one probe per backoff interval")
        self.assertEqual(app.states(ids.values()).get("failed", 0), 0, "an outage fails no token")
        for r in app.audit(event="retry"):
            self.assertIsNone(r["http_status"])
        self.assertEqual(app.query("SELECT max(attempts) AS m FROM tokens")[0]["m"], 0)
        self.assertLess(time.monotonic() - t_down, 60)

        ep.start()
        self.wait_until(lambda: app.all_in(ids.values(), "revoked"), 20, "every token revoked after the outage")
        self.wait_until(lambda: "down" not in (d.notify.last_status() or "down").lower(), 5,
                        "STATUS no longer says down")
        self.assertEqual(app.states(ids.values()), {"revoked": n})
        for t in toks:
            self.assertEqual(len(app.final_events(ids[t])), 1)
        self.assert_audit_rows(app, {ids[t]: t for t in toks}, since_ms=self.t0)
        self.finish(toks)

    def test_429_retry_after_pauses_every_request(self):
        # Retry-After 2 s is longer than retry.max_delay (1 s): still honoured.
        ep, d, app = self.setup_daemon()
        t429 = tok("s429x1ra2")
        tid = app.insert(t429, flagged=1)
        (first,) = ep.wait_requests(t429, 1, 10)
        # Once its retry is recorded the daemon knows about the pause.
        self.wait_until(lambda: app.audit(tid, "retry"), 10, "429 recorded")
        others = [tok("after429") for _ in range(5)]
        ids = app.insert_many(others, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked" and app.all_in(ids.values(), "revoked"),
                        15, "all revoked after the pause")
        later = [r for r in ep.requests() if r["t"] > first["t"]]
        self.assertTrue(later)
        earliest = min(r["t"] for r in later)
        print("\n  first request after the 429: %.3f s later" % (earliest - first["t"]), file=sys.stderr)
        self.assertGreaterEqual(earliest, first["t"] + 2.0 - 0.05,
                                "no request for any token before Retry-After")
        retry = app.audit(tid, "retry")
        self.assertEqual(len(retry), 1)
        self.assertEqual(retry[0]["http_status"], 429)
        self.assertEqual(app.row(tid)["attempts"], 0)
        self.finish([t429] + others)

    def test_404_misconfigured_fails_no_token(self):
        ep = self.endpoint()
        self.ep = ep
        self.d = d = self.daemon(url=ep.url + "-wrong", config={"retry.max_attempts": "2"})
        self.app_db = app = self.app(d)
        self.t0 = now_ms()
        toks = [tok("misconf") for _ in range(5)]
        ids = app.insert_many(toks, flagged=1)
        self.wait_until(lambda: any("misconfigured" in s.lower() for s in d.notify.statuses()), 15,
                        "STATUS says misconfigured")
        self.assertIn("misconfigured", d.stderr().lower())
        self.wait_until(lambda: len(app.audit(event="retry")) >= 8, 15, "several 404 retries")
        self.assertEqual(app.states(ids.values()).get("failed", 0), 0, "404 fails no token")
        self.assertEqual({r["status"] for r in ep.requests()}, {404})
        for r in app.audit(event="retry"):
            self.assertEqual(r["http_status"], 404)
        self.finish(toks)

    def test_redirect_is_endpoint_level(self):
        ep, d, app = self.setup_daemon(config={"retry.max_attempts": "1"})
        t = tok("s302x2")
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 15, "302x2 token revoked after the redirects")
        self.assertEqual([r["http_status"] for r in app.audit(tid, "retry")], [302, 302])
        self.assertEqual([r["path"] for r in ep.requests(t)], ["/v2/token/logout"] * 3,
                         "redirects are not followed")
        self.finish([t])

    def test_hang_past_timeout_is_retried(self):
        ep, d, app = self.setup_daemon(config={"logout.timeout": "1s", "retry.max_attempts": "1",
                                                   "logout.down_after": "10"})
        t = tok("hang")
        tid = app.insert(t, flagged=1)
        reqs = ep.wait_requests(t, 2, 15)
        # The retry comes after the 1 s timeout. Seen from the endpoint, the
        # gap is shorter by the first request's own way there (0.91 s under
        # valgrind on a loaded host): the audit's duration below is exact.
        self.assertGreaterEqual(reqs[1]["t"] - reqs[0]["t"], 0.5, "the timeout is 1 s")
        retry = app.audit(tid, "retry")[0]
        self.assertIsNone(retry["http_status"])
        self.assertGreaterEqual(retry["duration_ms"], 950)
        self.assertLess(retry["duration_ms"], 3000)
        self.assertEqual(app.state(tid), "pending")
        self.assertEqual(app.row(tid)["attempts"], 0, "a timeout does not count")
        # A hanging token does not block the others.
        s = self.sentinel()
        self.assertEqual(len(ep.requests(s)), 1)
        # SIGTERM with a hang in flight: drains within the request timeout.
        t_stop = time.monotonic()
        self.finish([t])
        self.assertLess(time.monotonic() - t_stop, 5)

    # -- everything at once, with debug logging -----------------------------

    def test_no_secret_anywhere(self):
        ep, d, app = self.setup_daemon(config={"daemon.log_level": "debug", "retry.max_attempts": "2"})
        toks = [tok(p) for p in ("plain", "s401", "s422", "s500x1", "s500", "s503x2", "s429x1ra1",
                                 "s404x1", "garbage", "reset", "s302x1")]
        ids = app.insert_many(toks[:5], flagged=1)
        exp_secret = tok("exp")
        exp = app.insert(exp_secret, expires_at=int(time.time()))
        ids.update(app.insert_many(toks[5:], flagged=1))
        final = ("revoked", "failed")
        self.wait_until(lambda: app.all_in([i for t, i in ids.items() if not t.startswith("reset")], final),
                        30, "outcomes")
        self.wait_until(lambda: app.state(exp) == "revoked", 10, "expired revoked")
        self.assertTrue(d.notify.statuses())
        self.assertTrue(d.stderr().strip(), "the daemon logged something")
        all_secrets = toks + [exp_secret]
        self.assertEqual(self.d.stop(), 0)
        self.assert_no_secrets(all_secrets, d, app)
        # Nor in the database outside the token column.
        for r in app.query("SELECT * FROM tokens"):
            for k, v in r.items():
                if k != "token" and isinstance(v, str):
                    for s in all_secrets:
                        if s:
                            self.assertNotIn(s, v, "secret in tokens.%s" % k)


class StateWrittenBehindOurBack(E2ETestCase):
    """Issue 20, item 8: an application that writes the state of a row whose
    request is in flight does not get the last word: the outcome is still
    recorded and audited, and a final row's secret is scrubbed."""

    def test_outcome_replaces_a_state_written_meanwhile(self):
        ep = self.endpoint(delay_ms=800)
        d = self.daemon(ep)
        app = self.app(d)
        fine = "behind-%s" % secrets.token_hex(8)       # 200 after 0.8 s
        retried = "s500x1-%s" % secrets.token_hex(8)    # 500 once, then 200
        ids = {t: app.insert(t, flagged=1) for t in (fine, retried)}
        for t in ids:
            ep.wait_requests(t, 1, timeout=10)
        # While both are in flight: an application "finishes" them itself.
        app.execute("UPDATE tokens SET state = 'revoked' WHERE id = ?", (ids[fine],))
        app.execute("UPDATE tokens SET state = 'failed' WHERE id = ?", (ids[retried],))
        app.conn.commit()
        self.wait_until(lambda: all(app.row(i)["token"] is None for i in ids.values()), 20, "secrets scrubbed")
        for t, i in ids.items():
            row = app.row(i)
            self.assertEqual(row["state"], "revoked", t)
            events = app.events(i)
            self.assertEqual(events[-1], "revoked", events)
            written = [r for r in app.audit(i) if "written by another process" in (r["detail"] or "")]
            self.assertEqual(len(written), 1, app.audit(i))
        # The retried one was sent again: the endpoint confirmed it.
        self.assertEqual(len(ep.requests(retried)), 2)
        self.assertIn("another process set its state to 'revoked' while its request was in flight", d.stderr())
        self.assertIn("another process set its state to 'failed'", d.stderr())
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets([fine, retried], d, app)


if __name__ == "__main__":
    harness.main()
