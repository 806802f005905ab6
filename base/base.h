// The bottom layer, all of it: what every other folder shares. Includes nothing above
// itself (docs/DESIGN.md "Floor plan"); each header says what it promises.
//   compiler.h  attributes and hints        sync.h    raw locks, cancellation guard
//   os.h        OS memory, readable checks   clock.h   coarse/birth/precise clocks
//   format.h    FdWriter, messages, strings  maps.h    /proc/self/maps, ELF bias
//   arena.h     scratch memory for dumps
#pragma once

#include "base/arena.h"
#include "base/clock.h"
#include "base/compiler.h"
#include "base/format.h"
#include "base/maps.h"
#include "base/os.h"
#include "base/sync.h"
