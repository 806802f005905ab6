// `leakalloc report` and `leakalloc diff`: aggregate a dump's samples by stack, rank,
// symbolise and print.
//
// Numbers printed are the dump's own values summed per stack (for sampled .heap dumps,
// unsampled with the formula in docs/FORMATS.md, per line, before summing), so that they
// agree with `go tool pprof -top` on the same file.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "tools/commands.h"
#include "tools/json_out.h"
#include "tools/options.h"
#include "tools/symbolize.h"

namespace leakalloc_tool {

namespace {

struct StackTotals {
  const std::vector<uint64_t>* pcs = nullptr;
  double count = 0, bytes = 0;            // blocks older than the age
  double all_count = 0, all_bytes = 0;    // every live block on this stack
  double oldest = -1, youngest = -1;      // of the blocks counted (seconds)
  std::map<std::string, double> threads;  // "name (tid N)" -> bytes
  // The reachability check's finding, at any age: lost with no lost block pointing to
  // them (direct), and reached only from lost blocks (indirect).
  double lost_count = 0, lost_bytes = 0, indirect_count = 0, indirect_bytes = 0;
  double lost_total() const { return lost_bytes + indirect_bytes; }
};

bool is_lost_dump(const std::string& path) {
  return ends_with(path, ".lost.heap") || ends_with(path, ".lost.pb.gz");
}

// The `.lost` dump written beside `path` by the same check (<name>.lost.heap beside
// <name>.heap, .lost.pb.gz beside .pb.gz), or "" when `path` is one itself or has none.
std::string lost_sibling(const std::string& path) {
  if (is_lost_dump(path)) return "";
  std::string sib;
  if (ends_with(path, ".heap")) sib = path.substr(0, path.size() - 5) + ".lost.heap";
  else if (ends_with(path, ".pb.gz")) sib = path.substr(0, path.size() - 6) + ".lost.pb.gz";
  FILE* f = sib.empty() ? nullptr : std::fopen(sib.c_str(), "rb");
  if (f == nullptr) return "";
  std::fclose(f);
  return sib;
}

// Adds the reachability check's finding to the stacks: the dump's own `reach` labels
// (a pb written with reach:true), else its `.lost` sibling; a `.lost` dump itself holds
// only lost blocks. Returns the file it came from, or "" when the dump has no
// reachability data.
std::string add_lost(const Profile& prof, const std::string& path,
                     std::map<std::vector<uint64_t>, StackTotals>* stacks) {
  auto add = [stacks](const Sample& s, bool from_lost_dump) {
    int kind = lost_kind(s, from_lost_dump);
    if (kind == 0) return;
    StackTotals& t = (*stacks)[s.pcs];
    (kind == 1 ? t.lost_bytes : t.indirect_bytes) += s.bytes;
    (kind == 1 ? t.lost_count : t.indirect_count) += s.count;
  };
  bool lost_dump = is_lost_dump(path);
  if (prof.has_reach || lost_dump) {
    for (const Sample& s : prof.samples) add(s, lost_dump);
    return path;
  }
  std::string sib = lost_sibling(path);
  if (sib.empty()) return "";
  Profile lost = read_dump(sib);
  for (const Sample& s : lost.samples) add(s, true);
  return sib;
}

std::string thread_key(const Sample& s) {
  std::string k = s.thread.empty() ? std::string("?") : s.thread;
  if (s.thread_id >= 0) k += " (tid " + std::to_string(s.thread_id) + ")";
  return k;
}

// Live bytes by age in doubling buckets: young churn piles up on the left, a leak
// builds a tail on the right.
void print_histogram(FILE* out, const Profile& prof, double age_s) {
  double max_age = 0;
  for (const Sample& s : prof.samples) max_age = std::max(max_age, s.age_s);
  std::vector<double> lo = {0};
  double edge = 1;
  while (edge <= max_age) {
    lo.push_back(edge);
    edge *= 2;
  }
  std::vector<double> old_b(lo.size()), young_b(lo.size());
  double total = 0;
  for (const Sample& s : prof.samples) {
    size_t b = 0;
    while (b + 1 < lo.size() && s.age_s >= lo[b + 1]) ++b;
    (s.age_s >= age_s ? old_b : young_b)[b] += s.bytes;
    total += s.bytes;
  }
  double peak = 0;
  for (size_t b = 0; b < lo.size(); ++b) peak = std::max(peak, old_b[b] + young_b[b]);
  std::fprintf(out, "Live bytes by age (# = older than %s, - = younger):\n", human_age(age_s).c_str());
  const int kWidth = 40;
  for (size_t b = 0; b < lo.size(); ++b) {
    std::string label = human_age(lo[b]) + "-" + (b + 1 < lo.size() ? human_age(lo[b + 1]) : human_age(edge));
    double sum = old_b[b] + young_b[b];
    int n_old = peak > 0 ? static_cast<int>(std::lround(old_b[b] / peak * kWidth)) : 0;
    int n_young = peak > 0 ? static_cast<int>(std::lround(sum / peak * kWidth)) - n_old : 0;
    if (n_old == 0 && old_b[b] > 0) n_old = 1;
    if (n_young <= 0 && young_b[b] > 0) n_young = 1;
    if (n_young < 0) n_young = 0;
    std::string bar = std::string(static_cast<size_t>(n_old), '#') + std::string(static_cast<size_t>(n_young), '-');
    std::fprintf(out, "  %12s |%-*s| %10s  %5.1f%%\n", label.c_str(), kWidth + 1, bar.c_str(),
                 human_bytes(sum).c_str(), total > 0 ? 100.0 * sum / total : 0.0);
  }
  std::fputc('\n', out);
}

}  // namespace

std::string fmt_count(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", std::round(v));
  return buf;
}

// "1 block", "2 blocks"
std::string blocks(double v) {
  std::string n = fmt_count(v);
  return n + (n == "1" || n == "-1" ? " block" : " blocks");
}

std::string frame_text(const Frame& f) {
  std::string s = f.function.empty() ? std::string("???") : simplify_function(f.function);
  if (!f.file.empty()) {
    s += " (" + f.file;
    if (f.line > 0) s += ":" + std::to_string(f.line);
    s += ")";
  } else if (!f.module.empty()) {
    char off[32];
    std::snprintf(off, sizeof off, "+0x%llx", static_cast<unsigned long long>(f.module_offset));
    s += " (in " + f.module + off + ")";
  }
  return s;
}

void print_stack(FILE* out, Symbolizer& sym, const std::vector<uint64_t>& pcs, size_t depth) {
  size_t printed = 0;
  for (size_t i = 0; i < pcs.size(); ++i) {
    const std::vector<Frame>& frames = sym.frames(pcs[i]);
    for (size_t j = 0; j < frames.size(); ++j) {
      if (printed == depth) {
        std::fprintf(out, "      ... %zu more frames\n", pcs.size() - i);
        return;
      }
      // pcs are return address - 1; show the return address as a debugger would.
      // One address can stand for several frames: the functions inlined at it, innermost
      // first, then the function the code really belongs to.
      const char* inl = j + 1 < frames.size() ? " [inlined]" : "";
      if (j == 0)
        std::fprintf(out, "      %s 0x%llx: %s%s\n", printed == 0 ? "at" : "by",
                     static_cast<unsigned long long>(pcs[i] + 1), frame_text(frames[j]).c_str(), inl);
      else
        std::fprintf(out, "      %s %*s  %s%s\n", printed == 0 ? "at" : "by", 14, "",
                     frame_text(frames[j]).c_str(), inl);
      ++printed;
    }
  }
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%.0f B", v);
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string human_age(double s) {
  char buf[32];
  if (s < 0) s = 0;
  if (s < 1 && s > 0) std::snprintf(buf, sizeof buf, "%.0fms", s * 1000);
  else if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", std::floor(s));
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(std::floor(s), 60));
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%.0fh%02.0fm", std::floor(s / 3600), std::floor(std::fmod(s, 3600) / 60));
  else std::snprintf(buf, sizeof buf, "%.0fd%02.0fh", std::floor(s / 86400), std::floor(std::fmod(s, 86400) / 3600));
  return buf;
}

// Why some frames show as file+offset: objects that could not be opened, and files that
// are not the objects the process ran (their build ID differs from the dump's).
void print_symbol_notes(const Symbolizer& sym, const ReportOptions& opt, FILE* out) {
  auto list = [](const std::vector<std::string>& files) {
    std::string s;
    for (const std::string& f : files) s += (s.empty() ? "" : ", ") + f;
    return s;
  };
  if (!sym.missing().empty())
    std::fprintf(out, "note: could not open %s; their frames show as file+offset (%sPPROF_BINARY_PATH=DIR:... "
                 "searches directories for them)\n", list(sym.missing()).c_str(),
                 opt.binary.empty() ? "--binary PATH names the executable; " : "");
  for (const std::string& f : sym.found())
    std::fprintf(out, "note: symbols of %s (from PPROF_BINARY_PATH)\n", f.c_str());
  for (const std::string& f : sym.debug_found())
    std::fprintf(out, "note: debug info of %s\n", f.c_str());
  if (!sym.replaced().empty())
    std::fprintf(out, "note: %s %s not the file the process ran (the build id differs from the dump's: rebuilt or "
                 "replaced since); their frames show as file+offset (%sPPROF_BINARY_PATH=DIR:... searches "
                 "directories for the right build)\n", list(sym.replaced()).c_str(),
                 sym.replaced().size() == 1 ? "is" : "are",
                 opt.binary.empty() ? "--binary PATH names the right executable; " : "");
}


void print_report(const std::string& path, const ReportOptions& opt, FILE* out) {
  Profile prof = read_dump(path);
  double age_s = static_cast<double>(opt.age_ms) / 1000.0;
  // A pb that holds every live block notes the process's age: the default "old".
  if (!opt.age_given && opt.age_ms == 0 && prof.writer_age_ms == 0 && prof.age_threshold_ms > 0)
    age_s = prof.age_threshold_ms / 1000.0;

  std::map<std::vector<uint64_t>, StackTotals> stacks;
  double live_count = 0, live_bytes = 0, old_count = 0, old_bytes = 0;
  for (const Sample& s : prof.samples) {
    StackTotals& t = stacks[s.pcs];
    t.all_count += s.count;
    t.all_bytes += s.bytes;
    live_count += s.count;
    live_bytes += s.bytes;
    if (prof.has_ages && s.age_s < age_s) continue;
    t.count += s.count;
    t.bytes += s.bytes;
    old_count += s.count;
    old_bytes += s.bytes;
    if (s.has_age) {
      t.oldest = t.oldest < 0 ? s.age_s : std::max(t.oldest, s.age_s);
      t.youngest = t.youngest < 0 ? s.age_s : std::min(t.youngest, s.age_s);
    }
    if (!s.thread.empty() || s.thread_id >= 0) t.threads[thread_key(s)] += s.bytes;
  }
  size_t live_stacks = stacks.size();
  std::string reach_source = add_lost(prof, path, &stacks);
  double lost_bytes = 0, lost_count = 0, indirect_bytes = 0;
  size_t lost_stacks = 0;
  std::vector<StackTotals*> ranked;
  for (auto& kv : stacks) {
    StackTotals& t = kv.second;
    t.pcs = &kv.first;
    lost_bytes += t.lost_total();
    lost_count += t.lost_count + t.indirect_count;
    indirect_bytes += t.indirect_bytes;
    lost_stacks += t.lost_total() > 0 ? 1 : 0;
    if (t.bytes > 0 || t.count > 0 || t.lost_total() > 0) ranked.push_back(&t);
  }
  // Which stack leaks: with a reachability check, the stacks holding lost blocks come
  // first, by lost bytes; then the rest, by bytes older than the age.
  std::stable_sort(ranked.begin(), ranked.end(), [](const StackTotals* a, const StackTotals* b) {
    if (a->lost_total() != b->lost_total()) return a->lost_total() > b->lost_total();
    if (a->bytes != b->bytes) return a->bytes > b->bytes;
    return a->count > b->count;
  });

  std::fprintf(out, "Leak report for %s\n", opt.shown.empty() ? path.c_str() : opt.shown.c_str());
  std::fprintf(out, "  format: %s, %s\n", prof.format.c_str(),
               prof.sampled ? ("sampled (mean period " + std::to_string(prof.period) +
                               " bytes): counts and bytes are estimates").c_str()
                            : "exact (every allocation recorded)");
  if (!prof.mappings.empty()) {
    std::string bin = opt.binary.empty() ? prof.mappings[0].path : opt.binary + " (--binary)";
    std::fprintf(out, "  binary: %s\n", bin.c_str());
  }
  // leakalloc's .heap writer puts one "key: value" per '#' line; show the telling ones.
  std::string writer, heap_age;
  for (const std::string& c : prof.comments) {
    if (c.compare(0, 17, "age_threshold_ms:") == 0) heap_age = c.substr(17);
    if (c.compare(0, 10, "dump_kind:") == 0 || c.compare(0, 10, "uptime_ms:") == 0)
      writer += (writer.empty() ? "" : ", ") + c;
    else if (c.find(':') == std::string::npos || c.compare(0, 1, "(") == 0 || prof.format[0] == 'p')
      std::fprintf(out, "  note: %s\n", c.c_str());
  }
  if (!writer.empty()) std::fprintf(out, "  dump: %s\n", writer.c_str());
  std::fprintf(out, "  live: %s bytes (%s) in %s blocks from %zu stacks\n", fmt_count(live_bytes).c_str(),
               human_bytes(live_bytes).c_str(), fmt_count(live_count).c_str(), live_stacks);
  if (!reach_source.empty()) {
    // A pb holds every live block; a .heap (and its .lost sibling) only those older than
    // the writer's age.
    bool all_ages = ends_with(reach_source, ".pb.gz");
    std::string indirect = indirect_bytes > 0 ? ", " + fmt_count(indirect_bytes) + " bytes of it reached only from lost blocks" : "";
    std::fprintf(out, "  lost: %s bytes (%s) in %s blocks from %zu stacks, %s%s; reachability check: %s\n",
                 fmt_count(lost_bytes).c_str(), human_bytes(lost_bytes).c_str(), fmt_count(lost_count).c_str(),
                 lost_stacks, all_ages ? "at any age" : "older than the writer's age", indirect.c_str(),
                 reach_source != path ? reach_source.c_str() : is_lost_dump(path) ? "this dump (a .lost dump)" : "this dump's reach labels");
  } else {
    std::fprintf(out, "  lost: not checked (reach:true, or `leakalloc dump --lost PID`, runs a reachability "
                      "check; old is not the same as lost)\n");
  }

  if (prof.has_ages) {
    std::fprintf(out, "  %s: %s bytes (%s) in %s blocks from %zu stacks\n\n",
                 age_s > 0 ? ("older than " + human_age(age_s)).c_str() : "at any age", fmt_count(old_bytes).c_str(), human_bytes(old_bytes).c_str(),
                 fmt_count(old_count).c_str(), ranked.size());
    if (opt.histogram && !prof.samples.empty()) print_histogram(out, prof, age_s);
  } else {
    // leakalloc's writer notes the age it filtered with; other writers keep every block.
    std::string held;
    uint64_t heap_age_ms = 0;
    size_t b = heap_age.find_first_not_of(' ');
    if (b != std::string::npos && parse_duration_ms(heap_age.substr(b) + "ms", &heap_age_ms))
      held = heap_age_ms == 0 ? "; the dump holds every live block"
                              : "; the dump holds only the blocks older than " + human_age(heap_age_ms / 1000.0) +
                                    " (the writer's age)";
    std::fprintf(out, "  ages: not recorded in this format%s.%s\n\n", held.c_str(),
                 opt.age_given ? " --age is ignored for it; use the .pb.gz dump for ages." : "");
  }

  if (ranked.empty()) {
    std::fprintf(out, "No live blocks%s.\n",
                 prof.has_ages && age_s > 0 ? (" older than " + human_age(age_s)).c_str() : "");
    return;
  }

  Symbolizer sym(prof, opt.binary, opt.root, opt.search);
  size_t shown = std::min(opt.top, ranked.size());
  for (size_t r = 0; r < shown; ++r) {
    const StackTotals& t = *ranked[r];
    std::fprintf(out, "#%zu: %s bytes (%s) in %s%s, stack %zu of %zu (%.1f%%)\n", r + 1,
                 fmt_count(t.bytes).c_str(), human_bytes(t.bytes).c_str(), blocks(t.count).c_str(),
                 prof.has_ages && age_s > 0 ? (" older than " + human_age(age_s)).c_str() : "", r + 1, ranked.size(),
                 old_bytes > 0 ? 100.0 * t.bytes / old_bytes : 0.0);
    if (prof.has_ages) {
      std::fprintf(out, "    ages: oldest %s, youngest %s", human_age(t.oldest).c_str(), human_age(t.youngest).c_str());
      if (t.all_bytes > t.bytes)
        std::fprintf(out, "; %s more bytes in %s younger on this stack",
                     fmt_count(t.all_bytes - t.bytes).c_str(), blocks(t.all_count - t.count).c_str());
      std::fputc('\n', out);
    }
    if (t.lost_total() > 0) {
      std::fprintf(out, "    lost: %s bytes in %s", fmt_count(t.lost_total()).c_str(),
                   blocks(t.lost_count + t.indirect_count).c_str());
      if (t.indirect_bytes > 0)
        std::fprintf(out, " (%s bytes in %s of them reached only from lost blocks)", fmt_count(t.indirect_bytes).c_str(),
                     blocks(t.indirect_count).c_str());
      std::fputc('\n', out);
    }
    if (!t.threads.empty()) {
      std::string list;
      for (const auto& th : t.threads) list += (list.empty() ? "" : ", ") + th.first;
      std::fprintf(out, "    threads: %s\n", list.c_str());
    }
    print_stack(out, sym, *t.pcs, opt.depth);
    std::fputc('\n', out);
  }
  if (ranked.size() > shown) {
    double rest = 0, rest_n = 0;
    for (size_t r = shown; r < ranked.size(); ++r) {
      rest += ranked[r]->bytes;
      rest_n += ranked[r]->count;
    }
    std::fprintf(out, "... and %zu more stacks holding %s bytes in %s blocks (--top N shows more)\n",
                 ranked.size() - shown, fmt_count(rest).c_str(), fmt_count(rest_n).c_str());
  }
  print_symbol_notes(sym, opt, out);
}

namespace {

int report_command(const ReportOptions& opt, const std::vector<std::string>& files) {
  if (is_series(files)) print_trend(files, opt, stdout, true);
  else if (opt.json) print_report_json(files[0], opt, stdout);
  else print_report(files[0], opt, stdout);
  return 0;
}

int diff_command(const ReportOptions& opt, const std::vector<std::string>& files) {
  Profile old_p = read_dump(files[0]);
  Profile new_p = read_dump(files[1]);

  struct Pair {
    double old_count = 0, old_bytes = 0, new_count = 0, new_bytes = 0;
  };
  std::map<std::vector<uint64_t>, Pair> by_stack;
  double old_total = 0, new_total = 0;
  for (const Sample& s : old_p.samples) {
    by_stack[s.pcs].old_count += s.count;
    by_stack[s.pcs].old_bytes += s.bytes;
    old_total += s.bytes;
  }
  for (const Sample& s : new_p.samples) {
    by_stack[s.pcs].new_count += s.count;
    by_stack[s.pcs].new_bytes += s.bytes;
    new_total += s.bytes;
  }
  std::vector<std::pair<const std::vector<uint64_t>*, Pair>> grew;
  size_t shrank = 0, flat = 0;
  for (const auto& kv : by_stack) {
    double d = kv.second.new_bytes - kv.second.old_bytes;
    // Sampled estimates wobble by rounding; under a byte is no growth.
    if (d >= 0.5) grew.push_back({&kv.first, kv.second});
    else if (d <= -0.5) ++shrank;
    else ++flat;
  }
  std::stable_sort(grew.begin(), grew.end(), [](const auto& a, const auto& b) {
    return a.second.new_bytes - a.second.old_bytes > b.second.new_bytes - b.second.old_bytes;
  });

  bool same_process = old_p.mappings.empty() || new_p.mappings.empty() ||
                      (old_p.mappings[0].start == new_p.mappings[0].start && old_p.mappings[0].path == new_p.mappings[0].path);
  if (opt.json) {
    Symbolizer sym(new_p, opt.binary, opt.root, opt.search);
    nlohmann::ordered_json j;
    j["schema"] = "leakalloc-diff/1";
    j["old"] = {{"path", files[0]}, {"live_bytes", old_total}};
    j["new"] = {{"path", files[1]}, {"live_bytes", new_total}};
    j["same_process"] = same_process;
    j["grew"] = grew.size();
    j["shrank"] = shrank;
    j["unchanged"] = flat;
    j["stacks"] = nlohmann::ordered_json::array();
    for (size_t r = 0; r < std::min(opt.top, grew.size()); ++r) {
      const Pair& p = grew[r].second;
      j["stacks"].push_back({{"frames", frames_json(sym, *grew[r].first)},
                             {"old_bytes", p.old_bytes}, {"new_bytes", p.new_bytes},
                             {"old_count", p.old_count}, {"new_count", p.new_count},
                             {"growth_bytes", p.new_bytes - p.old_bytes}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("Growth from %s to %s\n", files[0].c_str(), files[1].c_str());
  std::printf("  live bytes: %s -> %s (%+.0f)\n", fmt_count(old_total).c_str(), fmt_count(new_total).c_str(),
              std::round(new_total) - std::round(old_total));
  std::printf("  stacks: %zu grew, %zu shrank, %zu unchanged\n", grew.size(), shrank, flat);
  // Stacks are matched by raw addresses: only meaningful within one process.
  if (!same_process)
    std::printf("  warning: the executables are mapped differently: these dumps are not from one "
                "process, so stacks do not match by address (use `go tool pprof -base` across runs)\n");
  std::printf("\n");
  if (grew.empty()) {
    std::printf("No stack grew.\n");
    return 0;
  }
  Symbolizer sym(new_p, opt.binary, opt.root, opt.search);
  size_t shown = std::min(opt.top, grew.size());
  for (size_t r = 0; r < shown; ++r) {
    const Pair& p = grew[r].second;
    std::printf("#%zu: +%s bytes (%s), %+.0f %s: %s -> %s bytes, %s -> %s blocks\n", r + 1,
                fmt_count(p.new_bytes - p.old_bytes).c_str(), human_bytes(p.new_bytes - p.old_bytes).c_str(),
                std::round(p.new_count - p.old_count), std::fabs(std::round(p.new_count - p.old_count)) == 1 ? "block" : "blocks", fmt_count(p.old_bytes).c_str(),
                fmt_count(p.new_bytes).c_str(), fmt_count(p.old_count).c_str(), fmt_count(p.new_count).c_str());
    print_stack(stdout, sym, *grew[r].first, opt.depth);
    std::printf("\n");
  }
  if (grew.size() > shown) std::printf("... and %zu more stacks grew (--top N shows more)\n", grew.size() - shown);
  print_symbol_notes(sym, opt, stdout);
  return 0;
}

const char kDumpNotes[] =
    "A DUMP is a .pb.gz (pprof protobuf, carries ages and threads) or a .heap (gperftools text)\n"
    "file. Objects missing at their path, or rebuilt since the dump, are looked for by build id\n"
    "and name in the directories of $PPROF_BINARY_PATH (default ~/pprof/binaries).\n"
    "Durations take ms, s, m or h; a bare number is seconds.";

// The options report and diff share (diff has no --age: it compares every live block).
void add_reading_options(CLI::App* sub, ReportOptions* opt) {
  add_number(sub, "--top", &opt->top, 1, 1000000, "a positive number", "Stacks shown (default 10)");
  add_number(sub, "--depth", &opt->depth, 1, 10000, "a positive number", "Frames shown per stack (default 16)");
  add_object_options(sub, opt);
  sub->add_option_function<std::string>(
         "--format",
         [opt](const std::string& v) {
           if (v != "json" && v != "text") throw CLI::ValidationError("--format", "expected text or json, got \"" + v + "\"");
           opt->json = v == "json";
         },
         "text (default) or json")
      ->type_name("FORMAT");
}

}  // namespace

void add_report_commands(CLI::App& app, Action* action) {
  struct Args {
    ReportOptions opt;
    std::vector<std::string> files;
  };
  auto r = std::make_shared<Args>();
  CLI::App* report = app.add_subcommand("report", "The stacks that hold memory older than --age, largest first");
  report->footer(std::string(
      "One dump: prints the stacks that hold live memory older than --age, largest first, with\n"
      "their functions, files and lines, and a histogram of live bytes by age.\n"
      "Several dumps of one process, or a directory of them: follows each stack over time, with\n"
      "its growth and a verdict (lost, growing, steady, young).\n") + kDumpNotes);
  add_duration(report, "--age", &r->opt.age_ms,
               "Only blocks at least this old (default: the age a complete pb dump notes, else 0)")
      ->each([r](const std::string&) { r->opt.age_given = true; });
  add_reading_options(report, &r->opt);
  report->add_flag_callback("--no-histogram", [r] { r->opt.histogram = false; },
                            "Leave out the histogram of live bytes by age");
  report->add_option("DUMP", r->files, "Dump files (.pb.gz or .heap), or a directory of them")->required()->type_name("");
  report->callback([r, action] { *action = [r] { return report_command(r->opt, r->files); }; });

  auto d = std::make_shared<Args>();
  CLI::App* diff = app.add_subcommand("diff", "The stacks whose live bytes grew between two dumps");
  diff->footer(std::string(
      "Compares two dumps of one process (OLD then NEW) stack by stack and prints the stacks\n"
      "whose live bytes grew, most first.\n") + kDumpNotes);
  add_reading_options(diff, &d->opt);
  diff->add_option("OLD_NEW", d->files, "Two dumps of one process, the older first")->required()->expected(2)->type_name("");
  diff->callback([d, action] { *action = [d] { return diff_command(d->opt, d->files); }; });
}

}  // namespace leakalloc_tool
