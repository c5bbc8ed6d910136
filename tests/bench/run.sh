#!/usr/bin/env bash
# revokerd's benchmark, from one command on Debian 12 (as root):
#
#   bash tests/bench/run.sh [--quick] [--big] [--profile] [--reps N] [--only drain,storm,...]
#
# Installs what it needs (nginx-light, wrk, gnuplot-nox, perf; the build
# dependencies through tests/deps.sh), builds revokerd in release mode in
# build-bench/, and runs tests/bench/bench.py: its own nginx on 127.0.0.1,
# token tables of 1 M rows (10 M with --big; cached in build-bench/bench/cache),
# every scenario 3 times. Prints the table of medians with min and max beside
# the issue's targets; writes build-bench/bench/results.{json,txt,png}
# (and profile.txt with --profile). --quick is the smoke run (about 10 s;
# its results go to build-bench/bench-quick/).
# Other arguments go to bench.py (see python3 tests/bench/bench.py --help).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/bench/deps.sh
bash tests/deps.sh

# Release build of its own; -O3 may warn where -O2 does not: not an error here.
if [ ! -f build-bench/build.ninja ]; then
  meson setup build-bench --buildtype=release -Dwerror=false >/dev/null
fi
ninja -C build-bench daemon/revokerd tests/bench/revokerd-reference >/dev/null
out=build-bench/bench
for a in "$@"; do [ "$a" = --quick ] && out=build-bench/bench-quick; done
exec python3 tests/bench/bench.py --revokerd build-bench/daemon/revokerd --reference build-bench/tests/bench/revokerd-reference --out "$out" "$@"
