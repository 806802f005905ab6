// Locks that work before libc is ready and across fork (with the owner's atfork
// handlers), and a guard against thread cancellation while one is held.
//
// Contract: nothing here calls malloc or takes a libc lock; safe before constructors
// have run. A RawLock must not be held across fork() without the atfork handlers of
// its owner (the lock ranks are listed in profile/profiler.h).
#pragma once

#include <pthread.h>

#include <atomic>

#include "base/compiler.h"

namespace leakalloc {

// A test-and-test-and-set lock. pthread mutexes are avoided on purpose: they are
// fine in a running program, but glibc's mutexes may not be initialised when the
// first malloc arrives from ld.so, and a spin lock needs no teardown at exit.
class RawLock {
 public:
  void lock() {
    for (;;) {
      if (!held_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      while (held_.load(std::memory_order_relaxed)) {
        if (++spins < 64) __builtin_ia32_pause();
        else { yield(); spins = 0; }
      }
    }
  }
  bool try_lock() { return !held_.exchange(true, std::memory_order_acquire); }
  void unlock() { held_.store(false, std::memory_order_release); }
  // After fork() the child owns whatever the parent's forking thread held.
  void reset_in_child() { held_.store(false, std::memory_order_relaxed); }

 private:
  static void yield();
  std::atomic<bool> held_{false};
};

class LockGuard {
 public:
  explicit LockGuard(RawLock& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  RawLock& l_;
};

// Holds off thread cancellation while a lock is held across cancellation points (the
// open and write calls of a dump, on the thread that asked for it). The library is built
// without exceptions (it links no C++ runtime), so a cancellation acted on inside would
// unwind past the LockGuard and leave the lock held for good. A cancellation requested
// meanwhile is acted on at the thread's next cancellation point after this.
class CancellationOff {
 public:
  CancellationOff() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_); }
  ~CancellationOff() { pthread_setcancelstate(old_, nullptr); }
  CancellationOff(const CancellationOff&) = delete;
  CancellationOff& operator=(const CancellationOff&) = delete;

 private:
  int old_ = PTHREAD_CANCEL_ENABLE;
};

}  // namespace leakalloc
