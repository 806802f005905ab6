#ifndef BENCH_MICRO_FRAMES_H
#define BENCH_MICRO_FRAMES_H
#ifdef __cplusplus
extern "C" {
#endif
typedef void (*bench_body)(void* ctx);
/* Calls body(ctx) from `depth` nested frames of bench_recurse. */
void bench_recurse(int depth, bench_body body, void* ctx);
/* Calls body(ctx) from `bits` nested frames whose sequence spells the low bits of n. */
void bench_bits0(unsigned n, int bits, bench_body body, void* ctx);
#ifdef __cplusplus
}
#endif
#endif
