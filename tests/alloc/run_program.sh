#!/bin/bash
# Runs one test program and checks it the way CTest cannot in one go: the exit status
# must be 0, the last line of stdout must match, and stderr must carry no leakalloc
# message (a refused pointer or a warning means something went wrong).
#   run_program.sh <timeout-seconds> <last-line-regex> <command> [args...]
set -u
timeout_s=$1 expect=$2
shift 2
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
timeout -k 5 "$timeout_s" "$@" >"$out" 2>"$err"
status=$?
cat "$out"
cat "$err" >&2
if [ "$status" -ne 0 ]; then
  echo "FAIL: '$*' exited with status $status (124 = timed out, 128+n = signal n)" >&2
  exit 1
fi
last=$(tail -n 1 "$out")
if ! [[ "$last" =~ $expect ]]; then
  echo "FAIL: last line of stdout is '$last', expected /$expect/" >&2
  exit 1
fi
if grep -q '^leakalloc:' "$err"; then
  echo "FAIL: leakalloc printed a message" >&2
  exit 1
fi
exit 0
