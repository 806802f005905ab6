/* Deep stacks for the internal micro benchmarks. This is a separate shared library on
 * purpose: bench_micro_internal is linked with leakalloc's objects, so the unwinders
 * treat every frame of that executable as leakalloc's own and strip it; frames here
 * are "user" frames, as they would be in a real program. Compiled with frame pointers
 * and without sibling calls so that both unwinders see every level. */
#include "frames.h"

__attribute__((noinline)) void bench_recurse(int depth, bench_body body, void* ctx) {
  if (depth <= 1) body(ctx);
  else bench_recurse(depth - 1, body, ctx);
  __asm__ volatile("" ::: "memory");
}

/* Two functions so that each path through the bits of n is a distinct stack (the idea
 * of jemalloc's btalloc test). */
__attribute__((noinline)) void bench_bits1(unsigned n, int bits, bench_body body, void* ctx);
__attribute__((noinline)) void bench_bits0(unsigned n, int bits, bench_body body, void* ctx) {
  if (bits == 0) body(ctx);
  else if (n & 1) bench_bits1(n >> 1, bits - 1, body, ctx);
  else bench_bits0(n >> 1, bits - 1, body, ctx);
  __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) void bench_bits1(unsigned n, int bits, bench_body body, void* ctx) {
  if (bits == 0) body(ctx);
  else if (n & 1) bench_bits1(n >> 1, bits - 1, body, ctx);
  else bench_bits0(n >> 1, bits - 1, body, ctx);
  __asm__ volatile("" ::: "memory");
}
