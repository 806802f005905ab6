// `leakalloc report` over several dumps of one process: each stack followed over time,
// one verdict per stack, as text or JSON (docs/report.schema.json).
//
// Contract. The series is the dumps of ONE process (the pid in the file names), one per
// dump sequence number: the .pb.gz when both formats exist (it carries ages, reach labels
// and lifetimes), else the .heap; a `.lost` sibling only lends its lost blocks to the
// dump it belongs to. Time is the writer's uptime (its comment), else the file's mtime.
// Every number is the dumps' own values summed per stack, as `report` prints for one.
//
// Verdicts, first match wins (docs/DESIGN.md "Verdicts" has the reasons):
//   lost     the latest dump with reachability data has direct or indirect lost blocks
//            on the stack; without such data no stack gets it, and the report says so.
//   growing  three or more dumps, a positive least-squares slope of live bytes over
//            time, live bytes rose in more than half of the intervals, and the fitted
//            growth over the whole span is at least 10% of the stack's largest value
//            (so the jitter of a full cache with random eviction is not growth).
//   young    no live block older than the age (--age, else the writer's, else the
//            median interval between dumps: a block that outlived one interval is old).
//   steady   old blocks, flat: tables, pools, bounded caches.
//   unknown  a single dump with old blocks and no reachability data: no trend to judge.
// Ranked: lost by lost bytes, growing by rate, steady and unknown by old bytes, young
// by live bytes.
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tools/commands.h"
#include "tools/json_out.h"
#include "tools/symbolize.h"

