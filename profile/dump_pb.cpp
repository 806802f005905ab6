// The pprof protobuf writer: a gzipped perftools.profiles.Profile, the only format that
// carries ages and thread names to go tool pprof (as sample labels). See docs/FORMATS.md
// "pprof protobuf" for what Go's reader accepts.
//
// Contents.
// - Five sample types, alloc_objects/count, alloc_space/bytes, inuse_objects/count,
//   inuse_space/bytes, freed_objects/count; inuse_space is the default. Go never
//   rescales protobuf values, so every value is an unsampled estimate (exact at sample:0).
// - In-use values: EVERY live sampled block, young ones included (the age threshold is
//   only noted in the comment: `-tagfocus=age=` and `leakalloc report --age` apply any
//   age later; the .heap formats keep filtering for jeprof), grouped by
//   (stack, object size, thread, whole seconds of age). Each group is one sample with
//   labels age (seconds), bytes (object size), thread (name) and thread_id, so
//   `-tagfocus=age=60s:` and `-tags` work. One size per group makes the unsampling
//   weight the same for all its blocks, so the estimate is n * scale(size).
// - Alloc values: the cumulative per-stack counters (every sampled allocation since
//   start or the last reset, freed or not), one unlabelled sample per stack with zero
//   in-use values. They carry no size or age, so they are unsampled with the stack's
//   mean object size.
// - Freed values: each stack's lifetime histogram (profile/profiler.h kLifetimeBuckets),
//   one sample per non-empty bucket with freed_objects = the freed blocks (unsampled
//   with the stack's mean size) and a numeric label lifetime = the bucket's lower edge
//   in ms (unit "ms"), so `-sample_index=freed_objects -tagfocus=lifetime=:100ms` shows
//   the stacks whose blocks die young. All other values of these samples are 0.
// - Unsymbolised locations (address = return address - 1, so the reader's line lookup
//   lands inside the call) in mappings read from /proc/self/maps, one per executable
//   segment of a file, with the file's GNU build ID; the main executable comes first
//   as mapping 1, which is the one pprof pairs with the binary on its command line.
//
// Streaming. Messages are encoded one at a time into small stack buffers and fed to
// deflate; nothing is held but the grouping and interning tables. Protobuf fields may
// come in any order, so the string table, which grows as thread names and mapping paths
// are met, goes last. zlib gets its memory from the dump's ScratchArena (zfree is a
// no-op: the arena is released as a whole), so compression does not touch malloc either.
//
// Cost. One hash insert per live sampled block, then one sample per group; groups are
// emitted ordered by stack so each stack's locations are encoded once. Scratch memory
// is about 60 bytes per group (the group table is sized for the live-block count up
// front, in lazily committed pages). Measured at sample:0 with 1M live blocks in 1M
// groups over 65536 stacks: about 2 s on a loaded 2-core machine, 65 MiB of arena,
// 4 MB of output.
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "leakalloc/leakalloc.h"
#include "base/base.h"
#include "profile/dump_writers.h"
#include "profile/pb_encode.h"
#include "profile/pprof_fields.h"
#include "profile/profiler.h"
#include "profile/snapshot.h"

