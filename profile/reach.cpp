// The checking thread's part of the reachability check: stop the other threads, clone
// the child, release the threads, wait for the child's results (profile/reach.h has the
// design; alloc/reach_mark.cpp is the child).
//
// Runs on the thread that asked (leak.check, a dump with reach:true, the dump thread for
// `leakalloc dump --lost`), with the dump lock and a ReentrancyGuard held. Between the
// first stop signal and the release it makes system calls only: a stopped thread may
// hold any lock, leakalloc's included, or be inside mimalloc.
#include "profile/reach.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <mimalloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "base/base.h"
#include "profile/dump.h"
#include "profile/live_set.h"
#include "profile/reach_plan.h"
#include "profile/sampler.h"

extern "C" const ElfW(Ehdr) __ehdr_start;  // this library's own ELF header (the linker's)

namespace leakalloc {
namespace reach {

namespace {

constexpr uint32_t kMaxSlots = 65536;
constexpr int kStopPeekMs = 5;     // then threads that block the signal are given up
constexpr int kStopWaitMs = 250;   // then every thread that has not answered
constexpr int kChildLimitS = 600;  // a child still marking after this is killed

int stop_signal() { return SIGRTMAX - 3; }

std::atomic<uint32_t> g_stopping{0};  // the check number while threads are being stopped
std::atomic<uint32_t> g_release{0};   // the check number once they may go
std::atomic<uint32_t> g_acks{0};
ThreadSlot* g_slots = nullptr;
std::atomic<uint32_t> g_nslots{0};
pid_t g_pid = 0;
bool g_handler_installed = false;
uint32_t g_check = 0;

ChildFn g_child = nullptr;    // alloc/reach_mark.cpp
Shared* g_shared = nullptr;  // the last check's results
size_t g_shared_len = 0;
Summary g_summary{};
char g_note[160];

long futex(std::atomic<uint32_t>* w, int op, uint32_t val, const struct timespec* ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), op, val, ts, nullptr, 0);
}

pid_t raw_gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

void on_stop(int, siginfo_t* si, void* ucv) {
  if (si->si_code != SI_TKILL || si->si_pid != g_pid) return;  // not ours
  uint32_t check = g_stopping.load(std::memory_order_acquire);
  if (check == 0) return;  // a stop that came too late (the thread had it blocked)
  int saved = errno;
  pid_t me = raw_gettid();
  uint32_t n = g_nslots.load(std::memory_order_acquire);
  ThreadSlot* slot = nullptr;
  for (uint32_t i = 0; i < n; ++i)
    if (g_slots[i].tid == me) { slot = &g_slots[i]; break; }
  if (slot != nullptr) {
    const ucontext_t* uc = static_cast<const ucontext_t*>(ucv);
    for (int i = 0; i < kGregWords; ++i) slot->regs[i] = static_cast<uintptr_t>(uc->uc_mcontext.gregs[i]);
    const uintptr_t* xmm = uc->uc_mcontext.fpregs != nullptr
                               ? reinterpret_cast<const uintptr_t*>(uc->uc_mcontext.fpregs->_xmm) : nullptr;
    for (int i = 0; i < kXmmWords; ++i) slot->regs[kGregWords + i] = xmm != nullptr ? xmm[i] : 0;
    slot->sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
    slot->tp = reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
    slot->acked.store(check, std::memory_order_release);
    g_acks.fetch_add(1, std::memory_order_acq_rel);
    futex(&g_acks, FUTEX_WAKE_PRIVATE, 1, nullptr);
    for (;;) {
      uint32_t r = g_release.load(std::memory_order_acquire);
      if (r == check) break;
      futex(&g_release, FUTEX_WAIT_PRIVATE, r, nullptr);
    }
  }
  errno = saved;
}

// Installs the handler on the first check; false (with a message) if the program has a
// handler of its own on the signal.
bool install_handler() {
  struct sigaction old;
  if (sigaction(stop_signal(), nullptr, &old) != 0) return false;
  if (g_handler_installed && (old.sa_flags & SA_SIGINFO) != 0 && old.sa_sigaction == on_stop) return true;
  if ((old.sa_flags & SA_SIGINFO) != 0 || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
    log_printf("reachability check: signal %d (SIGRTMAX-3) has a handler of the program's; no check",
               stop_signal());
    return false;
  }
  struct sigaction sa;
  sigfillset(&sa.sa_mask);
  sa.sa_sigaction = on_stop;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  if (sigaction(stop_signal(), &sa, nullptr) != 0) return false;
  g_handler_installed = true;
  return true;
}

struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

// Slots keep a thread that was given up as -tid.
bool has_slot(pid_t tid, uint32_t n) {
  for (uint32_t i = 0; i < n; ++i)
    if (g_slots[i].tid == tid || g_slots[i].tid == -tid) return true;
  return false;
}

// Adds a slot for every task not listed yet (other than the caller and the dump thread)
// and sends each new one the stop signal. Returns how many were added.
uint32_t stop_new_threads(uint32_t check) {
  int fd = static_cast<int>(syscall(SYS_open, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) return 0;
  pid_t me = raw_gettid();
  pid_t dump_tid = dump::thread_tid();
  uint32_t added = 0;
  char buf[4096];
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      const LinuxDirent64* d = reinterpret_cast<const LinuxDirent64*>(buf + off);
      off += d->d_reclen;
      pid_t tid = 0;
      const char* s = d->d_name;
      if (*s < '0' || *s > '9') continue;
      for (; *s >= '0' && *s <= '9'; ++s) tid = tid * 10 + (*s - '0');
      uint32_t n = g_nslots.load(std::memory_order_relaxed);
      if (tid == me || tid == dump_tid || has_slot(tid, n) || n >= kMaxSlots) continue;
      ThreadSlot& slot = g_slots[n];
      slot.tid = tid;
      slot.acked.store(0, std::memory_order_relaxed);
      slot.sp = 0;
      g_nslots.store(n + 1, std::memory_order_release);
      if (syscall(SYS_tgkill, g_pid, tid, stop_signal()) != 0) {
        slot.tid = -1;  // gone already
        continue;
      }
      ++added;
    }
  }
  close(fd);
  return added;
}

