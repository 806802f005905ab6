#!/bin/bash
# Runs a real program twice, without and with LD_PRELOAD=libleakalloc.so, and compares
# what it produced. The preloaded run is traced with LD_DEBUG=bindings, which proves
# that the program's (and libc's) malloc/free were bound to leakalloc and not to glibc
# or libmimalloc, so a preload that silently did not apply fails the test.
#   compare.sh <libleakalloc.so> <case> <source dir of the inputs>
# LEAKALLOC_CONF from the environment applies to the preloaded run only.
set -u
lib=$1 case=$2 src=$3
conf=${LEAKALLOC_CONF-}
unset LD_PRELOAD LEAKALLOC_CONF
export LC_ALL=C
work=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-e2e-$case.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL ($case): $*" >&2
  exit 1
}

# Each case writes what must compare equal into $1/out and scratch files into $1/tmp,
# and echoes the pattern of the binary whose malloc must bind to leakalloc.
case_python() {
  local py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  # PYTHONMALLOC=malloc: every object, not just the big ones, goes through malloc.
  PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$py" "$src/workload.py" 8000 >"$1/out/stdout.txt" || return 1
}
bin_python() { echo 'python3'; }  # as invoked: a path or a bare name
sanity_python() { grep -q '^records 8000$' "$1/out/stdout.txt"; }

case_perl() {
  perl "$src/bighash.pl" 60000 >"$1/out/stdout.txt" || return 1
}
bin_perl() { echo 'perl'; }
sanity_perl() { grep -q '^keys 30000$' "$1/out/stdout.txt"; }

case_sort() {
  # A small buffer makes sort spill to temporary files and merge them.
  TMPDIR=$1/tmp sort "$work/lines.txt" >"$1/out/plain.txt" || return 1
  TMPDIR=$1/tmp sort -S 4M -t, -k3,3n -k1,1r "$work/lines.txt" >"$1/out/keyed.txt" || return 1
  TMPDIR=$1/tmp sort -u --parallel=2 -k2,2 "$work/lines.txt" >"$1/out/unique.txt" || return 1
}
bin_sort() { echo 'sort'; }
sanity_sort() { [ "$(wc -l <"$1/out/keyed.txt")" -eq 300000 ]; }

case_git() {
  local d=$1
  export HOME=$d/tmp/home GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME=Alloc GIT_AUTHOR_EMAIL=alloc@example.com
  export GIT_COMMITTER_NAME=Alloc GIT_COMMITTER_EMAIL=alloc@example.com
  export GIT_AUTHOR_DATE='2021-03-04T05:06:07 +0000' GIT_COMMITTER_DATE='2021-03-04T05:06:07 +0000'
  mkdir -p "$HOME" "$d/tmp/repo"
  cd "$d/tmp/repo" || return 1
  git init -q -b main . || return 1
  local i j
  for i in $(seq 1 8); do
    for j in $(seq 1 10); do
      local k text=""
      for ((k = 0; k < i * j; k++)); do text+="file $j line $i.$k"$'\n'; done
      printf '%s' "$text" >"f$j.txt"
    done
    seq $((i * 1000)) >"big$((i % 3)).txt"
    git add -A && git commit -q -m "commit $i" || return 1
  done
  git log --format='%H %T %s' >"$d/out/log.txt" || return 1
  git diff --stat HEAD~5 HEAD >"$d/out/diffstat.txt" || return 1
  git gc -q || return 1
  git fsck --no-progress >"$d/out/fsck.txt" 2>&1 || return 1
  git cat-file -p 'HEAD^{tree}' >"$d/out/tree.txt" || return 1
}
bin_git() { echo 'git'; }
sanity_git() { [ "$(wc -l <"$1/out/log.txt")" -eq 8 ]; }

case_gcc() {
  cd "$1/tmp" || return 1
  gcc -O2 -c "$src/compile_me.c" -o "$1/out/c.o" || return 1
  gcc "$1/out/c.o" -o prog || return 1
  ./prog >"$1/out/run.txt" || return 1
}
bin_gcc() { echo '/cc1'; }  # the compiler proper, run by the gcc driver
sanity_gcc() { [ -s "$1/out/c.o" ] && [ -s "$1/out/run.txt" ]; }

case_gxx() {
  cd "$1/tmp" || return 1
  g++ -O1 -std=c++17 -c "$src/compile_me.cpp" -o "$1/out/cpp.o" || return 1
  g++ "$1/out/cpp.o" -o prog || return 1
  ./prog >"$1/out/run.txt" || return 1
}
bin_gxx() { echo '/cc1plus'; }
sanity_gxx() { grep -q '^item 42$' "$1/out/run.txt"; }

