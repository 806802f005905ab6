/* glibc's heap introspection under leakalloc (ctl/glibc_compat.cpp): mallinfo2 and
 * mallinfo count leakalloc's live bytes exactly, malloc_trim gives freed memory back to
 * the system, malloc_stats prints leakalloc's statistics. Left to glibc, all four would
 * describe glibc's own arena, which holds next to nothing here. */
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "interposed.h"

enum { kBlocks = 1000, kSize = 1000, kTrimBlocks = 16384, kTrimSize = 4000 };

static void* g_blocks[kTrimBlocks];

static long rss_kib(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  CHECK(fd >= 0);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  CHECK(n > 0);
  buf[n] = '\0';
  long size = 0, resident = 0;
  CHECK(sscanf(buf, "%ld %ld", &size, &resident) == 2);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void) {
  require_leakalloc();
  CHECK(in_leakalloc(dlsym(RTLD_DEFAULT, "mallinfo2")));
  CHECK(in_leakalloc(dlsym(RTLD_DEFAULT, "malloc_trim")));

  /* Nothing else allocates between the readings: no stdio until the end. */
  /* mallinfo is deprecated in glibc's header, and old programs still call it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo2 m0 = mallinfo2();
  struct mallinfo l0 = mallinfo();
  for (int i = 0; i < kBlocks; i++) g_blocks[i] = malloc(kSize);
  struct mallinfo2 m1 = mallinfo2();
  struct mallinfo l1 = mallinfo();
#pragma GCC diagnostic pop
  CHECK(m1.uordblks - m0.uordblks == (size_t)kBlocks * kSize); /* requested bytes, exactly */
  CHECK(l1.uordblks - l0.uordblks == kBlocks * kSize);
  CHECK(m1.arena >= m1.uordblks + m1.fordblks);
  CHECK(m1.arena > 0 && m1.fordblks > 0);
  CHECK(m1.hblkhd == 0 && m1.ordblks == 0);
  for (int i = 0; i < kBlocks; i++) free(g_blocks[i]);
  struct mallinfo2 m2 = mallinfo2();
  CHECK(m2.uordblks == m0.uordblks);

  /* 64 MiB of small blocks, touched, then freed: mimalloc keeps most of it committed
   * for a while; malloc_trim must give it back now. */
  for (int i = 0; i < kTrimBlocks; i++) {
    g_blocks[i] = malloc(kTrimSize);
    CHECK(g_blocks[i] != NULL);
    memset(g_blocks[i], 1, kTrimSize);
  }
  long full = rss_kib();
  for (int i = 0; i < kTrimBlocks; i++) free(g_blocks[i]);
  long freed = rss_kib();
  int released = malloc_trim(0);
  long trimmed = rss_kib();
  CHECK(released == 1);
  CHECK(trimmed <= full - 32 * 1024);

  /* malloc_stats writes to stderr: catch it in a pipe. */
  int fds[2];
  CHECK(pipe(fds) == 0);
  int saved = dup(2);
  CHECK(saved >= 0 && dup2(fds[1], 2) == 2);
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  close(fds[1]);
  static char text[65536];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fds[0], text + len, sizeof text - 1 - len)) > 0) len += (size_t)r;
  close(fds[0]);
  text[len] = '\0';
  CHECK(strstr(text, "stats.allocated: ") != NULL);

  printf("rss KiB: %ld with 64 MiB live, %ld after free, %ld after malloc_trim\n", full, freed, trimmed);
  printf("introspect-ok\n");
  return 0;
}
