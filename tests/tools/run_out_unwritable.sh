#!/bin/bash
# `leakalloc run --out DIR` with a DIR where no file can be created fails before the
# program starts, naming --out (issue 24: it ran the whole program, then blamed signals).
#   run_out_unwritable.sh <leakalloc tool>
set -u
tool=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-runout.XXXXXX")
trap 'rm -rf "$work"' EXIT
# /proc refuses new files even to root, whatever its modes say.
if "$tool" run --quiet --out /proc -- sh -c "touch '$work/ran'" 2>"$work/err"; then
  echo "FAIL: run --out /proc succeeded" >&2
  exit 1
fi
[ -e "$work/ran" ] && { echo "FAIL: the program ran although --out was unusable" >&2; exit 1; }
grep -q -- '--out /proc: cannot create files there' "$work/err" || { cat "$work/err" >&2; echo "FAIL: message" >&2; exit 1; }
"$tool" run --quiet --out "$work/d" -- sh -c "touch '$work/ran'" 2>"$work/err2" || { cat "$work/err2" >&2; echo "FAIL: a writable --out failed" >&2; exit 1; }
[ -e "$work/ran" ] || { echo "FAIL: the program did not run" >&2; exit 1; }
ls -A "$work/d" | grep -q '^\.leakalloc-run-' && { echo "FAIL: the probe file was left" >&2; exit 1; }
echo "run-out-ok"
