#include "base/sync.h"

#include <sched.h>

namespace leakalloc {

void RawLock::yield() { sched_yield(); }

}  // namespace leakalloc
