// The allocator's slow paths and the rest of the malloc family: what the fast paths
// (alloc/fast_path.h) leave to an out-of-line call, calloc, realloc, the aligned calls,
// usable size, outside blocks (memory mimalloc cannot place) and the diagnosis of bad
// pointers. The thread's life and the thread cache's setup are in alloc/thread_life.cpp.
#include "alloc/alloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <mimalloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc/fast_path.h"
#include "alloc/header.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_life.h"
#include "alloc/thread_state.h"
#include "config/options.h"
#include "profile/profiler.h"
#include "profile/sampler.h"
#include "profile/threads.h"

namespace leakalloc {

namespace {

// Everything cold is out of line (LA_SLOW_PATH), so that the fast paths below need few
// registers and no stack frame of their own.
#define LA_SLOW_PATH __attribute__((noinline, cold))

// Per-thread totals: owner-written counters of blocks and requested bytes, summed on
// read by stats (profile/threads.h). Only a registered thread's counters are summed, so
// a thread that frees before it ever allocated (a consumer) registers here; a thread
// that cannot (past its exit hook, or before the allocator is initialised) counts into
// the shared totals.
LA_SLOW_PATH void count_unregistered(CounterId blocks, CounterId bytes, size_t size) {
  ThreadState& t = t_state;
  if (prof::adopt_thread(t.profile)) {
    thread_settle(t, false);
    t.profile.counter[blocks].add(1);
    t.profile.counter[bytes].add(size);
    return;
  }
  threads::count_exited(blocks, 1);
  threads::count_exited(bytes, size);
}

LA_ALWAYS_INLINE void count_alloc(size_t size) {
  ThreadState& t = t_state;
  if (LA_UNLIKELY(t.profile.phase != kThreadLive)) return count_unregistered(kCounter_allocs, kCounter_alloc_bytes, size);
  t.profile.counter[kCounter_allocs].add(1);
  t.profile.counter[kCounter_alloc_bytes].add(size);
}

LA_ALWAYS_INLINE void count_free(size_t size) {
  ThreadState& t = t_state;
  if (LA_UNLIKELY(t.profile.phase != kThreadLive)) return count_unregistered(kCounter_frees, kCounter_free_bytes, size);
  t.profile.counter[kCounter_frees].add(1);
  t.profile.counter[kCounter_free_bytes].add(size);
}

LA_ALWAYS_INLINE bool is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// ---- Outside blocks (issue 24): memory mimalloc cannot place ----------------------------
// Two kinds of request mimalloc 2.0.9 cannot serve, and glibc does:
//  - alignments above kMiAlignMax (MI_ALIGNMENT_MAX, 16 MiB): posix_memalign(2^25..2^33)
//    returned ENOMEM. Such a block is an over-allocated mimalloc block, the user pointer
//    aligned inside it.
//  - a small address space (ulimit -v): mimalloc maps 32 MiB segments, so under
//    `ulimit -v 32768` its first allocation failed where glibc runs programs in 8 MiB.
//    When mimalloc cannot map, the block comes from glibc's own malloc instead (found in
//    libc's symbol table, not through our exported names), and from then on the process
//    runs as an allocator without profiling, with one message.
// Either way the header stays right before the user pointer, and 16 more bytes before it
// hold the prefix: the start of the underlying block (| 1 for glibc's) and a keyed check
// of (start, user pointer). An unsampled outside block carries kOutsideBit (with
// kUncachedBit: never cached); a sampled one is known by its "size in the record" field,
// its alignment (at least 2 * kMiAlignMax: only big-aligned blocks are sampled; glibc's
// are not) and the prefix's check.
constexpr size_t kMiAlignMax = size_t{1} << 24;
constexpr size_t kOutsidePrefix = 32;  // prefix + header

struct OutsidePrefix {
  uint64_t start;  // the underlying block; low bit: glibc's
  uint64_t check;
};

LA_ALWAYS_INLINE OutsidePrefix* prefix_of(const void* user) {
  return reinterpret_cast<OutsidePrefix*>(reinterpret_cast<uintptr_t>(user) - kOutsidePrefix);
}

uint64_t outside_check(const void* user, uint64_t start) {
  uint64_t x = (reinterpret_cast<uintptr_t>(user) ^ g_header_secret) * 0x9e3779b97f4a7c15ull;
  return (x ^ (x >> 31) ^ start) * 0xbf58476d1ce4e5b9ull;
}

// glibc's malloc family. Our exported malloc (and __libc_malloc) interpose glibc's, so
// the lookup starts after this library (RTLD_NEXT) and asks for glibc's symbol version;
// what it finds must lie in libc itself (the link map _dl_find_object gives for libc's
// write()), not in libmimalloc, which exports an unversioned malloc and may come later
// in the lookup order. dlvsym allocates only to report an error. Not dlsym on libc's
// link map: ld.so fills an initially loaded object's own search list only on dlopen,
// and this runs from the first malloc.
struct GlibcMalloc {
  void* (*malloc)(size_t);
  void (*free)(void*);
  size_t (*usable)(void*);
};
GlibcMalloc g_glibc{};
std::atomic<int> g_glibc_state{0};  // 0: not looked up, 1: found, 2: not found
std::atomic<bool> g_degraded{false};

void* glibc_symbol(const char* name, const void* libc_map) {
  void* f = dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5");
  struct dl_find_object info;
  if (f == nullptr || _dl_find_object(f, &info) != 0 || info.dlfo_link_map != libc_map) return nullptr;
  return f;
}

bool glibc_malloc_found() {
  int s = g_glibc_state.load(std::memory_order_acquire);
  if (LA_LIKELY(s != 0)) return s == 1;
  ReentrancyGuard g;
  struct dl_find_object libc;
  bool ok = false;
  if (_dl_find_object(reinterpret_cast<void*>(&::write), &libc) == 0 && libc.dlfo_link_map != nullptr) {
    g_glibc.malloc = reinterpret_cast<void* (*)(size_t)>(glibc_symbol("malloc", libc.dlfo_link_map));
    g_glibc.free = reinterpret_cast<void (*)(void*)>(glibc_symbol("free", libc.dlfo_link_map));
    g_glibc.usable = reinterpret_cast<size_t (*)(void*)>(glibc_symbol("malloc_usable_size", libc.dlfo_link_map));
    ok = g_glibc.malloc != nullptr && g_glibc.free != nullptr && g_glibc.usable != nullptr;
  }
  g_glibc_state.store(ok ? 1 : 2, std::memory_order_release);
  return ok;
}

// The first block glibc serves: profiling stops (its tables would need the address
// space the program is short of), once, with a message.
LA_SLOW_PATH void degrade(const char* why = nullptr) {
  if (g_degraded.exchange(true, std::memory_order_acq_rel)) return;
  prof::switch_off();
  if (why != nullptr) log_printf("%s: serving allocations from glibc's malloc from now on, without profiling", why);
  else
    log_message("mimalloc cannot map memory (an address-space limit such as ulimit -v?): "
                "serving allocations from glibc's malloc from now on, without profiling");
}

// An outside block of `size` bytes aligned to `align` (a power of two, >= 16), zeroed if
// asked. From mimalloc, over-allocated by the alignment, unless `glibc`; glibc's is
// also the answer when mimalloc has none.
LA_SLOW_PATH void* outside_alloc(size_t size, size_t align, bool zero, bool glibc, EntryFrame frame) {
  size_t total;
  if (__builtin_add_overflow(size, kOutsidePrefix + (align > kHeaderSize ? align : 0), &total) || size > kMaxRequest)
    return slow::enomem();
  void* start = nullptr;
  bool from_glibc = false;
  if (!glibc) start = zero ? mi_zalloc(total) : mi_malloc(total);
  if (start == nullptr && glibc_malloc_found()) {
    int saved = errno;
    start = g_glibc.malloc(total);
    errno = saved;
    if (start != nullptr) {
      from_glibc = true;
      if (zero) memset(start, 0, total);
      degrade();
    }
  }
  if (start == nullptr) return slow::enomem();
  uintptr_t user = (reinterpret_cast<uintptr_t>(start) + kOutsidePrefix + align - 1) & ~(uintptr_t{align} - 1);
  void* u = reinterpret_cast<void*>(user);
  uint64_t tagged = reinterpret_cast<uintptr_t>(start) | (from_glibc ? 1 : 0);
  prefix_of(u)->start = tagged;
  prefix_of(u)->check = outside_check(u, tagged);
  if (from_glibc) {  // never sampled: profiling is off from here on
    count_alloc(size);
    header_write_birth(u, size | kUncachedBit | kOutsideBit, birth_word_now(t_state.profile.clock));
    return u;
  }
  return alloc_finish(header_of(u), size, kUncachedBit | kOutsideBit, frame);
}

// The underlying block of an outside block (its prefix's start, | 1 for glibc's), or 0
// for any other block. `h` checked out.
LA_ALWAYS_INLINE uint64_t outside_start(const void* p, const BlockHeader* h) {
  bool outside = h->sampled() ? h->sampled_size_field() == kSizeInRecord &&
                                    (reinterpret_cast<uintptr_t>(p) & (2 * kMiAlignMax - 1)) == 0
                              : (h->tag & kOutsideBit) != 0;
  if (LA_LIKELY(!outside)) return 0;
  const OutsidePrefix* pre = prefix_of(p);
  return pre->check == outside_check(p, pre->start) ? pre->start : 0;
}

LA_SLOW_PATH void outside_free(uint64_t start) {
  void* block = reinterpret_cast<void*>(start & ~uint64_t{1});
  if (start & 1) g_glibc.free(block);
  else mi_free(block);
}

// Gives a released block's memory back: to mimalloc, or for an outside block to where
// it came from.
LA_ALWAYS_INLINE void give_back(void* p, BlockHeader* h) {
  if (LA_UNLIKELY(h->tag > kUnsampledSizeMask)) {
    if (uint64_t start = outside_start(p, h)) return outside_free(start);
  }
  mi_free(h);
}

// What a block can hold from its user pointer.
size_t block_usable(void* p, BlockHeader* h) {
  if (LA_UNLIKELY(h->tag > kUnsampledSizeMask)) {
    if (uint64_t start = outside_start(p, h)) {
      void* block = reinterpret_cast<void*>(start & ~uint64_t{1});
      size_t whole = (start & 1) ? g_glibc.usable(block) : mi_usable_size(block);
      return whole - (reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(block));
    }
  }
  return mi_usable_size(h) - kHeaderSize;
}

// mimalloc had no memory for a request it can place: glibc's malloc, if it has.
LA_SLOW_PATH void* from_glibc(size_t size, size_t align, bool zero, EntryFrame frame) {
  return outside_alloc(size, align < kHeaderSize ? kHeaderSize : align, zero, /*glibc=*/true, frame);
}

// Once glibc has served a block, it serves every block that would come from mimalloc: a
// failed mimalloc call costs several mmap calls, every time.
LA_ALWAYS_INLINE bool degraded() { return LA_UNLIKELY(g_degraded.load(std::memory_order_relaxed)); }

// alloc_finish() of what mimalloc returned, or when it returned nothing, glibc's block.
LA_ALWAYS_INLINE void* finish_or_glibc(void* base, size_t size, uint64_t flags, size_t align, bool zero,
                                       EntryFrame frame) {
  if (LA_UNLIKELY(base == nullptr)) return from_glibc(size, align, zero, frame);
  return alloc_finish(base, size, flags, frame);
}

// Whether the header of a page-aligned pointer may be read: it is on the page before,
// which a foreign pointer may not have mapped, and neither may a large block that was
// already freed (its memory goes back to the system). mimalloc's segment map vouches for
// the blocks it covers (`in_heap`); a block outside it (mimalloc places a huge one where
// mmap puts it) is probed with memory_readable (base/os.h), a system call or two per
// free of such a block, small beside the munmap that follows.
bool page_aligned_header_readable(void* p, bool in_heap) {
  return in_heap || memory_readable(reinterpret_cast<uintptr_t>(header_of(p)), kHeaderSize);
}

// Whether `op` gives blocks back (free, cfree, operator delete...): a freed block handed
// to it is a double free; handed to realloc or malloc_usable_size, a use after free.
bool frees(const char* op) {
  for (const char* s = op; *s != '\0'; ++s)
    if ((s[0] == 'f' && s[1] == 'r' && s[2] == 'e' && s[3] == 'e') ||
        (s[0] == 'd' && s[1] == 'e' && s[2] == 'l' && s[3] == 'e'))
      return true;
  return false;
}

// Validates that `p` is a live leakalloc block and returns its header; never returns
// otherwise. Reading p - 16 is safe unless p starts a page (the header is then on the
// previous page): only in that case is it checked first.
[[noreturn]] LA_SLOW_PATH void diagnose_bad_pointer(void* p, const char* op) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if ((a & 15) != 0) bad_pointer(op, p, "not the start of a block allocated by leakalloc");
  BlockHeader* h = header_of(p);
  bool page_start = (a & (kPageAlign - 1)) == 0;
  bool in_heap = mi_is_in_heap_region(h);
  if (page_start && !page_aligned_header_readable(p, in_heap)) {
    // Blocks of kPageAlignedFrom bytes and up start on a page: a second free of one
    // whose memory was unmapped by the first ends here too.
    bad_pointer(op, p, "not allocated by leakalloc, or a large block that was already freed "
                       "(double free: its memory went back to the system)");
  }
  if (!page_start && !in_heap) bad_pointer(op, p, "not allocated by leakalloc");
  // A block in a thread cache carries that cache's mark instead (alloc/thread_cache.h);
  // before any thread has started, no block has been cached (and the keys are unset).
  bool cache_keys = cache_keys_set();
  if (h->word1 == freed_mark(p) || (cache_keys && cache_marked(h->tag, h->word1)))
    bad_pointer(op, p, frees(op) ? "double free: the block was already freed"
                                 : "use after free: the block was already freed");
  if (!in_heap) bad_pointer(op, p, "not allocated by leakalloc, or its header was overwritten");
  bad_pointer(op, p, "not the start of a leakalloc block (interior pointer) or its header was overwritten");
}

LA_ALWAYS_INLINE BlockHeader* checked_header(void* p, const char* op) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (LA_UNLIKELY((a & 15) != 0)) diagnose_bad_pointer(p, op);
  if (LA_UNLIKELY((a & (kPageAlign - 1)) == 0) && !page_aligned_header_readable(p, mi_is_in_heap_region(header_of(p))))
    diagnose_bad_pointer(p, op);
  BlockHeader* h = header_of(p);
  if (LA_UNLIKELY(!header_valid(p, h))) diagnose_bad_pointer(p, op);
  return h;
}

