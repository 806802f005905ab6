#include "profile/leak_error.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "config/options.h"
#include "profile/profiler.h"

namespace leakalloc {
namespace leak_error {

namespace {

int g_saved_stderr = -1;

bool fd_open(int fd) { return fd >= 0 && fcntl(fd, F_GETFD) >= 0; }

// Where the message goes: see the contract in leak_error.h.
int message_fd(bool* opened) {
  *opened = false;
  if (fd_open(STDERR_FILENO)) return STDERR_FILENO;
  if (fd_open(g_saved_stderr)) return g_saved_stderr;
  int fd = open("/dev/tty", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  *opened = fd >= 0;
  return fd;
}

bool counts(const snap::Snapshot& s, const snap::Block& b, const uint32_t* skip, size_t nskip) {
  if (!s.is_old(b)) return false;
  if (s.reach_checked && b.reach != snap::kLostDirect && b.reach != snap::kLostIndirect) return false;
  for (size_t k = 0; k < nskip; ++k)
    if (skip[k] != 0 && skip[k] == b.record) return false;
  return true;
}

// The mapping of `addr` in the snapshot's copy of /proc/self/maps.
bool module_of(const snap::Snapshot& s, uintptr_t addr, MapsLine* out) {
  const char* p = s.maps;
  const char* end = s.maps + s.maps_len;
  while (p < end) {
    const char* nl = p;
    while (nl < end && *nl != '\n') ++nl;
    MapsLine m = parse_maps_line(p, static_cast<size_t>(nl - p));
    if (m.start <= addr && addr < m.limit && m.path_len != 0) {
      *out = m;
      return true;
    }
    p = nl + 1;
  }
  return false;
}

}  // namespace

void start() {
  if (opt(kOpt_leak_error) == 0 || g_saved_stderr >= 0) return;
  int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 255);
  if (fd < 0) fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);  // RLIMIT_NOFILE under 256
  g_saved_stderr = fd;
}

Finding assess(const snap::Snapshot& s, const uint32_t* skip, size_t nskip) {
  Finding f{};
  f.reach_checked = s.reach_checked;
  snap::Tally total;
  size_t i = 0;
  while (i < s.nblocks) {
    uint32_t id = s.blocks[i].stack_id;
    snap::Tally stack;
    bool any = false;
    for (; i < s.nblocks && s.blocks[i].stack_id == id; ++i) {
      if (!counts(s, s.blocks[i], skip, nskip)) continue;
      any = true;
      stack.add(s.blocks[i], s.p.period);
      total.add(s.blocks[i], s.p.period);
    }
    if (!any) continue;
    ++f.nstacks;
    snap::Totals t = stack.get(s.p.period);
    // Insertion into the top kTopStacks by bytes.
    for (int k = 0; k < kTopStacks; ++k) {
      if (f.stack[k] != 0 && f.per_stack[k].bytes >= t.bytes) continue;
      for (int j = kTopStacks - 1; j > k; --j) {
        f.stack[j] = f.stack[j - 1];
        f.per_stack[j] = f.per_stack[j - 1];
      }
      f.stack[k] = id;
      f.per_stack[k] = t;
      break;
    }
  }
  f.total = total.get(s.p.period);
  return f;
}

void report(const snap::Snapshot& s, const Finding& f, const char* files) {
  bool opened;
  int fd = message_fd(&opened);
  if (fd < 0) return;
  char buf[1024];
  {
    FdWriter w(fd, buf, sizeof buf);
    uint64_t age_ms = s.p.age_ns / 1000000;
    w.str("leakalloc: leak_error: ").u64(f.total.blocks).str(" blocks (").u64(f.total.bytes).str(" bytes) ");
    w.str(f.reach_checked ? "lost (unreachable) and " : "").str("alive for at least ").u64(age_ms);
    w.str(" ms at exit, from ").u64(f.nstacks).str(f.nstacks == 1 ? " stack" : " stacks").str("; exit status 1\n");
    if (!f.reach_checked)
      w.str("leakalloc:   reach is off: reachable memory counts too (globals, caches, glibc's per-thread "
            "blocks); reach:true counts only lost blocks\n");
    if (s.p.period > 1) w.str("leakalloc:   sampled (sample:").i64(s.p.lg_sample).str("): counts are estimates\n");
    for (int k = 0; k < kTopStacks && f.stack[k] != 0; ++k) {
      w.str("leakalloc:   #").u64(static_cast<uint64_t>(k + 1)).str(" ").u64(f.per_stack[k].bytes).str(" bytes in ");
      w.u64(f.per_stack[k].blocks).str(f.per_stack[k].blocks == 1 ? " block\n" : " blocks\n");
      prof::StackView v;
      if (!prof::stack_get(f.stack[k], &v)) continue;
      uint32_t shown = v.depth < 8 ? v.depth : 8;
      for (uint32_t d = 0; d < shown; ++d) {
        uintptr_t pc = v.frames[d];
        w.str("leakalloc:       ").hex(pc);
        MapsLine m;
        // The return address minus one is inside the call: the module of the call site.
        if (module_of(s, pc - 1, &m)) w.str(" ").str(m.path, m.path_len).str("+").hex(pc - m.start + m.offset);
        w.ch('\n');
      }
      if (v.depth > shown) w.str("leakalloc:       ... ").u64(v.depth - shown).str(" more frames\n");
    }
    // The pb of the exit dump if one was written (ages, threads), else its first file.
    const char* pick = nullptr;
    size_t pick_len = 0;
    for (const char* p = files; p != nullptr && *p != '\0';) {
      const char* e = p;
      while (*e != '\0' && *e != ' ') ++e;
      size_t n = static_cast<size_t>(e - p);
      bool pb = n > 6 && memcmp(e - 6, ".pb.gz", 6) == 0;
      if (pick == nullptr || pb) {
        pick = p;
        pick_len = n;
      }
      p = *e == ' ' ? e + 1 : e;
    }
    if (pick != nullptr)
      w.str("leakalloc:   names and lines: leakalloc report ").str(pick, pick_len).ch('\n');
    else
      w.str("leakalloc:   no dump was written; with format:pb and a writable prefix, `leakalloc report` on "
            "the exit dump names the frames\n");
  }
  if (opened) close(fd);
}

}  // namespace leak_error
}  // namespace leakalloc
