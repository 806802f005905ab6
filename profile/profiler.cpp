// Lazy initialisation, the sampling slow path and the internal API (profile/profiler.h).
// The constructor, destructor and fork handlers are in ctl/startup.cpp.
//
// Start-up order. The first malloc of the process (possibly before constructors, with
// `environ` not yet set) runs ensure_init(): it sets the header secret first (nothing
// before it may allocate), loads the options and reserves the tables. Sampling starts
// only when leakalloc's constructor has primed libunwind, registered the fork handlers
// and started the dump machinery: allocations made before that (ld.so and libc start-up)
// are served and counted, but not sampled.
//
// What the sampling path asks of libc (audited for issue 24). A sampled allocation may
// be one that glibc makes while holding a lock of its own (the thread's lock in
// pthread_getattr_np, stdio's FILE locks, the loader's locks), so nothing on this path
// may take a glibc lock that glibc holds while it calls malloc:
//  - stack bounds: system calls only, once per thread at registration (threads.cpp,
//    unwind.cpp find_stack_bounds: the thread pointer, or raw reads of /proc/self/maps
//    for the main thread); pthread_getattr_np is never called (it deadlocked).
//  - registration: gettid, and pthread_setspecific (no lock; a key past the first 32
//    callocs its second-level block, served untracked under the guard).
//  - capture: the frame-recipe cache reads unwind tables through _dl_find_object
//    (lock-free); unw_backtrace's dl_iterate_phdr takes dl_load_write_lock, which is
//    recursive and under which glibc does not allocate; sched_yield at the fork gate.
//  - stack table, live records, memos: our own locks and os_reserve/mmap.
//  - draw_gap: libm's log (pure); the clock: the vDSO or clock_gettime.
//  - dump::attend: pthread_create of the dump thread, once, with an explicit stack size
//    (not __default_pthread_attr_lock, held across a malloc; dump.cpp start_thread), and
//    no file I/O.
#include "profile/profiler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/options.h"
#include "profile/dump.h"
#include "profile/frame_cache.h"
#include "profile/live_set.h"
#include "profile/sampler.h"
#include "profile/stack_table.h"
#include "profile/threads.h"
#include "profile/unwind.h"

