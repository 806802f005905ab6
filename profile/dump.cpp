// TEMPORARY placeholder, replaced by the real dump machinery before any commit.
#include "profile/dump.h"
namespace leakalloc { namespace dump {
void start() {}
int request(const char*) { return 0; }
LeakTotals leak_totals(uint64_t) { return {0, 0}; }
void fork_prepare() {}
void fork_parent() {}
void fork_child() {}
}}  // namespace leakalloc::dump
