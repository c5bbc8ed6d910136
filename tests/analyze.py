"""gcc's static analyzer (-fanalyzer) over every C file of daemon/ and
daemon/client/, with the flags meson compiles them with (compile_commands.json).
Fails on any finding. A false positive is silenced where it is, with
`#pragma GCC diagnostic ignored "-Wanalyzer-..."` and a comment saying why.
Usage: analyze.py BUILD_DIR; skipped (77) when the compiler is not gcc."""

import concurrent.futures
import json
import os
import shlex
import subprocess
import sys


def command_of(entry):
    """The compile command without its outputs, compiling to /dev/null."""
    args = shlex.split(entry["command"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MQ", "-MF"):
            skip = True
        elif a != "-MD" and not a.startswith("-fdiagnostics-color"):
            out.append(a)
    return out + ["-fanalyzer", "-fdiagnostics-color=never", "-o", os.devnull]


def analyze(entry):
    r = subprocess.run(command_of(entry), cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    build = sys.argv[1]
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = [e for e in json.load(f)
                   if "/daemon/" in e["file"] and e["file"].endswith(".c")
                   and "fuzz" not in e.get("output", "")]
    if not entries:
        print("no daemon sources in compile_commands.json")
        return 1
    version = subprocess.run([shlex.split(entries[0]["command"])[0], "--version"],
                             capture_output=True, text=True).stdout
    if "gcc" not in version.lower() and "free software foundation" not in version.lower():
        print("skip: -fanalyzer needs gcc")
        return 77
    bad = 0
    jobs = min(4, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for name, rc, err in pool.map(analyze, entries):
            if rc != 0 or "warning:" in err or "error:" in err:
                bad += 1
                sys.stdout.write(err)
    print("%d of %d files with findings" % (bad, len(entries)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