// The requested size of a block whose header checked out: the header's, or for a sampled
// block whose header says "size in the record", its live record's.
LA_ALWAYS_INLINE size_t requested_size(const BlockHeader* h) {
  if (!h->sampled()) return h->unsampled_size();
  uint64_t field = h->sampled_size_field();
  return LA_UNLIKELY(field == kSizeInRecord) ? prof::record_size(h->record()) : field;
}

// Frees a block whose header checked out: frees its live record if it is sampled,
// then puts it on this thread's bin of its class (of aligned blocks for a small aligned
// one), or gives it to mimalloc when it is not cacheable (aligned the old way, or larger
// than the last class) or the bin has no room.
LA_ALWAYS_INLINE void release(void* p, BlockHeader* h) {
  size_t size = requested_size(h);
  bool sampled = h->sampled();
  bool aligned = !sampled && h->unsampled_flags() == kAlignedCacheBit;
  bool cacheable = aligned || (sampled ? h->sampled_size_field() : h->tag) <= kCacheMaxRequest;
  if (LA_UNLIKELY(sampled)) prof::record_free(h->record(), h->sampled_generation(), h->birth_ns());
  h->word1 = freed_mark(p);
  count_free(size);
  if (cacheable) {
    uint32_t salt = cache_bin_offset(size) + (aligned ? kAlignedSalt : 0);
    CacheBin& b = cache_bin(aligned ? t_state.aligned_cache : t_state.cache, size);
    if (b.room > 0) return cache_push(b, h, salt);
    // A full bin of aligned blocks gives its newest back instead: an aligned request
    // takes only the newest block, and only when it is aligned enough, so a bin full of
    // blocks of another alignment would otherwise keep every block of this one out. (A
    // bin with no room and no block is one whose thread has no cache.)
    if (aligned && b.head != nullptr) {
      void* newest = cache_pop(b, salt);
      static_cast<BlockHeader*>(newest)->word1 = freed_mark(static_cast<char*>(newest) + kHeaderSize);
      mi_free(newest);
      return cache_push(b, h, salt);
    }
  }
  give_back(p, h);
}

}  // namespace

