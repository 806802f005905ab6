// The named control tree behind leakalloc_mallctl, and its exports under jemalloc's
// names (mallctl, mallctlnametomib, mallctlbymib, malloc_stats_print) so that code
// written against jemalloc's profiler runs unchanged under leakalloc.
//
// The tree is static data: arrays of named nodes, one handler signature, and every size
// and access check in invoke(), so a leaf handler only reads or changes its value.
// A mib is the list of child indices from the root, as in jemalloc.
//
// Calling convention (jemalloc's): the old value is read when both oldp and oldlenp are
// non-null; a new value is written when newp is non-null, and then newlen must be the
// leaf's size. Results: ENOENT unknown name (or one naming an interior node), EINVAL
// wrong size or value, EPERM writing a read-only leaf or reading a write-only one,
// EFAULT the action failed. Unlike jemalloc, a wrong *oldlenp is found before any
// action: the value is copied truncated, *oldlenp set to the bytes copied, nothing
// changes, and EINVAL is returned.
//
// Nothing here allocates: handlers that call into libc or the dump machinery hold a
// ReentrancyGuard, so anything those allocate is served untracked.
#include "ctl/ctl.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include "alloc/alloc.h"
#include "base/base.h"
#include "config/options.h"
#include "ctl/stats.h"
#include "leakalloc/leakalloc.h"
#include "profile/dump.h"
#include "profile/profiler.h"


