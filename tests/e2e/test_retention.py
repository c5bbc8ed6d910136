#!/usr/bin/env python3
"""End-to-end tests of retention (issue 16): finished tokens and old audit
rows are deleted, the file stops growing, the audit stays verifiable from
its anchor, only the daemon may prune, a crash loses nothing and the export
file holds each pruned row once, deleted secrets leave the file.

RETENTION_ROUND (default 500) sets the tokens per round of the plateau test
(20 rounds); the issue's heavier variant is RETENTION_ROUND=10000."""

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

GENESIS = "0" * 64
SHORT = {"retention.tokens": "1s", "retention.audit": "1s"}


def audit_hash(prev, row):
    """auditrow.c's row hash, computed independently (as test_secrets.py does)."""
    def text(v):
        return "\\N" if v is None else v.replace("\\", "\\\\").replace("|", "\\|")

    def num(v):
        return "\\N" if v is None else str(v)

    at = row["at_ms"] if "at_ms" in row else row["at"]
    parts = [prev, num(row["seq"]), num(at), num(row["token_id"]), text(row["fingerprint"]),
             text(row["event"]), num(row["attempt"]), num(row["http_status"]), text(row["detail"]),
             num(row["duration_ms"])]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def tok(kind="plain"):
    return "%s-%s" % (kind, os.urandom(18).hex())


