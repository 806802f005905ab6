// `leakalloc run`: start a program with libleakalloc.so preloaded and a matching
// LEAKALLOC_CONF, pass its exit status and signals through, then show the dumps.
//
// Library lookup, first hit wins:
//   1. $LEAKALLOC_LIB (a path to the .so)
//   2. next to this binary's install: <bindir>/<relative path to libdir>/libleakalloc.so
//      ($ORIGIN/../lib/libleakalloc.so for the usual layouts)
//   3. the build tree this binary was built in (LEAKALLOC_BUILD_LIB, baked in by CMake)
//
// Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to leakalloc with kill(2) are
// forwarded to the child. The same signals coming from the terminal (si_code
// SI_KERNEL) are not: the child is in our process group and got its own copy, and a
// second SIGINT would cut short a program that shuts down cleanly on the first.
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "tools/commands.h"
#include "tools/options.h"
#include "tools/profile_data.h"

extern char** environ;

#ifndef LEAKALLOC_REL_LIBDIR
#define LEAKALLOC_REL_LIBDIR "../lib"
#endif
#ifndef LEAKALLOC_BUILD_LIB
#define LEAKALLOC_BUILD_LIB ""
#endif

namespace leakalloc_tool {

namespace {

volatile sig_atomic_t g_child = 0;

void forward_signal(int sig, siginfo_t* info, void*) {
  if (g_child <= 0) return;
  if (info && info->si_code == SI_KERNEL) return;  // from the tty: the child has its own
  int saved = errno;
  kill(static_cast<pid_t>(g_child), sig);
  errno = saved;
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  std::string s(buf);
  size_t slash = s.rfind('/');
  return slash == std::string::npos ? "." : s.substr(0, slash);
}

std::string find_library(std::string* tried) {
  const char* env = std::getenv("LEAKALLOC_LIB");
  if (env && *env) {
    if (!is_file(env)) throw ToolError(std::string("LEAKALLOC_LIB=") + env + ": no such file");
    return env;
  }
  std::string dir = self_dir();
  std::vector<std::string> candidates;
  if (!dir.empty()) candidates.push_back(dir + "/" LEAKALLOC_REL_LIBDIR "/libleakalloc.so");
  if (*LEAKALLOC_BUILD_LIB) candidates.push_back(LEAKALLOC_BUILD_LIB);
  for (const std::string& c : candidates) {
    *tried += "\n  " + c;
    if (is_file(c)) {
      char real[PATH_MAX];
      return realpath(c.c_str(), real) ? std::string(real) : c;
    }
  }
  throw ToolError("cannot find libleakalloc.so; tried:" + *tried + "\nset LEAKALLOC_LIB=/path/to/libleakalloc.so");
}

// Resolves PROG as execvp would: a name with a slash as is, otherwise through $PATH.
std::string resolve_program(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return prog;
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    size_t colon = p.find(':', start);
    std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string cand = (dir.empty() ? "." : dir) + "/" + prog;
    if (is_file(cand) && access(cand.c_str(), X_OK) == 0) return cand;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  throw ToolError(prog + ": command not found in PATH");
}

struct ElfInfo {
  bool elf = false;
  bool has_interp = false;
  bool has_dynamic = false;
  unsigned char elf_class = 0;
  uint16_t machine = 0;
};

ElfInfo read_elf_info(const std::string& path) {
  ElfInfo info;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ToolError(path + ": " + std::strerror(errno));
  Elf64_Ehdr eh;
  ssize_t n = pread(fd, &eh, sizeof eh, 0);
  if (n >= static_cast<ssize_t>(sizeof(Elf32_Ehdr)) && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0) {
    info.elf = true;
    info.elf_class = eh.e_ident[EI_CLASS];
    if (info.elf_class == ELFCLASS64 && n == sizeof eh) {
      info.machine = eh.e_machine;
      for (uint16_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != sizeof ph) break;
        if (ph.p_type == PT_INTERP) info.has_interp = true;
        if (ph.p_type == PT_DYNAMIC) info.has_dynamic = true;
      }
    } else if (info.elf_class == ELFCLASS32) {
      Elf32_Ehdr eh32;
      if (pread(fd, &eh32, sizeof eh32, 0) == sizeof eh32) {
        info.machine = eh32.e_machine;
        for (uint16_t i = 0; i < eh32.e_phnum; ++i) {
          Elf32_Phdr ph;
          if (pread(fd, &ph, sizeof ph, static_cast<off_t>(eh32.e_phoff + i * sizeof ph)) != sizeof ph) break;
          if (ph.p_type == PT_INTERP) info.has_interp = true;
          if (ph.p_type == PT_DYNAMIC) info.has_dynamic = true;
        }
      }
    }
  }
  close(fd);
  return info;
}

// Refuses, with the reason, programs into which LD_PRELOAD cannot load the library.
// `runs` receives what runs the program: PROG itself, or for a script the interpreter
// its #! line names (env's argument for `#!/usr/bin/env NAME`), as written there.
void check_preloadable(const std::string& path, const std::string& lib, int depth, std::string* runs) {
  if (depth == 0) *runs = path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw ToolError(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw ToolError(path + ": not a regular file");
  if (st.st_mode & (S_ISUID | S_ISGID))
    throw ToolError(path + " is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD "
                    "and leakalloc ignores LEAKALLOC_CONF in such programs; run a copy without the "
                    "setuid/setgid bit");
  char head[256] = {0};
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ToolError(path + ": " + std::strerror(errno));
  ssize_t n = read(fd, head, sizeof head - 1);
  close(fd);
  if (n >= 2 && head[0] == '#' && head[1] == '!' && depth < 4) {
    // A script: the library is loaded into its interpreter.
    std::string line(head + 2, static_cast<size_t>(n - 2));
    line = line.substr(0, line.find('\n'));
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) throw ToolError(path + ": script without an interpreter");
    std::string interp = line.substr(b, line.find_first_of(" \t", b) - b);
    if (depth == 0) *runs = interp;
    // `#!/usr/bin/env python3`: the program is env's first argument.
    if (interp.size() >= 4 && interp.compare(interp.size() - 4, 4, "/env") == 0) {
      size_t a = line.find_first_not_of(" \t", line.find_first_of(" \t", b));
      if (a != std::string::npos) {
        std::string name = line.substr(a, line.find_first_of(" \t", a) - a);
        if (depth == 0) *runs = name;
        std::string real;
        try {
          real = resolve_program(name);
        } catch (const ToolError&) {
          // env will say what is missing when it runs
        }
        if (!real.empty()) {
          check_preloadable(real, lib, depth + 1, runs);
          return;
        }
      }
    }
    check_preloadable(interp, lib, depth + 1, runs);
    return;
  }
  ElfInfo prog = read_elf_info(path);
  if (!prog.elf) return;  // not ELF and not a script: let execve report what it is
  if (!prog.has_interp)
    throw ToolError(path + " is statically linked (no PT_INTERP" +
                    std::string(prog.has_dynamic ? ", static-pie" : ", no PT_DYNAMIC") +
                    "): LD_PRELOAD cannot load libleakalloc.so into it; link it dynamically, or "
                    "with -lleakalloc");
  ElfInfo l = read_elf_info(lib);
  if (l.elf && (l.elf_class != prog.elf_class || l.machine != prog.machine))
    throw ToolError(path + " is built for another architecture (ELF class " + std::to_string(prog.elf_class) +
                    ", machine " + std::to_string(prog.machine) + ") than " + lib +
                    " (class " + std::to_string(l.elf_class) + ", machine " + std::to_string(l.machine) + ")");
}

struct DumpFile {
  std::string path;
  long seq;
  char kind;
  bool pb;
};

// Files named <base>.<pid>.<seq>.<kind><kseq>.<ext> in `dir`, by sequence number.
std::vector<DumpFile> find_dumps(const std::string& dir, const std::string& base, pid_t pid) {
  std::vector<DumpFile> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  std::string want = base + "." + std::to_string(pid) + ".";
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, want.size(), want) != 0) continue;
    const char* p = name.c_str() + want.size();
    char* end = nullptr;
    long seq = std::strtol(p, &end, 10);
    if (end == p || *end != '.' || !end[1]) continue;
    // Our own symbolized copies (symbolized_name) are not dumps of the library.
    if (name.size() > 11 && name.compare(name.size() - 11, 11, ".sym.pb.gz") == 0) continue;
    DumpFile f{dir + "/" + name, seq, end[1], name.size() > 6 && name.compare(name.size() - 6, 6, ".pb.gz") == 0};
    out.push_back(f);
  }
  closedir(d);
  std::sort(out.begin(), out.end(), [](const DumpFile& a, const DumpFile& b) {
    return a.seq != b.seq ? a.seq < b.seq : a.path < b.path;
  });
  return out;
}

