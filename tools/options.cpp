// The shared option helpers of tools/options.h: the value checks of the options that
// several subcommands take, so that each is spelled and checked the same everywhere.
#include "tools/options.h"

#include <cstdlib>

#include "tools/commands.h"
#include "tools/profile_data.h"

namespace leakalloc_tool {

CLI::Option* add_duration(CLI::App* sub, const std::string& name, uint64_t* ms, const std::string& help) {
  return sub
      ->add_option_function<std::string>(
          name,
          [name, ms](const std::string& v) {
            if (!parse_duration_ms(v, ms))
              throw CLI::ValidationError(name, "bad duration \"" + v + "\" (e.g. 500ms, 60s, 5m, 2h)");
          },
          help)
      ->type_name("DURATION");
}

CLI::Option* add_number(CLI::App* sub, const std::string& name, size_t* out, size_t min, size_t max,
                        const std::string& what, const std::string& help) {
  return sub
      ->add_option_function<std::string>(
          name,
          [=](const std::string& v) {
            char* end = nullptr;
            unsigned long long n = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || v[0] == '-' || *end != '\0' || n < min || n > max)
              throw CLI::ValidationError(name, "expected " + what + ", got \"" + v + "\"");
            *out = static_cast<size_t>(n);
          },
          help)
      ->type_name("N");
}

CLI::Option* add_formats(CLI::App* sub, std::string* text, uint32_t* bits, const std::string& help) {
  return sub
      ->add_option_function<std::string>(
          "--format",
          [text, bits](const std::string& v) {
            if (!parse_formats(v, bits))
              throw CLI::ValidationError("--format", "expected heap, heap_v2 or pb joined by '+', got \"" + v + "\"");
            *text = v;
          },
          help)
      ->type_name("FORMATS");
}

void add_object_options(CLI::App* sub, ReportOptions* opt) {
  sub->add_option("--binary", opt->binary, "The executable the dump came from, when it is not at its path")
      ->type_name("PATH");
  sub->add_option_function<std::string>(
         "--root",
         [opt](const std::string& v) {
           opt->root = v;
           while (opt->root.size() > 1 && opt->root.back() == '/') opt->root.pop_back();
           if (opt->root == "/") opt->root.clear();
         },
         "The dumped process's files are under DIR (e.g. /proc/PID/root for a container)")
      ->type_name("DIR");
}

}  // namespace leakalloc_tool
