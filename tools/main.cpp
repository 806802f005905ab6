// leakalloc: run a program under the allocator, and read the dumps it leaves.
//
// The tool is an ordinary program: it does not link libleakalloc, so reading a dump
// never perturbs a heap under study and the tool runs where the library is not built.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/commands.h"
#include "tools/profile_data.h"

namespace {

const char kUsage[] =
    "usage:\n"
    "  leakalloc run [--age 60s] [--sample N] [--interval 10s] [--out DIR] [--format heap+pb]\n"
    "                [--top N] [--quiet] [--no-symbolize] -- PROG [ARGS...]\n"
    "      run PROG with libleakalloc.so preloaded; exits with PROG's status, then lists\n"
    "      the dumps and ends with the report over all of them (on stderr). --interval\n"
    "      defaults to --age, else 10s; Python programs get PYTHONMALLOC=malloc. Each dump\n"
    "      gets a symbolized copy beside it (see symbolize) unless --no-symbolize\n"
    "  leakalloc report [--age 60s] [--top N] [--depth N] [--binary PATH] [--root DIR]\n"
    "                   [--no-histogram] [--format json] DUMP...|DIR\n"
    "      one dump: stacks holding memory older than --age, largest first, symbolised\n"
    "      (--root: the dumped process's files are under DIR, e.g. /proc/PID/root).\n"
    "      Several dumps of one process, or a directory of them: each stack over time,\n"
    "      its growth and a verdict (lost, growing, steady, young)\n"
    "  leakalloc diff [--top N] [--binary PATH] [--root DIR] [--format json] OLD NEW\n"
    "      stacks whose live bytes grew between two dumps of one process\n"
    "  leakalloc dump [--age 60s] [--format heap+pb] [--timeout 30s] [--top N] [--no-symbolize] PID\n"
    "      make a running process under leakalloc write a dump now, whatever it was\n"
    "      started with; prints the files, then the top of the report (on stderr), and\n"
    "      writes a symbolized copy beside the dump unless --no-symbolize.\n"
    "      Needs a debugger's permission over PID (its user with ptrace allowed, or root)\n"
    "  leakalloc symbolize [--binary PATH] [--root DIR] [-o OUT] DUMP...\n"
    "      write each dump as a .pb.gz that carries its own function names, files, lines\n"
    "      and inlined frames (default OUT: the dump's name with .sym.pb.gz), for go tool\n"
    "      pprof and profiling back ends that never see the program's files\n"
    "\n"
    "DUMP is a .pb.gz (pprof protobuf, carries ages and threads) or a .heap (gperftools\n"
    "text) file. Durations take ms, s, m or h; a bare number is seconds.\n"
    "Objects missing at their path, or rebuilt since the dump, are looked for by build\n"
    "id and name in the directories of $PPROF_BINARY_PATH (default ~/pprof/binaries).\n"
    "The library comes from $LEAKALLOC_LIB, else <prefix>/lib next to this program,\n"
    "else the build tree it was built in.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "run") return leakalloc_tool::cmd_run(args);
    if (cmd == "report") return leakalloc_tool::cmd_report(args);
    if (cmd == "diff") return leakalloc_tool::cmd_diff(args);
    if (cmd == "dump") return leakalloc_tool::cmd_dump(args);
    if (cmd == "symbolize") return leakalloc_tool::cmd_symbolize(args);
    std::fprintf(stderr, "leakalloc: unknown command \"%s\"\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const leakalloc_tool::ToolError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "leakalloc: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "leakalloc: internal error: %s\n", e.what());
    return 1;
  }
}
