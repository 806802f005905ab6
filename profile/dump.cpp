// A dump: one snapshot (profile/snapshot.h), then every configured format written from
// it, then the summary line; plus the exit hook (final dump and leak_error), leak
// totals and the fork handlers. Where the rest lives:
//   dump_files.cpp   file names, creation, sequence numbers, retention (keep:N)
//   dump_thread.cpp  the dump thread and the triggers below but f and prof.dump
//   dump_heap.cpp    the heap and heap_v2 writers;  dump_pb.cpp  the pb writer
//
// Triggers and where they run:
//   f  final:true         the exit hook (at_exit, from the library destructor)
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
// `age`: the parser (config/conf.cpp) derives those values, so opt.final and opt.interval
// show what is in force.
//
// Files: <prefix>.<pid>.<seq>.<kind><kseq><suffix>; suffix .heap (legacy text, every
// reader), .heap_v2 (jemalloc's format; jeprof reads any file name) and .pb.gz. One
// dump of several formats writes several files with the same seq; seq counts dumps of
// this process, kseq dumps of that kind. A forked child starts both again at 0 (its
// pid differs). Written under <name>.tmp, created O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC
// mode 0600, and renamed to <name> without replacing anything once complete
// (profile/dump_files.h): a dump never follows a planted symlink, an automatic one
// never overwrites anything, and a dump killed mid-write leaves no file under a name
// readers take.
// The pid alone does not make a name unique. Every program image that execve() loads
// into the same process starts again: a wrapper script that ends in `exec server`, a
// pyenv shim or `env` run under LD_PRELOAD with an interval writes dumps under the pid
// that the server then keeps. A process whose pid was reused may also have left files
// in a shared dump directory. So before its first automatic dump an image reads the
// prefix's directory and starts seq after the highest one this pid has there
// (first_free_seq): seq then orders every dump of the pid, across images. Should an
// automatic name exist all the same, seq moves on to the next number (claim_auto_name);
// kseq stays. A name the caller chose (prof.dump with a path) is written the same way
// (its temporary <name>.<pid>.tmp, still O_EXCL|O_NOFOLLOW, 0600) and renamed over
// whatever is at the name, as jemalloc's prof.dump replaces an existing file; a symlink
// there is replaced itself, never followed.
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
// Fork: the child has no dump thread. The child handler only marks it wanted
// (dump_thread.cpp triggers_fork_child) when a trigger needs one, and the child starts
// it at one of its first allocations (attend()), outside the atfork handler, where
// pthread_create is not blessed. A child that execs, or calls unshare(CLONE_NEWUSER)
// (which a multithreaded process may not), before allocating never has one. The child
// numbers its dumps from 0 again (its pid differs) and owns none of the parent's files.
#include "profile/dump.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "base/base.h"
#include "config/options.h"
#include "profile/dump_files.h"
#include "profile/dump_internal.h"
#include "profile/dump_writers.h"
#include "profile/leak_error.h"
#include "profile/profiler.h"
#include "profile/reach.h"
#include "profile/snapshot.h"

