#!/bin/sh
# Runs tests/ctl/jemalloc_user (a jemalloc program) unchanged, and checks that its
# mallctl("prof.dump") wrote a profile that jeprof reads and that blames the program's
# leaky function: once with a file name, once with none (the automatic name). Output is
# checked, not exit codes: jeprof exits 0 on a bad file.
#   run_jemalloc_user.sh leakalloc|jemalloc PROGRAM LIBLEAKALLOC WORKDIR
set -u
mode=$1 prog=$2 lib=$3 work=$4
rm -rf "$work" && mkdir -p "$work" || exit 1

# run NAME_ARG PREFIX: runs the program under the allocator being tested.
run() {
  if [ "$mode" = leakalloc ]; then
    env LD_PRELOAD="$lib" LEAKALLOC_CONF="sample:0,prefix:$2" "$prog" "$1" 2>"$work/stderr"
  else
    env MALLOC_CONF="prof:true,lg_prof_sample:0,prof_prefix:$2" "$prog" "$1" 2>"$work/stderr"
  fi
}

# check DUMPFILE: jeprof shows exactly the 64 live objects of the leaky function.
check() {
  [ -s "$1" ] || { echo "FAIL: prof.dump returned 0 but $1 is missing or empty"; exit 1; }
  text=$(jeprof --text "$prog" "$1" 2>"$work/jeprof.err")
  echo "$text" | head -8
  echo "$text" | grep -q 'jemalloc_user_leaky_function' ||
    { echo "FAIL: jeprof does not show jemalloc_user_leaky_function in $1"; cat "$work/jeprof.err"; exit 1; }
  objs=$(jeprof --text --inuse_objects "$prog" "$1" 2>/dev/null | grep 'jemalloc_user_leaky_function' | head -1)
  echo "$objs" | grep -Eq '^ *64 ' ||
    { echo "FAIL: expected 64 objects on the leaky function in $1, got: $objs"; exit 1; }
}

# A file at the name is replaced, as jemalloc replaces it (leakalloc: atomically, by a
# rename; it failed with EEXIST before).
echo "stale profile" >"$work/named.heap"
out=$(run "$work/named.heap" "$work/unused")
rc=$?
echo "$out"; cat "$work/stderr"
[ $rc -eq 0 ] || { echo "FAIL: the program exited $rc"; exit 1; }
if [ "$mode" = leakalloc ]; then
  want=$(sed -n 's/^#define LEAKALLOC_VERSION "\(.*\)"/\1/p' "$(dirname "$0")/../../include/leakalloc/leakalloc.h")
  echo "$out" | grep -qx "version: $want" ||
    { echo "FAIL: mallctl did not reach leakalloc (want version $want)"; exit 1; }
fi
check "$work/named.heap"

if [ "$mode" = leakalloc ]; then
  # A symlink at the name is replaced itself, never followed: the file it points to
  # keeps its content (jemalloc's creat() would write through it, so leakalloc only).
  echo "not a profile" >"$work/victim"
  chmod 0644 "$work/victim"
  ln -s victim "$work/link.heap"
  out=$(run "$work/link.heap" "$work/unused")
  rc=$?
  echo "$out"; cat "$work/stderr"
  [ $rc -eq 0 ] || { echo "FAIL: prof.dump over a symlink: the program exited $rc"; exit 1; }
  [ -L "$work/link.heap" ] && { echo "FAIL: $work/link.heap is still a symlink"; exit 1; }
  [ "$(cat "$work/victim")" = "not a profile" ] ||
    { echo "FAIL: the symlink's target was written through: $(head -c 80 "$work/victim")"; exit 1; }
  [ "$(stat -c %a "$work/link.heap")" = 600 ] ||
    { echo "FAIL: $work/link.heap has mode $(stat -c %a "$work/link.heap"), not 600"; exit 1; }
  check "$work/link.heap"
  leftover=$(ls "$work" | grep '\.tmp$')
  [ -z "$leftover" ] || { echo "FAIL: temporary files left: $leftover"; exit 1; }
fi

out=$(run - "$work/auto")
rc=$?
echo "$out"; cat "$work/stderr"
[ $rc -eq 0 ] || { echo "FAIL: the program exited $rc (automatic name)"; exit 1; }
auto=$(ls "$work"/auto.*.m*.heap 2>/dev/null | head -1)
[ -n "$auto" ] || { echo "FAIL: no $work/auto.<pid>.<seq>.m<mseq>.heap after prof.dump with no name"; ls "$work"; exit 1; }
check "$auto"
echo "PASS ($mode)"
