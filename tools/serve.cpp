// `leakalloc serve`: Go's net/http/pprof conventions for the processes running under
// leakalloc on this host, on Debian's cpp-httplib.
//
//   GET /debug/pprof/heap?pid=N[&age=DURATION][&lost=1]  a fresh .pb.gz dump of N
//   GET /debug/pprof/                           the processes this server may dump
//
// so that `go tool pprof http://127.0.0.1:6060/debug/pprof/heap?pid=N` (or a Parca or
// Pyroscope scraper) reads a live process's heap in one step.
//
// Contract:
// - A heap request is one remote dump (tools/remote.h): the target writes one pb file
//   as for `leakalloc dump`, this server reads it, answers with it and removes it (unless
//   --keep, or the dump also answered someone else's request). The target is never
//   stopped or signalled; it pays for one ordinary dump. lost=1 asks for the lost dump
//   instead (a reachability check: the blocks nothing points to, as `dump --lost`).
// - The answer is the dump symbolized (symbolize_dump, as `leakalloc symbolize`), so that
//   the client needs none of the program's files: written to a private temporary file
//   while the target's files are surely there, sent, removed. When that fails, the raw
//   dump is sent and the header X-Leakalloc-Note (and a line on stderr) says why.
// - Permission is the kernel's, as for `leakalloc dump`: this server can dump what its
//   user could debug. It listens on loopback unless told otherwise, and warns on stderr
//   when told otherwise, because any client that reaches it gets that power.
// - Threads: cpp-httplib's listener plus a pool of --threads workers (requests beyond
//   them wait in its queue). One dump per target at a time: a per-pid timed mutex; a
//   second request for the same pid waits for the first, at most --timeout, then 504.
//   Slow clients are cut off by the read/write timeouts.
// - Errors are an HTTP status with a one-line text/plain reason: 400 bad parameters,
//   404 no such process or not running leakalloc, 403 not permitted, 504 no answer in
//   time, 500 the dump failed, 501 lost=1 to a leakalloc without the reachability check.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "profile/remote.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/profile_data.h"
#include "tools/remote.h"

namespace leakalloc_tool {

namespace {

struct ServeOptions {
  std::string listen = "127.0.0.1:6060";
  uint64_t timeout_ms = 30000;
  size_t threads = 4;
  bool keep = false;
};

// What the index shows of a process this server dumped before.
struct LastDump {
  double live_bytes = 0;
  time_t when = 0;
};

class Server {
 public:
  explicit Server(const ServeOptions& o) : opt_(o) {}
  int run();

 private:
  void heap(const httplib::Request& req, httplib::Response& res);
  void index(const httplib::Request& req, httplib::Response& res);
  std::shared_ptr<std::timed_mutex> target_lock(pid_t pid);

