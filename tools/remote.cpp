// `leakalloc dump PID`: ask a process running under leakalloc for a dump now, whatever
// it was started with. The protocol is profile/remote.h; this side of it finds the
// control block in the target (libdwfl reads the target's modules and their symbol
// tables), writes the request through /proc/PID/mem and waits for the answer.
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "profile/remote.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/profile_data.h"
#include "tools/remote.h"

namespace leakalloc_tool {

namespace {

using leakalloc::RemoteControl;

[[noreturn]] void usage_error(const std::string& what) {
  throw ToolError("dump: " + what + "\nRun `leakalloc dump --help` for its options.");
}

struct SymbolSearch {
  uint64_t addr = 0;
  bool found = false;
  bool leakalloc_only = true;  // first pass: modules named like the library
};

int find_in_module(Dwfl_Module* mod, void**, const char* name, Dwarf_Addr, void* arg) {
  SymbolSearch& s = *static_cast<SymbolSearch*>(arg);
  bool named = name != nullptr && std::strstr(name, "leakalloc") != nullptr;
  if (s.leakalloc_only != named) return DWARF_CB_OK;
  int n = dwfl_module_getsymtab(mod);
  for (int i = 0; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    const char* sname = dwfl_module_getsym_info(mod, i, &sym, &addr, nullptr, nullptr, nullptr);
    if (sname != nullptr && GELF_ST_TYPE(sym.st_info) == STT_OBJECT && sym.st_shndx != SHN_UNDEF &&
        std::strcmp(sname, "leakalloc_remote_control") == 0) {
      s.addr = addr;
      s.found = true;
      return DWARF_CB_ABORT;
    }
  }
  return DWARF_CB_OK;
}


// The target's file mappings as /proc/PID/maps lists them (start address, "START-END",
// path), read once for find_target_elf. Globals, because libdwfl's callback has no
// argument of ours: g_dwfl_lock guards them and the whole lookup.
struct FileMapping {
  uint64_t start;
  std::string range, path;
};
std::mutex g_dwfl_lock;
pid_t g_target = 0;
std::vector<FileMapping> g_target_maps;

void read_target_maps(pid_t pid) {
  g_target = pid;
  g_target_maps.clear();
  FILE* maps = std::fopen(proc_path(pid, "maps").c_str(), "re");
  if (maps == nullptr) return;  // dwfl_linux_proc_report says why
  char line[4096 + 128];
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long long start = 0, end = 0;
    int path_at = 0;
    if (std::sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &start, &end, &path_at) != 2 || line[path_at] != '/') continue;
    std::string path = line + path_at;
    while (!path.empty() && path.back() == '\n') path.pop_back();
    g_target_maps.push_back({start, std::string(line, std::strchr(line, ' ') - line), path});
  }
  std::fclose(maps);
}

// Opens a module of the target for libdwfl. /proc/PID/maps names each file by its path in
// the target's mount namespace, which from here may be no file at all (a process in a
// container) or another file. /proc/PID/map_files/START-END opens the file that is
// mapped, wherever it is (root may); the name is the fallback.
int find_target_elf(Dwfl_Module* mod, void** userdata, const char* module_name, Dwarf_Addr base,
                    char** file_name, Elf** elfp) {
  for (const FileMapping& m : g_target_maps) {
    if (m.start != base || m.path != module_name) continue;
    int fd = open(proc_path(g_target, "map_files/" + m.range).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      *file_name = strdup(module_name);
      *elfp = nullptr;
      return fd;
    }
    break;
  }
  return dwfl_linux_proc_find_elf(mod, userdata, module_name, base, file_name, elfp);
}

}  // namespace