namespace leakalloc_tool {

namespace {

// <prefix>.<pid>.<seq>.<kind><kseq>[.lost].(heap|pb.gz), parsed from the right so that
// the prefix may hold dots.
struct DumpName {
  std::string path, prefix;
  long pid = -1, seq = -1;
  char kind = '?';
  bool pb = false, lost = false;
};

bool parse_dump_name(const std::string& path, DumpName* out) {
  std::string name = path.substr(path.rfind('/') + 1);
  DumpName d;
  d.path = path;
  auto ends = [&](const char* suf) {
    size_t n = std::strlen(suf);
    return name.size() > n && name.compare(name.size() - n, n, suf) == 0;
  };
  if (ends(".pb.gz")) {
    d.pb = true;
    name.resize(name.size() - 6);
  } else if (ends(".heap")) {
    name.resize(name.size() - 5);
  } else {
    return false;
  }
  if (ends(".lost")) {
    d.lost = true;
    name.resize(name.size() - 5);
  }
  auto last = [&](std::string* part) {
    size_t dot = name.rfind('.');
    if (dot == std::string::npos) return false;
    *part = name.substr(dot + 1);
    name.resize(dot);
    return !part->empty();
  };
  auto number = [](const std::string& s, long* v) {
    char* end = nullptr;
    *v = std::strtol(s.c_str(), &end, 10);
    return !s.empty() && *end == '\0' && *v >= 0;
  };
  std::string kind, seq, pid;
  long kseq;
  if (!last(&kind) || !last(&seq) || !last(&pid)) return false;
  if (!std::isalpha(static_cast<unsigned char>(kind[0])) || !number(kind.substr(1), &kseq)) return false;
  if (!number(seq, &d.seq) || !number(pid, &d.pid) || name.empty()) return false;
  d.kind = kind[0];
  d.prefix = name;
  *out = d;
  return true;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

double mtime_ms(const std::string& p) {
  struct stat st;
  if (stat(p.c_str(), &st) != 0) return 0;
  return static_cast<double>(st.st_mtim.tv_sec) * 1e3 + static_cast<double>(st.st_mtim.tv_nsec) / 1e6;
}

struct Series {
  std::vector<DumpName> dumps;            // one per sequence number, by sequence
  std::map<long, DumpName> lost;          // seq -> .lost sibling
  std::vector<std::string> left_out;      // exit dumps left out, for a note
  long pid = -1;
  std::string prefix;
};

// Gathers the dumps named by `paths` (files, or directories whose dumps are all taken).
Series gather(const std::vector<std::string>& paths, bool exclude_final) {
  std::vector<DumpName> all;
  for (const std::string& p : paths) {
    if (is_dir(p)) {
      DIR* d = opendir(p.c_str());
      if (!d) throw ToolError(p + ": " + std::strerror(errno));
      while (dirent* e = readdir(d)) {
        DumpName n;
        if (parse_dump_name(p + "/" + e->d_name, &n)) all.push_back(n);
      }
      closedir(d);
    } else {
      DumpName n;
      if (!parse_dump_name(p, &n)) {
        // Not named like leakalloc's dumps: still one point of the series, in the given order.
        n.path = p;
        n.seq = static_cast<long>(all.size());
        n.pb = p.size() > 6 && p.compare(p.size() - 6, 6, ".pb.gz") == 0;
      }
      all.push_back(n);
    }
  }
  std::set<std::pair<std::string, long>> procs;
  for (const DumpName& d : all) procs.insert({d.prefix, d.pid});
  if (procs.size() > 1) {
    std::string list;
    for (const auto& pr : procs)
      list += "\n  " + (pr.first.empty() ? std::string("(unnamed)") : pr.first) +
              (pr.second >= 0 ? "." + std::to_string(pr.second) + ".*" : std::string());
    throw ToolError("these dumps come from " + std::to_string(procs.size()) +
                    " processes; a trend needs the dumps of one (name its files, e.g. PREFIX.PID.*):" + list);
  }
  Series s;
  if (all.empty()) throw ToolError("no dumps found in " + paths[0] + " (files named PREFIX.PID.SEQ.KIND.heap or .pb.gz)");
  s.pid = all[0].pid;
  s.prefix = all[0].prefix;
  std::map<long, DumpName> by_seq;
  for (const DumpName& d : all) {
    if (d.lost) {
      auto it = s.lost.find(d.seq);
      if (it == s.lost.end() || (d.pb && !it->second.pb)) s.lost[d.seq] = d;
      continue;
    }
    auto it = by_seq.find(d.seq);
    if (it == by_seq.end() || (d.pb && !it->second.pb)) by_seq[d.seq] = d;
  }
  size_t others = 0;
  for (const auto& kv : by_seq) others += kv.second.kind != 'f';
  for (const auto& kv : by_seq) {
    if (exclude_final && kv.second.kind == 'f' && others >= 2) {
      s.left_out.push_back(kv.second.path);
      continue;
    }
    s.dumps.push_back(kv.second);
  }
  if (s.dumps.empty()) throw ToolError("no dumps found in " + paths[0] + " (only .lost dumps)");
  return s;
}

struct StackTrend {
  std::vector<uint64_t> pcs;
  std::vector<double> bytes, counts;  // live, per dump
  double old_bytes = 0, old_count = 0;  // last dump, at least the age
  double oldest_s = -1;                 // last dump
  double lost_bytes = 0, lost_count = 0, indirect_bytes = 0, indirect_count = 0;
  double slope = 0;                     // bytes per second
  size_t rose = 0, intervals = 0;
  std::vector<std::pair<double, double>> lifetimes;  // (bucket lower edge ms, count)
  double freed = 0, p50_ms = -1, p99_ms = -1;
  std::map<std::string, double> threads;
  std::string verdict;
  double rank_key = 0;
};

// Upper edge of the bucket that holds the q-th quantile: "q of the freed blocks lived
// less than this".
double lifetime_quantile(const std::vector<std::pair<double, double>>& buckets, double total, double q) {
  double seen = 0;
  for (const auto& b : buckets) {
    seen += b.second;
    if (seen >= q * total) return b.first == 0 ? 1 : 2 * b.first;
  }
  return buckets.empty() ? -1 : 2 * buckets.back().first;
}

struct Analysis {
  Series series;
  std::vector<Profile> profs;
  std::vector<double> t_s;  // seconds since the first dump's process start (uptime)
  double age_s = 0;
  std::string age_source;
  int reach_dump = -1;      // latest dump with reachability data
  int lifetime_dump = -1;   // latest dump with lifetimes
  std::vector<StackTrend> stacks;  // ranked
};

void add_lost(StackTrend* t, const Sample& s, bool from_lost_dump) {
  int kind = lost_kind(s, from_lost_dump);
  if (kind == 2) {
    t->indirect_bytes += s.bytes;
    t->indirect_count += s.count;
  } else if (kind == 1) {
    t->lost_bytes += s.bytes;
    t->lost_count += s.count;
  }
}

Analysis analyse(const std::vector<std::string>& paths, const ReportOptions& opt, bool exclude_final) {
  Analysis a;
  a.series = gather(paths, exclude_final);
  for (const DumpName& d : a.series.dumps) a.profs.push_back(read_dump(d.path));
  size_t n = a.profs.size();
  bool have_uptime = true;
  for (const Profile& p : a.profs) have_uptime = have_uptime && p.uptime_ms >= 0;
  for (size_t i = 0; i < n; ++i)
    a.t_s.push_back((have_uptime ? a.profs[i].uptime_ms : mtime_ms(a.series.dumps[i].path)) / 1e3);
  if (!have_uptime) {
    double t0 = *std::min_element(a.t_s.begin(), a.t_s.end());
    for (double& t : a.t_s) t -= t0;
  }

  // The age that makes a block old.
  if (opt.age_given) {
    a.age_s = static_cast<double>(opt.age_ms) / 1e3;
    a.age_source = "--age";
  } else if (opt.age_ms > 0) {
    a.age_s = static_cast<double>(opt.age_ms) / 1e3;
    a.age_source = "the run's --age";
  } else if (a.profs.back().age_threshold_ms > 0) {
    a.age_s = a.profs.back().age_threshold_ms / 1e3;
    a.age_source = "the dumps' age";
  } else if (n >= 2) {
    std::vector<double> gaps;
    for (size_t i = 1; i < n; ++i) gaps.push_back(a.t_s[i] - a.t_s[i - 1]);
    std::sort(gaps.begin(), gaps.end());
    a.age_s = gaps[gaps.size() / 2];
    a.age_source = "the median interval between dumps";
  } else {
    a.age_s = 0;
    a.age_source = "none given";
  }

  std::map<std::vector<uint64_t>, StackTrend> by;
  auto at = [&](const std::vector<uint64_t>& pcs) -> StackTrend& {
    StackTrend& t = by[pcs];
    if (t.bytes.empty()) {
      t.pcs = pcs;
      t.bytes.assign(n, 0);
      t.counts.assign(n, 0);
    }
    return t;
  };
  for (size_t i = 0; i < n; ++i) {
    for (const Sample& s : a.profs[i].samples) {
      StackTrend& t = at(s.pcs);
      t.bytes[i] += s.bytes;
      t.counts[i] += s.count;
    }
    if (a.profs[i].has_reach || a.series.lost.count(a.series.dumps[i].seq)) a.reach_dump = static_cast<int>(i);
    if (a.profs[i].has_lifetimes) a.lifetime_dump = static_cast<int>(i);
  }
  const Profile& last = a.profs.back();
  for (const Sample& s : last.samples) {
    StackTrend& t = at(s.pcs);
    if (!last.has_ages || s.age_s >= a.age_s) {
      t.old_bytes += s.bytes;
      t.old_count += s.count;
    }
    if (s.has_age) t.oldest_s = std::max(t.oldest_s, s.age_s);
    if (!s.thread.empty() || s.thread_id >= 0) {
      std::string k = s.thread.empty() ? std::string("?") : s.thread;
      if (s.thread_id >= 0) k += " (tid " + std::to_string(s.thread_id) + ")";
      t.threads[k] += s.bytes;
    }
  }
  if (a.reach_dump >= 0) {
    const Profile& rp = a.profs[a.reach_dump];
    auto lit = a.series.lost.find(a.series.dumps[a.reach_dump].seq);
    if (rp.has_reach) {
      for (const Sample& s : rp.samples)
        add_lost(&at(s.pcs), s, false);
    } else if (lit != a.series.lost.end()) {
      Profile lp = read_dump(lit->second.path);
      for (const Sample& s : lp.samples) add_lost(&at(s.pcs), s, true);
    }
  }
  if (a.lifetime_dump >= 0) {
    std::map<std::vector<uint64_t>, std::map<double, double>> hist;
    for (const LifetimeSample& l : a.profs[a.lifetime_dump].lifetimes) hist[l.pcs][l.lifetime_ms] += l.count;
    for (auto& kv : hist) {
      StackTrend& t = at(kv.first);
      for (const auto& b : kv.second) {
        t.lifetimes.push_back(b);
        t.freed += b.second;
      }
      if (t.freed > 0) {
        t.p50_ms = lifetime_quantile(t.lifetimes, t.freed, 0.5);
        t.p99_ms = lifetime_quantile(t.lifetimes, t.freed, 0.99);
      }
    }
  }

  double mean_t = 0;
  for (double t : a.t_s) mean_t += t / static_cast<double>(n);
  double var_t = 0;
  for (double t : a.t_s) var_t += (t - mean_t) * (t - mean_t);
  double span = a.t_s.back() - a.t_s.front();
  for (auto& kv : by) {
    StackTrend& t = kv.second;
    double mean_b = 0, peak = 0;
    for (double b : t.bytes) {
      mean_b += b / static_cast<double>(n);
      peak = std::max(peak, b);
    }
    double cov = 0;
    for (size_t i = 0; i < n; ++i) cov += (a.t_s[i] - mean_t) * (t.bytes[i] - mean_b);
    t.slope = var_t > 0 ? cov / var_t : 0;
    // Rounding noise of a flat series (a few 1e-28): under a byte over the span is flat.
    if (std::fabs(t.slope * (a.t_s.back() - a.t_s.front())) < 0.5) t.slope = 0;
    t.intervals = n - 1;
    // Sampled estimates wobble by rounding; under a byte is not a rise.
    for (size_t i = 1; i < n; ++i) t.rose += t.bytes[i] - t.bytes[i - 1] >= 0.5;
    bool lost = a.reach_dump >= 0 && t.lost_bytes + t.indirect_bytes > 0;
    bool growing = n >= 3 && t.slope > 0 && 2 * t.rose > t.intervals && t.slope * span >= 0.1 * peak;
    double live = t.bytes.back();
    if (lost) {
      t.verdict = "lost";
      t.rank_key = t.lost_bytes + t.indirect_bytes;
    } else if (live <= 0 && t.lost_bytes == 0) {
      continue;  // nothing live at the end: freed, not a suspect
    } else if (growing) {
      t.verdict = "growing";
      t.rank_key = t.slope;
    } else if (t.old_bytes <= 0) {
      t.verdict = "young";
      t.rank_key = live;
    } else {
      t.verdict = n >= 2 ? "steady" : "unknown";
      t.rank_key = t.old_bytes;
    }
    a.stacks.push_back(t);
  }
  auto order = [](const std::string& v) {
    return v == "lost" ? 0 : v == "growing" ? 1 : v == "steady" || v == "unknown" ? 2 : 3;
  };
  std::stable_sort(a.stacks.begin(), a.stacks.end(), [&](const StackTrend& x, const StackTrend& y) {
    if (order(x.verdict) != order(y.verdict)) return order(x.verdict) < order(y.verdict);
    return x.rank_key > y.rank_key;
  });
  return a;
}

std::string rate_text(double bytes_per_s) {
  return (bytes_per_s >= 0 ? "+" : "-") + human_bytes(std::fabs(bytes_per_s)) + "/s";
}

std::string ms_text(double ms) { return ms < 1000 ? fmt_count(ms) + "ms" : human_age(ms / 1e3); }

// Up to 12 values: the first 6 and the last 6, an ellipsis between.
std::string series_text(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v.size() > 12 && i == 6) {
      s += " ...";
      i = v.size() - 6;
    }
    s += (s.empty() ? "" : " ") + fmt_count(v[i]);
  }
  return s;
}

nlohmann::ordered_json num_or_null(bool known, double v) { return known ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); }

