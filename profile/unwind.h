// Stack capture.
//
// Contract: called with the thread's ReentrancyGuard held and no leakalloc lock held
// (libunwind may take the loader lock through dl_iterate_phdr and may call malloc).
// Frames inside libleakalloc.so itself are removed, so frame 0 is the return address
// into the caller of malloc/new. The text range of our own library is read from our
// own ELF program headers (__ehdr_start): no dladdr, no loader lock, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "profile/frame_cache.h"
#include "profile/sampler.h"

extern "C" int unw_backtrace(void** buffer, int size);  // <libunwind.h>, local unwinding

namespace leakalloc {
namespace unwind {

// Reads our text range and primes libunwind (its caches, its first dl_iterate_phdr),
// so that the first sampled allocation does not pay for it. From the constructor.
void init();
bool primed();
// Both capture functions write up to `max` frames (leaf first) of the current stack into
// `out`, cut at `caller_ra`, the return address into the caller of malloc/new that the
// entry point passed down. `out` must hold kCaptureBuffer entries: our own frames above
// the caller are captured there too before they are removed.
constexpr size_t kOwnFramesSlack = 8;  // our frames above the caller: ask for this many more
constexpr size_t kMaxCapture = 256;
constexpr size_t kCaptureBuffer = kMaxCapture + kOwnFramesSlack;
// How many frames to walk for `max` kept ones.
LA_ALWAYS_INLINE size_t frames_to_walk(size_t max) {
  return max + kOwnFramesSlack < kCaptureBuffer ? max + kOwnFramesSlack : kCaptureBuffer;
}
// Drops our own leading frames from the `n` walked into `out`; returns how many are kept.
size_t keep_caller_frames(uintptr_t* out, size_t n, uintptr_t caller_ra, size_t max);

// The top of the calling thread's stack (cached in `t`), 0 if unknown. find_stack_top()
// asks pthread_getattr_np; stack_top() asks only the first time.
uintptr_t find_stack_top(ThreadState& t);
LA_ALWAYS_INLINE uintptr_t stack_top(ThreadState& t) {
  return LA_LIKELY(t.stack_hi != 0) ? t.stack_hi : find_stack_top(t);
}

// `unwind:libunwind`: DWARF unwinding, exact. Frames are walked by the frame-recipe cache
// (profile/frame_cache.h); a stack with a frame it cannot express is walked again, whole,
// by unw_backtrace. `uncached` skips the cache (benchmarks and tests compare the two).
// With `memo_id` (the sampling path), the thread's memo of its last stack is consulted:
// when it holds this stack, *memo_id is set to its stack id and `out` is not written;
// otherwise *memo_id is 0 and the caller interns the frames, then calls remember_id().
// Inline: each of our own frames costs the walker work before strip_own() throws it
// away, so the walk starts directly in the sampling path (profile/profiler.cpp) rather
// than in a function of its own. (uintptr_t and void* have the same size and
// representation here: libunwind writes the return addresses straight into `out`.)
LA_ALWAYS_INLINE size_t capture_libunwind(ThreadState& t, uintptr_t caller_ra, uintptr_t* out, size_t max,
                                          uint32_t* memo_id, bool uncached = false) {
  static_assert(sizeof(void*) == sizeof(uintptr_t), "frames are stored as integers");
  size_t want = frames_to_walk(max);
  int n = uncached ? -1
                   : frame_cache::walk(out, want, stack_top(t), caller_ra, max, memo_id != nullptr ? &t.memo : nullptr);
  if (memo_id != nullptr) *memo_id = 0;
  if (n == frame_cache::kMemoHit) {
    *memo_id = t.memo.stack_id;
    return 0;
  }
  if (LA_UNLIKELY(n < 0)) n = unw_backtrace(reinterpret_cast<void**>(out), static_cast<int>(want));
  return n <= 0 ? 0 : keep_caller_frames(out, static_cast<size_t>(n), caller_ra, max);
}
// Frame-pointer walk, bounds-checked against [current sp, thread stack top): it cannot
// fault, and stops at the first frame without a frame pointer chain.
size_t capture_fp(ThreadState& t, uintptr_t caller_ra, uintptr_t* out, size_t max);

}  // namespace unwind
}  // namespace leakalloc
