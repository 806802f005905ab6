// The control tree through the public entry points (leakalloc_mallctl and jemalloc's
// names), every leaf: read, written where writable, wrong sizes and values rejected.
//
// Configuration (CTest): LEAKALLOC_CONF=sample:0 so that every allocation is sampled
// and counts are exact. Linked with leakalloc's objects: this executable is the
// allocator, and the tree walk (ctl/ctl.h) tells the test which leaves exist.
//
// `ctl_tree_test --print-opts` prints "key=value" for every opt.* leaf and exits: the
// configuration tests run it as a child with a chosen environment. `--print-stats [opts]`
// prints malloc_stats_print's report on stdout (check_stats_json.py reads the JSON).
#include <errno.h>
#include <fcntl.h>
#include <leakalloc/leakalloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "alloc/header.h"
#include "ctl/ctl.h"
#include "config/options.h"
#include "ctl/stats.h"
#include "profile/profiler.h"

extern "C" int mallctl(const char*, void*, size_t*, void*, size_t);
extern "C" int mallctlnametomib(const char*, size_t*, size_t*);
extern "C" int mallctlbymib(const size_t*, size_t, void*, size_t*, void*, size_t);
extern "C" void malloc_stats_print(void (*)(void*, const char*), void*, const char*);

using leakalloc::ctl::Access;
using leakalloc::ctl::ValueType;

namespace {

struct Leaf {
  std::string name;
  ValueType type;
  Access access;
};

std::vector<Leaf> all_leaves() {
  std::vector<Leaf> out;
  leakalloc::ctl::for_each_leaf(
      [](void* ctx, const leakalloc::ctl::LeafInfo& l) {
        static_cast<std::vector<Leaf>*>(ctx)->push_back({l.name, l.type, l.access});
      },
      &out);
  return out;
}

const Leaf* find_leaf(const std::vector<Leaf>& v, const std::string& name) {
  for (const Leaf& l : v)
    if (l.name == name) return &l;
  return nullptr;
}

template <typename T>
int get(const char* name, T* out) {
  size_t len = sizeof(T);
  int rc = leakalloc_mallctl(name, out, &len, nullptr, 0);
  if (rc == 0 && len != sizeof(T)) return -1;
  return rc;
}

template <typename T>
T must_get(const char* name) {
  T v{};
  EXPECT_EQ(get(name, &v), 0) << name;
  return v;
}

template <typename T>
int set(const char* name, T v) {
  return leakalloc_mallctl(name, nullptr, nullptr, &v, sizeof v);
}

void refresh() {
  uint64_t e = 1;
  ASSERT_EQ(leakalloc_mallctl("epoch", nullptr, nullptr, &e, sizeof e), 0);
}

// Switches sampling off for a test's lifetime (prof.active), and back to what it was: a
// stack capture may allocate and free on the test's thread, untracked but through the
// same thread cache, which a test that counts cached bytes must not see.
class SamplingPaused {
 public:
  SamplingPaused() {
    size_t len = sizeof was_;
    bool off = false;
    ok_ = leakalloc_mallctl("prof.active", &was_, &len, &off, sizeof off) == 0;
  }
  ~SamplingPaused() {
    if (ok_) leakalloc_mallctl("prof.active", nullptr, nullptr, &was_, sizeof was_);
  }
  bool ok() const { return ok_; }

 private:
  bool was_ = true;
  bool ok_ = false;
};

// Opaque to the optimizer: the allocations below must really happen.
void* volatile g_sink;
__attribute__((noinline)) void* alloc_bytes(size_t n) {
  void* p = malloc(n);
  g_sink = p;
  return p;
}

}  // namespace

// ---- shape ---------------------------------------------------------------------------