namespace leakalloc {

namespace {

enum InitState : int { kUninit = 0, kInitRunning = 1, kInitDone = 2 };
std::atomic<int> g_init{kUninit};
std::atomic<bool> g_sampling_ready{false};
std::atomic<bool> g_active{true};
// The allocator ran out of address space and serves glibc's blocks (prof::switch_off):
// profiling stays off whatever the options say.
std::atomic<bool> g_switched_off{false};
// Small address spaces (issue 24). The profiler's tables are reserved up front (the
// thread registry 3.5 MiB at the first malloc, the frame cache and the stack table
// 7 MiB in the constructor, the first live-record chunk 1.5 MiB at the first sample),
// and under `ulimit -v` a reservation counts whether or not it is touched: python3,
// which glibc starts in 14 MiB, failed under 16 and 24 MiB limits for want of the
// 4.5 MiB reserved before mimalloc gave up. So when the limit leaves less room than
// kProfilingRoom beside what is mapped at the first malloc (one 32 MiB mimalloc
// segment, the tables, and room for the program), the profiler reserves nothing and
// stays off; the allocator goes on (to glibc's malloc when mimalloc cannot map).
constexpr uint64_t kProfilingRoom = uint64_t{48} << 20;
std::atomic<bool> g_short_of_space{false};
std::atomic<int> g_lg_sample{19};
std::atomic<uint32_t> g_sample_gen{1};
// Sum of the records counters at the last prof.reset: stats.sampled_total counts from it.
std::atomic<uint64_t> g_records_at_reset{0};

// Exponential gap with mean 2^lg (see profile/sampler.h). A 64-bit LCG is plenty for
// sampling decisions; 53 bits of it make U, uniform in (0, 1].
int64_t draw_gap(ThreadProfile& t, int lg) {
  if (lg <= 0) return 0;
  if (t.rng == 0) {
    t.rng = (reinterpret_cast<uintptr_t>(&t) * 0x9e3779b97f4a7c15ull) ^ coarse_now_ns() ^ g_header_secret;
    t.rng |= 1;
  }
  t.rng = t.rng * 6364136223846793005ull + 1442695040888963407ull;
  double u = static_cast<double>((t.rng >> 11) + 1) * (1.0 / 9007199254740992.0);
  double gap = -log(u) * static_cast<double>(uint64_t{1} << lg);
  if (gap > 9.0e18) gap = 9.0e18;
  return static_cast<int64_t>(gap) + 1;
}

void apply_options() {
  g_lg_sample.store(static_cast<int>(opt(kOpt_sample)), std::memory_order_relaxed);
  g_active.store(opt(kOpt_active) != 0 && !g_switched_off.load(std::memory_order_relaxed),
                 std::memory_order_relaxed);
  g_sample_gen.fetch_add(1, std::memory_order_relaxed);
}

// Inlined into sample_slow: one frame fewer for libunwind to walk (profile/unwind.h).
// Captures the stack at `frame`, counts a sample of `size` bytes on it and publishes the
// block's live record. `keep_birth`: the record is born at *birth_ns (a block resized in
// place); otherwise now, read after the capture, and stored in *birth_ns.
LA_ALWAYS_INLINE uint64_t record_sample(ThreadProfile& t, EntryFrame frame, size_t size, uint64_t* birth_ns,
                                        bool keep_birth) {
  uintptr_t frames[unwind::kCaptureBuffer];
  size_t max = static_cast<size_t>(opt(kOpt_max_depth));
  if (max > unwind::kMaxCapture) max = unwind::kMaxCapture;
  uint32_t sid = 0;
  size_t depth = opt(kOpt_unwind) == kUnwindFp ? unwind::capture_fp(t, frame, frames, max)
                                               : unwind::capture_libunwind(t, frame, frames, max, &sid);
  if (sid == 0) {
    sid = stacks::intern(frames, static_cast<uint32_t>(depth));
    if (LA_UNLIKELY(sid == 0)) return 0;
    if (t.memo != nullptr) frame_cache::remember_id(*t.memo, sid, prof::kOverflowStackId);
  }
  stacks::count_sample(sid, size, t.thread_index);
  if (!keep_birth) *birth_ns = coarse_now_ns_cached(t.clock);
  return live::add(t, sid, size, *birth_ns);
}


// True under an address-space limit with less than kProfilingRoom left above what is
// mapped now (/proc/self/statm's first field). System calls only: this runs on the
// process's first malloc.
bool address_space_short() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return false;
  uint64_t used = 0;
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[96];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i)
      used = used * 10 + static_cast<uint64_t>(buf[i] - '0');
    used *= static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  }
  return static_cast<uint64_t>(rl.rlim_cur) < used + kProfilingRoom;
}

}  // namespace