  ServeOptions opt_;
  std::mutex mu_;  // guards locks_ and last_
  std::map<pid_t, std::shared_ptr<std::timed_mutex>> locks_;
  std::map<pid_t, LastDump> last_;
};

void fail(httplib::Response& res, int status, const std::string& why) {
  res.status = status;
  // One line: a reason that spans lines would read as several in a terminal or a log.
  std::string line = why;
  for (char& c : line)
    if (c == '\n') c = ' ';
  res.set_content(line + "\n", "text/plain; charset=utf-8");
}

int status_of(RemoteFailure kind) {
  switch (kind) {
    case RemoteFailure::kNoProcess:
    case RemoteFailure::kNotLeakalloc: return 404;
    case RemoteFailure::kDenied: return 403;
    case RemoteFailure::kTimeout: return 504;
    case RemoteFailure::kFailed: break;
  }
  return 500;
}

bool parse_pid(const std::string& text, pid_t* pid) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  long n = std::strtol(text.c_str(), nullptr, 10);
  if (n <= 0 || n > 0x3fffffff) return false;
  *pid = static_cast<pid_t>(n);
  return true;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return !in.bad();
}

// Text for an HTML page. Hand-written: five characters, and cpp-httplib has no escaper.
std::string html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string small_file(const std::string& path) {
  std::string s;
  read_file(path, &s);
  return s;
}

// Seconds since the process started: /proc/PID/stat's starttime against /proc/uptime.
double uptime_s(pid_t pid) {
  std::string stat = small_file(proc_path(pid, "stat"));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  // Fields after the command start at 3 (state); starttime is field 22.
  for (int i = 3; i <= 22 && (fields >> f); ++i) {
  }
  double boot_uptime = std::atof(small_file("/proc/uptime").c_str());
  double start = std::atof(f.c_str()) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return boot_uptime >= start ? boot_uptime - start : -1;
}

std::string rss_text(pid_t pid) {
  std::istringstream status(small_file(proc_path(pid, "status")));
  std::string line;
  while (std::getline(status, line))
    if (line.compare(0, 6, "VmRSS:") == 0) {
      double kib = std::atof(line.c_str() + 6);
      return human_bytes(kib * 1024);
    }
  return "-";
}

std::string command_line(pid_t pid) {
  std::string c = small_file(proc_path(pid, "cmdline"));
  while (!c.empty() && c.back() == '\0') c.pop_back();
  for (char& ch : c)
    if (ch == '\0') ch = ' ';
  if (c.size() > 200) c = c.substr(0, 200) + "...";
  if (c.empty()) c = "[" + small_file(proc_path(pid, "comm")) + "]";
  while (!c.empty() && c.back() == '\n') c.pop_back();
  return c;
}

// Whether /proc/PID/maps names a file that looks like the library: the cheap test before
// the symbol lookup that decides (as `leakalloc dump` decides). A process whose maps this
// user may not read is one it may not dump either.
bool maps_leakalloc(pid_t pid) {
  std::ifstream maps(proc_path(pid, "maps"));
  std::string line;
  while (std::getline(maps, line)) {
    size_t slash = line.rfind('/');
    if (slash != std::string::npos && line.find("leakalloc", slash) != std::string::npos) return true;
  }
  return false;
}

bool may_write_memory(pid_t pid) {
  int fd = open(proc_path(pid, "mem").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
}

}  // namespace

std::shared_ptr<std::timed_mutex> Server::target_lock(pid_t pid) {
  std::lock_guard<std::mutex> hold(mu_);
  std::shared_ptr<std::timed_mutex>& m = locks_[pid];
  if (!m) m = std::make_shared<std::timed_mutex>();
  return m;
}

void Server::heap(const httplib::Request& req, httplib::Response& res) {
  pid_t pid = 0;
  if (!req.has_param("pid")) return fail(res, 400, "pid= is required: /debug/pprof/heap?pid=N");
  std::string pid_text = req.get_param_value("pid");
  if (!parse_pid(pid_text, &pid)) return fail(res, 400, "bad pid \"" + pid_text + "\"");
  uint64_t age_ms = leakalloc::kRemoteAgeDefault;
  if (req.has_param("age")) {
    std::string v = req.get_param_value("age");
    if (!parse_duration_ms(v, &age_ms)) return fail(res, 400, "age: bad duration \"" + v + "\" (e.g. 0, 500ms, 60s, 5m)");
  }
  bool lost = false;
  if (req.has_param("lost")) {
    std::string v = req.get_param_value("lost");
    if (v == "1" || v == "true") lost = true;
    else if (v != "0" && v != "false") return fail(res, 400, "lost: expected 1 or 0, got \"" + v + "\"");
  }
  uint32_t formats = leakalloc::kRemoteFormatPb | (lost ? leakalloc::kRemoteLost : 0);
  std::shared_ptr<std::timed_mutex> lock = target_lock(pid);
  auto started = std::chrono::steady_clock::now();
  if (!lock->try_lock_for(std::chrono::milliseconds(opt_.timeout_ms)))
    return fail(res, 504, "pid " + pid_text + ": another dump of it has not finished within the timeout");
  std::unique_lock<std::timed_mutex> hold(*lock, std::adopt_lock);
  uint64_t waited = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count());
  uint64_t left = opt_.timeout_ms > waited ? opt_.timeout_ms - waited : 1;
  RemoteAnswer answer;
  try {
    answer = request_remote_dump(pid, age_ms, formats, left);
  } catch (const RemoteError& e) {
    return fail(res, status_of(e.kind), e.what());
  } catch (const ToolError& e) {
    return fail(res, 500, e.what());
  }
  // The files were made for this response alone unless a later request's dump answered
  // it too; every way out below removes them.
  struct Cleanup {
    const RemoteAnswer& a;
    bool keep;
    ~Cleanup() {
      // Through the directory that was opened (TargetFile), never by the name again.
      if (!keep && a.served == a.request)
        for (const std::shared_ptr<TargetFile>& f : a.files) unlinkat(f->dir_fd, f->base.c_str(), 0);
    }
  } cleanup{answer, opt_.keep};
  const std::string* pb = nullptr;  // the pb file, as it is read: TargetFile::read_path()
  std::string pb_read, pb_name;
  for (const std::shared_ptr<TargetFile>& f : answer.files)
    if (ends_with(f->path, ".pb.gz")) {
      pb_read = f->read_path();
      pb_name = f->path;
      pb = &pb_read;
    }
  if (lost && answer.status == 0 && pb != nullptr && pb_name.find(".lost.") == std::string::npos)
    return fail(res, 501, "pid " + pid_text + " runs a leakalloc without the reachability check: it wrote an "
                              "ordinary dump instead of the lost one");
  if (answer.status != 0 || pb == nullptr)
    return fail(res, 500, "pid " + pid_text + " could not write its dump: " +
                              std::strerror(answer.status != 0 ? answer.status : EIO) + " (its stderr names the file)");
  // The symbolized copy goes to a file of this server's own (the target's directory may
  // not be writable from here), unique per request: symbolize_dump's own temporary name
  // is OUT.tmp.PID, the same for every thread of this server.
  static std::atomic<unsigned> serial{0};
  const char* tmpdir = std::getenv("TMPDIR");
  std::string sym = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/leakalloc-serve." +
                    std::to_string(getpid()) + "." + std::to_string(serial++) + ".sym.pb.gz";
  std::string note;
  try {
    ReportOptions so;
    so.root = answer.root;  // the dump names files as the process sees them
    SymbolizeResult r = symbolize_dump(*pb, sym, so);
    if (!r.missing.empty() || !r.replaced.empty()) {
      std::vector<std::string> bare = r.missing;
      bare.insert(bare.end(), r.replaced.begin(), r.replaced.end());
      note = "frames of";
      for (const std::string& b : bare) note += " " + b;
      note += " stay addresses (could not read the file, or it is not the one the process ran)";
    }
  } catch (const ToolError& e) {
    note = std::string("not symbolized: ") + e.what();
    for (char& c : note)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "leakalloc: serve: pid %s: %s; sending the raw dump\n", pid_text.c_str(), note.c_str());
    unlink(sym.c_str());
    sym.clear();
  }
  std::string body;
  const std::string& send = sym.empty() ? *pb : sym;
  bool read_ok = read_file(send, &body);
  int read_errno = errno;
  if (!sym.empty()) unlink(sym.c_str());
  if (!read_ok) return fail(res, 500, "cannot read " + send + ": " + std::strerror(read_errno));
  try {
    double live = 0;
    for (const Sample& s : read_dump(*pb).samples) live += s.bytes;
    std::lock_guard<std::mutex> h(mu_);
    last_[pid] = LastDump{live, time(nullptr)};
  } catch (const ToolError&) {
    // The index goes without this process's figure; the client still gets the file.
  }
  if (!note.empty()) res.set_header("X-Leakalloc-Note", note);
  res.set_header("Content-Disposition", "attachment; filename=\"heap\"");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_content(std::move(body), "application/octet-stream");
}

