#!/usr/bin/env python3
"""Break a perf profile of revokerd down by who spends the CPU.

    perf record -e cpu-clock --call-graph dwarf -o perf.data -- revokerd ...
    python3 tests/bench/cpu_profile.py perf.data

(bench.py --profile does both for the drain scenario.)

Two views of the same samples:
  by library  each sample goes to the library whose code runs, except that
              kernel time goes to the library that entered the kernel (the
              first user frame that is not libc): SQLite's pread/pwrite/
              fdatasync, libcurl's send/recv, libuv's epoll. libc's own work
              (malloc, memcpy) goes to the library that called it.
  by phase    which part of revokerd's loop the sample is under: promoting
              due rows, committing them, reading pending rows, HTTP
              (libcurl), committing outcomes, the watcher, the status line.
Python 3 stdlib only; needs perf.
"""

import collections
import os
import subprocess
import sys

LIBS = [  # (substring of the DSO path, name)
    ("libsqlite3", "SQLite"),
    ("libcurl", "libcurl"), ("libnghttp2", "libcurl"), ("libssl", "libcurl"), ("libz.so", "libcurl"),
    ("libpsl", "libcurl"), ("libidn2", "libcurl"), ("libbrotli", "libcurl"), ("libzstd", "libcurl"),
    ("libuv", "libuv"),
    ("libcrypto", "libcrypto (SHA-256)"),
    ("libjansson", "jansson"),
    ("libsystemd", "libsystemd"),
    ("ld-linux", "dynamic loader"),
]

# Innermost match wins: the phase is the deepest of these frames.
PHASES = [
    ("promote_page", "promote due rows (tokens_promote_due + commit)"),
    ("tokens_promote_due", "promote due rows (tokens_promote_due + commit)"),
    ("fetch_page", "read pending rows (fetch)"),
    ("tokens_fetch_due", "read pending rows (fetch)"),
    ("flush", "commit outcomes (flush)"),
    ("flush.part.0", "commit outcomes (flush)"),
    ("tokens_record_outcome", "commit outcomes (flush)"),
    ("http_submit", "HTTP: libcurl requests"),
    ("on_poll", "HTTP: libcurl requests"),
    ("on_timer", "HTTP: libcurl requests"),
    ("xfer_finish", "HTTP: libcurl requests"),
    ("on_http_done", "engine: outcome bookkeeping"),
    ("dispatch", "HTTP: libcurl requests"),
    ("arm_due_timer", "engine: next due event"),
    ("on_fs_event", "watcher (inotify, data_version)"),
    ("on_recheck", "watcher (inotify, data_version)"),
    ("send_status", "status line (STATUS=)"),
    ("on_status_timer", "status line (STATUS=)"),
    ("on_work", "commit promoted rows (on_work: db_commit)"),
    ("on_flush_check", "commit outcomes (flush)"),
    ("on_flush_timer", "commit outcomes (flush)"),
    ("uv__io_poll", "libuv loop"),
    ("main", "start-up and other"),
]


# Kernel time whose user frames could not be unwound: the system call says
# which library asked for it.
SYSCALL_OWNER = {
    "pwrite64": "SQLite", "pread64": "SQLite", "fdatasync": "SQLite", "fsync": "SQLite",
    "ftruncate": "SQLite", "fcntl": "SQLite", "openat": "SQLite", "newfstat": "SQLite",
    "unlink": "SQLite", "sendto": "libcurl", "recvfrom": "libcurl", "poll": "libcurl",
    "connect": "libcurl", "socket": "libcurl", "setsockopt": "libcurl", "getsockopt": "libcurl",
    "epoll_wait": "libuv", "epoll_ctl": "libuv", "epoll_pwait": "libuv",
}


def lib_of(dso):
    if dso.startswith("[kernel") or dso.startswith("[vdso"):
        return "kernel"
    if "revokerd" in dso:
        return "revokerd"
    if "/libc.so" in dso or "libc-" in dso or "libm.so" in dso:
        return "libc"
    for key, name in LIBS:
        if key in dso:
            return name
    return "other (%s)" % os.path.basename(dso)


