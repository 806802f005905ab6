#include "profile/stack_table.h"

#include <atomic>

#include "base/base.h"

LA_EXPORT __attribute__((noinline)) void leakalloc_stack_table_full(void) {
  // A named address for the overflow stack; never called.
  __asm__ volatile("");
}

namespace leakalloc {
namespace stacks {

namespace {

struct Entry {
  uint64_t hash;
  uint32_t depth;
  uint32_t pad;
  uintptr_t frames[1];  // `depth` frames
};

// Cumulative counts, apart from the entries: lookups read the entries on every sample,
// and counters in the same lines would make every count a miss for every other thread.
// Striped by thread index (stripe-major, so a thread's counts share lines only with
// threads of the same stripe): threads allocating from one stack do not contend on one
// counter. A stack's count is the sum of its stripes.
constexpr uint32_t kCountStripes = 8;
struct Cum {
  std::atomic<uint64_t> objs;
  std::atomic<uint64_t> bytes;
};
// Mapped in chunks of kCumChunkIds ids as ids are handed out: chunk c holds ids
// [c * kCumChunkIds, (c + 1) * kCumChunkIds), stripe-major, so one id's stripes stay
// kCumChunkIds * 16 bytes apart.
constexpr unsigned kCumChunkShift = 12;
constexpr uint32_t kCumChunkIds = 1u << kCumChunkShift;
constexpr size_t kCumChunkBytes = size_t{kCountStripes} * kCumChunkIds * sizeof(Cum);
std::atomic<Cum*>* g_cum_chunks = nullptr;
std::atomic<uint32_t> g_cum_stripes_used{0};  // bit per stripe ever written (bytes_in_use)

// Lifetimes of freed sampled blocks (prof::kLifetimeBuckets log-scale buckets per
// stack), counted when a freed block's live record is retired (profile/live_set.cpp),
// which reads the record's stack id on a line it writes anyway: nothing on the
// unsampled path, nothing on a sampled free but the bucket. Mapped in chunks of
// kCumChunkIds ids like the counts, 128 bytes per id, not striped: a stack's frees
// land on one line pair (relaxed adds), which is contended only when several threads
// free blocks of one stack at once.
struct Life {
  std::atomic<uint32_t> n[prof::kLifetimeBuckets];
};
constexpr size_t kLifeChunkBytes = size_t{kCumChunkIds} * sizeof(Life);
std::atomic<Life*>* g_life_chunks = nullptr;

constexpr size_t kEntryFixed = offsetof(Entry, frames);
constexpr uint32_t kStripes = 64;

std::atomic<uint32_t>* g_index = nullptr;  // 0 = empty, else id
uint64_t g_mask = 0;
std::atomic<uint64_t>* g_offsets = nullptr;  // id -> byte offset in the arena (+1; 0 = unpublished)
// The entries' arena: offsets run over chunks of kArenaChunk bytes, mapped when the bump
// pointer first reaches them; an entry never straddles two. Mapping the whole cap up
// front (max_stacks entries at max_depth: 136 MiB at the defaults) cost nothing in RSS,
// but it counted against RLIMIT_AS and, with vm.overcommit_memory=2 (where
// MAP_NORESERVE is ignored), against the commit limit, in every process and every
// forked child.
constexpr unsigned kArenaChunkShift = 20;
constexpr size_t kArenaChunk = size_t{1} << kArenaChunkShift;
std::atomic<char*>* g_arena_chunks = nullptr;
size_t g_arena_cap = 0;
std::atomic<size_t> g_arena_used{0};
uint32_t g_max = 0;
std::atomic<uint32_t> g_next_id{0};  // ids handed out so far (ids are 1..g_next_id)
std::atomic<uint64_t> g_dropped{0};
RawLock g_stripes[kStripes];

uint64_t hash_frames(const uintptr_t* f, uint32_t depth) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ depth;
  for (uint32_t i = 0; i < depth; ++i) {
    h ^= f[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h | 1;  // never 0
}

// The chunk's memory is published (release) before any offset or id inside it, so a
// reader that found the offset or id through an acquire sees the chunk's address.
char* arena_at(uint64_t off) {
  return g_arena_chunks[off >> kArenaChunkShift].load(std::memory_order_relaxed) + (off & (kArenaChunk - 1));
}

Entry* entry(uint32_t id) {
  uint64_t off = g_offsets[id].load(std::memory_order_acquire);
  if (off == 0) return nullptr;
  return reinterpret_cast<Entry*>(arena_at(off - 1));
}

// Null only for an id whose publication failed (its counts chunk could not be mapped).
Cum* cum_row(uint32_t id) { return g_cum_chunks[id >> kCumChunkShift].load(std::memory_order_relaxed); }
Cum& cum(Cum* row, uint32_t stripe, uint32_t id) {
  return row[stripe * kCumChunkIds + (id & (kCumChunkIds - 1))];
}

// Maps table[c] (of `bytes`) unless it is mapped already. Inserts of different stripes
// may race for one chunk: the loser unmaps its copy. False if the system refuses.
template <typename T>
bool map_chunk(std::atomic<T*>* table, size_t c, size_t bytes) {
  if (table[c].load(std::memory_order_acquire) != nullptr) return true;
  T* mem = static_cast<T*>(os_reserve(bytes));
  if (mem == nullptr) return false;
  T* expected = nullptr;
  if (!table[c].compare_exchange_strong(expected, mem, std::memory_order_acq_rel)) os_free(mem, bytes);
  return true;
}

bool same(const Entry* e, uint64_t hash, const uintptr_t* f, uint32_t depth) {
  if (e->hash != hash || e->depth != depth) return false;
  for (uint32_t i = 0; i < depth; ++i)
    if (e->frames[i] != f[i]) return false;
  return true;
}

// Lock-free probe. Returns the id, or 0 with *slot_out = first empty slot seen.
uint32_t find(uint64_t hash, const uintptr_t* f, uint32_t depth, uint64_t* slot_out) {
  for (uint64_t i = hash & g_mask;; i = (i + 1) & g_mask) {
    uint32_t id = g_index[i].load(std::memory_order_acquire);
    if (id == 0) { *slot_out = i; return 0; }
    const Entry* e = entry(id);
    if (e != nullptr && same(e, hash, f, depth)) return id;
  }
}

uint32_t publish(uint64_t hash, const uintptr_t* f, uint32_t depth) {
  uint32_t id = g_next_id.load(std::memory_order_relaxed);
  if (id >= g_max) return 0;
  size_t bytes = (kEntryFixed + depth * sizeof(uintptr_t) + 15) & ~size_t{15};
  // Bump allocation that moves to the next chunk rather than straddle one.
  size_t used = g_arena_used.load(std::memory_order_relaxed);
  size_t off;
  do {
    off = used;
    if ((off & (kArenaChunk - 1)) + bytes > kArenaChunk) off = (off | (kArenaChunk - 1)) + 1;
    if (off + bytes > g_arena_cap) return 0;
  } while (!g_arena_used.compare_exchange_weak(used, off + bytes, std::memory_order_relaxed));
  if (!map_chunk(g_arena_chunks, off >> kArenaChunkShift, kArenaChunk)) return 0;
  id = g_next_id.fetch_add(1, std::memory_order_relaxed) + 1;
  if (id > g_max) return 0;
  // An id whose counts cannot be mapped stays unpublished: readers skip it.
  if (!map_chunk(g_cum_chunks, id >> kCumChunkShift, kCumChunkBytes) ||
      !map_chunk(g_life_chunks, id >> kCumChunkShift, kLifeChunkBytes))
    return 0;
  Entry* e = reinterpret_cast<Entry*>(arena_at(off));
  e->hash = hash;
  e->depth = depth;
  for (uint32_t i = 0; i < depth; ++i) e->frames[i] = f[i];
  g_offsets[id].store(off + 1, std::memory_order_release);
  return id;
}

}  // namespace

bool init(uint32_t max_stacks, uint32_t max_depth) {
  if (g_index != nullptr) return true;
  uint64_t cap = 1;
  while (cap < uint64_t{2} * max_stacks) cap <<= 1;
  g_mask = cap - 1;
  g_max = max_stacks + 1;  // id 1 is the overflow stack
  g_index = static_cast<std::atomic<uint32_t>*>(os_reserve(cap * sizeof(uint32_t)));
  g_offsets = static_cast<std::atomic<uint64_t>*>(os_reserve((uint64_t{g_max} + 2) * sizeof(uint64_t)));
  g_arena_cap = (uint64_t{g_max} + 1) * ((kEntryFixed + max_depth * sizeof(uintptr_t) + 15) & ~size_t{15});
  g_arena_chunks = static_cast<std::atomic<char*>*>(
      os_reserve(((g_arena_cap >> kArenaChunkShift) + 1) * sizeof(std::atomic<char*>)));
  g_cum_chunks = static_cast<std::atomic<Cum*>*>(
      os_reserve(((uint64_t{g_max} >> kCumChunkShift) + 1) * sizeof(std::atomic<Cum*>)));
  g_life_chunks = static_cast<std::atomic<Life*>*>(
      os_reserve(((uint64_t{g_max} >> kCumChunkShift) + 1) * sizeof(std::atomic<Life*>)));
  if (g_index == nullptr || g_offsets == nullptr || g_arena_chunks == nullptr || g_cum_chunks == nullptr ||
      g_life_chunks == nullptr) {
    g_index = nullptr;  // intern() then returns 0: nothing is stored or counted
    return false;
  }
  uintptr_t overflow_frame = reinterpret_cast<uintptr_t>(&leakalloc_stack_table_full);
  g_next_id.store(0, std::memory_order_relaxed);
  uint64_t h = hash_frames(&overflow_frame, 1);
  uint32_t id = publish(h, &overflow_frame, 1);
  uint64_t slot = 0;
  find(h, &overflow_frame, 1, &slot);
  g_index[slot].store(id, std::memory_order_release);
  return id == prof::kOverflowStackId;
}

uint32_t intern(const uintptr_t* frames, uint32_t depth) {
  if (LA_UNLIKELY(g_index == nullptr)) return 0;  // the table could not be mapped
  uint64_t hash = hash_frames(frames, depth);
  uint64_t slot;
  uint32_t id = find(hash, frames, depth, &slot);
  if (LA_LIKELY(id != 0)) return id;
  LockGuard g(g_stripes[hash >> 58]);
  id = find(hash, frames, depth, &slot);
  if (id != 0) return id;
  id = publish(hash, frames, depth);
  if (id == 0) {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
    return prof::kOverflowStackId;
  }
  for (;;) {
    uint32_t expected = 0;
    if (g_index[slot].compare_exchange_strong(expected, id, std::memory_order_release,
                                              std::memory_order_relaxed))
      return id;
    // Another stripe took this slot; probe on (our stack cannot be there: our stripe
    // lock keeps it out).
    slot = (slot + 1) & g_mask;
    while (g_index[slot].load(std::memory_order_acquire) != 0) slot = (slot + 1) & g_mask;
  }
}

void count_sample(uint32_t id, uint64_t size, uint32_t thread_index) {
  // Every sample comes here (at sample:0, every allocation): no check beyond the id.
  // intern() returns only ids whose counters are mapped, or 0 when the table could not
  // be set up at all.
  if (LA_UNLIKELY(id == 0)) return;
  Cum* row = cum_row(id);
  uint32_t stripe = thread_index % kCountStripes;
  if (LA_UNLIKELY((g_cum_stripes_used.load(std::memory_order_relaxed) & (1u << stripe)) == 0))
    g_cum_stripes_used.fetch_or(1u << stripe, std::memory_order_relaxed);
  Cum& c = cum(row, stripe, id);
  c.objs.fetch_add(1, std::memory_order_relaxed);
  c.bytes.fetch_add(size, std::memory_order_relaxed);
}

void count_lifetime(uint32_t id, uint32_t bucket) {
  // A record's stack id is one intern() returned, so its chunk is mapped (or it is 0).
  if (LA_UNLIKELY(id == 0 || id > count() || g_life_chunks == nullptr)) return;
  Life* row = g_life_chunks[id >> kCumChunkShift].load(std::memory_order_relaxed);
  if (row == nullptr) return;
  if (bucket >= prof::kLifetimeBuckets) bucket = prof::kLifetimeBuckets - 1;
  row[id & (kCumChunkIds - 1)].n[bucket].fetch_add(1, std::memory_order_relaxed);
}

bool lifetimes(uint32_t id, uint32_t out[prof::kLifetimeBuckets]) {
  if (id == 0 || id > count() || g_life_chunks == nullptr) return false;
  Life* row = g_life_chunks[id >> kCumChunkShift].load(std::memory_order_acquire);
  if (row == nullptr) return false;
  for (uint32_t b = 0; b < prof::kLifetimeBuckets; ++b)
    out[b] = row[id & (kCumChunkIds - 1)].n[b].load(std::memory_order_relaxed);
  return true;
}

void reset_counts() {
  uint32_t n = count();
  if (g_cum_chunks == nullptr) return;
  for (uint32_t id = 1; id <= n; ++id) {
    Cum* row = entry(id) != nullptr ? cum_row(id) : nullptr;
    if (row == nullptr) continue;
    for (uint32_t stripe = 0; stripe < kCountStripes; ++stripe) {
      Cum& c = cum(row, stripe, id);
      c.objs.store(0, std::memory_order_relaxed);
      c.bytes.store(0, std::memory_order_relaxed);
    }
    Life* life = g_life_chunks[id >> kCumChunkShift].load(std::memory_order_relaxed);
    if (life != nullptr)
      for (auto& b : life[id & (kCumChunkIds - 1)].n) b.store(0, std::memory_order_relaxed);
  }
  g_dropped.store(0, std::memory_order_relaxed);
}

uint32_t count() {
  uint32_t n = g_next_id.load(std::memory_order_acquire);
  return n > g_max ? g_max : n;
}

uint64_t dropped() { return g_dropped.load(std::memory_order_relaxed); }

uint64_t bytes_in_use() {
  if (g_index == nullptr) return 0;
  uint64_t n = count();
  uint64_t index_bytes = (g_mask + 1) * sizeof(uint32_t);
  uint64_t index_touched = n * os_page_size();  // hashing scatters ids over the pages
  if (index_touched > index_bytes) index_touched = index_bytes;
  uint64_t stripes = static_cast<uint64_t>(__builtin_popcount(g_cum_stripes_used.load(std::memory_order_relaxed)));
  return g_arena_used.load(std::memory_order_relaxed) + index_touched + (n + 2) * sizeof(uint64_t) +
         stripes * n * sizeof(Cum) + n * sizeof(Life);
}

bool get(uint32_t id, prof::StackView* out) {
  if (id == 0 || id > count()) return false;
  Entry* e = entry(id);
  if (e == nullptr) return false;
  out->id = id;
  out->depth = e->depth;
  out->frames = e->frames;
  out->cum_objs = 0;
  out->cum_bytes = 0;
  Cum* row = cum_row(id);
  for (uint32_t stripe = 0; stripe < kCountStripes && row != nullptr; ++stripe) {
    const Cum& c = cum(row, stripe, id);
    out->cum_objs += c.objs.load(std::memory_order_relaxed);
    out->cum_bytes += c.bytes.load(std::memory_order_relaxed);
  }
  return true;
}

void fork_prepare() {
  for (auto& l : g_stripes) l.lock();
}
void fork_parent() {
  for (auto& l : g_stripes) l.unlock();
}
void fork_child() {
  for (auto& l : g_stripes) l.reset_in_child();
}

}  // namespace stacks
}  // namespace leakalloc
