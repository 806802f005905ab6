// TEMPORARY placeholder, replaced by the real parser before any commit.
#include "ctl/options.h"
namespace leakalloc {
static bool g_loaded_env = false;
int options_parse(const char*, size_t, const char*) { return 0; }
void options_load() { options_reset_defaults(); g_loaded_env = true; }
bool options_loaded_from_environment() { return g_loaded_env; }
size_t option_format(OptId, char* out, size_t) { out[0] = 0; return 0; }
void options_print() {}
}  // namespace leakalloc