// The control block's address in process `pid`. Modules whose name says leakalloc are
// searched first (the preloaded or linked library); the rest only if it is not there
// (a copy of the library under another name, or linked into the executable).
uint64_t find_control_block(pid_t pid) {
  std::lock_guard<std::mutex> hold(g_dwfl_lock);
  static char* debuginfo_path = nullptr;
  static const Dwfl_Callbacks callbacks = {
      find_target_elf, dwfl_standard_find_debuginfo, nullptr, &debuginfo_path};
  read_target_maps(pid);
  Dwfl* dwfl = dwfl_begin(&callbacks);
  if (dwfl == nullptr) throw ToolError(std::string("libdwfl: ") + dwfl_errmsg(-1));
  int err = dwfl_linux_proc_report(dwfl, pid);
  dwfl_report_end(dwfl, nullptr, nullptr);
  if (err != 0) {
    dwfl_end(dwfl);
    std::string why = err > 0 ? std::strerror(err) : dwfl_errmsg(-1);
    RemoteFailure kind = err == EACCES || err == EPERM ? RemoteFailure::kDenied
                         : err == ENOENT || err == ESRCH ? RemoteFailure::kNoProcess
                                                         : RemoteFailure::kFailed;
    throw RemoteError(kind, "cannot read the memory map of pid " + std::to_string(pid) + " (/proc/" +
                                std::to_string(pid) + "/maps: " + why + ")");
  }
  SymbolSearch s;
  dwfl_getmodules(dwfl, find_in_module, &s, 0);
  if (!s.found) {
    s.leakalloc_only = false;
    dwfl_getmodules(dwfl, find_in_module, &s, 0);
  }
  dwfl_end(dwfl);
  if (!s.found)
    throw RemoteError(RemoteFailure::kNotLeakalloc, "pid " + std::to_string(pid) +
                    " does not run leakalloc (no module of it defines leakalloc_remote_control; "
                    "a leakalloc older than this tool has no remote dumps either)");
  return s.addr;
}

TargetFile::~TargetFile() {
  if (fd >= 0) close(fd);
  if (dir_fd >= 0) close(dir_fd);
}

std::string proc_path(pid_t pid, const std::string& what) { return "/proc/" + std::to_string(pid) + "/" + what; }

namespace {

class TargetMemory {
 public:
  TargetMemory(pid_t pid, uint64_t addr) : pid_(pid), addr_(addr) {
    std::string path = proc_path(pid, "mem");
    fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
      int e = errno;
      std::string hint = e == EACCES || e == EPERM
                             ? ": the same permission as a debugger is needed: run as the process's user "
                               "with ptrace allowed (sysctl kernel.yama.ptrace_scope), or as root"
                             : "";
      throw RemoteError(e == EACCES || e == EPERM ? RemoteFailure::kDenied
                        : e == ENOENT || e == ESRCH ? RemoteFailure::kNoProcess
                                                    : RemoteFailure::kFailed,
                        "cannot open " + path + ": " + std::strerror(e) + hint);
    }
  }
  ~TargetMemory() { close(fd_); }
  TargetMemory(const TargetMemory&) = delete;
  TargetMemory& operator=(const TargetMemory&) = delete;

  void read(size_t off, void* out, size_t n) const {
    ssize_t got = pread(fd_, out, n, static_cast<off_t>(addr_ + off));
    if (got != static_cast<ssize_t>(n)) fail("read", got < 0 ? errno : EIO);
  }
  void write(size_t off, const void* in, size_t n) const {
    ssize_t put = pwrite(fd_, in, n, static_cast<off_t>(addr_ + off));
    if (put != static_cast<ssize_t>(n)) fail("write", put < 0 ? errno : EIO);
  }

 private:
  [[noreturn]] void fail(const char* what, int e) const {
    // An exiting process drops its memory before it becomes a zombie: in between, reads
    // fail with EIO and /proc/PID/stat still says it runs. Seen under load in
    // tools_remote_dump; give the exit up to 200 ms to show.
    for (int i = 0; e == EIO && i < 10 && !gone(pid_); ++i) {
      struct timespec nap = {0, 20 * 1000 * 1000};
      nanosleep(&nap, nullptr);
    }
    if (e == ESRCH || gone(pid_))
      throw RemoteError(RemoteFailure::kNoProcess, "pid " + std::to_string(pid_) + " exited before it answered");
    char at[32];
    std::snprintf(at, sizeof at, "%#llx", static_cast<unsigned long long>(addr_));
    throw RemoteError(RemoteFailure::kFailed, std::string("cannot ") + what + " the memory of pid " + std::to_string(pid_) + " at " + at +
                    ": " + std::strerror(e));
  }
  // No such process, or a zombie (whose memory reads fail with EIO).
  static bool gone(pid_t pid) {
    char buf[512];
    std::string path = proc_path(pid, "stat");
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return true;
    buf[n] = '\0';
    const char* paren = std::strrchr(buf, ')');
    return paren == nullptr || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X';
  }
  pid_t pid_;
  uint64_t addr_;
  int fd_ = -1;
};

std::string proc_link(pid_t pid, const char* what) {
  char buf[4096];
  std::string path = proc_path(pid, what);
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

// The target's fsuid (the owner of the files it creates), from /proc/PID/status;
// -1 if it cannot be read.
long target_fsuid(pid_t pid) {
  FILE* f = std::fopen(proc_path(pid, "status").c_str(), "re");
  if (f == nullptr) return -1;
  char line[256];
  long fsuid = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long r, e, saved, fs;
    if (std::sscanf(line, "Uid: %lu %lu %lu %lu", &r, &e, &saved, &fs) == 4) {
      fsuid = static_cast<long>(fs);
      break;
    }
  }
  std::fclose(f);
  return fsuid;
}

