/* The AVX-512 VNNI paths of the quantized products (quant.c's sections 3b and 3c, kept in a file of
 * their own): Q4_1 and Q8_0 weight blocks, as the GGUF file ships them (quant.h), times activations
 * quantized to int8 per row and 32-value block. quant.c's quant_gemv calls quant_vnni_gemv when the
 * CPU has VNNI and the caller gave a qx buffer (quant_qx_bytes); 8+ rows take section 3b, fewer 3c.
 * The functions here are compiled for AVX-512 VNNI only by their target attributes, so this file
 * builds with the same flags as the others and nothing here runs on a CPU without it. */

#include "quant.h"

#include <math.h>
#include <string.h>

#define BLOCK 32

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Bytes of one 32-weight block (spelled out: quant_row_bytes is exported, so a call to it goes through
 * the PLT, and in these loops such a call cost a third of their time). */
#define BLOCK_BYTES(fmt) ((fmt) == FMT_Q4_1 ? 20 : 34)

/* A 16-bit word read where it lies (blocks are 2-byte aligned only by luck of the layout). */
typedef uint16_t word_at __attribute__((aligned(1)));

/* -- 3b. 8+ rows: int8 activations, 16 rows in the lanes (batches and prefill) ---------------------- *
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

static int64_t few_row_bytes(int fmt, int64_t K);

int64_t quant_qx_bytes(int64_t rows, int64_t K) {
    int64_t groups = (rows + 15) / 16, wide = groups * (K / BLOCK) * (BLOCK * 16 + 2 * 16 * 4) + 64;
    int64_t few = rows * few_row_bytes(FMT_Q4_1, K) + 64;  /* (Q4_1's layout is the larger) */
    return few > wide ? few : wide;
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
    out->d = _cvtsh_ss(*(const word_at *)blk);
    if (fmt == FMT_Q4_1) {
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + 4)), mask = _mm_set1_epi8(15);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm_storeu_si128((__m128i *)out->own, lo);
        _mm_storeu_si128((__m128i *)(out->own + 4), hi);
        out->q = out->own;
        out->m = _cvtsh_ss(*(const word_at *)(blk + 2));
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
        int64_t nb = K / BLOCK, bb = BLOCK_BYTES(F);                                               \
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

/* -- 3c. 1 to VNNI_MIN_ROWS-1 rows: several weight blocks in the lanes (decode of few streams) ----- *
 * One row of activations cannot fill section 3b's 16 lanes, and widening every weight to fp32
 * (section 3) costs ~12 instructions a block: at one row that, not the memory, bounds the step. Here
 * the weights are read in place a pass of several blocks at once: one vpermt2w gathers the pass's
 * quantized bytes out of its blocks (Q4_1: 4 blocks, 80 bytes; Q8_0: 2 blocks, 68 bytes; both
 * word-aligned) and another its fp16 scales, so that dot-product lane l belongs to block l / 4
 * (Q4_1) or l / 8 (Q8_0) and one vpdpbusd does 64 multiply-adds. ~4 instructions a block for Q4_1, ~6
 * for Q8_0. The activations are quantized as in section 3b (the same dx and rounding: the same
 * int8 scheme, so a stream's logits do not depend on how many rows share its step), into
 * few_row_bytes per row, for each pass:
 *   Q4_1 (nibbles are unsigned): int8 xq of the 4 blocks' weights 0-15 (64 bytes), of weights 16-31
 *        (64), then per lane the block's dx (16 floats) and dx * sum(xq) / 4 (16 floats: the minimum's
 *        term, summed over the block's 4 lanes);
 *   Q8_0 (weights signed): xu = xq + 128 of the 2 blocks (64 bytes), then per lane dx (16 floats); the
 *        +128 comes back off as 128 * sum(q), one more vpdpbusd against ones. */

static int64_t few_blocks(int fmt) { return fmt == FMT_Q4_1 ? 4 : 2; }
static int64_t few_pass_bytes(int fmt) { return fmt == FMT_Q4_1 ? 256 : 128; }

static int64_t few_row_bytes(int fmt, int64_t K) {
    int64_t per = few_blocks(fmt);
    return (K / BLOCK + per - 1) / per * few_pass_bytes(fmt);
}

/* Quantize rows 0..rows-1 of x into qx, few_row_bytes(fmt, K) a row. Orphaned `omp for` over
 * (row, pass). */
