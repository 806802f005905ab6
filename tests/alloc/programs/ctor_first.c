/* The program's first allocations happen before main: in .preinit_array (before any
 * constructor of the executable) and in a constructor. Run under LD_PRELOAD. */
#include <malloc.h>
#include <stdint.h>
#include <string.h>

#include "interposed.h"

static char* g_pre;
static char* g_ctor;
static void* g_aligned;
static int g_steps;

static void preinit(int argc, char** argv, char** envp) {
  (void)argc; (void)argv; (void)envp;
  g_pre = (char*)malloc(40);
  strcpy(g_pre, "preinit");
  void* q = calloc(3, 5);
  q = realloc(q, 5000);
  free(q);
  g_steps++;
}
__attribute__((section(".preinit_array"), used)) static void (*preinit_fn)(int, char**, char**) = preinit;

__attribute__((constructor(101))) static void early_ctor(void) {
  g_ctor = strdup("constructor");
  CHECK(posix_memalign(&g_aligned, 256, 1000) == 0);
  void* q = malloc(1 << 20);
  memset(q, 1, 1 << 20);
  free(q);
  g_steps++;
}

int main(void) {
  require_leakalloc();
  CHECK(g_steps == 2);
  CHECK(strcmp(g_pre, "preinit") == 0 && strcmp(g_ctor, "constructor") == 0);
  CHECK(((uintptr_t)g_aligned & 255) == 0);
  CHECK(malloc_usable_size(g_pre) >= 40);
  g_pre = (char*)realloc(g_pre, 100000);
  CHECK(strcmp(g_pre, "preinit") == 0);
  free(g_pre);
  free(g_ctor);
  free(g_aligned);
  printf("ctor-ok\n");
  return 0;
}