void serve_from_glibc(const char* why) {
  if (glibc_malloc_found()) degrade(why);
  else log_printf("%s: profiling is off", why);
}

uintptr_t entry_points_lo() {
  const uintptr_t entries[] = {
      reinterpret_cast<uintptr_t>(&la_malloc),     reinterpret_cast<uintptr_t>(&la_calloc),
      reinterpret_cast<uintptr_t>(&la_realloc),    reinterpret_cast<uintptr_t>(&la_reallocarray),
      reinterpret_cast<uintptr_t>(&la_aligned),    reinterpret_cast<uintptr_t>(&la_posix_memalign),
      reinterpret_cast<uintptr_t>(&la_aligned_alloc), reinterpret_cast<uintptr_t>(&la_memalign),
      reinterpret_cast<uintptr_t>(&la_valloc),     reinterpret_cast<uintptr_t>(&la_pvalloc)};
  uintptr_t lo = UINTPTR_MAX;
  for (uintptr_t a : entries) lo = a < lo ? a : lo;
  return lo;
}

uint32_t sampled_record_of(const void* user) {
  if (user == nullptr || (reinterpret_cast<uintptr_t>(user) & 15) != 0) return 0;
  const BlockHeader* h = header_of(const_cast<void*>(user));
  return header_valid(user, h) ? h->record() : 0;
}

