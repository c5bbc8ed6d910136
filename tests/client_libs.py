"""revokerctl links the common library only: `readelf -d` must not list
libuv, libcurl or libsystemd as NEEDED (issue 13). Usage: client_libs.py BINARY"""

import re
import subprocess
import sys

FORBIDDEN = ("libuv", "libcurl", "libsystemd")


def main():
    binary = sys.argv[1]
    out = subprocess.run(["readelf", "-d", binary], check=True, capture_output=True,
                         text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    if not needed:
        print("%s: no NEEDED entries in readelf -d; is it a dynamic executable?" % binary)
        return 1
    bad = [lib for lib in needed if lib.split(".so")[0] in FORBIDDEN]
    print("%s NEEDED: %s" % (binary, " ".join(needed)))
    if bad:
        print("FAIL: revokerctl must not link %s" % ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
