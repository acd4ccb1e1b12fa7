/* Quantized and bf16 weight rows times fp32 activations: the matrix products of the native step when
 * its weights are Q4_1 or Q8_0 (as a GGUF file ships them) or bf16. Layouts: quant.h.
 *
 * Why: a decode step reads every weight once, so its time follows the bytes read; Q4_1 is 5 bits a
 * weight against 32 for fp32. Each 32-weight block is widened to fp32 in registers (nibbles or int8
 * -> int32 -> float, times the block's scale, plus its minimum for Q4_1) and multiplied by up to four
 * activation rows while it is there, so the weights stream from memory once for four rows.
 *
 * Four compiled paths, chosen at run time by the caller (quant_best_isa: what this CPU has):
 *   section 1   scalar C (any CPU; the reference the others are tested against)
 *   section 2   AVX2 + FMA + F16C, 8 lanes
 *   section 3   AVX-512 F/BW/VL, 16 lanes
 *   section 3b  AVX-512 VNNI: batches of VNNI_MIN_ROWS+ rows on int8 activations, 16 rows in the
 *               lanes (Q4_1 / Q8_0; fewer rows and bf16 take section 3)
 * Section 4 is the matrix-vector product built on them (an orphaned OpenMP loop over groups of 8
 * output rows, or section 3b's over units of 4). Only quant_matmul allocates (section 3b's int8
 * activations, when the caller has no scratch for them: the Linear layers of prefill).
 */

#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 32

int64_t quant_row_bytes(int fmt, int64_t K) {
    switch (fmt) {
        case FMT_Q4_1: return K / BLOCK * 20;
        case FMT_Q8_0: return K / BLOCK * 34;
        case FMT_BF16: return K * 2;
        default: return K * 4;
    }
}

/* Bytes of one 32-weight block (bf16: 32 values). */
static int64_t block_bytes(int fmt) { return quant_row_bytes(fmt, BLOCK); }

/* -- 1. scalar ------------------------------------------------------------------------------------ */

static uint16_t load_u16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);  /* blocks are 2-byte aligned only by luck of the layout: never dereference */
    return v;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        float f = ldexpf((float)mant, -24);  /* zero or subnormal */
        return sign ? -f : f;
    }
    bits = exp == 31 ? sign | 0x7f800000u | (mant << 13) : sign | ((exp + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* The 32 weights of one block as fp32. */
static void block_to_f32(int fmt, const uint8_t *blk, float *out) {
    if (fmt == FMT_Q4_1) {
        float d = half_to_float(load_u16(blk)), m = half_to_float(load_u16(blk + 2));
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)(blk[4 + j] & 15) + m;
            out[j + 16] = d * (float)(blk[4 + j] >> 4) + m;
        }
    } else if (fmt == FMT_Q8_0) {
        float d = half_to_float(load_u16(blk));
        for (int j = 0; j < 32; j++) out[j] = d * (float)(int8_t)blk[2 + j];
    } else {
        for (int j = 0; j < 32; j++) {
            uint32_t bits = (uint32_t)load_u16(blk + 2 * j) << 16;
            memcpy(out + j, &bits, 4);
        }
    }
}

void quant_row_to_f32(int fmt, const uint8_t *row, int64_t K, float *out) {
    if (fmt == FMT_F32) {
        memcpy(out, row, (size_t)K * sizeof(float));
        return;
    }
    for (int64_t b = 0; b < K / BLOCK; b++) block_to_f32(fmt, row + b * block_bytes(fmt), out + b * BLOCK);
}

/* out[r] = row . x[r] for r < R: the dot product of one weight row with R activation rows. */
typedef void (*RowDot)(int fmt, const uint8_t *w, int64_t K, const float *x, int64_t ldx, float *out);

