"""README's table of the example alerts (section "Metrics") is the rules
file doc/prometheus/revokerd-alerts.yml: one row per alert, in the file's
order, with its expression and its `for:` ("–" without one). A rule changed
in the file without the README (or the other way round) fails.

Usage: readme_alerts.py; SOURCE_ROOT names the source tree."""

import os
import re
import sys

ROOT = os.environ.get("SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rules(path):
    """[(alert, expr, for)] from the rules file (one-line expressions)."""
    out = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*- alert: (\S+)\s*$", line)
            if m:
                out.append([m.group(1), None, "–"])
                continue
            m = re.match(r"\s*(expr|for): (.*?)\s*(?:\s#.*)?$", line)
            if m and out:
                out[-1][1 if m.group(1) == "expr" else 2] = m.group(2)
    return [tuple(r) for r in out]


def readme_rows(path):
    """[(alert, expr, for)] from the README's rows of `Revokerd...` alerts."""
    out = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\| `(Revokerd\w+)` \| `(.*)` \| (\S+) \|$", line.rstrip("\n"))
            if m:
                out.append((m.group(1), m.group(2).replace("\\|", "|"), m.group(3)))
    return out


def main():
    want = rules(os.path.join(ROOT, "doc", "prometheus", "revokerd-alerts.yml"))
    got = readme_rows(os.path.join(ROOT, "README.md"))
    if not want or any(r[1] is None for r in want):
        print("no alerts (or one without expr) read from revokerd-alerts.yml: %r" % want)
        return 1
    if got != want:
        print("README's alert table differs from doc/prometheus/revokerd-alerts.yml")
        print("  README: %r\n  file:   %r" % (got, want))
        return 1
    print("%d alerts, as in the rules file" % len(want))
    return 0


if __name__ == "__main__":
    sys.exit(main())
