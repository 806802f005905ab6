// The dump thread and every trigger but the final dump and prof.dump: interval,
// lg_interval, gdump, signal and `leakalloc dump PID` (the rules are at the top of
// profile/dump.cpp). The thread is created with every signal blocked, holds a
// ReentrancyGuard for its whole life and never exits; each dump it writes takes the
// dump lock (profile/dump_internal.h).
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "config/options.h"
#include "profile/leak_error.h"
#include "profile/dump.h"
#include "profile/dump_files.h"
#include "profile/dump_internal.h"
#include "profile/profiler.h"
#include "profile/remote.h"

// Exported: `leakalloc dump PID` finds it in the target's dynamic symbol table. Our own
// code reads it through a hidden alias, without a GOT load.
extern "C" {
__attribute__((visibility("default"))) leakalloc::RemoteControl leakalloc_remote_control = {  // LA_EXPORT, within extern "C"
    {'l', 'e', 'a', 'k', 'a', 'l', 'l', 'o', 'c', '-', 'r', 'e', 'm', 'o', 't', 'e'},
    leakalloc::kRemoteVersion,
    sizeof(leakalloc::RemoteControl),
    leakalloc::kRemoteAgeDefault,
    0, 0, 0, 0, {}};
extern leakalloc::RemoteControl leakalloc_remote_control_local
    __attribute__((visibility("hidden"), alias("leakalloc_remote_control")));
}

