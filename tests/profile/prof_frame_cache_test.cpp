// The frame-recipe cache (profile/frame_cache.h) against libunwind: every sampled stack
// must come out identical whichever walked it. Runs at sample:0. Each case allocates
// through one call site twice, libunwind alone and then the cache, and the two blocks
// must share one stack id: the stack table stores each distinct frame list once.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "profile/frame_cache.h"
#include "profile/profiler.h"
#include "profile/sampler.h"
#include "tests/profile/prof_test_util.h"

extern "C" {
void* shape_leaf(size_t size);
void* shape_vla(size_t n, size_t size);
void* shape_big_frame(size_t size);
void* shape_early_return(int fail, size_t size);
void* shape_qsort(size_t size);
void* shape_noreturn(size_t size);
void shape_calls_noreturn(size_t size);
void* shape_signal(size_t size);
// Eleven callers with identical frames (more than the memo keeps): shape_caller_a to _k.
extern void* (*const shape_callers[11])(size_t);
}

namespace prof = leakalloc::prof;
namespace fc = leakalloc::frame_cache;
using namespace proftest;

namespace {

uint32_t stack_of_size(uint64_t size) {
  uint32_t id = 0;
  for (const LiveBlock& b : snapshot())
    if (b.size == size) {
      EXPECT_EQ(id, 0u) << "two live blocks of " << size << " bytes";
      id = b.stack_id;
    }
  return id;
}

std::vector<void*> functions_of(uint32_t stack_id) {
  std::vector<void*> out;
  StackView v;
  if (!prof::stack_get(stack_id, &v)) return out;
  // At address - 1: a return address after a noreturn call is past its function's end.
  for (uint32_t i = 0; i < v.depth; ++i) out.push_back(func_of(v.frames[i] - 1));
  return out;
}

bool contains(const std::vector<void*>& fs, const void* f) {
  for (void* g : fs)
    if (g == f) return true;
  return false;
}

// Runs `make(size)` from one call site with the cache off, then on (twice: the second
// time every frame is a cache hit), and returns the stack, after checking all three agree.
enum Walker { kCacheWalks, kLibunwindWalks };

// `walker`: who must walk the stack when the cache is on. The cache alone, or, for a
// stack with a frame it cannot express, libunwind after the cache gave up.
template <typename F>
uint32_t same_stack_both_ways(uint64_t size, F make, Walker walker = kCacheWalks) {
  EXPECT_EQ(prof::lg_sample(), 0) << "LEAKALLOC_CONF=sample:0 was not applied";
  const bool cached[3] = {false, true, true};
  void* blocks[3];
  uint32_t ids[3];
  uint64_t misses[3], gave_up[3];
  // One call site for all rounds (a trip count the compiler cannot see, so that it does
  // not peel a round into a call site of its own: the stacks would differ in this frame).
  volatile int rounds = 3;
  for (int round = 0; round < rounds; ++round) {
    fc::set_enabled(cached[round]);
    fc::Stats before = fc::stats();
    blocks[round] = make(size + round);
    fc::Stats after = fc::stats();
    misses[round] = after.misses - before.misses;
    gave_up[round] = after.gave_up - before.gave_up;
    ids[round] = stack_of_size(size + round);
  }
  fc::set_enabled(true);
  EXPECT_NE(ids[0], 0u);
  EXPECT_EQ(ids[1], ids[0]) << "the cache walked a different stack than libunwind";
  EXPECT_EQ(ids[2], ids[0]) << "a cache hit walked a different stack than libunwind";
  // The third walk of the same stack found every frame in the cache (a stack the cache
  // leaves to libunwind costs one cached lookup, and no miss, too).
  EXPECT_EQ(misses[0], 0u) << "the cache was used while disabled";
  EXPECT_EQ(misses[2], 0u) << "the same stack walked a third time still read unwind tables";
  EXPECT_EQ(gave_up[0], 0u);
  // Without this, a wrong recipe that ends in a bad address would pass: the cache gives
  // up and libunwind produces the right stack.
  for (int round = 1; round < 3; ++round)
    EXPECT_EQ(gave_up[round], walker == kLibunwindWalks ? 1u : 0u) << "round " << round;
  for (void* p : blocks) free(p);
  return ids[0];
}

TEST(FrameCache, PlainFramesWithoutFramePointer) {
  uint32_t id = same_stack_both_ways(70001, [](size_t s) { return shape_leaf(s); });
  std::vector<void*> fs = functions_of(id);
  ASSERT_GE(fs.size(), 3u);
  EXPECT_EQ(fs[0], reinterpret_cast<void*>(&shape_leaf));
  EXPECT_GT(fc::stats().entries, 0u);
  prof::Counters c = prof::counters();
  EXPECT_GT(c.unwind_bytes, 0u) << "the cache's memory is not counted in profiler_bytes";
  EXPECT_EQ(c.profiler_bytes, c.stack_bytes + c.record_bytes + c.thread_bytes + c.unwind_bytes);
}

TEST(FrameCache, FramePointerChainsFromBtalloc) {
  for (uint32_t n : {0u, 5u, 170u, 255u}) {
    uint32_t id = same_stack_both_ways(70100 + 4 * n, [n](size_t s) { return bt_root(n, 8, s); });
    StackView v;
    ASSERT_TRUE(prof::stack_get(id, &v));
    EXPECT_EQ(decode_bt(v, 8), int64_t{n});
  }
}

TEST(FrameCache, VariableLengthArrayFrame) {
  uint32_t id = same_stack_both_ways(70201, [](size_t s) { return shape_vla(100 + s % 7, s); });
  std::vector<void*> fs = functions_of(id);
  ASSERT_GE(fs.size(), 3u);
  EXPECT_EQ(fs[1], reinterpret_cast<void*>(&shape_vla));
}

TEST(FrameCache, FrameLargerThanAPage) {
  uint32_t id = same_stack_both_ways(70301, [](size_t s) { return shape_big_frame(s); });
  EXPECT_EQ(functions_of(id)[1], reinterpret_cast<void*>(&shape_big_frame));
}

TEST(FrameCache, CallAfterAnEarlyReturn) {
  uint32_t id = same_stack_both_ways(70401, [](size_t s) { return shape_early_return(0, s); });
  EXPECT_EQ(functions_of(id)[1], reinterpret_cast<void*>(&shape_early_return));
}

TEST(FrameCache, FramesInsideLibc) {
  uint32_t id = same_stack_both_ways(70501, [](size_t s) { return shape_qsort(s); });
  std::vector<void*> fs = functions_of(id);
  EXPECT_TRUE(contains(fs, reinterpret_cast<void*>(&shape_qsort)));
  EXPECT_TRUE(contains(fs, reinterpret_cast<void*>(&qsort)) || fs.size() >= 5) << "no frame of libc's qsort";
}

TEST(FrameCache, FramesInsideLibstdcxx) {
  // std::string's heap buffer comes from _M_create, in libstdc++.so (no frame pointers).
  static std::string* keep[3];
  int round = 0;
  uint32_t id = same_stack_both_ways(70601, [&round](size_t s) {
    keep[round++] = new std::string(s - 1, 'x');
    return static_cast<void*>(nullptr);
  });
  EXPECT_EQ(round, 3);
  EXPECT_GE(functions_of(id).size(), 3u);
  for (std::string* s : keep) delete s;
}

TEST(FrameCache, ReturnAddressPastTheEndOfANoreturnCall) {
  uint32_t id = same_stack_both_ways(70701, [](size_t s) { return shape_noreturn(s); });
  std::vector<void*> fs = functions_of(id);
  ASSERT_GE(fs.size(), 4u);
  EXPECT_EQ(fs[1], dlsym(RTLD_DEFAULT, "shape_jump_out"));
  EXPECT_EQ(fs[2], reinterpret_cast<void*>(&shape_calls_noreturn));
  EXPECT_EQ(fs[3], reinterpret_cast<void*>(&shape_noreturn));
}

TEST(FrameCache, SignalFrameIsLeftToLibunwind) {
  uint32_t id = same_stack_both_ways(70801, [](size_t s) { return shape_signal(s); }, kLibunwindWalks);
  std::vector<void*> fs = functions_of(id);
  EXPECT_EQ(fs[0], reinterpret_cast<void*>(&shape_leaf));
  EXPECT_TRUE(contains(fs, reinterpret_cast<void*>(&shape_signal))) << "the walk stopped at the signal frame";
}

TEST(FrameCache, OutermostFrameOfAThread) {
  uint32_t id = 0;
  std::thread([&id] {
    id = same_stack_both_ways(70901, [](size_t s) { return bt_root(3, 4, s); });
  }).join();
  StackView v;
  ASSERT_TRUE(prof::stack_get(id, &v));
  EXPECT_EQ(decode_bt(v, 4), 3);
}

TEST(FrameCache, DeeperThanMaxDepth) {
  // 100 frames of bt_0/bt_1 under the 64 kept: both walkers keep the same innermost 64.
  uint32_t id = same_stack_both_ways(71001, [](size_t s) { return bt_root(0x5a5a5, 100, s); });
  StackView v;
  ASSERT_TRUE(prof::stack_get(id, &v));
  EXPECT_EQ(v.depth, 64u);
}

TEST(FrameCache, MemoTellsCallersAtTheSameDepthApart) {
  // The thread's memo of its last stack must not be taken for the current one when only a
  // word in the middle of the stack changed.
  ASSERT_EQ(prof::lg_sample(), 0);
  constexpr int kBlocks = 8;
  void* blocks[kBlocks];
  volatile int n = kBlocks;
  for (int i = 0; i < n; ++i) blocks[i] = shape_callers[i % 2](72001 + i);
  uint32_t ids[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    ids[i] = stack_of_size(72001 + i);
    std::vector<void*> fs = functions_of(ids[i]);
    ASSERT_GE(fs.size(), 3u);
    EXPECT_EQ(fs[0], reinterpret_cast<void*>(&shape_leaf));
    EXPECT_EQ(fs[1], reinterpret_cast<void*>(shape_callers[i % 2])) << "block " << i;
    if (i >= 2) EXPECT_EQ(ids[i], ids[i - 2]) << "block " << i;
  }
  EXPECT_NE(ids[0], ids[1]);
  for (void* p : blocks) free(p);
}

constexpr int kCallerCount = sizeof shape_callers / sizeof shape_callers[0];
static_assert(kCallerCount > static_cast<int>(fc::kMemoEntries), "more callers than the memo keeps");

// Allocates one block from each caller of `order` in turn, from one call site, and checks
// that every block got its own caller's stack, one id per caller. Returns how many of
// those allocations walked their stack rather than finding it in the thread's memo (the
// loop allocates nothing else).
uint64_t blocks_from_callers(const std::vector<int>& order, uint64_t first_size) {
  std::vector<void*> blocks(order.size());
  // This thread has sampled (the vector above): it has a memo.
  EXPECT_NE(leakalloc::this_thread_profile().memo, nullptr);
  if (leakalloc::this_thread_profile().memo == nullptr) return 0;
  const fc::MemoSet& memo = *leakalloc::this_thread_profile().memo;
  volatile size_t n = order.size();
  uint64_t walks_before = memo.walks;
  for (size_t i = 0; i < n; ++i) blocks[i] = shape_callers[order[i]](first_size + i);
  uint64_t walks = memo.walks - walks_before;
  uint32_t id_of[kCallerCount] = {};
  for (size_t i = 0; i < order.size(); ++i) {
    uint32_t id = stack_of_size(first_size + i);
    std::vector<void*> fs = functions_of(id);
    EXPECT_GE(fs.size(), 3u) << "block " << i;
    if (fs.size() < 3) continue;
    EXPECT_EQ(fs[0], reinterpret_cast<void*>(&shape_leaf)) << "block " << i;
    EXPECT_EQ(fs[1], reinterpret_cast<void*>(shape_callers[order[i]])) << "block " << i;
    if (id_of[order[i]] == 0) id_of[order[i]] = id;
    EXPECT_EQ(id, id_of[order[i]]) << "block " << i;
  }
  for (int a = 0; a < kCallerCount; ++a)
    for (int b = a + 1; b < kCallerCount; ++b)
      if (id_of[a] != 0 && id_of[b] != 0) EXPECT_NE(id_of[a], id_of[b]) << a << " and " << b;
  for (void* p : blocks) free(p);
  return walks;
}

TEST(FrameCache, MemoNeverMixesStacksUp) {
  // Eleven callers, more than the memo keeps, in an irregular order: entries keep being
  // replaced, and every block must still get its own caller's stack.
  ASSERT_EQ(prof::lg_sample(), 0);
  std::vector<int> order;
  uint64_t rng = 0x2545f4914f6cdd1dull;
  for (int i = 0; i < 200; ++i) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    // Mostly the first few callers (as a program's hot sites), sometimes any of them.
    int pick = static_cast<int>(rng >> 33);
    order.push_back((pick & 3) != 0 ? pick % 5 : pick % kCallerCount);
  }
  uint64_t walks = blocks_from_callers(order, 73001);
  EXPECT_GT(walks, static_cast<uint64_t>(kCallerCount)) << "entries were never replaced";
  EXPECT_LT(walks, order.size() / 2) << "the hot callers were not remembered";
}

