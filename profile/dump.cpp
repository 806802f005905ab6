// The dump machinery: file naming, the background dump thread, every trigger, the
// exit hook (final dump and leak_error), leak totals and the fork handlers. The
// writers themselves are in dump_heap.cpp (heap, heap_v2) and dump_pb.cpp (pb).
//
// Triggers and where they run:
//   f  final:true         the exit hook (our library destructor; see dump_at_exit)
//   i  interval:S         dump thread, every S of CLOCK_MONOTONIC
//   i  lg_interval:N      dump thread: it polls prof::alloc_totals().total_bytes every
//                         kPollMs and dumps once when the total has crossed the next
//                         multiple of 2^N (several multiples crossed within one poll
//                         give one dump). Polling keeps the malloc fast path free of
//                         any trigger check.
//   u  gdump:true         dump thread: polls the live bytes (alloc_totals().allocated_
//                         bytes) every kPollMs; a new high-water mark is when they exceed
//                         the mark of the last gdump (initially the live bytes at start)
//                         by max(1 MiB, mark / 8). So a growing heap gives a dump per
//                         1/8 growth, never a storm, and short spikes between two polls
//                         can be missed.
//   s  signal:SIG         the handler sets a flag and wakes the dump thread through a
//                         futex word; a storm of signals coalesces. No file descriptor
//                         is involved: daemons that close every fd (or reuse the
//                         numbers) cannot break the wake-up or have bytes written into
//                         their own files.
//   m  request()          the caller's thread (prof.dump through ctl).
//   m  leakalloc dump PID the dump thread, started on the first such request: the tool
//                         bumps a request number in leakalloc_remote_control (see
//                         profile/remote.h), allocations notice it
//                         (attend) and the thread, which also looks every
//                         kRemotePollMs, answers it (serve_remote).
// With age > 0 and final/interval not set by the user, final is on and the interval is
// `age`: the parser (ctl/conf.cpp) derives those values, so opt.final and opt.interval
// show what is in force.
//
// Files: <prefix>.<pid>.<seq>.<kind><kseq><suffix>; suffix .heap (legacy text, every
// reader), .heap_v2 (jemalloc's format; jeprof reads any file name) and .pb.gz. One
// dump of several formats writes several files with the same seq; seq counts dumps of
// this process, kseq dumps of that kind. A forked child starts both again at 0 (its
// pid differs). Created O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC mode 0600: a dump never
// follows a planted symlink nor overwrites anything.
// The pid alone does not make a name unique. Every program image that execve() loads
// into the same process starts again: a wrapper script that ends in `exec server`, a
// pyenv shim or `env` run under LD_PRELOAD with an interval writes dumps under the pid
// that the server then keeps. A process whose pid was reused may also have left files
// in a shared dump directory. So before its first automatic dump an image reads the
// prefix's directory and starts seq after the highest one this pid has there
// (first_free_seq): seq then orders every dump of the pid, across images. Should an
// automatic name exist all the same, seq moves on to the next number (claim_auto_name);
// kseq stays. A name the caller chose (prof.dump with a path) fails with EEXIST.
//
// Retention (keep:N): of the kinds that repeat on their own, i and u, an image keeps
// the first dump (the baseline a diff wants) and the N latest, and deletes the files of
// the others as it writes new ones; 0 keeps everything. A server dumping every minute
// for a month would otherwise fill its disk with 43200 dumps. Only files this image
// created are deleted: a format that could not be written is not on the list, so a
// name that someone else's file held is never removed. f, s and m dumps are not counted.
//
// Locks: the dump lock (rank 1) serialises dumps and is the first lock the fork
// handler takes, so no fork happens mid-dump. The dump thread is created with every
// signal blocked, holds a ReentrancyGuard for its whole life and never exits.
//
// Fork: the child has no dump thread. fork_child() recreates it right away when a
// trigger needs it. That runs in the pthread_atfork child handler, which POSIX does not
// bless for pthread_create; glibc (2.36, Debian 12) re-initialises the loader locks and
// its stack cache in the child before it runs the handlers, and our own locks are reset
// by the earlier handlers, so it is safe in practice, and no malloc-path hook is
// needed. The cost is one thread creation per fork() in processes that use interval,
// lg_interval, gdump or signal dumps (posix_spawn and vfork run no handlers).
#include "profile/dump.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc/base.h"
#include "ctl/options.h"
#include "profile/dump_writers.h"
#include "profile/profiler.h"
#include "profile/remote.h"

