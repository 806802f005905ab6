// A per-thread cache of freed blocks in front of mimalloc, as jemalloc's and glibc's
// tcache are in front of their arenas.
//
// Why: on the workloads of bench/ a mimalloc call pair cost as much as the rest of
// the fast path together (a PLT call each way, mimalloc's own thread-local heap lookup,
// and on free its segment and page metadata, a cache miss on a large live set). A
// block freed here goes onto a per-thread list of its size class instead, and the
// next malloc of that class on this thread takes it back: a pop and a push on a
// thread-local list, and neither touches mimalloc's metadata. A block freed on another
// thread than the one that made it goes onto the freeing thread's list, so a
// producer/consumer pair or a larson-like server stops paying mimalloc's cross-thread
// free for every block.
//
// Size classes are mimalloc's own (Debian 12's 2.0.9): 16-byte steps up to 128 bytes,
// then four per doubling, up to 4096 bytes of header + request. A block always holds
// at least its class size: misses ask mimalloc for exactly the class size, and any
// other block (allocated before it was cached, or resized in place by realloc) is
// mimalloc's block for some request, whose usable size is one of mimalloc's sizes and
// therefore at least the class size of anything that fits in it. cache_supported()
// (alloc/thread_life.cpp) checks that premise against the mimalloc that is loaded
// (mi_good_size) and leaves the cache off if it does not hold. A small block of an
// alignment up to kCacheMaxAlign is asked of mimalloc as its whole class size after the
// header (mi_malloc_aligned_at(class size, align, 16)), so it holds its class size from
// its header too, though the header may sit inside mimalloc's block; realloc keeps that
// true when it resizes a block in place. Its tag carries kAlignedCacheBit, and it goes to
// a second set of bins, of aligned blocks (ThreadState::aligned_cache), never to a plain
// malloc: mimalloc over-allocates such a block by up to the alignment. Other aligned
// blocks (the header inside mimalloc's block, the block's size not a class) are never
// cached: an unsampled one's tag carries kUncachedBit, and a sampled one keeps its size
// in its live record (alloc/header.h). Any other sampled block is cached once its free
// has handed its live record back (profile/live_set.h).
//
// word0 of a cached block links the list; word1 holds a mark of word0 salted with its
// bin (cache_mark), so a double free of a cached block is still named.
//
// The link is guarded (issue 24), as glibc's tcache (safe-linking, "unaligned tcache
// chunk detected") and mimalloc's secure mode guard theirs: an 8-byte overflow past a live
// block reaches the next block's word0, and an unchecked link let the program's next
// mallocs return an address the attacker chose. word0 holds next ^ g_link_key ^ the
// block's own address (a per-process key from AT_RANDOM, apart from the header secret,
// whose freed mark is readable in any freed block); a pop decodes it and aborts with a
// "leakalloc: heap corruption" message unless the next block is 16-byte aligned and a
// user-space address (below 2^47), and unless the block it hands out still carries its
// mark, keyed apart and salted with this bin (its class, and plain or aligned).
// A link an attacker wrote without the key decodes to noise: 1 in 2^21 passes the
// address test, and the block it names is refused by the mark test when it comes up
// (reading it may then fault: the one case without a message). The drain at thread exit
// and tcache flush check the same. Cost: bench/RESULTS.md (a few instructions a pair).
//
// Bounds: each bin holds at most kCacheBinBytes of blocks (at least kCacheBinMin and at
// most kCacheBinMax blocks), about 200 KiB per thread in each set of bins (plain and
// aligned blocks), and the aligned set holds only what the thread's aligned requests
// left there. A free into a full bin goes to mimalloc (jemalloc instead flushes the
// older half; on a program that tears down whole structures that loop cost more than it
// saved); a full bin of aligned blocks gives its newest block to mimalloc and takes the
// freed one instead (alloc/alloc.cpp, release). A thread's bins are set up
// at its first slow-path malloc, so a thread that only frees (a queue's consumer) never
// caches. The thread's exit hook gives everything back; nothing else ages a bin (an idle
// thread keeps its bins, as with jemalloc without tcache GC). In a fork child the forking
// thread takes over the other threads' cached blocks, as far as its bins have room
// (thread_gone_in_child, alloc/alloc.h); thread.tcache.flush / .enabled and
// stats.tcache_bytes (ctl/ctl.cpp) control and show the cache at run time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace leakalloc {

