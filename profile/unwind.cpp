#include "profile/unwind.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "profile/profiler.h"
#include "profile/threads.h"

extern "C" const ElfW(Ehdr) __ehdr_start;  // our own ELF header (set by the linker)
extern "C" void* __libc_stack_end;           // ld.so: the stack pointer at process entry

namespace leakalloc {
namespace unwind {

namespace {

constexpr int kMaxRanges = 4;
uintptr_t g_lo[kMaxRanges], g_hi[kMaxRanges];
int g_ranges = 0;
std::atomic<bool> g_primed{false};
std::atomic<bool> g_fork_gate{false};
std::atomic<uint32_t> g_exited_unwinding{0};

void read_own_text(uintptr_t entries_lo) {
  const ElfW(Ehdr)* eh = &__ehdr_start;
  const char* base_addr = reinterpret_cast<const char*>(eh);
  const ElfW(Phdr)* ph = reinterpret_cast<const ElfW(Phdr)*>(base_addr + eh->e_phoff);
  uintptr_t bias = elf_load_bias(eh);
  // Linked into the executable itself (the unit tests link the allocator's objects),
  // our ELF is also the caller's: taking all of it would strip the allocating function
  // and its callers too. The linker lays the objects out in command-line order, the
  // caller's own objects (and main, in .text.startup) before ours, and our first
  // object (alloc/alloc.cpp) holds every la_* entry, so own code starts at the
  // lowest of them; what follows ours (static libraries) is never a leading frame.
  uintptr_t own_lo = 0;
  const ElfW(Phdr)* main_phdr = reinterpret_cast<const ElfW(Phdr)*>(getauxval(AT_PHDR));
  if (main_phdr == ph) own_lo = entries_lo;
  for (int i = 0; i < eh->e_phnum && g_ranges < kMaxRanges; ++i) {
    if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_X) == 0) continue;
    uintptr_t lo = bias + ph[i].p_vaddr, hi = bias + ph[i].p_vaddr + ph[i].p_memsz;
    if (own_lo != 0) {
      if (own_lo < lo || own_lo >= hi) continue;
      lo = own_lo;
    }
    g_lo[g_ranges] = lo;
    g_hi[g_ranges] = hi;
    ++g_ranges;
  }
}

inline bool is_ours(uintptr_t ip) {
  for (int i = 0; i < g_ranges; ++i)
    if (ip >= g_lo[i] && ip < g_hi[i]) return true;
  return false;
}

// Moves the caller's frames to the front; returns the new count. The cut is at the
// return address in the malloc/new entry point's frame (caller_ra_of); if the
// unwinder did not see it, every leading frame inside our own text is dropped instead.
size_t strip_own(uintptr_t* out, size_t n, uintptr_t caller_ra) {
  size_t skip = n;
  if (caller_ra != 0) {
    for (size_t i = 0; i < n; ++i)
      if (out[i] == caller_ra) { skip = i; break; }
  }
  if (skip == n) {
    skip = 0;
    while (skip < n && is_ours(out[skip])) ++skip;
  }
  if (skip == 0) return n;
  for (size_t i = skip; i < n; ++i) out[i - skip] = out[i];
  return n - skip;
}

}  // namespace

void init(uintptr_t entries_lo) {
  if (g_primed.load(std::memory_order_acquire)) return;
  if (g_ranges == 0) read_own_text(entries_lo);
  frame_cache::init();
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  // One step of a cursor does libunwind's one-time setup (its locks, memory pools and
  // memory validation, the first dl_iterate_phdr). Not unw_backtrace: its first call on a
  // thread also fills a 256 KiB frame cache for that thread, which a process whose stacks
  // the recipe cache walks never uses, and which was a tenth of a process's start.
  // A thread that does fall back to unw_backtrace fills its own then, as every other
  // thread than this one always has.
  unw_context_t context;
  unw_cursor_t cursor;
  if (unw_getcontext(&context) == 0 && unw_init_local(&cursor, &context) == 0) unw_step(&cursor);
  g_primed.store(true, std::memory_order_release);
}

bool primed() { return g_primed.load(std::memory_order_acquire); }

size_t keep_caller_frames(uintptr_t* out, size_t n, uintptr_t caller_ra, size_t max) {
  // Before init() (nothing samples before the constructor has run it): as a library.
  if (g_ranges == 0) read_own_text(0);
  size_t kept = strip_own(out, n, caller_ra);
  return kept < max ? kept : max;
}

