// The tool's side of the remote-dump protocol (profile/remote.h), shared by
// `leakalloc dump` and `leakalloc serve`.
//
// Contract: request_remote_dump() finds the control block of the target, writes one
// request through /proc/PID/mem and polls (every 20 ms, nothing else) until the target
// has answered or the timeout passed; it never stops, signals or ptrace-attaches the
// target, so the target pays for one ordinary dump and nothing more. Every failure
// throws RemoteError, whose kind says whose fault it is (serve maps it to an HTTP
// status). Thread-safe: libdwfl's module lookup, the one step with global state, runs
// under a lock; callers that must not ask one target twice at once serialise
// themselves (serve does, per pid).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/profile_data.h"

namespace leakalloc_tool {

enum class RemoteFailure {
  kNoProcess,     // no such pid, or it exited before it answered
  kNotLeakalloc,  // no module of it defines leakalloc_remote_control, or another version
  kDenied,        // no debugger's permission over it
  kTimeout,       // it has not answered in time (the request stays pending)
  kFailed,        // it answered, but could not write its files; or an I/O error here
};

struct RemoteError : ToolError {
  RemoteError(RemoteFailure k, const std::string& what) : ToolError(what), kind(k) {}
  RemoteFailure kind;
};

// A file the target named in its answer, opened here without trusting the name: the
// target wrote the name into its own memory and may have made it point anywhere (a
// symlink to /etc/shadow, a path to a file of root's), while this tool may run as root
// or with CAP_SYS_PTRACE. Where this tool's user differs from the target's, the name is
// walked one component at a time from /proc/PID/root (absolute) or /proc/PID/cwd
// (relative) with O_NOFOLLOW, ".." refused, and the file must be a regular file owned by
// the target's user (its fsuid). Readers then use read_path(), which reopens the very
// file that was checked, and the directory's fd serves the symbolized copy and serve's
// removal, so that swapping a component for a symlink afterwards changes nothing.
struct TargetFile {
  std::string path;  // as this tool shows it
  std::string base;  // its name in its directory
  int fd = -1;       // open for reading
  int dir_fd = -1;   // its directory (O_PATH)
  TargetFile() = default;
  TargetFile(const TargetFile&) = delete;
  TargetFile& operator=(const TargetFile&) = delete;
  ~TargetFile();
  std::string read_path() const { return "/proc/self/fd/" + std::to_string(fd); }
  std::string dir_path() const { return "/proc/self/fd/" + std::to_string(dir_fd); }
};

struct RemoteAnswer {
  std::vector<std::string> paths;  // the files written, as this tool shows them
  std::vector<std::shared_ptr<TargetFile>> files;  // the same, opened (TargetFile)
  std::string root;                // "" or /proc/PID/root: where the target's "/" is from here
  uint32_t request = 0;            // the request number this tool wrote
  uint32_t served = 0;             // the number the answer carried (> request: a later
                                   // request's dump answered this one as well)
  int32_t status = 0;              // 0, or the errno of the first file that failed
};

// Asks `pid` for one dump of blocks at least `age_ms` old (kRemoteAgeDefault: the
// target's age setting) in `formats` (kRemoteFormat* bits).
RemoteAnswer request_remote_dump(pid_t pid, uint64_t age_ms, uint32_t formats, uint64_t timeout_ms);

// The address of leakalloc_remote_control in `pid`; throws RemoteError.
uint64_t find_control_block(pid_t pid);

// "/proc/PID/what".
std::string proc_path(pid_t pid, const std::string& what);

}  // namespace leakalloc_tool
