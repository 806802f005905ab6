// Stack capture under stress (issue 3): a dlopen'd library's first calls make the
// unwinder fill its caches while several threads sample every allocation, and an
// allocation made from inside the unwinder itself must be served untracked.
#include <dlfcn.h>
#include <pthread.h>
#include <gtest/gtest.h>
#include <link.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "profile/frame_cache.h"
#include "profile/profiler.h"
#include "profile/sampler.h"
#include "profile/threads.h"
#include "profile/unwind.h"
#include "tests/profile/prof_test_util.h"

namespace prof = leakalloc::prof;
using namespace proftest;

// ---- an allocating dl_iterate_phdr ----------------------------------------------------
// libunwind finds unwind tables through dl_iterate_phdr; this executable exports its own
// (it is linked with -rdynamic, so libunwind binds to it), which mallocs before calling
// glibc's when g_reenter is set. Inside a capture that malloc re-enters the allocator.
namespace {
using DipFn = int (*)(int (*)(struct dl_phdr_info*, size_t, void*), void*);
std::atomic<DipFn> g_real_dip{nullptr};
std::atomic<bool> g_reenter{false};
std::atomic<uint64_t> g_calls_in_capture{0};
constexpr size_t kReentrantSize = 999;
constexpr uint32_t kMaxKept = 1 << 16;
void* g_kept[kMaxKept];
std::atomic<uint32_t> g_nkept{0};

// With g_slow_lookup set, lookups made from inside a capture hold glibc's
// dl_load_write_lock (taken around the callbacks) for a while, as a lookup in a large
// program does: a fork() landing then leaves the lock held in the child.
std::atomic<bool> g_slow_lookup{false};
std::atomic<uint64_t> g_slow_lookups{0};
struct SlowCb {
  int (*cb)(struct dl_phdr_info*, size_t, void*);
  void* data;
  bool slept;
};
int slow_trampoline(struct dl_phdr_info* info, size_t size, void* arg) {
  SlowCb* s = static_cast<SlowCb*>(arg);
  if (!s->slept) {
    s->slept = true;
    struct timespec ts{0, 2 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  return s->cb(info, size, s->data);
}
}  // namespace

extern "C" __attribute__((visibility("default"))) int dl_iterate_phdr(
    int (*cb)(struct dl_phdr_info*, size_t, void*), void* data) noexcept {
  DipFn real = g_real_dip.load(std::memory_order_acquire);
  if (real == nullptr) {
    real = reinterpret_cast<DipFn>(dlsym(RTLD_NEXT, "dl_iterate_phdr"));
    g_real_dip.store(real, std::memory_order_release);
  }
  if (g_slow_lookup.load(std::memory_order_relaxed) && leakalloc::this_thread_profile().guard != 0) {
    g_slow_lookups.fetch_add(1, std::memory_order_relaxed);
    SlowCb s{cb, data, false};
    return real(slow_trampoline, &s);
  }
  if (g_reenter.load(std::memory_order_relaxed) && leakalloc::this_thread_profile().guard != 0) {
    g_calls_in_capture.fetch_add(1, std::memory_order_relaxed);
    void* p = malloc(kReentrantSize);
    uint32_t i = g_nkept.fetch_add(1, std::memory_order_relaxed);
    if (i < kMaxKept) g_kept[i] = p;
    else free(p);
  }
  return real(cb, data);
}

namespace {

void require_sample0() {
  ASSERT_EQ(prof::lg_sample(), 0) << "LEAKALLOC_CONF=sample:0 was not applied";
}

using ChainFn = void* (*)(int, size_t);

uint64_t count_size(const std::vector<LiveBlock>& blocks, uint64_t size) {
  uint64_t n = 0;
  for (const LiveBlock& b : blocks) n += b.size == size;
  return n;
}

TEST(ProfUnwind, DlopenWhileSamplingFromThreads) {
  require_sample0();
  constexpr int kThreads = 4, kIters = 12, kPerIter = 20;
  std::atomic<bool> stop{false};
  std::vector<std::thread> background;
  for (int t = 0; t < 2; ++t)
    background.emplace_back([&stop, t] {
      void* ring[32] = {};
      for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        free(ring[i % 32]);
        ring[i % 32] = bt_root((i + t * 5) % 512, 9, 48);
      }
      for (void* p : ring) free(p);
    });

  std::vector<std::vector<void*>> kept(kThreads);
  std::vector<void*> last_handle(kThreads);
  std::vector<uint32_t> index(kThreads);
  std::vector<std::thread> loaders;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    loaders.emplace_back([&, t] {
      free(bt_leaf(1));  // a thread gets its index on its first allocation
      index[t] = leakalloc::this_thread_profile().thread_index;
      for (int it = 0; it < kIters; ++it) {
        void* h = dlopen(PROF_DL_LIB, RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) { ++failures; return; }
        ChainFn chain = reinterpret_cast<ChainFn>(dlsym(h, "dl_chain"));
        if (chain == nullptr) { ++failures; return; }
        bool last = it == kIters - 1;
        for (int i = 0; i < kPerIter; ++i) {
          void* p = chain(1 + (it + i) % 4, (last ? 5000 : 4000) + t);
          if (i % 2 == 0) kept[t].push_back(p);
          else free(p);
        }
        if (last) last_handle[t] = h;  // stays loaded while main checks the frames
        else dlclose(h);
      }
    });
  for (auto& l : loaders) l.join();
  stop = true;
  for (auto& b : background) b.join();
  ASSERT_EQ(failures.load(), 0) << dlerror();

  void* h = dlopen(PROF_DL_LIB, RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(h, nullptr);
  void* leaf = dlsym(h, "dl_leaf");
  void* chain = dlsym(h, "dl_chain");
  ASSERT_NE(leaf, nullptr);
  std::vector<LiveBlock> blocks = snapshot();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(count_size(blocks, 4000 + t), uint64_t{(kIters - 1) * kPerIter / 2}) << "thread " << t;
    EXPECT_EQ(count_size(blocks, 5000 + t), uint64_t{kPerIter / 2}) << "thread " << t;
  }
  uint64_t checked = 0;
  for (const LiveBlock& b : blocks) {
    if (b.size < 4000 || b.size >= 4000 + kThreads) {
      if (b.size < 5000 || b.size >= 5000 + kThreads) continue;
    }
    int t = static_cast<int>(b.size % 1000);
    EXPECT_EQ(b.thread_index, index[t]);
    if (b.size < 5000) continue;
    // Blocks of the last round: the library is still mapped where it was.
    StackView v;
    ASSERT_TRUE(prof::stack_get(b.stack_id, &v));
    ASSERT_GE(v.depth, 3u);
    EXPECT_EQ(func_of(v.frames[0]), leaf);
    EXPECT_NE(object_of(v.frames[0]).find("prof_dl_lib"), std::string::npos) << object_of(v.frames[0]);
    EXPECT_EQ(func_of(v.frames[1]), chain);
    ++checked;
  }
  EXPECT_EQ(checked, uint64_t{kThreads * kPerIter / 2});
  for (auto& k : kept)
    for (void* p : k) free(p);
  for (void* lh : last_handle) dlclose(lh);
  dlclose(h);
}

TEST(ProfUnwind, AllocationInsideTheUnwinderIsUntracked) {
  require_sample0();
  constexpr int kThreads = 3;
  constexpr uint32_t kBits = 8;
  std::vector<std::vector<void*>> blocks(kThreads);
  for (auto& b : blocks) b.reserve(1 << kBits);
  // The frame-recipe cache never calls dl_iterate_phdr; libunwind, which walks every stack
  // the cache cannot express, does.
  leakalloc::frame_cache::set_enabled(false);
  g_reenter = true;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&blocks, t] {
      // New stacks: libunwind has no cached trace for them and looks them up.
      for (uint32_t n = 0; n < (1u << kBits); ++n) blocks[t].push_back(bt_root(n, kBits, 8000 + t));
    });
  for (auto& th : threads) th.join();
  g_reenter = false;
  leakalloc::frame_cache::set_enabled(true);
  EXPECT_GT(g_calls_in_capture.load(), 0u) << "the unwinder never called dl_iterate_phdr: nothing was tested";

