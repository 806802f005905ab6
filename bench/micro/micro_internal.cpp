// Micro benchmarks of leakalloc's internals. This executable is linked with
// leakalloc's object files, so it *is* the allocator (its malloc is leakalloc's) and it
// reaches the hidden internal API (profile/profiler.h, profile/dump.h).
//
//   BM_capture_stack/<depth>/<kind>  ns per stack capture of `depth` frames, kind 0
//                                    libunwind (the default: through the frame-recipe
//                                    cache), 1 fp, 2 unw_backtrace alone (no cache)
//                                    (frames from frames.c, a separate
//                                    library, since this executable's own frames count
//                                    as leakalloc's and are stripped)
//   BM_sampled_pair/<kind>           malloc+free of 64 B at sample:0, stack 16 deep:
//                                    the whole per-sample cost
//   BM_dump/<blocks>/<stacks>/<fmt> one dump (dump::request) of <blocks> live sampled
//                                    blocks from <stacks> distinct stacks, one format
//   BM_dump_latency/<blocks>         malloc+free time on a second thread while dumping
//
// The dump benchmarks skip themselves when dump::request() writes nothing (the dump
// machinery is not in this build).
#include <benchmark/benchmark.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "config/options.h"
#include "frames.h"
#include "latency_probe.h"
#include "profile/dump.h"
#include "profile/profiler.h"

namespace {

struct CaptureCtx {
  benchmark::State* state;
  size_t max;
  int kind;
  size_t frames;
};

void capture_loop(void* p) {
  auto* c = static_cast<CaptureCtx*>(p);
  uintptr_t out[256];
  size_t n = 0;
  for (auto _ : *c->state) {
    n = leakalloc::prof::capture_stack(out, c->max, c->kind);
    benchmark::DoNotOptimize(out);
  }
  c->frames = n;
}

void BM_capture_stack(benchmark::State& state) {
  CaptureCtx c{&state, static_cast<size_t>(state.range(0)), static_cast<int>(state.range(1)), 0};
  bench_recurse(static_cast<int>(state.range(0)), capture_loop, &c);
  state.counters["frames"] = static_cast<double>(c.frames);
  if (c.frames != c.max) state.SkipWithError("captured fewer frames than asked for");
}

// Restores the sampling rate, activity and unwinder a benchmark changed.
struct ProfState {
  int lg = leakalloc::prof::lg_sample();
  bool active = leakalloc::prof::active();
  int64_t unwind = leakalloc::opt(leakalloc::kOpt_unwind);
  int64_t format = leakalloc::opt(leakalloc::kOpt_format);
  ~ProfState() {
    leakalloc::set_opt(leakalloc::kOpt_unwind, unwind);
    leakalloc::set_opt(leakalloc::kOpt_format, format);
    leakalloc::prof::reset(lg);
    leakalloc::prof::set_active(active);
  }
};

void sampled_pair_loop(void* p) {
  auto* state = static_cast<benchmark::State*>(p);
  for (auto _ : *state) {
    void* q = malloc(64);
    benchmark::DoNotOptimize(q);
    free(q);
  }
}

void BM_sampled_pair(benchmark::State& state) {
  ProfState saved;
  leakalloc::set_opt(leakalloc::kOpt_unwind, state.range(0));
  leakalloc::prof::set_active(true);
  leakalloc::prof::reset(0);
  bench_recurse(16, sampled_pair_loop, &state);
  state.SetItemsProcessed(state.iterations());
}

// ---- dumps ---------------------------------------------------------------------------
struct LiveSet {
  std::vector<void*> blocks;
  size_t next = 0;
};

void alloc_one(void* p) {
  auto* s = static_cast<LiveSet*>(p);
  size_t i = s->next++;
  s->blocks[i] = malloc(48 + (i % 16) * 16);
}

// Allocates `n` blocks at sample:0 from `stacks` distinct stacks (stacks a power of 2).
void make_live_set(LiveSet& s, size_t n, uint32_t stacks) {
  int bits = 0;
  while ((1u << bits) < stacks) ++bits;
  s.blocks.resize(n);
  s.next = 0;
  for (size_t i = 0; i < n; ++i) bench_bits0(static_cast<uint32_t>(i) & (stacks - 1), bits, alloc_one, &s);
}

void free_live_set(LiveSet& s) {
  for (void* b : s.blocks) free(b);
  s.blocks.clear();
}

void remove_dump(const char* path) {
  // Other formats append their suffix to the first one's path.
  unlink(path);
  char more[160];
  for (const char* suffix : {".pb.gz", ".pb", ".heap_v2", ".v2"}) {
    snprintf(more, sizeof more, "%s%s", path, suffix);
    unlink(more);
  }
}

// One trial dump to `path` (removed again); marks the benchmark skipped and returns
// false when it writes nothing.
bool dumps_work(benchmark::State& state, const char* path) {
  unlink(path);
  int rc = leakalloc::dump::request(path);
  struct stat st;
  bool ok = rc == 0 && stat(path, &st) == 0 && st.st_size > 0;
  remove_dump(path);
  if (!ok) state.SkipWithError("dump::request wrote nothing (dumps not available in this build)");
  return ok;
}

void BM_dump(benchmark::State& state) {
  ProfState saved;
  leakalloc::set_opt(leakalloc::kOpt_format, state.range(2));  // one format per run
  leakalloc::prof::set_active(true);
  leakalloc::prof::reset(0);
  char path[128];
  snprintf(path, sizeof path, "/tmp/leakalloc-bench-%d.heap", getpid());
  if (!dumps_work(state, path)) return;
  LiveSet s;
  make_live_set(s, static_cast<size_t>(state.range(0)), static_cast<uint32_t>(state.range(1)));
  leakalloc::prof::set_active(false);  // the benchmark's own allocations stay out
  struct stat st = {};
  for (auto _ : state) {
    leakalloc::dump::request(path);
    state.PauseTiming();
    stat(path, &st);
    remove_dump(path);
    state.ResumeTiming();
  }
  state.counters["live_sampled"] = static_cast<double>(leakalloc::prof::counters().sampled_live);
  state.counters["file_bytes"] = static_cast<double>(st.st_size);
  free_live_set(s);
}

void BM_dump_latency(benchmark::State& state) {
  ProfState saved;
  leakalloc::prof::set_active(true);
  leakalloc::prof::reset(0);
  char path[128];
  snprintf(path, sizeof path, "/tmp/leakalloc-bench-lat-%d.heap", getpid());
  if (!dumps_work(state, path)) return;
  LiveSet s;
  make_live_set(s, static_cast<size_t>(state.range(0)), 1024);
  // The probe's allocations are sampled too (sample:0).
  bench::measure_dump_latency(
      state, [&] { leakalloc::dump::request(path); }, [&] { remove_dump(path); });
  free_live_set(s);
}

}  // namespace

BENCHMARK(BM_capture_stack)
    ->ArgNames({"depth", "kind"})
    ->ArgsProduct({{8, 16, 32}, {0, 1, leakalloc::prof::kCaptureLibunwindUncached}});
BENCHMARK(BM_sampled_pair)->ArgName("kind")->Arg(0)->Arg(1);
// format: 1 heap (legacy text), 2 heap_v2, 4 pb (gzipped protobuf); see config/options.h.
BENCHMARK(BM_dump)
    ->ArgNames({"blocks", "stacks", "format"})
    ->ArgsProduct({{100000}, {1024, 16384}, {1, 2, 4}})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);
BENCHMARK(BM_dump_latency)->ArgName("blocks")->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

BENCHMARK_MAIN();
