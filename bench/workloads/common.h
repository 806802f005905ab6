/* Shared bits of the workloads: a small PRNG and the scale argument.
 * Every workload takes [scale] as its first argument (default 1.0): the amount of work
 * is multiplied by it, so CTest can run a tiny smoke version (e.g. 0.01). */
#ifndef BENCH_WORKLOADS_COMMON_H
#define BENCH_WORKLOADS_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline uint64_t rng_next(uint64_t* s) {
  /* xorshift64*: fast, and nothing in it allocates */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(uint64_t* s, size_t lo, size_t hi) {
  return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* Log-uniform in [lo, hi]: as many small blocks per size doubling as large ones, so
 * every size class churns. */
static inline size_t rng_log_size(uint64_t* s, unsigned lg_lo, unsigned lg_hi) {
  unsigned lg = lg_lo + (unsigned)(rng_next(s) % (lg_hi - lg_lo));
  size_t base = (size_t)1 << lg;
  return base + (size_t)(rng_next(s) % base);
}

static inline double workload_scale(int argc, char** argv) {
  double scale = argc > 1 ? atof(argv[1]) : 1.0;
  if (!(scale > 0)) {
    fprintf(stderr, "usage: %s [scale > 0]\n", argv[0]);
    exit(2);
  }
  return scale;
}

static inline long scaled(double scale, long n) {
  long v = (long)(scale * (double)n);
  return v < 1 ? 1 : v;
}

#endif
