// Allocation sites for the pb writer test, built as a shared library on purpose: the
// test executable links leakalloc's objects, so the stack capture treats every frame
// of the executable as leakalloc's own and strips it from the leaf end. Frames in this
// library survive, exactly as a program's frames do under libleakalloc.so.
#include <stdlib.h>
#include <string.h>

#include "pb_funcs.h"

// Each site stores its blocks in a caller-owned array, so the compiler can neither
// drop the allocation nor turn the call into a tail call.
#define PB_SITE(name)                                                    \
  __attribute__((noinline)) void name(void** out, int n, size_t size) { \
    for (int i = 0; i < n; ++i) {                                        \
      out[i] = malloc(size);                                             \
      if (out[i] != NULL) memset(out[i], 0x5a, size < 64 ? size : 64);   \
    }                                                                    \
    __asm__ volatile("" ::: "memory");                                   \
  }

PB_SITE(pb_old_main)
PB_SITE(pb_old_thread)
PB_SITE(pb_young_main)
PB_SITE(pb_young_thread)
PB_SITE(pb_freed)
PB_SITE(pb_sampled_small)
PB_SITE(pb_sampled_big)

// Distinct stacks from the bits of a number (jemalloc's btalloc): level by level, bit 0
// goes through pb_bt0 and bit 1 through pb_bt1, so 2^levels numbers give 2^levels
// stacks. The asm after each call keeps it from becoming a tail call (which would
// merge frames).
__attribute__((noinline)) void* pb_bt_leaf(size_t size) {
  void* p = malloc(size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
__attribute__((noinline)) void* pb_bt0(unsigned bits, int levels, size_t size);
__attribute__((noinline)) void* pb_bt1(unsigned bits, int levels, size_t size);
static void* bt_next(unsigned bits, int levels, size_t size) {
  if (levels == 0) return pb_bt_leaf(size);
  return (bits & 1u) ? pb_bt1(bits >> 1, levels - 1, size) : pb_bt0(bits >> 1, levels - 1, size);
}
__attribute__((noinline)) void* pb_bt0(unsigned bits, int levels, size_t size) {
  void* p = bt_next(bits, levels, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
__attribute__((noinline)) void* pb_bt1(unsigned bits, int levels, size_t size) {
  void* p = bt_next(bits, levels, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
void* pb_btalloc(unsigned bits, int levels, size_t size) { return bt_next(bits, levels, size); }
