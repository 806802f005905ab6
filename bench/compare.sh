#!/usr/bin/env bash
# Runs every workload under every allocator/profiler side by side and writes a table:
# median wall time, ratio to plain mimalloc, peak RSS.
#
#   bench/compare.sh [options]
#     --build DIR       build directory holding libleakalloc.so and bench/ (default: ./build)
#     --reps N          repetitions of the fast configurations (default 3)
#     --slow-reps N     repetitions of the slow profilers (jemalloc lg_prof_sample:0,
#                       tcmalloc HEAPPROFILE, heaptrack), which run 10-100x longer (default 1)
#     --scale X         workload size multiplier (default 1; each workload then runs
#                       0.2 to 0.5 s under mimalloc on an idle machine)
#     --quick           --reps 1 --scale 0.3
#     --smoke           --reps 1 --scale 0.01, no RESULTS.md unless --out (used by CTest)
#     --workloads LIST  comma-separated subset of: larson,prodcons,churn,containers,sqlite,randrepl
#     --configs LIST    comma-separated subset of the configuration names below
#     --timeout S       kill a run after S seconds and report it as a timeout (default 60)
#     --out FILE        where to write the results (default: bench/RESULTS.md); the part
#                       between the compare.sh markers is replaced, the rest kept
#
# Configurations: glibc mimalloc hdr-floor jemalloc je-prof je-prof0 tcmalloc-heapprof
#                 heaptrack la-off la-s19 la-s0 la-s0-age60 la-s0-age60-fp
# hdr-floor is a control, not a competitor: mimalloc behind only the header docs/DESIGN.md
# asks for (bench/floor/header_floor.cpp), a lower bound on any allocator built to it.
# Two more controls take it apart, and run only when named in --configs: hdr-write
# (the header written, never read at free) and hdr-offset (the 16 bytes, left empty).
# The runs are interleaved (repetition, then workload, then configuration in a rotated
# order) so that drift in machine load hits every configuration alike. The target
# verdicts use the ratio of two configurations within each repetition, and say whether a
# 90% interval for its median lies on one side of the target: that takes 5 repetitions
# or more (--reps, and --slow-reps for the comparison with je-prof0). Nothing is
# installed; a competitor that is not on this machine is reported as missing.
set -u
set -o pipefail
# The whole script is one block, so bash parses it before running it: editing the file
# during a ten-minute run cannot change what the run does.
{

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build="$root/build"
reps=3
slow_reps=1
scale=1
timeout_s=60
out=""
smoke=0
workloads="larson,prodcons,churn,containers,sqlite,randrepl"
configs="glibc,mimalloc,hdr-floor,jemalloc,je-prof,je-prof0,tcmalloc-heapprof,heaptrack,la-off,la-s19,la-s0,la-s0-age60,la-s0-age60-fp"
cmdline="$0 $*"

while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --slow-reps) slow_reps=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --quick) reps=1; scale=0.3; shift ;;
    --smoke) reps=1; slow_reps=1; scale=0.01; smoke=1; shift ;;
    --workloads) workloads=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
build=$(cd "$build" 2>/dev/null && pwd) || { echo "compare.sh: no build directory $build" >&2; exit 2; }
if [ -z "$out" ] && [ $smoke -eq 0 ]; then out="$here/RESULTS.md"; fi

libdir=/usr/lib/x86_64-linux-gnu
mimalloc_so=$libdir/libmimalloc.so.2
jemalloc_so=$libdir/libjemalloc.so.2
tcmalloc_so=$libdir/libtcmalloc.so.4
leakalloc_so=$build/libleakalloc.so
bench_bin=$build/bench
# The header controls: hdr-X is $bench_bin/libbench_header_X.so (bench/CMakeLists.txt).
header_control_so() { echo "$bench_bin/libbench_header_${1#hdr-}.so"; }

[ -x /usr/bin/time ] || { echo "compare.sh: /usr/bin/time is missing (Debian package 'time'); it measures peak RSS" >&2; exit 2; }

