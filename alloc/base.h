// Low-level primitives shared by every layer: spin locks, raw OS memory, a clock,
// and a fixed-buffer formatter.
//
// Contract: nothing here calls malloc, takes a libc lock, or touches a TLS variable
// that would need __tls_get_addr. Everything is safe before constructors have run,
// inside fork handlers (except RawLock::lock, which must not be held across fork
// without the atfork handlers of the owner), and on the dump path.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>

#define LA_LIKELY(x) __builtin_expect(!!(x), 1)
#define LA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LA_NOINLINE __attribute__((noinline))
#define LA_ALWAYS_INLINE inline __attribute__((always_inline))
#define LA_TLS __thread __attribute__((tls_model("initial-exec")))
// For the declaration of a variable that another file of the library defines.
// -fvisibility=hidden applies to definitions only: without this the fast paths reach
// the variable through the GOT, one more load each time.
#define LA_HIDDEN __attribute__((visibility("hidden")))

namespace leakalloc {

// Asks for the cache line at `p` in the exclusive state, ahead of a write, without
// waiting for it. Written out because GCC emits PREFETCHW only for -march levels that
// have it; processors without it execute the encoding as a NOP.
LA_ALWAYS_INLINE void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
  __asm__("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1);
#endif
}

// A test-and-test-and-set lock. pthread mutexes are avoided on purpose: they are
// fine in a running program, but glibc's mutexes may not be initialised when the
// first malloc arrives from ld.so, and a spin lock needs no teardown at exit.
class RawLock {
 public:
  void lock() {
    for (;;) {
      if (!held_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      while (held_.load(std::memory_order_relaxed)) {
        if (++spins < 64) __builtin_ia32_pause();
        else { yield(); spins = 0; }
      }
    }
  }
  bool try_lock() { return !held_.exchange(true, std::memory_order_acquire); }
  void unlock() { held_.store(false, std::memory_order_release); }
  // After fork() the child owns whatever the parent's forking thread held.
  void reset_in_child() { held_.store(false, std::memory_order_relaxed); }

 private:
  static void yield();
  std::atomic<bool> held_{false};
};

class LockGuard {
 public:
  explicit LockGuard(RawLock& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  RawLock& l_;
};

// Holds off thread cancellation while a lock is held across cancellation points (the
// open and write calls of a dump, on the thread that asked for it). The library is built
// without exceptions (it links no C++ runtime), so a cancellation acted on inside would
// unwind past the LockGuard and leave the lock held for good. A cancellation requested
// meanwhile is acted on at the thread's next cancellation point after this.
class CancellationOff {
 public:
  CancellationOff() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_); }
  ~CancellationOff() { pthread_setcancelstate(old_, nullptr); }
  CancellationOff(const CancellationOff&) = delete;
  CancellationOff& operator=(const CancellationOff&) = delete;

