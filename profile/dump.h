// Dumps: writers for the heap, heap_v2 and pb formats, and every trigger (exit,
// interval, lg_interval, gdump, signal, control request, `leakalloc dump PID`).
//
// Contract: start() runs once from leakalloc's constructor after the options are
// loaded; it fixes the triggers (with age > 0, final and interval default to on and
// `age` unless the user set them), installs the signal handler and starts the
// background dump thread (signals blocked in it) when a trigger needs one, or later,
// on the first `leakalloc dump PID` request (attend(); profile/remote.h). A fork child
// starts its own at one of its first allocations (attend() again). The final
// dump and leak_error run from the library's destructor. Dumps run on that thread or
// on the caller's (request(), exit) with a ReentrancyGuard held, take the dump lock
// (rank 1) and allocate nothing through the tracked path. A dump that cannot be
// written prints one "leakalloc:" line naming the path and the reason and returns an
// errno value; the program goes on. File names and the trigger rules are described at
// the top of profile/dump.cpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "profile/remote.h"

// A hidden alias of leakalloc_remote_control (profile/dump.cpp).
extern "C" __attribute__((visibility("hidden"))) leakalloc::RemoteControl leakalloc_remote_control_local;

namespace leakalloc {
namespace dump {

void start();
// Writes one dump of every configured format now (kind 'm'). `path` names the file
// for the first format (others get their usual suffix appended to it); null = the
// automatic name. Returns 0 or an errno value.
int request(const char* path);
// The end of the process (ctl/startup.cpp's destructor): the final dump when final:true,
// then leak_error: with old blocks left (less the live records listed in `skip`) it says
// so and _exits 1. No dump is written after this.
void at_exit(const uint32_t* skip, size_t nskip);
// Runs a reachability check now (profile/reach.h) and writes only the lost dump (kind
// 'l'; `path` as for request(), null = automatic, ".lost" before the suffix). Queues
// behind a running dump or check (the dump lock). Returns 0 or an errno value.
int check(const char* path);
// The dump thread's kernel tid (0 before it runs): the check does not stop it.
int thread_tid();
// Blocks and bytes alive at least `age_ms` (unsampled estimates when sampling).
struct LeakTotals {
  uint64_t blocks;
  uint64_t bytes;
};
LeakTotals leak_totals(uint64_t age_ms);
// The lost blocks older than the age of the dump or check that ran the last reachability
// check (unsampled estimates when sampling); zeros before the first.
LeakTotals lost_totals();

// What allocations do for the dump thread: a sampled one, and any thread's first one
// after each tick of the coarse clock (prof::on_tick), call attend() when
// needs_attention(), which costs them three loads and two compares:
// - `leakalloc dump PID` (profile/remote.h): a new request number, passed on to the dump
//   thread (started on the first request);
// - a fork child whose parent runs a dump thread for a configured trigger: the child
//   starts its own here, at one of its first allocations, not in the atfork handler.
//   A child that execs, or calls unshare(CLONE_NEWUSER) (which a multithreaded process
//   may not), before allocating never has one.
extern std::atomic<uint32_t> g_remote_noticed;
extern std::atomic<bool> g_start_deferred;
inline bool remote_requested() {
  return __atomic_load_n(&leakalloc_remote_control_local.request, __ATOMIC_RELAXED) !=
         g_remote_noticed.load(std::memory_order_relaxed);
}
inline bool needs_attention() {
  return remote_requested() || g_start_deferred.load(std::memory_order_relaxed);
}
// Not from inside leakalloc's own allocations (prof::on_tick and sample_slow check).
void attend();

void fork_prepare();
void fork_parent();
void fork_child();
// After fork_child(), in a child that `leakalloc run` does not trace (config/options.h
// run_pid_elsewhere): no final dump, no trigger and no dump thread, no leak_error exit.
// A remote request (`leakalloc dump PID`) is still answered: someone asked for it.
void untrace_child();

}  // namespace dump
}  // namespace leakalloc