// Whether thread `tid` blocks the stop signal (its SigBlk in /proc), read with raw calls.
bool blocks_stop_signal(pid_t tid) {
  char path[64] = "/proc/self/task/";
  size_t len = cstr_len(path);
  len += u64_to_dec(static_cast<uint64_t>(tid), path + len);
  cstr_copy(path + len, sizeof path - len, "/status");
  int fd = static_cast<int>(syscall(SYS_open, path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return false;
  char buf[2048];
  long got = syscall(SYS_read, fd, buf, sizeof buf - 1);
  close(fd);
  if (got <= 0) return false;
  buf[got] = '\0';
  for (long i = 0; i + 7 < got; ++i) {
    if (buf[i] != 'S' || !(buf[i + 1] == 'i' && buf[i + 2] == 'g' && buf[i + 3] == 'B' && buf[i + 4] == 'l' &&
                           buf[i + 5] == 'k' && buf[i + 6] == ':'))
      continue;
    const char* p = buf + i + 7;
    while (*p == ' ' || *p == '\t') ++p;
    uint64_t mask = 0;
    for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); ++p)
      mask = mask << 4 | static_cast<uint64_t>(*p <= '9' ? *p - '0' : *p - 'a' + 10);
    return (mask >> (stop_signal() - 1) & 1) != 0;
  }
  return false;
}