T_VNNI static void quantize_few(int fmt, const float *x, int64_t ldx, int64_t rows, int64_t K, uint8_t *qx) {
    int64_t nb = K / BLOCK, per = few_blocks(fmt), passes = (nb + per - 1) / per;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < rows * passes; task++) {
        int64_t r = task / passes, p = task % passes;
        uint8_t *out = qx + r * few_row_bytes(fmt, K) + p * few_pass_bytes(fmt);
        float *lanes = (float *)(out + (fmt == FMT_Q4_1 ? 128 : 64));
        for (int64_t j = 0; j < per; j++) {
            int64_t b = p * per + j;
            __m512i q0 = _mm512_setzero_si512(), q1 = q0;
            float dx = 0.0f, sum = 0.0f;
            if (b < nb) {
                const float *xr = x + r * ldx + b * BLOCK;
                __m512 a = _mm512_loadu_ps(xr), c = _mm512_loadu_ps(xr + 16);
                float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
                dx = amax / 127.0f;
                __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
                q0 = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv));  /* round to nearest (even), as 3b */
                q1 = _mm512_cvtps_epi32(_mm512_mul_ps(c, inv));
                sum = (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            }
            __m128i b0 = _mm512_cvtepi32_epi8(q0), b1 = _mm512_cvtepi32_epi8(q1);
            if (fmt == FMT_Q4_1) {
                _mm_storeu_si128((__m128i *)(out + 16 * j), b0);
                _mm_storeu_si128((__m128i *)(out + 64 + 16 * j), b1);
                for (int l = 0; l < 4; l++) {
                    lanes[4 * j + l] = dx;
                    lanes[16 + 4 * j + l] = dx * sum / 4.0f;
                }
            } else {
                __m128i flip = _mm_set1_epi8((char)0x80);
                _mm_storeu_si128((__m128i *)(out + 32 * j), _mm_xor_si128(b0, flip));
                _mm_storeu_si128((__m128i *)(out + 32 * j + 16), _mm_xor_si128(b1, flip));
                for (int l = 0; l < 8; l++) lanes[8 * j + l] = dx;
            }
        }
    }
}

/* The 16-bit words of pass p of a weight row: A = its first 64 bytes, B = the rest (Q4_1 16 bytes,
 * Q8_0 4), both zero past the row's end (a short last pass: its missing blocks read as zeros, which
 * their zero scales and activations make no-ops). */
T_VNNI static inline void few_load(int fmt, const uint8_t *w, int64_t nb, int64_t p, __m512i *A, __m512i *B) {
    int64_t per = few_blocks(fmt), bb = BLOCK_BYTES(fmt), n = nb - p * per < per ? nb - p * per : per;
    const uint8_t *at = w + p * per * bb;
    int64_t bytes = n * bb;
    if (n == per) {
        *A = _mm512_loadu_si512((const void *)at);
        *B = fmt == FMT_Q4_1 ? _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(at + 64)))
                             : _mm512_castsi128_si512(_mm_cvtsi32_si128(*(const dword_at *)(at + 64)));
    } else {  /* masked loads never touch the bytes they leave out */
        *A = _mm512_maskz_loadu_epi8(bytes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << bytes) - 1), at);
        *B = bytes > 64 ? _mm512_maskz_loadu_epi8(((__mmask64)1 << (bytes - 64)) - 1, at + 64) : _mm512_setzero_si512();
    }
}

