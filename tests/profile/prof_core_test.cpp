// Profiler core (issue 3): exact counts at sample:0, unsampling accuracy at sample:N,
// ages, the stack-table cap, fork and thread exit while sampling, reset and active.
//
// Each test runs in its own process with its own LEAKALLOC_CONF (tests/profile/
// CMakeLists.txt), and the process *is* the allocator (linked with its objects), so
// the internal API of profile/profiler.h observes what malloc recorded.
#include <gtest/gtest.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cmath>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <vector>
#include <thread>

#include "base/base.h"
#include "alloc/alloc.h"
#include "alloc/header.h"
#include "profile/profiler.h"
#include "profile/sampler.h"
#include "profile/threads.h"
#include "tests/profile/prof_test_util.h"

namespace prof = leakalloc::prof;
using namespace proftest;

namespace {

// The configuration comes from LEAKALLOC_CONF in the test's environment; a test that
// runs without it (or with a parser that ignored it) must not pass by accident.
void require_sample(int lg) {
  ASSERT_EQ(prof::lg_sample(), lg) << "LEAKALLOC_CONF=" << (getenv("LEAKALLOC_CONF") ? getenv("LEAKALLOC_CONF") : "(unset)")
                                   << " was not applied";
  ASSERT_TRUE(prof::active());
}

// A thread gets its index on its first allocation.
uint32_t my_thread_index() {
  free(bt_leaf(1));
  return leakalloc::this_thread_profile().thread_index;
}

// Live blocks per stack id, for the stacks that decode as bt_root(n, bits).
struct PerN {
  uint64_t objs = 0, bytes = 0;
  std::set<uint32_t> stack_ids;
  std::set<uint32_t> threads;
  std::set<uint64_t> sizes;
};

std::map<int64_t, PerN> live_by_n(uint32_t bits, uint64_t born_before = UINT64_MAX) {
  std::map<int64_t, PerN> out;
  std::map<uint32_t, int64_t> decoded;  // stack id -> n (-1: not a bt stack)
  for (const LiveBlock& b : snapshot(born_before)) {
    auto it = decoded.find(b.stack_id);
    if (it == decoded.end()) {
      StackView v;
      int64_t n = prof::stack_get(b.stack_id, &v) ? decode_bt(v, bits) : -1;
      it = decoded.emplace(b.stack_id, n).first;
    }
    if (it->second < 0) continue;
    PerN& p = out[it->second];
    ++p.objs;
    p.bytes += b.size;
    p.stack_ids.insert(b.stack_id);
    p.threads.insert(b.thread_index);
    p.sizes.insert(b.size);
  }
  return out;
}

// Every stack in the table that decodes as bt_root(n, bits): n -> ids.
std::map<int64_t, std::vector<uint32_t>> table_by_n(uint32_t bits) {
  std::map<int64_t, std::vector<uint32_t>> out;
  uint32_t n = prof::stack_count();
  for (uint32_t id = 1; id <= n; ++id) {
    StackView v;
    if (!prof::stack_get(id, &v)) continue;
    int64_t k = decode_bt(v, bits);
    if (k >= 0) out[k].push_back(id);
  }
  return out;
}

// The stack ids of bt_root(n, bits) for n = 0 .. 2^bits - 1: each n must be stored under
// exactly one id. Use with ASSERT_NO_FATAL_FAILURE.
void one_stack_per_n(uint32_t bits, std::vector<uint32_t>* ids) {
  auto table = table_by_n(bits);
  uint32_t stacks = 1u << bits;
  ASSERT_EQ(table.size(), stacks) << "distinct stacks found for bt_root(n, " << bits << ")";
  ids->resize(stacks);
  for (uint32_t n = 0; n < stacks; ++n) {
    ASSERT_EQ(table[n].size(), 1u) << "n=" << n << " is stored under more than one stack id";
    (*ids)[n] = table[n][0];
  }
}

// one_stack_per_n, and each stack's cumulative counts: every allocation made from it,
// freed or not, objs(n) of size(n) bytes. Use with ASSERT_NO_FATAL_FAILURE.
template <typename Objs, typename Size>
void one_stack_per_n_counted(uint32_t bits, Objs objs, Size size, std::vector<uint32_t>* ids) {
  ASSERT_NO_FATAL_FAILURE(one_stack_per_n(bits, ids));
  for (uint32_t n = 0; n < ids->size(); ++n) {
    StackView v;
    ASSERT_TRUE(prof::stack_get((*ids)[n], &v));
    EXPECT_EQ(v.cum_objs, objs(n)) << "n=" << n;
    EXPECT_EQ(v.cum_bytes, uint64_t{objs(n)} * size(n)) << "n=" << n;
  }
}

// ---- exactness at sample:0 ------------------------------------------------------------

constexpr uint32_t kBits = 6;
constexpr uint32_t kStacks = 1u << kBits;
size_t size_of(uint32_t n) { return 3000 + 17 * n; }
uint32_t count_of(uint32_t n) { return 1 + n % 4; }

// Which blocks are freed, and by whom: (n, j) -> 0 kept, 1 freed on thread A, 2 on
// thread B, 3 on the main thread.
int fate(uint32_t n, uint32_t j) {
  if (j == 0 && n % 3 == 0) return 1;
  if (j == 1 && n % 2 == 0) return 2;
  if (j == 2 && n % 5 == 0) return 3;
  return 0;
}

TEST(ProfExact, BtallocStacksCountsBytesAndFrames) {
  require_sample(0);
  std::vector<std::vector<void*>> blocks(kStacks);
  for (uint32_t n = 0; n < kStacks; ++n) blocks[n].resize(count_of(n));
  uint32_t main_index = my_thread_index(), worker_index = UINT32_MAX;

  // n < 32 from the main thread, n >= 32 from a worker: stacks of both threads.
  for (uint32_t n = 0; n < kStacks / 2; ++n)
    for (uint32_t j = 0; j < count_of(n); ++j) blocks[n][j] = bt_root(n, kBits, size_of(n));
  std::thread worker([&] {
    worker_index = my_thread_index();
    for (uint32_t n = kStacks / 2; n < kStacks; ++n)
      for (uint32_t j = 0; j < count_of(n); ++j) blocks[n][j] = bt_root(n, kBits, size_of(n));
  });
  worker.join();
  ASSERT_NE(worker_index, main_index);

  auto free_fate = [&](int who) {
    for (uint32_t n = 0; n < kStacks; ++n)
      for (uint32_t j = 0; j < count_of(n); ++j)
        if (fate(n, j) == who) { free(blocks[n][j]); blocks[n][j] = nullptr; }
  };
  std::thread a(free_fate, 1), b(free_fate, 2);
  a.join();
  b.join();
  free_fate(3);

  // The stack table: exactly one stack per n, with the cumulative counts of every
  // allocation made from it (freed or not).
  std::vector<uint32_t> ids;
  ASSERT_NO_FATAL_FAILURE(one_stack_per_n_counted(kBits, count_of, size_of, &ids));
  for (uint32_t n = 0; n < kStacks; ++n) {
    StackView v;
    ASSERT_TRUE(prof::stack_get(ids[n], &v));
    // Frame 0 is the return address in the caller of malloc (bt_leaf, checked by
    // decode_bt), in the test executable: no allocator or mimalloc frame is left.
    std::string obj = object_of(v.frames[0]);
    EXPECT_EQ(obj.find("mimalloc"), std::string::npos) << obj;
    EXPECT_EQ(obj.find("libleakalloc"), std::string::npos) << obj;
    EXPECT_EQ(func_of(v.frames[0]), reinterpret_cast<void*>(&bt_leaf));
    EXPECT_GT(v.frames[0], reinterpret_cast<uintptr_t>(&bt_leaf));
  }
  // Stacks of numbers that differ only in bit i differ exactly in frame kBits - i (the
  // function taken, bt_0 or bt_1) and frame kBits - i + 1 (the call site in its
  // caller), wherever the rest of the number goes.
  for (uint32_t base = 0; base < kStacks; base += 21) {
    StackView s0, s1;
    for (uint32_t i = 0; i < kBits; ++i) {
      uint32_t a = base & ~(1u << i), b = base | (1u << i);
      ASSERT_TRUE(prof::stack_get(ids[a], &s0));
      ASSERT_TRUE(prof::stack_get(ids[b], &s1));
      for (uint32_t k = 0; k <= kBits + 1; ++k) {
        bool differs = k == kBits - i || k == kBits - i + 1;
        EXPECT_EQ(s0.frames[k] != s1.frames[k], differs) << a << " vs " << b << " frame " << k;
      }
    }
  }

  // The live set: exactly the blocks not freed, on their stack, with their size and
  // the allocating thread.
  auto live = live_by_n(kBits);
  for (uint32_t n = 0; n < kStacks; ++n) {
    uint64_t want = 0;
    for (uint32_t j = 0; j < count_of(n); ++j) want += fate(n, j) == 0;
    auto it = live.find(n);
    if (want == 0) {
      EXPECT_TRUE(it == live.end()) << "n=" << n << " has freed blocks in the walk";
      continue;
    }
    ASSERT_TRUE(it != live.end()) << "n=" << n;
    const PerN& p = it->second;
    EXPECT_EQ(p.objs, want) << "n=" << n;
    EXPECT_EQ(p.bytes, want * size_of(n)) << "n=" << n;
    EXPECT_EQ(p.stack_ids, std::set<uint32_t>{ids[n]}) << "n=" << n;
    EXPECT_EQ(p.sizes, std::set<uint64_t>{size_of(n)}) << "n=" << n;
    EXPECT_EQ(p.threads, std::set<uint32_t>{n < kStacks / 2 ? main_index : worker_index}) << "n=" << n;
  }
  for (auto& v : blocks)
    for (void* p : v) free(p);
  EXPECT_TRUE(live_by_n(kBits).empty());
}

// The stack table maps its entries in 1 MiB chunks and its counters in chunks of 4096
// ids (profile/stack_table.h): 8192 stacks of 15 frames and more cross both kinds of
// boundary. Every stack must come back whole, once, with its exact counts, from two
// threads that fill the table at once.
TEST(ProfExact, StackTableAcrossItsChunks) {
  require_sample(0);
  constexpr uint32_t kManyBits = 13;
  constexpr uint32_t kMany = 1u << kManyBits;
  auto times = [](uint32_t n) { return 1 + n % 3; };
  auto bytes = [](uint32_t n) { return size_t{16} + n % 1000; };
  uint32_t before = prof::stack_count();
  auto fill = [&](uint32_t from, uint32_t step) {
    for (uint32_t n = from; n < kMany; n += step)
      for (uint32_t j = 0; j < times(n); ++j) free(bt_root(n, kManyBits, bytes(n)));
  };
  std::thread other(fill, 1, 2);
  fill(0, 2);
  other.join();
  EXPECT_GE(prof::stack_count() - before, kMany);
  std::vector<uint32_t> ids;
  ASSERT_NO_FATAL_FAILURE(one_stack_per_n_counted(kManyBits, times, bytes, &ids));
}

TEST(ProfExact, FreeOnAnotherThreadLeavesTheWalk) {
  require_sample(0);
  constexpr int kN = 100;
  void* blocks[kN];
  prof::Counters c0 = prof::counters();
  for (int i = 0; i < kN; ++i) blocks[i] = bt_root(5, 3, 4242);
  prof::Counters c1 = prof::counters();
  EXPECT_EQ(c1.sampled_live - c0.sampled_live, uint64_t{kN});
  EXPECT_EQ(c1.sampled_total - c0.sampled_total, uint64_t{kN});
  auto live = live_by_n(3);
  ASSERT_EQ(live[5].objs, uint64_t{kN});

  std::thread([&] { for (int i = 0; i < 40; ++i) free(blocks[i]); }).join();
  live = live_by_n(3);
  EXPECT_EQ(live[5].objs, uint64_t{kN - 40});
  EXPECT_EQ(live[5].bytes, uint64_t{kN - 40} * 4242);

  // The freeing thread's record cache outlives the thread: its slots are recycled.
  std::thread([&] { for (int i = 40; i < kN; ++i) free(blocks[i]); }).join();
  EXPECT_EQ(live_by_n(3).count(5), 0u);
}

// A registered thread that frees `blocks`, then waits, alive and allocating nothing,
// until release(): its frees stay in its ring of pending retirements
// (profile/live_set.cpp) unless they overflow it.
class FreeThenWait {
 public:
  explicit FreeThenWait(std::vector<void*> blocks)
      : thread_([this, blocks] {
          my_thread_index();  // registered first: an unregistered thread retires at once
          for (void* p : blocks) free(p);
          std::unique_lock<std::mutex> l(m_);
          freed_ = true;
          cv_.notify_all();
          cv_.wait(l, [&] { return go_; });
        }) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return freed_; });
  }
  ~FreeThenWait() { release(); }
  void release() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(m_);
      go_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool freed_ = false, go_ = false;
  std::thread thread_;  // last: it starts once the members above exist
};