namespace slow {

LA_SLOW_PATH void* enomem() {
  errno = ENOMEM;
  return nullptr;
}

// The allocation the fast path did not finish: mimalloc failed, the countdown ran out
// (sampling or the thread's first allocation), or the thread is past its exit hook.
LA_SLOW_PATH void* alloc(void* base, size_t size, uint64_t flags, EntryFrame frame) {
  if (base == nullptr) return enomem();
  void* user = static_cast<char*>(base) + kHeaderSize;
  count_alloc(size);
  uint64_t birth_ns = 0;
  uint64_t sample = sample_alloc(size, frame, &birth_ns);
  // A sampled block's birth was read after its stack was captured, so that an unwind
  // does not age the block; its header and its live record carry that same time.
  // A sampled aligned block has no room for kUncachedBit: its tag says "size in the
  // record", which keeps it out of the thread cache as well.
  if (sample != 0) header_write(user, sampled_tag(sample, flags != 0 ? kSizeInRecord : size), birth_ns);
  else header_write_birth(user, size | flags, birth_word_now(t_state.profile.clock));
  if (LA_UNLIKELY(!(t_state.cache_ready & t_state.end_hooked))) thread_settle(t_state, true);
  return user;
}

LA_NOINLINE void* malloc_small(size_t size, EntryFrame frame) {
  uint32_t c = cache_class(size);
  void* base = cache_pop(t_state.cache[c], cache_salt(c, false));
  // An empty bin is also what a thread whose cache is not set up has (not registered
  // yet, past its exit hook, tcache:false).
  if (base == nullptr) base = degraded() ? nullptr : mi_malloc(cache_class_size(c));
  if (LA_UNLIKELY(base == nullptr)) return from_glibc(size, 0, false, frame);
  return alloc_finish(base, size, 0, frame);
}

LA_NOINLINE void* malloc_large(size_t size, EntryFrame frame) {
  if (LA_UNLIKELY(size > kMaxRequest)) return enomem();
  if (LA_UNLIKELY(size >= kPageAlignedFrom)) return la_aligned(kPageAlign, size, frame);
  void* base = degraded() ? nullptr : mi_malloc(size + kHeaderSize);
  if (LA_UNLIKELY(base == nullptr)) return from_glibc(size, 0, false, frame);
  return alloc_finish(base, size, 0, frame);
}

LA_SLOW_PATH void free(void* p, const char* op) { release(p, checked_header(p, op)); }

}  // namespace slow