void Server::index(const httplib::Request&, httplib::Response& res) {
  std::string rows;
  size_t n = 0;
  DIR* d = opendir("/proc");
  if (d == nullptr) return fail(res, 500, std::string("cannot list /proc: ") + std::strerror(errno));
  pid_t self = getpid();
  while (dirent* e = readdir(d)) {
    pid_t pid;
    if (!parse_pid(e->d_name, &pid) || pid == self) continue;
    if (!maps_leakalloc(pid) || !may_write_memory(pid)) continue;
    try {
      find_control_block(pid);
    } catch (const ToolError&) {
      continue;
    }
    std::string live = "-";
    {
      std::lock_guard<std::mutex> hold(mu_);
      auto it = last_.find(pid);
      if (it != last_.end()) {
        char when[32];
        struct tm tm;
        strftime(when, sizeof when, "%H:%M:%S", localtime_r(&it->second.when, &tm));
        live = human_bytes(it->second.live_bytes) + " at " + when;
      }
    }
    std::string p = std::to_string(pid);
    rows += "<tr><td class=pid>" + p + "</td><td class=cmd>" + html(command_line(pid)) + "</td><td class=uptime>" +
            human_age(uptime_s(pid)) + "</td><td class=live>" + html(live) + "</td><td class=rss>" + rss_text(pid) +
            "</td><td><a href=\"heap?pid=" + p + "\">heap</a></td></tr>\n";
    ++n;
  }
  closedir(d);
  std::string page =
      "<!DOCTYPE html>\n<html><head><title>/debug/pprof/</title></head><body>\n"
      "<h1>/debug/pprof/</h1>\n<p>" + std::to_string(n) + " process" + (n == 1 ? "" : "es") +
      " under leakalloc that this server may dump. <code>go tool pprof "
      "'http://HOST:PORT/debug/pprof/heap?pid=N'</code> reads one, symbolized; <code>age=60s</code> keeps "
      "only blocks at least that old (default: the process's own age setting); <code>lost=1</code> gives the "
      "blocks nothing points to any more (a reachability check).</p>\n"
      "<table>\n<tr><th>pid</th><th>command</th><th>uptime</th><th>live bytes (last dump here)</th>"
      "<th>rss</th><th>profile</th></tr>\n" + rows + "</table>\n</body></html>\n";
  res.set_content(page, "text/html; charset=utf-8");
}

