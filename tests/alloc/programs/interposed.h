/* Shared by the test programs that run under LD_PRELOAD: a test whose preload silently
 * did not take effect would pass against glibc's malloc and prove nothing. */
#ifndef LEAKALLOC_TEST_INTERPOSED_H
#define LEAKALLOC_TEST_INTERPOSED_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int in_leakalloc(const void* addr) {
  Dl_info info;
  return addr != NULL && dladdr(addr, &info) != 0 && info.dli_fname != NULL &&
         strstr(info.dli_fname, "libleakalloc.so") != NULL;
}

/* Exits 2 unless both the program's own reference and a dynamic lookup of malloc and
 * free land in libleakalloc.so. */
static inline void require_leakalloc(void) {
  const char* names[] = {"malloc", "free", "calloc", "realloc"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!in_leakalloc(dlsym(RTLD_DEFAULT, names[i]))) {
      fprintf(stderr, "FAIL: %s is not leakalloc's (is LD_PRELOAD set?)\n", names[i]);
      exit(2);
    }
  }
  if (!in_leakalloc((const void*)&malloc) || !in_leakalloc((const void*)&free)) {
    fprintf(stderr, "FAIL: the program's malloc/free are not leakalloc's\n");
    exit(2);
  }
}

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
      abort();                                                                   \
    }                                                                            \
  } while (0)

#endif
