// Every exported name of the malloc family and every C++ operator new/delete variant,
// in one place, each a thin forwarder to alloc/alloc.h. This is the checklist: a name
// missing here is a block that some program allocates with glibc and frees with us.
//
// Symbol lookup: with LD_PRELOAD these definitions come first. When a program links
// -lleakalloc, libleakalloc.so comes before libmimalloc.so.2 (which also exports
// malloc/free/new) because mimalloc is our dependency, loaded after us.
#include <errno.h>
#include <stddef.h>

#include <new>

#include "alloc/alloc.h"
#include "alloc/fast_path.h"

#define LA_EXPORT extern "C" __attribute__((visibility("default")))
#define LA_CXX_EXPORT __attribute__((visibility("default")))

using namespace leakalloc;

// Every allocating entry point passes its own frame address down (alloc/alloc.h): stack
// capture starts at the return address stored there, so frame 0 is in the caller of
// malloc/new however the allocator was linked (shared library or objects in the
// executable) and whatever the compiler inlined, and our own frames are never walked.
#define LA_FRAME reinterpret_cast<EntryFrame>(__builtin_frame_address(0))

// ---- C ------------------------------------------------------------------------------
LA_EXPORT void* malloc(size_t size) noexcept { return malloc_fast(size, LA_FRAME); }
LA_EXPORT void* calloc(size_t n, size_t size) noexcept { return la_calloc(n, size, LA_FRAME); }
LA_EXPORT void* realloc(void* p, size_t size) noexcept { return la_realloc(p, size, "realloc", LA_FRAME); }
LA_EXPORT void* reallocarray(void* p, size_t n, size_t size) noexcept { return la_reallocarray(p, n, size, LA_FRAME); }
LA_EXPORT void free(void* p) noexcept { free_fast(p, "free"); }
LA_EXPORT void cfree(void* p) noexcept { la_free(p, "cfree"); }
LA_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept { return la_posix_memalign(out, align, size, LA_FRAME); }
LA_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept { return la_aligned_alloc(align, size, LA_FRAME); }
LA_EXPORT void* memalign(size_t align, size_t size) noexcept { return la_memalign(align, size, LA_FRAME); }
LA_EXPORT void* valloc(size_t size) noexcept { return la_valloc(size, LA_FRAME); }
LA_EXPORT void* pvalloc(size_t size) noexcept { return la_pvalloc(size, LA_FRAME); }
LA_EXPORT size_t malloc_usable_size(void* p) noexcept { return la_usable_size(p); }

// glibc's internal entry points: libc itself and some programs call these directly.
LA_EXPORT void* __libc_malloc(size_t size) noexcept { return la_malloc(size, LA_FRAME); }
LA_EXPORT void* __libc_calloc(size_t n, size_t size) noexcept { return la_calloc(n, size, LA_FRAME); }
LA_EXPORT void* __libc_realloc(void* p, size_t size) noexcept { return la_realloc(p, size, "__libc_realloc", LA_FRAME); }
LA_EXPORT void __libc_free(void* p) noexcept { la_free(p, "__libc_free"); }
LA_EXPORT void __libc_cfree(void* p) noexcept { la_free(p, "__libc_cfree"); }
LA_EXPORT void* __libc_memalign(size_t align, size_t size) noexcept { return la_memalign(align, size, LA_FRAME); }
LA_EXPORT void* __libc_valloc(size_t size) noexcept { return la_valloc(size, LA_FRAME); }
LA_EXPORT void* __libc_pvalloc(size_t size) noexcept { return la_pvalloc(size, LA_FRAME); }
LA_EXPORT int __posix_memalign(void** out, size_t align, size_t size) noexcept { return la_posix_memalign(out, align, size, LA_FRAME); }

// ---- C++ ----------------------------------------------------------------------------
namespace {

// operator new after a failed attempt: retry through the new_handler, then throw (the
// standard's loop). Out of line so that the common case is a plain call to la_malloc.
__attribute__((noinline, cold)) void* new_retry(size_t size, size_t align, EntryFrame frame) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
    void* p = align > 16 ? la_aligned(align, size, frame) : la_malloc(size, frame);
    if (p != nullptr) return p;
  }
}

LA_ALWAYS_INLINE void* new_or_throw(size_t size, size_t align, EntryFrame frame) {
  void* p = align > 16 ? la_aligned(align, size, frame) : malloc_fast(size, frame);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_retry(size, align, frame);
}

void* new_nothrow(size_t size, size_t align, EntryFrame frame) noexcept {
  try {
    return new_or_throw(size, align, frame);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

LA_CXX_EXPORT void* operator new(size_t n) { return new_or_throw(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n) { return new_or_throw(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_or_throw(n, static_cast<size_t>(a), LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_or_throw(n, static_cast<size_t>(a), LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_nothrow(n, static_cast<size_t>(a), LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_nothrow(n, static_cast<size_t>(a), LA_FRAME); }

LA_CXX_EXPORT void operator delete(void* p) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p) noexcept { free_fast(p, "operator delete[]"); }
LA_CXX_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { free_fast(p, "operator delete[]"); }
LA_CXX_EXPORT void operator delete(void* p, size_t n) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p, size_t n) noexcept { free_fast(p, "operator delete[]"); }
LA_CXX_EXPORT void operator delete(void* p, std::align_val_t) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { free_fast(p, "operator delete[]"); }
LA_CXX_EXPORT void operator delete(void* p, size_t n, std::align_val_t) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p, size_t n, std::align_val_t) noexcept { free_fast(p, "operator delete[]"); }
LA_CXX_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_fast(p, "operator delete"); }
LA_CXX_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { free_fast(p, "operator delete[]"); }
