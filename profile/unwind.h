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

#include "profile/sampler.h"

extern "C" int unw_backtrace(void** buffer, int size);  // <libunwind.h>, local unwinding

namespace leakalloc {
namespace unwind {

// Reads our text range and primes libunwind (its caches, its first dl_iterate_phdr),
// so that the first sampled allocation does not pay for it. From the constructor.
void init();
bool primed();
// Captures up to `max` frames (leaf first) of the current stack, cut at `caller_ra`,
// the return address into the caller of malloc/new that the entry point recorded. It is
// passed in, not read from ThreadState, because leakalloc's own allocations between the
// entry point and the capture (pthread_getattr_np, libunwind) overwrite the TLS copy.
//
// Inline: unw_backtrace starts from its caller, and every frame of ours it walks costs
// about 100 instructions before strip_own() throws it away, so the call sits directly in
// the sampling path (profile/profiler.cpp) rather than in a function of its own.
constexpr size_t kOwnFramesSlack = 8;  // our frames above the caller: ask for this many more
constexpr size_t kMaxCapture = 256;
size_t keep_caller_frames(void* const* buf, int n, uintptr_t caller_ra, uintptr_t* out, size_t max);
LA_ALWAYS_INLINE size_t capture_libunwind(uintptr_t caller_ra, uintptr_t* out, size_t max) {
  void* buf[kMaxCapture + kOwnFramesSlack];
  size_t want = max + kOwnFramesSlack;
  if (want > sizeof buf / sizeof buf[0]) want = sizeof buf / sizeof buf[0];
  int n = unw_backtrace(buf, static_cast<int>(want));
  return keep_caller_frames(buf, n, caller_ra, out, max);
}
// Frame-pointer walk, bounds-checked against [current sp, thread stack top): it cannot
// fault, and stops at the first frame without a frame pointer chain.
size_t capture_fp(ThreadState& t, uintptr_t caller_ra, uintptr_t* out, size_t max);

}  // namespace unwind
}  // namespace leakalloc
