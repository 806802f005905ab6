#!/usr/bin/env bash
# From a fresh Debian 12 machine: dependencies, build, then a leak hunt on a sample server.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh"
bash "$here/examples/demo.sh" "${BUILD_DIR:-$here/build}"
