#!/usr/bin/env python3
"""Stand-in for the LoyaltyDog logout endpoint, for revokerd's tests and demo.

    python3 tests/endpoint.py [--port N] [--port-file F] [--log F.jsonl]
                              [--delay-ms N] [--bind 127.0.0.1]
                              [--tls-cert F --tls-key F]

A threaded HTTP/1.1 server with keep-alive. `POST /v2/token/logout` with
`Authorization: Bearer <token>` answers according to the token's prefix:

    s<status>[x<count>][ra<seconds>]-...  <status> (the first <count> requests
                        for this token since this process started, then
                        200; without x: always), with
                        `Retry-After: <seconds>` when ra is given. 422 carries a
                        FastAPI-style validation error, 3xx a Location header.
    hang-...            accept, then send nothing for 120 s (or until the
                        client closes).
    reset-...           close the connection without an answer (RST).
    hangonce-..., resetonce-...  the same for the token's first request,
                        then 200.
    garbage-...         200 with a binary garbage body.
    bigheader-...       200 with one response header line of 1 MiB.
    idleclose-...       200, then the connection is closed after 50 ms
                        without a request (a short keep-alive timeout).
    anything else       200 with body `{}`.

No or malformed Authorization: 401. Other paths: 404. Other methods on the
path: 405. Every request is appended (and flushed) to --log as one JSON line:
{"t", "method", "path", "headers", "token", "status", "conn"}; status is null
when nothing was answered (hang, reset). The line is written before the
answer is sent (and before --delay-ms), so a client that has seen the answer
finds the line, and a test sees requests that are still in flight.

With --tls-cert and --tls-key it speaks HTTPS (TLS through Python's ssl
module; the handshake runs in the connection's thread).

--port 0 (the default) picks a free port; the port is written atomically to
--port-file once listening, and `listening on 127.0.0.1:PORT` is printed.
Python 3 standard library only.
"""

import argparse
import http
import http.server
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time

LOGOUT_PATH = "/v2/token/logout"
HANG_SECONDS = 120.0
IDLE_TIMEOUT = 300.0  # an idle keep-alive connection is closed after this
SHORT_IDLE_TIMEOUT = 0.05  # after an idleclose- token

TOKEN_RE = re.compile(r"^s(\d{3})(?:x(\d+))?(?:ra(\d+))?-")
GARBAGE = bytes(range(256)) * 4 + b"\x00\xff\xfe{not json"

VALIDATION_BODY = json.dumps({
    "detail": [{
        "loc": ["header", "authorization"],
        "msg": "token is not a valid session token",
        "type": "value_error",
    }]
}).encode()


