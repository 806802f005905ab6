#include "profile/live_set.h"

#include <algorithm>

#include "profile/stack_table.h"
#include "profile/threads.h"

namespace leakalloc {
namespace live {

namespace {

struct Record {
  std::atomic<uint32_t> seq;       // odd = live
  std::atomic<uint32_t> stack_id;
  // Requested bytes in the low 48 bits (every user-space size fits), the allocating
  // thread's registry index in the high 16 (threads::kMaxThreads == 2^16).
  std::atomic<uint64_t> size_thread;
  std::atomic<uint64_t> birth_ns;
};
// 24 bytes: at sample:0 every live block has one, so this is most of the profiler's
// memory (the rest of a block's cost is its 16-byte header).
static_assert(sizeof(Record) == 24, "record size");
constexpr int kThreadShift = 48;
constexpr uint64_t kSizeMask = (uint64_t{1} << kThreadShift) - 1;
static_assert(threads::kMaxThreads <= (1u << (64 - kThreadShift)), "thread index must fit");

// The 7 bits of a record's generation that a block header keeps (alloc/header.h).
constexpr uint32_t kHeaderGenerationMask = 127;
constexpr uint32_t kChunkShift = 16;
constexpr uint32_t kChunkRecords = 1u << kChunkShift;
constexpr uint32_t kMaxChunks = 1u << 14;  // 2^30 records: far beyond any real live set
constexpr uint32_t kBatch = kRecordCacheMax / 2;

std::atomic<Record*> g_chunks[kMaxChunks];
std::atomic<uint32_t> g_next_fresh{0};  // slots below this have been handed out once
RawLock g_chunk_lock;                    // rank 4: serialises chunk mapping only
RawLock g_free_lock;                     // rank 5: the pool below

// The pool of free ids that no thread caches: a stack of ids, in chunks mapped on
// demand (it never holds more ids than there are records, so as many chunks suffice).
// It is not a list threaded through the records themselves: a freed record's cache line
// is usually on the core that freed it, and a refill walking such a list would pay one
// dependent miss per id, under the lock (prodcons, where producers allocate and
// consumers free, spent a fifth of its time there). Spills and refills copy 32 ids.
std::atomic<uint32_t*> g_pool[kMaxChunks];  // written under g_free_lock (stats read them)
uint32_t g_pool_top = 0;                     // ids in the pool; under g_free_lock

Record* slot(uint32_t id) {
  Record* chunk = g_chunks[id >> kChunkShift].load(std::memory_order_acquire);
  return chunk + (id & (kChunkRecords - 1));
}

bool ensure_chunk(uint32_t chunk_index) {
  if (chunk_index >= kMaxChunks) return false;
  if (g_chunks[chunk_index].load(std::memory_order_acquire) != nullptr) return true;
  LockGuard g(g_chunk_lock);
  if (g_chunks[chunk_index].load(std::memory_order_relaxed) != nullptr) return true;
  void* mem = os_reserve(sizeof(Record) * kChunkRecords);
  if (mem == nullptr) return false;
  g_chunks[chunk_index].store(static_cast<Record*>(mem), std::memory_order_release);
  return true;
}

// Fills the thread's cache with up to kBatch slots: recycled ones first, then fresh.
LA_NOINLINE bool refill(ThreadProfile& t) {
  {
    LockGuard g(g_free_lock);
    while (g_pool_top > 0 && t.rec_cache_n < kBatch) {
      uint32_t pos = --g_pool_top;
      t.rec_cache[t.rec_cache_n++] = g_pool[pos >> kChunkShift].load(std::memory_order_relaxed)[pos & (kChunkRecords - 1)];
    }
  }
  if (t.rec_cache_n > 0) return true;
  uint32_t first = g_next_fresh.fetch_add(kBatch, std::memory_order_relaxed);
  if (first > kMaxChunks * kChunkRecords - kBatch) return false;
  if (!ensure_chunk(first >> kChunkShift) || !ensure_chunk((first + kBatch - 1) >> kChunkShift))
    return false;
  for (uint32_t i = 0; i < kBatch; ++i) t.rec_cache[t.rec_cache_n++] = first + kBatch - 1 - i;
  return true;
}

// With g_free_lock held. Should the pool's memory not be mappable, the id is lost: its
// record stays retired and unused, and fresh ids keep coming from g_next_fresh.
void push_global(uint32_t id) {
  uint32_t pos = g_pool_top;
  uint32_t* chunk = g_pool[pos >> kChunkShift].load(std::memory_order_relaxed);
  if (LA_UNLIKELY(chunk == nullptr)) {
    chunk = static_cast<uint32_t*>(os_reserve(sizeof(uint32_t) * kChunkRecords));
    if (chunk == nullptr) return;
    g_pool[pos >> kChunkShift].store(chunk, std::memory_order_relaxed);
  }
  chunk[pos & (kChunkRecords - 1)] = id;
  g_pool_top = pos + 1;
}

// The record id of a pending entry (bucket << 40 | generation << 32 | id + 1).
LA_ALWAYS_INLINE uint32_t pending_id(uint64_t entry) { return static_cast<uint32_t>(entry) - 1; }
// Bits 40..44 of a pending entry: the freed block's lifetime bucket. The generation
// readers ((entry >> 32) & 255 or << 1 & 255) never see these bits.
constexpr unsigned kPendingBucketShift = 40;
LA_ALWAYS_INLINE uint32_t pending_bucket(uint64_t entry) {
  return static_cast<uint32_t>(entry >> kPendingBucketShift) & 31;
}

// How many frees old the pending entry is that a sample takes (add): the slot
// kPendingLag places behind the ring's head, if no sample took it yet. Not the newest:
// a record's line is cold when its block is freed (written at the block's birth, usually
// long ago: issue 29's random replacement in a large live set), and retiring loads the
// record's stack id from it. The newest entry's line was asked for (remove) only a few
// instructions earlier at sample:0, where the next malloc follows the free at once, and
// the load stalled on it: 13% of the samples of sample:0,age:60 on bench randrepl sat on
// that one load. Four frees later it has arrived. An entry no sample takes is retired
// by the free that wraps the ring onto it, kRecordPendingSlots frees after its own.
constexpr uint32_t kPendingLag = 4;
static_assert(kPendingLag >= 1 && kPendingLag < kRecordPendingSlots, "the lagged slot is in the ring");

// Marks the record of a pending entry dead and returns it: its published value was
// generation * 2 + 1, retiring is the next (even) value. A store, not a
// read-modify-write.
LA_ALWAYS_INLINE Record* retire(uint64_t entry) {
  uint32_t generation = static_cast<uint32_t>(entry >> 32);
  Record* r = slot(pending_id(entry));
  // The freed block's lifetime, counted once: every retirement of a freed record comes
  // through here (at the thread's next sample, from a full ring, at thread exit, in a
  // fork child). The stack id sits on the line the store below writes.
  stacks::count_lifetime(r->stack_id.load(std::memory_order_relaxed), pending_bucket(entry));
  r->seq.store(((generation << 1) + 2) & 255, std::memory_order_release);
  return r;
}

// keep_id() past a full cache, or for a thread that does not cache.
LA_NOINLINE void keep_id_locked(ThreadProfile& t, uint32_t id) {
  LockGuard g(g_free_lock);
  if (t.phase == kThreadLive) {
    // Spill half the cache so that the next frees stay local.
    while (t.rec_cache_n > kBatch) push_global(t.rec_cache[--t.rec_cache_n]);
    t.rec_cache[t.rec_cache_n++] = id;
  } else {
    push_global(id);
  }
}

// Keeps a retired slot for this thread's next samples, or gives it to the pool.
LA_ALWAYS_INLINE void keep_id(ThreadProfile& t, uint32_t id) {
  // Only a registered thread caches: its exit hook drains the cache. A thread that is
  // not registered (yet: a consumer registers at the end of its first free, in
  // alloc/alloc.cpp count_free) has no exit hook, and slots cached there would be lost
  // for good when it exits.
  if (LA_LIKELY(t.phase == kThreadLive && t.rec_cache_n < kRecordCacheMax)) {
    t.rec_cache[t.rec_cache_n++] = id;
    return;
  }
  keep_id_locked(t, id);
}

}  // namespace

void init() {}

namespace {
// Counts a record published or handed back (records, record_frees): on the calling
// thread's counters, summed with every other thread's by threads::fold_counters, or into
// the exited threads' totals for a thread that is not registered (past its exit hook,
// or one that only frees). stats.sampled_live is their difference: no walk.
LA_ALWAYS_INLINE void count_record(ThreadProfile& t, CounterId id) {
  if (LA_LIKELY(t.phase == kThreadLive)) t.counter[id].add(1);
  else threads::count_exited(id, 1);
}
}  // namespace

uint64_t add(ThreadProfile& t, uint32_t stack_id, uint64_t size, uint64_t birth_ns) {
  // Sequence numbers run modulo 256 (odd = live) so that the 7-bit generation in the
  // block header names the published value exactly; a walker is fooled only if one slot
  // is retired and republished 128 times during its read of that one record.
  uint32_t id, seq;
  Record* r;
  uint32_t lagged = (t.rec_pending_head - kPendingLag) & (kRecordPendingSlots - 1);
  uint64_t pending = t.rec_pending[lagged];
  if (pending != 0) {
    // The record of a block this thread freed kPendingLag frees ago: retired here and
    // published again, so its cache line is written by one thread, once. Retiring loads
    // the record's stack id; remove() asked for the line then, so it has had those frees'
    // time to arrive (see kPendingLag).
    id = pending_id(pending);
    r = retire(pending);
    // After the retirement: a walker that finds the slot empty finds the record dead.
    __atomic_store_n(&t.rec_pending[lagged], 0, __ATOMIC_RELEASE);
    seq = ((static_cast<uint32_t>(pending >> 32) << 1) + 3) & 255;
  } else {
    if (t.rec_cache_n == 0 && !refill(t)) return 0;
    id = t.rec_cache[--t.rec_cache_n];
    // After its exit hook (glibc's late TLS destructors) a thread's cache is never
    // drained again: hand back what refill() gave it beyond this one slot.
    if (LA_UNLIKELY(t.phase == kThreadExited) && t.rec_cache_n > 0) drain_cache(t);
    r = slot(id);
    seq = (r->seq.load(std::memory_order_relaxed) + 1) & 255;
    // A cached id was usually retired on another thread (producers allocate, consumers
    // free), whose core still holds its record's line: the load above waits for it to
    // come over. Asking for the next one now lets it travel while this thread runs up to
    // its next sample.
    if (LA_LIKELY(t.rec_cache_n > 0)) prefetch_for_write(slot(t.rec_cache[t.rec_cache_n - 1]));
  }
  // Seqlock writer: the slot's retiring store (even seq, possibly on another thread,
  // handed here through the free lists) must be visible before any new field value,
  // or a walker could pair the old odd seq with new fields. Free on x86; required by
  // the C++ model.
  std::atomic_thread_fence(std::memory_order_release);
  r->stack_id.store(stack_id, std::memory_order_relaxed);
  r->size_thread.store((size & kSizeMask) | (uint64_t{t.thread_index} << kThreadShift),
                       std::memory_order_relaxed);
  r->birth_ns.store(birth_ns, std::memory_order_relaxed);
  r->seq.store(seq, std::memory_order_release);  // even -> odd: published
  count_record(t, kCounter_records);
  return (uint64_t{seq >> 1} << 32) | (id + 1);
}

namespace {
// remove() on a thread that is not registered: retired at once, counted in the exited
// threads' totals. Out of line, so that remove() itself saves no registers.
LA_NOINLINE void remove_unregistered(ThreadProfile& t, uint64_t entry) {
  threads::count_exited(kCounter_record_frees, 1);
  retire(entry);
  keep_id(t, pending_id(entry));
}
}  // namespace

void remove(uint32_t header_value, uint32_t generation, uint64_t birth_ns) {
  ThreadProfile& t = this_thread_profile();
  bool live = t.phase == kThreadLive;
  uint64_t now = live ? coarse_now_ns_cached(t.clock) : coarse_now_ns();
  uint64_t bucket = prof::lifetime_bucket(now > birth_ns ? now - birth_ns : 0);
  uint64_t entry = bucket << kPendingBucketShift | (uint64_t{generation} << 32) | header_value;
  if (LA_LIKELY(live)) {
    t.counter[kCounter_record_frees].add(1);
    uint32_t pos = t.rec_pending_head & (kRecordPendingSlots - 1);
    uint64_t oldest = t.rec_pending[pos];
    // An entry kRecordPendingSlots frees old that no sample took: retired before its slot
    // is overwritten (a walker that no longer finds it pending must find it retired).
    if (oldest != 0) retire(oldest);
    __atomic_store_n(&t.rec_pending[pos], entry, __ATOMIC_RELEASE);
    t.rec_pending_head++;
    // The record's line is cold (written when the block was born), and whoever retires
    // it loads from it: ask for it now, so that it is here by then (kPendingLag).
    prefetch_for_write(slot(header_value - 1));
    if (oldest != 0) keep_id(t, pending_id(oldest));
    return;
  }
  remove_unregistered(t, entry);
}

uint64_t size_of(uint32_t header_value) {
  return slot(header_value - 1)->size_thread.load(std::memory_order_relaxed) & kSizeMask;
}

void drain_cache(ThreadProfile& t) {
  LockGuard g(g_free_lock);
  for (uint64_t& entry : t.rec_pending) {
    if (entry == 0) continue;
    retire(entry);
    push_global(pending_id(entry));
    __atomic_store_n(&entry, 0, __ATOMIC_RELEASE);
  }
  while (t.rec_cache_n > 0) push_global(t.rec_cache[--t.rec_cache_n]);
}

namespace {

// The pending retirements a walk leaves out, as sorted keys (id + 1) << 8 | generation,
// which the walk meets in its own order (record ids ascending). Taken once, before the
// records are read: a block freed after that is reported as it was when the walk began,
// like any block freed during a walk. Up to 16 threads' worth fits on the stack;
// beyond that the keys go in a mapping of their own (not malloc: a walk must not
// allocate from the heap it walks).
class PendingKeys {
 public:
  explicit PendingKeys(bool registry_held) {
    size_t room = threads::pending_records_room();
    if (room > kLocal) {
      void* mem = os_alloc(room * sizeof(uint64_t));
      if (mem != nullptr) {
        keys_ = static_cast<uint64_t*>(mem);
        mapped_ = room * sizeof(uint64_t);
      } else {
        room = kLocal;  // no memory: the threads past the first 16 keep theirs in the walk
      }
    }
    n_ = threads::copy_pending_records(keys_, room, registry_held);
    for (size_t i = 0; i < n_; ++i) keys_[i] = key(static_cast<uint32_t>(keys_[i]), keys_[i] >> 32);
    std::sort(keys_, keys_ + n_);
  }
  ~PendingKeys() {
    if (mapped_ != 0) os_free(keys_, mapped_);
  }
  PendingKeys(const PendingKeys&) = delete;
  PendingKeys& operator=(const PendingKeys&) = delete;

