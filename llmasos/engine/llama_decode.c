/* One decode step of a Llama-family model, fp32, for a batch of a few rows: llmasos' native path.
 *
 * Why it exists: a decode step reads every weight once, so a single stream is bound by memory
 * bandwidth. PyTorch's CPU matrix-vector kernels reach 9-19 GiB/s here against ~30-36 GiB/s the
 * memory gives, and a transformers forward spends ~20 ms a token in Python module overhead besides.
 * This file streams each weight matrix once per step in a blocked layout (8 output rows interleaved,
 * so the inner loop is one sequential read, a broadcast and an FMA) and runs the whole step - norms,
 * rotary, the new KV column, attention, SwiGLU, residuals, the LM head - in one OpenMP parallel region.
 *
 * Layouts (built by llmasos/engine/native.py):
 *   a "blocked" matrix of N x K (N a multiple of 8) is float[N/8][K][8]: element (n, k) at
 *   ((n/8)*K + k)*8 + n%8. gate_up interleaves the two: block 2j is gate rows 8j..8j+7, block 2j+1
 *   the same rows of up.
 *   with fmt (or head_fmt, for embed and lm_head) not FMT_F32 the matrices are instead rows of Q4_1 /
 *   Q8_0 blocks or bf16 values as quant.h describes, computed by quant.c: qkv and o row after row,
 *   gate_up all gate rows then all up rows, embed and lm_head the same [vocab][hidden] rows (tied).
 *   the KV cache of a layer: [rows][kv_heads][cap][head_dim] of fp32 (kv_fmt FMT_F32) or bfloat16
 *   (FMT_BF16: the top 16 bits of the fp32 value, rounded to nearest even as torch rounds); column
 *   `col` is written by this step; row b's real columns are first[b]..col (left padding before
 *   first[b] is never read). attention.c reads it (and writes the new column).
 *
 * Only libgomp's OpenMP is used, which PyTorch loads too: both share one thread team when called
 * from the same thread (llmasos calls it from its model thread only). No allocation; the caller
 * passes scratch of llama_scratch_floats() floats (for quantized weights its last region holds the
 * int8 activations of quant.c's VNNI path, quant_qx_bytes of the widest matrix input). Nothing here
 * may run on a CPU for which llama_native_supported() returns 0.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>

#include "attention.h"
#include "quant.h"

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, inter, vocab_padded, layers, vocab;
    float eps, attn_scale, rope_scale;
    const float *inv_freq;   /* [head_dim / 2] */
    const float *embed;      /* [vocab][hidden], row-major */
    const float *final_norm; /* [hidden] */
    const float *lm_head;    /* blocked [vocab_padded][hidden] */
    const float *const *attn_norm, *const *mlp_norm;  /* per layer [hidden] */
    const float *const *qkv;     /* per layer blocked [pad8(q + 2 kv)][hidden] */
    const float *const *o;       /* per layer blocked [hidden][heads * head_dim] */
    const float *const *gate_up; /* per layer blocked, interleaved [2 * inter][hidden] */
    const float *const *down;    /* per layer blocked [hidden][inter] */
    int64_t fmt, head_fmt;       /* FMT_* of the layers' matrices, of embed and lm_head (quant.h) */
    int64_t isa;                 /* ISA_* the quantized products run on (not above quant_best_isa()) */
} LlamaWeights;

enum { STORE = 0, ADD = 1, SWIGLU = 2 };

static int64_t pad8(int64_t n) { return (n + 7) / 8 * 8; }

/* Scratch floats before the quantized activations (the last region, quant_qx_bytes of the widest
 * input). */
static int64_t scratch_head(const LlamaWeights *w, int64_t rows, int64_t columns, int threads) {
    int64_t q = w->heads * w->head_dim, group = w->heads / w->kv_heads;
    return rows * (2 * w->hidden + pad8(q + 2 * w->kv_heads * w->head_dim) + q + w->inter + w->head_dim)
           + (int64_t)threads * (group * (columns + 16) + KV_TILE * w->head_dim) /* scores, tile */
           + rows * w->heads * 2 * (int64_t)threads * (w->head_dim + 2);     /* attention partials */
}

