// What the subcommands of `leakalloc` share: the report printer `run` and `dump` end
// with, and the value parsers. Each subcommand registers itself with the command line
// (tools/options.h); failures throw ToolError.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/symbolize.h"

namespace leakalloc_tool {

// Whether `s` ends with `tail` (file name suffixes: ".pb.gz", ".lost.heap", ...).
inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// "heap+pb" etc. -> leakalloc::kRemoteFormat* bits; false on an unknown name.
bool parse_formats(const std::string& value, uint32_t* bits);

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
  bool json = false;     // --format json
  // The dump's name in the report's title when `path` is not it (`leakalloc dump` reads
  // the file it checked through /proc/self/fd/N, tools/remote.h TargetFile).
  std::string shown;
};

// Prints the leak report of one dump to `out`; used by `report` and at the end of `run`.
void print_report(const std::string& path, const ReportOptions& opt, FILE* out);

// `leakalloc symbolize` of one dump into `out` (tools/symbolize_pb.cpp); also what `run`
// and `dump` write beside their dumps. Throws ToolError on a bad dump or an unwritable
// `out`; objects that could not be read leave their frames as addresses and are listed.
// With `keep_complete`, an existing `out` is left alone when some object cannot be read
// now (the program deleted since the copy was made): `kept` says so.
struct SymbolizeResult {
  std::vector<std::string> missing, replaced, found;
  bool kept = false;
};
SymbolizeResult symbolize_dump(const std::string& in, const std::string& out, const ReportOptions& opt,
                               bool keep_complete = false);
// The default output beside a dump: "x.1234.0.f0.pb.gz" or ".heap" -> "x.1234.0.f0.sym.pb.gz".
// ".sym" never ends one of the library's names (profile/dump.cpp), so the two never collide.
std::string symbolized_name(const std::string& dump);
// The report over several dumps of one process (tools/trend.cpp): each stack's live
// bytes over time, its growth and its verdict. `paths` are dump files or directories.
// `exclude_final`: leave an exit dump (kind f) out of the series when two or more
// others exist: it is taken after the program's own cleanup (static destructors free
// global caches), so it would end every trend with a drop.
void print_trend(const std::vector<std::string>& paths, const ReportOptions& opt, FILE* out,
                 bool exclude_final);
// True when `paths` name more than one dump of one process (a directory, or several
// files): then `report` follows the stacks over time.
bool is_series(const std::vector<std::string>& paths);
// --format json for a single dump (same schema as a series of one).
void print_report_json(const std::string& path, const ReportOptions& opt, FILE* out);

// Report helpers shared by report.cpp and trend.cpp.
class Symbolizer;
void print_stack(FILE* out, Symbolizer& sym, const std::vector<uint64_t>& pcs, size_t depth);
void print_symbol_notes(const Symbolizer& sym, const ReportOptions& opt, FILE* out);
std::string fmt_count(double v);
std::string blocks(double v);

// "1.5 KiB" etc.
std::string human_bytes(double bytes);
// "950ms", "42s", "3m20s", "5h2m", "3d4h"
std::string human_age(double seconds);

}  // namespace leakalloc_tool
