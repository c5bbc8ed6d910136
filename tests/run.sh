#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing; build twice
# (plain, and with AddressSanitizer + UndefinedBehaviorSanitizer) and run the
# unit and end-to-end tests in both; run the end-to-end tests once more with
# the daemon under valgrind memcheck; the benchmark's 5-second smoke run; the
# 100,000-token secrets search once; the fuzz targets for a bounded time; and
# check that a release build compiles.
# Usage (as root on Debian 12): bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
bash tests/bench/deps.sh   # nginx and wrk for the benchmark's smoke run

results=()
rm -f build*/meson-logs/testlog-*.json   # the closing count covers this run only
run_suite() { # name builddir meson-test-args...
  local name=$1 dir=$2; shift 2
  echo "=== $name"
  if meson test -C "$dir" --print-errorlogs --logbase "testlog-$name" "$@"; then results+=("$name:ok"); else results+=("$name:FAIL"); fi
}

meson setup build --reconfigure >/dev/null 2>&1 || meson setup build >/dev/null
ninja -C build
run_suite plain build --suite unit --suite e2e --suite lint
run_suite bench-smoke build --suite bench-smoke
# The 100,000-token secrets search (about 3 min), once, in the plain build.
run_suite slow build --suite slow
# The daemon of the e2e tests under valgrind memcheck: a memory error or a
# definite/indirect leak at exit fails the test (exit 99, see harness.py).
REVOKERD_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-fds=no -q" \
  run_suite valgrind build e2e_core e2e_outcomes e2e_secrets e2e_ctl e2e_revokerctl

# A release build must compile warning-free too (-O3 finds other warnings).
meson setup build-release --buildtype=release --reconfigure >/dev/null 2>&1 ||
  meson setup build-release --buildtype=release >/dev/null
ninja -C build-release

meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false --reconfigure >/dev/null 2>&1 ||
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run_suite sanitizers build-asan --suite unit --suite e2e

if [ -f tests/fuzz/meson.build ]; then
  CC=clang meson setup build-fuzz -Dfuzzing=true --reconfigure >/dev/null 2>&1 ||
    CC=clang meson setup build-fuzz -Dfuzzing=true >/dev/null
  ninja -C build-fuzz
  run_suite fuzz build-fuzz --suite fuzz
fi

# One closing line over every suite run above, from meson's own logs.
python3 - build*/meson-logs/testlog-*.json <<'PY'
import json, os, sys
counts = {'passed': 0, 'failed': 0, 'skipped': 0}
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    for line in open(path):
        r = json.loads(line)['result']
        key = {'OK': 'passed', 'EXPECTEDFAIL': 'passed', 'SKIP': 'skipped'}.get(r, 'failed')
        counts[key] += 1
print('%(passed)d passed, %(failed)d failed, %(skipped)d skipped' % counts)
PY
printf '%s\n' "${results[@]}"
for r in "${results[@]}"; do [[ $r == *:ok ]] || exit 1; done
