/* A program that starts other processes, for `leakalloc run` and --follow.
 *
 *   spawn_fixture N PROG [ARGS...]
 *
 * Forks N children that allocate, free and exit() (no exec: they run the library's
 * exit path, where a traced process writes its final dump), then fork+execs PROG N
 * times, waits for all of them, leaks 3 x 777 bytes from spawn_fixture_leak and exits
 * 0 (1 if a child failed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void* volatile g_sink[3];

__attribute__((noinline)) void spawn_fixture_leak(int i) { g_sink[i] = malloc(777); }

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: spawn_fixture N PROG [ARGS...]\n");
    return 2;
  }
  int n = atoi(argv[1]);
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      char* p = malloc(100);
      memset(p, 1, 100);
      free(p);
      exit(0);
    }
  }
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      execvp(argv[2], argv + 2);
      _exit(127);
    }
  }
  int status;
  while (wait(&status) > 0)
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  for (int i = 0; i < 3; ++i) spawn_fixture_leak(i);
  return failed;
}
