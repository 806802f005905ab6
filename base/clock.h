// Clocks: the coarse monotonic clock every block's birth comes from (with its
// per-thread shortcut through the kernel's [vvar] words), the birth encoding a block
// header stores, and the precise clock for dump timestamps.
//
// Contract: nothing here calls malloc, takes a libc lock, or touches a TLS variable
// that needs __tls_get_addr; safe before constructors have run and in fork handlers.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

#include "base/compiler.h"

namespace leakalloc {

LA_ALWAYS_INLINE uint64_t timespec_ns(const struct timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Monotonic nanoseconds from CLOCK_MONOTONIC_COARSE: resolution one kernel tick
// (1-4 ms), 64 bits of ns last 584 years. The birth clock's refills read it (births,
// sampled or not, read the cached words of birth_word_now below), so once
// use_vdso_clock() has run the call goes straight to the kernel's vDSO function,
// skipping glibc's clock_gettime wrapper (4.7 instead of 6.7 ns per call measured on
// the development VM); until then, and wherever the vDSO lacks it, to glibc's.
using ClockFn = int (*)(clockid_t, struct timespec*);
extern LA_HIDDEN std::atomic<ClockFn> g_coarse_clock;
void use_vdso_clock();  // allocation-free; from the first initialisation

LA_ALWAYS_INLINE uint64_t coarse_now_ns() {
  struct timespec ts;
  g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, &ts);
  return timespec_ns(ts);
}

// The birth time of a block, in ticks of 2^20 ns of the coarse clock, for the malloc fast
// path: usually without calling the vDSO at all. The kernel keeps the coarse time the
// vDSO returns in a page it maps into every process ([vvar]); it changes only when the
// kernel's timekeeping advances it, once a tick. Each thread keeps the two words it
// last saw there with the ticks they stand for, and while the words still hold those
// values no tick has happened, so the ticks are current: two loads and a compare
// instead of a call (the vDSO call was a quarter of the fast path's instructions, and
// on a workload bound by cache misses each extra instruction costs time: it shrinks
// how far the CPU can run ahead to the next miss).
//
// The words' address is not an ABI, so nothing is assumed about it: the first page of
// [vvar] is searched once for the value the vDSO just returned, and the spot is used
// only after it has been seen to hold a later value that the vDSO also returned. A
// refill (once a tick per thread) checks it again; any disagreement turns the shortcut
// off for good, and every birth then comes from the vDSO call, as before. Reading the
// two words while the kernel updates them can mix old and new, which never equals a
// thread's cached pair, so a torn read only costs a refill.
struct CoarseWords {
  uint64_t sec, nsec;  // as in the kernel's vDSO data (struct vdso_timestamp)
};
struct CoarseCache {
  uint64_t sec, nsec;  // per thread (ThreadState); zero-filled never matches
  uint64_t birth;      // the birth they stand for, as it sits in a header's word1
};
extern LA_HIDDEN std::atomic<const CoarseWords*> g_coarse_words;
// Out of line: read the clock, refresh `cache` where they can, and return the clock as
// a header's birth bits (alloc/header.h birth_word_of) / in ns.
uint64_t birth_word_refill(CoarseCache& cache);
// Called by birth_word_refill(), so on a thread's first allocation after each tick of the
// coarse clock (1-4 ms), whatever the entry point: the profiler sets it (once, at
// initialisation) to look at what the dump thread asks for (profile/dump.h).
extern LA_HIDDEN std::atomic<void (*)()> g_on_tick;
uint64_t coarse_refill_ns(CoarseCache& cache);
// Whether cache.birth is the current birth (no tick since the thread last looked).
LA_ALWAYS_INLINE bool birth_ticks_current(const CoarseCache& cache) {
  const CoarseWords* w = g_coarse_words.load(std::memory_order_relaxed);
  uint64_t s = __atomic_load_n(&w->sec, __ATOMIC_RELAXED);
  uint64_t n = __atomic_load_n(&w->nsec, __ATOMIC_RELAXED);
  return ((s ^ cache.sec) | (n ^ cache.nsec)) == 0;
}
// The birth bits of a header's word1 for a block born now. They are kept ready to be
// or'ed in: the fast path then spends no shift on them.
LA_ALWAYS_INLINE uint64_t birth_word_now(CoarseCache& cache) {
  if (LA_LIKELY(birth_ticks_current(cache))) return cache.birth;
  return birth_word_refill(cache);
}
// coarse_now_ns() for a sampled block's live record, through the same per-thread cache:
// while no tick has happened the cached words are the clock's value, so a sample costs
// no vDSO call either (at sample:0 that is every allocation).
LA_ALWAYS_INLINE uint64_t coarse_now_ns_cached(CoarseCache& cache) {
  if (LA_LIKELY(birth_ticks_current(cache))) return cache.sec * 1000000000ull + cache.nsec;
  return coarse_refill_ns(cache);
}
// For tests: whether births come from the [vvar] words (true) or from the vDSO call.
bool birth_clock_reads_vvar();

uint64_t precise_now_ns();   // CLOCK_MONOTONIC, for dump timestamps
uint64_t process_start_ns(); // coarse time of the first allocator call

// The birth encoding of a block header (alloc/header.h): bits 63..24 of its word1 hold
// the birth in ticks of 2^20 ns (1.05 ms) of the coarse clock; 40 bits last 36 years.
constexpr int kBirthShift = 20;  // ns per tick = 2^20

LA_ALWAYS_INLINE uint64_t birth_ticks_of(uint64_t now_ns) {
  return (now_ns >> kBirthShift) & ((uint64_t{1} << 40) - 1);
}

// The birth bits of word1 (its check bits zero) for a block born at now_ns.
LA_ALWAYS_INLINE uint64_t birth_word_of(uint64_t now_ns) { return birth_ticks_of(now_ns) << 24; }

}  // namespace leakalloc
