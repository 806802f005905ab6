// `leakalloc symbolize`: a dump rewritten as a pprof profile that carries its own names.
//
// Contract: the output is a gzipped perftools.profiles.Profile whose locations have
// Line records (innermost inlined frame first, as profile.proto orders them) pointing at
// Functions with name (simplified, as `leakalloc report` prints it), system_name (the
// mangled name) and filename, from the same Symbolizer as the report. A mapping whose
// locations got names has has_functions set, and has_filenames, has_line_numbers and
// has_inline_frames when they got DWARF lines too: pprof then takes the names as they are
// and never needs the program's files (go tool pprof 1.19 cannot name any frame of a
// unit with DW_AT_ranges itself; see docs/SYMBOLIZATION.md).
//
// A .pb.gz input is copied field by field: sample types, samples with every value and
// label, period, comments, drop_frames, time, and the string table stay as they were;
// strings and functions are appended, mappings get the flags, and locations that have
// no lines yet get them (locations that have some are kept). A .heap input becomes the
// four sample types Go's legacy reader makes of it (alloc_objects, alloc_space,
// inuse_objects, inuse_space, unsampled the same way), with period space/bytes.
//
// The file is written to OUT.tmp.PID and renamed over OUT, so a reader never sees half
// of it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "profile/pprof_fields.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/pb_wire.h"
#include "tools/symbolize.h"

namespace leakalloc_tool {

using namespace leakalloc::pprof_fields;

namespace {

// The string table and the functions the rewrite adds.
class Names {
 public:
  // `table`: the input's strings, kept at their indices.
  explicit Names(std::vector<std::string> table, uint64_t first_function_id)
      : table_(std::move(table)), next_fn_(first_function_id) {
    if (table_.empty()) table_.push_back("");
    for (size_t i = 0; i < table_.size(); ++i) index_.emplace(table_[i], i);
    first_new_ = table_.size();
  }

  uint64_t str(const std::string& s) {
    auto it = index_.find(s);
    if (it != index_.end()) return it->second;
    table_.push_back(s);
    index_.emplace(s, table_.size() - 1);
    return table_.size() - 1;
  }

  uint64_t function(const Frame& f) {
    std::string name = simplify_function(f.function);
    std::string system = f.system_name.empty() ? f.function : f.system_name;
    auto key = std::make_tuple(name, system, f.file);
    auto it = fn_ids_.find(key);
    if (it != fn_ids_.end()) return it->second;
    Writer w;
    w.u64(kFnId, next_fn_);
    w.u64(kFnName, str(name));
    w.u64(kFnSystemName, str(system));
    w.u64(kFnFilename, str(f.file));
    functions_.push_back(std::move(w.out));
    fn_ids_.emplace(key, next_fn_);
    return next_fn_++;
  }

  // The functions added, then the strings added (the input's are already out).
  void finish(Writer* out) const {
    for (const std::string& fn : functions_) out->bytes(kProfFunction, fn);
    for (size_t i = first_new_; i < table_.size(); ++i) out->bytes(kProfStringTable, table_[i]);
  }
  void all_strings(Writer* out) const {
    for (const std::string& s : table_) out->bytes(kProfStringTable, s);
  }