work=$(mktemp -d /tmp/leakalloc-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
results=$work/results.tsv
: > "$results"

# ---- what is available -------------------------------------------------------------
declare -A missing=()
need_file() { [ -e "$2" ] || missing[$1]="$2 not found"; }
need_file mimalloc "$mimalloc_so"
need_file jemalloc "$jemalloc_so"
need_file je-prof "$jemalloc_so"
need_file je-prof0 "$jemalloc_so"
need_file tcmalloc-heapprof "$tcmalloc_so"
for c in hdr-floor hdr-write hdr-offset; do need_file $c "$(header_control_so $c)"; done
for c in la-off la-s19 la-s0 la-s0-age60 la-s0-age60-fp; do need_file $c "$leakalloc_so"; done
command -v heaptrack > /dev/null || missing[heaptrack]="heaptrack not in PATH"
if [ -e "$jemalloc_so" ]; then
  # Debian's jemalloc is built with profiling; check rather than assume.
  if ! MALLOC_CONF=prof:true,stats_print:true LD_PRELOAD=$jemalloc_so /bin/true 2>&1 | grep -q 'opt.prof: true'; then
    missing[je-prof]="this jemalloc is built without profiling (config.prof false)"
    missing[je-prof0]=${missing[je-prof]}
  fi
fi
declare -A wl_missing=()
for w in larson prodcons churn containers randrepl; do
  [ -x "$bench_bin/bench_$w" ] || wl_missing[$w]="$bench_bin/bench_$w not built (make bench_workloads)"
done
command -v sqlite3 > /dev/null || wl_missing[sqlite]="sqlite3 not in PATH (Debian package sqlite3)"

is_slow() { case "$1" in je-prof0|tcmalloc-heapprof|heaptrack) return 0 ;; *) return 1 ;; esac; }

# The sqlite script is generated once; its size follows --scale.
sql_rows=$(awk -v s="$scale" 'BEGIN { n = int(8000 * s); if (n < 50) n = 50; print n }')
"$here/workloads/sqlite_sql.sh" "$sql_rows" > "$work/sqlite.sql"

