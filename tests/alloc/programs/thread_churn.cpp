// Thousands of short threads; every block is freed by a different thread than the one
// that made it (the mailbox), many of them after their maker has exited, and half of
// the threads are detached so their teardown overlaps the others' allocations.
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <vector>

#include "interposed.h"

namespace {

struct Block {
  unsigned char* p;
  size_t size;
  unsigned char tag;
};

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
std::vector<Block>* g_mailbox;
std::atomic<int> g_detached_done{0};
std::atomic<long> g_checked{0};
constexpr int kPerThread = 8;

void* worker(void* arg) {
  uintptr_t id = reinterpret_cast<uintptr_t>(arg);
  Block mine[kPerThread];
  for (int i = 0; i < kPerThread; i++) {
    size_t size = 1 + (id * 131 + i * 977) % ((i & 3) == 3 ? 200000 : 2000);
    unsigned char* p;
    switch (i % 4) {
      case 0: p = static_cast<unsigned char*>(malloc(size)); break;
      case 1: p = static_cast<unsigned char*>(calloc(size, 1)); break;
      case 2: p = static_cast<unsigned char*>(aligned_alloc(64, size)); break;
      default: p = static_cast<unsigned char*>(realloc(malloc(16), size)); break;
    }
    CHECK(p != nullptr);
    unsigned char tag = static_cast<unsigned char>(id * 7 + i);
    memset(p, tag, size);
    mine[i] = {p, size, tag};
  }
  Block theirs[kPerThread];
  int n = 0;
  pthread_mutex_lock(&g_lock);
  while (n < kPerThread && !g_mailbox->empty()) {
    theirs[n++] = g_mailbox->back();
    g_mailbox->pop_back();
  }
  for (Block& b : mine) g_mailbox->push_back(b);
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < n; i++) {
    CHECK(theirs[i].p[0] == theirs[i].tag && theirs[i].p[theirs[i].size - 1] == theirs[i].tag);
    free(theirs[i].p);
  }
  g_checked += n;
  if (id & 1) g_detached_done++;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  require_leakalloc();
  const int total = argc > 1 ? atoi(argv[1]) : 3000;
  g_mailbox = new std::vector<Block>();
  pthread_attr_t detached;
  pthread_attr_init(&detached);
  pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
  const int wave = 8;
  int detached_started = 0;
  for (int base = 0; base < total; base += wave) {
    pthread_t t[wave];
    bool joinable[wave];
    for (int i = 0; i < wave && base + i < total; i++) {
      uintptr_t id = static_cast<uintptr_t>(base + i);
      joinable[i] = (id & 1) == 0;
      if (!joinable[i]) detached_started++;
      CHECK(pthread_create(&t[i], joinable[i] ? nullptr : &detached, worker, reinterpret_cast<void*>(id)) == 0);
    }
    for (int i = 0; i < wave && base + i < total; i++)
      if (joinable[i]) CHECK(pthread_join(t[i], nullptr) == 0);
  }
  while (g_detached_done.load() < detached_started) sched_yield();
  pthread_mutex_lock(&g_lock);
  size_t left = g_mailbox->size();
  for (Block& b : *g_mailbox) {
    CHECK(b.p[0] == b.tag && b.p[b.size - 1] == b.tag);
    free(b.p);
  }
  pthread_mutex_unlock(&g_lock);
  delete g_mailbox;
  CHECK(g_checked.load() + static_cast<long>(left) == static_cast<long>(total) * kPerThread);
  CHECK(g_checked.load() > static_cast<long>(total) * kPerThread / 2);
  printf("churn-ok %d threads\n", total);
  return 0;
}
