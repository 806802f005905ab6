#!/bin/sh
# Address space of tests/alloc/programs/vm_footprint.c under plain mimalloc and under
# leakalloc at sample:0: the difference is what leakalloc maps (its libraries and the
# tables it uses) and must stay under 32 MiB.
#   run_vm_footprint.sh <libmimalloc.so> <libleakalloc.so> <program>
set -u
mi=$(LD_PRELOAD=$1 "$3") || { echo "the program failed under mimalloc"; exit 1; }
la=$(LD_PRELOAD=$2 LEAKALLOC_CONF=sample:0 "$3") || { echo "the program failed under leakalloc"; exit 1; }
echo "VmSize: mimalloc $mi KiB, leakalloc at sample:0 $la KiB"
if [ $((la - mi)) -gt 32768 ]; then
  echo "FAIL: leakalloc maps $(((la - mi) / 1024)) MiB beyond mimalloc (at most 32 MiB)"
  exit 1
fi
