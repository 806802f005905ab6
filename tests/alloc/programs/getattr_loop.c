/* pthread_getattr_np allocates while glibc holds the thread's own lock (the main
 * thread's /proc/self/maps FILE, every thread's cpuset buffer). A sampled allocation made
 * there must not ask glibc about the stack again: that waited on the same lock forever
 * (issue 24; 10 runs of 10 hung at the default sample:19). The main thread calls it in a
 * loop, then threads call it as their very first act, as ruby's Thread.new does. */
#include <pthread.h>
#include <stdio.h>

#include "interposed.h"

static void* first_act(void* arg) {
  pthread_attr_t attr;
  CHECK(pthread_getattr_np(pthread_self(), &attr) == 0);
  size_t size = 0;
  void* addr = NULL;
  CHECK(pthread_attr_getstack(&attr, &addr, &size) == 0);
  CHECK((char*)&attr > (char*)addr && (char*)&attr < (char*)addr + size);
  pthread_attr_destroy(&attr);
  return arg;
}

int main(int argc, char** argv) {
  require_leakalloc();
  int loops = argc > 1 ? atoi(argv[1]) : 1000;
  int threads = argc > 2 ? atoi(argv[2]) : 300;
  for (int i = 0; i < loops; i++) {
    pthread_attr_t attr;
    CHECK(pthread_getattr_np(pthread_self(), &attr) == 0);
    pthread_attr_destroy(&attr);
  }
  for (int i = 0; i < threads; i++) {
    pthread_t th;
    CHECK(pthread_create(&th, NULL, first_act, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
  }
  printf("getattr-ok %d loops %d threads\n", loops, threads);
  return 0;
}
