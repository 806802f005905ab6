// Loaded and unloaded repeatedly by dlopen_main.c. Allocates in its constructor, frees
// in its destructor, including blocks the main program handed over.
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

namespace {

std::vector<std::string>* g_strings;
void* g_blocks[64];
void* g_adopted[64];
int g_adopted_n;

__attribute__((constructor)) void lib_init() {
  g_strings = new std::vector<std::string>();
  for (int i = 0; i < 100; i++) g_strings->push_back(std::string(10 + i * 3, 'L'));
  for (int i = 0; i < 64; i++) {
    g_blocks[i] = i % 2 ? malloc(8 + i * 100) : calloc(1, 8 + i * 100);
    memset(g_blocks[i], 0x4c, 8);
  }
}

__attribute__((destructor)) void lib_fini() {
  for (int i = 0; i < 64; i++) free(g_blocks[i]);
  for (int i = 0; i < g_adopted_n; i++) free(g_adopted[i]);
  delete g_strings;
  // The main program counts our destructor runs (it is linked with -rdynamic).
  int* count = static_cast<int*>(dlsym(RTLD_DEFAULT, "g_lib_dtor_count"));
  if (count == nullptr) abort();
  ++*count;
}

}  // namespace

// Dynamic TLS: glibc allocates this module's TLS block with malloc on a thread's first
// access and frees it when the thread exits, after every TLS destructor has run.
__thread char t_buffer[4000];

extern "C" __attribute__((visibility("default"))) long lib_touch_tls(int seed) {
  long sum = 0;
  for (int i = 0; i < 4000; i++) t_buffer[i] = static_cast<char>(seed + i);
  for (int i = 0; i < 4000; i++) sum += t_buffer[i];
  return sum;
}

extern "C" __attribute__((visibility("default"))) void lib_adopt(void* p) {
  if (g_adopted_n < 64) g_adopted[g_adopted_n++] = p;
  else free(p);
}

extern "C" __attribute__((visibility("default"))) char* lib_make(size_t n) {
  char* p = static_cast<char*>(malloc(n + 1));
  memset(p, 'm', n);
  p[n] = 0;
  return p;
}
