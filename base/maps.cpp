#include "base/maps.h"

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

}  // namespace leakalloc
