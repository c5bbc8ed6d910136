"""meson dist makes a release tarball that holds every file of the commit,
and that builds and passes the unit suite from scratch, away from the git
tree (about 40 s on 2 cores). It needs the source tree to be a git
checkout: skipped (77) otherwise, as in a tarball's own build. An
uncommitted change is not in the tarball (--allow-dirty): what is tested
is HEAD.

Usage: dist_check.py BUILDDIR SOURCE_ROOT"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit("FAIL: %s: exit %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout[-4000:],
                                                       r.stderr[-4000:]))
    return r.stdout


def main():
    build, root = sys.argv[1], sys.argv[2]
    if subprocess.run(["git", "-C", root, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        print("SKIP: %s is not a git checkout; meson dist needs one" % root)
        return 77
    if run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]).strip():
        print("note: uncommitted changes are not in the tarball; it is HEAD that is tested")
    run(["meson", "dist", "-C", build, "--allow-dirty", "--no-tests", "--formats", "xztar"])
    dist = os.path.join(build, "meson-dist")
    tarballs = [f for f in os.listdir(dist) if f.endswith(".tar.xz")]
    if len(tarballs) != 1:
        raise SystemExit("FAIL: expected one tarball in %s, found %s" % (dist, tarballs))
    tarball = os.path.join(dist, tarballs[0])
    top = tarballs[0][: -len(".tar.xz")]

    failures = []
    with tarfile.open(tarball) as t:
        names = {m.name[len(top) + 1:] for m in t.getmembers() if m.isfile()}
    tracked = set(run(["git", "-C", root, "ls-tree", "-r", "--name-only", "HEAD"]).split("\n")) - {""}
    for path in sorted(tracked - names):
        failures.append("%s (in HEAD) is not in %s" % (path, tarballs[0]))

    work = tempfile.mkdtemp(prefix="revokerd-dist-")
    try:
        with tarfile.open(tarball) as t:
            t.extractall(work)
        src = os.path.join(work, top)
        run(["meson", "setup", os.path.join(src, "build"), src])
        run(["ninja", "-C", os.path.join(src, "build")])
        r = subprocess.run(["meson", "test", "-C", os.path.join(src, "build"), "--suite", "unit",
                            "--print-errorlogs"], capture_output=True, text=True)
        summary = [line for line in r.stdout.splitlines() if line.startswith(("Ok:", "Fail:", "Skipped:"))]
        print("%s, unit suite: %s" % (tarballs[0], ", ".join(" ".join(s.split()) for s in summary)))
        if r.returncode != 0:
            failures.append("the unit suite fails in the tarball's build:\n%s" % r.stdout[-6000:])
    finally:
        shutil.rmtree(work)

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
