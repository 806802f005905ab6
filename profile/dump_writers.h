// The dump writers: each writes one complete file of its format to `fd`.
//
// Contract: called by profile/dump.cpp with the dump lock held and a ReentrancyGuard
// on the calling thread. Writers read the profiler only through profile/profiler.h,
// take scratch memory only from `arena` (never the tracked malloc), format through
// FdWriter into stack buffers, and return 0 or an errno value (the caller reports it).
#pragma once

#include <cstdint>

#include "alloc/base.h"

namespace leakalloc {
namespace dump {

struct DumpParams {
  uint64_t now_ns;           // coarse_now_ns() when the dump started
  uint64_t age_ns;           // keep blocks with birth_ns <= now_ns - age_ns (0: all)
  int lg_sample;             // sample:N in force
  uint64_t period;           // 2^N; 1 means exact (sample:0)
  uint64_t uptime_ns;        // now_ns - process_start_ns()
  uint64_t wall_time_s;      // CLOCK_REALTIME seconds, for metadata
  char kind;                 // 'f', 'i', 'u', 's', 'm'
};

int write_heap(int fd, const DumpParams& p, ScratchArena& arena);     // gperftools legacy text
int write_heap_v2(int fd, const DumpParams& p, ScratchArena& arena);  // jemalloc heap_v2
int write_pb(int fd, const DumpParams& p, ScratchArena& arena);       // gzipped pprof protobuf

}  // namespace dump
}  // namespace leakalloc