  static uint64_t key(uint32_t header_value, uint64_t generation) {
    return (uint64_t{header_value} << 8) | (generation & 255);
  }
  // Whether the record is pending; calls must come in ascending key order.
  bool pending(uint64_t k) {
    while (next_ < n_ && keys_[next_] < k) ++next_;
    return next_ < n_ && keys_[next_] == k;
  }

 private:
  static constexpr size_t kLocal = 16 * kRecordPendingSlots;
  uint64_t local_[kLocal];
  uint64_t* keys_ = local_;
  size_t mapped_ = 0;
  size_t n_ = 0;
  size_t next_ = 0;
};

void walk_records(uint64_t born_before_ns, prof::LiveBlockFn fn, void* ctx, bool registry_held) {
  PendingKeys pending(registry_held);
  uint32_t limit = g_next_fresh.load(std::memory_order_acquire);
  for (uint32_t c = 0; c < kMaxChunks && (c << kChunkShift) < limit; ++c) {
    Record* chunk = g_chunks[c].load(std::memory_order_acquire);
    if (chunk == nullptr) continue;
    for (uint32_t i = 0; i < kChunkRecords; ++i) {
      Record& r = chunk[i];
      uint32_t s1 = r.seq.load(std::memory_order_acquire);
      if ((s1 & 1u) == 0) continue;
      prof::LiveBlock b;
      b.stack_id = r.stack_id.load(std::memory_order_relaxed);
      uint64_t size_thread = r.size_thread.load(std::memory_order_relaxed);
      b.size = size_thread & kSizeMask;
      b.thread_index = static_cast<uint32_t>(size_thread >> kThreadShift);
      b.birth_ns = r.birth_ns.load(std::memory_order_relaxed);
      b.record = (c << kChunkShift) + i + 1;
      b.generation = (s1 >> 1) & kHeaderGenerationMask;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (r.seq.load(std::memory_order_relaxed) != s1) continue;
      if (b.birth_ns > born_before_ns) continue;
      if (pending.pending(PendingKeys::key(b.record, s1 >> 1))) continue;
      fn(ctx, b);
    }
  }
}

}  // namespace

void walk(uint64_t born_before_ns, prof::LiveBlockFn fn, void* ctx) {
  walk_records(born_before_ns, fn, ctx, /*registry_held=*/false);
}

void walk_registry_held(uint64_t born_before_ns, prof::LiveBlockFn fn, void* ctx) {
  walk_records(born_before_ns, fn, ctx, /*registry_held=*/true);
}

uint32_t record_limit() { return g_next_fresh.load(std::memory_order_acquire); }

bool lookup(uint32_t header_value, uint32_t generation, prof::LiveBlock* out) {
  uint32_t id = header_value - 1;
  if (header_value == 0 || id >= record_limit()) return false;
  Record* chunk = g_chunks[id >> kChunkShift].load(std::memory_order_acquire);
  if (chunk == nullptr) return false;
  Record& r = chunk[id & (kChunkRecords - 1)];
  uint32_t s1 = r.seq.load(std::memory_order_acquire);
  if ((s1 & 1u) == 0 || ((s1 >> 1) & kHeaderGenerationMask) != generation) return false;
  out->stack_id = r.stack_id.load(std::memory_order_relaxed);
  uint64_t size_thread = r.size_thread.load(std::memory_order_relaxed);
  out->size = size_thread & kSizeMask;
  out->thread_index = static_cast<uint32_t>(size_thread >> kThreadShift);
  out->birth_ns = r.birth_ns.load(std::memory_order_relaxed);
  out->record = header_value;
  out->generation = generation;
  std::atomic_thread_fence(std::memory_order_acquire);
  return r.seq.load(std::memory_order_relaxed) == s1;
}

uint64_t bytes_in_use() {
  uint64_t chunks = 0, pool_chunks = 0;
  for (uint32_t c = 0; c < kMaxChunks; ++c) {
    if (g_chunks[c].load(std::memory_order_relaxed) == nullptr) break;
    ++chunks;
    pool_chunks += g_pool[c].load(std::memory_order_relaxed) != nullptr;
  }
  return chunks * kChunkRecords * sizeof(Record) + pool_chunks * kChunkRecords * sizeof(uint32_t);
}

void fork_prepare() {
  g_chunk_lock.lock();
  g_free_lock.lock();
}
void fork_parent() {
  g_free_lock.unlock();
  g_chunk_lock.unlock();
}
void fork_child() {
  g_free_lock.reset_in_child();
  g_chunk_lock.reset_in_child();
}

}  // namespace live
}  // namespace leakalloc
