// Reader for gperftools legacy heap text (`heap profile: ... @ heapprofile|heap_v2/P`),
// format detection, and the small parsing helpers the commands share.
//
// Strict in the way `go tool pprof` is strict: one malformed stack line rejects the
// whole file, so that a truncated dump is reported as such instead of as a smaller leak.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/profile_data.h"

namespace leakalloc_tool {

namespace {

constexpr size_t kMaxDumpBytes = size_t{1} << 30;

bool parse_u64_at(const std::string& s, size_t* i, uint64_t* out, int base) {
  size_t j = *i;
  uint64_t v = 0;
  int digits = 0;
  while (j < s.size()) {
    char c = s[j];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else break;
    if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) return false;
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    ++j;
    ++digits;
  }
  if (digits == 0) return false;
  *i = j;
  *out = v;
  return true;
}

bool expect(const std::string& s, size_t* i, const char* lit) {
  size_t n = std::strlen(lit);
  if (s.compare(*i, n, lit) != 0) return false;
  *i += n;
  return true;
}

bool skip_spaces(const std::string& s, size_t* i) {
  while (*i < s.size() && s[*i] == ' ') ++*i;
  return true;
}

// "N: B [N: B]" starting at *i. gperftools pads the numbers to a width ("    10:
// 40000 [    10:    40000]"); leakalloc and jemalloc do not: both are accepted, as Go's
// reader accepts them.
bool parse_counts(const std::string& s, size_t* i, uint64_t v[4]) {
  return skip_spaces(s, i) && parse_u64_at(s, i, &v[0], 10) && expect(s, i, ":") && skip_spaces(s, i) &&
         parse_u64_at(s, i, &v[1], 10) && skip_spaces(s, i) && expect(s, i, "[") && skip_spaces(s, i) &&
         parse_u64_at(s, i, &v[2], 10) && expect(s, i, ":") && skip_spaces(s, i) &&
         parse_u64_at(s, i, &v[3], 10) && skip_spaces(s, i) && expect(s, i, "]");
}

// One /proc/<pid>/maps line: "start-end perms offset dev inode [path]".
bool parse_maps_line(const std::string& line, Mapping* m) {
  size_t i = 0;
  uint64_t start, end, offset, inode;
  if (!parse_u64_at(line, &i, &start, 16) || !expect(line, &i, "-") ||
      !parse_u64_at(line, &i, &end, 16) || !expect(line, &i, " "))
    return false;
  if (line.size() < i + 5) return false;
  std::string perms = line.substr(i, 4);
  i += 4;
  if (!expect(line, &i, " ") || !parse_u64_at(line, &i, &offset, 16) || !expect(line, &i, " "))
    return false;
  size_t dev_end = line.find(' ', i);
  if (dev_end == std::string::npos || line.find(':', i) > dev_end) return false;
  i = dev_end + 1;
  if (!parse_u64_at(line, &i, &inode, 10)) return false;
  while (i < line.size() && line[i] == ' ') ++i;
  if (end <= start) return false;
  m->start = start;
  m->limit = end;
  m->offset = offset;
  m->path = line.substr(i);
  m->executable = perms.size() == 4 && perms[2] == 'x';
  return true;
}

[[noreturn]] void bad_line(const std::string& path, size_t lineno, const std::string& line,
                           const char* what) {
  std::string shown = line.size() > 80 ? line.substr(0, 77) + "..." : line;
  throw ToolError(path + ":" + std::to_string(lineno) + ": " + what + ": \"" + shown + "\"");
}

}  // namespace

bool parse_duration_ms(const std::string& s, uint64_t* ms) {
  size_t i = 0;
  uint64_t v;
  if (!parse_u64_at(s, &i, &v, 10)) return false;
  std::string unit = s.substr(i);
  uint64_t mult;
  if (unit.empty() || unit == "s") mult = 1000;
  else if (unit == "ms") mult = 1;
  else if (unit == "m" || unit == "min") mult = 60 * 1000;
  else if (unit == "h") mult = 3600 * 1000;
  else return false;
  if (v > UINT64_MAX / mult / 2) return false;
  *ms = v * mult;
  return true;
}

