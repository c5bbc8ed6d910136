"""End-to-end tests of the schema self-check (issue 20, item 5): an
application that drops an index, a trigger or a view has it recreated at
once, with a warning that names it; one that drops or alters a table stops
the daemon, which then refuses to start with a message that says what to do."""

import sqlite3

import harness


def objects(path):
    conn = sqlite3.connect(path)
    try:
        return {(t, n) for t, n in conn.execute("SELECT type, name FROM sqlite_schema")}
    finally:
        conn.close()


class SchemaSelfCheck(harness.E2ETestCase):

    def test_dropped_objects_are_recreated_at_once(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        for kind, name in (("index", "tokens_next"), ("trigger", "audit_no_update"),
                           ("trigger", "audit_no_delete"), ("view", "failed_tokens")):
            with self.subTest(name=name):
                app.execute("DROP %s %s" % (kind.upper(), name))
                self.wait_until(lambda: (kind, name) in objects(d.db_path), 5, "%s recreated" % name)
                self.wait_until(lambda: "%s %s was missing" % (kind, name) in d.stderr(), 5, "the warning")
        # The guards work again, and so does the engine.
        app.insert("after-repair", expires_at=harness.now_s() - 1)
        self.wait_until(lambda: "after-repair" in ep.tokens_seen(), 10, "revoked after the repair")
        with self.assertRaises(sqlite3.DatabaseError):
            app.execute("DELETE FROM audit")
        self.assertEqual(d.stop(), 0)

    def test_altered_index_is_recreated(self):
        d = self.daemon(self.endpoint())
        app = self.app(d)
        app.execute("DROP INDEX tokens_pending")
        app.execute("CREATE INDEX tokens_pending ON tokens(subject)")
        self.wait_until(lambda: "index tokens_pending was different" in d.stderr(), 5, "the warning")
        sql = app.query("SELECT sql FROM sqlite_schema WHERE name = 'tokens_pending'")[0]["sql"]
        self.assertIn("WHERE state = 'pending'", sql)
        self.assertEqual(d.stop(), 0)

    def test_dropped_trigger_restored_at_start(self):
        d = self.daemon(self.endpoint())
        self.assertEqual(d.stop(), 0)
        conn = sqlite3.connect(d.db_path)
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.commit()
        conn.close()
        d.start()
        self.assertIn(("trigger", "audit_no_delete"), objects(d.db_path))
        self.assertIn("trigger audit_no_delete was missing", d.stderr())
        self.assertEqual(d.stop(), 0)

    def test_dropped_audit_stops_the_daemon_and_refuses_a_start(self):
        d = self.daemon(self.endpoint())
        app = self.app(d)
        app.execute("DROP TABLE audit")
        self.wait_until(lambda: not d.running(), 10, "the daemon exits")
        self.assertEqual(d.stop(), 1)
        message = "table audit is missing: the audit log was dropped or altered by another process; " \
                  "restore it from a backup or move the database away"
        self.assertIn(message, d.stderr())
        d.start(wait_ready=False)
        self.assertEqual(d.proc.wait(15), 1)
        self.assertIn(message, d.stderr())
        self.assertNotIn("Input/output error", d.stderr())

    def test_altered_table_refuses_a_start(self):
        d = self.daemon(self.endpoint())
        self.assertEqual(d.stop(), 0)
        conn = sqlite3.connect(d.db_path)
        conn.execute("ALTER TABLE tokens ADD COLUMN extra TEXT")
        conn.commit()
        conn.close()
        d.start(wait_ready=False)
        self.assertEqual(d.proc.wait(15), 1)
        self.assertIn("table tokens is not as revokerd's migrations create it", d.stderr())


if __name__ == "__main__":
    harness.main()