[[noreturn]] void refuse(pid_t pid, const std::string& name, const std::string& why) {
  throw RemoteError(RemoteFailure::kFailed, "pid " + std::to_string(pid) + " named \"" + name +
                                                "\" as its dump; not opened: " + why);
}

// Opens the file the target named (TargetFile). `strict`: this tool's user is not the
// target's, so nothing of the name is trusted; otherwise the tool can do nothing the
// target could not, and the name is opened as the target would open it.
std::shared_ptr<TargetFile> open_target_file(pid_t pid, const std::string& name, const std::string& shown,
                                             bool strict, long uid) {
  auto f = std::make_shared<TargetFile>();
  f->path = shown;
  size_t slash = name.rfind('/');
  f->base = slash == std::string::npos ? name : name.substr(slash + 1);
  if (f->base.empty() || f->base == "." || f->base == "..") refuse(pid, name, "not a file name");
  // The walk starts at the target's own root or working directory, which /proc resolves
  // as the target does (a container's root, a private /tmp).
  std::string start = proc_path(pid, name[0] == '/' ? "root" : "cwd");
  int dir = open(start.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) refuse(pid, name, "cannot open " + start + ": " + std::strerror(errno));
  std::string dirs = slash == std::string::npos ? "" : name.substr(0, slash);
  for (size_t at = 0; at < dirs.size();) {
    size_t next = dirs.find('/', at);
    std::string comp = dirs.substr(at, next == std::string::npos ? std::string::npos : next - at);
    at = next == std::string::npos ? dirs.size() : next + 1;
    if (comp.empty() || comp == ".") continue;
    // ".." would climb out of /proc/PID/root.
    if (comp == ".." && strict) {
      close(dir);
      refuse(pid, name, "a \"..\" in the path");
    }
    int sub = openat(dir, comp.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | (strict ? O_NOFOLLOW : 0));
    int e = errno;
    if (sub < 0 && strict) {
      struct stat st;
      if (fstatat(dir, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        close(dir);
        refuse(pid, name, "\"" + comp + "\" is a symbolic link (not followed for another user's process)");
      }
    }
    close(dir);
    if (sub < 0) refuse(pid, name, comp + ": " + std::strerror(e));
    dir = sub;
  }
  f->dir_fd = dir;
  // O_NONBLOCK: a FIFO planted at the name must not hang the tool.
  f->fd = openat(dir, f->base.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (strict ? O_NOFOLLOW : 0));
  if (f->fd < 0) {
    int e = errno;
    refuse(pid, name, e == ELOOP && strict ? "it is a symbolic link (not followed for another user's process)"
                                           : std::strerror(e));
  }
  struct stat st;
  if (fstat(f->fd, &st) != 0) refuse(pid, name, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) refuse(pid, name, "not a regular file");
  if (strict && static_cast<long>(st.st_uid) != uid)
    refuse(pid, name, "owned by uid " + std::to_string(st.st_uid) + ", not by the process's uid " + std::to_string(uid));
  return f;
}

uint64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

}  // namespace

bool parse_formats(const std::string& value, uint32_t* bits) {
  *bits = 0;
  size_t s = 0;
  for (;;) {
    size_t plus = value.find('+', s);
    std::string f = value.substr(s, plus == std::string::npos ? std::string::npos : plus - s);
    if (f == "heap") *bits |= leakalloc::kRemoteFormatHeap;
    else if (f == "heap_v2") *bits |= leakalloc::kRemoteFormatHeapV2;
    else if (f == "pb") *bits |= leakalloc::kRemoteFormatPb;
    else return false;
    if (plus == std::string::npos) return true;
    s = plus + 1;
  }
}