TEST(FrameCache, MemoRemembersEightCallSites) {
  // Eight call sites in turn, three rounds in different orders: only the first allocation
  // from each may walk its stack; every later one finds it in the memo. (A memo of two
  // stacks walks all 24.)
  ASSERT_EQ(prof::lg_sample(), 0);
  std::vector<int> order = {0, 1, 2, 3, 4, 5, 6, 7, 3, 0, 7, 1, 6, 2, 5, 4, 4, 0, 1, 2, 3, 7, 6, 5};
  EXPECT_LE(blocks_from_callers(order, 74001), fc::kMemoEntries) << "remembered call sites were walked again";
}

TEST(FrameCache, MemoReplacesTheLeastRecentlyUsedPastTwoToThe32Lookups) {
  // Seven hot call sites and a rotating cold one: the cold stack's entry is the one to
  // replace, so each round walks once. With the lookup clock just below 2^32, a 32-bit
  // clock wraps in the middle: the entries written before the wrap then look newest,
  // a cold one stays for good, and the hot sites walk (64 walks instead of 47).
  ASSERT_EQ(prof::lg_sample(), 0);
  ASSERT_NE(leakalloc::this_thread_profile().memo, nullptr);
  std::vector<int> order;
  constexpr int kRounds = 40;
  for (int r = 0; r < kRounds; ++r) {
    for (int c = 0; c < 7; ++c) order.push_back(c);
    order.push_back(7 + r % 4);
  }
  leakalloc::this_thread_profile().memo->clock = (uint64_t{1} << 32) - 20;
  EXPECT_LE(blocks_from_callers(order, 75001), static_cast<uint64_t>(kRounds) + fc::kMemoEntries)
      << "hot call sites were replaced";
}

TEST(FrameCache, DlcloseEmptiesTheCache) {
  void* h = dlopen(PROF_DL_LIB, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << dlerror();
  using ChainFn = void* (*)(int, size_t);
  ChainFn chain = reinterpret_cast<ChainFn>(dlsym(h, "dl_chain"));
  ASSERT_NE(chain, nullptr);
  uint32_t id = same_stack_both_ways(71101, [chain](size_t s) { return chain(3, s); });
  EXPECT_EQ(functions_of(id)[0], dlsym(h, "dl_leaf"));
  EXPECT_GT(fc::stats().entries, 0u);
  ASSERT_EQ(dlclose(h), 0);
  EXPECT_EQ(fc::stats().entries, 0u) << "recipes of unmapped code survived dlclose";
  void* p = shape_leaf(71201);  // and the cache fills again
  EXPECT_GT(fc::stats().entries, 0u);
  free(p);
}

}  // namespace
