#!/bin/sh
# run_case.sh WORKDIR PRELOAD CONF PROGRAM CASE [ARG]: runs one reach_cases case in a
# fresh scratch directory (leak.check writes its lost dumps there).
set -u
work=$1 preload=$2 conf=$3
shift 3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
if [ -n "$preload" ]; then
  LD_PRELOAD=$preload LEAKALLOC_CONF=$conf "$@"
else
  LEAKALLOC_CONF=$conf "$@"
fi
