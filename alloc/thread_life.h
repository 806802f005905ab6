// What alloc/alloc.cpp asks of the thread's life (alloc/thread_life.cpp); internal to
// alloc/.
#pragma once

#include "alloc/thread_state.h"

namespace leakalloc {

// A thread's start, and again whenever its bins or exit hook may be missing: see
// alloc/thread_life.cpp. `with_cache`: from an allocation (a thread that only frees
// never caches).
void thread_settle(ThreadState& t, bool with_cache);
// Whether the loaded mimalloc's size classes are the thread cache's (checked once).
bool cache_supported();
// Whether the cache's link and mark keys are set, i.e. some thread has started and may
// have cached a block: a freed block's cache mark means something only then.
bool cache_keys_set();

}  // namespace leakalloc