case_ruby() {
  # Every Thread.new calls pthread_getattr_np on the new thread first thing, and glibc
  # allocates inside it while holding that thread's lock (issue 24: 6 runs of 10 hung).
  timeout -k 5 60 ruby -e 'n = 0; m = Mutex.new; 5000.times { Thread.new { m.synchronize { n += 1 } }.join }; puts "threads #{n}"' \
    >"$1/out/stdout.txt" || return 1
}
bin_ruby() { echo 'ruby'; }
sanity_ruby() { grep -q '^threads 5000$' "$1/out/stdout.txt"; }

type "case_$case" >/dev/null 2>&1 || fail "unknown case"
min_allocs_python() { echo 300000; }
min_allocs_perl() { echo 200000; }
min_allocs_sort() { echo 30; }
min_allocs_git() { echo 1000; }
min_allocs_gcc() { echo 30000; }
min_allocs_gxx() { echo 300000; }
min_allocs_ruby() { echo 50000; }
if [ "$case" = sort ]; then
  # Deterministic input, made without the preload.
  awk 'BEGIN { x = 12345; for (i = 0; i < 300000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
       printf "%08x,w%d,%d\n", x, x % 5003, x % 100000 } }' >"$work/lines.txt"
fi

for run in plain preload; do
  mkdir -p "$work/$run/out" "$work/$run/tmp"
done

( "case_$case" "$work/plain" ) 2>"$work/plain.err" || { cat "$work/plain.err" >&2; fail "the run without leakalloc failed"; }
sanity_$case "$work/plain" || fail "the run without leakalloc did not produce the expected output"

# At sample:0 every allocation is traced. To show that the setting really applied, each
# process also writes a final profile: its header must carry exact values ("@ heapprofile",
# no sampling period) and count at least as many allocations as the workload surely makes.
exact=0
if [[ ",$conf," == *,sample:0,* ]]; then
  exact=1
  mkdir -p "$work/dumps"
  conf="$conf,final:true,prefix:$work/dumps/la"
fi

mkdir -p "$work/ld"
(
  export LD_PRELOAD=$lib LD_DEBUG=bindings LD_DEBUG_OUTPUT=$work/ld/b
  [ -n "$conf" ] && export LEAKALLOC_CONF=$conf
  "case_$case" "$work/preload"
) 2>"$work/preload.err"
status=$?
cat "$work/preload.err" >&2
[ $status -eq 0 ] || fail "the run under LD_PRELOAD=$lib${conf:+ LEAKALLOC_CONF=$conf} failed (status $status)"
grep -q '^leakalloc:' "$work/preload.err" && fail "leakalloc printed a message"
sanity_$case "$work/preload" || fail "the preloaded run did not produce the expected output"

if ! diff -r "$work/plain/out" "$work/preload/out" >"$work/diff.txt"; then
  head -40 "$work/diff.txt" >&2
  fail "output differs with leakalloc"
fi

bin=$(bin_$case)
bindings=$(cat "$work"/ld/b.* 2>/dev/null | grep "normal symbol \`\(malloc\|free\|calloc\|realloc\)'")
echo "$bindings" | grep -q "binding file [^ ]*$bin[^ ]* \[0\] to [^ ]*libleakalloc\.so[^ ]* \[0\]: normal symbol \`malloc'" ||
  fail "no sign that $bin bound malloc to leakalloc (LD_DEBUG=bindings)"
if echo "$bindings" | grep "to [^ ]*\(libc\.so\.6\|libmimalloc[^ ]*\) \[0\]: normal symbol" >"$work/wrong.txt"; then
  head -5 "$work/wrong.txt" >&2
  fail "some objects bound the malloc family to glibc or libmimalloc"
fi
traced=""
if [ $exact = 1 ]; then
  ls "$work"/dumps/la.*.heap >/dev/null 2>&1 || fail "sample:0 with final:true wrote no profile"
  head -qn1 "$work"/dumps/la.*.heap >"$work/headers.txt"
  if grep -v '^heap profile: [0-9]*: [0-9]* \[[0-9]*: [0-9]*\] @ heapprofile$' "$work/headers.txt" >"$work/bad.txt"; then
    head -3 "$work/bad.txt" >&2
    fail "a profile written at sample:0 is not exact (or not a heap profile)"
  fi
  most=$(sed 's/^heap profile: [0-9]*: [0-9]* \[\([0-9]*\):.*/\1/' "$work/headers.txt" | sort -n | tail -1)
  [ "$most" -ge "$(min_allocs_$case)" ] ||
    fail "at sample:0 the busiest process traced only $most allocations, expected >= $(min_allocs_$case)"
  traced="; $(wc -l <"$work/headers.txt") profiles, up to $most allocations traced"
fi

echo "ok: $case gives the same output with leakalloc${conf:+ (LEAKALLOC_CONF=$conf)}; $(ls "$work/plain/out" | wc -l) files compared, $(ls "$work"/ld/b.* | wc -l) processes traced$traced"
