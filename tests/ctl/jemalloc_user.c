/* A program written against jemalloc's profiling API, exactly as jemalloc users write
 * it: <jemalloc/jemalloc.h>, linked with -ljemalloc. tests/ctl/run_jemalloc_user.sh runs
 * it unchanged under real jemalloc and under LD_PRELOAD=libleakalloc.so.
 *
 *   jemalloc_user DUMPFILE   -> prints "version: <allocator version>", keeps 64 blocks of
 *                               4000 bytes from jemalloc_user_leaky_function, dumps to
 *                               DUMPFILE through mallctl("prof.dump"), exits with its result
 *   jemalloc_user -          -> the same, dumping with no file name (newp NULL): the
 *                               automatic name <prefix>.<pid>.<seq>.m<mseq>.heap */
#include <jemalloc/jemalloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void* volatile sink;

__attribute__((noinline)) void* jemalloc_user_leaky_function(size_t n) {
  void* p = malloc(n);
  sink = p;
  return p;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const char* version = NULL;
  size_t len = sizeof version;
  if (mallctl("version", &version, &len, NULL, 0) != 0) return 3;
  printf("version: %s\n", version);
  bool prof = false;
  len = sizeof prof;
  if (mallctl("opt.prof", &prof, &len, NULL, 0) != 0 || !prof) {
    printf("profiling is not enabled\n");
    return 4;
  }
  bool active = true;
  if (mallctl("prof.active", NULL, NULL, &active, sizeof active) != 0) return 5;
  /* The thread-cache calls jemalloc programs make, spelled as jemalloc documents them. */
  if (mallctl("thread.tcache.flush", NULL, NULL, NULL, 0) != 0) return 6;
  bool tcache = false;
  len = sizeof tcache;
  if (mallctl("thread.tcache.enabled", &tcache, &len, NULL, 0) != 0 || !tcache) return 7;
  void* keep[64];
  for (int i = 0; i < 64; ++i) keep[i] = jemalloc_user_leaky_function(4000);
  const char* file = argv[1];
  int rc = strcmp(file, "-") == 0 ? mallctl("prof.dump", NULL, NULL, NULL, 0)
                                  : mallctl("prof.dump", NULL, NULL, &file, sizeof file);
  printf("prof.dump: %d\n", rc);
  for (int i = 0; i < 64; ++i) free(keep[i]);
  return rc;
}
