// The dump writers: each writes one complete file of its format to `fd`.
//
// Contract: called by profile/dump.cpp with the dump lock held and a ReentrancyGuard
// on the calling thread, after it took the dump's snapshot (profile/snapshot.h).
// Writers read the live state only through that snapshot,
// take scratch memory only from `arena` (never the tracked malloc), format through
// FdWriter into stack buffers, and return 0 or an errno value (the caller reports it).
#pragma once

#include <cstdint>

#include "base/base.h"
#include "profile/snapshot.h"

namespace leakalloc {
namespace dump {

// Each writer reads only the snapshot `s` (taken once for the whole dump, so the files
// of one dump agree), the stack table's frames by id, and `arena` for scratch memory.
int write_heap(int fd, const snap::Snapshot& s, ScratchArena& arena);     // gperftools legacy text
int write_heap_v2(int fd, const snap::Snapshot& s, ScratchArena& arena);  // jemalloc heap_v2
int write_pb(int fd, const snap::Snapshot& s, ScratchArena& arena);       // gzipped pprof protobuf

}  // namespace dump
}  // namespace leakalloc
