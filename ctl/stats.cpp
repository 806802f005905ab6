// The stats snapshot behind `epoch` / `stats.*` and leakalloc_stats_print.
//
// Where the numbers come from: allocated and live_blocks from the allocator's per-thread
// counters (prof::alloc_totals), the profiler's counters from prof::counters, and the
// page-level numbers from mimalloc's mi_process_info. mimalloc 2.0.9 on Linux reports
// its committed bytes as the current rss (it has no cheap current-rss source). mapped
// adds the profiler's own mappings, as jemalloc's includes its metadata; resident does
// not, because most of those are reserved address space that is never touched (the
// stack table is sized for max_stacks up front).
#include "leakalloc/leakalloc.h"
#include "ctl/stats.h"

#include <mimalloc.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "base/base.h"
#include "alloc/alloc.h"
#include "alloc/header.h"
#include "ctl/ctl.h"
#include "profile/dump.h"
#include "profile/profiler.h"
#include "profile/threads.h"

namespace leakalloc {

namespace {

RawLock g_snapshot_lock;
Stats g_snapshot;
uint64_t g_epoch;  // 0 until the first snapshot; under g_snapshot_lock
std::atomic<bool> g_have_snapshot{false};
std::atomic<bool> g_fork_handlers{false};

void fork_prepare() { g_snapshot_lock.lock(); }
void fork_parent() { g_snapshot_lock.unlock(); }
void fork_child() { g_snapshot_lock.reset_in_child(); }

// Registered on first use rather than at start: most programs never read the stats, and
// the handlers only matter once the lock exists in anyone's hands.
void register_fork_handlers_once() {
  bool expected = false;
  if (g_fork_handlers.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    ReentrancyGuard g;  // pthread_atfork may allocate
    pthread_atfork(fork_prepare, fork_parent, fork_child);
  }
}

void ensure_snapshot() {
  if (!g_have_snapshot.load(std::memory_order_acquire)) stats_refresh();
}

}  // namespace

void stats_collect(Stats* s) {
  ReentrancyGuard g;
  prof::AllocTotals a = prof::alloc_totals();
  prof::Counters c = prof::counters();
  size_t elapsed = 0, user = 0, sys = 0, rss = 0, peak_rss = 0, commit = 0, peak_commit = 0,
         faults = 0;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  s->allocated = static_cast<size_t>(a.allocated_bytes);
  s->live_blocks = a.live_blocks;
  s->header_bytes = static_cast<size_t>(a.live_blocks * kHeaderSize);
  s->active = s->allocated + s->header_bytes;
  s->profiler_bytes = static_cast<size_t>(c.profiler_bytes);
  s->resident = rss < commit ? rss : commit;
  s->mapped = commit + s->profiler_bytes;
  s->stacks = c.stacks;
  s->stacks_dropped = c.stacks_dropped;
  s->sampled_live = c.sampled_live;
  s->sampled_total = c.sampled_total;
  s->total_allocs = a.total_allocs;
  s->tcache_bytes = static_cast<size_t>(thread_cache_total_bytes());
}

uint64_t stats_refresh() {
  register_fork_handlers_once();
  Stats s;
  stats_collect(&s);
  uint64_t e;
  {
    LockGuard l(g_snapshot_lock);
    g_snapshot = s;
    e = ++g_epoch;
  }
  g_have_snapshot.store(true, std::memory_order_release);
  return e;
}

uint64_t stats_epoch() {
  ensure_snapshot();
  LockGuard l(g_snapshot_lock);
  return g_epoch;
}

void stats_snapshot(Stats* out) {
  ensure_snapshot();
  LockGuard l(g_snapshot_lock);
  *out = g_snapshot;
}

const char* opt_value_string(OptId id) {
  switch (kOptionTable[id].type) {
    case OptType::kString:
      return g_opt_prefix;
    case OptType::kFormat: {
      // Indexed by the FormatBit mask; the order matches the parser's spelling.
      static const char* const kNames[8] = {"",   "heap",    "heap_v2",    "heap+heap_v2",
                                            "pb", "heap+pb", "heap_v2+pb", "heap+heap_v2+pb"};
      return kNames[opt(id) & 7];
    }
    case OptType::kUnwind:
      return opt(id) == kUnwindFp ? "fp" : "libunwind";
    default:
      return nullptr;
  }
}

// ---- printing ------------------------------------------------------------------------

namespace {

// Formats into a fixed buffer and hands NUL-terminated pieces to the caller's callback
// (jemalloc's write_cb contract): the report never allocates, however long it is.
class CbWriter {
 public:
  CbWriter(void (*cb)(void*, const char*), void* opaque) : cb_(cb), opaque_(opaque) {}
  ~CbWriter() { flush(); }
  CbWriter(const CbWriter&) = delete;
  CbWriter& operator=(const CbWriter&) = delete;

  CbWriter& str(const char* s) {
    for (; *s != '\0'; ++s) ch(*s);
    return *this;
  }
  CbWriter& ch(char c) {
    if (len_ + 1 >= sizeof buf_) flush();
    buf_[len_++] = c;
    return *this;
  }
  CbWriter& u64(uint64_t v) {
    char tmp[24];
    size_t n = u64_to_dec(v, tmp);
    tmp[n] = '\0';
    return str(tmp);
  }
  CbWriter& i64(int64_t v) {
    if (v < 0) {
      ch('-');
      return u64(0 - static_cast<uint64_t>(v));
    }
    return u64(static_cast<uint64_t>(v));
  }
  CbWriter& boolean(bool b) { return str(b ? "true" : "false"); }
  // A JSON string literal: quotes, backslashes and control bytes escaped.
  CbWriter& json_str(const char* s) {
    ch('"');
    for (; *s != '\0'; ++s) {
      unsigned char c = static_cast<unsigned char>(*s);
      if (c == '"' || c == '\\') {
        ch('\\');
        ch(static_cast<char>(c));
      } else if (c < 0x20) {
        str("\\u00");
        ch("0123456789abcdef"[c >> 4]);
        ch("0123456789abcdef"[c & 15]);
      } else {
        ch(static_cast<char>(c));
      }
    }
    return ch('"');
  }
  void flush() {
    if (len_ == 0) return;
    buf_[len_] = '\0';
    len_ = 0;
    cb_(opaque_, buf_);
  }

