"""End-to-end tests of the endpoint's host name going through a real
resolver (issue 20, item 0): a name that does not resolve, a resolver that
never answers, and one that answers late. In each, many clients ping, revoke
over the socket, or connect and say nothing, while the daemon's requests wait
for the name: every ping and every revoke is answered, every silent client
is closed by client_idle, and once the name resolves the tokens are revoked.

glibc's resolver in the daemon is pointed at tests/dns.py on 127.0.0.153
through a resolv.conf bind-mounted over /etc/resolv.conf in a private mount
namespace of the daemon alone (unshare -m): needs root."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness

DNS_SCRIPT = os.path.join(os.path.dirname(harness.ENDPOINT_SCRIPT), "dns.py")
DNS_ADDR = "127.0.0.153"
HOST = "logout.revokerd.test"
CLIENT_IDLE_S = 1.0


def exchange(path, line, timeout):
    """One request on a new connection; the reply (dict), or the reason there
    was none (str)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(line).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return "closed without a reply"
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])
    except (OSError, ValueError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()


def closed_within(path, timeout):
    """Connect, send nothing: True once the daemon closes the connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        while s.recv(65536):
            pass  # the idle notice, then EOF
        return True
    except OSError:
        return False
    finally:
        s.close()


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"), "needs root and unshare")
class ResolverTrouble(harness.E2ETestCase):

    def resolver(self, mode, delay_ms=0):
        log = os.path.join(self.dir, "dns.jsonl")
        ready = os.path.join(self.dir, "dns.ready")
        out = open(os.path.join(self.dir, "dns.out"), "wb")
        proc = subprocess.Popen([sys.executable, DNS_SCRIPT, "--addr", DNS_ADDR, "--mode", mode,
                                 "--delay-ms", str(delay_ms), "--log", log, "--ready-file", ready],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.addCleanup(lambda: (proc.kill(), proc.wait()))
        self.wait_until(lambda: os.path.exists(ready) or proc.poll() is not None, 10, "dns.py bound")
        self.assertIsNone(proc.poll(), "dns.py exited early")
        return log

    def queries(self, log):
        with open(log) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def endpoint_tls(self):
        """The stand-in endpoint over HTTPS for HOST (plain http:// is refused
        for a name that is not loopback)."""
        self.tls = harness.tls_certificate(self.dir, HOST)
        return self.endpoint(tls=self.tls)

    def start_daemon(self, ep, resolv_options):
        resolv = os.path.join(self.dir, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions %s\n" % (DNS_ADDR, resolv_options))
        url = "https://%s:%d%s" % (HOST, ep.port, harness.LOGOUT_PATH)
        d = self.daemon(url=url, start=False, config={"daemon.client_idle": "%gs" % CLIENT_IDLE_S,
                                                       "daemon.max_clients": "64",
                                                       "logout.ca_file": self.tls[0]})
        d.start(prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv])
        return d

    def hammer(self, d, seconds, tokens_out):
        """Pings from 6 threads (a new connection each), socket revokes from
        2, silent clients from 2, for `seconds`. Fails on any ping or revoke
        without a reply within 2 s and any silent client left open."""
        stop = time.monotonic() + seconds
        failures, counts, lock = [], {"ping": 0, "revoke": 0, "idle": 0}, threading.Lock()

        def note(kind, ok, what):
            with lock:
                counts[kind] += 1
                if not ok:
                    failures.append("%s: %s" % (kind, what))

        def pinger():
            while time.monotonic() < stop:
                r = exchange(d.socket_path, {"op": "ping"}, 2.0)
                note("ping", isinstance(r, dict) and r.get("ok") is True, r)
                time.sleep(0.05)

        def revoker(k):
            n = 0
            while time.monotonic() < stop:
                tok = "dns-sock-%d-%d-%d" % (os.getpid(), k, n)
                n += 1
                r = exchange(d.socket_path, {"op": "revoke", "token": tok, "reason": "logout"}, 2.0)
                ok = isinstance(r, dict) and r.get("ok") is True
                note("revoke", ok, r)
                if ok:
                    with lock:
                        tokens_out.append(tok)
                time.sleep(0.2)

        def idler():
            while time.monotonic() < stop:
                note("idle", closed_within(d.socket_path, CLIENT_IDLE_S + 3), "still open after client_idle + 3 s")

        threads = [threading.Thread(target=pinger) for _ in range(6)]
        threads += [threading.Thread(target=revoker, args=(k,)) for k in range(2)]
        threads += [threading.Thread(target=idler) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures[:10], [], "of %s" % counts)
        self.assertGreater(counts["ping"], 50)
        self.assertGreater(counts["revoke"], 5)
        self.assertGreater(counts["idle"], 2)
        return counts

    def expired_rows(self, d, n):
        app = self.app(d)
        ids = [app.insert("dns-row-%d-%d" % (os.getpid(), i), expires_at=harness.now_s() - 1)
               for i in range(n)]
        return app, ids

    def assert_never_reached(self, d, ep, log, app, ids):
        self.wait_until(lambda: self.queries(log), 10, "a query at the stand-in resolver")
        self.assertTrue(all(q["name"] == HOST for q in self.queries(log)))
        self.assertEqual(ep.requests(), [])
        self.assertEqual(set(app.states(ids)), {"pending"})
        self.assertEqual(d.stop(), 0)

    def test_name_does_not_resolve(self):
        log = self.resolver("nxdomain")
        ep = self.endpoint_tls()
        d = self.start_daemon(ep, "timeout:1 attempts:1")
        app, ids = self.expired_rows(d, 5)
        tokens = []
        self.hammer(d, 6, tokens)
        self.assertIn("resolve", d.stderr())
        self.assert_never_reached(d, ep, log, app, ids)

    def test_resolver_never_answers(self):
        # Each lookup hangs 3 s x 2, longer than the request's 2 s timeout:
        # curl gives up on the transfer while its resolver thread still waits.
        log = self.resolver("silent")
        ep = self.endpoint_tls()
        d = self.start_daemon(ep, "timeout:3 attempts:2")
        app, ids = self.expired_rows(d, 5)
        tokens = []
        self.hammer(d, 8, tokens)
        self.assert_never_reached(d, ep, log, app, ids)

    def test_name_resolves_late(self):
        log = self.resolver("delay", delay_ms=1500)
        ep = self.endpoint_tls()
        d = self.start_daemon(ep, "timeout:5 attempts:1")
        app, ids = self.expired_rows(d, 5)
        tokens = []
        self.hammer(d, 6, tokens)
        self.assertTrue(self.queries(log))
        secrets = ["dns-row-%d-%d" % (os.getpid(), i) for i in range(5)] + tokens
        self.wait_until(lambda: set(secrets) <= ep.tokens_seen(), 20, "every token at the endpoint")
        self.wait_until(lambda: set(app.states(ids)) == {"revoked"}, 10, "rows revoked")
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(secrets, d, app)


if __name__ == "__main__":
    harness.main()