// A thread's frees wait in its ring of pending retirements until its next sample or
// until the ring is full; a walk must leave them out meanwhile, even while the thread
// that freed them sits idle, and its exit must retire them.
TEST(ProfExact, BlocksFreedByAnIdleThreadLeaveTheWalk) {
  require_sample(0);
  constexpr int kN = 40;
  std::vector<void*> blocks;
  for (int i = 0; i < kN; ++i) blocks.push_back(bt_root(6, 3, 5151));
  // 1 and 3 stay inside the ring, 8 fill it, 20 overflow it.
  int first = 0;
  for (int k : {1, 3, int{leakalloc::kRecordPendingSlots}, 20}) {
    FreeThenWait t({blocks.begin() + first, blocks.begin() + first + k});
    first += k;
    auto live = live_by_n(3);
    EXPECT_EQ(live[6].objs, uint64_t(kN - first)) << k << " freed, their thread waiting";
    EXPECT_EQ(live[6].bytes, uint64_t(kN - first) * 5151);
    t.release();
    EXPECT_EQ(live_by_n(3)[6].objs, uint64_t(kN - first)) << k << " freed, their thread gone";
  }
  for (int i = first; i < kN; ++i) free(blocks[i]);
  EXPECT_EQ(live_by_n(3).count(6), 0u);
}

