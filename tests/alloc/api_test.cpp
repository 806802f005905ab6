// Semantics of every exported allocation entry point, in a binary linked with
// -lleakalloc the way an application links it (no internal API, no LD_PRELOAD).
//
// The compiler must not see through the calls: GCC deletes malloc/free and new/delete
// pairs whose result is unused (-fallocation-dce) and folds calloc+memset. The test is
// built with -fno-builtin and every pointer goes through escape().
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mimalloc.h>
#include <leakalloc/leakalloc.h>

extern "C" {
// glibc's internal names; leakalloc exports them (libc and some programs call them).
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);
int __posix_memalign(void**, size_t, size_t);
void cfree(void*);
}

namespace {

template <typename T>
T* escape(T* p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

bool aligned_to(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

// Writes every byte the allocator says the caller owns, then reads it back.
void fill_usable(void* p, unsigned char v) {
  size_t n = malloc_usable_size(p);
  if (n == 0) return;  // malloc(0) may own no bytes at all
  memset(p, v, n);
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; i += 61) ASSERT_EQ(c[i], v);
  ASSERT_EQ(c[n - 1], v);
}

std::string lib_of(const void* fn) {
  Dl_info info{};
  if (dladdr(fn, &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

// POSIX ERE for a literal string (gtest uses <regex.h> on Linux).
std::string re_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (strchr("\\^$.|?*+()[]{}", c) != nullptr) out += '\\';
    out += c;
  }
  return out;
}

std::string ptr_str(const void* p) {
  char buf[32];
  snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// The message for a refused pointer: "leakalloc: <op>(): invalid pointer <p>: <why>".
std::string bad_re(const std::string& op, const void* p, const std::string& why) {
  return "leakalloc: " + re_escape(op + "(): invalid pointer " + ptr_str(p) + ": ") + why;
}

constexpr size_t kMiB = 1 << 20;

// ---- the allocator in use is leakalloc ----------------------------------------------

TEST(Interposed, EveryEntryPointResolvesToLibleakalloc) {
  using Fn = const void*;
  struct Entry {
    const char* name;
    Fn addr;
  } entries[] = {
      {"malloc", reinterpret_cast<Fn>(&malloc)},
      {"calloc", reinterpret_cast<Fn>(&calloc)},
      {"realloc", reinterpret_cast<Fn>(&realloc)},
      {"reallocarray", reinterpret_cast<Fn>(&reallocarray)},
      {"free", reinterpret_cast<Fn>(&free)},
      {"cfree", reinterpret_cast<Fn>(&cfree)},
      {"posix_memalign", reinterpret_cast<Fn>(&posix_memalign)},
      {"aligned_alloc", reinterpret_cast<Fn>(&aligned_alloc)},
      {"memalign", reinterpret_cast<Fn>(&memalign)},
      {"valloc", reinterpret_cast<Fn>(&valloc)},
      {"pvalloc", reinterpret_cast<Fn>(&pvalloc)},
      {"malloc_usable_size", reinterpret_cast<Fn>(&malloc_usable_size)},
      {"__libc_malloc", reinterpret_cast<Fn>(&__libc_malloc)},
      {"__libc_calloc", reinterpret_cast<Fn>(&__libc_calloc)},
      {"__libc_realloc", reinterpret_cast<Fn>(&__libc_realloc)},
      {"__libc_free", reinterpret_cast<Fn>(&__libc_free)},
      {"__libc_memalign", reinterpret_cast<Fn>(&__libc_memalign)},
      {"__libc_valloc", reinterpret_cast<Fn>(&__libc_valloc)},
      {"__libc_pvalloc", reinterpret_cast<Fn>(&__libc_pvalloc)},
      {"__posix_memalign", reinterpret_cast<Fn>(&__posix_memalign)},
      {"new", reinterpret_cast<Fn>(static_cast<void* (*)(size_t)>(&::operator new))},
      {"new[]", reinterpret_cast<Fn>(static_cast<void* (*)(size_t)>(&::operator new[]))},
      {"new nothrow", reinterpret_cast<Fn>(static_cast<void* (*)(size_t, const std::nothrow_t&) noexcept>(&::operator new))},
      {"new aligned", reinterpret_cast<Fn>(static_cast<void* (*)(size_t, std::align_val_t)>(&::operator new))},
      {"new[] aligned nothrow", reinterpret_cast<Fn>(static_cast<void* (*)(size_t, std::align_val_t, const std::nothrow_t&) noexcept>(&::operator new[]))},
      {"delete", reinterpret_cast<Fn>(static_cast<void (*)(void*) noexcept>(&::operator delete))},
      {"delete sized", reinterpret_cast<Fn>(static_cast<void (*)(void*, size_t) noexcept>(&::operator delete))},
      {"delete[] sized aligned", reinterpret_cast<Fn>(static_cast<void (*)(void*, size_t, std::align_val_t) noexcept>(&::operator delete[]))},
  };
  for (const Entry& e : entries) {
    EXPECT_NE(lib_of(e.addr).find("libleakalloc.so"), std::string::npos)
        << e.name << " resolves to " << lib_of(e.addr);
  }
  // What a dynamic lookup (as libc's own callers see it) finds, too.
  for (const char* name : {"malloc", "free", "calloc", "realloc", "_Znwm", "_ZdlPv"}) {
    void* sym = dlsym(RTLD_DEFAULT, name);
    ASSERT_NE(sym, nullptr) << name;
    EXPECT_NE(lib_of(sym).find("libleakalloc.so"), std::string::npos)
        << name << " found by dlsym in " << lib_of(sym);
  }
}

TEST(Interposed, InteriorFreeIsRefusedByLeakalloc) {
  // Only leakalloc refuses an interior pointer with its own message; glibc and plain
  // mimalloc would not print "leakalloc:".
  char* p = escape(static_cast<char*>(malloc(64)));
  EXPECT_EXIT(free(escape(p + 16)), testing::KilledBySignal(SIGABRT), "^leakalloc: free\\(\\)");
  free(p);
}

TEST(Interposed, LibcAllocatesThroughLeakalloc) {
  // Blocks that libc allocates internally must be ours: our free() would refuse (abort
  // on) anything glibc's malloc made.
  char* s = strdup("leakalloc");
  ASSERT_NE(s, nullptr);
  EXPECT_GE(malloc_usable_size(s), 10u);
  free(s);
  char* f = nullptr;
  ASSERT_GT(asprintf(&f, "%0*d", 5000, 7), 0);
  EXPECT_GE(malloc_usable_size(f), 5001u);
  free(f);
  char* r = realpath("/", nullptr);
  ASSERT_NE(r, nullptr);
  EXPECT_STREQ(r, "/");
  free(r);
  char* buf = nullptr;
  size_t len = 0;
  FILE* mem = open_memstream(&buf, &len);
  ASSERT_NE(mem, nullptr);
  for (int i = 0; i < 20000; i++) fputs("grow the buffer through realloc ", mem);
  fclose(mem);
  EXPECT_EQ(len, 20000u * 32);
  EXPECT_GE(malloc_usable_size(buf), len + 1);
  free(buf);
  FILE* in = fmemopen(const_cast<char*>("a fairly long line for getline\nsecond\n"), 38, "r");
  ASSERT_NE(in, nullptr);
  char* line = nullptr;
  size_t cap = 0;
  ASSERT_GT(getline(&line, &cap, in), 0);
  EXPECT_STREQ(line, "a fairly long line for getline\n");
  EXPECT_GE(malloc_usable_size(line), cap);
  free(line);
  fclose(in);
}

// ---- malloc / free -------------------------------------------------------------------

TEST(Malloc, ZeroSizeIsUniqueAndFreeable) {
  void* a = escape(malloc(0));
  void* b = escape(malloc(0));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_TRUE(aligned_to(a, 16));
  free(a);
  free(b);
}

TEST(Malloc, FreeNullIsANoOp) {
  errno = 1234;
  free(nullptr);
  cfree(nullptr);
  __libc_free(nullptr);
  ::operator delete(nullptr);
  ::operator delete[](nullptr);
  ::operator delete(nullptr, std::align_val_t(64));
  EXPECT_EQ(errno, 1234);
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
}

TEST(Malloc, SixteenByteAlignedAndDistinct) {
  std::vector<char*> blocks;
  std::set<char*> seen;
  for (size_t size = 1; size < 70000; size = size * 5 / 4 + 1) {
    char* p = escape(static_cast<char*>(malloc(size)));
    ASSERT_NE(p, nullptr) << size;
    EXPECT_TRUE(aligned_to(p, 16)) << size;
    EXPECT_TRUE(seen.insert(p).second);
    memset(p, static_cast<int>(size & 0xff), size);
    blocks.push_back(p);
  }
  size_t size = 1;
  for (char* p : blocks) {
    for (size_t i = 0; i < size; i += 97) ASSERT_EQ(static_cast<unsigned char>(p[i]), size & 0xff);
    free(p);
    size = size * 5 / 4 + 1;
  }
}

TEST(Malloc, UsableSizeIsReallyWritable) {
  // Neighbouring blocks of the same size class: writing every usable byte of each must
  // not damage the headers of the next (free() checks them and would abort).
  for (size_t size : {1ul, 7ul, 8ul, 15ul, 16ul, 17ul, 24ul, 100ul, 1000ul, 4000ul, 4096ul,
                      65536ul, 300000ul, 5 * kMiB}) {
    std::vector<void*> v;
    for (int i = 0; i < 16; i++) {
      void* p = escape(malloc(size));
      ASSERT_NE(p, nullptr);
      size_t u = malloc_usable_size(p);
      EXPECT_GE(u, size);
      // Usable bytes are the block's, not the size class's header slack.
      EXPECT_LT(u, size + size / 4 + 64 + (size >= kMiB ? 64 * 1024 : 0)) << size;
      fill_usable(p, static_cast<unsigned char>(0xa0 + i));
      v.push_back(p);
    }
    for (void* p : v) free(p);
  }
  for (size_t a : {32ul, 256ul, 4096ul, 65536ul}) {
    std::vector<void*> v;
    for (int i = 0; i < 8; i++) {
      void* p = escape(aligned_alloc(a, 3 * a / 2));
      ASSERT_NE(p, nullptr);
      EXPECT_GE(malloc_usable_size(p), 3 * a / 2);
      fill_usable(p, 0x5c);
      v.push_back(p);
    }
    for (void* p : v) free(p);
  }
}

TEST(Malloc, HugeRequestsFailWithEnomem) {
  for (size_t size : {SIZE_MAX, SIZE_MAX - 64, SIZE_MAX - 15, SIZE_MAX / 2, (size_t{1} << 62) + 1,
                      size_t{1} << 62, size_t{1} << 60}) {
    errno = 0;
    EXPECT_EQ(escape(malloc(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM) << size;
    errno = 0;
    EXPECT_EQ(escape(__libc_malloc(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM) << size;
  }
  // The allocator still works afterwards.
  void* p = escape(malloc(100));
  ASSERT_NE(p, nullptr);
  free(p);
}

TEST(Malloc, SuccessfulCallsLeaveErrnoAlone) {
  // glibc leaves errno untouched on success and POSIX.1-2024 requires it of free, and
  // programs rely on it ("if (read(...) < 0) { msg = malloc(...); ... strerror(errno)").
  // Sampled allocations unwind the stack, and libunwind's address validation drains a
  // non-blocking pipe until read() fails with EAGAIN when errno is EINTR on entry (or
  // the pipe is empty): a sampled malloc must hide that. Enough
  // bytes go through here that some allocations are sampled at the default rate, on
  // fresh threads (first sample, thread registration) as well as this one.
  auto run = [](int thread) {
    int changed = 0;
    for (int i = 0; i < 30000 && changed < 5; i++) {
      // EINTR is what a caller often has in errno (and what libunwind's loop keys on);
      // 1000+ is no real errno value, so nothing sets it by chance.
      const int marker = i % 2 ? EINTR : 1000 + thread;
      size_t n = 1 + (i * 7919u) % 6000;
      errno = marker;
      void* p = escape(malloc(n));
      if (errno != marker) { ADD_FAILURE() << "malloc(" << n << ") set errno " << errno; changed++; }
      errno = marker;
      p = escape(realloc(p, n + 3000));
      if (errno != marker) { ADD_FAILURE() << "realloc set errno " << errno; changed++; }
      errno = marker;
      void* c = escape(calloc(1, n));
      if (errno != marker) { ADD_FAILURE() << "calloc set errno " << errno; changed++; }
      errno = marker;
      void* a = escape(aligned_alloc(64, n));
      if (errno != marker) { ADD_FAILURE() << "aligned_alloc set errno " << errno; changed++; }
      errno = marker;
      void* o = escape(::operator new(n));
      if (errno != marker) { ADD_FAILURE() << "operator new set errno " << errno; changed++; }
      errno = marker;
      free(p);
      free(c);
      free(a);
      ::operator delete(o);
      if (errno != marker) { ADD_FAILURE() << "free set errno " << errno; changed++; }
    }
  };
  run(0);
  // Threads on stacks never seen before (libunwind caches the pages it has validated).
  struct Arg {
    decltype(run)* fn;
    int thread;
  };
  const size_t stack_size = 1 << 20;
  std::vector<pthread_t> threads(4);
  std::vector<void*> stacks(threads.size());
  std::vector<Arg> args(threads.size());
  for (size_t t = 0; t < threads.size(); t++) {
    stacks[t] = mmap(nullptr, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(stacks[t], MAP_FAILED);
    args[t] = {&run, static_cast<int>(t + 1)};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stacks[t], stack_size);
    ASSERT_EQ(pthread_create(&threads[t], &attr, [](void* a) -> void* {
      Arg* arg = static_cast<Arg*>(a);
      (*arg->fn)(arg->thread);
      return nullptr;
    }, &args[t]), 0);
    pthread_attr_destroy(&attr);
  }
  for (size_t t = 0; t < threads.size(); t++) {
    pthread_join(threads[t], nullptr);
    munmap(stacks[t], stack_size);
  }
}

// ---- calloc -------------------------------------------------------------------------

// A size_t statistic (`stats.<name>`), read after refreshing the epoch.
static size_t stat_size(const char* name) {
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  EXPECT_EQ(leakalloc_mallctl("epoch", &epoch, &len, &epoch, len), 0);
  size_t v = 0;
  len = sizeof v;
  EXPECT_EQ(leakalloc_mallctl(name, &v, &len, nullptr, 0), 0) << name;
  return v;
}

// stats.allocated counts requested bytes: every free must take back exactly what its
// malloc added, whichever way the header records the size (inline for unsampled blocks
// and for sampled ones under 2 GiB; in the live record for a sampled block above that,
// which at sample:0 is every block).
static size_t stats_allocated() { return stat_size("stats.allocated"); }

TEST(Malloc, StatsTakeBackExactlyWhatEachBlockAdded) {
  const size_t sizes[] = {1, 100, 4000, size_t{1} << 20, (size_t{3} << 30) + 7};
  for (size_t n : sizes) {
    size_t before = stats_allocated();
    char* p = static_cast<char*>(malloc(n));
    ASSERT_NE(p, nullptr) << n;
    p[0] = 1;
    p[n - 1] = 2;
    EXPECT_EQ(stats_allocated() - before, n) << n;
    free(p);
    EXPECT_EQ(stats_allocated(), before) << n;
  }
}

// A consumer thread that frees what others allocated and never allocates itself (a
// queue's consumer, a logger draining buffers) must take the bytes back too, or
// stats.allocated grows for ever in a program that leaks nothing.
TEST(Free, OnAThreadThatNeverAllocatedTakesTheBytesBack) {
  constexpr int kBlocks = 1000;
  constexpr size_t kSize = 1000;
  struct Shared {
    void* first;  // freed first: the consumer's start (its exit hook: glibc's 32 bytes)
    void* blocks[kBlocks];
    std::atomic<int> step{0};  // -1: started; 1: free them; 2: freed; 3: exit
  } s;
  s.first = escape(malloc(kSize));
  for (void*& p : s.blocks) p = escape(malloc(kSize));
  pthread_t consumer;
  ASSERT_EQ(pthread_create(&consumer, nullptr, [](void* a) -> void* {
    Shared* sh = static_cast<Shared*>(a);
    free(sh->first);
    sh->step.store(-1);
    while (sh->step.load() != 1) sched_yield();
    for (void* p : sh->blocks) free(p);
    sh->step.store(2);
    while (sh->step.load() != 3) sched_yield();
    return nullptr;
  }, &s), 0);
  // Both readings are taken while the consumer is alive, after everything that
  // pthread_create and the consumer's start allocated, so the difference is the
  // consumer's frees alone.
  while (s.step.load() != -1) sched_yield();
  size_t before = stats_allocated();
  s.step.store(1);
  while (s.step.load() != 2) sched_yield();
  size_t after = stats_allocated();
  s.step.store(3);
  pthread_join(consumer, nullptr);
  EXPECT_EQ(before - after, kBlocks * kSize);
}

// ---- the thread cache (alloc/thread_cache.h) ------------------------------------------
// alloc.api runs these with the cache on (the default), alloc.api.notcache with
// tcache:false.

static bool tcache_on() {
  bool on = false;
  size_t len = sizeof on;
  EXPECT_EQ(leakalloc_mallctl("opt.tcache", &on, &len, nullptr, 0), 0);
  return on;
}

TEST(ThreadCache, AFreedBlockIsTheNextOneOfItsClassOnThisThread) {
  if (!tcache_on()) GTEST_SKIP() << "tcache:false: mimalloc decides which block comes next";
  for (size_t n : {size_t{1}, size_t{100}, size_t{1000}, size_t{4080}}) {
    // Empty the bin first (a full bin leaves a freed block to mimalloc): no bin holds
    // more than 64 blocks.
    std::vector<void*> drain;
    for (int i = 0; i < 65; ++i) drain.push_back(escape(malloc(n)));
    void* p = escape(malloc(n));
    free(p);
    void* q = escape(malloc(n));  // mimalloc alone would hand out a fresh block first
    EXPECT_EQ(q, p) << n;
    free(q);
    for (void* d : drain) free(d);
  }
  void* big = escape(malloc(4081));  // past the last class: not cached, not counted on
  free(big);
}

// A thread's cached blocks go back to mimalloc when it exits: otherwise they would be
// lost with its thread-local bins. Here the main thread allocates blocks, a worker frees
// them (into its own bin) and exits; mimalloc then gives them to the main thread again.
TEST(ThreadCache, AnExitingThreadGivesItsCachedBlocksBack) {
  constexpr int kBlocks = 32;  // fewer than a bin of 64-byte blocks holds
  static void* blocks[kBlocks];
  std::set<void*> mine;
  for (void*& b : blocks) {
    b = escape(malloc(48));
    mine.insert(b);
  }
  pthread_t worker;
  ASSERT_EQ(pthread_create(&worker, nullptr, [](void*) -> void* {
    free(escape(malloc(48)));  // the worker's first malloc sets its cache up
    for (void* b : blocks) free(b);
    return nullptr;
  }, nullptr), 0);
  pthread_join(worker, nullptr);
  std::vector<void*> got;
  int back = 0;
  for (int i = 0; i < 100000 && back < kBlocks; ++i) {
    void* p = escape(malloc(48));
    back += static_cast<int>(mine.count(p));
    got.push_back(p);
  }
  EXPECT_EQ(back, kBlocks);
  for (void* p : got) free(p);
}

// mimalloc's "-abandoned" segments: the first such line of mi_stats_print_out, its
// "total" column. -1 when the line is not there (another mimalloc's format).
long abandoned_segments_total() {
  std::string text;
  mi_stats_print_out([](const char* msg, void* arg) { *static_cast<std::string*>(arg) += msg; }, &text);
  size_t at = text.find("-abandoned:");
  if (at == std::string::npos) return -1;
  long peak = 0, total = 0;
  if (sscanf(text.c_str() + at, "-abandoned: %ld %ld", &peak, &total) != 2) return -1;
  return total;
}

// A thread's cached blocks go back to mimalloc before mimalloc's own thread-exit hook (a
// pthread key destructor that runs before leakalloc's). Were they still cached then,
// mimalloc would find the thread's segments in use and abandon them, one per thread,
// and every later thread would pay to take them back (3000 such threads took 1.1 s of
// CPU instead of 0.1 s). mimalloc counts the segments it abandons.
TEST(ThreadCache, EndingThreadsLeaveNoSegmentOfTheirsInUse) {
  if (!tcache_on()) GTEST_SKIP() << "tcache:false: nothing is cached";
  long before = abandoned_segments_total();
  if (before < 0) GTEST_SKIP() << "this mimalloc prints no \"-abandoned:\" statistic";
  for (int i = 0; i < 20; ++i) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, [](void*) -> void* {
      void* blocks[64];
      for (int k = 0; k < 64; ++k) blocks[k] = escape(malloc(32 + 16 * (k % 8)));
      for (void* b : blocks) free(b);  // into the thread's bins
      return nullptr;
    }, nullptr), 0);
    ASSERT_EQ(pthread_join(t, nullptr), 0);
  }
  EXPECT_EQ(abandoned_segments_total(), before) << "ending threads left mimalloc segments in use";
}

static size_t tcache_bytes() { return stat_size("stats.tcache_bytes"); }

// A small block of an alignment up to 256 is a block of its size class: its free puts it
// in the thread's bin of aligned blocks of its class, and the next request of that
// alignment and class takes it back from there, without mimalloc. Larger alignments, and
// larger blocks, are not cached. Plain mallocs never get such a block (mimalloc may have
// made it larger than its class by up to the alignment). A sampled aligned block keeps
// its size in its live record and is not cached: sampling is off here, so that the
// answer does not depend on the sampler's draw (or on sample:0).
TEST(ThreadCache, SmallAlignedBlocksAreCachedInTheirClass) {
  if (!tcache_on()) {
    // Nothing is cached: a block freed now is not in the bins the thread gets when it
    // turns its cache on afterwards.
    for (int i = 0; i < 3; ++i) {
      void* a = nullptr;
      ASSERT_EQ(posix_memalign(&a, 64, 64), 0);
      free(escape(a));
    }
    bool on = true;
    ASSERT_EQ(leakalloc_mallctl("thread.tcache.enabled", nullptr, nullptr, &on, sizeof on), 0);
    EXPECT_EQ(tcache_bytes(), 0u) << "a thread without a cache kept aligned blocks";
    on = false;
    ASSERT_EQ(leakalloc_mallctl("thread.tcache.enabled", nullptr, nullptr, &on, sizeof on), 0);
    GTEST_SKIP() << "tcache:false: nothing is cached";
  }
  bool was_active = true, off = false;
  size_t len = sizeof was_active;
  ASSERT_EQ(leakalloc_mallctl("prof.active", &was_active, &len, &off, sizeof off), 0);
  auto flush = [] { ASSERT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0); };
  struct Case {
    size_t align, size, cached;  // cached: the class size, or 0
  } cases[] = {{32, 64, 80}, {64, 64, 80}, {128, 1000, 1024}, {256, 3000, 3072},
               {512, 64, 0}, {4096, 100, 0}, {64, 4081, 0}};
  for (const Case& c : cases) {
    flush();
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, c.align, c.size), 0);
    ASSERT_TRUE(aligned_to(p, c.align));
    size_t before = tcache_bytes();
    free(escape(p));
    EXPECT_EQ(tcache_bytes() - before, c.cached) << "align " << c.align << " size " << c.size;
    void* q = nullptr;
    ASSERT_EQ(posix_memalign(&q, c.align, c.size), 0);
    ASSERT_TRUE(aligned_to(q, c.align));
    if (c.cached != 0) {
      EXPECT_EQ(q, p) << "align " << c.align << " size " << c.size;
      EXPECT_EQ(tcache_bytes(), before);
    }
    fill_usable(q, 0x3c);
    free(escape(q));
    if (c.cached != 0) {
      void* plain = escape(malloc(c.size));
      EXPECT_NE(plain, q) << "a plain malloc got an aligned block";
      free(plain);
    }
  }
  // A bin full of blocks aligned to 32 only: a block aligned to 64 freed into it takes
  // the place of the newest, and serves the next request for 64.
  flush();
  std::vector<void*> only32, other;
  while (only32.size() < 64) {
    void* d = nullptr;
    ASSERT_EQ(posix_memalign(&d, 32, 64), 0);
    (aligned_to(d, 64) ? other : only32).push_back(d);
  }
  for (void* d : only32) free(d);
  void* p = nullptr;
  ASSERT_EQ(posix_memalign(&p, 64, 64), 0);
  size_t full = tcache_bytes();
  free(escape(p));
  EXPECT_EQ(tcache_bytes(), full) << "one block out, one in";
  void* q = nullptr;
  ASSERT_EQ(posix_memalign(&q, 64, 64), 0);
  EXPECT_EQ(q, p);
  EXPECT_EQ(tcache_bytes(), full - 80) << "the block freed last serves the next request";
  free(q);
  for (void* d : other) free(d);
  // An alignment that is no power of two is refused, even with a block in the bin that
  // 48 would divide (the newest block, 64-aligned).
  void* a = nullptr;
  ASSERT_EQ(posix_memalign(&a, 64, 64), 0);
  free(escape(a));
  void* bad = nullptr;
  EXPECT_EQ(posix_memalign(&bad, 48, 64), EINVAL);
  EXPECT_EQ(bad, nullptr);
  flush();
  ASSERT_EQ(leakalloc_mallctl("prof.active", nullptr, nullptr, &was_active, sizeof was_active), 0);
}

// Blocks that were aligned, resized in place and freed: aligned ones, and plain mallocs
// that reuse their memory, must hold what malloc_usable_size says of them. mimalloc
// places an aligned block inside a larger one of its own, so the bytes after the header
// are not always a size class; realloc must not grow such a block in place past its
// class, or the next aligned request of that class would get too small a block.
TEST(ThreadCache, AlignedBlocksNeverServeAPlainMalloc) {
  uint64_t rng = 12345;
  auto next = [&rng] {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return rng >> 33;
  };
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int i = 0; i < 20000; ++i) {
    size_t align = size_t{32} << (next() % 8);  // 32 .. 4096
    size_t size = 1 + next() % 4080;
    void* a = nullptr;
    ASSERT_EQ(posix_memalign(&a, align, size), 0);
    memset(a, 0xa5, size);
    if (i % 2 == 0) {  // grown (or shrunk) in place where realloc allows it
      size_t grown = size / 2 + 1 + next() % (size + 64);
      if (grown > 4080) grown = 4080;
      a = escape(realloc(a, grown));
      ASSERT_NE(a, nullptr);
      fill_usable(a, 0xa6);
    }
    free(a);
    size_t n = size - size % 16 + 1 + next() % 16;  // the same size class as `size`, or near
    if (n > 4080) n = 4080;
    // A plain block, or one of the same alignment (which may get the block just freed).
    unsigned char* p = nullptr;
    if (i % 3 == 0) ASSERT_EQ(posix_memalign(reinterpret_cast<void**>(&p), align, n), 0);
    else p = static_cast<unsigned char*>(malloc(n));
    escape(p);
    ASSERT_NE(p, nullptr);
    ASSERT_GE(malloc_usable_size(p), n) << "align " << align << " size " << size;
    memset(p, i & 255, malloc_usable_size(p));
    live.push_back({p, n});
    if (live.size() > 64) {
      auto [q, m] = live.front();
      unsigned char want = q[0];
      for (size_t j = 0; j < malloc_usable_size(q); ++j) ASSERT_EQ(q[j], want);
      free(q);
      live.erase(live.begin());
    }
  }
  for (auto& [q, m] : live) free(q);
}

TEST(Calloc, ZeroesReusedDirtyBlocks) {
  // mimalloc hands out a page's fresh blocks before the ones freed on it, so keep
  // calloc'ing (and keeping) blocks until enough of them are recycled dirty ones.
  for (size_t size : {8ul, 48ul, 1000ul, 70000ul, 3 * kMiB}) {
    const int batch = size >= kMiB ? 8 : 64;
    std::set<void*> dirty;
    std::vector<void*> v;
    for (int i = 0; i < batch; i++) {
      void* p = escape(malloc(size));
      ASSERT_NE(p, nullptr);
      memset(p, 0xee, malloc_usable_size(p));
      v.push_back(p);
      dirty.insert(p);
    }
    for (void* p : v) free(p);
    v.clear();
    int reused = 0;
    const int attempts = size < 4096 ? 20000 : 4 * batch;
    for (int i = 0; i < attempts && reused < batch / 2; i++) {
      unsigned char* p = escape(static_cast<unsigned char*>(calloc(1, size)));
      ASSERT_NE(p, nullptr);
      reused += dirty.count(p) ? 1 : 0;
      for (size_t j = 0; j < size; j++) ASSERT_EQ(p[j], 0) << "size " << size << " byte " << j;
      v.push_back(p);
    }
    // The test means something only if calloc was handed dirty memory.
    EXPECT_GT(reused, 0) << size;
    for (void* p : v) free(p);
  }
  unsigned char* p = escape(static_cast<unsigned char*>(__libc_calloc(10, 10)));
  ASSERT_NE(p, nullptr);
  for (int j = 0; j < 100; j++) ASSERT_EQ(p[j], 0);
  free(p);
}

TEST(Calloc, ZeroCountsAndOverflow) {
  void* a = escape(calloc(0, 16));
  void* b = escape(calloc(16, 0));
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  free(a);
  free(b);
  struct { size_t n, s; } cases[] = {{SIZE_MAX / 2, 3}, {SIZE_MAX, 2}, {size_t{1} << 32, size_t{1} << 32},
                                     {3, SIZE_MAX / 2}, {size_t{1} << 31, size_t{1} << 31}};
  for (auto c : cases) {
    errno = 0;
    EXPECT_EQ(escape(calloc(c.n, c.s)), nullptr) << c.n << " x " << c.s;
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(escape(__libc_calloc(c.n, c.s)), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
}

// ---- realloc ------------------------------------------------------------------------

void fill_pattern(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = static_cast<unsigned char>((i * 131 + seed) >> 3);
}
::testing::AssertionResult has_pattern(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != static_cast<unsigned char>((i * 131 + seed) >> 3))
      return ::testing::AssertionFailure() << "byte " << i << " of " << n << " differs";
  return ::testing::AssertionSuccess();
}

TEST(Realloc, GrowAndShrinkKeepContents) {
  size_t sizes[] = {1, 16, 17, 100, 1000, 4096, 20000, 200000, 2 * kMiB, 9 * kMiB, 300, 24, 5, 64 * 1024, 3};
  unsigned char* p = escape(static_cast<unsigned char*>(malloc(10)));
  fill_pattern(p, 10, 7);
  size_t have = 10;
  for (size_t n : sizes) {
    unsigned char* q = escape(static_cast<unsigned char*>(realloc(p, n)));
    ASSERT_NE(q, nullptr) << n;
    ASSERT_TRUE(has_pattern(q, std::min(have, n), 7)) << have << " -> " << n;
    EXPECT_GE(malloc_usable_size(q), n);
    fill_pattern(q, n, 7);
    fill_usable(q + 0, 0);  // the whole new block is writable
    fill_pattern(q, n, 7);
    p = q;
    have = n;
  }
  free(p);
}

TEST(Realloc, MovedBlockWorksAndOldOneIsGone) {
  unsigned char* p = escape(static_cast<unsigned char*>(malloc(32)));
  fill_pattern(p, 32, 3);
  // Keep a neighbour alive so the block cannot simply grow where it is.
  void* blocker = escape(malloc(32));
  unsigned char* q = escape(static_cast<unsigned char*>(realloc(p, 256 * 1024)));
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p) << "expected a move from a 32-byte to a 256 KiB block";
  EXPECT_TRUE(has_pattern(q, 32, 3));
  fill_usable(q, 0x11);
  // The old block was released: freeing it again is a double free. (Both steps run in
  // the child: in the parent, gtest's own allocations could reuse the freed block.)
  void* p2 = escape(malloc(32));
  EXPECT_EXIT({ escape(realloc(p2, 256 * 1024)); free(escape(p2)); }, testing::KilledBySignal(SIGABRT),
              bad_re("free", p2, "double free"));
  free(p2);
  // Shrinking a big block to far less than half moves it too; contents survive.
  fill_pattern(q, 256 * 1024, 9);
  unsigned char* r = escape(static_cast<unsigned char*>(realloc(q, 100)));
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(has_pattern(r, 100, 9));
  EXPECT_LT(malloc_usable_size(r), 4096u);
  free(r);
  free(blocker);
}

TEST(Realloc, NullAndZero) {
  unsigned char* p = escape(static_cast<unsigned char*>(realloc(nullptr, 40)));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(malloc_usable_size(p), 40u);
  fill_usable(p, 1);
  // glibc: realloc(p, 0) frees p and returns NULL; leakalloc matches. The child shows
  // that p was really freed.
  EXPECT_EXIT({
    if (escape(realloc(p, 0)) == nullptr) free(escape(p));
  }, testing::KilledBySignal(SIGABRT), bad_re("free", p, "double free"));
  EXPECT_EQ(escape(realloc(p, 0)), nullptr);
  void* z = escape(realloc(nullptr, 0));  // malloc(0)
  EXPECT_NE(z, nullptr);
  free(z);
  void* l = escape(__libc_realloc(nullptr, 8));
  ASSERT_NE(l, nullptr);
  l = escape(__libc_realloc(l, 4000));
  ASSERT_NE(l, nullptr);
  __libc_free(l);
}

TEST(Realloc, HugeFailsAndKeepsTheOldBlock) {
  unsigned char* p = escape(static_cast<unsigned char*>(malloc(1000)));
  fill_pattern(p, 1000, 5);
  for (size_t n : {SIZE_MAX, SIZE_MAX - 64, SIZE_MAX / 2, (size_t{1} << 62) + 1, size_t{1} << 60}) {
    errno = 0;
    EXPECT_EQ(escape(realloc(p, n)), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM);
    ASSERT_TRUE(has_pattern(p, 1000, 5));
    EXPECT_GE(malloc_usable_size(p), 1000u);
  }
  free(p);  // still a live block: no abort
}

TEST(Reallocarray, MultipliesAndRefusesOverflow) {
  int* a = escape(static_cast<int*>(reallocarray(nullptr, 10, sizeof(int))));
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 10; i++) a[i] = i * i;
  a = escape(static_cast<int*>(reallocarray(a, 5000, sizeof(int))));
  ASSERT_NE(a, nullptr);
  EXPECT_GE(malloc_usable_size(a), 5000 * sizeof(int));
  for (int i = 0; i < 10; i++) ASSERT_EQ(a[i], i * i);
  for (int i = 0; i < 5000; i++) a[i] = -i;
  errno = 0;
  EXPECT_EQ(escape(reallocarray(a, SIZE_MAX / 2, 3)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(escape(reallocarray(a, size_t{1} << 33, size_t{1} << 33)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  for (int i = 0; i < 5000; i++) ASSERT_EQ(a[i], -i);  // untouched
  free(a);
}

// ---- aligned entry points ----------------------------------------------------------

struct AlignedFn {
  const char* name;
  size_t min_align;  // smallest legal alignment
  void* (*fn)(size_t align, size_t size);
  void (*release)(void* p, size_t align, size_t size);
};

void release_free(void* p, size_t, size_t) { free(p); }
void release_delete(void* p, size_t a, size_t) { ::operator delete(p, std::align_val_t(a)); }
void release_delete_arr_sized(void* p, size_t a, size_t n) { ::operator delete[](p, n, std::align_val_t(a)); }

const AlignedFn kAlignedFns[] = {
    {"posix_memalign", sizeof(void*),
     [](size_t a, size_t n) -> void* {
       void* p = reinterpret_cast<void*>(0x1);
       return posix_memalign(&p, a, n) == 0 ? p : nullptr;
     },
     release_free},
    {"__posix_memalign", sizeof(void*),
     [](size_t a, size_t n) -> void* {
       void* p = reinterpret_cast<void*>(0x1);
       return __posix_memalign(&p, a, n) == 0 ? p : nullptr;
     },
     release_free},
    {"aligned_alloc", 1, [](size_t a, size_t n) { return aligned_alloc(a, n); }, release_free},
    {"memalign", 1, [](size_t a, size_t n) { return memalign(a, n); }, release_free},
    {"__libc_memalign", 1, [](size_t a, size_t n) { return __libc_memalign(a, n); }, release_free},
    {"operator new(align)", 1,
     [](size_t a, size_t n) { return ::operator new(n, std::align_val_t(a)); }, release_delete},
    {"operator new[](align)", 1,
     [](size_t a, size_t n) { return ::operator new[](n, std::align_val_t(a)); },
     release_delete_arr_sized},
    {"operator new(align, nothrow)", 1,
     [](size_t a, size_t n) { return ::operator new(n, std::align_val_t(a), std::nothrow); },
     [](void* p, size_t a, size_t) { ::operator delete(p, std::align_val_t(a), std::nothrow); }},
    {"operator new[](align, nothrow)", 1,
     [](size_t a, size_t n) { return ::operator new[](n, std::align_val_t(a), std::nothrow); },
     [](void* p, size_t a, size_t) { ::operator delete[](p, std::align_val_t(a), std::nothrow); }},
};

TEST(Aligned, EveryEntryPointEveryAlignmentUpTo1MiB) {
  for (const AlignedFn& f : kAlignedFns) {
    for (size_t a = f.min_align; a <= kMiB; a <<= 1) {
      for (size_t n : {size_t{1}, a, a + 1, 3 * a + 5, size_t{5000}}) {
        std::vector<void*> v;
        // A few at a time, so the second one does not land on a fresh region by luck.
        for (int i = 0; i < 3; i++) {
          void* p = escape(f.fn(a, n));
          ASSERT_NE(p, nullptr) << f.name << " align " << a << " size " << n;
          ASSERT_TRUE(aligned_to(p, a)) << f.name << " align " << a << " size " << n << " -> " << p;
          ASSERT_TRUE(aligned_to(p, 16)) << f.name;
          ASSERT_GE(malloc_usable_size(p), n) << f.name;
          fill_usable(p, static_cast<unsigned char>(a));
          v.push_back(p);
        }
        for (void* p : v) f.release(p, a, n);
      }
    }
  }
}

// Alignments beyond mimalloc's largest (16 MiB), as glibc serves them (issue 24: they
// returned ENOMEM): over-allocated, the header right before the aligned pointer. free,
// malloc_usable_size and realloc work on them, sampled or not (alloc.api.sample0).
TEST(Aligned, AlignmentsFrom32MiBTo8GiB) {
  for (const AlignedFn& f : kAlignedFns) {
    for (int shift = 25; shift <= 33; ++shift) {
      size_t a = size_t{1} << shift;
      for (size_t n : {size_t{100}, size_t{3} << 20}) {
        char* p = static_cast<char*>(escape(f.fn(a, n)));
        ASSERT_NE(p, nullptr) << f.name << " align 2^" << shift << " size " << n;
        EXPECT_TRUE(aligned_to(p, a)) << f.name << " align 2^" << shift << " -> " << static_cast<void*>(p);
        EXPECT_GE(malloc_usable_size(p), n) << f.name;
        memset(p, 0x5a, n);
        f.release(p, a, n);
      }
    }
  }
  // realloc keeps the contents, growing and shrinking, in place or not.
  void* p = nullptr;
  ASSERT_EQ(posix_memalign(&p, size_t{1} << 26, 1000), 0);
  ASSERT_TRUE(aligned_to(p, size_t{1} << 26));
  for (int i = 0; i < 1000; ++i) static_cast<unsigned char*>(p)[i] = static_cast<unsigned char>(i * 7);
  char* q = static_cast<char*>(escape(realloc(p, 900)));
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 900; ++i) ASSERT_EQ(static_cast<unsigned char>(q[i]), static_cast<unsigned char>(i * 7)) << i;
  char* r = static_cast<char*>(escape(realloc(q, 200000)));
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 900; ++i) ASSERT_EQ(static_cast<unsigned char>(r[i]), static_cast<unsigned char>(i * 7)) << i;
  free(r);
  // A second free is named, as for any block.
  void* d = escape(aligned_alloc(size_t{1} << 27, 64));
  ASSERT_NE(d, nullptr);
  EXPECT_EXIT({ free(d); free(escape(d)); }, testing::KilledBySignal(SIGABRT), bad_re("free", d, "(double free|.*header was overwritten|.*already freed)"));
  free(d);
}

TEST(Aligned, VallocAndPvallocArePageAligned) {
  const size_t page = page_size();
  for (size_t n : {size_t{0}, size_t{1}, page - 1, page, page + 1, 10 * page + 3, 3 * kMiB}) {
    for (void* (*fn)(size_t) : {+[](size_t m) { return valloc(m); }, +[](size_t m) { return __libc_valloc(m); }}) {
      void* p = escape(fn(n));
      ASSERT_NE(p, nullptr) << n;
      EXPECT_TRUE(aligned_to(p, page)) << n;
      EXPECT_GE(malloc_usable_size(p), n);
      fill_usable(p, 0x77);
      free(p);
    }
    for (void* (*fn)(size_t) : {+[](size_t m) { return pvalloc(m); }, +[](size_t m) { return __libc_pvalloc(m); }}) {
      void* p = escape(fn(n));
      ASSERT_NE(p, nullptr) << n;
      EXPECT_TRUE(aligned_to(p, page)) << n;
      // pvalloc rounds the size up to whole pages (one page for 0).
      size_t want = n == 0 ? page : (n + page - 1) / page * page;
      EXPECT_GE(malloc_usable_size(p), want) << n;
      fill_usable(p, 0x78);
      free(p);
    }
  }
  errno = 0;
  EXPECT_EQ(escape(pvalloc(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(escape(valloc(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Aligned, PosixMemalignRefusesBadAlignment) {
  for (size_t a : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{3}, size_t{24}, size_t{48},
                   size_t{4097}, SIZE_MAX}) {
    void* out = reinterpret_cast<void*>(0x1234);
    errno = 777;
    EXPECT_EQ(posix_memalign(&out, a, 64), EINVAL) << a;
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1234)) << "*memptr changed for align " << a;
    EXPECT_EQ(errno, 777) << "posix_memalign reports through its result only";
    EXPECT_EQ(__posix_memalign(&out, a, 64), EINVAL) << a;
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
  }
  void* out = reinterpret_cast<void*>(0x1234);
  errno = 777;
  EXPECT_EQ(posix_memalign(&out, 64, SIZE_MAX - 64), ENOMEM);
  EXPECT_EQ(out, reinterpret_cast<void*>(0x1234));
  EXPECT_EQ(errno, 777);
  ASSERT_EQ(posix_memalign(&out, 64, 0), 0);
  EXPECT_TRUE(aligned_to(out, 64));
  free(out);
}

TEST(Aligned, BadAlignmentAndHugeSizes) {
  errno = 0;
  EXPECT_EQ(escape(aligned_alloc(24, 48)), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(escape(aligned_alloc(0, 48)), nullptr);
  EXPECT_EQ(errno, EINVAL);
  // memalign: glibc rounds a non-power-of-two alignment up.
  void* p = escape(memalign(24, 100));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned_to(p, 32));
  free(p);
  p = escape(memalign(0, 100));
  ASSERT_NE(p, nullptr);
  free(p);
  p = escape(memalign(5000, 100));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned_to(p, 8192));
  free(p);
  errno = 0;
  EXPECT_EQ(escape(memalign(SIZE_MAX / 2 + 2, 16)), nullptr);
  EXPECT_EQ(errno, EINVAL);
  // Alignments beyond what mimalloc supports (it stops at its segment size) may fail,
  // but only with ENOMEM, never with a misaligned block.
  for (int lg = 22; lg <= 63; lg += 3) {
    size_t a = size_t{1} << lg;
    void* out = nullptr;
    int r = posix_memalign(&out, a, 100);
    if (r == 0) {
      EXPECT_TRUE(aligned_to(out, a)) << lg;
      free(out);
    } else {
      EXPECT_EQ(r, ENOMEM) << lg;
    }
    errno = 0;
    void* q = escape(aligned_alloc(a, 100));
    if (q != nullptr) {
      EXPECT_TRUE(aligned_to(q, a)) << lg;
      free(q);
    } else {
      EXPECT_EQ(errno, ENOMEM) << lg;
    }
  }
  for (size_t a : {size_t{64}, size_t{4096}, kMiB}) {
    errno = 0;
    EXPECT_EQ(escape(aligned_alloc(a, SIZE_MAX - 64)), nullptr) << a;
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(escape(memalign(a, SIZE_MAX / 2)), nullptr) << a;
    EXPECT_EQ(errno, ENOMEM);
  }
}

// ---- C++ operators ------------------------------------------------------------------

TEST(Operators, EveryNewDeleteVariant) {
  struct Variant {
    const char* name;
    void* (*make)(size_t);
    void (*drop)(void*, size_t);
    size_t align;
  } variants[] = {
      {"new/delete", [](size_t n) { return ::operator new(n); }, [](void* p, size_t) { ::operator delete(p); }, 16},
      {"new/sized delete", [](size_t n) { return ::operator new(n); }, [](void* p, size_t n) { ::operator delete(p, n); }, 16},
      {"new[]/delete[]", [](size_t n) { return ::operator new[](n); }, [](void* p, size_t) { ::operator delete[](p); }, 16},
      {"new[]/sized delete[]", [](size_t n) { return ::operator new[](n); }, [](void* p, size_t n) { ::operator delete[](p, n); }, 16},
      {"nothrow new/delete", [](size_t n) { return ::operator new(n, std::nothrow); }, [](void* p, size_t) { ::operator delete(p, std::nothrow); }, 16},
      {"nothrow new[]/delete[]", [](size_t n) { return ::operator new[](n, std::nothrow); }, [](void* p, size_t) { ::operator delete[](p, std::nothrow); }, 16},
      {"aligned new/delete", [](size_t n) { return ::operator new(n, std::align_val_t(256)); }, [](void* p, size_t) { ::operator delete(p, std::align_val_t(256)); }, 256},
      {"aligned new/sized delete", [](size_t n) { return ::operator new(n, std::align_val_t(128)); }, [](void* p, size_t n) { ::operator delete(p, n, std::align_val_t(128)); }, 128},
      {"aligned new[]/delete[]", [](size_t n) { return ::operator new[](n, std::align_val_t(4096)); }, [](void* p, size_t) { ::operator delete[](p, std::align_val_t(4096)); }, 4096},
      {"aligned new[]/sized delete[]", [](size_t n) { return ::operator new[](n, std::align_val_t(64)); }, [](void* p, size_t n) { ::operator delete[](p, n, std::align_val_t(64)); }, 64},
      {"nothrow aligned new/delete", [](size_t n) { return ::operator new(n, std::align_val_t(32), std::nothrow); }, [](void* p, size_t) { ::operator delete(p, std::align_val_t(32), std::nothrow); }, 32},
      {"nothrow aligned new[]/delete[]", [](size_t n) { return ::operator new[](n, std::align_val_t(65536), std::nothrow); }, [](void* p, size_t) { ::operator delete[](p, std::align_val_t(65536), std::nothrow); }, 65536},
      {"new/free", [](size_t n) { return ::operator new(n); }, [](void* p, size_t) { free(p); }, 16},
      {"malloc/delete", [](size_t n) { return malloc(n); }, [](void* p, size_t) { ::operator delete(p); }, 16},
  };
  for (const Variant& v : variants) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{24}, size_t{1000}, size_t{100000}}) {
      void* p = escape(v.make(n));
      ASSERT_NE(p, nullptr) << v.name;
      EXPECT_TRUE(aligned_to(p, v.align)) << v.name << " " << p;
      EXPECT_GE(malloc_usable_size(p), n) << v.name;
      fill_usable(p, 0x3c);
      v.drop(p, n);
    }
  }
  // new-expressions, too.
  auto* s = escape(new std::string(1000, 'x'));
  auto* arr = escape(new long[777]());
  struct alignas(256) Big { char c[300]; };
  Big* b = escape(new Big[3]);
  EXPECT_TRUE(aligned_to(b, 256));
  EXPECT_TRUE(aligned_to(s->data(), 16));
  EXPECT_EQ(arr[776], 0);
  delete[] b;
  delete[] arr;
  delete s;
}

TEST(Operators, HugeNewThrowsNothrowReturnsNull) {
  const size_t huge = SIZE_MAX - 64;
  EXPECT_THROW(escape(::operator new(huge)), std::bad_alloc);
  EXPECT_THROW(escape(::operator new[](huge)), std::bad_alloc);
  EXPECT_THROW(escape(::operator new(huge, std::align_val_t(64))), std::bad_alloc);
  EXPECT_THROW(escape(::operator new[](huge, std::align_val_t(4096))), std::bad_alloc);
  EXPECT_THROW(escape(::operator new(size_t{1} << 62)), std::bad_alloc);
  EXPECT_EQ(escape(::operator new(huge, std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new[](huge, std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new(huge, std::align_val_t(64), std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new[](huge, std::align_val_t(64), std::nothrow)), nullptr);
  volatile size_t n = SIZE_MAX / 4;
  EXPECT_THROW(escape(new long[n]), std::bad_alloc);
}

int g_handler_calls = 0;
void counting_new_handler() {
  if (++g_handler_calls == 3) std::set_new_handler(nullptr);
}

TEST(Operators, NewCallsTheNewHandlerUntilItGivesUp) {
  g_handler_calls = 0;
  std::set_new_handler(counting_new_handler);
  EXPECT_THROW(escape(::operator new(SIZE_MAX - 64)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 3);
  g_handler_calls = 0;
  std::set_new_handler(counting_new_handler);
  EXPECT_EQ(escape(::operator new(SIZE_MAX - 64, std::nothrow)), nullptr);
  EXPECT_EQ(g_handler_calls, 3);
  std::set_new_handler(nullptr);
}

// The library links no C++ runtime: a failed operator new finds the program's
// (alloc/override.cpp). What a new_handler throws must reach the caller of the throwing
// forms, and be caught in the nothrow forms, whose answer is then nullptr.
struct HandlerError {
  int code;
};
int g_throwing_handler_calls = 0;
void throwing_new_handler() {
  ++g_throwing_handler_calls;
  throw HandlerError{42};
}
void bad_alloc_new_handler() {
  ++g_throwing_handler_calls;
  throw std::bad_alloc();
}

TEST(Operators, WhatTheNewHandlerThrowsReachesTheCallerOrNothrowReturnsNull) {
  const size_t huge = SIZE_MAX - 64;
  g_throwing_handler_calls = 0;
  std::set_new_handler(throwing_new_handler);
  try {
    escape(::operator new(huge));
    ADD_FAILURE() << "operator new returned";
  } catch (const HandlerError& e) {
    EXPECT_EQ(e.code, 42);
  }
  EXPECT_EQ(g_throwing_handler_calls, 1);
  std::set_new_handler(bad_alloc_new_handler);
  EXPECT_THROW(escape(::operator new[](huge, std::align_val_t(64))), std::bad_alloc);
  EXPECT_EQ(escape(::operator new(huge, std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new[](huge, std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new(huge, std::align_val_t(64), std::nothrow)), nullptr);
  EXPECT_EQ(escape(::operator new[](huge, std::align_val_t(4096), std::nothrow)), nullptr);
  EXPECT_EQ(g_throwing_handler_calls, 6);
  std::set_new_handler(nullptr);
  // A handler that frees what it can and then gives up: the nothrow form calls it, then
  // answers nullptr.
  static void* reserve = nullptr;
  reserve = malloc(1);
  std::set_new_handler([] {
    free(reserve);
    reserve = nullptr;
    std::set_new_handler(nullptr);
  });
  EXPECT_EQ(escape(::operator new(huge, std::nothrow)), nullptr);
  EXPECT_EQ(reserve, nullptr) << "the handler was not called";
  std::set_new_handler(nullptr);
}

// ---- bad pointers: one line on stderr naming operation and pointer, then SIGABRT -----

using testing::KilledBySignal;

alignas(64) char g_global_buffer[256];

TEST(BadPointerDeathTest, DoubleFree) {
  for (size_t n : {size_t{16}, size_t{1000}, size_t{100000}}) {
    void* p = escape(malloc(n));
    EXPECT_EXIT({ free(p); free(escape(p)); }, KilledBySignal(SIGABRT),
                bad_re("free", p, "double free")) << "size " << n;
    free(p);
  }
  // A large block's span may be decommitted by the first free (mimalloc's delayed
  // decommit fires when an earlier deadline has passed); its header then reads as
  // zeros and the second free can only say the header is not valid. It must still be
  // refused with the pointer named.
  void* big = escape(malloc(4 * kMiB));
  EXPECT_EXIT({ free(big); free(escape(big)); }, KilledBySignal(SIGABRT),
              bad_re("free", big, "(double free|.*header was overwritten)"));
  free(big);
  // Huge blocks (beyond mimalloc's large-object limit, 16 MiB) give their segment back
  // to the system on free, header and all. They start on a page (kPageAlignedFrom), so
  // the second free asks mimalloc's segment map before it reads the header, and is
  // refused instead of faulting, through every way of making such a block.
  const size_t huge = 40 * kMiB;
  const std::string huge_why = "(double free|.*header was overwritten|.*already freed \\(double free)";
  using Make = void* (*)(size_t);
  const std::pair<const char*, Make> makers[] = {
      {"malloc", [](size_t n) { return malloc(n); }},
      {"calloc", [](size_t n) { return calloc(1, n); }},
      {"realloc", [](size_t n) { return realloc(malloc(100), n); }},
      {"aligned_alloc(64)", [](size_t n) { return aligned_alloc(64, n); }},
      {"posix_memalign(32)", [](size_t n) { void* p = nullptr; return posix_memalign(&p, 32, n) == 0 ? p : nullptr; }},
      {"operator new", [](size_t n) { return ::operator new(n); }},
  };
  // 3 GiB: mimalloc maps a block this large where mmap puts it, outside the range its
  // segment map covers; the first free must still be taken (the header is found
  // readable in /proc/self/maps) and the second refused.
  for (size_t n : {huge, (size_t{3} << 30) + 7}) {
    for (const auto& [name, make] : makers) {
      char* h = escape(static_cast<char*>(make(n)));
      ASSERT_NE(h, nullptr) << name << " " << n;
      EXPECT_TRUE(aligned_to(h, page_size())) << name << " " << n;
      h[0] = 1;
      h[n - 1] = 2;
      EXPECT_EXIT({ free(h); free(escape(h)); }, KilledBySignal(SIGABRT), bad_re("free", h, huge_why))
          << name << " " << n;
      free(h);
    }
  }
  for (size_t n : {kMiB - 17, kMiB - 16, kMiB, kMiB + 1}) {
    void* p = escape(malloc(n));
    EXPECT_EQ(aligned_to(p, page_size()), n >= kMiB) << n << ": blocks of 1 MiB and up start on a page";
    free(p);
  }
  void* c = escape(calloc(3, 33));
  EXPECT_EXIT({ free(c); free(escape(c)); }, KilledBySignal(SIGABRT), bad_re("free", c, "double free"));
  free(c);
  void* a = escape(aligned_alloc(4096, 100));
  EXPECT_EXIT({ free(a); free(escape(a)); }, KilledBySignal(SIGABRT), bad_re("free", a, "double free"));
  free(a);
  void* d = escape(::operator new(48));
  EXPECT_EXIT({ ::operator delete(d); ::operator delete(escape(d)); }, KilledBySignal(SIGABRT),
              bad_re("operator delete", d, "double free"));
  ::operator delete(d);
  void* e = escape(::operator new[](48));
  EXPECT_EXIT({ ::operator delete[](e); ::operator delete[](escape(e)); }, KilledBySignal(SIGABRT),
              bad_re("operator delete[]", e, "double free"));
  ::operator delete[](e);
  void* r = escape(malloc(64));
  // Not a second free: a use after free (issue 24), for realloc and malloc_usable_size,
  // from a thread cache or from mimalloc.
  EXPECT_EXIT({ free(r); escape(realloc(escape(r), 128)); }, KilledBySignal(SIGABRT),
              bad_re("realloc", r, "use after free"));
  EXPECT_EXIT({ free(r); escape(reallocarray(escape(r), 2, 64)); }, KilledBySignal(SIGABRT),
              bad_re("reallocarray", r, "use after free"));
  EXPECT_EXIT({ free(r); fprintf(stderr, "%zu", malloc_usable_size(escape(r))); }, KilledBySignal(SIGABRT),
              bad_re("malloc_usable_size", r, "use after free"));
  void* big_r = escape(malloc(100000));  // past the thread cache's classes
  EXPECT_EXIT({ free(big_r); escape(realloc(escape(big_r), 128)); }, KilledBySignal(SIGABRT),
              bad_re("realloc", big_r, "use after free"));
  free(big_r);
  free(r);
}

// `delete` of a `new[]` block of a type with a destructor passes the address after the
// runtime's element count, 8 bytes into the block: refused with a message, never a spin
// (issue 24; measured in docs/DESIGN.md's known traps, every size and setting aborted).
struct WithDtor {
  int v = 1;
  ~WithDtor() { escape(&v); }
};

TEST(BadPointerDeathTest, DeleteOfArrayNew) {
  for (size_t n : {size_t{1}, size_t{4}, size_t{1000}, size_t{300000}}) {
    WithDtor* a = escape(new WithDtor[n]);
    EXPECT_EXIT({ delete a; }, KilledBySignal(SIGABRT), bad_re("operator delete", a, "not the start of a block"))
        << n << " elements";
    delete[] a;
  }
}

TEST(BadPointerDeathTest, StackPointer) {
  alignas(16) char local[64];
  char* p = escape(local + 16);
  EXPECT_EXIT(free(p), KilledBySignal(SIGABRT), bad_re("free", p, "not allocated by leakalloc"));
  EXPECT_EXIT(escape(realloc(p, 10)), KilledBySignal(SIGABRT), bad_re("realloc", p, "not allocated by leakalloc"));
  EXPECT_EXIT(::operator delete(p), KilledBySignal(SIGABRT), bad_re("operator delete", p, "not allocated by leakalloc"));
}

TEST(BadPointerDeathTest, GlobalPointer) {
  char* p = escape(g_global_buffer + 64);
  EXPECT_EXIT(free(p), KilledBySignal(SIGABRT), bad_re("free", p, "not allocated by leakalloc"));
  EXPECT_EXIT(::operator delete[](p), KilledBySignal(SIGABRT),
              bad_re("operator delete[]", p, "not allocated by leakalloc"));
  EXPECT_EXIT(escape(__libc_realloc(p, 10)), KilledBySignal(SIGABRT),
              bad_re("__libc_realloc", p, "not allocated by leakalloc"));
  // Unaligned: cannot be the start of any block.
  char* q = escape(g_global_buffer + 3);
  EXPECT_EXIT(free(q), KilledBySignal(SIGABRT), bad_re("free", q, "not the start of a block"));
}

TEST(BadPointerDeathTest, PageAlignedMmapWithNothingBefore) {
  // The header of a page-aligned pointer would be on the previous page: make that page
  // inaccessible, so reading it blindly would crash with SIGSEGV instead of a message.
  const size_t page = page_size();
  char* m = static_cast<char*>(mmap(nullptr, 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(mprotect(m + page, page, PROT_READ | PROT_WRITE), 0);
  char* p = m + page;
  memset(p, 0x41, page);
  EXPECT_EXIT(free(p), KilledBySignal(SIGABRT), bad_re("free", p, "not allocated by leakalloc"));
  EXPECT_EXIT(escape(realloc(p, 99)), KilledBySignal(SIGABRT), bad_re("realloc", p, "not allocated by leakalloc"));
  EXPECT_EXIT(::operator delete(p, size_t{64}), KilledBySignal(SIGABRT),
              bad_re("operator delete", p, "not allocated by leakalloc"));
  // The same with the previous page unmapped altogether.
  ASSERT_EQ(munmap(m, page), 0);
  EXPECT_EXIT(free(p), KilledBySignal(SIGABRT), bad_re("free", p, "not allocated by leakalloc"));
  munmap(p, page);
}

TEST(BadPointerDeathTest, InteriorPointers) {
  char* p = escape(static_cast<char*>(malloc(256)));
  memset(p, 0, 256);
  EXPECT_EXIT(free(p + 16), KilledBySignal(SIGABRT), bad_re("free", p + 16, ".*interior pointer"));
  EXPECT_EXIT(free(p + 8), KilledBySignal(SIGABRT), bad_re("free", p + 8, "not the start of a block"));
  EXPECT_EXIT(free(p + 1), KilledBySignal(SIGABRT), bad_re("free", p + 1, "not the start of a block"));
  EXPECT_EXIT(free(p + 128), KilledBySignal(SIGABRT), bad_re("free", p + 128, ".*interior pointer"));
  EXPECT_EXIT(escape(realloc(p + 32, 512)), KilledBySignal(SIGABRT), bad_re("realloc", p + 32, ".*interior pointer"));
  EXPECT_EXIT(::operator delete(p + 48), KilledBySignal(SIGABRT), bad_re("operator delete", p + 48, ".*interior pointer"));
  EXPECT_EXIT(::operator delete[](p + 8, size_t{8}), KilledBySignal(SIGABRT),
              bad_re("operator delete[]", p + 8, "not the start of a block"));
  EXPECT_EXIT(escape(reallocarray(p + 16, 2, 2)), KilledBySignal(SIGABRT), bad_re("reallocarray", p + 16, ".*interior pointer"));
  EXPECT_EXIT(fprintf(stderr, "%zu", malloc_usable_size(escape(p + 64))), KilledBySignal(SIGABRT),
              bad_re("malloc_usable_size", p + 64, ".*interior pointer"));
  // An interior pointer of a big (own-segment) block.
  char* big = escape(static_cast<char*>(malloc(8 * kMiB)));
  memset(big, 0x5a, 8 * kMiB);
  EXPECT_EXIT(free(big + 4 * kMiB), KilledBySignal(SIGABRT), bad_re("free", big + 4 * kMiB, ".*interior pointer"));
  free(big);
  free(p);
}

// ---- a freed block's link in the thread cache (issue 24) ---------------------------
// An 8-byte overflow past a live block's usable size reaches the header of the block
// after it; when that one is freed into the thread cache, its first word links the bin.
// Unchecked, the next mallocs of the class returned an address the attacker wrote there.
// Now a pop aborts with a message naming the damage (alloc/thread_cache.h).

alignas(64) char g_attack_target[256];

// Two live blocks of `n` bytes, b right after a: a's usable size ends at b's header.
// The other blocks made on the way stay live (`others`): their class's bin then has room
// for b.
std::pair<char*, char*> neighbours(size_t n, std::vector<char*>& others) {
  for (int i = 0; i < 4096; ++i) {
    char* p = escape(static_cast<char*>(malloc(n)));
    for (char*& q : others) {
      if (q + malloc_usable_size(q) + 16 == p) {
        std::swap(q, others.back());
        char* a = others.back();
        others.pop_back();
        return {a, p};
      }
    }
    others.push_back(p);
  }
  return {nullptr, nullptr};
}

// Empties the bin of n-byte blocks (no bin holds more than 64), so that b's free goes
// into it; the blocks stay live.
void empty_bin(size_t n) {
  for (int i = 0; i < 65; ++i) escape(malloc(n));
}

std::string corruption_re(const void* user, const std::string& what) {
  return "leakalloc: heap corruption: " + what + " " + re_escape(ptr_str(user)) + " ";
}

TEST(HeapCorruptionDeathTest, OverflowIntoACachedBlocksLinkAborts) {
  if (!tcache_on()) GTEST_SKIP() << "tcache:false: freed blocks go to mimalloc";
  for (size_t n : {size_t{24}, size_t{40}, size_t{1000}}) {
    std::vector<char*> others;
    auto [a, b] = neighbours(n, others);
    ASSERT_NE(a, nullptr) << "no two neighbouring blocks of " << n << " bytes";
    // The attacker's block: what the program's next mallocs must never return.
    char* evil = g_attack_target + 64;
    EXPECT_EXIT({
      empty_bin(n);
      free(b);
      uintptr_t forged = reinterpret_cast<uintptr_t>(evil) - 16;  // its "header"
      memcpy(a + malloc_usable_size(a), &forged, 8);               // 8 bytes past a
      for (int i = 0; i < 3; ++i)
        if (escape(malloc(n)) == evil) _exit(3);  // the attack worked
      _exit(0);
    }, KilledBySignal(SIGABRT), corruption_re(b, "the free-list link in the header of freed block"))
        << n;
    // 16 bytes that leave the link as it was: its mark does not match any more.
    EXPECT_EXIT({
      empty_bin(n);
      free(b);
      uint64_t link;
      memcpy(&link, a + malloc_usable_size(a), 8);
      memset(a + malloc_usable_size(a), 0x41, 16);
      memcpy(a + malloc_usable_size(a), &link, 8);
      for (int i = 0; i < 3; ++i) escape(malloc(n));
      _exit(0);
    }, KilledBySignal(SIGABRT), corruption_re(b, "the header of freed block")) << n;
    // Found later: the bin is given back (thread.tcache.flush, as at thread exit) with the
    // damage still in it. A message, not a SIGSEGV in mimalloc.
    EXPECT_EXIT({
      empty_bin(n);
      free(b);
      uint64_t junk = 0x4141414141414141ull;
      memcpy(a + malloc_usable_size(a), &junk, 8);
      leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
      _exit(0);
    }, KilledBySignal(SIGABRT), corruption_re(b, "the free-list link in the header of freed block")) << n;
    free(a);
    free(b);
    for (char* r : others) free(r);
  }
}

// A double free of a cached block is still named as one (the bin's salt in its mark).
TEST(HeapCorruptionDeathTest, DoubleFreeOfACachedBlockIsNamed) {
  if (!tcache_on()) GTEST_SKIP() << "tcache:false: freed blocks go to mimalloc";
  void* p = escape(malloc(100));
  EXPECT_EXIT({ free(p); free(escape(p)); }, KilledBySignal(SIGABRT), bad_re("free", p, "double free"));
  void* q = escape(aligned_alloc(64, 100));
  EXPECT_EXIT({ free(q); free(escape(q)); }, KilledBySignal(SIGABRT), bad_re("free", q, "double free"));
  free(p);
  free(q);
}

TEST(BadPointerDeathTest, OverwrittenHeader) {
  // A buffer underflow into the header is caught at free.
  char* p = escape(static_cast<char*>(malloc(64)));
  EXPECT_EXIT({ memset(p - 8, 0, 8); free(p); }, KilledBySignal(SIGABRT),
              bad_re("free", p, ".*header was overwritten"));
  free(p);
}

}  // namespace