TEST(CtlTree, HasEveryDocumentedLeafWithItsType) {
  auto v = all_leaves();
  struct Want {
    const char* name;
    ValueType type;
    Access access;
  } wants[] = {
      {"version", ValueType::kString, Access::kRead},
      {"epoch", ValueType::kU64, Access::kReadWrite},
      {"config.prof", ValueType::kBool, Access::kRead},
      {"stats.allocated", ValueType::kSize, Access::kRead},
      {"stats.active", ValueType::kSize, Access::kRead},
      {"stats.resident", ValueType::kSize, Access::kRead},
      {"stats.mapped", ValueType::kSize, Access::kRead},
      {"stats.live_blocks", ValueType::kU64, Access::kRead},
      {"stats.header_bytes", ValueType::kSize, Access::kRead},
      {"stats.profiler_bytes", ValueType::kSize, Access::kRead},
      {"stats.stacks", ValueType::kU64, Access::kRead},
      {"stats.stacks_dropped", ValueType::kU64, Access::kRead},
      {"stats.sampled_live", ValueType::kU64, Access::kRead},
      {"prof.active", ValueType::kBool, Access::kReadWrite},
      {"prof.dump", ValueType::kString, Access::kWrite},
      {"prof.reset", ValueType::kSize, Access::kWrite},
      {"prof.lg_sample", ValueType::kSize, Access::kRead},
      {"prof.age", ValueType::kU64, Access::kReadWrite},
      {"prof.interval", ValueType::kU64, Access::kRead},
      {"leak.count", ValueType::kU64, Access::kRead},
      {"leak.bytes", ValueType::kU64, Access::kRead},
      {"stats.tcache_bytes", ValueType::kSize, Access::kRead},
      {"thread.tcache.enabled", ValueType::kBool, Access::kReadWrite},
      {"thread.tcache.flush", ValueType::kVoid, Access::kWrite},
      // jemalloc's names
      {"opt.prof", ValueType::kBool, Access::kRead},
      {"opt.lg_prof_sample", ValueType::kSize, Access::kRead},
      {"opt.prof_active", ValueType::kBool, Access::kRead},
      {"opt.lg_prof_interval", ValueType::kSsize, Access::kRead},
      {"opt.prof_prefix", ValueType::kString, Access::kRead},
      // documented types of opt.<key>
      {"opt.sample", ValueType::kSize, Access::kRead},
      {"opt.active", ValueType::kBool, Access::kRead},
      {"opt.age", ValueType::kU64, Access::kRead},
      {"opt.prefix", ValueType::kString, Access::kRead},
      {"opt.format", ValueType::kString, Access::kRead},
      {"opt.unwind", ValueType::kString, Access::kRead},
      {"opt.signal", ValueType::kInt, Access::kRead},
      {"opt.lg_interval", ValueType::kSsize, Access::kRead},
      {"opt.max_stacks", ValueType::kSize, Access::kRead},
  };
  for (const Want& w : wants) {
    const Leaf* l = find_leaf(v, w.name);
    ASSERT_NE(l, nullptr) << w.name;
    EXPECT_EQ(static_cast<int>(l->type), static_cast<int>(w.type)) << w.name;
    EXPECT_EQ(static_cast<int>(l->access), static_cast<int>(w.access)) << w.name;
  }
  // Every option key is mirrored under opt., every stats field under stats.
  for (int i = 0; i < leakalloc::kOptCount; ++i)
    EXPECT_NE(find_leaf(v, std::string("opt.") + leakalloc::kOptionTable[i].key), nullptr)
        << leakalloc::kOptionTable[i].key;
#define CHECK_STAT(name, type, doc) EXPECT_NE(find_leaf(v, "stats." #name), nullptr) << #name;
  LEAKALLOC_STATS(CHECK_STAT)
#undef CHECK_STAT
}

// ---- generic checks on every leaf ----------------------------------------------------

TEST(CtlTree, EveryReadableLeafReadsAndChecksTheOldSize) {
  for (const Leaf& l : all_leaves()) {
    if (l.name == "prof.dump" || l.name == "prof.reset") continue;
    size_t size = leakalloc::ctl::type_size(l.type);
    unsigned char buf[32];
    size_t len = size;
    if (l.access == Access::kWrite) {
      EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), buf, &len, nullptr, 0), EPERM) << l.name;
      continue;
    }
    memset(buf, 0xa5, sizeof buf);
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), buf, &len, nullptr, 0), 0) << l.name;
    EXPECT_EQ(len, size) << l.name;
    EXPECT_EQ(buf[size], 0xa5) << l.name << ": wrote past the value";
    // No oldp or no oldlenp: nothing is read, success (jemalloc).
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, &len, nullptr, 0), 0) << l.name;
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), buf, nullptr, nullptr, 0), 0) << l.name;
    // Too large a buffer: the value is copied, *oldlenp says how much, EINVAL.
    unsigned char big[32];
    memset(big, 0xa5, sizeof big);
    len = size + 8;
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), big, &len, nullptr, 0), EINVAL) << l.name;
    EXPECT_EQ(len, size) << l.name;
    EXPECT_EQ(big[size], 0xa5) << l.name;
    // Too small: a truncated copy, EINVAL.
    memset(big, 0xa5, sizeof big);
    len = size - 1;
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), big, &len, nullptr, 0), EINVAL) << l.name;
    EXPECT_EQ(len, size - 1) << l.name;
    EXPECT_EQ(big[size - 1], 0xa5) << l.name;
  }
}

TEST(CtlTree, ReadOnlyLeavesRefuseWritesWithEperm) {
  for (const Leaf& l : all_leaves()) {
    if (l.access != Access::kRead) continue;
    unsigned char val[32] = {0};
    size_t size = leakalloc::ctl::type_size(l.type);
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, nullptr, val, size), EPERM) << l.name;
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, nullptr, nullptr, size), EPERM) << l.name;
  }
}

TEST(CtlTree, WritableLeavesRejectWrongNewSizes) {
  int writable = 0;
  for (const Leaf& l : all_leaves()) {
    if (l.access == Access::kRead) continue;
    ++writable;
    unsigned char val[32] = {0};
    size_t size = leakalloc::ctl::type_size(l.type);
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, nullptr, val, size + 1), EINVAL) << l.name;
    if (size == 0) continue;  // an action (void): newlen 0 is its one right size
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, nullptr, val, size - 1), EINVAL) << l.name;
    EXPECT_EQ(leakalloc_mallctl(l.name.c_str(), nullptr, nullptr, val, 0), EINVAL) << l.name;
  }
  // epoch, prof.active, prof.dump, prof.reset, prof.age, leak.check,
  // thread.tcache.enabled, thread.tcache.flush
  EXPECT_EQ(writable, 8);
}

