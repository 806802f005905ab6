/* The program the dump tests drive: allocation sites with known sizes and counts, each
 * a distinct noinline function (built -O0 -g -fno-omit-frame-pointer), so a reader's
 * per-function in-use bytes can be checked exactly at sample:0.
 *
 * It reads one command per line on stdin and answers "ok <command>" on stdout once the
 * command is done. It uses read/write only, never stdio, so the only sampled blocks
 * are the ones made here (and whatever libc allocates on its own stacks).
 *
 * Sites (bytes are requested sizes):
 *   leak_buffers      25 x 4000 = 100000   kept until `cleanup`
 *   leak_small       100 x 24   =   2400   kept until `cleanup`
 *   freed_site        50 x 1000            freed at once
 *   cross_site        10 x 3000            made on the worker thread, freed on main
 *   worker_leak_site   8 x 7000 =  56000   made on the worker thread ("dumpworker")
 *   long_lived_site    4 x 5000 =  20000   freed by `freelong`
 *   young_site         6 x 9000 =  54000   by `young`
 *   growth_site       12 x 2500 =  30000   by `growth`
 *   child_site         3 x 1111 =   3333   in the child of `fork`
 *   grow_site         N MiB in 64 KiB blocks, by `grow N`
 *   keeper_site        5 x 3333 =  16665   by `threads`, on a thread "la-keeper" that ends
 *   late_site          7 x 4444 =  31108   by `threads`, on a thread "la-late" made after
 *                                          N short-lived threads (more than the registry
 *                                          of 65535 entries holds at once)
 * exec replaces the program image (execv of /proc/self/exe, same pid, as a wrapper
 * script's `exec` does); the new image answers "ok exec" and reads on.
 * Other commands: threads N (the churn above), sig (raise the dump signal), mdump
 * (prof.dump through leakalloc_mallctl), storm/forkstorm (signals or forks while threads
 * allocate), rlimit (file-size limit), fork/wait, cleanup, sleep, exit. forkthreads
 * forks a child that reports, as "threads B unshare E then A": its thread count right
 * after fork (B), the errno of unshare(CLONE_NEWUSER) (E; 0 when it worked, EINVAL when
 * the process has more than one thread), and its thread count after child_site (A).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void* g_leak_buffers[25];
static void* g_keeper[5];
static void* g_late[7];
static void* g_leak_small[100];
static void* g_worker_leak[8];
static void* g_cross[10];
static void* g_long[4];
static void* g_young[6];
static void* g_growth[12];
static void* g_grow[4096];
static int g_grow_n;
static volatile uintptr_t g_sink;

static void say(const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(1, s, n);
    if (w <= 0) { if (errno == EINTR) continue; _exit(3); }
    s += w;
    n -= (size_t)w;
  }
}

/* A number in decimal, by say(): no stdio. */
static void say_int(long v) {
  char buf[24];
  int n = (int)sizeof buf;
  unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
  buf[--n] = '\0';
  do buf[--n] = (char)('0' + u % 10); while ((u /= 10) > 0);
  if (v < 0) buf[--n] = '-';
  say(buf + n);
}

static void die(const char* s) {
  (void)!write(2, s, strlen(s));
  _exit(4);
}

NOINLINE static void leak_buffers(void) {
  for (int i = 0; i < 25; ++i) g_leak_buffers[i] = malloc(4000);
}
NOINLINE static void leak_small(void) {
  for (int i = 0; i < 100; ++i) g_leak_small[i] = malloc(24);
}
NOINLINE static void freed_site(void) {
  for (int i = 0; i < 50; ++i) {
    void* p = malloc(1000);
    g_sink += (uintptr_t)p;
    free(p);
  }
}
NOINLINE static void cross_site(void) {
  for (int i = 0; i < 10; ++i) g_cross[i] = malloc(3000);
}
NOINLINE static void worker_leak_site(void) {
  for (int i = 0; i < 8; ++i) g_worker_leak[i] = malloc(7000);
}
NOINLINE static void long_lived_site(void) {
  for (int i = 0; i < 4; ++i) g_long[i] = malloc(5000);
}
NOINLINE static void young_site(void) {
  for (int i = 0; i < 6; ++i) g_young[i] = malloc(9000);
}
NOINLINE static void growth_site(void) {
  for (int i = 0; i < 12; ++i) g_growth[i] = malloc(2500);
}
NOINLINE static void child_site(void) {
  for (int i = 0; i < 3; ++i) g_sink += (uintptr_t)malloc(1111);
}
NOINLINE static void grow_site(int mib) {
  for (int i = 0; i < mib * 16 && g_grow_n < 4096; ++i) {
    g_grow[g_grow_n] = malloc(65536);
    memset(g_grow[g_grow_n], 1, 65536);
    ++g_grow_n;
  }
}