namespace {

// "HOST:PORT", "[V6]:PORT" or ":PORT" (every interface).
bool split_listen(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  if (host->empty()) *host = "0.0.0.0";
  std::string p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
  *port = std::atoi(p.c_str());
  return *port <= 65535;
}

bool loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.compare(0, 4, "127.") == 0;
}

}  // namespace

int Server::run() {
  std::string host;
  int port = 0;
  if (!split_listen(opt_.listen, &host, &port))
    throw ToolError("serve: --listen: expected HOST:PORT, got \"" + opt_.listen + "\"");
  if (!loopback(host))
    std::fprintf(stderr,
                 "leakalloc: serve: warning: listening on %s, not a loopback address: whoever reaches it can "
                 "dump every process this user may debug\n", opt_.listen.c_str());

  httplib::Server svr;
  size_t threads = opt_.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_read_timeout(5, 0);
  svr.set_write_timeout(10, 0);
  svr.set_keep_alive_timeout(5);
  svr.set_payload_max_length(64 * 1024);  // requests are GETs
  svr.Get("/debug/pprof/heap", [this](const httplib::Request& q, httplib::Response& r) { heap(q, r); });
  svr.Get("/debug/pprof/", [this](const httplib::Request& q, httplib::Response& r) { index(q, r); });
  // go tool pprof posts the addresses its local symbolization left without a name to
  // /debug/pprof/symbol (Go's symbolz protocol) and gives up on the whole profile when that
  // fails. This server has no names to add beyond what the reader finds in the files on
  // this host: it answers, with none.
  svr.Get("/debug/pprof/symbol", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("num_symbols: 0\n", "text/plain; charset=utf-8");
  });
  svr.Post("/debug/pprof/symbol", [](const httplib::Request&, httplib::Response& r) {
    r.set_content("", "text/plain; charset=utf-8");
  });
  svr.Get("/debug/pprof", [](const httplib::Request&, httplib::Response& r) { r.set_redirect("/debug/pprof/"); });
  svr.set_logger([](const httplib::Request& q, const httplib::Response& r) {
    std::fprintf(stderr, "leakalloc: serve: %s %s %s -> %d (%zu bytes)\n", q.remote_addr.c_str(), q.method.c_str(),
                 (q.path + (q.params.empty() ? "" : "?") +
                  [&] {
                    std::string s;
                    for (const auto& kv : q.params) s += (s.empty() ? "" : "&") + kv.first + "=" + kv.second;
                    return s;
                  }()).c_str(),
                 r.status, r.body.size());
  });

  if (port == 0) {
    port = svr.bind_to_any_port(host.c_str());
    if (port < 0) throw ToolError("serve: cannot listen on " + opt_.listen + ": " + std::strerror(errno));
  } else if (!svr.bind_to_port(host.c_str(), port)) {
    throw ToolError("serve: cannot listen on " + opt_.listen + ": " + std::strerror(errno));
  }

  // SIGINT and SIGTERM end the server cleanly: a thread waits for them and stops the
  // listener (stop() is not async-signal-safe, so not from a handler).
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGINT);
  sigaddset(&stop_set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    const struct timespec tick = {0, 200 * 1000 * 1000};
    while (!done.load()) {
      if (sigtimedwait(&stop_set, nullptr, &tick) > 0) {
        svr.stop();
        return;
      }
    }
  });
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::fprintf(stderr, "leakalloc: serve: listening on http://%s:%d/debug/pprof/\n", shown.c_str(), port);
  std::fflush(stderr);
  bool ok = svr.listen_after_bind();
  done = true;
  waiter.join();
  return ok ? 0 : 1;
}