TEST(CtlTree, UnknownAndInteriorNamesAreEnoent) {
  const char* bad[] = {"",         "nope",         "stats",           "opt",
                       "stats.",   ".stats",       "stats.nope",      "stats.allocated.x",
                       "opt..sample", "opt.sample.", "Stats.allocated", "opt.samplex",
                       "opt.sampl", "prof.dump.now", "a.b.c.d.e.f.g.h.i.j"};
  for (const char* name : bad) {
    uint64_t v;
    size_t len = sizeof v;
    EXPECT_EQ(leakalloc_mallctl(name, &v, &len, nullptr, 0), ENOENT) << '"' << name << '"';
  }
  EXPECT_EQ(leakalloc_mallctl(nullptr, nullptr, nullptr, nullptr, 0), EINVAL);
}

TEST(CtlTree, MibsMatchNamesForEveryLeaf) {
  for (const Leaf& l : all_leaves()) {
    size_t mib[8];
    size_t miblen = 8;
    ASSERT_EQ(leakalloc_mallctlnametomib(l.name.c_str(), mib, &miblen), 0) << l.name;
    size_t dots = 0;
    for (char c : l.name) dots += c == '.';
    EXPECT_EQ(miblen, dots + 1) << l.name;
    if (l.access == Access::kWrite) continue;
    if (l.name.rfind("opt.", 0) != 0 && l.name != "version" && l.name != "prof.lg_sample" &&
        l.name != "config.prof")
      continue;  // values that may move between two reads
    unsigned char a[16] = {0}, b[16] = {0};
    size_t la = leakalloc::ctl::type_size(l.type), lb = la;
    ASSERT_EQ(leakalloc_mallctl(l.name.c_str(), a, &la, nullptr, 0), 0) << l.name;
    ASSERT_EQ(leakalloc_mallctlbymib(mib, miblen, b, &lb, nullptr, 0), 0) << l.name;
    EXPECT_EQ(memcmp(a, b, la), 0) << l.name;
  }
}

TEST(CtlTree, MibErrorsAndPartialMibs) {
  size_t mib[4];
  size_t miblen = 4;
  ASSERT_EQ(leakalloc_mallctlnametomib("opt.sample", mib, &miblen), 0);
  ASSERT_EQ(miblen, 2u);
  size_t v;
  size_t len = sizeof v;
  // Interior node, too short, out of range, past a leaf.
  EXPECT_EQ(leakalloc_mallctlbymib(mib, 1, &v, &len, nullptr, 0), ENOENT);
  EXPECT_EQ(leakalloc_mallctlbymib(mib, 0, &v, &len, nullptr, 0), ENOENT);
  size_t bad[2] = {mib[0], 100000};
  EXPECT_EQ(leakalloc_mallctlbymib(bad, 2, &v, &len, nullptr, 0), ENOENT);
  size_t deep[3] = {mib[0], mib[1], 0};
  EXPECT_EQ(leakalloc_mallctlbymib(deep, 3, &v, &len, nullptr, 0), ENOENT);
  EXPECT_EQ(leakalloc_mallctlnametomib("opt", mib, &miblen), ENOENT);
  EXPECT_EQ(leakalloc_mallctlnametomib("opt.nope", mib, &miblen), ENOENT);

  // jemalloc's idiom: translate a prefix once, then fill in the last component.
  size_t part[2];
  size_t partlen = 1;
  ASSERT_EQ(leakalloc_mallctlnametomib("opt.sample", part, &partlen), 0);
  EXPECT_EQ(partlen, 1u);
  EXPECT_EQ(part[0], mib[0]);
  int readable = 0;
  for (part[1] = 0;; ++part[1]) {
    unsigned char buf[16];
    size_t l = sizeof buf;
    int rc = leakalloc_mallctlbymib(part, 2, buf, &l, nullptr, 0);
    if (rc == ENOENT) break;
    EXPECT_TRUE(rc == 0 || rc == EINVAL) << part[1];  // EINVAL: buf is not the leaf's size
    ++readable;
    ASSERT_LT(readable, 1000);
  }
  int opt_leaves = 0;
  for (const Leaf& l : all_leaves()) opt_leaves += l.name.rfind("opt.", 0) == 0;
  EXPECT_EQ(readable, opt_leaves);
}

TEST(CtlTree, JemallocNamesAreTheSameEntryPoints) {
  const char* a = nullptr;
  const char* b = nullptr;
  size_t la = sizeof a, lb = sizeof b;
  ASSERT_EQ(leakalloc_mallctl("version", &a, &la, nullptr, 0), 0);
  ASSERT_EQ(mallctl("version", &b, &lb, nullptr, 0), 0);
  EXPECT_STREQ(a, LEAKALLOC_VERSION);
  EXPECT_STREQ(a, b);
  size_t mib[2], miblen = 2;
  ASSERT_EQ(mallctlnametomib("prof.lg_sample", mib, &miblen), 0);
  size_t lg = 99, lglen = sizeof lg;
  ASSERT_EQ(mallctlbymib(mib, miblen, &lg, &lglen, nullptr, 0), 0);
  EXPECT_EQ(lg, static_cast<size_t>(leakalloc::prof::lg_sample()));
  EXPECT_EQ(mallctl("no.such", nullptr, nullptr, nullptr, 0), ENOENT);
}

// ---- values --------------------------------------------------------------------------

