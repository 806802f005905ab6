// Random replacement in a large steady live set (issue 29), the shape of node-dot-cpp's
// alloc-test and of mimalloc-bench's mstress: each of 2 threads keeps 20,000 blocks
// (60% of 8-128 B, 35% of 128 B-2 KiB, 4% of 2-32 KiB, 1% of 64-264 KiB) and at each step
// frees a random one and allocates a new block into its slot. So nearly every free is of
// a block nobody has touched for a long time: its header, and the allocator's metadata
// for it, are cache misses. One step in 64 swaps the new block with the other thread
// through a mutex-guarded exchange (that block is then freed by a thread that did not
// allocate it); one in 8 inserts into or erases from the thread's
// std::map<int, std::string> (nodes and strings through operator new/delete).
//
// Deterministic per thread (each has its own seed); the interleaving of the exchange is
// the scheduler's. Scale 1 runs 0.2-0.5 s under mimalloc on an idle machine.
//
// With a second argument DUMPFILE, run under leakalloc at sample:0: after the threads
// have joined and with the live set still in place, the program asks for a dump through
// leakalloc_mallctl("prof.dump") and prints the count and requested bytes of the blocks
// randrepl_block() holds then (every slot and the exchange's block), which the dump must
// show for that function exactly (bench/CMakeLists.txt, bench_randrepl_dump).
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "common.h"

namespace {

constexpr int kThreads = 2;
constexpr long kLive = 20000;
constexpr long kSteps = 600000;  // per thread at scale 1

struct Block {
  char* p;
  size_t size;
};

// The size mix of issue 29, uniform within each range.
size_t pick_size(uint64_t* rng) {
  unsigned r = static_cast<unsigned>(rng_next(rng) % 100);
  if (r < 60) return rng_range(rng, 8, 128);
  if (r < 95) return rng_range(rng, 129, 2048);
  if (r < 99) return rng_range(rng, 2049, 32768);
  return rng_range(rng, 65536, 270336);
}

// Every block of the live set comes from here, so that a dump names it.
__attribute__((noinline)) Block randrepl_block(size_t size, long stamp) {
  char* p = static_cast<char*>(malloc(size));
  if (p == nullptr) abort();
  // Touch the block as a program filling it would, at both ends.
  std::memset(p, static_cast<int>(stamp & 0x7f), size < 16 ? size : 16);
  p[size - 1] = static_cast<char>(stamp);
  return Block{p, size};
}

struct Exchange {
  std::mutex lock;
  Block held;
};
Exchange g_exchange;

struct Worker {
  Block* slots;
  long live;
  long steps;
  uint64_t rng;
  uint64_t sum;
};

void work(Worker* w) {
  std::map<int, std::string> map;
  uint64_t* rng = &w->rng;
  for (long i = 0; i < w->live; ++i) w->slots[i] = randrepl_block(pick_size(rng), i);
  for (long i = 0; i < w->steps; ++i) {
    size_t k = static_cast<size_t>(rng_next(rng) % static_cast<uint64_t>(w->live));
    free(w->slots[k].p);
    w->slots[k] = randrepl_block(pick_size(rng), i);
    if ((i & 63) == 0) {
      std::lock_guard<std::mutex> g(g_exchange.lock);
      Block mine = w->slots[k];
      w->slots[k] = g_exchange.held;
      g_exchange.held = mine;
    }
    if ((i & 7) == 0) {
      int key = static_cast<int>(rng_next(rng) % 4096);
      if (rng_next(rng) & 1) {
        // 16..80 characters: past the small-string buffer, so the string is a heap block.
        auto r = map.try_emplace(key);
        if (r.second) r.first->second.assign(rng_range(rng, 16, 80), static_cast<char>('a' + key % 26));
      } else {
        auto it = map.lower_bound(key);
        if (it != map.end()) {
          w->sum += it->second.size();
          map.erase(it);
        }
      }
    }
    w->sum += static_cast<unsigned char>(w->slots[k].p[0]);
  }
  w->sum += map.size();
}

typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);

}  // namespace

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  const char* dump_path = argc > 2 ? argv[2] : nullptr;
  long live = scale < 1 ? scaled(scale, kLive) : kLive;
  long steps = scaled(scale, kSteps);
  Worker w[kThreads];
  for (int t = 0; t < kThreads; ++t) {
    w[t].slots = static_cast<Block*>(malloc(static_cast<size_t>(live) * sizeof(Block)));
    if (w[t].slots == nullptr) abort();
    w[t].live = live;
    w[t].steps = steps;
    w[t].rng = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(t + 7);
    w[t].sum = 0;
  }
  g_exchange.held = randrepl_block(100, 0);
  std::thread threads[kThreads];
  for (int t = 0; t < kThreads; ++t) threads[t] = std::thread(work, &w[t]);
  for (int t = 0; t < kThreads; ++t) threads[t].join();

  if (dump_path != nullptr) {
    // This program runs under a preloaded allocator, not linked with one: look it up.
    auto ctl = reinterpret_cast<mallctl_fn>(dlsym(RTLD_DEFAULT, "leakalloc_mallctl"));
    if (ctl == nullptr) {
      std::fprintf(stderr, "randrepl: no leakalloc_mallctl: run it under leakalloc to dump\n");
      return 1;
    }
    unsigned long long blocks = 1, bytes = g_exchange.held.size;
    for (int t = 0; t < kThreads; ++t)
      for (long i = 0; i < live; ++i) bytes += w[t].slots[i].size, ++blocks;
    if (ctl("prof.dump", nullptr, nullptr, &dump_path, sizeof dump_path) != 0) {
      std::fprintf(stderr, "randrepl: prof.dump failed\n");
      return 1;
    }
    std::printf("randrepl: randrepl_block holds %llu blocks, %llu bytes\n", blocks, bytes);
  }

  uint64_t sum = 0;
  for (int t = 0; t < kThreads; ++t) {
    sum += w[t].sum;
    for (long i = 0; i < live; ++i) free(w[t].slots[i].p);
    free(w[t].slots);
  }
  free(g_exchange.held.p);
  std::printf("randrepl: %d threads x %ld live x %ld steps, checksum %llu\n", kThreads, live, steps,
              static_cast<unsigned long long>(sum));
  return 0;
}
