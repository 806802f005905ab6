/* Larson-like server: worker threads each own an array of blocks and keep replacing
 * random ones with blocks of random size (16..1024 bytes). After each round every
 * thread exits and a new thread takes over the array of its neighbour, so blocks
 * allocated by one thread are freed by another, as in a server whose connections
 * move between worker threads (Larson & Krishnan, "Memory allocation for long-running
 * server applications", ISMM 1998). */
#include <pthread.h>
#include <string.h>

#include "common.h"

enum { kThreads = 8, kSlots = 2000 };

struct worker {
  void** slots;
  long ops;
  uint64_t rng;
  uint64_t sum;
};

static void* work(void* arg) {
  struct worker* w = (struct worker*)arg;
  for (long i = 0; i < w->ops; ++i) {
    size_t k = (size_t)(rng_next(&w->rng) % kSlots);
    size_t size = rng_range(&w->rng, 16, 1024);
    free(w->slots[k]);
    char* p = (char*)malloc(size);
    if (p == NULL) abort();
    p[0] = (char)i;
    p[size - 1] = (char)size;
    w->sum += (uintptr_t)p[0] + (unsigned char)p[size - 1];
    w->slots[k] = p;
  }
  return NULL;
}

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  long rounds = scaled(scale, 10);
  long ops = scaled(scale < 1 ? scale : 1, 40000);
  void** arrays[kThreads];
  struct worker w[kThreads];
  for (int t = 0; t < kThreads; ++t) {
    arrays[t] = (void**)calloc(kSlots, sizeof(void*));
    w[t].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1);
    w[t].sum = 0;
  }
  for (long r = 0; r < rounds; ++r) {
    pthread_t tid[kThreads];
    for (int t = 0; t < kThreads; ++t) {
      w[t].slots = arrays[(t + (int)r) % kThreads];  /* hand the blocks to another thread */
      w[t].ops = ops;
      if (pthread_create(&tid[t], NULL, work, &w[t]) != 0) abort();
    }
    for (int t = 0; t < kThreads; ++t) pthread_join(tid[t], NULL);
  }
  uint64_t sum = 0;
  for (int t = 0; t < kThreads; ++t) {
    sum += w[t].sum;
    for (int k = 0; k < kSlots; ++k) free(arrays[t][k]);
    free(arrays[t]);
  }
  printf("larson: %ld rounds x %d threads x %ld ops, checksum %llu\n", rounds, kThreads, ops,
         (unsigned long long)sum);
  return 0;
}
