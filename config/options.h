// The one table of leakalloc's options.
//
// Every row feeds: the LEAKALLOC_CONF / LEAKALLOC_CONF_FILE parser (config/conf.cpp), the
// read-only `opt.<key>` control leaves (ctl/ctl.cpp), `verbose:true` printing at start,
// and the options table in README.md (tests/ctl checks that the README lists every key).
//
// Storage: every value is an int64_t in g_opt[] (durations in milliseconds, booleans
// 0/1, formats a bit mask, signals a signal number, unwinders an enum), except the one
// string option, `prefix`, kept in a fixed buffer. Nothing here allocates: the parser
// runs on the very first malloc, before libc is fully initialised.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace leakalloc {

enum class OptType : uint8_t {
  kBool,      // true/false, 1/0, yes/no, on/off
  kInt,       // decimal integer in [min, max]
  kDuration,  // number with ms|s|h suffix (bare number = seconds), stored in ms
  kString,    // `prefix` only
  kFormat,    // heap|heap_v2|pb joined by '+', stored as a FormatBit mask
  kSignal,    // USR2, SIGUSR2 or a number; 0 = none
  kUnwind,    // libunwind|fp
};

enum FormatBit : int64_t { kFormatHeap = 1, kFormatHeapV2 = 2, kFormatPb = 4 };
enum UnwindKind : int64_t { kUnwindLibunwind = 0, kUnwindFp = 1 };

constexpr int64_t kDurationMaxMs = int64_t{100} * 365 * 24 * 3600 * 1000;  // 100 years

//   key          type                default    min  max              run-time  doc
#define LEAKALLOC_OPTIONS(X)                                                                  \
  X(sample,      OptType::kInt,      19,         0,   62,               true,                 \
    "mean bytes between sampled allocations is 2^N; 0 samples every allocation (exact)")     \
  X(active,      OptType::kBool,     1,          0,   1,                true,                 \
    "sample allocations from the start (prof.active switches it at run time)")               \
  X(age,         OptType::kDuration, 0,          0,   kDurationMaxMs,   true,                 \
    "dumps show only blocks alive at least this long (ms, s, h; bare number = s)")           \
  X(prefix,      OptType::kString,   0,          0,   0,                false,                \
    "dump file prefix: <prefix>.<pid>.<seq>.<kind><kseq>.heap (default: leakalloc)")         \
  X(format,      OptType::kFormat,   kFormatHeap, 1,  7,                false,                \
    "dump formats joined by '+': heap (all readers), heap_v2 (jeprof), pb (pprof)")          \
  X(final,       OptType::kBool,     0,          0,   1,                false,                \
    "dump at exit (kind f); on by default when age > 0")                                     \
  X(interval,    OptType::kDuration, 0,          0,   kDurationMaxMs,   false,                \
    "dump every interval (kind i); 0 = off; defaults to age when age > 0")                   \
  X(lg_interval, OptType::kInt,      -1,         -1,  62,               false,                \
    "dump each 2^N bytes allocated (kind i); -1 = off")                                      \
  X(gdump,       OptType::kBool,     0,          0,   1,                false,                \
    "dump at each new high-water mark of live bytes (kind u)")                               \
  X(keep,        OptType::kInt,      64,         0,   4096,             false,                \
    "interval and gdump dumps: keep the first and the N latest of each kind; 0 = keep all")  \
  X(signal,      OptType::kSignal,   0,          0,   64,               false,                \
    "dump when this signal arrives (kind s), e.g. USR2; 0 = none")                           \
  X(summary,     OptType::kBool,     0,          0,   1,                false,                \
    "print one line per dump on stderr")                                                     \
  X(max_depth,   OptType::kInt,      64,         1,   256,              false,                \
    "deepest stack recorded, in frames")                                                     \
  X(max_stacks,  OptType::kInt,      262144,     16,  16777216,         false,                \
    "distinct stacks kept; past it new stacks count into one overflow stack")                \
  X(unwind,      OptType::kUnwind,   kUnwindLibunwind, 0, 1,            false,                \
    "stack walker: libunwind (default, exact) or fp (frame pointers, faster)")               \
  X(leak_error,  OptType::kBool,     0,          0,   1,                false,                \
    "at exit, if blocks older than age remain, print a summary and exit with status 1")      \
  X(reach,       OptType::kBool,     0,          0,   1,                false,                \
    "every dump also runs a reachability check and writes the lost blocks beside it (.lost)") \
  X(tcache,      OptType::kBool,     1,          0,   1,                false,                \
    "keep freed blocks of up to 4 KiB in a per-thread cache; false gives each to mimalloc") \
  X(verbose,     OptType::kBool,     0,          0,   1,                false,                \
    "print every effective option value at start")

