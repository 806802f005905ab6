#include "base/clock.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <sys/auxv.h>

#include "base/format.h"
#include "base/maps.h"

namespace leakalloc {

namespace {
std::atomic<uint64_t> g_start_ns{0};
}  // namespace

std::atomic<ClockFn> g_coarse_clock{&clock_gettime};
std::atomic<void (*)()> g_on_tick{nullptr};

namespace {

// The vDSO's own clock_gettime, found in the image the kernel maps into every process
// (AT_SYSINFO_EHDR) through its section headers. Written by hand because dlsym() on
// the vDSO needs dlopen(), which allocates and takes the loader lock, and this runs
// from the first malloc. nullptr when anything is not as expected.
ClockFn find_vdso_clock() {
  uintptr_t base = getauxval(AT_SYSINFO_EHDR);
  if (base == 0) return nullptr;
  const auto* eh = reinterpret_cast<const ElfW(Ehdr)*>(base);
  if (__builtin_memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 ||
      eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_phentsize != sizeof(ElfW(Phdr)))
    return nullptr;
  uintptr_t bias = elf_load_bias(eh);
  const auto* sh = reinterpret_cast<const ElfW(Shdr)*>(base + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;
    const auto* sym = reinterpret_cast<const ElfW(Sym)*>(base + sh[i].sh_offset);
    const char* names = reinterpret_cast<const char*>(base + sh[sh[i].sh_link].sh_offset);
    size_t count = sh[i].sh_size / sizeof(ElfW(Sym));
    for (size_t k = 0; k < count; ++k) {
      if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_shndx == SHN_UNDEF) continue;
      if (cstr_eq(names + sym[k].st_name, "__vdso_clock_gettime"))
        return reinterpret_cast<ClockFn>(bias + sym[k].st_value);
    }
  }
  return nullptr;
}

}  // namespace

// ---- The birth clock's shortcut (base/clock.h birth_word_now) ----------------------
//
// g_coarse_words is the state: kSearching (a candidate may be waiting for confirmation),
// the confirmed words, or kOff. Both sentinels hold a value the coarse clock never
// returns, so a thread's cache never matches them and every birth goes to the refill.
// Moves: kSearching -> words (CAS, once confirmed), anything -> kOff (sticky: the CAS
// expects kSearching, so nothing leaves kOff).
const CoarseWords kSearching = {~uint64_t{0}, ~uint64_t{0}};
const CoarseWords kOff = {~uint64_t{0}, ~uint64_t{1}};
std::atomic<const CoarseWords*> g_coarse_words{&kSearching};

namespace {

std::atomic<const CoarseWords*> g_candidate{nullptr};  // found by the search, not confirmed
CoarseWords g_candidate_first;                        // what it held when it was found

// The first address of the mapping /proc/self/maps names [vvar] (the kernel's data page
// for the vDSO; the clock-source pages, which may fault when read, come after it or in
// a mapping of their own), or 0 if there is none or it is not readable. This runs in
// the first malloc, where nothing may allocate (scan_self_maps does not).
uintptr_t find_vvar() {
  uintptr_t found = 0;
  scan_self_maps([](const MapsLine& m, void* ctx) {
    const char kName[] = "[vvar]";
    if (m.path_len != sizeof kName - 1 || __builtin_memcmp(m.path, kName, m.path_len) != 0) return false;
    *static_cast<uintptr_t*>(ctx) = m.readable ? m.start : 0;
    return true;
  }, &found);
  return found;
}

enum Match { kSame, kDifferent, kMoving };

// Reads `w` around one vDSO call: kSame if both reads equal what the call returned,
// kDifferent if both reads agree with each other but not with the call, kMoving if a
// tick came in between (a few tries first). `ts` is the call's answer in every case.
Match compare_with_clock(const CoarseWords* w, struct timespec* ts) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t s1 = __atomic_load_n(&w->sec, __ATOMIC_RELAXED), n1 = __atomic_load_n(&w->nsec, __ATOMIC_RELAXED);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, ts);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    uint64_t s2 = __atomic_load_n(&w->sec, __ATOMIC_RELAXED), n2 = __atomic_load_n(&w->nsec, __ATOMIC_RELAXED);
    if (s1 != s2 || n1 != n2) continue;
    bool same = s1 == static_cast<uint64_t>(ts->tv_sec) && n1 == static_cast<uint64_t>(ts->tv_nsec);
    return same ? kSame : kDifferent;
  }
  return kMoving;
}

uint64_t birth_word_of_ts(const struct timespec& ts) { return birth_word_of(timespec_ns(ts)); }