void print_json(const Analysis& a, const ReportOptions& opt, FILE* out) {
  const Profile& last = a.profs.back();
  nlohmann::ordered_json j;
  j["schema"] = "leakalloc-report/1";
  nlohmann::ordered_json proc;
  proc["pid"] = a.series.pid >= 0 ? nlohmann::ordered_json(a.series.pid) : nlohmann::ordered_json(nullptr);
  proc["binary"] = opt.binary.empty() ? (last.mappings.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(last.mappings[0].path))
                                      : nlohmann::ordered_json(opt.binary);
  proc["sampled"] = last.sampled;
  proc["period"] = last.period;
  j["process"] = proc;
  j["age_s"] = a.age_s;
  j["reach_checked"] = a.reach_dump >= 0;
  j["dumps"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < a.profs.size(); ++i) {
    const Profile& p = a.profs[i];
    double live = 0, count = 0;
    for (const Sample& s : p.samples) {
      live += s.bytes;
      count += s.count;
    }
    nlohmann::ordered_json d;
    d["path"] = a.series.dumps[i].path;
    d["kind"] = std::string(1, a.series.dumps[i].kind);
    d["seq"] = a.series.dumps[i].seq;
    d["time_s"] = a.t_s[i];
    d["format"] = p.format;
    d["live_bytes"] = live;
    d["live_count"] = count;
    d["has_ages"] = p.has_ages;
    d["has_reach"] = p.has_reach || a.series.lost.count(a.series.dumps[i].seq) > 0;
    d["has_lifetimes"] = p.has_lifetimes;
    j["dumps"].push_back(d);
  }
  Symbolizer sym(last, opt.binary, opt.root, opt.search);
  j["stacks"] = nlohmann::ordered_json::array();
  size_t shown = std::min(opt.top, a.stacks.size());
  for (size_t r = 0; r < shown; ++r) {
    const StackTrend& t = a.stacks[r];
    nlohmann::ordered_json s;
    s["frames"] = frames_json(sym, t.pcs);
    s["live_bytes"] = t.bytes.back();
    s["live_count"] = t.counts.back();
    s["old_bytes"] = t.old_bytes;
    s["old_count"] = t.old_count;
    s["oldest_age_s"] = num_or_null(t.oldest_s >= 0, t.oldest_s);
    s["lost_bytes"] = num_or_null(a.reach_dump >= 0, t.lost_bytes);
    s["indirect_bytes"] = num_or_null(a.reach_dump >= 0, t.indirect_bytes);
    s["series_bytes"] = t.bytes;
    s["growth_bytes_per_s"] = num_or_null(a.profs.size() >= 2, t.slope);
    s["rose_intervals"] = t.rose;
    s["intervals"] = t.intervals;
    s["freed_count"] = num_or_null(a.lifetime_dump >= 0, t.freed);
    s["lifetime_p50_ms"] = num_or_null(t.p50_ms >= 0, t.p50_ms);
    s["lifetime_p99_ms"] = num_or_null(t.p99_ms >= 0, t.p99_ms);
    s["verdict"] = t.verdict;
    j["stacks"].push_back(s);
  }
  j["more_stacks"] = a.stacks.size() - shown;
  std::string text = j.dump(2);
  std::fprintf(out, "%s\n", text.c_str());
}

