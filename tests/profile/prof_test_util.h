// Shared pieces of the profiler-core tests (tests/profile): distinct call stacks made
// deterministically by recursing along the bits of a number (jemalloc's btalloc), and
// readers of the live set / stack table through the internal API (profile/profiler.h).
//
// The test executables are linked with the allocator's objects, so they *are* the
// allocator and can call the hidden internal API. They are linked with -rdynamic so
// that dladdr names their own functions.
#pragma once

#include <dlfcn.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "profile/profiler.h"

extern "C" {
// Allocates `size` bytes with malloc; frame 0 of every sampled stack made through it is
// a return address inside this function.
void* bt_leaf(size_t size);
// bt_root(n, bits, size) reaches bt_leaf through `bits` nested calls, the i-th (from the
// root) going through bt_1 when bit i of n is set and bt_0 otherwise, so every n below
// 2^bits has its own stack, and the stack spells n.
void* bt_root(uint32_t n, uint32_t bits, size_t size);
void* bt_0(uint32_t n, uint32_t i, uint32_t bits, size_t size);
void* bt_1(uint32_t n, uint32_t i, uint32_t bits, size_t size);
}

namespace proftest {

using leakalloc::prof::LiveBlock;
using leakalloc::prof::StackView;

// Start address of the function containing `pc`, from the dynamic symbol table.
inline void* func_of(uintptr_t pc) {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(pc), &info) == 0) return nullptr;
  return info.dli_saddr;
}

inline std::string object_of(uintptr_t pc) {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

// Decodes a stack made by bt_root(n, bits, ...): returns n, or -1 when the stack does not
// have bt_leaf at frame 0, then `bits` frames in bt_0/bt_1, then bt_root.
inline int64_t decode_bt(const StackView& v, uint32_t bits) {
  if (v.depth < bits + 2) return -1;
  if (func_of(v.frames[0]) != reinterpret_cast<void*>(&bt_leaf)) return -1;
  uint64_t n = 0;
  for (uint32_t k = 1; k <= bits; ++k) {
    void* f = func_of(v.frames[k]);
    uint64_t bit;
    if (f == reinterpret_cast<void*>(&bt_1)) bit = 1;
    else if (f == reinterpret_cast<void*>(&bt_0)) bit = 0;
    else return -1;
    n |= bit << (bits - k);
  }
  if (func_of(v.frames[bits + 1]) != reinterpret_cast<void*>(&bt_root)) return -1;
  return static_cast<int64_t>(n);
}

inline bool frame0_is_leaf(uint32_t stack_id) {
  StackView v;
  if (!leakalloc::prof::stack_get(stack_id, &v) || v.depth == 0) return false;
  return func_of(v.frames[0]) == reinterpret_cast<void*>(&bt_leaf);
}

// Every live sampled block born at or before `born_before`. The walk callback must
// not allocate (it would add to the set being walked), so it fills reserved capacity
// and the walk is retried with more room if that ran out.
inline std::vector<LiveBlock> snapshot(uint64_t born_before = UINT64_MAX) {
  size_t room = 1 << 16;
  for (;;) {
    std::vector<LiveBlock> out;
    out.reserve(room);
    struct Ctx {
      std::vector<LiveBlock>* out;
      bool full;
    } ctx{&out, false};
    leakalloc::prof::live_walk(
        born_before,
        [](void* c, const LiveBlock& b) {
          Ctx* x = static_cast<Ctx*>(c);
          if (x->out->size() == x->out->capacity()) { x->full = true; return; }
          x->out->push_back(b);
        },
        &ctx);
    if (!ctx.full) return out;
    room *= 4;
  }
}

inline uint64_t coarse_now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void sleep_ms(long ms) {
  struct timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {}
}

}  // namespace proftest