namespace leakalloc {
namespace dump {

namespace {

// Field numbers from profile.proto, by name (shared with the tool's reader and writer).
using namespace pprof_fields;

// pprof anchors this as ^(...)$ and hides matching frames and everything leaf-ward of
// them. Our frames are already stripped at capture; this only guards a stack captured
// with a broken strip (e.g. a static link where our text range is the whole binary).
constexpr const char kDropFrames[] =
    "leakalloc::.*|la_.*|_?mi_.*|malloc|calloc|realloc|reallocarray|free|cfree|"
    "posix_memalign|aligned_alloc|memalign|valloc|pvalloc|malloc_usable_size|"
    "operator new.*|operator delete.*|__libc_(malloc|calloc|realloc|free|memalign)";

constexpr uint32_t kMaxFrames = 256;
constexpr size_t kValues = 5;  // alloc_objects, alloc_space, inuse_objects, inuse_space, freed_objects

struct StrKey {
  const char* s;
  uint32_t len;
  uint64_t hash() const {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < len; ++i) h = (h ^ static_cast<uint8_t>(s[i])) * 0x100000001b3ull;
    return mix64(h);
  }
  bool operator==(const StrKey& o) const {
    if (len != o.len) return false;
    for (uint32_t i = 0; i < len; ++i)
      if (s[i] != o.s[i]) return false;
    return true;
  }
};

struct LocKey {
  uintptr_t ret;  // return address as captured
  uint64_t hash() const { return mix64(ret); }
  bool operator==(const LocKey& o) const { return ret == o.ret; }
};

struct GroupKey {
  uint32_t stack_id;
  uint32_t thread_index;
  uint64_t size;
  uint64_t age_s;
  uint64_t reach;   // snap::Reach of the blocks (0: no check ran with this dump)
  uint64_t blocks;  // not part of the key: the count being summed
  uint64_t hash() const {
    return mix64(size ^ mix64((uint64_t{stack_id} << 32 | thread_index) ^ mix64(age_s ^ reach << 60)));
  }
  bool operator==(const GroupKey& o) const {
    return stack_id == o.stack_id && thread_index == o.thread_index && size == o.size && age_s == o.age_s &&
           reach == o.reach;
  }
};

struct Mapping {
  uintptr_t start, limit, offset;
  uint64_t file_str;
  uint64_t build_id_str;
  uint64_t id;
  const char* path;  // into the maps text
  uint32_t plen;
};

// Every file-backed line of /proc/self/maps, for finding a file's ELF header.
struct FileMap {
  uintptr_t start, limit, offset;
  const char* path;
  uint32_t plen;
  bool readable;
};

bool same_path(const char* a, uint32_t alen, const char* b, uint32_t blen) {
  if (alen != blen) return false;
  for (uint32_t i = 0; i < alen; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

void* arena_zalloc(void* opaque, uInt items, uInt size) {
  return static_cast<ScratchArena*>(opaque)->alloc(static_cast<size_t>(items) * size, 16);
}
void arena_zfree(void*, void*) {}

// Protobuf bytes in, gzip out through FdWriter.
class GzSink {
 public:
  GzSink(int fd, ScratchArena& a) : arena_(a), w_(fd, wbuf_, sizeof wbuf_) {}
  ~GzSink() {
    if (live_) deflateEnd(&zs_);
  }

  int init() {
    in_ = static_cast<uint8_t*>(arena_.alloc(kInCap));
    out_ = static_cast<uint8_t*>(arena_.alloc(kOutCap));
    if (in_ == nullptr || out_ == nullptr) return ENOMEM;
    zs_.zalloc = arena_zalloc;
    zs_.zfree = arena_zfree;
    zs_.opaque = &arena_;
    // Level 1: a dump may run in a busy server; the size gain of higher levels on
    // varint-dense data is small. windowBits 15 + 16 asks for a gzip wrapper.
    if (deflateInit2(&zs_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return ENOMEM;
    live_ = true;
    return 0;
  }

  void put(const uint8_t* d, size_t n) {
    while (n > 0 && err_ == 0) {
      if (in_len_ == kInCap) pump(Z_NO_FLUSH);
      size_t take = kInCap - in_len_ < n ? kInCap - in_len_ : n;
      memcpy(in_ + in_len_, d, take);
      in_len_ += take; d += take; n -= take;
    }
  }
  // One top-level field holding a finished sub-message (or string bytes).
  void field(uint32_t f, const void* body, size_t n) {
    uint8_t hdr[2 * pb::kMaxVarint];
    pb::Buf h(hdr, sizeof hdr);
    h.tag(f, pb::kLen);
    h.varint(n);
    put(h.data(), h.size());
    put(static_cast<const uint8_t*>(body), n);
  }
  void field(uint32_t f, const pb::Buf& m) {
    if (m.overflow()) { if (err_ == 0) err_ = EOVERFLOW; return; }
    field(f, m.data(), m.size());
  }
  void scalar(uint32_t f, uint64_t v) {
    uint8_t tmp[2 * pb::kMaxVarint];
    pb::Buf b(tmp, sizeof tmp);
    b.u64(f, v);
    put(b.data(), b.size());
  }

  int finish() {
    if (err_ == 0) pump(Z_FINISH);
    if (live_) { deflateEnd(&zs_); live_ = false; }
    if (err_ == 0 && !w_.flush()) err_ = w_.error() != 0 ? w_.error() : EIO;
    return err_;
  }
  int error() const { return err_; }

 private:
  void pump(int flush) {
    zs_.next_in = in_;
    zs_.avail_in = static_cast<uInt>(in_len_);
    for (;;) {
      zs_.next_out = out_;
      zs_.avail_out = static_cast<uInt>(kOutCap);
      int rc = deflate(&zs_, flush);
      if (rc == Z_STREAM_ERROR) { err_ = EIO; return; }
      size_t produced = kOutCap - zs_.avail_out;
      if (produced != 0) w_.str(reinterpret_cast<const char*>(out_), produced);
      if (w_.failed()) { err_ = w_.error() != 0 ? w_.error() : EIO; return; }
      if (flush == Z_FINISH ? rc == Z_STREAM_END : zs_.avail_out != 0) break;
    }
    in_len_ = 0;
  }

  static constexpr size_t kInCap = 64 * 1024;
  static constexpr size_t kOutCap = 64 * 1024;
  ScratchArena& arena_;
  z_stream zs_{};
  bool live_ = false;
  uint8_t* in_ = nullptr;
  uint8_t* out_ = nullptr;
  size_t in_len_ = 0;
  char wbuf_[16 * 1024];
  FdWriter w_;
  int err_ = 0;
};

class PbWriter {
 public:
  PbWriter(int fd, const snap::Snapshot& s, ScratchArena& a) : s_(s), p_(s.p), arena_(a), sink_(fd, a) {}
  int run();

 private:
  uint64_t str(const char* s, size_t n);
  uint64_t str(const char* s) { return str(s, cstr_len(s)); }
  void value_type(uint32_t field, const char* type, const char* unit);
  int read_mappings();
  uint64_t mapping_for(uintptr_t addr);
  uint64_t location(uintptr_t ret);
  bool thread_label(uint32_t index, uint64_t* name_str, int32_t* tid);
  // The packed Sample.location_id field of one stack, encoded once per stack.
  struct StackField {
    uint8_t bytes[kMaxFrames * pb::kMaxVarint + 2 * pb::kMaxVarint];
    size_t len;
  };
  void encode_stack(uint32_t stack_id, const prof::StackView* sv, StackField* out);
  void emit_group(const StackField& loc, const GroupKey& g);
  void emit_alloc(const StackField& loc, const prof::StackView& sv);
  void emit_freed(const StackField& loc, const prof::StackView& sv, const uint32_t* life);
  void emit_sample(const StackField& loc, const int64_t values[kValues], const GroupKey* g,
                   uint64_t lifetime_ms = UINT64_MAX);
  int emit_groups();
  void emit_comments();
  void on_block(const snap::Block& b);

  const snap::Snapshot& s_;
  const snap::Params& p_;
  ScratchArena& arena_;
  GzSink sink_;
  bool oom_ = false;
  InternTable<StrKey> strings_;
  InternTable<LocKey> locations_;
  InternTable<GroupKey> groups_;
  uint32_t max_group_stack_ = 0;
  ArenaVec<Mapping> mappings_;  // sorted by start
  struct ThreadLabel {
    uint64_t name_str;  // 0: the thread has no name
    int32_t tid;
    bool known;
  };
  ThreadLabel* thread_cache_ = nullptr;
  uint32_t thread_cache_n_ = 0;
  uint64_t k_age_ = 0, k_seconds_ = 0, k_bytes_ = 0, k_thread_ = 0, k_thread_id_ = 0;
  uint64_t k_reach_ = 0, k_reach_value_[4] = {0, 0, 0, 0};
  uint64_t k_lifetime_ = 0, k_ms_ = 0;
};

uint64_t PbWriter::str(const char* s, size_t n) {
  bool added;
  StrKey k{s, static_cast<uint32_t>(n)};
  int64_t i = strings_.intern(arena_, k, &added);
  if (i < 0) { oom_ = true; return 0; }
  if (added) {
    // The key pointed at the caller's bytes: keep a copy for the string table.
    char* c = static_cast<char*>(arena_.alloc(n + 1, 1));
    if (c == nullptr) { oom_ = true; return 0; }
    for (size_t j = 0; j < n; ++j) c[j] = s[j];
    strings_[static_cast<size_t>(i)].s = c;
  }
  return static_cast<uint64_t>(i);
}

void PbWriter::value_type(uint32_t field, const char* type, const char* unit) {
  uint8_t buf[64];
  pb::Buf m(buf, sizeof buf);
  m.u64(kVtType, str(type));
  m.u64(kVtUnit, str(unit));
  sink_.field(field, m);
}

// Parses the snapshot's /proc/self/maps: every executable mapping of a file becomes a
// Mapping.
int PbWriter::read_mappings() {
  char exe[4096];
  ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (exe_len < 0) exe_len = 0;
  exe[exe_len] = '\0';

  // The snapshot's copy of the maps: the same text the heap writers put in their files.
  const char* text = s_.maps;
  size_t len = s_.maps_len;

  size_t exe_first = SIZE_MAX;
  ArenaVec<FileMap> files;
  for (size_t i = 0; i < len;) {
    size_t eol = i;
    while (eol < len && text[eol] != '\n') ++eol;
    MapsLine line = parse_maps_line(text + i, eol - i);
    Mapping m{};
    m.start = line.start;
    m.limit = line.limit;
    m.offset = line.offset;
    bool readable = line.readable, exec = line.exec;
    const char* path = line.path;
    size_t plen = line.path_len;
    // Anonymous and pseudo mappings ([vdso], [stack]) have nothing pprof could read.
    if (plen > 0 && path[0] == '/' &&
        !files.push(arena_, FileMap{m.start, m.limit, m.offset, path, static_cast<uint32_t>(plen), readable}))
      return ENOMEM;
    if (exec && plen > 0 && path[0] == '/' && m.limit > m.start) {
      m.file_str = str(path, plen);
      m.path = path;
      m.plen = static_cast<uint32_t>(plen);
      if (exe_first == SIZE_MAX && static_cast<size_t>(exe_len) == plen) {
        bool same = true;
        for (size_t j = 0; j < plen && same; ++j) same = exe[j] == path[j];
        if (same) exe_first = mappings_.size();
      }
      if (!mappings_.push(arena_, m)) return ENOMEM;
    }
    i = eol + 1;
  }
  int mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
  if (mem_fd >= 0) {
    for (size_t j = 0; j < mappings_.size(); ++j) {
      Mapping& m = mappings_[j];
      for (size_t k = 0; k < files.size(); ++k) {
        const FileMap& f = files[k];
        if (f.offset != 0 || !f.readable || !same_path(f.path, f.plen, m.path, m.plen)) continue;
        char hex[2 * 64 + 1];
        size_t n = read_build_id(mem_fd, f.start, hex);
        if (n != 0) m.build_id_str = str(hex, n);
        break;
      }
    }
    close(mem_fd);
  }

  // pprof pairs the binary named on its command line with the first mapping in the
  // file (Profile.Mapping[0]); it gets id 1 as well, and the others follow in address
  // order (which mapping_for's binary search relies on; ids are only labels).
  size_t first = exe_first != SIZE_MAX ? exe_first : 0;
  uint64_t next = 2;
  for (size_t j = 0; j < mappings_.size(); ++j) mappings_[j].id = j == first ? 1 : next++;
  for (size_t n = 0; n < mappings_.size(); ++n) {
    const Mapping& m = mappings_[n == 0 ? first : (n <= first ? n - 1 : n)];
    uint8_t buf[128];
    pb::Buf b(buf, sizeof buf);
    b.u64(kMapId, m.id);
    b.u64(kMapStart, m.start);
    b.u64(kMapLimit, m.limit);
    b.u64(kMapOffset, m.offset);
    b.u64(kMapFile, m.file_str);
    b.u64(kMapBuildId, m.build_id_str);
    sink_.field(kProfMapping, b);
  }
  return oom_ ? ENOMEM : 0;
}

uint64_t PbWriter::mapping_for(uintptr_t addr) {
  size_t lo = 0, hi = mappings_.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (mappings_[mid].limit <= addr) lo = mid + 1;
    else hi = mid;
  }
  if (lo < mappings_.size() && mappings_[lo].start <= addr) return mappings_[lo].id;
  return 0;  // e.g. JIT code: pprof shows the bare address
}

uint64_t PbWriter::location(uintptr_t ret) {
  bool added;
  int64_t i = locations_.intern(arena_, LocKey{ret}, &added);
  if (i < 0) { oom_ = true; return 0; }
  uint64_t id = static_cast<uint64_t>(i) + 1;
  if (added) {
    uintptr_t addr = ret != 0 ? ret - 1 : 0;
    uint8_t buf[64];
    pb::Buf b(buf, sizeof buf);
    b.u64(kLocId, id);
    b.u64(kLocMapping, mapping_for(addr));
    b.u64(kLocAddress, addr);
    sink_.field(kProfLocation, b);
  }
  return id;
}

bool PbWriter::thread_label(uint32_t index, uint64_t* name_str, int32_t* tid) {
  if (index < thread_cache_n_ && thread_cache_[index].known) {
    *name_str = thread_cache_[index].name_str;
    *tid = thread_cache_[index].tid;
    return true;
  }
  if (index >= s_.nthreads || !s_.threads[index].known) return false;
  const snap::Thread& tv = s_.threads[index];
  *name_str = tv.name[0] != '\0' ? str(tv.name) : 0;
  *tid = tv.tid;
  if (index < thread_cache_n_) thread_cache_[index] = ThreadLabel{*name_str, *tid, true};
  return true;
}

void PbWriter::encode_stack(uint32_t stack_id, const prof::StackView* sv, StackField* out) {
  prof::StackView local;
  if (sv == nullptr) {
    sv = &local;
    if (!prof::stack_get(stack_id, &local)) local.depth = 0;
  }
  uint64_t ids[kMaxFrames];
  uint32_t depth = sv->depth < kMaxFrames ? sv->depth : kMaxFrames;
  for (uint32_t i = 0; i < depth; ++i) ids[i] = location(sv->frames[i]);
  pb::Buf b(out->bytes, sizeof out->bytes);
  b.packed(kSampleLocation, ids, depth);
  out->len = b.size();
}

void PbWriter::emit_sample(const StackField& loc, const int64_t values[kValues], const GroupKey* g,
                           uint64_t lifetime_ms) {
  uint8_t buf[sizeof loc.bytes + 512];
  pb::Buf s(buf, sizeof buf);
  s.raw(loc.bytes, loc.len);
  s.packed(kSampleValue, values, kValues);
  auto num_label = [&](uint64_t key, uint64_t num, uint64_t unit) {
    uint8_t lb[48];
    pb::Buf l(lb, sizeof lb);
    l.u64(kLabelKey, key);
    l.u64(kLabelNum, num);
    l.u64(kLabelNumUnit, unit);
    s.message(kSampleLabel, l);
  };
  if (lifetime_ms != UINT64_MAX) num_label(k_lifetime_, lifetime_ms, k_ms_);
  if (g != nullptr) {
    num_label(k_age_, g->age_s, k_seconds_);
    if (g->reach != 0) {  // reach=reachable|direct|indirect (profile/reach.h)
      uint8_t lb[32];
      pb::Buf l(lb, sizeof lb);
      l.u64(kLabelKey, k_reach_);
      l.u64(kLabelStr, k_reach_value_[g->reach & 3]);
      s.message(kSampleLabel, l);
    }
    num_label(k_bytes_, g->size, k_bytes_);
    uint64_t name_str;
    int32_t tid;
    if (thread_label(g->thread_index, &name_str, &tid)) {
      if (name_str != 0) {
        uint8_t lb[32];
        pb::Buf l(lb, sizeof lb);
        l.u64(kLabelKey, k_thread_);
        l.u64(kLabelStr, name_str);
        s.message(kSampleLabel, l);
      }
      // Unitless and never 0 (pprof drops a unitless 0).
      if (tid > 0) num_label(k_thread_id_, static_cast<uint64_t>(tid), 0);
    }
  }
  sink_.field(kProfSample, s);
}

void PbWriter::emit_group(const StackField& loc, const GroupKey& g) {
  double n = static_cast<double>(g.blocks) * prof::unsample_scale(g.size, p_.period);
  int64_t values[kValues] = {0, 0, static_cast<int64_t>(n + 0.5),
                             static_cast<int64_t>(n * static_cast<double>(g.size) + 0.5), 0};
  emit_sample(loc, values, &g);
}

void PbWriter::emit_alloc(const StackField& loc, const prof::StackView& sv) {
  double mean = static_cast<double>(sv.cum_bytes) / static_cast<double>(sv.cum_objs);
  double scale = prof::unsample_scale(static_cast<uint64_t>(mean + 0.5), p_.period);
  int64_t values[kValues] = {static_cast<int64_t>(static_cast<double>(sv.cum_objs) * scale + 0.5),
                             static_cast<int64_t>(static_cast<double>(sv.cum_bytes) * scale + 0.5), 0, 0, 0};
  emit_sample(loc, values, nullptr);
}

void PbWriter::emit_freed(const StackField& loc, const prof::StackView& sv, const uint32_t* life) {
  double mean = sv.cum_objs != 0 ? static_cast<double>(sv.cum_bytes) / static_cast<double>(sv.cum_objs) : 0;
  double scale = prof::unsample_scale(static_cast<uint64_t>(mean + 0.5), p_.period);
  for (uint32_t b = 0; b < prof::kLifetimeBuckets && !oom_ && sink_.error() == 0; ++b) {
    if (life[b] == 0) continue;
    int64_t values[kValues] = {0, 0, 0, 0, static_cast<int64_t>(static_cast<double>(life[b]) * scale + 0.5)};
    if (values[4] == 0) values[4] = 1;
    emit_sample(loc, values, nullptr, prof::lifetime_bucket_floor_ms(b));
  }
}

// Groups go out ordered by stack (a counting sort on the stack id), so each stack's
// locations are looked up and encoded once however many sizes, threads and ages it has.
int PbWriter::emit_groups() {
  size_t n = groups_.size();
  if (n == 0) return 0;
  uint32_t* next = arena_.alloc_array<uint32_t>(static_cast<size_t>(max_group_stack_) + 2);
  uint32_t* order = arena_.alloc_array<uint32_t>(n);
  StackField* loc = static_cast<StackField*>(arena_.alloc(sizeof(StackField)));
  if (next == nullptr || order == nullptr || loc == nullptr) return ENOMEM;
  for (size_t i = 0; i < n; ++i) next[groups_[i].stack_id + 1]++;
  for (uint32_t id = 1; id <= max_group_stack_ + 1; ++id) next[id] += next[id - 1];
  for (size_t i = 0; i < n; ++i) order[next[groups_[i].stack_id]++] = static_cast<uint32_t>(i);
  uint32_t current = 0;
  for (size_t i = 0; i < n && !oom_ && sink_.error() == 0; ++i) {
    const GroupKey& g = groups_[order[i]];
    if (i == 0 || g.stack_id != current) {
      current = g.stack_id;
      encode_stack(current, nullptr, loc);
    }
    emit_group(*loc, g);
  }
  return oom_ ? ENOMEM : 0;
}

// `go tool pprof -comments` shows these: what the file holds, for whoever finds it later.
void PbWriter::emit_comments() {
  char line[160];
  size_t n = 0;
  auto add = [&](const char* s) {
    while (*s != '\0' && n < sizeof line) line[n++] = *s++;
  };
  auto num = [&](uint64_t v) {
    char tmp[24];
    size_t k = u64_to_dec(v, tmp);
    for (size_t i = 0; i < k && n < sizeof line; ++i) line[n++] = tmp[i];
  };
  add("leakalloc " LEAKALLOC_VERSION ": every live block, age threshold ");
  num(p_.age_ns / 1000000);
  add(" ms, sample:");
  num(static_cast<uint64_t>(p_.lg_sample));
  add(p_.period > 1 ? " (values unsampled)" : " (exact)");
  add(", uptime ");
  num(p_.uptime_ns / 1000000);
  add(" ms, kind ");
  char kind[2] = {p_.kind, '\0'};
  add(kind);
  if (s_.lost_only) add(", lost blocks only (reachability check)");
  sink_.scalar(kProfComment, str(line, n));
}

void PbWriter::on_block(const snap::Block& b) {
  PbWriter* w = this;
  if (w->oom_) return;
  GroupKey k{};
  k.stack_id = b.stack_id;
  k.thread_index = b.thread_index;
  k.size = b.size;
  // The coarse clock can put a block allocated during the walk after now_ns.
  k.age_s = w->p_.now_ns > b.birth_ns ? (w->p_.now_ns - b.birth_ns) / 1000000000ull : 0;
  k.reach = b.reach;
  bool added;
  int64_t i = w->groups_.intern(w->arena_, k, &added);
  if (i < 0) { w->oom_ = true; return; }
  w->groups_[static_cast<size_t>(i)].blocks++;
  if (b.stack_id > w->max_group_stack_) w->max_group_stack_ = b.stack_id;
}

int PbWriter::run() {
  int rc = sink_.init();
  if (rc != 0) return rc;
  str("", 0);  // string_table[0] must be ""

  value_type(kProfSampleType, "alloc_objects", "count");
  value_type(kProfSampleType, "alloc_space", "bytes");
  value_type(kProfSampleType, "inuse_objects", "count");
  value_type(kProfSampleType, "inuse_space", "bytes");
  value_type(kProfSampleType, "freed_objects", "count");
  value_type(kProfPeriodType, "space", "bytes");
  sink_.scalar(kProfPeriod, p_.period);
  sink_.scalar(kProfDefaultSampleType, str("inuse_space"));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  sink_.scalar(kProfTimeNanos, timespec_ns(ts));
  sink_.scalar(kProfDropFrames, str(kDropFrames));
  emit_comments();
  k_age_ = str("age");
  k_seconds_ = str("seconds");
  k_bytes_ = str("bytes");
  k_thread_ = str("thread");
  k_thread_id_ = str("thread_id");
  if (s_.reach_checked) {
    k_reach_ = str("reach");
    k_reach_value_[snap::kReachable] = str("reachable");
    k_reach_value_[snap::kLostDirect] = str("direct");
    k_reach_value_[snap::kLostIndirect] = str("indirect");
  }
  k_lifetime_ = str("lifetime");
  k_ms_ = str("ms");

  rc = read_mappings();
  if (rc != 0) return rc;

  thread_cache_n_ = s_.nthreads;
  thread_cache_ = arena_.alloc_array<ThreadLabel>(thread_cache_n_ + 1);
  if (thread_cache_ == nullptr) return ENOMEM;

  // Every live sampled block could be its own group (sample:0, all sizes distinct).
  if (!groups_.reserve(arena_, s_.nblocks + 1024)) return ENOMEM;
  // Every live block, young ones too; a lost dump keeps its old lost blocks only.
  for (size_t i = 0; i < s_.nblocks && !oom_; ++i)
    if (!s_.lost_only || s_.is_old(s_.blocks[i])) on_block(s_.blocks[i]);
  if (oom_) return ENOMEM;
  rc = emit_groups();
  if (rc != 0) return rc;

  StackField* loc = static_cast<StackField*>(arena_.alloc(sizeof(StackField)));
  if (loc == nullptr) return ENOMEM;
  for (uint32_t id = 1; id <= s_.nstacks && !oom_ && sink_.error() == 0; ++id) {
    prof::StackView sv;
    const snap::StackCounts& sc = s_.stacks[id];
    if (!sc.stored || (sc.cum_objs == 0 && sc.freed == 0) || !prof::stack_get(id, &sv)) continue;
    // Counts as the snapshot saw them (the table's go on moving), frames from the table.
    sv.cum_objs = sc.cum_objs;
    sv.cum_bytes = sc.cum_bytes;
    encode_stack(id, &sv, loc);
    if (sc.cum_objs != 0) emit_alloc(*loc, sv);
    if (sc.freed != 0) emit_freed(*loc, sv, sc.life);
  }
  if (oom_) return ENOMEM;

  for (size_t i = 0; i < strings_.size() && sink_.error() == 0; ++i)
    sink_.field(kProfStringTable, strings_[i].s, strings_[i].len);
  return sink_.finish();
}

}  // namespace

int write_pb(int fd, const snap::Snapshot& s, ScratchArena& arena) {
  PbWriter w(fd, s, arena);
  return w.run();
}

}  // namespace dump
}  // namespace leakalloc