namespace leakalloc {
namespace dump {

RawLock g_lock;  // rank 1
bool g_stopped = false;
std::atomic<bool> g_started{false};
char g_files[kRemoteFilesMax];

namespace {

uint64_t g_kseq[6] = {0, 0, 0, 0, 0, 0};

int kind_index(char kind) {
  switch (kind) {
    case 'f': return 0;
    case 'i': return 1;
    case 'u': return 2;
    case 's': return 3;
    case 'l': return 5;
    default: return 4;
  }
}

struct Format {
  int64_t bit;
  int (*write)(int fd, const snap::Snapshot& s, ScratchArena& arena);
};
const Format kFormats[] = {
    {kFormatHeap, write_heap},
    {kFormatHeapV2, write_heap_v2},
    {kFormatPb, write_pb},
};

}  // namespace

namespace {

// The lost dump's name for the caller's `path`: ".lost" before its extension (after the
// last dot of its last component), or at its end when it has none.
void lost_name(files::PathBuf& name, const char* path) {
  name.clear();
  size_t len = cstr_len(path), dot = len;
  for (size_t i = len; i > 0; --i) {
    if (path[i - 1] == '/') break;
    if (path[i - 1] == '.') { dot = i - 1; break; }
  }
  for (size_t i = 0; i < dot; ++i) {
    char c[2] = {path[i], '\0'};
    name.add(c);
  }
  name.add(".lost");
  name.add(path + dot);
}

// Writes the files of one snapshot in every format of `formats`; appends their names
// to g_files at *sumlen. *seq is the dump's sequence number, taken by the first
// automatic name when *seq_set is false. A lost dump (s.lost_only) puts ".lost" before
// each suffix.
int write_formats(const snap::Snapshot& s, int snap_err, const char* path, int64_t formats, pid_t pid,
                  uint64_t* seq, bool* seq_set, uint64_t kseq, size_t* sumlen, int64_t* written) {
  static files::PathBuf name, tmp;
  static_assert(sizeof g_files >= 3 * files::kPathMax + 16, "room for three names");
  auto sum_add = [&](const char* t) {
    for (; *t != '\0' && *sumlen + 1 < sizeof g_files; ++t) g_files[(*sumlen)++] = *t;
  };
  char kind = s.p.kind;
  int first_err = 0;
  bool first = true;
  for (const Format& f : kFormats) {
    if ((formats & f.bit) == 0) continue;
    char suffix[32] = "";
    if (s.lost_only) cstr_copy(suffix, sizeof suffix, ".lost");
    cstr_copy(suffix + cstr_len(suffix), sizeof suffix - cstr_len(suffix), files::suffix_of(f.bit));
    int err = 0;
    int fd = -1;
    if (path == nullptr && !*seq_set) {
      fd = files::claim_auto_name(name, tmp, pid, kind, kseq, suffix, seq, &err);
      *seq_set = true;
    } else {
      name.clear();
      if (path != nullptr) {
        if (s.lost_only && kind != 'l') lost_name(name, path);
        else name.add(path);
        if (!first) name.add(files::suffix_of(f.bit));
      } else {
        files::auto_name(name, pid, *seq, kind, kseq, suffix);
      }
      if (!name.ok) {
        err = ENAMETOOLONG;
      } else {
        fd = files::create(name, tmp, path != nullptr);
        if (fd < 0) err = errno;
      }
    }
    first = false;
    if (fd >= 0) {
      ScratchArena arena;
      err = snap_err != 0 ? snap_err : f.write(fd, s, arena);
      if (close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
      // A truncated profile is worse than none: readers take it without complaint. It
      // gets its name only when complete (files::publish).
      if (err != 0) unlink(tmp.buf);
      else err = files::publish(tmp, name, path != nullptr);
    }
    if (err != 0) {
      files::report_failure(name.buf, err);
      if (first_err == 0) first_err = err;
      continue;
    }
    *written |= s.lost_only ? f.bit << files::kLostFormatShift : f.bit;
    sum_add(*sumlen == 0 ? "" : " ");
    sum_add(name.buf);
  }
  return first_err;
}

// The lost dump's snapshot: `s` with only its lost blocks (still sorted by stack).
int lost_snapshot(const snap::Snapshot& s, ScratchArena& arena, snap::Snapshot* out) {
  *out = s;
  out->lost_only = true;
  out->nblocks = 0;
  out->blocks = s.nblocks != 0 ? arena.alloc_array<snap::Block>(s.nblocks) : nullptr;
  if (s.nblocks != 0 && out->blocks == nullptr) return ENOMEM;
  for (size_t i = 0; i < s.nblocks; ++i)
    if (s.blocks[i].reach == snap::kLostDirect || s.blocks[i].reach == snap::kLostIndirect)
      out->blocks[out->nblocks++] = s.blocks[i];
  return 0;
}

std::atomic<uint64_t> g_lost_count{0}, g_lost_bytes{0};

}  // namespace

int dump_locked(char kind, const char* path, int64_t age_ms, int64_t formats, bool check) {
  if (age_ms < 0) age_ms = opt(kOpt_age);
  // The check first: the snapshot then carries its verdicts (a block allocated after it
  // has none). kind 'l' (leak.check, dump --lost) writes only the lost dump.
  if (kind == 'l') check = true;
  int check_err = check ? reach::check_locked() : 0;
  if (kind == 'l' && check_err != 0) return check_err;
  bool reach_ok = check && check_err == 0;
  // One snapshot for every file and the summary: they all describe the same moment.
  ScratchArena snap_arena;
  snap::Snapshot s;
  int snap_err = snap::take(snap::params_now(static_cast<uint64_t>(age_ms), kind), snap_arena, &s);
  snap::Snapshot lost;
  if (reach_ok) {
    reach::fill(s);
    if (snap_err == 0) snap_err = lost_snapshot(s, snap_arena, &lost);
    snap::Census lc = snap::census(lost);
    g_lost_count.store(lc.old.blocks, std::memory_order_relaxed);
    g_lost_bytes.store(lc.old.bytes, std::memory_order_relaxed);
  }

  uint64_t seq = 0;  // set with the first automatic name
  bool seq_set = false;
  uint64_t kseq = g_kseq[kind_index(kind)]++;
  if (formats == 0) formats = opt(kOpt_format);
  if ((formats & (kFormatHeap | kFormatHeapV2 | kFormatPb)) == 0) formats = kFormatHeap;
  pid_t pid = getpid();
  size_t sumlen = 0;
  int64_t written = 0;
  int first_err = 0;
  if (kind != 'l') first_err = write_formats(s, snap_err, path, formats, pid, &seq, &seq_set, kseq, &sumlen, &written);
  if (reach_ok) {
    int err = write_formats(lost, snap_err, path, formats, pid, &seq, &seq_set, kseq, &sumlen, &written);
    if (first_err == 0) first_err = err;
  } else if (first_err == 0) {
    first_err = check_err;
  }
  g_files[sumlen] = '\0';
  if (path == nullptr && (kind == 'i' || kind == 'u')) files::retain(pid, kind, seq, kseq, written);

  if (opt(kOpt_summary) != 0) {
    snap::Census c = snap::census(s);
    char kbuf[2] = {kind, '\0'};
    log_printf("dump %s%llu: %llu live blocks (%llu bytes), %llu blocks (%llu bytes) alive >= %llu ms; %s%s",
               kbuf, static_cast<unsigned long long>(kseq),
               static_cast<unsigned long long>(c.live.blocks),
               static_cast<unsigned long long>(c.live.bytes),
               static_cast<unsigned long long>(c.old.blocks),
               static_cast<unsigned long long>(c.old.bytes),
               static_cast<unsigned long long>(s.p.age_ns / 1000000),
               sumlen != 0 ? "wrote " : "wrote nothing", g_files);
    if (reach_ok) {
      const reach::Summary& r = reach::last();
      log_printf("dump %s%llu: %llu lost blocks (%llu bytes) alive >= %llu ms; check paused %llu threads for %llu us, "
                 "marked in %llu ms%s%s",
                 kbuf, static_cast<unsigned long long>(kseq),
                 static_cast<unsigned long long>(g_lost_count.load(std::memory_order_relaxed)),
                 static_cast<unsigned long long>(g_lost_bytes.load(std::memory_order_relaxed)),
                 static_cast<unsigned long long>(s.p.age_ns / 1000000), static_cast<unsigned long long>(r.threads),
                 static_cast<unsigned long long>(r.pause_ns / 1000),
                 static_cast<unsigned long long>(r.child_ns / 1000000), reach::note()[0] != '\0' ? "; " : "",
                 reach::note());
    }
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
  return dump_locked(kind, path, -1, 0, opt(kOpt_reach) != 0);
}

namespace {

// Old blocks now, less the blocks whose records are listed in `skip`.
LeakTotals leak_totals_skipping(uint64_t age_ms, const uint32_t* skip, size_t nskip) {
  ReentrancyGuard g;
  ScratchArena arena;
  snap::Snapshot s;
  if (snap::take(snap::params_now(age_ms, 'm'), arena, &s) != 0) return LeakTotals{0, 0};
  snap::Totals t = snap::old_totals(s, skip, nskip);
  return LeakTotals{t.blocks, t.bytes};
}

}  // namespace

int request(const char* path) { return dump_now('m', path, false); }

void at_exit(const uint32_t* skip, size_t nskip) {
  if (!g_started.load(std::memory_order_acquire)) return;
  ReentrancyGuard g;
  {
    LockGuard l(g_lock);
    if (g_final) dump_locked('f', nullptr, -1, 0, opt(kOpt_reach) != 0);
    g_stopped = true;
  }
  if (opt(kOpt_leak_error) == 0) return;
  int64_t age_ms = opt(kOpt_age);
  // With reach on, only lost blocks count: a check now, after the program's cleanup.
  bool reach_ok = false;
  if (opt(kOpt_reach) != 0) {
    LockGuard l(g_lock);
    reach_ok = reach::check_locked() == 0;
  }
  ScratchArena arena;
  snap::Snapshot s;
  if (snap::take(snap::params_now(static_cast<uint64_t>(age_ms > 0 ? age_ms : 0), 'f'), arena, &s) != 0) return;
  if (reach_ok) reach::fill(s);
  leak_error::Finding found = leak_error::assess(s, skip, nskip);
  if (found.total.blocks == 0) return;
  {
    // A failing CI run needs a file to look at: the exit dump, written now if final was off.
    LockGuard l(g_lock);
    if (!g_final) dump_locked('f', nullptr);
  }
  leak_error::report(s, found, g_files);
  // _exit skips stdio's flush at the end of exit(): do it here.
  fflush(nullptr);
  _exit(1);
}

int check(const char* path) {
  ReentrancyGuard g;
  CancellationOff no_cancel;
  LockGuard l(g_lock);
  if (g_stopped) return ESRCH;
  return dump_locked('l', path);
}

LeakTotals lost_totals() {
  return LeakTotals{g_lost_count.load(std::memory_order_relaxed), g_lost_bytes.load(std::memory_order_relaxed)};
}

LeakTotals leak_totals(uint64_t age_ms) { return leak_totals_skipping(age_ms, nullptr, 0); }

void fork_prepare() { g_lock.lock(); }

void fork_parent() { g_lock.unlock(); }

void fork_child() {
  g_lock.reset_in_child();
  files::fork_child();
  for (uint64_t& k : g_kseq) k = 0;
  triggers_fork_child();
}

}  // namespace dump
}  // namespace leakalloc
