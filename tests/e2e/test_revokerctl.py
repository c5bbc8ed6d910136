"""End-to-end tests of revokerctl (issue 3) against the real daemon: output
and exit codes 0/1/2/69, --json, the token read from stdin only (never in
argv), defaults from the daemon's config file, and `audit` reading the
database while the daemon is stopped, with --verify catching tampering."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

import harness

EX_UNAVAILABLE = 69


class RevokerctlTest(harness.E2ETestCase):

    def ctl(self, d, *args, input=None, env=None, config=True):  # noqa: A002
        """revokerctl --config <d's config> ARGS: (rc, stdout, stderr)."""
        cmd = [harness.binary("REVOKERCTL")]
        if config:
            cmd += ["--config", d.config_path]
        e = {"TZ": "UTC"}
        if env:
            e.update(env)
        return harness.run(cmd + list(args), input=input, env=e)

    def start(self, config=None):
        ep = self.endpoint()
        d = self.daemon(ep, config=config)
        return ep, d, self.app(d)

    # --- commands and their output -----------------------------------------

    def test_ping_and_defaults_from_config(self):
        _, d, _ = self.start()
        rc, out, err = self.ctl(d, "ping")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^revokerd \S+ is up at %s \(uptime .*\)\n$" % d.socket_path)
        # --json prints the daemon's reply; options may follow the command.
        rc, out, _ = self.ctl(d, "ping", "--json")
        self.assertEqual(rc, 0)
        self.assertTrue(json.loads(out)["ok"])
        # --socket overrides the config file.
        rc, out, _ = self.ctl(d, "--socket", d.socket_path, "ping", config=False)
        self.assertEqual(rc, 0, out)

    def test_revoke_token_from_stdin(self):
        ep, d, app = self.start()
        token = "e2e-revokerctl-secret-0123456789"
        p = subprocess.Popen([harness.binary("REVOKERCTL"), "--config", d.config_path, "revoke",
                              "--token-stdin", "--reason", "logout"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # While it waits for stdin, everything any user sees in ps:
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                argv = f.read()
            self.assertNotIn(token.encode(), argv)
            out, err = p.communicate(token.encode() + b"\n", timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 0, err)
        self.assertRegex(out.decode(), r"^token (\d+) queued for revocation \(pending\)\n$")
        tid = int(out.split()[1])
        # One trailing newline stripped: the stored secret is the token itself.
        self.assertEqual(app.row(tid)["fingerprint"], harness.fingerprint(token))
        self.assertEqual(app.row(tid)["flag_reason"], "logout")
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "revoked")
        self.assertEqual(ep.wait_requests(token)[0]["token"], token)
        self.assertNotIn(token, out.decode() + err.decode())

        # Again: already revoked, said so, exit 0.
        rc, out, err = self.ctl(d, "revoke", "--token-stdin", input=token.encode())
        self.assertEqual((rc, out), (0, "token %d is already revoked\n" % tid), err)
        # --json: the daemon's reply.
        rc, out, _ = self.ctl(d, "--json", "revoke", "--token-stdin", input=token.encode())
        self.assertEqual(json.loads(out), {"ok": True, "id": tid, "state": "revoked"})

        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets([token], d, app)

    def test_revoke_by_id_and_subject_status_retry_stats(self):
        ep, d, app = self.start()
        far = harness.now_s() + 86400
        a = app.insert("e2e-rc-a", expires_at=far, subject="alice")
        b1 = app.insert("e2e-rc-b1", expires_at=far, subject="bob")
        b2 = app.insert("e2e-rc-b2", expires_at=far, subject="bob")

        rc, out, err = self.ctl(d, "revoke", "--id", str(a))
        self.assertEqual((rc, out), (0, "token %d queued for revocation (pending)\n" % a), err)
        self.wait_until(lambda: app.state(a) == "revoked", 10, "a revoked")
        rc, out, _ = self.ctl(d, "revoke", "--id", str(a))
        self.assertEqual((rc, out), (0, "token %d was not active (state: revoked); nothing "
                                        "queued\n" % a))

        rc, out, _ = self.ctl(d, "revoke", "--subject", "bob", "--reason", "offboarded")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("2 token(s) of subject 'bob' queued for revocation:"), out)
        self.assertEqual(sorted(int(x) for x in out.split(":")[1].split()), sorted([b1, b2]))
        rc, out, _ = self.ctl(d, "revoke", "--subject", "nobody")
        self.assertEqual((rc, out), (0, "no active token of subject 'nobody'; nothing queued\n"))

        # status: aligned fields, local times (TZ=UTC here, then Tokyo)
        self.wait_until(lambda: app.state(b1) == "revoked", 10, "b1 revoked")
        rc, out, _ = self.ctl(d, "status", str(b1))
        self.assertEqual(rc, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0], "token %d" % b1)
        fields = {ln[2:15].strip(): ln[16:] for ln in lines[1:]}
        self.assertEqual(fields["state"], "revoked")
        self.assertEqual(fields["subject"], "bob")
        self.assertEqual(fields["fingerprint"], harness.fingerprint("e2e-rc-b1"))
        self.assertEqual(fields["reason"], "offboarded", "the reason given with the revocation")
        self.assertEqual(fields["next attempt"], "-")
        self.assertRegex(fields["finished"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        finished_ms = app.row(b1)["finished_at"]
        self.assertEqual(fields["finished"],
                         time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(finished_ms // 1000)))
        rc, out, _ = self.ctl(d, "status", str(b1), env={"TZ": "Asia/Tokyo"})
        self.assertIn(time.strftime("%Y-%m-%d %H:%M:%S JST",
                                    time.gmtime(finished_ms // 1000 + 9 * 3600)), out)
        rc, out, _ = self.ctl(d, "status", str(b1), "--json")
        self.assertEqual(json.loads(out)["state"], "revoked")
        self.assertEqual(json.loads(out)["reason"], "offboarded")
        rc, out, _ = self.ctl(d, "status", str(a))
        self.assertIn("\n  reason        -\n", out, "revoked without a reason")

        # retry: a rejected token fails, retry queues it again
        rc, out, _ = self.ctl(d, "revoke", "--token-stdin", input=b"s422-e2e-rc-rejected")
        fid = int(out.split()[1])
        self.wait_until(lambda: app.state(fid) == "failed", 10, "failed")
        rc, out, _ = self.ctl(d, "retry", str(fid))
        self.assertEqual((rc, out), (0, "token %d queued again (pending)\n" % fid))
        self.wait_until(lambda: app.events(fid).count("rejected") == 2, 10, "rejected again")
        self.wait_until(lambda: app.state(fid) == "failed", 10, "failed again")
        rc, out, _ = self.ctl(d, "retry", "--failed")
        self.assertEqual((rc, out), (0, "1 failed token(s) queued again\n"))
        self.wait_until(lambda: app.state(fid) == "failed", 10, "failed a third time")

        # stats
        rc, out, _ = self.ctl(d, "stats")
        self.assertEqual(rc, 0)
        counts = {s: app.query("SELECT count(*) AS n FROM tokens WHERE state = ?", (s,))[0]["n"]
                  for s in ("active", "pending", "revoked", "failed", "held")}
        self.assertIn("tokens       %(active)d active, %(pending)d pending, %(revoked)d revoked, "
                      "%(failed)d failed, %(held)d held\n" % counts, out)
        for label in ("engine", "since start", "endpoint     up", "database     ok", "file         ", "uptime"):
            self.assertIn("\n" + label, "\n" + out)
        rc, out, _ = self.ctl(d, "--json", "stats")
        self.assertEqual(json.loads(out)["states"], counts)

    # --- exit codes -----------------------------------------------------------

    def test_exit_codes(self):
        _, d, _ = self.start()
        # 1: the daemon answered with an error
        rc, out, err = self.ctl(d, "status", "424242")
        self.assertEqual((rc, out, err), (1, "", "revokerctl: revokerd: no token with id 424242\n"))
        rc, out, _ = self.ctl(d, "--json", "status", "424242")
        self.assertEqual((rc, json.loads(out)), (1, {"ok": False, "error": "no token with id 424242"}))
        rc, _, err = self.ctl(d, "retry", "424242")
        self.assertEqual(rc, 1, err)

        # 2: usage errors, each with a message
        usage = [
            [],
            ["fly"],
            ["status"],
            ["status", "abc"],
            ["status", "0"],
            ["status", "1", "2"],
            ["revoke"],
            ["revoke", "--id", "1", "--subject", "x"],
            ["revoke", "--id", "-4"],
            ["revoke", "--token", "e2e-argv-secret"],
            ["revoke", "--token=e2e-argv-secret"],
            ["revoke", "e2e-argv-secret"],
            ["retry"],
            ["retry", "1", "--failed"],
            ["audit", "--since", "yesterday-ish"],
            ["audit", "--event", "exploded"],
            ["audit", "--limit", "0"],
            ["audit", "--verify", "--limit", "5"],
            ["ping", "--bogus"],
            ["--timeout", "soon", "ping"],
            ["--config", os.path.join(self.dir, "missing.conf"), "ping"],
        ]
        for args in usage:
            rc, out, err = self.ctl(d, *args, config=not (args and args[0] == "--config"))
            self.assertEqual(rc, 2, (args, out, err))
            self.assertTrue(err.startswith("revokerctl: ") or err.startswith("Usage:"),
                            (args, err))
            self.assertNotIn("e2e-argv-secret", out + err, args)
        rc, _, err = self.ctl(d, "revoke", "--token-stdin", input=b"")
        self.assertEqual(rc, 2)
        self.assertIn("no token on standard input", err)
        rc, _, err = self.ctl(d, "revoke", "--token-stdin", input=b"x" * 8193)
        self.assertEqual(rc, 2)
        self.assertIn("longer than 8192 bytes", err)
        rc, _, err = self.ctl(d, "revoke", "--token-stdin", input=b"one\ntwo\n")
        self.assertEqual(rc, 2)
        self.assertIn("more than one line", err)

        # 69: the daemon cannot be reached; the message names the path and why
        missing = os.path.join(self.dir, "missing.sock")
        rc, out, err = self.ctl(d, "--socket", missing, "ping")
        self.assertEqual(rc, EX_UNAVAILABLE)
        self.assertIn("cannot reach revokerd at %s: No such file or directory" % missing, err)
        stale = os.path.join(self.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        rc, _, err = self.ctl(d, "--socket", stale, "stats")
        self.assertEqual(rc, EX_UNAVAILABLE)
        self.assertIn("cannot reach revokerd at %s: Connection refused" % stale, err)
        # A listener that never answers: the timeout, then 69.
        mute = os.path.join(self.dir, "mute.sock")
        ms = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ms.bind(mute)
        ms.listen(4)
        self.addCleanup(ms.close)
        t0 = time.monotonic()
        rc, _, err = self.ctl(d, "--socket", mute, "--timeout", "300ms", "ping")
        self.assertEqual(rc, EX_UNAVAILABLE)
        self.assertIn("no reply from revokerd at %s within 300 ms" % mute, err)
        self.assertLess(time.monotonic() - t0, 10)
        # The daemon stopped: 69 for the socket commands.
        self.assertEqual(d.stop(), 0)
        rc, _, err = self.ctl(d, "ping")
        self.assertEqual(rc, EX_UNAVAILABLE)
        self.assertIn(d.socket_path, err)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run revokerctl as another uid")
    def test_refused_peer(self):
        _, d, _ = self.start()
        os.chmod(self.dir, 0o755)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        ctl = harness.binary("REVOKERCTL")
        # The socket file keeps it out: cannot reach (EACCES), 69.
        rc, _, err = harness.run(nobody + [ctl, "--socket", d.socket_path, "ping"])
        self.assertEqual(rc, EX_UNAVAILABLE, err)
        self.assertIn("Permission denied", err)
        # Past the file mode the daemon itself answers: exit 1.
        os.chmod(d.socket_path, 0o666)
        rc, _, err = harness.run(nobody + [ctl, "--socket", d.socket_path, "ping"])
        self.assertEqual((rc, err), (1, "revokerctl: revokerd: permission denied\n"))

    # --- help -----------------------------------------------------------------

    def test_help(self):
        ctl = harness.binary("REVOKERCTL")
        # --help is short: usage, one line per command, the manual's name. The
        # manual's sections are checked by tests/man_check.py.
        rc, out, _ = harness.run([ctl, "--help"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("Usage: revokerctl "), out)
        self.assertTrue(out.endswith("See revokerctl(1).\n"), out)
        # 14 commands, 7 options, usage and footer: a screen (was < 30 before
        # track, hold, release, drop, queue and shape).
        self.assertLess(len(out.splitlines()), 35, out)
        for cmd in ("revoke", "status", "retry", "stats", "ping", "audit", "help"):
            self.assertRegex(out, r"\n  %s +\S" % cmd, cmd)
        for cmd in ("revoke", "status", "retry", "stats", "ping", "audit"):
            rc1, out1, _ = harness.run([ctl, "help", cmd])
            rc2, out2, _ = harness.run([ctl, cmd, "--help"])
            self.assertEqual((rc1, rc2), (0, 0), cmd)
            self.assertEqual(out1, out2)
            self.assertTrue(out1.startswith("Usage: revokerctl " + cmd), out1)
        rc, _, err = harness.run([ctl, "help", "fly"])
        self.assertEqual(rc, 2)
        rc, out, _ = harness.run([ctl, "--version"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("revokerctl "))

    # --- audit ------------------------------------------------------------------

    def test_audit_with_daemon_stopped(self):
        ep, d, app = self.start()
        toks = ["e2e-audit-%d" % i for i in range(3)] + ["s422-e2e-audit-rejected"]
        ids = []
        for t in toks:
            rc, out, _ = self.ctl(d, "revoke", "--token-stdin", input=t.encode())
            self.assertEqual(rc, 0)
            ids.append(int(out.split()[1]))
        self.wait_until(lambda: app.all_in(ids, ("revoked", "failed")), 10, "all final")
        self.assertEqual(d.stop(), 0)
        rows = app.audit()

        # Human: a header and one aligned line per row, local times.
        rc, out, err = self.ctl(d, "audit")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["TIME", "SEQ", "TOKEN", "FINGERPRINT", "EVENT", "ATT",
                                            "HTTP", "MS", "DETAIL"])
        self.assertEqual(len(lines), 1 + len(rows))
        col = lines[0].index("EVENT")
        for ln, r in zip(lines[1:], rows):
            self.assertEqual(ln[:19], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] // 1000)))
            self.assertEqual(ln[col:].split()[0], r["event"])
            self.assertEqual(int(ln[20:27]), r["seq"])
        for t in toks:
            self.assertNotIn(t, out)

        # --json: one object per line, the table's values.
        rc, out, _ = self.ctl(d, "--json", "audit")
        objs = [json.loads(ln) for ln in out.splitlines()]
        self.assertEqual([o["seq"] for o in objs], [r["seq"] for r in rows])
        self.assertEqual([o["event"] for o in objs], [r["event"] for r in rows])
        self.assertEqual([o["hash"] for o in objs], [r["hash"] for r in rows])
        self.assertEqual(objs[0]["at_ms"], rows[0]["at"])

        # Filters.
        rc, out, _ = self.ctl(d, "--json", "audit", "--token", str(ids[0]))
        self.assertEqual([json.loads(ln)["seq"] for ln in out.splitlines()],
                         [r["seq"] for r in rows if r["token_id"] == ids[0]])
        rc, out, _ = self.ctl(d, "--json", "audit", "--event", "rejected")
        self.assertEqual([json.loads(ln)["token_id"] for ln in out.splitlines()], [ids[3]])
        rc, out, _ = self.ctl(d, "--json", "audit", "--limit", "2")
        self.assertEqual([json.loads(ln)["seq"] for ln in out.splitlines()],
                         [r["seq"] for r in rows[-2:]])
        for since, n in (("1h", len(rows)), ("2d", len(rows)), ("2099-01-01", 0),
                         ("2000-01-01 10:00", len(rows)), ("2099-01-01T00:00:00Z", 0),
                         ("2000-01-01T00:00:00+01:00", len(rows))):
            rc, out, err = self.ctl(d, "--json", "audit", "--since", since)
            self.assertEqual((rc, len(out.splitlines())), (0, n), (since, err))

        # --database instead of the config file.
        rc, out, _ = harness.run([harness.binary("REVOKERCTL"), "--database", d.db_path, "--json",
                                  "audit"])
        self.assertEqual((rc, len(out.splitlines())), (0, len(rows)))
        rc, _, err = harness.run([harness.binary("REVOKERCTL"), "--database",
                                  os.path.join(self.dir, "none.db"), "audit"])
        self.assertEqual(rc, 1)
        self.assertIn("cannot open the database", err)
        # Read-only: nothing was created or written by these reads.
        self.assertFalse(os.path.exists(os.path.join(self.dir, "none.db")))
        self.assertEqual(app.audit(), rows)

    def test_audit_verify_detects_tampering(self):
        _, d, app = self.start()
        for i in range(4):
            self.ctl(d, "revoke", "--token-stdin", input=("e2e-verify-%d" % i).encode())
        self.wait_until(lambda: len(app.audit(event="revoked")) == 4, 10, "four revoked")
        self.assertEqual(d.stop(), 0)
        n = len(app.audit())

        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, out), (0, "audit log intact: %d rows, hash chain verified\n" % n), err)
        rc, out, _ = self.ctl(d, "--json", "audit", "--verify")
        self.assertEqual((rc, json.loads(out)), (0, {"ok": True, "rows": n}))

        # Behind the daemon's back, as an attacker with write access would.
        app.execute("DROP TRIGGER audit_no_update")
        app.execute("DROP TRIGGER audit_no_delete")
        backup = app.query("SELECT * FROM audit WHERE seq = 3")[0]

        app.execute("UPDATE audit SET detail = 'nothing to see' WHERE seq = 3")
        rc, out, err = self.ctl(d, "audit", "--verify")
        self.assertEqual((rc, out), (1, ""))
        self.assertTrue(err.startswith("revokerctl: audit log damaged at seq 3: "), err)
        rc, out, _ = self.ctl(d, "--json", "audit", "--verify")
        self.assertEqual(rc, 1)
        self.assertEqual((json.loads(out)["ok"], json.loads(out)["bad_seq"]), (False, 3))
        app.execute("UPDATE audit SET detail = ? WHERE seq = 3", (backup["detail"],))
        self.assertEqual(self.ctl(d, "audit", "--verify")[0], 0, "restored: intact again")

        app.execute("DELETE FROM audit WHERE seq = 5")
        rc, _, err = self.ctl(d, "audit", "--verify")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"^revokerctl: audit log damaged at seq 6: ")


if __name__ == "__main__":
    harness.main()
