// The block header: 16 bytes directly before every user pointer.
//
//   +0  birth_ns  coarse monotonic birth time (alloc/base.h), 64-bit ns: no wrap-around
//   +8  record    live-record id + 1 for a sampled block, 0 when not sampled. The live
//                 record (profile/live_set.h) holds the stack id, requested size, birth
//                 and thread; keeping its id here (rather than the stack id) makes free
//                 of a sampled block O(1) with no hash lookup.
//   +12 check     32-bit keyed hash of (user pointer, birth, record) with a per-process
//                 secret from AT_RANDOM. free() recomputes it: a mismatch means the
//                 pointer is not the start of a leakalloc block (foreign, interior, or
//                 the header was overwritten). On free the check becomes a second keyed
//                 value, the "freed mark", so a second free of the same pointer is named
//                 a double free (until mimalloc hands the memory out again, as in glibc).
//
// mimalloc writes its free-list link into the first word of a freed block: that is
// birth_ns, which is why the freed mark may not depend on it.
//
// Aligned requests use mi_malloc_aligned_at(size + 16, align, 16): the user pointer is
// aligned and the header still sits right before it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloc/base.h"

namespace leakalloc {

constexpr size_t kHeaderSize = 16;

struct BlockHeader {
  uint64_t birth_ns;
  uint32_t record;
  uint32_t check;
};
static_assert(sizeof(BlockHeader) == kHeaderSize, "header must keep 16-byte alignment");

extern uint64_t g_header_secret;

LA_ALWAYS_INLINE uint32_t mix32(uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(x >> 32);
}

LA_ALWAYS_INLINE uint32_t header_check(const void* user, uint64_t birth, uint32_t record) {
  return mix32(reinterpret_cast<uintptr_t>(user) ^ g_header_secret ^ birth ^
               (static_cast<uint64_t>(record) << 40));
}

LA_ALWAYS_INLINE uint32_t freed_mark(const void* user) {
  return mix32((reinterpret_cast<uintptr_t>(user) * 3) ^ ~g_header_secret) | 1u;
}

LA_ALWAYS_INLINE BlockHeader* header_of(void* user) {
  return reinterpret_cast<BlockHeader*>(static_cast<char*>(user) - kHeaderSize);
}

LA_ALWAYS_INLINE void header_write(void* user, uint64_t birth, uint32_t record) {
  BlockHeader* h = header_of(user);
  h->birth_ns = birth;
  h->record = record;
  h->check = header_check(user, birth, record);
}

}  // namespace leakalloc
