#!/usr/bin/env python3
"""meson install script: put the example configuration at its place in
sysconfdir only if there is no file there yet, so that installing again
never replaces an edited configuration (the example itself is installed to
the doc directory every time). Honours DESTDIR and MESON_INSTALL_QUIET.

Usage: install_config.py EXAMPLE CONFIG   (CONFIG an absolute path)"""

import os
import shutil
import sys


def main():
    example, config = sys.argv[1], sys.argv[2]
    destdir = os.environ.get("DESTDIR", "")
    # DESTDIR is prepended to the absolute path, as meson does on POSIX.
    target = destdir + config if destdir else config
    quiet = bool(os.environ.get("MESON_INSTALL_QUIET"))
    if os.path.lexists(target):
        if not quiet:
            print("Keeping existing %s (the packaged one is %s)" % (target, example))
        return 0
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    # O_EXCL: never write through a file or link that appeared meanwhile.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with open(example, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(target, 0o644)
    if not quiet:
        print("Installing %s to %s" % (example, os.path.dirname(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
