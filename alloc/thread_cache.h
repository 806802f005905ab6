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
// (alloc/alloc.cpp) checks that premise against the mimalloc that is loaded
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
// A cached block keeps the freed mark in word1 (alloc/header.h), so a double free of a
// cached block is still named; word0 links the list.
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
// (thread_cache_adopt, alloc/alloc.h); thread.tcache.flush / .enabled and
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
// The bin of that class in `bins` (a thread's cache array).
LA_ALWAYS_INLINE CacheBin& cache_bin(CacheBin* bins, size_t size) {
  return *reinterpret_cast<CacheBin*>(reinterpret_cast<char*>(bins) +
                                      kCacheTables.bin_offset_of_units[(size + 16 + 15) >> 4]);
}

// Takes `head`, the bin's newest block (its header, not nullptr), off the bin.
LA_ALWAYS_INLINE void cache_unlink_head(CacheBin& b, void* head) {
  b.head = *static_cast<void**>(head);
  b.room++;
}

// Takes the newest block of a bin (its header), or nullptr when the bin is empty.
LA_ALWAYS_INLINE void* cache_pop(CacheBin& b) {
  void* base = b.head;
  if (base != nullptr) cache_unlink_head(b, base);
  return base;
}

// Puts a freed block (its header, whose word1 already holds the freed mark) on the bin,
// which must have room.
LA_ALWAYS_INLINE void cache_push(CacheBin& b, void* base) {
  *static_cast<void**>(base) = b.head;
  b.head = base;
  b.room--;
}

// Blocks a bin of class c may hold.
constexpr int32_t cache_bin_limit(uint32_t c) {
  int32_t n = static_cast<int32_t>(kCacheBinBytes / cache_tables::class_size_of(static_cast<int>(c)));
  return n < kCacheBinMin ? kCacheBinMin : n > kCacheBinMax ? kCacheBinMax : n;
}

}  // namespace leakalloc
