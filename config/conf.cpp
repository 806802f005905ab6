// The LEAKALLOC_CONF / LEAKALLOC_CONF_FILE parser.
//
// Contract: runs on the process's first malloc, possibly before libc has set `environ`
// or run any constructor. It therefore allocates nothing (the file is read into a
// static buffer with open/read, values are parsed in place), takes no lock, and reads
// `environ` itself rather than calling getenv. Warnings go through log_printf (one
// write(2) each). The one table it works from is LEAKALLOC_OPTIONS in config/options.h.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "base/base.h"
#include "config/options.h"

extern char** environ;

namespace leakalloc {

namespace {

bool g_loaded_from_env = false;
int64_t g_run_pid = 0;  // LEAKALLOC_RUN_PID, 0 when unset or not a number

// A view of part of the configuration text (not NUL-terminated).
struct Span {
  const char* p;
  size_t n;
};

bool span_is(Span s, const char* lit) {
  size_t i = 0;
  for (; i < s.n; ++i)
    if (lit[i] == '\0' || lit[i] != s.p[i]) return false;
  return lit[i] == '\0';
}

bool span_is_nocase(Span s, const char* lit) {
  size_t i = 0;
  for (; i < s.n; ++i) {
    char c = s.p[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (lit[i] == '\0' || lit[i] != c) return false;
  }
  return lit[i] == '\0';
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

Span trim(Span s) {
  while (s.n > 0 && is_space(s.p[0])) { ++s.p; --s.n; }
  while (s.n > 0 && is_space(s.p[s.n - 1])) --s.n;
  return s;
}

// Copies a span into a NUL-terminated buffer for messages, eliding the middle of
// anything too long.
void span_to_cstr(Span s, char* out, size_t cap) {
  size_t n = s.n < cap - 1 ? s.n : cap - 1;
  for (size_t i = 0; i < n; ++i) {
    char c = s.p[i];
    out[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  out[n] = '\0';
  if (s.n > cap - 1 && cap > 4) out[cap - 2] = out[cap - 3] = out[cap - 4] = '.';
}

// Parses an unsigned decimal; false on empty, junk or overflow past INT64_MAX.
bool parse_u64(Span s, uint64_t* out) {
  if (s.n == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < s.n; ++i) {
    char c = s.p[i];
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (static_cast<uint64_t>(INT64_MAX) - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool parse_i64(Span s, int64_t* out) {
  bool neg = s.n > 0 && s.p[0] == '-';
  if (neg || (s.n > 0 && s.p[0] == '+')) { ++s.p; --s.n; }
  uint64_t v;
  if (!parse_u64(s, &v)) return false;
  *out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

bool parse_bool(Span s, int64_t* out) {
  if (span_is_nocase(s, "true") || span_is_nocase(s, "yes") || span_is_nocase(s, "on") || span_is(s, "1")) {
    *out = 1;
    return true;
  }
  if (span_is_nocase(s, "false") || span_is_nocase(s, "no") || span_is_nocase(s, "off") || span_is(s, "0")) {
    *out = 0;
    return true;
  }
  return false;
}

// "60", "60s", "500ms", "10m", "2h" -> milliseconds. A bare number is seconds. The
// units are the tool's (`leakalloc run --age 10m`), so one spelling works in both.
bool parse_duration_ms(Span s, int64_t* out) {
  size_t digits = 0;
  while (digits < s.n && s.p[digits] >= '0' && s.p[digits] <= '9') ++digits;
  uint64_t v;
  if (!parse_u64(Span{s.p, digits}, &v)) return false;
  Span unit{s.p + digits, s.n - digits};
  uint64_t mult;
  if (unit.n == 0 || span_is(unit, "s")) mult = 1000;
  else if (span_is(unit, "ms")) mult = 1;
  else if (span_is(unit, "m")) mult = 60 * 1000;
  else if (span_is(unit, "h")) mult = 3600 * 1000;
  else return false;
  if (v > static_cast<uint64_t>(kDurationMaxMs) / mult) return false;
  *out = static_cast<int64_t>(v * mult);
  return true;
}

struct Named {
  const char* name;
  int64_t value;
};

const Named kSignals[] = {
    {"HUP", SIGHUP},     {"INT", SIGINT},     {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
    {"USR2", SIGUSR2},   {"PIPE", SIGPIPE},   {"ALRM", SIGALRM},   {"TERM", SIGTERM},
    {"CHLD", SIGCHLD},   {"CONT", SIGCONT},   {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},   {"URG", SIGURG},     {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"PWR", SIGPWR},     {"SYS", SIGSYS},
};

bool parse_signal(Span s, int64_t* out) {
  if (span_is_nocase(s, "none") || span_is_nocase(s, "off") || span_is(s, "0")) {
    *out = 0;
    return true;
  }
  int64_t n;
  if (parse_i64(s, &n)) {
    if (n < 1 || n > 64 || n == SIGKILL || n == SIGSTOP || n == SIGSEGV || n == SIGBUS ||
        n == SIGFPE || n == SIGILL || n == SIGABRT || n == SIGTRAP)
      return false;
    *out = n;
    return true;
  }
  if (s.n > 3 && (s.p[0] == 'S' || s.p[0] == 's') && span_is_nocase(Span{s.p, 3}, "sig")) {
    s.p += 3;
    s.n -= 3;
  }
  for (const Named& sig : kSignals) {
    size_t len = cstr_len(sig.name);
    if (len != s.n) continue;
    bool eq = true;
    for (size_t i = 0; i < len && eq; ++i) {
      char c = s.p[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      eq = c == sig.name[i];
    }
    if (eq) {
      *out = sig.value;
      return true;
    }
  }
  return false;
}

bool parse_format(Span s, int64_t* out) {
  int64_t mask = 0;
  while (s.n > 0) {
    size_t len = 0;
    while (len < s.n && s.p[len] != '+') ++len;
    Span tok = trim(Span{s.p, len});
    if (span_is(tok, "heap")) mask |= kFormatHeap;
    else if (span_is(tok, "heap_v2")) mask |= kFormatHeapV2;
    else if (span_is(tok, "pb")) mask |= kFormatPb;
    else return false;
    if (len == s.n) break;
    s.p += len + 1;
    s.n -= len + 1;
    if (s.n == 0) return false;  // trailing '+'
  }
  if (mask == 0) return false;
  *out = mask;
  return true;
}

bool parse_unwind(Span s, int64_t* out) {
  if (span_is(s, "libunwind")) { *out = kUnwindLibunwind; return true; }
  if (span_is(s, "fp")) { *out = kUnwindFp; return true; }
  return false;
}

const char* expected_text(const OptionDesc& d, char* buf, size_t cap) {
  switch (d.type) {
    case OptType::kBool: return "true or false";
    case OptType::kDuration: return "a duration such as 500ms, 60s, 10m or 2h (a bare number is seconds)";
    case OptType::kString: return "a non-empty path prefix of at most 255 bytes";
    case OptType::kFormat: return "heap, heap_v2 or pb, joined by '+'";
    case OptType::kSignal: return "a signal name such as USR2 or SIGUSR2, a number, or none";
    case OptType::kUnwind: return "libunwind or fp";
    case OptType::kInt: break;
  }
  char* p = buf;
  const char* pre = "an integer from ";
  size_t n = 0;
  while (pre[n] != '\0' && n + 1 < cap) { p[n] = pre[n]; ++n; }
  auto put_int = [&](int64_t v) {
    char tmp[24];
    size_t k = 0;
    if (v < 0) { tmp[k++] = '-'; v = -v; }
    k += u64_to_dec(static_cast<uint64_t>(v), tmp + k);
    for (size_t i = 0; i < k && n + 1 < cap; ++i) p[n++] = tmp[i];
  };
  put_int(d.min);
  const char* mid = " to ";
  for (size_t i = 0; mid[i] != '\0' && n + 1 < cap; ++i) p[n++] = mid[i];
  put_int(d.max);
  p[n] = '\0';
  return buf;
}

int find_key(Span key) {
  for (int i = 0; i < kOptCount; ++i)
    if (span_is(key, kOptionTable[i].key)) return i;
  return -1;
}

// Applies one `key:value` pair. Returns false (after one warning) if it is bad.
bool apply_pair(Span pair, const char* source) {
  size_t colon = 0;
  while (colon < pair.n && pair.p[colon] != ':') ++colon;
  Span key = trim(Span{pair.p, colon});
  Span value = colon < pair.n ? trim(Span{pair.p + colon + 1, pair.n - colon - 1}) : Span{pair.p + pair.n, 0};
  char kbuf[64], vbuf[96], ebuf[96];
  span_to_cstr(key, kbuf, sizeof kbuf);
  span_to_cstr(value, vbuf, sizeof vbuf);
  int id = find_key(key);
  if (id < 0) {
    // key=value, the spelling of other tools' variables: name the one this wants.
    size_t eq = 0;
    while (eq < key.n && key.p[eq] != '=') ++eq;
    if (eq < key.n && colon == pair.n && find_key(trim(Span{key.p, eq})) >= 0) {
      char lbuf[64], rbuf[96];
      span_to_cstr(trim(Span{key.p, eq}), lbuf, sizeof lbuf);
      span_to_cstr(trim(Span{key.p + eq + 1, key.n - eq - 1}), rbuf, sizeof rbuf);
      log_printf("%s: '%s' ignored: write key:value (%s:%s)", source, kbuf, lbuf, rbuf);
      return false;
    }
    log_printf("%s: unknown option '%s' (value '%s') ignored; run with verbose:true to list the options",
               source, kbuf, vbuf);
    return false;
  }
  const OptionDesc& d = kOptionTable[id];
  if (colon == pair.n) {
    log_printf("%s: option '%s' has no value: expected %s:<value> with %s; keeping the default",
               source, kbuf, kbuf, expected_text(d, ebuf, sizeof ebuf));
    return false;
  }
  int64_t v = 0;
  bool ok = false;
  switch (d.type) {
    case OptType::kBool: ok = parse_bool(value, &v); break;
    case OptType::kInt: ok = parse_i64(value, &v) && v >= d.min && v <= d.max; break;
    case OptType::kDuration: ok = parse_duration_ms(value, &v) && v >= d.min && v <= d.max; break;
    case OptType::kFormat: ok = parse_format(value, &v); break;
    case OptType::kSignal: ok = parse_signal(value, &v); break;
    case OptType::kUnwind: ok = parse_unwind(value, &v); break;
    case OptType::kString:
      ok = value.n > 0 && value.n < kPrefixMax;
      if (ok) {
        for (size_t i = 0; i < value.n; ++i) g_opt_prefix[i] = value.p[i];
        g_opt_prefix[value.n] = '\0';
        g_opt_explicit[id] = true;
      }
      break;
  }
  if (!ok) {
    char cur[96];
    option_format(static_cast<OptId>(id), cur, sizeof cur);
    log_printf("%s: bad value for '%s': '%s'; expected %s; keeping %s:%s", source, kbuf, vbuf,
               expected_text(d, ebuf, sizeof ebuf), kbuf, cur);
    return false;
  }
  if (d.type != OptType::kString) {
    set_opt(static_cast<OptId>(id), v);
    g_opt_explicit[id] = true;
  }
  return true;
}

const char* find_env(const char* name) {
  char** env = environ;
  if (env == nullptr) return nullptr;
  size_t n = cstr_len(name);
  for (; *env != nullptr; ++env) {
    const char* e = *env;
    size_t i = 0;
    while (i < n && e[i] == name[i]) ++i;
    if (i == n && e[n] == '=') return e + n + 1;
  }
  return nullptr;
}

// The configuration file is read whole into this buffer: no allocation, and a
// configuration is a few lines long.
char g_file_buf[64 * 1024];

void load_file(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    log_printf("LEAKALLOC_CONF_FILE: cannot open '%s': %s; using the other settings", path,
               errno == ENOENT ? "no such file" : errno == EACCES ? "permission denied" : "open failed");
    return;
  }
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, g_file_buf + len, sizeof g_file_buf - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += static_cast<size_t>(r);
    if (len == sizeof g_file_buf) {
      log_printf("LEAKALLOC_CONF_FILE: '%s' is larger than %zu bytes; the rest is ignored", path,
                 sizeof g_file_buf);
      break;
    }
  }
  close(fd);
  options_parse(g_file_buf, len, "LEAKALLOC_CONF_FILE");
}

void apply_derived_defaults() {
  int64_t age = opt(kOpt_age);
  if (age > 0) {
    // A leak-age run needs nothing else to produce reports: dump every `age` and at exit.
    if (!g_opt_explicit[kOpt_final]) set_opt(kOpt_final, 1);
    if (!g_opt_explicit[kOpt_interval]) set_opt(kOpt_interval, age);
  }
  // leak_error is decided at exit, which needs the exit hook the final dump uses; it
  // does not imply writing a file.
}

size_t append(char* out, size_t cap, size_t n, const char* s) {
  while (*s != '\0' && n + 1 < cap) out[n++] = *s++;
  out[n < cap ? n : cap - 1] = '\0';
  return n;
}

}  // namespace

int options_parse(const char* text, size_t len, const char* source) {
  int bad = 0;
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && text[i] != ',' && text[i] != '\n' && text[i] != '#' && text[i] != '\0') ++i;
    Span pair = trim(Span{text + start, i - start});
    if (pair.n > 0 && !apply_pair(pair, source)) ++bad;
    if (i < len && text[i] == '#') {  // comment to end of line
      while (i < len && text[i] != '\n') ++i;
    }
    if (i < len && text[i] == '\0') break;
    ++i;
  }
  return bad;
}

void options_load() {
  options_reset_defaults();
  if (environ == nullptr) return;  // too early: the constructor loads again
  g_loaded_from_env = true;
  const char* file = find_env("LEAKALLOC_CONF_FILE");
  const char* conf = find_env("LEAKALLOC_CONF");
  g_run_pid = 0;
  if (const char* run = find_env("LEAKALLOC_RUN_PID")) {
    int64_t v = 0;
    for (; *run >= '0' && *run <= '9' && v < (int64_t{1} << 40); ++run) v = v * 10 + (*run - '0');
    if (*run == '\0') g_run_pid = v;
  }
  if (run_pid_elsewhere()) {
    // `leakalloc run` traces one process (through its execs, which keep the pid), not
    // what that process starts: this image is a plain allocator, its configuration
    // left unread, so it writes no dumps and samples nothing.
    set_opt(kOpt_active, 0);
    return;
  }
  if (getauxval(AT_SECURE) != 0) {
    // setuid/setgid: the environment belongs to a less privileged user.
    if (file != nullptr || conf != nullptr)
      log_message("ignoring LEAKALLOC_CONF and LEAKALLOC_CONF_FILE in a setuid/setgid program");
  } else {
    if (file != nullptr && file[0] != '\0') load_file(file);
    if (conf != nullptr) options_parse(conf, cstr_len(conf), "LEAKALLOC_CONF");
  }
  apply_derived_defaults();
}

bool options_loaded_from_environment() { return g_loaded_from_env; }

bool run_pid_elsewhere() { return g_run_pid > 0 && g_run_pid != static_cast<int64_t>(getpid()); }

size_t option_format(OptId id, char* out, size_t cap) {
  if (cap == 0) return 0;
  out[0] = '\0';
  const OptionDesc& d = kOptionTable[id];
  int64_t v = opt(id);
  char num[24];
  size_t n = 0;
  switch (d.type) {
    case OptType::kBool: return append(out, cap, 0, v != 0 ? "true" : "false");
    case OptType::kInt:
      if (v < 0) { n = append(out, cap, 0, "-"); v = -v; }
      num[u64_to_dec(static_cast<uint64_t>(v), num)] = '\0';
      return append(out, cap, n, num);
    case OptType::kDuration: {
      const char* unit = "ms";
      uint64_t u = static_cast<uint64_t>(v);
      if (u != 0 && u % 3600000 == 0) { u /= 3600000; unit = "h"; }
      else if (u % 1000 == 0) { u /= 1000; unit = "s"; }
      num[u64_to_dec(u, num)] = '\0';
      n = append(out, cap, 0, num);
      return append(out, cap, n, unit);
    }
    case OptType::kString: return append(out, cap, 0, g_opt_prefix);
    case OptType::kFormat:
      if (v & kFormatHeap) n = append(out, cap, n, "heap");
      if (v & kFormatHeapV2) n = append(out, cap, n, n > 0 ? "+heap_v2" : "heap_v2");
      if (v & kFormatPb) n = append(out, cap, n, n > 0 ? "+pb" : "pb");
      return n;
    case OptType::kSignal:
      if (v == 0) return append(out, cap, 0, "none");
      for (const Named& s : kSignals)
        if (s.value == v) return append(out, cap, 0, s.name);
      num[u64_to_dec(static_cast<uint64_t>(v), num)] = '\0';
      return append(out, cap, 0, num);
    case OptType::kUnwind: return append(out, cap, 0, v == kUnwindFp ? "fp" : "libunwind");
  }
  return 0;
}

void options_print() {
  for (int i = 0; i < kOptCount; ++i) {
    char v[300];
    option_format(static_cast<OptId>(i), v, sizeof v);
    log_printf("%s:%s%s  # %s", kOptionTable[i].key, v, g_opt_explicit[i] ? "" : " (default)",
               kOptionTable[i].doc);
  }
}

}  // namespace leakalloc
