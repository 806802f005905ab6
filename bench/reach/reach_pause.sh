#!/bin/sh
# reach_pause.sh [BUILD_DIR]: the reachability check's pause against a bare fork() at
# 100 MiB and 1 GiB of heap (bench/reach/reach_pause.c), with leakalloc at its default
# sample:19 (the pause does not depend on the rate: every block is scanned).
set -eu
build=${1:-build}
lib=$(realpath "$build/libleakalloc.so")
prog=$(realpath "$build/bench/bench_reach_pause")
work=$(mktemp -d)
cd "$work"
echo "machine: $(nproc) cores, $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
for mib in 100 1024; do
  LD_PRELOAD=$lib "$prog" "$mib" 5
done
rm -rf "$work"
