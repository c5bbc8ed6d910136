"""A manual page renders without a warning from man, has the sections a
manual needs, and documents what the sources define, parsed from them so
that a new key, op, event, signal or exit status without its words fails:

  revokerctl.1     every command and option of `revokerctl --help`, every
                   audit event (--event)
  revokerd.8       every option of `revokerd --help` (which is short and
                   ends naming the pages), every socket op
                   (daemon/proto.c), audit event (daemon/names.c), signal,
                   exit status (daemon/main.c) and environment variable the
                   daemon reads (getenv in daemon/)
  revokerd.conf.5  every key of daemon/config-keys.h, as "key = default"
                   under its section, in table order

Usage: man_check.py PAGE [BINARY]; SOURCE_ROOT names the source tree."""

import glob
import os
import re
import subprocess
import sys

SECTIONS = {
    "revokerctl.1": ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "EXAMPLES",
                     "FILES", "SEE ALSO"),
    "revokerd.8": ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "OUTCOMES", "AUDIT LOG", "CONTROL SOCKET",
                   "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"),
    "revokerd.conf.5": ("NAME", "SYNOPSIS", "DESCRIPTION", "SYNTAX", "KEYS", "RELOAD", "FILES", "SEE ALSO"),
}
PAGES = {"revokerctl(1)", "revokerd(8)", "revokerd.conf(5)"}


def source(path):
    with open(os.path.join(os.environ["SOURCE_ROOT"], path)) as f:
        return f.read()


def c_block(text, start):
    """The text from start to the end of its brace block or statement."""
    i = text.index(start)
    depth, j = 0, text.index("{", i)
    while True:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
        if depth == 0:
            return text[i:j]


def config_keys():
    """[(section, name, default)] from the X-macro rows of config-keys.h."""
    text = source("daemon/config-keys.h")
    rows = re.findall(r'X\("(\w+)", "(\w+)", \w+, \w+, "([^"]*)"', text)
    if len(rows) != text.count("    X("):
        raise SystemExit("config-keys.h: parsed %d rows of %d" % (len(rows), text.count("    X(")))
    return rows


def socket_ops():
    return re.findall(r'\{"(\w+)", op_\w+,', c_block(source("daemon/proto.c"), "static const struct op ops[]"))


def audit_events():
    return re.findall(r'\] = "(\w+)"', c_block(source("daemon/names.c"), "event_names["))


def signals():
    main = source("daemon/main.c")
    return sorted(set(re.findall(r"uv_signal_start\([^;]*?(SIG[A-Z0-9]+)\)", main) +
                      re.findall(r"\bsignal\((SIG[A-Z0-9]+),", main)))


def exit_statuses():
    main = source("daemon/main.c")
    found = re.findall(r"exit_code = (\d+);", main) + re.findall(r"\bexit\((\d+)\)", main)
    found += re.findall(r"return (\d+);", c_block(main, "int main(int argc"))
    return sorted(set(found), key=int)


def environment():
    names = set()
    for path in glob.glob(os.path.join(os.environ["SOURCE_ROOT"], "daemon", "*.c")):
        with open(path) as f:
            names.update(re.findall(r'getenv\("(\w+)"\)', f.read()))
    return sorted(names)


def section_text(rendered, title):
    """The body of section title (a line of its own, not indented)."""
    m = re.search(r"^%s\n(.*?)(?=^\S|\Z)" % re.escape(title), rendered, re.M | re.S)
    return m.group(1) if m else ""


def entries(body):
    """The entry names of a section's body: lines indented by 7 with an
    indented paragraph under them."""
    lines = body.splitlines() + [""]
    return [line[7:] for line, nxt in zip(lines, lines[1:])
            if re.match(r" {7}\S", line) and re.match(r" {11}\S", nxt)]


