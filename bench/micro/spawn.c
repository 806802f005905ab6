/* Process start under each allocator: the time from posix_spawn to waitpid of a short
 * program (by default /bin/true), which is what every command of a shell script, a
 * build or a test suite pays when the allocator is preloaded into the whole tree.
 *
 *   bench_spawn RUNS PROGRAM NAME PRELOAD CONF [NAME PRELOAD CONF ...]
 *
 * PRELOAD is the LD_PRELOAD value and CONF the LEAKALLOC_CONF value, "-" for none. The
 * configurations take turns, one start each, so that machine drift hits all alike.
 * Prints one line per configuration: name, median, 10th and 90th percentile in us. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 6 || (argc - 3) % 3 != 0) {
    fprintf(stderr, "usage: %s RUNS PROGRAM NAME PRELOAD CONF [NAME PRELOAD CONF ...]\n", argv[0]);
    return 2;
  }
  int runs = atoi(argv[1]);
  const char* prog = argv[2];
  int n = (argc - 3) / 3;
  if (runs < 1) runs = 1;
  double* t = calloc((size_t)n * (size_t)runs, sizeof(double));
  char(*env_preload)[4200] = calloc((size_t)n, sizeof *env_preload);
  char(*env_conf)[4200] = calloc((size_t)n, sizeof *env_conf);
  if (t == NULL || env_preload == NULL || env_conf == NULL) return 1;
  for (int c = 0; c < n; ++c) {
    const char* pre = argv[4 + 3 * c];
    const char* conf = argv[5 + 3 * c];
    snprintf(env_preload[c], sizeof env_preload[c], "LD_PRELOAD=%s", strcmp(pre, "-") == 0 ? "" : pre);
    snprintf(env_conf[c], sizeof env_conf[c], "LEAKALLOC_CONF=%s", strcmp(conf, "-") == 0 ? "" : conf);
  }
  char* child_argv[] = {(char*)prog, NULL};
  for (int r = 0; r < runs; ++r) {
    for (int c = 0; c < n; ++c) {
      char* child_env[] = {env_preload[c], env_conf[c], NULL};
      pid_t pid;
      double t0 = now_us();
      if (posix_spawn(&pid, prog, NULL, NULL, child_argv, child_env) != 0) {
        perror(prog);
        return 1;
      }
      int status;
      if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s under %s did not exit with 0\n", prog, argv[3 + 3 * c]);
        return 1;
      }
      t[c * runs + r] = now_us() - t0;
    }
  }
  for (int c = 0; c < n; ++c) {
    double* v = t + c * runs;
    qsort(v, (size_t)runs, sizeof(double), by_value);
    printf("%s %.0f %.0f %.0f\n", argv[3 + 3 * c], v[runs / 2], v[runs / 10], v[runs - 1 - runs / 10]);
  }
  return 0;
}