 private:
  std::vector<std::string> table_;
  std::unordered_map<std::string, uint64_t> index_;
  size_t first_new_ = 0;
  uint64_t next_fn_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> fn_ids_;
  std::vector<std::string> functions_;
};

// What a mapping's locations got, for its flags.
struct Coverage {
  bool functions = false;
  bool lines = false;
};

// Appends the Line records of `pc` to `loc`; false when the symbolizer has no name for
// it (the location then stays an address that pprof may still look up itself).
bool add_lines(Symbolizer& sym, uint64_t pc, Names* names, Writer* loc, Coverage* cov) {
  const std::vector<Frame>& frames = sym.frames(pc);
  if (frames.empty() || frames[0].function.empty()) return false;
  for (const Frame& f : frames) {
    if (f.function.empty()) continue;
    Writer line;
    line.u64(kLineFunction, names->function(f));
    line.u64(kLineLine, f.line > 0 ? static_cast<uint64_t>(f.line) : 0);
    loc->bytes(kLocLine, line.out);
    if (!f.file.empty()) cov->lines = true;
  }
  cov->functions = true;
  return true;
}

void mapping_flags(Writer* m, const Coverage& c) {
  m->flag(kMapHasFunctions, c.functions);
  m->flag(kMapHasFilenames, c.lines);
  m->flag(kMapHasLineNumbers, c.lines);
  m->flag(kMapHasInlineFrames, c.lines);
}

// A .pb.gz input, rewritten field by field (see the contract above).
std::string rewrite_pprof(const std::string& path, const std::string& msg, Symbolizer& sym) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(msg.data());
  std::vector<std::string> strings;
  uint64_t max_fn = 0;
  std::unordered_map<uint64_t, size_t> mapping_index;  // pb id -> index in prof.mappings
  {
    Reader top(bytes, msg.size(), path);
    while (!top.done()) {
      Field f = top.field();
      if (f.number == kProfStringTable && f.wire == 2) strings.emplace_back(reinterpret_cast<const char*>(f.p), f.n);
      if (f.number == kProfFunction && f.wire == 2) {
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.number == kFnId && g.wire == 0) max_fn = std::max(max_fn, g.value);
        }
      }
      if (f.number == kProfMapping && f.wire == 2) {
        Reader r(f.p, f.n, path);
        while (!r.done()) {
          Field g = r.field();
          if (g.number == kMapId && g.wire == 0) mapping_index.emplace(g.value, mapping_index.size());
        }
      }
    }
  }
  Names names(strings, max_fn + 1);

  // Locations first: the mappings' flags depend on what their locations got.
  std::vector<std::string> locations;
  std::map<uint64_t, Coverage> coverage;  // by mapping id
  {
    Reader top(bytes, msg.size(), path);
    while (!top.done()) {
      Field f = top.field();
      if (f.number != kProfLocation || f.wire != 2) continue;
      Writer loc;
      bool has_lines = false;
      uint64_t mapping_id = 0, address = 0;
      Reader r(f.p, f.n, path);
      while (!r.done()) {
        Field g = r.field();
        if (g.number == kLocLine) has_lines = true;
        if (g.number == kLocMapping && g.wire == 0) mapping_id = g.value;
        if (g.number == kLocAddress && g.wire == 0) address = g.value;
        loc.copy(g);
      }
      if (!has_lines) add_lines(sym, address, &names, &loc, &coverage[mapping_id]);
      locations.push_back(std::move(loc.out));
    }
  }

  Writer out;
  size_t next_location = 0;
  Reader top(bytes, msg.size(), path);
  while (!top.done()) {
    Field f = top.field();
    if (f.number == kProfLocation && f.wire == 2) {
      out.bytes(kProfLocation, locations[next_location++]);
    } else if (f.number == kProfMapping && f.wire == 2) {
      Writer m;
      uint64_t id = 0;
      Coverage had;
      Reader r(f.p, f.n, path);
      while (!r.done()) {
        Field g = r.field();
        if (g.number == kMapId && g.wire == 0) id = g.value;
        // The input's own flags stay true: a symbolized input is symbolized still.
        if (g.number >= kMapHasFunctions && g.number <= kMapHasInlineFrames) {
          if (g.value) (g.number == kMapHasFunctions ? had.functions : had.lines) = true;
          continue;
        }
        m.copy(g);
      }
      Coverage c = coverage[id];
      c.functions = c.functions || had.functions;
      c.lines = c.lines || had.lines;
      mapping_flags(&m, c);
      out.bytes(kProfMapping, m.out);
    } else {
      out.copy(f);
    }
  }
  names.finish(&out);
  return out.out;
}

