#!/usr/bin/env bash
# Runs the micro benchmarks and writes their tables:
#   bench_micro_alloc (linked against glibc) once per allocator by LD_PRELOAD: glibc,
#   mimalloc, the hdr-floor control (compare.sh), leakalloc active:false, sample:19 and
#   sample:0;
#   bench_micro_internal (stack capture per unwinder, per-sample cost, dump cost);
#   bench_spawn: the start of /bin/true under each allocator, preloaded.
#
#   bench/micro.sh [--build DIR] [--min-time S] [--reps N] [--out FILE] [--filter REGEX]
# --out replaces the part of FILE between the micro.sh markers (default bench/RESULTS.md);
# --out - prints only. Needs python3 to read Google Benchmark's JSON.
set -u
set -o pipefail
# The whole script is one block, so bash parses it before running it: editing the file
# during a ten-minute run cannot change what the run does.
{
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build="$root/build"
min_time=0.2
reps=3
out="$here/RESULTS.md"
filter=""
cmdline="$0 $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --min-time) min_time=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "micro.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
build=$(cd "$build" && pwd) || exit 2
command -v python3 > /dev/null || { echo "micro.sh: python3 is needed to read the results" >&2; exit 2; }
bin=$build/bench
for b in bench_micro_alloc bench_micro_internal bench_spawn; do
  [ -x "$bin/$b" ] || { echo "micro.sh: $bin/$b not built" >&2; exit 2; }
done
work=$(mktemp -d /tmp/leakalloc-micro.XXXXXX)
trap 'rm -rf "$work"' EXIT
libdir=/usr/lib/x86_64-linux-gnu  # Debian's, as in compare.sh
mimalloc_so=$libdir/libmimalloc.so.2
jemalloc_so=$libdir/libjemalloc.so.2
tcmalloc_so=$libdir/libtcmalloc.so.4
la_so=$build/libleakalloc.so
floor_so=$bin/libbench_header_floor.so
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

common=(--benchmark_min_time="$min_time" --benchmark_repetitions="$reps"
        --benchmark_report_aggregates_only=true --benchmark_format=json)
[ -n "$filter" ] && common+=(--benchmark_filter="$filter")
run_alloc() {  # name, env...
  local name=$1; shift
  echo "micro.sh: bench_micro_alloc under $name" >&2
  env "$@" "$bin/bench_micro_alloc" "${common[@]}" > "$work/alloc.$name.json" 2> "$work/alloc.$name.err" ||
    { echo "micro.sh: bench_micro_alloc failed under $name:" >&2; tail -5 "$work/alloc.$name.err" >&2; }
}
# One allocator after the other (a process per allocator); the load average is printed
# with the table, and the repetitions' medians damp short bursts of load.
run_alloc glibc
[ -e "$mimalloc_so" ] && run_alloc mimalloc LD_PRELOAD=$mimalloc_so
[ -e "$floor_so" ] && run_alloc hdr-floor LD_PRELOAD=$floor_so
run_alloc la-off LD_PRELOAD=$la_so LEAKALLOC_CONF=active:false
run_alloc la-s19 LD_PRELOAD=$la_so LEAKALLOC_CONF=sample:19
run_alloc la-s0 LD_PRELOAD=$la_so LEAKALLOC_CONF=sample:0
echo "micro.sh: bench_micro_internal" >&2
"$bin/bench_micro_internal" "${common[@]}" > "$work/internal.json" 2> "$work/internal.err" ||
  { echo "micro.sh: bench_micro_internal failed:" >&2; tail -5 "$work/internal.err" >&2; }

# Process start: every allocator the machine has, taking turns one start at a time.
echo "micro.sh: bench_spawn" >&2
spawn_runs=300
spawn_cfgs=(glibc - -)
for pair in mimalloc:$mimalloc_so jemalloc:$jemalloc_so tcmalloc:$tcmalloc_so; do
  if [ -e "${pair#*:}" ]; then spawn_cfgs+=("${pair%%:*}" "${pair#*:}" -)
  else echo "micro.sh: ${pair#*:} is missing: ${pair%%:*} is left out of the process start table" >&2; fi
done
spawn_cfgs+=(la-off "$la_so" active:false la-s19 "$la_so" sample:19 la-s0 "$la_so" sample:0)
"$bin/bench_spawn" "$spawn_runs" /bin/true "${spawn_cfgs[@]}" > "$work/spawn.txt" 2> "$work/spawn.err" ||
  { echo "micro.sh: bench_spawn failed:" >&2; tail -5 "$work/spawn.err" >&2; }

section=$work/section.md
python3 - "$work" "$started" "$cmdline" "$(cut -d' ' -f1-3 /proc/loadavg)" "$spawn_runs" > "$section" <<'EOF'
import json, os, re, sys
work, started, cmdline, load, spawn_runs = sys.argv[1:6]
configs = ["glibc", "mimalloc", "hdr-floor", "la-off", "la-s19", "la-s0"]

def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None

def medians(doc):
    out = {}
    if not doc:
        return out
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            out[b.get("run_name", b["name"])] = {"error": b.get("error_message", "error")}
            continue
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        out[name] = b
    return out

def ns(b, key):
    unit = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b[key] * unit

print("<!-- micro.sh begin: generated, do not edit by hand -->")
print("## Micro benchmarks: run of %s" % started)
print()
print("- Command: `%s`; load average at start: %s" % (cmdline, load))
print("- Values are medians of the repetitions. `cpu` is CPU time per iteration (steadier on a")
print("  loaded machine), `wall` the real time. For `threads:2` both threads run the loop; times")
print("  are per iteration of one thread. batch64 = 64 mallocs then 64 frees, per malloc/free pair.")
print("  realloc_grow = a buffer grown from 64 B to 1 MiB in 64-byte steps, per realloc.")
print("  aligned_pair = posix_memalign(align, 64) and free. hdr-floor = mimalloc behind only")
print("  docs/DESIGN.md's header, written at malloc and checked at free (compare.sh's control).")
print()
res = {c: medians(load_json(os.path.join(work, "alloc.%s.json" % c))) for c in configs}
names = []
for c in configs:
    for n in res[c]:
        if n not in names:
            names.append(n)
print("### malloc/free, ns per pair (cpu / wall), bench_micro_alloc under LD_PRELOAD")
print()
print("| benchmark | " + " | ".join(configs) + " | la-s19 / mimalloc (cpu) |")
print("| --- | " + " | ".join("---:" for _ in configs) + " | ---: |")
for n in names:
    if n.startswith("BM_dump_latency"):
        continue
    cells = []
    for c in configs:
        b = res[c].get(n)
        if b is None:
            cells.append("")
        elif "error" in b:
            cells.append("skipped")
        else:
            div = 64.0 if n.startswith("BM_batch64") else 16383.0 if n.startswith("BM_realloc_grow") else 1.0
            cells.append("%.1f / %.1f" % (ns(b, "cpu_time") / div, ns(b, "real_time") / div))
    m, s = res["mimalloc"].get(n), res["la-s19"].get(n)
    ratio = "%.2f" % (s["cpu_time"] / m["cpu_time"]) if m and s and "error" not in m and "error" not in s else ""
    short = n.replace("/real_time", "")
    print("| %s | %s | %s |" % (short, " | ".join(cells), ratio))
print()
print("### malloc latency on a second thread while prof.dump runs (bench_micro_alloc, 100k live blocks)")
print()
print("| configuration | dump (ms) | malloc+free max during dumps (us) | p99.9 (us) | same window without dump: max (us) | p99.9 (us) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for c in configs:
    for n, b in res[c].items():
        if not n.startswith("BM_dump_latency"):
            continue
        if "error" in b:
            print("| %s | skipped: %s | | | | |" % (c, b["error"]))
        else:
            print("| %s | %.1f | %.0f | %.2f | %.0f | %.2f |" % (c, b["dump_ms"], b["malloc_max_us"], b["malloc_p999_us"], b["base_max_us"], b["base_p999_us"]))
print()
internal = medians(load_json(os.path.join(work, "internal.json")))
print("### leakalloc internals (bench_micro_internal)")
print()
print("| benchmark | cpu | wall | counters |")
print("| --- | ---: | ---: | --- |")
skip = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads", "iterations",
        "real_time", "cpu_time", "time_unit", "family_index", "per_family_instance_index",
        "aggregate_name", "aggregate_unit", "items_per_second"}
for n, b in internal.items():
    if "error" in b:
        print("| %s | skipped: %s | | |" % (n, b["error"]))
        continue
    unit = b.get("time_unit", "ns")
    counters = ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in b.items() if k not in skip)
    print("| %s | %.1f %s | %.1f %s | %s |" % (n.replace("/real_time", ""), b["cpu_time"], unit, b["real_time"], unit, counters))
