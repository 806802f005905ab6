// The sampler's fast path: the only profiler code the allocator
// inlines into malloc.
//
// Sampling maths (jemalloc's lg_prof_sample, tcmalloc's Sampler). We want each
// allocated byte to be "hit" by a Poisson process of rate 1/P (P = 2^sample bytes), so
// that an allocation of s bytes is sampled with probability 1 - exp(-s/P) and the
// readers' unsampling (count * 1/(1-exp(-(s/P)))) is unbiased. The gaps between hits
// of such a process are exponential with mean P, so each thread keeps a countdown
// `bytes_left` drawn as -ln(U) * P (U uniform in (0,1]); every allocation subtracts
// its size; when the countdown reaches <= 0 the allocation is sampled and a new gap
// is drawn (memorylessness makes discarding the remainder exact). sample:0 (P = 1)
// keeps the countdown at 0, so every allocation is sampled.
//
// Fast path: one thread-local subtraction and a compare. Everything else (first call
// on a thread, sampling, re-entrancy, inactive profiler, rate changes) is in
// sample_slow(), out of line.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "profile/entry_frame.h"
#include "profile/thread_profile.h"
#include "base/base.h"
#include "profile/frame_cache.h"

namespace leakalloc {

namespace prof {
// Out of line. Called when the countdown reaches <= 0. Returns 0 (not sampled) or the
// sampled block's live record as generation << 32 | record id + 1; then *birth_ns is the
// birth time given to the record (read after the stack capture), for the header too.
// `frame` is the malloc/new entry point's frame (alloc/alloc.h), where the stack starts.
uint64_t sample_slow(ThreadProfile& t, size_t size, EntryFrame frame, uint64_t* birth_ns);
// A sampled block that realloc() resizes in place is sampled again there, as a block
// allocated by that call would be: a new live record with the stack at `frame` and the
// new size, born at `birth_ns` (the block's; the memory has been held since). Returns it
// as sample_slow() does, or 0 when it cannot be recorded (leakalloc's own call, the
// profiler inactive, no memory); the caller then moves the block instead. The sampler's
// countdown is not charged: the block is sampled already.
uint64_t sample_again(ThreadProfile& t, size_t size, EntryFrame frame, uint64_t birth_ns);
// An unsampled block that realloc() grows in place by `growth` bytes whose countdown ran
// out (<= 0): the new bytes meet the sampler as a new allocation's would, so a block is
// sampled with the probability its whole size gives it (1 - exp(-size/P)), which is
// what the readers' unsampling assumes. Draws the next gap; returns what sample_slow()
// returns, the record (stack at `frame`, `size`, born at `birth_ns`) when sampled.
uint64_t sample_growth(ThreadProfile& t, size_t growth, size_t size, EntryFrame frame, uint64_t birth_ns);
// Registers a thread that has not allocated yet (kThreadNew) so that its counters are
// summed and its exit hook runs; returns whether the thread is registered and live. It
// declines (false) before initialisation and inside leakalloc's own allocations.
bool adopt_thread(ThreadProfile& t);
// Release a sampled block's live record; any thread. `birth_ns` (the header's) dates
// the block for its stack's lifetime histogram.
void record_free(uint32_t record, uint32_t generation, uint64_t birth_ns);
// Requested size stored in a live record.
uint64_t record_size(uint32_t record);
// Ensures the allocator is initialised (secret, options); cheap after the first call.
void ensure_init();
// g_on_tick (base/clock.h): what the dump thread asks for (dump::needs_attention) is
// looked at on each thread's first allocation after a tick of the coarse clock, not only
// at a sample, so a process at sample:19 that allocates a little answers `leakalloc
// dump` within a tick of its next allocation instead of after 512 KiB of them. Not from
// leakalloc's own allocations; errno is left as it was.
void on_tick();
}  // namespace prof

// The sampler's countdown, charged: what is left after `bytes` more. > 0: no sample,
// and the caller keeps it (countdown_keep) once it is sure to take its fast path; <= 0:
// the slow path draws the next gap. The one place the countdown arithmetic is written
// (malloc's fast paths, realloc's growth in place, sample_alloc below).
LA_ALWAYS_INLINE int64_t countdown_after(const ThreadProfile& t, size_t bytes) {
  return t.bytes_left.load(std::memory_order_relaxed) - static_cast<int64_t>(bytes);
}
LA_ALWAYS_INLINE void countdown_keep(ThreadProfile& t, int64_t left) {
  t.bytes_left.store(left, std::memory_order_relaxed);
}

// Fast path of every allocation. Returns 0, or for a sampled block its live record
// as generation << 32 | record id + 1 (see alloc/header.h sampled_tag) and its birth.
LA_ALWAYS_INLINE uint64_t sample_alloc(size_t size, EntryFrame frame, uint64_t* birth_ns) {
  ThreadProfile& t = this_thread_profile();
  int64_t left = countdown_after(t, size);
  if (LA_LIKELY(left > 0)) {
    countdown_keep(t, left);
    return 0;
  }
  return prof::sample_slow(t, size, frame, birth_ns);
}

}  // namespace leakalloc
