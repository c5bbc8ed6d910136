"""End-to-end tests of issue 18: a JWT carries its own expiry, and `track`
hands a live token to revokerd once.

- A JWT written with expires_at NULL gets its exp when the daemon first sees
  the row, and is revoked within a second of it; one whose row says later is
  revoked at the JWT's exp; an opaque token with NULL stays active.
- `track` over the socket and with revokerctl: with and without expires_at,
  a duplicate secret, neither expiry source (a clear error), and 10,000
  lines pipelined on one connection (all acknowledged, one row each, all
  revoked at expiry, committed in batches); a tracked row held past its
  expiry, listed by queue, released and revoked like any other.
- No part of a JWT's payload appears in the log, the audit table or a reply.
"""

import base64
import json
import os
import socket
import threading
import time

import harness
from harness import now_s, request

# A claim value that would stand out anywhere it leaked to.
CLAIM = "claim-Zq7Kx9-distinctive"
NO_EXPIRY = "track needs an expiry: give expires_at (Unix seconds) or a JWT with an exp claim"

# Under valgrind or a loaded machine a request may come later; never earlier.
LATE = 1.0 if not harness.wrapper() else 3.0


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(exp, n=0):
    """A JWT (HS256 header, an unchecked signature) with exp and the
    distinctive claim; n makes each one different."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": CLAIM, "jti": "id-%d" % n}
    if exp is not None:
        claims["exp"] = exp
    payload = b64url(json.dumps(claims).encode())
    return "%s.%s.%s" % (header, payload, b64url(os.urandom(32))), payload


def revokerctl(d, *args, stdin=None):
    return harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path] + list(args),
                       input=stdin.encode() if stdin is not None else None)


class JwtTestCase(harness.E2ETestCase):

    def start(self, config=None):
        ep = self.endpoint()
        d = self.daemon(ep, config=dict({"daemon.log_level": "debug"}, **(config or {})))
        self.replies = []  # every reply text, checked for the payload at the end
        self.payloads = []
        return ep, d, self.app(d)

    def ask(self, d, obj):
        r = request(d.socket_path, obj)
        self.replies.append(json.dumps(r))
        return r

    def jwt(self, exp, n=0):
        token, payload = make_jwt(exp, n)
        self.payloads.append(payload)
        return token

    def revoked_at(self, ep, token):
        """When the endpoint got the token's request (Unix s)."""
        return ep.wait_requests(token, 1, timeout=15)[0]["t"]

    def assert_no_payload(self, d, app, tokens=()):
        """Neither the claim nor a payload part nor a token in the log, the
        audit table or any reply."""
        leaks = [CLAIM] + self.payloads + list(tokens)
        self.assert_no_secrets(leaks, d, app)
        replies = "\n".join(self.replies)
        for s in leaks:
            self.assertNotIn(s, replies, "%r in a reply" % s)


