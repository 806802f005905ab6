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
size_t capture_libunwind(uintptr_t caller_ra, uintptr_t* out, size_t max);
// Frame-pointer walk, bounds-checked against [current sp, thread stack top): it cannot
// fault, and stops at the first frame without a frame pointer chain.
size_t capture_fp(ThreadState& t, uintptr_t caller_ra, uintptr_t* out, size_t max);

}  // namespace unwind
}  // namespace leakalloc