TEST(CtlValues, OptLeavesMirrorTheOptionTable) {
  using namespace leakalloc;
  for (int i = 0; i < kOptCount; ++i) {
    OptId id = static_cast<OptId>(i);
    const OptionDesc& d = kOptionTable[i];
    std::string name = std::string("opt.") + d.key;
    switch (ctl::opt_value_type(d.type, d.min)) {
      case ValueType::kBool: EXPECT_EQ(must_get<bool>(name.c_str()), opt(id) != 0) << name; break;
      case ValueType::kSize: EXPECT_EQ(must_get<size_t>(name.c_str()), static_cast<size_t>(opt(id))) << name; break;
      case ValueType::kSsize: EXPECT_EQ(must_get<ssize_t>(name.c_str()), opt(id)) << name; break;
      case ValueType::kU64: EXPECT_EQ(must_get<uint64_t>(name.c_str()), static_cast<uint64_t>(opt(id))) << name; break;
      case ValueType::kInt: EXPECT_EQ(must_get<int>(name.c_str()), opt(id)) << name; break;
      case ValueType::kString: {
        const char* s = must_get<const char*>(name.c_str());
        ASSERT_NE(s, nullptr) << name;
        if (d.type != OptType::kString) {
          // The parser's own spelling of the value (option_format) must be what opt. says.
          char buf[kPrefixMax + 16];
          size_t n = option_format(id, buf, sizeof buf);
          EXPECT_EQ(std::string(s), std::string(buf, n)) << name;
        } else {
          EXPECT_STREQ(s, g_opt_prefix);
        }
        break;
      }
    }
  }
  EXPECT_TRUE(must_get<bool>("opt.prof"));
  EXPECT_TRUE(must_get<bool>("config.prof"));
  EXPECT_EQ(must_get<size_t>("opt.lg_prof_sample"), static_cast<size_t>(opt(kOpt_sample)));
  EXPECT_EQ(must_get<ssize_t>("opt.lg_prof_interval"), opt(kOpt_lg_interval));
  EXPECT_STREQ(must_get<const char*>("opt.prof_prefix"), g_opt_prefix);
  EXPECT_EQ(must_get<bool>("opt.prof_final"), opt(kOpt_final) != 0);
  EXPECT_EQ(must_get<bool>("opt.prof_gdump"), opt(kOpt_gdump) != 0);
  // This test's configuration.
  EXPECT_EQ(must_get<size_t>("opt.sample"), 0u);
  EXPECT_STREQ(must_get<const char*>("opt.unwind"), "libunwind");
  EXPECT_STREQ(must_get<const char*>("opt.format"), "heap");
}

TEST(CtlValues, EpochAdvancesAndFreezesTheStats) {
  uint64_t e0 = must_get<uint64_t>("epoch");
  uint64_t e = 1;
  size_t len = sizeof e;
  ASSERT_EQ(leakalloc_mallctl("epoch", &e, &len, &e, sizeof e), 0);
  EXPECT_EQ(e, e0 + 1);  // the read after a write returns the new epoch
  EXPECT_EQ(must_get<uint64_t>("epoch"), e0 + 1);

  size_t before = must_get<size_t>("stats.allocated");
  uint64_t blocks_before = must_get<uint64_t>("stats.live_blocks");
  void* p = alloc_bytes(8 << 20);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(must_get<size_t>("stats.allocated"), before) << "the snapshot moved without an epoch";
  refresh();
  size_t during = must_get<size_t>("stats.allocated");
  EXPECT_GE(during, before + (8u << 20) - (1u << 20));  // other allocations may come and go
  EXPECT_GE(must_get<uint64_t>("stats.live_blocks"), blocks_before);
  free(p);
  refresh();
  EXPECT_LE(must_get<size_t>("stats.allocated"), during - (7u << 20));
}

TEST(CtlValues, StatsAreConsistentWithEachOther) {
  std::vector<void*> keep;
  for (int i = 0; i < 1000; ++i) keep.push_back(alloc_bytes(100 + i));
  refresh();
  size_t allocated = must_get<size_t>("stats.allocated");
  size_t active = must_get<size_t>("stats.active");
  size_t resident = must_get<size_t>("stats.resident");
  size_t mapped = must_get<size_t>("stats.mapped");
  uint64_t live = must_get<uint64_t>("stats.live_blocks");
  size_t headers = must_get<size_t>("stats.header_bytes");
  size_t prof_bytes = must_get<size_t>("stats.profiler_bytes");
  EXPECT_GE(live, 1000u);
  EXPECT_EQ(headers, live * leakalloc::kHeaderSize);
  EXPECT_EQ(active, allocated + headers);
  EXPECT_GE(allocated, 1000u * 100);
  EXPECT_LE(active, mapped);
  EXPECT_GT(resident, 0u);
  EXPECT_LE(resident, mapped);
  EXPECT_GT(prof_bytes, 0u);
  EXPECT_GE(mapped, prof_bytes);
  // sample:0: every block is sampled, each from this one call site's stack.
  EXPECT_GE(must_get<uint64_t>("stats.sampled_live"), 1000u);
  EXPECT_GE(must_get<uint64_t>("stats.stacks"), 2u);
  EXPECT_EQ(must_get<uint64_t>("stats.stacks_dropped"), 0u);
  EXPECT_GE(must_get<uint64_t>("stats.total_allocs"), 1000u);
  EXPECT_GE(must_get<uint64_t>("stats.sampled_total"), 1000u);
  uint64_t sampled_live = must_get<uint64_t>("stats.sampled_live");
  for (void* p : keep) free(p);
  refresh();
  EXPECT_LE(must_get<uint64_t>("stats.sampled_live") + 1000u, sampled_live + 50u);
  EXPECT_LT(must_get<uint64_t>("stats.live_blocks"), live);
}

