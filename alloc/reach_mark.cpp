// The reachability check's child (ctl/startup.cpp registers it: profile/reach_plan.h set_child): alone in a copy-on-write copy of the process, it finds
// every live block by its header, marks what the roots reach, tells direct from indirect
// lost blocks, writes the verdicts into the shared results and exits (profile/reach.h
// has the design and the reasons).
//
// It runs after a raw clone() while other threads of the parent were stopped anywhere,
// possibly holding any lock: it takes none, never calls malloc, and uses only system
// calls, leakalloc's lock-free readers and mi_is_in_heap_region. A page that cannot be
// read after all (a mapping truncated under a file, say) is skipped through a SIGSEGV or
// SIGBUS handler and counted.
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <mimalloc.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "alloc/header.h"
#include "alloc/thread_state.h"
#include "base/base.h"
#include "profile/live_set.h"
#include "profile/reach.h"
#include "profile/reach_plan.h"

namespace leakalloc {
namespace reach {

namespace {

constexpr uintptr_t kSlice = uintptr_t{1} << 16;  // mimalloc 2.x's segment slices
constexpr uintptr_t kUnit = uintptr_t{1} << 22;   // classified whole when both ends are heap
constexpr uintptr_t kPage = 4096;
constexpr size_t kMaxMappings = size_t{1} << 20;
constexpr size_t kMaxExcluded = kOsRegionsMax + 64 + 2 * 65536 + 8;

// Block flags, above the 48 size bits.
constexpr uint64_t kSizeMask = (uint64_t{1} << 48) - 1;
constexpr uint64_t kMarked = uint64_t{1} << 56;
constexpr uint64_t kClaimed = uint64_t{1} << 57;  // lost, and given to a clique
constexpr uint64_t kLeader = uint64_t{1} << 58;   // lost directly (a clique's leader)

struct Block {
  uintptr_t user;
  uint64_t bits;      // size | flags
  uint32_t record;    // live record id + 1 for a sampled block, else 0
  uint32_t parent;    // index + 1 of a block whose extent encloses this one's start
  // Exclusive: one past the end is the next block's header, which the thread caches
  // and mimalloc's free lists point at. A block of size 0 holds its own start.
  uint64_t end() const {
    uint64_t size = bits & kSizeMask;
    return user + (size != 0 ? size : 1);
  }
  uint64_t size() const { return bits & kSizeMask; }
};

struct Mapping {
  uintptr_t start, limit;
  bool readable, writable, shared, device;
};

struct Run {
  uintptr_t start, limit;
  uint32_t page_base;  // index of the run's first page in the page index
};

// sigsetjmp(.., 0): saving the signal mask costs a system call, and read_words runs
// once per reachable block; the handler is SA_NODEFER, so nothing is left blocked.
sigjmp_buf g_fault_jmp;
volatile uintptr_t g_fault_addr = 0;

void on_fault(int, siginfo_t* si, void*) {
  g_fault_addr = reinterpret_cast<uintptr_t>(si->si_addr);
  siglongjmp(g_fault_jmp, 1);
}

// Memory of the child's own: mapped here, gone with the child.
template <typename T>
T* reserve(size_t n) {
  return static_cast<T*>(os_reserve(n * sizeof(T) + 1));
}

struct Marker {
  const Plan* plan;
  Shared* out;
  Mapping* maps = nullptr;
  size_t nmaps = 0;
  Run* runs = nullptr;
  size_t nruns = 0;
  Block* blocks = nullptr;
  size_t nblocks = 0;
  uint32_t* page_index = nullptr;
  uint32_t* work = nullptr;
  size_t nwork = 0;
  Range* excluded = nullptr;
  size_t nexcluded = 0;
  uintptr_t heap_lo = UINTPTR_MAX, heap_hi = 0;
  uint64_t faults = 0;
  uint64_t root_bytes = 0;