void add_serve_command(CLI::App& app, Action* action) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "Serve live heap profiles over HTTP, as Go's net/http/pprof");
  sub->footer(
      "Answers GET /debug/pprof/heap?pid=N[&age=DURATION][&lost=1] with a fresh .pb.gz dump of\n"
      "process N (running under leakalloc), symbolized as by `leakalloc symbolize` (the raw dump,\n"
      "with an X-Leakalloc-Note header, when that fails); lost=1: only the blocks nothing points\n"
      "to (a reachability check, as `dump --lost`). GET /debug/pprof/ lists the processes this\n"
      "user may dump:\n"
      "  go tool pprof -http=:8080 'http://127.0.0.1:6060/debug/pprof/heap?pid=1234'\n"
      "The permission is the same as for `leakalloc dump` (a debugger's). Listens on loopback\n"
      "unless --listen names another address. Port 0 picks a free port; the address is printed.\n"
      "Errors: 400 bad parameters, 404 no such process or not under leakalloc, 403 not permitted,\n"
      "504 no answer within --timeout, 501 lost=1 without the reachability check. Durations take ms, s, m or h; a bare number is seconds.");
  sub->add_option("--listen", o->listen, "Address to listen on (default 127.0.0.1:6060)")->type_name("HOST:PORT");
  add_duration(sub, "--timeout", &o->timeout_ms, "Answer 504 when a process has not dumped by then (default 30s)");
  add_number(sub, "--threads", &o->threads, 1, 64, "1 to 64", "Requests served at once (default 4)");
  sub->add_flag("--keep", o->keep, "Keep the dump files the processes write (default: removed once sent)");
  sub->callback([o, action] {
    *action = [o] {
      Server s(*o);
      return s.run();
    };
  });
}

}  // namespace leakalloc_tool