NOINLINE static void keeper_site(void) {
  for (int i = 0; i < 5; ++i) g_keeper[i] = malloc(3333);
}
NOINLINE static void late_site(void) {
  for (int i = 0; i < 7; ++i) g_late[i] = malloc(4444);
}

/* ---- thread churn: `threads N` -------------------------------------------------------- */
typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);

static mallctl_fn get_mallctl(void) {
  mallctl_fn f = (mallctl_fn)dlsym(RTLD_DEFAULT, "leakalloc_mallctl");
  if (f == 0) die("no leakalloc_mallctl\n");
  return f;
}

static void* keeper_main(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "la-keeper");
  keeper_site();
  return 0;
}

static void* brief_main(void* arg) {
  void* p = malloc(48);
  g_sink += (uintptr_t)p;
  free(p);
  return arg;
}

/* The thread made after the churn must be a thread like the first ones: with its own
 * thread cache (which the registry's shared overflow entry does not give). */
static void* late_main(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "la-late");
  late_site();
  bool on = false;
  size_t len = sizeof on;
  if (get_mallctl()("thread.tcache.enabled", &on, &len, 0, 0) != 0) die("thread.tcache.enabled\n");
  return (void*)(uintptr_t)(on ? 1 : 2);
}

static void run_thread(void* (*fn)(void*), void* arg, void** ret) {
  pthread_t t;
  if (pthread_create(&t, 0, fn, arg) != 0) die("pthread_create\n");
  if (pthread_join(t, ret) != 0) die("pthread_join\n");
}

static void thread_churn(int n) {
  run_thread(keeper_main, 0, 0);
  for (int i = 0; i < n; ++i) run_thread(brief_main, 0, 0);
  void* r = 0;
  run_thread(late_main, 0, &r);
  if ((uintptr_t)r != 1) die("the thread made after the churn has no thread cache\n");
}

/* ---- the worker thread: runs jobs sent through a pipe ---------------------------- */
static int g_job[2], g_done[2];

static void* worker_main(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "dumpworker");
  char c;
  while (read(g_job[0], &c, 1) == 1) {
    if (c == 'x') cross_site();
    else if (c == 'w') worker_leak_site();
    else if (c == 'c') { for (int i = 0; i < 8; ++i) { free(g_worker_leak[i]); g_worker_leak[i] = 0; } }
    else if (c == 'q') { (void)!write(g_done[1], &c, 1); return 0; }
    (void)!write(g_done[1], &c, 1);
  }
  return 0;
}

static void worker_do(char c) {
  if (write(g_job[1], &c, 1) != 1) die("job write\n");
  if (read(g_done[0], &c, 1) != 1) die("job read\n");
}

/* ---- heavy allocation on other threads (storm) ------------------------------------ */
static volatile int g_stop_churn;

NOINLINE static void* churn_main(void* arg) {
  uintptr_t seed = (uintptr_t)arg * 2654435761u + 1;
  void* slots[64] = {0};
  uint64_t n = 0;
  while (!g_stop_churn) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int k = (int)((seed >> 33) % 64);
    free(slots[k]);
    size_t sz = (size_t)((seed >> 40) % 5000) + 1;
    slots[k] = malloc(sz);
    if (slots[k] == 0) die("churn malloc failed\n");
    memset(slots[k], (int)k, sz);
    ++n;
  }
  for (int k = 0; k < 64; ++k) free(slots[k]);
  return (void*)(uintptr_t)n;
}