// The calling thread's cache of freed blocks (alloc/thread_cache.h), seen through
// stats.tcache_bytes and driven by thread.tcache.*. The test's only threads are gtest's
// main thread and short-lived ones that have exited, so the stat is this thread's bins
// alone and exact: blocks of 100 bytes are in the 128-byte class (header included),
// whose bin holds 64.
TEST(CtlValues, ThreadTcacheFlushEnableAndBytes) {
  SamplingPaused paused;
  ASSERT_TRUE(paused.ok());
  bool on = false;
  ASSERT_EQ(get("thread.tcache.enabled", &on), 0);
  ASSERT_TRUE(on) << "opt.tcache defaults to true";
  auto cached = []() {
    refresh();
    return must_get<size_t>("stats.tcache_bytes");
  };
  std::vector<void*> blocks;
  blocks.reserve(100);  // no vector growth (and its frees) between the readings
  ASSERT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(cached(), 0u);
  for (int i = 0; i < 40; ++i) blocks.push_back(alloc_bytes(100));
  for (void* p : blocks) free(p);
  EXPECT_EQ(cached(), 40u * 128);
  // The cached blocks are the next ones handed out, newest first.
  void* again = alloc_bytes(100);
  EXPECT_EQ(again, blocks.back());
  EXPECT_EQ(cached(), 39u * 128);
  free(again);
  // flush gives them back; jemalloc's mallctl name reaches the same leaf.
  ASSERT_EQ(mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(cached(), 0u);
  // Off: frees go straight to mimalloc, and the setting sticks through later mallocs.
  ASSERT_EQ(set("thread.tcache.enabled", false), 0);
  ASSERT_EQ(get("thread.tcache.enabled", &on), 0);
  EXPECT_FALSE(on);
  blocks.clear();
  for (int i = 0; i < 40; ++i) blocks.push_back(alloc_bytes(100));
  for (void* p : blocks) free(p);
  EXPECT_EQ(cached(), 0u);
  ASSERT_EQ(get("thread.tcache.enabled", &on), 0);
  EXPECT_FALSE(on);
  // Turning it off with blocks cached gives them back.
  ASSERT_EQ(set("thread.tcache.enabled", true), 0);
  ASSERT_EQ(get("thread.tcache.enabled", &on), 0);
  EXPECT_TRUE(on);
  for (void*& p : blocks) p = alloc_bytes(100);
  for (void* p : blocks) free(p);
  EXPECT_EQ(cached(), 40u * 128);
  ASSERT_EQ(set("thread.tcache.enabled", false), 0);
  EXPECT_EQ(cached(), 0u);
  ASSERT_EQ(set("thread.tcache.enabled", true), 0);
  // A bin holds at most its limit; the rest go to mimalloc.
  blocks.clear();
  for (int i = 0; i < 100; ++i) blocks.push_back(alloc_bytes(100));
  for (void* p : blocks) free(p);
  EXPECT_EQ(cached(), 64u * 128);
  // Another thread's cache is its own: it caches its frees and flushes only its bins;
  // when it exits its bins go back to mimalloc.
  std::atomic<int> step{0};
  std::thread other([&] {
    std::vector<void*> mine;
    mine.reserve(5);
    for (int i = 0; i < 5; ++i) mine.push_back(alloc_bytes(1000));  // 1024-byte class, 8 a bin
    for (void* p : mine) free(p);
    step.store(1);
    while (step.load() != 2) sched_yield();
    ASSERT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
    step.store(3);
    while (step.load() != 4) sched_yield();
  });
  while (step.load() != 1) sched_yield();
  EXPECT_EQ(cached(), 64u * 128 + 5u * 1024);
  step.store(2);
  while (step.load() != 3) sched_yield();
  EXPECT_EQ(cached(), 64u * 128);
  step.store(4);
  other.join();
  EXPECT_EQ(cached(), 64u * 128);
  ASSERT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(cached(), 0u);
  // A thread that has not allocated yet reads what its first malloc will give it.
  bool fresh_on = false;
  int fresh_rc = -1;
  std::thread fresh([&] {
    size_t flen = sizeof fresh_on;
    fresh_rc = leakalloc_mallctl("thread.tcache.enabled", &fresh_on, &flen, nullptr, 0);
  });
  fresh.join();
  EXPECT_EQ(fresh_rc, 0);
  EXPECT_TRUE(fresh_on) << "a new thread follows opt.tcache";
  // Wrong uses: the action takes no value; enabled takes a bool.
  int junk = 1;
  EXPECT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, &junk, sizeof junk), EINVAL);
  size_t len = sizeof junk;
  EXPECT_EQ(leakalloc_mallctl("thread.tcache.flush", &junk, &len, nullptr, 0), EPERM);
  unsigned char two = 2;
  EXPECT_EQ(leakalloc_mallctl("thread.tcache.enabled", nullptr, nullptr, &two, 1), EINVAL);
}

