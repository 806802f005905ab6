// The per-thread state, owned by the allocator: one initial-exec TLS object per thread
// (alloc/thread_life.cpp defines it), which the malloc and free fast paths reach at fixed
// offsets from %fs.
//
//   profile       the profiler's part (profile/thread_profile.h): the sampler's
//                 countdown, the registry phase and index, the owner-written counters,
//                 the birth clock's cache, the live-record caches. First, so that the
//                 profiler can find it from the object's address without this layout.
//   cache_*       the thread cache's switches (alloc/thread_cache.h)
//   cache, aligned_cache  the bins of freed blocks, by size class
//
// The thread's life: a thread starts at its first slow-path allocation or free
// (thread_settle, alloc/thread_life.cpp): the profiler registers it, and the allocator hooks
// its one exit hook, which gives the bins back and then ends the profiler's part. See
// alloc/alloc.h (thread_start).
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/thread_cache.h"
#include "profile/thread_profile.h"

namespace leakalloc {

struct ThreadState {
  ThreadProfile profile;
  uint8_t cache_ready;     // the bins' rooms are set (alloc/thread_cache.h)
  uint8_t cache_mode;      // CacheMode (alloc/alloc.h): thread.tcache.enabled
  uint8_t end_hooked;      // the exit hook (thread_end, alloc/thread_life.cpp) is registered
  CacheBin cache[kCacheBins];  // freed blocks by size class (alloc/thread_cache.h)
  CacheBin aligned_cache[kCacheBins];  // freed small aligned blocks, by size class
};

static_assert(offsetof(ThreadState, profile) == 0,
              "the profiler finds its part at the start of the state (profile/thread_profile.h)");

LA_ALWAYS_INLINE ThreadState& state_of(ThreadProfile& p) { return *reinterpret_cast<ThreadState*>(&p); }
LA_ALWAYS_INLINE const ThreadState& state_of(const ThreadProfile& p) {
  return *reinterpret_cast<const ThreadState*>(&p);
}

}  // namespace leakalloc
