// Drives leakalloc's pprof protobuf writer directly: known allocations from distinct
// functions (pb_funcs.c), some aged, some on a named thread, then write_pb() into files
// that run_pb_test.py reads back with go tool pprof. This executable is linked with
// leakalloc's objects, so it *is* the allocator (its malloc is leakalloc's).
//
//   pb_writer_test exact DIR     LEAKALLOC_CONF=sample:0: exact values
//   pb_writer_test sampled DIR   LEAKALLOC_CONF=sample:12: unsampled estimates
//   pb_writer_test churn DIR     LEAKALLOC_CONF=sample:0: dumps while two threads
//                                allocate and free, then one exact dump when they stop
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "base/base.h"
#include "pb_funcs.h"
#include "profile/dump_writers.h"
#include "profile/snapshot.h"
#include "profile/profiler.h"

namespace {

using leakalloc::ReentrancyGuard;
using leakalloc::ScratchArena;
namespace prof = leakalloc::prof;

// Sizes and counts the driver asserts on (keep in sync with run_pb_test.py).
constexpr int kOldMainN = 10, kOldMainSize = 1000;
constexpr int kOldThreadN = 7, kOldThreadSize = 3000;
constexpr int kYoungMainN = 3, kYoungMainSize = 1234;
constexpr int kYoungThreadN = 5, kYoungThreadSize = 700;
constexpr int kFreedN = 8, kFreedSize = 100;
constexpr int kSmallN = 20000, kSmallSize = 512;
constexpr int kBigN = 1000, kBigSize = 10000;
constexpr int kBtLevels = 12;  // 4096 distinct stacks: grows every table of the writer

void* g_old_main[kOldMainN];
void* g_old_thread[kOldThreadN];
void* g_young_main[kYoungMainN];
void* g_young_thread[kYoungThreadN];
void* g_freed[kFreedN];
void* g_small[kSmallN];
void* g_big[kBigN];
void* g_bt[1 << kBtLevels];

std::atomic<int> g_phase{0};  // 0 start, 1 worker did old, 2 go young, 3 worker did young, 4 exit

void wait_phase(int want) {
  while (g_phase.load() < want) usleep(1000);
}

void* worker(void*) {
  pthread_setname_np(pthread_self(), "pb-worker");
  pb_old_thread(g_old_thread, kOldThreadN, kOldThreadSize);
  g_phase.store(1);
  wait_phase(2);
  pb_young_thread(g_young_thread, kYoungThreadN, kYoungThreadSize);
  g_phase.store(3);
  wait_phase(4);  // stay alive so that the dump reads this thread's current name
  return nullptr;
}

int write_file(const char* path, uint64_t age_ms) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  leakalloc::snap::Params p = leakalloc::snap::params_now(age_ms, 'm');
  int rc;
  {
    ScratchArena arena;
    leakalloc::snap::Snapshot s;
    rc = leakalloc::snap::take(p, arena, &s);
    if (rc == 0) rc = leakalloc::dump::write_pb(fd, s, arena);
  }
  close(fd);
  printf("dump %s age_ms=%llu sample:%d rc=%d\n", path, static_cast<unsigned long long>(age_ms),
         p.lg_sample, rc);
  return rc == 0 ? 0 : 1;
}

int dump_to(const char* dir, const char* name, uint64_t age_ms) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  ReentrancyGuard guard;  // what profile/dump.cpp holds around every writer
  return write_file(path, age_ms);
}

// The snapshot and the writer must not allocate through the tracked malloc even when
// nobody holds a guard: at sample:0 every tracked allocation is sampled, so the sampled total tells.
// The path is formatted first (snprintf may allocate).
int dump_unguarded(const char* dir, const char* name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  uint64_t before = prof::counters().sampled_total;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  leakalloc::snap::Params p = leakalloc::snap::params_now(0, 'm');
  int rc;
  {
    ScratchArena arena;
    leakalloc::snap::Snapshot s;
    rc = leakalloc::snap::take(p, arena, &s);
    if (rc == 0) rc = leakalloc::dump::write_pb(fd, s, arena);
  }
  close(fd);
  uint64_t after = prof::counters().sampled_total;
  printf("tracked allocations during unguarded write_pb: %llu (rc=%d)\n",
         static_cast<unsigned long long>(after - before), rc);
  return rc == 0 ? 0 : 1;
}

// The rate comes from LEAKALLOC_CONF, as users set it. (prof::reset() is no substitute:
// a thread's current countdown, drawn at the old rate, still runs out first.)
bool want_sample(int lg) {
  if (prof::lg_sample() == lg) return true;
  fprintf(stderr, "LEAKALLOC_CONF gave sample:%d, the test needs sample:%d\n", prof::lg_sample(), lg);
  return false;
}