namespace leakalloc {
namespace dump {

bool g_final = false;

namespace {

std::atomic<int> g_dump_tid{0};

constexpr int kPollMs = 50;
constexpr uint64_t kGdumpMinStep = uint64_t{1} << 20;

std::atomic<bool> g_sig_pending{false};
// Bumped by every wake-up; the dump thread sleeps on it with FUTEX_WAIT.
std::atomic<uint32_t> g_wake_word{0};

// Trigger configuration, fixed by start().
uint64_t g_interval_ns = 0;
int g_lg_interval = -1;
bool g_gdump = false;
int g_signal = 0;
bool g_thread_wanted = false;  // a configured trigger needs the dump thread
std::atomic<bool> g_thread_running{false};

RemoteControl& g_remote = leakalloc_remote_control_local;

// The tool writes these words from outside through /proc/PID/mem: atomic accesses, so
// that the compiler neither caches nor tears them.
uint32_t remote_load(const uint32_t& w) { return __atomic_load_n(&w, __ATOMIC_ACQUIRE); }

// Async-signal-safe: an atomic add and a raw futex syscall.
void wake_dump_thread() {
  g_wake_word.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&g_wake_word), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

// Sleeps until woken or `timeout_ms` (-1: no limit) passes, unless the word has moved on
// from `seen` already (a wake-up between the caller's checks and this call is not lost).
void sleep_until_woken(uint32_t seen, int timeout_ms) {
  struct timespec ts;
  struct timespec* tp = nullptr;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
    tp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&g_wake_word), FUTEX_WAIT_PRIVATE, seen, tp,
          nullptr, 0);
}

void on_signal(int) {
  int saved = errno;
  g_sig_pending.store(true, std::memory_order_release);
  wake_dump_thread();
  errno = saved;
}

// Answers request `r` of the remote control block: the status and the files first,
// then `served`, so a tool that sees its number also sees what the dump did. Caller
// holds the dump lock (g_files is guarded by it).
void publish_remote(uint32_t r, int err, const char* files) {
  size_t i = 0;
  for (; files[i] != '\0' && i + 1 < sizeof g_remote.files; ++i) g_remote.files[i] = files[i];
  g_remote.files[i] = '\0';
  __atomic_store_n(&g_remote.status, err, __ATOMIC_RELAXED);
  __atomic_store_n(&g_remote.served, r, __ATOMIC_RELEASE);
}

bool remote_waiting() { return remote_load(g_remote.request) != remote_load(g_remote.served); }

// Dump thread: writes the dump the remote control block asks for, if it asks.
void serve_remote() {
  uint32_t r = remote_load(g_remote.request);
  if (r == remote_load(g_remote.served)) return;
  g_remote_noticed.store(r, std::memory_order_relaxed);
  uint64_t age = __atomic_load_n(&g_remote.age_ms, __ATOMIC_RELAXED);
  uint32_t f = __atomic_load_n(&g_remote.formats, __ATOMIC_RELAXED);
  int64_t age_ms = age == kRemoteAgeDefault ? -1 : static_cast<int64_t>(age > INT64_MAX / 1000000 ? INT64_MAX / 1000000 : age);
  int64_t formats = 0;
  if ((f & kRemoteFormatHeap) != 0) formats |= kFormatHeap;
  if ((f & kRemoteFormatHeapV2) != 0) formats |= kFormatHeapV2;
  if ((f & kRemoteFormatPb) != 0) formats |= kFormatPb;
  LockGuard l(g_lock);
  if (g_stopped) {  // exiting: the final dump has run, and nothing more is written
    publish_remote(r, ESRCH, "");
    return;
  }
  bool lost = (f & kRemoteLost) != 0;
  int err = dump_locked(lost ? 'l' : 'm', nullptr, age_ms, formats, opt(kOpt_reach) != 0);
  publish_remote(r, err, g_files);
}

void* dump_thread_main(void*) {
  ReentrancyGuard g;  // for life: this thread's own allocations are never sampled
  pthread_setname_np(pthread_self(), "leakalloc-dump");
  g_dump_tid.store(static_cast<int>(syscall(SYS_gettid)), std::memory_order_release);
  uint64_t next_interval = g_interval_ns != 0 ? precise_now_ns() + g_interval_ns : 0;
  uint64_t lg_step = g_lg_interval >= 0 ? uint64_t{1} << g_lg_interval : 0;
  uint64_t next_lg = 0;
  uint64_t gdump_mark = 0;
  if (lg_step != 0 || g_gdump) {
    prof::AllocTotals t = prof::alloc_totals();
    if (lg_step != 0) next_lg = (t.total_bytes / lg_step + 1) * lg_step;
    gdump_mark = t.allocated_bytes;
  }
  for (;;) {
    uint32_t seen = g_wake_word.load(std::memory_order_acquire);
    int timeout = -1;
    if (g_interval_ns != 0) {
      uint64_t now = precise_now_ns();
      uint64_t left = next_interval > now ? next_interval - now : 0;
      uint64_t ms = (left + 999999) / 1000000;
      timeout = ms > 3600000 ? 3600000 : static_cast<int>(ms);
    }
    if ((lg_step != 0 || g_gdump) && (timeout < 0 || timeout > kPollMs)) timeout = kPollMs;
    // A process that no longer allocates still answers `leakalloc dump`.
    if (timeout < 0 || timeout > kRemotePollMs) timeout = kRemotePollMs;
    // Checked before sleeping too: a signal or request that came while the last dump ran.
    if (!g_sig_pending.load(std::memory_order_acquire) && !remote_waiting())
      sleep_until_woken(seen, timeout);

    serve_remote();
    if (g_sig_pending.exchange(false, std::memory_order_acq_rel)) dump_now('s', nullptr, true);
    if (g_interval_ns != 0) {
      uint64_t now = precise_now_ns();
      if (now >= next_interval) {
        dump_now('i', nullptr, true);
        // A late wake-up (suspended process, slow dump) skips the missed ticks rather
        // than dumping them back to back.
        while (next_interval <= now) next_interval += g_interval_ns;
      }
    }
    if (lg_step != 0 || g_gdump) {
      prof::AllocTotals t = prof::alloc_totals();
      if (lg_step != 0 && t.total_bytes >= next_lg) {
        dump_now('i', nullptr, true);
        next_lg = (t.total_bytes / lg_step + 1) * lg_step;
      }
      if (g_gdump) {
        uint64_t step = gdump_mark / 8 > kGdumpMinStep ? gdump_mark / 8 : kGdumpMinStep;
        if (t.allocated_bytes >= gdump_mark + step) {
          dump_now('u', nullptr, true);
          gdump_mark = t.allocated_bytes;
        }
      }
    }
  }
  return nullptr;
}

// Starts the dump thread; 0 or the error of pthread_create (said once on stderr).
int start_thread() {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // An explicit size: with none, pthread_create reads the default under glibc's
  // __default_pthread_attr_lock, which pthread_getattr_default_np (and so every
  // pthread_create without attributes) holds across a malloc when the default
  // attributes carry a CPU set; and remote_notice() starts this thread inside malloc.
  pthread_attr_setstacksize(&attr, size_t{8} << 20);
  pthread_t tid;
  int err = pthread_create(&tid, &attr, dump_thread_main, nullptr);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err != 0) {
    const char* why = files::errno_text(err);
    log_printf("cannot start the dump thread (%s): interval, lg_interval, gdump, signal and remote dumps are off",
               why != nullptr ? why : "error");
    return err;
  }
  g_thread_running.store(true, std::memory_order_release);
  return 0;
}

}  // namespace