namespace prof {

void ensure_init() {
  if (LA_LIKELY(g_init.load(std::memory_order_acquire) == kInitDone)) return;
  int expected = kUninit;
  if (g_init.compare_exchange_strong(expected, kInitRunning, std::memory_order_acq_rel)) {
    // The secret first: every header from here on is checked against it.
    init_header_secret(&g_init);
    ReentrancyGuard guard;
    use_vdso_clock();
    process_start_ns();
    options_load();
    if (address_space_short()) {
      // Said once, by the constructor or by mimalloc's failure (alloc.cpp degrade).
      g_short_of_space.store(true, std::memory_order_relaxed);
      g_switched_off.store(true, std::memory_order_relaxed);
      threads::forgo_table();
    }
    apply_options();
    threads::init();
    live::init();
    g_on_tick.store(&on_tick, std::memory_order_relaxed);
    g_init.store(kInitDone, std::memory_order_release);
    return;
  }
  // Another thread is initialising: wait (it never waits for us).
  while (g_init.load(std::memory_order_acquire) != kInitDone) sched_yield();
}

namespace {
// A successful malloc or free leaves errno alone, as glibc's do: callers read errno after
// allocating an error message. Init opens files, and libunwind's address validation
// drains a pipe until read() fails with EAGAIN (whenever errno is EINTR on entry).
struct ErrnoKeeper {
  int saved = errno;
  ~ErrnoKeeper() { errno = saved; }
};

// Whether samples are recorded now (prof.active, and the profiler set up).
bool recording() {
  return g_active.load(std::memory_order_relaxed) && g_sampling_ready.load(std::memory_order_acquire);
}

// sample_slow() for `charge` bytes of a block of `size`: an allocation (charge == size,
// born now) or a block grown in place (charge: the growth; born at *birth_ns).
uint64_t charge_slow(ThreadProfile& t, size_t charge, size_t size, EntryFrame frame, uint64_t* birth_ns,
                     bool keep_birth) {
  if (t.guard != 0) return 0;  // leakalloc's own allocation: untracked
  ErrnoKeeper keep_errno;
  if (LA_UNLIKELY(t.phase == kThreadNew)) {
    ensure_init();
    adopt_thread(t);
  }
  int lg = g_lg_sample.load(std::memory_order_relaxed);
  uint32_t gen = g_sample_gen.load(std::memory_order_relaxed);
  if (t.sample_gen != gen) {
    // First allocation under this rate: start a fresh gap and charge this allocation.
    t.sample_gen = gen;
    int64_t left = draw_gap(t, lg) - static_cast<int64_t>(charge);
    if (left > 0) {
      t.bytes_left.store(left, std::memory_order_relaxed);
      return 0;
    }
  }
  t.bytes_left.store(draw_gap(t, lg), std::memory_order_relaxed);
  if (LA_UNLIKELY(dump::needs_attention())) dump::attend();  // errno: keep_errno
  if (!recording()) return 0;
  ReentrancyGuard guard;
  return record_sample(t, frame, size, birth_ns, keep_birth);
}
}  // namespace

uint64_t sample_slow(ThreadProfile& t, size_t size, EntryFrame frame, uint64_t* birth_ns) {
  return charge_slow(t, size, size, frame, birth_ns, false);
}

uint64_t sample_growth(ThreadProfile& t, size_t growth, size_t size, EntryFrame frame, uint64_t birth_ns) {
  return charge_slow(t, growth, size, frame, &birth_ns, true);
}

uint64_t sample_again(ThreadProfile& t, size_t size, EntryFrame frame, uint64_t birth_ns) {
  if (t.guard != 0) return 0;
  ErrnoKeeper keep_errno;
  if (LA_UNLIKELY(t.phase == kThreadNew)) adopt_thread(t);
  if (!recording()) return 0;
  ReentrancyGuard guard;
  return record_sample(t, frame, size, &birth_ns, true);
}

void on_tick() {
  if (LA_LIKELY(!dump::needs_attention()) || this_thread_profile().guard != 0) return;
  ErrnoKeeper keep_errno;
  dump::attend();
}

bool adopt_thread(ThreadProfile& t) {
  if (t.phase != kThreadNew) return t.phase == kThreadLive;
  if (t.guard != 0 || g_init.load(std::memory_order_acquire) != kInitDone) return false;
  {
    ErrnoKeeper keep_errno;
    ReentrancyGuard guard;
    threads::register_current(t);
  }
  return t.phase == kThreadLive;
}

void record_free(uint32_t record, uint32_t generation, uint64_t birth_ns) {
  live::remove(record, generation, birth_ns);
}
uint64_t record_size(uint32_t record) { return live::size_of(record); }

uint32_t stack_count() { return stacks::count(); }
bool stack_get(uint32_t id, StackView* out) { return stacks::get(id, out); }
bool stack_lifetimes(uint32_t id, uint32_t* out) { return stacks::lifetimes(id, out); }

void live_walk(uint64_t born_before_ns, LiveBlockFn fn, void* ctx) {
  live::walk(born_before_ns, fn, ctx);
}

int lg_sample() { return g_lg_sample.load(std::memory_order_relaxed); }
uint64_t sample_period() { return uint64_t{1} << lg_sample(); }
bool active() { return g_active.load(std::memory_order_relaxed); }
void switch_off() {
  g_switched_off.store(true, std::memory_order_relaxed);
  set_active(false);
}

void set_active(bool on) {
  set_opt(kOpt_active, on ? 1 : 0);
  g_active.store(on && !g_switched_off.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void reset(int lg) {
  if (lg < 0) lg = 0;
  if (lg > 62) lg = 62;
  set_opt(kOpt_sample, lg);
  g_lg_sample.store(lg, std::memory_order_relaxed);
  stacks::reset_counts();
  uint64_t sums[kCounterCount];
  threads::fold_counters(sums);
  g_records_at_reset.store(sums[kCounter_records], std::memory_order_relaxed);
  g_sample_gen.fetch_add(1, std::memory_order_relaxed);
  // Every thread's next allocation takes the slow path and draws under the new rate,
  // instead of finishing a countdown drawn for the old one (up to 2^old bytes later).
  threads::restart_countdowns();
}

void seed_thread_sampler(uint64_t seed) {
  ThreadProfile& t = this_thread_profile();
  t.rng = seed | 1;
  t.sample_gen = 0;  // the next allocation draws a fresh gap from the new seed
  t.bytes_left.store(0, std::memory_order_relaxed);
}

double unsample_scale(uint64_t size, uint64_t period) {
  if (period <= 1 || size == 0) return 1.0;
  double ratio = static_cast<double>(size) / static_cast<double>(period);
  return 1.0 / (1.0 - exp(-ratio));
}

Counters counters() {
  Counters c;
  uint64_t sums[kCounterCount];
  threads::fold_counters(sums);
  // Threads' counters are read one after another: a record published on one thread and
  // handed back on another may be seen handed back only. Never below zero.
  c.sampled_live = sums[kCounter_records] > sums[kCounter_record_frees]
                       ? sums[kCounter_records] - sums[kCounter_record_frees] : 0;
  uint64_t base = g_records_at_reset.load(std::memory_order_relaxed);
  c.sampled_total = sums[kCounter_records] > base ? sums[kCounter_records] - base : 0;
  c.stacks = stacks::count();
  c.stacks_dropped = stacks::dropped();
  c.stack_bytes = stacks::bytes_in_use();
  c.record_bytes = live::bytes_in_use();
  c.thread_bytes = threads::bytes_in_use();
  c.unwind_bytes = frame_cache::bytes_in_use();
  c.profiler_bytes = c.stack_bytes + c.record_bytes + c.thread_bytes + c.unwind_bytes;
  return c;
}

AllocTotals alloc_totals() {
  uint64_t sums[kCounterCount];
  threads::fold_counters(sums);
  uint64_t allocs = sums[kCounter_allocs], frees = sums[kCounter_frees];
  uint64_t ab = sums[kCounter_alloc_bytes], fb = sums[kCounter_free_bytes];
  AllocTotals a;
  a.live_blocks = allocs >= frees ? allocs - frees : 0;
  a.allocated_bytes = ab >= fb ? ab - fb : 0;
  a.total_allocs = allocs;
  a.total_bytes = ab;
  return a;
}

size_t capture_stack(uintptr_t* out, size_t max, int kind) {
  ReentrancyGuard g;
  ThreadProfile& t = this_thread_profile();
  EntryFrame frame = reinterpret_cast<EntryFrame>(__builtin_frame_address(0));
  if (kind == kUnwindFp) return unwind::capture_fp(t, frame, out, max);
  return unwind::capture_libunwind(t, frame, out, max, nullptr, kind == kCaptureLibunwindUncached);
}

}  // namespace prof

// The sampler's countdown is set aside while the guard is held: leakalloc's own
// allocations must not use up the user's bytes, or user allocations would be sampled
// more often than 2^N predicts (and unsampled wrongly).
ReentrancyGuard::ReentrancyGuard() {
  ThreadProfile& t = this_thread_profile();
  if (t.guard++ == 0) t.saved_bytes_left = t.bytes_left.load(std::memory_order_relaxed);
}
ReentrancyGuard::~ReentrancyGuard() {
  ThreadProfile& t = this_thread_profile();
  if (--t.guard == 0) t.bytes_left.store(t.saved_bytes_left, std::memory_order_relaxed);
}

namespace prof {

void start_options() {
  ReentrancyGuard g;
  if (!options_loaded_from_environment()) {
    options_load();  // the first malloc came before `environ` was set
    apply_options();
  }
}

bool short_of_address_space() { return g_short_of_space.load(std::memory_order_relaxed); }

void start_tables(uintptr_t entries_lo) {
  ReentrancyGuard g;
  // No tables, no unwinder: nothing will sample (the constructor says so, once).
  if (g_short_of_space.load(std::memory_order_relaxed)) return;
  unwind::init(entries_lo);
  // Sized here, not on the first malloc: the options are final only now (the first
  // malloc may come before `environ` is set), and nothing samples before this point.
  if (!stacks::init(static_cast<uint32_t>(opt(kOpt_max_stacks)),
                    static_cast<uint32_t>(opt(kOpt_max_depth)))) {
    // Said once: when the allocator has already switched profiling off for want of
    // address space (prof::switch_off), its message covers this one.
    g_active.store(false, std::memory_order_relaxed);
    if (!g_switched_off.load(std::memory_order_relaxed)) log_message("cannot map the stack table; profiling is off");
  }
}

void start_sampling() { g_sampling_ready.store(true, std::memory_order_release); }

}  // namespace prof
}  // namespace leakalloc