void print_text(const Analysis& a, const ReportOptions& opt, FILE* out) {
  const Profile& last = a.profs.back();
  size_t n = a.profs.size();
  std::fprintf(out, "Trend report over %zu dumps of %s%s, %s to %s of its run\n", n,
               a.series.prefix.empty() ? "one process" : a.series.prefix.c_str(),
               a.series.pid >= 0 ? (" (pid " + std::to_string(a.series.pid) + ")").c_str() : "",
               human_age(a.t_s.front()).c_str(), human_age(a.t_s.back()).c_str());
  std::fprintf(out, "  format: %s, %s\n", last.format.c_str(),
               last.sampled ? ("sampled (mean period " + std::to_string(last.period) +
                               " bytes): counts and bytes are estimates").c_str()
                            : "exact (every allocation recorded)");
  if (!last.mappings.empty())
    std::fprintf(out, "  binary: %s\n", opt.binary.empty() ? last.mappings[0].path.c_str() : (opt.binary + " (--binary)").c_str());
  std::fprintf(out, "  dumps: %s ... %s\n", a.series.dumps.front().path.c_str(), a.series.dumps.back().path.c_str());
  for (const std::string& f : a.series.left_out)
    std::fprintf(out, "  left out: %s (taken at exit, after the program's own cleanup)\n", f.c_str());
  double live = 0, count = 0, old = 0;
  for (const Sample& s : last.samples) {
    live += s.bytes;
    count += s.count;
  }
  for (const StackTrend& t : a.stacks) old += t.old_bytes;
  bool whole = last.writer_age_ms <= 0;
  std::fprintf(out, "  %s at the last dump: %s bytes (%s) in %s blocks\n",
               whole ? "live" : ("in the dump (older than " + human_age(last.writer_age_ms / 1e3) + ", the writer's age)").c_str(),
               fmt_count(live).c_str(), human_bytes(live).c_str(), fmt_count(count).c_str());
  if (last.has_ages || !whole)
    std::fprintf(out, "  older than %s (%s): %s bytes (%s)\n", human_age(a.age_s).c_str(), a.age_source.c_str(),
                 fmt_count(old).c_str(), human_bytes(old).c_str());
  std::map<std::string, size_t> tally;
  for (const StackTrend& t : a.stacks) tally[t.verdict]++;
  std::string verdicts;
  for (const char* v : {"lost", "growing", "steady", "young", "unknown"})
    if (tally[v]) verdicts += (verdicts.empty() ? "" : ", ") + std::to_string(tally[v]) + " " + v;
  std::fprintf(out, "  verdicts: %s\n", verdicts.empty() ? "no live stacks" : verdicts.c_str());
  if (a.reach_dump < 0)
    std::fprintf(out, "  reachability: not checked in these dumps, so no stack is called lost "
                      "(leakalloc run --reach, or reach:true)\n");
  if (n < 3)
    std::fprintf(out, "  note: %zu dump%s: growth needs three or more\n", n, n == 1 ? "" : "s");
  std::fputc('\n', out);
  if (a.stacks.empty()) return;

  Symbolizer sym(last, opt.binary, opt.root, opt.search);
  size_t shown = std::min(opt.top, a.stacks.size());
  for (size_t r = 0; r < shown; ++r) {
    const StackTrend& t = a.stacks[r];
    std::string what;
    if (t.verdict == "lost") {
      what = "lost: " + fmt_count(t.lost_bytes) + " bytes direct, " + fmt_count(t.indirect_bytes) + " indirect";
    } else if (t.verdict == "growing") {
      what = "growing: " + rate_text(t.slope);
    } else if (t.verdict == "young") {
      what = "young";
    } else {
      what = t.verdict;
    }
    std::fprintf(out, "#%zu %s; live %s bytes (%s) in %s", r + 1, what.c_str(), fmt_count(t.bytes.back()).c_str(),
                 human_bytes(t.bytes.back()).c_str(), blocks(t.counts.back()).c_str());
    if (t.old_bytes < t.bytes.back() && t.verdict != "young")
      std::fprintf(out, ", %s bytes older than %s", fmt_count(t.old_bytes).c_str(), human_age(a.age_s).c_str());
    std::fputc('\n', out);
    if (n >= 2)
      std::fprintf(out, "    trend: %s over the run, rose in %zu of %zu intervals; live bytes: %s\n",
                   rate_text(t.slope).c_str(), t.rose, t.intervals, series_text(t.bytes).c_str());
    if (t.oldest_s >= 0) std::fprintf(out, "    oldest live block: %s\n", human_age(t.oldest_s).c_str());
    if (t.freed > 0) {
      std::fprintf(out, "    freed blocks: %s, half lived under %s, 99%% under %s\n", fmt_count(t.freed).c_str(),
                   ms_text(t.p50_ms).c_str(), ms_text(t.p99_ms).c_str());
      // Blocks of this stack normally die young; the live ones outlived that by far.
      if (t.oldest_s >= 0 && t.freed >= 10 && t.oldest_s * 1e3 > 10 * t.p99_ms && t.verdict != "young")
        std::fprintf(out, "    leak signal: live blocks are %s old, far longer than freed ones ever lived\n",
                     human_age(t.oldest_s).c_str());
    }
    if (!t.threads.empty()) {
      std::string list;
      for (const auto& th : t.threads) list += (list.empty() ? "" : ", ") + th.first;
      std::fprintf(out, "    threads: %s\n", list.c_str());
    }
    print_stack(out, sym, t.pcs, opt.depth);
    std::fputc('\n', out);
  }
  if (a.stacks.size() > shown)
    std::fprintf(out, "... and %zu more stacks (--top N shows more)\n", a.stacks.size() - shown);
  print_symbol_notes(sym, opt, out);
}

}  // namespace

