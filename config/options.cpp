#include "config/options.h"

namespace leakalloc {

const OptionDesc kOptionTable[kOptCount] = {
#define LEAKALLOC_OPT_ROW(key, type, def, min, max, rt, doc) {#key, type, def, min, max, rt, doc},
    LEAKALLOC_OPTIONS(LEAKALLOC_OPT_ROW)
#undef LEAKALLOC_OPT_ROW
};

int64_t g_opt[kOptCount] = {
#define LEAKALLOC_OPT_DEF(key, type, def, min, max, rt, doc) def,
    LEAKALLOC_OPTIONS(LEAKALLOC_OPT_DEF)
#undef LEAKALLOC_OPT_DEF
};
bool g_opt_explicit[kOptCount];
char g_opt_prefix[kPrefixMax] = "leakalloc";

void options_reset_defaults() {
  for (int i = 0; i < kOptCount; ++i) {
    set_opt(static_cast<OptId>(i), kOptionTable[i].def);
    g_opt_explicit[i] = false;
  }
  const char* def = "leakalloc";
  size_t i = 0;
  for (; def[i] != '\0'; ++i) g_opt_prefix[i] = def[i];
  g_opt_prefix[i] = '\0';
}

}  // namespace leakalloc
