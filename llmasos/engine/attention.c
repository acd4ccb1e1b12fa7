/* Attention over one kv head's cache for the native decode step (llama_decode.c calls it), fp32 or
 * bf16 (attention.h has the layout).
 *
 * Keys and values are read KV_TILE (64) columns at a time: fp32 where they lie, bf16 widened to fp32
 * into a per-thread tile that stays in L1 (a bf16 value is the top half of the fp32 one: a shift,
 * exact), so each element is converted once and memory gives half the bytes (at 1,024 columns the
 * attention is bound by reading the cache). Queries, scores, softmax and sums stay fp32. The tile's
 * products (scores, weighted values) have an AVX2 path and an AVX-512 one; the caller picks.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attention.h"
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "simd.h"

/* fp32 -> bfloat16, rounded to nearest even, NaN kept a (quiet) NaN: torch's conversion, so a column
 * written here equals the one a prefill stores. */
static void to_bf16(const float *x, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        out[i] = x[i] != x[i] ? (uint16_t)0x7FC0 : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
}

/* The new column of one kv head: k and v (D floats each) into its cache (kv_fmt) at column col. */
void kv_store(const float *k, const float *v, void *kc, void *vc, int64_t kv_fmt, int64_t col, int64_t D) {
    if (kv_fmt == FMT_BF16) {
        to_bf16(k, D, (uint16_t *)kc + col * D);
        to_bf16(v, D, (uint16_t *)vc + col * D);
    } else {
        memcpy((float *)kc + col * D, k, (size_t)D * sizeof(float));
        memcpy((float *)vc + col * D, v, (size_t)D * sizeof(float));
    }
}

/* a . b over n floats (n a multiple of 8). */
AVX2 static float dot(const float *a, const float *b, int64_t n) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

/* The eight sums of a[0..7]'s lanes, as one vector: lane j holds the sum of a[j]. */
AVX2 static inline __m256 sum_each(const __m256 *a) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* o[h][d..d + 8W) += sum_t p[h][t] v_t[d..d + 8W) for NH heads over n columns of v (row stride D):
 * NH * W sums stay in registers while each value row is loaded once for all NH heads. */
#define DEF_VACC(NH, W)                                                                            \
    AVX2 __attribute__((noinline)) static void vacc_##NH##_##W(                                    \
        const float *const *p, const float *v, int64_t n, int64_t D, int64_t d, float *const *o) { \
        __m256 a[NH][W];                                                                           \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int j = 0; j < W; j++) a[h][j] = _mm256_setzero_ps(); \
        for (int64_t t = 0; t < n; t++) {                                                          \
            __m256 x[W];                                                                           \
            UNROLL for (int j = 0; j < W; j++) x[j] = _mm256_loadu_ps(v + t * D + d + 8 * j);     \
            UNROLL for (int h = 0; h < NH; h++) {                                                  \
                __m256 ph = _mm256_broadcast_ss(p[h] + t);                                         \
                UNROLL for (int j = 0; j < W; j++) a[h][j] = _mm256_fmadd_ps(ph, x[j], a[h][j]);   \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int j = 0; j < W; j++) {                  \
            float *out = o[h] + d + 8 * j;                                                         \
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), a[h][j]));                   \
        }                                                                                          \
    }
DEF_VACC(1, 4)
DEF_VACC(2, 4)
DEF_VACC(3, 4)
DEF_VACC(1, 1)
DEF_VACC(2, 1)
DEF_VACC(3, 1)

/* Columns t0..t0 + tn - 1 (tn <= KV_TILE) of one kv head's cache in format kv_fmt (base: its
 * column 0), as fp32 rows of D: fp32 where they lie, bf16 widened into tile (KV_TILE * D floats;
 * a bf16 value is the top half of the fp32 one, so widening is a shift and exact). */
AVX2 static const float *kv_tile(const void *base, int64_t kv_fmt, int64_t t0, int64_t tn, int64_t D,
                                 float *tile) {
    if (kv_fmt != FMT_BF16) return (const float *)base + t0 * D;
    const uint16_t *src = (const uint16_t *)base + t0 * D;
    for (int64_t i = 0; i < tn * D; i += 8) {  /* D is a multiple of 8 */
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(tile + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    }
    return tile;
}

/* Scores of the G heads q[0..G) against tn keys k (rows of D): sc[h * ld + t] = q_h . k_t * scale. */
AVX2 static void score_tile(const float *q, int64_t G, const float *k, int64_t D, float scale, int64_t tn,
                            float *sc, int64_t ld) {
    __m256 scale8 = _mm256_set1_ps(scale);
    int64_t t = 0;
    for (; t + 8 <= tn; t += 8) {  /* eight columns at a time, each head in turn (the keys stay in L1) */
        for (int64_t h = 0; h < G; h++) {
            __m256 a[8];
            for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
            for (int64_t d = 0; d < D; d += 8) {
                __m256 qd = _mm256_loadu_ps(q + h * D + d);
                for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + (t + j) * D + d), a[j]);
            }
            _mm256_storeu_ps(sc + h * ld + t, _mm256_mul_ps(sum_each(a), scale8));
        }
    }
    for (; t < tn; t++)
        for (int64_t h = 0; h < G; h++) sc[h * ld + t] = dot(q + h * D, k + t * D, D) * scale;
}

