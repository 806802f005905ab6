// glibc's heap introspection and trimming (<malloc.h>), answered for leakalloc's heap.
//
// Under leakalloc, glibc's own arena holds next to nothing. Left to glibc, mallinfo2()
// would tell a monitoring agent that the heap is empty, and malloc_trim(0), which
// servers call to give freed memory back to the system, would give back nothing of
// what the program freed. So these four are leakalloc's:
//
//   mallinfo2 / mallinfo  arena    bytes mimalloc has committed (stats.resident)
//                         uordblks bytes in live blocks (stats.allocated)
//                         fordblks arena - uordblks - the live blocks' headers: committed
//                                  memory not in use, the thread caches included
//                         the other fields are 0 (leakalloc has no chunks, bins or
//                         separately mmapped blocks to count). mallinfo's int fields
//                         wrap above 2 GiB, as glibc's do.
//   malloc_trim(pad)      gives the calling thread's cached blocks back to mimalloc and
//                         asks mimalloc to free and decommit every page it can
//                         (mi_collect(true)); returns 1 if that lowered `arena`
//                         (mimalloc's committed bytes), else 0. `pad` is ignored: mimalloc keeps no top
//                         chunk to leave padding in.
//   malloc_stats()        prints leakalloc_stats_print's text to stderr.
//
// mallopt and malloc_info stay glibc's: their parameters and XML describe glibc's arenas.
#include <malloc.h>
#include <mimalloc.h>

#include "alloc/alloc.h"
#include "ctl/stats.h"


namespace leakalloc {
namespace {

struct HeapInfo {
  size_t arena, in_use, free;
};

HeapInfo heap_info() {
  Stats s;
  stats_collect(&s);
  HeapInfo h;
  h.arena = s.resident;
  h.in_use = s.allocated;
  size_t taken = s.allocated + s.header_bytes;
  h.free = s.resident > taken ? s.resident - taken : 0;
  return h;
}

}  // namespace
}  // namespace leakalloc

using namespace leakalloc;

LA_EXPORT struct mallinfo2 mallinfo2(void) noexcept {
  HeapInfo h = heap_info();
  struct mallinfo2 m = {};
  m.arena = h.arena;
  m.uordblks = h.in_use;
  m.fordblks = h.free;
  return m;
}

LA_EXPORT struct mallinfo mallinfo(void) noexcept {
  HeapInfo h = heap_info();
  struct mallinfo m = {};
  m.arena = static_cast<int>(h.arena);
  m.uordblks = static_cast<int>(h.in_use);
  m.fordblks = static_cast<int>(h.free);
  return m;
}

LA_EXPORT int malloc_trim(size_t /*pad*/) noexcept {
  size_t before = heap_info().arena;
  thread_cache_flush();
  mi_collect(true);
  return heap_info().arena < before ? 1 : 0;
}

LA_EXPORT void malloc_stats(void) noexcept { stats_print(nullptr, nullptr, nullptr); }
