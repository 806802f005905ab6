// One snapshot per dump: the profiler's state copied once, read by every writer.
//
// Contract. take() walks the live set once and copies every live sampled block (all
// ages: the age threshold is a filter the readers apply, not a property of the copy),
// the per-stack cumulative counters, the threads' ids and names, the process counters
// and the text of /proc/self/maps into the caller's ScratchArena. The heap, heap_v2 and
// pb writers, the summary line, leak totals and leak_error then read only the snapshot,
// so the files of one dump agree with each other and with the summary: before, each of
// them walked the live set again while the program went on allocating.
//
// Stack frames are not copied: a stored stack never changes (profile/stack_table.h), so
// readers take them from the table by id. A stack interned after the snapshot was
// taken has no block in it and is left out (ids above `nstacks`).
//
// Runs on the dump thread, the caller of prof.dump, the exit hook, or alone in the
// fork child of a reachability check. Needs a ReentrancyGuard on the calling thread
// (the /proc reads and thread-name refresh may allocate in libc). Takes the thread
// registry lock for a moment (rank 2, through the live walk); allocates only from the
// arena. Blocks allocated or freed during the walk may or may not be in it; a block
// live for the whole walk is in it exactly once (prof::live_walk).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "profile/profiler.h"

namespace leakalloc {
namespace snap {

// What the reachability check (when one ran with this snapshot) found for a block.
enum Reach : uint8_t {
  kReachUnknown = 0,  // no check ran
  kReachable = 1,     // reachable from a root
  kLostDirect = 2,    // lost, and no other lost block points to it
  kLostIndirect = 3,  // lost, but reachable from a lost block
};

struct Block {
  uint32_t stack_id;
  uint32_t thread_index;
  uint64_t size;      // requested bytes
  uint64_t birth_ns;  // coarse monotonic clock
  uint32_t record;    // live-record id + 1, as in the block header
  uint8_t generation; // the record's publication, as in the block header (reach::fill)
  uint8_t reach;      // Reach
};

struct StackCounts {
  uint64_t cum_objs;   // sampled allocations ever made from the stack (since reset)
  uint64_t cum_bytes;  // their requested bytes
  bool stored;         // the id was published when the snapshot was taken
  uint32_t depth;      // 0: no frames (cannot be written as a line every reader takes)
  // Freed sampled blocks by lifetime bucket (prof::lifetime_bucket), cumulative; a
  // block freed shortly before the snapshot may still wait in its thread's ring of
  // pending retirements (profile/live_set.h) and be counted in the next one.
  uint64_t freed;      // sum of life[]
  uint32_t life[prof::kLifetimeBuckets];
};

struct Thread {
  bool known;      // index in use and not reused since the walk began
  int32_t tid;
  char name[16];
};

// What a dump is asked for: when, how old a block must be to count as old, which kind.
struct Params {
  uint64_t now_ns;       // coarse_now_ns() when the dump started
  uint64_t age_ns;       // "old" = born at or before now_ns - age_ns (0: every block)
  int lg_sample;         // sample:N in force
  uint64_t period;       // 2^N; 1 means exact (sample:0)
  uint64_t uptime_ns;    // now_ns - process_start_ns()
  uint64_t wall_time_s;  // CLOCK_REALTIME seconds, for metadata
  char kind;             // 'f', 'i', 'u', 's', 'm', 'l'
};

// Params for a dump taken now with the given age threshold (ms) and kind.
Params params_now(uint64_t age_ms, char kind);

struct Snapshot {
  Params p;
  Block* blocks;  // sorted by stack id, then birth
  size_t nblocks;
  StackCounts* stacks;  // indexed by stack id, [0, nstacks]; [0] unused
  uint32_t nstacks;
  Thread* threads;  // indexed by thread index, [0, nthreads)
  uint32_t nthreads;
  prof::Counters counters;
  prof::AllocTotals totals;
  const char* maps;  // the text of /proc/self/maps, verbatim (empty if unreadable)
  size_t maps_len;
  bool reach_checked;  // a reachability check filled Block::reach
  bool lost_only;      // the lost dump: only the blocks the check found lost

  // Blocks born at or before this count as old.
  uint64_t old_cutoff() const {
    if (p.age_ns == 0) return UINT64_MAX;
    return p.now_ns > p.age_ns ? p.now_ns - p.age_ns : 0;
  }
  bool is_old(const Block& b) const { return b.birth_ns <= old_cutoff(); }
  // The blocks of `stack_id`: [*first, *last) of `blocks` (empty if none).
  void stack_range(uint32_t stack_id, size_t* first, size_t* last) const;
};

// Fills `s` from the live state now. 0, or ENOMEM when the arena cannot grow (then `s`
// is empty but valid).
int take(const Params& p, ScratchArena& arena, Snapshot* s);

// Unsampled totals over the blocks a filter keeps (exact integer sums at sample:0).
struct Totals {
  uint64_t blocks;
  uint64_t bytes;
};
// Sums blocks as unsampled estimates at `period` (exact integer sums at sample:0).
struct Tally {
  double objs = 0, bytes = 0;
  uint64_t exact_objs = 0, exact_bytes = 0;
  void add(const Block& b, uint64_t period);
  Totals get(uint64_t period) const;
};
struct Census {
  Totals live;  // every live sampled block
  Totals old;   // those at least age old
};
Census census(const Snapshot& s);
// The old blocks, less those whose record is listed in `skip` (records 0 never match).
Totals old_totals(const Snapshot& s, const uint32_t* skip, size_t nskip);

}  // namespace snap
}  // namespace leakalloc
