// jemalloc-style btalloc: a distinct, predictable call stack per number (see
// prof_test_util.h). noipa keeps every function out of inlining, cloning and identical
// code folding (bt_0 and bt_1 would otherwise be merged into one function); the empty asm
// after each call keeps it from becoming a tail call, which would drop its frame.
#include <stdlib.h>

#include "tests/profile/prof_test_util.h"

#define BT_FN extern "C" __attribute__((noipa, visibility("default")))

// Distinct side effects also make bt_0 and bt_1 differ in code, not only by name.
volatile uint32_t g_bt_trace0, g_bt_trace1;

static inline void* bt_step(uint32_t n, uint32_t i, uint32_t bits, size_t size) {
  if (i == bits) return bt_leaf(size);
  return ((n >> i) & 1u) != 0 ? bt_1(n, i + 1, bits, size) : bt_0(n, i + 1, bits, size);
}

BT_FN void* bt_leaf(size_t size) {
  void* p = malloc(size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

BT_FN void* bt_0(uint32_t n, uint32_t i, uint32_t bits, size_t size) {
  g_bt_trace0 = i;
  void* p = bt_step(n, i, bits, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

BT_FN void* bt_1(uint32_t n, uint32_t i, uint32_t bits, size_t size) {
  g_bt_trace1 = i;
  void* p = bt_step(n, i, bits, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

BT_FN void* bt_root(uint32_t n, uint32_t bits, size_t size) {
  void* p = bt_step(n, 0, bits, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