  // ---- lookups ----
  const Run* run_of(uintptr_t v) const {
    size_t lo = 0, hi = nruns;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (runs[mid].limit <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo < nruns && runs[lo].start <= v ? &runs[lo] : nullptr;
  }

  // Index of the last block whose user pointer is <= v, or SIZE_MAX.
  size_t last_at_or_below(uintptr_t v) const {
    const Run* r = run_of(v);
    if (r == nullptr) return SIZE_MAX;
    uint32_t page = r->page_base + static_cast<uint32_t>((v - r->start) / kPage);
    size_t lo = page_index[page];
    size_t hi = page_index[page + 1];
    const Block* b = std::upper_bound(blocks + lo, blocks + hi, v,
                                      [](uintptr_t x, const Block& blk) { return x < blk.user; });
    size_t i = static_cast<size_t>(b - blocks);
    return i == 0 ? SIZE_MAX : i - 1;
  }

  // Calls fn(index) for every block whose [user, user + size] holds v.
  template <typename Fn>
  void blocks_holding(uintptr_t v, Fn fn) {
    if (v < heap_lo || v > heap_hi) return;
    size_t i = last_at_or_below(v);
    while (i != SIZE_MAX) {
      const Block& b = blocks[i];
      if (v < b.end()) fn(static_cast<uint32_t>(i));
      if (b.parent == 0) break;
      i = b.parent - 1;
    }
  }

  // ---- skipping pages never touched ----
  // /proc/self/pagemap says, per page, whether it is present or swapped out; a page that
  // is neither was never written (or was given back with MADV_DONTNEED) and reads as
  // zeros, where no header or pointer can be. Reading it would only cost a page fault
  // each (a zero-page mapping in this process): 8 ms per 32 MiB of untouched heap here.
  int pagemap_fd = -1;
  template <typename Fn>
  void for_each_touched(uintptr_t lo, uintptr_t hi, Fn fn) {
    if (pagemap_fd < 0 || hi - lo < 16 * kPage) return fn(lo, hi);
    uint64_t entries[512];
    uintptr_t first = lo & ~(kPage - 1);
    uintptr_t run_lo = 0;
    bool in_run = false;
    for (uintptr_t page = first; page < hi;) {
      size_t n = std::min<uintptr_t>(512, (hi - page + kPage - 1) / kPage);
      long got = syscall(SYS_pread64, pagemap_fd, entries, n * 8, static_cast<long>(page / kPage * 8));
      if (got != static_cast<long>(n * 8)) {  // cannot tell: read the rest
        if (!in_run) run_lo = page;
        return fn(std::max(lo, run_lo), hi);
      }
      for (size_t i = 0; i < n; ++i, page += kPage) {
        bool touched = (entries[i] >> 62) != 0;  // bit 63 present, bit 62 swapped
        if (touched && !in_run) { run_lo = page; in_run = true; }
        if (!touched && in_run) { fn(std::max(lo, run_lo), std::min(hi, page)); in_run = false; }
      }
    }
    if (in_run) fn(std::max(lo, run_lo), hi);
  }

  // ---- reading memory that may fault ----
  template <typename Fn>
  LA_NOINLINE static void words(uintptr_t lo, uintptr_t hi, Fn& fn) {
    for (uintptr_t p = lo; p + 8 <= hi; p += 8) fn(*reinterpret_cast<const uintptr_t*>(p));
  }
  template <typename Fn>
  void read_words(uintptr_t lo, uintptr_t hi, Fn fn) {
    lo = (lo + 7) & ~uintptr_t{7};
    while (lo + 8 <= hi) {
      if (sigsetjmp(g_fault_jmp, 0) != 0) {
        ++faults;
        lo = (g_fault_addr & ~(kPage - 1)) + kPage;
        continue;
      }
      words(lo, hi, fn);
      break;
    }
  }

  void mark_value(uintptr_t v) {
    blocks_holding(v, [this](uint32_t i) {
      Block& b = blocks[i];
      if ((b.bits & kMarked) != 0) return;
      b.bits |= kMarked;
      work[nwork++] = i;
    });
  }

  void drain_marks() {
    while (nwork > 0) {
      const Block& b = blocks[work[--nwork]];
      for_each_touched(b.user, b.user + b.size(), [this](uintptr_t lo, uintptr_t hi) {
        read_words(lo, hi, [this](uintptr_t v) { mark_value(v); });
      });
    }
  }

  // ---- the steps ----
  bool read_maps();
  void find_heap_runs();
  bool scan_heap();
  bool build_page_index();
  void collect_exclusions();
  void mark_roots();
  void classify_lost();
  void write_results();
};

bool Marker::read_maps() {
  maps = reserve<Mapping>(kMaxMappings);
  if (maps == nullptr) return false;
  return scan_self_maps([](const MapsLine& m, void* ctx) {
    Marker& k = *static_cast<Marker*>(ctx);
    if (k.nmaps == kMaxMappings) return true;
    bool dev = m.path_len >= 5 && __builtin_memcmp(m.path, "/dev/", 5) == 0;
    // The kernel's own pages: [vvar], [vdso], [vsyscall].
    bool special = m.path_len >= 2 && m.path[0] == '[' && m.path[1] == 'v';
    k.maps[k.nmaps++] = Mapping{m.start, m.limit, m.readable, m.writable, m.shared, dev || special};
    return false;
  }, this);
}

// mimalloc's memory: the slices of readable mappings that mi_is_in_heap_region owns.
void Marker::find_heap_runs() {
  runs = reserve<Run>(kMaxMappings * 4);
  auto add = [this](uintptr_t a, uintptr_t b) {
    if (nruns > 0 && runs[nruns - 1].limit == a) runs[nruns - 1].limit = b;
    else runs[nruns++] = Run{a, b, 0};
  };
  for (size_t i = 0; i < nmaps; ++i) {
    const Mapping& m = maps[i];
    if (!m.readable || m.shared || m.device) continue;
    for (uintptr_t u = m.start; u < m.limit;) {
      uintptr_t unit_end = std::min<uintptr_t>((u & ~(kUnit - 1)) + kUnit, m.limit);
      if (mi_is_in_heap_region(reinterpret_cast<void*>(u)) &&
          mi_is_in_heap_region(reinterpret_cast<void*>(unit_end - 1))) {
        add(u, unit_end);
      } else {
        for (uintptr_t s = u; s < unit_end;) {
          uintptr_t slice_end = std::min<uintptr_t>((s & ~(kSlice - 1)) + kSlice, unit_end);
          if (mi_is_in_heap_region(reinterpret_cast<void*>(s))) add(s, slice_end);
          s = slice_end;
        }
      }
      u = unit_end;
    }
  }
  uint32_t pages = 0;
  for (size_t i = 0; i < nruns; ++i) {
    runs[i].page_base = pages;
    pages += static_cast<uint32_t>((runs[i].limit - runs[i].start + kPage - 1) / kPage);
    out->heap_bytes += runs[i].limit - runs[i].start;
  }
}

// The slots of [lo, limit) of one heap run, from `lo` on (a fault leaves through
// on_fault's siglongjmp; the caller goes on after the page that faulted).
// `run_limit`: the end of the heap run, which every block ends before; `limit`: the end of
// the touched pages being read.
LA_NOINLINE void scan_slots(Marker& k, uintptr_t lo, uintptr_t limit, uintptr_t run_limit, uintptr_t* open_end,
                            uint32_t* open_idx, int& depth) {
  uint64_t now = birth_ticks_of(k.plan->now_ns) + 2;
  for (uintptr_t s = lo; s + kHeaderSize <= limit; s += 16) {
    const BlockHeader* h = reinterpret_cast<const BlockHeader*>(s);
    uint64_t tag = h->tag, w1 = h->word1;
    uintptr_t user = s + kHeaderSize;
    if (LA_LIKELY(!header_valid(reinterpret_cast<void*>(user), tag, w1))) continue;
    if (h->birth_ticks() > now) continue;
    uint64_t size;
    uint32_t record = 0;
    if (h->sampled()) {
      prof::LiveBlock lb;
      if (!live::lookup(h->record(), h->sampled_generation(), &lb)) continue;
      uint64_t field = h->sampled_size_field();
      if (field != kSizeInRecord && field != lb.size) continue;
      size = lb.size;
      record = h->record();
    } else {
      uint64_t flags = tag & ~kUnsampledSizeMask;
      if (flags != 0 && flags != kUncachedBit && flags != kAlignedCacheBit) continue;
      size = tag & kUnsampledSizeMask;
    }
    if (size > run_limit - user) continue;
    while (depth > 0 && open_end[depth - 1] < user) --depth;
    Block& b = k.blocks[k.nblocks];
    b.user = user;
    b.bits = size;
    b.record = record;
    b.parent = depth > 0 ? open_idx[depth - 1] + 1 : 0;
    if (depth < 64) {
      open_end[depth] = user + (size != 0 ? size : 1) - 1;
      open_idx[depth] = static_cast<uint32_t>(k.nblocks);
      ++depth;
    }
    ++k.nblocks;
  }
}

// Every slot of every heap run whose header checks out and is well formed.
bool Marker::scan_heap() {
  blocks = reserve<Block>(out->heap_bytes / 16 + 16);
  if (blocks == nullptr) return false;
  uintptr_t open_end[64];
  uint32_t open_idx[64];
  for (size_t r = 0; r < nruns; ++r) {
    int depth = 0;
    for_each_touched(runs[r].start, runs[r].limit, [&](uintptr_t from, uintptr_t limit) {
      // volatile: set again after a siglongjmp.
      volatile uintptr_t lo = (from + 15) & ~uintptr_t{15};
      while (lo + kHeaderSize <= limit) {
        if (sigsetjmp(g_fault_jmp, 0) != 0) {
          ++faults;
          lo = (g_fault_addr & ~(kPage - 1)) + kPage;
          continue;
        }
        scan_slots(*this, lo, limit, runs[r].limit, open_end, open_idx, depth);
        break;
      }
    });
  }
  if (nblocks > 0) {
    heap_lo = blocks[0].user;
    for (size_t i = 0; i < nblocks; ++i) heap_hi = std::max<uintptr_t>(heap_hi, blocks[i].end());
  }
  return true;
}

// page_index[p] = the first block whose user pointer is at or past page p's start.
bool Marker::build_page_index() {
  size_t pages = 0;
  for (size_t r = 0; r < nruns; ++r) pages += (runs[r].limit - runs[r].start + kPage - 1) / kPage;
  page_index = reserve<uint32_t>(pages + 2);
  work = reserve<uint32_t>(nblocks + 1);
  if (page_index == nullptr || work == nullptr) return false;
  size_t b = 0;
  for (size_t r = 0; r < nruns; ++r) {
    size_t n = (runs[r].limit - runs[r].start + kPage - 1) / kPage;
    for (size_t p = 0; p < n; ++p) {
      uintptr_t page_start = runs[r].start + p * kPage;
      while (b < nblocks && blocks[b].user < page_start) ++b;
      page_index[runs[r].page_base + p] = static_cast<uint32_t>(b);
    }
  }
  // The entry past the last page of each run is the next run's first, or the end.
  page_index[pages] = static_cast<uint32_t>(nblocks);
  // A page's range ends at the next page's first block; the next page of a run's last
  // page is the next run's first page, which starts later still: still correct bounds.
  return true;
}

void Marker::collect_exclusions() {
  excluded = reserve<Range>(kMaxExcluded);
  if (excluded == nullptr) return;
  static uintptr_t starts[kOsRegionsMax];
  static size_t sizes[kOsRegionsMax];
  size_t n = os_regions(starts, sizes, kOsRegionsMax);
  for (size_t i = 0; i < n; ++i) excluded[nexcluded++] = Range{starts[i], starts[i] + sizes[i]};
  for (uint32_t i = 0; i < plan->n_not_roots; ++i) excluded[nexcluded++] = plan->not_roots[i];
  excluded[nexcluded++] = Range{reinterpret_cast<uintptr_t>(plan->shared),
                                reinterpret_cast<uintptr_t>(plan->shared) + shared_bytes(plan->shared->capacity)};
  // The dead part of each stopped thread's stack, and of the checking thread's.
  auto dead_below = [this](uintptr_t sp) {
    if (sp == 0 || run_of(sp) != nullptr) return;
    for (size_t i = 0; i < nmaps; ++i)
      if (sp >= maps[i].start && sp < maps[i].limit) {
        uintptr_t live_from = sp > maps[i].start + 128 ? sp - 128 : maps[i].start;
        excluded[nexcluded++] = Range{maps[i].start, live_from};
        return;
      }
  };
  for (uint32_t i = 0; i < plan->nslots; ++i)
    if (plan->slots[i].tid > 0 && plan->slots[i].sp != 0) dead_below(plan->slots[i].sp);
  dead_below(plan->checker_sp);
  // Every thread's ThreadState (alloc/thread_state.h) sits at the same offset from its
  // thread pointer (initial-exec TLS); its cache bins point at freed blocks' headers,
  // which are one past the end of the blocks before them: not roots. This child is a
  // copy of the checking thread, so its own thread pointer is the checker's.
  intptr_t offset = reinterpret_cast<intptr_t>(&t_state) - static_cast<intptr_t>(plan->checker_tp);
  auto state_at = [this, offset](uintptr_t tp) {
    if (tp == 0) return;
    uintptr_t a = tp + static_cast<uintptr_t>(offset);
    excluded[nexcluded++] = Range{a, a + sizeof(ThreadState)};
  };
  for (uint32_t i = 0; i < plan->nslots; ++i)
    if (plan->slots[i].tid > 0) state_at(plan->slots[i].tp);
  state_at(plan->checker_tp);
  std::sort(excluded, excluded + nexcluded, [](const Range& a, const Range& b) { return a.lo < b.lo; });
}

void Marker::mark_roots() {
  auto mark_range = [this](uintptr_t lo, uintptr_t hi) {
    if (lo >= hi) return;
    for_each_touched(lo, hi, [this](uintptr_t a, uintptr_t b) {
      root_bytes += b - a;
      read_words(a, b, [this](uintptr_t v) { mark_value(v); });
    });
    drain_marks();
  };
  for (size_t i = 0; i < nmaps; ++i) {
    const Mapping& m = maps[i];
    if (!m.readable || !m.writable || m.shared || m.device) continue;
    // The mapping less the heap runs and the exclusions, in address order.
    uintptr_t at = m.start;
    while (at < m.limit) {
      uintptr_t next = m.limit;
      const Run* r = run_of(at);
      if (r != nullptr) {
        at = r->limit;
        continue;
      }
      // The next heap run after `at`, if it starts inside this mapping.
      for (size_t k = 0; k < nruns; ++k)
        if (runs[k].start > at) { next = std::min(next, runs[k].start); break; }
      // Cut out the exclusions within [at, next).
      uintptr_t cur = at;
      for (size_t e = 0; e < nexcluded && cur < next; ++e) {
        const Range& x = excluded[e];
        if (x.hi <= cur || x.lo >= next) continue;
        if (x.lo > cur) mark_range(cur, x.lo);
        cur = std::max(cur, x.hi);
      }
      if (cur < next) mark_range(cur, next);
      at = next;
    }
  }
  for (uint32_t i = 0; i < plan->nslots; ++i) {
    const ThreadSlot& s = plan->slots[i];
    if (s.tid <= 0 || s.sp == 0) continue;
    for (int w = 0; w < kRegWords; ++w) mark_value(s.regs[w]);
    drain_marks();
  }
}

// valgrind's cliques: each unmarked block not yet claimed leads a clique of everything
// it reaches; a leader reached from a later clique is demoted to indirect.
void Marker::classify_lost() {
  for (size_t i = 0; i < nblocks; ++i) {
    Block& l = blocks[i];
    if ((l.bits & (kMarked | kClaimed)) != 0) continue;
    l.bits |= kClaimed | kLeader;
    nwork = 0;
    work[nwork++] = static_cast<uint32_t>(i);
    while (nwork > 0) {
      const Block& b = blocks[work[--nwork]];
      auto visit = [this, i](uintptr_t v) {
        blocks_holding(v, [this, i](uint32_t j) {
          Block& t = blocks[j];
          if (j == i || (t.bits & kMarked) != 0) return;
          if ((t.bits & kClaimed) == 0) {
            t.bits |= kClaimed;
            work[nwork++] = j;
          } else if ((t.bits & kLeader) != 0) {
            t.bits &= ~kLeader;
          }
        });
      };
      for_each_touched(b.user, b.user + b.size(), [this, &visit](uintptr_t lo, uintptr_t hi) {
        read_words(lo, hi, visit);
      });
    }
  }
}

void Marker::write_results() {
  uint32_t cap = out->capacity;
  for (size_t i = 0; i < nblocks; ++i) {
    const Block& b = blocks[i];
    uint64_t size = b.bits & kSizeMask;
    out->blocks++;
    out->bytes += size;
    bool lost = (b.bits & kMarked) == 0;
    if (lost) {
      out->lost_blocks++;
      out->lost_bytes += size;
    }
    if (b.record == 0) continue;
    out->sampled_found++;
    if (b.record > cap) continue;
    const BlockHeader* h = header_of(reinterpret_cast<void*>(b.user));
    State s = !lost ? kReachable : (b.bits & kLeader) != 0 ? kDirect : kIndirect;
    out->state[b.record - 1] = static_cast<uint16_t>(h->sampled_generation() << 8 | s);
  }
  out->faults = faults;
  out->root_bytes = root_bytes;
}

void count_live(void* ctx, const prof::LiveBlock&) { ++*static_cast<uint64_t*>(ctx); }

[[noreturn]] void finish(Shared* out, int32_t status, uint64_t start_ns) {
  out->status = status;
  out->child_ns = precise_now_ns() - start_ns;
  struct timespec cpu;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0) out->cpu_ns = timespec_ns(cpu);
  out->done.store(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&out->done), FUTEX_WAKE, 1, nullptr, nullptr, 0);
  syscall(SYS_exit_group, 0);
  __builtin_unreachable();
}

}  // namespace

[[noreturn]] void child_main(const Plan& plan) {
  uint64_t start = precise_now_ns();
  Shared* out = plan.shared;
  // No signal of the program's reaches this process; faults in reads are ours to skip.
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGSEGV);
  sigdelset(&all, SIGBUS);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof(uint64_t));
  struct sigaction sa;
  __builtin_memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  int fd = static_cast<int>(syscall(SYS_open, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
  if (fd >= 0) {
    syscall(SYS_write, fd, "1000", 4);
    syscall(SYS_close, fd);
  }
  syscall(SYS_prctl, 1 /* PR_SET_PDEATHSIG */, SIGKILL, 0, 0, 0);

  Marker k;
  k.plan = &plan;
  k.out = out;
  k.pagemap_fd = static_cast<int>(syscall(SYS_open, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!k.read_maps()) finish(out, kChildNoMaps, start);
  k.find_heap_runs();
  out->maps_ns = precise_now_ns() - start;
  if (k.runs == nullptr || !k.scan_heap() || !k.build_page_index()) finish(out, kChildNoMemory, start);
  // The scan must have found every live sampled block. A thread stopped inside malloc
  // may be between publishing a record and writing its block's header (realloc: two),
  // and a thread that did not answer keeps running; the checking thread is in none.
  uint64_t live = 0;
  live::walk_registry_held(UINT64_MAX, count_live, &live);
  uint64_t found = 0;
  for (size_t i = 0; i < k.nblocks; ++i) found += k.blocks[i].record != 0;
  out->sampled_live = live;
  out->sampled_missing = live > found ? live - found : 0;
  uint64_t slack = 2 * uint64_t{plan.nslots};
  if (out->sampled_missing > slack) finish(out, kChildMissing, start);
  out->scan_ns = precise_now_ns() - start;
  k.collect_exclusions();
  if (k.excluded == nullptr) finish(out, kChildNoMemory, start);
  k.mark_roots();
  k.classify_lost();
  out->mark_ns = precise_now_ns() - start;
  k.write_results();
  finish(out, kChildOk, start);
}

}  // namespace reach

void reach_child(const reach::Plan& plan) { reach::child_main(plan); }

}  // namespace leakalloc
