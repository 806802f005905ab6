#!/bin/sh
# run_tool.sh TOOL PROGRAM LIBRARY WORKDIR: `leakalloc dump --lost PID` on a running
# program, and `leakalloc run --reach`: each must leave a lost dump holding exactly the
# program's 3 lost blocks of 1000 bytes (reach_cases serve, at sample:0).
set -u
tool=$1 prog=$2 lib=$3 work=$4
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail() { echo "FAIL: $*"; exit 1; }
totals() { grep -v '^#' "$1" | head -1 | sed 's/^heap profile: *\([0-9]*\): *\([0-9]*\) .*/\1 \2/'; }

# dump --lost on a process started without reach.
LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0 "$prog" serve 3000 > serve.out &
pid=$!
i=0
while ! grep -q ready serve.out 2>/dev/null; do i=$((i + 1)); [ $i -lt 100 ] || fail "program not ready"; sleep 0.05; done
"$tool" dump --lost --age 0 --format heap "$pid" > dump.out 2> dump.err || { cat dump.err; fail "dump --lost: exit $?"; }
wait $pid
f=$(head -1 dump.out)
case "$f" in *.l0.lost.heap) ;; *) fail "dump --lost wrote '$f'";; esac
[ "$(totals "$f")" = "3 3000" ] || fail "dump --lost: $(totals "$f"), want 3 3000 in $f"

# run --reach: the final dump has its lost dump beside it.
mkdir run && "$tool" run --reach --sample 0 --out run --format heap --quiet -- "$prog" serve 10 > run.out 2>&1 ||
  { cat run.out; fail "run --reach: exit $?"; }
f=$(ls run/*.f0.lost.heap 2>/dev/null | head -1)
[ -n "$f" ] || { ls run; fail "run --reach wrote no lost dump"; }
[ "$(totals "$f")" = "3 3000" ] || fail "run --reach: $(totals "$f"), want 3 3000 in $f"
[ -n "$(ls run/*.f0.heap)" ] || fail "run --reach: no final dump"
echo "dump --lost and run --reach: 3 lost blocks of 1000 bytes"