// A .heap input: the profile Go's legacy reader would make of it, with names.
std::string convert_heap(const Profile& prof, Symbolizer& sym) {
  Names names({""}, 1);
  Writer out;
  auto value_type = [&](uint32_t field, const char* type, const char* unit) {
    Writer vt;
    vt.u64(kVtType, names.str(type));
    vt.u64(kVtUnit, names.str(unit));
    out.bytes(field, vt.out);
  };
  value_type(kProfSampleType, "alloc_objects", "count");
  value_type(kProfSampleType, "alloc_space", "bytes");
  value_type(kProfSampleType, "inuse_objects", "count");
  value_type(kProfSampleType, "inuse_space", "bytes");

  // One Mapping per executable segment, the program's first (pprof takes mapping 1 for
  // the main executable); ids are positions in `exec` plus one.
  std::vector<const Mapping*> exec;
  for (const Mapping& m : prof.mappings)
    if (m.executable) exec.push_back(&m);
  auto mapping_of = [&](uint64_t pc) -> uint64_t {
    for (size_t i = 0; i < exec.size(); ++i)
      if (pc >= exec[i]->start && pc < exec[i]->limit) return i + 1;
    return 0;
  };
  std::map<uint64_t, uint64_t> location_ids;
  std::map<uint64_t, Coverage> coverage;
  std::vector<std::string> locations;
  auto location = [&](uint64_t pc) {
    auto it = location_ids.find(pc);
    if (it != location_ids.end()) return it->second;
    uint64_t id = location_ids.size() + 1;
    Writer loc;
    loc.u64(kLocId, id);
    uint64_t m = mapping_of(pc);
    loc.u64(kLocMapping, m);
    loc.u64(kLocAddress, pc);
    add_lines(sym, pc, &names, &loc, &coverage[m]);
    locations.push_back(std::move(loc.out));
    location_ids.emplace(pc, id);
    return id;
  };
  for (const std::vector<Sample>* list : {&prof.samples, &prof.history}) {
    for (const Sample& s : *list) {
      Writer w;
      std::vector<uint64_t> ids;
      for (uint64_t pc : s.pcs) ids.push_back(location(pc));
      Writer packed;
      for (uint64_t id : ids) packed.varint(id);
      w.bytes(kSampleLocation, packed.out);
      Writer values;
      for (double v : {s.alloc_count, s.alloc_bytes, s.count, s.bytes})
        values.varint(static_cast<uint64_t>(std::llround(v)));
      w.bytes(kSampleValue, values.out);
      out.bytes(kProfSample, w.out);
    }
  }
  for (size_t i = 0; i < exec.size(); ++i) {
    const Mapping& m = *exec[i];
    Writer w;
    w.u64(kMapId, i + 1);
    w.u64(kMapStart, m.start);
    w.u64(kMapLimit, m.limit);
    w.u64(kMapOffset, m.offset);
    w.u64(kMapFile, names.str(m.path));
    w.u64(kMapBuildId, names.str(m.build_id));
    mapping_flags(&w, coverage[i + 1]);
    out.bytes(kProfMapping, w.out);
  }
  for (const std::string& loc : locations) out.bytes(kProfLocation, loc);
  Writer period_type;
  period_type.u64(kVtType, names.str("space"));
  period_type.u64(kVtUnit, names.str("bytes"));
  out.bytes(kProfPeriodType, period_type.out);
  out.u64(kProfPeriod, prof.period);
  for (const std::string& c : prof.comments) out.u64(kProfComment, names.str(c));
  out.u64(kProfDefaultSampleType, names.str("inuse_space"));
  names.finish(&out);
  // finish() wrote the functions and the strings added after index 0; "" comes first.
  Writer head;
  head.bytes(kProfStringTable, std::string());
  return head.out + out.out;
}