  // The re-entrant blocks are real, writable, and untracked; every sampled block is
  // on its own exact stack.
  uint32_t nkept = std::min(g_nkept.load(), kMaxKept);
  for (uint32_t i = 0; i < nkept; ++i) memset(g_kept[i], 0x5a, kReentrantSize);
  std::vector<LiveBlock> live = snapshot();
  EXPECT_EQ(count_size(live, kReentrantSize), 0u);
  for (int t = 0; t < kThreads; ++t) {
    std::vector<int> seen(1u << kBits);
    for (const LiveBlock& b : live) {
      if (b.size != uint64_t(8000 + t)) continue;
      StackView v;
      ASSERT_TRUE(prof::stack_get(b.stack_id, &v));
      int64_t n = decode_bt(v, kBits);
      ASSERT_GE(n, 0);
      ++seen[n];
    }
    for (uint32_t n = 0; n < (1u << kBits); ++n) EXPECT_EQ(seen[n], 1) << "thread " << t << " n=" << n;
  }
  for (uint32_t i = 0; i < nkept; ++i) free(g_kept[i]);
  for (auto& b : blocks)
    for (void* p : b) free(p);
}

// fork() while other threads are inside the unwinder's dl_iterate_phdr: the child
// must still be able to unwind (and call dl_iterate_phdr) instead of hanging on the
// loader lock the parent's thread held at the moment of the fork.
TEST(ProfUnwind, ForkWhileAnotherThreadIsInsideTheUnwinder) {
  require_sample0();
  std::atomic<bool> stop{false};
  leakalloc::frame_cache::set_enabled(false);  // as above: libunwind's lookups
  g_slow_lookup = true;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&stop, t] {
      for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        // Forget what libunwind learnt, so that every capture looks frames up again.
        unw_flush_cache(unw_local_addr_space, 0, 0);
        free(bt_root((i + t) % 64, 6, 32));
      }
    });
  while (g_slow_lookups.load() < 10) sched_yield();
  int hung = 0;
  for (int round = 0; round < 40; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(3);
      g_slow_lookup = false;
      dl_iterate_phdr([](struct dl_phdr_info*, size_t, void*) { return 0; }, nullptr);
      unw_flush_cache(unw_local_addr_space, 0, 0);
      void* p = bt_root(7, 3, 4444);
      free(p);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++hung;
      break;  // each hung child costs its alarm
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  g_slow_lookup = false;
  leakalloc::frame_cache::set_enabled(true);
  EXPECT_GT(g_slow_lookups.load(), 0u) << "no lookup from inside a capture: nothing was tested";
  EXPECT_EQ(hung, 0) << "children that hung (SIGALRM) or failed after fork";
}

}  // namespace