[[noreturn]] __attribute__((cold)) void bad_pointer(const char* op, const void* p, const char* why) {
  log_printf("%s(): invalid pointer %p: %s; aborting", op, p, why);
  abort();
}

void* la_malloc(size_t size, EntryFrame frame) { return malloc_fast(size, frame); }

void* la_calloc(size_t n, size_t size, EntryFrame frame) {
  size_t total;
  if (LA_UNLIKELY(__builtin_mul_overflow(n, size, &total) || total > kMaxRequest)) return slow::enomem();
  if (degraded()) return from_glibc(total, 0, true, frame);
  if (total <= kCacheMaxRequest) {
    // A cached block is dirty: zero it as mi_zalloc would zero a reused one, the whole
    // class size (a program may read up to malloc_usable_size()).
    uint32_t c = cache_class(total);
    void* base = cache_pop(t_state.cache[c], cache_salt(c, false));
    if (base == nullptr) return finish_or_glibc(mi_zalloc(cache_class_size(c)), total, 0, 0, true, frame);
    void* user = alloc_finish(base, total, 0, frame);
    memset(user, 0, cache_class_size(c) - kHeaderSize);
    return user;
  }
  if (total >= kPageAlignedFrom)
    return finish_or_glibc(mi_zalloc_aligned_at(total + kHeaderSize, kPageAlign, kHeaderSize), total, kUncachedBit,
                           kPageAlign, true, frame);
  return finish_or_glibc(mi_zalloc(total + kHeaderSize), total, 0, 0, true, frame);
}