constexpr size_t kCacheMaxTotal = 4096;           // header + request
constexpr size_t kCacheMaxRequest = kCacheMaxTotal - 16;
constexpr int kCacheBins = 29;                    // classes 1..28; bin 0 is never used
constexpr size_t kCacheBinBytes = 8192;
constexpr int32_t kCacheBinMin = 4;
constexpr int32_t kCacheBinMax = 64;
// Aligned requests of up to this alignment (and kCacheMaxRequest bytes) get blocks of
// their size class, which the thread's bins of aligned blocks take and give
// (alloc/alloc.cpp, la_aligned). Larger alignments keep the old way: mimalloc
// over-allocates by the alignment, more than a small class's block should hold while it
// waits in a bin.
constexpr size_t kCacheMaxAlign = 256;

struct CacheBin {
  void* head;    // newest cached block (its header); word0 of each links to the next
  int32_t room;  // blocks this bin may still take; 0 while the thread's cache is off
  int32_t pad;
};

namespace cache_tables {

// Class size of class c (1..28): 16, 32, ..., 128, then 160, 192, 224, 256, 320, ...
constexpr uint32_t class_size_of(int c) {
  if (c <= 8) return static_cast<uint32_t>(c) * 16;
  int b = 7 + (c - 9) / 4;  // 128 << (b - 7) < size <= 256 << (b - 7)
  int q = (c - 9) % 4;
  return static_cast<uint32_t>(4 + q + 1) << (b - 2);
}

struct Tables {
  uint16_t size[kCacheBins];
  uint8_t class_of_units[kCacheMaxTotal / 16 + 1];  // index: (total + 15) / 16
  // The same, as the class's byte offset in an array of CacheBin: the fast paths then
  // find the bin without scaling the class.
  uint16_t bin_offset_of_units[kCacheMaxTotal / 16 + 1];
};

constexpr Tables make_tables() {
  Tables t{};
  for (int c = 1; c < kCacheBins; ++c) t.size[c] = static_cast<uint16_t>(class_size_of(c));
  int c = 1;
  for (size_t u = 1; u <= kCacheMaxTotal / 16; ++u) {
    while (t.size[c] < u * 16) ++c;
    t.class_of_units[u] = static_cast<uint8_t>(c);
    t.bin_offset_of_units[u] = static_cast<uint16_t>(c * sizeof(CacheBin));
  }
  return t;
}

}  // namespace cache_tables

inline constexpr cache_tables::Tables kCacheTables = cache_tables::make_tables();
static_assert(kCacheTables.size[kCacheBins - 1] == kCacheMaxTotal, "the last class ends the cache");
static_assert(kCacheTables.class_of_units[1] == 1 && kCacheTables.class_of_units[9] == 9 &&
                  kCacheTables.class_of_units[10] == 9 && kCacheTables.class_of_units[256] == 28 &&
                  kCacheTables.bin_offset_of_units[256] == 28 * sizeof(CacheBin),
              "class table");

// The class of a request of `size` bytes (size <= kCacheMaxRequest): header included.
LA_ALWAYS_INLINE uint32_t cache_class(size_t size) {
  return kCacheTables.class_of_units[(size + 16 + 15) >> 4];
}
LA_ALWAYS_INLINE size_t cache_class_size(uint32_t c) { return kCacheTables.size[c]; }
// The byte offset of that class's bin in a thread's array of bins: cache_salt() of a
// plain bin.
LA_ALWAYS_INLINE uint32_t cache_bin_offset(size_t size) {
  return kCacheTables.bin_offset_of_units[(size + 16 + 15) >> 4];
}
// The bin of that class in `bins` (a thread's cache array).
LA_ALWAYS_INLINE CacheBin& cache_bin(CacheBin* bins, size_t size) {
  return *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(bins) + cache_bin_offset(size));
}