#define DEF_SCALAR(R)                                                                              \
    static void dot_scalar_##R(int fmt, const uint8_t *w, int64_t K, const float *x, int64_t ldx,   \
                               float *out) {                                                       \
        float acc[R] = {0}, wv[BLOCK];                                                             \
        int64_t bb = block_bytes(fmt);                                                             \
        for (int64_t b = 0; b < K / BLOCK; b++) {                                                  \
            block_to_f32(fmt, w + b * bb, wv);                                                     \
            for (int r = 0; r < R; r++) {                                                          \
                const float *xr = x + r * ldx + b * BLOCK;                                         \
                float s = 0.0f;                                                                    \
                for (int j = 0; j < BLOCK; j++) s += wv[j] * xr[j];                                \
                acc[r] += s;                                                                       \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R; r++) out[r] = acc[r];                                               \
    }
DEF_SCALAR(1)
DEF_SCALAR(2)
DEF_SCALAR(3)
DEF_SCALAR(4)

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define UNROLL _Pragma("GCC unroll 4")

int quant_best_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return __builtin_cpu_supports("avx512vnni") ? ISA_VNNI : ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ISA_AVX2;  /* (every AVX2 CPU has F16C) */
    return ISA_SCALAR;
}

/* -- 2. AVX2: a block is four vectors of 8 ----------------------------------------------------------- */
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

T_AVX2 static inline void block8(int fmt, const uint8_t *blk, __m256 *v) {
    if (fmt == FMT_Q4_1) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk))), m = _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 2)));
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 4)), mask = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int i = 0; i < 4; i++) v[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[i])), d, m);
    } else if (fmt == FMT_Q8_0) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk)));
        for (int i = 0; i < 4; i++)
            v[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i)))), d);
    } else {
        for (int i = 0; i < 4; i++)
            v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(
                _mm_loadu_si128((const __m128i *)(blk + 16 * i))), 16));
    }
}

T_AVX2 static inline float hsum8(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four accumulators a row (one per vector of a block): with one row, two per row left each FMA
 * waiting on the one before it (latency-bound, ~1.6x slower). */
#define DEF_AVX2(R)                                                                                \
    T_AVX2 static void dot_avx2_##R(int fmt, const uint8_t *w, int64_t K, const float *x, int64_t ldx, \
                                    float *out) {                                                  \
        __m256 acc[R][4], v[4];                                                                    \
        int64_t bb = block_bytes(fmt);                                                             \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            for (int i = 0; i < 4; i++) acc[r][i] = _mm256_setzero_ps();                           \
        for (int64_t b = 0; b < K / BLOCK; b++) {                                                  \
            block8(fmt, w + b * bb, v);                                                            \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                const float *xr = x + r * ldx + b * BLOCK;                                         \
                for (int i = 0; i < 4; i++) acc[r][i] = _mm256_fmadd_ps(v[i], _mm256_loadu_ps(xr + 8 * i), acc[r][i]); \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            out[r] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3]))); \
    }
DEF_AVX2(1)
DEF_AVX2(2)
DEF_AVX2(3)
DEF_AVX2(4)

/* -- 3. AVX-512: a block is two vectors of 16 ------------------------------------------------------- */
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

T_AVX512 static inline void block16(int fmt, const uint8_t *blk, __m512 *v) {
    if (fmt == FMT_Q4_1) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(load_u16(blk))), m = _mm512_set1_ps(_cvtsh_ss(load_u16(blk + 2)));
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 4)), mask = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        v[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), d, m);
        v[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), d, m);
    } else if (fmt == FMT_Q8_0) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(load_u16(blk)));
        for (int i = 0; i < 2; i++)
            v[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(blk + 2 + 16 * i)))), d);
    } else {
        for (int i = 0; i < 2; i++)
            v[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256((const __m256i *)(blk + 32 * i))), 16));
    }
}

/* Two blocks an iteration into four accumulators a row (see DEF_AVX2 on latency). */
#define DEF_AVX512(R)                                                                              \
    T_AVX512 static void dot_avx512_##R(int fmt, const uint8_t *w, int64_t K, const float *x,      \
                                        int64_t ldx, float *out) {                                 \
        __m512 acc[R][4], v[4];                                                                    \
        int64_t bb = block_bytes(fmt), nb = K / BLOCK, b = 0;                                      \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            for (int i = 0; i < 4; i++) acc[r][i] = _mm512_setzero_ps();                           \
        for (; b + 2 <= nb; b += 2) {                                                              \
            block16(fmt, w + b * bb, v);                                                           \
            block16(fmt, w + (b + 1) * bb, v + 2);                                                 \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                const float *xr = x + r * ldx + b * BLOCK;                                         \
                for (int i = 0; i < 4; i++) acc[r][i] = _mm512_fmadd_ps(v[i], _mm512_loadu_ps(xr + 16 * i), acc[r][i]); \
            }                                                                                      \
        }                                                                                          \
        if (b < nb) {                                                                              \
            block16(fmt, w + b * bb, v);                                                           \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                const float *xr = x + r * ldx + b * BLOCK;                                         \
                for (int i = 0; i < 2; i++) acc[r][i] = _mm512_fmadd_ps(v[i], _mm512_loadu_ps(xr + 16 * i), acc[r][i]); \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]),      \
                                                        _mm512_add_ps(acc[r][2], acc[r][3])));     \
    }