RemoteAnswer request_remote_dump(pid_t pid, uint64_t age_ms, uint32_t formats, uint64_t timeout_ms) {
  std::string pid_text = std::to_string(pid);
  if (kill(pid, 0) != 0 && errno == ESRCH) throw RemoteError(RemoteFailure::kNoProcess, "no process " + pid_text);

  RemoteAnswer answer;
  uint64_t addr = find_control_block(pid);
  TargetMemory mem(pid, addr);
  RemoteControl head;
  mem.read(0, &head, offsetof(RemoteControl, files));
  if (std::memcmp(head.magic, leakalloc::kRemoteMagic, sizeof head.magic) != 0)
    throw RemoteError(RemoteFailure::kNotLeakalloc, "pid " + pid_text + ": leakalloc_remote_control does not hold leakalloc's magic");
  if (head.version != leakalloc::kRemoteVersion || head.size != sizeof(RemoteControl))
    throw RemoteError(RemoteFailure::kNotLeakalloc, "pid " + pid_text + " runs a leakalloc whose remote control block is version " +
                    std::to_string(head.version) + " (" + std::to_string(head.size) + " bytes); this tool speaks version " +
                    std::to_string(leakalloc::kRemoteVersion) + " (" + std::to_string(sizeof(RemoteControl)) +
                    " bytes): use the leakalloc command of the library the process runs");

  // The parameters first, then the number: the process reads them after the number.
  mem.write(offsetof(RemoteControl, age_ms), &age_ms, sizeof age_ms);
  mem.write(offsetof(RemoteControl, formats), &formats, sizeof formats);
  uint32_t request;
  mem.read(offsetof(RemoteControl, request), &request, sizeof request);
  ++request;
  mem.write(offsetof(RemoteControl, request), &request, sizeof request);

  uint64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    uint32_t served;
    mem.read(offsetof(RemoteControl, served), &served, sizeof served);
    // Answered, by this request's dump or a later one's.
    if (static_cast<int32_t>(served - request) >= 0) {
      answer.served = served;
      break;
    }
    if (now_ms() >= deadline)
      throw RemoteError(RemoteFailure::kTimeout, "pid " + pid_text + " has not answered within " + std::to_string(timeout_ms) +
                      " ms. A process without a dump thread (none of interval, signal, gdump, lg_interval "
                      "configured) notices the request at its next call to malloc; this one has not called "
                      "it since. The request stays pending: the dump is written when it is noticed");
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, nullptr);
  }
  int32_t status;
  mem.read(offsetof(RemoteControl, status), &status, sizeof status);
  char files[leakalloc::kRemoteFilesMax];
  mem.read(offsetof(RemoteControl, files), files, sizeof files);
  files[sizeof files - 1] = '\0';

  // The files as the process named them: relative to its working directory, or absolute
  // from its root. When the process sees another file tree than this tool (a container's
  // root, or the same root with other mounts on it: a systemd service with PrivateTmp=),
  // they are reached through /proc/PID/cwd and /proc/PID/root, which resolve as the
  // process resolves (the paths readlink() gives for those are not this tool's).
  std::string root = proc_link(pid, "root");
  std::string mnt = proc_link(pid, "ns/mnt");
  bool same_tree = (root.empty() || root == "/") && (mnt.empty() || mnt == proc_link(getpid(), "ns/mnt"));
  std::string cwd = same_tree ? proc_link(pid, "cwd") : proc_path(pid, "cwd");
  std::string prefix = same_tree ? "" : proc_path(pid, "root");
  std::vector<std::string>& paths = answer.paths;
  // The names come from the target's memory: opened with care (TargetFile).
  long uid = target_fsuid(pid);
  bool strict = uid < 0 || static_cast<long>(geteuid()) != uid;
  for (const char* p = files; *p != '\0';) {
    const char* sp = std::strchr(p, ' ');
    std::string name(p, sp != nullptr ? static_cast<size_t>(sp - p) : std::strlen(p));
    if (!name.empty()) {
      paths.push_back(name[0] == '/' ? prefix + name : (cwd.empty() ? std::string(".") : cwd) + "/" + name);
      // After a failure some files may be missing: those that are there (and pass) are
      // still listed, for serve to remove.
      try {
        answer.files.push_back(open_target_file(pid, name, paths.back(), strict, uid));
      } catch (const RemoteError&) {
        if (status == 0) throw;
      }
    }
    if (sp == nullptr) break;
    p = sp + 1;
  }
  answer.root = prefix;
  answer.request = request;
  answer.status = status;
  return answer;
}