Profile parse_heap_text(const std::string& path, const std::string& text) {
  Profile prof;
  prof.path = path;
  prof.format = "gperftools heap (legacy text)";

  size_t pos = 0, lineno = 0;
  auto next_line = [&](std::string* line) {
    if (pos >= text.size()) return false;
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    *line = text.substr(pos, nl - pos);
    if (!line->empty() && line->back() == '\r') line->pop_back();
    pos = nl + 1;
    ++lineno;
    return true;
  };

  std::string line;
  if (!next_line(&line)) throw ToolError(path + ": empty file");
  size_t i = 0;
  uint64_t hdr[4];
  if (!expect(line, &i, "heap profile:") || !parse_counts(line, &i, hdr) || !skip_spaces(line, &i) ||
      !expect(line, &i, "@") || !skip_spaces(line, &i))
    bad_line(path, lineno, line, "not a gperftools heap profile header");
  std::string tag = line.substr(i);
  if (tag == "heapprofile") {
    prof.period = 1;
  } else if (tag.compare(0, 8, "heap_v2/") == 0) {
    size_t j = 8;
    uint64_t period;
    if (!parse_u64_at(tag, &j, &period, 10) || j != tag.size() || period == 0)
      bad_line(path, lineno, line, "bad sampling period in the header (heap_v2/N needs N >= 1)");
    prof.period = period;
    prof.sampled = true;
  } else {
    bad_line(path, lineno, line, "unsupported heap profile type (expected heapprofile or heap_v2/N)");
  }

  bool saw_maps = false;
  uint64_t body_blocks = 0, body_bytes = 0;  // the stack lines' in-use totals
  while (next_line(&line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      size_t b = line.find_first_not_of("# ");
      if (b != std::string::npos) {
        prof.comments.push_back(line.substr(b));
        // leakalloc's writer: "# uptime_ms: N", "# age_threshold_ms: N".
        const std::string& c = prof.comments.back();
        auto number_after = [&](const char* key, double* out) {
          size_t n = std::strlen(key);
          if (c.compare(0, n, key) == 0) {
            char* end = nullptr;
            double v = std::strtod(c.c_str() + n, &end);
            if (end != c.c_str() + n && v >= 0) *out = v;
          }
        };
        number_after("uptime_ms:", &prof.uptime_ms);
        number_after("age_threshold_ms:", &prof.writer_age_ms);
        number_after("age_threshold_ms:", &prof.age_threshold_ms);
      }
      continue;
    }
    if (line == "MAPPED_LIBRARIES:") {
      saw_maps = true;
      break;
    }
    i = 0;
    uint64_t v[4];
    if (!parse_counts(line, &i, v) || !expect(line, &i, " @"))
      bad_line(path, lineno, line, "malformed stack line (truncated dump?)");
    if (v[0] == 0 && v[1] != 0) bad_line(path, lineno, line, "zero blocks with nonzero bytes");
    body_blocks += v[0];
    body_bytes += v[1];
    Sample s;
    while (i < line.size()) {
      if (!expect(line, &i, " ")) bad_line(path, lineno, line, "malformed address list");
      if (i < line.size() && line[i] == ' ') continue;
      uint64_t a;
      if (!expect(line, &i, "0x") || !parse_u64_at(line, &i, &a, 16))
        bad_line(path, lineno, line, "malformed address (truncated dump?)");
      // Return addresses: look up the call instruction, one byte back.
      s.pcs.push_back(a > 0 ? a - 1 : a);
    }
    if (s.pcs.empty()) bad_line(path, lineno, line, "stack line without addresses");
    // docs/FORMATS.md "Unsampling", for the in-use and the alloc pair alike.
    auto unsample = [&](uint64_t objs, uint64_t total, double* count, double* bytes) {
      *count = static_cast<double>(objs);
      *bytes = static_cast<double>(total);
      if (!prof.sampled || *count <= 0 || *bytes <= 0) return;
      double ratio = (*bytes / *count) / static_cast<double>(prof.period);
      double scale = 1.0 / (1.0 - std::exp(-ratio));
      *count *= scale;
      *bytes *= scale;
    };
    unsample(v[0], v[1], &s.count, &s.bytes);
    unsample(v[2], v[3], &s.alloc_count, &s.alloc_bytes);
    // Lines with only alloc history ("0: 0 [500: 87904]") hold nothing live.
    if (v[0] != 0 || v[1] != 0) prof.samples.push_back(std::move(s));
    else if (v[2] != 0 || v[3] != 0) prof.history.push_back(std::move(s));
  }
  // The header's totals are the sums of the stack lines (every writer, gperftools',
  // jemalloc's and ours): a file cut between two lines parses, but does not add up.
  if (body_blocks != hdr[0] || body_bytes != hdr[1])
    throw ToolError(path + ": truncated dump: its header counts " + std::to_string(hdr[0]) + " blocks (" +
                    std::to_string(hdr[1]) + " bytes), its stack lines " + std::to_string(body_blocks) +
                    " blocks (" + std::to_string(body_bytes) + " bytes); was the writer interrupted?");
  if (saw_maps) {
    bool first = true;
    while (next_line(&line)) {
      if (line.empty()) continue;
      Mapping m;
      if (!parse_maps_line(line, &m)) bad_line(path, lineno, line, "malformed MAPPED_LIBRARIES line");
      if (m.path.empty() || m.path[0] != '/') continue;
      // The executable is the first file mapped; the loader maps it before any library.
      if (first) {
        prof.mappings.insert(prof.mappings.begin(), m);
        first = false;
      } else {
        prof.mappings.push_back(m);
      }
    }
  } else {
    prof.comments.push_back("(the dump has no MAPPED_LIBRARIES section: frames stay unsymbolised)");
  }
  return prof;
}

std::string read_dump_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO named by mistake must not hang (it is refused below).
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw ToolError(path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    throw ToolError(path + ": not a regular file");
  }
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      throw ToolError(path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxDumpBytes) {
      close(fd);
      throw ToolError(path + ": larger than 1 GiB; refusing");
    }
  }
  close(fd);
  if (data.empty()) throw ToolError(path + ": empty file (the writer was interrupted?)");
  return data;
}

std::string pprof_message(const std::string& path, const std::string& data) {
  if (data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1f && static_cast<uint8_t>(data[1]) == 0x8b)
    return gunzip(path, data, kMaxDumpBytes);
  return data;
}

Profile read_dump(const std::string& path) {
  std::string data = read_dump_file(path);
  if (data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1f && static_cast<uint8_t>(data[1]) == 0x8b)
    return parse_pprof(path, gunzip(path, data, kMaxDumpBytes));
  if (data.compare(0, 13, "heap profile:") == 0) return parse_heap_text(path, data);
  if (data.compare(0, 8, "heap_v2/") == 0)
    throw ToolError(path + ": a jemalloc heap_v2 dump (per-thread format): leakalloc reads the "
                    ".heap and .pb.gz dumps; read this one with jeprof");
  if (data.compare(0, 1, "\x0a") == 0) return parse_pprof(path, data);  // uncompressed pprof
  throw ToolError(path + ": not a heap dump (neither gzipped pprof protobuf nor gperftools heap text)");
}

}  // namespace leakalloc_tool