// ---- stack bounds without glibc (issue 24) --------------------------------------------
// The bounds come from the thread pointer or /proc/self/maps, never from
// pthread_getattr_np (which allocates under the thread's lock). Here, outside any
// allocation, glibc's answer is the reference: for the main thread, the end of the
// mapping, at or above glibc's top (glibc's is __libc_stack_end's page); for a
// thread glibc made (its own stack or one the program supplied), a top above every frame
// and at most the descriptor's size below glibc's.
namespace {
void expect_bounds_like_glibc(bool main_thread) {
  leakalloc::unwind::StackBounds b = leakalloc::unwind::find_stack_bounds();
  pthread_attr_t attr;
  ASSERT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
  void* addr = nullptr;
  size_t size = 0;
  ASSERT_EQ(pthread_attr_getstack(&attr, &addr, &size), 0);
  pthread_attr_destroy(&attr);
  uintptr_t glibc_hi = reinterpret_cast<uintptr_t>(addr) + size;
  uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  EXPECT_GT(b.hi, here);
  if (main_thread) {
    EXPECT_GE(b.hi, glibc_hi);
    EXPECT_NE(b.lo, 0u);
    EXPECT_LT(b.lo, here);
  } else {
    EXPECT_LE(b.hi, glibc_hi);
    EXPECT_LT(glibc_hi - b.hi, 64u * 1024);
  }
  // The registry holds what registration found (this thread has allocated: it is
  // registered), for the walkers and a stop-the-world scan.
  free(malloc(1));
  uintptr_t lo = 0, hi = 0;
  ASSERT_TRUE(leakalloc::threads::stack_bounds(leakalloc::this_thread_profile().thread_index, &lo, &hi));
  EXPECT_EQ(hi, b.hi);
  EXPECT_EQ(leakalloc::this_thread_profile().stack_hi, b.hi);
}
}  // namespace

TEST(ProfUnwind, StackBoundsWithoutGlibc) {
  expect_bounds_like_glibc(true);
  std::thread([] { expect_bounds_like_glibc(false); }).join();
  // A stack the program supplied: glibc puts the descriptor at its top too.
  static char stack[1 << 20] __attribute__((aligned(4096)));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  ASSERT_EQ(pthread_attr_setstack(&attr, stack, sizeof stack), 0);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, &attr, [](void*) -> void* {
    expect_bounds_like_glibc(false);
    return nullptr;
  }, nullptr), 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
}
