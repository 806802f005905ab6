/* A program built against the INSTALLED leakalloc (pkg-config or find_package). It
 * checks that its malloc, free and operator-new-free C entry points are the ones in the
 * installed library directory given as argv[1], and that the allocator works. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <leakalloc/leakalloc.h>

static const char* lib_of(const void* addr) {
  Dl_info info;
  if (dladdr(addr, &info) == 0 || info.dli_fname == NULL) return "?";
  return info.dli_fname;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  char want[4096];
  snprintf(want, sizeof want, "%s/libleakalloc.so", argv[1]);
  const void* fns[] = {(const void*)&malloc, (const void*)&free, dlsym(RTLD_DEFAULT, "malloc"),
                       dlsym(RTLD_DEFAULT, "calloc")};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    const char* got = lib_of(fns[i]);
    if (strncmp(got, want, strlen(want)) != 0) {
      fprintf(stderr, "FAIL: entry %zu is in %s, expected %s*\n", i, got, want);
      return 1;
    }
  }
  char* p = malloc(100);
  strcpy(p, "installed");
  p = realloc(p, 100000);
  if (strcmp(p, "installed") != 0 || malloc_usable_size(p) < 100000) return 1;
  free(p);
  printf("app-ok %s %s\n", LEAKALLOC_VERSION, lib_of((const void*)&malloc));
  return 0;
}