// free() then malloc() on one thread: the new block takes the freed block's record in
// place (retired and published again by the one thread) under the next generation,
// around the 7-bit generation's wrap too.
TEST(ProfExact, ARecordTakenBackInPlaceShowsOnlyTheNewBlock) {
  require_sample(0);
  my_thread_index();
  void* p = bt_root(1, 3, 4111);
  uint32_t record = leakalloc::sampled_record_of(p);
  ASSERT_NE(record, 0u);
  for (uint32_t i = 0; i < 300; ++i) {
    free(p);
    p = bt_root(2 + i % 2, 3, 4112 + i % 2);
  }
  EXPECT_EQ(leakalloc::sampled_record_of(p), record) << "the freed block's record was not reused";
  auto live = live_by_n(3);
  EXPECT_EQ(live.count(1), 0u);
  EXPECT_EQ(live.count(2), 0u);
  ASSERT_EQ(live.count(3), 1u);
  EXPECT_EQ(live[3].objs, 1u);
  EXPECT_EQ(live[3].bytes, 4113u);
  free(p);
  EXPECT_EQ(live_by_n(3).count(3), 0u);
}

// Walks racing with threads whose frees go through their rings (reused in place,
// evicted, retired): a walk reports every block that was live from its start to its end,
// and none that was freed before it began.
TEST(ProfExact, ConcurrentWalksSeeWhatWasLiveAndNothingFreedBefore) {
  require_sample(0);
  constexpr int kThreads = 3, kPer = 3000;
  std::vector<std::vector<void*>> old(kThreads);
  for (auto& v : old)
    for (int i = 0; i < kPer; ++i) v.push_back(bt_root(7, 3, 2222));
  // Frees begun and frees returned, per thread.
  std::atomic<uint64_t> begun[kThreads] = {}, freed[kThreads] = {};
  std::atomic<int> done{0}, walks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      void* ring[16] = {};
      for (int i = 0; i < kPer; ++i) {
        // Never more than 25 frees ahead of the walks, so that they overlap throughout.
        while (walks.load() < i / 25) sleep_ms(1);
        begun[t].fetch_add(1, std::memory_order_seq_cst);
        free(old[t][i]);
        freed[t].fetch_add(1, std::memory_order_seq_cst);
        int n = 1 + i % 24;
        if (i % 2 == 0) {
          // The next sample takes the record just freed back in place.
          for (int j = 0; j < n; ++j) {
            void* p = bt_root(1 + (i + j) % 3, 3, 64 + j);
            free(ring[(i + j) % 16]);
            ring[(i + j) % 16] = p;
          }
        } else {
          // Frees first: the ring fills and pushes its oldest out, that record among them.
          for (int j = 0; j < n; ++j) {
            free(ring[(i + j) % 16]);
            ring[(i + j) % 16] = nullptr;
          }
          for (int j = 0; j < n; ++j)
            if (ring[(i + j) % 16] == nullptr) ring[(i + j) % 16] = bt_root(1 + (i + j) % 3, 3, 64 + j);
        }
      }
      for (void* p : ring) free(p);
      done.fetch_add(1);
    });
  }
  auto sum = [](std::atomic<uint64_t>* counts) {
    uint64_t n = 0;
    for (int t = 0; t < kThreads; ++t) n += counts[t].load(std::memory_order_seq_cst);
    return n;
  };
  while (done.load() < kThreads) {
    uint64_t freed_before = sum(freed);
    uint64_t seen = live_by_n(3)[7].objs;
    uint64_t begun_after = sum(begun);
    uint64_t total = uint64_t{kThreads} * kPer;
    ASSERT_LE(seen, total - freed_before) << "walk " << walks << " showed blocks freed before it began";
    ASSERT_GE(seen, total - begun_after) << "walk " << walks << " missed blocks live all along";
    walks.fetch_add(1);
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(walks.load(), kPer / 25);
  EXPECT_EQ(live_by_n(3).count(7), 0u);
}

TEST(ProfExact, ResetClearsCumulativeCountsKeepsLiveBlocks) {
  require_sample(0);
  // Both rounds allocate from the same call site (the whole stack, up to main, is part
  // of the stack's identity), so they share one stack id.
  void* blocks[10];
  uint32_t id = 0;
  for (int round = 0; round < 2; ++round) {
    int first = round == 0 ? 0 : 7, count = round == 0 ? 7 : 3;
    for (int i = first; i < first + count; ++i) blocks[i] = bt_root(9, 4, 1111);
    auto table = table_by_n(4);
    ASSERT_EQ(table[9].size(), 1u);
    if (round == 0) id = table[9][0];
    ASSERT_EQ(table[9][0], id);
    StackView v;
    ASSERT_TRUE(prof::stack_get(id, &v));
    EXPECT_EQ(v.cum_objs, uint64_t(count)) << "round " << round;
    EXPECT_EQ(v.cum_bytes, uint64_t(count) * 1111) << "round " << round;
    EXPECT_EQ(live_by_n(4)[9].objs, uint64_t(first + count)) << "reset must keep live blocks";
    if (round == 0) {
      prof::reset(0);
      prof::Counters c = prof::counters();
      ASSERT_TRUE(prof::stack_get(id, &v));
      EXPECT_EQ(v.cum_objs, 0u);
      EXPECT_EQ(v.cum_bytes, 0u);
      EXPECT_EQ(c.sampled_total, 0u);
      EXPECT_EQ(prof::lg_sample(), 0);
    }
  }
  for (void* p : blocks) free(p);
}

// prof::reset(0) at run time: every thread samples its very next allocation, even one
// part-way through a long countdown drawn at the old rate (mean 2^19 bytes).
TEST(ProfExact, ResetToSample0ReachesEveryThreadAtOnce) {
  require_sample(19);
  std::atomic<int> step{0};
  void* blocks[100];
  std::thread t([&] {
    free(bt_leaf(16));  // registered, with a countdown drawn at sample:19
    step = 1;
    while (step.load() != 2) sched_yield();
    for (auto& p : blocks) p = bt_root(11, 4, 64);
    step = 3;
  });
  while (step.load() != 1) sched_yield();
  prof::reset(0);
  EXPECT_EQ(prof::lg_sample(), 0);
  EXPECT_EQ(prof::sample_period(), 1u);
  step = 2;
  while (step.load() != 3) sched_yield();
  t.join();
  auto live = live_by_n(4);
  EXPECT_EQ(live[11].objs, 100u);
  EXPECT_EQ(live[11].bytes, 6400u);
  for (void* p : blocks) free(p);
}

