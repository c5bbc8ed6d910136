"""End-to-end tests of the database as a file (issue 20, items 1 and 2): one
daemon per database whatever socket it is given, and a database removed or
replaced while the daemon runs is noticed, refused on the socket and ends
the daemon with exit 1, so that a restart opens the file that is there now."""

import os
import sqlite3
import time

import harness
from harness import request




class OneDaemonPerDatabase(harness.E2ETestCase):

    def test_second_daemon_on_the_same_database_exits(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        with open(d.db_path + ".lock") as f:
            self.assertEqual(f.read().strip(), str(d.pid))
        # Another socket, the same database: refused before it touches it.
        d2 = self.daemon(ep, start=False, config={"daemon.database": d.db_path})
        d2.start(wait_ready=False)
        self.assertEqual(d2.proc.wait(15), 1)
        self.assertIn("another revokerd (pid %d) is using %s" % (d.pid, d.db_path), d2.stderr())
        self.assertEqual(d2.notify.count("READY"), 0)

        # The first one goes on alone: every expiring token is sent once.
        app = self.app(d)
        ids = [app.insert("one-%d" % i, expires_at=harness.now_s() - 1) for i in range(50)]
        self.wait_until(lambda: app.states(ids) == {"revoked": 50}, 15, "all revoked")
        self.assertEqual(len(ep.requests()), 50)

        # After the first one stopped, a new daemon takes the database over.
        self.assertEqual(d.stop(), 0)
        d2.start()
        self.assertEqual(d2.stop(), 0)

    def test_another_name_of_the_same_file_is_the_same_database(self):
        """A symbolic link to the database is the database: a second daemon
        given the link is refused, and the modes are set on the file itself
        and on the -wal/-shm beside it."""
        ep = self.endpoint()
        d = self.daemon(ep)
        real = os.path.realpath(d.db_path)
        other = os.path.join(self.dir, "elsewhere")
        os.mkdir(other)
        link = os.path.join(other, "link.db")
        os.symlink(real, link)
        d2 = self.daemon(ep, start=False, config={"daemon.database": link})
        d2.start(wait_ready=False)
        self.assertEqual(d2.proc.wait(15), 1)
        self.assertIn("another revokerd (pid %d) is using %s" % (d.pid, real), d2.stderr())
        self.assertIn("%s is %s through a symbolic link" % (link, real), d2.stderr())
        self.assertEqual(d.stop(), 0)

        # Opened through the link: the file and its -wal/-shm lose the
        # permissions others had.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(real + suffix):
                os.chmod(real + suffix, 0o644)
        d2.start()
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(os.stat(real + suffix).st_mode & 0o777, 0o600, suffix)
        self.assertFalse(os.path.exists(link + "-wal"))
        self.assertEqual(d2.stop(), 0)



class DatabaseRemovedOrReplaced(harness.E2ETestCase):

    def test_removed_database_stops_the_daemon(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        tid = app.insert("before-rm", expires_at=harness.now_s() - 1)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "revoked before the removal")
        app.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(d.db_path + suffix):
                os.unlink(d.db_path + suffix)
        # The next write over the socket is refused, not acknowledged into
        # the deleted file.
        r = request(d.socket_path, {"op": "revoke", "token": "after-rm", "reason": "logout"})
        self.assertIsNotNone(r)
        self.assertFalse(r["ok"], r)
        self.assertIn("database file was removed or replaced", r["error"])
        self.wait_until(lambda: not d.running(), 10, "the daemon exits")
        self.assertEqual(d.stop(), 1)
        err = d.stderr()
        self.assertRegex(err, r"<2>%s was removed while revokerd ran" % d.db_path)
        self.assertTrue(any("removed or replaced" in v for _, v in d.notify.values("STATUS", pid=d.pid)))
        self.assertNotIn("after-rm", ep.tokens_seen())

    def test_removal_noticed_without_socket_traffic(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        t0 = time.monotonic()
        os.unlink(d.db_path)
        self.wait_until(lambda: not d.running(), 10, "the daemon exits on its own")
        self.assertLess(time.monotonic() - t0, 6, "noticed within a few seconds")
        self.assertEqual(d.stop(), 1)

    def test_replaced_database_is_used_after_the_restart(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        # Another database, with a due row, moved into place.
        other = os.path.join(self.dir, "other.db")
        src, dst = sqlite3.connect(d.db_path), sqlite3.connect(other)
        src.backup(dst)
        src.close()
        dst.close()
        app = self.app(other)
        tid = app.insert("in-the-new-file", expires_at=harness.now_s() - 1)
        app.close()
        os.replace(other, d.db_path)
        self.wait_until(lambda: not d.running(), 10, "the daemon exits")
        self.assertEqual(d.stop(), 1)
        self.assertIn("%s was replaced while revokerd ran" % d.db_path, d.stderr())
        d.start()
        app = self.app(d)
        self.wait_until(lambda: app.state(tid) == "revoked", 10, "the new file's row revoked")
        self.assertIn("in-the-new-file", ep.tokens_seen())
        self.assertEqual(d.stop(), 0)

    def test_removed_lock_file_stops_the_daemon(self):
        # Without its lock file a second daemon could start beside this one.
        ep = self.endpoint()
        d = self.daemon(ep)
        os.unlink(d.db_path + ".lock")
        self.wait_until(lambda: not d.running(), 10, "the daemon exits")
        self.assertEqual(d.stop(), 1)
        self.assertIn("%s.lock was removed" % d.db_path, d.stderr())


if __name__ == "__main__":
    harness.main()
