// A program with one stack of each verdict, for `leakalloc run` with interval dumps
// (tools_test.py case verdicts). Every stack has its own function, so the report's
// leaf frame names the verdict the test expects:
//   lost_leak      one 1000-byte block every tick, its pointer dropped at once
//                  (lost once a reachability check runs; growing without one)
//   growing_list   one 512-byte node every tick onto a global list (reachable, rising)
//   steady_table   200 x 256 bytes in a global table made at start, never freed
//   cache_insert   a bounded cache of 64 x 128-byte entries, one random entry replaced
//                  every 10 ticks (old but flat; its freed entries lived seconds)
//   short_lived    20 x 48-byte blocks a tick, each freed a tick later (young; their
//                  lifetimes are under 100 ms)
// A tick is 10 ms; the program runs `--seconds S` (default 3) and then exits without
// freeing anything, so that the exit dump still holds everything.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

struct node {
  struct node* next;
  char pad[512 - sizeof(struct node*)];
};

static struct node* g_list;
static void* g_table[200];
static void* g_cache[64];
static volatile uintptr_t g_sink;

NOINLINE static void lost_leak(void) {
  char* p = malloc(1000);
  memset(p, 1, 1000);
  g_sink += (uintptr_t)p[0];
  p = NULL;  // the only pointer is gone
}

NOINLINE static void growing_list(void) {
  struct node* n = malloc(sizeof *n);
  memset(n, 0, sizeof *n);
  n->next = g_list;
  g_list = n;
}

NOINLINE static void steady_table(void) {
  for (int i = 0; i < 200; ++i) g_table[i] = calloc(1, 256);
}

NOINLINE static void* cache_insert(void) { return calloc(1, 128); }

// Fills the cache on the first call, then replaces one random entry every 10th tick:
// one call site of cache_insert, so that the whole cache is one stack.
NOINLINE static void cache_step(long t) {
  int n = t < 0 ? 64 : t % 10 == 0 ? 1 : 0;
  for (int i = 0; i < n; ++i) {
    int slot = t < 0 ? i : rand() % 64;
    free(g_cache[slot]);
    g_cache[slot] = cache_insert();
  }
}

// Each tick makes 20 blocks and frees those of the tick before: always 20 to 40 live,
// each living one tick (10 ms and the sleep's overshoot).
NOINLINE static void short_lived(long t) {
  static void* ring[2][20];
  int now = (int)(t % 2), old = (int)((t + 1) % 2);
  for (int i = 0; i < 20; ++i) {
    free(ring[old][i]);
    ring[old][i] = NULL;
  }
  for (int i = 0; i < 20; ++i) ring[now][i] = malloc(48);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int main(int argc, char** argv) {
  double seconds = 3;
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
  srand(1);
  long ticks = (long)(seconds * 100);
  // t = -1 sets up the table and fills the cache through the same calls as later ticks.
  for (long t = -1; t < ticks; ++t) {
    if (t < 0) steady_table();
    cache_step(t);
    if (t < 0) continue;
    lost_leak();
    growing_list();
    short_lived(t);
    sleep_ms(10);
  }
  return 0;
}
