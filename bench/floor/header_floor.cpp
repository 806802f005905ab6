// The header floor: a control configuration for bench/compare.sh ("hdr-floor"), not an
// allocator anyone should use.
//
// It puts in front of mimalloc only what docs/DESIGN.md asks of every block, and nothing else:
// 16 bytes before the user pointer holding the requested size and a birth word with a
// check word in its low 24 bits, written at malloc; at free, the header is read, the
// check recomputed, a mismatch refused, and the freed mark written before mimalloc gets
// the block. The header, its check and the freed mark are leakalloc's own
// (alloc/header.h, header-only), so the floor pays exactly leakalloc's arithmetic. No
// thread cache, no counters, no sampler, no birth clock (the birth is one load of a word
// nobody updates, cheaper than any clock), no special case for page-start pointers. So it
// is a lower bound on the time of any allocator built to docs/DESIGN.md on top of mimalloc's
// calls: where leakalloc at sample:19 is slower than plain mimalloc by more than a target
// allows, the ratio of this floor to mimalloc says how much of that the design itself
// costs, and leakalloc's ratio to the floor how much is leakalloc's own.
//
// Built three ways (bench/CMakeLists.txt), so that the floor can be taken apart:
//   HEADER_FLOOR_MODE 2  hdr-floor   the header written at malloc, read and checked at free;
//   HEADER_FLOOR_MODE 1  hdr-write   the header written at malloc, never read (what a free
//                                    that does not check would cost);
//   HEADER_FLOOR_MODE 0  hdr-offset  16 bytes before the user pointer, nothing in them
//                                    (the layer's call and the header's footprint alone).
//
// One override list, as alloc/override.cpp: the C functions glibc documents as the set
// to replace (so that glibc's own internal calls come here too), and operator new/delete
// so that a C++ program does not pay a second call through libstdc++'s forwarders
// (mimalloc and leakalloc export them too).
#include <errno.h>
#include <mimalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <new>

#include "alloc/header.h"

#ifndef HEADER_FLOOR_MODE
#define HEADER_FLOOR_MODE 2
#endif

#define FLOOR_EXPORT extern "C" __attribute__((visibility("default")))

// Not constants, so that the compiler cannot fold them: the birth and the secret each
// cost the load of a shared word, as leakalloc's do. The secret (alloc/header.h declares
// it; this library is its only definition here) is fixed: one set by a constructor would
// change under the blocks that other libraries' constructors allocated before it ran,
// and their free would be refused.
uint64_t g_floor_birth_word = uint64_t{1} << 24;
namespace leakalloc {
uint64_t g_header_secret = 0x9b1f4c27d3e85a61ull;
}

namespace {

using leakalloc::BlockHeader;
using leakalloc::kHeaderSize;

inline void* finish(void* base, size_t size) {
  if (__builtin_expect(base == nullptr, 0)) {
    errno = ENOMEM;
    return nullptr;
  }
  void* user = static_cast<char*>(base) + kHeaderSize;
  if (HEADER_FLOOR_MODE >= 1) leakalloc::header_write_birth(user, size, g_floor_birth_word);
  return user;
}

[[noreturn]] __attribute__((noinline, cold)) void refuse(const char* op, void* p) {
  char line[128];
  int n = snprintf(line, sizeof line, "header_floor: %s(%p): not a live block\n", op, p);
  if (n > 0) (void)!write(2, line, static_cast<size_t>(n) < sizeof line ? n : sizeof line - 1);
  abort();
}

// The header of a live block, or the process ends (hdr-floor; the other two trust it).
inline BlockHeader* checked(void* p, const char* op) {
  BlockHeader* h = leakalloc::header_of(p);
  if (HEADER_FLOOR_MODE >= 2 && __builtin_expect(!leakalloc::header_valid(p, h), 0)) refuse(op, p);
  return h;
}

inline void release(void* p) {
  if (p == nullptr) return;
  BlockHeader* h = checked(p, "free");
  if (HEADER_FLOOR_MODE >= 2) h->word1 = leakalloc::freed_mark(p);
  mi_free(h);
}

inline void* alloc(size_t size) {
  if (__builtin_expect(size > PTRDIFF_MAX - kHeaderSize, 0)) return finish(nullptr, 0);
  return finish(mi_malloc(size + kHeaderSize), size);
}

inline void* alloc_aligned(size_t align, size_t size) {
  if (align < kHeaderSize) align = kHeaderSize;
  if (size > PTRDIFF_MAX - kHeaderSize) return finish(nullptr, 0);
  // The header right before an aligned user pointer, as docs/DESIGN.md asks.
  return finish(mi_malloc_aligned_at(size + kHeaderSize, align, kHeaderSize), size);
}

inline bool valid_alignment(size_t align) { return align != 0 && (align & (align - 1)) == 0; }

void* new_or_throw(size_t size) {
  void* p = alloc(size);
  if (__builtin_expect(p == nullptr, 0)) throw std::bad_alloc();
  return p;
}

}  // namespace

FLOOR_EXPORT void* malloc(size_t size) { return alloc(size); }
FLOOR_EXPORT void free(void* p) { release(p); }
FLOOR_EXPORT void* calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total) || total > PTRDIFF_MAX - kHeaderSize) return finish(nullptr, 0);
  return finish(mi_zalloc(total + kHeaderSize), total);
}
FLOOR_EXPORT void* realloc(void* p, size_t size) {
  if (p == nullptr) return alloc(size);
  BlockHeader* h = checked(p, "realloc");
  if (size > PTRDIFF_MAX - kHeaderSize) return finish(nullptr, 0);
  // mi_realloc moves an aligned block to a plain one: no workload reallocs aligned blocks.
  return finish(mi_realloc(h, size + kHeaderSize), size);
}
FLOOR_EXPORT void* reallocarray(void* p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return finish(nullptr, 0);
  return realloc(p, total);
}
FLOOR_EXPORT size_t malloc_usable_size(void* p) {
  return p == nullptr ? 0 : mi_usable_size(checked(p, "malloc_usable_size")) - kHeaderSize;
}
FLOOR_EXPORT int posix_memalign(void** out, size_t align, size_t size) {
  if (!valid_alignment(align) || align % sizeof(void*) != 0) return EINVAL;
  void* p = alloc_aligned(align, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
FLOOR_EXPORT void* aligned_alloc(size_t align, size_t size) {
  if (!valid_alignment(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return alloc_aligned(align, size);
}
FLOOR_EXPORT void* memalign(size_t align, size_t size) { return aligned_alloc(align, size); }
FLOOR_EXPORT void* valloc(size_t size) { return alloc_aligned(4096, size); }
FLOOR_EXPORT void* pvalloc(size_t size) { return alloc_aligned(4096, (size + 4095) & ~size_t{4095}); }

void* operator new(size_t size) { return new_or_throw(size); }
void* operator new[](size_t size) { return new_or_throw(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept { return alloc(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return alloc(size); }
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, size_t) noexcept { release(p); }
void operator delete[](void* p, size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
