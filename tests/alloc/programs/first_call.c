/* The first allocator call a new thread makes is not malloc: free (of a block made by
 * another thread, or NULL), realloc, calloc, posix_memalign or malloc_usable_size.
 * Per-thread state must come up lazily on any of them, and a thread whose only call
 * was a free must tear down cleanly. */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "interposed.h"

enum { kFree, kFreeNull, kRealloc, kReallocNull, kCalloc, kMemalign, kUsable, kKinds };

struct job {
  int kind;
  char* block; /* made by the main thread */
  int ok;
};

static void* first_call(void* arg) {
  struct job* j = (struct job*)arg;
  switch (j->kind) {
    case kFree:
      free(j->block);
      j->block = NULL;
      break;
    case kFreeNull:
      free(NULL);
      break;
    case kRealloc: {
      char* q = (char*)realloc(j->block, 100000);
      CHECK(q != NULL && strcmp(q, "made by main") == 0);
      q[99999] = 1;
      j->block = q;
      break;
    }
    case kReallocNull: {
      char* q = (char*)realloc(NULL, 33);
      CHECK(q != NULL);
      free(q);
      break;
    }
    case kCalloc: {
      unsigned char* q = (unsigned char*)calloc(1000, 3);
      CHECK(q != NULL);
      for (int i = 0; i < 3000; i++) CHECK(q[i] == 0);
      free(q);
      break;
    }
    case kMemalign: {
      void* q = NULL;
      CHECK(posix_memalign(&q, 4096, 5000) == 0 && ((uintptr_t)q & 4095) == 0);
      free(q);
      break;
    }
    case kUsable:
      CHECK(malloc_usable_size(j->block) >= 13);
      break;
  }
  j->ok = 1;
  return NULL;
}

int main(void) {
  require_leakalloc();
  const int rounds = 40;
  for (int r = 0; r < rounds; r++) {
    pthread_t t[kKinds];
    struct job jobs[kKinds];
    for (int k = 0; k < kKinds; k++) {
      jobs[k].kind = k;
      jobs[k].ok = 0;
      jobs[k].block = (char*)malloc(13);
      strcpy(jobs[k].block, "made by main");
    }
    for (int k = 0; k < kKinds; k++) CHECK(pthread_create(&t[k], NULL, first_call, &jobs[k]) == 0);
    for (int k = 0; k < kKinds; k++) {
      CHECK(pthread_join(t[k], NULL) == 0);
      CHECK(jobs[k].ok);
      free(jobs[k].block); /* NULL for kFree; the realloc'ed block for kRealloc */
    }
  }
  printf("first-call-ok\n");
  return 0;
}
