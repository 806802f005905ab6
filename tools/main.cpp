// leakalloc: run a program under the allocator, and read the dumps it leaves.
//
// The tool is an ordinary program: it does not link libleakalloc, so reading a dump
// never perturbs a heap under study and the tool runs where the library is not built.
//
// The command line is CLI11's (tools/options.h): every subcommand registers its options
// and, once parsed, an Action that main() runs. Exit statuses: 0 for --help and
// --version; 2 when no subcommand or an unknown one is named; 1 for a bad option of a
// subcommand and for every ToolError the command throws; otherwise what the command
// returns (`run` passes its program's status through).
#include <cstdio>
#include <cstring>
#include <string>

#include "include/leakalloc/leakalloc.h"
#include "tools/options.h"
#include "tools/profile_data.h"

namespace {

const char kFooter[] =
    "`leakalloc COMMAND --help` lists a command's options; --help-all lists them all.\n"
    "A DUMP is a .pb.gz (pprof protobuf, carries ages and threads) or a .heap (gperftools\n"
    "text) file. Durations take ms, s, m or h; a bare number is seconds.";

// CLI11 says "--top: 1 required N missing" for an option given without its value.
std::string reword(const CLI::ParseError& e) {
  std::string msg = e.what();
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr) {
    size_t colon = msg.find(": ");
    if (colon != std::string::npos && msg.find(" required ", colon) != std::string::npos &&
        msg.size() > 8 && msg.compare(msg.size() - 8, 8, " missing") == 0)
      return msg.substr(0, colon) + " needs a value";
  }
  return msg;
}

// --help-all: the top-level help, then each command's, as help2man reads it to make the
// man page (tools/CMakeLists.txt): "*Command run*" opens a section, option lines are
// indented with two spaces, and CLI11's "Options:"/"Positionals:" headings are left out
// because help2man would move everything after them into one OPTIONS section.
std::string help_all(const CLI::App& app) {
  std::string out = app.help();
  for (const CLI::App* sub : app.get_subcommands({})) {
    out += "\n*Command " + sub->get_name() + "*\n";
    std::string text = sub->help("leakalloc");
    size_t pos = 0;
    bool blank = false, first = true;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      if (line == "Options:" || line == "Positionals:" || line.compare(0, 11, "  -h,--help") == 0) continue;
      if (line.empty()) {
        if (!blank) out += "\n";
        blank = true;
        continue;
      }
      out += line + "\n";
      if (first) out += "\n";  // the description is a paragraph of its own
      blank = first;
      first = false;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"leakalloc " LEAKALLOC_VERSION " - find the memory a program holds too long.\n"
               "Runs a program under libleakalloc, asks a running one for a heap dump, and reports\n"
               "the stacks that hold old memory.",
               "leakalloc"};
  app.get_formatter()->column_width(26);
  leakalloc_tool::Action action;
  leakalloc_tool::add_run_command(app, &action);
  leakalloc_tool::add_report_commands(app, &action);
  leakalloc_tool::add_dump_command(app, &action);
  leakalloc_tool::add_symbolize_command(app, &action);
  leakalloc_tool::add_serve_command(app, &action);
  // After the subcommands, which would inherit them.
  app.set_version_flag("--version", "leakalloc " LEAKALLOC_VERSION, "Print the version and exit");
  app.set_help_all_flag("--help-all", "Print the help of every command and exit");
  app.footer(kFooter);
  app.require_subcommand(1);

  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  if (!std::strcmp(argv[1], "help")) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(help_all(app).c_str(), stdout);
    return 0;
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::vector<CLI::App*> subs = app.get_subcommands();
    if (subs.empty()) {
      if (argv[1][0] != '-')
        std::fprintf(stderr, "leakalloc: unknown command \"%s\"\n", argv[1]);
      else
        std::fprintf(stderr, "leakalloc: %s\n", reword(e).c_str());
      std::fputs("Run `leakalloc --help` for the commands.\n", stderr);
      return 2;
    }
    std::string name = subs.front()->get_name();
    std::fprintf(stderr, "leakalloc: %s: %s\nRun `leakalloc %s --help` for its options.\n", name.c_str(),
                 reword(e).c_str(), name.c_str());
    return 1;
  }
  try {
    return action();
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
