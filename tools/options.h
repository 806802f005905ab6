// The options the subcommands share, on CLI11 (Debian's libcli11-dev).
//
// Contract: each helper adds one option to a subcommand and, when the option is given,
// parses its value into the caller's variable during CLI::App::parse; a bad value throws
// CLI::ValidationError whose text is "--name: <what is wrong>", the wording the tool
// used before CLI11 (tests/tools checks it). Nothing here runs after parsing.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace leakalloc_tool {

// What a parsed subcommand does; main() runs it once parsing succeeded, so that its
// ToolError is reported as a failure of the command, not of the command line.
using Action = std::function<int()>;

// Each adds its subcommand(s) to `app` and sets *action when one of them is parsed.
void add_run_command(CLI::App& app, Action* action);
void add_report_commands(CLI::App& app, Action* action);  // report and diff
void add_dump_command(CLI::App& app, Action* action);
void add_symbolize_command(CLI::App& app, Action* action);
void add_serve_command(CLI::App& app, Action* action);

// A duration: 500ms, 60s, 5m, 2h; a bare number is seconds.
CLI::Option* add_duration(CLI::App* sub, const std::string& name, uint64_t* ms, const std::string& help);
// A whole number in [min, max]; `what` words the error ("a number", "a positive number").
CLI::Option* add_number(CLI::App* sub, const std::string& name, size_t* out, size_t min, size_t max,
                        const std::string& what, const std::string& help);
// heap, heap_v2, pb joined by '+'; *text keeps the spelling, *bits the remote-protocol bits.
CLI::Option* add_formats(CLI::App* sub, std::string* text, uint32_t* bits, const std::string& help);

// --binary PATH and --root DIR: where the objects a dump names are read from (report,
// diff, symbolize).
struct ReportOptions;
void add_object_options(CLI::App* sub, ReportOptions* opt);

}  // namespace leakalloc_tool