# Runs workload $2 under config $3 (repetition $1); appends the line
# "rep workload config wall_s rss_kb status cpu_s" to $results.
run_one() {
  local rep=$1 w=$2 c=$3
  local -a env_args=() wrap=() cmd
  case "$w" in
    sqlite) cmd=(sqlite3 -bail :memory: ".read $work/sqlite.sql") ;;
    *) cmd=("$bench_bin/bench_$w" "$scale") ;;
  esac
  local la_prefix="$work/la"
  case "$c" in
    glibc) ;;
    mimalloc) env_args=(LD_PRELOAD=$mimalloc_so) ;;
    hdr-*) env_args=(LD_PRELOAD=$(header_control_so "$c")) ;;
    jemalloc) env_args=(LD_PRELOAD=$jemalloc_so) ;;
    je-prof) env_args=(LD_PRELOAD=$jemalloc_so MALLOC_CONF=prof:true,prof_prefix:$work/jeprof) ;;
    je-prof0) env_args=(LD_PRELOAD=$jemalloc_so MALLOC_CONF=prof:true,lg_prof_sample:0,prof_prefix:$work/jeprof) ;;
    tcmalloc-heapprof) env_args=(LD_PRELOAD=$tcmalloc_so HEAPPROFILE=$work/tcmalloc) ;;
    heaptrack) wrap=(heaptrack -o "$work/heaptrack.$w.$rep") ;;
    la-off) env_args=(LD_PRELOAD=$leakalloc_so LEAKALLOC_CONF=active:false) ;;
    la-s19) env_args=(LD_PRELOAD=$leakalloc_so LEAKALLOC_CONF=sample:19) ;;
    la-s0) env_args=(LD_PRELOAD=$leakalloc_so LEAKALLOC_CONF=sample:0) ;;
    la-s0-age60) env_args=(LD_PRELOAD=$leakalloc_so
                           LEAKALLOC_CONF=sample:0,age:60,interval:200ms,format:heap,prefix:$la_prefix) ;;
    la-s0-age60-fp) env_args=(LD_PRELOAD=$leakalloc_so
                           LEAKALLOC_CONF=sample:0,age:60,interval:200ms,format:heap,unwind:fp,prefix:$la_prefix) ;;
  esac
  local t0 t1 status=ok rc
  t0=$(date +%s%N)
  (cd "$work" && exec /usr/bin/time -f '%e %M %U %S' -o "$work/time.out" \
      timeout -k 5 "$timeout_s" env "${env_args[@]}" "${wrap[@]}" "${cmd[@]}") \
      > "$work/stdout" 2> "$work/stderr"
  rc=$?
  t1=$(date +%s%N)
  local rss cpu
  rss=$(awk 'END { print $2 }' "$work/time.out" 2>/dev/null)
  cpu=$(awk 'END { print $3 + $4 }' "$work/time.out" 2>/dev/null)
  [ -n "$rss" ] || rss=0
  [ -n "$cpu" ] || cpu=0
  if [ $rc -eq 124 ] || [ $rc -eq 137 ] || grep -q 'status 124' "$work/time.out" 2>/dev/null; then
    status=timeout
  elif [ $rc -ne 0 ]; then
    status="exit$rc"
    echo "compare.sh: $w under $c failed (exit $rc):" >&2
    tail -n 5 "$work/stderr" >&2
  elif grep -q '^leakalloc: ' "$work/stderr"; then
    # A leakalloc warning means the measurement may not be what it claims.
    echo "compare.sh: $w under $c: $(grep -m1 '^leakalloc: ' "$work/stderr")" >&2
  fi
  if [ "$c" = la-s0-age60 ] || [ "$c" = la-s0-age60-fp ]; then
    local n
    n=$(ls "$work" | grep -c '^la\..*\.heap$')
    echo "$rep $w $c dumps $n" >> "$work/dumps.txt"
    rm -f "$work"/la.*
  fi
  rm -f "$work"/jeprof.* "$work"/tcmalloc.* "$work"/heaptrack.*
  awk -v r="$rep" -v w="$w" -v c="$c" -v t0="$t0" -v t1="$t1" -v rss="$rss" -v st="$status" -v cpu="$cpu" \
    'BEGIN { printf "%s\t%s\t%s\t%.3f\t%d\t%s\t%.2f\n", r, w, c, (t1 - t0) / 1e9, rss, st, cpu }' >> "$results"
}

IFS=, read -r -a wl_list <<< "$workloads"
IFS=, read -r -a cf_list <<< "$configs"
all_configs=" glibc mimalloc hdr-floor hdr-write hdr-offset jemalloc je-prof je-prof0 tcmalloc-heapprof heaptrack la-off la-s19 la-s0 la-s0-age60 la-s0-age60-fp "
for c in "${cf_list[@]}"; do
  case "$all_configs" in *" $c "*) ;; *) echo "compare.sh: unknown configuration $c (see --help)" >&2; exit 2 ;; esac
done
for w in "${wl_list[@]}"; do
  case " larson prodcons churn containers sqlite randrepl " in *" $w "*) ;; *) echo "compare.sh: unknown workload $w (see --help)" >&2; exit 2 ;; esac
done
active_cf=()
for c in "${cf_list[@]}"; do
  if [ -n "${missing[$c]:-}" ]; then
    echo "compare.sh: MISSING competitor $c: ${missing[$c]}" >&2
  else
    active_cf+=("$c")
  fi
done
active_wl=()
for w in "${wl_list[@]}"; do
  if [ -n "${wl_missing[$w]:-}" ]; then
    echo "compare.sh: MISSING workload $w: ${wl_missing[$w]}" >&2
  else
    active_wl+=("$w")
  fi
