"""End-to-end proof, at scale, that a revoked token's secret leaves every file
of the database (issue 20, item 3): 100,000 tokens of random 32-byte secrets
written by another process (Python's sqlite3, as an application would) in
transactions of 1 row and of 5,000 rows while a real revokerd drains them
against the stand-in endpoint; after the last final outcome and the next
checkpoint, a byte search of the database, its -wal and -shm (while the
daemon runs, and after it stopped) finds no 20-character piece of any secret.

Slow (minutes): suite 'slow', left out of a plain `meson test`:
    meson test -C build --suite slow --print-errorlogs
SCALE_TOKENS=N runs it with N tokens per case instead (a quicker look)."""

import os
import re
import sqlite3
import struct
import time

import harness
from harness import now_s

TOKENS = int(os.environ.get("SCALE_TOKENS", "100000"))
PREFIX = b"zsec-"
SECRET_HEX = 64  # os.urandom(32).hex()
WINDOW = 20      # hex characters: 80 bits, no accidental match
STRIDE = 10      # any piece of WINDOW + STRIDE - 1 characters holds an indexed window
HEX_RUN = re.compile(rb"[0-9a-f]{%d,}" % WINDOW)


def new_secret():
    return PREFIX.decode() + os.urandom(32).hex()


class Needles:
    """The secrets of one case, searchable in raw bytes: whole ones by their
    prefix, pieces by WINDOW-character windows taken every STRIDE."""

    def __init__(self, secrets_):
        self.whole = {s.encode() for s in secrets_}
        self.windows = set()
        for s in secrets_:
            h = s[len(PREFIX):].encode()
            for i in list(range(0, SECRET_HEX - WINDOW + 1, STRIDE)) + [SECRET_HEX - WINDOW]:
                self.windows.add(h[i:i + WINDOW])

    def find(self, data):
        """[(offset, whole)]: each place a piece of a secret starts (one per run)."""
        hits = []
        for m in HEX_RUN.finditer(data):
            run, start = m.group(), m.start()
            for i in range(len(run) - WINDOW + 1):
                if run[i:i + WINDOW] in self.windows:
                    s = data[start - len(PREFIX):start + SECRET_HEX]
                    hits.append((start + i, s in self.whole))
                    break
        return hits


def page_region(page, hdr, off):
    """Where offset `off` of a b-tree page lies: 'gap' (unallocated space
    between the cell pointers and the cell content), 'freeblock', 'cell'
    or 'header'."""
    kind = page[hdr]
    if kind not in (2, 5, 10, 13):
        return "not a b-tree page (type %d)" % kind
    free, ncell, content = struct.unpack(">HHH", page[hdr + 1:hdr + 7])
    content = content or 65536
    ptrs = hdr + (8 if kind in (10, 13) else 12)
    if off < ptrs + 2 * ncell:
        return "header"
    if off < content:
        return "gap"
    while free:
        nxt, size = struct.unpack(">HH", page[free:free + 4])
        if free <= off < free + size:
            return "freeblock"
        free = nxt
    return "cell"