// Dumps of the program's descendants: they inherit LEAKALLOC_CONF, so the same prefix.
size_t count_other_dumps(const std::string& dir, const std::string& base, pid_t pid) {
  size_t n = 0;
  DIR* d = opendir(dir.c_str());
  if (!d) return 0;
  std::string want = base + ".", mine = base + "." + std::to_string(pid) + ".";
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, want.size(), want) == 0 && name.compare(0, mine.size(), mine) != 0 &&
        name.size() > want.size() && name[want.size()] >= '0' && name[want.size()] <= '9')
      ++n;
  }
  closedir(d);
  return n;
}

// Writes the symbolized copy of each dump (one per seq: the .pb.gz, which has ages and
// threads, else the .heap) while the program's files are surely still there. Returns
// the files written; a failure is one line on stderr (unless quiet) and no more: the
// raw dumps are the result, the names a convenience.
std::vector<std::string> symbolize_dumps(const std::vector<DumpFile>& dumps, bool quiet) {
  std::vector<std::string> written;
  for (size_t i = 0; i < dumps.size(); ++i) {
    const DumpFile& d = dumps[i];
    bool other_pb = false;
    for (const DumpFile& e : dumps)
      if (e.seq == d.seq && e.pb && !d.pb) other_pb = true;
    bool text = d.path.size() > 5 && d.path.compare(d.path.size() - 5, 5, ".heap") == 0;
    if (other_pb || (!d.pb && !text)) continue;
    std::string to = symbolized_name(d.path);
    try {
      symbolize_dump(d.path, to, ReportOptions());
      written.push_back(to);
    } catch (const ToolError& e) {
      if (!quiet) std::fprintf(stderr, "leakalloc: could not write the symbolized %s: %s\n", to.c_str(), e.what());
    }
  }
  return written;
}

