// The in-memory form of one dump, whatever file format it came from.
//
// Contract: the readers (read_pb.cpp, read_heap.cpp) fill a Profile or throw
// ToolError with a message that names the file and what is wrong with it; they never
// crash on hostile input (every length and index is checked before use). Addresses in
// Sample::pcs are *lookup* addresses — a return address minus one, so that symbolising
// lands on the call instruction's line — for every format, so that two dumps of one
// process compare equal stack for stack whichever format each came in.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace leakalloc_tool {

// Every user-facing failure of the tool. main() prints "leakalloc: <what>" and exits 1.
struct ToolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One executable mapping of the dumped process.
struct Mapping {
  uint64_t start = 0;
  uint64_t limit = 0;   // one past the end
  uint64_t offset = 0;  // file offset mapped at `start`
  std::string path;
  std::string build_id;  // lower-case hex (pprof dumps that carry one), else empty
  bool executable = true;
};

struct Sample {
  std::vector<uint64_t> pcs;  // leaf first, lookup addresses (see above)
  double count = 0;           // live blocks (unsampled estimate when sampled)
  double bytes = 0;           // live bytes  (unsampled estimate when sampled)
  double alloc_count = 0;     // blocks ever allocated here (.heap only; unsampled)
  double alloc_bytes = 0;     // bytes ever allocated here (.heap only; unsampled)
  bool has_age = false;
  double age_s = 0;           // seconds the block(s) had been alive at dump time
  std::string thread;         // thread name, when the format carries it
  int64_t thread_id = -1;     // kernel tid, -1 when unknown
  // The reachability check's finding (pb label `reach`, or a `.lost` sibling dump):
  // "direct" and "indirect" lost blocks, "reachable", or empty when no check ran.
  std::string reach;
};

// Freed sampled blocks of one stack whose lifetimes fell in one bucket (pb samples with
// a `lifetime` label; docs/FORMATS.md "Lifetimes"). The bucket is [lifetime_ms,
// 2 * lifetime_ms), or [0, 1 ms) when lifetime_ms is 0.
struct LifetimeSample {
  std::vector<uint64_t> pcs;
  double count = 0;  // freed blocks (unsampled estimate when sampled)
  double lifetime_ms = 0;
};

// Names for one address that a pprof file already carries (a symbolised profile).
struct EmbeddedFrame {
  std::string function;
  std::string file;
  int64_t line = 0;
};

struct Profile {
  std::string path;
  std::string format;        // "pprof protobuf" or "gperftools heap (legacy text)"
  bool has_ages = false;     // true when every sample carries an age
  bool has_threads = false;
  uint64_t period = 1;       // sampling period in bytes; 1 = exact
  bool sampled = false;
  std::vector<Mapping> mappings;  // mappings[0] is the main executable when known
  std::vector<Sample> samples;
  // .heap lines with alloc totals but nothing live: not in any report, but kept when the
  // dump is rewritten (`leakalloc symbolize`).
  std::vector<Sample> history;
  std::vector<LifetimeSample> lifetimes;
  bool has_lifetimes = false;  // the dump carries freed-block lifetimes (even if none)
  bool has_reach = false;      // some sample carries a `reach` label
  // When the dump was taken: milliseconds since the process started (the writer's
  // comment), -1 when the file does not say.
  double uptime_ms = -1;
  // Age threshold the writer filtered the in-use samples with, -1 when unknown (a pb
  // from leakalloc holds every live block: 0).
  double writer_age_ms = -1;
  // The age the process was configured with (its `age` option), -1 when unknown; a pb
  // from leakalloc holds every live block and notes this threshold beside it.
  double age_threshold_ms = -1;
  std::vector<std::string> comments;  // '#' lines of a .heap, comment strings of a pb
  // Symbolised pprof files: lookup address -> frames, innermost first.
  std::map<uint64_t, std::vector<EmbeddedFrame>> embedded;
};

// Reads a dump, detecting the format from its content (not its name).
Profile read_dump(const std::string& path);
// The bytes of a dump file (at most 1 GiB, a regular file, not empty).
std::string read_dump_file(const std::string& path);
// A pprof file's message: `data` inflated when gzipped, else as it is.
std::string pprof_message(const std::string& path, const std::string& data);

// Format-specific readers over the raw bytes of a file; exposed for the tests.
Profile parse_pprof(const std::string& path, const std::string& data);
Profile parse_heap_text(const std::string& path, const std::string& text);

// Inflates a gzip stream; throws ToolError on a corrupt or truncated stream or when the
// output would pass `max_out` bytes (a gzip bomb).
std::string gunzip(const std::string& path, const std::string& data, size_t max_out);

// What the reachability check found of a sample: 1 lost and no other lost block points
// to it ("direct"), 2 lost and reached only from lost blocks ("indirect"), 0 reachable or
// not checked. A sample of a `.lost` dump (`from_lost_dump`) without labels is direct:
// such a dump holds only lost blocks.
inline int lost_kind(const Sample& s, bool from_lost_dump) {
  if (s.reach == "direct") return 1;
  if (s.reach == "indirect") return 2;
  return from_lost_dump && s.reach.empty() ? 1 : 0;
}

// "60s", "500ms", "2m", "1h", "90" (seconds) -> milliseconds; false on junk.
bool parse_duration_ms(const std::string& s, uint64_t* ms);

}  // namespace leakalloc_tool