/* out[r] = weight row w . activation row r (of qx, `stride` bytes apart) for r < R. */
#define DEF_FEW(R)                                                                                 \
    T_VNNI static void few_q4_##R(const uint8_t *w, int64_t nb, const uint8_t *qx, int64_t stride, float *out) { \
        /* words: the 8 nibble words of block j (10j+2..10j+9) to words 8j..; its d (10j) to lanes  \
         * 4j..4j+3 of the low half, its m (10j+1) to the same lanes of the high half */           \
        const __m512i qi = _mm512_set_epi16(39, 38, 37, 36, 35, 34, 33, 32, 29, 28, 27, 26, 25, 24, 23, 22, \
                                            19, 18, 17, 16, 15, 14, 13, 12, 9, 8, 7, 6, 5, 4, 3, 2); \
        const __m512i si = _mm512_set_epi16(31, 31, 31, 31, 21, 21, 21, 21, 11, 11, 11, 11, 1, 1, 1, 1, \
                                            30, 30, 30, 30, 20, 20, 20, 20, 10, 10, 10, 10, 0, 0, 0, 0); \
        const __m512i m15 = _mm512_set1_epi8(15);                                                  \
        __m512 acc[R], mins[R];                                                                    \
        for (int r = 0; r < R; r++) acc[r] = mins[r] = _mm512_setzero_ps();                        \
        for (int64_t p = 0; p < (nb + 3) / 4; p++) {                                               \
            __m512i A, B;                                                                          \
            few_load(FMT_Q4_1, w, nb, p, &A, &B);                                                  \
            __m512i q = _mm512_permutex2var_epi16(A, qi, B), s = _mm512_permutex2var_epi16(A, si, B); \
            __m512i lo = _mm512_and_si512(q, m15), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m15); \
            __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(s));                                 \
            __m512 m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(s, 1));                           \
            for (int r = 0; r < R; r++) {                                                          \
                const uint8_t *x = qx + r * stride + p * 256;                                      \
                __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512((const void *)x)); \
                t = _mm512_dpbusd_epi32(t, hi, _mm512_loadu_si512((const void *)(x + 64)));         \
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(t), d),                  \
                                         _mm512_loadu_ps((const float *)(x + 128)), acc[r]);       \
                mins[r] = _mm512_fmadd_ps(m, _mm512_loadu_ps((const float *)(x + 192)), mins[r]);  \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], mins[r])); \
    }                                                                                              \
    T_VNNI static void few_q8_##R(const uint8_t *w, int64_t nb, const uint8_t *qx, int64_t stride, float *out) { \
        /* words: block 0's 16 (1..16) then block 1's (18..33); d0 (0) to lanes 0-7, d1 (17) to 8-15 */ \
        const __m512i qi = _mm512_set_epi16(33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, \
                                            16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1); \
        const __m512i si = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       \
                                            17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0); \
        const __m512i ones = _mm512_set1_epi8(1);                                                  \
        __m512 acc[R];                                                                             \
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();                                  \
        for (int64_t p = 0; p < (nb + 1) / 2; p++) {                                               \
            __m512i A, B;                                                                          \
            few_load(FMT_Q8_0, w, nb, p, &A, &B);                                                  \
            __m512i q = _mm512_permutex2var_epi16(A, qi, B);                                       \
            __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(A, si, B))); \
            __m512i back = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q), 7); \
            for (int r = 0; r < R; r++) {                                                          \
                const uint8_t *x = qx + r * stride + p * 128;                                      \
                __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)x), q); \
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(t, back)), d), \
                                         _mm512_loadu_ps((const float *)(x + 64)), acc[r]);        \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(acc[r]);                         \
    }
DEF_FEW(1)
DEF_FEW(2)
DEF_FEW(3)
DEF_FEW(4)

typedef void (*FewDot)(const uint8_t *w, int64_t nb, const uint8_t *qx, int64_t stride, float *out);

/* quant_gemv's work on this path, x already in qx: an `omp for` over weight rows, four activation
 * rows at a time. */
T_VNNI static void gemv_few(int fmt, const uint8_t *W, int64_t N, int64_t K, const uint8_t *qx, int64_t rows,
                            float *y, int64_t ldy, int mode) {
    static const FewDot table[2][4] = {{few_q4_1, few_q4_2, few_q4_3, few_q4_4},
                                       {few_q8_1, few_q8_2, few_q8_3, few_q8_4}};
    int64_t rb = quant_row_bytes(fmt, K), stride = few_row_bytes(fmt, K);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t b = 0; b < rows; b += 4) {
            int R = rows - b < 4 ? (int)(rows - b) : 4;
            FewDot dot = table[fmt == FMT_Q8_0][R - 1];
            float s[4], u[4];
            dot(W + n * rb, K / BLOCK, qx + b * stride, stride, s);
            if (mode == QSWIGLU) {
                dot(W + (n + N) * rb, K / BLOCK, qx + b * stride, stride, u);
                for (int r = 0; r < R; r++) y[(b + r) * ldy + n] = s[r] / (1.0f + expf(-s[r])) * u[r];
            } else if (mode == QADD) {
                for (int r = 0; r < R; r++) y[(b + r) * ldy + n] += s[r];
            } else {
                for (int r = 0; r < R; r++) y[(b + r) * ldy + n] = s[r];
            }
        }
    }
}

void quant_vnni_gemv(int fmt, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t rows,
                     float *y, int64_t ldy, int mode, uint8_t *qx) {
    if (rows >= VNNI_MIN_ROWS) {  /* (each omp for ends in a barrier: qx is whole after it) */
        quantize_rows(x, ldx, rows, K, qx);
        gemv_vnni(fmt, W, N, K, qx, rows, y, ldy, mode);
    } else {
        quantize_few(fmt, x, ldx, rows, K, qx);
        gemv_few(fmt, W, N, K, qx, rows, y, ldy, mode);
    }
}

#else /* not x86-64: no VNNI path (quant_gemv never calls it) */
int64_t quant_qx_bytes(int64_t rows, int64_t K) { (void)rows, (void)K; return 0; }

void quant_vnni_gemv(int fmt, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t rows,
                     float *y, int64_t ldy, int mode, uint8_t *qx) {
    (void)fmt, (void)W, (void)N, (void)K, (void)x, (void)ldx, (void)rows, (void)y, (void)ldy, (void)mode, (void)qx;
}
#endif
