/* The public header from C, linked with -lleakalloc: the entry points are exported by
 * libleakalloc.so and behave as documented for a plain C caller. Exit status 0 = pass;
 * each failure prints what went wrong. */
#include <errno.h>
#include <leakalloc/leakalloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

static size_t printed;
static void count_cb(void* opaque, const char* s) {
  (void)opaque;
  printed += strlen(s);
}

void* volatile sink;

int main(void) {
  const char* version = NULL;
  size_t len = sizeof version;
  CHECK(leakalloc_mallctl("version", &version, &len, NULL, 0) == 0);
  CHECK(version != NULL && strcmp(version, LEAKALLOC_VERSION) == 0);

  uint64_t epoch = 1;
  CHECK(leakalloc_mallctl("epoch", NULL, NULL, &epoch, sizeof epoch) == 0);
  size_t before = 0;
  len = sizeof before;
  CHECK(leakalloc_mallctl("stats.allocated", &before, &len, NULL, 0) == 0);
  sink = malloc(1 << 20);
  CHECK(leakalloc_mallctl("epoch", NULL, NULL, &epoch, sizeof epoch) == 0);
  size_t after = 0;
  CHECK(leakalloc_mallctl("stats.allocated", &after, &len, NULL, 0) == 0);
  CHECK(after >= before + (1 << 20));
  free(sink);

  size_t mib[4], miblen = 4;
  CHECK(leakalloc_mallctlnametomib("leak.count", mib, &miblen) == 0 && miblen == 2);
  uint64_t leaks = UINT64_MAX;
  len = sizeof leaks;
  CHECK(leakalloc_mallctlbymib(mib, miblen, &leaks, &len, NULL, 0) == 0 && leaks != UINT64_MAX);

  bool active = false;
  len = sizeof active;
  CHECK(leakalloc_mallctl("prof.active", &active, &len, NULL, 0) == 0 && active);
  CHECK(leakalloc_mallctl("opt.sample", NULL, NULL, &len, sizeof len) == EPERM);
  CHECK(leakalloc_mallctl("no.such.thing", NULL, NULL, NULL, 0) == ENOENT);
  uint32_t small = 0;
  len = sizeof small;
  CHECK(leakalloc_mallctl("stats.allocated", &small, &len, NULL, 0) == EINVAL && len == sizeof small);

  leakalloc_stats_print(count_cb, NULL, "J");
  CHECK(printed > 500);
  if (failures == 0) printf("public API ok\n");
  return failures == 0 ? 0 : 1;
}