done
[ ${#active_cf[@]} -gt 0 ] && [ ${#active_wl[@]} -gt 0 ] || { echo "compare.sh: nothing to run" >&2; exit 2; }

max_reps=$reps
[ "$slow_reps" -gt "$max_reps" ] && max_reps=$slow_reps
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
start_s=$(date +%s)
n_cf=${#active_cf[@]}
for ((rep = 1; rep <= max_reps; rep++)); do
  for w in "${active_wl[@]}"; do
    # Rotate the configuration order each repetition and workload.
    off=$(( (rep * 3 + ${#w}) % n_cf ))
    for ((i = 0; i < n_cf; i++)); do
      c=${active_cf[$(( (i + off) % n_cf ))]}
      if is_slow "$c"; then [ $rep -le "$slow_reps" ] || continue; else [ $rep -le "$reps" ] || continue; fi
      run_one "$rep" "$w" "$c"
      printf '[%4ds] rep %d/%d %-10s %-18s %s\n' $(( $(date +%s) - start_s )) "$rep" "$max_reps" "$w" "$c" \
        "$(tail -n 1 "$results" | cut -f4,5,6 | awk '{ printf "%s s, %d MiB, %s", $1, $2 / 1024, $3 }')" >&2
    done
  done
done
elapsed=$(( $(date +%s) - start_s ))

# ---- the table ---------------------------------------------------------------------
table=$work/table.md
awk -F'\t' -v cfgs="${active_cf[*]}" -v wls="${active_wl[*]}" -v tmo="$timeout_s" '
  function median(key) { return med(key, 0) }
  function med(key, which,   n, i, j, a, t) {
    n = cnt[key]
    for (i = 1; i <= n; i++) a[i] = which ? cpu[key, i] : val[key, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (n % 2) return a[(n + 1) / 2]
    return (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function mmax(key,   i, m) { m = 0; for (i = 1; i <= cnt[key]; i++) if (rss[key, i] > m) m = rss[key, i]; return m }
  {
    key = $2 SUBSEP $3
    if ($6 != "ok") { bad[key] = $6; next }
    cnt[key]++; val[key, cnt[key]] = $4; rss[key, cnt[key]] = $5; cpu[key, cnt[key]] = $7
  }
  END {
    nc = split(cfgs, C, " "); nw = split(wls, W, " ")
    for (wi = 1; wi <= nw; wi++) {
      w = W[wi]
      base = (w SUBSEP "mimalloc") in cnt ? median(w SUBSEP "mimalloc") : 0
      cbase = (w SUBSEP "mimalloc") in cnt ? med(w SUBSEP "mimalloc", 1) : 0
      brss = (w SUBSEP "mimalloc") in cnt ? mmax(w SUBSEP "mimalloc") : 0
      printf "\n### %s\n\n", w
      printf "| configuration | median wall (s) | x mimalloc | median CPU (s) | CPU x mimalloc | peak RSS (MiB) | RSS x mimalloc | runs |\n"
      printf "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
      for (ci = 1; ci <= nc; ci++) {
        c = C[ci]; key = w SUBSEP c
        if (!(key in cnt)) {
          if (bad[key] == "timeout") {
            printf "| %s | > %d (timeout) | > %s | | | | | 0 |\n", c, tmo, (base > 0 ? sprintf("%.0f", tmo / base) : "-")
            printf "%s %s %.4f %d timeout\n", w, c, tmo, 0 > "/dev/stderr"
          } else printf "| %s | %s | | | | | | 0 |\n", c, ((key in bad) ? bad[key] : "not run")
          continue
        }
        m = median(key); r = mmax(key); cm = med(key, 1)
        printf "| %s | %.3f | %s | %.2f | %s | %.1f | %s | %d%s |\n", c, m,
          (base > 0 ? sprintf("%.2f", m / base) : "-"), cm, (cbase > 0 ? sprintf("%.2f", cm / cbase) : "-"), r / 1024,
          (brss > 0 ? sprintf("%.2f", r / brss) : "-"), cnt[key], ((key in bad) ? " (+" bad[key] ")" : "")
        # machine-readable line for the target checks below
        printf "%s %s %.4f %d ok\n", w, c, m, r > "/dev/stderr"
      }
    }
  }' "$results" > "$table" 2> "$work/medians.txt"

# ---- targets (issue 6) -------------------------------------------------------------
# Each target compares two configurations. Their runs of one repetition and workload
# are minutes apart at most, so the verdict uses the ratio within each repetition and
# the median of those ratios. On a noisy machine one median can land on either side of
# a target, so each verdict also gives a distribution-free interval for that median:
# the k-th smallest and k-th largest ratio, with the largest k for which the interval
# holds the true median with probability at least 90% (binomial, p = 1/2). A verdict is
# "settled" when the whole interval is on one side of the target; otherwise it says so.
# Too few repetitions for 90% (fewer than 5) give no interval. Peak RSS keeps the
# largest maxrss of each configuration: a peak, not a typical value.
targets=$work/targets.md
# The floor's parts get columns of their own when they ran.
floor_parts=0
case " ${active_cf[*]} " in *" hdr-write "*|*" hdr-offset "*) floor_parts=1 ;; esac
awk -F'\t' '
  FNR == NR {
    # A slow profiler killed at the timeout counts with the time it was killed at: a
    # lower bound, which can only understate how much faster leakalloc is.
    if ($6 == "ok" || ($6 == "timeout" && $3 ~ /^(je-prof0|tcmalloc-heapprof|heaptrack)$/)) {
      T[$2, $3, $1] = $4; if ($1 > maxrep) maxrep = $1
      if ($6 == "timeout") KILLED[$2, $3, $1] = 1
    }
    next
  }
  { split($0, m, " "); r[m[1], m[2]] = m[4]; w[m[1]] = 1; if (m[5] == "timeout" && m[4] == 0) delete r[m[1], m[2]] }
  function binom_cdf(k, n,   i, c, s) {  # P(Binomial(n, 1/2) <= k)
    c = 1; s = 0
    for (i = 0; i <= k; i++) { s += c; c = c * (n - i) / (i + 1) }
    return s / 2 ^ n
  }
  # Sets N, MED, LO, HI from the per-repetition ratios num/den of workload x (den/num
  # when inv), and KILLS to the number of pairs with a run killed at the timeout. A run
  # that failed, or a leakalloc run that timed out, pairs with nothing.
  function paired(x, num, den, inv,   rep, a, i, j, t, k) {
    N = 0; KILLS = 0
    for (rep = 1; rep <= maxrep; rep++)
      if (((x, num, rep) in T) && ((x, den, rep) in T) && T[x, num, rep] > 0 && T[x, den, rep] > 0) {
        a[++N] = inv ? T[x, den, rep] / T[x, num, rep] : T[x, num, rep] / T[x, den, rep]
        if (((x, num, rep) in KILLED) || ((x, den, rep) in KILLED)) KILLS++
      }
    for (i = 1; i <= N; i++) for (j = i + 1; j <= N; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    if (N == 0) return 0
    MED = N % 2 ? a[(N + 1) / 2] : (a[N / 2] + a[N / 2 + 1]) / 2
    LO = HI = ""
    for (k = int((N + 1) / 2); k >= 1; k--)
      if (1 - 2 * binom_cdf(k - 1, N) >= 0.90) { LO = a[k]; HI = a[N + 1 - k]; break }
    return 1
  }
  # The verdict on "ratio <= limit" (or ">= limit" when at_least), as table text.
  function verdict(x, num, den, inv, limit, at_least, unit,   ok, all_met, all_missed, txt, iv) {
    if (!paired(x, num, den, inv)) return "n/a"
    ok = at_least ? MED >= limit : MED <= limit
    txt = ok ? "met" : "**MISSED**"
    if (LO == "") iv = sprintf("; %d paired run%s, too few for an interval", N, N == 1 ? "" : "s")
    else {
      iv = sprintf("; 90%%: %.2f-%.2f", LO, HI)
      all_met = at_least ? LO >= limit : HI <= limit
      all_missed = at_least ? HI < limit : LO > limit
      if (!all_met && !all_missed) txt = txt ", not settled"
    }
    if (KILLS > 0) iv = iv sprintf("; %d of them with a run killed at the timeout, a lower bound", KILLS)
    return sprintf("%s (%.2f%s%s)", txt, MED, unit, iv)
  }
  # A paired ratio num/den of workload x with its interval, as table text.
  function ratio(x, num, den) {
    if (!paired(x, num, den, 0)) return "n/a"
    return sprintf("%.2fx%s", MED, LO == "" ? sprintf(" (%d paired run%s)", N, N == 1 ? "" : "s") : sprintf(" (90%%: %.2f-%.2f)", LO, HI))
  }
  END {
    printf "| workload | s19 <= 1.10x mimalloc | s19 < glibc | s0,age60 <= 3x mimalloc | s0,age60 >= 10x faster than je lg_prof_sample:0 | s0 RSS <= 2x mimalloc | (s0,age60 with unwind:fp) |\n"
    printf "| --- | --- | --- | --- | --- | --- | --- |\n"
    for (x in w) {
      a = verdict(x, "la-s19", "mimalloc", 0, 1.10, 0, "x")
      b = verdict(x, "la-s19", "glibc", 0, 0.99999, 0, "x glibc")
      c = verdict(x, "la-s0-age60", "mimalloc", 0, 3, 0, "x")
      d = verdict(x, "la-s0-age60", "je-prof0", 1, 10, 1, "x")
      e = ((x, "la-s0") in r) && ((x, "mimalloc") in r) && r[x, "mimalloc"] > 0 ? sprintf("%s (%.2fx)", r[x, "la-s0"] <= 2 * r[x, "mimalloc"] ? "met" : "**MISSED**", r[x, "la-s0"] / r[x, "mimalloc"]) : "n/a"
      f = paired(x, "la-s0-age60-fp", "mimalloc", 0) ? sprintf("%.2fx mimalloc", MED) : "n/a"
      if (paired(x, "la-s0-age60-fp", "je-prof0", 1)) f = f sprintf(", %.1fx faster than je-prof0", MED)
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", x, a, b, c, d, e, f
      if (paired(x, "hdr-floor", "mimalloc", 0)) {
        g = ""
        if (parts) g = sprintf(" %s | %s |", ratio(x, "hdr-write", "mimalloc"), ratio(x, "hdr-offset", "mimalloc"))
        printf "| %s | %s | %s | %s |%s\n", x, verdict(x, "hdr-floor", "mimalloc", 0, 1.10, 0, "x"),
          ratio(x, "la-s19", "hdr-floor"), ratio(x, "la-off", "hdr-floor"), g > floor_rows
      }
    }
  }' floor_rows="$work/floor_rows" parts="$floor_parts" "$results" "$work/medians.txt" |
  { read -r h1; read -r h2; echo "$h1"; echo "$h2"; sort; } > "$targets"
# The design's floor (hdr-floor): how much of leakalloc's time over mimalloc's any
# allocator built to docs/DESIGN.md would pay, and how much is leakalloc's own.
floor_table=$work/floor.md
: > "$floor_table"
if [ -s "$work/floor_rows" ]; then
  cols="| workload | hdr-floor <= 1.10x mimalloc (the sample:19 target, applied to the floor) | la-s19 x hdr-floor | la-off x hdr-floor |"
  rule="| --- | --- | --- | --- |"
  if [ "$floor_parts" = 1 ]; then cols="$cols hdr-write x mimalloc | hdr-offset x mimalloc |"; rule="$rule --- | --- |"; fi
  { echo "$cols"; echo "$rule"; sort "$work/floor_rows"; } > "$floor_table"
fi

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain -- alloc profile ctl 2>/dev/null | wc -l)
section=$work/section.md
{
  echo "<!-- compare.sh begin: generated, do not edit by hand -->"
  echo "## Workloads: run of $started"
  echo
  echo "- Machine: $cpu, $(nproc) cores, $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- leakalloc: $leakalloc_so, git $rev$([ "$dirty" -gt 0 ] && echo " + $dirty uncommitted changes in alloc/ profile/ ctl/")"
  echo "- Command: \`$cmdline\` (scale $scale, $reps repetitions, $slow_reps for the slow profilers, $elapsed s in all)"
  echo "- Wall time is the median over the repetitions (measured around /usr/bin/time); CPU is the"
  echo "  median user+sys time (steadier than wall time on a loaded machine); peak RSS is the largest"
  echo "  maxrss /usr/bin/time saw (for heaptrack it includes its own processes)."
  echo "- Targets use wall time: the median of the ratios within each repetition (the two runs"
  echo "  compared ran minutes apart at most), with a distribution-free 90% interval for that"
  echo "  median. \"not settled\": the interval reaches across the target, so this run cannot tell."
  echo "- Configurations: glibc = no preload; mimalloc/jemalloc = LD_PRELOAD of Debian's"
  echo "  libmimalloc.so.2 / libjemalloc.so.2; hdr-floor = the control below; je-prof = MALLOC_CONF=prof:true (lg_prof_sample:19);"
  echo "  je-prof0 = prof:true,lg_prof_sample:0; tcmalloc-heapprof = libtcmalloc.so.4 with HEAPPROFILE;"
  echo "  heaptrack = \`heaptrack -o FILE prog\`; la-off = leakalloc active:false; la-s19 = sample:19;"
  echo "  la-s0 = sample:0; la-s0-age60 = sample:0,age:60,interval:200ms,format:heap (a dump every 200 ms during the run, and the final one);"
  echo "  la-s0-age60-fp = the same with unwind:fp (not a target configuration: it shows proposed fix 5;"
  echo "  the workloads are built with frame pointers, Debian's sqlite3 and libraries are not, so its sqlite stacks are truncated)."
  for c in "${cf_list[@]}"; do
    [ -n "${missing[$c]:-}" ] && echo "- **Missing competitor $c**: ${missing[$c]}"
  done
  for w in "${wl_list[@]}"; do
    [ -n "${wl_missing[$w]:-}" ] && echo "- **Missing workload $w**: ${wl_missing[$w]}"
  done
  if [ -s "$work/dumps.txt" ]; then
    echo "- Dumps written per run (interval and final): $(awk '{ print $3 "/" $2 "=" $5 }' "$work/dumps.txt" | sort -u | tr '\n' ' ')"
  fi
  cat "$table"
  echo
  echo "### Targets"
  echo
  cat "$targets"
  if [ -s "$floor_table" ]; then
    echo
    echo "### The design's floor (hdr-floor, a control; not a target)"
    echo
    echo "hdr-floor is mimalloc behind only what docs/DESIGN.md asks of every block: the 16-byte header"
    echo "written at malloc, read and checked at free (bench/floor/header_floor.cpp); no cache,"
    echo "counters, sampler or clock. Any allocator built to docs/DESIGN.md over mimalloc's calls pays"
    echo "at least its cost, unless it serves calls without calling mimalloc (leakalloc's thread cache)."
    echo
    cat "$floor_table"
  fi
  echo "<!-- compare.sh end -->"
} > "$section"

cat "$section"
if [ -n "$out" ]; then
  if [ -f "$out" ] && grep -q '<!-- compare.sh begin' "$out"; then
    awk -v sec="$section" '
      /<!-- compare.sh begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
      /<!-- compare.sh end -->/ { skip = 0; next }
      !skip { print }' "$out" > "$work/out.md" && cp "$work/out.md" "$out"
  else
    { [ -f "$out" ] && cat "$out" && echo; cat "$section"; } > "$work/out.md" && cp "$work/out.md" "$out"
  fi
  echo "compare.sh: wrote $out" >&2
fi
# Fail (for CTest) when a run failed; timeouts are results, not failures.
if awk -F'\t' '$6 ~ /^exit/ { bad = 1 } END { exit !bad }' "$results"; then
  echo "compare.sh: some runs failed (see above)" >&2
  exit 1
fi
exit 0
exit
}
