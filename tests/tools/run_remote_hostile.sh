#!/bin/bash
# Root's `leakalloc dump PID` against a hostile target (issue 24): the target, run as
# nobody, answers the request itself with a name of its choosing (hostile_target.c):
# a file of root's, a symlink it planted to one, a path through a symlinked directory.
# The tool must neither read nor write nor create anything there, and say why in one
# line; the target's own file is still read (and symbolized) as before.
#   run_remote_hostile.sh <leakalloc tool> <libleakalloc.so> <leak_fixture> <hostile_target>
set -u
tool=$(realpath "$1") lib=$(realpath "$2") fixture=$(realpath "$3") hostile=$(realpath "$4")
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
  echo "skip: needs root and setpriv"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-hostile.XXXXXX")
hpid=
trap '[ -n "$hpid" ] && kill "$hpid" 2>/dev/null; rm -rf "$work"' EXIT
chmod 755 "$work"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# A real dump, owned by root, mode 0600: what the tool would happily report if it read it.
mkdir "$work/gen"
(cd "$work/gen" && LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0,final:true,prefix:$work/gen/g "$fixture") >/dev/null 2>&1
gen=$(ls "$work"/gen/g.*.f0.heap 2>/dev/null | head -1)
[ -n "$gen" ] || { echo "FAIL: the fixture wrote no dump" >&2; exit 1; }
cp "$gen" "$work/secret.heap"
chmod 600 "$work/secret.heap"
sum=$(md5sum <"$work/secret.heap")
# nobody's own directory, with its own copy of the dump and the traps it planted.
mkdir "$work/nobody"
cp "$gen" "$work/nobody/own.heap"
ln -s ../secret.heap "$work/nobody/link.heap"
ln -s .. "$work/nobody/up"
chown -hR nobody:nogroup "$work/nobody"

# dump NAME: starts the target as nobody answering with NAME; runs the tool as root.
dump() {
  rm -f "$work/ready"
  (cd "$work/nobody" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env LD_PRELOAD="$lib" LEAKALLOC_CONF= "$hostile" "$work/nobody/ready" "$1") &
  hpid=$!
  for _ in $(seq 200); do [ -s "$work/nobody/ready" ] && break; sleep 0.05; done
  [ -s "$work/nobody/ready" ] || { fail "the hostile target did not start"; return 1; }
  rm -f "$work/nobody/ready"
  "$tool" dump --timeout 10s "$hpid" >"$work/out" 2>"$work/err"
  rc=$?
  kill "$hpid" 2>/dev/null
  wait "$hpid" 2>/dev/null
  hpid=
}

# refused NAME WHY: the tool fails with one line saying WHY, reads and writes nothing.
refused() {
  dump "$1" || return
  echo "--- $1: rc $rc"; cat "$work/err"
  [ $rc -ne 0 ] || fail "$1: the tool succeeded"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "$1: wanted one line on stderr, got $(wc -l <"$work/err")"
  grep -q "not opened: .*$2" "$work/err" || fail "$1: the message does not say '$2'"
  grep -q leak_large_buffers "$work/err" && fail "$1: the tool read root's file and reported it"
  [ "$(md5sum <"$work/secret.heap")" = "$sum" ] || fail "$1: root's file changed"
  ls "$work" | grep -q 'secret\.sym' && fail "$1: a symbolized copy was written beside root's file"
}

refused "$work/secret.heap" "owned by uid 0, not by the process's uid 65534"
refused "$work/nobody/link.heap" "symbolic link"
refused "$work/nobody/up/secret.heap" '"up" is a symbolic link'
refused "up/secret.heap" '"up" is a symbolic link'
refused "../secret.heap" '"\.\." in the path'
refused "own.heap/../../secret.heap" 'own.heap: Not a directory'

# The target's own file: read, reported and symbolized as before.
dump "$work/nobody/own.heap"
echo "--- own.heap: rc $rc"; head -5 "$work/err"
[ $rc -eq 0 ] || fail "own.heap: rc $rc"
grep -qx "$work/nobody/own.heap" "$work/out" || fail "own.heap: stdout does not name it"
grep -q leak_large_buffers "$work/err" || fail "own.heap: no report"
grep -qx "Leak report for $work/nobody/own.heap" "$work/err" || fail "own.heap: the report's title does not name it"
[ -s "$work/nobody/own.sym.pb.gz" ] || fail "own.heap: no symbolized copy"

[ $fails -eq 0 ] || exit 1
echo "remote-hostile-ok"