// stats.sampled_live is kept by counters (records published minus records handed back),
// not by walking the records: it must still say what a walk sees, whichever thread frees,
// after threads exit, after a realloc in place, and in a fork child.
TEST(ProfExact, SampledLiveCountsWhatTheWalkSees) {
  require_sample(0);
  auto agree = [](const char* when) {
    // The snapshot's own buffer is a live sampled block: it is counted while it lives.
    std::vector<LiveBlock> walked = snapshot();
    uint64_t counted = prof::counters().sampled_live;
    EXPECT_EQ(counted, walked.size()) << when;
    return counted == walked.size();
  };
  agree("at the start");
  std::vector<void*> mine;
  for (int i = 0; i < 100; ++i) mine.push_back(bt_root(2, 3, 3131));
  agree("after 100 mallocs");
  std::thread([&] { for (int i = 0; i < 40; ++i) free(mine[i]); }).join();
  agree("after 40 frees on a thread that only frees");
  std::vector<void*> theirs;
  std::thread([&] { for (int i = 0; i < 30; ++i) theirs.push_back(bt_root(3, 3, 3232)); }).join();
  agree("after a thread left 30 blocks and exited");
  for (int i = 40; i < 50; ++i) mine[i] = realloc(mine[i], 3141);
  agree("after 10 reallocs in place");
  pid_t pid = fork();
  if (pid == 0) {
    bool ok = agree("in a fork child");
    for (void* p : theirs) free(p);
    ok = agree("after the child freed the exited thread's blocks") && ok;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the fork child's counts disagreed";
  for (void* p : theirs) free(p);
  agree("after freeing the exited thread's blocks");
  for (size_t i = 40; i < mine.size(); ++i) free(mine[i]);
  agree("at the end");
}

TEST(ProfExact, SetActiveFalseStopsSamplingImmediately) {
  require_sample(0);
  void* off[50];
  void* on[50];
  prof::set_active(false);
  EXPECT_FALSE(prof::active());
  prof::Counters c0 = prof::counters();
  for (auto& p : off) p = bt_root(3, 3, 2323);
  prof::Counters c1 = prof::counters();
  EXPECT_EQ(c1.sampled_total, c0.sampled_total);
  EXPECT_EQ(c1.sampled_live, c0.sampled_live);
  EXPECT_EQ(live_by_n(3).count(3), 0u);

  prof::set_active(true);
  for (auto& p : on) p = bt_root(3, 3, 2323);
  auto live = live_by_n(3);
  EXPECT_EQ(live[3].objs, 50u);
  for (auto* p : off) free(p);  // unsampled blocks free normally
  EXPECT_EQ(live_by_n(3)[3].objs, 50u);
  for (auto* p : on) free(p);
  EXPECT_EQ(live_by_n(3).count(3), 0u);
}

}  // namespace

// Every allocation entry point, each called from its own function: frame 0 of the
// sampled stack must be the return address into that function, whatever our entry
// point did internally (operator new's loop, realloc moving the block, alignment).
#define EP_FN extern "C" __attribute__((noipa, visibility("default")))
#define EP_KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")
EP_FN void* ep_malloc(size_t n) { void* p = malloc(n); EP_KEEP(p); return p; }
EP_FN void* ep_calloc(size_t n) { void* p = calloc(1, n); EP_KEEP(p); return p; }
EP_FN void* ep_realloc(void* q, size_t n) { void* p = realloc(q, n); EP_KEEP(p); return p; }
EP_FN void* ep_new(size_t n) { void* p = ::operator new(n); EP_KEEP(p); return p; }
EP_FN void* ep_new_array(size_t n) { void* p = ::operator new[](n); EP_KEEP(p); return p; }
EP_FN void* ep_new_nothrow(size_t n) { void* p = ::operator new(n, std::nothrow); EP_KEEP(p); return p; }
EP_FN void* ep_new_aligned(size_t n) { void* p = ::operator new(n, std::align_val_t(128)); EP_KEEP(p); return p; }
EP_FN void* ep_posix_memalign(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 64, n) != 0) return nullptr;
  EP_KEEP(p);
  return p;
}
EP_FN void* ep_aligned_alloc(size_t n) { void* p = aligned_alloc(256, n); EP_KEEP(p); return p; }
EP_FN void* ep_memalign(size_t n) { void* p = memalign(32, n); EP_KEEP(p); return p; }
EP_FN void* ep_valloc(size_t n) { void* p = valloc(n); EP_KEEP(p); return p; }