// Waits until every listed thread answered, is gone, or is given up (tid set to -tid).
void wait_for_answers(uint32_t check, uint64_t start_ns) {
  bool peeked = false;
  for (;;) {
    uint32_t n = g_nslots.load(std::memory_order_relaxed);
    uint32_t waiting = 0;
    for (uint32_t i = 0; i < n; ++i) {
      ThreadSlot& s = g_slots[i];
      if (s.tid <= 0 || s.acked.load(std::memory_order_acquire) == check) continue;
      ++waiting;
    }
    if (waiting == 0) return;
    uint64_t waited_ms = (precise_now_ns() - start_ns) / 1000000;
    if (waited_ms >= static_cast<uint64_t>(kStopPeekMs) && !peeked) {
      peeked = true;
      for (uint32_t i = 0; i < n; ++i) {
        ThreadSlot& s = g_slots[i];
        if (s.tid <= 0 || s.acked.load(std::memory_order_acquire) == check) continue;
        if (syscall(SYS_tgkill, g_pid, s.tid, 0) != 0) s.tid = -1;  // exited meanwhile
        else if (blocks_stop_signal(s.tid)) s.tid = -s.tid;
      }
      continue;
    }
    if (waited_ms >= static_cast<uint64_t>(kStopWaitMs)) {
      for (uint32_t i = 0; i < n; ++i) {
        ThreadSlot& s = g_slots[i];
        if (s.tid > 0 && s.acked.load(std::memory_order_acquire) != check)
          s.tid = syscall(SYS_tgkill, g_pid, s.tid, 0) != 0 ? -1 : -s.tid;
      }
      return;
    }
    uint32_t seen = g_acks.load(std::memory_order_acquire);
    struct timespec ts = {0, 1000000};  // 1 ms: also the pace of the checks above
    futex(&g_acks, FUTEX_WAIT_PRIVATE, seen, &ts);
  }
}

// The writable PT_LOAD segments of the ELF image whose header is at `ehdr`.
void add_writable_segments(const void* ehdr, Plan& plan) {
  const auto* eh = static_cast<const ElfW(Ehdr)*>(ehdr);
  if (__builtin_memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return;
  uintptr_t bias = elf_load_bias(eh);
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(static_cast<const char*>(ehdr) + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum && plan.n_not_roots < sizeof plan.not_roots / sizeof plan.not_roots[0]; ++i) {
    if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_W) == 0) continue;
    plan.not_roots[plan.n_not_roots++] = Range{bias + ph[i].p_vaddr, bias + ph[i].p_vaddr + ph[i].p_memsz};
  }
}

// mimalloc's ELF header: the start of the file mapping at offset 0 of the file that
// holds mi_malloc's code (found in /proc/self/maps: dladdr would take the loader lock).
struct FindMimalloc {
  uintptr_t code;
  const char* path;
  size_t path_len;
  uintptr_t header;
  char path_buf[256];
};

const void* mimalloc_header() {
  FindMimalloc f{};
  f.code = reinterpret_cast<uintptr_t>(&mi_malloc);
  scan_self_maps([](const MapsLine& m, void* ctx) {
    FindMimalloc& f = *static_cast<FindMimalloc*>(ctx);
    if (f.code >= m.start && f.code < m.limit && m.path_len > 0 && m.path_len < sizeof f.path_buf) {
      __builtin_memcpy(f.path_buf, m.path, m.path_len);
      f.path_len = m.path_len;
      return true;
    }
    return false;
  }, &f);
  if (f.path_len == 0) return nullptr;
  f.path = f.path_buf;
  scan_self_maps([](const MapsLine& m, void* ctx) {
    FindMimalloc& f = *static_cast<FindMimalloc*>(ctx);
    if (m.offset == 0 && m.readable && m.path_len == f.path_len && __builtin_memcmp(m.path, f.path, f.path_len) == 0) {
      f.header = m.start;
      return true;
    }
    return false;
  }, &f);
  return reinterpret_cast<const void*>(f.header);
}

__attribute__((noinline)) uintptr_t current_sp() {
  return reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
}

