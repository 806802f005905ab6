/* Size-class churn over a large live set: 100k live blocks of log-uniform size
 * (16 B .. 4 KiB, so every small size class is in use), then millions of
 * replacements, a tenth of them through realloc. Peak RSS is dominated by the live
 * set, which makes this the workload that shows per-block memory overhead. */
#include <string.h>

#include "common.h"

enum { kLive = 100000 };

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  long live = scale < 1 ? scaled(scale, kLive) : kLive;
  long ops = scaled(scale, 1000000);
  uint64_t rng = 0xdeadbeefcafef00dULL;
  char** slots = (char**)malloc((size_t)live * sizeof(char*));
  size_t* sizes = (size_t*)malloc((size_t)live * sizeof(size_t));
  if (slots == NULL || sizes == NULL) abort();
  for (long i = 0; i < live; ++i) {
    sizes[i] = rng_log_size(&rng, 4, 12);
    slots[i] = (char*)malloc(sizes[i]);
    if (slots[i] == NULL) abort();
    memset(slots[i], 1, sizes[i] < 32 ? sizes[i] : 32);
  }
  uint64_t sum = 0;
  for (long i = 0; i < ops; ++i) {
    size_t k = (size_t)(rng_next(&rng) % (uint64_t)live);
    size_t size = rng_log_size(&rng, 4, 12);
    sum += (unsigned char)slots[k][0];
    if ((i % 10) == 0) {
      char* p = (char*)realloc(slots[k], size);
      if (p == NULL) abort();
      slots[k] = p;
    } else {
      free(slots[k]);
      slots[k] = (char*)malloc(size);
      if (slots[k] == NULL) abort();
    }
    slots[k][0] = (char)i;
    sizes[k] = size;
  }
  for (long i = 0; i < live; ++i) free(slots[i]);
  free(slots);
  free(sizes);
  printf("churn: %ld live, %ld ops, checksum %llu\n", live, ops, (unsigned long long)sum);
  return 0;
}
