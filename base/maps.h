// The process's own mappings and ELF images: /proc/self/maps lines parsed in place,
// and the load bias of a mapped ELF header.
//
// Contract: nothing here calls malloc (raw reads into stack buffers).
#pragma once

#include <cstddef>
#include <cstdint>

namespace leakalloc {

// The load bias of an ELF image mapped at `ehdr`: the header's address minus the p_vaddr
// of the PT_LOAD that maps file offset 0 (0 for a normal shared object). Symbol values
// and p_vaddr plus the bias are run-time addresses.
uintptr_t elf_load_bias(const void* ehdr);

// One line of /proc/<pid>/maps, "start-limit perms offset dev inode path", parsed in
// place without allocating. `path` points into the line (not NUL-terminated) and is
// empty for anonymous mappings.
struct MapsLine {
  uintptr_t start, limit, offset;
  bool readable, writable, exec, shared;
  const char* path;
  size_t path_len;
};
MapsLine parse_maps_line(const char* line, size_t len);  // `line` without its newline
// Calls fn(line, ctx) for each line of /proc/self/maps until fn returns true; returns
// false if the file cannot be read (no /proc in a chroot or a bare container). Raw reads
// into a stack buffer: never allocates. A line of more than 255 characters is passed cut
// short (its path is then incomplete; its addresses and permissions are not).
bool scan_self_maps(bool (*fn)(const MapsLine& line, void* ctx), void* ctx);

class ScratchArena;
// The whole text of /proc/self/maps, read once into `arena` (*text is "" and *len 0 when
// it cannot be read: no /proc in a chroot or a bare container). What a dump's snapshot
// keeps, so that every file of the dump shows the same mappings.
void read_self_maps(ScratchArena& arena, const char** text, size_t* len);
// The GNU build ID of the ELF object whose header is mapped at `hdr`, as lower-case hex
// into `out` (2 * 64 + 1 bytes); returns its length, 0 if there is none. Reads through
// `mem_fd` (/proc/self/mem): an object unmapped meanwhile (dlclose) gives EIO, not
// SIGSEGV.
size_t read_build_id(int mem_fd, uintptr_t hdr, char* out);

}  // namespace leakalloc