class FromTheTable(JwtTestCase):

    def test_null_expires_at_takes_the_jwt_exp(self):
        ep, d, app = self.start()
        exp = int(now_s()) + 2
        token = self.jwt(exp)
        tid = app.insert(token)  # expires_at NULL
        self.wait_until(lambda: app.row(tid)["expires_at"] == exp, 5, "expires_at set from exp")
        t = self.revoked_at(ep, token)
        self.assertGreaterEqual(t, exp, "never before its exp")
        self.assertLess(t, exp + LATE, "within a second of its exp")
        self.wait_until(lambda: app.state(tid) == "revoked", 5, "revoked")
        self.assertEqual([r["event"] for r in app.audit(tid)], ["due", "revoked"])
        self.assertEqual(app.audit(tid)[0]["detail"], "expired")
        self.assertEqual(d.stderr().count("token %d (%s): expires_at set to its JWT's exp, %d"
                                          % (tid, harness.fingerprint(token), exp)), 1)
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [token])

    def test_a_later_expires_at_is_lowered_to_the_jwt_exp(self):
        ep, d, app = self.start()
        exp = int(now_s()) + 2
        token = self.jwt(exp)
        tid = app.insert(token, expires_at=exp + 3600)
        earlier = self.jwt(exp + 3600, 1)  # the row says earlier: the row's stays
        eid = app.insert(earlier, expires_at=exp)
        t = self.revoked_at(ep, token)
        self.assertGreaterEqual(t, exp)
        self.assertLess(t, exp + LATE, "at the JWT's exp, not the row's")
        self.assertGreaterEqual(self.revoked_at(ep, earlier), exp)
        self.assertEqual(app.row(eid)["expires_at"], exp)
        line = "token %d (%s): expires_at %d lowered to its JWT's exp, %d (3600 s earlier)" % (
            tid, harness.fingerprint(token), exp + 3600, exp)
        self.assertEqual(d.stderr().count(line), 1, d.stderr())
        self.assertNotIn("token %d (%s): expires_at" % (eid, harness.fingerprint(earlier)), d.stderr())
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [token, earlier])

    def test_an_opaque_token_with_null_stays_active(self):
        ep, d, app = self.start()
        opaque = app.insert("opaque-token-without-expiry")
        no_exp = self.jwt(None)  # a JWT without exp is opaque too
        jid = app.insert(no_exp)
        hashed = "SELECT count(*) FROM tokens WHERE token_sha256 IS NOT NULL AND id IN (%d, %d)" % (opaque, jid)
        self.wait_until(lambda: app.query(hashed)[0]["count(*)"] == 2, 5, "both rows seen by the hasher")
        flagged = app.insert("opaque-flagged", flagged=1)  # the engine went round since
        self.wait_until(lambda: app.state(flagged) == "revoked", 5, "a later row revoked")
        for tid in (opaque, jid):
            row = app.row(tid)
            self.assertEqual((row["state"], row["expires_at"]), ("active", None))
        self.assertEqual(ep.tokens_seen() & {"opaque-token-without-expiry", no_exp}, set())
        self.assertEqual(d.stop(), 0)

    def test_jwt_expiry_false_reads_no_exp(self):
        ep, d, app = self.start({"daemon.jwt_expiry": "false"})
        token = self.jwt(int(now_s()) + 1)
        tid = app.insert(token)
        self.wait_until(lambda: app.row(tid)["token_sha256"] is not None, 5, "row seen")
        self.assertIsNone(app.row(tid)["expires_at"])
        r = self.ask(d, {"op": "track", "token": self.jwt(int(now_s()) + 60, 1)})
        self.assertEqual(r, {"ok": False, "error": NO_EXPIRY})
        self.assertEqual(d.stop(), 0)


