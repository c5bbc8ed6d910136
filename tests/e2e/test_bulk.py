"""End-to-end tests of the ops on many tokens in parts (bulk.h): a hold by
subject, a release of every held token and a revoke by subject of 50,000
tokens each run as many short transactions, so the daemon answers pings on
another connection while the op runs (an ordering assertion: ping replies
arrive before the op's reply), and the op's reply, after its last part,
counts every token; every row ends in the right state with exactly one audit
row. A client that goes away does not stop its op; SIGTERM and kill -9 in
the middle of a hold leave every committed part whole and the rest as it
was, and the same hold again does the rest.
"""

import os
import select
import socket
import json

import harness

N = int(os.environ.get("BULK_TOKENS", "50000"))
SUBJECT = "everywhere"


class Conn:
    """A raw control-socket connection, for requests whose reply is awaited
    while another connection talks."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def line_ready(self):
        return b"\n" in self.buf

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("control socket closed without a reply")
        self.buf += chunk

    def reply(self):
        while not self.line_ready():
            self.fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


class T(harness.E2ETestCase):

    def seed(self, app, n=N, state="active"):
        """n tokens of SUBJECT in one transaction; their ids."""
        far = int(harness.now_s()) + 86400 * 30
        with app.transaction():
            app.conn.executemany(
                "INSERT INTO tokens (token, subject, expires_at, state) VALUES (?, ?, ?, ?)",
                (("bulk-%07d-%s" % (i, "b" * 24), SUBJECT, far, state) for i in range(n)))
        return [r[0] for r in app.execute("SELECT id FROM tokens WHERE subject = ? ORDER BY id", (SUBJECT,))]

    def run_pinging(self, d, request):
        """Sends request on one connection and pings on another, one ping at
        a time, until its reply comes: (reply, pings answered before it)."""
        op, ping = Conn(d.socket_path), Conn(d.socket_path)
        try:
            op.send(request)
            answered = 0
            ping.send({"op": "ping"})
            while True:
                if op.line_ready():
                    return op.reply(), answered
                r, _, _ = select.select([op.sock, ping.sock], [], [], 60)
                self.assertTrue(r, "neither the op nor a ping answered within 60 s")
                if op.sock in r:
                    op.fill()
                    continue
                ping.fill()
                while ping.line_ready():
                    self.assertTrue(ping.reply()["ok"])
                    answered += 1
                    ping.send({"op": "ping"})
        finally:
            op.close()
            ping.close()

    def audit_counts(self, app, event):
        """(rows, distinct tokens) of the subject's audit rows of event."""
        return tuple(app.execute(
            "SELECT count(*), count(DISTINCT token_id) FROM audit WHERE event = ? AND token_id IN "
            "(SELECT id FROM tokens WHERE subject = ?)", (event, SUBJECT)).fetchone())

    def state_counts(self, app):
        return dict(app.execute("SELECT state, count(*) FROM tokens WHERE subject = ? GROUP BY state",
                                (SUBJECT,)).fetchall())

    def test_hold_release_revoke_answer_pings_meanwhile(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        ids = self.seed(app)

        reply, pings = self.run_pinging(d, {"op": "hold", "subject": SUBJECT, "reason": "bulk test"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["count"], N)
        self.assertEqual(sorted(reply["ids"]), ids)
        self.assertNotIn("in_flight", reply)
        self.assertGreaterEqual(pings, 20, "pings answered while the hold ran")
        self.assertEqual(self.state_counts(app), {"held": N})
        self.assertEqual(self.audit_counts(app, "held"), (N, N))

        # The same hold again: nothing left to hold.
        r = harness.request(d.socket_path, {"op": "hold", "subject": SUBJECT}, timeout=60)
        self.assertEqual((r["ok"], r["count"], r["ids"]), (True, 0, []), r)

        # A revoke by subject now keeps the request in every held row.
        reply, pings = self.run_pinging(d, {"op": "revoke", "subject": SUBJECT, "reason": "log out"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual((reply["count"], reply["ids"]), (0, []))
        self.assertEqual(sorted(reply["held"]), ids)
        self.assertGreaterEqual(pings, 5, "pings answered while the revoke went through the held rows")
        self.assertEqual(app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND state = 'held' "
                                     "AND due_reason = 'requested'", (SUBJECT,)).fetchone()[0], N)

        reply, pings = self.run_pinging(d, {"op": "release", "all": True})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["count"], N)
        self.assertEqual(sorted(reply["ids"]), ids)
        self.assertGreaterEqual(pings, 20, "pings answered while the release ran")
        self.assertEqual(self.audit_counts(app, "released"), (N, N))
        self.assertEqual(self.audit_counts(app, "held"), (N, N))
        self.assertEqual(app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND state = 'held'",
                                     (SUBJECT,)).fetchone()[0], 0)
        self.assertEqual(d.stop(), 0)

    def test_revoke_by_subject_answers_pings_meanwhile(self):
        # The endpoint is down: what the revoke makes due stays pending.
        ep = self.endpoint(start=False)
        d = self.daemon(ep)
        app = self.app(d)
        ids = self.seed(app)
        due_before = self.audit_counts(app, "due")

        reply, pings = self.run_pinging(d, {"op": "revoke", "subject": SUBJECT, "reason": "log out everywhere"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["count"], N)
        self.assertEqual(sorted(reply["ids"]), ids)
        self.assertNotIn("held", reply)
        self.assertGreaterEqual(pings, 20, "pings answered while the revoke ran")
        self.assertEqual(self.state_counts(app), {"pending": N})
        self.assertEqual(due_before, (0, 0))
        self.assertEqual(self.audit_counts(app, "due"), (N, N))
        self.assertEqual(app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND due_reason = "
                                     "'requested'", (SUBJECT,)).fetchone()[0], N)
        self.assertEqual(d.stop(), 0)

    def assert_consistent(self, app):
        """Every held row has one `held` audit row, every other row none."""
        held = app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND state = 'held'",
                           (SUBJECT,)).fetchone()[0]
        self.assertEqual(held + app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND state = 'active'",
                                            (SUBJECT,)).fetchone()[0], N)
        self.assertEqual(self.audit_counts(app, "held"), (held, held))
        self.assertEqual(app.execute(
            "SELECT count(*) FROM audit a JOIN tokens t ON t.id = a.token_id WHERE a.event = 'held' "
            "AND t.state <> 'held'").fetchone()[0], 0)
        return held

    def hold_partly(self, d, app, before=0):
        """Starts a hold by subject and waits until some of it is committed
        (more than `before` held)."""
        c = Conn(d.socket_path)
        c.send({"op": "hold", "subject": SUBJECT})
        self.wait_until(lambda: app.execute("SELECT count(*) FROM tokens WHERE subject = ? AND state = 'held'",
                                            (SUBJECT,)).fetchone()[0] > before, 30, "the first parts committed")
        return c

    def test_interrupted_hold_is_whole_per_part_and_can_be_repeated(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        self.seed(app)

        # SIGTERM in the middle: the op stops at a part boundary, the daemon exits cleanly.
        c = self.hold_partly(d, app)
        self.assertEqual(d.stop(), 0)
        try:
            r = c.reply()
            self.assertFalse(r["ok"], r)
            self.assertIn("revokerd is stopping", r["error"])
        except (ConnectionError, OSError):
            pass  # closed before the reply: the daemon was stopping
        c.close()
        first = self.assert_consistent(app)
        self.assertLess(first, N, "the hold was done before SIGTERM: no part boundary was tested")

        # kill -9 in the middle: every committed part is whole.
        d.start()
        c = self.hold_partly(d, app, first)
        d.kill9()
        c.close()
        second = self.assert_consistent(app)
        self.assertGreater(second, first)

        # The same request again holds the rest, and counts only those.
        d.start()
        r = harness.request(d.socket_path, {"op": "hold", "subject": SUBJECT}, timeout=120)
        self.assertEqual((r["ok"], r["count"]), (True, N - second), r)
        self.assertEqual(self.assert_consistent(app), N)
        rc, out, err = harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path, "audit", "--verify"])
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(d.stop(), 0)

    def test_client_that_goes_away_does_not_stop_its_op(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        self.seed(app, n=N // 5)
        c = Conn(d.socket_path)
        c.send({"op": "hold", "subject": SUBJECT})
        c.close()
        self.wait_until(lambda: self.state_counts(app) == {"held": N // 5}, 60, "every token held")
        self.assertEqual(self.audit_counts(app, "held"), (N // 5, N // 5))
        self.assertTrue(harness.request(d.socket_path, {"op": "ping"})["ok"])
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