struct RunOptions {
  std::string sample, format = "heap+pb", out_dir = ".";
  uint64_t age_ms = 0, interval_ms = 0;
  CLI::Option *age_opt = nullptr, *interval_opt = nullptr;  // count() says whether given
  uint32_t format_bits = 0;
  size_t top = 3;
  bool quiet = false, symbolize = true;
  bool reach = false;  // every dump runs a reachability check and writes a .lost dump beside it
  bool follow = false;  // children the program forks are traced too (no LEAKALLOC_RUN_PID)
  std::vector<std::string> command;  // PROG [ARGS...]
};

int run_command(RunOptions& o);

}  // namespace

void add_run_command(CLI::App& app, Action* action) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand("run", "Run a program under leakalloc, then report its leaks");
  sub->footer(
      "Runs PROG with libleakalloc.so preloaded and exits with PROG's status; then lists the dumps\n"
      "and ends with the report over all of them on stderr (each stack over time, with a verdict).\n"
      "Python programs get PYTHONMALLOC=malloc. Each dump gets a symbolized copy beside\n"
      "it (see symbolize) unless --no-symbolize. Only the process started is traced, through\n"
      "every exec it makes (a shim, env, a script's exec keep its pid); the processes it\n"
      "forks run with the plain allocator and write no dumps, unless --follow.\n"
      "leakalloc's options come before PROG (or before --); everything after it is PROG's.\n"
      "The library comes from $LEAKALLOC_LIB, else <prefix>/lib next to this program, else the\n"
      "build tree it was built in. Durations take ms, s, m or h; a bare number is seconds.");
  o->age_opt = add_duration(sub, "--age", &o->age_ms, "Dumps hold blocks at least this old (LEAKALLOC_CONF age:)");
  sub->add_option_function<std::string>(
         "--sample",
         [o](const std::string& v) {
           char* end = nullptr;
           long n = std::strtol(v.c_str(), &end, 10);
           if (v.empty() || *end || n < 0 || n > 62)
             throw CLI::ValidationError("--sample", "expected 0..62 (mean 2^N bytes between samples), got \"" + v + "\"");
           o->sample = v;
         },
         "Sample one allocation per 2^N bytes on average; 0 records every one (exact numbers)")
      ->type_name("N");
  o->interval_opt = add_duration(sub, "--interval", &o->interval_ms, "Also dump this often while PROG runs (default: --age, else 10s)");
  sub->add_option_function<std::string>(
         "--out",
         [o](const std::string& v) {
           if (v.empty()) throw CLI::ValidationError("--out", "empty directory");
           o->out_dir = v;
         },
         "Directory for the dumps (created if missing; default: the current directory)")
      ->type_name("DIR");
  add_formats(sub, &o->format, &o->format_bits, "Dump formats: heap, heap_v2 and pb joined by '+' (default heap+pb)");
  add_number(sub, "--top", &o->top, 0, SIZE_MAX, "a number", "Stacks shown in the report at the end; 0: none (default 3)");
  sub->add_flag("--follow", o->follow,
                "Trace the processes PROG forks too (each writes its own dumps, <name>.<its pid>.*)");
  sub->add_flag("--reach", o->reach, "Every dump also runs a reachability check and writes a .lost dump (reach:true)");
  sub->add_flag_callback("--no-symbolize", [o] { o->symbolize = false; },
                         "Write no symbolized copy (<dump>.sym.pb.gz, see symbolize) beside each dump");
  sub->add_flag("--quiet", o->quiet, "Print nothing of leakalloc's own: only PROG's output and status");
  sub->add_option("PROG", o->command, "The program to run, and its arguments")->required()->type_name("");
  // Everything from PROG on is PROG's, its options too.
  sub->positionals_at_end();
  sub->callback([o, action] { *action = [o] { return run_command(*o); }; });
}

