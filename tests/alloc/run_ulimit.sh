#!/bin/bash
# Small address spaces (issue 24): a program that runs under `ulimit -v N` without
# leakalloc must run the same with it. mimalloc maps 32 MiB segments, so under such a
# limit leakalloc serves blocks from glibc's malloc, without profiling, and says so once;
# the profiler's own tables may not fit either (profiling off, one message). python3
# needs 14 MiB under glibc: under 16 and 24 MiB it failed while the profiler's tables
# were reserved (4.5 MiB before mimalloc gave up); now they are not reserved at all when
# the limit leaves little room (profile/profiler.cpp kProfilingRoom).
#   run_ulimit.sh <libleakalloc.so>
set -u
lib=$1
export LC_ALL=C
unset LEAKALLOC_CONF
work=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-ulimit.XXXXXX")
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3
fails=0 runs=0
limited() {  # limit, command...: runs the command under ulimit -v
  local lim=$1
  shift
  bash -c 'ulimit -v "$0" && exec "$@"' "$lim" "$@"
}
for lim in 16384 24576 32768 40960 49152 65536; do
  for prog in "/bin/true" "ls -l /usr" "$py -c print(sum(range(10**5)))"; do
    # shellcheck disable=SC2086
    limited "$lim" $prog >"$work/plain.out" 2>"$work/plain.err"
    plain=$?
    if [ $plain -ne 0 ]; then
      echo "skip: '$prog' does not run under ulimit -v $lim without leakalloc either"
      continue
    fi
    runs=$((runs + 1))
    # shellcheck disable=SC2086
    LD_PRELOAD=$lib limited "$lim" $prog >"$work/la.out" 2>"$work/la.err"
    status=$?
    others=$(grep -v -e "^leakalloc: mimalloc cannot map memory" -e "^leakalloc: cannot map the stack table; profiling is off" \
      -e "^leakalloc: too little address space under its limit (ulimit -v?) for mimalloc and the profiler: serving" \
      "$work/la.err")
    msgs=$(grep -c '^leakalloc:' "$work/la.err")
    if [ $status -ne 0 ] || ! cmp -s "$work/plain.out" "$work/la.out" || [ -n "$others" ] || [ "$msgs" -gt 1 ]; then
      echo "FAIL: '$prog' under ulimit -v $lim: status $status (0 without leakalloc), $msgs leakalloc messages" >&2
      head -5 "$work/la.err" >&2
      fails=$((fails + 1))
    else
      echo "ok: '$prog' under ulimit -v $lim${msgs:+ ($msgs message)}"
    fi
  done
done
[ $runs -ge 15 ] || { echo "FAIL: only $runs runs" >&2; exit 1; }
[ $fails -eq 0 ] || exit 1
echo "ulimit-ok $runs runs"
