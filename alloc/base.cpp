#include "alloc/base.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc/header.h"

namespace leakalloc {

namespace {
std::atomic<uint64_t> g_start_ns{0};
}  // namespace

void RawLock::yield() { sched_yield(); }

std::atomic<ClockFn> g_coarse_clock{&clock_gettime};
std::atomic<void (*)()> g_on_tick{nullptr};

uintptr_t elf_load_bias(const void* ehdr) {
  const auto* eh = static_cast<const ElfW(Ehdr)*>(ehdr);
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(static_cast<const char*>(ehdr) + eh->e_phoff);
  uintptr_t first_vaddr = 0;
  for (int i = 0; i < eh->e_phnum; ++i)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) first_vaddr = ph[i].p_vaddr;
  return reinterpret_cast<uintptr_t>(ehdr) - first_vaddr;
}

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

// ---- The birth clock's shortcut (alloc/base.h birth_word_now) ----------------------
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

void* os_alloc(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return p;
}

void* os_reserve(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return p;
}

void os_free(void* p, size_t bytes) {
  if (p == nullptr) return;
  munmap(p, bytes);
}

size_t os_page_size() {
  static std::atomic<size_t> cached{0};
  size_t v = cached.load(std::memory_order_relaxed);
  if (v == 0) {
    long r = sysconf(_SC_PAGESIZE);
    v = r > 0 ? static_cast<size_t>(r) : 4096;
    cached.store(v, std::memory_order_relaxed);
  }
  return v;
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

size_t cstr_len(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

bool cstr_eq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) { ++a; ++b; }
  return *a == *b;
}

bool scan_self_maps(bool (*fn)(const MapsLine& line, void* ctx), void* ctx) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  char line[256];
  size_t len = 0;
  bool done = false;
  while (!done) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r && !done; ++i) {
      if (buf[i] != '\n') {
        if (len < sizeof line) line[len++] = buf[i];
        continue;
      }
      done = fn(parse_maps_line(line, len), ctx);
      len = 0;
    }
  }
  close(fd);
  return true;
}

namespace readable {

int by_vm_readv(uintptr_t addr, size_t len) {
  char copy[256];
  if (len > sizeof copy) return -1;
  struct iovec here = {copy, len};
  struct iovec there = {reinterpret_cast<void*>(addr), len};
  ssize_t got = process_vm_readv(getpid(), &here, 1, &there, 1, 0);
  if (got == static_cast<ssize_t>(len)) return 1;
  return got >= 0 || errno == EFAULT ? 0 : -1;
}

int by_maps(uintptr_t addr, size_t len) {
  struct Range {
    uintptr_t lo, hi;
    bool readable;
  } want{addr, addr + len, false};
  bool read = scan_self_maps([](const MapsLine& m, void* ctx) {
    Range& w = *static_cast<Range*>(ctx);
    if (w.lo < m.start || w.lo >= m.limit) return false;
    w.readable = m.readable && w.hi <= m.limit;
    return true;
  }, &want);
  return !read ? -1 : want.readable ? 1 : 0;
}

bool by_mincore(uintptr_t addr, size_t len) {
  uintptr_t page = os_page_size();
  uintptr_t first = addr & ~(page - 1);
  size_t span = ((addr + len - 1) & ~(page - 1)) - first + page;
  unsigned char vec[2];
  return span <= sizeof vec * page && mincore(reinterpret_cast<void*>(first), span, vec) == 0;
}

}  // namespace readable

bool memory_readable(uintptr_t addr, size_t len) {
  if (len == 0 || addr + len < addr || len > 256) return false;
  int saved_errno = errno;  // free() leaves errno alone
  int r = readable::by_vm_readv(addr, len);
  if (r < 0) r = readable::by_maps(addr, len);
  if (r < 0) r = readable::by_mincore(addr, len) ? 1 : 0;
  errno = saved_errno;
  return r == 1;
}

MapsLine parse_maps_line(const char* line, size_t len) {
  size_t i = 0;
  auto hex = [&]() {
    uint64_t v = 0;
    for (; i < len; ++i) {
      char c = line[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) break;
      v = v << 4 | static_cast<uint64_t>(d);
    }
    return static_cast<uintptr_t>(v);
  };
  auto spaces = [&]() {
    while (i < len && line[i] == ' ') ++i;
  };
  auto skip_field = [&]() {
    while (i < len && line[i] != ' ') ++i;
    spaces();
  };
  MapsLine m{};
  m.start = hex();
  if (i < len && line[i] == '-') ++i;
  m.limit = hex();
  spaces();
  m.readable = i < len && line[i] == 'r';
  m.exec = i + 2 < len && line[i + 2] == 'x';
  skip_field();  // perms
  m.offset = hex();
  spaces();
  skip_field();  // dev
  skip_field();  // inode
  m.path = line + i;
  m.path_len = len - i;
  return m;
}

void cstr_copy(char* dst, size_t cap, const char* src) {
  if (cap == 0) return;
  size_t i = 0;
  for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  dst[i] = '\0';
}

