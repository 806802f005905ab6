/* A program with known leaks for the tests of the `leakalloc` command.
 *
 *   leak_fixture [--self-dump PREFIX] [--diff PREFIX] [--exit N] [--sleep-ms N]
 *                [--term-marker FILE] [--age-gap-ms N] [--idle-ms N] [--busy-ms N] [--fork]
 *                [--trickle-ms N]
 *
 * Leaks, at sample:0 exactly: leak_large_buffers 10 x 4000 B, leak_medium_records
 * 20 x 1000 B, leak_small_strings 30 x 100 B (ranked by bytes in that order), plus 1000
 * allocations that are freed again. With --diff, two dumps are written a moment apart
 * (PREFIX.1 and PREFIX.2); between them leak_growing_cache grows from 8 x 64 B to
 * 58 x 64 B while every other site stays flat. With --age-gap-ms N, the program waits
 * N ms after all that and then leaks leak_recent_items 7 x 500 B: young blocks that an
 * age filter shorter than N leaves out.
 *
 * --idle-ms and --busy-ms keep the program running after all its leaks, for
 * `leakalloc dump PID`: it writes its pid to fixture.ready in the working directory,
 * then sleeps N ms without allocating, then allocates and frees (churn) for N ms.
 * With --fork, the busy loop forks once a file fork.now appears; the child writes its
 * pid to child.ready and goes on with the loop. --trickle-ms N, after those, makes one
 * malloc(16)/free pair every 100 ms for N ms: a lightly loaded server, which at
 * sample:19 would take about an hour to reach its next sampled allocation.
 *
 * --self-dump PREFIX makes the program describe its own leaks as a gperftools legacy
 * heap profile (PREFIX.heap, and PREFIX.1.heap/PREFIX.2.heap with --diff), the same
 * format the library writes: the readers can be tested without the library. Otherwise
 * the dumps of --diff are requested from the preloaded library through
 * leakalloc_mallctl("prof.dump"), found with dlsym so that this program does not link it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS 4096
#define MAX_DEPTH 64

struct record {
  void* pcs[MAX_DEPTH];
  int depth;
  size_t size;
};
static struct record g_records[MAX_RECORDS];
static int g_nrecords;
static int g_self_dump;

/* Records the caller's stack for the self-written dump. The allocation and this call
 * sit on one source line (ALLOC below), so the caller's return address has the same
 * line as its call to malloc. */
__attribute__((noinline)) static void* record_alloc(void* p, size_t size) {
  if (!g_self_dump || g_nrecords == MAX_RECORDS) return p;
  struct record* r = &g_records[g_nrecords++];
  void* frames[MAX_DEPTH + 1];
  int n = backtrace(frames, MAX_DEPTH + 1);
  r->depth = n - 1; /* frame 0 is this function */
  memcpy(r->pcs, frames + 1, sizeof(void*) * (size_t)r->depth);
  r->size = size;
  return p;
}
#define ALLOC(n) record_alloc(malloc(n), (n))

static volatile void* g_sink;
static void* g_keep[4096];
static int g_nkeep;

static void keep(void* p) { g_keep[g_nkeep++] = p; }

__attribute__((noinline)) void leak_large_buffers(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = ALLOC(4000);
    memset(p, 1, 4000);
    keep(p);
  }
}

__attribute__((noinline)) void leak_medium_records(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = ALLOC(1000);
    memset(p, 2, 1000);
    keep(p);
  }
}

__attribute__((noinline)) void leak_small_strings(int n) {
  for (int i = 0; i < n; ++i) {
    char* p = ALLOC(100);
    snprintf(p, 100, "string %d", i);
    keep(p);
  }
}

__attribute__((noinline)) void leak_growing_cache(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = ALLOC(64);
    memset(p, 3, 64);
    keep(p);
  }
}

