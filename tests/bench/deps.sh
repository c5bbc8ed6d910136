#!/usr/bin/env bash
# Install what the benchmark needs on Debian 12 (run as root): nginx for the
# endpoint, wrk for the ceiling, gnuplot for the chart, perf for commit
# counting and profiles. Quiet when everything is already there.
set -euo pipefail
packages=(nginx-light wrk gnuplot-nox linux-perf python3 sqlite3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
# nginx-light or the full nginx: either serves.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v nginx >/dev/null; then
  missing=("${missing[@]/nginx-light}")
fi
missing=(${missing[@]+"${missing[@]}"})
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own nginx service is not ours: the benchmark runs a private one.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
