/* A plain C program, run under LD_PRELOAD=libleakalloc.so with LEAKALLOC_CONF=sample:0:
 * every allocation is sampled and its stack captured from inside libleakalloc.so (the
 * path the executables linked with the allocator's objects do not take). It makes
 * distinct stacks along the bits of numbers, frees on other threads, forks while
 * threads allocate, dlopens a library from several threads and lets a thread's blocks
 * outlive it, checking every block's contents. Prints "ok" and exits 0 on success.
 * argv[1]: path of prof_dl_lib.so. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c)                                                          \
  do {                                                                    \
    if (!(c)) {                                                           \
      fprintf(stderr, "prof_preload_plain:%d: check failed: %s\n", __LINE__, #c); \
      exit(1);                                                            \
    }                                                                     \
  } while (0)

#define BITS 6
#define NSTACKS (1u << BITS)
#define PER 4

static volatile unsigned trace0, trace1;
static void* bt0(unsigned n, unsigned i, size_t size);
static void* bt1(unsigned n, unsigned i, size_t size);

__attribute__((noinline)) static void* leaf(size_t size) {
  void* p = malloc(size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
static void* step(unsigned n, unsigned i, size_t size) {
  if (i == BITS) return leaf(size);
  return (n >> i) & 1u ? bt1(n, i + 1, size) : bt0(n, i + 1, size);
}
__attribute__((noinline)) static void* bt0(unsigned n, unsigned i, size_t size) {
  trace0 = i;
  void* p = step(n, i, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
__attribute__((noinline)) static void* bt1(unsigned n, unsigned i, size_t size) {
  trace1 = i;
  void* p = step(n, i, size);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

static size_t size_of(unsigned n) { return 100 + 13 * n; }
static void fill(void* p, size_t size, unsigned tag) { memset(p, (int)(tag & 0xff), size); }
static int intact(const void* p, size_t size, unsigned tag) {
  const unsigned char* c = p;
  for (size_t i = 0; i < size; ++i)
    if (c[i] != (unsigned char)(tag & 0xff)) return 0;
  return 1;
}

static void* blocks[NSTACKS][PER];

/* leakalloc's control interface, looked up at run time: this program is not linked
 * with the allocator, it only runs under it. */
typedef int (*mallctl_fn)(const char*, void*, size_t*, void*, size_t);
static mallctl_fn ctl;
struct counts {
  uint64_t live, total, stacks;
};
static struct counts read_counts(void) {
  struct counts c;
  uint64_t e = 1;
  size_t len = sizeof(uint64_t);
  CHECK(ctl("epoch", NULL, NULL, &e, sizeof e) == 0);
  CHECK(ctl("stats.sampled_live", &c.live, &len, NULL, 0) == 0 && len == sizeof(uint64_t));
  CHECK(ctl("stats.sampled_total", &c.total, &len, NULL, 0) == 0);
  CHECK(ctl("stats.stacks", &c.stacks, &len, NULL, 0) == 0);
  return c;
}

static void* free_odd(void* arg) {
  (void)arg;
  for (unsigned n = 1; n < NSTACKS; n += 2) {
    CHECK(intact(blocks[n][0], size_of(n), n));
    free(blocks[n][0]);
    blocks[n][0] = NULL;
  }
  return NULL;
}

static volatile int stop;
static void* churn(void* arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  void* ring[32] = {0};
  for (unsigned i = 0; !stop; ++i) {
    free(ring[i % 32]);
    ring[i % 32] = step((i * 3 + t) % NSTACKS, 0, 32 + i % 300);
  }
  for (int i = 0; i < 32; ++i) free(ring[i]);
  return NULL;
}

static const char* g_lib;
static void* dl_user(void* arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  for (int it = 0; it < 8; ++it) {
    void* h = dlopen(g_lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL);
    void* (*chain)(int, size_t) = (void* (*)(int, size_t))dlsym(h, "dl_chain");
    CHECK(chain != NULL);
    for (int i = 0; i < 20; ++i) {
      void* p = chain(1 + i % 3, 64 + t);
      fill(p, 64 + t, t);
      CHECK(intact(p, 64 + t, t));
      free(p);
    }
    dlclose(h);
  }
  return NULL;
}

static void* outliving[50];
static void* exiting(void* arg) {
  (void)arg;
  for (int i = 0; i < 50; ++i) {
    outliving[i] = leaf(777);
    fill(outliving[i], 777, 77);
  }
  return NULL;
}

int main(int argc, char** argv) {
  CHECK(argc == 2);
  g_lib = argv[1];
  Dl_info info;
  CHECK(dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info) != 0);
  CHECK(info.dli_fname != NULL && strstr(info.dli_fname, "libleakalloc") != NULL);

  ctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "leakalloc_mallctl");
  CHECK(ctl != NULL);

  /* sample:0: every allocation is sampled, and each number's path is its own stack
   * (the allocator's frames are cut off, the caller's are all kept). */
  struct counts c0 = read_counts();
  for (unsigned n = 0; n < NSTACKS; ++n)
    for (int j = 0; j < PER; ++j) blocks[n][j] = step(n, 0, size_of(n));
  struct counts c1 = read_counts();
  CHECK(c1.live - c0.live == NSTACKS * PER);
  CHECK(c1.total - c0.total == NSTACKS * PER);
  CHECK(c1.stacks - c0.stacks == NSTACKS);
  for (unsigned n = 0; n < NSTACKS; ++n)
    for (int j = 0; j < PER; ++j) {
      CHECK(malloc_usable_size(blocks[n][j]) >= size_of(n));
      fill(blocks[n][j], size_of(n), n);
    }
  pthread_t th;
  CHECK(pthread_create(&th, NULL, free_odd, NULL) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  struct counts c2 = read_counts();
  /* The other thread's own allocations (its start-up) may still be alive; the freed
   * blocks must be gone. */
  CHECK(c2.live <= c1.live - NSTACKS / 2 + 4 && c2.live >= c1.live - NSTACKS / 2);

  pthread_t churners[3];
  for (unsigned t = 0; t < 3; ++t) CHECK(pthread_create(&churners[t], NULL, churn, (void*)(uintptr_t)t) == 0);
  for (int round = 0; round < 10; ++round) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      alarm(30);
      for (unsigned n = 0; n < NSTACKS; n += 2) CHECK(intact(blocks[n][0], size_of(n), n));
      void* mine[100];
      for (int i = 0; i < 100; ++i) {
        mine[i] = step((unsigned)i % NSTACKS, 0, 5000);
        fill(mine[i], 5000, 9);
      }
      for (int i = 0; i < 100; ++i) {
        CHECK(intact(mine[i], 5000, 9));
        free(mine[i]);
      }
      _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  pthread_t dl[3];
  for (unsigned t = 0; t < 3; ++t) CHECK(pthread_create(&dl[t], NULL, dl_user, (void*)(uintptr_t)t) == 0);
  for (unsigned t = 0; t < 3; ++t) CHECK(pthread_join(dl[t], NULL) == 0);
  stop = 1;
  for (unsigned t = 0; t < 3; ++t) CHECK(pthread_join(churners[t], NULL) == 0);

  CHECK(pthread_create(&th, NULL, exiting, NULL) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  for (int i = 0; i < 50; ++i) {
    CHECK(intact(outliving[i], 777, 77));
    free(outliving[i]);
  }
  for (unsigned n = 0; n < NSTACKS; ++n)
    for (int j = 0; j < PER; ++j) {
      if (blocks[n][j] == NULL) continue;
      CHECK(intact(blocks[n][j], size_of(n), n));
      free(blocks[n][j]);
    }
  puts("ok");
  return 0;
}
