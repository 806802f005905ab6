/* Functions whose frames take every unwind-rule shape the frame-recipe cache handles, and
 * some it must hand to libunwind. Built with -O2 -fomit-frame-pointer (tests/profile). Each
 * returns a block of `size` bytes allocated (sampled at sample:0) at the bottom of it. */
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE __attribute__((noinline, visibility("default")))
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

/* CFA = %rsp + constant, no %rbp anywhere. */
SHAPE void* shape_leaf(size_t size) {
  void* p = malloc(size);
  KEEP(p);
  return p;
}

/* A variable-length array: the compiler sets up %rbp and the CFA rule becomes %rbp + 16
 * for the rest of the function. */
SHAPE void* shape_vla(size_t n, size_t size) {
  char buf[n];
  memset(buf, 1, n);
  KEEP(buf);
  void* p = shape_leaf(size);
  KEEP(buf);
  return p;
}

/* A frame larger than a page, with callee-saved registers pushed. */
SHAPE void* shape_big_frame(size_t size) {
  volatile char big[20000];
  big[0] = 1;
  big[19999] = (char)size;
  void* p = shape_leaf(size + (size_t)big[0] - 1);
  KEEP(p);
  return p;
}

/* An early return in the middle (its epilogue is bracketed by remember/restore_state),
 * followed by the call that allocates. */
SHAPE void* shape_early_return(int fail, size_t size) {
  if (fail > 1000) return NULL;
  void* a = shape_leaf(size);
  KEEP(a);
  if (fail > 100) { free(a); return NULL; }
  return a;
}

/* libc's own frames (qsort calls the comparator, which allocates once). */
static void* g_qsort_block;
static size_t g_qsort_size;
static int compare_and_allocate(const void* a, const void* b) {
  if (g_qsort_block == NULL) g_qsort_block = shape_leaf(g_qsort_size);
  return *(const int*)a - *(const int*)b;
}
SHAPE void* shape_qsort(size_t size) {
  int v[64];
  for (int i = 0; i < 64; ++i) v[i] = (i * 37) % 64;
  g_qsort_block = NULL;
  g_qsort_size = size;
  qsort(v, 64, sizeof v[0], compare_and_allocate);
  return g_qsort_block;
}

/* A call to a noreturn function as the last instruction: its return address is the
 * first byte of the next function (shape_noreturn; no padding, see CMakeLists.txt), so
 * the walker must look it up at address - 1. */
static jmp_buf g_jump;
static void* g_jump_block;
SHAPE __attribute__((noreturn)) void shape_jump_out(size_t size) {
  g_jump_block = shape_leaf(size);
  longjmp(g_jump, 1);
}
SHAPE void shape_calls_noreturn(size_t size) { shape_jump_out(size); }
SHAPE void* shape_noreturn(size_t size) {
  if (setjmp(g_jump) == 0) shape_calls_noreturn(size);
  return g_jump_block;
}

/* A signal frame: the cache cannot express it and leaves the whole stack to libunwind,
 * which unwinds through it into shape_signal. */
static void* g_signal_block;
static size_t g_signal_size;
static void on_signal(int sig) {
  (void)sig;
  g_signal_block = shape_leaf(g_signal_size);
}
SHAPE void* shape_signal(size_t size) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGUSR2, &sa, &old);
  g_signal_size = size;
  raise(SIGUSR2);
  sigaction(SIGUSR2, &old, NULL);
  return g_signal_block;
}

/* Callers with identical frames (noipa: not folded into one function): called in turn
 * from one call site, the walk starts at the same stack pointer each time and only the
 * return address in the middle frame tells them apart. Eleven: more than the stacks a
 * thread's memo keeps (profile/frame_cache.h kMemoEntries). */
#define SHAPE_CALLER(x)                                                                    \
  __attribute__((noinline, noipa, visibility("default"))) void* shape_caller_##x(size_t size) { \
    void* p = shape_leaf(size);                                                            \
    KEEP(p);                                                                               \
    return p;                                                                              \
  }
SHAPE_CALLER(a)
SHAPE_CALLER(b)
SHAPE_CALLER(c)
SHAPE_CALLER(d)
SHAPE_CALLER(e)
SHAPE_CALLER(f)
SHAPE_CALLER(g)
SHAPE_CALLER(h)
SHAPE_CALLER(i)
SHAPE_CALLER(j)
SHAPE_CALLER(k)
/* All of them, in order, for the tests that take them in turn. */
void* (*const shape_callers[])(size_t) = {shape_caller_a, shape_caller_b, shape_caller_c, shape_caller_d,
                                          shape_caller_e, shape_caller_f, shape_caller_g, shape_caller_h,
                                          shape_caller_i, shape_caller_j, shape_caller_k};
_Static_assert(sizeof shape_callers / sizeof shape_callers[0] == 11,
               "tests/profile/prof_frame_cache_test.cpp declares eleven");