/* o[h] += sum_t p[h][t] v_t over tn values v (rows of D), three heads a pass (p: G rows ld apart). */
AVX2 static void value_tile(const float *p0, int64_t G, int64_t ld, const float *vt, int64_t tn, int64_t D,
                            float *o) {
    for (int64_t h = 0; h < G; h += 3) {
        int nh = G - h < 3 ? (int)(G - h) : 3;
        const float *p[3];
        float *oh[3];
        for (int j = 0; j < 3; j++) {
            int64_t hj = h + (j < nh ? j : 0);
            p[j] = p0 + hj * ld;
            oh[j] = o + hj * D;
        }
        int64_t d = 0;
        for (; d + 32 <= D; d += 32) {
            if (nh == 3) vacc_3_4(p, vt, tn, D, d, oh);
            else if (nh == 2) vacc_2_4(p, vt, tn, D, d, oh);
            else vacc_1_4(p, vt, tn, D, d, oh);
        }
        for (; d < D; d += 8) {
            if (nh == 3) vacc_3_1(p, vt, tn, D, d, oh);
            else if (nh == 2) vacc_2_1(p, vt, tn, D, d, oh);
            else vacc_1_1(p, vt, tn, D, d, oh);
        }
    }
}

/* The same three tile functions on AVX-512 (16 lanes: on this Zen 5 a full-width unit, twice the
 * multiply-adds a cycle). Taken for isa >= ISA_AVX512 and D a multiple of 16; the sums are the same
 * terms in another order. */
AVX512 static const float *kv_tile_512(const void *base, int64_t kv_fmt, int64_t t0, int64_t tn, int64_t D,
                                       float *tile) {
    if (kv_fmt != FMT_BF16) return (const float *)base + t0 * D;
    const uint16_t *src = (const uint16_t *)base + t0 * D;
    for (int64_t i = 0; i < tn * D; i += 16) {  /* D is a multiple of 16 */
        __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(tile + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
    }
    return tile;
}

AVX512 static void score_tile_512(const float *q, int64_t G, const float *k, int64_t D, float scale, int64_t tn,
                                  float *sc, int64_t ld) {
    __m256 scale8 = _mm256_set1_ps(scale);
    int64_t t = 0;
    for (; t + 8 <= tn; t += 8) {
        for (int64_t h = 0; h < G; h++) {
            __m512 a[8];
            __m256 half[8];
            for (int j = 0; j < 8; j++) a[j] = _mm512_setzero_ps();
            for (int64_t d = 0; d < D; d += 16) {
                __m512 qd = _mm512_loadu_ps(q + h * D + d);
                for (int j = 0; j < 8; j++) a[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k + (t + j) * D + d), a[j]);
            }
            for (int j = 0; j < 8; j++)
                half[j] = _mm256_add_ps(_mm512_castps512_ps256(a[j]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[j]), 1)));
            _mm256_storeu_ps(sc + h * ld + t, _mm256_mul_ps(sum_each(half), scale8));
        }
    }
    for (; t < tn; t++)
        for (int64_t h = 0; h < G; h++) sc[h * ld + t] = dot(q + h * D, k + t * D, D) * scale;
}

/* o[h][d..d + 16W) += sum_t p[h][t] v_t[d..d + 16W) for NH heads (as DEF_VACC, 16 lanes). */
#define DEF_VACC512(NH, W)                                                                         \
    AVX512 __attribute__((noinline)) static void vacc512_##NH##_##W(                               \
        const float *const *p, const float *v, int64_t n, int64_t D, int64_t d, float *const *o) { \
        __m512 a[NH][W];                                                                           \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int j = 0; j < W; j++) a[h][j] = _mm512_setzero_ps(); \
        for (int64_t t = 0; t < n; t++) {                                                          \
            __m512 x[W];                                                                           \
            UNROLL for (int j = 0; j < W; j++) x[j] = _mm512_loadu_ps(v + t * D + d + 16 * j);    \
            UNROLL for (int h = 0; h < NH; h++) {                                                  \
                __m512 ph = _mm512_set1_ps(p[h][t]);                                               \
                UNROLL for (int j = 0; j < W; j++) a[h][j] = _mm512_fmadd_ps(ph, x[j], a[h][j]);   \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int j = 0; j < W; j++) {                  \
            float *out = o[h] + d + 16 * j;                                                        \
            _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), a[h][j]));                   \
        }                                                                                          \
    }