namespace {

TEST(ProfExact, EveryEntryPointRecordsItsCaller) {
  require_sample(0);
  struct Case {
    const char* name;
    void* fn;
    void* p;
    size_t size;
  };
  void* moved = ep_malloc(9001);
  std::vector<Case> cases = {
      {"malloc", (void*)&ep_malloc, ep_malloc(9101), 9101},
      {"calloc", (void*)&ep_calloc, ep_calloc(9102), 9102},
      {"realloc", (void*)&ep_realloc, ep_realloc(moved, 9103), 9103},
      {"realloc(NULL)", (void*)&ep_realloc, ep_realloc(nullptr, 9104), 9104},
      {"operator new", (void*)&ep_new, ep_new(9105), 9105},
      {"operator new[]", (void*)&ep_new_array, ep_new_array(9106), 9106},
      {"operator new nothrow", (void*)&ep_new_nothrow, ep_new_nothrow(9107), 9107},
      {"operator new aligned", (void*)&ep_new_aligned, ep_new_aligned(9108), 9108},
      {"posix_memalign", (void*)&ep_posix_memalign, ep_posix_memalign(9109), 9109},
      {"aligned_alloc", (void*)&ep_aligned_alloc, ep_aligned_alloc(9216), 9216},
      {"memalign", (void*)&ep_memalign, ep_memalign(9110), 9110},
      {"valloc", (void*)&ep_valloc, ep_valloc(9111), 9111},
  };
  std::vector<LiveBlock> live = snapshot();
  for (const Case& c : cases) {
    ASSERT_NE(c.p, nullptr) << c.name;
    int found = 0;
    for (const LiveBlock& b : live) {
      if (b.size != c.size) continue;
      ++found;
      StackView v;
      ASSERT_TRUE(prof::stack_get(b.stack_id, &v)) << c.name;
      ASSERT_GE(v.depth, 2u) << c.name;
      EXPECT_EQ(func_of(v.frames[0]), c.fn) << c.name << ": frame 0 in " << object_of(v.frames[0]);
    }
    EXPECT_EQ(found, 1) << c.name;
  }
  int old_found = 0;
  for (const LiveBlock& b : live) old_found += b.size == 9001;
  EXPECT_EQ(old_found, 0) << "realloc left the old block in the live set";
  for (const Case& c : cases) {
    if (c.fn == (void*)&ep_new_aligned) ::operator delete(c.p, std::align_val_t(128));
    else free(c.p);
  }
}

// realloc() within a block's usable size keeps the block where it is, sampled or not: the
// sampled block gets this call's stack and the new size, keeps its birth, and nothing of
// its old record stays live. A buffer grown by small steps therefore moves only when it
// outgrows its size class (it used to move, and be copied whole, at every step).
TEST(ProfExact, ReallocInPlaceKeepsTheBlockWithTheCallersStackAndItsBirth) {
  require_sample(0);
  void* p = ep_malloc(9201);
  uint64_t born = 0;
  for (const LiveBlock& b : snapshot())
    if (b.size == 9201) born = b.birth_ns;
  ASSERT_NE(born, 0u);
  sleep_ms(30);
  void* q = ep_realloc(p, 9303);
  ASSERT_EQ(q, p) << "9303 bytes fit the block of 9201";
  int found = 0;
  for (const LiveBlock& b : snapshot()) {
    EXPECT_NE(b.size, 9201u) << "the old record stayed live";
    if (b.size != 9303) continue;
    ++found;
    EXPECT_EQ(b.birth_ns >> 20, born >> 20) << "the block kept its birth (to the header's tick)";
    StackView v;
    ASSERT_TRUE(prof::stack_get(b.stack_id, &v));
    ASSERT_GE(v.depth, 1u);
    EXPECT_EQ(func_of(v.frames[0]), (void*)&ep_realloc) << "frame 0 in " << object_of(v.frames[0]);
  }
  EXPECT_EQ(found, 1);
  free(q);

  // From 64 bytes to 4 MiB in 64-byte steps: 65535 reallocs. Size classes grow by at most
  // a quarter, so the block may move some 60 times; at every step it would be 65535.
  char* buf = static_cast<char*>(ep_malloc(64));
  buf[0] = 42;
  int moves = 0;
  for (size_t n = 128; n <= (size_t{4} << 20); n += 64) {
    char* next = static_cast<char*>(ep_realloc(buf, n));
    ASSERT_NE(next, nullptr);
    moves += next != buf;
    buf = next;
    buf[n - 1] = 1;
  }
  EXPECT_EQ(buf[0], 42);
  EXPECT_LE(moves, 100) << "a growing sampled buffer moved at " << moves << " of 65535 reallocs";
  int grown = 0;
  for (const LiveBlock& b : snapshot()) grown += b.size == (size_t{4} << 20);
  EXPECT_EQ(grown, 1);
  free(buf);
}

// A thread that only frees (it never allocates, so it never registers and never runs
// the allocator's exit hook) must not take live-record slots out of circulation, nor
// may a thread that allocates after its exit hook ran.
TEST(ProfExact, ThreadsOutsideTheRegistryDoNotLeakRecordSlots) {
  require_sample(0);
  constexpr int kRounds = 2500, kPer = 64;
  void* blocks[kPer];
  auto round = [&] {
    for (auto& p : blocks) p = bt_root(1, 1, 48);
    std::thread([&] { for (void* p : blocks) free(p); }).join();
  };
  for (int r = 0; r < 50; ++r) round();
  uint64_t before = prof::counters().record_bytes;
  for (int r = 0; r < kRounds; ++r) round();
  // kRounds * kPer leaked slots would be 160000 records: more than two 64 Ki chunks.
  EXPECT_EQ(prof::counters().record_bytes, before) << "free-only threads";
  EXPECT_EQ(live_by_n(1).count(1), 0u);

  // A thread that allocates after the allocator retired its state (a late TLS
  // destructor) gets slots it can never give back through its exit hook.
  pthread_key_t key;
  ASSERT_EQ(pthread_key_create(&key, [](void*) { free(bt_root(2, 1, 48)); }), 0);
  auto late_round = [&] {
    std::thread([&] {
      free(bt_root(3, 1, 48));
      pthread_setspecific(key, &key);
    }).join();
  };
  for (int r = 0; r < 50; ++r) late_round();
  before = prof::counters().record_bytes;
  for (int r = 0; r < 2 * kRounds; ++r) late_round();
  EXPECT_EQ(prof::counters().record_bytes, before) << "allocations after thread exit";
  pthread_key_delete(key);
}

// max_depth:4 from LEAKALLOC_CONF: stacks keep their 4 innermost frames, counted from
// the caller of malloc (the allocator's own frames are cut before truncating).
TEST(ProfExact, MaxDepthKeepsTheInnermostCallerFrames) {
  require_sample(0);
  constexpr uint32_t kDeep = 10;
  std::vector<void*> blocks;
  blocks.reserve(1u << kDeep);
  for (uint32_t n = 0; n < (1u << kDeep); ++n) blocks.push_back(bt_root(n, kDeep, 3131));
  std::map<uint32_t, uint64_t> per_stack;
  for (const LiveBlock& b : snapshot())
    if (b.size == 3131) ++per_stack[b.stack_id];
  // Frames 0..3 are bt_leaf and the bt_0/bt_1 levels of bits 9, 8 and 7 (frame 3's
  // call site is fixed by bit 8): 8 distinct truncated stacks of 128 blocks each.
  EXPECT_EQ(per_stack.size(), 8u);
  for (auto& [id, count] : per_stack) {
    EXPECT_EQ(count, 128u) << "stack " << id;
    StackView v;
    ASSERT_TRUE(prof::stack_get(id, &v));
    EXPECT_EQ(v.depth, 4u);
    EXPECT_EQ(func_of(v.frames[0]), reinterpret_cast<void*>(&bt_leaf));
    for (uint32_t k = 1; k < 4; ++k) {
      void* f = func_of(v.frames[k]);
      EXPECT_TRUE(f == reinterpret_cast<void*>(&bt_0) || f == reinterpret_cast<void*>(&bt_1)) << "frame " << k;
    }
  }
  for (void* p : blocks) free(p);
}

// ---- unsampling accuracy at sample:N --------------------------------------------------

TEST(ProfStat, UnsampledEstimateWithinFiveSigma) {
  constexpr int kLg = 12;
  require_sample(kLg);
  const uint64_t period = prof::sample_period();
  ASSERT_EQ(period, uint64_t{1} << kLg);
  struct Class {
    size_t size;
    uint32_t n;
  };
  // From far below the period (p ~ 0.6 %) to far above it (p ~ 1).
  const Class classes[] = {{24, 60000}, {200, 20000}, {1500, 6000}, {10000, 1500}, {70000, 300}, {300000, 40}};
  std::vector<void*> blocks;
  blocks.reserve(60000);
  prof::seed_thread_sampler(0x1234567);

  double all_bytes_est = 0, all_bytes_var = 0, all_bytes_true = 0;
  for (uint32_t c = 0; c < sizeof classes / sizeof classes[0]; ++c) {
    const Class& k = classes[c];
    blocks.clear();
    for (uint32_t i = 0; i < k.n; ++i) blocks.push_back(bt_root(c, 3, k.size));
    double p = 1.0 - std::exp(-static_cast<double>(k.size) / static_cast<double>(period));
    uint64_t sampled = 0;
    double count_est = 0;
    for (const LiveBlock& b : snapshot()) {
      StackView v;
      if (!prof::stack_get(b.stack_id, &v) || decode_bt(v, 3) != c) continue;
      ASSERT_EQ(b.size, k.size);
      ++sampled;
      count_est += prof::unsample_scale(b.size, period);
    }
    for (void* q : blocks) free(q);
    // Horvitz-Thompson: each allocation is sampled independently with probability p
    // and weighted 1/p, so Var(count estimate) = n (1-p)/p, bytes scale by size^2.
    double var = k.n * (1.0 - p) / p;
    double sigma = std::sqrt(var);
    EXPECT_NEAR(count_est, k.n, 5 * sigma + 1e-6)
        << "size " << k.size << ": " << sampled << " sampled of " << k.n << ", p=" << p;
    double bytes_est = count_est * k.size;
    EXPECT_NEAR(bytes_est, double(k.n) * k.size, 5 * sigma * k.size + 1e-3) << "size " << k.size;
    // The number of samples itself is binomial(n, p).
    EXPECT_NEAR(double(sampled), k.n * p, 5 * std::sqrt(k.n * p * (1 - p)) + 1e-6) << "size " << k.size;
    if (p < 0.999) EXPECT_GT(sampled, 0u) << "size " << k.size;
    all_bytes_est += bytes_est;
    all_bytes_var += var * double(k.size) * double(k.size);
    all_bytes_true += double(k.n) * k.size;
  }
  EXPECT_NEAR(all_bytes_est, all_bytes_true, 5 * std::sqrt(all_bytes_var));
}

// Blocks of 1025 bytes grown in place to 1264 (their size class holds 1264 after the
// header). The readers weigh each sampled block by its size now, so each block must have
// been sampled with the probability that size gives it: the growth must meet the sampler
// too. Were only the first 1025 bytes exposed, the estimate would fall 17% short (some
// 14 sigma here).
TEST(ProfStat, BlocksGrownInPlaceAreSampledByTheirWholeSize) {
  constexpr int kLg = 12;
  require_sample(kLg);
  const uint64_t period = prof::sample_period();
  constexpr uint32_t kN = 20000;
  constexpr size_t kFrom = 1025, kTo = 1264;
  std::vector<void*> blocks;
  blocks.reserve(kN);
  prof::seed_thread_sampler(0x7654321);
  uint32_t moved = 0;
  for (uint32_t i = 0; i < kN; ++i) {
    void* p = bt_root(6, 3, kFrom);
    void* q = realloc(p, kTo);
    moved += q != p;
    blocks.push_back(q);
  }
  ASSERT_EQ(moved, 0u) << "1264 bytes fit a block of 1025";
  double p = 1.0 - std::exp(-static_cast<double>(kTo) / static_cast<double>(period));
  uint64_t sampled = 0;
  double count_est = 0;
  for (const LiveBlock& b : snapshot()) {
    if (b.size != kTo) continue;
    ++sampled;
    count_est += prof::unsample_scale(b.size, period);
  }
  for (void* q : blocks) free(q);
  double sigma = std::sqrt(kN * (1.0 - p) / p);
  EXPECT_NEAR(count_est, kN, 5 * sigma) << sampled << " sampled of " << kN << ", p=" << p;
  EXPECT_NEAR(double(sampled), kN * p, 5 * std::sqrt(kN * p * (1 - p)));
}

// ---- ages -------------------------------------------------------------------------------

TEST(ProfAge, CutoffSplitsGenerations) {
  require_sample(0);
  constexpr int kPerGen = 20;
  constexpr uint64_t kMs = 1000000;
  void* gen[3][kPerGen];
  uint64_t before[3], after[3];
  for (int g = 0; g < 3; ++g) {
    if (g > 0) sleep_ms(300);
    before[g] = coarse_now();
    for (auto& p : gen[g]) p = bt_root(g, 2, 5000 + g);
    after[g] = coarse_now();
  }
  // Births are coarse-clock reads between our own reads (a tick of slack).
  for (const LiveBlock& b : snapshot()) {
    if (!frame0_is_leaf(b.stack_id)) continue;
    int g = static_cast<int>(b.size) - 5000;
    ASSERT_TRUE(g >= 0 && g < 3) << b.size;
    EXPECT_GE(b.birth_ns + 5 * kMs, before[g]);
    EXPECT_LE(b.birth_ns, after[g] + 5 * kMs);
  }
  uint64_t now = coarse_now();
  auto count_gens = [](uint64_t born_before) {
    auto live = live_by_n(2, born_before);
    std::vector<uint64_t> out(3);
    for (int g = 0; g < 3; ++g) out[g] = live.count(g) != 0 ? live[g].objs : 0;
    return out;
  };
  // Generations are >= 300 ms apart; cut in the middle of each gap.
  uint64_t cut01 = before[1] - 150 * kMs, cut12 = before[2] - 150 * kMs;
  EXPECT_EQ(count_gens(cut01), (std::vector<uint64_t>{kPerGen, 0, 0}));
  EXPECT_EQ(count_gens(cut12), (std::vector<uint64_t>{kPerGen, kPerGen, 0}));
  EXPECT_EQ(count_gens(now + 5 * kMs), (std::vector<uint64_t>{kPerGen, kPerGen, kPerGen}));
  EXPECT_EQ(count_gens(before[0] - 100 * kMs), (std::vector<uint64_t>{0, 0, 0}));
  for (auto& g : gen)
    for (void* p : g) free(p);
}

// ---- stack table cap --------------------------------------------------------------------

TEST(ProfCap, PastMaxStacksMemoryStaysBoundedAndDropsAreCounted) {
  require_sample(0);
  // max_stacks:16 from LEAKALLOC_CONF: 16 stacks plus the overflow stack.
  constexpr uint32_t kMaxIds = 17;
  // Fill the table if start-up has not already (ids are never freed).
  std::vector<void*> fill;
  fill.reserve(64);
  for (uint32_t n = 0; n < 32; ++n) fill.push_back(bt_root(n, 5, 100));
  for (void* p : fill) free(p);
  ASSERT_EQ(prof::stack_count(), kMaxIds);

  StackView ov;
  ASSERT_TRUE(prof::stack_get(prof::kOverflowStackId, &ov));
  ASSERT_EQ(ov.depth, 1u);
  EXPECT_EQ(ov.frames[0], reinterpret_cast<uintptr_t>(&leakalloc_stack_table_full));
  uint64_t ov_objs0 = ov.cum_objs;

  std::vector<void*> keep;
  keep.reserve(1024);
  prof::Counters c0 = prof::counters();
  constexpr uint32_t kNew = 4096;  // distinct stacks, none of which can be stored
  for (uint32_t n = 0; n < kNew; ++n) {
    void* p = bt_root(n, 12, 5555);
    if (n % 4 == 0) keep.push_back(p);
    else free(p);
  }
  prof::Counters c1 = prof::counters();
  EXPECT_EQ(c1.stacks, kMaxIds);
  EXPECT_EQ(prof::stack_count(), kMaxIds);
  EXPECT_FALSE(prof::stack_get(kMaxIds + 1, &ov));
  EXPECT_GE(c1.stacks_dropped - c0.stacks_dropped, uint64_t{kNew});
  EXPECT_EQ(c1.stack_bytes, c0.stack_bytes) << "stack-table memory grew past the stack cap";
  EXPECT_GT(c1.stack_bytes, 0u);
  ASSERT_TRUE(prof::stack_get(prof::kOverflowStackId, &ov));
  EXPECT_GE(ov.cum_objs - ov_objs0, uint64_t{kNew});

  uint64_t on_overflow = 0, elsewhere = 0;
  for (const LiveBlock& b : snapshot()) {
    if (b.size != 5555) continue;
    if (b.stack_id == prof::kOverflowStackId) ++on_overflow;
    else ++elsewhere;
  }
  EXPECT_EQ(on_overflow, keep.size());
  EXPECT_EQ(elsewhere, 0u);
  for (void* p : keep) free(p);
}

// ---- fork while sampling --------------------------------------------------------------

// Runs in the child; returns a nonzero code naming the first failed check.
int child_checks(uint64_t parent_blocks) {
  alarm(30);  // a deadlock in the child fails the test instead of hanging it
  auto live = live_by_n(2);
  if (live[1].objs != parent_blocks) return 10;
  std::vector<void*> mine;
  for (int i = 0; i < 200; ++i) mine.push_back(bt_root(2, 2, 6262));
  live = live_by_n(2);
  if (live[2].objs != 200 || live[2].bytes != 200u * 6262) return 11;
  for (void* p : mine) free(p);
  if (live_by_n(2).count(2) != 0) return 12;
  prof::threads_refresh_names();
  // New stacks can still be interned (the stripe locks were released in the child).
  void* q = bt_root(3, 2, 6363);
  if (live_by_n(2)[3].objs != 1) return 13;
  free(q);
  return 0;
}

TEST(ProfFork, ChildWalksAllocatesAndSamplesWhileParentThreadsSample) {
  require_sample(0);
  std::vector<void*> held;
  for (int i = 0; i < 10; ++i) held.push_back(bt_root(1, 2, 6161));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&stop, t] {
      void* ring[64] = {};
      for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        free(ring[i % 64]);
        // New stacks keep coming (stripe locks), sizes vary (mimalloc size classes).
        ring[i % 64] = bt_root((i * 7 + t) % 1024, 10, 64 + i % 700);
      }
      for (void* p : ring) free(p);
    });
  }
  threads.emplace_back([&stop] {
    while (!stop.load(std::memory_order_relaxed)) {
      prof::threads_refresh_names();
      (void)snapshot().size();
    }
  });
  for (int round = 0; round < 15; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(child_checks(held.size()));
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "round " << round << ": child killed by signal "
                                   << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ASSERT_EQ(WEXITSTATUS(status), 0) << "round " << round;
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(live_by_n(2)[1].objs, held.size());
  for (void* p : held) free(p);
  // The three samplers ran the same code, so they interned the same stacks at the
  // same time: each must still be stored once.
  auto table = table_by_n(10);
  EXPECT_GT(table.size(), 100u);
  for (auto& [n, ids] : table) EXPECT_EQ(ids.size(), 1u) << "n=" << n << " stored more than once";
}

