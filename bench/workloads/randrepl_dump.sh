#!/bin/sh
# CTest bench_randrepl_dump: runs bench_randrepl under leakalloc at sample:0, has it dump
# with its live set in place, and checks that the dump shows, for randrepl_block (the
# workload's one allocation site of its live set), exactly the blocks and requested bytes
# the program itself counted, as jeprof reads them (the reader users run).
#   randrepl_dump.sh BENCH_RANDREPL LIBLEAKALLOC WORKDIR [SCALE]
set -eu
prog=$1 lib=$2 work=$3 scale=${4:-0.05}
mkdir -p "$work"
rm -f "$work"/randrepl.*
dump=$work/randrepl.heap
out=$(LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0,format:heap "$prog" "$scale" "$dump")
echo "$out"
want=$(echo "$out" | sed -n 's/^randrepl: randrepl_block holds \([0-9]*\) blocks, \([0-9]*\) bytes$/\1 \2/p')
[ -n "$want" ] || { echo "FAIL: the program did not report its live set"; exit 1; }
head -n 1 "$dump" | grep -q '@ heapprofile$' || { echo "FAIL: not an exact (sample:0) dump: $(head -n 1 "$dump")"; exit 1; }
# jeprof's flat column for the function: in-use objects, then in-use bytes.
flat() { jeprof --text "$1" --show_bytes "$prog" "$dump" 2>/dev/null | awk '$NF == "randrepl_block" || $NF == "::randrepl_block" { print $1 }'; }
objs=$(flat --inuse_objects)
bytes=$(flat --inuse_space)
echo "program: $want; jeprof: $objs $bytes"
[ "$objs $bytes" = "$want" ] || { echo "FAIL: the dump's numbers for randrepl_block differ from the program's"; exit 1; }
echo "ok"
