/* The smallest allocation loop: N times p = malloc(size); free(p). For instruction counts
 * under callgrind, where a benchmark framework would only add noise:
 *   LD_PRELOAD=build/libleakalloc.so valgrind --tool=callgrind build/bench/bench_pair_loop 1000000 16 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  size_t size = argc > 2 ? (size_t)atol(argv[2]) : 16;
  for (long i = 0; i < n; ++i) {
    void* volatile p = malloc(size);
    free(p);
  }
  printf("pair_loop: %ld x malloc(%zu)/free\n", n, size);
  return 0;
}
