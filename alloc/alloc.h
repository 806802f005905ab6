// The allocation core: every exported entry point in alloc/override.cpp is a thin
// forwarder to one of these, or inlines the malloc/free fast path (alloc/fast_path.h).
//
// Contract:
// - Fast path (unsampled malloc/free): a pop from or push onto the thread's cache bin
//   (or a mimalloc call), header write (birth time, check), one thread-local sampler
//   decrement and two owner-only counters. No lock, no
//   atomic read-modify-write, no call into profile/ except sample_slow when the
//   countdown runs out.
// - May run before constructors, on any thread, after this thread's TLS teardown,
//   and during process exit: nothing here depends on initialisation order.
// - Bad frees never return: they print one "leakalloc: ..." line and abort().
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "profile/entry_frame.h"

namespace leakalloc {

void* la_malloc(size_t size, EntryFrame frame);
void* la_calloc(size_t n, size_t size, EntryFrame frame);
void* la_realloc(void* p, size_t size, const char* op, EntryFrame frame);
void* la_reallocarray(void* p, size_t n, size_t size, EntryFrame frame);
void la_free(void* p, const char* op);
void la_free_sized(void* p, size_t size, const char* op);
void* la_aligned(size_t align, size_t size, EntryFrame frame);  // align: power of two
int la_posix_memalign(void** out, size_t align, size_t size, EntryFrame frame);
void* la_aligned_alloc(size_t align, size_t size, EntryFrame frame);
void* la_memalign(size_t align, size_t size, EntryFrame frame);
void* la_valloc(size_t size, EntryFrame frame);
void* la_pvalloc(size_t size, EntryFrame frame);
size_t la_usable_size(const void* p);

// Requests larger than this fail with ENOMEM before reaching mimalloc: size + header
// can never wrap, and every size fits the 48 bits a live record keeps for it
// (profile/live_set.cpp). 256 TiB is more than x86-64's 47-bit user address space.
constexpr size_t kMaxRequest = (static_cast<size_t>(1) << 48) - (static_cast<size_t>(1) << 20);

// Blocks of this many bytes and more start on a page boundary. mimalloc gives a large
// enough block's memory back to the system when it is freed (2.0.9 unmaps the segment
// of every block over 16 MiB), and a second free of such a pointer must not read a
// header that is no longer mapped: a page-aligned pointer's free asks mimalloc's
// segment map, or probes the header's page (checked_header, alloc/alloc.cpp), so the
// second free is named instead of faulting. 1 MiB leaves room for mimalloc builds with smaller thresholds;
// aligning costs such a block at most a page.
constexpr size_t kPageAlignedFrom = static_cast<size_t>(1) << 20;
constexpr size_t kPageAlign = 4096;

// The thread's life (alloc/thread_state.h). A thread starts at its first slow-path
// allocation, or its first free if it never allocates: the profiler registers it
// (prof::adopt_thread), then the allocator gives its bins their room and registers its
// one exit hook (thread_end, alloc/thread_life.cpp). That hook runs with the thread's C++
// thread_local destructors: it gives the cached blocks back to mimalloc, whose own
// thread-exit hook is a pthread key destructor that runs later (left cached until then,
// they kept the thread's mimalloc segments in use when mimalloc abandoned them, and
// every later thread paid to reclaim them: 3000 threads that each allocate 64 blocks and
// end took 1.1 s of CPU instead of 0.1 s), then ends the profiler's part
// (threads::end_current).
struct ThreadState;
struct ThreadProfile;
// Gives the thread's cached free blocks back to mimalloc (alloc/thread_cache.h) and
// leaves its cache unset: its frees then go to mimalloc.
void thread_cache_release(ThreadState& t);
// The same as the thread ends; the cache stays off for what the thread still allocates.
void thread_cache_end(ThreadState& t);

// In a fork child, for each thread that does not exist there (threads::fork_child):
// moves the blocks it cached into the calling thread's bins, as far as they have room;
// the rest stay lost, as the thread's other memory does (giving them to mimalloc here
// could take a lock that a vanished thread held). Touches nothing but the two threads'
// bins.
void thread_gone_in_child(ThreadProfile& gone);

// Starts the calling thread now rather than at its first slow-path malloc: the library's
// constructor does so for the main thread, once the options are final. The registration
// of its exit hook is an allocation of glibc's (32 bytes, in stats.allocated), which
// would otherwise be made inside the program's first malloc.
void thread_prepare();
// The lowest address of the la_* entry points: where the allocator's own code starts
// when its objects are linked into the executable (the unit tests), for the unwinder to
// tell its frames from the caller's (unwind::init).
uintptr_t entry_points_lo();
// Serves every later block from glibc's malloc, as when mimalloc cannot map memory, and
// says so once (with `why`): the constructor's answer to prof::short_of_address_space().
void serve_from_glibc(const char* why);
// The record id (+1) of a live sampled leakalloc block, or 0 when `user` is null, not a
// valid leakalloc block, or not sampled. Only for pointers known to be live.
uint32_t sampled_record_of(const void* user);

// thread.tcache.* (ctl/ctl.cpp), for the calling thread. A thread follows opt.tcache
// until it sets its own choice.
enum CacheMode : uint8_t { kCacheFollowOption = 0, kCacheForcedOff = 1, kCacheForcedOn = 2 };
// Gives the thread's cached blocks back to mimalloc; the cache stays on.
void thread_cache_flush();
bool thread_cache_enabled();
// Off: flushes and stops caching. On: caches from now on, whatever opt.tcache says;
// false when the loaded mimalloc's size classes rule the cache out.
bool thread_cache_set_enabled(bool on);
// Bytes of blocks in every registered thread's bins (their class sizes), read while the
// owners may be pushing and popping: a snapshot a few blocks stale at worst
// (stats.tcache_bytes).
uint64_t thread_cache_total_bytes();

// The reachability check's child (alloc/reach_mark.cpp): finds every block by its
// header and marks what the roots reach (profile/reach.h). Registered with the profiler
// at start-up (reach::set_child); never returns.
namespace reach {
struct Plan;
}
[[noreturn]] void reach_child(const reach::Plan& plan);

[[noreturn]] void bad_pointer(const char* op, const void* p, const char* why);

}  // namespace leakalloc