namespace leakalloc {
namespace ctl {

const char* type_name(ValueType t) {
  switch (t) {
    case ValueType::kBool: return "bool";
    case ValueType::kSize: return "size_t";
    case ValueType::kSsize: return "ssize_t";
    case ValueType::kU64: return "uint64_t";
    case ValueType::kInt: return "int";
    case ValueType::kString: return "const char *";
    case ValueType::kVoid: return "void";
  }
  return "?";
}

size_t type_size(ValueType t) {
  switch (t) {
    case ValueType::kBool: return sizeof(bool);
    case ValueType::kSize: return sizeof(size_t);
    case ValueType::kSsize: return sizeof(ssize_t);
    case ValueType::kU64: return sizeof(uint64_t);
    case ValueType::kInt: return sizeof(int);
    case ValueType::kString: return sizeof(const char*);
    case ValueType::kVoid: return 0;
  }
  return 0;
}

namespace {

union Value {
  bool b;
  size_t sz;
  ssize_t ss;
  uint64_t u64;
  int i;
  const char* s;
};

struct Node;
// The one leaf signature. old_out is null when the caller does not read, new_in null
// when it does not write; invoke() has already checked access and sizes. Handlers must
// validate new_in before changing anything and return an errno value or 0.
using Handler = int (*)(const Node& node, Value* old_out, const Value* new_in);

struct Node {
  const char* name;
  const Node* children;  // non-null: interior node
  uint32_t nchildren;
  ValueType type;
  Access access;
  Handler handler;
  intptr_t arg;  // option id, stats field offset, ...
  const char* doc;
};

constexpr Node leaf(const char* name, ValueType t, Access a, Handler h, intptr_t arg,
                    const char* doc) {
  return Node{name, nullptr, 0, t, a, h, arg, doc};
}
template <size_t N>
constexpr Node dir(const char* name, const Node (&kids)[N]) {
  return Node{name, kids, static_cast<uint32_t>(N), ValueType::kBool, Access::kRead, nullptr, 0, nullptr};
}

// ---- handlers ------------------------------------------------------------------------

int h_version(const Node&, Value* old_out, const Value*) {
  if (old_out != nullptr) old_out->s = LEAKALLOC_VERSION;
  return 0;
}

int h_true(const Node&, Value* old_out, const Value*) {
  if (old_out != nullptr) old_out->b = true;
  return 0;
}

// jemalloc: writing any value refreshes the snapshot; reading returns the (new) epoch.
int h_epoch(const Node&, Value* old_out, const Value* new_in) {
  if (new_in != nullptr) {
    ReentrancyGuard g;
    stats_refresh();
  }
  if (old_out != nullptr) old_out->u64 = stats_epoch();
  return 0;
}

int h_stat(const Node& n, Value* old_out, const Value*) {
  if (old_out == nullptr) return 0;
  Stats s;
  stats_snapshot(&s);
  // Every field is 8 bytes (size_t or uint64_t), checked where the leaves are made.
  memcpy(&old_out->u64, reinterpret_cast<const char*>(&s) + n.arg, sizeof(uint64_t));
  return 0;
}

int h_opt(const Node& n, Value* old_out, const Value*) {
  if (old_out == nullptr) return 0;
  OptId id = static_cast<OptId>(n.arg);
  int64_t v = opt(id);
  switch (n.type) {
    case ValueType::kBool: old_out->b = v != 0; break;
    case ValueType::kSize: old_out->sz = static_cast<size_t>(v); break;
    case ValueType::kSsize: old_out->ss = static_cast<ssize_t>(v); break;
    case ValueType::kU64: old_out->u64 = static_cast<uint64_t>(v); break;
    case ValueType::kInt: old_out->i = static_cast<int>(v); break;
    case ValueType::kString: old_out->s = opt_value_string(id); break;
    case ValueType::kVoid: break;
  }
  return 0;
}

int h_prof_active(const Node&, Value* old_out, const Value* new_in) {
  if (old_out != nullptr) old_out->b = prof::active();
  if (new_in != nullptr) prof::set_active(new_in->b);
  return 0;
}

// jemalloc: newp points to a const char* file name; no newp (or a null name) means
// the automatic name.
int h_prof_dump(const Node&, Value*, const Value* new_in) {
  const char* path = new_in != nullptr ? new_in->s : nullptr;
  if (path != nullptr && path[0] == '\0') return EINVAL;
  ReentrancyGuard g;
  return dump::request(path) == 0 ? 0 : EFAULT;
}

// jemalloc: newp points to the new lg_prof_sample (size_t); none keeps the current one.
int h_prof_reset(const Node&, Value*, const Value* new_in) {
  size_t lg = new_in != nullptr ? new_in->sz : static_cast<size_t>(prof::lg_sample());
  if (lg > static_cast<size_t>(kOptionTable[kOpt_sample].max)) return EINVAL;
  ReentrancyGuard g;
  prof::reset(static_cast<int>(lg));
  return 0;
}

int h_prof_lg_sample(const Node&, Value* old_out, const Value*) {
  if (old_out != nullptr) old_out->sz = static_cast<size_t>(prof::lg_sample());
  return 0;
}

int h_prof_age(const Node&, Value* old_out, const Value* new_in) {
  if (new_in != nullptr && new_in->u64 > static_cast<uint64_t>(kOptionTable[kOpt_age].max))
    return EINVAL;
  if (old_out != nullptr) old_out->u64 = static_cast<uint64_t>(opt(kOpt_age));
  if (new_in != nullptr) set_opt(kOpt_age, static_cast<int64_t>(new_in->u64));
  return 0;
}

int h_prof_interval(const Node&, Value* old_out, const Value*) {
  if (old_out != nullptr) old_out->u64 = static_cast<uint64_t>(opt(kOpt_interval));
  return 0;
}

// Computed now, not from the snapshot: a health check polls these without an epoch.
int h_leak(const Node& n, Value* old_out, const Value*) {
  if (old_out == nullptr) return 0;
  ReentrancyGuard g;
  dump::LeakTotals t = dump::leak_totals(static_cast<uint64_t>(opt(kOpt_age)));
  old_out->u64 = n.arg == 0 ? t.blocks : t.bytes;
  return 0;
}

// leak.check: (const char*) file name, or none for the automatic name; runs a check and
// writes the lost dump. The errno of the check or of the first file that failed.
int h_leak_check(const Node&, Value*, const Value* new_in) {
  const char* path = new_in != nullptr ? new_in->s : nullptr;
  if (path != nullptr && path[0] == '\0') return EINVAL;
  ReentrancyGuard g;
  return dump::check(path);
}

// leak.lost_count / lost_bytes: from the last check, not computed now (a check stops
// the process's threads; a health check that polls must not).
int h_leak_lost(const Node& n, Value* old_out, const Value*) {
  if (old_out == nullptr) return 0;
  dump::LeakTotals t = dump::lost_totals();
  old_out->u64 = n.arg == 0 ? t.blocks : t.bytes;
  return 0;
}

// jemalloc's thread.tcache.flush: (void), the calling thread's cache.
int h_tcache_flush(const Node&, Value*, const Value*) {
  thread_cache_flush();
  return 0;
}

// jemalloc's thread.tcache.enabled: the calling thread's cache on or off. EFAULT when the
// loaded mimalloc rules the cache out (its size classes are not the expected ones).
int h_tcache_enabled(const Node&, Value* old_out, const Value* new_in) {
  if (old_out != nullptr) old_out->b = thread_cache_enabled();
  if (new_in != nullptr && !thread_cache_set_enabled(new_in->b)) return EFAULT;
  return 0;
}

// ---- the tree ------------------------------------------------------------------------

constexpr Access R = Access::kRead;
constexpr Access RW = Access::kReadWrite;
constexpr Access W = Access::kWrite;

constexpr Node kOpt[] = {
#define LEAKALLOC_OPT_LEAF(key, type, def, min, max, rt, doc) \
  leaf(#key, opt_value_type(type, min), R, h_opt, kOpt_##key, doc),
    LEAKALLOC_OPTIONS(LEAKALLOC_OPT_LEAF)
#undef LEAKALLOC_OPT_LEAF
    // jemalloc's names for the same settings, so jemalloc-aware code finds them.
    leaf("prof", ValueType::kBool, R, h_true, 0, "jemalloc alias: always true"),
    leaf("prof_active", ValueType::kBool, R, h_opt, kOpt_active, "jemalloc alias of opt.active"),
    leaf("lg_prof_sample", ValueType::kSize, R, h_opt, kOpt_sample, "jemalloc alias of opt.sample"),
    leaf("lg_prof_interval", ValueType::kSsize, R, h_opt, kOpt_lg_interval,
         "jemalloc alias of opt.lg_interval"),
    leaf("prof_prefix", ValueType::kString, R, h_opt, kOpt_prefix, "jemalloc alias of opt.prefix"),
    leaf("prof_final", ValueType::kBool, R, h_opt, kOpt_final, "jemalloc alias of opt.final"),
    leaf("prof_gdump", ValueType::kBool, R, h_opt, kOpt_gdump, "jemalloc alias of opt.gdump"),
};

#define LA_CTL_TYPE_size_t ValueType::kSize
#define LA_CTL_TYPE_uint64_t ValueType::kU64
constexpr Node kStats[] = {
#define LEAKALLOC_STAT_LEAF(name, type, doc) \
  leaf(#name, LA_CTL_TYPE_##type, R, h_stat, offsetof(Stats, name), doc),
    LEAKALLOC_STATS(LEAKALLOC_STAT_LEAF)
#undef LEAKALLOC_STAT_LEAF
};
#define LEAKALLOC_STAT_SIZE(name, type, doc) \
  static_assert(sizeof(Stats::name) == sizeof(uint64_t), "h_stat copies 8 bytes");
LEAKALLOC_STATS(LEAKALLOC_STAT_SIZE)
#undef LEAKALLOC_STAT_SIZE

constexpr Node kProf[] = {
    leaf("active", ValueType::kBool, RW, h_prof_active, 0, "sampling on or off"),
    leaf("dump", ValueType::kString, W, h_prof_dump, 0,
         "write a dump now to this file name, replacing it atomically if it exists (NULL: the automatic "
         "name); EFAULT if it fails"),
    leaf("reset", ValueType::kSize, W, h_prof_reset, 0,
         "clear cumulative counts and sample at 2^value bytes (NULL: keep the rate)"),
    leaf("lg_sample", ValueType::kSize, R, h_prof_lg_sample, 0, "current sample:N"),
    leaf("age", ValueType::kU64, RW, h_prof_age, 0,
         "milliseconds a block must be alive to show in dumps and leak.*"),
    leaf("interval", ValueType::kU64, R, h_prof_interval, 0,
         "milliseconds between interval dumps; 0 = off (jemalloc's prof.interval is bytes)"),
};

constexpr Node kLeak[] = {
    leaf("count", ValueType::kU64, R, h_leak, 0, "blocks alive at least prof.age now (estimate when sampling)"),
    leaf("bytes", ValueType::kU64, R, h_leak, 1, "their bytes (estimate when sampling)"),
    leaf("check", ValueType::kString, W, h_leak_check, 0,
         "run a reachability check now and write the lost dump (kind l; a file name, or none)"),
    leaf("lost_count", ValueType::kU64, R, h_leak_lost, 0,
         "lost blocks older than the age, from the last reachability check (estimate when sampling)"),
    leaf("lost_bytes", ValueType::kU64, R, h_leak_lost, 1, "their bytes, from the last check"),
};

constexpr Node kThreadTcache[] = {
    leaf("enabled", ValueType::kBool, RW, h_tcache_enabled, 0,
         "this thread's cache of freed blocks on or off (off gives its blocks back); "
         "starts as opt.tcache"),
    leaf("flush", ValueType::kVoid, W, h_tcache_flush, 0,
         "give this thread's cached blocks back to mimalloc"),
};

constexpr Node kThread[] = {
    dir("tcache", kThreadTcache),
};

constexpr Node kConfig[] = {
    leaf("prof", ValueType::kBool, R, h_true, 0, "jemalloc: profiling is built in (always true)"),
};

constexpr Node kTop[] = {
    leaf("version", ValueType::kString, R, h_version, 0, "leakalloc version"),
    leaf("epoch", ValueType::kU64, RW, h_epoch, 0,
         "write anything to refresh the stats.* snapshot; read the snapshot's number"),
    dir("config", kConfig),
    dir("opt", kOpt),
    dir("prof", kProf),
    dir("stats", kStats),
    dir("leak", kLeak),
    dir("thread", kThread),
};

constexpr Node kRoot = dir("", kTop);

bool component_eq(const char* node_name, const char* s, size_t len) {
  size_t i = 0;
  for (; i < len; ++i)
    if (node_name[i] != s[i] || node_name[i] == '\0') return false;
  return node_name[i] == '\0';
}

// jemalloc's ctl_lookup: a name that ends at an interior node, or goes on past a leaf,
// is ENOENT. If mib has room for fewer components than the name has, the first
// *miblen are translated and the result is a partial mib (success, *leaf null).
int lookup(const char* name, size_t* mib, size_t* miblen, const Node** leaf_out) {
  *leaf_out = nullptr;
  const Node* node = &kRoot;
  const char* p = name;
  for (size_t i = 0; i < *miblen; ++i) {
    const char* dot = p;
    while (*dot != '\0' && *dot != '.') ++dot;
    size_t len = static_cast<size_t>(dot - p);
    const Node* child = nullptr;
    uint32_t j = 0;
    for (; j < node->nchildren; ++j) {
      if (component_eq(node->children[j].name, p, len)) {
        child = &node->children[j];
        break;
      }
    }
    if (child == nullptr) return ENOENT;
    if (mib != nullptr) mib[i] = j;
    node = child;
    if (node->children == nullptr) {
      if (*dot != '\0') return ENOENT;
      *miblen = i + 1;
      *leaf_out = node;
      return 0;
    }
    if (*dot == '\0') return ENOENT;
    p = dot + 1;
  }
  return 0;
}

int invoke(const Node& n, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  size_t size = type_size(n.type);
  if (n.access == Access::kRead && (newp != nullptr || newlen != 0)) return EPERM;
  if (n.access == Access::kWrite && (oldp != nullptr || oldlenp != nullptr)) return EPERM;
  Value nv;
  memset(&nv, 0, sizeof nv);
  bool writing = newp != nullptr;
  if (writing) {
    if (newlen != size) return EINVAL;
    if (n.type == ValueType::kBool) {
      // Any byte but 0 or 1 is not a bool (and loading it as one is undefined).
      unsigned char c;
      memcpy(&c, newp, 1);
      if (c > 1) return EINVAL;
      nv.b = c != 0;
    } else {
      memcpy(&nv, newp, size);
    }
  }
  bool reading = oldp != nullptr && oldlenp != nullptr;
  bool wrong_oldlen = reading && *oldlenp != size;
  Value ov;
  memset(&ov, 0, sizeof ov);
  int rc = n.handler(n, reading ? &ov : nullptr, writing && !wrong_oldlen ? &nv : nullptr);
  if (rc != 0) return rc;
  if (reading) {
    size_t copy = *oldlenp < size ? *oldlenp : size;
    memcpy(oldp, &ov, copy);
    if (wrong_oldlen) {
      *oldlenp = copy;
      return EINVAL;
    }
  }
  return 0;
}

constexpr size_t kMaxDepth = 8;

void walk(const Node& node, char* path, size_t len, size_t cap, LeafFn fn, void* ctx) {
  for (uint32_t i = 0; i < node.nchildren; ++i) {
    const Node& c = node.children[i];
    size_t l = len;
    if (l > 0 && l + 1 < cap) path[l++] = '.';
    for (const char* s = c.name; *s != '\0' && l + 1 < cap; ++s) path[l++] = *s;
    path[l] = '\0';
    if (c.children != nullptr) {
      walk(c, path, l, cap, fn, ctx);
    } else {
      LeafInfo info{path, c.type, c.access, c.doc};
      fn(ctx, info);
    }
  }
}

}  // namespace

void for_each_leaf(LeafFn fn, void* ctx) {
  char path[128];
  path[0] = '\0';
  walk(kRoot, path, 0, sizeof path, fn, ctx);
}

int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  if (name == nullptr) return EINVAL;
  size_t depth = kMaxDepth;
  const Node* n = nullptr;
  int rc = lookup(name, nullptr, &depth, &n);
  if (rc != 0) return rc;
  if (n == nullptr) return ENOENT;  // deeper than any leaf
  return invoke(*n, oldp, oldlenp, newp, newlen);
}

int nametomib(const char* name, size_t* mibp, size_t* miblenp) {
  if (name == nullptr || mibp == nullptr || miblenp == nullptr) return EINVAL;
  const Node* n = nullptr;
  return lookup(name, mibp, miblenp, &n);
}

int bymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp, void* newp,
          size_t newlen) {
  if (mib == nullptr && miblen != 0) return EINVAL;
  const Node* node = &kRoot;
  for (size_t i = 0; i < miblen; ++i) {
    if (node->children == nullptr || mib[i] >= node->nchildren) return ENOENT;
    node = &node->children[mib[i]];
  }
  if (node->children != nullptr) return ENOENT;
  return invoke(*node, oldp, oldlenp, newp, newlen);
}

}  // namespace ctl
}  // namespace leakalloc