std::string gzip(const std::string& data) {
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw ToolError("zlib: deflateInit2 failed");
  std::string out(deflateBound(&zs, data.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw ToolError("zlib: deflate failed");
  return out;
}

void write_file(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw ToolError(tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      throw ToolError(tmp + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    throw ToolError(path + ": " + std::strerror(e));
  }
}

}  // namespace

std::string symbolized_name(const std::string& dump) {
  for (const char* ext : {".pb.gz", ".heap", ".pb"})
    if (ends_with(dump, ext) && !ends_with(dump, std::string(".sym") + ext))
      return dump.substr(0, dump.size() - std::strlen(ext)) + ".sym.pb.gz";
  return dump + ".sym.pb.gz";
}

SymbolizeResult symbolize_dump(const std::string& in, const std::string& out, const ReportOptions& opt,
                               bool keep_complete) {
  std::string data = read_dump_file(in);
  Profile prof = read_dump(in);
  Symbolizer sym(prof, opt.binary, opt.root, opt.search);
  std::string msg = prof.format == "pprof protobuf" ? rewrite_pprof(in, pprof_message(in, data), sym)
                                                    : convert_heap(prof, sym);
  SymbolizeResult r;
  r.missing = sym.missing();
  r.replaced = sym.replaced();
  r.found = sym.found();
  struct stat st;
  if (keep_complete && (!r.missing.empty() || !r.replaced.empty()) && stat(out.c_str(), &st) == 0) {
    r.kept = true;  // an earlier copy, made while the files were there, has more names
    return r;
  }
  write_file(out, gzip(msg));
  return r;
}

namespace {

[[noreturn]] void symbolize_usage(const std::string& what) {
  throw ToolError("symbolize: " + what + "\nRun `leakalloc symbolize --help` for its options.");
}

int symbolize_command(const ReportOptions& opt, const std::string& out, std::vector<std::string> files);

}  // namespace

void add_symbolize_command(CLI::App& app, Action* action) {
  struct Args {
    ReportOptions opt;
    std::string out;
    std::vector<std::string> files;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("symbolize", "Write dumps as .pb.gz files that carry their own names");
  sub->footer(
      "Writes each dump as a .pb.gz that carries its own function names, files, lines and\n"
      "inlined frames, for go tool pprof and profiling back ends that never see the program's\n"
      "files; prints the names written. Without -o each goes beside its dump, the dump's name\n"
      "with .sym.pb.gz; an existing copy is kept when some object cannot be read now.\n"
      "Objects missing at their path, or rebuilt since the dump, are looked for by build id\n"
      "and name in the directories of $PPROF_BINARY_PATH (default ~/pprof/binaries), then\n"
      "through $DEBUGINFOD_URLS.");
  add_object_options(sub, &a->opt);
  sub->add_option_function<std::string>(
         "-o,--output",
         [a](const std::string& v) {
           if (v.empty()) throw CLI::ValidationError("-o", "empty file name");
           a->out = v;
         },
         "Write to OUT (one DUMP only); replaces OUT even when objects are missing")
      ->type_name("OUT");
  sub->add_option("DUMP", a->files, "Dump files (.pb.gz or .heap)")->required()->type_name("");
  sub->callback([a, action] { *action = [a] { return symbolize_command(a->opt, a->out, a->files); }; });
}

namespace {

int symbolize_command(const ReportOptions& opt, const std::string& out, std::vector<std::string> files) {
  if (files.empty()) symbolize_usage("no dump given");
  if (!out.empty() && files.size() > 1) symbolize_usage("-o names one file; give one dump with it");
  // A glob such as *.pb.gz takes the copies of an earlier run along: they are named
  // already, and their default name would be x.sym.sym.pb.gz.
  std::vector<std::string> raw;
  for (const std::string& f : files) {
    if (out.empty() && ends_with(f, ".sym.pb.gz"))
      std::fprintf(stderr, "leakalloc: symbolize: %s is a symbolized copy already; skipped (-o OUT rewrites it)\n",
                   f.c_str());
    else
      raw.push_back(f);
  }
  files.swap(raw);
  std::map<std::string, std::string> outputs;  // out -> dump
  for (const std::string& f : files) {
    std::string to = out.empty() ? symbolized_name(f) : out;
    auto ins = outputs.emplace(to, f);
    if (!ins.second)
      symbolize_usage(ins.first->second + " and " + f + " would both be written to " + to +
                      " (the .heap and .pb.gz of one dump: give one of them, or -o)");
  }
  for (const std::string& f : files) {
    std::string to = out.empty() ? symbolized_name(f) : out;
    SymbolizeResult r = symbolize_dump(f, to, opt, out.empty());
    if (r.kept) {
      std::fprintf(stderr, "leakalloc: symbolize %s: %s exists and some of the dump's objects cannot be read "
                           "now; kept it (-o %s replaces it)\n", f.c_str(), to.c_str(), to.c_str());
      continue;
    }
    std::printf("%s\n", to.c_str());
    for (const std::string& m : r.missing)
      std::fprintf(stderr, "leakalloc: symbolize %s: could not open %s; its frames stay addresses\n", f.c_str(), m.c_str());
    for (const std::string& m : r.replaced)
      std::fprintf(stderr, "leakalloc: symbolize %s: %s is not the file the process ran (the build id differs); "
                           "its frames stay addresses\n", f.c_str(), m.c_str());
  }
  return 0;
}

}  // namespace

}  // namespace leakalloc_tool