DEF_AVX512(1)
DEF_AVX512(2)
DEF_AVX512(3)
DEF_AVX512(4)

static RowDot pick(int isa, int R) {
    static const RowDot table[3][4] = {
        {dot_scalar_1, dot_scalar_2, dot_scalar_3, dot_scalar_4},
        {dot_avx2_1, dot_avx2_2, dot_avx2_3, dot_avx2_4},
        {dot_avx512_1, dot_avx512_2, dot_avx512_3, dot_avx512_4},
    };
    isa = isa < ISA_SCALAR ? ISA_SCALAR : isa > ISA_AVX512 ? ISA_AVX512 : isa;
    return table[isa][R - 1];
}

/* -- 3b. AVX-512 VNNI: int8 activations, 16 rows in the lanes (batches and prefill) ---------------- *
 * A batch of rows is compute-bound: widening each weight to fp32 costs as much as the multiply. Here
 * the activations are quantized instead, per row and 32-value block, as llama.cpp's q8 path does:
 * dx = max|x| / 127, xq = round(x / dx) in -127..127, stored as xu = xq + 128 (unsigned). One
 * vpdpbusd multiplies 4 weight bytes (broadcast to all lanes, signed: Q8_0's int8, Q4_1's nibbles
 * 0..15) by 4 bytes of each of 16 rows (one row a 32-bit lane), so a block of 32 weights is 8
 * instructions for 16 rows and each weight byte is read once for all of them. Per block and row:
 *   sum_k w_k x_k ~= d * dx * (sum_k q_k xu_k - 128 sum_k q_k) [+ m * dx * sum_k xq_k for Q4_1]
 * The result is the dequantized fp32 model's up to the activations' rounding (|error| of a dot
 * product <= sum_k |w_k| dx / 2; in practice ~0.5 % of the largest output).
 * Layout of the quantized activations (qx, quant_qx_bytes): rows padded to groups of 16 (padding rows are
 * xq = 0, dx = 0); for group g and block b, bytes xu[g][b][8][16][4] (dword j of row r at [j][r]),
 * then floats xs[g][b][2][16]: the 16 rows' dx, then their dx * sum(xq). */

#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

int64_t quant_qx_bytes(int64_t rows, int64_t K) {
    int64_t groups = (rows + 15) / 16;
    return groups * (K / BLOCK) * (BLOCK * 16 + 2 * 16 * 4) + 64;
}

static uint8_t *qx_group(uint8_t *qx, int64_t K, int64_t g) { return qx + g * (K / BLOCK) * (BLOCK * 16 + 128); }

/* Quantize rows 0..rows-1 of x (and the padding rows up to a multiple of 16) into qx. Orphaned
 * `omp for` over (group, block). */
T_VNNI static void quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t K, uint8_t *qx) {
    int64_t nb = K / BLOCK, groups = (rows + 15) / 16;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < groups * nb; task++) {
        int64_t g = task / nb, b = task % nb;
        uint8_t *xu = qx_group(qx, K, g) + b * (BLOCK * 16 + 128);
        float *xs = (float *)(xu + BLOCK * 16);
        for (int64_t r = 0; r < 16; r++) {
            int64_t row = g * 16 + r;
            __m512i q0 = _mm512_setzero_si512(), q1 = q0;
            float dx = 0.0f, sum = 0.0f;
            if (row < rows) {
                const float *xr = x + row * ldx + b * BLOCK;
                __m512 a = _mm512_loadu_ps(xr), c = _mm512_loadu_ps(xr + 16);
                float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
                dx = amax / 127.0f;
                __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
                q0 = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv));  /* round to nearest (even) */
                q1 = _mm512_cvtps_epi32(_mm512_mul_ps(c, inv));
                sum = (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            }
            __m128i b0 = _mm_add_epi8(_mm512_cvtepi32_epi8(q0), _mm_set1_epi8((char)0x80));
            __m128i b1 = _mm_add_epi8(_mm512_cvtepi32_epi8(q1), _mm_set1_epi8((char)0x80));
            uint32_t dw[8];
            _mm_storeu_si128((__m128i *)dw, b0);
            _mm_storeu_si128((__m128i *)(dw + 4), b1);
            for (int j = 0; j < 8; j++) memcpy(xu + (j * 16 + r) * 4, dw + j, 4);
            xs[r] = dx;
            xs[16 + r] = dx * sum;
        }
    }
}