// fork() keeps only the forking thread. The blocks another thread had cached must not be
// lost with it: the child's thread takes them into its own bins (as far as they have
// room) and its mallocs hand them out again.
TEST(CtlValues, ForkChildTakesOverTheOtherThreadsCachedBlocks) {
  SamplingPaused paused;
  ASSERT_TRUE(paused.ok());
  constexpr int kBlocks = 6;  // 1000 bytes: the 1024-byte class, whose bin holds 8
  void* theirs[kBlocks];
  std::atomic<int> step{0};
  std::thread other([&] {
    for (void*& p : theirs) p = alloc_bytes(1000);
    for (void* p : theirs) free(p);
    step.store(1);
    while (step.load() != 2) sched_yield();
  });
  while (step.load() != 1) sched_yield();
  ASSERT_EQ(leakalloc_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: exit code 0 when every block came back, else a code naming the check.
    refresh();
    size_t bytes = 0;
    size_t len = sizeof bytes;
    if (leakalloc_mallctl("stats.tcache_bytes", &bytes, &len, nullptr, 0) != 0) _exit(2);
    if (bytes != kBlocks * 1024u) _exit(3);
    int found = 0;
    for (int i = 0; i < kBlocks; ++i) {
      void* p = alloc_bytes(1000);
      for (void* q : theirs) found += p == q;
    }
    _exit(found == kBlocks ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: stats.tcache_bytes unreadable; 3: the other thread's "
                                       "blocks are not in the child's cache; 4: mallocs did not "
                                       "hand them out";
  step.store(2);
  other.join();
}

TEST(CtlValues, ProfActiveSwitchesSampling) {
  bool old = false;
  size_t len = sizeof old;
  bool off = false;
  ASSERT_EQ(leakalloc_mallctl("prof.active", &old, &len, &off, sizeof off), 0);
  EXPECT_TRUE(old);  // returns the value before the write
  EXPECT_FALSE(must_get<bool>("prof.active"));
  EXPECT_FALSE(leakalloc::prof::active());
  uint64_t sampled = leakalloc::prof::counters().sampled_total;
  for (int i = 0; i < 100; ++i) free(alloc_bytes(64));
  EXPECT_EQ(leakalloc::prof::counters().sampled_total, sampled);
  ASSERT_EQ(set("prof.active", true), 0);
  EXPECT_TRUE(leakalloc::prof::active());
  for (int i = 0; i < 100; ++i) free(alloc_bytes(64));
  EXPECT_GE(leakalloc::prof::counters().sampled_total, sampled + 100);
  // A byte that is not a bool is a wrong value, and nothing changes.
  unsigned char two = 2;
  EXPECT_EQ(leakalloc_mallctl("prof.active", nullptr, nullptr, &two, 1), EINVAL);
  EXPECT_TRUE(must_get<bool>("prof.active"));
  // A wrong old size changes nothing either.
  uint64_t wide = 0;
  len = sizeof wide;
  EXPECT_EQ(leakalloc_mallctl("prof.active", &wide, &len, &off, sizeof off), EINVAL);
  EXPECT_EQ(len, sizeof(bool));
  EXPECT_TRUE(leakalloc::prof::active());
}

TEST(CtlValues, ProfResetSetsTheRateAndClearsCounts) {
  for (int i = 0; i < 50; ++i) free(alloc_bytes(32));
  ASSERT_GT(leakalloc::prof::counters().sampled_total, 0u);
  ASSERT_EQ(set<size_t>("prof.reset", 7), 0);
  EXPECT_EQ(must_get<size_t>("prof.lg_sample"), 7u);
  EXPECT_EQ(must_get<size_t>("opt.sample"), 7u);
  EXPECT_EQ(leakalloc::prof::lg_sample(), 7);
  EXPECT_EQ(leakalloc::prof::counters().sampled_total, 0u);
  // Out of range: EINVAL, nothing changes.
  EXPECT_EQ(set<size_t>("prof.reset", 63), EINVAL);
  EXPECT_EQ(set<size_t>("prof.reset", SIZE_MAX), EINVAL);
  EXPECT_EQ(must_get<size_t>("prof.lg_sample"), 7u);
  // No new value: keep the rate, clear the counts (jemalloc).
  ASSERT_EQ(leakalloc_mallctl("prof.reset", nullptr, nullptr, nullptr, 0), 0);
  EXPECT_EQ(must_get<size_t>("prof.lg_sample"), 7u);
  ASSERT_EQ(set<size_t>("prof.reset", 0), 0);
  EXPECT_EQ(must_get<size_t>("prof.lg_sample"), 0u);
  size_t lg;
  size_t len = sizeof lg;
  EXPECT_EQ(leakalloc_mallctl("prof.reset", &lg, &len, nullptr, 0), EPERM);
}

TEST(CtlValues, ProfAgeIsReadWriteInMilliseconds) {
  uint64_t old = 99;
  size_t len = sizeof old;
  uint64_t age = 1500;
  ASSERT_EQ(leakalloc_mallctl("prof.age", &old, &len, &age, sizeof age), 0);
  EXPECT_EQ(old, 0u);
  EXPECT_EQ(must_get<uint64_t>("prof.age"), 1500u);
  EXPECT_EQ(must_get<uint64_t>("opt.age"), 1500u);
  EXPECT_EQ(leakalloc::opt(leakalloc::kOpt_age), 1500);
  EXPECT_EQ(set<uint64_t>("prof.age", static_cast<uint64_t>(leakalloc::kDurationMaxMs) + 1), EINVAL);
  EXPECT_EQ(set<uint64_t>("prof.age", UINT64_MAX), EINVAL);
  EXPECT_EQ(must_get<uint64_t>("prof.age"), 1500u);
  ASSERT_EQ(set<uint64_t>("prof.age", 0), 0);
  EXPECT_EQ(must_get<uint64_t>("prof.interval"), static_cast<uint64_t>(leakalloc::opt(leakalloc::kOpt_interval)));
}

TEST(CtlValues, LeakTotalsFollowProfAge) {
  ASSERT_EQ(set<uint64_t>("prof.age", 0), 0);
  uint64_t count0 = must_get<uint64_t>("leak.count");
  uint64_t bytes0 = must_get<uint64_t>("leak.bytes");
  std::vector<void*> keep;
  for (int i = 0; i < 20; ++i) keep.push_back(alloc_bytes(4000));
  // sample:0: exact. Every block is at least 0 ms old.
  EXPECT_GE(must_get<uint64_t>("leak.count"), count0 + 20);
  EXPECT_GE(must_get<uint64_t>("leak.bytes"), bytes0 + 20 * 4000);
  // Generous margins: on a loaded machine the young blocks below must not reach the age
  // before they are counted.
  usleep(1500 * 1000);
  ASSERT_EQ(set<uint64_t>("prof.age", 1000), 0);
  uint64_t old_count = must_get<uint64_t>("leak.count");
  EXPECT_GE(old_count, 20u);
  std::vector<void*> young;
  for (int i = 0; i < 20; ++i) young.push_back(alloc_bytes(4000));
  EXPECT_LT(must_get<uint64_t>("leak.count"), old_count + 20) << "young blocks counted as old";
  // Nothing in this process is an hour old.
  ASSERT_EQ(set<uint64_t>("prof.age", 3600 * 1000), 0);
  EXPECT_EQ(must_get<uint64_t>("leak.count"), 0u);
  EXPECT_EQ(must_get<uint64_t>("leak.bytes"), 0u);
  ASSERT_EQ(set<uint64_t>("prof.age", 0), 0);
  for (void* p : keep) free(p);
  for (void* p : young) free(p);
}

TEST(CtlValues, ProfDumpWritesOrReplacesTheNamedFileOrFailsWithEfault) {
  char dir[] = "/tmp/leakalloc-ctl-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/named.heap";
  const char* name = path.c_str();
  ASSERT_EQ(leakalloc_mallctl("prof.dump", nullptr, nullptr, &name, sizeof name), 0);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0) << "prof.dump returned 0 but wrote no " << path;
  EXPECT_GT(st.st_size, 0);
  // The same name again replaces the file by a rename (a new inode, mode 0600, no
  // temporary left), as jemalloc's prof.dump replaces it; a directory that does not
  // exist fails.
  ASSERT_EQ(leakalloc_mallctl("prof.dump", nullptr, nullptr, &name, sizeof name), 0);
  struct stat again;
  ASSERT_EQ(lstat(path.c_str(), &again), 0);
  EXPECT_NE(again.st_ino, st.st_ino) << "replaced in place, not renamed over";
  EXPECT_TRUE(S_ISREG(again.st_mode));
  EXPECT_EQ(again.st_mode & 0777, 0600u);
  EXPECT_GT(again.st_size, 0);
  std::string tmp = path + "." + std::to_string(getpid()) + ".tmp";
  EXPECT_NE(access(tmp.c_str(), F_OK), 0) << tmp << " left behind";
  std::string missing = std::string(dir) + "/no/such/dir.heap";
  const char* m = missing.c_str();
  EXPECT_EQ(leakalloc_mallctl("prof.dump", nullptr, nullptr, &m, sizeof m), EFAULT);
  const char* empty = "";
  EXPECT_EQ(leakalloc_mallctl("prof.dump", nullptr, nullptr, &empty, sizeof empty), EINVAL);
  unlink(path.c_str());
  rmdir(dir);
}

// ---- no tracked allocation on the control path ---------------------------------------

namespace {
struct FixedSink {
  char buf[1 << 16];
  size_t len = 0;
  int calls = 0;
};
void fixed_sink(void* opaque, const char* s) {
  FixedSink* f = static_cast<FixedSink*>(opaque);
  ++f->calls;
  for (; *s != '\0' && f->len + 1 < sizeof f->buf; ++s) f->buf[f->len++] = *s;
  f->buf[f->len] = '\0';
}
}  // namespace

TEST(CtlValues, ReadingLeavesAndPrintingAllocateNothingTracked) {
  auto leaves = all_leaves();
  std::vector<std::string> names;
  for (const Leaf& l : leaves)
    if (l.access != Access::kWrite) names.push_back(l.name);
  static FixedSink sink;
  ASSERT_EQ(leakalloc::prof::lg_sample(), 0);
  ASSERT_TRUE(leakalloc::prof::active());
  uint64_t before = leakalloc::prof::counters().sampled_total;
  int failures = 0;
  for (const std::string& n : names) {
    unsigned char buf[16];
    size_t len = 16;
    // Size errors are fine here; only allocations matter.
    int rc = leakalloc_mallctl(n.c_str(), buf, &len, nullptr, 0);
    failures += rc != 0 && rc != EINVAL;
  }
  uint64_t e = 1;
  leakalloc_mallctl("epoch", nullptr, nullptr, &e, sizeof e);
  leakalloc_stats_print(fixed_sink, &sink, nullptr);
  leakalloc_stats_print(fixed_sink, &sink, "J");
  uint64_t after = leakalloc::prof::counters().sampled_total;
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(after, before) << "the control path allocated through the tracked malloc";
  EXPECT_GT(sink.calls, 0);
}

TEST(CtlStatsPrint, TextAndJsonNameEveryStatAndOption) {
  static FixedSink text, json;
  leakalloc_stats_print(fixed_sink, &text, "");
  malloc_stats_print(fixed_sink, &json, "J");
  std::string t(text.buf), j(json.buf);
  EXPECT_NE(t.find("___ Begin leakalloc statistics ___"), std::string::npos);
  EXPECT_NE(t.find("--- End leakalloc statistics ---"), std::string::npos);
  EXPECT_NE(t.find(std::string("Version: ") + LEAKALLOC_VERSION), std::string::npos);
  for (int i = 0; i < leakalloc::kOptCount; ++i) {
    EXPECT_NE(t.find(std::string("  opt.") + leakalloc::kOptionTable[i].key + ": "), std::string::npos);
    EXPECT_NE(j.find(std::string("\"") + leakalloc::kOptionTable[i].key + "\": "), std::string::npos);
  }
#define CHECK_PRINTED(name, type, doc)                                        \
  EXPECT_NE(t.find("  stats." #name ": "), std::string::npos) << #name;       \
  EXPECT_NE(j.find("\"" #name "\": "), std::string::npos) << #name;
  LEAKALLOC_STATS(CHECK_PRINTED)
#undef CHECK_PRINTED
  EXPECT_NE(t.find("  leak.count: "), std::string::npos);
  EXPECT_NE(t.find("  prof.lg_sample: 0\n"), std::string::npos);
  EXPECT_EQ(j.front(), '{');
  EXPECT_NE(j.find("\"leakalloc\": {"), std::string::npos);
  EXPECT_NE(j.find("\"sample\": 0,"), std::string::npos);
  EXPECT_NE(j.find("\"unwind\": \"libunwind\""), std::string::npos);
}

TEST(CtlStatsPrint, NullCallbackWritesToStderr) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
  int saved = dup(2);
  dup2(fds[1], 2);
  leakalloc_stats_print(nullptr, nullptr, nullptr);
  dup2(saved, 2);
  close(saved);
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  EXPECT_EQ(out.rfind("___ Begin leakalloc statistics ___\n", 0), 0u) << out.substr(0, 200);
  EXPECT_NE(out.find("stats.allocated: "), std::string::npos);
}

// ---- threads and fork ----------------------------------------------------------------

TEST(CtlThreads, ConcurrentEpochsReadsAndForks) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&] {
      while (!stop.load()) {
        uint64_t e = 1;
        leakalloc_mallctl("epoch", nullptr, nullptr, &e, sizeof e);
        size_t a;
        size_t len = sizeof a;
        leakalloc_mallctl("stats.allocated", &a, &len, nullptr, 0);
        free(alloc_bytes(128));
      }
    });
  }
  // A child forked while other threads hold the snapshot lock must still read the stats.
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      uint64_t e = 1;
      size_t len = sizeof e;
      int rc = leakalloc_mallctl("epoch", &e, &len, &e, sizeof e);
      size_t a;
      len = sizeof a;
      rc |= leakalloc_mallctl("stats.allocated", &a, &len, nullptr, 0);
      _exit(rc == 0 && a > 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "fork " << i;
  }
  stop = true;
  for (auto& t : ts) t.join();
}

