"""Load test of revokerd's control socket (issue 6, "Load"): 1,000
concurrent clients each queue 100 revocations. Every request is answered
ok, every token is revoked, and after the clients leave the daemon holds no
more file descriptors than before and its RSS grew by no more than a small
bound.

The daemon is started with the soft RLIMIT_NOFILE systemd gives services
(1024): it must raise its own limit to serve daemon.max_clients. The test
process raises its own limit to hold 1,000 sockets."""

import json
import os
import resource
import secrets
import selectors
import socket
import sys
import time

import harness
from harness import E2ETestCase

CLIENTS = 1000
PER_CLIENT = 100
SERVICE_SOFT_NOFILE = 1024  # systemd's default soft limit for services
# After 100,000 requests: SQLite's page cache (2 MiB) and the allocator may
# keep what they grew to; a leak of 84 bytes per request would not fit.
RSS_BOUND_KIB = 8 * 1024


def say(fmt, *args):
    print("\n  " + (fmt % args if args else fmt), file=sys.stderr)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def cpu_s(pid):
    """User + system CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nofile_limits(pid):
    """(soft, hard) 'Max open files' of a process."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                conv = lambda v: resource.RLIM_INFINITY if v == "unlimited" else int(v)  # noqa: E731
                return conv(parts[3]), conv(parts[4])
    raise AssertionError("no 'Max open files' for pid %d" % pid)


class Wave:
    """n clients on one selector, each sending `per` revoke requests in one
    write and reading `per` replies; all connected before any sends."""

    def __init__(self, path, n, per, tag):
        self.path, self.n, self.per = path, n, per
        self.socks = []
        self.out = {}
        self.inbuf = {}
        self.replies = {}
        self.tokens = {}
        for i in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(path)
            s.setblocking(False)
            self.socks.append(s)
            toks = ["%s-%d-%d-%s" % (tag, i, j, secrets.token_hex(6)) for j in range(per)]
            self.tokens[s] = toks
            self.out[s] = b"".join(json.dumps({"op": "revoke", "token": t}).encode() + b"\n" for t in toks)
            self.inbuf[s] = b""
            self.replies[s] = []

    def run(self, timeout):
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        done = 0
        deadline = time.monotonic() + timeout
        while done < len(self.socks):
            if time.monotonic() > deadline:
                raise AssertionError("%d of %d clients got all their replies in %ss"
                                     % (done, len(self.socks), timeout))
            for key, events in sel.select(1.0):
                s = key.fileobj
                if events & selectors.EVENT_WRITE and self.out[s]:
                    n = s.send(self.out[s])
                    self.out[s] = self.out[s][n:]
                    if not self.out[s]:
                        sel.modify(s, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        raise AssertionError("the daemon closed a client after %d replies"
                                             % len(self.replies[s]))
                    buf = self.inbuf[s] + chunk
                    *lines, self.inbuf[s] = buf.split(b"\n")
                    self.replies[s].extend(json.loads(line) for line in lines)
                    if len(self.replies[s]) >= self.per:
                        sel.unregister(s)
                        done += 1
        sel.close()

    def close(self):
        for s in self.socks:
            s.close()

    def all_replies(self):
        return [r for s in self.socks for r in self.replies[s]]


class Load(E2ETestCase):

    def raise_own_nofile(self, need):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d: cannot hold %d client sockets"
                          % (hard, need, CLIENTS))
        if soft == resource.RLIM_INFINITY or soft >= need:
            return
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    def start_with_service_limit(self, d):
        """Start d with the soft fd limit of a systemd service."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(SERVICE_SOFT_NOFILE, soft), hard))
        try:
            d.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def test_1000_clients_each_queue_100_revocations(self):
        self.raise_own_nofile(CLIENTS + 256)
        ep = self.endpoint()
        d = self.daemon(ep, start=False, config={"daemon.max_clients": str(CLIENTS + 24),
                                                 "logout.concurrency": "16"})
        self.start_with_service_limit(d)
        pid = d.pid
        app = self.app(d)
        soft, hard = nofile_limits(pid)
        say("revokerd's RLIMIT_NOFILE: soft %s, hard %s (started with soft %d)", soft, hard,
            SERVICE_SOFT_NOFILE)
        self.assertGreaterEqual(soft, CLIENTS + 24 + 64,
                                "the daemon's fd limit does not fit daemon.max_clients")

        # Warm up (page cache, curl's connections, the allocator), then take
        # the baseline once the warm-up clients are gone.
        fds_initial = fd_count(pid)
        warm = Wave(d.socket_path, 50, 20, "warm")
        warm.run(60)
        warm.close()
        self.wait_until(lambda: app.states().get("revoked", 0) == 50 * 20, 30, "warm-up revoked")
        self.wait_until(lambda: fd_count(pid) <= fds_initial + 16, 10, "warm-up clients gone")
        time.sleep(2.0)  # let the once-a-second timers (status, checkpoint) run: not a synchronisation
        fds_before, rss_before, cpu_before = fd_count(pid), rss_kb(pid), cpu_s(pid)

        t0 = time.monotonic()
        wave = Wave(d.socket_path, CLIENTS, PER_CLIENT, "load")
        # All of them connected at the same time.
        self.wait_until(lambda: fd_count(pid) >= fds_before + CLIENTS, 30, "1000 clients accepted")
        fds_peak = fd_count(pid)
        wave.run(120)
        t_answered = time.monotonic()
        replies = wave.all_replies()
        self.assertEqual(len(replies), CLIENTS * PER_CLIENT)
        bad = [r for r in replies if r.get("ok") is not True]
        self.assertEqual(bad[:5], [], "%d requests not answered ok" % len(bad))
        ids = {r["id"] for r in replies}
        self.assertEqual(len(ids), CLIENTS * PER_CLIENT, "one row per token")
        wave.close()
        self.wait_until(lambda: fd_count(pid) <= fds_before, 20, "the clients' fds closed")
        total = 50 * 20 + CLIENTS * PER_CLIENT
        self.wait_until(lambda: app.states().get("revoked", 0) == total, 120,
                        "all %d tokens revoked" % total)
        t_revoked = time.monotonic()
        self.assertEqual(app.states(), {"revoked": total})
        time.sleep(2.0)  # as for the baseline, and for the status line (at most 1 s after the last change)
        fds_after, rss_after = fd_count(pid), rss_kb(pid)
        say("%d clients x %d requests: answered in %.1f s, all revoked in %.1f s (revokerd used %.1f s "
            "of CPU); fds %d -> %d (+%d clients) -> %d; RSS %d -> %d KiB (%+d KiB)",
            CLIENTS, PER_CLIENT, t_answered - t0, t_revoked - t0, cpu_s(pid) - cpu_before, fds_before,
            fds_peak, fds_peak - fds_before, fds_after, rss_before, rss_after, rss_after - rss_before)
        self.assertEqual(fds_after, fds_before, "file descriptors left behind")
        if harness.sanitized(pid):
            say("AddressSanitizer build: RSS bound not checked (shadow memory and quarantine)")
        else:
            self.assertLess(rss_after - rss_before, RSS_BOUND_KIB, "RSS grew after the clients left")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    harness.main()
