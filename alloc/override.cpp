// Every exported name of the malloc family and every C++ operator new/delete variant,
// in one place, each a thin forwarder to alloc/alloc.h. This is the checklist: a name
// missing here is a block that some program allocates with glibc and frees with us.
//
// Symbol lookup: with LD_PRELOAD these definitions come first. When a program links
// -lleakalloc, libleakalloc.so comes before libmimalloc.so.2 (which also exports
// malloc/free/new) because mimalloc is our dependency, loaded after us.
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include <atomic>
#include <new>

#include "alloc/alloc.h"
#include "alloc/fast_path.h"
#include "profile/frame_cache.h"


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
LA_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept {
  if (void* p = aligned_cached(align, size, LA_FRAME)) {
    *out = p;
    return 0;
  }
  return la_posix_memalign(out, align, size, LA_FRAME);
}
LA_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept {
  if (void* p = aligned_cached(align, size, LA_FRAME)) return p;
  return la_aligned_alloc(align, size, LA_FRAME);
}
LA_EXPORT void* memalign(size_t align, size_t size) noexcept {
  if (void* p = aligned_cached(align, size, LA_FRAME)) return p;
  return la_memalign(align, size, LA_FRAME);
}
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
//
// The library does not link a C++ runtime: a C program preloaded with it (a shell, every
// command a script runs) would otherwise load and relocate libstdc++ at each start, which
// cost 1.2 ms of a 2.9 ms start of /bin/true (jemalloc, which links it, starts in
// 2.1 ms; mimalloc in 0.75 ms). The library is built without exceptions, and only
// operator new's failure path needs the runtime: std::get_new_handler, a std::bad_alloc
// to throw, and a catch for what a new_handler throws in the nothrow forms. It finds
// them in the runtime the program has loaded, which any caller of operator new has,
// when a request first fails.
namespace {

// The C++ runtime the program has loaded (libstdc++, or libc++ with libc++abi), found
// without loading one; nullptr if there is none. The handle is kept (a reference that
// keeps a loaded runtime loaded, which `nodelete` keeps us anyway).
void* cxx_runtime() {
  static std::atomic<void*> cached{nullptr};
  void* h = cached.load(std::memory_order_acquire);
  if (h != nullptr) return h;
  for (const char* name : {"libstdc++.so.6", "libc++.so.1"}) {
    h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (h == nullptr) continue;
    void* expected = nullptr;
    if (!cached.compare_exchange_strong(expected, h, std::memory_order_acq_rel)) dlclose(h);
    return cached.load(std::memory_order_acquire);
  }
  return nullptr;
}

// A symbol of the loaded C++ runtime, by its libstdc++ name or else its libc++ name (if
// the two differ), or nullptr.
void* cxx_symbol(const char* libstdcxx_name, const char* libcxx_name) {
  void* h = cxx_runtime();
  if (h == nullptr) return nullptr;
  void* s = dlsym(h, libstdcxx_name);
  return s != nullptr || libcxx_name == nullptr ? s : dlsym(h, libcxx_name);
}

std::new_handler current_new_handler() {
  // std::get_new_handler(): the same name in both runtimes (libc++ keeps the new
  // handler out of its versioned namespace).
  auto get = reinterpret_cast<std::new_handler (*)()>(cxx_symbol("_ZSt15get_new_handlerv", nullptr));
  return get != nullptr ? get() : nullptr;
}

// Throws std::bad_alloc through the loaded runtime (std::__throw_bad_alloc); with none
// loaded there is no one to catch it, so the process ends as an uncaught bad_alloc would.
[[noreturn]] void throw_bad_alloc(size_t size) {
  auto raise = reinterpret_cast<void (*)()>(
      cxx_symbol("_ZSt17__throw_bad_allocv", "_ZNSt3__117__throw_bad_allocEv"));
  if (raise != nullptr) raise();
  log_printf("operator new(%zu): out of memory, and no C++ runtime is loaded to throw std::bad_alloc; aborting",
             size);
  abort();
}

// operator new after a failed attempt: retry through the new_handler, then throw (the
// standard's loop). Out of line so that the common case is a plain call to la_malloc.
__attribute__((noinline, cold)) void* new_retry(size_t size, size_t align, EntryFrame frame) {
  for (;;) {
    std::new_handler handler = current_new_handler();
    if (handler == nullptr) throw_bad_alloc(size);
    handler();
    void* p = align > 16 ? la_aligned(align, size, frame) : la_malloc(size, frame);
    if (p != nullptr) return p;
  }
}

// An operator new's block (`align` 0 for the forms without std::align_val_t): an aligned
// one from the bin of aligned blocks when it can (the alignment of std::align_val_t is a
// power of two), else the whole way.
LA_ALWAYS_INLINE void* new_block(size_t size, size_t align, EntryFrame frame) {
  if (align > 16) {
    void* p = aligned_cached(align, size, frame);
    return p != nullptr ? p : la_aligned(align, size, frame);
  }
  return malloc_fast(size, frame);
}

LA_ALWAYS_INLINE void* new_or_throw(size_t size, size_t align, EntryFrame frame) {
  void* p = new_block(size, align, frame);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return new_retry(size, align, frame);
}

// The nothrow forms of the runtime, by the mangled name of each: with a new_handler
// installed, a failed request is handed to the runtime's own nothrow operator new, which
// calls the throwing one (ours, the first in the lookup order) inside a try block, so
// what the handler throws is caught where a catch can be compiled.
enum NothrowForm { kNew, kNewArray, kNewAligned, kNewArrayAligned };
constexpr const char* kNothrowNames[] = {"_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
                                         "_ZnwmSt11align_val_tRKSt9nothrow_t",
                                         "_ZnamSt11align_val_tRKSt9nothrow_t"};

// Passed by reference, as the caller's std::nothrow would be (that object is libstdc++'s).
constexpr std::nothrow_t kNothrowTag{};

__attribute__((noinline, cold)) void* nothrow_retry(size_t size, size_t align, NothrowForm form) {
  if (current_new_handler() == nullptr) return nullptr;
  void* fn = cxx_symbol(kNothrowNames[form], nullptr);
  if (fn == nullptr) return nullptr;  // a handler without a runtime to call it from
  if (form == kNew || form == kNewArray)
    return reinterpret_cast<void* (*)(size_t, const std::nothrow_t&)>(fn)(size, kNothrowTag);
  return reinterpret_cast<void* (*)(size_t, std::align_val_t, const std::nothrow_t&)>(fn)(
      size, static_cast<std::align_val_t>(align), kNothrowTag);
}

LA_ALWAYS_INLINE void* new_nothrow(size_t size, size_t align, NothrowForm form, EntryFrame frame) noexcept {
  void* p = new_block(size, align, frame);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return nothrow_retry(size, align, form);
}

}  // namespace

