"""End-to-end tests of the queue views (issue 14, item 2): the socket ops
`queue` and `shape` and `revokerctl queue` / `revokerctl shape`, against
known tokens in known states: pending for each due reason, some with
attempts and last errors from a failing endpoint, active, revoked and
failed ones that must not show. The rows and counts are checked against the
table itself and against ages written into it (due_at in the past, while
the endpoint is down, so that the rows stay pending).
"""

import array
import json
import os
import time

import harness
from test_faults import CtlClient

MINUTE_MS = 60 * 1000
BUCKETS = ["5m", "10m", "20m", "40m", "80m", "160m", "320m", "640m", "1280m", "1280m+"]


def iso(ms):
    if ms is None or ms <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def bucket(age_ms):
    """qshape's rule, written out: under 5 min, under 10, 20, ... 1280, the rest."""
    bound, i = 5 * MINUTE_MS, 0
    while i < len(BUCKETS) - 1 and age_ms >= bound:
        bound, i = bound * 2, i + 1
    return BUCKETS[i]


class T(harness.E2ETestCase):

    def setUp(self):
        super().setUp()
        # One failing attempt each, then a retry an hour away: the rows stay
        # as the test wrote them.
        self.ep = self.endpoint()
        self.d = self.daemon(self.ep, config={"retry.base": "1h", "retry.max_delay": "1h",
                                              "logout.down_after": "1000"})
        self.app = self.app(self.d)
        self.sock = self.d.socket_path

    def ask(self, obj):
        return harness.request(self.sock, obj)

    def ctl(self, *args):
        return harness.run([harness.binary("REVOKERCTL"), "--config", self.d.config_path] + list(args),
                           env={"TZ": "UTC"})

    def expected_rows(self, where="1"):
        """The queue as the table says, in the documented order."""
        rows = self.app.query(
            "SELECT id, fingerprint, subject, due_reason, due_at, attempts, next_attempt_at, last_event, "
            "last_error, state FROM tokens WHERE state IN ('pending', 'held') AND (%s) "
            "ORDER BY due_at IS NOT NULL, due_at, id" % where)
        return [{"id": r["id"], "fingerprint": r["fingerprint"], "subject": r["subject"],
                 "reason": r["due_reason"], "lane": "routine" if r["due_reason"] == "expired" else "urgent",
                 "due_at": iso(r["due_at"]), "attempts": r["attempts"],
                 "next_attempt_at": iso(r["next_attempt_at"]), "last_event": r["last_event"],
                 "last_error": r["last_error"], "held": r["state"] == "held"} for r in rows]

    def page_through(self, limit, **filters):
        """Every page of the socket op: the rows, and the number of requests."""
        rows, after, requests = [], None, 0
        while True:
            req = dict(op="queue", limit=limit, **filters)
            if after:
                req["after"] = after
            r = self.ask(req)
            self.assertTrue(r["ok"], r)
            self.assertLessEqual(len(r["rows"]), limit)
            rows += r["rows"]
            requests += 1
            after = r["next"]
            if after is None:
                return rows, requests
            self.assertLess(requests, 1000, "the cursor does not move")

    def seed(self):
        """Known tokens in known states; returns {name: id}."""
        far = harness.now_s() + 86400
        ids = {}
        ids["exp500"] = self.app.insert("s500-expired-" + "e" * 20, expires_at=harness.now_s() - 5, subject="erin")
        ids["flag500"] = self.app.insert("s500-flagged-" + "f" * 20, expires_at=far, flagged=1, subject="frank")
        r = self.ask({"op": "revoke", "token": "s500-requested-" + "r" * 20, "subject": "rita"})
        self.assertTrue(r["ok"], r)
        ids["req500"] = r["id"]
        ids["active"] = self.app.insert("active-" + "a" * 24, expires_at=far)
        ids["revoked"] = self.app.insert("ok-revoked-" + "o" * 20, expires_at=harness.now_s() - 5)
        ids["failed"] = self.app.insert("s422-failed-" + "x" * 20, expires_at=harness.now_s() - 5)
        self.wait_until(lambda: all(self.app.state(ids[k]) == "pending" and self.app.row(ids[k])["attempts"] == 1
                                    for k in ("exp500", "flag500", "req500"))
                        and self.app.state(ids["revoked"]) == "revoked"
                        and self.app.state(ids["failed"]) == "failed", 20, "the first answers")
        # The endpoint goes down: what falls due now stays pending, and the
        # ages written below stay as written.
        self.ep.stop()
        more = self.app.insert_many(["down-%02d-%s" % (i, "d" * 20) for i in range(20)],
                                    expires_at=harness.now_s() - 1)
        more.update(self.app.insert_many(["down-%02d-%s" % (i, "d" * 20) for i in range(20, 24)],
                                         expires_at=far, flagged=1))
        for name, i in more.items():
            ids[name[:7]] = i
        # Each tried once (refused: a retry an hour away): nothing changes after.
        self.wait_until(lambda: self.app.query("SELECT count(*) AS n FROM tokens WHERE state = 'pending' "
                                               "AND last_event = 'retry'")[0]["n"] == 27, 20, "27 pending, tried")
        return ids

    def test_queue_and_shape_give_the_table(self):
        ids = self.seed()
        now = harness.now_ms()
        # Ages mid-bucket, so that the seconds the test takes never move one.
        ages_min = [0, 1, 7, 7, 15, 30, 30, 60, 120, 240, 480, 960, 2000, 3000, 15]
        down = sorted(i for n, i in ids.items() if n.startswith("down-"))
        with self.app.transaction():
            for i, age in zip(down, ages_min):
                self.app.execute("UPDATE tokens SET due_at = ? WHERE id = ?", (now - age * MINUTE_MS, i))
            # Ties: three rows due at the same millisecond come by id.
            for i in down[15:18]:
                self.app.execute("UPDATE tokens SET due_at = ? WHERE id = ?", (now - 45 * MINUTE_MS, i))

        # queue: exactly the pending rows, oldest due first, with the failing
        # endpoint's attempts and errors.
        want = self.expected_rows()
        self.assertEqual(len(want), 27)
        r = self.ask({"op": "queue"})
        self.assertTrue(r["ok"], r)
        self.assertIsNone(r["next"])
        self.assertEqual(r["rows"], want)
        by_id = {row["id"]: row for row in r["rows"]}
        for name, reason, lane in (("exp500", "expired", "routine"), ("flag500", "flagged", "urgent"),
                                   ("req500", "requested", "urgent")):
            row = by_id[ids[name]]
            self.assertEqual((row["reason"], row["lane"], row["attempts"], row["last_event"], row["held"]),
                             (reason, lane, 1, "retry", False), name)
            self.assertIn("500", row["last_error"])
            self.assertEqual(row["fingerprint"], harness.fingerprint(
                {"exp500": "s500-expired-" + "e" * 20, "flag500": "s500-flagged-" + "f" * 20,
                 "req500": "s500-requested-" + "r" * 20}[name]))
        self.assertEqual(by_id[ids["req500"]]["subject"], "rita")
        for name in ("active", "revoked", "failed"):
            self.assertNotIn(ids[name], by_id, name)
        self.assertEqual([row["id"] for row in r["rows"] if row["due_at"] == iso(now - 45 * MINUTE_MS)],
                         down[15:18])

        # Filters, and paging: every row once, in order, whatever the page size.
        for filters, where in (({"reason": "expired"}, "due_reason = 'expired'"),
                               ({"reason": "flagged"}, "due_reason = 'flagged'"),
                               ({"reason": "requested"}, "due_reason = 'requested'"),
                               ({"state": "pending"}, "state = 'pending'"),
                               ({"state": "held"}, "state = 'held'")):
            self.assertEqual(self.page_through(1000, **filters)[0], self.expected_rows(where), filters)
        for limit in (1, 2, 7, 26, 27):
            rows, requests = self.page_through(limit)
            self.assertEqual(rows, want, "pages of %d" % limit)
            self.assertGreaterEqual(requests, -(-27 // limit))

        # shape: the grid from the ages written, summing to the pending count.
        pending = self.app.query("SELECT due_reason, due_at, last_event FROM tokens WHERE state = 'pending'")
        for by, column in (("reason", "due_reason"), ("event", "last_event")):
            r = self.ask({"op": "shape", "by": by})
            self.assertTrue(r["ok"], r)
            at = r["now"]
            now_reply = int(time.mktime(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 1000 \
                + int(at[20:23])
            grid = {}
            for p in pending:
                for name in ("TOTAL", p[column]):
                    row = grid.setdefault(name, dict({b: 0 for b in BUCKETS}, name=name, T=0))
                    row["T"] += 1
                    row[bucket(now_reply - p["due_at"])] += 1
            self.assertEqual(r["buckets"], ["T"] + BUCKETS)
            self.assertEqual(r["rows"][0]["name"], "TOTAL")
            self.assertEqual({row["name"]: row for row in r["rows"]}, grid, by)
            self.assertEqual(r["rows"][0]["T"], len(pending))
            self.assertEqual(sum(row["T"] for row in r["rows"][1:]), len(pending))
            totals = [row["T"] for row in r["rows"][1:]]
            self.assertEqual(totals, sorted(totals, reverse=True))
            oldest = min(p["due_at"] for p in pending)
            self.assertEqual(r["oldest_due_at"], iso(oldest))
            self.assertAlmostEqual(r["oldest_age_s"], (now_reply - oldest) // 1000, delta=1)
        self.assertEqual(grid["retry"]["T"] + grid.get("due", {"T": 0})["T"], 27)

        # revokerctl queue: the same rows, as a table and as JSON lines.
        rc, out, err = self.ctl("queue")
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("ID       STATE   REASON    LANE    DUE SINCE"), lines[0])
        self.assertEqual([int(ln.split()[0]) for ln in lines[1:-1]], [w["id"] for w in want])
        self.assertEqual(lines[-1], "-- 27 token(s)")
        first = lines[1 + [w["id"] for w in want].index(ids["flag500"])].split()
        self.assertEqual(first[1:4], ["pending", "flagged", "urgent"])
        self.assertEqual((first[4], first[6]), (time.strftime("%Y-%m-%d", time.gmtime(now // 1000)), "UTC"))
        rc, out, err = self.ctl("--json", "queue")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual([json.loads(ln) for ln in out.splitlines()], want)
        rc, out, err = self.ctl("queue", "--limit", "3", "--reason", "expired")
        self.assertEqual(rc, 0, err)
        self.assertEqual([int(ln.split()[0]) for ln in out.splitlines()[1:-1]],
                         [w["id"] for w in want if w["reason"] == "expired"][:3])
        self.assertEqual(out.splitlines()[-1], "-- 3 token(s) (--limit reached)")
        rc, out, err = self.ctl("queue", "--state", "held")
        self.assertEqual((rc, out.splitlines()[1:], err), (0, ["-- 0 token(s)"], ""))

        # revokerctl shape: the header line and the grid.
        rc, out, err = self.ctl("shape")
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("oldest pending token: due for 2d 2h "), lines[0])
        self.assertEqual(lines[1].split(), ["T"] + BUCKETS)
        r = self.ask({"op": "shape"})
        for ln, row in zip(lines[2:], r["rows"]):
            self.assertEqual(ln.split(), [row["name"], str(row["T"])] + [str(row[b]) for b in BUCKETS])
        self.assertEqual(len(lines), 2 + len(r["rows"]))
        rc, out, err = self.ctl("--json", "shape", "--by", "event")
        self.assertEqual(rc, 0, err)
        reply = json.loads(out)
        self.assertEqual((reply["by"], reply["rows"][0]["T"]), ("event", 27))

        # No secret in any of it.
        everything = json.dumps(self.page_through(5)[0]) + out + self.d.stderr("all")
        for row in self.app.query("SELECT token FROM tokens WHERE token IS NOT NULL"):
            self.assertNotIn(row["token"], everything)

    def test_held_rows_are_listed_and_not_counted_as_pending(self):
        ids = self.seed()
        down = sorted(i for n, i in ids.items() if n.startswith("down-"))
        held = [ids["flag500"]] + down[:2]
        for i in held:
            r = self.ask({"op": "hold", "id": i, "reason": "queue test"})
            self.assertTrue(r["ok"], r)
        # Both states by default, held ones flagged; each filter alone.
        rows, _ = self.page_through(10)
        self.assertEqual(rows, self.expected_rows())
        self.assertEqual(sorted(row["id"] for row in rows if row["held"]), sorted(held))
        rows, _ = self.page_through(2, state="held")
        self.assertEqual(rows, self.expected_rows("state = 'held'"))
        self.assertEqual(sorted(row["id"] for row in rows), sorted(held))
        self.assertTrue(all(row["held"] for row in rows))
        rows, _ = self.page_through(1000, state="pending")
        self.assertEqual(len(rows), 27 - len(held))
        self.assertFalse(any(row["held"] for row in rows))
        # shape counts pending tokens only: the held ones left its total.
        r = self.ask({"op": "shape"})
        self.assertTrue(r["ok"], r)
        total = [row for row in r["rows"] if row["name"] == "TOTAL"][0]
        self.assertEqual(total["T"], 27 - len(held))
        rc, out, err = self.ctl("--json", "queue", "--state", "held")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(json.loads(line)["id"] for line in out.splitlines()), sorted(held))

    def test_revokerctl_lists_a_token_released_while_it_pages_once(self):
        # Held while active: no due_at, first in the queue. Released while
        # revokerctl pages (it is blocked writing its first page to a full
        # pipe), each is due now and moves to the end: the daemon's next
        # pages list it again, revokerctl leaves the second out.
        import fcntl
        import subprocess
        import termios
        self.ep.stop()
        pending = self.app.insert_many(["pg-%04d-%s" % (i, "p" * 20) for i in range(1200)],
                                       expires_at=harness.now_s() - 10)
        held = self.app.insert_many(["hl-%02d-%s" % (i, "h" * 20) for i in range(50)],
                                    expires_at=harness.now_s() + 3600, subject="later")
        self.wait_until(lambda: self.app.states().get("pending", 0) == 1200, 30, "1200 pending")
        self.assertEqual(self.ask({"op": "hold", "subject": "later"})["count"], 50)
        self.app.execute("UPDATE tokens SET expires_at = ? WHERE subject = 'later'", (int(harness.now_s()) - 5,))
        p = subprocess.Popen([harness.binary("REVOKERCTL"), "--config", self.d.config_path, "queue"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, TZ="UTC"))
        self.addCleanup(p.kill)

        def unread():
            n = array.array("i", [0])
            fcntl.ioctl(p.stdout.fileno(), termios.FIONREAD, n)
            return n[0]
        self.wait_until(lambda: unread() >= 60000, 20, "revokerctl blocked on its first page")
        self.assertEqual(self.ask({"op": "release", "subject": "later"})["count"], 50)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        lines = out.decode().splitlines()
        listed = [int(line.split()[0]) for line in lines[1:-1]]
        self.assertEqual(sorted(listed), sorted(list(pending.values()) + list(held.values())))
        self.assertEqual(lines[-1], "-- 1250 token(s)")

    def test_bad_input(self):
        allowed_after = "field 'after' must be the 'next' of the previous reply (\"DUE_AT_MS:ID\" or \"null:ID\")"
        for req, error in (
                ({"op": "queue", "reason": "leaked"},
                 "field 'reason' must be one of expired, flagged, requested, got 'leaked'"),
                ({"op": "queue", "state": "revoked"}, "field 'state' must be one of pending, held, got 'revoked'"),
                ({"op": "queue", "limit": 0}, "field 'limit' must be an integer from 1 to 1000, got 0"),
                ({"op": "queue", "limit": 1001}, "field 'limit' must be an integer from 1 to 1000, got 1001"),
                ({"op": "queue", "limit": -4}, "field 'limit' must be an integer from 1 to 1000, got -4"),
                ({"op": "queue", "limit": "ten"}, "field 'limit' must be an integer from 1 to 1000, got a string"),
                ({"op": "queue", "after": "yesterday"}, allowed_after),
                ({"op": "queue", "after": "12:x"}, allowed_after),
                ({"op": "queue", "after": 12}, "field 'after' must be a string, got an integer"),
                ({"op": "queue", "id": 3}, "unknown field 'id' for op queue (allowed: reason, state, limit, after)"),
                ({"op": "shape", "by": "subject"}, "field 'by' must be one of reason, event, got 'subject'"),
                ({"op": "shape", "by": ["reason"]}, "field 'by' must be a string, got an array"),
                ({"op": "shape", "reason": "expired"}, "unknown field 'reason' for op shape (allowed: by)")):
            self.assertEqual(self.ask(req), {"ok": False, "error": error}, req)
        for args, want in ((("queue", "--reason", "x"),
                            (1, "revokerctl: revokerd: field 'reason' must be one of expired, flagged, requested, "
                                "got 'x'\n")),
                           (("queue", "--state", "active"),
                            (1, "revokerctl: revokerd: field 'state' must be one of pending, held, got 'active'\n")),
                           (("shape", "--by", "day"),
                            (1, "revokerctl: revokerd: field 'by' must be one of reason, event, got 'day'\n")),
                           (("queue", "--limit", "0"),
                            (2, "revokerctl: invalid --limit '0' (a positive integer)\n"
                                "Try 'revokerctl help queue'.\n")),
                           (("queue", "--limit", "many"),
                            (2, "revokerctl: invalid --limit 'many' (a positive integer)\n"
                                "Try 'revokerctl help queue'.\n")),
                           (("shape", "extra"),
                            (2, "revokerctl: unexpected argument 'extra'\nTry 'revokerctl help shape'.\n"))):
            rc, out, err = self.ctl(*args)
            self.assertEqual((rc, err), want, args)
            self.assertEqual(out, "", args)

    def test_shape_answers_in_request_order(self):
        """shape's reply comes from the threadpool: the requests after it on
        the same connection wait for it, and a client that leaves before it
        costs nothing."""
        self.ep.stop()
        self.app.insert_many(["w-%03d-%s" % (i, "w" * 20) for i in range(50)], expires_at=harness.now_s() - 1)
        self.wait_until(lambda: self.app.query("SELECT count(*) AS n FROM tokens WHERE state = 'pending'")[0]["n"]
                        == 50, 20, "50 pending")
        c = CtlClient(self.sock)
        c.sock.sendall(b'{"op":"shape"}\n{"op":"ping"}\n{"op":"shape","by":"event"}\n{"op":"queue","limit":1}\n')
        first, second, third, fourth = [c.reply() for _ in range(4)]
        self.assertEqual((first["by"], first["rows"][0]["T"]), ("reason", 50))
        self.assertIn("version", second)
        self.assertEqual(third["by"], "event")
        self.assertEqual(len(fourth["rows"]), 1)
        c.close()
        for _ in range(20):  # leave before the reply, many times
            c = CtlClient(self.sock)
            c.sock.sendall(b'{"op":"shape"}\n')
            c.close()
        self.assertEqual(self.ask({"op": "shape"})["rows"][0]["T"], 50)
        self.assertTrue(self.d.running)


if __name__ == "__main__":
    import unittest
    unittest.main()
