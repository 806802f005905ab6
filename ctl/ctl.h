// The control tree behind leakalloc_mallctl (and jemalloc's mallctl names), seen from
// inside: value types and a walk over every leaf, for the stats printer, the tests and
// the README table generator. The public entry points are in include/leakalloc/.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config/options.h"

namespace leakalloc {
namespace ctl {

// The C type a leaf reads and writes; its size is the only size mallctl accepts. kVoid
// is an action that takes no value (jemalloc's "(void)"): newlen 0.
enum class ValueType : uint8_t { kBool, kSize, kSsize, kU64, kInt, kString, kVoid };
enum class Access : uint8_t { kRead, kReadWrite, kWrite };

const char* type_name(ValueType t);  // "bool", "size_t", "ssize_t", "uint64_t", "int", "const char *", "void"
size_t type_size(ValueType t);

// The type of `opt.<key>`: bool for booleans; size_t for integers (ssize_t when the range
// goes below zero, as jemalloc's opt.lg_prof_interval); uint64_t milliseconds for
// durations; int for the signal number; const char * for prefix, format and unwind.
constexpr ValueType opt_value_type(OptType type, int64_t min) {
  return type == OptType::kBool ? ValueType::kBool
       : type == OptType::kInt ? (min < 0 ? ValueType::kSsize : ValueType::kSize)
       : type == OptType::kDuration ? ValueType::kU64
       : type == OptType::kSignal ? ValueType::kInt
       : ValueType::kString;
}

struct LeafInfo {
  const char* name;  // full dotted name, e.g. "stats.allocated"
  ValueType type;
  Access access;
  const char* doc;
};
using LeafFn = void (*)(void* ctx, const LeafInfo& leaf);
// Calls fn for every leaf in tree order. Allocates nothing.
void for_each_leaf(LeafFn fn, void* ctx);

}  // namespace ctl
}  // namespace leakalloc