namespace {

int run_command(RunOptions& o) {
  std::string age = o.age_opt->count() ? std::to_string(o.age_ms) + "ms" : "";
  std::string interval = o.interval_opt->count() ? std::to_string(o.interval_ms) + "ms" : "";
  const std::string &sample = o.sample, &format = o.format;
  std::string out_dir = o.out_dir;
  uint64_t age_ms = o.age_ms;
  size_t top = o.top;
  bool quiet = o.quiet, symbolize = o.symbolize;
  std::vector<std::string>& child_args = o.command;

  std::string prog = resolve_program(child_args[0]);
  std::string tried;
  std::string lib = find_library(&tried);
  std::string interp;
  check_preloadable(prog, lib, 0, &interp);

  struct stat st;
  if (stat(out_dir.c_str(), &st) != 0) {
    if (mkdir(out_dir.c_str(), 0755) != 0) throw ToolError("--out " + out_dir + ": " + std::strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    throw ToolError("--out " + out_dir + ": not a directory");
  }
  // Absolute, so that a program that changes directory still dumps where we look.
  char real_out[PATH_MAX];
  if (realpath(out_dir.c_str(), real_out)) out_dir = real_out;
  if (out_dir.find(',') != std::string::npos)
    throw ToolError("--out " + out_dir + ": a ',' in the path cannot pass through LEAKALLOC_CONF");
  // Before the program runs, not after it (issue 24: a whole run, then the signals were
  // blamed). A file is made and removed: access() says yes to root on a read-only mount.
  std::string probe = out_dir + "/.leakalloc-run-XXXXXX";
  int probe_fd = mkstemp(probe.data());
  if (probe_fd < 0)
    throw ToolError("--out " + out_dir + ": cannot create files there (" + std::strerror(errno) +
                    "); no dump could be written");
  close(probe_fd);
  unlink(probe.c_str());
  std::string base = child_args[0].substr(child_args[0].rfind('/') + 1);
  if (base.empty() || base.find(',') != std::string::npos) base = "leakalloc";

  // The user's own LEAKALLOC_CONF comes first; ours follows and wins key by key.
  std::string conf;
  if (const char* c = std::getenv("LEAKALLOC_CONF")) conf = c;
  auto add = [&](const std::string& kv) { conf += (conf.empty() ? "" : ",") + kv; };
  if (!age.empty()) add("age:" + age);
  if (!sample.empty()) add("sample:" + sample);
  // Interval dumps are what the closing report follows over time. Without --interval:
  // the library's own default when --age is set (one dump per age), else 10 s, which
  // gives a run of 30 s the three dumps a trend needs and costs a long run one dump of
  // the live set every 10 s (keep:64 bounds the files: the first and the 64 latest).
  if (interval.empty() && age.empty()) interval = "10000ms";
  if (!interval.empty()) add("interval:" + interval);
  add("format:" + format);
  add("final:true");
  if (o.reach) add("reach:true");
  add("prefix:" + out_dir + "/" + base);
  std::string preload = lib;
  if (const char* p = std::getenv("LD_PRELOAD"); p && *p) preload += std::string(":") + p;

  // CPython serves objects up to 512 bytes from its own arenas (pymalloc), so every such
  // object would be blamed on the arena's malloc. PYTHONMALLOC=malloc sends each one
  // through malloc, where its Python C-API caller is on the stack. Ruby, Perl (Debian
  // builds it without its own malloc), node and the JVM have no such switch.
  std::string interp_name = interp.substr(interp.rfind('/') + 1);
  std::string env_pymalloc;
  bool python = interp_name.compare(0, 6, "python") == 0 || interp_name.compare(0, 4, "pypy") == 0;
  if (python && !std::getenv("PYTHONMALLOC")) {
    env_pymalloc = "PYTHONMALLOC=malloc";
    if (!quiet)
      std::fprintf(stderr, "leakalloc: a Python program: PYTHONMALLOC=malloc, so that each object's "
                           "allocation site is seen (pymalloc's arenas hide them)\n");
  }

  std::vector<char*> argv;
  for (std::string& a : child_args) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  std::string env_conf = "LEAKALLOC_CONF=" + conf, env_preload = "LD_PRELOAD=" + preload;
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "LEAKALLOC_CONF=", 15) != 0 && std::strncmp(*e, "LD_PRELOAD=", 11) != 0 &&
        std::strncmp(*e, "LEAKALLOC_RUN_PID=", 18) != 0)
      envp.push_back(*e);
  envp.push_back(&env_conf[0]);
  envp.push_back(&env_preload[0]);
  if (!env_pymalloc.empty()) envp.push_back(&env_pymalloc[0]);
  // Without --follow the library traces only the process whose pid this names
  // (config/options.h run_pid_elsewhere); the child fills in its own pid after fork.
  std::string env_run_pid = "LEAKALLOC_RUN_PID=" + std::string(20, '0');
  if (!o.follow) envp.push_back(&env_run_pid[0]);
  envp.push_back(nullptr);

