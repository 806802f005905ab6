#include "profile/threads.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "profile/live_set.h"
#include "profile/profiler.h"
#include "profile/unwind.h"

namespace leakalloc {
namespace threads {

namespace {

// An entry's life: linked (its thread is registered and has a state) -> exited (the exit
// hook ran, or the thread vanished in a fork; its name stays for the blocks it made) ->
// free (reclaim() found the thread gone and no live sampled block naming the index) ->
// linked again, for a new thread. Status and the free list are guarded by g_lock.
enum class Status : uint8_t { kLinked, kExited, kCandidate, kFree };

struct Entry {
  ThreadProfile* state;         // null once the thread has exited
  int32_t tid;
  std::atomic<bool> used;
  Status status;
  char name[16];
  // The thread's stack (unwind::find_stack_bounds at registration), for the walkers and
  // a stop-the-world scan; written under g_lock before `used` is published.
  uintptr_t stack_lo, stack_hi;
  uint32_t next_free;                 // free-list link; kNoEntry ends the list
  std::atomic<uint32_t> freed_epoch;  // the reclaim pass that last freed it (0: none)
};

constexpr uint32_t kNoEntry = UINT32_MAX;
// Exits between two reclaim passes, at the least: a pass costs a signal-0 tgkill per
// exited entry and a walk of the live set, so a registry full of threads that are still
// alive, or whose blocks are still live, is not searched again for every new thread.
constexpr uint32_t kReclaimBatch = 1024;

Entry* g_entries = nullptr;
std::atomic<uint32_t> g_count{0};
RawLock g_lock;
uint32_t g_free_head = kNoEntry;
uint32_t g_exits_since_pass = 0;
std::atomic<uint32_t> g_epoch{0};  // reclaim passes that freed something
// Stack memos of ended threads, for the next thread that samples (linked through
// MemoSet::next_free; guarded by g_lock), and how many were ever mapped: a program holds
// as many as it ever had sampling threads at once.
frame_cache::MemoSet* g_memo_pool = nullptr;
std::atomic<uint32_t> g_memos{0};

// Totals of threads that have exited (and of allocations made after their exit).
std::atomic<uint64_t> g_exited[kCounterCount];

// Bytes rounded up to whole pages: what a table of that size mapped with os_reserve
// costs once it is written.
uint64_t in_pages(uint64_t bytes) {
  uint64_t page = os_page_size();
  return (bytes + page - 1) / page * page;
}

uint64_t memo_bytes() { return in_pages(sizeof(frame_cache::MemoSet)); }

// The caller holds g_lock (or is the fork child).
void give_back_memo(ThreadProfile& t) {
  if (t.memo == nullptr) return;
  t.memo->next_free = g_memo_pool;
  g_memo_pool = t.memo;
  t.memo = nullptr;
}

void fold_into_exited(const ThreadProfile& t) {
  for (int i = 0; i < kCounterCount; ++i)
    g_exited[i].fetch_add(t.counter[i].get(), std::memory_order_relaxed);
}

// Number of registry entries that can hold a thread's own state (the shared entry past
// the cap never does).
uint32_t own_entries() {
  uint32_t n = g_entries == nullptr ? 0 : g_count.load(std::memory_order_acquire);
  return n < kMaxThreads - 1 ? n : kMaxThreads - 1;
}

// Calls fn(entry, state) for every thread still linked to its state: the walk every
// summation, reset and fork step makes. The caller holds g_lock (or is the fork child).
template <typename Fn>
void for_each_linked(Fn fn) {
  uint32_t n = own_entries();
  for (uint32_t e = 0; e < n; ++e)
    if (ThreadProfile* s = g_entries[e].state) fn(g_entries[e], *s);
}

void read_comm(int32_t tid, char* out) {
  char path[64];
  size_t n = 0;
  const char* pfx = "/proc/self/task/";
  for (const char* s = pfx; *s != '\0'; ++s) path[n++] = *s;
  n += u64_to_dec(static_cast<uint64_t>(tid), path + n);
  const char* sfx = "/comm";
  for (const char* s = sfx; *s != '\0'; ++s) path[n++] = *s;
  path[n] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;  // thread gone: keep the last known name
  char buf[32];
  ssize_t r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return;
  size_t len = static_cast<size_t>(r);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\0')) --len;
  if (len > 15) len = 15;
  for (size_t i = 0; i < len; ++i) out[i] = buf[i];
  out[len] = '\0';
}

// True only when the kernel says no task `tid` exists in this process: a thread that is
// still running its TLS teardown (and may still allocate, under its old index) is not
// gone, nor is one whose tid a new thread has taken. errno is kept: this runs inside a
// malloc that succeeds.
bool thread_gone(pid_t pid, int32_t tid) {
  if (tid <= 0) return false;
  int saved = errno;
  bool gone = syscall(SYS_tgkill, pid, tid, 0) != 0 && errno == ESRCH;
  errno = saved;
  return gone;
}

// Puts on the free list every exited entry whose thread is gone and that no live sampled
// block names (a dump labels a block with its entry's tid and name, so an entry that
// still names blocks keeps them). Caller holds g_lock; the
// live-set walk takes no lock. A pass stops the registry for its duration (12 ms for
// 65534 exited entries on the development VM, plus the walk): it runs only when the
// registry is full, at most once per kReclaimBatch thread exits.
void reclaim() {
  g_exits_since_pass = 0;
  uint32_t n = own_entries();
  pid_t pid = getpid();
  bool any = false;
  for (uint32_t i = 0; i < n; ++i) {
    Entry& e = g_entries[i];
    if (e.status == Status::kExited && thread_gone(pid, e.tid)) {
      e.status = Status::kCandidate;
      any = true;
    }
  }
  if (!any) return;
  // Only a linked thread publishes records under its own index, and a gone thread's
  // records were all published before it ended: none can appear behind the walk.
  live::walk_registry_held(
      UINT64_MAX,
      [](void* ctx, const prof::LiveBlock& b) {
        uint32_t limit = *static_cast<uint32_t*>(ctx);
        if (b.thread_index < limit && g_entries[b.thread_index].status == Status::kCandidate)
          g_entries[b.thread_index].status = Status::kExited;
      },
      &n);
  uint32_t epoch = g_epoch.load(std::memory_order_relaxed) + 1;
  bool freed = false;
  for (uint32_t i = n; i-- > 0;) {  // pushed from the top: the lowest index pops first
    Entry& e = g_entries[i];
    if (e.status != Status::kCandidate) continue;
    e.status = Status::kFree;
    e.freed_epoch.store(epoch, std::memory_order_relaxed);
    e.next_free = g_free_head;
    g_free_head = i;
    freed = true;
  }
  // After the entries' epochs: a dump that reads the new epoch late sees them freed.
  if (freed) g_epoch.store(epoch, std::memory_order_release);
}

// An index for a new thread: a freed entry, a new one, or the shared last entry when
// the registry is full and nothing can be reclaimed. Caller holds g_lock.
uint32_t take_index() {
  uint32_t count = g_count.load(std::memory_order_relaxed);
  if (g_free_head == kNoEntry && count < kMaxThreads - 1) {
    g_count.store(count + 1, std::memory_order_release);
    return count;
  }
  if (g_free_head == kNoEntry && g_exits_since_pass >= kReclaimBatch) reclaim();
  if (g_free_head != kNoEntry) {
    uint32_t idx = g_free_head;
    g_free_head = g_entries[idx].next_free;
    return idx;
  }
  if (count < kMaxThreads) g_count.store(kMaxThreads, std::memory_order_release);
  return kMaxThreads - 1;
}

}  // namespace

bool g_forgone = false;  // forgo_table(): set once, on the first malloc

void forgo_table() { g_forgone = true; }

void init() {
  if (g_entries != nullptr || g_forgone) return;
  g_entries = static_cast<Entry*>(os_reserve(sizeof(Entry) * kMaxThreads));
}

uint64_t bytes_in_use() {
  uint64_t n = g_count.load(std::memory_order_relaxed);
  if (n > kMaxThreads) n = kMaxThreads;
  return in_pages(n * sizeof(Entry)) + g_memos.load(std::memory_order_relaxed) * memo_bytes();
}

uint32_t memos_mapped() { return g_memos.load(std::memory_order_relaxed); }

frame_cache::MemoSet* attach_memo(ThreadProfile& t) {
  if (t.phase != kThreadLive || t.thread_index >= kMaxThreads - 1) return nullptr;
  frame_cache::MemoSet* memo;
  {
    LockGuard g(g_lock);
    memo = g_memo_pool;
    if (memo != nullptr) g_memo_pool = memo->next_free;
  }
  if (memo == nullptr) {
    memo = static_cast<frame_cache::MemoSet*>(os_reserve(memo_bytes()));
    if (memo == nullptr) return nullptr;
    g_memos.fetch_add(1, std::memory_order_relaxed);
  }
  // What the thread that had it before remembered is forgotten: its stack words are not
  // this thread's to read. (A want of 0 matches no walk: the first walk clears the tags.)
  memo->want = 0;
  t.memo = memo;
  return memo;
}

void register_current(ThreadProfile& t) {
  if (g_entries == nullptr) init();
  int32_t tid = static_cast<int32_t>(syscall(SYS_gettid));
  // Here, once per thread, not at the first sample: stack capture must not ask glibc
  // (unwind.cpp find_stack_bounds). Read before the lock: it may read /proc.
  unwind::StackBounds stack = unwind::find_stack_bounds();
  t.stack_hi = stack.hi;
  if (g_entries == nullptr) {
    // The registry could not be mapped (a small address space): the thread runs as one
    // past the cap does, counted in the exited totals and named "(other threads)".
    t.thread_index = kMaxThreads - 1;
    t.phase = kThreadExited;
    return;
  }
  {
    LockGuard g(g_lock);
    uint32_t idx = take_index();
    Entry& e = g_entries[idx];
    if (idx < kMaxThreads - 1) {
      e.state = &t;
      e.tid = tid;
      e.status = Status::kLinked;
      e.stack_lo = stack.lo;
      e.stack_hi = stack.hi;
      cstr_copy(e.name, sizeof e.name, "");
    } else {
      e.state = nullptr;  // its counters are summed through the exited totals
      e.tid = 0;
      e.stack_lo = e.stack_hi = 0;
      cstr_copy(e.name, sizeof e.name, "(other threads)");
    }
    e.used.store(true, std::memory_order_release);
    t.thread_index = idx;
    t.phase = kThreadLive;
  }
  if (t.thread_index == kMaxThreads - 1) {
    // No per-thread summation past the cap: behave as an exited thread.
    t.phase = kThreadExited;
  }
}

void end_current(ThreadProfile& t) {
  if (t.phase != kThreadLive) return;
  // Keep the name the thread had when it ended: its blocks outlive it, and a leaking
  // worker pool is usually gone by the time a dump names the threads. Read before the
  // lock: no file I/O under a spin lock.
  char name[16];
  bool named = false;
  if (t.thread_index < kMaxThreads - 1) {
    cstr_copy(name, sizeof name, g_entries[t.thread_index].name);
    read_comm(g_entries[t.thread_index].tid, name);
    named = true;
  }
  {
    LockGuard g(g_lock);
    fold_into_exited(t);
    // The TLS block is about to be recycled for another thread, so it is unlinked here;
    // whatever this thread still allocates or frees (glibc frees its DTV after every
    // destructor has run) is counted through count_exited() instead, and bypasses the
    // thread cache.
    for (OwnerCounter& c : t.counter) c.clear();
    t.phase = kThreadExited;
    give_back_memo(t);
    live::drain_cache(t);
    if (named) {
      Entry& e = g_entries[t.thread_index];
      cstr_copy(e.name, sizeof name, name);
      e.state = nullptr;
      e.status = Status::kExited;
      e.stack_lo = e.stack_hi = 0;
      ++g_exits_since_pass;
    }
  }
}

void fold_counters(uint64_t out[kCounterCount]) {
  LockGuard g(g_lock);
  for (int i = 0; i < kCounterCount; ++i) out[i] = g_exited[i].load(std::memory_order_relaxed);
  for_each_linked([&](Entry&, ThreadProfile& s) {
    for (int i = 0; i < kCounterCount; ++i) out[i] += s.counter[i].get();
  });
}

bool stack_bounds(uint32_t index, uintptr_t* lo, uintptr_t* hi) {
  if (g_entries == nullptr || index >= own_entries()) return false;
  LockGuard g(g_lock);
  const Entry& e = g_entries[index];
  if (e.state == nullptr || e.stack_hi == 0) return false;
  *lo = e.stack_lo;
  *hi = e.stack_hi;
  return true;
}

void for_each_thread(void (*fn)(void* ctx, const ThreadProfile& t), void* ctx) {
  LockGuard g(g_lock);  // a linked state's TLS stays valid: unlinking takes the lock
  for_each_linked([&](Entry&, ThreadProfile& s) { fn(ctx, s); });
}

void count_exited(CounterId id, uint64_t delta) {
  g_exited[id].fetch_add(delta, std::memory_order_relaxed);
}

bool any_unwinding() {
  LockGuard g(g_lock);
  bool any = false;
  for_each_linked([&](Entry&, ThreadProfile& s) {
    any = any || s.unwinding.load(std::memory_order_seq_cst) != 0;
  });
  return any;
}

size_t pending_records_room() { return size_t{own_entries()} * kRecordPendingSlots; }

size_t copy_pending_records(uint64_t* out, size_t room, bool registry_held) {
  size_t n = 0;
  auto copy = [&] {
    for_each_linked([&](Entry&, ThreadProfile& s) {
      for (const uint64_t& slot : s.rec_pending) {
        uint64_t entry = __atomic_load_n(&slot, __ATOMIC_ACQUIRE);
        if (entry != 0 && n < room) out[n++] = entry;
      }
    });
  };
  if (registry_held) {
    copy();
  } else {
    LockGuard g(g_lock);  // a linked state's TLS stays valid: unlinking takes the lock
    copy();
  }
  return n;
}

void restart_countdowns() {
  LockGuard g(g_lock);
  this_thread_profile().bytes_left.store(0, std::memory_order_relaxed);
  // A store racing with the owner's own update may be lost; that thread then switches
  // at the end of its current countdown, as it would without this.
  for_each_linked([](Entry&, ThreadProfile& s) { s.bytes_left.store(0, std::memory_order_relaxed); });
}

void fork_prepare() { g_lock.lock(); }
void fork_parent() { g_lock.unlock(); }
void fork_child(void (*gone)(ThreadProfile& t)) {
  g_lock.reset_in_child();
  // Only the forking thread exists in the child: the others will never exit and never
  // run their destructors, so fold their counters now and forget them.
  ThreadProfile* self = &this_thread_profile();
  for_each_linked([&](Entry& e, ThreadProfile& s) {
    if (&s == self) return;
    fold_into_exited(s);
    gone(s);  // the allocator takes what it keeps per thread (its cached blocks)
    give_back_memo(s);
    live::drain_cache(s);   // their pending frees are retired, their slots pooled
    e.state = nullptr;
    e.stack_lo = e.stack_hi = 0;
    e.status = Status::kExited;
    ++g_exits_since_pass;
  });
  if (self->phase == kThreadLive && self->thread_index < kMaxThreads - 1)
    g_entries[self->thread_index].tid = static_cast<int32_t>(syscall(SYS_gettid));
}

}  // namespace threads

namespace prof {

uint32_t thread_count() {
  uint32_t n = threads::g_count.load(std::memory_order_acquire);
  return n;
}

uint32_t thread_epoch() { return threads::g_epoch.load(std::memory_order_acquire); }

bool thread_get(uint32_t index, ThreadView* out, uint32_t epoch) {
  if (threads::g_entries == nullptr || index >= thread_count()) return false;
  threads::Entry& e = threads::g_entries[index];
  if (!e.used.load(std::memory_order_acquire)) return false;
  if (e.freed_epoch.load(std::memory_order_relaxed) > epoch) return false;
  out->index = index;
  out->tid = e.tid;
  for (int i = 0; i < 16; ++i) out->name[i] = e.name[i];
  out->name[15] = '\0';
  return true;
}

void threads_refresh_names() {
  uint32_t n = threads::own_entries();
  for (uint32_t i = 0; i < n; ++i) {
    threads::Entry& e = threads::g_entries[i];
    if (!e.used.load(std::memory_order_acquire) || e.state == nullptr) continue;
    char name[16];
    cstr_copy(name, sizeof name, e.name);
    threads::read_comm(e.tid, name);
    LockGuard g(threads::g_lock);
    cstr_copy(e.name, sizeof e.name, name);
  }
}

}  // namespace prof
}  // namespace leakalloc