using namespace leakalloc;

LA_EXPORT int leakalloc_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp,
                                size_t newlen) {
  return ctl::mallctl(name, oldp, oldlenp, newp, newlen);
}
LA_EXPORT int leakalloc_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) {
  return ctl::nametomib(name, mibp, miblenp);
}
LA_EXPORT int leakalloc_mallctlbymib(const size_t* mib, size_t miblen, void* oldp,
                                     size_t* oldlenp, void* newp, size_t newlen) {
  return ctl::bymib(mib, miblen, oldp, oldlenp, newp, newlen);
}
LA_EXPORT void leakalloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque,
                                     const char* opts) {
  stats_print(write_cb, cbopaque, opts);
}

// jemalloc's names (Debian's <jemalloc/jemalloc.h> uses them unprefixed).
LA_EXPORT int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  return ctl::mallctl(name, oldp, oldlenp, newp, newlen);
}
LA_EXPORT int mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp) {
  return ctl::nametomib(name, mibp, miblenp);
}
LA_EXPORT int mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp,
                           void* newp, size_t newlen) {
  return ctl::bymib(mib, miblen, oldp, oldlenp, newp, newlen);
}
LA_EXPORT void malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque,
                                  const char* opts) {
  stats_print(write_cb, cbopaque, opts);
}