/* A 4-byte group of weights, read where it lies (Q8_0 blocks are 2-byte aligned at best). */
typedef int32_t dword_at __attribute__((aligned(1)));

/* acc + the 16 lanes' 4-byte dot products of x (unsigned) with the 4 signed bytes at q, broadcast:
 * vpdpbusd with an embedded broadcast operand (GCC otherwise emits a separate vpbroadcastd). */
T_VNNI static inline __m512i dpbusd_bcast(__m512i acc, __m512i x, const dword_at *q) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*q));
    return acc;
}

/* One block of a weight row: q, its 8 dwords of signed bytes in k order (Q8_0: the block's own
 * bytes; Q4_1: the nibbles unpacked into own), its scale d, its minimum m (Q4_1; 0 for Q8_0) and
 * corr = -128 * the sum of its bytes. */
typedef struct { const dword_at *q; float d, m; int32_t corr; int32_t own[8]; } WBlock;

T_VNNI static inline void wblock(int fmt, const uint8_t *blk, WBlock *out) {
    __m128i s;
    out->d = _cvtsh_ss(load_u16(blk));
    if (fmt == FMT_Q4_1) {
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 4)), mask = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm_storeu_si128((__m128i *)out->own, lo);
        _mm_storeu_si128((__m128i *)(out->own + 4), hi);
        out->q = out->own;
        out->m = _cvtsh_ss(load_u16(blk + 2));
        s = _mm_sad_epu8(_mm_add_epi8(lo, hi), _mm_setzero_si128());  /* nibble pairs: at most 30 */
    } else {
        __m128i flip = _mm_set1_epi8((char)0x80);  /* sad of (byte ^ 0x80) counts each byte + 128 */
        out->q = (const dword_at *)(blk + 2);
        out->m = 0.0f;
        s = _mm_add_epi64(_mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(blk + 2)), flip),
                                       _mm_setzero_si128()),
                          _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(blk + 18)), flip),
                                       _mm_setzero_si128()));
        s = _mm_sub_epi64(s, _mm_set1_epi64x(16 * 128));  /* (each half of the sum counts 16 bytes) */
    }
    out->corr = -128 * (int32_t)(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
}

/* Four weight rows (wr[0..3]) of format F against G groups of 16 rows of qx (starting at group g0):
 * out[i * 4 + w] holds group i, weight row w. All G * 4 sums stay in registers; each row's integer
 * sum is two chains (even and odd dwords of the block) so consecutive vpdpbusd do not wait on each
 * other. One function per (G, format): the format is a constant inside the loops. */
