#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: dependencies, build, CTest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh"
cd "${BUILD_DIR:-$here/build}"
ctest --output-on-failure -j"$(nproc)" --timeout 600 "$@"
