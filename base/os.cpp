#include "base/os.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>

#include "base/maps.h"

namespace leakalloc {

uint64_t g_header_secret = 0;

void init_header_secret(const void* salt) {
  const unsigned char* rnd = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
  uint64_t secret = 0x5bd1e9955bd1e995ull;
  if (rnd != nullptr)
    for (int i = 0; i < 8; ++i) secret = (secret << 8) | rnd[i];
  g_header_secret = secret ^ reinterpret_cast<uintptr_t>(salt);
}

namespace {
// The registry of os_alloc/os_reserve mappings (os_regions): a fixed array claimed with
// a compare-and-swap on `start`, so that it needs no lock and no memory of its own. A
// slot is free when its start is 0.
struct OsRegion {
  std::atomic<uintptr_t> start;
  std::atomic<size_t> bytes;
};
OsRegion g_os_regions[kOsRegionsMax];

void os_register(void* p, size_t bytes) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (OsRegion& r : g_os_regions) {
    uintptr_t expected = 0;
    if (r.start.load(std::memory_order_relaxed) != 0) continue;
    // The size after the claim: a reader that sees the start sees 0 or this size.
    r.bytes.store(0, std::memory_order_relaxed);
    if (r.start.compare_exchange_strong(expected, a, std::memory_order_acq_rel)) {
      r.bytes.store(bytes, std::memory_order_release);
      return;
    }
  }
  // Full: this mapping goes unlisted (a reachability check then reads it as a root,
  // which can only make it report fewer lost blocks).
}

void os_unregister(void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (OsRegion& r : g_os_regions) {
    if (r.start.load(std::memory_order_relaxed) != a) continue;
    r.bytes.store(0, std::memory_order_relaxed);
    r.start.store(0, std::memory_order_release);
    return;
  }
}
}  // namespace

void* os_alloc(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  os_register(p, bytes);
  return p;
}

void* os_reserve(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  os_register(p, bytes);
  return p;
}

void os_free(void* p, size_t bytes) {
  if (p == nullptr) return;
  os_unregister(p);
  munmap(p, bytes);
}

size_t os_regions(uintptr_t* starts, size_t* sizes, size_t room) {
  size_t n = 0;
  for (OsRegion& r : g_os_regions) {
    uintptr_t a = r.start.load(std::memory_order_acquire);
    size_t b = r.bytes.load(std::memory_order_acquire);
    if (a == 0 || b == 0 || n == room) continue;
    starts[n] = a;
    sizes[n] = b;
    ++n;
  }
  return n;
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

}  // namespace leakalloc
