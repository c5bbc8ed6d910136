"""daemon/client/completion/revokerctl, run by bash with bash-completion's own functions
loaded, completes what revokerctl has: the commands and options of
`revokerctl --help`, each command's options of `revokerctl help COMMAND`,
the audit events of daemon/names.c for --event, and file names for the
options that take a path.

Usage: completion_check.py REVOKERCTL; SOURCE_ROOT names the source tree."""

import os
import re
import shlex
import subprocess
import sys
import tempfile

BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def complete(script, line, cwd):
    """COMPREPLY for the command line `line`, the cursor at its end."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    program = """
        source %s
        source %s
        spec=$(complete -p revokerctl) || exit 3
        [[ $spec =~ -F\\ ([^ ]+) ]] || exit 4
        COMP_WORDS=(%s)
        COMP_CWORD=%d
        COMP_LINE=%s
        COMP_POINT=${#COMP_LINE}
        "${BASH_REMATCH[1]}" revokerctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%%s\\n' "${COMPREPLY[@]}"
    """ % (BASH_COMPLETION, shlex.quote(script), " ".join(shlex.quote(w) for w in words), len(words) - 1,
           shlex.quote(line))
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                       cwd=cwd)
    if r.returncode != 0:
        raise SystemExit("bash for %r: exit %d\n%s" % (line, r.returncode, r.stderr))
    return set(w for w in r.stdout.split("\n") if w)


def options_of(text):
    return set(re.findall(r"(?<![\w-])--?[a-zA-Z][a-z-]*", text))


def main():
    ctl = sys.argv[1]
    root = os.environ["SOURCE_ROOT"]
    script = os.path.join(root, "daemon", "client", "completion", "revokerctl")
    if not os.path.exists(BASH_COMPLETION):
        print("FAIL: %s is missing: install bash-completion (tests/deps.sh)" % BASH_COMPLETION)
        return 1
    short = subprocess.run([ctl, "--help"], capture_output=True, text=True, check=True).stdout
    commands = set(re.findall(r"^  ([a-z]+) {2,}", short.split("Commands:\n", 1)[1], re.M))
    global_options = options_of(short.split("Options", 1)[1])
    with open(os.path.join(root, "daemon", "names.c")) as f:
        names = f.read()
    events = set(re.findall(r'\[AUDIT_\w+\] = "(\w+)"', names))
    failures = []

    def expect(line, want, cwd=None, exact=True):
        got = complete(script, line, cwd)
        if (got != want) if exact else not want <= got:
            failures.append("%r completes to %s; expected %s%s" % (line, sorted(got), "" if exact else "at least ",
                                                                    sorted(want)))

    if len(commands) < 5 or len(global_options) < 8 or len(events) < 5:
        failures.append("parsed too little: commands %s, options %s, events %s" % (commands, global_options,
                                                                                 events))
    expect("revokerctl ", commands)
    expect("revokerctl -", global_options)
    expect("revokerctl st", {c for c in commands if c.startswith("st")})
    expect("revokerctl --socket /run/x.sock --json st", {c for c in commands if c.startswith("st")})
    expect("revokerctl help ", commands - {"help"})
    expect("revokerctl audit --event ", events)
    expect("revokerctl audit --event gave", {e for e in events if e.startswith("gave")})
    expect("revokerctl status 4", set())
    expect("revokerctl audit --limit ", set())
    for cmd in sorted(commands - {"help"}):
        usage = subprocess.run([ctl, "help", cmd], capture_output=True, text=True, check=True).stdout
        expect("revokerctl %s --" % cmd, {o for o in options_of(usage) | global_options if o.startswith("--")})
        expect("revokerctl --json %s -" % cmd, options_of(usage) | global_options)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "revokerd.conf"), "w").close()
        os.mkdir(os.path.join(d, "run"))
        for opt in ("--config", "-c", "--socket", "--database"):
            expect("revokerctl %s " % opt, {"revokerd.conf", "run"},
                   cwd=d, exact=False)

    for f in failures:
        print("FAIL:", f)
    print("completion: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