namespace {

// The mapping of /proc/self/maps that holds `sp`: [lo, hi). Raw reads into a stack
// buffer (scan_self_maps): no stdio, no malloc, no lock of glibc's.
bool mapping_of(uintptr_t sp, uintptr_t* lo, uintptr_t* hi) {
  struct Want {
    uintptr_t sp, lo, hi;
  } want{sp, 0, 0};
  scan_self_maps([](const MapsLine& m, void* ctx) {
    Want& w = *static_cast<Want*>(ctx);
    if (w.sp < m.start || w.sp >= m.limit) return false;
    w.lo = m.start;
    w.hi = m.limit;
    return true;
  }, &want);
  *lo = want.lo;
  *hi = want.hi;
  return want.hi != 0;
}

}  // namespace

// Not pthread_getattr_np (issue 24): glibc holds the thread's own lock while it
// allocates inside pthread_getattr_np (the /proc/self/maps FILE of the main thread, the
// cpuset buffer of every thread), so a sampled allocation made there that asked it
// again waited for itself forever (ruby's Thread.new, which calls it first thing on the
// new thread, hung in 6 runs of 10). Nothing here calls into glibc beyond system calls:
//  - a thread that glibc created keeps its descriptor (the thread pointer) at the top of
//    its stack block, above the static TLS and every frame, for stacks glibc mapped and
//    for stacks the program supplied (allocate_stack in nptl, TLS_TCB_AT_TP; with the
//    TCB below the TLS, TLS_DTV_AT_TP, the descriptor is still above the frames). The
//    stack's lowest address is not known: a scan of a stopped thread starts at its sp.
//  - the main thread's stack is the kernel's: the mapping that holds the current stack
//    pointer in /proc/self/maps; without /proc, ld.so's __libc_stack_end (the stack
//    pointer at process entry, above every frame).
StackBounds find_stack_bounds() {
  uintptr_t sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  uintptr_t tp = reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
  StackBounds b{0, 0};
  int saved = errno;  // inside a malloc that succeeds
  bool main_thread = syscall(SYS_gettid) == getpid();
  if (!main_thread && sp < tp) {
    b.hi = tp;
  } else if (mapping_of(sp, &b.lo, &b.hi)) {
    // A forked child's only thread may run on a thread stack glibc mapped: the mapping's
    // end is its block's end, above the descriptor; for the main thread, above argv.
  } else {
    uintptr_t entry_sp = reinterpret_cast<uintptr_t>(__libc_stack_end);
    if (main_thread && sp < entry_sp) b.hi = entry_sp;
  }
  errno = saved;
  return b;
}

uintptr_t find_stack_top(ThreadProfile& t) {
  t.stack_hi = find_stack_bounds().hi;
  return t.stack_hi;
}

size_t capture_fp(ThreadProfile& t, EntryFrame frame, uintptr_t* out, size_t max) {
  uintptr_t hi = stack_top(t);
  if (hi == 0) return 0;
  uintptr_t fp = frame;
  size_t n = 0;
  // Each frame is [saved fp][return address]; the chain must stay inside this thread's
  // stack, aligned, and grow towards its top, so garbage in %rbp (code built without
  // frame pointers) ends the walk instead of faulting.
  while (n < max && fp >= reinterpret_cast<uintptr_t>(&hi) && fp + 2 * sizeof(uintptr_t) <= hi &&
         (fp & (sizeof(uintptr_t) - 1)) == 0) {
    const uintptr_t* f = reinterpret_cast<const uintptr_t*>(fp);
    uintptr_t ret = f[1];
    if (ret == 0) break;
    out[n++] = ret;
    uintptr_t next = f[0];
    if (next <= fp) break;
    fp = next;
  }
  return n;
}

void leave_libunwind(ThreadProfile& t) {
  if (LA_LIKELY(t.phase == kThreadLive)) t.unwinding.store(0, std::memory_order_release);
  else g_exited_unwinding.fetch_sub(1, std::memory_order_release);
}

void enter_libunwind(ThreadProfile& t) {
  for (;;) {
    if (LA_LIKELY(t.phase == kThreadLive)) t.unwinding.store(1, std::memory_order_seq_cst);
    else g_exited_unwinding.fetch_add(1, std::memory_order_seq_cst);
    if (LA_LIKELY(!g_fork_gate.load(std::memory_order_seq_cst))) return;
    leave_libunwind(t);
    while (g_fork_gate.load(std::memory_order_acquire)) sched_yield();
  }
}

void close_fork_gate() {
  g_fork_gate.store(true, std::memory_order_seq_cst);
  // Bounded: a fork from a signal handler that interrupted a capture on this very
  // thread would otherwise wait for itself.
  for (int i = 0; i < 200000; ++i) {
    if (g_exited_unwinding.load(std::memory_order_seq_cst) == 0 && !threads::any_unwinding()) return;
    sched_yield();
  }
}

void open_fork_gate(bool in_child) {
  if (in_child) g_exited_unwinding.store(0, std::memory_order_relaxed);  // the other threads are gone
  g_fork_gate.store(false, std::memory_order_release);
}

}  // namespace unwind
}  // namespace leakalloc
