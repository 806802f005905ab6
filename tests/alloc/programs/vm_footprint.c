/* Prints the process's address space (VmSize, KiB) after allocations from a few
 * distinct stacks, so that tests/alloc/CMakeLists.txt can compare it under leakalloc at
 * sample:0 with the same program under plain mimalloc: leakalloc's tables are mapped as
 * they are used, not reserved for their caps up front (which counts against RLIMIT_AS,
 * and against the commit limit where vm.overcommit_memory=2 ignores MAP_NORESERVE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

static void* g_keep[3000];

NOINLINE static void site_a(int i) { g_keep[i] = malloc(100 + i); }
NOINLINE static void site_b(int i) { g_keep[i] = calloc(1, 5000); }
NOINLINE static void site_c(int i) { g_keep[i] = realloc(NULL, 64 + (i & 63)); }

int main(void) {
  for (int i = 0; i < 1000; i++) site_a(i);
  for (int i = 1000; i < 2000; i++) site_b(i);
  for (int i = 2000; i < 3000; i++) site_c(i);
  for (int i = 0; i < 3000; i++) free(g_keep[i]);
  FILE* f = fopen("/proc/self/status", "r");
  if (f == NULL) return 1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmSize:", 7) == 0) kib = strtol(line + 7, NULL, 10);
  fclose(f);
  if (kib < 0) return 1;
  printf("%ld\n", kib);
  return 0;
}
