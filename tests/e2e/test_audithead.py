"""End-to-end tests of the audit chain's head outside the database (issue
16, item 3): with [audit] anchor_interval = 1s the daemon logs "audit head:
seq N hash H" lines at start, every interval and at stop; each N:H is
accepted by `revokerctl audit --verify --head N:H`; the line at stop is the
final head (`revokerctl audit --head` after the stop); the newest row
deleted, or rewritten with its hash recomputed, by another process with the
triggers dropped passes `audit --verify` alone and fails with `--head`; bad
`--head` syntax is a usage error; a reload applies a new interval; the line reaches the journal with the
fields AUDIT_SEQ and AUDIT_HASH (the real binary, sd_journal_sendv, and a
journal socket of the test's own in a private mount namespace).
"""

import hashlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess

import harness

HEAD_LINE = re.compile(r"^<5>audit head: seq (\d+) hash ([0-9a-f]{64})$", re.M)
ZEROS = "0" * 64


def heads(text):
    """The N:H of every head line, in order."""
    return ["%s:%s" % m for m in HEAD_LINE.findall(text)]


def row_hash(prev, r):
    """daemon/auditrow.c's hash of one row (a dict of its columns)."""
    def text(v):
        if v is None:
            return "\\N"
        return str(v).replace("\\", "\\\\").replace("|", "\\|")

    def num(v):
        return "\\N" if v is None else str(int(v))
    fields = [prev, num(r["seq"]), num(r["at"]), num(r["token_id"]), text(r["fingerprint"]), text(r["event"]),
              num(r["attempt"]), num(r["http_status"]), text(r["detail"]), num(r["duration_ms"])]
    return hashlib.sha256("|".join(fields).encode()).hexdigest()


