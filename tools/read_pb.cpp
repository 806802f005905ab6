// Reader for gzipped pprof protobuf dumps (perftools.profiles.Profile).
//
// The decoder is a bounds-checked varint / length-delimited walker over the handful of
// fields a heap profile uses; unknown fields are skipped by wire type, as protobuf
// requires, so newer writers stay readable. Everything that the rest of the tool relies
// on (string indices, ids, one value per sample type) is validated here, because a
// gzip of garbage can decode into a syntactically valid message.
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "tools/pb_wire.h"
#include "tools/profile_data.h"

namespace leakalloc_tool {

namespace {

// Appends the values of a repeated integer field, packed (wire 2) or not (wire 0).
void repeated_ints(const Field& f, std::vector<uint64_t>* out, const std::string& path) {
  if (f.wire == 0) {
    out->push_back(f.value);
  } else if (f.wire == 2) {
    Reader r(f.p, f.n, path);
    while (!r.done()) out->push_back(r.varint());
  } else {
    Reader(nullptr, 0, path).fail("repeated integer with wire type " + std::to_string(f.wire));
  }
}

struct RawLabel {
  uint64_t key = 0, str = 0, num_unit = 0;
  int64_t num = 0;
  bool has_num = false, has_str = false;
};
struct RawSample {
  std::vector<uint64_t> location_ids;
  std::vector<uint64_t> values;
  std::vector<RawLabel> labels;
};
struct RawMapping {
  uint64_t id = 0, start = 0, limit = 0, offset = 0, filename = 0, build_id = 0;
};
struct RawLine {
  uint64_t function_id = 0;
  int64_t line = 0;
};
struct RawLocation {
  uint64_t id = 0, mapping_id = 0, address = 0;
  std::vector<RawLine> lines;
};
struct RawFunction {
  uint64_t id = 0, name = 0, system_name = 0, filename = 0;
};
struct RawValueType {
  uint64_t type = 0, unit = 0;
};

RawValueType parse_value_type(const Field& f, const std::string& path) {
  RawValueType vt;
  Reader r(f.p, f.n, path);
  while (!r.done()) {
    Field g = r.field();
    if (g.wire != 0) continue;
    if (g.number == 1) vt.type = g.value;
    if (g.number == 2) vt.unit = g.value;
  }
  return vt;
}

void expect_wire(const Field& f, uint32_t wire, const char* what, const std::string& path) {
  if (f.wire != wire) Reader(nullptr, 0, path).fail(std::string("wrong wire type for ") + what);
}

}  // namespace

std::string gunzip(const std::string& path, const std::string& data, size_t max_out) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw ToolError(path + ": zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[1 << 16];
  int rc;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR) {
      std::string msg = zs.msg ? zs.msg : "corrupt data";
      inflateEnd(&zs);
      throw ToolError(path + ": corrupt gzip stream (" + msg + ")");
    }
    out.append(buf, sizeof buf - zs.avail_out);
    if (out.size() > max_out) {
      inflateEnd(&zs);
      throw ToolError(path + ": gzip stream inflates to more than " + std::to_string(max_out >> 20) +
                      " MiB; refusing");
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;  // input ended before the stream did
  } while (rc != Z_STREAM_END);
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) throw ToolError(path + ": truncated gzip stream (the dump is incomplete)");
  return out;
}

