// The remote control block: how `leakalloc dump PID` asks a running process for a dump
// that nothing in its configuration would write (no signal:, no interval), without
// stopping it, sending it a signal or injecting code.
//
// The library exports one object, `leakalloc_remote_control`, in its dynamic symbol
// table. The tool finds its address in the target from the target's modules (libdwfl),
// checks the magic, version and size, and talks to it through /proc/PID/mem, which
// needs the same permission as a debugger (the process's user with ptrace allowed, or
// root):
//   1. the tool writes `age_ms` and `formats`, then, in a second write, `request` + 1;
//   2. the process notices the new request number (two words compared) at a thread's
//      first allocation after each tick of the coarse clock (1-4 ms), and at every
//      sampled allocation. A process with a dump thread also notices it within
//      kRemotePollMs.
//      The noticing thread wakes the dump thread (starting it on the first request),
//      and the dump thread writes one dump of kind 'm';
//   3. the thread fills `status` and `files`, then stores the request number it served
//      in `served` (release). The tool polls until `served` reaches its number.
// Two tools at once may be answered by one dump; the later age and formats win. A
// process that never calls malloc again never notices; one with a dump thread answers
// anyway.
//
// This header is the whole protocol. The library and the tool may come from different
// builds: any change of layout or meaning bumps kRemoteVersion.
#pragma once

#include <stdint.h>

namespace leakalloc {

constexpr char kRemoteMagic[16] = {'l', 'e', 'a', 'k', 'a', 'l', 'l', 'o',
                                   'c', '-', 'r', 'e', 'm', 'o', 't', 'e'};
constexpr uint32_t kRemoteVersion = 1;
constexpr uint64_t kRemoteAgeDefault = UINT64_MAX;  // age_ms: the process's prof.age
constexpr uint32_t kRemoteFormatHeap = 1, kRemoteFormatHeapV2 = 2, kRemoteFormatPb = 4;
// In `formats`: run a reachability check and write only the lost dump (kind 'l',
// profile/reach.h). A library older than this bit ignores it and writes an ordinary dump,
// whose file names then have no ".lost": the tool tells the user so. The layout is the
// same, so kRemoteVersion stays.
constexpr uint32_t kRemoteLost = 8;
constexpr int kRemotePollMs = 1000;  // a running dump thread looks at `request` this often
constexpr uint32_t kRemoteFilesMax = 3 * (4096 + 64) + 16;

struct RemoteControl {
  char magic[16];      // kRemoteMagic, not NUL-terminated
  uint32_t version;    // kRemoteVersion
  uint32_t size;       // sizeof(RemoteControl)
  // Written by the tool.
  uint64_t age_ms;     // blocks at least this old; kRemoteAgeDefault: prof.age
  uint32_t formats;    // kRemoteFormat* bits; 0: the process's opt.format
  uint32_t request;    // bumped by the tool after the two fields above
  // Written by the process.
  uint32_t served;     // the last request number answered
  int32_t status;      // 0, or the errno of the first file (or the thread) that failed
  char files[kRemoteFilesMax];  // the files written, space-separated, NUL-terminated;
                                // relative names are relative to the process's cwd
};

}  // namespace leakalloc

extern "C" {
extern leakalloc::RemoteControl leakalloc_remote_control;
}
