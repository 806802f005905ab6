#include "base/maps.h"

#include "base/arena.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

namespace leakalloc {

uintptr_t elf_load_bias(const void* ehdr) {
  const auto* eh = static_cast<const ElfW(Ehdr)*>(ehdr);
  const auto* ph = reinterpret_cast<const ElfW(Phdr)*>(static_cast<const char*>(ehdr) + eh->e_phoff);
  uintptr_t first_vaddr = 0;
  for (int i = 0; i < eh->e_phnum; ++i)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) first_vaddr = ph[i].p_vaddr;
  return reinterpret_cast<uintptr_t>(ehdr) - first_vaddr;
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
  m.writable = i + 1 < len && line[i + 1] == 'w';
  m.exec = i + 2 < len && line[i + 2] == 'x';
  m.shared = i + 3 < len && line[i + 3] == 's';
  skip_field();  // perms
  m.offset = hex();
  spaces();
  skip_field();  // dev
  skip_field();  // inode
  m.path = line + i;
  m.path_len = len - i;
  return m;
}

// The whole text of /proc/self/maps into the arena (read(2) in a loop: the file is
// generated as it is read, and a process with many mappings has a long one).
void read_self_maps(ScratchArena& arena, const char** text, size_t* len) {
  *text = "";
  *len = 0;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  size_t cap = 64 * 1024, n = 0;
  char* buf = static_cast<char*>(arena.alloc(cap, 1));
  while (buf != nullptr) {
    if (n == cap) {
      char* bigger = static_cast<char*>(arena.alloc(cap * 2, 1));
      if (bigger == nullptr) break;
      for (size_t i = 0; i < n; ++i) bigger[i] = buf[i];
      buf = bigger;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  if (buf != nullptr) {
    *text = buf;
    *len = n;
  }
}

namespace {

// Reads our own memory through /proc/self/mem: a library unmapped by a concurrent
// dlclose between reading the maps and reading its header yields EIO, not SIGSEGV.
bool read_mem(int mem_fd, uintptr_t addr, void* out, size_t n) {
  for (;;) {
    ssize_t r = pread(mem_fd, out, n, static_cast<off_t>(addr));
    if (r < 0 && errno == EINTR) continue;
    return r == static_cast<ssize_t>(n);
  }
}

}  // namespace

// The GNU build ID of the ELF object whose header is mapped at `hdr`, as lower-case
// hex into `out` (2 * 64 + 1 bytes); returns its length, 0 if there is none. pprof
// compares it with the binary it symbolises from and refuses a rebuilt one instead of
// printing wrong names.
size_t read_build_id(int mem_fd, uintptr_t hdr, char* out) {
  ElfW(Ehdr) eh;
  if (!read_mem(mem_fd, hdr, &eh, sizeof eh)) return 0;
  if (eh.e_ident[EI_MAG0] != ELFMAG0 || eh.e_ident[EI_MAG1] != ELFMAG1 || eh.e_ident[EI_MAG2] != ELFMAG2 ||
      eh.e_ident[EI_MAG3] != ELFMAG3 || eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum > 64)
    return 0;
  ElfW(Phdr) ph[64];
  if (!read_mem(mem_fd, hdr + eh.e_phoff, ph, eh.e_phnum * sizeof(ElfW(Phdr)))) return 0;
  uintptr_t bias = 0;
  bool have_bias = false;
  for (int i = 0; i < eh.e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) {
      bias = hdr - ph[i].p_vaddr;
      have_bias = true;
      break;
    }
  }
  if (!have_bias) return 0;
  for (int i = 0; i < eh.e_phnum; ++i) {
    if (ph[i].p_type != PT_NOTE) continue;
    uint8_t notes[1024];
    size_t n = ph[i].p_filesz < sizeof notes ? ph[i].p_filesz : sizeof notes;
    if (!read_mem(mem_fd, bias + ph[i].p_vaddr, notes, n)) continue;
    size_t off = 0;
    while (off + sizeof(ElfW(Nhdr)) <= n) {
      ElfW(Nhdr) nh;
      const uint8_t* src = notes + off;
      uint8_t* dst = reinterpret_cast<uint8_t*>(&nh);
      for (size_t k = 0; k < sizeof nh; ++k) dst[k] = src[k];
      size_t name_off = off + sizeof nh;
      size_t desc_off = name_off + ((nh.n_namesz + 3u) & ~size_t{3});
      size_t next = desc_off + ((nh.n_descsz + 3u) & ~size_t{3});
      if (next > n) break;
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && notes[name_off] == 'G' &&
          notes[name_off + 1] == 'N' && notes[name_off + 2] == 'U' && notes[name_off + 3] == '\0' &&
          nh.n_descsz > 0 && nh.n_descsz <= 64) {
        for (size_t k = 0; k < nh.n_descsz; ++k) {
          out[2 * k] = "0123456789abcdef"[notes[desc_off + k] >> 4];
          out[2 * k + 1] = "0123456789abcdef"[notes[desc_off + k] & 15];
        }
        return 2 * nh.n_descsz;
      }
      off = next;
    }
  }
  return 0;
}

}  // namespace leakalloc