Profile parse_pprof(const std::string& path, const std::string& data) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  Reader top(bytes, data.size(), path);
  std::vector<std::string> strings;
  std::vector<RawValueType> sample_types;
  std::vector<RawSample> samples;
  std::vector<RawMapping> mappings;
  std::vector<RawLocation> locations;
  std::vector<RawFunction> functions;
  std::vector<uint64_t> comments;
  int64_t period = 0;

  while (!top.done()) {
    Field f = top.field();
    switch (f.number) {
      case 1: expect_wire(f, 2, "sample_type", path); sample_types.push_back(parse_value_type(f, path)); break;
      case 2: {
        expect_wire(f, 2, "sample", path);
        RawSample s;
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.number == 1) repeated_ints(g, &s.location_ids, path);
          else if (g.number == 2) repeated_ints(g, &s.values, path);
          else if (g.number == 3) {
            expect_wire(g, 2, "label", path);
            RawLabel l;
            Reader lr(g.p, g.n, path);
            while (!lr.done()) {
              Field h = lr.field();
              if (h.wire != 0) continue;
              if (h.number == 1) l.key = h.value;
              else if (h.number == 2) { l.str = h.value; l.has_str = true; }
              else if (h.number == 3) { l.num = static_cast<int64_t>(h.value); l.has_num = true; }
              else if (h.number == 4) l.num_unit = h.value;
            }
            s.labels.push_back(l);
          }
        }
        samples.push_back(std::move(s));
        break;
      }
      case 3: {
        expect_wire(f, 2, "mapping", path);
        RawMapping m;
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.wire != 0) continue;
          switch (g.number) {
            case 1: m.id = g.value; break;
            case 2: m.start = g.value; break;
            case 3: m.limit = g.value; break;
            case 4: m.offset = g.value; break;
            case 5: m.filename = g.value; break;
            case 6: m.build_id = g.value; break;
          }
        }
        mappings.push_back(m);
        break;
      }
      case 4: {
        expect_wire(f, 2, "location", path);
        RawLocation loc;
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.number == 4) {
            expect_wire(g, 2, "line", path);
            RawLine line;
            Reader lr(g.p, g.n, path);
            while (!lr.done()) {
              Field h = lr.field();
              if (h.wire != 0) continue;
              if (h.number == 1) line.function_id = h.value;
              if (h.number == 2) line.line = static_cast<int64_t>(h.value);
            }
            loc.lines.push_back(line);
          } else if (g.wire == 0) {
            if (g.number == 1) loc.id = g.value;
            if (g.number == 2) loc.mapping_id = g.value;
            if (g.number == 3) loc.address = g.value;
          }
        }
        locations.push_back(std::move(loc));
        break;
      }
      case 5: {
        expect_wire(f, 2, "function", path);
        RawFunction fn;
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.wire != 0) continue;
          if (g.number == 1) fn.id = g.value;
          if (g.number == 2) fn.name = g.value;
          if (g.number == 3) fn.system_name = g.value;
          if (g.number == 4) fn.filename = g.value;
        }
        functions.push_back(fn);
        break;
      }
      case 6: expect_wire(f, 2, "string_table", path); strings.emplace_back(reinterpret_cast<const char*>(f.p), f.n); break;
      case 12: expect_wire(f, 0, "period", path); period = static_cast<int64_t>(f.value); break;
      case 13: repeated_ints(f, &comments, path); break;
      default: break;  // drop_frames, time, period_type, ...: not needed for a report
    }
  }

  if (strings.empty() || !strings[0].empty())
    top.fail("string_table[0] must be the empty string");
  if (sample_types.empty()) top.fail("no sample types");
  auto str = [&](uint64_t i) -> const std::string& {
    if (i >= strings.size()) top.fail("string index " + std::to_string(i) + " out of range");
    return strings[i];
  };

  // The four heap sample types are alloc_objects, alloc_space, inuse_objects,
  // inuse_space; a profile with only some of them still works if in-use ones exist.
  int count_idx = -1, bytes_idx = -1, freed_idx = -1;
  for (size_t i = 0; i < sample_types.size(); ++i) {
    const std::string& t = str(sample_types[i].type);
    if (t == "freed_objects") freed_idx = static_cast<int>(i);
    // Go converts a legacy profile whose alloc and in-use columns agree into just
    // "objects" and "space".
    if (t == "inuse_objects" || (t == "objects" && count_idx < 0)) count_idx = static_cast<int>(i);
    if (t == "inuse_space" || (t == "space" && bytes_idx < 0)) bytes_idx = static_cast<int>(i);
    str(sample_types[i].unit);
  }
  if (count_idx < 0 || bytes_idx < 0) {
    std::string types;
    for (auto& vt : sample_types) types += (types.empty() ? "" : ", ") + str(vt.type);
    throw ToolError(path + ": not a heap profile: it has sample types [" + types +
                    "], not inuse_objects and inuse_space");
  }

  Profile prof;
  prof.path = path;
  prof.format = "pprof protobuf";
  prof.period = period > 0 ? static_cast<uint64_t>(period) : 1;
  prof.sampled = prof.period > 1;
  for (uint64_t c : comments) {
    prof.comments.push_back(str(c));
    // leakalloc's comment: "...: live blocks older than N ms, ..., uptime N ms, kind K".
    const std::string& t = prof.comments.back();
    auto number_after = [&](const char* key, double* out) {
      size_t at = t.find(key);
      if (at == std::string::npos || t.compare(0, 10, "leakalloc ") != 0) return;
      const char* p = t.c_str() + at + std::strlen(key);
      char* end = nullptr;
      double v = std::strtod(p, &end);
      if (end != p && v >= 0) *out = v;
    };
    number_after("uptime ", &prof.uptime_ms);
    number_after("older than ", &prof.writer_age_ms);  // before the pb held every block
    number_after("older than ", &prof.age_threshold_ms);
    if (t.find(": every live block, age threshold ") != std::string::npos) {
      prof.writer_age_ms = 0;
      number_after("age threshold ", &prof.age_threshold_ms);
    }
  }

  std::unordered_map<uint64_t, size_t> mapping_by_id;
  for (size_t i = 0; i < mappings.size(); ++i) {
    const RawMapping& m = mappings[i];
    if (m.id == 0 || !mapping_by_id.emplace(m.id, i).second) top.fail("mapping id zero or repeated");
    Mapping out;
    out.start = m.start;
    out.limit = m.limit;
    out.offset = m.offset;
    out.path = str(m.filename);
    out.build_id = str(m.build_id);
    prof.mappings.push_back(out);
  }
  std::unordered_map<uint64_t, const RawFunction*> function_by_id;
  for (const RawFunction& fn : functions) {
    if (fn.id == 0 || !function_by_id.emplace(fn.id, &fn).second) top.fail("function id zero or repeated");
    str(fn.name);
    str(fn.system_name);
    str(fn.filename);
  }
  std::unordered_map<uint64_t, const RawLocation*> location_by_id;
  for (const RawLocation& loc : locations) {
    if (loc.id == 0 || !location_by_id.emplace(loc.id, &loc).second) top.fail("location id zero or repeated");
    if (loc.mapping_id != 0 && !mapping_by_id.count(loc.mapping_id))
      top.fail("location refers to unknown mapping " + std::to_string(loc.mapping_id));
    if (loc.lines.empty()) continue;
    // pprof stores a location's inline chain with the innermost function first.
    std::vector<EmbeddedFrame> frames;
    for (const RawLine& l : loc.lines) {
      auto it = function_by_id.find(l.function_id);
      if (it == function_by_id.end()) top.fail("line refers to unknown function");
      frames.push_back({str(it->second->name), str(it->second->filename), l.line});
    }
    prof.embedded[loc.address] = std::move(frames);
  }

  bool any_age = false, any_thread = false;
  for (const RawSample& rs : samples) {
    if (rs.values.size() != sample_types.size())
      top.fail("a sample has " + std::to_string(rs.values.size()) + " values for " +
               std::to_string(sample_types.size()) + " sample types");
    auto stack_of = [&](std::vector<uint64_t>* pcs) {
      for (uint64_t id : rs.location_ids) {
        auto it = location_by_id.find(id);
        if (it == location_by_id.end()) top.fail("sample refers to unknown location " + std::to_string(id));
        pcs->push_back(it->second->address);
      }
    };
    // Freed blocks by lifetime bucket (docs/FORMATS.md "Lifetimes"): nothing live.
    if (freed_idx >= 0 && rs.values[freed_idx] != 0) {
      LifetimeSample ls;
      stack_of(&ls.pcs);
      ls.count = static_cast<double>(static_cast<int64_t>(rs.values[freed_idx]));
      for (const RawLabel& l : rs.labels) {
        if (str(l.key) != "lifetime" || l.has_str) continue;
        const std::string& unit = str(l.num_unit);
        double scale = unit == "s" || unit == "seconds" ? 1e3 : unit == "us" ? 1e-3 : unit == "hr" ? 3.6e6 : 1.0;
        ls.lifetime_ms = static_cast<double>(l.num) * scale;
      }
      prof.lifetimes.push_back(std::move(ls));
      continue;
    }
    // Alloc-only samples (cumulative history, nothing live) carry no age: skip them.
    if (rs.values[count_idx] == 0 && rs.values[bytes_idx] == 0) continue;
    Sample s;
    stack_of(&s.pcs);
    s.count = static_cast<double>(static_cast<int64_t>(rs.values[count_idx]));
    s.bytes = static_cast<double>(static_cast<int64_t>(rs.values[bytes_idx]));
    for (const RawLabel& l : rs.labels) {
      const std::string& key = str(l.key);
      // proto3 omits a zero `num`, so a numeric label of 0 arrives with neither value.
      if (key == "age" && !l.has_str) {
        const std::string& unit = str(l.num_unit);
        double scale = unit == "ms" ? 1e-3 : unit == "us" ? 1e-6 : unit == "ns" ? 1e-9
                     : unit == "hr" || unit == "h" ? 3600.0 : 1.0;  // "seconds", "s" or none
        s.has_age = true;
        s.age_s = static_cast<double>(l.num) * scale;
      } else if (key == "thread" && l.has_str) {
        s.thread = str(l.str);
        any_thread = true;
      } else if (key == "reach" && l.has_str) {
        s.reach = str(l.str);
        prof.has_reach = true;
      } else if (key == "thread_id" && !l.has_str) {
        s.thread_id = l.num;
        any_thread = true;
      } else if (l.has_str) {
        str(l.str);
      }
    }
    any_age = any_age || s.has_age;
    prof.samples.push_back(std::move(s));
  }
  // A protobuf dump can carry ages; one with no live sample at all has nothing to say
  // against that (one from `go tool pprof -proto` of a legacy file has samples, no ages).
  prof.has_ages = any_age || prof.samples.empty();
  prof.has_threads = any_thread;
  prof.has_lifetimes = freed_idx >= 0;
  return prof;
}

}  // namespace leakalloc_tool