// ---- child mode for the configuration tests ------------------------------------------

static int print_opts() {
  using namespace leakalloc;
  for (int i = 0; i < kOptCount; ++i) {
    const OptionDesc& d = kOptionTable[i];
    std::string name = std::string("opt.") + d.key;
    unsigned char buf[16];
    size_t len = ctl::type_size(ctl::opt_value_type(d.type, d.min));
    if (leakalloc_mallctl(name.c_str(), buf, &len, nullptr, 0) != 0) return 2;
    printf("%s=", d.key);
    switch (ctl::opt_value_type(d.type, d.min)) {
      case ValueType::kBool: printf("%s", *reinterpret_cast<bool*>(buf) ? "true" : "false"); break;
      case ValueType::kSize: printf("%zu", *reinterpret_cast<size_t*>(buf)); break;
      case ValueType::kSsize: printf("%zd", *reinterpret_cast<ssize_t*>(buf)); break;
      case ValueType::kU64: printf("%llu", static_cast<unsigned long long>(*reinterpret_cast<uint64_t*>(buf))); break;
      case ValueType::kInt: printf("%d", *reinterpret_cast<int*>(buf)); break;
      case ValueType::kString: printf("%s", *reinterpret_cast<const char**>(buf)); break;
    }
    printf("\n");
  }
  return 0;
}

static void write_stdout(void*, const char* s) { fputs(s, stdout); }

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--print-opts") == 0) return print_opts();
  if (argc > 1 && strcmp(argv[1], "--print-stats") == 0) {
    malloc_stats_print(write_stdout, nullptr, argc > 2 ? argv[2] : nullptr);
    return 0;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
