/* leakalloc: a drop-in C allocator (mimalloc underneath) with leak aging built in.
 *
 * Link with -lleakalloc or run under LD_PRELOAD=libleakalloc.so; configure with
 * LEAKALLOC_CONF=key:value,... (see README.md). This header declares the run-time
 * control interface; the malloc family itself needs no header of ours. */
#ifndef LEAKALLOC_LEAKALLOC_H
#define LEAKALLOC_LEAKALLOC_H

#include <stddef.h>

#define LEAKALLOC_VERSION_MAJOR 0
#define LEAKALLOC_VERSION_MINOR 1
#define LEAKALLOC_VERSION_PATCH 0
#define LEAKALLOC_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* jemalloc's mallctl calling convention: read the old value into oldp (size in
 * *oldlenp), write newp (newlen bytes). Returns 0, or ENOENT (unknown name), EINVAL
 * (wrong size or value), EPERM (read-only), EFAULT (the action failed). A wrong *oldlenp
 * copies what fits, sets *oldlenp to it and returns EINVAL without changing anything.
 * The names and their types are listed in README.md ("Control interface"), e.g.
 *   uint64_t e = 1; leakalloc_mallctl("epoch", NULL, NULL, &e, sizeof e);
 *   size_t n, len = sizeof n; leakalloc_mallctl("stats.allocated", &n, &len, NULL, 0);
 *   const char *f = "app.heap"; leakalloc_mallctl("prof.dump", NULL, NULL, &f, sizeof f);
 *   uint64_t leaks; len = sizeof leaks; leakalloc_mallctl("leak.bytes", &leaks, &len, NULL, 0);
 * libleakalloc.so also exports these four functions under jemalloc's names (mallctl,
 * mallctlnametomib, mallctlbymib, malloc_stats_print), so a program built against
 * <jemalloc/jemalloc.h> runs unchanged under it; this header does not declare them. */
int leakalloc_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
int leakalloc_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp);
int leakalloc_mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp,
                           void* newp, size_t newlen);
/* Writes a statistics report (version, options, profiler state, stats.*, leak.*) through
 * write_cb in NUL-terminated pieces (stderr when NULL), starting a new epoch first as
 * jemalloc does. opts: NULL or "" for text; containing 'J' for JSON. Allocates nothing. */
void leakalloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts);

#ifdef __cplusplus
}
#endif

#endif /* LEAKALLOC_LEAKALLOC_H */
