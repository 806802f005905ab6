// Allocation micro benchmarks. This binary is linked against glibc only; the allocator
// under test is chosen at run time with LD_PRELOAD (libmimalloc.so.2, libleakalloc.so,
// ...), so every allocator runs exactly the same machine code around malloc/free.
//
//   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 ./bench_micro_alloc
//   LEAKALLOC_CONF=sample:0 LD_PRELOAD=build/libleakalloc.so ./bench_micro_alloc
//
// BM_dump_latency needs leakalloc's control API (found with dlsym, so the binary still
// runs under other allocators); it is skipped when the preloaded allocator has none or
// when prof.dump fails.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "latency_probe.h"

namespace {

// One malloc/free pair of the same size: the allocator's hottest path (thread-local
// free list), plus whatever the profiler adds on each call.
void BM_pair(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = malloc(size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// posix_memalign(align, 64) and free: C++ aligned new, Rust's allocator for types
// aligned to a cache line, and padded concurrent structures ask for these.
void BM_aligned_pair(benchmark::State& state) {
  size_t align = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = nullptr;
    if (posix_memalign(&p, align, 64) != 0) state.SkipWithError("posix_memalign failed");
    benchmark::DoNotOptimize(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// 64 blocks alive at once, freed in allocation order: the free lists are actually
// walked, and the sampler sees 64x the bytes before the blocks come back.
void BM_batch64(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  void* blocks[64];
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      blocks[i] = malloc(size);
      benchmark::DoNotOptimize(blocks[i]);
    }
    for (int i = 0; i < 64; ++i) free(blocks[i]);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}

// A buffer grown by realloc from 64 bytes to 1 MiB in 64-byte steps (a string builder
// that does not double): 16383 reallocs per iteration. An allocator that stays in place
// within a block's size class copies the buffer some 50 times; one that moves at every
// step copies it at every step.
constexpr size_t kGrowSteps = (size_t{1} << 20) / 64 - 1;
void BM_realloc_grow(benchmark::State& state) {
  for (auto _ : state) {
    char* p = static_cast<char*>(malloc(64));
    for (size_t n = 128; n <= (size_t{1} << 20); n += 64) {
      p = static_cast<char*>(realloc(p, n));
      p[n - 1] = 1;
    }
    benchmark::DoNotOptimize(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations() * kGrowSteps);
}

// Single-producer single-consumer ring of pointers: the producer (benchmark thread)
// mallocs, a helper thread frees, so every free is a cross-thread free.
struct Ring {
  static constexpr size_t kCap = 4096;
  void* slots[kCap];
  alignas(64) std::atomic<size_t> head{0};  // written by the producer
  alignas(64) std::atomic<size_t> tail{0};  // written by the consumer
  alignas(64) std::atomic<bool> stop{false};
};

void consumer(Ring* r) {
  size_t tail = r->tail.load(std::memory_order_relaxed);
  for (;;) {
    size_t head = r->head.load(std::memory_order_acquire);
    if (head == tail) {
      if (r->stop.load(std::memory_order_acquire) && r->head.load(std::memory_order_acquire) == tail) return;
      // Yield rather than spin: on a machine with fewer free cores than threads the
      // producer must get the CPU back to make progress.
      std::this_thread::yield();
      continue;
    }
    while (tail != head) {
      free(r->slots[tail % Ring::kCap]);
      ++tail;
    }
    r->tail.store(tail, std::memory_order_release);
  }
}

void BM_cross_thread_free(benchmark::State& state) {
  size_t size = static_cast<size_t>(state.range(0));
  Ring* ring = new Ring;
  std::thread t(consumer, ring);
  size_t head = 0;
  for (auto _ : state) {
    while (head - ring->tail.load(std::memory_order_acquire) >= Ring::kCap) std::this_thread::yield();
    void* p = malloc(size);
    benchmark::DoNotOptimize(p);
    ring->slots[head % Ring::kCap] = p;
    ++head;
    ring->head.store(head, std::memory_order_release);
  }
  ring->stop.store(true, std::memory_order_release);
  t.join();
  delete ring;
  state.SetItemsProcessed(state.iterations());
}

// ---- malloc latency while another thread dumps ---------------------------------------
using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);

// Each iteration: one prof.dump while a probe thread keeps calling malloc/free and
// records the time of every call. Counters: the dump's duration, the probe's max and
// 99.9th-percentile malloc+free time during the dumps, and `base_*`, the same figures
// over an equally long window with no dump (the machine's own noise).
void BM_dump_latency(benchmark::State& state) {
  auto mallctl = reinterpret_cast<MallctlFn>(dlsym(RTLD_DEFAULT, "leakalloc_mallctl"));
  if (mallctl == nullptr) {
    state.SkipWithError("no leakalloc_mallctl: the preloaded allocator is not leakalloc");
    return;
  }
  // Live blocks for the dump to walk (all sampled at sample:0).
  std::vector<void*> live(static_cast<size_t>(state.range(0)));
  for (auto& b : live) b = malloc(256);
  char path[128];
  snprintf(path, sizeof path, "/tmp/leakalloc-bench-%d.heap", getpid());
  unlink(path);
  const char* pp = path;
  if (mallctl("prof.dump", nullptr, nullptr, &pp, sizeof pp) != 0 || access(path, F_OK) != 0) {
    for (void* b : live) free(b);
    state.SkipWithError("prof.dump failed or wrote nothing (dumps not available in this build)");
    return;
  }
  unlink(path);
  bench::measure_dump_latency(
      state, [&] { mallctl("prof.dump", nullptr, nullptr, &pp, sizeof pp); },
      [&] { unlink(path); });
  for (void* b : live) free(b);
}

}  // namespace

BENCHMARK(BM_pair)->ArgName("size")->Arg(16)->Arg(64)->Arg(256)->Arg(4096)->Arg(65536)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_batch64)->ArgName("size")->Arg(16)->Arg(64)->Arg(256)->Arg(4096)->Arg(65536)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_aligned_pair)->ArgName("align")->Arg(64)->Arg(128)->Arg(4096)->UseRealTime();
BENCHMARK(BM_realloc_grow)->UseRealTime();
BENCHMARK(BM_cross_thread_free)->ArgName("size")->Arg(16)->Arg(64)->Arg(256)->Arg(4096)->Arg(65536)->UseRealTime();
BENCHMARK(BM_dump_latency)->Arg(100000)->Iterations(5)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
