// A thread's per-thread state as the profiler sees it: the sampler's countdown and
// generator, the re-entrancy guard, the registry index and phase, the owner-written
// counters, the birth clock's cache, the live-record caches and the stack memo.
//
// Contract: included by alloc/ (whose ThreadState embeds it) and by the profiler; it
// includes nothing above base/. Every field is written by its own thread only, except
// those whose comment says otherwise (bytes_left by prof::reset, counters read by stats,
// rec_pending and unwinding read under the registry lock).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "base/clock.h"

namespace leakalloc {
namespace frame_cache {
struct MemoSet;
}

// Counters that the owning thread writes and other threads only read (relaxed atomic
// loads). No read-modify-write is atomic: on x86-64 an add is one unlocked `add` to
// memory, whose aligned 8-byte store other threads see whole, where an atomic relaxed
// load and store are three instructions (the fast paths run four of these per pair).
struct OwnerCounter {
  uint64_t v;  // TLS is zero-filled: no initializer, so no dynamic init
  LA_ALWAYS_INLINE void add(uint64_t d) {
#if defined(__x86_64__)
    asm volatile("addq %1, %0" : "+m"(v) : "er"(d));
#else
    __atomic_store_n(&v, __atomic_load_n(&v, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
#endif
  }
  uint64_t get() const { return __atomic_load_n(&v, __ATOMIC_RELAXED); }
  void clear() { __atomic_store_n(&v, 0, __ATOMIC_RELAXED); }  // by the owner
};

// The per-thread counters, one list: the struct field, the exited-thread totals and the
// summation in profile/threads.cpp all come from it.
#define LEAKALLOC_THREAD_COUNTERS(X) \
  X(allocs)      /* blocks allocated */                         \
  X(frees)       /* blocks freed */                             \
  X(alloc_bytes) /* requested bytes allocated */                \
  X(free_bytes)  /* requested bytes freed */                    \
  X(records)     /* sampled blocks recorded (live records published) */ \
  X(record_frees) /* live records handed back */

enum CounterId : int {
#define LEAKALLOC_COUNTER_ENUM(name) kCounter_##name,
  LEAKALLOC_THREAD_COUNTERS(LEAKALLOC_COUNTER_ENUM)
#undef LEAKALLOC_COUNTER_ENUM
  kCounterCount
};

enum ThreadPhase : uint8_t { kThreadNew = 0, kThreadLive = 1, kThreadExited = 2 };

constexpr uint32_t kRecordCacheMax = 64;
constexpr uint32_t kRecordPendingSlots = 8;  // a power of two

// The profiler's part of a thread's state. alloc owns the thread: its ThreadState
// (alloc/thread_state.h) holds this as its first member, next to the thread cache's bins,
// in one initial-exec TLS object, so that the malloc fast path reaches both at fixed
// offsets from %fs. The profiler is handed this part by the allocator's calls, and finds
// the calling thread's own through this_thread_profile(); it never sees the bins.
struct ThreadProfile {
  // Sampler countdown; <= 0 sends the allocation to sample_slow. Atomic only so that
  // prof::reset() may zero other threads' countdowns (relaxed: plain loads and stores).
  std::atomic<int64_t> bytes_left;
  uint32_t guard;          // ReentrancyGuard depth
  int64_t saved_bytes_left;  // countdown set aside while the guard is held
  uint8_t phase;           // ThreadPhase
  uint32_t sample_gen;     // sampling generation the countdown was drawn under
  uint32_t thread_index;   // index in the thread registry
  uint64_t rng;            // sampler PRNG state
  OwnerCounter counter[kCounterCount];
  CoarseCache clock;       // the birth clock's last reading (base/clock.h birth_word_now)
  std::atomic<uint8_t> unwinding;  // inside a stack capture (the fork gate waits for it)
  uintptr_t stack_hi;      // top of this thread's stack (unwind::stack_top), bounds the walkers
  uint32_t rec_cache_n;    // free live-record slots owned by this thread
  uint32_t rec_cache[kRecordCacheMax];
  // Live records of blocks this thread freed, not yet retired (profile/live_set.cpp):
  // generation << 32 | record id + 1, or 0. A sample reuses one kPendingLag frees old;
  // walkers read these (under the registry lock) to leave them out.
  uint64_t rec_pending[kRecordPendingSlots];
  uint32_t rec_pending_head;  // where the next one goes (mod kRecordPendingSlots)
  // The last stacks this thread sampled (profile/frame_cache.h), 13 KB: attached on the
  // thread's first sampled walk (threads::attach_memo) and given back for reuse at its
  // exit, so threads that never sample do not carry one. Null until then and after.
  frame_cache::MemoSet* memo;
};

// The calling thread's state, defined by alloc (alloc/thread_state.h, where a
// static_assert keeps the ThreadProfile at its start). Declared here with an incomplete
// type: the profiler needs its address, never its layout. initial-exec TLS: a fixed
// offset from %fs, no __tls_get_addr, no allocation on first use.
struct ThreadState;
extern LA_HIDDEN LA_TLS ThreadState t_state;

LA_ALWAYS_INLINE ThreadProfile& this_thread_profile() { return *reinterpret_cast<ThreadProfile*>(&t_state); }

}  // namespace leakalloc
