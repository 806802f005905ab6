#!/bin/sh
# Runs a test program with an empty tmpfs over /proc, in a private mount namespace: what
# leakalloc sees in a chroot or a bare container. Exits 77 (CTest: skipped) where such a
# namespace cannot be made (no root, a container that forbids unshare).
#   run_noproc.sh PROGRAM [ARGS...]
unshare --mount true 2>/dev/null || { echo "unshare --mount is not permitted here"; exit 77; }
exec unshare --mount -- sh -c 'mount -t tmpfs none /proc || exit 77; [ ! -e /proc/self/maps ] || exit 1; exec "$@"' run_noproc "$@"
