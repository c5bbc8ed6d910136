"""meson install --destdir puts every file where `meson introspect
--installed` says, installs the configuration where there is none, and
keeps an edited one when installing again (systemd/install_config.py).

Usage: install_check.py BUILDDIR; CONFIG and EXAMPLE are the installed
paths of the configuration and of its packaged copy, DATADIR the install's
datadir, SOURCE_ROOT the tree."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

EDITED_URL = "url = https://edited.example/v2/token/logout\n"


def install(build, dest, quiet=False):
    cmd = ["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest] + (["--quiet"] if quiet else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("%s: exit %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r.stdout


def main():
    build = sys.argv[1]
    config, example = os.environ["CONFIG"], os.environ["EXAMPLE"]
    with open(os.path.join(os.environ["SOURCE_ROOT"], "systemd", "revokerd.conf")) as f:
        shipped = f.read()
    failures = []
    fail = failures.append
    dest = tempfile.mkdtemp(prefix="revokerd-install-")
    try:
        def under(path):
            return dest + path

        install(build, dest)
        installed = json.loads(subprocess.run(["meson", "introspect", "--installed", build], check=True,
                                              capture_output=True, text=True).stdout)
        for path in sorted(set(installed.values())):
            if not os.path.isfile(under(path)):
                fail("%s (meson introspect --installed) was not installed" % path)
        # bash completion where bash-completion.pc says, under our prefix
        # (bash-completion looks in every XDG_DATA_DIRS entry).
        pc = subprocess.run(["pkg-config", "--define-variable=datadir=" + os.environ["DATADIR"],
                             "--variable=completionsdir", "bash-completion"], capture_output=True, text=True)
        completions = pc.stdout.strip()
        if pc.returncode != 0:
            completions = os.environ["DATADIR"] + "/bash-completion/completions"
        if not os.path.isfile(under(os.path.join(completions, "revokerctl"))):
            fail("the completion is not installed in %s" % completions)
        for path in (config, example):
            if not os.path.isfile(under(path)):
                fail("%s was not installed" % path)
                continue
            with open(under(path)) as f:
                if f.read() != shipped:
                    fail("%s is not systemd/revokerd.conf" % path)
            mode = os.stat(under(path)).st_mode & 0o7777
            if mode != 0o644:
                fail("%s has mode %o, not 644" % (path, mode))
        if failures:
            return report(failures)

        # The operator edits the url line; a second install keeps the edit
        # and says so, and brings the packaged copy back as it was.
        with open(under(config)) as f:
            text = f.read()
        if "\n#url = " not in text:
            return report(["no #url line in %s" % config])
        edited = text.replace("\n#url = ", "\n" + EDITED_URL + "#url = ", 1)
        with open(under(config), "w") as f:
            f.write(edited)
        with open(under(example), "a") as f:
            f.write("# a stale packaged copy\n")
        install(build, dest)
        with open(under(config)) as f:
            if f.read() != edited:
                fail("a second meson install changed the edited %s" % config)
        with open(under(example)) as f:
            if f.read() != shipped:
                fail("a second meson install did not replace %s" % example)

        # A removed configuration comes back.
        os.unlink(under(config))
        install(build, dest, quiet=True)
        with open(under(config)) as f:
            if f.read() != shipped:
                fail("a removed %s was not installed again" % config)

        # What the script says (meson 1.0 shows an install script's output
        # only when it fails, later ones always): where it installs, that
        # it keeps a file, and nothing with MESON_INSTALL_QUIET.
        script = os.path.join(os.environ["SOURCE_ROOT"], "systemd", "install_config.py")
        src = os.path.join(os.environ["SOURCE_ROOT"], "systemd", "revokerd.conf")
        other = os.path.join(dest, "other")
        for env, expect in (({}, "Installing %s to %s" % (src, os.path.dirname(other + config))),
                            ({}, "Keeping existing %s" % (other + config)),
                            ({"MESON_INSTALL_QUIET": "1"}, "")):
            r = subprocess.run([sys.executable, script, src, config], capture_output=True, text=True,
                               env=dict(os.environ, DESTDIR=other, **env))
            if r.returncode != 0 or not r.stdout.startswith(expect) or (not expect and r.stdout):
                fail("install_config.py with %s: exit %d, said %r, expected %r" % (env, r.returncode, r.stdout,
                                                                                  expect))
    finally:
        shutil.rmtree(dest)
    return report(failures)


def report(failures):
    for f in failures:
        print("FAIL:", f)
    print("install: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
