// What the checking thread (profile/reach.cpp) hands the check's child
// (alloc/reach_mark.cpp): the stopped threads' registers and stack pointers, the
// ranges that are not roots, and the MAP_SHARED block the child writes its results into.
// Internal to the two files; see profile/reach.h for the design. The child's part is in
// alloc/ because finding blocks means reading their headers (alloc/header.h), which the
// profiler below must not know; ctl/startup.cpp registers it with set_child() at start-up.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace leakalloc {
namespace reach {

// The interrupted thread's general registers (ucontext gregs) and SSE registers.
constexpr int kGregWords = 23;
constexpr int kXmmWords = 32;
constexpr int kRegWords = kGregWords + kXmmWords;

struct ThreadSlot {
  int32_t tid;
  std::atomic<uint32_t> acked;  // the check number once the handler has saved everything
  uintptr_t sp;                 // interrupted stack pointer
  uintptr_t tp;                 // thread pointer (%fs base)
  uintptr_t regs[kRegWords];
};

struct Range {
  uintptr_t lo, hi;
};

// Child status codes (Shared::status): 0 done; otherwise the check gives no result.
enum ChildStatus : int32_t {
  kChildOk = 0,
  kChildNoMaps = 1,      // /proc/self/maps could not be read
  kChildNoMemory = 2,    // the child could not map its tables
  kChildMissing = 3,     // sampled blocks not found: the heap scan is incomplete
};

struct Shared {
  std::atomic<uint32_t> done;  // futex word: 1 once the results are complete
  int32_t status;
  uint64_t child_ns;
  uint64_t maps_ns, scan_ns, mark_ns;  // when each step ended, from the child's start
  uint64_t cpu_ns;              // the child's CPU time (its wall time includes waiting for a CPU)
  uint64_t blocks, bytes, lost_blocks, lost_bytes;
  uint64_t sampled_found, sampled_live, sampled_missing;
  uint64_t root_bytes, heap_bytes, faults;
  uint32_t capacity;            // records covered by state[]
  uint32_t pad;
  uint16_t state[1];            // per record id: generation << 8 | State
};
constexpr size_t shared_bytes(uint32_t capacity) {
  return offsetof(Shared, state) + sizeof(uint16_t) * (capacity + 1);
}

struct Plan {
  Shared* shared;
  ThreadSlot* slots;
  uint32_t nslots;
  uintptr_t checker_sp;     // the checking thread's stack pointer at the clone
  uintptr_t checker_tp;     // and its thread pointer
  uint64_t now_ns;          // coarse clock at the stop: no block is younger
  Range not_roots[8];       // leakalloc's and mimalloc's writable ELF segments
  uint32_t n_not_roots;
};

using ChildFn = void (*)(const Plan& plan);  // never returns: exits the child
void set_child(ChildFn fn);

}  // namespace reach
}  // namespace leakalloc
