// The reachability check: which live blocks the program can no longer reach, while it
// keeps running (reach:true, leak.check, `leakalloc dump --lost PID`).
//
// What it promises. check_locked() stops every other thread of the process for a short
// pause, forks a child that holds a copy-on-write copy of the whole process, lets the
// threads go, and has the child mark, LeakSanitizer-style, every live leakalloc block
// that a root reaches through a chain of pointers. The child hands back, for every live
// sampled block (by live-record id and generation), whether it was reachable, lost
// directly (no other lost block points to it; of a cycle of lost blocks with nothing
// pointing in, one is named direct, as valgrind names a clique's leader) or lost
// indirectly (only lost blocks point to it). state_of() answers from that until the next
// check; the dump writers (profile/dump.cpp) turn it into the lost dump and the `reach`
// label. A block freed after the check is no longer in any dump; a record reused after it
// has another generation and is "not checked".
//
// Stopping the threads: a signal, not ptrace. Each thread gets kStopSignal (a real-time
// signal, SA_RESTART) through tgkill; its handler saves the interrupted registers and
// stack pointer in the thread's slot, says so, and waits on a futex word until the
// checker has forked. ptrace (LeakSanitizer's StopTheWorld, Android's libmemunreachable)
// would restart every interrupted system call transparently, but it needs a tracer in
// another thread group, is refused under Yama's ptrace_scope 2-3, in containers whose
// seccomp policy forbids it and whenever a debugger or strace is attached already, and
// LSan fails outright there; a signal works wherever the process runs. What the signal
// does to the program's system calls (signal(7)): read, write, wait and
// pthread_cond_wait/futex waits are restarted (SA_RESTART) or retried by glibc;
// epoll_wait, poll, select, nanosleep, clock_nanosleep, usleep, sleep, sigtimedwait,
// semop with a timeout and reads with SO_RCVTIMEO are never restarted: they return
// EINTR once (nanosleep with the time left), as they do for any signal with a handler.
// That is the documented cost; a program must already cope with it for SIGCHLD,
// SIGWINCH or a profiler's SIGPROF.
// - A thread that blocks kStopSignal (or never gets to run) does not answer. The checker
//   waits at most kStopWaitMs (after kStopPeekMs it reads the thread's SigBlk and gives
//   up at once on a thread that blocks the signal), then goes on without it: such a
//   thread's registers are unknown, its whole stack mapping is read as a root (no dead
//   frames are left out), and the check's note says how many did not answer. A thread
//   that keeps running while the child is forked can also move a pointer between two
//   places the child reads at different moments; the note is the warning.
// - leakalloc's own dump thread blocks every signal and holds no program pointer: it is
//   not stopped.
// - Threads created while the others stop are found by enumerating /proc/self/task again
//   until no new one appears.
//
// Forking: a raw clone() with no exit signal, from the checking thread, while the others
// wait in the handler. Not fork(): glibc's fork runs the atfork handlers and takes
// stdio's list lock, and a stopped thread may hold that, one of leakalloc's locks, a
// libunwind or loader lock, or be inside mimalloc. So the child calls nothing that takes
// a lock: only system calls (open/read of /proc/self/maps, mmap, write of the results),
// lock-free reads of leakalloc's tables (live records, base/os.h os_regions),
// mimalloc's mi_is_in_heap_region (a lock-free bitmap read in 2.0.9), and header
// checks. It never allocates through malloc, runs no atexit handler and leaves through
// exit_group. No exit signal means the program's SIGCHLD handler and its waitpid(-1)
// never see the child; the checker reaps it with __WALL. The child raises its own
// oom_score_adj to 1000 so that the OOM killer takes it, not the program; the checker
// then says so and the next check works. Results come back in a MAP_SHARED mapping made
// before the stop.
//
// Finding every live block, sampled or not: by their headers, not by mimalloc's
// internals. mimalloc 2.0.9's mi_heap_visit_blocks walks only the calling thread's own
// heap, and the other threads' heaps and abandoned segments (threads that exited) have
// no visitor; reading its segment and page structures would tie leakalloc to one
// version's private layout. Every leakalloc block has a 16-byte header whose 24-bit
// keyed check covers its address and tag (alloc/header.h); a freed block's word1 holds
// the freed mark (so blocks in the thread caches and mimalloc's free lists fail the
// check). The child reads every 16-byte slot of mimalloc's memory (the 64 KiB slices of
// the readable mappings that mi_is_in_heap_region owns) and takes a slot as a block when
// the check passes and the tag is well formed: an unsampled tag has no stray bits and a
// size that ends inside the same heap run; a sampled tag names a live record of the same
// generation and size. Stale or random data passes the check at 2^-24 per slot, and the
// tag rules reject nearly all of those "phantom" headers. The ones left are unsampled
// (a sampled one would need a live record to agree), so they never appear in a result.
// They cannot hide a real block either: the scan never skips past a block it found,
// blocks may nest, and a pointer marks every block whose extent holds it. A phantom can
// only add pointers (a chain through the data it covers), so it can make the check
// report less, never more. A missed block would break chains and invent leaks, so the
// scan checks itself: every live sampled record must have been found (a thread stopped
// inside malloc or free may hold one or two in flight); if more are missing the check
// fails with a message and gives no result.
//
// Roots (valgrind's rule, wider than LeakSanitizer's): every readable, writable, private
// mapping that is not mimalloc's memory, minus: leakalloc's own mappings (os_regions)
// and its and mimalloc's writable ELF segments, and for every stopped thread the dead
// part of its stack below its saved stack pointer (less the 128-byte red zone); plus the
// stopped threads' saved general and SSE registers, and the checking thread's stack from
// its own stack pointer (its registers are spilled there first). That covers .data and
// .bss of every object (dlopened ones too) without the loader lock, every thread's stack
// above its stack pointer, each thread's static TLS and TCB (at the top of its stack
// mapping, or for the main thread in ld.so's memory), the DTV and dynamic TLS (heap
// blocks reached from the TCB), and memory the program maps itself (a custom arena that
// keeps pointers to malloc'ed blocks keeps them reachable). Not roots: mimalloc's
// memory, shared mappings and device mappings (reading those can fault or have effects);
// pointers held only by the kernel (epoll data, io_uring) are not seen, as with every
// such checker.
//
// Conservative marking: a word anywhere in a root or a reachable block's requested bytes
// (8-byte aligned) whose value lies in a block's [start, start + size] keeps that block
// reachable: pointers to the start, into the interior, one past the end, and with low
// tag bits set.
//
// Locks: the caller holds the dump lock (rank 1), so checks and dumps queue behind one
// another, and a ReentrancyGuard. Between the stop and the release the checking thread
// takes no lock and allocates nothing (a stopped thread may hold the lock or be inside
// mimalloc). Memory: the child needs 24 bytes per live block (sampled or not) plus 4 per
// page of heap, all of it its own (mapped in the child, gone when it exits); the parent
// keeps 2 bytes per live-record slot for the results.
#pragma once

