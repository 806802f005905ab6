// The thread's life in the allocator (alloc/thread_state.h, alloc/alloc.h): its start
// (thread_settle: the profiler registers it, its bins get their room, its one exit hook
// is registered), that exit hook (thread_end), and the thread cache's keys, setup,
// flush, fork-child adoption and accounting.
//
// Contract: everything here is off the fast paths (alloc/fast_path.h), which only pop
// and push on bins this file gives room to. Runs inside allocations: nothing here
// allocates except glibc's node for the exit hook, under a ReentrancyGuard. No leakalloc
// lock is held; the registry walks (stats, fork child) take the registry's.
#include "alloc/thread_life.h"

#include <mimalloc.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "alloc/alloc.h"
#include "alloc/header.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"
#include "config/options.h"
#include "profile/profiler.h"
#include "profile/sampler.h"
#include "profile/threads.h"

// glibc's registration of a thread_local destructor (GLIBC_2.18), and this library's
// handle for it.
extern "C" int __cxa_thread_atexit_impl(void (*fn)(void*), void* obj, void* dso_symbol);
extern "C" void* __dso_handle;

namespace leakalloc {

uint64_t g_link_key = 0;
uint64_t g_mark_key = 0;
LA_TLS ThreadState t_state;

namespace {

// The cache's link and mark keys (alloc/thread_cache.h), before the first block is
// cached: AT_RANDOM's other 8 bytes (the header secret takes the first 8, base/os.cpp),
// so that a freed mark read from the heap, which gives the header secret away, does not
// give these away too. Every thread sets them (once) as it starts (thread_settle),
// before it caches a block: threads that race here write the same values, and the
// acquire load publishes them to a thread that finds them set.
std::atomic<bool> g_cache_keys_set{false};
void ensure_cache_keys() {
  if (LA_LIKELY(g_cache_keys_set.load(std::memory_order_acquire))) return;
  const unsigned char* rnd = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
  uint64_t key = 0x9e3779b97f4a7c15ull;
  if (rnd != nullptr)
    for (int i = 8; i < 16; ++i) key = (key << 8) | rnd[i];
  g_link_key = key ^ (reinterpret_cast<uintptr_t>(&g_link_key) * 0xff51afd7ed558ccdull);
  g_mark_key = (g_link_key ^ (g_link_key >> 29)) * 0xc4ceb9fe1a85ec53ull;
  g_cache_keys_set.store(true, std::memory_order_release);
}

enum CacheSupport : int { kCacheUnchecked = 0, kCacheSupported = 1, kCacheUnsupported = 2 };
std::atomic<int> g_cache_support{kCacheUnchecked};

}  // namespace

// The cache's premise: every usable size mimalloc gives a block of at most
// kCacheMaxTotal bytes is one of the cache's class sizes. mi_good_size() is mimalloc's
// own answer for a request (pure arithmetic, no allocation); a request of more than
// size(c - 1) bytes (at least the header's 16) must get at least size(c).
bool cache_supported() {
  int s = g_cache_support.load(std::memory_order_relaxed);
  if (LA_LIKELY(s != kCacheUnchecked)) return s == kCacheSupported;
  bool ok = true;
  for (uint32_t c = 1; c < kCacheBins && ok; ++c) {
    size_t lowest = c == 1 ? kHeaderSize : cache_class_size(c - 1) + 1;
    ok = mi_good_size(lowest) >= cache_class_size(c) && mi_good_size(cache_class_size(c)) == cache_class_size(c);
  }
  if (!ok) log_message("the loaded mimalloc's size classes are not the ones the thread cache expects; tcache is off");
  g_cache_support.store(ok ? kCacheSupported : kCacheUnsupported, std::memory_order_relaxed);
  return ok;
}

bool cache_keys_set() { return g_cache_keys_set.load(std::memory_order_acquire); }

namespace {

// Gives every block of a bin back to mimalloc, checking each link as a pop does.
void cache_drain(CacheBin& b, uint32_t salt) {
  void* p = b.head;
  b.head = nullptr;
  while (p != nullptr) {
    void* next = cache_next(p, salt);
    static_cast<BlockHeader*>(p)->word1 = freed_mark(static_cast<char*>(p) + kHeaderSize);
    mi_free(p);
    b.room++;
    p = next;
  }
}

// Calls fn(bin, class) for each of the thread's bins: those of plain blocks and those of
// aligned ones. `State` is ThreadState or const ThreadState.
template <typename State, typename Fn>
void for_each_bin(State& t, Fn fn) {
  for (uint32_t i = 1; i < kCacheBins; ++i) {
    fn(t.cache[i], i);
    fn(t.aligned_cache[i], i);
  }
}

void cache_drain_all(ThreadState& t) {
  for (uint32_t i = 1; i < kCacheBins; ++i) {
    cache_drain(t.cache[i], cache_salt(i, false));
    cache_drain(t.aligned_cache[i], cache_salt(i, true));
  }
}

// Whether the thread's bins are to have room (thread.tcache.enabled, opt.tcache).
bool cache_wanted(const ThreadState& t) {
  return t.cache_mode == kCacheFollowOption ? opt(kOpt_tcache) != 0 : t.cache_mode == kCacheForcedOn;
}

// The thread's one exit hook, registered by thread_settle: it runs with the thread's
// C++ thread_local destructors, which glibc runs before any pthread key destructor.
// The bins go first (thread_cache_end, alloc/alloc.h: before mimalloc's own key
// destructor), while the thread is still live: the free fast path's cache hit looks at
// the bin's room, not at the phase. Then the profiler's part ends (threads::end_current),
// except on the main thread: exit() runs thread_local destructors first, and the
// program's atexit handlers, static destructors and the final dump come after; the main
// thread stays registered through them (its TLS is never reused). What the thread does
// after this hook (pthread key destructors, glibc's own teardown) is counted in the
// exited totals and bypasses the thread cache.
void thread_end(void* arg) {
  ThreadState& t = *static_cast<ThreadState*>(arg);
  thread_cache_end(t);
  if (syscall(SYS_gettid) != getpid()) threads::end_current(t.profile);
}

}  // namespace

// A thread's start, from the slow paths that may be its first (an allocation, a free on
// a thread that never allocated, a realloc) and from the constructor for the main
// thread: once the profiler has registered the thread and the options have been read
// from the environment (the first malloc may come before environ is set), its exit hook
// is registered and, `with_cache` (from an allocation), its bins get their room: a
// thread that only frees (a queue's consumer) never caches, since nothing of its own
// would take the blocks back. Cheap to call again.
void thread_settle(ThreadState& t, bool with_cache) {
  if (t.profile.phase != kThreadLive || !options_loaded_from_environment()) return;
  ensure_cache_keys();
  if (with_cache && !t.cache_ready && cache_wanted(t) && cache_supported()) {
    for_each_bin(t, [](CacheBin& b, uint32_t c) { b.room += cache_bin_limit(c); });
    t.cache_ready = 1;
  }
  if (!t.end_hooked) {
    // glibc allocates a node for it: leakalloc's own allocation, untracked, which comes
    // back here and finds everything done. No leakalloc lock is held: glibc takes its
    // loader lock, as for any C++ thread_local with a destructor.
    t.end_hooked = 1;
    ReentrancyGuard g;
    __cxa_thread_atexit_impl(thread_end, &t, &__dso_handle);
  }
}

void thread_cache_release(ThreadState& t) {
  cache_drain_all(t);
  if (t.cache_ready) for_each_bin(t, [](CacheBin& b, uint32_t c) { b.room -= cache_bin_limit(c); });
  t.cache_ready = 0;
}

void thread_cache_end(ThreadState& t) {
  thread_cache_release(t);
  t.cache_mode = kCacheForcedOff;  // thread_settle() must not set the bins up again
}

void thread_gone_in_child(ThreadProfile& gone_part) {
  ThreadState& gone = state_of(gone_part);
  ThreadState& t = t_state;
  if (&gone == &t) return;
  // What does not fit stays with the gone thread's bins: its memory is leaked, as before.
  auto move = [](CacheBin& from, CacheBin& to, uint32_t salt) {
    while (from.head != nullptr && to.room > 0) cache_push(to, cache_pop(from, salt), salt);
    from.head = nullptr;
  };
  for (uint32_t i = 1; i < kCacheBins; ++i) {
    move(gone.cache[i], t.cache[i], cache_salt(i, false));
    move(gone.aligned_cache[i], t.aligned_cache[i], cache_salt(i, true));
  }
}

void thread_cache_flush() { cache_drain_all(t_state); }

void thread_prepare() {
  ThreadState& t = t_state;
  if (t.profile.phase == kThreadNew) prof::adopt_thread(t.profile);
  thread_settle(t, true);
}

// What the thread has, or for a thread whose first slow-path malloc has not come yet,
// what thread_settle() will give it.
bool thread_cache_enabled() {
  ThreadState& t = t_state;
  if (t.cache_ready) return true;
  return t.profile.phase != kThreadExited && cache_wanted(t) && cache_supported();
}

bool thread_cache_set_enabled(bool on) {
  ThreadState& t = t_state;
  if (!on) {
    t.cache_mode = kCacheForcedOff;
    thread_cache_release(t);
    return true;
  }
  if (!cache_supported()) return false;
  t.cache_mode = kCacheForcedOn;
  // A thread that is not registered yet sets its bins up at its first slow-path malloc.
  thread_settle(t, true);
  return true;
}

uint64_t thread_cache_total_bytes() {
  uint64_t bytes = 0;
  threads::for_each_thread(
      [](void* ctx, const ThreadProfile& part) {
        const ThreadState& t = state_of(part);
        if (__atomic_load_n(&t.cache_ready, __ATOMIC_RELAXED) == 0) return;
        for_each_bin(t, [ctx](const CacheBin& b, uint32_t c) {
          int32_t held = cache_bin_limit(c) - __atomic_load_n(&b.room, __ATOMIC_RELAXED);
          if (held > 0) *static_cast<uint64_t*>(ctx) += static_cast<uint64_t>(held) * cache_class_size(c);
        });
      },
      &bytes);
  return bytes;
}

[[noreturn]] __attribute__((cold)) void cache_corrupt(const void* base, bool bad_link, uint64_t mark_diff) {
  const void* user = static_cast<const char*>(base) + kHeaderSize;
  if (bad_link)
    log_printf("heap corruption: the free-list link in the header of freed block %p was overwritten "
               "(a buffer overflow from the block before it, or a write after free); aborting", user);
  else if ((mark_diff & ~kSaltBits) == 0)
    log_printf("heap corruption: freed block %p sits in the thread cache of another size class "
               "(its free-list link was forged); aborting", user);
  else
    log_printf("heap corruption: the header of freed block %p was overwritten while it was cached "
               "(a buffer overflow from the block before it, or a write after free); aborting", user);
  abort();
}

}  // namespace leakalloc
