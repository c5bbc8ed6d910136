"""End-to-end tests of rows an application wrote wrong (issue 20, items 7
and 10): an expires_at that is not Unix seconds is never silent. Milliseconds
are rewritten in seconds and revoked on time; text, blobs and numbers past the
year 3000 fail with `rejected: expires_at is not a time`, logged once with the
row's id, audited, counted in `stats` and listed by the invalid_tokens view;
and a due row without a token counts as rejected in `stats` too."""

import time

import harness
from harness import now_s, request

# (SQL literal, what the row's last_error says) for values that can never be a time.
GARBAGE = [
    ("'tomorrow'", "expires_at is not a time: it is text, not Unix seconds"),
    ("x'0102'", "expires_at is not a time: it is a blob, not Unix seconds"),
    ("1e300", "expires_at is not a time: 1e+300 is after the year 3000 in seconds"),
    ("9223372036854775807", "expires_at is not a time: 9223372036854775807 is after the year 3000 in seconds"),
]




class BadRows(harness.E2ETestCase):

    def insert_raw(self, app, token, expires_sql):
        # A literal, as an application's own SQL would write it: the harness's
        # insert() would turn it into an integer.
        cur = app.execute("INSERT INTO tokens (token, expires_at) VALUES (?, %s)" % expires_sql, (token,))
        return cur.lastrowid

    def test_expires_at_that_is_not_a_time_is_loud(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        soon_ms = (int(now_s()) + 3) * 1000
        ms_soon = self.insert_raw(app, "bad-ms-soon", str(soon_ms))
        ms_past = self.insert_raw(app, "bad-ms-past", str((int(now_s()) - 60) * 1000))
        garbage = {self.insert_raw(app, "bad-garbage-%d" % i, lit): why for i, (lit, why) in enumerate(GARBAGE)}
        early = self.insert_raw(app, "bad-early", "0")
        tokenless = app.insert(None, flagged=1)

        # The past ones are revoked at once, the garbage fails, the future
        # milliseconds wait for their time (in seconds now).
        self.wait_until(lambda: all(app.state(i) == "failed" for i in garbage), 10, "garbage rows failed")
        self.wait_until(lambda: app.state(ms_past) == "revoked" and app.state(early) == "revoked", 10,
                        "past expiries revoked")
        self.assertEqual(app.row(ms_soon)["expires_at"], soon_ms // 1000, "milliseconds rewritten in seconds")
        self.assertEqual(app.state(ms_soon), "active", "not revoked before its time")
        self.wait_until(lambda: app.state(ms_soon) == "revoked", 10, "the milliseconds row revoked on time")
        self.assertGreaterEqual(app.row(ms_soon)["finished_at"], soon_ms)

        for tid, why in garbage.items():
            row = app.row(tid)
            self.assertEqual((row["last_event"], row["last_error"]), ("rejected", why))
            self.assertEqual([(r["event"], r["detail"]) for r in app.audit(tid)], [("rejected", why)])
        self.assertEqual(ep.tokens_seen() & {"bad-garbage-%d" % i for i in range(len(GARBAGE))}, set(),
                         "a row that failed is never sent")

        # Said once per row, with its id, in the log.
        log = d.stderr()
        for tid in garbage:
            self.assertEqual(log.count("token %d: expires_at is not a time" % tid), 1, log)
        self.assertEqual(log.count("token %d: expires_at %d looks like milliseconds" % (ms_soon, soon_ms)), 1)
        self.assertEqual(log.count("token %d: expires_at 0 is before the year 2000" % early), 1)

        # Counted: `stats` rejects = the garbage + the row without a token,
        # exactly the failed rows (item 10).
        st = request(d.socket_path, {"op": "stats"})
        self.assertTrue(st["ok"], st)
        self.assertEqual(st["bad_expires_at"], {"converted_from_ms": 2, "rejected": len(GARBAGE)})
        self.assertEqual(app.state(tokenless), "failed")
        self.assertEqual(st["totals"]["rejected"], len(GARBAGE) + 1)
        self.assertEqual(st["states"]["failed"], len(GARBAGE) + 1)
        out = harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path, "stats"])
        self.assertEqual(out[0], 0, out)
        self.assertIn("expires_at   2 read as milliseconds and converted, %d rejected" % len(GARBAGE), out[1])

        # The view for people: the garbage and the early one, not the rewritten ones.
        listed = {r["id"]: r for r in app.query("SELECT * FROM invalid_tokens")}
        self.assertEqual(set(listed), set(garbage) | {early})
        self.assertEqual(listed[early]["expires_at"], 0)
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def test_rows_written_while_it_was_down_are_handled_at_start(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        d.stop()
        app = self.app(d)
        ms = self.insert_raw(app, "bad-ms-offline", str((int(now_s()) - 5) * 1000))
        text = self.insert_raw(app, "bad-text-offline", "'next week'")
        d.start()
        self.wait_until(lambda: app.state(ms) == "revoked" and app.state(text) == "failed", 10,
                        "handled after the start")
        self.assertEqual(ep.tokens_seen() & {"bad-text-offline"}, set())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
