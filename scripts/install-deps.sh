#!/usr/bin/env bash
# Installs everything leakalloc needs on Debian 12 (run as root): the build
# dependencies, the readers the tests run (jeprof, google-pprof, go tool pprof), and the
# competitors bench/ compares against. Skips apt entirely when everything is present,
# so CI on a prepared machine does not touch the network.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git python3 perl binutils file time
  libmimalloc-dev libunwind-dev zlib1g-dev libdw-dev libelf-dev libdebuginfod-dev debuginfod
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libjemalloc-dev libjemalloc2 google-perftools libgoogle-perftools4 golang-go
  clang libclang-rt-14-dev llvm-14
  sqlite3 heaptrack valgrind ruby
  nlohmann-json3-dev python3-jsonschema
  libcli11-dev help2man man-db groff-base libcpp-httplib-dev curl dpkg-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