 private:
  int old_ = PTHREAD_CANCEL_ENABLE;
};

// Raw OS memory. The profiler's own tables live here (never on the tracked path).
// `os_reserve` maps address space that is committed lazily by the kernel as pages
// are first touched (MAP_NORESERVE), so a table can be sized for its cap up front.
void* os_alloc(size_t bytes);            // zeroed, or nullptr
void* os_reserve(size_t bytes);          // zeroed, lazily committed, or nullptr
void os_free(void* p, size_t bytes);
size_t os_page_size();

LA_ALWAYS_INLINE uint64_t timespec_ns(const struct timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Monotonic nanoseconds from CLOCK_MONOTONIC_COARSE: resolution one kernel tick
// (1-4 ms), 64 bits of ns last 584 years. The birth clock's refills read it (births,
// sampled or not, read the cached words of birth_word_now below), so once
// use_vdso_clock() has run the call goes straight to the kernel's vDSO function,
// skipping glibc's clock_gettime wrapper (4.7 instead of 6.7 ns per call measured on
// the development VM); until then, and wherever the vDSO lacks it, to glibc's.
using ClockFn = int (*)(clockid_t, struct timespec*);
extern LA_HIDDEN std::atomic<ClockFn> g_coarse_clock;
void use_vdso_clock();  // allocation-free; from the first initialisation

// The load bias of an ELF image mapped at `ehdr`: the header's address minus the p_vaddr
// of the PT_LOAD that maps file offset 0 (0 for a normal shared object). Symbol values
// and p_vaddr plus the bias are run-time addresses.
uintptr_t elf_load_bias(const void* ehdr);

LA_ALWAYS_INLINE uint64_t coarse_now_ns() {
  struct timespec ts;
  g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, &ts);
  return timespec_ns(ts);
}

// The birth time of a block, in ticks of 2^20 ns of the coarse clock, for the malloc fast
// path: usually without calling the vDSO at all. The kernel keeps the coarse time the
// vDSO returns in a page it maps into every process ([vvar]); it changes only when the
// kernel's timekeeping advances it, once a tick. Each thread keeps the two words it
// last saw there with the ticks they stand for, and while the words still hold those
// values no tick has happened, so the ticks are current: two loads and a compare
// instead of a call (the vDSO call was a quarter of the fast path's instructions, and
// on a workload bound by cache misses each extra instruction costs time: it shrinks
// how far the CPU can run ahead to the next miss).
//
// The words' address is not an ABI, so nothing is assumed about it: the first page of
// [vvar] is searched once for the value the vDSO just returned, and the spot is used
// only after it has been seen to hold a later value that the vDSO also returned. A
// refill (once a tick per thread) checks it again; any disagreement turns the shortcut
// off for good, and every birth then comes from the vDSO call, as before. Reading the
// two words while the kernel updates them can mix old and new, which never equals a
// thread's cached pair, so a torn read only costs a refill.
struct CoarseWords {
  uint64_t sec, nsec;  // as in the kernel's vDSO data (struct vdso_timestamp)
};
struct CoarseCache {
  uint64_t sec, nsec;  // per thread (ThreadState); zero-filled never matches
  uint64_t birth;      // the birth they stand for, as it sits in a header's word1
};
extern LA_HIDDEN std::atomic<const CoarseWords*> g_coarse_words;
// Out of line: read the clock, refresh `cache` where they can, and return the clock as
// a header's birth bits (alloc/header.h birth_word_of) / in ns.
uint64_t birth_word_refill(CoarseCache& cache);
// Called by birth_word_refill(), so on a thread's first allocation after each tick of the
// coarse clock (1-4 ms), whatever the entry point: the profiler sets it (once, at
// initialisation) to look at what the dump thread asks for (profile/dump.h).
extern LA_HIDDEN std::atomic<void (*)()> g_on_tick;
uint64_t coarse_refill_ns(CoarseCache& cache);
// Whether cache.birth is the current birth (no tick since the thread last looked).
LA_ALWAYS_INLINE bool birth_ticks_current(const CoarseCache& cache) {
  const CoarseWords* w = g_coarse_words.load(std::memory_order_relaxed);
  uint64_t s = __atomic_load_n(&w->sec, __ATOMIC_RELAXED);
  uint64_t n = __atomic_load_n(&w->nsec, __ATOMIC_RELAXED);
  return ((s ^ cache.sec) | (n ^ cache.nsec)) == 0;
}
// The birth bits of a header's word1 for a block born now. They are kept ready to be
// or'ed in: the fast path then spends no shift on them.
LA_ALWAYS_INLINE uint64_t birth_word_now(CoarseCache& cache) {
  if (LA_LIKELY(birth_ticks_current(cache))) return cache.birth;
  return birth_word_refill(cache);
}
// coarse_now_ns() for a sampled block's live record, through the same per-thread cache:
// while no tick has happened the cached words are the clock's value, so a sample costs
// no vDSO call either (at sample:0 that is every allocation).
LA_ALWAYS_INLINE uint64_t coarse_now_ns_cached(CoarseCache& cache) {
  if (LA_LIKELY(birth_ticks_current(cache))) return cache.sec * 1000000000ull + cache.nsec;
  return coarse_refill_ns(cache);
}
// For tests: whether births come from the [vvar] words (true) or from the vDSO call.
bool birth_clock_reads_vvar();

uint64_t precise_now_ns();   // CLOCK_MONOTONIC, for dump timestamps
uint64_t process_start_ns(); // coarse time of the first allocator call

// Formats into a caller-provided buffer and write(2)s it to a file descriptor.
// Used by every message and dump writer: it never allocates.
class FdWriter {
 public:
  FdWriter(int fd, char* buf, size_t cap) : fd_(fd), buf_(buf), cap_(cap) {}
  ~FdWriter() { flush(); }
  FdWriter& str(const char* s);
  FdWriter& str(const char* s, size_t n);
  FdWriter& ch(char c);
  FdWriter& u64(uint64_t v);
  FdWriter& i64(int64_t v);
  FdWriter& hex(uint64_t v);  // lower-case, with 0x
  FdWriter& fixed(double v, int decimals);
  bool flush();
  bool failed() const { return failed_; }
  int error() const { return err_; }
  uint64_t written() const { return total_; }