class T(harness.E2ETestCase):

    def ctl(self, d, *args):
        return harness.run([harness.binary("REVOKERCTL"), "--database", d.db_path] + list(args))

    def run_some(self, interval="1s", n=5, tag="a"):
        """A daemon with the given anchor_interval that revoked n tokens, and
        their secrets."""
        ep = self.endpoint()
        d = self.daemon(ep, config={"audit.anchor_interval": interval})
        app = self.app(d)
        secrets = ["head-%s-%d-%s" % (tag, i, "s" * 24) for i in range(n)]
        ids = app.insert_many(secrets, expires_at=harness.now_s() - 1)
        self.wait_until(lambda: app.all_in(list(ids.values()), {"revoked"}), 20, "tokens revoked")
        return ep, d, app, secrets

    def tamper(self, d, sql, params=()):
        """Another process with write access: the triggers dropped, sql run."""
        app = harness.AppDB(d.db_path)
        try:
            app.execute("DROP TRIGGER audit_no_update")
            app.execute("DROP TRIGGER audit_no_delete")
            app.execute(sql, params)
        finally:
            app.close()

    def test_interval_lines_are_accepted_and_the_last_is_final(self):
        ep, d, app, secrets = self.run_some()
        final_seq = app.query("SELECT max(seq) AS m FROM audit")[0]["m"]
        # lines keep coming every second; two of them name the settled head
        self.wait_until(lambda: sum(h.startswith("%d:" % final_seq) for h in heads(d.stderr())) >= 2, 20,
                        "two head lines after the last revocation")
        lines = heads(d.stderr())
        self.assertEqual(lines[0].split(":")[0], "0", "the line at start names the empty log's head")
        for h in sorted(set(lines)):
            rc, out, err = self.ctl(d, "audit", "--verify", "--head", h)
            self.assertEqual((rc, err), (0, ""), h)
            self.assertIn("hash chain verified, seq %s holds the recorded head's hash" % h.split(":")[0], out)
        # seqs never go back
        seqs = [int(h.split(":")[0]) for h in lines]
        self.assertEqual(seqs, sorted(seqs))

        # one more token, then stop at once: the line at stop names its rows
        tid = app.insert("head-late-%s" % ("l" * 24), flagged=1)
        secrets.append("head-late-%s" % ("l" * 24))
        ep.wait_requests(secrets[-1], timeout=20)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(app.state(tid), "revoked")
        text = d.stderr()
        stop_part = text.split("SIGTERM: stopping", 1)[1]
        at_stop = heads(stop_part)
        self.assertTrue(at_stop, "no head line after SIGTERM:\n" + text[-2000:])
        rc, out, err = self.ctl(d, "audit", "--head")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, at_stop[-1] + "\n", "the line at stop is not the final head")
        self.assertEqual(int(at_stop[-1].split(":")[0]), app.query("SELECT max(seq) AS m FROM audit")[0]["m"])
        self.assertEqual(heads(text)[-1], at_stop[-1])
        n, h = at_stop[-1].split(":")
        self.assertIn("<5>audit head: seq %s hash %s\n<5>stopped\n" % (n, h), text, "the last line before 'stopped'")

        # the next start logs the same head: nothing changed while it was down
        d.start()
        self.wait_until(lambda: heads(d.stderr()), 10, "a head line at start")
        self.assertEqual(heads(d.stderr())[0], at_stop[-1])
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(secrets, d, app)

    def test_truncated_newest_row_caught_only_with_head(self):
        ep, d, app, secrets = self.run_some(interval="1h", tag="t")
        self.assertEqual(d.stop(), 0)
        head = heads(d.stderr())[-1]
        n = int(head.split(":")[0])
        self.assertGreaterEqual(n, 10)

        self.tamper(d, "DELETE FROM audit WHERE seq = ?", (n,))
        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, err), (0, ""), "a truncation is not visible in the chain alone")
        self.assertIn("%d rows" % (n - 1), out)
        rc, out, err = self.ctl(d, "audit", "--verify", "--head", head)
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(out, "")
        self.assertIn("audit log damaged at seq %d: seq %d is missing: the log ends at seq %d (the newest rows "
                      "deleted)" % (n, n, n - 1), err)
        rc, out, err = self.ctl(d, "--json", "audit", "--verify", "--head=" + head)
        self.assertEqual(rc, 1)
        self.assertIn('"bad_seq":%d' % n, out)

        # a head from before the truncation, still there, passes
        older = "%d:%s" % (n - 1, app.query("SELECT hash FROM audit WHERE seq = ?", (n - 1,))[0]["hash"])
        self.assertEqual(self.ctl(d, "audit", "--verify", "--head", older)[0], 0)

    def test_rewritten_newest_row_caught_only_with_head(self):
        ep, d, app, secrets = self.run_some(interval="1h", tag="r")
        self.assertEqual(d.stop(), 0)
        head = heads(d.stderr())[-1]
        n = int(head.split(":")[0])
        rows = app.query("SELECT * FROM audit WHERE seq >= ? ORDER BY seq", (n - 1,))
        self.assertEqual([r["seq"] for r in rows], [n - 1, n])
        forged = dict(rows[1], detail="nothing happened here")
        forged["hash"] = row_hash(rows[0]["hash"], forged)
        self.tamper(d, "UPDATE audit SET detail = ?, hash = ? WHERE seq = ?", (forged["detail"], forged["hash"], n))

        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, err), (0, ""), "the rewrite recomputed the hash: the chain alone is intact")
        rc, out, err = self.ctl(d, "audit", "--verify", "--head", head)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("audit log damaged at seq %d: seq %d: its hash is %s, the recorded head says %s"
                      % (n, n, forged["hash"], head.split(":")[1]), err)

    def test_chain_broken_below_the_head(self):
        ep, d, app, secrets = self.run_some(interval="1h", tag="b")
        self.assertEqual(d.stop(), 0)
        head = heads(d.stderr())[-1]
        self.tamper(d, "UPDATE audit SET detail = 'edited' WHERE seq = 3")
        rc, out, err = self.ctl(d, "audit", "--verify", "--head", head)
        self.assertEqual(rc, 1)
        self.assertIn("audit log damaged at seq 3: seq 3: its hash does not match", err)

    def test_head_of_an_empty_log_and_usage_errors(self):
        d = self.daemon(url="http://127.0.0.1:9/v2/token/logout", start=False)
        d.start()
        self.assertEqual(d.stop(), 0)
        self.assertEqual(heads(d.stderr()), ["0:" + ZEROS] * 2, "one line at start, one at stop")
        self.assertEqual(self.ctl(d, "audit", "--head"), (0, "0:%s\n" % ZEROS, ""))
        self.assertEqual(self.ctl(d, "--json", "audit", "--head"), (0, '{"seq":0,"hash":"%s"}\n' % ZEROS, ""))
        self.assertEqual(self.ctl(d, "audit", "--verify", "--head", "0:" + ZEROS)[0], 0)
        rc, out, err = self.ctl(d, "audit", "--verify", "--head", "1:" + "a" * 64)
        self.assertEqual(rc, 1)
        self.assertIn("seq 1 is missing: the log is empty (every row deleted)", err)

        for args, why in [
            (["--verify", "--head", "12"], "invalid --head '12' (expected N:H"),
            (["--verify", "--head", "12:abc"], "invalid --head '12:abc'"),
            (["--verify", "--head", "x:" + "a" * 64], "invalid --head"),
            (["--verify", "--head=-1:" + "a" * 64], "invalid --head '-1:"),
            (["--verify", "--head", "0:" + "a" * 64], "invalid --head"),
            (["--verify", "--head=3:" + "g" * 64], "invalid --head"),
            (["--verify", "--head"], "--verify --head needs the recorded head, N:H"),
            (["--head", "3:" + "a" * 64], "--head N:H is checked with --verify"),
            (["--head", "--limit", "3"], "--head takes no filter"),
            (["--verify", "--head", "3:" + "a" * 64, "extra"], "unexpected argument 'extra'"),
        ]:
            rc, out, err = self.ctl(d, "audit", *args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn(why, err, args)
            self.assertIn("Try 'revokerctl help audit'.", err)

    def test_reload_applies_a_new_interval(self):
        ep = self.endpoint()
        d = self.daemon(ep, config={"audit.anchor_interval": "1h"})
        self.wait_until(lambda: len(heads(d.stderr())) == 1, 10, "the line at start")
        d.set({"audit.anchor_interval": "1s"})
        d.send_signal(signal.SIGHUP)
        self.wait_until(lambda: len(heads(d.stderr())) >= 3, 20, "lines every second after the reload")
        self.assertIn("configuration reloaded", d.stderr())
        self.assertEqual(d.stop(), 0)

    def test_head_reaches_the_journal_with_its_fields(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare(1) for a private /run/systemd")
        if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
            self.skipTest("cannot make a mount namespace")
        jdir = os.path.join(self.dir, "run-systemd")
        os.makedirs(os.path.join(jdir, "journal"))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(jdir, "journal", "socket"))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # The daemon sees our socket as /run/systemd/journal/socket, and
        # $JOURNAL_STREAM names its stderr, as systemd would set them.
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                  'mount --bind "$0" /run/systemd && '
                  'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@"',
                  jdir]
        ep = self.endpoint()
        d = self.daemon(ep, config={"audit.anchor_interval": "1s"}, start=False)
        d.start(prefix=prefix)
        app = self.app(d)
        secret = "journal-head-%s" % ("j" * 24)
        tid = app.insert(secret, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "token revoked")
        n = app.query("SELECT max(seq) AS m FROM audit")[0]["m"]
        h = app.query("SELECT hash FROM audit WHERE seq = ?", (n,))[0]["hash"]

        def datagrams():
            out = []
            while select.select([sock], [], [], 0)[0]:
                out.append(sock.recv(1 << 16).decode("utf-8", "replace"))
            return out
        seen = []

        def head_sent():
            seen.extend(datagrams())
            return any("\nAUDIT_SEQ=%d\n" % n in g for g in seen)
        self.wait_until(head_sent, 20, "a head datagram naming seq %d" % n)
        g = next(g for g in seen if "\nAUDIT_SEQ=%d\n" % n in g)
        fields = g.split("\n")
        self.assertIn("MESSAGE=audit head: seq %d hash %s" % (n, h), fields)
        self.assertIn("AUDIT_HASH=%s" % h, fields)
        self.assertIn("PRIORITY=5", fields)
        self.assertIn("CODE_FILE=audithead.c", fields)
        self.assertFalse(any(f.startswith("TOKEN_ID=") for f in fields))
        # the journal took the lines: none on stderr
        self.assertNotIn("audit head:", d.stderr())
        self.assertEqual(d.stop(), 0)
        seen.extend(datagrams())
        stopping = max(i for i, g in enumerate(seen) if "\nMESSAGE=SIGTERM: stopping\n" in "\n" + g)
        last_head = max(i for i, g in enumerate(seen) if "\nAUDIT_SEQ=" in g)
        self.assertGreater(last_head, stopping, "no head line reached the journal at stop")
        self.assertIn("MESSAGE=audit head: seq %d hash %s" % (n, h), seen[last_head].split("\n"))
        for g in seen:
            self.assertNotIn(secret, g)


if __name__ == "__main__":
    harness.main()
