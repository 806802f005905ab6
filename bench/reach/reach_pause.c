// The reachability check's pause against a bare fork() of the same process.
//
//   reach_pause MIB [REPS]
//
// Builds a heap of MIB MiB (a linked list of 256-byte blocks, every 64th one dropped so
// that the check has lost blocks to find) with 4 threads waiting on a condition
// variable, then REPS times: times a bare fork() (the parent's fork() call; the child
// _exits at once and is reaped), and runs leak.check, whose lost dump's header gives the
// pause (first stop signal to last thread released), the clone inside it, and the
// child's time. Prints one line per measure: name, median, min, max. Run under
// leakalloc (LD_PRELOAD) in a scratch directory.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct Node {
  struct Node* next;
  char pad[256 - sizeof(struct Node*)];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done;
static struct Node* volatile head;

static void* waiter(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  while (!done) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void report(const char* name, double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  printf("%-22s median %9.2f  min %9.2f  max %9.2f\n", name, v[n / 2], v[0], v[n - 1]);
}

// A field "key: N" of the "# reach_check:" line of a lost dump.
static double field(const char* path, const char* key) {
  FILE* f = fopen(path, "r");
  char line[1024];
  double v = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "# reach_check:", 14) != 0) continue;
    const char* p = strstr(line, key);
    if (p != NULL) v = atof(p + strlen(key));
  }
  if (f != NULL) fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: reach_pause MIB [REPS]\n");
    return 2;
  }
  int (*ctl)(const char*, void*, size_t*, void*, size_t) =
      (int (*)(const char*, void*, size_t*, void*, size_t))dlsym(RTLD_DEFAULT, "leakalloc_mallctl");
  if (ctl == NULL) {
    fprintf(stderr, "reach_pause: run it under leakalloc\n");
    return 2;
  }
  long mib = atol(argv[1]);
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  long n = mib * 1024 * 1024 / 256;
  struct Node* h = NULL;
  long lost = 0;
  for (long i = 0; i < n; ++i) {
    struct Node* x = malloc(sizeof *x);
    memset(x->pad, 1, sizeof x->pad);
    if (i % 64 == 63) {
      ++lost;  // dropped: only this iteration had it
      continue;
    }
    x->next = h;
    h = x;
  }
  head = h;
  pthread_t t[4];
  for (int i = 0; i < 4; ++i) pthread_create(&t[i], NULL, waiter, NULL);
  usleep(100000);

  double fork_ms[64], pause_ms[64], clone_ms[64], child_ms[64], cpu_ms[64];
  if (reps > 64) reps = 64;
  for (int r = 0; r < reps; ++r) {
    uint64_t t0 = now_us();
    pid_t pid = fork();
    uint64_t t1 = now_us();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    fork_ms[r] = (double)(t1 - t0) / 1000.0;

    char path[64];
    snprintf(path, sizeof path, "reach_pause.%d.heap", r);
    const char* p = path;
    if (ctl("leak.check", NULL, NULL, &p, sizeof p) != 0) {
      fprintf(stderr, "leak.check failed\n");
      return 1;
    }
    pause_ms[r] = field(path, "pause_us: ") / 1000.0;
    clone_ms[r] = field(path, "fork_us: ") / 1000.0;
    child_ms[r] = field(path, "child_ms: ");
    cpu_ms[r] = field(path, "child_cpu_ms: ");
    unlink(path);
  }
  printf("heap %ld MiB: %ld blocks of 256 bytes, %ld dropped, 5 threads; %d repetitions (ms)\n", mib, n, lost,
         reps);
  report("bare fork()", fork_ms, reps);
  report("check pause", pause_ms, reps);
  report("  its clone()", clone_ms, reps);
  report("check child (wall)", child_ms, reps);
  report("check child (CPU)", cpu_ms, reps);
  uint64_t count = 0;
  size_t len = sizeof count;
  ctl("leak.lost_count", &count, &len, NULL, 0);
  printf("leak.lost_count (sampled estimate at this rate): %llu of %ld\n", (unsigned long long)count, lost);

  pthread_mutex_lock(&mu);
  done = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  return 0;
}
