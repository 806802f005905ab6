// Raw OS memory for the library's own tables (never the tracked malloc), and a check
// that memory can be read before it is touched.
//
// Contract: nothing here calls malloc or takes a libc lock; errno is kept where said.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/compiler.h"

namespace leakalloc {

// Raw OS memory. The profiler's own tables live here (never on the tracked path).
// `os_reserve` maps address space that is committed lazily by the kernel as pages
// are first touched (MAP_NORESERVE), so a table can be sized for its cap up front.
void* os_alloc(size_t bytes);            // zeroed, or nullptr
void* os_reserve(size_t bytes);          // zeroed, lazily committed, or nullptr
void os_free(void* p, size_t bytes);
size_t os_page_size();
// Every mapping os_alloc and os_reserve made and os_free has not yet unmapped (up to
// kOsRegionsMax at once; more go unlisted), for the reachability check
// (profile/reach.h), which must not take leakalloc's own tables for the program's
// roots. Fills up to `room` pairs; returns how many. Lock-free.
constexpr size_t kOsRegionsMax = 1024;
size_t os_regions(uintptr_t* starts, size_t* sizes, size_t room);

// The process's secret, from the kernel's AT_RANDOM bytes and `salt` (an address, so
// that it differs with ASLR even where AT_RANDOM is missing): it keys the block
// headers' check (alloc/header.h) and seeds the samplers. Set once, by the first
// initialisation (prof::ensure_init) before any header is written; 0 until then.
extern LA_HIDDEN uint64_t g_header_secret;
void init_header_secret(const void* salt);

// Whether [addr, addr + len) (at most 256 bytes) can be read: a slow check (a system
// call or two) for a pointer that no table vouches for, before its memory is read. It
// asks process_vm_readv() on this process, or where a seccomp policy forbids that,
// /proc/self/maps; with neither, mincore() tells mapped pages from unmapped ones, and a
// mapped page that is not readable (PROT_NONE) is taken for readable. errno is kept.
bool memory_readable(uintptr_t addr, size_t len);
// Its three ways, separately (for tests): 1 readable, 0 not, -1 this way cannot tell
// (the call is forbidden, /proc is missing). by_mincore only says whether it is mapped.
namespace readable {
int by_vm_readv(uintptr_t addr, size_t len);  // len <= 256
int by_maps(uintptr_t addr, size_t len);
bool by_mincore(uintptr_t addr, size_t len);  // at most two pages
}  // namespace readable

}  // namespace leakalloc
