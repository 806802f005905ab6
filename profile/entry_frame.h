// Where a sampled allocation's stack starts: the frame of the exported entry point the
// program called. A stack-capture idea, shared by the allocator (which passes it down)
// and the unwinders (which start there).
#pragma once

#include <cstdint>

#include "base/compiler.h"

namespace leakalloc {

// `frame` is the frame address of the exported entry point that the program called
// (__builtin_frame_address(0), see LA_FRAME in alloc/override.cpp). The library is built
// with frame pointers, so the x86-64 frame layout holds there:
//   frame[0]    the caller's %rbp, saved by the entry point's prologue
//   frame[1]    the return address into the caller
//   frame + 16  the caller's stack pointer once the entry point returns
// A sampled allocation's stack starts there, in the caller: none of our own frames is
// walked (profile/unwind.h).
using EntryFrame = uintptr_t;
LA_ALWAYS_INLINE uintptr_t caller_ra_of(EntryFrame frame) {
  return reinterpret_cast<const uintptr_t*>(frame)[1];
}

}  // namespace leakalloc
