/* Attention over one kv head's KV cache, as the native decode step calls it (attention.c).
 *
 * The cache of one kv head of one row: [cap][D] elements of kv_fmt, column after column: FMT_F32
 * floats, or FMT_BF16 bfloat16 (the top 16 bits of the fp32 value, rounded to nearest even as torch
 * rounds). Functions here use AVX2 (attend_part's `wide`: AVX-512) and exist on x86-64 only.
 */
#ifndef LLMASOS_ATTENTION_H
#define LLMASOS_ATTENTION_H

#include <stdint.h>

enum { KV_TILE = 64 };  /* columns of keys or values attended at a time (a bf16 cache's widened tile) */

/* Write one column: k and v (D floats each) into the caches kc, vc (kv_fmt) at column col. */
void kv_store(const float *k, const float *v, void *kc, void *vc, int64_t kv_fmt, int64_t col, int64_t D);

/* Attention of the G query heads q[0..G) (D apart, D a multiple of 8) that share one kv head, over
 * columns lo..hi-1 of its cache (kc, vc), not yet normalised: per head h, m[h] = the largest score,
 * s[h] = the sum of exp(score - m[h]) and o[h * D ..] = that sum's weighted values. scores: scratch of
 * G * (hi - lo + 8) floats; tile: KV_TILE * D floats. wide: run the products on AVX-512 (only where
 * the CPU has it, and D a multiple of 16). */
void attend_part(const float *q, int64_t G, const void *kc, const void *vc, int64_t kv_fmt, int64_t D, float scale,
                 int64_t lo, int64_t hi, float *scores, float *tile, float *m, float *s, float *o, int wide);

#endif
