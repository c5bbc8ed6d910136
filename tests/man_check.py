"""revokerctl(1): renders without a warning from man, has the sections a
manual needs, and documents every command and option that `revokerctl
--help` lists. Usage: man_check.py PAGE REVOKERCTL"""

import os
import re
import subprocess
import sys

SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "EXAMPLES",
            "FILES", "SEE ALSO")


def main():
    page, ctl = sys.argv[1], sys.argv[2]
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    man = subprocess.run(["man", "--warnings", "-P", "cat", "-l", page], capture_output=True,
                         text=True, env=env)
    failures = []
    if man.returncode != 0 or man.stderr.strip():
        failures.append("man --warnings -l %s: exit %d\n%s" % (page, man.returncode, man.stderr))
    text = "\n" + man.stdout
    for section in SECTIONS:
        if "\n" + section + "\n" not in text:
            failures.append("no section %s" % section)

    short = subprocess.run([ctl, "--help"], capture_output=True, text=True, check=True).stdout
    commands = re.findall(r"^  ([a-z]+) {2,}", short.split("Commands:\n", 1)[1], re.M)
    options = set(re.findall(r"--[a-z][a-z-]*", short))
    if not commands:
        failures.append("no command list in revokerctl --help")
    for cmd in commands:
        if not re.search(r"^ {7}%s\b" % cmd, man.stdout, re.M):
            failures.append("command %s (revokerctl --help) is not in COMMANDS" % cmd)
    for opt in sorted(options):
        if opt not in man.stdout:
            failures.append("option %s (revokerctl --help) is not in the page" % opt)

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