namespace {

struct DumpArgs {
  uint64_t age_ms = leakalloc::kRemoteAgeDefault;
  std::string format_text;
  uint32_t formats = leakalloc::kRemoteFormatHeap | leakalloc::kRemoteFormatPb;
  uint64_t timeout_ms = 30000;
  size_t top = 3;
  bool symbolize = true;
  std::string pid_text;
  bool lost = false;  // a reachability check, and only the lost dump (profile/reach.h)
};

int dump_command(const DumpArgs& a) {
  uint64_t age_ms = a.age_ms;
  uint32_t formats = a.formats;
  uint64_t timeout_ms = a.timeout_ms;
  size_t top = a.top;
  const std::string& pid_text = a.pid_text;
  bool lost = a.lost;
  bool symbolize = a.symbolize;
  if (lost) formats |= leakalloc::kRemoteLost;
  if (pid_text.empty()) usage_error("which process? (a PID)");
  char* end = nullptr;
  long pid_l = std::strtol(pid_text.c_str(), &end, 10);
  if (*end != '\0' || pid_l <= 0 || pid_l > 0x3fffffff) usage_error("bad PID \"" + pid_text + "\"");
  pid_t pid = static_cast<pid_t>(pid_l);
  RemoteAnswer answer = request_remote_dump(pid, age_ms, formats, timeout_ms);
  const std::vector<std::string>& paths = answer.paths;
  const std::string& prefix = answer.root;
  int32_t status = answer.status;
  for (const std::string& p : paths) std::printf("%s\n", p.c_str());
  std::fflush(stdout);
  if (lost && status == 0 && !paths.empty() && paths[0].find(".lost.") == std::string::npos)
    throw ToolError("pid " + pid_text + " runs a leakalloc without the reachability check: it wrote an ordinary "
                    "dump instead of the lost one");
  if (status != 0)
    throw ToolError("pid " + pid_text + " could not write " + (paths.empty() ? "its dump" : "every file of its dump") +
                    ": " + std::strerror(status) + " (its stderr names the file)");
  // The report reads .pb.gz (with ages) or .heap, not heap_v2.
  // Read through the files opened with care (TargetFile), never by name again.
  const TargetFile* pick = nullptr;
  for (const std::shared_ptr<TargetFile>& f : answer.files)
    if (ends_with(f->path, ".pb.gz") || (pick == nullptr && ends_with(f->path, ".heap"))) pick = f.get();
  // The symbolized copy, while the process (and so its files) surely still exists. On
  // stderr: stdout lists the files the process wrote, for scripts. It is written into
  // the directory that was opened, whatever its name leads to by now.
  if (symbolize && pick != nullptr) {
    ReportOptions so;
    so.root = prefix;
    std::string to = symbolized_name(pick->path);
    try {
      symbolize_dump(pick->read_path(), pick->dir_path() + "/" + symbolized_name(pick->base), so);
      std::fprintf(stderr, "leakalloc: symbolized: %s (go tool pprof needs no binary for it)\n", to.c_str());
    } catch (const ToolError& e) {
      std::fprintf(stderr, "leakalloc: could not write the symbolized %s: %s\n", to.c_str(), e.what());
    }
  }
  if (top > 0 && pick != nullptr) {
    ReportOptions ro;
    ro.root = prefix;  // the dump names files as the process sees them
    ro.age_ms = age_ms == leakalloc::kRemoteAgeDefault ? 0 : age_ms;
    ro.top = top;
    ro.shown = pick->path;
    std::fputc('\n', stderr);
    std::fflush(stderr);
    print_report(pick->read_path(), ro, stderr);
    std::fprintf(stderr, "Full report: leakalloc report %s%s\n", prefix.empty() ? "" : ("--root " + prefix + " ").c_str(),
                 pick->path.c_str());
  }
  return 0;
}

}  // namespace

void add_dump_command(CLI::App& app, Action* action) {
  auto a = std::make_shared<DumpArgs>();
  CLI::App* sub = app.add_subcommand("dump", "Make a running process under leakalloc write a dump now");
  sub->footer(
      "Asks process PID, running under leakalloc, for a dump now, whatever it was started with;\n"
      "prints the files it wrote, then the top of the report on stderr, and writes a symbolized\n"
      "copy beside the dump (see symbolize) unless --no-symbolize. Needs a debugger's\n"
      "permission over PID: its user with ptrace allowed (kernel.yama.ptrace_scope), or root.\n"
      "Durations take ms, s, m or h; a bare number is seconds.");
  add_duration(sub, "--age", &a->age_ms, "Blocks at least this old (default: the process's age: setting)");
  add_formats(sub, &a->format_text, &a->formats, "Formats: heap, heap_v2 and pb joined by '+' (default heap+pb)");
  add_duration(sub, "--timeout", &a->timeout_ms, "Give up when the process has not answered by then (default 30s)");
  add_number(sub, "--top", &a->top, 0, SIZE_MAX, "a number", "Stacks shown in the report; 0: none (default 3)");
  sub->add_flag("--lost", a->lost, "Run a reachability check and write only the lost dump (unreachable blocks)");
  sub->add_flag_callback("--no-symbolize", [a] { a->symbolize = false; },
                         "Write no symbolized copy (<dump>.sym.pb.gz, see symbolize) beside the dump");
  sub->add_option("PID", a->pid_text, "The process")->type_name("");
  sub->callback([a, action] { *action = [a] { return dump_command(*a); }; });
}

}  // namespace leakalloc_tool