int64_t llama_scratch_floats(const LlamaWeights *w, int64_t rows, int64_t columns, int threads) {
    int64_t q = w->heads * w->head_dim, widest = w->hidden > w->inter ? w->hidden : w->inter;
    widest = widest > q ? widest : q;
    int64_t qx = w->fmt == FMT_F32 ? 0 : (quant_qx_bytes(rows, widest) + 3) / 4;
    return scratch_head(w, rows, columns, threads) + qx;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include "simd.h"

int llama_native_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* R rows of x against NB blocks (8 output rows each) of a blocked matrix, at blocks[0..NB-1]:
 * acc[r * NB + i] is row r, block i. All NB * R sums must stay in registers: the unit is not inlined
 * and its loops are unrolled by pragma (inlined into gemv_strided, GCC kept three of the eight sums
 * of the four-row unit on the stack, and without the pragmas it stored all eight every iteration:
 * 1.5-2x slower at 16-32 rows). */
#define DEF_UNIT(NB, R)                                                                            \
    AVX2 __attribute__((noinline)) static void unit_##NB##_##R(                                    \
        const float *const *blocks, int64_t K, const float *x, int64_t ldx, __m256 *acc) {         \
        const float *wp[NB];                                                                       \
        __m256 a[NB][R], xb[R];                                                                    \
        UNROLL for (int i = 0; i < NB; i++) {                                                      \
            wp[i] = blocks[i];                                                                     \
            UNROLL for (int r = 0; r < R; r++) a[i][r] = _mm256_setzero_ps();                      \
        }                                                                                          \
        for (int64_t k = 0; k < K; k++) {                                                          \
            UNROLL for (int r = 0; r < R; r++) xb[r] = _mm256_broadcast_ss(x + r * ldx + k);       \
            UNROLL for (int i = 0; i < NB; i++) {                                                  \
                __m256 v = _mm256_loadu_ps(wp[i] + k * 8);                                         \
                UNROLL for (int r = 0; r < R; r++) a[i][r] = _mm256_fmadd_ps(v, xb[r], a[i][r]);   \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            UNROLL for (int i = 0; i < NB; i++) acc[r * NB + i] = a[i][r];                         \
    }
DEF_UNIT(4, 1)
DEF_UNIT(4, 2)
DEF_UNIT(2, 1)
DEF_UNIT(2, 2)
DEF_UNIT(2, 3)
DEF_UNIT(2, 4)

/* silu(g) * u = g / (1 + exp(-g)) * u, 8 at a time. */
AVX2 static inline __m256 silu_mul8(__m256 g, __m256 u) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

/* y (rows x N, leading dim ldy) = / += W x, or SwiGLU of the gate/up block pairs; block j of W at
 * W + j * bs. Call inside a parallel region: units are shared out among the team (omp for, barrier
 * at the end). A unit computes NB blocks for up to four rows of x: one or two rows take four blocks
 * a pass, more rows two blocks and up to four rows, so the weights stream from memory once.
 * Which blocks: the matrix is cut into NB segments and unit u takes the u-th group of each (a group
 * is one block, or a gate/up pair for SwiGLU), so a thread's run of units reads NB long sequential
 * streams. Measured against the fastest read of the same bytes: 0.92-0.94 this way, 0.84-0.91 with
 * NB adjacent blocks per unit (short streams), 0.60-0.79 for a single stream. */
AVX2 static void gemv_strided(const float *W, int64_t N, int64_t K, int64_t bs, const float *x, int64_t ldx,
                              int64_t rows, float *y, int64_t ldy, int mode) {
    int NB = rows <= 2 ? 4 : 2, G = mode == SWIGLU ? 2 : 1, per = NB / G;
    int64_t groups = N / 8 / G, seg = groups / per, tail = groups - seg * per;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < seg + tail; u++) {
        int64_t grp[4], blk[4];
        int ng = u < seg ? per : 1;  /* units past seg: the leftover groups, one each */
        for (int j = 0; j < ng; j++) grp[j] = u < seg ? j * seg + u : seg * per + (u - seg);
        const float *wp[4];
        for (int i = 0; i < NB; i++) {
            int j = i < ng * G ? i : ng * G - 1;  /* missing blocks repeat the last one, unused */
            blk[i] = grp[j / G] * G + j % G;
            wp[i] = W + blk[i] * bs;
        }
        for (int64_t b = 0; b < rows; b += 4) {  /* NB == 4: rows <= 2, one pass */
            int r = rows - b < 4 ? (int)(rows - b) : 4;
            __m256 acc[8];
            const float *xb = x + b * ldx;
            if (NB == 4) {
                if (r == 1) unit_4_1(wp, K, xb, ldx, acc);
                else unit_4_2(wp, K, xb, ldx, acc);
            } else {
                switch (r) {
                    case 1: unit_2_1(wp, K, xb, ldx, acc); break;
                    case 2: unit_2_2(wp, K, xb, ldx, acc); break;
                    case 3: unit_2_3(wp, K, xb, ldx, acc); break;
                    default: unit_2_4(wp, K, xb, ldx, acc); break;
                }
            }
            for (int i = 0; i < r; i++) {
                float *out = y + (b + i) * ldy;
                __m256 *a = acc + i * NB;
                if (mode == SWIGLU) {  /* group j: blocks 2j, 2j + 1 of the unit, gate and up of 8 rows */
                    for (int j = 0; j < ng; j++)
                        _mm256_storeu_ps(out + grp[j] * 8, silu_mul8(a[2 * j], a[2 * j + 1]));
                } else {
                    for (int j = 0; j < ng; j++) {
                        float *o = out + blk[j] * 8;
                        __m256 val = mode == ADD ? _mm256_add_ps(_mm256_loadu_ps(o), a[j]) : a[j];
                        _mm256_storeu_ps(o, val);
                    }
                }
            }
        }
    }
}

AVX2 static void gemv(const float *W, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t rows,
                      float *y, int64_t ldy, int mode) {
    gemv_strided(W, N, K, K * 8, x, ldx, rows, y, ldy, mode);
}

/* gemv on a matrix in format fmt: blocked fp32 here, anything else in quant.c (N counts the outputs
 * of SWIGLU twice, as gemv does). */
AVX2 static void matvec(const LlamaWeights *w, int64_t fmt, const float *W, int64_t N, int64_t K,
                        const float *x, int64_t ldx, int64_t rows, float *y, int64_t ldy, int mode, uint8_t *qx) {
    if (fmt == FMT_F32)
        gemv(W, N, K, x, ldx, rows, y, ldy, mode);
    else
        quant_gemv((int)fmt, (int)w->isa, (const uint8_t *)W, mode == SWIGLU ? N / 2 : N, K, x, ldx, rows, y,
                   ldy, mode == SWIGLU ? QSWIGLU : mode == ADD ? QADD : QSTORE, w->fmt == FMT_F32 ? NULL : qx);
}

/* y[rows][N] = x[rows][K] W^T for a blocked W whose consecutive blocks lie bs floats apart (K * 8
 * when contiguous; 2 * K * 8 for the gate or the up half of an interleaved gate_up): the Linear
 * layers of the transformers forward (prefill) use the native step's weights through this. */
AVX2 int blocked_matmul(const float *W, int64_t N, int64_t K, int64_t bs, const float *x, int64_t rows,
                        float *y, int threads) {
#pragma omp parallel num_threads(threads)
    gemv_strided(W, N, K, bs, x, K, rows, y, N, STORE);
    return 0;
}

/* y = x * rsqrt(mean(x^2) + eps) * weight, per row (the transformers LlamaRMSNorm, in fp32). An
 * orphaned `omp for` over the rows (a batch of 32 normed on one thread kept the other waiting). */
static void rmsnorm(const float *x, const float *weight, float *y, int64_t rows, int64_t n, float eps) {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < rows; b++) {
        const float *xr = x + b * n;
        float *yr = y + b * n;
        float ss = 0.0f;
        for (int64_t i = 0; i < n; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = weight[i] * (xr[i] * inv);
    }
}

/* Rotate one head in place: out = x cos + rotate_half(x) sin (transformers' convention). */
static void rope(float *x, const float *cs, const float *sn, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

/* One kv head of one row: rotate k and the group's q heads (cs / sn: the row's rotary cosines and
 * sines), and write k and v into the cache (kv_fmt) at column col. */
static void rotate_and_store(const LlamaWeights *w, float *qkv_row, void *kc, void *vc, int64_t kv_fmt,
                             int64_t g, const float *cs, const float *sn, int64_t col) {
    int64_t D = w->head_dim, half = D / 2, group = w->heads / w->kv_heads;
    int64_t nq = w->heads * D, nkv = w->kv_heads * D;
    float *k = qkv_row + nq + g * D, *v = qkv_row + nq + nkv + g * D;
    rope(k, cs, sn, half);
    kv_store(k, v, kc, vc, kv_fmt, col, D);
    for (int64_t h = g * group; h < (g + 1) * group; h++) rope(qkv_row + h * D, cs, sn, half);
}

/* Column splits per (row, kv head) of a step's attention: enough tasks for every thread twice over,
 * none shorter than 64 columns. */
static int64_t attention_splits(int64_t rows, int64_t kv_heads, int64_t columns, int threads) {
    int64_t want = (2 * (int64_t)threads + rows * kv_heads - 1) / (rows * kv_heads);
    int64_t most = columns / 64 > 1 ? columns / 64 : 1;
    want = want < most ? want : most;
    return want < 1 ? 1 : want > 2 * (int64_t)threads ? 2 * (int64_t)threads : want;
}

/* Index of the largest of v[0..n) (the first on ties); a NaN counts as largest (the first NaN), as
 * numpy's argmax has it. Two passes over a row that is still in cache: max (and any NaN), then find. */
AVX2 static int64_t argmax(const float *v, int64_t n) {
    int64_t i = 0, n8 = n / 8 * 8;
    __m256 best = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    for (; i < n8; i += 8) {
        __m256 x = _mm256_loadu_ps(v + i);
        best = _mm256_max_ps(best, x);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    }
    float lanes[8], m;
    _mm256_storeu_ps(lanes, best);
    m = lanes[0];
    for (int j = 1; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    int any_nan = _mm256_movemask_ps(nan) != 0;
    for (; i < n; i++) {
        if (v[i] != v[i]) any_nan = 1;
        else if (v[i] > m) m = v[i];
    }
    for (i = 0; i < n; i++)
        if (any_nan ? v[i] != v[i] : v[i] == m) return i;
    return 0;
}

AVX2 int64_t llama_argmax(const float *v, int64_t n) { return argmax(v, n); }  /* for the tests */

/* One decode step for `rows` sequences: logits[rows][vocab_padded], and where `greedy` is not NULL
 * each row's argmax over its first `vocab` logits in greedy[rows]. kc / vc: per layer, the cache
 * buffer's first element, of kv_fmt elements (FMT_F32 or FMT_BF16; strides count elements); the new
 * column is `col`; row b attends over columns first[b]..col at position pos[b]. Returns 0 (-1 where not built for x86-64). Callers check llama_native_supported()
 * first: these functions use AVX2 and FMA instructions. */
AVX2 int llama_decode(const LlamaWeights *w, int64_t rows, const int64_t *tokens, const int64_t *pos,
                      void *const *kc, void *const *vc, int64_t kv_fmt, int64_t row_stride, int64_t head_stride,
                      int64_t col, const int64_t *first, float *logits, int64_t *greedy, float *scratch,
                      int threads) {
    int64_t H = w->hidden, D = w->head_dim, nq = w->heads * D, nkv = w->kv_heads * D;
    int64_t nqkv = pad8(nq + 2 * nkv), I = w->inter;
    float *x = scratch, *h = x + rows * H, *qkv = h + rows * H, *att = qkv + rows * nqkv;
    float *act = att + rows * nq, *rot = act + rows * I, *scores = rot + rows * D;
    int64_t G = w->heads / w->kv_heads, S = attention_splits(rows, w->kv_heads, col + 1, threads);
    int64_t per_thread = G * (col + 16) + KV_TILE * D;  /* scores, then the widened tile */
    int64_t esize = kv_fmt == FMT_BF16 ? 2 : 4;
    int wide = w->isa >= ISA_AVX512 && D % 16 == 0;  /* the AVX-512 attention (w->isa: what the CPU has) */
    float *parts = scores + (int64_t)threads * per_thread;  /* [rows][kv_heads][S][G * (D + 2)] */
    uint8_t *qx = (uint8_t *)(scratch + scratch_head(w, rows, col + 1, threads));
    for (int64_t b = 0; b < rows; b++) {
        quant_row_to_f32((int)w->head_fmt, (const uint8_t *)w->embed + tokens[b] * quant_row_bytes((int)w->head_fmt, H),
                         H, x + b * H);
        for (int64_t i = 0; i < D / 2; i++) {  /* the row's rotary cosines, then sines: same in every layer */
            float angle = (float)pos[b] * w->inv_freq[i];
            rot[b * D + i] = cosf(angle) * w->rope_scale;
            rot[b * D + D / 2 + i] = sinf(angle) * w->rope_scale;
        }
    }
#pragma omp parallel num_threads(threads)
    {
        float *mine = scores + (int64_t)omp_get_thread_num() * per_thread, *tile = mine + G * (col + 16);
        for (int64_t l = 0; l < w->layers; l++) {
            rmsnorm(x, w->attn_norm[l], h, rows, H, w->eps);
            matvec(w, w->fmt, w->qkv[l], nqkv, H, h, H, rows, qkv, nqkv, STORE, qx);
#pragma omp for schedule(static)
            for (int64_t task = 0; task < rows * w->kv_heads; task++) {
                int64_t b = task / w->kv_heads, g = task % w->kv_heads;
                int64_t at = (b * row_stride + g * head_stride) * esize;
                rotate_and_store(w, qkv + b * nqkv, (char *)kc[l] + at, (char *)vc[l] + at, kv_fmt, g, rot + b * D,
                                 rot + b * D + D / 2, col);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < rows * w->kv_heads * S; task++) {
                int64_t b = task / (w->kv_heads * S), g = task / S % w->kv_heads, sp = task % S;
                int64_t n = col - first[b] + 1, lo = first[b] + n * sp / S, hi = first[b] + n * (sp + 1) / S;
                int64_t at = (b * row_stride + g * head_stride) * esize;
                float *part = parts + task * G * (D + 2), *m = part, *sum = part + G, *o = part + 2 * G;
                attend_part(qkv + b * nqkv + g * G * D, G, (char *)kc[l] + at, (char *)vc[l] + at, kv_fmt, D,
                            w->attn_scale, lo, hi, mine, tile, m, sum, o, wide);
                if (S == 1)
                    for (int64_t j = 0; j < G; j++)
                        for (int64_t d = 0; d < D; d++) att[b * nq + (g * G + j) * D + d] = o[j * D + d] / sum[j];
            }
            if (S > 1) {  /* join each head's column splits (the softmax of the whole row) */
#pragma omp for schedule(static)
                for (int64_t task = 0; task < rows * w->heads; task++) {
                    int64_t b = task / w->heads, h = task % w->heads, g = h / G, j = h % G;
                    const float *first_part = parts + (b * w->kv_heads + g) * S * G * (D + 2);
                    float top = -INFINITY, total = 0.0f, *out = att + b * nq + h * D;
                    for (int64_t sp = 0; sp < S; sp++) {
                        float mj = first_part[sp * G * (D + 2) + j];
                        top = mj > top ? mj : top;
                    }
                    memset(out, 0, (size_t)D * sizeof(float));
                    for (int64_t sp = 0; sp < S; sp++) {
                        const float *part = first_part + sp * G * (D + 2);
                        if (part[G + j] == 0.0f) continue;  /* an empty split */
                        float f = expf(part[j] - top);
                        total += part[G + j] * f;
                        for (int64_t d = 0; d < D; d++) out[d] += part[2 * G + j * D + d] * f;
                    }
                    for (int64_t d = 0; d < D; d++) out[d] /= total;
                }
            }
            matvec(w, w->fmt, w->o[l], H, nq, att, nq, rows, x, H, ADD, qx);
            rmsnorm(x, w->mlp_norm[l], h, rows, H, w->eps);
            matvec(w, w->fmt, w->gate_up[l], 2 * I, H, h, H, rows, act, I, SWIGLU, qx);
            matvec(w, w->fmt, w->down[l], H, I, act, I, rows, x, H, ADD, qx);
        }
        rmsnorm(x, w->final_norm, h, rows, H, w->eps);
        matvec(w, w->head_fmt, w->lm_head, w->vocab_padded, H, h, H, rows, logits, w->vocab_padded, STORE, qx);
        if (greedy) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < rows; b++) greedy[b] = argmax(logits + b * w->vocab_padded, w->vocab);
        }
    }
    return 0;
}

/* Only the weight matrix-vector products of one step (the "matmuls only" ceiling of bench/decode.py). */
AVX2 int llama_matmuls(const LlamaWeights *w, int64_t rows, float *logits, float *scratch, int threads) {
    int64_t H = w->hidden, nq = w->heads * w->head_dim, nqkv = pad8(nq + 2 * w->kv_heads * w->head_dim);
    float *x = scratch, *h = x + rows * H, *qkv = h + rows * H, *att = qkv + rows * nqkv, *act = att + rows * nq;
    uint8_t *qx = (uint8_t *)(scratch + scratch_head(w, rows, 1, threads));
#pragma omp parallel num_threads(threads)
    {
        for (int64_t l = 0; l < w->layers; l++) {
            matvec(w, w->fmt, w->qkv[l], nqkv, H, h, H, rows, qkv, nqkv, STORE, qx);
            matvec(w, w->fmt, w->o[l], H, nq, att, nq, rows, x, H, ADD, qx);
            matvec(w, w->fmt, w->gate_up[l], 2 * w->inter, H, h, H, rows, act, w->inter, SWIGLU, qx);
            matvec(w, w->fmt, w->down[l], H, w->inter, act, w->inter, rows, x, H, ADD, qx);
        }
        matvec(w, w->head_fmt, w->lm_head, w->vocab_padded, H, h, H, rows, logits, w->vocab_padded, STORE, qx);
    }
    return 0;
}

/* Sum of n floats read once, in parallel: how fast this machine streams memory (bench/decode.py).
 * Each thread reads one contiguous share as S (1, 2, 4 or 8) concurrent sequential streams. */
#define DEF_READ(S)                                                                                \
    AVX2 static float read_##S(const float *p, int64_t sub) {                                     \
        __m256 acc[S];                                                                             \
        for (int s = 0; s < S; s++) acc[s] = _mm256_setzero_ps();                                  \
        for (int64_t i = 0; i < sub; i += 8)                                                       \
            for (int s = 0; s < S; s++) acc[s] = _mm256_add_ps(acc[s], _mm256_loadu_ps(p + s * sub + i)); \
        for (int s = 1; s < S; s++) acc[0] = _mm256_add_ps(acc[0], acc[s]);                        \
        float out[8];                                                                              \
        _mm256_storeu_ps(out, acc[0]);                                                             \
        return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];              \
    }
