#include "profile/unwind.h"

#include <elf.h>
#include <link.h>
#include <pthread.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "profile/profiler.h"

extern "C" const ElfW(Ehdr) __ehdr_start;  // our own ELF header (set by the linker)

namespace leakalloc {
namespace unwind {

namespace {

constexpr int kMaxRanges = 4;
uintptr_t g_lo[kMaxRanges], g_hi[kMaxRanges];
int g_ranges = 0;
std::atomic<bool> g_primed{false};

void read_own_text() {
  const ElfW(Ehdr)* eh = &__ehdr_start;
  const char* base_addr = reinterpret_cast<const char*>(eh);
  const ElfW(Phdr)* ph = reinterpret_cast<const ElfW(Phdr)*>(base_addr + eh->e_phoff);
  // The load bias is the header's address minus the first PT_LOAD's p_vaddr (0 for a
  // normal shared object, whose first segment maps the ELF header at offset 0).
  uintptr_t first_vaddr = UINTPTR_MAX;
  for (int i = 0; i < eh->e_phnum; ++i)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) first_vaddr = ph[i].p_vaddr;
  if (first_vaddr == UINTPTR_MAX) first_vaddr = 0;
  uintptr_t bias = reinterpret_cast<uintptr_t>(eh) - first_vaddr;
  for (int i = 0; i < eh->e_phnum && g_ranges < kMaxRanges; ++i) {
    if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_X) == 0) continue;
    g_lo[g_ranges] = bias + ph[i].p_vaddr;
    g_hi[g_ranges] = bias + ph[i].p_vaddr + ph[i].p_memsz;
    ++g_ranges;
  }
}

inline bool is_ours(uintptr_t ip) {
  for (int i = 0; i < g_ranges; ++i)
    if (ip >= g_lo[i] && ip < g_hi[i]) return true;
  return false;
}

// Moves frames [first non-own frame, n) to the front; returns the new count.
size_t strip_own(uintptr_t* out, size_t n) {
  size_t skip = 0;
  while (skip < n && is_ours(out[skip])) ++skip;
  if (skip == 0) return n;
  for (size_t i = skip; i < n; ++i) out[i - skip] = out[i];
  return n - skip;
}

}  // namespace

void init() {
  if (g_primed.load(std::memory_order_acquire)) return;
  if (g_ranges == 0) read_own_text();
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  void* buf[64];
  unw_backtrace(buf, 64);
  g_primed.store(true, std::memory_order_release);
}

bool primed() { return g_primed.load(std::memory_order_acquire); }

// Our own frames (up to ~6 with the malloc entry, the sampler and this function) are
// captured and then removed, so ask libunwind for that many more.
constexpr size_t kOwnFramesSlack = 8;

size_t capture_libunwind(uintptr_t* out, size_t max) {
  if (g_ranges == 0) read_own_text();
  void* buf[256 + kOwnFramesSlack];
  size_t want = max + kOwnFramesSlack;
  if (want > sizeof buf / sizeof buf[0]) want = sizeof buf / sizeof buf[0];
  int n = unw_backtrace(buf, static_cast<int>(want));
  if (n <= 0) return 0;
  for (int i = 0; i < n; ++i) out[i] = reinterpret_cast<uintptr_t>(buf[i]);
  size_t kept = strip_own(out, static_cast<size_t>(n));
  return kept < max ? kept : max;
}

size_t capture_fp(ThreadState& t, uintptr_t* out, size_t max) {
  if (g_ranges == 0) read_own_text();
  if (t.stack_hi == 0) {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* addr = nullptr;
      size_t size = 0;
      if (pthread_attr_getstack(&attr, &addr, &size) == 0)
        t.stack_hi = reinterpret_cast<uintptr_t>(addr) + size;
      pthread_attr_destroy(&attr);
    }
    if (t.stack_hi == 0) return 0;
  }
  uintptr_t hi = t.stack_hi;
  uintptr_t fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  size_t n = 0;
  size_t skipping = 1;
  while (n < max && fp >= reinterpret_cast<uintptr_t>(&hi) && fp + 2 * sizeof(uintptr_t) <= hi &&
         (fp & (sizeof(uintptr_t) - 1)) == 0) {
    const uintptr_t* frame = reinterpret_cast<const uintptr_t*>(fp);
    uintptr_t ret = frame[1];
    if (ret == 0) break;
    if (skipping != 0 && is_ours(ret)) {
      // still inside leakalloc
    } else {
      skipping = 0;
      out[n++] = ret;
    }
    uintptr_t next = frame[0];
    if (next <= fp) break;  // the chain must grow towards the stack top
    fp = next;
  }
  return n;
}

}  // namespace unwind
}  // namespace leakalloc
