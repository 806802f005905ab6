// Allocator statistics: one X-macro list generates the snapshot struct, the `stats.*`
// control leaves (ctl/ctl.cpp) and both printers of leakalloc_stats_print (text, JSON),
// so a field cannot be added to one and forgotten in the others.
//
// Contract: the snapshot changes only when the `epoch` control is written (or on first
// use), as in jemalloc, so that a caller reading several stats.* leaves sees one
// consistent moment. Collecting and printing allocate nothing through the tracked path
// (the printer formats into a stack buffer; libc calls run under a ReentrancyGuard).
// The snapshot lock (ctl lock, taken by nothing else) is held only while copying the
// struct, never while calling into profile/, so it has no place in the rank list of
// profile/profiler.h; a fork handler resets it in the child.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config/options.h"

// Field types are spelled as tokens (`size_t` or `uint64_t`) because ctl/ctl.cpp maps
// them to the mallctl value type by token pasting: on x86-64 both are `unsigned long`,
// so no C++ trait could tell them apart.
//
//   name            type      doc
#define LEAKALLOC_STATS(X)                                                                   \
  X(allocated,      size_t,   "bytes the program requested for its live blocks "             \
                              "(headers and size-class rounding excluded)")                 \
  X(active,         size_t,   "allocated + header_bytes: live blocks with their headers")   \
  X(resident,       size_t,   "mimalloc's resident estimate (its committed bytes on Linux)") \
  X(mapped,         size_t,   "bytes mimalloc has committed + profiler_bytes")              \
  X(live_blocks,    uint64_t, "blocks allocated and not yet freed, sampled or not")         \
  X(header_bytes,   size_t,   "live_blocks * 16: the block headers")                        \
  X(profiler_bytes, size_t,   "memory the profiler's tables use (untouched reservations excluded)")                \
  X(stacks,         uint64_t, "distinct stacks stored")                                     \
  X(stacks_dropped, uint64_t, "samples counted into the overflow stack (max_stacks reached)") \
  X(sampled_live,   uint64_t, "live sampled blocks")                                        \
  X(sampled_total,  uint64_t, "sampled allocations since start or the last prof.reset")     \
  X(total_allocs,   uint64_t, "allocations since start")                                  \
  X(tcache_bytes,   size_t,   "bytes of freed blocks the threads' caches hold for reuse "    \
                              "(class sizes, headers included); counted as freed in "        \
                              "allocated, and as committed in resident")

namespace leakalloc {

struct Stats {
#define LEAKALLOC_STAT_FIELD(name, type, doc) type name;
  LEAKALLOC_STATS(LEAKALLOC_STAT_FIELD)
#undef LEAKALLOC_STAT_FIELD
};

// Fresh numbers, now (no snapshot involved).
void stats_collect(Stats* out);
// Collects a new snapshot and advances the epoch; returns the new epoch.
uint64_t stats_refresh();
// The epoch of the current snapshot (refreshing once if none was taken yet).
uint64_t stats_epoch();
// Copies the current snapshot (refreshing once if none was taken yet).
void stats_snapshot(Stats* out);

// The value of a string-valued option (prefix, format, unwind) as a stable C string,
// the way `opt.<key>` returns it; nullptr for other options.
const char* opt_value_string(OptId id);

// leakalloc_stats_print: refreshes the snapshot, then writes version, options, profiler
// state, stats and leak totals through write_cb (stderr when null). opts containing
// 'J' selects JSON.
void stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts);

}  // namespace leakalloc
