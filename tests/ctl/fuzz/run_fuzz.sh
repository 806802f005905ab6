#!/bin/sh
# Runs the parser fuzzer for a bounded time over the seed corpus (new inputs go to a
# scratch copy, never into the source tree). On a failure, replays each crash input
# with stderr open so the log shows the oracle's message or the sanitizer report.
#   run_fuzz.sh FUZZER SEED_CORPUS DICT WORKDIR
set -u
fuzzer=$1 seeds=$2 dict=$3 work=$4
rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts" || exit 1
"$fuzzer" -runs=20000 -max_total_time=30 -max_len=4096 -close_fd_mask=2 \
  -dict="$dict" -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
rc=$?
if [ $rc -ne 0 ]; then
  for f in "$work"/artifacts/*; do
    [ -f "$f" ] || continue
    echo "=== replaying $f"
    od -c "$f" | head -20
    "$fuzzer" "$f"
  done
  exit 1
fi
echo "fuzzer: no crash, no oracle failure"
