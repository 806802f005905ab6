// libFuzzer target for the configuration parser (config/conf.cpp).
//
// Built with clang's -fsanitize=fuzzer,address,undefined from the parser's own sources
// (config/options.cpp, config/conf.cpp, base/) and not the allocator override:
// ASan replaces malloc. Oracles, besides the sanitizers:
//   - every option stays inside its table range, the prefix stays a terminated,
//     non-empty string, and the bad-pair count is sane;
//   - round trip: formatting every option with option_format and parsing the result
//     back from defaults gives no warning and the same values.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "config/options.h"

using namespace leakalloc;

namespace {

[[noreturn]] void fail(const char* what, const char* key) {
  fprintf(stderr, "options_fuzz: %s (option %s)\n", what, key != nullptr ? key : "-");
  abort();
}

void check_ranges() {
  for (int i = 0; i < kOptCount; ++i) {
    const OptionDesc& d = kOptionTable[i];
    int64_t v = opt(static_cast<OptId>(i));
    if (d.type == OptType::kString) continue;
    if (v < d.min || v > d.max) fail("value outside the table's range", d.key);
  }
  size_t n = strnlen(g_opt_prefix, kPrefixMax);
  if (n == kPrefixMax) fail("prefix not terminated", "prefix");
  if (n == 0) fail("empty prefix", "prefix");
}

// A formatted value that the tokenizer would split or trim cannot round-trip; such
// values are legal (e.g. a prefix with a ',') and are skipped.
bool round_trippable(const char* s, size_t n) {
  if (n == 0) return false;
  if (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')
    return false;
  for (size_t i = 0; i < n; ++i)
    if (s[i] == ',' || s[i] == '\n' || s[i] == '#') return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  options_reset_defaults();
  // An exactly sized copy, so that ASan sees any read past the end of the text.
  char* text = static_cast<char*>(malloc(size > 0 ? size : 1));
  if (size > 0) memcpy(text, data, size);
  int bad = options_parse(text, size, "fuzz");
  free(text);
  if (bad < 0 || static_cast<size_t>(bad) > size) fail("impossible bad-pair count", nullptr);
  check_ranges();

  int64_t values[kOptCount];
  for (int i = 0; i < kOptCount; ++i) values[i] = opt(static_cast<OptId>(i));
  std::string prefix = g_opt_prefix;
  bool skipped[kOptCount] = {};
  std::string all;
  for (int i = 0; i < kOptCount; ++i) {
    char buf[kPrefixMax + 32];
    size_t n = option_format(static_cast<OptId>(i), buf, sizeof buf);
    if (n >= sizeof buf) fail("option_format overran its buffer", kOptionTable[i].key);
    if (strlen(buf) != n) fail("option_format length differs from the string", kOptionTable[i].key);
    if (!round_trippable(buf, n)) {
      skipped[i] = true;
      continue;
    }
    all += kOptionTable[i].key;
    all += ':';
    all.append(buf, n);
    all += ',';
  }
  options_reset_defaults();
  if (options_parse(all.data(), all.size(), "fuzz-roundtrip") != 0)
    fail("a formatted value was rejected", all.c_str());
  for (int i = 0; i < kOptCount; ++i) {
    if (skipped[i]) continue;
    if (kOptionTable[i].type == OptType::kString) {
      if (prefix != g_opt_prefix) fail("prefix changed in the round trip", "prefix");
    } else if (opt(static_cast<OptId>(i)) != values[i]) {
      fail("value changed in the round trip", kOptionTable[i].key);
    }
  }
  return 0;
}
