// Start-up, exit and fork, in one place: the library's constructor and destructor and
// the pthread_atfork handlers, each calling the modules' own steps in a fixed order.
//
// Start-up. The first malloc of the process, possibly before any constructor and with
// `environ` not yet set, runs prof::ensure_init() on the allocation path (the header
// secret, the clock, the options, the thread registry and live set): that part is lazy
// and lives in the profiler. What needs a running libc comes here, in the constructor,
// which runs before the program's own constructors (priority 101: libleakalloc.so is
// initialised before the objects that depend on it): final options and the main
// thread, the thread cache, the unwinder and the stack table, the fork handlers; only
// then does sampling start, and last the dump machinery (its thread and triggers).
// Allocations made before that (ld.so and libc start-up) are served and counted, but
// not sampled.
//
// Exit. The destructor runs in _dl_fini, after the program's atexit handlers, static
// destructors and the destructors of every library loaded after us: the latest point at
// which a final dump still sees the program's view of its heap, with whatever cleanup it
// does done.
//
// Fork. The prepare handler takes every lock leakalloc owns in the rank order that
// profile/profiler.h lists (after closing the unwinder's fork gate, which waits for
// stack captures in flight, since no lock is held while unwinding); the parent
// releases them in reverse, the child resets them and the per-process state (its pid,
// dump numbering and dump thread are its own; a child that `leakalloc run` does not
// trace switches its profiling and dumps off). The stats snapshot lock (a leaf) has
// its own handlers in ctl/stats.cpp.
#include <pthread.h>
#include <stdio.h>

#include "alloc/alloc.h"
#include "config/options.h"
#include "profile/dump.h"
#include "profile/live_set.h"
#include "profile/profiler.h"
#include "profile/reach_plan.h"
#include "profile/sampler.h"
#include "profile/stack_table.h"
#include "profile/threads.h"
#include "profile/unwind.h"

namespace leakalloc {
namespace {

void fork_prepare() {
  unwind::close_fork_gate();
  dump::fork_prepare();     // rank 1
  threads::fork_prepare();  // rank 2
  stacks::fork_prepare();   // rank 3
  live::fork_prepare();     // ranks 4, 5
}

void fork_parent() {
  live::fork_parent();
  stacks::fork_parent();
  threads::fork_parent();
  dump::fork_parent();
  unwind::open_fork_gate(/*child=*/false);
}

void fork_child() {
  live::fork_child();
  stacks::fork_child();
  threads::fork_child(thread_gone_in_child);
  dump::fork_child();
  unwind::open_fork_gate(/*child=*/true);
  // `leakalloc run` traces the process it started, not the children it forks (unless
  // --follow): this child keeps the allocator and drops the profiler's output.
  if (run_pid_elsewhere()) {
    prof::set_active(false);
    dump::untrace_child();
  }
}

__attribute__((constructor(101))) void leakalloc_constructor() {
  prof::ensure_init();
  prof::start_options();
  thread_prepare();
  prof::start_tables(entry_points_lo());
  // Too little room under `ulimit -v` for the profiler beside mimalloc's 32 MiB segments:
  // glibc's malloc serves the program, as it would without leakalloc (issue 24).
  if (prof::short_of_address_space())
    serve_from_glibc("too little address space under its limit (ulimit -v?) for mimalloc and the profiler");
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  if (opt(kOpt_verbose) != 0) {
    ReentrancyGuard g;
    options_print();
  }
  prof::start_sampling();
  reach::set_child(reach_child);
  ReentrancyGuard g;
  dump::start();
}

__attribute__((destructor)) void leakalloc_destructor() {
  // glibc allocates the standard streams' buffers on first use and frees them only in
  // __libc_freeres, which valgrind calls after everything else; calling it here, with
  // other libraries' destructors and stdio's own exit flush still to run, could break
  // the exit of a correct program. Those three buffers are not the program's leaks, so
  // leak_error leaves them out by identity (their headers name their live records).
  uint32_t stdio_records[3] = {sampled_record_of(stdin->_IO_buf_base),
                               sampled_record_of(stdout->_IO_buf_base),
                               sampled_record_of(stderr->_IO_buf_base)};
  dump::at_exit(stdio_records, 3);
}

}  // namespace
}  // namespace leakalloc
