"""End-to-end tests of holds (issue 14, item 3): a held token is never sent
(through its expiry, a flag, a socket revoke of the same secret, id or
subject, a restart and a kill -9: the stand-in endpoint records every
request, and its secret never arrives), it is sent after `release`; a hold
that races a job already fetched into the engine's queue still keeps it from
the endpoint, and one in flight is refused clearly; `drop` ends a token with
its audit row (event, uid, reason), state failed and its secret scrubbed;
revokerctl's hold, release and drop, and their errors and exit statuses.
"""

import os
import re

import harness
from test_faults import CtlClient

UID = os.getuid()


class T(harness.E2ETestCase):

    def ctl(self, d, *args):
        """revokerctl --config <d's config> ARGS: (rc, stdout, stderr)."""
        return harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path] + list(args),
                           env={"TZ": "UTC"})

    def settle(self, ep, app, tag):
        """A fresh flagged token reaches the endpoint: everything the daemon
        had queued or due before it has been looked at since."""
        tok = "sentinel-%s-%s" % (tag, "z" * 24)
        app.insert(tok, flagged=1)
        ep.wait_requests(tok, timeout=20)

    def assert_never_sent(self, ep, tokens, when):
        seen = ep.tokens_seen()
        for tok in tokens:
            self.assertNotIn(tok, seen, "%s reached the endpoint %s" % (tok[:12], when))

    def test_held_token_is_never_sent_until_released(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        tok = "held-secret-%s" % ("h" * 24)
        tid = app.insert(tok, expires_at=harness.now_s() + 86400, subject="mallory")

        rc, out, err = self.ctl(d, "hold", "--id", str(tid), "--reason", "incident 7")
        self.assertEqual((rc, out, err), (0, "token %d held\n" % tid, ""))
        self.assertEqual(app.state(tid), "held")

        # Its expiry passes and the application flags it.
        app.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (harness.now_s() - 5, tid))
        app.flag(tid)
        self.settle(ep, app, "expiry-flag")
        self.assert_never_sent(ep, [tok], "after its expiry and a flag")

        # A socket revoke of the same secret, id and subject: ok, still held.
        c = CtlClient(d.socket_path)
        r = c.request({"op": "revoke", "token": tok, "reason": "user logged out"})
        self.assertEqual((r["ok"], r["id"], r["state"]), (True, tid, "held"), r)
        r = c.request({"op": "revoke", "id": tid})
        self.assertEqual((r["ok"], r["count"], r["state"]), (True, 0, "held"), r)
        r = c.request({"op": "revoke", "subject": "mallory"})
        self.assertEqual((r["ok"], r["count"], r["held"]), (True, 0, [tid]), r)
        c.close()
        rc, out, err = self.ctl(d, "revoke", "--id", str(tid))
        self.assertEqual((rc, out, err), (0, "token %d is held; the revocation is kept and sent once it is "
                                             "released ('revokerctl release --id %d')\n" % (tid, tid), ""))
        self.settle(ep, app, "socket")
        self.assert_never_sent(ep, [tok], "after socket revokes")
        self.assertEqual(app.row(tid)["due_reason"], "requested")

        # A restart, then a kill -9 and a start.
        self.assertEqual(d.stop(), 0)
        d.start()
        self.settle(ep, app, "restart")
        d.kill9()
        d.start()
        self.settle(ep, app, "kill9")
        self.assert_never_sent(ep, [tok], "after a restart and a kill -9")
        self.assertEqual(app.state(tid), "held")

        # stats and the status line count it.
        r = harness.request(d.socket_path, {"op": "stats"})
        self.assertEqual(r["states"]["held"], 1, r)
        self.wait_until(lambda: re.search(r"\b1 held\b", d.notify.last_status() or ""), 10,
                        "STATUS= counts the held token")

        rc, out, err = self.ctl(d, "release", "--id", str(tid))
        self.assertEqual((rc, out, err), (0, "token %d released (pending)\n" % tid, ""))
        ep.wait_requests(tok, timeout=20)
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "revoked after release")
        events = [(a["event"], a["detail"]) for a in app.audit(tid)]
        self.assertIn(("held", "uid %d (was active): incident 7" % UID), events)
        self.assertIn(("released", "uid %d (now pending, due: requested)" % UID), events)
        self.assertEqual(events[-1][0], "revoked", events)
        self.assertEqual(len(ep.requests(tok)), 1)
        rc, out, _ = self.ctl(d, "audit", "--verify")
        self.assertEqual(rc, 0, out)
        self.assert_no_secrets([tok], d, app)

    def test_hold_races_a_queued_job(self):
        # One request at a time, 3 s each: the first is in flight, the next
        # ones are fetched into the engine's queue behind it.
        ep = self.endpoint(delay_ms=3000)
        d = self.daemon(ep, config={"logout.concurrency": "1", "logout.timeout": "10s"})
        app = self.app(d)
        toks = ["race-%02d-%s" % (i, "q" * 24) for i in range(8)]
        by_token = app.insert_many(toks, expires_at=harness.now_s() - 1, subject="racer")
        ids = [by_token[t] for t in toks]

        def engine():
            return harness.request(d.socket_path, {"op": "stats"})
        self.wait_until(lambda: (lambda s: s["in_flight"] == 1 and s["queued"] >= 2)(engine()), 20,
                        "one request in flight and jobs queued behind it")
        # The backlog goes in id order: the first is the one in flight.
        rc, out, err = self.ctl(d, "hold", "--id", str(ids[0]))
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err, "revokerctl: revokerd: token %d is being sent now (its request is in flight) and "
                              "cannot be recalled; its outcome is recorded as usual\n" % ids[0])
        # By subject: the queued ones are taken back, the one in flight named.
        rc, out, err = self.ctl(d, "hold", "--subject", "racer", "--reason", "race")
        self.assertEqual((rc, out, err), (0, "%d token(s) held\ntoken %d is being sent now and could not be held; "
                                             "its outcome is recorded as usual\n" % (len(ids) - 1, ids[0]), ""))
        self.wait_until(lambda: app.state(ids[0]) == "revoked", 20, "the one in flight recorded as usual")
        self.settle(ep, app, "race")
        self.assert_never_sent(ep, toks[1:], "after a hold of a queued job")
        self.assertEqual(app.states(ids[1:]), {"held": len(ids) - 1})
        self.assertEqual(engine()["queued"], 0)

        rc, out, err = self.ctl(d, "release", "--all")
        self.assertEqual((rc, out, err), (0, "%d token(s) released\n" % (len(ids) - 1), ""))
        self.wait_until(lambda: app.all_in(ids, ("revoked",)), 60, "all revoked after release")
        for t in toks:
            self.assertEqual(len(ep.requests(t)), 1, t)

    def test_drop_and_errors(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        far = harness.now_s() + 86400
        tok = "drop-secret-%s" % ("d" * 24)
        tid = app.insert(tok, expires_at=far)
        other = app.insert("active-%s" % ("a" * 24), expires_at=far, subject="sam")

        # Usage errors: exit 2, nothing sent.
        for args, msg in [
            (("hold",), "give exactly one of --id N, --subject S"),
            (("hold", "--id", str(tid), "--subject", "sam"), "give exactly one of --id N, --subject S"),
            (("release", "--id", str(tid), "--all"), "give exactly one of --id N, --subject S or --all"),
            (("drop", "--id", str(tid)), "--reason R is required"),
            (("drop", "--subject", "sam", "--reason", "x"), "--subject is not an option of drop"),
            (("hold", "--all"), "--all is not an option of hold"),
            (("hold", "--id", "abc"), "invalid --id 'abc'"),
            # a selector given twice is not the last one silently
            (("drop", "--id", str(tid), "--id", str(other), "--reason", "x"), "give exactly one of --id N"),
            (("hold", "--subject", "sam", "--subject", "x"), "give exactly one of --id N, --subject S"),
        ]:
            rc, out, err = self.ctl(d, *args)
            self.assertEqual((rc, out), (2, ""), args)
            self.assertIn(msg, err, args)
        # The daemon's errors: exit 1, the message names what was wrong.
        for args, msg in [
            (("hold", "--id", "999999"), "no token with id 999999"),
            (("release", "--id", "999999"), "no token with id 999999"),
            (("drop", "--id", "999999", "--reason", "x"), "no token with id 999999"),
            (("hold", "--id", str(tid), "--reason", "r" * 300), "field 'reason' is 300 bytes long; at most 255 are allowed"),
            (("drop", "--id", str(other), "--reason", "x"),
             "token %d is active; only pending or held tokens can be dropped" % other),
            (("release", "--id", str(other)), "token %d is active; only held tokens can be released" % other),
        ]:
            rc, out, err = self.ctl(d, *args)
            self.assertEqual((rc, out, err), (1, "", "revokerctl: revokerd: %s\n" % msg), args)
        rc, out, _ = self.ctl(d, "release", "--all")
        self.assertEqual((rc, out), (0, "no token released\n"))

        self.assertEqual(self.ctl(d, "hold", "--id", str(tid))[0], 0)
        rc, out, err = self.ctl(d, "hold", "--id", str(tid))
        self.assertEqual((rc, err), (1, "revokerctl: revokerd: token %d is held already\n" % tid))
        rc, out, err = self.ctl(d, "drop", "--id", str(tid), "--reason", "user deleted")
        self.assertEqual((rc, out, err), (0, "token %d dropped (failed); no request was sent\n" % tid, ""))
        row = app.row(tid)
        self.assertEqual((row["state"], row["last_event"], row["token"], row["last_error"]),
                         ("failed", "dropped", None, "dropped by uid %d: user deleted" % UID))
        last = app.audit(tid)[-1]
        self.assertEqual((last["event"], last["detail"], last["fingerprint"]),
                         ("dropped", "uid %d: user deleted" % UID, harness.fingerprint(tok)))
        rc, out, err = self.ctl(d, "hold", "--id", str(tid))
        self.assertEqual((rc, err), (1, "revokerctl: revokerd: token %d is failed; only active or pending "
                                        "tokens can be held\n" % tid))
        self.settle(ep, app, "drop")
        self.assert_never_sent(ep, [tok], "after a drop")

        r = harness.request(d.socket_path, {"op": "stats"})
        self.assertEqual(r["totals"]["dropped"], 1, r)
        text = harness.request(d.socket_path, {"op": "metrics"})["text"]
        self.assertIn('revokerd_outcomes_total{event="dropped"} 1\n', text)
        self.wait_until(lambda: re.search(r"\b1 dropped\b", d.notify.last_status() or ""), 10,
                        "STATUS= counts the drop")
        rc, out, _ = self.ctl(d, "--json", "hold", "--subject", "sam")
        self.assertEqual((rc, out), (0, '{"ok":true,"count":1,"ids":[%d]}\n' % other))
        self.wait_until(lambda: 'revokerd_tokens{state="held"} 1\n' in
                        harness.request(d.socket_path, {"op": "metrics"})["text"], 20, "the metrics count it")
        rc, out, _ = self.ctl(d, "audit", "--event", "dropped")
        self.assertEqual(rc, 0)
        self.assertIn("uid %d: user deleted" % UID, out)
        self.assertEqual(self.ctl(d, "audit", "--verify")[0], 0)
        self.assert_no_secrets([tok], d, app)


if __name__ == "__main__":
    harness.main()