print()
print("### Process start (bench_spawn: /bin/true started %s times under each, taking turns)" % spawn_runs)
print()
print("What every command of a shell script, a build or a test suite pays when the allocator is")
print("preloaded into the whole process tree (LD_PRELOAD is inherited).")
print()
spawn = []
try:
    with open(os.path.join(work, "spawn.txt")) as f:
        for line in f:
            name, med, p10, p90 = line.split()
            spawn.append((name, float(med), float(p10), float(p90)))
except Exception:
    pass
base = {n: m for n, m, _, _ in spawn}
print("| configuration | median (us) | 10th-90th percentile (us) | x glibc | x mimalloc |")
print("| --- | ---: | ---: | ---: | ---: |")
for n, m, lo, hi in spawn:
    xg = "%.2f" % (m / base["glibc"]) if base.get("glibc") else ""
    xm = "%.2f" % (m / base["mimalloc"]) if base.get("mimalloc") else ""
    print("| %s | %.0f | %.0f-%.0f | %s | %s |" % (n, m, lo, hi, xg, xm))
print("<!-- micro.sh end -->")
EOF
cat "$section"
if [ "$out" != "-" ]; then
  if [ -f "$out" ] && grep -q '<!-- micro.sh begin' "$out"; then
    awk -v sec="$section" '
      /<!-- micro.sh begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
      /<!-- micro.sh end -->/ { skip = 0; next }
      !skip { print }' "$out" > "$work/out.md" && cp "$work/out.md" "$out"
  else
    { [ -f "$out" ] && cat "$out" && echo; cat "$section"; } > "$work/out.md" && cp "$work/out.md" "$out"
  fi
  echo "micro.sh: wrote $out" >&2
fi
exit
}