// A fork child has only the forking thread: the frees other threads had not yet
// retired must not come back to life in it (the child retires them for those threads).
TEST(ProfFork, ChildLeavesOutWhatParentThreadsFreed) {
  require_sample(0);
  constexpr int kN = 6;
  std::vector<void*> blocks;
  for (int i = 0; i < kN; ++i) blocks.push_back(bt_root(4, 3, 7171));
  FreeThenWait t({blocks.begin(), blocks.begin() + 4});
  ASSERT_EQ(live_by_n(3)[4].objs, uint64_t(kN - 4));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(30);
    if (live_by_n(3)[4].objs != kN - 4) _exit(10);
    // The retired slots serve the child's samples like any other.
    std::vector<void*> mine;
    for (int i = 0; i < 100; ++i) mine.push_back(bt_root(5, 3, 7272));
    auto live = live_by_n(3);
    if (live[4].objs != kN - 4 || live[5].objs != 100) _exit(11);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: the walk counts freed blocks; 11: after new samples";
  t.release();
  EXPECT_EQ(live_by_n(3)[4].objs, uint64_t(kN - 4));
  for (int i = 4; i < kN; ++i) free(blocks[i]);
}

// ---- thread exit ----------------------------------------------------------------------

pthread_key_t g_late_key;
struct LateWork {
  void* to_free[5];
  void* allocated[5];
};

