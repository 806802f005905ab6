// The deduplicated stack table: every distinct stack stored once, found by hash.
//
// Layout. An open-addressing index of 32-bit ids (capacity a power of two >= 2 x
// max_stacks, linear probing) over an array of entries; each entry is the stack's hash,
// depth and frames, bump-allocated from an arena of 1 MiB chunks mapped as it grows,
// up to room for max_stacks entries at max_depth. The cumulative counters live apart,
// in chunks of 4096 ids, also mapped as ids are handed out. So the cap bounds memory,
// memory (and address space) follows use, and nothing is ever freed or moved: ids and
// frame pointers stay valid for the life of the process, which is what lets readers
// work without locks.
//
// Counts. Each stack has cumulative sampled objects and bytes (relaxed atomic adds on
// every sample), and a histogram of the lifetimes of its freed sampled blocks. Live objects and bytes per stack are not kept here: they are
// exact only as of some instant, and every consumer (dumps, leak.count/leak.bytes) also
// needs them filtered by age, so they are computed from the live set in one walk
// (prof::live_walk) rather than maintained with two more atomic updates on every
// sampled free, which would make a free touch the stack entry's cache line too.
//
// Concurrency. Lookups are lock-free: an index slot, once set, never changes, and an
// entry is fully written before its id is published with a release store. Inserts
// take one of 64 stripe locks chosen by hash (rank 3), so the same stack is never
// inserted twice, then claim an empty index slot with a CAS (inserts of different
// stripes may race for a slot). Past max_stacks, samples go to kOverflowStackId and
// are counted as dropped.
#pragma once

#include <cstddef>
#include <cstdint>

#include "profile/profiler.h"

namespace leakalloc {
namespace stacks {

bool init(uint32_t max_stacks, uint32_t max_depth);
// Returns the stack's id (>= 1); a full table yields kOverflowStackId. 0 only if the
// table could not be mapped at all (the sample is then dropped).
uint32_t intern(const uintptr_t* frames, uint32_t depth);
// Adds one sample of `size` bytes to the stack's cumulative counts (striped by thread).
void count_sample(uint32_t id, uint64_t size, uint32_t thread_index);
// Counts one freed sampled block of stack `id` whose lifetime fell in `bucket`
// (prof::lifetime_bucket); the histogram is cumulative, like the counts.
void count_lifetime(uint32_t id, uint32_t bucket);
// The lifetime histogram of `id`; false if the id is not (yet) published.
bool lifetimes(uint32_t id, uint32_t out[prof::kLifetimeBuckets]);
// Zeroes the cumulative counts and the lifetime histograms (prof.reset).
void reset_counts();
uint32_t count();
uint64_t dropped();
// Memory the table really uses: the entries written, the index pages its stacks have
// touched, the id directory, the count stripes written. The reserved but untouched rest
// is not counted.
uint64_t bytes_in_use();
bool get(uint32_t id, prof::StackView* out);

void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace stacks
}  // namespace leakalloc