DEF_READ(1)
DEF_READ(2)
DEF_READ(4)
DEF_READ(8)

AVX2 double stream_read(const float *data, int64_t n, int threads, int streams) {
    double total = 0.0;
    int S = streams >= 8 ? 8 : streams >= 4 ? 4 : streams >= 2 ? 2 : 1;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        int64_t parts = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t sub = n / parts / S / 8 * 8; /* floats per stream */
        const float *p = data + me * sub * S;
        total += S == 8 ? read_8(p, sub) : S == 4 ? read_4(p, sub) : S == 2 ? read_2(p, sub) : read_1(p, sub);
    }
    return total;
}

#else /* not x86-64 with GCC/Clang: the native path reports itself unsupported */
int llama_native_supported(void) { return 0; }
int blocked_matmul(const float *W, int64_t N, int64_t K, int64_t bs, const float *x, int64_t rows,
                   float *y, int threads) { return -1; }
int llama_decode(const LlamaWeights *w, int64_t rows, const int64_t *tokens, const int64_t *pos,
                 void *const *kc, void *const *vc, int64_t kv_fmt, int64_t row_stride, int64_t head_stride,
                 int64_t col, const int64_t *first, float *logits, int64_t *greedy, float *scratch,
                 int threads) {
    return -1;
}
int llama_matmuls(const LlamaWeights *w, int64_t rows, float *logits, float *scratch, int threads) { return -1; }
double stream_read(const float *data, int64_t n, int threads, int streams) { return 0.0; }
int64_t llama_argmax(const float *v, int64_t n) { return -1; }
#endif