// The link key (see the top of this file), set with the header secret.
extern LA_HIDDEN uint64_t g_link_key;
// A decoded link with any of these bits set is no block: not 16-byte aligned, or above
// the user half of the address space (47 bits: the kernel maps nothing higher unless
// asked to with a hint, and neither mimalloc nor leakalloc asks).
constexpr uintptr_t kLinkBadBits = ~((uintptr_t{1} << 47) - 1) | 15;
// A bin's salt: its byte offset in the thread's array of plain bins (class * 16), or that
// plus kAlignedSalt for a bin of aligned blocks. Below kSaltBits.
constexpr uint32_t kAlignedSalt = 512;
constexpr uint64_t kSaltBits = 1023;
static_assert(kCacheBins * sizeof(CacheBin) <= kAlignedSalt, "plain bins' salts stay below the aligned ones'");
LA_ALWAYS_INLINE uint32_t cache_salt(uint32_t c, bool aligned) {
  return static_cast<uint32_t>(c * sizeof(CacheBin)) + (aligned ? kAlignedSalt : 0);
}
// The mark word1 of a cached block holds: its word0 (the encoded link) ^ g_mark_key ^
// its bin's salt. Checked from the two words alone (no address arithmetic, a few
// instructions on the pop); a blind overwrite of either word breaks it.
extern LA_HIDDEN uint64_t g_mark_key;
LA_ALWAYS_INLINE uint64_t cache_mark(uint64_t word0, uint32_t salt) { return word0 ^ g_mark_key ^ salt; }
// Whether word1 and word0 of a block's header say "freed into a thread cache" (any bin).
LA_ALWAYS_INLINE bool cache_marked(uint64_t word0, uint64_t word1) {
  return ((word1 ^ cache_mark(word0, 0)) & ~kSaltBits) == 0;
}

// Aborts with a message naming the damage a pop or a drain found in cached block `base`
// (alloc/thread_life.cpp): `bad_link` its link decoded to no block, `mark_diff` the xor of
// its word1 with what it should hold. Never returns.
[[noreturn]] void cache_corrupt(const void* base, bool bad_link, uint64_t mark_diff);

// The block cached block `base` links to, checked; aborts on damage.
LA_ALWAYS_INLINE void* cache_next(const void* base, uint32_t salt) {
  const uint64_t* w = static_cast<const uint64_t*>(base);
  uint64_t word0 = w[0];
  uintptr_t next = word0 ^ g_link_key ^ reinterpret_cast<uintptr_t>(base);
  uint64_t mark_diff = w[1] ^ cache_mark(word0, salt);
  if (LA_UNLIKELY(((next & kLinkBadBits) | mark_diff) != 0))
    cache_corrupt(base, (next & kLinkBadBits) != 0, mark_diff);
  return reinterpret_cast<void*>(next);
}

// Takes `head`, the bin's newest block (its header, not nullptr), off the bin.
LA_ALWAYS_INLINE void cache_unlink_head(CacheBin& b, void* head, uint32_t salt) {
  b.head = cache_next(head, salt);
  b.room++;
}

// Takes the newest block of a bin (its header), or nullptr when the bin is empty.
LA_ALWAYS_INLINE void* cache_pop(CacheBin& b, uint32_t salt) {
  void* base = b.head;
  if (base != nullptr) cache_unlink_head(b, base, salt);
  return base;
}

// Puts a freed block (its header) on the bin, which must have room: writes the salted
// freed mark into word1 and the encoded link into word0.
LA_ALWAYS_INLINE void cache_push(CacheBin& b, void* base, uint32_t salt) {
  uint64_t* w = static_cast<uint64_t*>(base);
  uint64_t word0 = reinterpret_cast<uintptr_t>(b.head) ^ g_link_key ^ reinterpret_cast<uintptr_t>(base);
  w[0] = word0;
  w[1] = cache_mark(word0, salt);
  b.head = base;
  b.room--;
}

// Blocks a bin of class c may hold.
constexpr int32_t cache_bin_limit(uint32_t c) {
  int32_t n = static_cast<int32_t>(kCacheBinBytes / cache_tables::class_size_of(static_cast<int>(c)));
  return n < kCacheBinMin ? kCacheBinMin : n > kCacheBinMax ? kCacheBinMax : n;
}

}  // namespace leakalloc