__attribute__((noinline)) void leak_recent_items(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = ALLOC(500);
    memset(p, 4, 500);
    keep(p);
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* The only caller of leak_growing_cache: one call site, so one stack in both dumps. */
__attribute__((noinline)) void serve_cache_requests(int n) {
  leak_growing_cache(n);
  g_sink = g_keep[0];
}

__attribute__((noinline)) void churn(int n) {
  for (int i = 0; i < n; ++i) {
    void* p = malloc(128 + (size_t)(i % 7) * 16);
    g_sink = p;
    free(p);
  }
}

static void write_self_dump(const char* path) {
  FILE* f = fopen(path, "w");
  if (!f) {
    perror(path);
    exit(3);
  }
  size_t total_n = 0, total_b = 0;
  for (int i = 0; i < g_nrecords; ++i) {
    total_n += 1;
    total_b += g_records[i].size;
  }
  fprintf(f, "heap profile: %zu: %zu [%zu: %zu] @ heapprofile\n", total_n, total_b, total_n, total_b);
  static int done[MAX_RECORDS];
  memset(done, 0, sizeof done);
  for (int i = 0; i < g_nrecords; ++i) {
    if (done[i]) continue;
    size_t n = 0, b = 0;
    for (int j = i; j < g_nrecords; ++j) {
      if (done[j] || g_records[j].depth != g_records[i].depth ||
          memcmp(g_records[j].pcs, g_records[i].pcs, sizeof(void*) * (size_t)g_records[i].depth) != 0)
        continue;
      done[j] = 1;
      n += 1;
      b += g_records[j].size;
    }
    fprintf(f, "%zu: %zu [%zu: %zu] @", n, b, n, b);
    for (int k = 0; k < g_records[i].depth; ++k) fprintf(f, " %p", g_records[i].pcs[k]);
    fprintf(f, "\n");
  }
  fprintf(f, "MAPPED_LIBRARIES:\n");
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[4096];
  while (maps && fgets(line, sizeof line, maps)) fputs(line, f);
  if (maps) fclose(maps);
  fclose(f);
}

static void dump(const char* prefix, const char* suffix) {
  char path[4096];
  if (g_self_dump) {
    snprintf(path, sizeof path, "%s%s.heap", prefix, suffix);
    write_self_dump(path);
    return;
  }
  typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);
  mallctl_fn ctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "leakalloc_mallctl");
  if (!ctl) {
    fprintf(stderr, "leak_fixture: leakalloc_mallctl not found: run under LD_PRELOAD=libleakalloc.so\n");
    exit(3);
  }
  snprintf(path, sizeof path, "%s%s.heap", prefix, suffix);
  const char* p = path;
  int rc = ctl("prof.dump", NULL, NULL, &p, sizeof p);
  if (rc != 0) {
    fprintf(stderr, "leak_fixture: prof.dump failed: %d\n", rc);
    exit(3);
  }
}

/* Written whole under another name, then renamed: a reader never sees half of it. */
static void write_pid_file(const char* name) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", name);
  FILE* f = fopen(tmp, "w");
  if (f) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    rename(tmp, name);
  }
}

static const char* g_term_marker;
static void on_term(int sig) {
  if (g_term_marker) {
    FILE* f = fopen(g_term_marker, "w");
    if (f) {
      fprintf(f, "%d\n", sig);
      fclose(f);
    }
  }
  _exit(42);
}

int main(int argc, char** argv) {
  const char* self_prefix = NULL;
  const char* diff_prefix = NULL;
  int exit_code = 0;
  long sleep_for = 0, age_gap = 0, idle_for = 0, busy_for = 0, trickle_for = 0;
  int fork_on_request = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--self-dump") && i + 1 < argc) self_prefix = argv[++i];
    else if (!strcmp(argv[i], "--diff") && i + 1 < argc) diff_prefix = argv[++i];
    else if (!strcmp(argv[i], "--exit") && i + 1 < argc) exit_code = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--sleep-ms") && i + 1 < argc) sleep_for = atol(argv[++i]);
    else if (!strcmp(argv[i], "--age-gap-ms") && i + 1 < argc) age_gap = atol(argv[++i]);
    else if (!strcmp(argv[i], "--term-marker") && i + 1 < argc) g_term_marker = argv[++i];
    else if (!strcmp(argv[i], "--idle-ms") && i + 1 < argc) idle_for = atol(argv[++i]);
    else if (!strcmp(argv[i], "--busy-ms") && i + 1 < argc) busy_for = atol(argv[++i]);
    else if (!strcmp(argv[i], "--trickle-ms") && i + 1 < argc) trickle_for = atol(argv[++i]);
    else if (!strcmp(argv[i], "--fork")) fork_on_request = 1;
    else {
      fprintf(stderr, "leak_fixture: bad argument %s\n", argv[i]);
      return 2;
    }
  }
  g_self_dump = self_prefix != NULL;
  if (g_term_marker) {
    signal(SIGTERM, on_term);
  }
  if (sleep_for > 0) {
    FILE* f = fopen("fixture.pid", "w");
    if (f) {
      fprintf(f, "%d\n", (int)getpid());
      fclose(f);
    }
    sleep_ms(sleep_for);
  }

  churn(500);
  leak_large_buffers(10);
  leak_medium_records(20);
  leak_small_strings(30);
  /* volatile: an unrolled loop would give the growing site two call sites. */
  volatile int phases = diff_prefix ? 2 : 1;
  for (int phase = 0; phase < phases; ++phase) {
    serve_cache_requests(phase == 0 ? 8 : 50);
    churn(500);
    if (diff_prefix) dump(diff_prefix, phase == 0 ? ".1" : ".2");
  }
  if (age_gap > 0) {
    sleep_ms(age_gap);
    leak_recent_items(7);
  }
  if (self_prefix) dump(self_prefix, "");
  if (idle_for > 0 || busy_for > 0 || trickle_for > 0) {
    write_pid_file("fixture.ready");
    sleep_ms(idle_for);
    for (long t = 0; t < busy_for; ++t) {
      churn(10);
      sleep_ms(1);
      if (fork_on_request && access("fork.now", F_OK) == 0) {
        fork_on_request = 0;
        if (fork() == 0) write_pid_file("child.ready");
      }
    }
    for (long t = 0; t < trickle_for; t += 100) {
      void* p = malloc(16);
      g_sink = p;
      free(p);
      sleep_ms(100);
    }
  }
  return exit_code;
}