// Exported: `leakalloc dump PID` finds it in the target's dynamic symbol table. Our own
// code reads it through a hidden alias, without a GOT load.
extern "C" {
__attribute__((visibility("default"))) leakalloc::RemoteControl leakalloc_remote_control = {
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

namespace {

constexpr int kPollMs = 50;
constexpr uint64_t kGdumpMinStep = uint64_t{1} << 20;

RawLock g_lock;  // rank 1
uint64_t g_seq = 0;
bool g_seq_scanned = false;  // first_free_seq() has run in this image and pid
uint64_t g_kseq[5] = {0, 0, 0, 0, 0};
bool g_stopped = false;  // the final dump has run: the dump thread writes no more

std::atomic<bool> g_started{false};
std::atomic<bool> g_sig_pending{false};
// Bumped by every wake-up; the dump thread sleeps on it with FUTEX_WAIT.
std::atomic<uint32_t> g_wake_word{0};

// Trigger configuration, fixed by start().
bool g_final = false;
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

int kind_index(char kind) {
  switch (kind) {
    case 'f': return 0;
    case 'i': return 1;
    case 'u': return 2;
    case 's': return 3;
    default: return 4;
  }
}

// strerror() may allocate (unknown errnos, locales) and is not async-signal-safe, so
// the reasons a dump can fail are spelled here.
const char* errno_text(int e) {
  switch (e) {
    case ENOENT: return "No such file or directory";
    case EACCES: return "Permission denied";
    case EPERM: return "Operation not permitted";
    case EEXIST: return "File exists";
    case ENOTDIR: return "Not a directory";
    case EISDIR: return "Is a directory";
    case ELOOP: return "Too many levels of symbolic links";
    case ENAMETOOLONG: return "File name too long";
    case EROFS: return "Read-only file system";
    case ENOSPC: return "No space left on device";
    case EDQUOT: return "Disk quota exceeded";
    case EFBIG: return "File too large";
    case EIO: return "Input/output error";
    case EMFILE: return "Too many open files";
    case ENFILE: return "Too many open files in system";
    case ENOMEM: return "Cannot allocate memory";
    case EINVAL: return "Invalid argument";
    case EBADF: return "Bad file descriptor";
    case EINTR: return "Interrupted system call";
    case ETXTBSY: return "Text file busy";
    case ENXIO: return "No such device or address";
    case EOVERFLOW: return "Value too large for defined data type";
    default: return nullptr;
  }
}

void report_failure(const char* path, int err) {
  const char* why = errno_text(err);
  if (why != nullptr) log_printf("cannot write dump %s: %s", path, why);
  else log_printf("cannot write dump %s: error %d", path, err);
}

struct Format {
  int64_t bit;
  const char* suffix;
  int (*write)(int fd, const DumpParams& p, ScratchArena& arena);
};
const Format kFormats[] = {
    {kFormatHeap, ".heap", write_heap},
    {kFormatHeapV2, ".heap_v2", write_heap_v2},
    {kFormatPb, ".pb.gz", write_pb},
};

constexpr size_t kPathMax = 4096 + 64;

// A tiny appender over a fixed buffer; false once the name does not fit.
struct PathBuf {
  char buf[kPathMax] = {};
  size_t n = 0;
  bool ok = true;
  void clear() {
    n = 0;
    ok = true;
    buf[0] = '\0';
  }
  // Appends at most `max` bytes of s (all of it by default).
  void add(const char* s, size_t max = SIZE_MAX) {
    for (; *s != '\0' && max > 0; ++s, --max) {
      if (n + 1 >= sizeof buf) { ok = false; return; }
      buf[n++] = *s;
    }
    buf[n] = '\0';
  }
  void add_u64(uint64_t v) {
    char tmp[24];
    size_t len = u64_to_dec(v, tmp);
    tmp[len] = '\0';
    add(tmp);
  }
};

// Taken names skipped at most in one dump (an open() each); a directory holding more
// files of this pid than that is not what the names are for.
constexpr uint64_t kMaxSeqSkips = uint64_t{1} << 16;

void auto_name(PathBuf& name, pid_t pid, uint64_t seq, char kind, uint64_t kseq, const char* suffix) {
  name.clear();
  name.add(g_opt_prefix[0] != '\0' ? g_opt_prefix : "leakalloc");
  name.add(".");
  name.add_u64(static_cast<uint64_t>(pid));
  name.add(".");
  name.add_u64(seq);
  char k[2] = {kind, '\0'};
  name.add(".");
  name.add(k);
  name.add_u64(kseq);
  name.add(suffix);
}

constexpr int kCreateFlags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

// Parses the decimal number at s; false if there is none or it does not fit.
bool parse_u64(const char*& s, uint64_t* out) {
  uint64_t v = 0;
  const char* start = s;
  for (; *s >= '0' && *s <= '9'; ++s) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  *out = v;
  return s != start;
}

// One more than the highest <seq> among the files <base>.<pid>.<seq>.<anything> in the
// prefix's directory; 0 if there are none or the directory cannot be read (the claim
// loop still keeps names unique). Reads the directory with getdents64 into a static
// buffer (guarded by the dump lock): opendir() would allocate, and dumps also run
// inside the exit hook and on the caller's thread.
uint64_t first_free_seq(pid_t pid) {
  const char* prefix = g_opt_prefix[0] != '\0' ? g_opt_prefix : "leakalloc";
  const char* slash = nullptr;
  for (const char* c = prefix; *c != '\0'; ++c)
    if (*c == '/') slash = c;
  static PathBuf dir, lead;
  dir.clear();
  if (slash == nullptr) dir.add(".");
  else if (slash == prefix) dir.add("/");
  else dir.add(prefix, static_cast<size_t>(slash - prefix));
  lead.clear();
  lead.add(slash == nullptr ? prefix : slash + 1);
  lead.add(".");
  lead.add_u64(static_cast<uint64_t>(pid));
  lead.add(".");
  if (!dir.ok || !lead.ok) return 0;
  int fd = open(dir.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  static char buf[16384];
  uint64_t next = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
      uint16_t reclen;
      memcpy(&reclen, buf + off + 16, sizeof reclen);
      const char* name = buf + off + 19;
      off += reclen;
      size_t i = 0;
      while (lead.buf[i] != '\0' && name[i] == lead.buf[i]) ++i;
      if (lead.buf[i] != '\0') continue;
      const char* rest = name + i;
      uint64_t seq;
      if (parse_u64(rest, &seq) && *rest == '.' && seq != UINT64_MAX && seq + 1 > next) next = seq + 1;
    }
  }
  close(fd);
  return next;
}

// Creates the first file of an automatic dump: with g_seq's number, or, where an earlier
// image of this pid (or an older process with the same pid) left that name, the next
// free one. Sets *seq to the number used (and g_seq past it) and `name` to the file's
// name; returns the fd, or -1 with *err set.
int claim_auto_name(PathBuf& name, pid_t pid, char kind, uint64_t kseq, const char* suffix,
                    uint64_t* seq, int* err) {
  if (!g_seq_scanned) {
    uint64_t next = first_free_seq(pid);
    if (next > g_seq) g_seq = next;
    g_seq_scanned = true;
  }
  for (uint64_t skips = 0;; ++skips) {
    *seq = g_seq++;
    auto_name(name, pid, *seq, kind, kseq, suffix);
    if (!name.ok) {
      *err = ENAMETOOLONG;
      return -1;
    }
    int fd = open(name.buf, kCreateFlags, 0600);
    if (fd >= 0) return fd;
    *err = errno;
    if (*err != EEXIST || skips == kMaxSeqSkips) return -1;
  }
}

// Live sampled blocks, all and those at least `age` old, as unsampled estimates.
struct Census {
  double all_objs, all_bytes, old_objs, old_bytes;
  uint64_t cutoff;
  uint64_t period;
};

void census_block(void* ctx, const prof::LiveBlock& b) {
  Census& c = *static_cast<Census*>(ctx);
  double scale = c.period <= 1 ? 1.0 : prof::unsample_scale(b.size, c.period);
  double bytes = static_cast<double>(b.size) * scale;
  c.all_objs += scale;
  c.all_bytes += bytes;
  if (b.birth_ns <= c.cutoff) {
    c.old_objs += scale;
    c.old_bytes += bytes;
  }
}

uint64_t round_u64(double v) { return v <= 0 ? 0 : static_cast<uint64_t>(v + 0.5); }

uint64_t cutoff_for(uint64_t now_ns, uint64_t age_ns) {
  if (age_ns == 0) return UINT64_MAX;
  return now_ns > age_ns ? now_ns - age_ns : 0;
}

// The automatic i and u dumps of this image after each kind's first, oldest first, as
// far as keep:N needs them (kept[] holds up to kKeepMax; one ring per kind).
constexpr size_t kKeepMax = 4096;
struct KeptDump {
  uint64_t seq;
  uint64_t kseq;
  int64_t formats;  // the files of it that this image created
};
struct KeepRing {
  KeptDump kept[kKeepMax];
  size_t oldest;
  size_t count;
};
KeepRing g_keep[2];  // kinds i and u; guarded by the dump lock

void delete_dump(pid_t pid, char kind, const KeptDump& d) {
  PathBuf name;
  for (const Format& f : kFormats) {
    if ((d.formats & f.bit) == 0) continue;
    auto_name(name, pid, d.seq, kind, d.kseq, f.suffix);
    if (name.ok) unlink(name.buf);  // ENOENT: someone removed it already
  }
}

// Records an automatic dump of kind i or u and deletes what keep:N no longer keeps.
void retain(pid_t pid, char kind, uint64_t seq, uint64_t kseq, int64_t written) {
  int64_t keep = opt(kOpt_keep);
  if (keep <= 0 || kseq == 0 || written == 0) return;  // all kept, or the first
  KeepRing& r = g_keep[kind == 'i' ? 0 : 1];
  size_t limit = static_cast<size_t>(keep) < kKeepMax ? static_cast<size_t>(keep) : kKeepMax;
  while (r.count >= limit) {
    delete_dump(pid, kind, r.kept[r.oldest]);
    r.oldest = (r.oldest + 1) % kKeepMax;
    --r.count;
  }
  r.kept[(r.oldest + r.count) % kKeepMax] = KeptDump{seq, kseq, written};
  ++r.count;
}

// The files the last dump wrote, space-separated (for the summary line and the remote
// control block). Paths can be long and dumps also run on the caller's stack
// (prof.dump, exit), so the buffer is static, guarded by the dump lock.
char g_files[kRemoteFilesMax];

// Writes one dump. Caller holds the dump lock and a ReentrancyGuard. `path` = null for
// the automatic names; `age_ms` < 0 for prof.age; `formats` = 0 for opt.format.
int dump_locked(char kind, const char* path, int64_t age_ms = -1, int64_t formats = 0) {
  DumpParams p;
  p.now_ns = coarse_now_ns();
  if (age_ms < 0) age_ms = opt(kOpt_age);
  p.age_ns = age_ms > 0 ? static_cast<uint64_t>(age_ms) * 1000000ull : 0;
  p.lg_sample = prof::lg_sample();
  p.period = prof::sample_period();
  uint64_t start = process_start_ns();
  p.uptime_ns = p.now_ns > start ? p.now_ns - start : 0;
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  p.wall_time_s = static_cast<uint64_t>(wall.tv_sec);
  p.kind = kind;

  uint64_t seq = 0;  // set with the first automatic name
  uint64_t kseq = g_kseq[kind_index(kind)]++;
  if (formats == 0) formats = opt(kOpt_format);
  if ((formats & (kFormatHeap | kFormatHeapV2 | kFormatPb)) == 0) formats = kFormatHeap;
  pid_t pid = getpid();

  static PathBuf name;
  static_assert(sizeof g_files >= 3 * kPathMax + 16, "room for three names");
  size_t sumlen = 0;
  auto sum_add = [&](const char* s) {
    for (; *s != '\0' && sumlen + 1 < sizeof g_files; ++s) g_files[sumlen++] = *s;
  };
  int first_err = 0;
  int64_t written = 0;
  bool first = true;
  for (const Format& f : kFormats) {
    if ((formats & f.bit) == 0) continue;
    int err = 0;
    int fd = -1;
    if (path == nullptr && first) {
      fd = claim_auto_name(name, pid, kind, kseq, f.suffix, &seq, &err);
    } else {
      name.clear();
      if (path != nullptr) {
        name.add(path);
        if (!first) name.add(f.suffix);
      } else {
        auto_name(name, pid, seq, kind, kseq, f.suffix);
      }
      if (!name.ok) {
        err = ENAMETOOLONG;
      } else {
        fd = open(name.buf, kCreateFlags, 0600);
        if (fd < 0) err = errno;
      }
    }
    first = false;
    if (fd >= 0) {
      ScratchArena arena;
      err = f.write(fd, p, arena);
      if (close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
      // A truncated profile is worse than none: readers take it without complaint.
      if (err != 0) unlink(name.buf);
    }
    if (err != 0) {
      report_failure(name.buf, err);
      if (first_err == 0) first_err = err;
      continue;
    }
    written |= f.bit;
    sum_add(sumlen == 0 ? "" : " ");
    sum_add(name.buf);
  }
  g_files[sumlen] = '\0';
  if (path == nullptr && (kind == 'i' || kind == 'u')) retain(pid, kind, seq, kseq, written);

  if (opt(kOpt_summary) != 0) {
    Census c{0, 0, 0, 0, cutoff_for(p.now_ns, p.age_ns), p.period};
    prof::live_walk(UINT64_MAX, census_block, &c);
    char kbuf[2] = {kind, '\0'};
    log_printf("dump %s%llu: %llu live blocks (%llu bytes), %llu blocks (%llu bytes) alive >= %llu ms; %s%s",
               kbuf, static_cast<unsigned long long>(kseq),
               static_cast<unsigned long long>(round_u64(c.all_objs)),
               static_cast<unsigned long long>(round_u64(c.all_bytes)),
               static_cast<unsigned long long>(round_u64(c.old_objs)),
               static_cast<unsigned long long>(round_u64(c.old_bytes)),
               static_cast<unsigned long long>(p.age_ns / 1000000),
               sumlen != 0 ? "wrote " : "wrote nothing", g_files);
  }
  return first_err;
}

int dump_now(char kind, const char* path, bool background) {
  ReentrancyGuard g;
  CancellationOff no_cancel;  // before the lock, so that it is released first
  LockGuard l(g_lock);
  // After the final dump the process is about to _exit: a background dump started now
  // would be cut off half-written.
  if (background && g_stopped) return 0;
  return dump_locked(kind, path);
}

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
  int err = dump_locked('m', nullptr, age_ms, formats);
  publish_remote(r, err, g_files);
}

void* dump_thread_main(void*) {
  ReentrancyGuard g;  // for life: this thread's own allocations are never sampled
  pthread_setname_np(pthread_self(), "leakalloc-dump");
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
    const char* why = errno_text(err);
    log_printf("cannot start the dump thread (%s): interval, lg_interval, gdump, signal and remote dumps are off",
               why != nullptr ? why : "error");
    return err;
  }
  g_thread_running.store(true, std::memory_order_release);
  return 0;
}

// A live walk that passes over the blocks whose records are listed in `skip`.
struct SkipFilter {
  prof::LiveBlockFn fn;
  void* ctx;
  const uint32_t* skip;
  size_t nskip;
};

void skip_filtered(void* p, const prof::LiveBlock& b) {
  const SkipFilter& f = *static_cast<const SkipFilter*>(p);
  for (size_t i = 0; i < f.nskip; ++i)
    if (f.skip[i] != 0 && f.skip[i] == b.record) return;
  f.fn(f.ctx, b);
}

void count_exact(void* ctx, const prof::LiveBlock& b) {
  LeakTotals& s = *static_cast<LeakTotals*>(ctx);
  ++s.blocks;
  s.bytes += b.size;
}

LeakTotals leak_totals_skipping(uint64_t age_ms, const uint32_t* skip, size_t nskip) {
  uint64_t cutoff = cutoff_for(coarse_now_ns(), age_ms * 1000000ull);
  uint64_t period = prof::sample_period();
  LeakTotals t{0, 0};
  if (period <= 1) {  // exact: integer sums, no rounding
    SkipFilter f{count_exact, &t, skip, nskip};
    prof::live_walk(cutoff, skip_filtered, &f);
    return t;
  }
  Census c{0, 0, 0, 0, UINT64_MAX, period};
  SkipFilter f{census_block, &c, skip, nskip};
  prof::live_walk(cutoff, skip_filtered, &f);
  t.blocks = round_u64(c.all_objs);
  t.bytes = round_u64(c.all_bytes);
  return t;
}

// Runs in _dl_fini, after the program's atexit handlers, static destructors and the
// destructors of every library loaded after us: the latest point at which a final
// dump still sees the program's view of its heap, with whatever cleanup it does done.
__attribute__((destructor)) void dump_at_exit() {
  if (!g_started.load(std::memory_order_acquire)) return;
  ReentrancyGuard g;
  {
    LockGuard l(g_lock);
    if (g_final) dump_locked('f', nullptr);
    g_stopped = true;
  }
  if (opt(kOpt_leak_error) == 0) return;
  int64_t age_ms = opt(kOpt_age);
  // glibc allocates the standard streams' buffers on first use and frees them only in
  // __libc_freeres, which valgrind calls after everything else; calling it here, with
  // other libraries' destructors and stdio's own exit flush still to run, could break
  // the exit of a correct program. Those three buffers are not the program's leaks, so
  // they are left out by identity (their headers name their live records).
  uint32_t stdio_records[3] = {prof::sampled_record_of(stdin->_IO_buf_base),
                               prof::sampled_record_of(stdout->_IO_buf_base),
                               prof::sampled_record_of(stderr->_IO_buf_base)};
  LeakTotals t = leak_totals_skipping(static_cast<uint64_t>(age_ms > 0 ? age_ms : 0),
                                      stdio_records, 3);
  if (t.blocks == 0) return;
  log_printf("leak_error: %llu blocks (%llu bytes) alive for at least %llu ms at exit; exit status 1",
             static_cast<unsigned long long>(t.blocks), static_cast<unsigned long long>(t.bytes),
             static_cast<unsigned long long>(age_ms > 0 ? age_ms : 0));
  // _exit skips stdio's flush at the end of exit(): do it here.
  fflush(nullptr);
  _exit(1);
}

}  // namespace

