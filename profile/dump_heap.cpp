// The two text writers: gperftools' legacy heap profile (`heap`, read by jeprof,
// google-pprof and go tool pprof) and jemalloc's own `heap_v2` (jeprof only, with
// per-thread lines for `jeprof --thread=N`). docs/FORMATS.md lists what each reader accepts.
//
// Both write raw sampled counts and let the reader unsample: `@ heapprofile` (legacy)
// or `heap_v2/0` (jemalloc) when every allocation is sampled, so the numbers are exact
// requested bytes; `heap_v2/<period>` otherwise. In-use columns hold only the blocks
// at least `age` old; the alloc columns are the stack's cumulative sampled counts since
// start or the last prof.reset (history, not filtered by age).
//
// Memory: the per-stack aggregate is an array indexed by stack id (ids are dense,
// 1..stack_count()) and the per-(stack, thread) aggregate of heap_v2 the dump path's
// hash table (base/arena.h), both in the caller's ScratchArena. Output goes through FdWriter over a stack
// buffer. Nothing here calls malloc.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "leakalloc/leakalloc.h"
#include "profile/dump_writers.h"
#include "profile/profiler.h"
#include "profile/reach.h"
#include "profile/snapshot.h"

namespace leakalloc {
namespace dump {

namespace {

struct Counts {
  uint64_t objs;
  uint64_t bytes;
};

// One (stack, thread) pair of heap_v2, key = stack_id << 32 | thread_index, in the dump
// path's hash table (base/arena.h InternTable).
struct ThreadCell {
  uint64_t key;
  Counts c;  // not part of the key: the sums
  uint64_t hash() const { return mix64(key); }
  bool operator==(const ThreadCell& o) const { return key == o.key; }
};

constexpr uint32_t kMaxThreadIndex = 65536;

struct Aggregate {
  ScratchArena* arena;
  uint32_t nstacks;   // per_stack covers ids [0, nstacks)
  Counts* per_stack;  // blocks kept by the age filter, raw sampled counts
  Counts total;       // sum of per_stack
  bool per_thread;
  InternTable<ThreadCell> cells;
  Counts* per_thread_total;  // indexed by thread index
  uint32_t max_thread;       // highest thread index seen + 1
  bool oom;
};

void on_block(Aggregate& a, const snap::Block& b) {
  if (b.stack_id == 0 || b.stack_id >= a.nstacks) return;
  Counts& s = a.per_stack[b.stack_id];
  ++s.objs;
  s.bytes += b.size;
  ++a.total.objs;
  a.total.bytes += b.size;
  if (!a.per_thread || a.oom) return;
  if (b.thread_index < kMaxThreadIndex) {
    Counts& t = a.per_thread_total[b.thread_index];
    ++t.objs;
    t.bytes += b.size;
    if (b.thread_index + 1 > a.max_thread) a.max_thread = b.thread_index + 1;
  }
  bool added;
  ThreadCell key{(static_cast<uint64_t>(b.stack_id) << 32) | b.thread_index, {0, 0}};
  int64_t i = a.cells.intern(*a.arena, key, &added);
  if (i < 0) {
    a.oom = true;
    return;
  }
  ThreadCell& c = a.cells[static_cast<size_t>(i)];
  ++c.c.objs;
  c.c.bytes += b.size;
}

int aggregate(const snap::Snapshot& s, ScratchArena& arena, bool per_thread, Aggregate* a) {
  *a = Aggregate{};
  a->arena = &arena;
  a->nstacks = s.nstacks + 1;
  a->per_stack = arena.alloc_array<Counts>(a->nstacks);
  if (a->per_stack == nullptr) return ENOMEM;
  a->per_thread = per_thread;
  if (per_thread) {
    a->per_thread_total = arena.alloc_array<Counts>(kMaxThreadIndex);
    if (a->per_thread_total == nullptr) return ENOMEM;
  }
  for (size_t i = 0; i < s.nblocks && !a->oom; ++i)
    if (s.is_old(s.blocks[i])) on_block(*a, s.blocks[i]);
  return a->oom ? ENOMEM : 0;
}

// Output buffer, from the arena: dumps also run on the caller's thread (prof.dump, the
// exit hook), whose stack may be small.
constexpr size_t kOutBuf = 64 * 1024;

// Header totals: the sums of the lines actually written, as the readers compute them.
struct Totals {
  Counts in;
  Counts cum;
};

// A stack without frames cannot be written as a line every reader accepts.
bool writable(const snap::Snapshot& s, uint32_t id) { return s.stacks[id].stored && s.stacks[id].depth != 0; }

Totals line_totals(const snap::Snapshot& s, const Aggregate& a) {
  Totals t{{0, 0}, {0, 0}};
  for (uint32_t id = 1; id < a.nstacks; ++id) {
    if (!writable(s, id)) continue;
    t.in.objs += a.per_stack[id].objs;
    t.in.bytes += a.per_stack[id].bytes;
    t.cum.objs += s.stacks[id].cum_objs;
    t.cum.bytes += s.stacks[id].cum_bytes;
  }
  return t;
}

// Frames come from the stack table (a stored stack never changes); counts from the
// snapshot.
bool frames_of(uint32_t id, prof::StackView* v) { return prof::stack_get(id, v) && v->depth != 0; }

void write_frames(FdWriter& w, const prof::StackView& v) {
  w.ch('@');
  for (uint32_t i = 0; i < v.depth; ++i) w.ch(' ').hex(v.frames[i]);
  w.ch('\n');
}

// `objs: bytes [objs: bytes]`. A zero count always goes with zero bytes (go tool pprof
// rejects the whole file otherwise).
void write_pair(FdWriter& w, Counts in, Counts cum) {
  if (in.objs == 0) in.bytes = 0;
  if (cum.objs == 0) cum.bytes = 0;
  w.u64(in.objs).str(": ").u64(in.bytes).str(" [").u64(cum.objs).str(": ").u64(cum.bytes).ch(']');
}

void write_metadata(FdWriter& w, const snap::Snapshot& s, const Aggregate& a) {
  const snap::Params& p = s.p;
  // Every reader skips '#' lines, so the metadata costs no compatibility.
  w.str("# leakalloc ").str(LEAKALLOC_VERSION).ch('\n');
  w.str("# dump_kind: ").ch(p.kind).ch('\n');
  w.str("# dump_time_s: ").u64(p.wall_time_s).ch('\n');
  w.str("# uptime_ms: ").u64(p.uptime_ns / 1000000).ch('\n');
  w.str("# age_threshold_ms: ").u64(p.age_ns / 1000000).ch('\n');
  w.str("# lg_sample: ").i64(p.lg_sample).str(" period: ").u64(p.period).ch('\n');
  if (s.reach_checked) {
    const reach::Summary& r = reach::last();
    if (s.lost_only) w.str("# lost_dump: the blocks the reachability check found unreachable\n");
    w.str("# reach_check: ").u64(r.check_seq).str(" threads_stopped: ").u64(r.threads)
        .str(" threads_unanswered: ").u64(r.unanswered).str(" pause_us: ").u64(r.pause_ns / 1000)
        .str(" fork_us: ").u64(r.fork_ns / 1000).str(" child_ms: ").u64(r.child_ns / 1000000).str(" child_cpu_ms: ").u64(r.child_cpu_ns / 1000000)
        .str(" heap_read_bytes: ").u64(r.heap_bytes).str(" maps_ms: ").u64(r.maps_ns / 1000000)
        .str(" scan_ms: ").u64(r.scan_ns / 1000000).str(" mark_ms: ").u64(r.mark_ns / 1000000)
        .str(" root_bytes: ").u64(r.root_bytes).str(" blocks: ").u64(r.blocks)
        .str(" lost_blocks: ").u64(r.lost_blocks).str(" lost_bytes: ").u64(r.lost_bytes).ch('\n');
    if (reach::note()[0] != '\0') w.str("# reach_note: ").str(reach::note()).ch('\n');
  }
  w.str("# sampled_blocks_older_than_age: ").u64(a.total.objs).str(" bytes: ").u64(a.total.bytes)
      .ch('\n');
  const prof::Counters& c = s.counters;
  w.str("# sampled_live_blocks: ").u64(c.sampled_live).str(" sampled_total: ").u64(c.sampled_total)
      .str(" stacks: ").u64(c.stacks).str(" stacks_dropped: ").u64(c.stacks_dropped).ch('\n');
  const prof::AllocTotals& t = s.totals;
  w.str("# process_live_blocks: ").u64(t.live_blocks).str(" bytes: ").u64(t.allocated_bytes)
      .str(" total_allocs: ").u64(t.total_allocs).str(" total_bytes: ").u64(t.total_bytes).ch('\n');
}

// jeprof symbolises a PIE only when a maps line names the binary it was given, so the
// maps go out verbatim.
void write_maps(FdWriter& w, const snap::Snapshot& s) {
  w.str("MAPPED_LIBRARIES:\n");
  w.str(s.maps, s.maps_len);
}

int finish(FdWriter& w, int err) {
  w.flush();
  if (w.failed()) return w.error() != 0 ? w.error() : EIO;
  return err;
}

}  // namespace

int write_heap(int fd, const snap::Snapshot& s, ScratchArena& arena) {
  const snap::Params& p = s.p;
  Aggregate a;
  int err = aggregate(s, arena, false, &a);
  if (err != 0) return err;
  Totals tot = line_totals(s, a);
  uint32_t n = a.nstacks;
  char* buf = static_cast<char*>(arena.alloc(kOutBuf));
  if (buf == nullptr) return ENOMEM;
  FdWriter w(fd, buf, kOutBuf);
  w.str("heap profile: ");
  write_pair(w, tot.in, tot.cum);
  if (p.period <= 1) {
    w.str(" @ heapprofile\n");
  } else {
    w.str(" @ heap_v2/").u64(p.period).ch('\n');
  }
  for (uint32_t id = 1; id < n && !w.failed(); ++id) {
    prof::StackView v;
    if (!writable(s, id) || !frames_of(id, &v)) continue;
    Counts in = a.per_stack[id];
    Counts cum{s.stacks[id].cum_objs, s.stacks[id].cum_bytes};
    if (in.objs == 0 && cum.objs == 0) continue;
    write_pair(w, in, cum);
    w.ch(' ');
    write_frames(w, v);
  }
  write_metadata(w, s, a);
  write_maps(w, s);
  return finish(w, 0);
}

int write_heap_v2(int fd, const snap::Snapshot& s, ScratchArena& arena) {
  const snap::Params& p = s.p;
  Aggregate a;
  int err = aggregate(s, arena, true, &a);
  if (err != 0) return err;
  // Collect the (stack, thread) cells, ordered by stack then thread, so each stack's
  // thread lines follow its `@` line.
  ThreadCell* sorted = arena.alloc_array<ThreadCell>(a.cells.size() + 1);
  if (sorted == nullptr) return ENOMEM;
  uint64_t m = a.cells.size();
  for (uint64_t i = 0; i < m; ++i) sorted[i] = a.cells[i];
  std::sort(sorted, sorted + m, [](const ThreadCell& x, const ThreadCell& y) { return x.key < y.key; });

  Totals tot = line_totals(s, a);
  uint32_t n = a.nstacks;
  char* buf = static_cast<char*>(arena.alloc(kOutBuf));
  if (buf == nullptr) return ENOMEM;
  FdWriter w(fd, buf, kOutBuf);
  // heap_v2/0 is exact in jeprof (it skips the adjustment); /1 would inflate small
  // objects a little (docs/FORMATS.md).
  w.str("heap_v2/").u64(p.period <= 1 ? 0 : p.period).ch('\n');
  w.str("  t*: ");
  write_pair(w, tot.in, tot.cum);
  w.ch('\n');
  for (uint32_t t = 0; t < a.max_thread; ++t) {
    Counts c = a.per_thread_total[t];
    if (c.objs == 0) continue;
    w.str("  t").u64(t).str(": ");
    write_pair(w, c, Counts{0, 0});
    w.ch('\n');
  }
  uint64_t k = 0;
  for (uint32_t id = 1; id < n && !w.failed(); ++id) {
    while (k < m && (sorted[k].key >> 32) < id) ++k;
    prof::StackView v;
    if (!writable(s, id) || !frames_of(id, &v)) continue;
    Counts in = a.per_stack[id];
    Counts cum{s.stacks[id].cum_objs, s.stacks[id].cum_bytes};
    if (in.objs == 0 && cum.objs == 0) continue;
    write_frames(w, v);
    w.str("  t*: ");
    write_pair(w, in, cum);
    w.ch('\n');
    for (; k < m && (sorted[k].key >> 32) == id; ++k) {
      w.str("  t").u64(sorted[k].key & 0xffffffffu).str(": ");
      write_pair(w, sorted[k].c, Counts{0, 0});
      w.ch('\n');
    }
  }
  write_metadata(w, s, a);
  // jeprof --thread=N takes the index above; this maps it to the kernel's view.
  for (uint32_t t = 0; t < a.max_thread && t < s.nthreads; ++t) {
    const snap::Thread& tv = s.threads[t];
    if (a.per_thread_total[t].objs == 0 || !tv.known) continue;
    w.str("# thread t").u64(t).str(": tid ").i64(tv.tid).str(" name ").str(tv.name).ch('\n');
  }
  write_maps(w, s);
  return finish(w, 0);
}

}  // namespace dump
}  // namespace leakalloc