// Stops, clones and releases; returns the child's pid or -errno.
__attribute__((noinline)) long stop_and_clone(Plan& plan, uint32_t check, size_t* shared_len) {
  // The caller's callee-saved registers (the program's, for leak.check) go on the stack,
  // which the child reads from here up.
  __builtin_unwind_init();
  g_nslots.store(0, std::memory_order_relaxed);
  g_acks.store(0, std::memory_order_relaxed);
  g_stopping.store(check, std::memory_order_release);
  uint64_t t0 = precise_now_ns();
  for (int round = 0; round < 8; ++round) {
    uint32_t added = stop_new_threads(check);
    wait_for_answers(check, t0);
    if (added == 0 && round > 0) break;
  }
  // The records cannot change now (except in threads that did not answer); the shared
  // results are sized for them, with room for a few that such threads may add.
  uint32_t capacity = live::record_limit() + 4096;
  size_t len = shared_bytes(capacity);
  void* mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  long pid;
  uint64_t t1 = precise_now_ns(), t2 = t1;
  if (mem == MAP_FAILED) {
    pid = -ENOMEM;
  } else {
    plan.shared = static_cast<Shared*>(mem);
    plan.shared->capacity = capacity;
    plan.slots = g_slots;
    plan.nslots = g_nslots.load(std::memory_order_relaxed);
    plan.checker_sp = current_sp();
    plan.checker_tp = reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
    plan.now_ns = coarse_now_ns();
    t1 = precise_now_ns();
    pid = syscall(SYS_clone, 0UL, 0UL, nullptr, nullptr, 0UL);
    if (pid == 0) g_child(plan);
    t2 = precise_now_ns();
    if (pid < 0) pid = -errno;
  }
  g_stopping.store(0, std::memory_order_release);
  g_release.store(check, std::memory_order_release);
  futex(&g_release, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
  uint64_t t3 = precise_now_ns();
  g_summary.pause_ns = t3 - t0;
  g_summary.fork_ns = t2 - t1;
  if (pid < 0 && mem != MAP_FAILED) munmap(mem, len);
  *shared_len = mem == MAP_FAILED ? 0 : len;
  return pid;
}

const char* errno_name(int e) {
  switch (e) {
    case ENOMEM: return "out of memory (ENOMEM)";
    case EAGAIN: return "process limit reached (EAGAIN, RLIMIT_NPROC)";
    case EPERM: return "not permitted (EPERM)";
    default: return "error";
  }
}

}  // namespace

void set_child(ChildFn fn) { g_child = fn; }

