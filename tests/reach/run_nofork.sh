#!/bin/sh
# run_nofork.sh PROGRAM LIBRARY: leak.check where the kernel refuses the check's child
# (RLIMIT_NPROC): one "leakalloc:" line naming the reason, leak.check fails, the program
# goes on and exits 0. RLIMIT_NPROC does not bind root, so as root the program runs as
# nobody (setpriv); 77 (skipped) where neither works.
set -u
prog=$1 lib=$2
cd /tmp || exit 2
run() { LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0 "$@" 2>&1; }
if [ "$(id -u)" = 0 ]; then
  command -v setpriv > /dev/null || exit 77
  out=$(run setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --nproc=1 "$prog" nofork); rc=$?
else
  out=$(run prlimit --nproc=1 "$prog" nofork); rc=$?
fi
echo "$out"
[ $rc -eq 0 ] || { echo "exit $rc"; exit 1; }
echo "$out" | grep -q "leakalloc: reachability check: cannot fork the checking process: process limit reached" ||
  { echo "no message"; exit 1; }