 private:
  void (*cb_)(void*, const char*);
  void* opaque_;
  char buf_[1024];
  size_t len_ = 0;
};

void write_stderr(void*, const char* s) {
  char buf[512];
  FdWriter w(STDERR_FILENO, buf, sizeof buf);
  w.str(s);
}

void put_opt(CbWriter& w, OptId id, bool json) {
  const OptionDesc& d = kOptionTable[id];
  int64_t v = opt(id);
  switch (d.type) {
    case OptType::kBool:
      w.boolean(v != 0);
      break;
    case OptType::kDuration:
      w.i64(v);
      if (!json) w.str(" ms");
      break;
    case OptType::kInt:
    case OptType::kSignal:
      w.i64(v);
      break;
    case OptType::kString:
    case OptType::kFormat:
    case OptType::kUnwind:
      if (json) w.json_str(opt_value_string(id));
      else w.str(opt_value_string(id));
      break;
  }
}

struct Report {
  uint64_t epoch;
  Stats stats;
  dump::LeakTotals leaks;
  bool active;
  int lg_sample;
};

void print_text(CbWriter& w, const Report& r) {
  w.str("___ Begin leakalloc statistics ___\n");
  w.str("Version: ").str(LEAKALLOC_VERSION).ch('\n');
  w.str("Epoch: ").u64(r.epoch).ch('\n');
  w.str("Options:\n");
  for (int i = 0; i < kOptCount; ++i) {
    w.str("  opt.").str(kOptionTable[i].key).str(": ");
    put_opt(w, static_cast<OptId>(i), false);
    w.ch('\n');
  }
  w.str("Profiler:\n");
  w.str("  prof.active: ").boolean(r.active).ch('\n');
  w.str("  prof.lg_sample: ").i64(r.lg_sample).ch('\n');
  w.str("  prof.age: ").i64(opt(kOpt_age)).str(" ms\n");
  w.str("  prof.interval: ").i64(opt(kOpt_interval)).str(" ms\n");
  w.str("Stats:\n");
#define LEAKALLOC_STAT_TEXT(name, type, doc) \
  w.str("  stats." #name ": ").u64(static_cast<uint64_t>(r.stats.name)).ch('\n');
  LEAKALLOC_STATS(LEAKALLOC_STAT_TEXT)
#undef LEAKALLOC_STAT_TEXT
  w.str("Leaks (alive at least prof.age):\n");
  w.str("  leak.count: ").u64(r.leaks.blocks).ch('\n');
  w.str("  leak.bytes: ").u64(r.leaks.bytes).ch('\n');
  w.str("--- End leakalloc statistics ---\n");
}

void print_json(CbWriter& w, const Report& r) {
  w.str("{\n\"leakalloc\": {\n");
  w.str("  \"version\": ").json_str(LEAKALLOC_VERSION).str(",\n");
  w.str("  \"epoch\": ").u64(r.epoch).str(",\n");
  w.str("  \"opt\": {\n");
  for (int i = 0; i < kOptCount; ++i) {
    w.str("    ").json_str(kOptionTable[i].key).str(": ");
    put_opt(w, static_cast<OptId>(i), true);
    w.str(i + 1 < kOptCount ? ",\n" : "\n");
  }
  w.str("  },\n");
  w.str("  \"prof\": {\n");
  w.str("    \"active\": ").boolean(r.active).str(",\n");
  w.str("    \"lg_sample\": ").i64(r.lg_sample).str(",\n");
  w.str("    \"age\": ").i64(opt(kOpt_age)).str(",\n");
  w.str("    \"interval\": ").i64(opt(kOpt_interval)).str("\n");
  w.str("  },\n");
  w.str("  \"stats\": {\n");
  const char* sep = "";
#define LEAKALLOC_STAT_JSON(name, type, doc)                                      \
  w.str(sep).str("    \"" #name "\": ").u64(static_cast<uint64_t>(r.stats.name)); \
  sep = ",\n";
  LEAKALLOC_STATS(LEAKALLOC_STAT_JSON)
#undef LEAKALLOC_STAT_JSON
  w.str("\n");
  w.str("  },\n");
  w.str("  \"leak\": {\n");
  w.str("    \"count\": ").u64(r.leaks.blocks).str(",\n");
  w.str("    \"bytes\": ").u64(r.leaks.bytes).str("\n");
  w.str("  }\n");
  w.str("}\n}\n");
}

}  // namespace

void stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts) {
  bool json = false;
  if (opts != nullptr)
    for (const char* p = opts; *p != '\0'; ++p)
      if (*p == 'J') json = true;
  // As jemalloc's malloc_stats_print, the report starts a new epoch.
  Report r;
  r.epoch = stats_refresh();
  stats_snapshot(&r.stats);
  {
    ReentrancyGuard g;
    r.leaks = dump::leak_totals(static_cast<uint64_t>(opt(kOpt_age)));
  }
  r.active = prof::active();
  r.lg_sample = prof::lg_sample();
  CbWriter w(write_cb != nullptr ? write_cb : write_stderr, cbopaque);
  if (json) print_json(w, r);
  else print_text(w, r);
}

}  // namespace leakalloc
