#!/usr/bin/env bash
# Install what building and testing revokerd needs on Debian 12 (run as root).
# Quiet when everything is already there.
set -euo pipefail
packages=(
  meson ninja-build gcc pkg-config python3 sqlite3 openssl    # build, tests (openssl: test certificates)
  libuv1-dev libcurl4-openssl-dev libsqlite3-dev libsystemd-dev
  libjansson-dev libssl-dev libmicrohttpd-dev                 # libraries
  clang libclang-rt-14-dev                                    # libFuzzer
  systemd systemd-container util-linux                        # unit checks, nspawn, setpriv
  valgrind                                                    # memcheck of the e2e tests
  scdoc man-db                                                # the manual pages: built, checked
  bash-completion                                             # the completion of revokerctl: tested
  git                                                         # meson dist (test dist)
  prometheus python3-prometheus-client                        # promtool and a parser check the metrics text
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