DEF_VACC512(1, 4)
DEF_VACC512(2, 4)
DEF_VACC512(3, 4)
DEF_VACC512(1, 1)
DEF_VACC512(2, 1)
DEF_VACC512(3, 1)

AVX512 static void value_tile_512(const float *p0, int64_t G, int64_t ld, const float *vt, int64_t tn, int64_t D,
                                  float *o) {
    for (int64_t h = 0; h < G; h += 3) {
        int nh = G - h < 3 ? (int)(G - h) : 3;
        const float *p[3];
        float *oh[3];
        for (int j = 0; j < 3; j++) {
            int64_t hj = h + (j < nh ? j : 0);
            p[j] = p0 + hj * ld;
            oh[j] = o + hj * D;
        }
        int64_t d = 0;
        for (; d + 64 <= D; d += 64) {
            if (nh == 3) vacc512_3_4(p, vt, tn, D, d, oh);
            else if (nh == 2) vacc512_2_4(p, vt, tn, D, d, oh);
            else vacc512_1_4(p, vt, tn, D, d, oh);
        }
        for (; d < D; d += 16) {
            if (nh == 3) vacc512_3_1(p, vt, tn, D, d, oh);
            else if (nh == 2) vacc512_2_1(p, vt, tn, D, d, oh);
            else vacc512_1_1(p, vt, tn, D, d, oh);
        }
    }
}

/* Attention of the G query heads q[0..G) (D apart) that share one kv head, over columns lo..hi-1 of
 * its cache (kc, vc, in format kv_fmt), not yet normalised: per head h, m[h] = the largest score,
 * s[h] = the sum of exp(score - m[h]) and o[h * D ..] = that sum's weighted values. Keys and values
 * are read from memory once for the whole group (each query head reading them again was the cost at
 * long contexts), KV_TILE columns at a time (a tile stays in L1); scores: G * (hi - lo + 8) floats of
 * scratch, tile: KV_TILE * D. wide: the AVX-512 tile functions (the caller checks the CPU has them). */
AVX2 void attend_part(const float *q, int64_t G, const void *kc, const void *vc, int64_t kv_fmt,
                             int64_t D, float scale, int64_t lo, int64_t hi, float *scores, float *tile,
                             float *m, float *s, float *o, int wide) {
    int64_t n = hi - lo, ld = (n + 8) / 8 * 8, t;
    for (int64_t t0 = 0; t0 < n; t0 += KV_TILE) {
        int64_t tn = n - t0 < KV_TILE ? n - t0 : KV_TILE;
        if (wide) score_tile_512(q, G, kv_tile_512(kc, kv_fmt, lo + t0, tn, D, tile), D, scale, tn, scores + t0, ld);
        else score_tile(q, G, kv_tile(kc, kv_fmt, lo + t0, tn, D, tile), D, scale, tn, scores + t0, ld);
    }
    for (int64_t h = 0; h < G; h++) {  /* exp(score - max), in place, and the sum */
        float *sc = scores + h * ld, top = -INFINITY, total = 0.0f;
        for (t = 0; t < n; t++) top = sc[t] > top ? sc[t] : top;
        __m256 top8 = _mm256_set1_ps(top), sum8 = _mm256_setzero_ps();
        for (t = 0; t + 8 <= n; t += 8) {
            __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + t), top8));
            _mm256_storeu_ps(sc + t, e);
            sum8 = _mm256_add_ps(sum8, e);
        }
        float part[8];
        _mm256_storeu_ps(part, sum8);
        for (int j = 0; j < 8; j++) total += part[j];
        for (; t < n; t++) total += sc[t] = expf(sc[t] - top);
        m[h] = top;
        s[h] = total;
        memset(o + h * D, 0, (size_t)D * sizeof(float));
    }
    for (int64_t t0 = 0; t0 < n; t0 += KV_TILE) {
        int64_t tn = n - t0 < KV_TILE ? n - t0 : KV_TILE;
        if (wide) value_tile_512(scores + t0, G, ld, kv_tile_512(vc, kv_fmt, lo + t0, tn, D, tile), tn, D, o);
        else value_tile(scores + t0, G, ld, kv_tile(vc, kv_fmt, lo + t0, tn, D, tile), tn, D, o);
    }
}

#endif