void* la_aligned(size_t align, size_t size, EntryFrame frame) {
  if (LA_UNLIKELY(size > kMaxRequest)) return slow::enomem();
  if (size >= kPageAlignedFrom && align < kPageAlign) align = kPageAlign;
  if (align <= kHeaderSize) return malloc_fast(size, frame);
  if (degraded()) return from_glibc(size, align, false, frame);
  if (size <= kCacheMaxRequest && align <= kCacheMaxAlign) {
    // A small block of a modest alignment is a block of its size class: mimalloc is asked
    // for the whole class size after the header, which may then sit inside mimalloc's
    // block (mi_free and mi_usable_size find the block from it), and it holds the class
    // size from the header as every cached block does (alloc/thread_cache.h). Its free
    // puts it in the thread's bin of aligned blocks of its class, whose newest block
    // serves the next aligned request of the class when it is aligned enough: a loop of
    // posix_memalign(64, 64) and free no longer calls mimalloc, whose aligned path
    // over-allocates at every call (76 ns a pair before, against mimalloc's 21). The
    // bins are apart from the plain blocks' bins: mimalloc's over-allocated blocks would
    // otherwise go on to serve plain requests, each larger than its class by up to the
    // alignment.
    // (The exported aligned entry points try the bin inline first; la_* callers get it
    // here, and a miss there looks once more at the same head.)
    if (void* p = aligned_cached(align, size, frame)) return p;
    return finish_or_glibc(mi_malloc_aligned_at(cache_class_size(cache_class(size)), align, kHeaderSize), size,
                           kAlignedCacheBit, align, false, frame);
  }
  // Any other aligned block: its header sits inside mimalloc's block, not at its start,
  // and the block's usable size from the header is not a size class, so the thread cache
  // must not take it.
  // Beyond mimalloc's largest alignment: over-allocated, an outside block.
  if (LA_UNLIKELY(align > kMiAlignMax)) return outside_alloc(size, align, false, /*glibc=*/false, frame);
  return finish_or_glibc(mi_malloc_aligned_at(size + kHeaderSize, align, kHeaderSize), size, kUncachedBit, align,
                         false, frame);
}

void la_free(void* p, const char* op) { free_fast(p, op); }

void la_free_sized(void* p, size_t /*size*/, const char* op) { free_fast(p, op); }

size_t la_usable_size(const void* cp) {
  if (cp == nullptr) return 0;
  void* p = const_cast<void*>(cp);
  BlockHeader* h = checked_header(p, "malloc_usable_size");
  // A block of a cache class (unsampled, not aligned) holds at least its class size
  // (alloc/thread_cache.h), so that is its answer, from the header alone, without
  // mimalloc's page lookup: 4.9 ns instead of 6.8 in a loop over 1000 blocks (mimalloc
  // 4.3). Programs that account their memory ask at every malloc and free (Redis's
  // zmalloc does). A block that mimalloc made larger (one shrunk in place by realloc)
  // says less than it could hold, never more.
  if (h->tag <= kCacheMaxRequest && cache_supported())
    return cache_class_size(cache_class(h->tag)) - kHeaderSize;
  return block_usable(p, h);
}