void start() {
  if (g_started.exchange(true, std::memory_order_acq_rel)) return;
  ReentrancyGuard g;
  // final and interval already hold the defaults derived from age (ctl/conf.cpp).
  g_final = opt(kOpt_final) != 0;
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

int request(const char* path) { return dump_now('m', path, false); }

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

LeakTotals leak_totals(uint64_t age_ms) { return leak_totals_skipping(age_ms, nullptr, 0); }

void fork_prepare() { g_lock.lock(); }

void fork_parent() { g_lock.unlock(); }

void fork_child() {
  g_lock.reset_in_child();
  g_thread_running.store(false, std::memory_order_relaxed);
  // A request pending now was made to the parent's pid: the child does not answer it.
  uint32_t r = remote_load(g_remote.request);
  __atomic_store_n(&g_remote.served, r, __ATOMIC_RELEASE);
  g_remote_noticed.store(r, std::memory_order_relaxed);
  g_seq = 0;
  g_seq_scanned = false;
  for (uint64_t& k : g_kseq) k = 0;
  for (KeepRing& r : g_keep) r.oldest = r.count = 0;  // the parent's files are not ours
  g_sig_pending.store(false, std::memory_order_relaxed);
  // The child's dump thread starts at one of its first allocations (attend()).
  g_start_deferred.store(g_thread_wanted && !g_stopped, std::memory_order_relaxed);
}

}  // namespace dump
}  // namespace leakalloc