size_t u64_to_dec(uint64_t v, char* out) {
  char tmp[20];
  size_t n = 0;
  do { tmp[n++] = static_cast<char>('0' + v % 10); v /= 10; } while (v != 0);
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

FdWriter& FdWriter::str(const char* s) { return str(s, cstr_len(s)); }

FdWriter& FdWriter::str(const char* s, size_t n) {
  while (n > 0) {
    if (len_ == cap_ && !flush()) return *this;
    size_t take = cap_ - len_ < n ? cap_ - len_ : n;
    for (size_t i = 0; i < take; ++i) buf_[len_ + i] = s[i];
    len_ += take; s += take; n -= take;
  }
  return *this;
}

FdWriter& FdWriter::ch(char c) { return str(&c, 1); }

FdWriter& FdWriter::u64(uint64_t v) {
  char tmp[24];
  return str(tmp, u64_to_dec(v, tmp));
}

FdWriter& FdWriter::i64(int64_t v) {
  if (v < 0) { ch('-'); return u64(0 - static_cast<uint64_t>(v)); }
  return u64(static_cast<uint64_t>(v));
}

FdWriter& FdWriter::hex(uint64_t v) {
  char tmp[18];
  size_t n = 0;
  do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v != 0);
  str("0x", 2);
  for (size_t i = 0; i < n; ++i) ch(tmp[n - 1 - i]);
  return *this;
}

FdWriter& FdWriter::fixed(double v, int decimals) {
  if (v < 0) { ch('-'); v = -v; }
  uint64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  uint64_t whole = static_cast<uint64_t>(v);
  uint64_t frac = static_cast<uint64_t>((v - static_cast<double>(whole)) * static_cast<double>(scale) + 0.5);
  if (frac >= scale) { ++whole; frac -= scale; }
  u64(whole);
  if (decimals > 0) {
    ch('.');
    char tmp[24];
    size_t n = u64_to_dec(frac, tmp);
    for (size_t i = n; i < static_cast<size_t>(decimals); ++i) ch('0');
    str(tmp, n);
  }
  return *this;
}

bool FdWriter::flush() {
  size_t off = 0;
  while (off < len_ && !failed_) {
    ssize_t w = ::write(fd_, buf_ + off, len_ - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      err_ = errno;
      break;
    }
    if (w == 0) { failed_ = true; err_ = ENOSPC; break; }
    off += static_cast<size_t>(w);
  }
  total_ += off;
  len_ = 0;
  return !failed_;
}

namespace {
void vformat(FdWriter& w, const char* fmt, va_list ap) {
  for (const char* p = fmt; *p != '\0'; ++p) {
    if (*p != '%') { w.ch(*p); continue; }
    ++p;
    int longs = 0;
    bool size_t_arg = false;
    while (*p == 'l') { ++longs; ++p; }
    if (*p == 'z') { size_t_arg = true; ++p; }
    switch (*p) {
      case 's': { const char* s = va_arg(ap, const char*); w.str(s != nullptr ? s : "(null)"); break; }
      case 'c': w.ch(static_cast<char>(va_arg(ap, int))); break;
      case 'd': {
        int64_t v = longs > 0 ? va_arg(ap, long) : va_arg(ap, int);
        w.i64(v);
        break;
      }
      case 'u': {
        uint64_t v = size_t_arg ? va_arg(ap, size_t)
                   : longs > 0 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
        w.u64(v);
        break;
      }
      case 'x': {
        uint64_t v = size_t_arg ? va_arg(ap, size_t)
                   : longs > 0 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
        w.hex(v);
        break;
      }
      case 'p': w.hex(reinterpret_cast<uintptr_t>(va_arg(ap, void*))); break;
      case '%': w.ch('%'); break;
      case '\0': return;
      default: w.ch('%'); w.ch(*p); break;
    }
  }
}
}  // namespace

void log_message(const char* msg) { log_printf("%s", msg); }

void log_printf(const char* fmt, ...) {
  char buf[1024];
  FdWriter w(STDERR_FILENO, buf, sizeof buf);
  w.str("leakalloc: ");
  va_list ap;
  va_start(ap, fmt);
  vformat(w, fmt, ap);
  va_end(ap);
  w.ch('\n');
}

}  // namespace leakalloc

namespace leakalloc {

ScratchArena::~ScratchArena() {
  while (head_ != nullptr) {
    Chunk* prev = head_->prev;
    os_free(head_, head_->size);
    head_ = prev;
  }
}

void* ScratchArena::alloc(size_t bytes, size_t align) {
  uintptr_t p = (reinterpret_cast<uintptr_t>(cur_) + align - 1) & ~(uintptr_t{align} - 1);
  if (cur_ == nullptr || p + bytes > reinterpret_cast<uintptr_t>(end_)) {
    size_t want = bytes + align + sizeof(Chunk);
    size_t size = size_t{1} << 20;
    while (size < want) size <<= 1;
    void* mem = os_alloc(size);
    if (mem == nullptr) return nullptr;
    Chunk* c = static_cast<Chunk*>(mem);
    c->prev = head_;
    c->size = size;
    head_ = c;
    mapped_ += size;
    cur_ = static_cast<char*>(mem) + sizeof(Chunk);
    end_ = static_cast<char*>(mem) + size;
    p = (reinterpret_cast<uintptr_t>(cur_) + align - 1) & ~(uintptr_t{align} - 1);
  }
  cur_ = reinterpret_cast<char*>(p + bytes);
  return reinterpret_cast<void*>(p);
}

}  // namespace leakalloc
