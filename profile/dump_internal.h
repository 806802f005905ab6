// What the dump files share among themselves (not for other modules: they use
// profile/dump.h).
//
// The dump lock (rank 1, profile/profiler.h) serialises dumps and guards everything
// declared here but the atomics; the fork handler takes it first, so no fork happens
// mid-dump.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/base.h"
#include "profile/remote.h"

namespace leakalloc {
namespace dump {

extern RawLock g_lock;                // rank 1
extern bool g_stopped;                // the final dump has run: nothing more is written
extern bool g_final;                  // final:true in force (fixed by start())
extern std::atomic<bool> g_started;   // start() has run
// The files the last dump wrote, space-separated (for the summary line and the remote
// control block). Paths can be long and dumps also run on the caller's stack
// (prof.dump, exit), so the buffer is static, guarded by the dump lock.
extern char g_files[kRemoteFilesMax];

// Writes one dump. Caller holds the dump lock and a ReentrancyGuard. `path` = null for
// the automatic names; `age_ms` < 0 for prof.age; `formats` = 0 for opt.format.
// `check`: run a reachability check first and write the lost dump beside the dump
// (reach:true); kind 'l' always checks and writes only the lost dump.
int dump_locked(char kind, const char* path, int64_t age_ms = -1, int64_t formats = 0, bool check = false);
// Takes the guard and the lock, then dump_locked(); a background dump after the final
// one writes nothing.
int dump_now(char kind, const char* path, bool background);

// The triggers' part of the fork child handler (profile/dump_thread.cpp).
void triggers_fork_child();

}  // namespace dump
}  // namespace leakalloc
