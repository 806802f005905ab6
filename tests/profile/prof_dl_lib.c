/* A library loaded with dlopen by the profile tests: its functions allocate, so the
 * first sampled allocation through it makes the unwinder find a new object's unwind
 * tables while other threads sample. */
#include <stdlib.h>

__attribute__((noinline, visibility("default"))) void* dl_leaf(size_t n) {
  void* p = malloc(n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

__attribute__((noinline, visibility("default"))) void* dl_chain(int depth, size_t n) {
  void* p = depth <= 0 ? dl_leaf(n) : dl_chain(depth - 1, n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