#include <cstdint>

#include "profile/profiler.h"
#include "profile/snapshot.h"

namespace leakalloc {
namespace reach {

enum State : uint8_t { kNotChecked = 0, kReachable = 1, kDirect = 2, kIndirect = 3 };

struct Summary {
  int err;                   // 0, or why the last check gave no result
  uint32_t threads;          // threads stopped (answered)
  uint32_t unanswered;       // threads that did not answer the stop
  uint64_t pause_ns;         // first stop signal sent to last thread released
  uint64_t fork_ns;          // the clone() call alone
  uint64_t child_ns;         // the child's work, start to results written
  uint64_t child_cpu_ns;     // its CPU time (on a busy machine far less than child_ns)
  uint64_t maps_ns, scan_ns, mark_ns;  // the child's steps ended at (from its start):
                             // maps read and heap found, blocks found, marked
  uint64_t heap_bytes;       // mimalloc memory the child read for headers
  uint64_t blocks;           // live blocks the child found, sampled or not
  uint64_t bytes;            // their requested bytes
  uint64_t lost_blocks;      // of those, unreachable (sampled or not, any age)
  uint64_t lost_bytes;
  uint64_t sampled_missing;  // live sampled records whose block was not found
  uint64_t root_bytes;       // bytes of roots read
  uint64_t check_seq;        // checks run so far
};

// Runs a check now. The caller holds the dump lock and a ReentrancyGuard. Returns 0 or
// an errno value; every failure has printed one "leakalloc:" line.
int check_locked();
// The last check's verdict on a live sampled block (its record and generation).
State state_of(uint32_t record, uint32_t generation);
// Whether the last check found the block lost (direct or indirect).
inline bool lost(const prof::LiveBlock& b) {
  State s = state_of(b.record, b.generation);
  return s == kDirect || s == kIndirect;
}
const Summary& last();
// Fills every block's reach from the last check (s.reach_checked = true), by record and
// generation: a block allocated since is kReachUnknown.
void fill(snap::Snapshot& s);
// A line for dump headers about what the last check could not see ("" when nothing).
const char* note();


}  // namespace reach
}  // namespace leakalloc
