"""End-to-end tests of the Prometheus metrics (issue 17): known tokens in
known outcomes give exactly the expected counters and gauges over the socket
op and `revokerctl metrics`; the text passes `promtool check metrics` and
prometheus_client's parser; the histogram counts the requests the endpoint
saw; the oldest pending token's age grows while the endpoint is down and is
0 after the drain, and the endpoint gauges follow the outage.

The parser is Debian's python3-prometheus-client, run with /usr/bin/python3
in a subprocess (the tests may run under another python3)."""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import unittest

import harness
from harness import request

SYSTEM_PYTHON = "/usr/bin/python3"

# Prints [[name, type, [[sample name, labels, value], ...]], ...] for the text on stdin.
PARSE = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append([f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]])
print(json.dumps(out))
"""


def tok(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(12))




def samples(text):
    """{(name, frozenset(labels)): value} from the exposition text (a small
    reader for the simple lines revokerd writes; the real parsers run too)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        labels = frozenset()
        if "{" in key:
            name, rest = key.split("{", 1)
            pairs = [p.split("=", 1) for p in rest.rstrip("}").split('",') if p]
            labels = frozenset((k, v.strip('"')) for k, v in pairs)
        else:
            name = key
        out[(name, labels)] = float(value)
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


class Metrics(harness.E2ETestCase):

    def scrape(self, d):
        reply = request(d.socket_path, {"op": "metrics"})
        self.assertTrue(reply.get("ok"), reply)
        self.assertEqual(set(reply), {"ok", "text"})
        return reply["text"]

    def parse_with_client(self, text):
        p = subprocess.run([SYSTEM_PYTHON, "-c", PARSE], input=text, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def promtool_check(self, text):
        promtool = shutil.which("promtool")
        if not promtool:
            self.fail("promtool not found (Debian package prometheus; tests/deps.sh installs it)")
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout + p.stderr, "", "promtool has no warnings")

    def wait_metrics(self, d, expected, timeout=20):
        """Scrape until every (name, labels) in expected has its value (the
        token counts are at most 5 s old); returns the last samples."""
        last = {}

        def match():
            last["s"] = samples(self.scrape(d))
            return all(value(last["s"], n, **dict(l)) == v for (n, l), v in expected.items())
        try:
            self.wait_until(match, timeout, "metrics", interval=0.25)
        except AssertionError:
            got = {k: value(last["s"], k[0], **dict(k[1])) for k in expected}
            self.fail("metrics never matched: expected %r, last %r" % (expected, got))
        return last["s"]

    def test_known_outcomes_give_exact_values_and_parse(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        plain = [tok("ok"), tok("ok")]
        t401, t422, t500 = tok("s401"), tok("s422"), tok("s500x1")
        ids = app.insert_many(plain + [t401, t422, t500], flagged=1)
        app.insert(tok("idle"), expires_at=harness.now_s() + 86400)  # stays active
        self.wait_until(lambda: app.all_in(list(ids.values()), ("revoked", "failed")), 20, "all final")

        def key(name, **labels):
            return (name, frozenset(labels.items()))
        expected = {
            key("revokerd_tokens", state="active"): 1,
            key("revokerd_tokens", state="pending"): 0,
            key("revokerd_tokens", state="revoked"): 4,
            key("revokerd_tokens", state="failed"): 1,
            key("revokerd_pending_oldest_due_seconds"): 0,
            key("revokerd_outcomes_total", event="revoked"): 3,
            key("revokerd_outcomes_total", event="already_invalid"): 1,
            key("revokerd_outcomes_total", event="rejected"): 1,
            key("revokerd_outcomes_total", event="gave_up"): 0,
            key("revokerd_outcomes_total", event="retry"): 1,
            key("revokerd_requests_in_flight"): 0,
            key("revokerd_request_duration_seconds_count"): 6,
            key("revokerd_request_duration_seconds_bucket", le="+Inf"): 6,
            key("revokerd_http_responses_total", code="2xx"): 3,
            key("revokerd_http_responses_total", code="401"): 1,
            key("revokerd_http_responses_total", code="4xx"): 1,
            key("revokerd_http_responses_total", code="5xx"): 1,
            key("revokerd_http_responses_total", code="429"): 0,
            key("revokerd_http_responses_total", code="none"): 0,
            key("revokerd_endpoint_up"): 1,
            key("revokerd_endpoint_state", state="up"): 1,
            key("revokerd_endpoint_state", state="down"): 0,
            key("revokerd_db_errors_total"): 0,
            key("revokerd_socket_clients"): 1,  # this scrape's own connection
        }
        s = self.wait_metrics(d, expected)
        self.assertEqual(len(ep.requests()), 6, "the histogram counts the requests the endpoint saw")
        # Buckets are cumulative and end at the count.
        buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in s.items()
                         if n == "revokerd_request_duration_seconds_bucket" and dict(l)["le"] != "+Inf")
        self.assertEqual([b for b, _ in buckets], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertLessEqual(buckets[-1][1], 6)
        start = value(s, "revokerd_start_time_seconds")
        self.assertTrue(time.time() - 60 < start <= time.time(), start)
        self.assertGreater(value(s, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value(s, "process_open_fds"), 3)
        self.assertGreater(value(s, "process_cpu_seconds_total"), 0)

        text = self.scrape(d)
        self.promtool_check(text)
        families = {f[0]: f for f in self.parse_with_client(text)}
        self.assertEqual(families["revokerd_request_duration_seconds"][1], "histogram")
        # prometheus_client names a counter's family without _total.
        self.assertEqual(families["revokerd_outcomes_total" if "revokerd_outcomes_total" in families
                                  else "revokerd_outcomes"][1], "counter")
        self.assertEqual(families["revokerd_tokens"][1], "gauge")
        info = [sm for sm in families["revokerd_build_info"][2]][0]
        self.assertEqual(set(info[1]), {"version", "sqlite", "curl", "uv"})
        self.assertEqual(info[2], 1.0)
        # Every sample belongs to a family with # HELP and # TYPE.
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{")[0].split(" ")[0]
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and "# TYPE %s histogram\n" % name[:-len(suffix)] in text:
                    name = name[:-len(suffix)]
            self.assertIn("# HELP %s " % name, text)
            self.assertIn("# TYPE %s " % name, text)

        # revokerctl metrics prints the same text (the counters stand still now).
        rc, out, err = harness.run([harness.binary("REVOKERCTL"), "--config", d.config_path, "metrics"])
        self.assertEqual(rc, 0, err)
        self.promtool_check(out)
        want = {k: v for k, v in samples(text).items() if not k[0].startswith("process_")}
        want[("revokerd_socket_requests_total", frozenset({("op", "metrics")}))] += 1  # revokerctl's own
        got = {k: v for k, v in samples(out).items() if not k[0].startswith("process_")}
        self.assertEqual(got, want)
        self.assertTrue(out.endswith("\n") and not out.endswith("\n\n"))

        for t in plain + [t401, t422, t500]:
            self.assertNotIn(t, text)
        self.assertEqual(d.stop(), 0)
        self.assert_no_secrets(plain + [t401, t422, t500], d, app)
        self.assert_no_sanitizer_errors(d)

    def test_oldest_pending_age_grows_while_down_and_is_0_after_drain(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        ep.stop()  # connection refused: endpoint-level failures
        t = tok("late")
        tid = app.insert(t, flagged=1)
        s = self.wait_metrics(d, {("revokerd_endpoint_up", frozenset()): 0,
                                  ("revokerd_endpoint_state", frozenset({("state", "down")})): 1,
                                  ("revokerd_tokens", frozenset({("state", "pending")})): 1})
        a1 = value(s, "revokerd_pending_oldest_due_seconds")
        down1 = value(s, "revokerd_endpoint_down_seconds_total")
        self.assertGreater(a1, 0)
        time.sleep(1.5)
        s = samples(self.scrape(d))
        a2 = value(s, "revokerd_pending_oldest_due_seconds")
        self.assertGreaterEqual(a2, a1 + 1.4, "the age grows while the endpoint is down")
        self.assertGreaterEqual(value(s, "revokerd_endpoint_down_seconds_total"), down1 + 1.4)
        refused = value(s, "revokerd_http_responses_total", code="none")
        self.assertGreaterEqual(refused, 3, "refused connections count as no answer")
        self.assertEqual(value(s, "revokerd_request_duration_seconds_count"), refused)
        self.assertEqual(value(s, "revokerd_tokens", state="pending"), 1)

        ep.start()
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "drained")
        s = self.wait_metrics(d, {("revokerd_pending_oldest_due_seconds", frozenset()): 0,
                                  ("revokerd_tokens", frozenset({("state", "pending")})): 0,
                                  ("revokerd_tokens", frozenset({("state", "revoked")})): 1,
                                  ("revokerd_endpoint_up", frozenset()): 1,
                                  ("revokerd_endpoint_state", frozenset({("state", "up")})): 1,
                                  ("revokerd_outcomes_total", frozenset({("event", "revoked")})): 1})
        down = value(s, "revokerd_endpoint_down_seconds_total")
        self.assertGreaterEqual(down, 1.5)
        time.sleep(0.5)
        self.assertEqual(value(samples(self.scrape(d)), "revokerd_endpoint_down_seconds_total"), down,
                         "the outage's time stops when the endpoint is up")
        self.assertEqual(value(s, "revokerd_retry_after_wait_seconds_total"), 0)
        sent = value(s, "revokerd_request_duration_seconds_count")
        self.assertEqual(sent, value(s, "revokerd_http_responses_total", code="none") + 1,
                         "every request is counted once: the refused ones and the one that got 200")
        self.assertEqual(len(ep.requests()), 1)
        self.promtool_check(self.scrape(d))
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def test_socket_requests_and_refusals(self):
        ep = self.endpoint()
        d = self.daemon(ep, config={"daemon.max_clients": "2"})
        before = samples(self.scrape(d))
        reply = request(d.socket_path, {"op": "metrics", "format": "openmetrics"})
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"], "unknown field 'format' for op metrics (allowed: none)")
        request(d.socket_path, {"op": "ping"})
        request(d.socket_path, {"op": "tok-SECRET-as-op"})
        # A line over 64 KiB closes the connection.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(d.socket_path)
            with contextlib.suppress(OSError):
                s.sendall(b"x" * (70 * 1024))
            self.assertIn(b"longer than 65536 bytes", s.recv(4096))
        # max_clients 2: the third connection is refused. The earlier ones
        # are closed asynchronously: wait until a is the only client.
        a, b = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
        a.connect(d.socket_path)
        self.wait_until(lambda: value(samples(self.scrape_with(a)), "revokerd_socket_clients") == 1, 5, "1 client")
        b.connect(d.socket_path)
        self.wait_until(lambda: value(samples(self.scrape_with(a)), "revokerd_socket_clients") == 2, 5, "2 clients")
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(5)
            c.connect(d.socket_path)
            self.assertIn(b"too many clients", c.recv(4096))
        s = samples(self.scrape_with(a))
        a.close()
        b.close()

        def delta(op):
            return (value(s, "revokerd_socket_requests_total", op=op)
                    - value(before, "revokerd_socket_requests_total", op=op))
        self.assertEqual(delta("ping"), 1)
        self.assertEqual(delta("other"), 1)
        self.assertGreaterEqual(delta("metrics"), 2)  # the refused field, and the scrapes
        self.assertEqual(value(s, "revokerd_socket_refused_total", why="line_too_long"), 1)
        self.assertEqual(value(s, "revokerd_socket_refused_total", why="too_many"), 1)
        self.assertEqual(value(s, "revokerd_socket_refused_total", why="uid"), 0)
        self.assertNotIn("SECRET", self.scrape(d))
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run revokerctl as another uid")
    def test_revokerctl_metrics_for_the_control_group(self):
        ep = self.endpoint()
        d = self.daemon(ep, config={"daemon.control_group": "users"})
        os.chmod(self.dir, 0o755)
        ctl = [harness.binary("REVOKERCTL"), "--socket", d.socket_path, "metrics"]
        nobody = ["setpriv", "--reuid=65534", "--regid=65534"]
        rc, out, err = harness.run(nobody + ["--groups=100"] + ctl)
        self.assertEqual(rc, 0, err)
        self.promtool_check(out)
        self.assertIn("\nrevokerd_build_info{", out)
        # Not a member: the socket file keeps it out; past the file mode, SO_PEERCRED does.
        rc, out, err = harness.run(nobody + ["--clear-groups"] + ctl)
        self.assertEqual((rc, out), (69, ""), err)
        os.chmod(d.socket_path, 0o666)
        rc, out, err = harness.run(nobody + ["--clear-groups"] + ctl)
        self.assertEqual((rc, out), (1, ""), err)
        self.assertIn("permission denied", err)
        s = samples(self.scrape(d))
        self.assertEqual(value(s, "revokerd_socket_refused_total", why="uid"), 1)
        self.assertEqual(d.stop(), 0)

    def scrape_with(self, conn):
        """A scrape over an open connection (the request's reply line)."""
        conn.settimeout(5)
        conn.sendall(b'{"op":"metrics"}\n')
        buf = b""
        while b"\n" not in buf:
            buf += conn.recv(1 << 20)
        reply = json.loads(buf)
        self.assertTrue(reply["ok"], reply)
        return reply["text"]


if __name__ == "__main__":
    unittest.main(verbosity=2)
