// The profiler's internal API: what the dump writers (profile/dump_*.cpp) and the control
// tree (ctl/) may call. Allocator code (alloc/) uses only profile/sampler.h.
//
// Contract:
// - Every function here may be called from any thread at any time after init, including
//   while other threads allocate and free. None of them allocates through the tracked
//   path; the walkers never block allocating threads (the live set is read lock-free).
// - Callers that may allocate (libc, formatting through stdio, ...) must hold a
//   ReentrancyGuard so those allocations are served untracked.
// - Lock ranks: every lock leakalloc owns, in the only order they may nest; the fork
//   handler (ctl/startup.cpp fork_prepare) takes them in this order, after closing the
//   fork gate that waits for in-flight stack captures:
//     1. dump lock            (profile/dump.cpp: one dump at a time)
//     2. thread registry      (profile/threads.cpp)
//     3. stack-table stripes  (profile/stack_table.cpp, ascending)
//     4. live-set chunk map   (profile/live_set.cpp: mapping a new record chunk)
//     5. live-set free list   (profile/live_set.cpp)
//   Leaf: the stats snapshot lock (ctl/stats.cpp) is never held while taking another;
//   its own atfork handlers take and release it.
//   No lock is held while unwinding.
#pragma once

#include <cstddef>
#include <cstdint>