def check_revokerctl(text, binary, fail):
    short = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    commands = re.findall(r"^  ([a-z]+) {2,}", short.split("Commands:\n", 1)[1], re.M)
    if not commands:
        fail("no command list in revokerctl --help")
    for cmd in commands:
        if not re.search(r"^ {7}%s\b" % cmd, section_text(text, "COMMANDS"), re.M):
            fail("command %s (revokerctl --help) is not in COMMANDS" % cmd)
    for opt in sorted(set(re.findall(r"--[a-z][a-z-]*", short))):
        if opt not in text:
            fail("option %s (revokerctl --help) is not in the page" % opt)
    events = section_text(text, "COMMANDS")
    for event in audit_events():
        if not re.search(r"\b%s\b" % event, events):
            fail("audit event %s (names.c) is not among audit --event's values" % event)


def check_revokerd(text, binary, fail):
    short = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    if not short.endswith("See revokerd(8) and revokerd.conf(5).\n") or len(short.splitlines()) > 25:
        fail("revokerd --help is not short (at most 25 lines) or does not end pointing at the pages:\n" + short)
    options = section_text(text, "OPTIONS")
    for opt in sorted(set(re.findall(r"(?<![\w-])--?[a-zA-Z][a-z-]*", short))):
        if not re.search(r"(^|, )%s\b" % re.escape(opt), "\n".join(entries(options)), re.M):
            fail("option %s (revokerd --help) is not an entry of OPTIONS" % opt)
    for name, items, title in (("socket op", socket_ops(), "CONTROL SOCKET"),
                               ("audit event", audit_events(), "AUDIT LOG"),
                               ("signal", signals(), "SIGNALS"),
                               ("exit status", exit_statuses(), "EXIT STATUS"),
                               ("environment variable", environment(), "ENVIRONMENT")):
        if not items:
            fail("no %s found in the sources" % name)
        body = section_text(text, title)
        listed = set(re.split(r",\s*", ", ".join(entries(body))))
        for item in items:
            # an entry of its own, or for SIGPIPE-like notes, a sentence
            if item not in listed and not re.search(r"^ {7}%s is\b" % item, body, re.M):
                fail("%s %s is not an entry of %s" % (name, item, title))
    for ref in ("revokerd.conf(5)", "revokerctl(1)"):
        if ref not in section_text(text, "SEE ALSO"):
            fail("SEE ALSO does not name %s" % ref)


def check_conf(text, fail):
    keys = section_text(text, "KEYS")
    pos, current = 0, None
    for section, name, default in config_keys():
        if section != current:
            m = re.compile(r"^   \[%s\]$" % section, re.M).search(keys, pos)
            if not m:
                fail("no subsection [%s] in KEYS (after the previous one)" % section)
                return
            pos, current = m.end(), section
        line = "%s =%s" % (name, " " + default if default else "")
        m = re.compile(r"^ {7}%s( \(.*\))?$" % re.escape(line), re.M).search(keys, pos)
        nxt = re.compile(r"^   \[", re.M).search(keys, pos)
        if not m or (nxt and m.start() > nxt.start()):
            fail("key %s.%s (config-keys.h) is not in [%s] of KEYS as \"%s\" in table order"
                 % (section, name, section, line))
        else:
            pos = m.end()


def main():
    page = sys.argv[1]
    base = os.path.basename(page)
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    man = subprocess.run(["man", "--warnings", "-P", "cat", "-l", page], capture_output=True,
                         text=True, env=env)
    failures = []
    fail = failures.append
    if man.returncode != 0 or man.stderr.strip():
        fail("man --warnings -l %s: exit %d\n%s" % (page, man.returncode, man.stderr))
    text = man.stdout
    for section in SECTIONS[base]:
        if not re.search(r"^%s$" % section, text, re.M):
            fail("no section %s" % section)
    for ref in re.findall(r"\brevoker[a-z.]*\(\d\)", text):
        if ref not in PAGES:
            fail("%s names %s, which is not a page of ours" % (base, ref))
    if base == "revokerctl.1":
        check_revokerctl(text, sys.argv[2], fail)
    elif base == "revokerd.8":
        check_revokerd(text, sys.argv[2], fail)
    else:
        check_conf(text, fail)

    for f in failures:
        print("FAIL:", f)
    print("%s: %d failure(s)" % (base, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
