/* A C program under leakalloc: no C++ runtime comes with the allocator. libstdc++ is not
 * loaded, nor libgcc_s (its relocations and initialisers cost more than a millisecond
 * of every process start: every command of a shell script that runs preloaded). And a
 * thread that is cancelled while it writes a dump (its open and write calls are
 * cancellation points) must not leave the dump lock held: the library is built without
 * exceptions, so nothing releases a lock when a cancellation unwinds past it. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "interposed.h"

typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);

static mallctl_fn g_mallctl;
static char g_dir[64];
static atomic_int g_dumps;

static int loaded(const char* name) {
  FILE* f = fopen("/proc/self/maps", "r");
  CHECK(f != NULL);
  char line[4096];
  int found = 0;
  while (fgets(line, sizeof line, f) != NULL) found = found || strstr(line, name) != NULL;
  fclose(f);
  return found;
}

static atomic_int g_seq;

static int dump_next(void) {
  char name[128];
  snprintf(name, sizeof name, "%s/d%d.heap", g_dir, atomic_fetch_add(&g_seq, 1));
  const char* path = name;
  return g_mallctl("prof.dump", NULL, NULL, &path, sizeof path);
}

static void* dumper(void* arg) {
  (void)arg;
  for (;;) {
    CHECK(dump_next() == 0);
    atomic_fetch_add(&g_dumps, 1);
    pthread_testcancel(); /* the only cancellation point outside the dump */
  }
  return NULL;
}

int main(void) {
  require_leakalloc();
  if (loaded("libstdc++") || loaded("libgcc_s")) {
    fprintf(stderr, "FAIL: a C++ runtime was loaded into a C program\n");
    return 1;
  }
  g_mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "leakalloc_mallctl");
  CHECK(g_mallctl != NULL);
  snprintf(g_dir, sizeof g_dir, "/tmp/leakalloc-cancel.XXXXXX");
  CHECK(mkdtemp(g_dir) != NULL);
  /* Some live blocks, so that each dump has something to write. */
  static void* keep[2000];
  for (int i = 0; i < 2000; ++i) keep[i] = malloc(64 + i);
  for (int round = 0; round < 5; ++round) {
    pthread_t t;
    int start = atomic_load(&g_dumps);
    CHECK(pthread_create(&t, NULL, dumper, NULL) == 0);
    while (atomic_load(&g_dumps) < start + 3) usleep(100);
    CHECK(pthread_cancel(t) == 0);
    void* res = NULL;
    CHECK(pthread_join(t, &res) == 0);
    CHECK(res == PTHREAD_CANCELED);
    /* Hangs here if the cancelled thread left the dump lock held. */
    CHECK(dump_next() == 0);
  }
  for (int i = 0; i < 2000; ++i) free(keep[i]);
  DIR* d = opendir(g_dir);
  CHECK(d != NULL);
  struct dirent* e;
  char path[512];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(g_dir);
  printf("c-program-ok %d dumps\n", atomic_load(&g_dumps));
  return 0;
}
