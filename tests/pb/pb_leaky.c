// A small leaky program for the end-to-end pb test: run under LD_PRELOAD (or linked
// with -lleakalloc) with format:pb, and the exit dump is read with go tool pprof.
// Old leaks on the main thread and on a named thread that has exited by the time of
// the dump, a freed site, and young leaks that an age:1s dump must leave out. The
// named thread is still alive (parked) when the exit dump runs.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void* g_keep[64];
static int g_n;

static __attribute__((noinline)) void keep(void* p) {
  memset(p, 1, 16);
  g_keep[g_n++] = p;
}

__attribute__((noinline)) void leak_old(void) {
  for (int i = 0; i < 12; ++i) keep(malloc(2000));
}
__attribute__((noinline)) void leak_young(void) {
  for (int i = 0; i < 4; ++i) keep(malloc(777));
}
__attribute__((noinline)) void free_me(void) {
  for (int i = 0; i < 5; ++i) {
    void* p = malloc(300);
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
  }
}
__attribute__((noinline)) void leak_in_thread(void) {
  for (int i = 0; i < 6; ++i) keep(malloc(5000));
}

static volatile int g_leaked;

static void* leaker(void* arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "pb-leaker");
  leak_in_thread();
  g_leaked = 1;
  for (;;) pause();  // exit() ends it; the exit dump reads its name first
  return NULL;
}

int main(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, leaker, NULL) != 0) return 2;
  while (!g_leaked) usleep(1000);
  leak_old();
  free_me();
  usleep(1500 * 1000);
  leak_young();
  return 0;
}
