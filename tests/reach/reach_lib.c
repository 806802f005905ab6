// A library the reachability tests dlopen: its .bss is the only root of the blocks
// reach_lib_keep() allocates (tests/reach/reach_cases.cpp, case dlopen).
#include <stdlib.h>
#include <string.h>

static void* kept[64];

void reach_lib_keep(int n) {
  for (int i = 0; i < n && i < 64; ++i) {
    kept[i] = malloc(56);
    memset(kept[i], 0, 56);
  }
}