LA_CXX_EXPORT void* operator new(size_t n) { return new_or_throw(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n) { return new_or_throw(n, 0, LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0, kNew, LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0, kNewArray, LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_or_throw(n, static_cast<size_t>(a), LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_or_throw(n, static_cast<size_t>(a), LA_FRAME); }
LA_CXX_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_nothrow(n, static_cast<size_t>(a), kNewAligned, LA_FRAME); }
LA_CXX_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return new_nothrow(n, static_cast<size_t>(a), kNewArrayAligned, LA_FRAME); }

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

// ---- dlclose ------------------------------------------------------------------------
// dlclose may unmap code whose recipes are cached, and a later dlopen may map other code
// at the same addresses, so every dlclose empties the cache. Interposed like malloc (same
// lookup order, see the top of this file); glibc's own internal unloads do not come through
// here, but they only unload what glibc loaded for itself and never reloads elsewhere.
LA_EXPORT int dlclose(void* handle) {
  using Fn = int (*)(void*);
  static std::atomic<Fn> real{nullptr};
  Fn fn = real.load(std::memory_order_acquire);
  if (fn == nullptr) {
    fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "dlclose"));
    if (fn == nullptr) return -1;  // no libc below us: nothing was ever dlopen'ed
    real.store(fn, std::memory_order_release);
  }
  int rc = fn(handle);
  leakalloc::frame_cache::flush();
  return rc;
}