  if (!quiet) std::fprintf(stderr, "leakalloc: running %s with %s, LEAKALLOC_CONF=%s\n", prog.c_str(), lib.c_str(), conf.c_str());
  std::fflush(nullptr);

  const int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  sigset_t block, old_mask;
  sigemptyset(&block);
  for (int s : kForwarded) sigaddset(&block, s);
  sigprocmask(SIG_BLOCK, &block, &old_mask);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = forward_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int s : kForwarded) sigaction(s, &sa, nullptr);

  pid_t pid = fork();
  if (pid < 0) throw ToolError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s : kForwarded) sigaction(s, &dfl, nullptr);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // Digits written by hand: nothing that may allocate between fork and exec.
    char* digits = &env_run_pid[std::strlen("LEAKALLOC_RUN_PID=")];
    char rev[20];
    int n = 0;
    for (unsigned long v = static_cast<unsigned long>(getpid()); n == 0 || v != 0; v /= 10) rev[n++] = static_cast<char>('0' + v % 10);
    for (int i = 0; i < n; ++i) digits[i] = rev[n - 1 - i];
    digits[n] = '\0';
    execve(prog.c_str(), argv.data(), envp.data());
    int e = errno;
    std::fprintf(stderr, "leakalloc: cannot run %s: %s\n", prog.c_str(), std::strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  g_child = pid;
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw ToolError(std::string("waitpid: ") + std::strerror(errno));
  }
  g_child = 0;

  // The program's exit status is what the caller asked for; the report is extra and
  // its failure must not change the status.
  std::vector<DumpFile> dumps = find_dumps(out_dir, base, pid);
  std::vector<std::string> named;
  if (symbolize) named = symbolize_dumps(dumps, quiet);
  if (!quiet) {
    if (WIFEXITED(status))
      std::fprintf(stderr, "\nleakalloc: %s (pid %d) exited with status %d\n", base.c_str(), pid, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
      std::fprintf(stderr, "\nleakalloc: %s (pid %d) was killed by signal %d (%s)\n", base.c_str(), pid,
                   WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (dumps.empty()) {
      std::fprintf(stderr, "leakalloc: no dumps named %s/%s.%d.* were written (a program that ends by a "
                           "signal or _exit() writes no final dump)\n", out_dir.c_str(), base.c_str(), pid);
      size_t others = count_other_dumps(out_dir, base, pid);
      if (others > 0)
        std::fprintf(stderr, "leakalloc: %zu dump%s from other processes it started: %s/%s.<pid>.*\n", others,
                     others == 1 ? "" : "s", out_dir.c_str(), base.c_str());
    } else {
      std::fprintf(stderr, "leakalloc: %zu dump%s in %s/:\n", dumps.size(), dumps.size() == 1 ? "" : "s", out_dir.c_str());
      for (const DumpFile& d : dumps) std::fprintf(stderr, "  %s\n", d.path.c_str());
      for (const std::string& n : named)
        std::fprintf(stderr, "  %s (symbolized: go tool pprof needs no binary for it)\n", n.c_str());
      size_t others = count_other_dumps(out_dir, base, pid);
      if (others > 0)
        std::fprintf(stderr, "  (and %zu from other processes it started: %s/%s.<pid>.*)\n", others,
                     out_dir.c_str(), base.c_str());
      // Two or more dumps taken while the program ran: the report follows each stack
      // over them (the exit dump comes after the program's cleanup and is left out).
      size_t running = 0;
      std::vector<std::string> mine;
      for (const DumpFile& d : dumps) {
        mine.push_back(d.path);
        if (d.kind != 'f' && d.path.find(".lost.") == std::string::npos && d.pb) ++running;
      }
      if (running < 2) {
        running = 0;
        std::set<long> seqs;
        for (const DumpFile& d : dumps)
          if (d.kind != 'f' && d.path.find(".lost.") == std::string::npos) seqs.insert(d.seq);
        running = seqs.size();
      }
      if (running >= 2 && top > 0) {
        std::fprintf(stderr, "\n");
        ReportOptions ro;
        ro.age_ms = age_ms;
        ro.age_given = !age.empty();
        ro.top = top;
        try {
          std::fflush(stderr);
          print_trend(mine, ro, stderr, true);
          std::fprintf(stderr, "Full report: leakalloc report%s %s/%s.%d.*\n",
                       age.empty() ? "" : (" --age " + age).c_str(), out_dir.c_str(), base.c_str(), pid);
        } catch (const ToolError& e) {
          std::fprintf(stderr, "leakalloc: %s\n", e.what());
        }
        top = 0;  // the single-dump report below is not needed
      }
      // The last dump, the final one if there is one; protobuf first, for its ages.
      const DumpFile* pick = nullptr;
      for (const DumpFile& d : dumps) {
        if (!pick || d.seq > pick->seq || (d.seq == pick->seq && d.pb && !pick->pb)) pick = &d;
      }
      for (const DumpFile& d : dumps)
        if (d.kind == 'f' && (!pick || pick->kind != 'f' || (d.pb && !pick->pb))) pick = &d;
      if (top > 0) {
        std::fprintf(stderr, "\n");
        ReportOptions ro;
        ro.age_ms = age_ms;
        ro.top = top;
        ro.histogram = true;
        try {
          std::fflush(stderr);
          print_report(pick->path, ro, stderr);
          std::fprintf(stderr, "Full report: leakalloc report --age %s %s\n", age.empty() ? "0s" : age.c_str(),
                       pick->path.c_str());
        } catch (const ToolError& e) {
          std::fprintf(stderr, "leakalloc: %s\n", e.what());
        }
      }
    }
  }

  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
  // Die the same way, so that a shell sees "Terminated", not an exit status; but no
  // second core file.
  std::fflush(nullptr);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);
  return 128 + sig;
}

}  // namespace

}  // namespace leakalloc_tool
