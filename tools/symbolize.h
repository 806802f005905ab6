// Turns the addresses of a dump into function, file and line, offline, with elfutils.
//
// Contract: each file-backed mapping of the dump is reported to libdwfl at the load
// bias it had in the dumped process (computed from the mapping's start and file offset
// and the ELF program headers), so nothing about the current process matters. Frames
// come innermost first: an address inside inlined code yields the inlined function,
// then each caller it was inlined into. Without debug info a frame still gets the ELF
// symbol name; without a readable file it gets "path+0xoffset".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tools/profile_data.h"

namespace leakalloc_tool {

struct Frame {
  std::string function;     // demangled; empty when unknown
  std::string system_name;  // as in the object: mangled, clone suffix kept; empty when unknown
  bool inlined = false;     // inlined into the next frame (same address)
  std::string file;      // source file; empty without debug info
  int line = 0;
  std::string module;    // path of the object, or empty when no mapping covers the address
  uint64_t module_offset = 0;
};

// Where separate debug files are looked for by build id and .gnu_debuglink, as gdb's
// debug-file-directory: $LEAKALLOC_DEBUG_DIRS (colon-separated), else /usr/lib/debug.
std::vector<std::string> debug_search_dirs();

// The directories of $PPROF_BINARY_PATH (colon-separated), or $HOME/pprof/binaries when
// it is not set: where go tool pprof looks for binaries, so one setting serves both.
std::vector<std::string> binary_search_path();

class Symbolizer {
 public:
  // `binary_override`: use this file for the main executable (mappings[0]). `root` is
  // prefixed to every other file name (empty: the names as they are). When an object's
  // file is missing there, or is another build than the dump's build id names, it is
  // looked for in each directory D of `search`, as go tool pprof does: D/ID/NAME, any
  // file in D/ID, D/PATH/ID, D/I2/D38.debug (gdb's .build-id layout: ID split after two
  // hex digits), D/NAME, D/PATH (ID the build id, NAME the file's base name, PATH its
  // path). Only a file with that build id is taken; the last two also serve dumps that
  // name none (.heap).
  Symbolizer(const Profile& prof, const std::string& binary_override, const std::string& root = "",
             const std::vector<std::string>& search = {});
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Frames for one lookup address (return address - 1), innermost first; never empty.
  const std::vector<Frame>& frames(uint64_t pc);
  // Objects that could not be opened, for one note in the report.
  const std::vector<std::string>& missing() const { return missing_; }
  // Files whose build ID is not the one the dump names (rebuilt or replaced since).
  const std::vector<std::string>& replaced() const { return replaced_; }
  // Objects found through `search`: "dump path -> file used".
  const std::vector<std::string>& found() const { return found_; }
  // Separate debug files used: "object -> debug file (.build-id|.gnu_debuglink|debuginfod)".
  const std::vector<std::string>& debug_found() const;

  struct Impl;

 private:
  std::vector<Frame> resolve(uint64_t pc);
  std::unique_ptr<Impl> impl_;
  const Profile& prof_;
  std::map<uint64_t, std::vector<Frame>> cache_;
  std::vector<std::string> missing_;
  std::vector<std::string> replaced_;
  std::vector<std::string> found_;
};

std::string demangle(const std::string& name);
std::string simplify_function(const std::string& demangled);

}  // namespace leakalloc_tool
