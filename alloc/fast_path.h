// The malloc and free fast paths, inlined into every exported entry point
// (alloc/override.cpp) and into the la_* functions (alloc/alloc.cpp).
//
// An unsampled malloc of up to kCacheMaxRequest bytes is: a pop from this thread's
// cache bin of its size class (alloc/thread_cache.h), one sampler decrement, two
// owner-only counters, the birth clock (two loads and a compare, base/clock.h) and two
// header stores. An unsampled free of such a block is: two header loads, the check, a
// push onto the bin and two counters; so is the free of a small aligned block, onto the
// bin of its class among the thread's bins of aligned blocks. An empty bin (malloc) or
// a full one (free), and any larger block, calls mimalloc instead. Whatever else can
// happen (NULL from mimalloc, a sample, a thread not yet registered or past its exit
// hook, a sampled or aligned block, a bad pointer) is one unlikely branch to an
// out-of-line function in alloc.cpp.
//
// The entry point's frame address travels as an argument (`frame`, alloc/alloc.h) to the
// slow path, which is the only place that needs it (stack capture starts there). It is
// the entry point's %rbp, which the call to mimalloc preserves: the fast path neither
// loads nor stores anything for it.
#pragma once

#include <mimalloc.h>

#include <cstddef>
#include <cstdint>

#include "alloc/alloc.h"
#include "alloc/header.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"
#include "profile/sampler.h"

namespace leakalloc {
namespace slow {
// `base` is mimalloc's block (or nullptr); finishes the allocation of `size` bytes.
// `flags` is 0 or kUncachedBit (alloc/header.h).
void* alloc(void* base, size_t size, uint64_t flags, EntryFrame frame);
// Frees `p` after the fast path found it sampled, aligned, odd, or on a thread that is
// not registered (yet, or any more).
void free(void* p, const char* op);
void* enomem();
// The rest of malloc: a request of up to kCacheMaxRequest bytes whose bin is empty, or
// that is sampled, or that comes after a clock tick; and every larger request.
void* malloc_small(size_t size, EntryFrame frame);
void* malloc_large(size_t size, EntryFrame frame);
}  // namespace slow

LA_ALWAYS_INLINE void count_alloc_fast(ThreadState& t, size_t size) {
  t.profile.counter[kCounter_allocs].add(1);
  t.profile.counter[kCounter_alloc_bytes].add(size);
}

LA_ALWAYS_INLINE void count_free_fast(ThreadState& t, size_t size) {
  t.profile.counter[kCounter_frees].add(1);
  t.profile.counter[kCounter_free_bytes].add(size);
}

LA_ALWAYS_INLINE void* alloc_finish(void* base, size_t size, uint64_t flags, EntryFrame frame) {
  ThreadState& t = t_state;
  int64_t left = countdown_after(t.profile, size);
  if (LA_UNLIKELY(base == nullptr || left <= 0 || t.profile.phase == kThreadExited))
    return slow::alloc(base, size, flags, frame);
  countdown_keep(t.profile, left);
  count_alloc_fast(t, size);
  void* user = static_cast<char*>(base) + kHeaderSize;
  header_write_birth(user, size | flags, birth_word_now(t.profile.clock));
  return user;
}

// The cache hit calls nothing: everything else (an empty bin, a sample, a clock tick, a
// larger request) leaves through one call at the end, so the exported malloc saves no
// registers. `frame` stays valid in the callee whether the compiler emits a call or a
// tail call (which pushes the same %rbp into the same slot, below the same return
// address).
LA_ALWAYS_INLINE void* malloc_fast(size_t size, EntryFrame frame) {
  if (LA_UNLIKELY(size > kCacheMaxRequest)) return slow::malloc_large(size, frame);
  ThreadState& t = t_state;
  uint32_t salt = cache_bin_offset(size);
  CacheBin& b = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(t.cache) + salt);
  void* base = b.head;
  int64_t left = countdown_after(t.profile, size);
  // A thread that is not registered, or past its exit hook, has empty bins.
  if (LA_UNLIKELY(base == nullptr || left <= 0 || !birth_ticks_current(t.profile.clock)))
    return slow::malloc_small(size, frame);
  cache_unlink_head(b, base, salt);
  countdown_keep(t.profile, left);
  count_alloc_fast(t, size);
  void* user = static_cast<char*>(base) + kHeaderSize;
  header_write_birth(user, size, t.profile.clock.birth);
  return user;
}

// An aligned request that the bin of aligned blocks of its class can serve (alloc/alloc.cpp,
// la_aligned): the bin's newest block, when it is aligned enough. nullptr otherwise, and
// for an alignment that is no power of two: the caller then goes the whole way, which
// checks and reports. Inlined into the exported aligned entry points, so that a hit
// costs no call and no save of errno.
LA_ALWAYS_INLINE void* aligned_cached(size_t align, size_t size, EntryFrame frame) {
  if (size > kCacheMaxRequest || align > kCacheMaxAlign || align <= kHeaderSize || (align & (align - 1)) != 0)
    return nullptr;
  uint32_t offset = cache_bin_offset(size);
  CacheBin& b = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(t_state.aligned_cache) + offset);
  void* head = b.head;
  if (head == nullptr || ((reinterpret_cast<uintptr_t>(head) + kHeaderSize) & (align - 1)) != 0) return nullptr;
  cache_unlink_head(b, head, offset + kAlignedSalt);
  return alloc_finish(head, size, kAlignedCacheBit, frame);
}

LA_ALWAYS_INLINE void free_fast(void* p, const char* op) {
  if (p == nullptr) return;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  // A pointer that is misaligned, or starts a page (its header would be on the page
  // before, which a foreign pointer may not have mapped), is looked at slowly.
  if (LA_UNLIKELY(((a & 15) != 0) | ((a & 4095) == 0))) return slow::free(p, op);
  BlockHeader* h = header_of(p);
  uint64_t tag = h->tag;
  if (LA_UNLIKELY(!header_valid(p, tag, h->word1))) return slow::free(p, op);
  ThreadState& t = t_state;
  // Sampled and aligned blocks have flag bits above the size, so they compare larger.
  // A bin without room (full, or the thread's cache is not set up) leaves the block to
  // mimalloc. Only a live thread's bins have room (cache_setup gives it, the exit hook
  // takes it back before the thread's phase changes), so the hit needs no phase check.
  if (LA_LIKELY(tag <= kCacheMaxRequest)) {
    uint32_t salt = cache_bin_offset(tag);
    CacheBin& b = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(t.cache) + salt);
    if (LA_LIKELY(b.room > 0)) {
      cache_push(b, h, salt);
      count_free_fast(t, tag);
      return;
    }
  }
  // A small aligned block goes to the thread's bins of aligned blocks (alloc/alloc.cpp,
  // la_aligned); a full one is the slow path's business.
  if (LA_UNLIKELY((tag & ~kUnsampledSizeMask) == kAlignedCacheBit)) {
    size_t size = tag & kUnsampledSizeMask;
    uint32_t offset = cache_bin_offset(size);
    CacheBin& b = *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(t.aligned_cache) + offset);
    if (LA_UNLIKELY(b.room <= 0)) return slow::free(p, op);
    cache_push(b, h, offset + kAlignedSalt);
    count_free_fast(t, size);
    return;
  }
  if (LA_UNLIKELY((tag > kUnsampledSizeMask) | (t.profile.phase != kThreadLive))) return slow::free(p, op);
  h->word1 = freed_mark(p);
  count_free_fast(t, tag);
  mi_free(h);
}

}  // namespace leakalloc
