// One snapshot per dump (profile/snapshot.h).
#include "profile/snapshot.h"

#include <errno.h>
#include <time.h>

namespace leakalloc {
namespace snap {

namespace {

// Room for blocks sampled while the walk runs, beyond the count read before it.
constexpr size_t kBlockSlack = 4096;

struct Collect {
  ScratchArena* arena;
  Block* blocks;
  size_t n, cap;
  bool oom;
};

bool grow(Collect& c) {
  size_t cap = c.cap == 0 ? 1024 : c.cap * 2;
  Block* b = c.arena->alloc_array<Block>(cap);
  if (b == nullptr) return false;
  for (size_t i = 0; i < c.n; ++i) b[i] = c.blocks[i];
  c.blocks = b;  // the old array stays in the arena until it is released
  c.cap = cap;
  return true;
}

void on_block(void* ctx, const prof::LiveBlock& lb) {
  Collect& c = *static_cast<Collect*>(ctx);
  if (c.oom) return;
  if (c.n == c.cap && !grow(c)) {
    c.oom = true;
    return;
  }
  Block& b = c.blocks[c.n++];
  b.stack_id = lb.stack_id;
  b.thread_index = lb.thread_index;
  b.size = lb.size;
  b.birth_ns = lb.birth_ns;
  b.record = lb.record;
  b.generation = static_cast<uint8_t>(lb.generation);
  b.reach = kReachUnknown;
}

// Orders blocks by stack id (a counting sort: ids are dense) so that writers aggregate
// one stack at a time; within a stack the walk's order is kept.
bool sort_by_stack(ScratchArena& arena, Snapshot& s) {
  if (s.nblocks == 0) return true;
  size_t* start = arena.alloc_array<size_t>(static_cast<size_t>(s.nstacks) + 2);
  Block* out = arena.alloc_array<Block>(s.nblocks);
  if (start == nullptr || out == nullptr) return false;
  for (size_t i = 0; i < s.nblocks; ++i) start[s.blocks[i].stack_id + 1]++;
  for (uint32_t id = 1; id <= s.nstacks + 1; ++id) start[id] += start[id - 1];
  for (size_t i = 0; i < s.nblocks; ++i) out[start[s.blocks[i].stack_id]++] = s.blocks[i];
  s.blocks = out;
  return true;
}

}  // namespace

Params params_now(uint64_t age_ms, char kind) {
  Params p;
  p.now_ns = coarse_now_ns();
  p.age_ns = age_ms * 1000000ull;
  p.lg_sample = prof::lg_sample();
  p.period = prof::sample_period();
  uint64_t start = process_start_ns();
  p.uptime_ns = p.now_ns > start ? p.now_ns - start : 0;
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  p.wall_time_s = static_cast<uint64_t>(wall.tv_sec);
  p.kind = kind;
  return p;
}

void Snapshot::stack_range(uint32_t stack_id, size_t* first, size_t* last) const {
  // Binary search for the first block of the stack, then for the first after it.
  size_t lo = 0, hi = nblocks;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (blocks[mid].stack_id < stack_id) lo = mid + 1;
    else hi = mid;
  }
  *first = lo;
  hi = nblocks;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (blocks[mid].stack_id <= stack_id) lo = mid + 1;
    else hi = mid;
  }
  *last = lo;
}

int take(const Params& p, ScratchArena& arena, Snapshot* s) {
  *s = Snapshot{};
  s->p = p;
  s->maps = "";
  // Names first, then the epoch, then the walk: a thread entry reused after the epoch
  // was read is reported unknown rather than under another thread's name.
  prof::threads_refresh_names();
  uint32_t epoch = prof::thread_epoch();

  Collect c{&arena, nullptr, 0, 0, false};
  uint64_t expect = prof::counters().sampled_live;
  size_t want = static_cast<size_t>(expect + expect / 8) + kBlockSlack;
  c.blocks = arena.alloc_array<Block>(want);
  if (c.blocks == nullptr) return ENOMEM;
  c.cap = want;
  prof::live_walk(UINT64_MAX, on_block, &c);
  if (c.oom) return ENOMEM;
  s->counters = prof::counters();
  s->totals = prof::alloc_totals();

  // Stacks: every id a block names was published before that block's record, so the
  // count read after the walk covers them all.
  s->nstacks = prof::stack_count();
  s->stacks = arena.alloc_array<StackCounts>(static_cast<size_t>(s->nstacks) + 1);
  if (s->stacks == nullptr) return ENOMEM;
  for (uint32_t id = 1; id <= s->nstacks; ++id) {
    prof::StackView v;
    StackCounts& sc = s->stacks[id];
    if (!prof::stack_get(id, &v)) continue;
    sc.stored = true;
    sc.depth = v.depth;
    sc.cum_objs = v.cum_objs;
    sc.cum_bytes = v.cum_objs != 0 ? v.cum_bytes : 0;
    sc.freed = 0;
    if (prof::stack_lifetimes(id, sc.life))
      for (uint32_t b = 0; b < prof::kLifetimeBuckets; ++b) sc.freed += sc.life[b];
  }
  // A block whose stack id is out of range cannot be written; drop it here, once.
  size_t kept = 0;
  for (size_t i = 0; i < c.n; ++i)
    if (c.blocks[i].stack_id != 0 && c.blocks[i].stack_id <= s->nstacks) c.blocks[kept++] = c.blocks[i];
  s->blocks = c.blocks;
  s->nblocks = kept;
  if (!sort_by_stack(arena, *s)) return ENOMEM;

  s->nthreads = prof::thread_count();
  s->threads = arena.alloc_array<Thread>(static_cast<size_t>(s->nthreads) + 1);
  if (s->threads == nullptr) return ENOMEM;
  for (uint32_t t = 0; t < s->nthreads; ++t) {
    prof::ThreadView tv;
    if (!prof::thread_get(t, &tv, epoch)) continue;
    Thread& out = s->threads[t];
    out.known = true;
    out.tid = tv.tid;
    cstr_copy(out.name, sizeof out.name, tv.name);
  }
  read_self_maps(arena, &s->maps, &s->maps_len);
  return 0;
}

void Tally::add(const Block& b, uint64_t period) {
  ++exact_objs;
  exact_bytes += b.size;
  if (period > 1) {
    double scale = prof::unsample_scale(b.size, period);
    objs += scale;
    bytes += static_cast<double>(b.size) * scale;
  }
}

Totals Tally::get(uint64_t period) const {
  if (period <= 1) return Totals{exact_objs, exact_bytes};
  auto round = [](double v) { return v <= 0 ? uint64_t{0} : static_cast<uint64_t>(v + 0.5); };
  return Totals{round(objs), round(bytes)};
}

Census census(const Snapshot& s) {
  Tally live, old;
  for (size_t i = 0; i < s.nblocks; ++i) {
    const Block& b = s.blocks[i];
    live.add(b, s.p.period);
    if (s.is_old(b)) old.add(b, s.p.period);
  }
  return Census{live.get(s.p.period), old.get(s.p.period)};
}

Totals old_totals(const Snapshot& s, const uint32_t* skip, size_t nskip) {
  Tally old;
  for (size_t i = 0; i < s.nblocks; ++i) {
    const Block& b = s.blocks[i];
    if (!s.is_old(b)) continue;
    bool skipped = false;
    for (size_t k = 0; k < nskip && !skipped; ++k) skipped = skip[k] != 0 && skip[k] == b.record;
    if (!skipped) old.add(b, s.p.period);
  }
  return old.get(s.p.period);
}

}  // namespace snap
}  // namespace leakalloc