 private:
  int fd_;
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  uint64_t total_ = 0;
  bool failed_ = false;
  int err_ = 0;
};

// "leakalloc: " + message on stderr, one write(2), no allocation.
void log_message(const char* msg);
// Formats the message with a tiny printf subset: %s %d %u %zu %lu %llu %p %x %c %%.
void log_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Async-signal-safe integer/string helpers.
size_t u64_to_dec(uint64_t v, char* out);  // returns length, no NUL
size_t cstr_len(const char* s);
bool cstr_eq(const char* a, const char* b);
void cstr_copy(char* dst, size_t cap, const char* src);

// One line of /proc/<pid>/maps, "start-limit perms offset dev inode path", parsed in
// place without allocating. `path` points into the line (not NUL-terminated) and is
// empty for anonymous mappings.
struct MapsLine {
  uintptr_t start, limit, offset;
  bool readable, exec;
  const char* path;
  size_t path_len;
};
MapsLine parse_maps_line(const char* line, size_t len);  // `line` without its newline
// Calls fn(line, ctx) for each line of /proc/self/maps until fn returns true; returns
// false if the file cannot be read (no /proc in a chroot or a bare container). Raw reads
// into a stack buffer: never allocates. A line of more than 255 characters is passed cut
// short (its path is then incomplete; its addresses and permissions are not).
bool scan_self_maps(bool (*fn)(const MapsLine& line, void* ctx), void* ctx);
// Whether [addr, addr + len) (at most 256 bytes) can be read: a slow check (a system
// call or two) for a pointer that no table vouches for, before its memory is read. It
// asks process_vm_readv() on this process, or where a seccomp policy forbids that,
// /proc/self/maps; with neither, mincore() tells mapped pages from unmapped ones, and a
// mapped page that is not readable (PROT_NONE) is taken for readable. errno is kept.
bool memory_readable(uintptr_t addr, size_t len);
// Its three ways, separately (for tests): 1 readable, 0 not, -1 this way cannot tell
// (the call is forbidden, /proc is missing). by_mincore only says whether it is mapped.
namespace readable {
int by_vm_readv(uintptr_t addr, size_t len);  // len <= 256
int by_maps(uintptr_t addr, size_t len);
bool by_mincore(uintptr_t addr, size_t len);  // at most two pages
}  // namespace readable

}  // namespace leakalloc

namespace leakalloc {

// A bump allocator over private mmap'd chunks for the dump path and other scratch work
// that must not allocate through the tracked malloc. Everything is released at once
// when the arena is destroyed. Not thread-safe: one arena per task.
class ScratchArena {
 public:
  ScratchArena() = default;
  ~ScratchArena();
  ScratchArena(const ScratchArena&) = delete;
  ScratchArena& operator=(const ScratchArena&) = delete;
  // Zeroed memory, or nullptr when the OS refuses.
  void* alloc(size_t bytes, size_t align = 16);
  template <typename T>
  T* alloc_array(size_t n) { return static_cast<T*>(alloc(n * sizeof(T), alignof(T) < 16 ? 16 : alignof(T))); }
  uint64_t bytes_mapped() const { return mapped_; }

 private:
  struct Chunk {
    Chunk* prev;
    size_t size;
  };
  Chunk* head_ = nullptr;
  char* cur_ = nullptr;
  char* end_ = nullptr;
  uint64_t mapped_ = 0;
};

}  // namespace leakalloc