static void storm(int signals, int sig) {
  pthread_t t[4];
  g_stop_churn = 0;
  for (int i = 0; i < 4; ++i) pthread_create(&t[i], 0, churn_main, (void*)(uintptr_t)(i + 1));
  struct timespec ts = {0, 200000};
  for (int i = 0; i < signals; ++i) {
    kill(getpid(), sig);
    nanosleep(&ts, 0);
  }
  g_stop_churn = 1;
  uint64_t total = 0;
  for (int i = 0; i < 4; ++i) {
    void* r;
    pthread_join(t[i], &r);
    total += (uint64_t)(uintptr_t)r;
  }
  if (total == 0) die("churn did nothing\n");
}

/* Forks `n` children while four threads allocate (and the dump thread dumps): each
 * child allocates, frees, and exits through exit() (so the exit hook runs in it). */
static void forkstorm(int n) {
  pthread_t t[4];
  g_stop_churn = 0;
  for (int i = 0; i < 4; ++i) pthread_create(&t[i], 0, churn_main, (void*)(uintptr_t)(i + 11));
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) die("fork\n");
    if (pid == 0) {
      child_site();
      void* p = malloc(100000);
      memset(p, 2, 100000);
      free(p);
      exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      die("forkstorm child failed\n");
  }
  g_stop_churn = 1;
  for (int i = 0; i < 4; ++i) pthread_join(t[i], 0);
}

/* Threads of this process, from /proc/self/status with read(2): nothing here allocates. */
static int thread_count(void) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* t = strstr(buf, "\nThreads:\t");
  if (t == 0) return -1;
  int v = 0;
  for (t += 10; *t >= '0' && *t <= '9'; ++t) v = v * 10 + (*t - '0');
  return v;
}

static void forkthreads(void) {
  int fds[2];
  if (pipe(fds) != 0) die("pipe\n");
  pid_t pid = fork();
  if (pid < 0) die("fork\n");
  if (pid == 0) {
    int r[3];
    r[0] = thread_count();
    r[1] = unshare(CLONE_NEWUSER) == 0 ? 0 : errno;
    child_site();
    r[2] = thread_count();
    (void)!write(fds[1], r, sizeof r);
    _exit(0);
  }
  close(fds[1]);
  int r[3];
  ssize_t got = read(fds[0], r, sizeof r);
  close(fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != sizeof r)
    die("forkthreads child failed\n");
  say("threads ");
  say_int(r[0]);
  say(" unshare ");
  say_int(r[1]);
  say(" then ");
  say_int(r[2]);
  say("\n");
}