nlohmann::ordered_json frames_json(Symbolizer& sym, const std::vector<uint64_t>& pcs) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (uint64_t pc : pcs) {
    const std::vector<Frame>& frames = sym.frames(pc);
    for (size_t j = 0; j < frames.size(); ++j) {
      const Frame& f = frames[j];
      nlohmann::ordered_json fr;
      fr["address"] = pc + 1;
      fr["function"] = f.function.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(simplify_function(f.function));
      fr["file"] = f.file.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(f.file);
      fr["line"] = f.line > 0 ? nlohmann::ordered_json(f.line) : nlohmann::ordered_json(nullptr);
      fr["inlined"] = j + 1 < frames.size();
      if (!f.module.empty()) {
        fr["module"] = f.module;
        fr["module_offset"] = f.module_offset;
      }
      out.push_back(fr);
    }
  }
  return out;
}

bool is_series(const std::vector<std::string>& paths) {
  if (paths.size() > 1) return true;
  return paths.size() == 1 && is_dir(paths[0]);
}

void print_trend(const std::vector<std::string>& paths, const ReportOptions& opt, FILE* out, bool exclude_final) {
  Analysis a = analyse(paths, opt, exclude_final);
  // Several files of one dump (its .heap and .pb.gz): the report of that dump.
  if (!opt.json && a.profs.size() == 1 && a.series.left_out.empty()) return print_report(a.series.dumps[0].path, opt, out);
  if (opt.json) print_json(a, opt, out);
  else print_text(a, opt, out);
}

void print_report_json(const std::string& path, const ReportOptions& opt, FILE* out) {
  Analysis a = analyse({path}, opt, false);
  print_json(a, opt, out);
}

}  // namespace leakalloc_tool