def samples(perf_data):
    """Yield each sample's frames [(sym, dso)], leaf first."""
    p = subprocess.Popen(["perf", "script", "-i", perf_data, "-F", "ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         errors="replace")
    frames = []
    for line in p.stdout:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        # "addr sym+off (dso)" or "addr sym (inlined)"
        if line.endswith(")") and "(" in line:
            head, dso = line[:-1].rsplit("(", 1)
            parts = head.split(None, 1)
            sym = parts[1].strip() if len(parts) > 1 else "?"
            frames.append((sym.split("+")[0], None if dso == "inlined" else dso))
    if frames:
        yield frames
    p.wait()


def fill_inlined(frames):
    """An inlined frame belongs to the DSO of the next real frame (same ip)."""
    dso = "unknown"
    out = []
    for sym, d in reversed(frames):
        dso = d or dso
        out.append((sym, dso))
    return out[::-1]


def analyze(perf_data):
    by_lib = collections.Counter()
    by_kernel = collections.Counter()
    by_phase = collections.Counter()
    total = 0
    for frames in samples(perf_data):
        frames = fill_inlined(frames)
        total += 1
        leaf_lib = lib_of(frames[0][1])
        # The first user frame that is not libc: who asked for this work.
        owner = None
        syscall = None
        entered = False
        for sym, dso in frames:
            lib = lib_of(dso)
            if lib == "kernel":
                if sym.startswith("__x64_sys_") or sym.startswith("__se_sys_"):
                    syscall = sym.split("sys_", 1)[1]
                entered = entered or sym.startswith("entry_SYSCALL")
                continue
            if lib == "libc" or dso == "unknown":
                continue
            owner = lib
            break
        if leaf_lib == "kernel":
            if syscall:
                what = syscall
            elif entered:
                what = "system call entry and exit"
            elif any(s.startswith("asm_exc_page_fault") for s, _ in frames):
                what = "page faults"
            else:
                what = "interrupts (network softirq, timers)"
            owner = owner or SYSCALL_OWNER.get(syscall or "", "unattributed")
            by_lib["%s (kernel)" % owner] += 1
            by_kernel["%s: %s" % (owner, what)] += 1
        elif leaf_lib == "libc":
            by_lib["%s (libc: malloc, memcpy...)" % (owner or "libc")] += 1
        else:
            by_lib[leaf_lib] += 1
        phase = "other"
        names = {s for s, _ in frames}
        for sym, name in PHASES:
            if sym in names:
                phase = name
                break
        by_phase[phase] += 1
    return total, by_lib, by_kernel, by_phase


def group(by_lib):
    """{library: share} with the kernel and libc work the library caused."""
    g = collections.Counter()
    for k, v in by_lib.items():
        g[k.split(" (")[0] if k.endswith("(kernel)") or "(libc" in k else k] += v
    return g


def report(perf_data, out=sys.stdout):
    total, by_lib, by_kernel, by_phase = analyze(perf_data)
    if not total:
        out.write("no samples in %s\n" % perf_data)
        return {}
    pc = lambda n: 100.0 * n / total  # noqa: E731
    out.write("CPU profile of the drain: %d samples\n\n" % total)
    out.write("by library, with the kernel and libc work each one caused:\n")
    grouped = group(by_lib)
    for k, v in grouped.most_common():
        out.write("  %-34s %5.1f %%\n" % (k, pc(v)))
    out.write("\nin detail (where the CPU runs):\n")
    for k, v in by_lib.most_common(16):
        out.write("  %-46s %5.1f %%\n" % (k, pc(v)))
    out.write("\nkernel time by the system call that entered it:\n")
    for k, v in by_kernel.most_common(12):
        out.write("  %-46s %5.1f %%\n" % (k, pc(v)))
    out.write("\nby phase of revokerd's loop:\n")
    for k, v in by_phase.most_common():
        out.write("  %-46s %5.1f %%\n" % (k, pc(v)))
    return {"samples": total,
            "by_library": {k: round(pc(v), 1) for k, v in grouped.most_common()},
            "by_library_detail": {k: round(pc(v), 1) for k, v in by_lib.most_common()},
            "kernel_by_syscall": {k: round(pc(v), 1) for k, v in by_kernel.most_common(20)},
            "by_phase": {k: round(pc(v), 1) for k, v in by_phase.most_common()}}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: cpu_profile.py perf.data")
    report(sys.argv[1])
