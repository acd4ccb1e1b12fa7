/* Quantized and bf16 weight rows times fp32 activations: the matrix products of the native step when
 * its weights are Q4_1 or Q8_0 (as a GGUF file ships them) or bf16. Layouts: quant.h.
 *
 * Why: a decode step reads every weight once, so its time follows the bytes read; Q4_1 is 5 bits a
 * weight against 32 for fp32. Each 32-weight block is widened to fp32 in registers (nibbles or int8
 * -> int32 -> float, times the block's scale, plus its minimum for Q4_1) and multiplied by up to four
 * activation rows while it is there, so the weights stream from memory once for four rows.
 *
 * Five compiled paths, chosen at run time by the caller (quant_best_isa: what this CPU has):
 *   section 1   scalar C (any CPU; the reference the others are tested against)
 *   section 2   AVX2 + FMA + F16C, 8 lanes
 *   section 3   AVX-512 F/BW/VL, 16 lanes
 *   sections 3b and 3c, in quant_vnni.c: AVX-512 VNNI, int8 activations (Q4_1 / Q8_0; bf16 takes
 *               section 3): 3b for batches of VNNI_MIN_ROWS+ rows, 16 rows in the lanes; 3c for 1 to
 *               VNNI_MIN_ROWS-1 rows, several weight blocks a vpdpbusd
 * Section 4 is the matrix-vector product built on them (an orphaned OpenMP loop over groups of 8
 * output rows, section 3b's over units of 4, or 3c's over single output rows). Only quant_matmul
 * allocates (the VNNI paths' int8 activations, when the caller has no scratch for them).
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

#else /* not x86-64: the scalar path only */
int quant_best_isa(void) { return ISA_SCALAR; }

static RowDot pick(int isa, int R) {
    static const RowDot table[4] = {dot_scalar_1, dot_scalar_2, dot_scalar_3, dot_scalar_4};
    (void)isa;
    return table[R - 1];
}
#endif

/* -- 4. the matrix-vector product ------------------------------------------------------------------ */

/* Whether a product of this format and rows on isa takes a VNNI path (quant_vnni.c), given a
 * buffer for its int8 activations. */
static int vnni_takes(int fmt, int isa, int64_t rows) {
#if defined(__x86_64__) && defined(__GNUC__)
    return isa >= ISA_VNNI && rows >= 1 && (fmt == FMT_Q4_1 || fmt == FMT_Q8_0);
#else
    (void)fmt, (void)isa, (void)rows;
    return 0;
#endif
}

void quant_gemv(int fmt, int isa, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx,
                int64_t rows, float *y, int64_t ldy, int mode, uint8_t *qx) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (qx && vnni_takes(fmt, isa, rows)) {
        quant_vnni_gemv(fmt, W, N, K, x, ldx, rows, y, ldy, mode, qx);
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