int run_exact(const char* dir) {
  if (!want_sample(0)) return 1;
  pthread_t th;
  if (pthread_create(&th, nullptr, worker, nullptr) != 0) return 1;
  pb_old_main(g_old_main, kOldMainN, kOldMainSize);
  pb_freed(g_freed, kFreedN, kFreedSize);
  for (void* p : g_freed) free(p);
  // Block i is 16 + i % 61 bytes (the driver recomputes the sum). Old, like the above:
  // the young phase must be short so that young blocks are 0 s old at the dump.
  for (unsigned i = 0; i < (1u << kBtLevels); ++i) g_bt[i] = pb_btalloc(i, kBtLevels, 16 + i % 61);
  wait_phase(1);
  // Old blocks will be at least 2 s old (age bucket >= 2) and young ones 0 s at the dumps.
  usleep(2200 * 1000);
  pb_young_main(g_young_main, kYoungMainN, kYoungMainSize);
  g_phase.store(2);
  wait_phase(3);
  int bad = dump_to(dir, "all.pb.gz", 0);
  // 2000 ms: the old blocks are 2.2 s old or more, and the young ones, though 0 s old at
  // the dump above, have 2 s before they would pass for old here. (With 1000 ms, a
  // loaded machine once took more than a second over the first dump.)
  bad |= dump_to(dir, "old.pb.gz", 2000);
  bad |= dump_unguarded(dir, "unguarded.pb.gz");
  g_phase.store(4);
  pthread_join(th, nullptr);
  return bad;
}

int run_sampled(const char* dir) {
  if (!want_sample(12)) return 1;
  prof::seed_thread_sampler(0x1eaca110c);  // a fixed draw: the test cannot flake
  pb_sampled_small(g_small, kSmallN, kSmallSize);
  pb_sampled_big(g_big, kBigN, kBigSize);
  prof::Counters c = prof::counters();
  printf("sampled blocks live: %llu\n", static_cast<unsigned long long>(c.sampled_live));
  return dump_to(dir, "sampled.pb.gz", 0);
}

// Two threads replace random blocks of a private ring (sizes 1..4096, 256 distinct
// stacks) while the main thread dumps in a loop: every dump must be a valid profile.
constexpr int kChurnRing = 2000, kChurnOps = 20000, kChurnLevels = 8;
void* g_ring[2][kChurnRing];
size_t g_ring_size[2][kChurnRing];
std::atomic<int> g_churn_done{0};

void* churner(void* arg) {
  int me = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  pthread_setname_np(pthread_self(), me == 0 ? "churn-a" : "churn-b");
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(me + 1);
  for (int i = 0; i < kChurnOps; ++i) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    int slot = static_cast<int>(x % kChurnRing);
    size_t size = 1 + (x >> 20) % 4096;
    free(g_ring[me][slot]);
    g_ring[me][slot] = pb_btalloc(static_cast<unsigned>(x >> 40), kChurnLevels, size);
    g_ring_size[me][slot] = size;
  }
  g_churn_done.fetch_add(1);
  return nullptr;
}

int run_churn(const char* dir) {
  if (!want_sample(0)) return 1;
  pthread_t th[2];
  for (intptr_t i = 0; i < 2; ++i)
    if (pthread_create(&th[i], nullptr, churner, reinterpret_cast<void*>(i)) != 0) return 1;
  int bad = 0, n = 0;
  char name[64];
  while (g_churn_done.load() < 2 && n < 200) {
    snprintf(name, sizeof name, "churn.%03d.pb.gz", n++);
    bad |= dump_to(dir, name, 0);
  }
  for (pthread_t t : th) pthread_join(t, nullptr);
  uint64_t held = 0, objs = 0;
  for (int me = 0; me < 2; ++me)
    for (int i = 0; i < kChurnRing; ++i)
      if (g_ring[me][i] != nullptr) { held += g_ring_size[me][i]; ++objs; }
  printf("churn dumps: %d\nheld by pb_bt_leaf: %llu bytes in %llu blocks\n", n,
         static_cast<unsigned long long>(held), static_cast<unsigned long long>(objs));
  bad |= dump_to(dir, "churn.final.pb.gz", 0);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s exact|sampled|churn DIR\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (strcmp(argv[1], "exact") == 0) return run_exact(argv[2]);
  if (strcmp(argv[1], "sampled") == 0) return run_sampled(argv[2]);
  if (strcmp(argv[1], "churn") == 0) return run_churn(argv[2]);
  return 2;
}