class Retention(harness.E2ETestCase):

    def ctl(self, d, *args, db=None):
        cmd = [harness.binary("REVOKERCTL"), "--config", d.config_path] + list(args)
        if db:
            cmd = [harness.binary("REVOKERCTL"), "--database", db] + list(args)
        return harness.run(cmd, env={"TZ": "UTC"})

    def stats(self, d):
        return harness.request(d.socket_path, {"op": "stats"})

    def anchor(self, app):
        rows = app.query("SELECT first_seq, prev_hash FROM audit_anchor ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def remove_db(self, d):
        """A stopped daemon's database gone, for the next case's fresh one."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(d.db_path + suffix):
                os.remove(d.db_path + suffix)

    def revoke_flagged(self, app, n, kind="plain"):
        tokens = [tok(kind) for _ in range(n)]
        ids = app.insert_many(tokens, flagged=1)
        return tokens, ids

    def wait_revoked(self, app, ids, timeout=60):
        ids = list(ids)

        def done():
            # Revoked, or already pruned.
            q = ",".join(str(i) for i in ids)
            return app.query("SELECT count(*) AS n FROM tokens WHERE id IN (%s) AND state NOT IN "
                             "('revoked', 'failed')" % q)[0]["n"] == 0
        self.wait_until(done, timeout, "tokens revoked", interval=0.05)

    def keepers(self, d, app):
        """An active, a pending (its request hangs) and a held token: never deleted."""
        active = app.insert(tok("active"), expires_at=harness.now_s() + 86400)
        pending = app.insert(tok("hang"), flagged=1)
        held = app.insert(tok("held"), expires_at=harness.now_s() + 86400)
        rc, out, err = self.ctl(d, "hold", "--id", str(held), "--reason", "incident")
        self.assertEqual(rc, 0, err)
        self.wait_until(lambda: app.state(pending) == "pending", 10, "the hanging token pending")
        return {active: "active", pending: "pending", held: "held"}

    # -- the file stops growing -------------------------------------------------

    def test_file_size_plateaus(self):
        per_round = int(os.environ.get("RETENTION_ROUND", "500"))
        ep = self.endpoint()
        d = self.daemon(ep, config=dict(SHORT, **{"logout.concurrency": "32", "logout.timeout": "60s"}))
        app = self.app(d)
        keep = self.keepers(d, app)
        sizes = []
        for rnd in range(20):
            _, ids = self.revoke_flagged(app, per_round)
            self.wait_revoked(app, ids.values(), timeout=120)
            # Long enough for the previous rounds' rows to pass the 1 s retention.
            time.sleep(1.5)
            sizes.append(os.path.getsize(d.db_path))
            print("  round %2d: %d tokens revoked, file %d bytes, %d token rows, %d audit rows" % (
                rnd + 1, (rnd + 1) * per_round, sizes[-1], app.query("SELECT count(*) AS n FROM tokens")[0]["n"],
                app.query("SELECT count(*) AS n FROM audit")[0]["n"]), flush=True)
        self.wait_until(lambda: app.query("SELECT count(*) AS n FROM tokens WHERE state = 'revoked'")[0]["n"] == 0,
                        30, "every revoked row deleted", interval=0.2)
        self.wait_until(lambda: app.query("SELECT count(*) AS n FROM audit")[0]["n"] < per_round, 30,
                        "old audit rows deleted", interval=0.2)
        # What never goes: active, pending and held rows.
        for tid, state in keep.items():
            self.assertEqual(app.state(tid), state)
        # A plateau: the second half of the rounds does not outgrow the first
        # (without retention the file grows by ~530 bytes per token).
        first, second = max(sizes[:10]), max(sizes[10:])
        self.assertLessEqual(second, first * 1.25 + 65536, "file keeps growing: %r" % sizes)
        self.assertLess(sizes[-1], 20 * per_round * 530 / 2, "file as large as without retention: %r" % sizes)
        st = self.stats(d)
        self.assertGreaterEqual(st["database"]["pruned"]["tokens"], 20 * per_round)
        self.assertGreater(st["database"]["pruned"]["audit"], 0)
        self.assertGreater(st["database"]["size_bytes"], 0)
        text = harness.request(d.socket_path, {"op": "metrics"})["text"]
        m = re.search(r'^revokerd_pruned_rows_total\{table="tokens"\} (\d+)$', text, re.M)
        self.assertTrue(m and int(m.group(1)) >= 20 * per_round, text)
        self.assertRegex(text, r"(?m)^revokerd_db_size_bytes [1-9]\d*$")
        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^audit log intact: \d+ rows from seq \d+ \(the audit anchor")
        d.kill9()  # the pending token's request hangs: no drain to wait for

    # -- verification from the anchor -------------------------------------------

    def pruned_db(self):
        """A stopped daemon's database whose oldest audit rows were pruned."""
        d = self.daemon(self.endpoint(), config={"retention.audit": "1s"})
        app = self.app(d)
        _, ids = self.revoke_flagged(app, 20)
        self.wait_revoked(app, ids.values())
        time.sleep(1.2)
        _, ids = self.revoke_flagged(app, 5)  # rows newer than the retention stay
        self.wait_revoked(app, ids.values())
        self.wait_until(lambda: self.anchor(app) and
                        app.query("SELECT min(seq) AS s FROM audit")[0]["s"] > 40, 10, "audit pruned")
        self.assertEqual(d.stop(), 0)
        app.close()
        return d

    def tampered(self, d, name, *sql):
        path = os.path.join(self.dir, name + ".db")
        shutil.copy(d.db_path, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for s in sql:
            conn.execute(s)
        conn.close()
        return path

    def test_verify_from_the_anchor(self):
        d = self.pruned_db()
        app = self.app(d)
        a = self.anchor(app)
        first = a["first_seq"]
        rows = app.query("SELECT * FROM audit ORDER BY seq")
        self.assertEqual(rows[0]["seq"], first, "the anchor names the first row")
        self.assertEqual(audit_hash(a["prev_hash"], rows[0]), rows[0]["hash"], "the first row chains from the anchor")
        last = rows[-1]["seq"]
        app.close()
        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "audit log intact: %d rows from seq %d (the audit anchor: older rows pruned), hash "
                              "chain verified\n" % (last - first + 1, first))
        rc, out, err = self.ctl(d, "--json", "audit", "--verify")
        self.assertEqual(json.loads(out)["from_seq"], first)

        cases = {
            "edited": (["UPDATE audit SET detail = 'nothing happened' WHERE seq = %d" % (first + 2)],
                       "audit log damaged at seq %d: seq %d: its hash does not match" % (first + 2, first + 2)),
            "inserted": (["INSERT INTO audit (seq, at, event, hash) VALUES (%d, 1, 'revoked', '%s')" %
                          (last + 1, "ab" * 32)],
                         "audit log damaged at seq %d: seq %d: its hash does not match" % (last + 1, last + 1)),
            "deleted": (["DELETE FROM audit WHERE seq = %d" % (first + 3)],
                        "audit log damaged at seq %d: seq %d follows seq %d: seq %d is missing" %
                        (first + 4, first + 4, first + 2, first + 3)),
            "first_deleted": (["DELETE FROM audit WHERE seq = %d" % first],
                              "audit log damaged at seq %d: seq %d is the first row, but the audit anchor names seq "
                              "%d" % (first + 1, first + 1, first)),
            # Forged anchors, by a writer that drops the anchor's trigger too.
            "anchor_above_head": (["DROP TRIGGER audit_anchor_insert",
                                   "INSERT INTO audit_anchor (at, first_seq, prev_hash) SELECT 1, seq + 5, hash "
                                   "FROM audit WHERE seq = %d" % last],
                                  "audit log damaged at seq %d: seq %d lies below the latest audit_anchor" %
                                  (first, first)),
            "anchor_below_first": (["DROP TRIGGER audit_anchor_insert",
                                    "INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (1, %d, '%s')" %
                                    (first - 5, "ab" * 32)],
                                   "seq %d is the first row, but the audit anchor names seq %d" %
                                   (first, first - 5)),
            "anchor_from_genesis": (["DROP TRIGGER audit_anchor_insert",
                                     "INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (1, 1, '%s')" %
                                     GENESIS],
                                    "seq %d is the first row: the log must start at seq 1" % first),
            "anchor_wrong_hash_rows_deleted": (["DROP TRIGGER audit_anchor_insert",
                                                "DELETE FROM audit WHERE seq < %d" % (first + 2),
                                                "INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES "
                                                "(1, %d, '%s')" % (first + 2, "ab" * 32)],
                                               "audit log damaged at seq %d: seq %d: its hash does not match" %
                                               (first + 2, first + 2)),
        }
        for name, (sql, want) in cases.items():
            path = self.tampered(d, name, *sql)
            rc, out, err = self.ctl(d, "audit", "--verify", db=path)
            self.assertEqual(rc, 1, name)
            self.assertIn(want, err, name)

    # -- only the daemon prunes -------------------------------------------------

    def test_others_cannot_prune_or_forge_an_anchor(self):
        d = self.daemon(self.endpoint(), config={"retention.audit": "1s"})
        app = self.app(d)
        _, ids = self.revoke_flagged(app, 10)
        self.wait_revoked(app, ids.values())
        self.wait_until(lambda: self.anchor(app), 10, "an anchor")
        a = self.anchor(app)
        before = app.audit()
        anchors = app.query("SELECT * FROM audit_anchor")
        refused = [
            ("DELETE FROM audit", "append-only"),
            ("DELETE FROM audit WHERE seq = %d" % a["first_seq"], "append-only"),
            ("UPDATE audit SET detail = 'x'", "append-only"),
            ("UPDATE audit_anchor SET first_seq = 1", "append-only"),
            ("DELETE FROM audit_anchor", "no such function: revokerd_prunes_audit"),
            ("INSERT INTO audit_anchor (at, first_seq, prev_hash) SELECT 1, max(seq), hash FROM audit",
             "no such function: revokerd_prunes_audit"),
        ]
        for sql, why in refused:
            with self.assertRaises(sqlite3.DatabaseError, msg=sql) as cm:
                app.execute(sql)
            self.assertIn(why, str(cm.exception), sql)
        # A connection that defines the function still gets only a true anchor.
        app.conn.create_function("revokerd_prunes_audit", 0, lambda: 1)
        last = app.query("SELECT max(seq) AS s FROM audit")[0]["s"]
        with self.assertRaises(sqlite3.DatabaseError) as cm:
            app.execute("INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (1, ?, ?)", (last, "0" * 64))
        self.assertIn("only revokerd adds an anchor", str(cm.exception))
        self.assertEqual(app.audit(), before)
        self.assertEqual(app.query("SELECT * FROM audit_anchor"), anchors)
        self.assertEqual(d.stop(), 0)
        app.close()

        # With the triggers dropped, a forged anchor that a row below it
        # contradicts is caught.
        path = os.path.join(self.dir, "forged.db")
        shutil.copy(d.db_path, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DROP TRIGGER audit_anchor_insert")
        conn.execute("INSERT INTO audit_anchor (at, first_seq, prev_hash) VALUES (1, ?, ?)", (last, "1" * 64))
        conn.close()
        rc, out, err = self.ctl(d, "audit", "--verify", db=path)
        self.assertEqual(rc, 1)
        # Named either way: by the row below it that it contradicts, or by
        # the row it names, which does not chain from it.
        self.assertRegex(err, r"does not chain from seq %d \(a forged or altered anchor\)|"
                              r"damaged at seq %d: seq %d: its hash does not match" % (last - 1, last, last))

    def test_a_writer_defining_the_guard(self):
        """The guard stops a connection without revokerd_prunes_audit() (the
        sqlite3 shell). One that defines it (Python's create_function) may add
        a true anchor: the rows left below it are named; the rows it then
        deletes look pruned, to --verify and to --head alike, but not to the
        daemon's log, which names the seq its own prunes start the log at
        (README)."""
        d = self.pruned_db()
        path = os.path.join(self.dir, "guard.db")
        shutil.copy(d.db_path, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.create_function("revokerd_prunes_audit", 0, lambda: 1)
        first, last = conn.execute("SELECT min(seq), max(seq) FROM audit").fetchone()
        head = "%d:%s" % conn.execute("SELECT seq, hash FROM audit WHERE seq = ?", (last,)).fetchone()
        # The daemon's log keeps where its own prunes left the log start.
        starts = re.findall(r"audit row\(s\) deleted in [0-9.]+ s; the audit log starts at seq (\d+)", d.stderr())
        self.assertEqual(int(starts[-1]), first, "the last pass's line names the first row")
        keep = (first + last) // 2
        conn.execute("INSERT INTO audit_anchor (at, first_seq, prev_hash) SELECT 1, ?, hash FROM audit "
                     "WHERE seq = ?", (keep, keep - 1))
        rc, out, err = self.ctl(d, "audit", "--verify", db=path)
        self.assertEqual(rc, 1, out)
        self.assertIn("audit log damaged at seq %d: seq %d lies below the latest audit_anchor" % (first, first),
                      err)
        conn.execute("DELETE FROM audit WHERE seq < ?", (keep,))
        conn.close()
        rc, out, err = self.ctl(d, "audit", "--verify", db=path)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("rows from seq %d (the audit anchor: older rows pruned)" % keep, out)
        rc, out, err = self.ctl(d, "audit", "--verify", "--head", head, db=path)
        self.assertEqual((rc, err), (0, ""), "a deleted prefix is not a truncation of the head")
        # Nor a row appended with its hash computed: the chain has no key,
        # and a head vouches only for the rows up to it (README). No trigger
        # stands in the way of an INSERT.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        prev = dict(conn.execute("SELECT * FROM audit WHERE seq = ?", (last,)).fetchone())
        row = {"seq": last + 1, "at": prev["at"], "token_id": None, "fingerprint": None, "event": "revoked",
               "attempt": 1, "http_status": 200, "detail": "forged", "duration_ms": 1}
        row["hash"] = audit_hash(prev["hash"], row)
        conn.execute("INSERT INTO audit (seq, at, token_id, fingerprint, event, attempt, http_status, detail, "
                     "duration_ms, hash) VALUES (:seq, :at, :token_id, :fingerprint, :event, :attempt, "
                     ":http_status, :detail, :duration_ms, :hash)", row)
        conn.close()
        for args in (["audit", "--verify"], ["audit", "--verify", "--head", head]):
            rc, out, err = self.ctl(d, *args, db=path)
            self.assertEqual((rc, err), (0, ""), args)

    # -- kill -9 and the export file --------------------------------------------

    def test_kill9_while_pruning_loses_nothing(self):
        export = os.path.join(self.dir, "audit-export.jsonl")
        ep = self.endpoint()
        d = self.daemon(ep, config={"retention.audit": "0", "logout.concurrency": "32"})
        app = self.app(d)
        _, ids = self.revoke_flagged(app, 1500)
        self.wait_revoked(app, ids.values(), timeout=120)
        full = app.query("SELECT * FROM audit ORDER BY seq")
        self.assertEqual(d.stop(), 0)
        time.sleep(1.1)
        # Small transactions, so that the kills land inside the pruning.
        d.set({"retention.audit": "1s", "retention.batch": "20", "retention.audit_export": export})
        kills = 0
        for delay in (0.05, 0.15, 0.3, 0.2):
            d.start()
            time.sleep(delay)
            d.kill9()
            kills += 1
        # A torn last line, as a crash inside a write leaves it.
        with open(export, "a") as f:
            f.write('{"seq": 99999999, "at"')
        d.start()
        last = full[-1]["seq"]
        self.wait_until(lambda: app.query("SELECT min(seq) AS s FROM audit")[0]["s"] == last, 60,
                        "every row but the newest pruned", interval=0.1)
        with open(export) as f:
            lines = f.read().splitlines()
        exported = [json.loads(line) for line in lines]
        self.assertEqual([r["seq"] for r in exported], [r["seq"] for r in full[:-1]],
                         "each pruned row exactly once, in order, across %d kills" % kills)
        prev = GENESIS
        for r, orig in zip(exported, full):
            self.assertEqual(r["hash"], orig["hash"])
            self.assertEqual(audit_hash(prev, r), r["hash"], "exported row %d chains" % r["seq"])
            prev = r["hash"]
        a = self.anchor(app)
        self.assertEqual((a["first_seq"], a["prev_hash"]), (last, prev), "the anchor continues the exported chain")
        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("1 rows from seq %d" % last, out)
        # The export has revokerctl --json audit's fields.
        rc, out, err = self.ctl(d, "--json", "audit")
        self.assertEqual(sorted(json.loads(out.splitlines()[0])), sorted(exported[0]))
        self.assertEqual(d.stop(), 0)

    def test_an_export_file_of_another_log_is_refused(self):
        """The export's last line says which rows it holds; one that does not
        match the log (another database's file, or a restored database's
        old one) would let rows go unexported: nothing is pruned, an error
        names it, and the file is left as it was."""
        export = os.path.join(self.dir, "export.jsonl")
        cases = {
            "past the newest row": {"seq": 99999, "hash": "ab" * 32},
            "another hash at seq 3": {"seq": 3, "hash": "ab" * 32},
        }
        for name, last in cases.items():
            with self.subTest(name):
                with open(export, "w") as f:
                    f.write(json.dumps(last) + "\n")
                d = self.daemon(self.endpoint(), config={"retention.audit": "1s",
                                                         "retention.audit_export": export})
                app = self.app(d)
                _, ids = self.revoke_flagged(app, 10)
                self.wait_revoked(app, ids.values())
                self.wait_until(lambda: "does not match the audit log" in d.stderr(), 10, "the error")
                time.sleep(1.5)  # rows old enough to prune, were the file trusted
                self.assertEqual(app.query("SELECT min(seq) AS s FROM audit")[0]["s"], 1, name)
                with open(export) as f:
                    self.assertEqual(f.read(), json.dumps(last) + "\n", name)
                self.assertIn("retention: the audit export %s ends at seq %d" % (export, last["seq"]),
                              d.stderr())
                self.assertEqual(d.stop(), 0)
                app.close()
                self.remove_db(d)

    def test_an_unwritable_export_keeps_the_rows(self):
        """A directory, or a symlink to /dev/full (every write fails with
        ENOSPC, as on a full disk): an error names it and no row goes."""
        cases = {"a directory": ("dir", "cannot open the audit export"),
                 "/dev/full": ("full", "cannot append to the audit export")}
        for name, (kind, want) in cases.items():
            with self.subTest(name):
                export = os.path.join(self.dir, "export-" + kind)
                if kind == "dir":
                    os.mkdir(export)
                else:
                    os.symlink("/dev/full", export)
                d = self.daemon(self.endpoint(), config={"retention.audit": "1s",
                                                         "retention.audit_export": export})
                app = self.app(d)
                _, ids = self.revoke_flagged(app, 10)
                self.wait_revoked(app, ids.values())
                self.wait_until(lambda: want in d.stderr(), 10, "the error")
                time.sleep(1.5)
                self.assertEqual(app.query("SELECT min(seq) AS s FROM audit")[0]["s"], 1, name)
                self.assertEqual(d.stop(), 0)
                app.close()
                self.remove_db(d)

    def test_an_export_cut_between_runs_is_named(self):
        """An export emptied (or cut) while the daemon was down, or named only
        after rows were pruned: the rows in neither are named, and the
        export goes on from the first row the log holds."""
        d = self.pruned_db()
        app = self.app(d)
        first = self.anchor(app)["first_seq"]
        export = os.path.join(self.dir, "late.jsonl")
        open(export, "w").close()
        d.set({"retention.audit_export": export})
        d.start()
        self.wait_until(lambda: "are in neither" in d.stderr(), 10, "the warning")
        self.assertIn("the audit export %s ends at seq 0 but the audit log starts at seq %d: seq 1..%d are in "
                      "neither" % (export, first, first - 1), d.stderr())
        self.wait_until(lambda: os.path.getsize(export) > 0, 10, "rows exported")
        with open(export) as f:
            self.assertEqual(json.loads(f.readline())["seq"], first)
        self.assertEqual(d.stop(), 0)
        # A file that ends just before the anchor must end with the hash the
        # anchor chains from: one of another log is refused.
        a = self.anchor(app)
        for prev_hash, refused in (("ab" * 32, True), (a["prev_hash"], False)):
            with open(export, "w") as f:
                f.write(json.dumps({"seq": a["first_seq"] - 1, "hash": prev_hash}) + "\n")
            d.start()
            if refused:
                self.wait_until(lambda: "the audit anchor chains from another hash" in d.stderr(), 10, "refused")
            else:  # the rows of a new token, once old enough, follow the line
                app.insert(tok(), flagged=1)
                size = os.path.getsize(export)
                self.wait_until(lambda: os.path.getsize(export) > size, 10, "rows exported")
            self.assertEqual(d.stop(), 0)
            self.assertEqual("the audit anchor chains from another hash" in d.stderr(), refused, prev_hash)
            self.assertNotIn("are in neither", d.stderr())
        app.close()

    # -- deleted secrets leave the file -----------------------------------------

    def test_deleted_secrets_leave_the_file(self):
        d = self.daemon(self.endpoint(), config=dict(SHORT, **{"daemon.keep_secrets": "true"}))
        app = self.app(d)
        kept, ids = self.revoke_flagged(app, 40)
        failed, fids = self.revoke_flagged(app, 3, kind="s422")
        self.wait_until(lambda: app.all_in(list(fids.values()), "failed"), 20, "failed tokens")
        self.wait_revoked(app, ids.values())

        def files():
            out = b""
            for suffix in ("", "-wal"):
                try:
                    with open(d.db_path + suffix, "rb") as f:
                        out += f.read()
                except FileNotFoundError:
                    pass
            return out

        everything = kept + failed
        self.assertTrue(any(t.encode() in files() for t in everything), "the check itself: kept secrets found")
        self.wait_until(lambda: app.query("SELECT count(*) AS n FROM tokens")[0]["n"] == 0, 20, "rows deleted")
        self.wait_until(lambda: not [t for t in everything if t.encode() in files()], 30,
                        "no deleted secret in the database file or its WAL", interval=0.2)
        self.assertEqual(d.stop(), 0)
        app.close()
        data = files()
        self.assertEqual([t for t in everything if t.encode() in data], [])
        self.assertNotIn(b"s422-", data)


if __name__ == "__main__":
    unittest.main(verbosity=2)
