// The frame-recipe cache: the fast path of `unwind:libunwind`.
//
// Walking a stack by its DWARF call-frame information (CFI) means, for each frame, finding
// the FDE that covers the return address and running its CFA program up to that address.
// libunwind caches some of that work per thread, yet still spends about 110 instructions a
// frame. For the frames of ordinary compiled code the outcome of that work is tiny: the
// caller's stack pointer (the CFA) is %rsp or %rbp plus a constant, the return address
// sits just below the CFA, and %rbp is either untouched or saved at a constant offset from
// the CFA. This cache keeps that outcome (a Recipe) per return address, shared by all
// threads and lock-free, so a frame costs a hash probe and two loads.
//
// Recipes come from the unwind tables the loader already mapped: _dl_find_object (glibc
// 2.35+, lock-free, allocation-free) gives the object's .eh_frame_hdr, whose sorted table
// finds the FDE. The CFI interpreter is written here rather than taken from a library
// because it runs inside malloc: libgcc's _Unwind_Find_FDE takes a global mutex, libdw
// would have to open and read the ELF file from inside malloc, and libunwind keeps its
// recipes private. Anything the recipe cannot express -- signal frames, CFA expressions,
// registers saved in other registers, code without unwind tables -- makes the walk give
// up, and the caller walks the whole stack again with libunwind. So the frames reported are
// the ones libunwind reports (tests/profile/prof_frame_cache_test.cpp compares the two).
//
// Contract: called like the other capture functions (profile/unwind.h): reentrancy guard
// held, no leakalloc lock held. Nothing here allocates, locks, or makes a system call
// after init(). Memory reads are confined to [frame, stack_hi).
#pragma once

#include <cstddef>
#include <cstdint>

namespace leakalloc {
namespace frame_cache {

// Maps the cache's tables (from the library constructor). Without them walk() returns -1.
void init();

// A stack a thread walked, remembered with every stack word the walk read. A walk is a
// pure function of where it starts (%rsp, %rbp), those words, and the cached recipes
// (which only dlclose changes), so when the next walk starts at the same place and every
// remembered word still holds its value, the stack is the same one, and so is its stack
// id: a loop that allocates from one call site is checked with a few independent loads
// instead of being walked and interned again.
constexpr uint32_t kMemoReads = 96;  // stacks that need more reads are not remembered
struct Memo {
  uintptr_t frame;        // where the walk started (an entry point's frame, alloc/alloc.h)
  uint32_t reads;         // words in addr/value; addr[0] is always frame + 8
  uint32_t stack_id;      // 0: nothing remembered
  bool pending;           // walked and remembered, waiting for remember_id()
  uintptr_t addr[kMemoReads];
  uintptr_t value[kMemoReads];
};
// The last stacks a thread walked (ThreadProfile). A program's allocations come from a
// handful of call sites in turn (a loop that makes an object and its buffer; a malloc
// and a realloc; a query engine's cursor, record, and result row): with eight stacks
// remembered, sqlite3 at sample:0 skips 60% of its walks (22% with two), and a
// container-heavy C++ program 14% of its instructions. More entries cost more than they
// save there (each walk first looks at every tag). The least recently used makes room.
constexpr uint32_t kMemoEntries = 8;
struct MemoSet {
  uint32_t tag[kMemoEntries];   // memo_tag() of each entry with a stack id; 0: none
  // Clock value when each entry was last hit or written. 64 bits: a 32-bit clock wraps
  // after 2^32 lookups (minutes of sample:0 on a busy thread), and from then on the
  // entries written before the wrap look newest and are never replaced.
  uint64_t used[kMemoEntries];
  uint64_t clock;
  uint32_t recent;              // the entry hit or written last
  // What every entry was walked under: the cache's generation (flush() makes every memo
  // stale) and the depth asked for. Another value forgets them all.
  uint64_t generation;
  size_t want;
  uint64_t walks;  // lookups that found no stack here and walked (tests count them)
  MemoSet* next_free;  // while no thread has it (profile/threads.cpp)
  Memo entry[kMemoEntries];
};
// Where a walk starts and its first return address: what tells entries apart at a glance.
inline uint32_t memo_tag(uintptr_t frame, uintptr_t ra0) {
  return static_cast<uint32_t>(((frame ^ ra0) * 0x9E3779B97F4A7C15ull) >> 32) | 1;
}
constexpr int kMemoHit = -2;

// Writes up to `want` return addresses into `out`, leaf first, starting in the caller of
// the entry point whose frame is `frame` (alloc/alloc.h): the first is frame[1]. Returns
// how many, or -1 when a frame needs libunwind (or the thread's stack top `stack_hi` is
// unknown), or kMemoHit when `memo` (may be null) holds this very stack: then `out` is
// untouched and memo_hit_id(*memo) is its id. After a walk that returned a count,
// remember_id() completes the memo.
int walk(uintptr_t* out, size_t want, uintptr_t stack_hi, uintptr_t frame, MemoSet* memo);
inline uint32_t memo_hit_id(const MemoSet& memo) { return memo.entry[memo.recent].stack_id; }
inline void remember_id(MemoSet& set, uint32_t stack_id, uint32_t overflow_id) {
  Memo& memo = set.entry[set.recent];
  // The overflow stack is not remembered: each sample into it must be counted as a drop.
  if (memo.pending && stack_id != overflow_id) {
    memo.stack_id = stack_id;
    set.tag[set.recent] = memo_tag(memo.frame, memo.value[0]);
  }
  memo.pending = false;
}

// Forgets every recipe: code may be unmapped and something else mapped at its address.
// Called by dlclose (alloc/override.cpp).
void flush();

// Bytes of the cache's table that have been written (its resident memory).
uint64_t bytes_in_use();

// For tests: with the cache off every stack goes to libunwind, the path any stack with a
// frame the cache cannot express takes.
void set_enabled(bool on);

// What the cache holds, for tests: distinct addresses with a recipe, lookups that had to
// read the unwind tables, and walks left to libunwind.
struct Stats {
  uint64_t entries;
  uint64_t misses;
  uint64_t gave_up;
};
Stats stats();

}  // namespace frame_cache
}  // namespace leakalloc