class Track(JwtTestCase):

    def test_track_over_the_socket(self):
        ep, d, app = self.start()
        exp = int(now_s()) + 3
        r = self.ask(d, {"op": "track", "token": "opaque-tracked-1", "subject": "ann", "expires_at": exp})
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["state"], "active")
        self.assertEqual(r["expires_at"], time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(exp)))
        row = app.row(r["id"])
        self.assertEqual((row["state"], row["subject"], row["expires_at"], row["fingerprint"]),
                         ("active", "ann", exp, harness.fingerprint("opaque-tracked-1")))
        self.assertEqual(bytes(row["token_sha256"]), harness.sha256("opaque-tracked-1"))
        self.assertEqual(app.audit(r["id"]), [], "no audit row while active")

        # The same secret again: its row, no duplicate.
        again = self.ask(d, {"op": "track", "token": "opaque-tracked-1", "expires_at": exp + 600})
        self.assertEqual((again["ok"], again["id"], again["state"]), (True, r["id"], "active"))
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens WHERE token = 'opaque-tracked-1'")[0]["n"], 1)

        # A JWT without expires_at: its exp.
        jexp = int(now_s()) + 3
        token = self.jwt(jexp)
        j = self.ask(d, {"op": "track", "token": token})
        self.assertTrue(j["ok"], j)
        self.assertEqual(app.row(j["id"])["expires_at"], jexp)

        # Neither: a clear error, nothing written.
        before = app.query("SELECT count(*) AS n FROM tokens")[0]["n"]
        self.assertEqual(self.ask(d, {"op": "track", "token": "opaque-no-expiry"}), {"ok": False, "error": NO_EXPIRY})
        self.assertEqual(self.ask(d, {"op": "track", "token": self.jwt(None, 2)}), {"ok": False, "error": NO_EXPIRY})
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens")[0]["n"], before)

        # Everything else works on a tracked row: status, and a flag.
        st = self.ask(d, {"op": "status", "id": r["id"]})
        self.assertEqual((st["state"], st["subject"]), ("active", "ann"))
        flagged = self.ask(d, {"op": "track", "token": "opaque-tracked-flag", "expires_at": exp + 3600})
        app.flag(flagged["id"])
        self.wait_until(lambda: app.state(flagged["id"]) == "revoked", 5, "flagged tracked row revoked")

        # Revoked at expiry.
        for tid, tok, at in ((r["id"], "opaque-tracked-1", exp), (j["id"], token, jexp)):
            t = self.revoked_at(ep, tok)
            self.assertGreaterEqual(t, at)
            self.assertLess(t, at + LATE)
            self.wait_until(lambda: app.state(tid) == "revoked", 5, "tracked row revoked")
            self.assertEqual([a["detail"] for a in app.audit(tid, "due")], ["expired"])
        # Tracked again once revoked: the row says so.
        done = self.ask(d, {"op": "track", "token": "opaque-tracked-1", "expires_at": exp + 600})
        self.assertEqual((done["id"], done["state"]), (r["id"], "revoked"))
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [token, "opaque-tracked-1"])

    def test_a_tracked_row_is_held_queued_and_released_like_any(self):
        # hold, queue and release work on a tracked row as on one the
        # application wrote: held past its expiry it is never sent, the
        # queue lists it held, and once released it is revoked as expired.
        ep, d, app = self.start()
        exp = int(now_s()) + 2
        token = self.jwt(exp)
        tr = self.ask(d, {"op": "track", "token": token})
        self.assertTrue(tr["ok"], tr)
        h = self.ask(d, {"op": "hold", "id": tr["id"], "reason": "tracked hold"})
        self.assertTrue(h["ok"], h)
        self.assertEqual(app.state(tr["id"]), "held")
        q = self.ask(d, {"op": "queue", "state": "held"})
        self.assertEqual([(r["id"], r["held"]) for r in q["rows"]], [(tr["id"], True)], q)
        time.sleep(max(0, exp - now_s()) + 1.5)  # past its exp; a flag made since is revoked first
        flagged = app.insert("tracked-hold-flag", flagged=1)
        self.wait_until(lambda: app.state(flagged) == "revoked", 5, "a later row revoked")
        self.assertEqual(app.state(tr["id"]), "held")
        self.assertNotIn(token, ep.tokens_seen(), "never sent while held")
        r = self.ask(d, {"op": "release", "id": tr["id"]})
        self.assertTrue(r["ok"], r)
        self.assertGreaterEqual(self.revoked_at(ep, token), exp)
        self.wait_until(lambda: app.state(tr["id"]) == "revoked", 5, "revoked after release")
        events = [(a["event"], a["detail"]) for a in app.audit(tr["id"])]
        self.assertEqual(events, [("held", "uid %d (was active): tracked hold" % os.getuid()),
                                  ("released", "uid %d (now pending, due: expired)" % os.getuid()),
                                  ("revoked", "HTTP 200")])
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [token])

    def test_track_with_revokerctl(self):
        ep, d, app = self.start()
        exp = int(now_s()) + 3
        rc, out, err = revokerctl(d, "track", "--token-stdin", "--subject", "bob", "--expires-at", str(exp),
                                  stdin="opaque-ctl-1\n")
        self.assertEqual(rc, 0, err)
        tid = int(out.split()[1])
        self.assertTrue(out.startswith("token %d tracked\n" % tid), out)
        self.assertIn("state         active", out)
        self.assertEqual((app.row(tid)["expires_at"], app.row(tid)["subject"]), (exp, "bob"))

        # A span ahead, and the same secret again (its row).
        rc, out, err = revokerctl(d, "--json", "track", "--token-stdin", "--expires-at", "1h", stdin="opaque-ctl-1")
        self.assertEqual(rc, 0, err)
        reply = json.loads(out)
        self.replies.append(out)
        self.assertEqual((reply["id"], reply["state"]), (tid, "active"))

        # A JWT, no --expires-at.
        jexp = int(now_s()) + 3
        token = self.jwt(jexp)
        rc, out, err = revokerctl(d, "--json", "track", "--token-stdin", stdin=token)
        self.assertEqual(rc, 0, err)
        self.replies.append(out + err)
        jid = json.loads(out)["id"]
        self.assertEqual(app.row(jid)["expires_at"], jexp)

        # Neither: the daemon's error, exit status 1; a bad --expires-at: usage.
        rc, out, err = revokerctl(d, "track", "--token-stdin", stdin="opaque-ctl-2")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn(NO_EXPIRY, err)
        rc, out, err = revokerctl(d, "track", "--token-stdin", "--expires-at", "soonish", stdin="opaque-ctl-2")
        self.assertEqual(rc, 2)
        self.assertIn("invalid --expires-at 'soonish'", err)
        rc, out, err = revokerctl(d, "track", "--expires-at", "1h")
        self.assertEqual(rc, 2)
        self.assertIn("track needs --token-stdin", err)
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens WHERE token = 'opaque-ctl-2'")[0]["n"], 0)

        self.assertGreaterEqual(self.revoked_at(ep, "opaque-ctl-1"), exp)
        self.assertGreaterEqual(self.revoked_at(ep, token), jexp)
        self.wait_until(lambda: app.state(tid) == "revoked" and app.state(jid) == "revoked", 5, "revoked")
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [token, "opaque-ctl-1"])

    def test_replies_keep_request_order_around_other_ops(self):
        # One write: tracks, other ops between them, and a last track without
        # its newline before the shutdown of our side.
        ep, d, app = self.start()
        exp = int(now_s()) + 3600
        reqs = [{"op": "track", "token": "order-1", "expires_at": exp},
                {"op": "ping"},
                {"op": "track", "token": "order-2"},  # no expiry: an error in its place
                {"op": "track", "token": "order-3", "expires_at": exp},
                {"op": "status", "id": 1},
                {"op": "track", "token": "order-4", "expires_at": exp}]
        data = b"\n".join(json.dumps(r).encode() for r in reqs)  # no newline after the last
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(d.socket_path)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            buf = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        replies = [json.loads(x) for x in buf.splitlines()]
        self.replies.extend(json.dumps(r) for r in replies)
        self.assertEqual(len(replies), len(reqs), replies)
        self.assertEqual(replies[0]["id"], 1)
        self.assertIn("version", replies[1])
        self.assertEqual(replies[2], {"ok": False, "error": NO_EXPIRY})
        self.assertEqual(replies[3]["id"], 2)
        self.assertEqual((replies[4]["id"], replies[4]["state"]), (1, "active"))  # status sees the commit
        self.assertEqual(replies[5]["id"], 3)
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens")[0]["n"], 3)
        rc, out, err = revokerctl(d, "revoke", "--id", "1")
        self.assertEqual(rc, 0, err)
        self.wait_until(lambda: app.state(1) == "revoked", 5, "revoked")
        rc, out, err = revokerctl(d, "track", "--token-stdin", "--expires-at", str(exp), stdin="order-1")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("token 1 is already revoked\n"), out)
        self.assertEqual(d.stop(), 0)

    def test_ten_thousand_pipelined_on_one_connection(self):
        ep, d, app = self.start()
        n = 10000
        exp = int(now_s()) + 8
        tokens = ["pipelined-%05d-%s" % (i, os.urandom(6).hex()) for i in range(n)]
        jwts = {i: self.jwt(exp, i) for i in range(0, n, 10)}  # every tenth a JWT without expires_at
        lines = []
        for i, tok in enumerate(tokens):
            if i in jwts:
                lines.append({"op": "track", "token": jwts[i]})
            else:
                lines.append({"op": "track", "token": tok, "expires_at": exp})
        data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(d.socket_path)
        replies = []

        def read():
            buf = b""
            while len(replies) < n:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                *done, buf = buf.split(b"\n")
                replies.extend(json.loads(x) for x in done)

        reader = threading.Thread(target=read)
        reader.start()
        sock.sendall(data)
        reader.join(60)
        sock.close()
        self.assertEqual(len(replies), n, "every line acknowledged")
        self.assertEqual([r for r in replies if not r.get("ok")], [])
        self.assertEqual({r["state"] for r in replies}, {"active"})
        ids = [r["id"] for r in replies]
        self.assertEqual(len(set(ids)), n, "one row each")
        self.assertEqual(ids, sorted(ids), "replies in request order")
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens")[0]["n"], n)
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens WHERE expires_at = %d" % exp)[0]["n"], n)
        self.replies.append(json.dumps(replies[::10]))

        # Committed in batches, not one transaction a line.
        log = d.stderr()
        batches = log.count("track request(s) committed in one transaction")
        self.assertGreater(batches, 0)
        self.assertLess(batches, n // 4, "tracks share commits")

        self.wait_until(lambda: app.states() == {"revoked": n}, 120, "all revoked at expiry", interval=0.5)
        early = [r for r in ep.requests() if r["t"] < exp]
        self.assertEqual(early, [], "none before its expiry")
        self.assertEqual(len(ep.tokens_seen()), n)
        self.assertEqual(d.stop(), 0)
        self.assert_no_payload(d, app, [tokens[1], jwts[0]])


if __name__ == "__main__":
    harness.main()