// Looks for the words in the first page of [vvar]: the one 8-byte-aligned pair equal to
// what the vDSO returns, read while no tick passes. Leaves it as the candidate.
void search_coarse_words() {
  uintptr_t page = find_vvar();
  if (page == 0) return;
  constexpr size_t kPairs = 4096 / sizeof(uint64_t) - 1;  // overlapping pairs in the page
  for (int attempt = 0; attempt < 4; ++attempt) {
    struct timespec a, b;
    g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, &a);
    const uint64_t* p = reinterpret_cast<const uint64_t*>(page);
    const CoarseWords* hit = nullptr;
    int hits = 0;
    for (size_t i = 0; i < kPairs; ++i) {
      if (__atomic_load_n(&p[i], __ATOMIC_RELAXED) == static_cast<uint64_t>(a.tv_sec) &&
          __atomic_load_n(&p[i + 1], __ATOMIC_RELAXED) == static_cast<uint64_t>(a.tv_nsec)) {
        hit = reinterpret_cast<const CoarseWords*>(p + i);
        ++hits;
      }
    }
    g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, &b);
    if (a.tv_sec != b.tv_sec || a.tv_nsec != b.tv_nsec) continue;  // a tick during the search
    if (hits != 1) return;  // absent (a time namespace, another layout) or ambiguous
    g_candidate_first = CoarseWords{static_cast<uint64_t>(a.tv_sec), static_cast<uint64_t>(a.tv_nsec)};
    g_candidate.store(hit, std::memory_order_release);
    return;
  }
}

// The search reads /proc/self/maps, which took a tenth of the start of a short program
// (the commands a script runs, each preloading the library), so it waits for the
// process's kSearchAfterRefills-th refill: one that lives past that many clock ticks
// (8-32 ms) uses the shortcut from then on, and one that ends sooner never searches.
constexpr uint32_t kSearchAfterRefills = 8;
std::atomic<uint32_t> g_refills_until_search{0};  // 0: no search to come

void count_down_to_search() {
  uint32_t n = g_refills_until_search.load(std::memory_order_relaxed);
  while (n != 0 && !g_refills_until_search.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
  }
  if (n != 1) return;
  int saved_errno = errno;
  search_coarse_words();
  errno = saved_errno;
}

// Reads the coarse clock into *ts; refreshes `cache` from it while the [vvar] words are
// in use and agree with it, and moves the shortcut on (confirm a candidate, or turn it
// off for good).
void refill(CoarseCache& cache, struct timespec* ts) {
  const CoarseWords* w = g_coarse_words.load(std::memory_order_relaxed);
  if (w != &kSearching && w != &kOff) {
    Match m = compare_with_clock(w, ts);
    if (LA_LIKELY(m == kSame)) {
      cache.sec = static_cast<uint64_t>(ts->tv_sec);
      cache.nsec = static_cast<uint64_t>(ts->tv_nsec);
      cache.birth = birth_word_of_ts(*ts);
    } else if (m == kDifferent) {
      g_coarse_words.store(&kOff, std::memory_order_relaxed);
    }
    return;
  }
  const CoarseWords* cand = w == &kSearching ? g_candidate.load(std::memory_order_acquire) : nullptr;
  if (cand == nullptr) {
    g_coarse_clock.load(std::memory_order_relaxed)(CLOCK_MONOTONIC_COARSE, ts);
    if (w == &kSearching) count_down_to_search();
    return;
  }
  Match m = compare_with_clock(cand, ts);
  if (m == kSame && (g_candidate_first.sec != static_cast<uint64_t>(ts->tv_sec) ||
                     g_candidate_first.nsec != static_cast<uint64_t>(ts->tv_nsec))) {
    // It has followed the clock from one tick to another: use it.
    const CoarseWords* expected = &kSearching;
    g_coarse_words.compare_exchange_strong(expected, cand, std::memory_order_relaxed);
  } else if (m == kDifferent) {
    g_coarse_words.store(&kOff, std::memory_order_relaxed);
  }
}
}  // namespace

uint64_t birth_word_refill(CoarseCache& cache) {
  struct timespec ts;
  refill(cache, &ts);
  if (void (*hook)() = g_on_tick.load(std::memory_order_relaxed)) hook();
  return birth_word_of_ts(ts);
}

uint64_t coarse_refill_ns(CoarseCache& cache) {
  struct timespec ts;
  refill(cache, &ts);
  return timespec_ns(ts);
}

bool birth_clock_reads_vvar() {
  const CoarseWords* w = g_coarse_words.load(std::memory_order_relaxed);
  return w != &kSearching && w != &kOff;
}

void use_vdso_clock() {
  ClockFn f = find_vdso_clock();
  if (f == nullptr) return;
  // Trust it only if it answers, and close to what glibc says.
  struct timespec a, b;
  if (f(CLOCK_MONOTONIC_COARSE, &b) != 0 || clock_gettime(CLOCK_MONOTONIC_COARSE, &a) != 0) return;
  int64_t diff_ns = (static_cast<int64_t>(a.tv_sec) - b.tv_sec) * 1000000000 + (a.tv_nsec - b.tv_nsec);
  if (diff_ns < 0 || diff_ns > 1000000000) return;
  g_coarse_clock.store(f, std::memory_order_relaxed);
  // The shortcut rests on the vDSO's answer, so it is looked for only when the vDSO is
  // the clock (not under valgrind, for instance, which has none); later (refill).
  g_refills_until_search.store(kSearchAfterRefills, std::memory_order_relaxed);
}

uint64_t precise_now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return timespec_ns(ts);
}

uint64_t process_start_ns() {
  uint64_t v = g_start_ns.load(std::memory_order_relaxed);
  if (v == 0) {
    uint64_t now = coarse_now_ns();
    uint64_t expected = 0;
    g_start_ns.compare_exchange_strong(expected, now, std::memory_order_relaxed);
    v = g_start_ns.load(std::memory_order_relaxed);
  }
  return v;
}

}  // namespace leakalloc
