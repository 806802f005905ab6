// Thread registry: a small index per thread (stored in live records), its kernel tid and
// last known name, and the per-thread counters that stats sum.
//
// Contract: register_current() runs on a thread's first slow-path allocation; it takes
// the registry lock (rank 2 in profile/profiler.h) and never allocates (entries live in
// an os_reserve'd array). It records the thread's stack bounds with system calls only
// (unwind::find_stack_bounds): that allocation may be one glibc makes while it holds a
// lock of its own, the thread's in pthread_getattr_np for one. end_current() folds the
// thread's counters into the exited totals; the allocator's thread-exit hook calls it
// (alloc/thread_life.cpp thread_end). A thread that allocates after that (other threads'
// pthread key destructors, glibc's TLS teardown) keeps its index and is counted directly
// in the exited totals.
//
// Indexes are reused: a server that starts a thread per connection goes through more
// than kMaxThreads threads in its life. An ended thread's entry keeps its name while
// live sampled blocks name it; once the kernel has no such task and no live block names
// it, a full registry hands it to a new thread (threads.cpp reclaim). Only when nothing
// can be reclaimed do new threads share the last entry, "(other threads)", which has
// no thread cache and no per-thread counters.
#pragma once

#include <cstdint>

#include "profile/sampler.h"

namespace leakalloc {
namespace threads {

constexpr uint32_t kMaxThreads = 65536;  // entries at once; kMaxThreads-1 is the shared one

void init();                          // reserve the table; idempotent
// Never reserve the table (a small address space, profiler.cpp): threads run as those
// past the cap do, counted in the exited totals. Before init().
void forgo_table();
uint64_t bytes_in_use();              // registry entries written so far, and stack memos
void register_current(ThreadProfile& t);
// Ends the calling thread's part: folds its counters into the exited totals, retires its
// pending record frees, gives its stack memo back and unlinks its entry, keeping the
// thread's last name for the blocks it made. Nothing after this reads its TLS. Takes the
// registry lock; never allocates. A thread that is not live is left alone.
void end_current(ThreadProfile& t);
// A stack memo for the calling thread, from those ended threads gave back or newly mapped;
// sets t.memo (the exit hook gives it back). Null for a thread that is not live or shares
// the last entry, or when no memory can be mapped. Takes the registry lock.
frame_cache::MemoSet* attach_memo(ThreadProfile& t);
uint32_t memos_mapped();  // stack memos ever mapped (in use or given back)
// Counts activity of a thread in kThreadExited (after its exit hook, or past the cap).
void count_exited(CounterId id, uint64_t delta);
// Sums every thread's counters with the exited totals (exact when quiescent).
void fold_counters(uint64_t out[kCounterCount]);
// The stack of a linked thread, as found at its registration (unwind::find_stack_bounds):
// frames and the static TLS lie below *hi; *lo is 0 when unknown (threads glibc created:
// scan such a stack from the thread's own stack pointer). False for an index that is not
// linked to a live thread. Takes the registry lock.
bool stack_bounds(uint32_t index, uintptr_t* lo, uintptr_t* hi);
// Calls fn(ctx, t) for every registered thread's part, under the registry lock (a linked
// thread's TLS stays valid while it is held: end_current takes it). fn must not allocate.
void for_each_thread(void (*fn)(void* ctx, const ThreadProfile& t), void* ctx);
// True if a registered thread is inside a stack capture (the fork gate waits for it).
bool any_unwinding();
// Room copy_pending_records needs: kRecordPendingSlots for each entry that can be linked.
size_t pending_records_room();
// Copies the pending record retirements of every registered thread
// (ThreadProfile::rec_pending, profile/live_set.cpp) into out, at most `room` of them, and
// returns how many. Takes the registry lock unless the caller holds it.
size_t copy_pending_records(uint64_t* out, size_t room, bool registry_held);
// Sends every thread's next allocation through the sampler's slow path (prof.reset).
void restart_countdowns();

void fork_prepare();
void fork_parent();
// In the child: every thread but the caller is gone. Folds their counters, calls
// gone(t) for each (the allocator's part: alloc/alloc.h thread_gone_in_child), and
// unlinks them.
void fork_child(void (*gone)(ThreadProfile& t));

}  // namespace threads
}  // namespace leakalloc
