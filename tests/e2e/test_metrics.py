"""End-to-end tests of the Prometheus metrics (issue 17): known tokens in
known outcomes give exactly the expected counters and gauges over the socket
op and `revokerctl metrics`; the text passes `promtool check metrics` and
prometheus_client's parser; the histogram counts the requests the endpoint
saw; the oldest pending token's age grows while the endpoint is down and is
0 after the drain, and the endpoint gauges follow the outage; a 429 with
Retry-After is its own answer class and its wait is counted; a wrong URL is
the state misconfigured, endpoint_up 0; the textfile recipe of the README and
revokerctl(1) leaves out the process_* families node_exporter has itself.

The parser is Debian's python3-prometheus-client, run with /usr/bin/python3
in a subprocess (the tests may run under another python3)."""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
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


class MetricsBase(harness.E2ETestCase):
    """Scrapes and parser checks, for both test classes."""

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


class Metrics(MetricsBase):
    """The metrics over the control socket and revokerctl."""

    def test_the_first_scrape_starts_the_token_count(self):
        # A daemon nobody scrapes never reads its table for metrics (the idle
        # budget): the first scrape shows no token counts, a later one does.
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        app.insert(tok("idle"), expires_at=harness.now_s() + 86400)
        time.sleep(6)  # longer than METRICS_COUNT_MS: a counter started at start-up would have counted
        first = self.scrape(d)
        self.assertNotIn("revokerd_tokens{", first)
        self.assertIn("revokerd_outcomes_total", first, "the rest is there from the start")
        self.wait_metrics(d, {("revokerd_tokens", frozenset({("state", "active")})): 1}, timeout=10)

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
            key("revokerd_pending_oldest_due_seconds", lane="urgent"): 0,
            key("revokerd_pending_oldest_due_seconds", lane="routine"): 0,
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
        a1 = value(s, "revokerd_pending_oldest_due_seconds", lane="urgent")  # flagged
        self.assertEqual(value(s, "revokerd_pending_oldest_due_seconds", lane="routine"), 0)
        down1 = value(s, "revokerd_endpoint_down_seconds_total")
        self.assertGreater(a1, 0)
        time.sleep(1.5)
        s = samples(self.scrape(d))
        a2 = value(s, "revokerd_pending_oldest_due_seconds", lane="urgent")
        self.assertGreaterEqual(a2, a1 + 1.4, "the age grows while the endpoint is down")
        self.assertGreaterEqual(value(s, "revokerd_endpoint_down_seconds_total"), down1 + 1.4)
        refused = value(s, "revokerd_http_responses_total", code="none")
        self.assertGreaterEqual(refused, 3, "refused connections count as no answer")
        self.assertEqual(value(s, "revokerd_request_duration_seconds_count"), refused)
        self.assertEqual(value(s, "revokerd_tokens", state="pending"), 1)

        ep.start()
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "drained")
        s = self.wait_metrics(d, {("revokerd_pending_oldest_due_seconds", frozenset({("lane", "urgent")})): 0,
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

    def test_retry_after_is_counted_as_429_and_its_wait(self):
        ep = self.endpoint()
        d = self.daemon(ep)
        app = self.app(d)
        t = tok("s429x1ra2")  # 429 with Retry-After: 2 once, then 200
        tid = app.insert(t, flagged=1)
        self.wait_until(lambda: app.state(tid) == "revoked", 20, "revoked after the pause")
        s = self.wait_metrics(d, {("revokerd_http_responses_total", frozenset({("code", "429")})): 1,
                                  ("revokerd_http_responses_total", frozenset({("code", "2xx")})): 1,
                                  ("revokerd_outcomes_total", frozenset({("event", "retry")})): 1,
                                  ("revokerd_outcomes_total", frozenset({("event", "revoked")})): 1,
                                  ("revokerd_endpoint_state", frozenset({("state", "up")})): 1,
                                  ("revokerd_endpoint_up", frozenset()): 1})
        self.assertEqual(value(s, "revokerd_http_responses_total", code="4xx"), 0, "429 is a class of its own")
        self.assertAlmostEqual(value(s, "revokerd_retry_after_wait_seconds_total"), 2.0, delta=0.05)
        self.assertEqual(value(s, "revokerd_endpoint_down_seconds_total"), 0, "a pause is no outage")
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def test_a_wrong_url_is_misconfigured_in_the_gauges(self):
        ep = self.endpoint()
        d = self.daemon(url=ep.url + "-wrong")  # 404: an endpoint-level failure
        app = self.app(d)
        app.insert(tok("misconf"), flagged=1)
        s = self.wait_metrics(d, {("revokerd_endpoint_state", frozenset({("state", "misconfigured")})): 1,
                                  ("revokerd_endpoint_state", frozenset({("state", "up")})): 0,
                                  ("revokerd_endpoint_state", frozenset({("state", "down")})): 0,
                                  ("revokerd_endpoint_up", frozenset()): 0,
                                  ("revokerd_tokens", frozenset({("state", "pending")})): 1})
        self.assertGreaterEqual(value(s, "revokerd_http_responses_total", code="4xx"), 1)
        self.assertEqual(value(s, "revokerd_outcomes_total", event="rejected"), 0, "404 fails no token")
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

    def test_the_textfile_recipe_leaves_out_the_process_families(self):
        # node_exporter has process_* of its own: the same families from a
        # textfile are an error at each of its scrapes. The recipe of the
        # README and of revokerctl(1), run as written, leaves them out and
        # keeps every other sample.
        d = self.daemon(self.endpoint())
        self.wait_until(lambda: "revokerd_tokens{" in self.scrape(d), 10, "the first token count")
        root = os.path.dirname(os.path.dirname(harness.HERE))
        recipes = []
        for name, unescape in (("README.md", False), (os.path.join("doc", "revokerctl.1.scd"), True)):
            with open(os.path.join(root, name)) as f:
                found = [m.group(1) for m in re.finditer(r"^revokerctl metrics(.*?) > /var/lib/node_exporter/",
                                                         f.read(), re.M)]
            self.assertEqual(len(found), 1, "one textfile recipe in %s" % name)
            recipes.append(found[0].replace("\\\\", "\\") if unescape else found[0])
        self.assertEqual(recipes[0], recipes[1], "README and revokerctl(1) give the same recipe")
        ctl = "%s --config %s metrics" % (harness.binary("REVOKERCTL"), d.config_path)
        p = subprocess.run(["sh", "-c", ctl + recipes[0]], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.promtool_check(p.stdout)
        self.assertNotIn("process_", p.stdout)
        full = {k for k in samples(self.scrape(d)) if not k[0].startswith("process_")}
        self.assertEqual(set(samples(p.stdout)), full)
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


# Prints [[name, type, [[sample name, labels, value], ...]], ...] for OpenMetrics text on stdin.
PARSE_OPENMETRICS = PARSE.replace("from prometheus_client.parser import text_string_to_metric_families",
                                  "from prometheus_client.openmetrics.parser import text_string_to_metric_families")

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def listening_inodes(family_files=("/proc/net/tcp", "/proc/net/tcp6")):
    """Socket inodes in LISTEN state (0A) over TCP."""
    out = set()
    for path in family_files:
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A":
                    out.add(fields[9])
    return out


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        with contextlib.suppress(OSError):
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if target.startswith("socket:["):
                out.add(target[8:-1])
    return out


def http_get(port, path="/metrics", method="GET", headers=None, timeout=10):
    """(status, headers, body) over a real TCP connection."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class MetricsHTTP(MetricsBase):
    """The [metrics] listen HTTP listener (libmicrohttpd on the loop)."""

    def listen_daemon(self, ep=None, **config):
        self.port = harness.free_port()
        settings = {"metrics.listen": "127.0.0.1:%d" % self.port}
        settings.update(config)
        return self.daemon(ep or self.endpoint(), config=settings)

    def parse(self, text, program):
        p = subprocess.run([SYSTEM_PYTHON, "-c", program], input=text, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return {f[0]: f for f in json.loads(p.stdout)}

    def assert_ping(self, d, what):
        t0 = time.monotonic()
        reply = request(d.socket_path, {"op": "ping"}, timeout=5)
        self.assertTrue(reply and reply.get("ok"), "ping while %s: %r" % (what, reply))
        return time.monotonic() - t0

    def test_listener_is_off_by_default(self):
        d = self.daemon(self.endpoint())
        rc, out, err = d.check_config()
        self.assertEqual(rc, 0, err)
        self.assertIn("\n[metrics]\nlisten = \n", out)
        self.assertEqual(socket_inodes(d.pid) & listening_inodes(), set(), "no TCP socket listens")
        self.assertEqual(d.stop(), 0)

    def test_get_metrics_over_tcp_in_both_formats(self):
        d = self.listen_daemon()
        app = self.app(d)
        ids = app.insert_many([tok("ok"), tok("ok"), tok("s401")], flagged=1)
        self.wait_until(lambda: app.all_in(list(ids.values()), ("revoked",)), 20, "revoked")
        # The first scrape starts the token counter (metrics.h): wait for its count.
        self.wait_until(lambda: "revokerd_tokens{" in self.scrape(d), 10, "the first token count")
        rc, out, err = d.check_config()
        self.assertIn("\n[metrics]\nlisten = 127.0.0.1:%d\n" % self.port, out)

        # curl, as an operator would
        p = subprocess.run(["curl", "-sS", "-D", "-", "http://127.0.0.1:%d/metrics" % self.port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        head, body = p.stdout.split("\n\n", 1)  # text mode: CRLF read as \n
        self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
        self.assertIn("\nContent-Type: %s\n" % TEXT, head)
        self.promtool_check(body)
        families = self.parse(body, PARSE)
        self.assertEqual(families["revokerd_request_duration_seconds"][1], "histogram")
        self.assertEqual(families["revokerd_db_commit_duration_seconds"][1], "histogram")
        self.assertEqual(families["revokerd_checkpoint_duration_seconds"][1], "histogram")
        self.assertEqual(families["revokerd_wal_frames"][1], "gauge")
        lanes = {sm[1]["lane"] for sm in families["revokerd_pending_oldest_due_seconds"][2]}
        self.assertEqual(lanes, {"urgent", "routine"})
        s = samples(body)
        self.assertEqual(value(s, "revokerd_outcomes_total", event="revoked"), 2)
        self.assertEqual(value(s, "revokerd_outcomes_total", event="already_invalid"), 1)
        # The same numbers as the socket op (the counters stand still now).
        sock = samples(self.scrape(d))
        for k in [("revokerd_outcomes_total", frozenset({("event", "revoked")})),
                  ("revokerd_request_duration_seconds_count", frozenset())]:
            self.assertEqual(s[k], sock[k])

        # python, asking for OpenMetrics the way Prometheus does
        accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        status, headers, om = http_get(self.port, headers={"Accept": accept})
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], OPENMETRICS)
        om = om.decode()
        self.assertTrue(om.endswith("\n# EOF\n"), om[-40:])
        self.assertIn("# TYPE revokerd_outcomes counter\nrevokerd_outcomes_total{event=\"revoked\"} 2\n", om)
        families = self.parse(om, PARSE_OPENMETRICS)
        self.assertEqual(families["revokerd_outcomes"][1], "counter")
        self.assertEqual(families["revokerd_request_duration_seconds"][1], "histogram")
        revoked = [sm for sm in families["revokerd_outcomes"][2] if sm[1].get("event") == "revoked"]
        self.assertEqual([(sm[0], sm[2]) for sm in revoked], [("revokerd_outcomes_total", 2.0)])
        # text/plain preferred: the text format
        status, headers, _ = http_get(self.port, headers={"Accept": "text/plain;q=0.9,application/openmetrics-text;q=0.5"})
        self.assertEqual((status, headers["content-type"]), (200, TEXT))

        # HEAD: the headers of a GET, no body
        status, headers, body = http_get(self.port, method="HEAD")
        self.assertEqual((status, headers["content-type"], body), (200, TEXT, b""))
        # 404 for other paths, 405 (with Allow) for other methods
        for path in ("/", "/metrics/", "/metricsx", "/metrics/../x"):
            status, _, body = http_get(self.port, path=path)
            self.assertEqual(status, 404, path)
            self.assertIn(b"/metrics only", body)
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "BREW"):
            status, headers, _ = http_get(self.port, method=method)
            self.assertEqual((status, headers.get("allow")), (405, "GET, HEAD"), method)
        self.assertEqual(d.stop(), 0)
        self.assertEqual(subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % self.port],
                                        capture_output=True, timeout=30).returncode, 7, "closed at stop")
        self.assert_no_sanitizer_errors(d)

    def test_unix_socket_listen(self):
        path = os.path.join(self.dir, "metrics.sock")
        d = self.daemon(self.endpoint(), config={"metrics.listen": path})
        p = subprocess.run(["curl", "-sS", "--unix-socket", path, "http://localhost/metrics"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.promtool_check(p.stdout)
        self.assertIn("\nrevokerd_build_info{", p.stdout)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(path), "removed at stop")
        # A stale socket file is replaced; a file that is not a socket is not.
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
        d.start()
        self.assertEqual(subprocess.run(["curl", "-s", "--unix-socket", path, "http://localhost/metrics"],
                                        capture_output=True, timeout=30).returncode, 0)
        self.assertEqual(d.stop(), 0)
        with open(path, "w") as f:
            f.write("keep me")
        d.start(wait_ready=False)
        self.assertEqual(d.proc.wait(timeout=15), 2)
        self.assertIn("[metrics] listen: %s exists and is not a socket; not replacing it" % path, d.stderr())
        with open(path) as f:
            self.assertEqual(f.read(), "keep me")
        self.assert_no_sanitizer_errors(d)

    def test_bad_or_busy_address_stops_the_start(self):
        rc, _, err = harness.run([harness.binary("REVOKERD"), "--config", self.write_listen("localhost:9469"),
                                  "--check-config"])
        self.assertEqual(rc, 2)
        self.assertIn(':2: [metrics] listen: "localhost:9469": not a numeric IPv4 address', err)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            d = self.daemon(self.endpoint(), start=False, config={"metrics.listen": "127.0.0.1:%d" % port})
            d.start(wait_ready=False)
            self.assertEqual(d.proc.wait(timeout=15), 2)
        self.assertIn("[metrics] listen: cannot bind 127.0.0.1:%d: Address already in use" % port, d.stderr())

    def test_ipv6_and_a_non_loopback_address(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        port = harness.free_port()
        d = self.daemon(self.endpoint(), config={"metrics.listen": "[::1]:%d" % port})
        p = subprocess.run(["curl", "-sS", "-g", "http://[::1]:%d/metrics" % port], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("\nrevokerd_build_info{", p.stdout)
        self.assertNotIn("not a loopback address", d.stderr())
        # A reload keeps the listener: the address is read at start only.
        d.set({"metrics.listen": "127.0.0.1:%d" % port})
        d.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "metrics.listen changed to '127.0.0.1:%d': takes effect at the next restart" % port
                        in d.stderr(), 10, "the reload's warning")
        self.assertEqual(subprocess.run(["curl", "-sS", "-g", "-o", "/dev/null", "http://[::1]:%d/metrics" % port],
                                        capture_output=True, timeout=30).returncode, 0)
        self.assertEqual(d.stop(), 0)
        # Any address the operator wrote is allowed; the log says it is not loopback.
        d.set({"metrics.listen": "0.0.0.0:%d" % port})
        d.start()
        self.assertEqual(http_get(port)[0], 200)
        self.assertIn("metrics: listening on 0.0.0.0:%d, which is not a loopback address" % port, d.stderr())
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def write_listen(self, listen):
        return harness.write_ini(os.path.join(self.dir, "bad.conf"), {"metrics.listen": listen})

    def test_hostile_scrapers_neither_block_the_loop_nor_grow_memory(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        d = self.listen_daemon()
        for _ in range(20):  # warm up: the first scrapes' allocations stay in the heap
            self.assertEqual(http_get(self.port)[0], 200)
        before = rss_kib(d.pid)

        # 1. Half-sent requests, more than the cap (64), left open: the loop
        # goes on, and the server closes each after 5 s of silence (those
        # over the cap wait in the backlog for a slot, then for theirs).
        import select
        half = []
        t0 = time.monotonic()
        for _ in range(80):
            c = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: te")
            half.append(c)
        for _ in range(5):
            self.assertLess(self.assert_ping(d, "80 half-sent requests are open"), 2)
        open_ = set(half)
        while open_ and time.monotonic() - t0 < 30:
            ready, _, _ = select.select(list(open_), [], [], 1)
            for c in ready:
                with contextlib.suppress(OSError):
                    self.assertEqual(c.recv(4096), b"", "no answer to half a request")
                open_.discard(c)
                c.close()
        took = time.monotonic() - t0
        self.assertEqual(len(open_), 0, "the server closed every half-sent request")
        self.assertGreaterEqual(took, 4.5, "not before the idle timeout")
        print("\n80 half-sent requests closed by the server within %.1f s" % took)
        self.assertEqual(http_get(self.port)[0], 200)

        # 2. 1,000 connections at once.
        many = []
        for _ in range(1000):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", self.port))
            many.append(c)
        for _ in range(5):
            self.assertLess(self.assert_ping(d, "1,000 connections are open"), 2)
        for c in many:
            c.close()

        # 3. A 1 MiB header: answered 431 at the 16 KiB cap, or cut off.
        big = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        status = b""
        try:
            big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        except OSError:
            pass  # the server stopped reading and closed
        self.assertLess(self.assert_ping(d, "a 1 MiB header was sent"), 2)
        with contextlib.suppress(OSError):
            status = big.recv(4096)
        big.close()
        self.assertTrue(status == b"" or status.startswith(b"HTTP/1.1 431 "), status[:80])

        # Afterwards: scrapes work, and memory is back near where it was.
        self.wait_until(lambda: http_get(self.port)[0] == 200, 20, "scrapes again")
        self.wait_until(lambda: value(samples(self.scrape(d)), "revokerd_socket_clients") == 1, 10, "quiet")
        grown = rss_kib(d.pid) - before
        print("\nRSS before %d KiB, after the hostile scrapers %+d KiB" % (before, grown))
        if harness.sanitized(d.pid):
            print("AddressSanitizer build: RSS bound not checked (shadow memory and quarantine)")
        else:
            self.assertLess(grown, 8 * 1024, "RSS grew by %d KiB" % grown)
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def test_a_full_listener_still_serves_a_scraper(self):
        # 64 connections that never finish their request (a byte every few
        # seconds would keep them past the idle timeout) fill the listener:
        # a new scraper is still served, the oldest of them is closed for it.
        d = self.listen_daemon()
        before = len(socket_inodes(d.pid))
        slow = []
        for i in range(64):
            c = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(c)
        self.wait_until(lambda: len(socket_inodes(d.pid)) >= before + 64, 10, "the 64 connections accepted")
        self.assertEqual(http_get(self.port)[0], 200, "a scraper is served while 64 slow ones are open")
        self.assertEqual(http_get(self.port)[0], 200)
        slow[0].settimeout(10)
        try:  # a reset when its bytes were not read yet
            self.assertEqual(slow[0].recv(4096), b"", "the oldest slow connection was closed")
        except ConnectionResetError:
            pass
        for c in slow:
            c.close()

        # The absolute form of a request target (RFC 9112 3.2.2) is the same path.
        for target, status in [("http://x/metrics", 200), ("HTTP://127.0.0.1:9/metrics", 200),
                               ("http://x/other", 404), ("http://x", 404)]:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as c:
                c.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                head = c.recv(64)
            self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), (target, head))
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def test_histogram_counts_are_exact(self):
        ep = self.endpoint()
        d = self.listen_daemon(ep)
        app = self.app(d)
        tokens = [tok("ok") for _ in range(7)]
        ids = app.insert_many(tokens, flagged=1)
        self.wait_until(lambda: app.all_in(list(ids.values()), ("revoked",)), 20, "revoked")
        self.wait_until(lambda: value(samples(http_get(self.port)[2].decode()),
                                      "revokerd_outcomes_total", event="revoked") == 7, 10, "committed")
        s = samples(http_get(self.port)[2].decode())
        self.assertEqual(value(s, "revokerd_request_duration_seconds_count"), len(ep.requests()))
        self.assertEqual(value(s, "revokerd_request_duration_seconds_count"), 7)
        self.assertEqual(value(s, "revokerd_request_duration_seconds_bucket", le="+Inf"), 7)
        # A socket request that writes is one commit, which the client
        # waits for: a revoke by id of a token already revoked changes
        # nothing, so the engine is not woken and commits nothing after it.
        # Idle, nothing else commits: the count grows by exactly 5.
        time.sleep(1.5)  # the secrets cleared: their checkpoint pass is done
        before = self.commits(self.port)
        time.sleep(0.5)
        self.assertEqual(self.commits(self.port), before, "an idle daemon commits nothing")
        for t in tokens[:5]:
            reply = request(d.socket_path, {"op": "revoke", "id": ids[t]})
            self.assertEqual((reply["ok"], reply["ids"], reply["state"]), (True, [], "revoked"), reply)
        time.sleep(0.5)
        self.assertEqual(self.commits(self.port) - before, 5)
        cp = samples(http_get(self.port)[2].decode())
        self.assertGreaterEqual(value(cp, "revokerd_checkpoint_duration_seconds_count"), 1,
                                "the revoked secrets' checkpoint pass")
        self.assertGreater(value(cp, "revokerd_db_commit_duration_seconds_sum"), 0)
        self.assertEqual(d.stop(), 0)
        self.assert_no_sanitizer_errors(d)

    def commits(self, port):
        return value(samples(http_get(port)[2].decode()), "revokerd_db_commit_duration_seconds_count")


if __name__ == "__main__":
    unittest.main(verbosity=2)
