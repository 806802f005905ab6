#!/bin/sh
# The README's leak hunt, start to finish, from a build directory:
#
#   cmake -S . -B build && make -C build -j leakalloc leakalloc_tool leaky_server
#   examples/demo.sh build
#
# 1. run the toy server for 5 s under leakalloc, keeping blocks older than 2 s;
# 2. print the leak report of its final dump: the stack that ends in
#    record_login_audit_entry (examples/leaky_server.c), with file and line;
# 3. diff the first periodic dump against the final one: the same stack is the one
#    that grew;
# 4. the on-call way: the server started with no dump configured at all, asked for a
#    dump of its blocks older than 1 s while it runs (leakalloc dump PID).
# --sample 0 records every allocation, so the numbers are exact; at the library's
# default (sample:19, one sample per 512 KiB on average) a 5-second toy leaks too little
# to be sampled reliably, while a real server that runs for hours is caught all the same.
set -eu

build=${1:-.}
build=$(cd "$build" && pwd)
tool=$build/tools/leakalloc
server=$build/examples/leaky_server
for f in "$tool" "$server" "$build/libleakalloc.so"; do
  if [ ! -e "$f" ]; then
    echo "demo.sh: $f is missing; build it first:" >&2
    echo "  make -C $build leakalloc leakalloc_tool leaky_server" >&2
    exit 1
  fi
done
export LEAKALLOC_LIB="$build/libleakalloc.so"

out=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-demo.XXXXXX")
echo "== leakalloc run --age 2s --sample 0 --out $out -- leaky_server --seconds 5"
"$tool" run --age 2s --sample 0 --top 0 --out "$out" -- "$server" --seconds 5 2>&1

final=$(ls "$out"/leaky_server.*.f*.pb.gz | tail -n 1)
echo
echo "== leakalloc report --age 2s --top 3 $final"
"$tool" report --age 2s --top 3 "$final"

first=$(ls "$out"/leaky_server.*.i0.pb.gz 2>/dev/null | head -n 1 || true)
if [ -n "$first" ]; then
  echo
  echo "== leakalloc diff --top 1 $first $final"
  "$tool" diff --top 1 "$first" "$final"
fi
echo
echo "== on call: leaky_server started with LD_PRELOAD and sample:0, no dump configured;"
echo "== 3 s later, while it runs: leakalloc dump --age 1s --top 1 PID"
LD_PRELOAD="$LEAKALLOC_LIB" LEAKALLOC_CONF=sample:0,prefix:"$out/oncall" "$server" --seconds 5 &
pid=$!
sleep 3
"$tool" dump --age 1s --top 1 "$pid" 2>&1
wait "$pid"
echo
echo "(dumps kept in $out)"
