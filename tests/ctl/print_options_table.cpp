// Prints README.md's options table and control-tree table from the data they document
// (LEAKALLOC_OPTIONS in config/options.h, the tree in ctl/ctl.cpp), and checks README.md.
//
//   print_options_table options             the options table (markdown)
//   print_options_table mallctl             the mallctl leaves table (markdown)
//   print_options_table check README.md S   compare README's section S (options or
//                                           mallctl) between <!-- S:begin --> and
//                                           <!-- S:end --> with the generated table
//   print_options_table check-file F S      compare file F, whole, with table S
#include <stdio.h>
#include <string.h>

#include <fstream>
#include <sstream>
#include <string>

#include "ctl/ctl.h"
#include "config/options.h"

using namespace leakalloc;

namespace {

std::string escape(const char* s) {
  std::string out;
  for (; *s != '\0'; ++s) {
    // '|' would end the cell; <prefix> would be read as an HTML tag and vanish.
    if (*s == '|') out += "\\|";
    else if (*s == '<') out += "&lt;";
    else if (*s == '>') out += "&gt;";
    else out += *s;
  }
  return out;
}

std::string value_text(const OptionDesc& d) {
  switch (d.type) {
    case OptType::kBool: return "true/false, yes/no, on/off, 1/0";
    case OptType::kInt: return "integer " + std::to_string(d.min) + " to " + std::to_string(d.max);
    case OptType::kDuration: return "duration: 500ms, 60s, 2h (bare number = s)";
    case OptType::kString: return "text, 1 to " + std::to_string(kPrefixMax - 1) + " bytes";
    case OptType::kFormat: return "heap, heap_v2, pb joined by +";
    case OptType::kSignal: return "signal name (USR2, SIGUSR2), number, or none";
    case OptType::kUnwind: return "libunwind or fp";
  }
  return "?";
}

struct WritableFinder {
  std::string want;
  bool found = false;
};

std::string runtime_text(const OptionDesc& d) {
  if (!d.runtime) return "no";
  WritableFinder f;
  f.want = std::string("prof.") + d.key;
  ctl::for_each_leaf(
      [](void* ctx, const ctl::LeafInfo& l) {
        WritableFinder* w = static_cast<WritableFinder*>(ctx);
        if (w->want == l.name && l.access != ctl::Access::kRead) w->found = true;
      },
      &f);
  return f.found ? "`" + f.want + "`" : "yes";
}

std::string options_table() {
  options_reset_defaults();
  std::ostringstream o;
  o << "| key | value | default | `opt.<key>` type | set at run time | meaning |\n";
  o << "| --- | --- | --- | --- | --- | --- |\n";
  for (int i = 0; i < kOptCount; ++i) {
    const OptionDesc& d = kOptionTable[i];
    char def[kPrefixMax + 16];
    size_t n = option_format(static_cast<OptId>(i), def, sizeof def);
    ctl::ValueType t = ctl::opt_value_type(d.type, d.min);
    std::string type = std::string("`") + ctl::type_name(t) + "`";
    if (d.type == OptType::kDuration) type += " (ms)";
    if (d.type == OptType::kSignal) type += " (signal number, 0 = none)";
    o << "| `" << d.key << "` | " << value_text(d) << " | `" << std::string(def, n) << "` | "
      << type << " | " << runtime_text(d) << " | " << escape(d.doc) << " |\n";
  }
  return o.str();
}

bool is_option_mirror(const char* name) {
  if (strncmp(name, "opt.", 4) != 0) return false;
  for (int i = 0; i < kOptCount; ++i)
    if (strcmp(name + 4, kOptionTable[i].key) == 0) return true;
  return false;
}

std::string mallctl_table() {
  std::ostringstream o;
  o << "| name | type | access | meaning |\n";
  o << "| --- | --- | --- | --- |\n";
  struct Ctx {
    std::ostringstream* o;
    bool opt_row_done;
  } ctx{&o, false};
  ctl::for_each_leaf(
      [](void* p, const ctl::LeafInfo& l) {
        Ctx* c = static_cast<Ctx*>(p);
        if (is_option_mirror(l.name)) {
          if (!c->opt_row_done)
            *c->o << "| `opt.<key>` | see the options table | r | every option's value, read-only |\n";
          c->opt_row_done = true;
          return;
        }
        const char* access = l.access == ctl::Access::kRead ? "r"
                           : l.access == ctl::Access::kWrite ? "w" : "rw";
        *c->o << "| `" << l.name << "` | `" << ctl::type_name(l.type) << "` | " << access
              << " | " << escape(l.doc) << " |\n";
      },
      &ctx);
  return o.str();
}

std::string table(const std::string& which) {
  if (which == "options") return options_table();
  if (which == "mallctl") return mallctl_table();
  fprintf(stderr, "unknown table '%s' (options or mallctl)\n", which.c_str());
  return "";
}

bool read_file(const char* path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  *out = s.str();
  return true;
}

std::string trim_blank_lines(std::string s) {
  while (!s.empty() && (s.front() == '\n' || s.front() == '\r')) s.erase(0, 1);
  while (s.size() >= 2 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '\n') s.pop_back();
  if (!s.empty() && s.back() != '\n') s += '\n';
  return s;
}

int report(const std::string& what, const std::string& have, const std::string& want) {
  if (have == want) {
    printf("%s matches the generated table\n", what.c_str());
    return 0;
  }
  fprintf(stderr, "%s differs from the generated table.\n--- have ---\n%s--- want ---\n%s",
          what.c_str(), have.c_str(), want.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2) {
    std::string t = table(argv[1]);
    if (t.empty()) return 2;
    fputs(t.c_str(), stdout);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "check") == 0) {
    std::string readme, which = argv[3];
    if (!read_file(argv[2], &readme)) {
      fprintf(stderr, "cannot read %s\n", argv[2]);
      return 1;
    }
    std::string begin = "<!-- " + which + ":begin -->", end = "<!-- " + which + ":end -->";
    size_t b = readme.find(begin), e = readme.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b) {
      fprintf(stderr, "%s has no section between '%s' and '%s'; paste tests/ctl/%s_table.md there\n",
              argv[2], begin.c_str(), end.c_str(), which.c_str());
      return 1;
    }
    b += begin.size();
    return report(std::string(argv[2]) + " section " + which,
                  trim_blank_lines(readme.substr(b, e - b)), table(which));
  }
  if (argc == 4 && strcmp(argv[1], "check-file") == 0) {
    std::string text;
    if (!read_file(argv[2], &text)) {
      fprintf(stderr, "cannot read %s\n", argv[2]);
      return 1;
    }
    return report(argv[2], text, table(argv[3]));
  }
  fprintf(stderr, "usage: %s options|mallctl | check README.md options|mallctl | check-file FILE options|mallctl\n",
          argv[0]);
  return 2;
}
