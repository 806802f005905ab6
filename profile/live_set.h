// Live sampled blocks: one 24-byte record per sampled block, in a chunked slab.
//
// Why this structure. A dump must enumerate every live sampled block with its stack,
// size, birth and thread, while other threads keep allocating and freeing; free must
// find a block's record in O(1) from any thread. The block header stores the record's
// id, so free needs no search at all (a hash table keyed by address would cost a probe
// on every sampled free). Records live in 64 Ki-record chunks mapped on demand, so
// ids are stable and a walk is a linear scan, chunk by chunk.
//
// Concurrency. A record is written only by the thread that owns its slot (the
// allocating thread, having taken the slot from its private cache) and published with
// a release store of an odd sequence number; retiring it stores the next even number. A
// walker reads seq, the fields, then seq again and keeps the record only if both reads
// are the same odd value: a seqlock, so walkers never block allocating threads and
// never see a half-written record. Slots are recycled through per-thread caches of 64
// ids, spilling to and refilling from a global pool of ids in batches under one lock
// (rank 5), so the lock is taken once per 32 sampled frees at most.
//
// Retiring late. The freed block's record is usually a cold cache line (written when the
// block was born, maybe by another thread), and a store that misses holds up every store
// after it: at sample:0 on churn, the retiring store in free() cost 15% of the run. So a
// registered thread's free does not write the record: it puts (generation, id) in a
// ring of 8 pending retirements in its ThreadProfile and prefetches the record's line. A
// later sample of the thread takes the entry 4 frees old, by when that line has
// arrived, and retires and republishes that record in one go (one line); a free into a
// full ring retires the oldest (live_set.cpp, kPendingLag). Walkers copy every registered thread's
// ring (under the registry lock) before reading the records and leave out a record
// whose id and generation are pending. Thread exit retires the ring, and so does a fork
// child for the threads it does not have.
#pragma once

#include <atomic>
#include <cstdint>

#include "profile/profiler.h"
#include "profile/sampler.h"

namespace leakalloc {
namespace live {

void init();
// Takes a slot from the caller's cache and publishes the record; returns
// generation << 32 | id + 1 (for the block header), or 0 if no record memory could be
// mapped. The generation (7 bits) names this publication of the slot.
uint64_t add(ThreadProfile& t, uint32_t stack_id, uint64_t size, uint64_t birth_ns);
// Frees the record `header_value` (id + 1) published as `generation`; any thread,
// including exited ones. A registered thread does not touch the record: it keeps the
// pair among its pending retirements (ThreadProfile::rec_pending), where a later sample
// reuses the record and walkers leave it out. The block's lifetime (now - `birth_ns`)
// goes into its stack's histogram when the record is retired: the pending entry
// carries the lifetime's bucket, and retiring reads the record's stack id from the
// line it writes anyway, which the free prefetched, so a free loads nothing more.
void remove(uint32_t header_value, uint32_t generation, uint64_t birth_ns);
// Requested size of the live record `header_value` (id + 1).
uint64_t size_of(uint32_t header_value);
// Retires a thread's pending records and drains its slot cache (thread exit; in a fork
// child, for the threads that did not come along).
void drain_cache(ThreadProfile& t);
// Calls fn for every live record born at or before born_before_ns; takes the registry
// lock for a moment (to read the threads' pending retirements).
void walk(uint64_t born_before_ns, prof::LiveBlockFn fn, void* ctx);
// The same, for a caller that holds the registry lock.
void walk_registry_held(uint64_t born_before_ns, prof::LiveBlockFn fn, void* ctx);
// One more than the highest record id ever handed out (ids are dense from 0).
uint32_t record_limit();
// The record `header_value` (id + 1) if it is live as publication `generation` (the
// block header's): the reachability check's test that a header naming a record is the
// block that record describes (profile/reach.h). Lock-free.
bool lookup(uint32_t header_value, uint32_t generation, prof::LiveBlock* out);
// Memory of the record chunks mapped so far (records are used densely from the start of
// the slab, so mapped chunks are touched chunks).
uint64_t bytes_in_use();

void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace live
}  // namespace leakalloc
