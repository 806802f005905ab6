// The block header: 16 bytes directly before every user pointer.
//
//   word0  tag     unsampled block: the requested size (< 2^48, kMaxRequest), plus
//                  kUncachedBit for an aligned block (align > 16) that the thread cache
//                  must not take: one larger than the cache's classes or aligned to more
//                  than kCacheMaxAlign; kAlignedCacheBit for any other aligned block,
//                  which holds its class size from its header and goes to the thread's
//                  bins of aligned blocks (alloc/thread_cache.h). kOutsideBit (with
//                  kUncachedBit): memory mimalloc could not place, a prefix before the
//                  header says where it came from (alloc/alloc.cpp, outside blocks).
//                  sampled block:   kSampledBit | generation << 56 | size << 32 |
//                  live-record id + 1. The live record (profile/live_set.h) holds the
//                  stack id, requested size, exact birth and thread; keeping its id here
//                  makes free of a sampled block O(1) with no hash lookup. The size (24
//                  bits; kSizeInRecord for 16 MiB and up, and for an aligned block, which
//                  keeps it out of the thread cache) and the record's 7-bit seqlock
//                  generation let free count the bytes and hand the record back (to be
//                  retired later, profile/live_set.h) without ever loading it.
//   word1  birth   bits 63..24: birth time in ticks of 2^20 ns (1.05 ms) of the coarse
//                  monotonic clock: 40 bits last 36 years of uptime, no wrap-around.
//          check   bits 23..0: keyed hash of (user pointer, tag) with a per-process
//                  secret from AT_RANDOM. free() recomputes it: a mismatch means the
//                  pointer is not the start of a live leakalloc block (foreign, interior,
//                  or the header was overwritten). The birth is left out of the hash: free
//                  then needs no shifts to recompute it, and a damaged birth only
//                  misdates one block, where a damaged tag would corrupt the counts.
//
// On free, word1 becomes the "freed mark", a second keyed value of the pointer alone,
// so a second free of the same pointer is named a double free (until mimalloc hands the
// memory out again, as with glibc). mimalloc writes its free-list link into word0 of a
// freed block, which is why the freed mark lives in word1. A block in a thread cache
// carries that cache's guarded link and mark instead (alloc/thread_cache.h).
//
// Keeping the requested size in every header lets free() count bytes without asking
// mimalloc for the block's size (a page-map lookup that cost more than the rest of
// the fast path together).
//
// Aligned requests use mi_malloc_aligned_at(size + 16, align, 16): the user pointer is
// aligned and the header still sits right before it (a small one asks for its class
// size instead of size + 16, so that the thread cache can take it). So do requests of
// kPageAlignedFrom bytes and up, at a page (alloc/alloc.h), so that a second free of
// one is named even when the first gave its memory back to the system.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace leakalloc {

constexpr size_t kHeaderSize = 16;
constexpr uint64_t kSampledBit = uint64_t{1} << 63;
constexpr uint64_t kUncachedBit = uint64_t{1} << 62;
constexpr uint64_t kAlignedCacheBit = uint64_t{1} << 61;
constexpr uint64_t kOutsideBit = uint64_t{1} << 60;  // an outside block (alloc/alloc.cpp)
constexpr uint64_t kUnsampledSizeMask = (uint64_t{1} << 48) - 1;
constexpr uint64_t kSizeInRecord = (uint64_t{1} << 24) - 1;  // sampled size field: "ask the record"
constexpr uint64_t kGenerationMask = 127;
constexpr uint64_t kCheckMask = (uint64_t{1} << 24) - 1;

struct BlockHeader {
  uint64_t tag;
  uint64_t word1;

  bool sampled() const { return (tag & kSampledBit) != 0; }
  uint64_t unsampled_size() const { return tag & kUnsampledSizeMask; }
  uint64_t unsampled_flags() const { return tag & ~kUnsampledSizeMask; }
  uint32_t record() const { return sampled() ? static_cast<uint32_t>(tag) : 0; }
  // Size field of a sampled block's tag: the requested size, or kSizeInRecord.
  uint64_t sampled_size_field() const { return (tag >> 32) & kSizeInRecord; }
  uint32_t sampled_generation() const { return static_cast<uint32_t>((tag >> 56) & kGenerationMask); }
  uint64_t birth_ticks() const { return word1 >> 24; }
  uint64_t birth_ns() const { return birth_ticks() << kBirthShift; }
};
static_assert(sizeof(BlockHeader) == kHeaderSize, "header must keep 16-byte alignment");

// One multiply: the top 24 bits of the product depend on every bit of the input,
// which is all a check against stray pointers and overwritten headers needs (it is not
// a defence against an attacker who can read the heap). Runs on every malloc and free.
LA_ALWAYS_INLINE uint64_t header_check(const void* user, uint64_t tag) {
  return ((reinterpret_cast<uintptr_t>(user) ^ g_header_secret ^ tag) * 0x9e3779b97f4a7c15ull) >> 40;
}

// One xor: it only has to be unguessable and to differ from any live header, and it is
// compared only after the check has already failed.
LA_ALWAYS_INLINE uint64_t freed_mark(const void* user) {
  return reinterpret_cast<uintptr_t>(user) ^ ~g_header_secret;
}

// `sample` is what the sampler returned: generation << 32 | record id + 1.
LA_ALWAYS_INLINE uint64_t sampled_tag(uint64_t sample, size_t size) {
  uint64_t field = size < kSizeInRecord ? size : kSizeInRecord;
  uint64_t generation = (sample >> 32) & kGenerationMask;
  return kSampledBit | (generation << 56) | (field << 32) | static_cast<uint32_t>(sample);
}

LA_ALWAYS_INLINE BlockHeader* header_of(void* user) {
  return reinterpret_cast<BlockHeader*>(static_cast<char*>(user) - kHeaderSize);
}

LA_ALWAYS_INLINE bool header_valid(const void* user, uint64_t tag, uint64_t word1) {
  return (word1 & kCheckMask) == header_check(user, tag);
}

LA_ALWAYS_INLINE bool header_valid(const void* user, const BlockHeader* h) {
  return header_valid(user, h->tag, h->word1);
}

// `birth_word` is birth_word_of() of the birth, or the word1 of a header with its check
// masked off.
LA_ALWAYS_INLINE void header_write_birth(void* user, uint64_t tag, uint64_t birth_word) {
  BlockHeader* h = header_of(user);
  h->tag = tag;
  h->word1 = birth_word | header_check(user, tag);
}

LA_ALWAYS_INLINE void header_write(void* user, uint64_t tag, uint64_t now_ns) {
  header_write_birth(user, tag, birth_word_of(now_ns));
}

}  // namespace leakalloc