static void command(char* line) {
  char* arg = strchr(line, ' ');
  if (arg != 0) *arg++ = '\0';
  if (strcmp(line, "old") == 0) {
    leak_buffers();
    leak_small();
    freed_site();
    worker_do('x');
    for (int i = 0; i < 10; ++i) { free(g_cross[i]); g_cross[i] = 0; }
    worker_do('w');
    long_lived_site();
  } else if (strcmp(line, "young") == 0) {
    young_site();
  } else if (strcmp(line, "growth") == 0) {
    growth_site();
  } else if (strcmp(line, "freelong") == 0) {
    for (int i = 0; i < 4; ++i) { free(g_long[i]); g_long[i] = 0; }
  } else if (strcmp(line, "sig") == 0) {
    kill(getpid(), SIGUSR2);
  } else if (strcmp(line, "mdump") == 0) {
    mallctl_fn f = get_mallctl();
    const char* path = (arg != 0 && strcmp(arg, "-") != 0) ? arg : 0;
    int r = path != 0 ? f("prof.dump", 0, 0, &path, sizeof path) : f("prof.dump", 0, 0, 0, 0);
    if (r != 0) say("mdump failed\n");
  } else if (strcmp(line, "grow") == 0) {
    grow_site(arg != 0 ? atoi(arg) : 1);
  } else if (strcmp(line, "sleep") == 0) {
    long ms = arg != 0 ? atol(arg) : 100;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  } else if (strcmp(line, "exec") == 0) {
    char* argv[] = {(char*)"dump_sites", (char*)"--after-exec", 0};
    execv("/proc/self/exe", argv);
    die("execv\n");
  } else if (strcmp(line, "threads") == 0) {
    thread_churn(arg != 0 ? atoi(arg) : 70000);
  } else if (strcmp(line, "storm") == 0) {
    storm(arg != 0 ? atoi(arg) : 1000, SIGUSR2);
  } else if (strcmp(line, "forkstorm") == 0) {
    forkstorm(arg != 0 ? atoi(arg) : 20);
  } else if (strcmp(line, "rlimit") == 0) {
    /* A file-size limit makes the next dump fail with EFBIG (disk-full-like). */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    long v = arg != 0 ? atol(arg) : -1;
    rl.rlim_cur = v < 0 ? RLIM_INFINITY : (rlim_t)v;
    rl.rlim_max = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) die("setrlimit\n");
  } else if (strcmp(line, "fork") == 0) {
    pid_t pid = fork();
    if (pid < 0) die("fork\n");
    if (pid == 0) {
      /* The child: a site of its own, then the commands it got in `arg` are implied:
       * one signal dump, then wait for the driver (through a file) and exit(0). */
      child_site();
      kill(getpid(), SIGUSR2);
      /* Wait for the driver to see the child's dump (it removes this file). */
      char flag[256];
      size_t n = strlen(arg != 0 ? arg : "");
      if (n == 0 || n > 200) _exit(5);
      memcpy(flag, arg, n + 1);
      for (int i = 0; i < 3000 && access(flag, F_OK) == 0; ++i) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, 0);
      }
      exit(0);
    }
    say("child ");
    say_int(pid);
    say("\n");
  } else if (strcmp(line, "forkthreads") == 0) {
    forkthreads();
  } else if (strcmp(line, "wait") == 0) {
    int status = 0;
    pid_t r = wait(&status);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child failed\n");
  } else if (strcmp(line, "cleanup") == 0) {
    for (int i = 0; i < 25; ++i) free(g_leak_buffers[i]);
    for (int i = 0; i < 100; ++i) free(g_leak_small[i]);
    for (int i = 0; i < 4; ++i) free(g_long[i]);
    for (int i = 0; i < 6; ++i) free(g_young[i]);
    for (int i = 0; i < 12; ++i) free(g_growth[i]);
    for (int i = 0; i < g_grow_n; ++i) free(g_grow[i]);
    for (int i = 0; i < 5; ++i) free(g_keeper[i]);
    for (int i = 0; i < 7; ++i) free(g_late[i]);
    memset(g_keeper, 0, sizeof g_keeper);
    memset(g_late, 0, sizeof g_late);
    memset(g_leak_buffers, 0, sizeof g_leak_buffers);
    memset(g_leak_small, 0, sizeof g_leak_small);
    memset(g_long, 0, sizeof g_long);
    memset(g_young, 0, sizeof g_young);
    memset(g_growth, 0, sizeof g_growth);
    g_grow_n = 0;
    worker_do('c');
  } else if (strcmp(line, "exit") == 0) {
    say("ok exit\n");
    worker_do('q');
    exit(arg != 0 ? atoi(arg) : 0);
  } else {
    die("unknown command\n");
  }
  say("ok ");
  say(line);
  say("\n");
}

int main(int argc, char** argv) {
  if (pipe(g_job) != 0 || pipe(g_done) != 0) die("pipe\n");
  pthread_t w;
  if (pthread_create(&w, 0, worker_main, 0) != 0) die("pthread_create\n");
  pthread_detach(w);
  if (argc > 1 && strcmp(argv[1], "--after-exec") == 0) say("ok exec\n");
  char line[512];
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read(0, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (c == '\n') {
      line[n] = '\0';
      command(line);
      n = 0;
    } else if (n + 1 < sizeof line) {
      line[n++] = c;
    }
  }
  return 0;
}