class State:
    """What every handler thread shares: the log, counters, options."""

    def __init__(self, log_path, delay_ms):
        self.delay = delay_ms / 1000.0
        self.lock = threading.Lock()
        self.counts = {}  # token -> requests seen
        self.conn_ids = itertools.count(1)
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None

    def next_count(self, token):
        with self.lock:
            n = self.counts.get(token, 0) + 1
            self.counts[token] = n
            return n

    def record(self, entry):
        if self.log is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock:
            self.log.write(line)
            self.log.flush()


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # do not keep a list of every thread ever started
    request_queue_size = 1024

    def __init__(self, addr, handler, state, tls=None):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.tls = tls
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls:
            # The handshake happens at the first read, in the handler's thread.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        # A client that goes away mid-request is normal here; anything else
        # is printed but never stops the server.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return
        super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "revokerd-test-endpoint/1"
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.conn_id = next(self.server.state.conn_ids)
        self.arrived = None

    def log_message(self, format, *args):  # noqa: A002 - base class name
        pass

    def parse_request(self):
        self.arrived = time.time()
        return super().parse_request()

    # -- helpers ----------------------------------------------------------

    def _headers_dict(self):
        out = {}
        for name, value in self.headers.items():
            key = name.lower()
            out[key] = out[key] + ", " + value if key in out else value
        return out

    def _read_body(self):
        """Consume the request body so the connection can be reused.
        False when the client went away."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return False
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    return True
                if size == 0:
                    while True:  # trailers up to the empty line
                        line = self.rfile.readline(65537)
                        if not line:
                            return False
                        if line in (b"\r\n", b"\n"):
                            return True
                data = self.rfile.read(size + 2)
                if len(data) < size + 2:
                    return False
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                self.close_connection = True
                return True
            while n > 0:
                data = self.rfile.read(min(n, 65536))
                if not data:
                    return False
                n -= len(data)
        return True

    def _token(self):
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        parts = auth.split(" ", 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        token = parts[1].strip()
        return token or None

    def _entry(self, token, status):
        return {
            "t": self.arrived if self.arrived is not None else time.time(),
            "method": self.command,
            "path": self.path,
            "headers": self._headers_dict(),
            "token": token,
            "status": status,
            "conn": self.conn_id,
        }

    def _answer(self, token, status, body=b"", headers=()):
        state = self.server.state
        # Logged at once, before --delay-ms: a test sees requests in flight.
        state.record(self._entry(token, status))
        if state.delay > 0:
            time.sleep(state.delay)
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        no_body = status < 200 or status in (204, 304) or self.command == "HEAD"
        self.send_response(status, phrase)
        for name, value in headers:
            self.send_header(name, value)
        if body and not no_body:
            self.send_header("Content-Type", "application/json"
                             if body[:1] in (b"{", b"[") else "application/octet-stream")
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", "0" if no_body else str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write: no Nagle / delayed-ACK stall.
        self._headers_buffer.append(b"\r\n")
        if body and not no_body:
            self._headers_buffer.append(body)
        self.flush_headers()

    def _hang(self, token):
        self.server.state.record(self._entry(token, None))
        deadline = time.monotonic() + HANG_SECONDS
        sock = self.connection
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select([sock], [], [], min(left, 1.0))
            if readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break  # the client closed
        self.close_connection = True

    def _reset(self, token):
        self.server.state.record(self._entry(token, None))
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # rfile holds a reference to the socket: close both so that the fd is
        # closed now (linger 0: RST), not after a FIN from shutdown_request.
        try:
            self.rfile.close()
        except OSError:
            pass
        sock.close()

    def _status_answer(self, token, m):
        status = int(m.group(1))
        count = m.group(2)
        n = self.server.state.next_count(token)
        if count is not None and n > int(count):
            return self._answer(token, 200, b"{}")
        headers = []
        if m.group(3) is not None:
            headers.append(("Retry-After", m.group(3)))
        if status == 422:
            body = VALIDATION_BODY
        elif 300 <= status < 400:
            host = self.headers.get("Host") or "127.0.0.1"
            headers.append(("Location", "http://%s/v3/token/logout" % host))
            body = b""
        elif status == 401:
            body = b'{"detail":"Invalid or expired token"}'
        elif status >= 400:
            body = json.dumps({"detail": http.HTTPStatus(status).phrase
                               if status in http.HTTPStatus._value2member_map_
                               else "error"}).encode()
        else:
            body = b"{}"
        return self._answer(token, status, body, headers)

    # -- dispatch ---------------------------------------------------------

    def _dispatch(self):
        if not self._read_body():
            self.close_connection = True
            return
        path = self.path.split("?", 1)[0]
        if path != LOGOUT_PATH:
            return self._answer(self._token(), 404, b'{"detail":"Not Found"}')
        if self.command != "POST":
            return self._answer(self._token(), 405, b'{"detail":"Method Not Allowed"}',
                                [("Allow", "POST")])
        token = self._token()
        if token is None:
            return self._answer(None, 401, b'{"detail":"Not authenticated"}')
        if token.startswith("hang-"):
            return self._hang(token)
        if token.startswith("reset-"):
            return self._reset(token)
        if token.startswith(("hangonce-", "resetonce-")):
            if self.server.state.next_count(token) == 1:
                return (self._hang if token.startswith("hang") else self._reset)(token)
            return self._answer(token, 200, b"{}")
        if token.startswith("garbage-"):
            return self._answer(token, 200, GARBAGE)
        if token.startswith("bigheader-"):
            return self._answer(token, 200, b"{}", headers=(("X-Big", "a" * (1 << 20)),))
        if token.startswith("idleclose-"):
            # The next read times out and handle_one_request closes.
            self.connection.settimeout(SHORT_IDLE_TIMEOUT)
            return self._answer(token, 200, b"{}")
        m = TOKEN_RE.match(token)
        if m:
            return self._status_answer(token, m)
        return self._answer(token, 200, b"{}")

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ValueError):
            # Disconnected mid-request or mid-answer: end this connection only.
            self.close_connection = True

    def __getattr__(self, name):
        # Any method (GET, PUT, DELETE, custom ones) goes through _dispatch.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)


def main(argv=None):
    p = argparse.ArgumentParser(description="stand-in logout endpoint for revokerd tests")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)

    tls = None
    if args.tls_cert:
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    state = State(args.log, args.delay_ms)
    server = Server((args.bind, args.port), Handler, state, tls)
    port = server.server_address[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("listening on %s:%d" % (args.bind, port), flush=True)

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
