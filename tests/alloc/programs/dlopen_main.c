/* dlopen/dlclose of a library that allocates in its constructor and frees in its
 * destructor, frees blocks from the main program, and hands blocks out that outlive
 * it; threads use its dynamic TLS (malloc'ed by glibc, freed at thread exit). Every
 * dlclose must really unload it: its destructor runs each time. */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "interposed.h"

int g_lib_dtor_count;

static long (*g_touch_tls)(int);

static void* tls_thread(void* arg) {
  int seed = (int)(long)arg;
  long expect = 0;
  for (int i = 0; i < 4000; i++) expect += (char)(seed + i);
  CHECK(g_touch_tls(seed) == expect);
  return NULL;
}

int main(int argc, char** argv) {
  require_leakalloc();
  CHECK(argc == 2);
  const int rounds = 30;
  char* kept[30];
  for (int r = 0; r < rounds; r++) {
    void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      fprintf(stderr, "FAIL: dlopen: %s\n", dlerror());
      return 1;
    }
    void (*adopt)(void*) = (void (*)(void*))dlsym(h, "lib_adopt");
    char* (*make)(size_t) = (char* (*)(size_t))dlsym(h, "lib_make");
    g_touch_tls = (long (*)(int))dlsym(h, "lib_touch_tls");
    CHECK(adopt != NULL && make != NULL && g_touch_tls != NULL);
    pthread_t t[4];
    for (long i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, tls_thread, (void*)(r * 4 + i)) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < 10; i++) {
      void* p = malloc(24 + i * 300);
      memset(p, 1, 24);
      adopt(p);
    }
    kept[r] = make(1000 + r);
    CHECK(dlclose(h) == 0);
    CHECK(g_lib_dtor_count == r + 1);
    /* Really unloaded: a no-load open finds nothing. */
    CHECK(dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) == NULL);
  }
  for (int r = 0; r < rounds; r++) {
    CHECK(strlen(kept[r]) == (size_t)(1000 + r) && kept[r][0] == 'm');
    free(kept[r]);
  }
  printf("dlopen-ok %d\n", rounds);
  return 0;
}
