// Stack capture.
//
// Contract: called with the thread's ReentrancyGuard held and no leakalloc lock held
// (libunwind may take the loader lock through dl_iterate_phdr and may call malloc).
// Frame 0 is the return address into the caller of malloc/new. The frame-recipe cache
// and the frame-pointer walk start there, at the entry point's frame (alloc/alloc.h);
// unw_backtrace starts in the sampling code, and its frames inside our own library are
// removed afterwards. The text range of our own library is read from our own ELF
// program headers (__ehdr_start): no dladdr, no loader lock, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "profile/frame_cache.h"
#include "profile/sampler.h"
#include "profile/threads.h"

extern "C" int unw_backtrace(void** buffer, int size);  // <libunwind.h>, local unwinding

namespace leakalloc {
namespace unwind {

// Reads our text range and primes libunwind (its caches, its first dl_iterate_phdr),
// so that the first sampled allocation does not pay for it. From the constructor.
// `entries_lo`: the lowest address of the allocator's entry points (alloc/alloc.h
// entry_points_lo), where our code starts when it is linked into the executable.
void init(uintptr_t entries_lo);
bool primed();
// Both capture functions write up to `max` frames (leaf first) of the current stack into
// `out`, starting at the caller of the entry point whose frame is `frame`. `out` must hold
// kCaptureBuffer entries: unw_backtrace captures our own frames there too before they
// are removed.
constexpr size_t kOwnFramesSlack = 8;  // our frames above the caller: ask for this many more
constexpr size_t kMaxCapture = 256;
constexpr size_t kCaptureBuffer = kMaxCapture + kOwnFramesSlack;
// How many frames unw_backtrace walks for `max` kept ones.
LA_ALWAYS_INLINE size_t frames_to_walk(size_t max) {
  return max + kOwnFramesSlack < kCaptureBuffer ? max + kOwnFramesSlack : kCaptureBuffer;
}
// Drops our own leading frames from the `n` walked into `out`; returns how many are kept.
size_t keep_caller_frames(uintptr_t* out, size_t n, uintptr_t caller_ra, size_t max);

// The calling thread's stack: [lo, hi), either 0 when unknown (lo is known only for a
// stack found in /proc/self/maps). System calls only, no lock, no allocation: safe inside
// any allocation, whatever glibc holds (unwind.cpp says how).
struct StackBounds {
  uintptr_t lo, hi;
};
StackBounds find_stack_bounds();
// The top of the calling thread's stack (cached in `t` by thread registration), 0 if
// unknown. stack_top() asks find_stack_bounds() only when the registry has not.
uintptr_t find_stack_top(ThreadProfile& t);
LA_ALWAYS_INLINE uintptr_t stack_top(ThreadProfile& t) {
  return LA_LIKELY(t.stack_hi != 0) ? t.stack_hi : find_stack_top(t);
}

// The fork gate. fork() must not happen while another thread is inside libunwind: its
// dl_iterate_phdr holds glibc's dl_load_write_lock, which glibc does not reset in the
// child, so the child's first unwind (or any dl_iterate_phdr) would hang forever
// (tests/profile ProfUnwind.ForkWhileAnotherThreadIsInsideTheUnwinder). Only calls into
// libunwind pass the gate: the frame-recipe cache reads the unwind tables through
// _dl_find_object, which takes no lock. A thread raises its own flag, then checks the
// gate; fork_prepare closes the gate, then waits for every flag (Dekker: both sides
// store, then load, with seq_cst). The flag is per thread so that unwinding threads
// share no cache line; threads past their exit hook are no longer in the registry and
// count in one shared counter instead (rare). (glibc's own dlopen/dlclose hold the same
// lock briefly; that window is not ours.)
void enter_libunwind(ThreadProfile& t);
void leave_libunwind(ThreadProfile& t);
void close_fork_gate();             // fork prepare handler
void open_fork_gate(bool in_child);  // fork parent and child handlers

// `unwind:libunwind`: DWARF unwinding, exact. Frames are walked by the frame-recipe cache
// (profile/frame_cache.h) from the entry point's frame; a stack with a frame the cache
// cannot express is walked again, whole, by unw_backtrace. `uncached` skips the cache
// (benchmarks and tests compare the two). With `memo_id` (the sampling path), the
// thread's memo of its last stacks is consulted: when it holds this stack, *memo_id is
// set to its stack id and `out` is not written; otherwise *memo_id is 0 and the caller
// interns the frames, then calls remember_id().
// Inline: each of our own frames costs libunwind work before strip_own() throws it
// away, so unw_backtrace is called directly from the sampling path
// (profile/profiler.cpp) rather than from a function of its own. (uintptr_t and void*
// have the same size and representation here: libunwind writes the return addresses
// straight into `out`.)
LA_ALWAYS_INLINE size_t capture_libunwind(ThreadProfile& t, EntryFrame frame, uintptr_t* out, size_t max,
                                          uint32_t* memo_id, bool uncached = false) {
  static_assert(sizeof(void*) == sizeof(uintptr_t), "frames are stored as integers");
  frame_cache::MemoSet* memo = nullptr;
  if (memo_id != nullptr && !uncached) memo = LA_LIKELY(t.memo != nullptr) ? t.memo : threads::attach_memo(t);
  int n = uncached ? -1 : frame_cache::walk(out, max, stack_top(t), frame, memo);
  if (memo_id != nullptr) *memo_id = 0;
  if (n == frame_cache::kMemoHit) {
    *memo_id = frame_cache::memo_hit_id(*memo);
    return 0;
  }
  if (LA_LIKELY(n >= 0)) return static_cast<size_t>(n);
  size_t want = frames_to_walk(max);
  enter_libunwind(t);
  n = unw_backtrace(reinterpret_cast<void**>(out), static_cast<int>(want));
  leave_libunwind(t);
  return n <= 0 ? 0 : keep_caller_frames(out, static_cast<size_t>(n), caller_ra_of(frame), max);
}
// Frame-pointer walk from the entry point's frame, bounds-checked against [current sp,
// thread stack top): it cannot fault, and stops at the first frame without a frame
// pointer chain.
size_t capture_fp(ThreadProfile& t, EntryFrame frame, uintptr_t* out, size_t max);

}  // namespace unwind
}  // namespace leakalloc