TEST(ProfThreads, BlocksOfAnExitedThreadKeepItsIndexAndName) {
  require_sample(0);
  constexpr int kN = 25;
  void* blocks[kN];
  uint32_t index = UINT32_MAX;
  pid_t tid = 0;
  std::atomic<int> step{0};
  LateWork late{};
  // A key created after the allocator's own exit key: its destructor runs after the
  // allocator has retired this thread's state, like glibc's late TLS frees.
  ASSERT_EQ(pthread_key_create(&g_late_key,
                               [](void* arg) {
                                 LateWork* w = static_cast<LateWork*>(arg);
                                 for (void*& p : w->to_free) { free(p); p = nullptr; }
                                 for (void*& p : w->allocated) p = bt_root(6, 3, 7474);
                               }),
            0);
  uint64_t thread_bytes_before = prof::counters().thread_bytes;
  uint32_t memos_before = leakalloc::threads::memos_mapped();
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "la-exit-7");
    index = my_thread_index();
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    for (auto& p : blocks) p = bt_root(4, 3, 7373);
    for (auto& p : late.to_free) p = bt_root(5, 3, 7575);
    pthread_setspecific(g_late_key, &late);
    step = 1;
    while (step.load() != 2) sched_yield();
  });
  while (step.load() != 1) sched_yield();
  prof::threads_refresh_names();
  // The thread sampled, so it got a stack memo of its own, counted in profiler_bytes;
  // at its end it gives the memo back for the next thread.
  uint64_t thread_bytes_live = prof::counters().thread_bytes;
  EXPECT_GE(thread_bytes_live - thread_bytes_before, sizeof(leakalloc::frame_cache::MemoSet));
  EXPECT_EQ(leakalloc::threads::memos_mapped(), memos_before + 1);
  step = 2;
  t.join();
  // Names of exited threads are kept, not re-read (the tid may belong to someone else).
  prof::threads_refresh_names();
  std::thread([] { for (int i = 0; i < 5; ++i) free(bt_root(7, 3, 100)); }).join();
  EXPECT_EQ(leakalloc::threads::memos_mapped(), memos_before + 1) << "a later thread did not reuse the memo";

  auto live = live_by_n(3);
  EXPECT_EQ(live[4].objs, uint64_t{kN});
  EXPECT_EQ(live[4].threads, std::set<uint32_t>{index});
  EXPECT_EQ(live.count(5), 0u) << "blocks freed after the thread's exit hook are still walked";
  EXPECT_EQ(live[6].objs, 5u) << "blocks allocated after the thread's exit hook";
  prof::ThreadView tv;
  ASSERT_TRUE(prof::thread_get(index, &tv, prof::thread_epoch()));
  EXPECT_EQ(tv.index, index);
  EXPECT_EQ(tv.tid, tid);
  EXPECT_STREQ(tv.name, "la-exit-7");
  EXPECT_NE(my_thread_index(), index);

  for (void* p : blocks) free(p);
  for (void* p : late.allocated) free(p);
  live = live_by_n(3);
  EXPECT_EQ(live.count(4), 0u);
  EXPECT_EQ(live.count(6), 0u);
  pthread_key_delete(g_late_key);
}

}  // namespace