void start() {
  if (g_started.exchange(true, std::memory_order_acq_rel)) return;
  ReentrancyGuard g;
  // final and interval already hold the defaults derived from age (config/conf.cpp).
  g_final = opt(kOpt_final) != 0;
  leak_error::start();
  int64_t interval_ms = opt(kOpt_interval);
  g_interval_ns = interval_ms > 0 ? static_cast<uint64_t>(interval_ms) * 1000000ull : 0;
  g_lg_interval = static_cast<int>(opt(kOpt_lg_interval));
  g_gdump = opt(kOpt_gdump) != 0;
  g_signal = static_cast<int>(opt(kOpt_signal));
  g_thread_wanted = g_interval_ns != 0 || g_lg_interval >= 0 || g_gdump || g_signal > 0;
  if (!g_thread_wanted) return;
  if (g_signal > 0) {
    struct sigaction sa;
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    if (sigaction(g_signal, &sa, nullptr) != 0)
      log_printf("cannot install a handler for signal %d: signal dumps are off", g_signal);
  }
  start_thread();
}

std::atomic<uint32_t> g_remote_noticed{0};
std::atomic<bool> g_start_deferred{false};

// An allocation saw a new request number. One thread passes it on: it wakes the dump
// thread, or starts it. pthread_create runs here inside malloc (with a ReentrancyGuard,
// so its own allocations are untracked), on the application's thread; it takes only
// glibc's stack-cache and TLS locks, which glibc never holds while calling malloc
// except for the recursive TLS-loader lock. Should the dump lock be busy (a dump on
// the caller's thread, a fork), nothing waits here: the number is handed back and a
// later allocation tries again.
namespace {
void remote_notice() {
  uint32_t r = remote_load(g_remote.request);
  uint32_t seen = g_remote_noticed.load(std::memory_order_relaxed);
  if (r == seen || !g_started.load(std::memory_order_acquire)) return;
  if (!g_remote_noticed.compare_exchange_strong(seen, r, std::memory_order_acq_rel)) return;
  if (g_thread_running.load(std::memory_order_acquire)) {
    wake_dump_thread();
    return;
  }
  ReentrancyGuard g;
  if (!g_lock.try_lock()) {
    g_remote_noticed.store(seen, std::memory_order_relaxed);
    return;
  }
  if (!g_stopped && !g_thread_running.load(std::memory_order_relaxed)) {
    int err = start_thread();
    if (err != 0) publish_remote(r, err, "");
  }
  g_lock.unlock();
}

}  // namespace

void attend() {
  if (g_start_deferred.load(std::memory_order_relaxed)) {
    ReentrancyGuard g;
    if (g_lock.try_lock()) {  // busy (a dump, a fork): a later allocation tries again
      if (!g_stopped && !g_thread_running.load(std::memory_order_relaxed)) start_thread();
      g_start_deferred.store(false, std::memory_order_relaxed);
      g_lock.unlock();
    }
  }
  if (remote_requested()) remote_notice();
}

void triggers_fork_child() {
  g_thread_running.store(false, std::memory_order_relaxed);
  // A request pending now was made to the parent's pid: the child does not answer it.
  uint32_t r = remote_load(g_remote.request);
  __atomic_store_n(&g_remote.served, r, __ATOMIC_RELEASE);
  g_remote_noticed.store(r, std::memory_order_relaxed);
  g_sig_pending.store(false, std::memory_order_relaxed);
  // The child's dump thread starts at one of its first allocations (attend()).
  g_start_deferred.store(g_thread_wanted && !g_stopped, std::memory_order_relaxed);
}

void untrace_child() {
  g_final = false;
  g_thread_wanted = false;
  g_start_deferred.store(false, std::memory_order_relaxed);
  set_opt(kOpt_leak_error, 0);
}

int thread_tid() { return g_dump_tid.load(std::memory_order_acquire); }

}  // namespace dump
}  // namespace leakalloc
