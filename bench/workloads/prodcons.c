/* Producer/consumer: producers allocate messages (32..2048 bytes) and pass them in
 * batches through a bounded queue; consumers read and free them. Every message and
 * every batch is freed by a different thread than the one that allocated it. */
#include <pthread.h>
#include <string.h>

#include "common.h"

enum { kProducers = 2, kConsumers = 2, kBatch = 64, kQueue = 64 };

struct batch {
  int n;
  char* msg[kBatch];
};

static struct batch* queue[kQueue];
static int q_head, q_tail, q_len, producers_left;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t q_not_empty = PTHREAD_COND_INITIALIZER;
static long messages_per_producer;

static void put(struct batch* b) {
  pthread_mutex_lock(&q_lock);
  while (q_len == kQueue) pthread_cond_wait(&q_not_full, &q_lock);
  queue[q_tail] = b;
  q_tail = (q_tail + 1) % kQueue;
  ++q_len;
  pthread_cond_signal(&q_not_empty);
  pthread_mutex_unlock(&q_lock);
}

static struct batch* get(void) {
  pthread_mutex_lock(&q_lock);
  while (q_len == 0 && producers_left > 0) pthread_cond_wait(&q_not_empty, &q_lock);
  struct batch* b = NULL;
  if (q_len > 0) {
    b = queue[q_head];
    q_head = (q_head + 1) % kQueue;
    --q_len;
    pthread_cond_signal(&q_not_full);
  }
  pthread_mutex_unlock(&q_lock);
  return b;
}

static void* producer(void* arg) {
  uint64_t rng = 0x1234567ULL + (uintptr_t)arg * 7919;
  struct batch* b = NULL;
  for (long i = 0; i < messages_per_producer; ++i) {
    if (b == NULL) {
      b = (struct batch*)malloc(sizeof *b);
      if (b == NULL) abort();
      b->n = 0;
    }
    size_t size = rng_log_size(&rng, 5, 11);
    char* m = (char*)malloc(size);
    if (m == NULL) abort();
    memset(m, (int)(i & 0x7f), size < 64 ? size : 64);
    m[size - 1] = 1;
    b->msg[b->n++] = m;
    if (b->n == kBatch) {
      put(b);
      b = NULL;
    }
  }
  if (b != NULL) put(b);
  pthread_mutex_lock(&q_lock);
  --producers_left;
  pthread_cond_broadcast(&q_not_empty);
  pthread_mutex_unlock(&q_lock);
  return NULL;
}

static void* consumer(void* arg) {
  uint64_t* sum = (uint64_t*)arg;
  struct batch* b;
  while ((b = get()) != NULL) {
    for (int i = 0; i < b->n; ++i) {
      *sum += (unsigned char)b->msg[i][0];
      free(b->msg[i]);
    }
    free(b);
  }
  return NULL;
}

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  messages_per_producer = scaled(scale, 500000);
  producers_left = kProducers;
  pthread_t p[kProducers], c[kConsumers];
  uint64_t sums[kConsumers] = {0};
  for (long i = 0; i < kConsumers; ++i) pthread_create(&c[i], NULL, consumer, &sums[i]);
  for (long i = 0; i < kProducers; ++i) pthread_create(&p[i], NULL, producer, (void*)i);
  for (int i = 0; i < kProducers; ++i) pthread_join(p[i], NULL);
  for (int i = 0; i < kConsumers; ++i) pthread_join(c[i], NULL);
  unsigned long long sum = 0;
  for (int i = 0; i < kConsumers; ++i) sum += sums[i];
  printf("prodcons: %d producers x %ld messages, checksum %llu\n", kProducers, messages_per_producer, sum);
  return 0;
}