int check_locked() {
  g_pid = getpid();
  if (g_child == nullptr) return g_summary.err = ENOSYS;
  if (g_slots == nullptr) {
    g_slots = static_cast<ThreadSlot*>(os_reserve(sizeof(ThreadSlot) * kMaxSlots));
    if (g_slots == nullptr) {
      log_message("reachability check: no memory for the thread table; no check");
      return g_summary.err = ENOMEM;
    }
  }
  if (!install_handler()) return g_summary.err = EBUSY;
  Plan plan{};
  add_writable_segments(&__ehdr_start, plan);
  if (const void* mh = mimalloc_header()) add_writable_segments(mh, plan);

  uint32_t check = ++g_check;
  size_t len = 0;
  long pid = stop_and_clone(plan, check, &len);
  uint32_t n = g_nslots.load(std::memory_order_relaxed);
  uint32_t unanswered = 0, stopped = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (g_slots[i].tid < -1) ++unanswered;
    else if (g_slots[i].tid > 0) ++stopped;
  }
  g_summary.threads = stopped;
  g_summary.unanswered = unanswered;
  g_note[0] = '\0';
  if (pid < 0) {
    int e = static_cast<int>(-pid);
    log_printf("reachability check: cannot fork the checking process: %s; no check", errno_name(e));
    return g_summary.err = e;
  }
  Shared* sh = plan.shared;
  // Wait for the results; a child that dies first (OOM killer) or runs too long ends the
  // check without them. The child has no exit signal: reaped here with __WALL.
  uint64_t start = precise_now_ns();
  int status = 0;
  bool reaped = false;
  for (;;) {
    struct timespec ts = {0, 50000000};
    if (sh->done.load(std::memory_order_acquire) == 0)
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&sh->done), FUTEX_WAIT, 0, &ts, nullptr, 0);
    if (sh->done.load(std::memory_order_acquire) != 0) break;
    pid_t r = waitpid(static_cast<pid_t>(pid), &status, WNOHANG | __WALL);
    if (r == pid) { reaped = true; break; }
    if (precise_now_ns() - start > uint64_t{kChildLimitS} * 1000000000ull) {
      kill(static_cast<pid_t>(pid), SIGKILL);
      log_printf("reachability check: the checking process ran for more than %d s and was stopped; no result",
                 kChildLimitS);
      waitpid(static_cast<pid_t>(pid), &status, __WALL);
      munmap(sh, len);
      return g_summary.err = ETIMEDOUT;
    }
  }
  if (!reaped) {
    while (waitpid(static_cast<pid_t>(pid), &status, __WALL) < 0 && errno == EINTR) {
    }
  }
  if (sh->done.load(std::memory_order_acquire) == 0) {
    if (WIFSIGNALED(status))
      log_printf("reachability check: the checking process was killed by signal %d%s; no result",
                 WTERMSIG(status), WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
    else
      log_printf("reachability check: the checking process ended without a result (status %d)", status);
    munmap(sh, len);
    return g_summary.err = ECHILD;
  }
  if (sh->status != kChildOk) {
    switch (sh->status) {
      case kChildNoMaps: log_message("reachability check: cannot read /proc/self/maps; no result"); break;
      case kChildNoMemory: log_message("reachability check: the checking process had no memory for its tables; no result"); break;
      default:
        log_printf("reachability check: %llu of %llu live sampled blocks were not found in mimalloc's memory; no result",
                   static_cast<unsigned long long>(sh->sampled_missing),
                   static_cast<unsigned long long>(sh->sampled_live));
    }
    munmap(sh, len);
    return g_summary.err = EIO;
  }
  if (g_shared != nullptr) munmap(g_shared, g_shared_len);
  g_shared = sh;
  g_shared_len = len;
  g_summary.err = 0;
  g_summary.child_ns = sh->child_ns;
  g_summary.child_cpu_ns = sh->cpu_ns;
  g_summary.maps_ns = sh->maps_ns;
  g_summary.scan_ns = sh->scan_ns;
  g_summary.mark_ns = sh->mark_ns;
  g_summary.heap_bytes = sh->heap_bytes;
  g_summary.blocks = sh->blocks;
  g_summary.bytes = sh->bytes;
  g_summary.lost_blocks = sh->lost_blocks;
  g_summary.lost_bytes = sh->lost_bytes;
  g_summary.sampled_missing = sh->sampled_missing;
  g_summary.root_bytes = sh->root_bytes;
  g_summary.check_seq = check;
  if (unanswered != 0) {
    size_t l = 0;
    char num[24];
    num[u64_to_dec(unanswered, num)] = '\0';
    const char* parts[] = {num, " thread(s) did not answer the stop: their registers are unknown and their "
                                "whole stacks were read as roots"};
    for (const char* p : parts)
      for (; *p != '\0' && l + 1 < sizeof g_note; ++p) g_note[l++] = *p;
    g_note[l] = '\0';
  }
  return 0;
}

State state_of(uint32_t record, uint32_t generation) {
  const Shared* sh = g_shared;
  if (sh == nullptr || record == 0 || record > sh->capacity) return kNotChecked;
  uint16_t v = sh->state[record - 1];
  if ((v >> 8) != generation) return kNotChecked;
  return static_cast<State>(v & 3);
}

const Summary& last() { return g_summary; }

void fill(snap::Snapshot& s) {
  for (size_t i = 0; i < s.nblocks; ++i) {
    State st = state_of(s.blocks[i].record, s.blocks[i].generation);
    s.blocks[i].reach = static_cast<uint8_t>(st);
  }
  s.reach_checked = true;
}
const char* note() { return g_note; }

}  // namespace reach
}  // namespace leakalloc