void* la_realloc(void* p, size_t size, const char* op, EntryFrame frame) {
  if (p == nullptr) return malloc_fast(size, frame);
  BlockHeader* h = checked_header(p, op);
  if (size == 0) {  // glibc: realloc(p, 0) frees p and returns NULL
    release(p, h);
    return nullptr;
  }
  size_t usable = block_usable(p, h);
  // Shrinking (to no less than half) or growing within the usable size stays in place;
  // the header then records the new size, and the birth is unchanged (the memory has
  // been held since then). A sampled block is sampled again here, with this call's
  // stack (prof::sample_again): a realloc that moves would record this call too. An
  // unsampled block's growth is charged to the sampler (prof::sample_growth). Were
  // it to move every time instead, a buffer grown by small steps would be copied whole
  // at each step once sampled: quadratic, and at sample:19 every block over 512 KiB
  // is soon sampled.
  if (size > kMaxRequest) return slow::enomem();
  // A block resized in place keeps its flags: kUncachedBit, kAlignedCacheBit, or for a
  // sampled aligned one "size in the record". A block the thread cache may take (any
  // but the first and the last) must hold the class size of its new size from its
  // header (alloc/thread_cache.h): true of every block whose header starts mimalloc's
  // block (its usable size is one of mimalloc's sizes), not always of a small aligned
  // one (la_aligned), whose header may sit inside it, and which must stay small.
  bool sampled = h->sampled();
  uint64_t flags = sampled ? 0 : h->unsampled_flags();
  bool size_in_record = sampled ? h->sampled_size_field() == kSizeInRecord : flags != 0;
  bool never_cached = size_in_record && flags != kAlignedCacheBit;
  bool fits_class = never_cached || (size <= kCacheMaxRequest
                                         ? cache_class_size(cache_class(size)) <= usable + kHeaderSize
                                         : flags != kAlignedCacheBit);
  if (size <= usable && size >= usable / 2 && fits_class) {
    ThreadState& t = t_state;
    size_t old = requested_size(h);
    uint64_t sample = 0;
    if (sampled) {
      sample = prof::sample_again(t.profile, size, frame, h->birth_ns());
    } else if (size > old) {
      // The growth is charged to the sampler, and may sample the block here.
      int64_t left = countdown_after(t.profile, size - old);
      if (LA_LIKELY(left > 0)) countdown_keep(t.profile, left);
      else sample = prof::sample_growth(t.profile, size - old, size, frame, h->birth_ns());
    }
    if (LA_UNLIKELY(!t.end_hooked)) thread_settle(t, false);  // the sampler may have registered it
    // A sampled block that could not be recorded again moves instead (below).
    if (!sampled || sample != 0) {
      if (sampled) prof::record_free(h->record(), h->sampled_generation(), h->birth_ns());
      if (sample != 0)
        header_write(p, sampled_tag(sample, size_in_record ? kSizeInRecord : size), h->birth_ns());
      else
        header_write_birth(p, size | flags, h->word1 & ~kCheckMask);
      count_free(old);
      count_alloc(size);
      return p;
    }
  }
  void* q = malloc_fast(size, frame);
  if (q == nullptr) return nullptr;  // errno is ENOMEM; p is untouched, as C requires
  // Copy the whole usable size, not just the requested one: programs that grow into
  // malloc_usable_size() expect those bytes to survive a realloc.
  memcpy(q, p, size < usable ? size : usable);
  release(p, h);
  return q;
}

void* la_reallocarray(void* p, size_t n, size_t size, EntryFrame frame) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return slow::enomem();
  return la_realloc(p, total, "reallocarray", frame);
}

int la_posix_memalign(void** out, size_t align, size_t size, EntryFrame frame) {
  if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  int saved = errno;
  void* p = la_aligned(align, size, frame);
  if (p == nullptr) {
    errno = saved;  // POSIX: report through the return value only
    return ENOMEM;
  }
  *out = p;
  return 0;
}

void* la_aligned_alloc(size_t align, size_t size, EntryFrame frame) {
  if (!is_pow2(align)) { errno = EINVAL; return nullptr; }
  return la_aligned(align, size, frame);
}

void* la_memalign(size_t align, size_t size, EntryFrame frame) {
  // glibc rounds a non-power-of-two alignment up to the next power of two.
  if (align == 0) align = 1;
  if (!is_pow2(align)) {
    if (align > (kMaxRequest >> 1)) { errno = EINVAL; return nullptr; }
    size_t a = 1;
    while (a < align) a <<= 1;
    align = a;
  }
  return la_aligned(align, size, frame);
}

void* la_valloc(size_t size, EntryFrame frame) { return la_aligned(os_page_size(), size, frame); }

void* la_pvalloc(size_t size, EntryFrame frame) {
  size_t page = os_page_size();
  if (size > kMaxRequest) return slow::enomem();
  size_t rounded = size == 0 ? page : (size + page - 1) & ~(page - 1);
  return la_aligned(page, rounded, frame);
}

}  // namespace leakalloc
