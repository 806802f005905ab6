#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
void pb_old_main(void** out, int n, size_t size);
void pb_old_thread(void** out, int n, size_t size);
void pb_young_main(void** out, int n, size_t size);
void pb_young_thread(void** out, int n, size_t size);
void pb_freed(void** out, int n, size_t size);
void pb_sampled_small(void** out, int n, size_t size);
void pb_sampled_big(void** out, int n, size_t size);
// One block of `size` bytes from a stack that spells `levels` bits of `bits`.
void* pb_btalloc(unsigned bits, int levels, size_t size);
#ifdef __cplusplus
}
#endif