// Every malloc reads the birth clock: after initialisation it must be the vDSO's own
// clock_gettime (base/clock.cpp finds it by hand), and it must tell the same time as
// glibc's CLOCK_MONOTONIC_COARSE.
// memory_readable (base/os.h) decides whether the header before a page-aligned pointer
// that mimalloc's segment map does not cover may be read at free. Each of its three ways
// on a readable page, a PROT_NONE page and an unmapped one; mincore() cannot tell
// PROT_NONE from readable, which the header says.
TEST(ProbeMemory, EachWayTellsReadableFromNot) {
  namespace rd = leakalloc::readable;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  char* m = static_cast<char*>(mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(mprotect(m, page, PROT_NONE), 0);
  ASSERT_EQ(munmap(m + 2 * page, page), 0);
  const uintptr_t none = reinterpret_cast<uintptr_t>(m) + page - 16;  // a header's place
  const uintptr_t rw = reinterpret_cast<uintptr_t>(m) + 2 * page - 16;
  const uintptr_t gone = reinterpret_cast<uintptr_t>(m) + 3 * page - 16;
  const uintptr_t straddle = reinterpret_cast<uintptr_t>(m) + 2 * page - 8;  // rw, then unmapped
  int v = rd::by_vm_readv(rw, 16);
  if (v >= 0) {  // -1: a seccomp policy forbids process_vm_readv here
    EXPECT_EQ(v, 1);
    EXPECT_EQ(rd::by_vm_readv(none, 16), 0);
    EXPECT_EQ(rd::by_vm_readv(gone, 16), 0);
    EXPECT_EQ(rd::by_vm_readv(straddle, 16), 0);
  }
  ASSERT_EQ(rd::by_maps(rw, 16), 1) << "/proc/self/maps unreadable";
  EXPECT_EQ(rd::by_maps(none, 16), 0);
  EXPECT_EQ(rd::by_maps(gone, 16), 0);
  EXPECT_EQ(rd::by_maps(straddle, 16), 0);
  EXPECT_TRUE(rd::by_mincore(rw, 16));
  EXPECT_TRUE(rd::by_mincore(none, 16));  // mapped, though not readable
  EXPECT_FALSE(rd::by_mincore(gone, 16));
  EXPECT_FALSE(rd::by_mincore(straddle, 16));
  errno = 1234;
  EXPECT_TRUE(leakalloc::memory_readable(rw, 16));
  EXPECT_FALSE(leakalloc::memory_readable(none, 16));
  EXPECT_FALSE(leakalloc::memory_readable(gone, 16));
  EXPECT_EQ(errno, 1234) << "free() must leave errno alone";
  munmap(m, 2 * page);
}

TEST(ProfClock, BirthClockIsTheVdsoFunctionAndAgreesWithGlibc) {
  free(malloc(1));  // the first allocation initialises the allocator
  leakalloc::ClockFn f = leakalloc::g_coarse_clock.load();
  uintptr_t vdso = getauxval(AT_SYSINFO_EHDR);
  ASSERT_NE(vdso, 0u);
  EXPECT_NE(reinterpret_cast<uintptr_t>(f), reinterpret_cast<uintptr_t>(&clock_gettime))
      << "still glibc's clock_gettime: the vDSO lookup failed";
  EXPECT_GT(reinterpret_cast<uintptr_t>(f), vdso);
  EXPECT_LT(reinterpret_cast<uintptr_t>(f), vdso + (1u << 16));
  auto ns = [](const timespec& t) { return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec); };
  for (int i = 0; i < 10000; ++i) {
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &a);
    uint64_t mid = leakalloc::coarse_now_ns();
    clock_gettime(CLOCK_MONOTONIC_COARSE, &b);
    ASSERT_LE(ns(a), mid);
    ASSERT_LE(mid, ns(b));
  }
}

// The malloc fast path dates a block from the kernel's [vvar] words when it has found
// and confirmed them (base/clock.h birth_word_now), and so does the sampling path for a
// sampled block's header and live record (coarse_now_ns_cached; profile.birth_clock_vvar
// runs this at sample:19, profile.birth_clock_vvar_sample0 at sample:0). Every header's birth must lie
// between two readings of glibc's CLOCK_MONOTONIC_COARSE taken around the malloc, over
// enough ticks that a stale cached reading would show.
TEST(ProfClock, BirthsFromTheVvarWordsFollowTheClock) {
  auto ticks = []() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return leakalloc::birth_ticks_of(uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec));
  };
  timespec start;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &start);
  uint64_t first = ticks();
  int checked = 0;
  std::vector<void*> keep;
  // 60 ms: a dozen kernel ticks or more, and 60 birth ticks (of 1.05 ms); and at least
  // 2000 blocks, however little of those 60 ms a loaded machine gives this process.
  while (ticks() < first + 60 || checked < 2000) {
    uint64_t a = ticks();
    void* p = malloc(16);
    uint64_t b = ticks();
    uint64_t birth = leakalloc::header_of(p)->birth_ticks();
    ASSERT_LE(a, birth) << "after " << checked << " blocks";
    ASSERT_LE(birth, b) << "after " << checked << " blocks";
    keep.push_back(p);
    ++checked;
    if (keep.size() == 4096) {
      for (void* q : keep) free(q);
      keep.clear();
    }
  }
  for (void* q : keep) free(q);
  // Inside a time namespace (profile.birth_clock_timens runs this under `unshare --time`)
  // the first [vvar] page holds the namespace's clock offsets, not the time: the search
  // must find nothing, and every birth above came from the vDSO call.
  const char* expect = getenv("LEAKALLOC_TEST_BIRTH_CLOCK");
  if (expect != nullptr && strcmp(expect, "vdso") == 0) {
    EXPECT_FALSE(leakalloc::birth_clock_reads_vvar()) << "the shortcut is on inside a time namespace";
    return;
  }
  // On Linux with /proc mounted and no time namespace the shortcut is in use by now;
  // otherwise every birth above came from the vDSO call, which is what it falls back to.
  bool has_vvar = false;
  if (FILE* f = fopen("/proc/self/maps", "r")) {
    char line[512];
    while (fgets(line, sizeof line, f) != nullptr) has_vvar = has_vvar || strstr(line, "[vvar]") != nullptr;
    fclose(f);
  }
  if (!has_vvar) GTEST_SKIP() << "no [vvar] mapping here: births come from the vDSO call";
  EXPECT_TRUE(leakalloc::birth_clock_reads_vvar()) << "the [vvar] words were not found or not confirmed";
}