#define UNROLL8 _Pragma("GCC unroll 8")
#define DEF_VNNI(G, F, NAME)                                                                       \
    T_VNNI __attribute__((noinline)) static void vnni_##NAME##_##G(const uint8_t *const *wr, int64_t K, \
                                                                   const uint8_t *qx, int64_t g0, __m512 *out) { \
        int64_t nb = K / BLOCK, bb = block_bytes(F);                                               \
        __m512 acc[G][4];                                                                          \
        UNROLL8 for (int i = 0; i < G; i++) UNROLL8 for (int w = 0; w < 4; w++) acc[i][w] = _mm512_setzero_ps(); \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            WBlock wb[4];                                                                          \
            UNROLL8 for (int w = 0; w < 4; w++) wblock(F, wr[w] + b * bb, wb + w);                 \
            UNROLL8 for (int i = 0; i < G; i++) {                                                  \
                const uint8_t *xu = qx_group((uint8_t *)qx, K, g0 + i) + b * (BLOCK * 16 + 128);   \
                const float *xs = (const float *)(xu + BLOCK * 16);                                \
                __m512i s[4][2];                                                                   \
                UNROLL8 for (int w = 0; w < 4; w++) {                                              \
                    s[w][0] = _mm512_set1_epi32(wb[w].corr);                                       \
                    s[w][1] = _mm512_setzero_si512();                                              \
                }                                                                                  \
                UNROLL8 for (int j = 0; j < 8; j++) {                                              \
                    __m512i xv = _mm512_loadu_si512((const void *)(xu + j * 64));                  \
                    UNROLL8 for (int w = 0; w < 4; w++)                                            \
                        s[w][j & 1] = dpbusd_bcast(s[w][j & 1], xv, wb[w].q + j);                     \
                }                                                                                  \
                __m512 dx = _mm512_loadu_ps(xs);                                                   \
                UNROLL8 for (int w = 0; w < 4; w++) {                                              \
                    __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(s[w][0], s[w][1]));            \
                    acc[i][w] = _mm512_fmadd_ps(_mm512_mul_ps(f, _mm512_set1_ps(wb[w].d)), dx, acc[i][w]); \
                    if (F == FMT_Q4_1)                                                             \
                        acc[i][w] = _mm512_fmadd_ps(_mm512_loadu_ps(xs + 16), _mm512_set1_ps(wb[w].m), acc[i][w]); \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        UNROLL8 for (int i = 0; i < G; i++) UNROLL8 for (int w = 0; w < 4; w++) out[i * 4 + w] = acc[i][w]; \
    }
DEF_VNNI(1, FMT_Q4_1, q4)
DEF_VNNI(2, FMT_Q4_1, q4)
DEF_VNNI(3, FMT_Q4_1, q4)
DEF_VNNI(4, FMT_Q4_1, q4)
DEF_VNNI(1, FMT_Q8_0, q8)
DEF_VNNI(2, FMT_Q8_0, q8)
DEF_VNNI(3, FMT_Q8_0, q8)
DEF_VNNI(4, FMT_Q8_0, q8)

typedef void (*VnniUnit)(const uint8_t *const *wr, int64_t K, const uint8_t *qx, int64_t g0, __m512 *out);

/* quant_gemv's work on the VNNI path, x already in qx: units of four weight rows (SWIGLU: two gate
 * rows and their two up rows), each over all rows of x, 64 rows (4 groups) a pass. */
T_VNNI static void gemv_vnni(int fmt, const uint8_t *W, int64_t N, int64_t K, const uint8_t *qx,
                             int64_t rows, float *y, int64_t ldy, int mode) {
    int64_t rb = quant_row_bytes(fmt, K), per = mode == QSWIGLU ? 2 : 4, units = (N + per - 1) / per;
    int64_t groups = (rows + 15) / 16;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t n[4];
        const uint8_t *wr[4];
        int nw = N - u * per < per ? (int)(N - u * per) : (int)per;
        for (int w = 0; w < 4; w++) {
            int64_t i = w % per < nw ? w % per : nw - 1;  /* missing rows repeat the last one, unused */
            n[w] = u * per + i;
            wr[w] = W + (n[w] + (mode == QSWIGLU && w >= 2 ? N : 0)) * rb;
        }
        for (int64_t g = 0; g < groups; g += 4) {
            int G = groups - g < 4 ? (int)(groups - g) : 4;
            static const VnniUnit table[2][4] = {{vnni_q4_1, vnni_q4_2, vnni_q4_3, vnni_q4_4},
                                                 {vnni_q8_1, vnni_q8_2, vnni_q8_3, vnni_q8_4}};
            __m512 acc[16];
            table[fmt == FMT_Q8_0][G - 1](wr, K, qx, g, acc);
            for (int i = 0; i < G; i++) {
                float v[4][16];
                for (int w = 0; w < 4; w++) _mm512_storeu_ps(v[w], acc[i * 4 + w]);
                int64_t r1 = rows - (g + i) * 16 < 16 ? rows - (g + i) * 16 : 16;
                for (int64_t r = 0; r < r1; r++) {
                    float *yr = y + ((g + i) * 16 + r) * ldy;
                    for (int w = 0; w < nw; w++) {
                        if (mode == QSWIGLU)
                            yr[n[w]] = v[w][r] / (1.0f + expf(-v[w][r])) * v[w + 2][r];
                        else if (mode == QADD)
                            yr[n[w]] += v[w][r];
                        else
                            yr[n[w]] = v[w][r];
                    }
                }
            }
        }
    }
}

