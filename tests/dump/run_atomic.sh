#!/bin/bash
# Dump files are complete or absent (issue 24): a dump killed mid-write leaves nothing
# under a name the readers take, and `leakalloc report` refuses a truncated dump.
#   run_atomic.sh <libleakalloc.so> <leakalloc tool>
set -u
lib=$1 tool=$2
export LC_ALL=C
unset LEAKALLOC_CONF
work=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-atomic.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prog=(perl -e 'my @keep = map { "x" x ($_ % 500) } 1 .. 20000; print scalar(@keep), "\n";')

# 1. Killed mid-write: RLIMIT_FSIZE kills the process with SIGXFSZ inside the final
# dump's write (perl leaves SIGXFSZ at its default action, python ignores it).
mkdir "$work/killed"
LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0,final:true,format:heap+pb,prefix:$work/killed/k \
  bash -c 'ulimit -f 8 && exec "$@"' sh "${prog[@]}" >/dev/null 2>&1
status=$?
[ $status -eq $((128 + 25)) ] || fail "expected death by SIGXFSZ in the dump, status $status"
if ls "$work/killed" | grep -v '\.tmp$' | grep -q .; then
  fail "a dump killed mid-write left files under final names: $(ls "$work/killed")"
fi
ls "$work/killed" | grep -q '\.tmp$' || fail "no temporary file: the dump did not start?"
echo "ok: killed mid-write, only $(ls "$work/killed" | tr '\n' ' ')"

# 2. A complete dump reads; the same dump cut short does not.
mkdir "$work/whole"
LD_PRELOAD=$lib LEAKALLOC_CONF=sample:0,final:true,format:heap+pb,prefix:$work/whole/w "${prog[@]}" >/dev/null ||
  fail "the program failed under leakalloc"
heap=$(ls "$work"/whole/w.*.heap) pb=$(ls "$work"/whole/w.*.pb.gz)
[ -f "$heap" ] && [ -f "$pb" ] || fail "no dumps written: $(ls "$work/whole")"
ls "$work/whole" | grep -q '\.tmp$' && fail "a temporary file was left behind"
[ "$(stat -c %a "$heap")" = 600 ] || fail "dump mode $(stat -c %a "$heap"), expected 600"
"$tool" report "$heap" >/dev/null 2>"$work/ok.err" || { cat "$work/ok.err" >&2; fail "report of a complete text dump failed"; }
"$tool" report "$pb" >/dev/null 2>"$work/ok.err" || { cat "$work/ok.err" >&2; fail "report of a complete pb dump failed"; }
for f in "$heap" "$pb"; do
  size=$(stat -c %s "$f")
  # Cut at a line end for the text dump (the hardest case: every line parses).
  if [ "$f" = "$heap" ]; then
    head -n "$(( $(grep -c ' @ ' "$f") / 2 + 1 ))" "$f" >"$f.cut"
  else
    head -c "$((size / 2))" "$f" >"$f.cut"
  fi
  if "$tool" report "$f.cut" >/dev/null 2>"$work/cut.err"; then
    fail "report took a truncated dump ($f cut from $size to $(stat -c %s "$f.cut") bytes)"
  fi
  grep -q 'truncated' "$work/cut.err" || { cat "$work/cut.err" >&2; fail "the error does not say the dump is truncated"; }
  echo "ok: $(basename "$f") cut short: $(head -c 200 "$work/cut.err")"
done
# 3. A dump that cannot be written says why once per cause, not at every interval.
LD_PRELOAD=$lib LEAKALLOC_CONF=interval:1,prefix:$work/missing/dir/d \
  perl -e 'my @keep; for (1 .. 35) { push @keep, "x" x 1000; select(undef, undef, undef, 0.1) }' \
  2>"$work/interval.err" || fail "the program failed under leakalloc"
n=$(grep -c '^leakalloc: cannot write dump' "$work/interval.err")
[ "$n" -eq 1 ] || { cat "$work/interval.err" >&2; fail "$n 'cannot write dump' messages in 3.5 s at interval:1, expected 1"; }
echo "ok: one message for a missing directory over 3 intervals"
echo "atomic-ok"