class T(harness.E2ETestCase):

    def metric(self, d, name):
        """One unlabelled sample of the daemon's metrics (socket op metrics)."""
        text = harness.request(d.socket_path, {"op": "metrics"})["text"]
        return float(re.search(r"^%s (\S+)$" % re.escape(name), text, re.M).group(1))

    def files(self, d):
        out = {}
        for suffix in ("", "-wal", "-shm"):
            try:
                with open(d.db_path + suffix, "rb") as f:
                    out[suffix or "db"] = f.read()
            except FileNotFoundError:
                pass
        return out

    def leftovers(self, d, needles):
        """{file: [(offset, whole)]} of every piece of a secret found."""
        return {name: hits for name, data in self.files(d).items() if (hits := needles.find(data))}

    def explain(self, d, found):
        """A line per hit in the database file: page, b-tree, region."""
        files = self.files(d)
        db = files.get("db", b"")
        conn = sqlite3.connect("file:%s?mode=ro" % d.db_path, uri=True)
        try:
            psize = conn.execute("PRAGMA page_size").fetchone()[0]
            owner = {p: (n, t) for n, p, t in conn.execute("SELECT name, pageno, pagetype FROM dbstat")}
        finally:
            conn.close()
        lines = []
        for name, hits in found.items():
            for off, whole in hits[:40]:
                if name != "db":
                    lines.append("%s offset %d (%s)" % (name, off, "whole" if whole else "piece"))
                    continue
                pgno = off // psize + 1
                page = db[(pgno - 1) * psize:pgno * psize]
                btree, ptype = owner.get(pgno, ("freelist or overflow", "?"))
                lines.append("db page %d (%s, %s page): %s secret in the %s" % (
                    pgno, btree, ptype, "whole" if whole else "a piece of a",
                    page_region(page, 100 if pgno == 1 else 0, off % psize)))
        return "\n".join(lines)

    def drain(self, rows_per_transaction):
        ep = self.endpoint()
        d = self.daemon(ep, config={"logout.concurrency": "32"})
        app = self.app(d)
        app.execute("PRAGMA synchronous = NORMAL")  # an application's usual WAL setting
        secrets_ = [new_secret() for _ in range(TOKENS)]
        past = int(now_s()) - 1
        t0 = time.monotonic()
        for i in range(0, TOKENS, rows_per_transaction):
            with app.transaction():
                for j, s in enumerate(secrets_[i:i + rows_per_transaction], i):
                    # Expired and flagged rows, and some still in the future
                    # when written: the daemon's updates land between the
                    # application's inserts in many orders.
                    app.execute("INSERT INTO tokens (token, subject, expires_at, flagged) "
                                "VALUES (?, ?, ?, ?)",
                                (s, "user-%d" % (j % 997), past + (j % 3), int(j % 5 == 0)))
        written = time.monotonic() - t0
        self.wait_until(lambda: app.query("SELECT count(*) AS n FROM tokens WHERE state = 'revoked'")[0]["n"]
                        == TOKENS, 900, "every token revoked", interval=0.5)
        drained = time.monotonic() - t0
        self.assertEqual(app.query("SELECT count(*) AS n FROM tokens WHERE token IS NOT NULL")[0]["n"], 0)
        needles = Needles(secrets_)
        # The daemon's next checkpoint, about a second after its last scrub,
        # and the sweep that serves it: a sweep waits nine times the last
        # one's duration, so the WAL can be cut before it (and the pass ends
        # "busy", to be retried); revokerd_sweep_pending says when it ran.
        self.wait_until(lambda: os.path.getsize(d.db_path + "-wal") == 0
                        and self.metric(d, "revokerd_sweep_pending") == 0, 60,
                        "the WAL cut and the sweep done", interval=0.2)
        with open("/proc/%d/stat" % d.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        size = os.path.getsize(d.db_path)
        running = self.leftovers(d, needles)
        report = self.explain(d, running)
        self.assertEqual(d.stop(), 0)
        stopped = self.leftovers(d, needles)
        # The sweep touched unused bytes only.
        self.assertEqual(app.query("PRAGMA integrity_check"), [{"integrity_check": "ok"}])
        # The check itself: a secret written now is found.
        probe = new_secret()
        app.insert(probe, expires_at=int(now_s()) + 3600)
        app.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.assertTrue(any(Needles([probe]).find(data) for data in self.files(d).values()),
                        "the search finds a live secret")
        app.close()
        print("\n%d tokens, %d per transaction: written in %.1f s, drained in %.1f s, revokerd CPU %.1f s, "
              "database %.1f MB; pieces of revoked secrets left: %d while running, %d after stop"
              % (TOKENS, rows_per_transaction, written, drained, cpu, size / 1e6,
                 sum(map(len, running.values())), sum(map(len, stopped.values()))))
        if report:
            print(report)
        self.assertEqual(running, {}, "revoked secrets left in the files:\n" + report)
        self.assertEqual(stopped, {}, "revoked secrets left after stop")

    def test_one_row_transactions(self):
        self.drain(1)

    def test_5000_row_transactions(self):
        self.drain(5000)


if __name__ == "__main__":
    harness.main()