namespace leakalloc {
namespace prof {

// ---- stacks --------------------------------------------------------------------------
// Stack ids are >= 1; 0 means "not sampled". kOverflowStackId collects every sample
// whose stack could not be stored because the table reached max_stacks; its one frame
// is the address of leakalloc_stack_table_full() so readers show a telling name.
constexpr uint32_t kOverflowStackId = 1;

// Lifetimes of freed sampled blocks, per stack, in doubling buckets of milliseconds:
// bucket 0 holds [0, 1 ms), bucket b >= 1 holds [2^(b-1), 2^b) ms, and the last one
// everything from 2^30 ms (12.4 days) on. Lifetimes come from the block header's birth
// (ticks of 1.05 ms), so a block lives at most a tick longer than measured.
constexpr uint32_t kLifetimeBuckets = 32;
inline uint32_t lifetime_bucket(uint64_t lifetime_ns) {
  uint64_t ms = lifetime_ns / 1000000;
  if (ms == 0) return 0;
  uint32_t b = 64 - static_cast<uint32_t>(__builtin_clzll(ms));
  return b < kLifetimeBuckets ? b : kLifetimeBuckets - 1;
}
// Lower edge of a bucket, in ms (0 for bucket 0).
inline uint64_t lifetime_bucket_floor_ms(uint32_t b) { return b == 0 ? 0 : uint64_t{1} << (b - 1); }

struct StackView {
  uint32_t id;
  uint32_t depth;
  const uintptr_t* frames;  // return addresses, leaf first, allocator frames removed
  uint64_t cum_objs;        // sampled allocations ever made from this stack
  uint64_t cum_bytes;       // their requested bytes
};

// Number of stack ids in use (ids are 1..stack_count()).
uint32_t stack_count();
// Fills `out` for id; false if the id is not (yet) published.
bool stack_get(uint32_t id, StackView* out);
// The lifetime histogram of the stack's freed sampled blocks (kLifetimeBuckets counts,
// cumulative since start or prof.reset); false if the id is not (yet) published.
bool stack_lifetimes(uint32_t id, uint32_t* out);

// ---- threads -------------------------------------------------------------------------
struct ThreadView {
  uint32_t index;  // small index stored in live records
  int32_t tid;     // kernel thread id
  char name[16];   // last known name (refreshed by threads_refresh_names)
};
uint32_t thread_count();
// The registry hands the entry of a thread that has ended to a new thread once no live
// sampled block names it (profile/threads.cpp reclaim). A dump reads thread_epoch()
// before its walk and passes it here: an entry freed for reuse after that may hold
// another thread now, so thread_get() returns false for it rather than a wrong name.
uint32_t thread_epoch();
// Fills `out` for index; false if the index was never used or was reused after `epoch`.
bool thread_get(uint32_t index, ThreadView* out, uint32_t epoch);
// Re-reads /proc/self/task/<tid>/comm for live threads (call from the dump thread,
// under a ReentrancyGuard).
void threads_refresh_names();

// ---- live sampled blocks -------------------------------------------------------------
struct LiveBlock {
  uint32_t stack_id;
  uint32_t thread_index;
  uint64_t size;      // requested bytes
  uint64_t birth_ns;  // coarse monotonic clock (base/clock.h coarse_now_ns)
  uint32_t record;    // the live record's id + 1, as in the block header
  uint32_t generation;  // the record's publication (7 bits), as in the block header
};
using LiveBlockFn = void (*)(void* ctx, const LiveBlock& block);
// Calls fn for every live sampled block born at or before `born_before_ns`
// (pass UINT64_MAX for all). Blocks allocated or freed during the walk may or may not
// be seen; every block that stays live for the whole walk is seen exactly once.
void live_walk(uint64_t born_before_ns, LiveBlockFn fn, void* ctx);

// ---- sampling state ------------------------------------------------------------------
int lg_sample();                 // current sample:N
uint64_t sample_period();        // 2^N (1 when N == 0)
bool active();
void set_active(bool on);
// For good: the allocator is short of address space (alloc.cpp degrade); later option
// loads and the stack table's own failure leave profiling off without another message.
void switch_off();
// True when the first malloc found too little room under an address-space limit for the
// profiler's tables (profiler.cpp kProfilingRoom): none were reserved and profiling is
// off for good. The constructor then sends the allocator to glibc (one message).
bool short_of_address_space();
// Clears cumulative per-stack counts, the sampled-allocation total and the count of
// samples dropped for want of stack-table room, and starts sampling at 2^lg bytes (every
// thread's next allocation draws under the new rate). Live blocks stay tracked (a dump
// after reset still shows memory that is alive), as jemalloc's prof.reset keeps live
// objects but discards history. Stored stacks stay: ids are never reused.
void reset(int lg);

// Seeds the calling thread's sampler PRNG and restarts its countdown, so a test can
// replay the same sampling decisions. Not for production use.
void seed_thread_sampler(uint64_t seed);

// Unsampling (docs/FORMATS.md): expected number of allocations a sampled block of `size`
// bytes stands for, at `period` bytes per sample. 1 at period 1 (sample:0).
double unsample_scale(uint64_t size, uint64_t period);

// ---- start-up (called once, in this order, by ctl/startup.cpp) ----------------------
// Reloads the options if the first malloc came before `environ` was set.
void start_options();
// Primes the unwinder (entries_lo: alloc/alloc.h entry_points_lo) and maps the stack
// table, now that the options are final.
void start_tables(uintptr_t entries_lo);
// From here on allocations are sampled.
void start_sampling();

// ---- counters ------------------------------------------------------------------------
struct Counters {
  uint64_t sampled_live;     // live sampled blocks
  uint64_t sampled_total;    // sampled allocations since start or the last reset
  uint64_t stacks;           // distinct stacks stored
  uint64_t stacks_dropped;   // samples counted into the overflow stack
  uint64_t profiler_bytes;   // memory the profiler's tables use, the sum of the next four;
                             // reserved, never-touched address space is not counted
  uint64_t stack_bytes;      // the stack table
  uint64_t record_bytes;     // live-record chunks
  uint64_t thread_bytes;     // the thread registry and the threads' stack memos
  uint64_t unwind_bytes;     // the frame-recipe cache (profile/frame_cache.h)
};
Counters counters();

// Whole-allocator totals, from per-thread counters (exact when quiescent).
struct AllocTotals {
  uint64_t live_blocks;      // blocks malloc'ed and not yet freed (every block, sampled or not)
  uint64_t allocated_bytes;  // requested bytes in live blocks (headers excluded)
  uint64_t total_allocs;     // allocations since start
  uint64_t total_bytes;      // requested bytes allocated since start (drives lg_interval)
};
AllocTotals alloc_totals();

// Stack capture, exposed for the benchmarks and tests: fills `out` with up to `max`
// return addresses of the caller's stack, leaf first, leakalloc's own frames removed.
// kind: 0 = libunwind (through the frame-recipe cache, as sampling does), 1 = frame
// pointers (see config/options.h UnwindKind), kCaptureLibunwindUncached = unw_backtrace alone.
constexpr int kCaptureLibunwindUncached = 2;
size_t capture_stack(uintptr_t* out, size_t max, int kind);

}  // namespace prof

// While one of these is alive on a thread, that thread's allocations are served
// untracked: used around unwinding, dumping, symbolising and any libc call made by
// leakalloc itself. Nests.
class ReentrancyGuard {
 public:
  ReentrancyGuard();
  ~ReentrancyGuard();
  ReentrancyGuard(const ReentrancyGuard&) = delete;
  ReentrancyGuard& operator=(const ReentrancyGuard&) = delete;
};

}  // namespace leakalloc

extern "C" void leakalloc_stack_table_full(void);
