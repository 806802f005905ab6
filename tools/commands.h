// The subcommands of `leakalloc`. Each takes its own arguments (after the
// subcommand name) and returns the process exit status; usage errors and bad files
// throw ToolError.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/symbolize.h"

namespace leakalloc_tool {

int cmd_run(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_diff(const std::vector<std::string>& args);
int cmd_dump(const std::vector<std::string>& args);

// "heap+pb" etc. -> leakalloc::kRemoteFormat* bits; false on an unknown name.
bool parse_formats(const std::string& value, uint32_t* bits);
// A count of 0 or more (--top of run and dump); false on anything else.
bool parse_count(const std::string& value, size_t* out);

struct ReportOptions {
  uint64_t age_ms = 0;
  bool age_given = false;
  size_t top = 10;
  size_t depth = 16;     // frames printed per stack
  bool histogram = true;
  std::string binary;    // overrides the main executable's path
  // Prefixed to the dump's file names when symbolizing: the files as the dumped process
  // saw them (`leakalloc dump` of a process in a container: /proc/PID/root).
  std::string root;
  // Where to look for an object whose file is missing or another build (tools/symbolize.h):
  // $PPROF_BINARY_PATH, as go tool pprof reads it.
  std::vector<std::string> search = binary_search_path();
};

// Prints the leak report of one dump to `out`; used by `report` and at the end of `run`.
void print_report(const std::string& path, const ReportOptions& opt, FILE* out);

// "1.5 KiB" etc.
std::string human_bytes(double bytes);
// "950ms", "42s", "3m20s", "5h2m", "3d4h"
std::string human_age(double seconds);

}  // namespace leakalloc_tool