enum OptId : int {
#define LEAKALLOC_OPT_ENUM(key, type, def, min, max, rt, doc) kOpt_##key,
  LEAKALLOC_OPTIONS(LEAKALLOC_OPT_ENUM)
#undef LEAKALLOC_OPT_ENUM
  kOptCount
};

struct OptionDesc {
  const char* key;
  OptType type;
  int64_t def;
  int64_t min;
  int64_t max;
  bool runtime;  // may change after start (through a prof.* control leaf)
  const char* doc;
};

extern LA_HIDDEN const OptionDesc kOptionTable[kOptCount];

// Effective values. Written by the parser during init (single-threaded by then) and by
// the control leaves that are marked run-time; read everywhere with relaxed loads.
extern LA_HIDDEN int64_t g_opt[kOptCount];
extern LA_HIDDEN bool g_opt_explicit[kOptCount];  // set by the user, not defaulted
constexpr size_t kPrefixMax = 256;
extern LA_HIDDEN char g_opt_prefix[kPrefixMax];

inline int64_t opt(OptId id) { return __atomic_load_n(&g_opt[id], __ATOMIC_RELAXED); }
inline void set_opt(OptId id, int64_t v) { __atomic_store_n(&g_opt[id], v, __ATOMIC_RELAXED); }

// Resets every option to its default (used at init and by the unit tests).
void options_reset_defaults();

// Parses `key:value,key:value` (also newline separated, '#' comments to end of line)
// from `text` of length `len`, applying each good pair. Each bad pair gives one
// "leakalloc: " warning naming key, value and what was expected; the rest still
// applies. `source` names the origin in warnings (e.g. "LEAKALLOC_CONF").
// Returns the number of bad pairs. Allocates nothing.
int options_parse(const char* text, size_t len, const char* source);

// Reads LEAKALLOC_CONF_FILE, then LEAKALLOC_CONF (later wins) by walking `environ`
// directly; ignores both in setuid/setgid programs (AT_SECURE). Then applies the
// derived defaults (final and interval follow age). Safe on the first malloc. Resets
// to defaults first, so calling it again (from the constructor, when the first malloc
// came before `environ` was set) re-applies everything once.
void options_load();
// True once options_load() has run with `environ` available.
bool options_loaded_from_environment();

// `leakalloc run` without --follow puts the pid it started in LEAKALLOC_RUN_PID: the
// process it traces keeps that pid through every exec (a shim, `env`, a script's
// `exec`), its children do not. True when the variable names another process than this
// one: options_load() then ignores LEAKALLOC_CONF and LEAKALLOC_CONF_FILE and leaves
// profiling off, and a fork child of the traced process stops its own profiling and
// dumps (ctl/startup.cpp). Without the variable (or with --follow) every process that
// loads the library follows its configuration, as before.
bool run_pid_elsewhere();

// Formats the value of option `id` as the parser would accept it.
size_t option_format(OptId id, char* out, size_t cap);

// Prints "leakalloc: key:value  # doc" for every option, marking defaults (verbose:true).
void options_print();

}  // namespace leakalloc
