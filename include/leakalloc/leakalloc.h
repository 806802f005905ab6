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
 * (wrong size or value), EPERM (read-only), EFAULT (the action failed). */
int leakalloc_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
int leakalloc_mallctlnametomib(const char* name, size_t* mibp, size_t* miblenp);
int leakalloc_mallctlbymib(const size_t* mib, size_t miblen, void* oldp, size_t* oldlenp,
                           void* newp, size_t newlen);
/* Writes a human-readable statistics report through write_cb (stderr when NULL).
 * opts: NULL or "" for everything; 'J' for JSON. */
void leakalloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts);

#ifdef __cplusplus
}
#endif

#endif /* LEAKALLOC_LEAKALLOC_H */
