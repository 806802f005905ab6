// Compiler attributes and hints every layer uses. Includes nothing of the project.
#pragma once

#define LA_LIKELY(x) __builtin_expect(!!(x), 1)
#define LA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LA_NOINLINE __attribute__((noinline))
#define LA_ALWAYS_INLINE inline __attribute__((always_inline))
#define LA_TLS __thread __attribute__((tls_model("initial-exec")))
// For the declaration of a variable that another file of the library defines.
// -fvisibility=hidden applies to definitions only: without this the fast paths reach
// the variable through the GOT, one more load each time.
#define LA_HIDDEN __attribute__((visibility("hidden")))
// The one way a name leaves the library. The library is built -fvisibility=hidden and
// linked with cmake/leakalloc.map, which lists every exported name; the
// layering.exports test holds `nm -D` of the library to that list.
#define LA_EXPORT extern "C" __attribute__((visibility("default")))
#define LA_CXX_EXPORT __attribute__((visibility("default")))

namespace leakalloc {

// Asks for the cache line at `p` in the exclusive state, ahead of a write, without
// waiting for it. Written out because GCC emits PREFETCHW only for -march levels that
// have it; processors without it execute the encoding as a NOP.
LA_ALWAYS_INLINE void prefetch_for_write(const void* p) {
#if defined(__x86_64__)
  __asm__("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1);
#endif
}

}  // namespace leakalloc