#else /* not x86-64: the scalar path only */
int quant_best_isa(void) { return ISA_SCALAR; }
int64_t quant_qx_bytes(int64_t rows, int64_t K) { return 0; }

static RowDot pick(int isa, int R) {
    static const RowDot table[4] = {dot_scalar_1, dot_scalar_2, dot_scalar_3, dot_scalar_4};
    (void)isa;
    return table[R - 1];
}
#endif

/* -- 4. the matrix-vector product ------------------------------------------------------------------ */

/* Whether a product of this format and rows on isa takes the VNNI path (section 3b), given a buffer
 * for its int8 activations. */
static int vnni_takes(int fmt, int isa, int64_t rows) {
#if defined(__x86_64__) && defined(__GNUC__)
    return isa >= ISA_VNNI && rows >= VNNI_MIN_ROWS && (fmt == FMT_Q4_1 || fmt == FMT_Q8_0);
#else
    (void)fmt, (void)isa, (void)rows;
    return 0;
#endif
}

void quant_gemv(int fmt, int isa, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx,
                int64_t rows, float *y, int64_t ldy, int mode, uint8_t *qx) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (qx && vnni_takes(fmt, isa, rows)) {
        quantize_rows(x, ldx, rows, K, qx);  /* (its omp for ends in a barrier: qx is whole after it) */
        gemv_vnni(fmt, W, N, K, qx, rows, y, ldy, mode);
        return;
    }
#endif
    int64_t rb = quant_row_bytes(fmt, K), groups = (N + 7) / 8;
    RowDot dots[4] = {pick(isa, 1), pick(isa, 2), pick(isa, 3), pick(isa, 4)};
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        int64_t n1 = g * 8 + 8 < N ? g * 8 + 8 : N;
        for (int64_t b = 0; b < rows; b += 4) {  /* the group's 8 weight rows stay in L1 across passes */
            int R = rows - b < 4 ? (int)(rows - b) : 4;
            const float *xb = x + b * ldx;
            for (int64_t n = g * 8; n < n1; n++) {
                float s[4], u[4];
                dots[R - 1](fmt, W + n * rb, K, xb, ldx, s);
                if (mode == QSWIGLU) {
                    dots[R - 1](fmt, W + (n + N) * rb, K, xb, ldx, u);
                    for (int r = 0; r < R; r++) y[(b + r) * ldy + n] = s[r] / (1.0f + expf(-s[r])) * u[r];
                } else if (mode == QADD) {
                    for (int r = 0; r < R; r++) y[(b + r) * ldy + n] += s[r];
                } else {
                    for (int r = 0; r < R; r++) y[(b + r) * ldy + n] = s[r];
                }
            }
        }
    }
}

/* y[rows][N] = x[rows][K] W^T on threads threads: the transformers forward's Linear layers (prefill,
 * large batches) on the step's own weights. scratch: qx_bytes bytes for the VNNI path's int8
 * activations; when short (or NULL) a buffer is allocated for the call (a fresh one a call costs
 * page faults: ~5 % of a prefill). Returns 0, or -1 for a size it cannot take (or when that buffer
 * cannot be allocated). */
int quant_matmul(int fmt, int isa, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t rows,
                 float *y, int threads, uint8_t *scratch, int64_t qx_bytes) {
    if (K % BLOCK || N < 1 || rows < 0) return -1;
    uint8_t *qx = scratch, *own = NULL;
    int64_t need = quant_qx_bytes(rows, K);
    if (vnni_takes(fmt, isa, rows) && (!scratch || qx_bytes < need) && !(qx = own = malloc((size_t)need)))
        return -1;
#pragma omp parallel num_threads(threads)
    quant_gemv(fmt, isa, W, N, K, x, K, rows, y, N, QSTORE, qx);
    free(own);
    return 0;
}
