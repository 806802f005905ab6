// The malloc and free fast paths, inlined into every exported entry point
// (alloc/override.cpp) and into the la_* functions (alloc/alloc.cpp).
//
// An unsampled malloc is: mimalloc, one sampler decrement, two owner-only counters, the
// birth clock (two loads and a compare, alloc/base.h) and two header stores. An
// unsampled free is: two header loads, the check, one store, two counters and a tail
// call to mimalloc. Whatever else can happen (NULL
// from mimalloc, a sample, a thread not yet registered or past its exit hook, a sampled
// block, a bad pointer) is one unlikely branch to an out-of-line function in alloc.cpp.
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
#include "profile/sampler.h"

namespace leakalloc {
namespace slow {
// `base` is mimalloc's block (or nullptr); finishes the allocation of `size` bytes.
void* alloc(void* base, size_t size, EntryFrame frame);
// Frees `p` after the fast path found it sampled, odd, or on a thread that is not
// registered (yet, or any more).
void free(void* p, const char* op);
void* enomem();
}  // namespace slow

LA_ALWAYS_INLINE void* alloc_finish(void* base, size_t size, EntryFrame frame) {
  ThreadState& t = t_state;
  int64_t left = t.bytes_left.load(std::memory_order_relaxed) - static_cast<int64_t>(size);
  if (LA_UNLIKELY(base == nullptr || left <= 0 || t.phase == kThreadExited))
    return slow::alloc(base, size, frame);
  t.bytes_left.store(left, std::memory_order_relaxed);
  t.counter[kCounter_allocs].add(1);
  t.counter[kCounter_alloc_bytes].add(size);
  void* user = static_cast<char*>(base) + kHeaderSize;
  header_write_ticks(user, size, birth_ticks_now(t.clock));
  return user;
}

LA_ALWAYS_INLINE void* malloc_fast(size_t size, EntryFrame frame) {
  if (LA_UNLIKELY(size > kMaxRequest)) return slow::enomem();
  return alloc_finish(mi_malloc(size + kHeaderSize), size, frame);
}

LA_ALWAYS_INLINE void free_fast(void* p, const char* op) {
  if (p == nullptr) return;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  // A pointer that is misaligned, or starts a page (its header would be on the page
  // before, which a foreign pointer may not have mapped), is looked at slowly.
  if (LA_UNLIKELY(((a & 15) != 0) | ((a & 4095) == 0))) return slow::free(p, op);
  BlockHeader* h = header_of(p);
  uint64_t tag = h->tag;
  ThreadState& t = t_state;
  // Sampled blocks have the tag's top bit set: one sign test sends them, bad pointers
  // and threads that are not (or no longer) registered to the slow path together.
  if (LA_UNLIKELY(!header_valid(p, tag, h->word1) | (static_cast<int64_t>(tag) < 0) |
                  (t.phase != kThreadLive)))
    return slow::free(p, op);
  h->word1 = freed_mark(p);
  t.counter[kCounter_frees].add(1);
  t.counter[kCounter_free_bytes].add(tag);
  mi_free(h);
}

}  // namespace leakalloc
