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
 *   the KV cache of a layer: float[rows][kv_heads][cap][head_dim]; column `col` is written by this
 *   step; row b's real columns are first[b]..col (left padding before first[b] is never read).
 *
 * Only libgomp's OpenMP is used, which PyTorch loads too: both share one thread team when called
 * from the same thread (llmasos calls it from its model thread only). No allocation; the caller
 * passes scratch of llama_scratch_floats() floats. Nothing here may run on a CPU for which
 * llama_native_supported() returns 0.
 */

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, inter, vocab_padded, layers;
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
} LlamaWeights;

enum { STORE = 0, ADD = 1, SWIGLU = 2 };

static int64_t pad8(int64_t n) { return (n + 7) / 8 * 8; }

int64_t llama_scratch_floats(const LlamaWeights *w, int64_t rows, int64_t columns, int threads) {
    int64_t q = w->heads * w->head_dim;
    return rows * (2 * w->hidden + pad8(q + 2 * w->kv_heads * w->head_dim) + q + w->inter)
           + (int64_t)threads * (columns + 8);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

int llama_native_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* R rows of x against NB consecutive blocks (8 output rows each) of a blocked matrix, the last
 * `NB - nb` of which are missing (the unit at the matrix's end): acc[r * NB + i] is row r, block i.
 * Blocks and rows are unrolled so all NB * R sums stay in registers; the weights stream once. */
#define DEF_UNIT(NB, R)                                                                            \
    AVX2 static inline void unit_##NB##_##R(const float *w, int64_t K, int nb, const float *x,     \
                                            int64_t ldx, __m256 *acc) {                            \
        const float *wp[NB];                                                                       \
        __m256 a[NB][R], xb[R];                                                                    \
        for (int i = 0; i < NB; i++) {                                                             \
            wp[i] = w + (i < nb ? i : nb - 1) * K * 8;                                             \
            for (int r = 0; r < R; r++) a[i][r] = _mm256_setzero_ps();                             \
        }                                                                                          \
        for (int64_t k = 0; k < K; k++) {                                                          \
            for (int r = 0; r < R; r++) xb[r] = _mm256_broadcast_ss(x + r * ldx + k);              \
            for (int i = 0; i < NB; i++) {                                                         \
                __m256 v = _mm256_loadu_ps(wp[i] + k * 8);                                         \
                for (int r = 0; r < R; r++) a[i][r] = _mm256_fmadd_ps(v, xb[r], a[i][r]);          \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R; r++)                                                                \
            for (int i = 0; i < NB; i++) acc[r * NB + i] = a[i][r];                                \
    }
DEF_UNIT(4, 1)
DEF_UNIT(4, 2)
DEF_UNIT(2, 1)
DEF_UNIT(2, 2)
DEF_UNIT(2, 3)
DEF_UNIT(2, 4)

static float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* y (rows x N, leading dim ldy) = / += W x, or SwiGLU of the gate/up block pairs. Call inside a
 * parallel region: units of blocks are shared out among the team (omp for, barrier at the end).
 * One or two rows read four blocks per pass (measured: 2 blocks reach ~29 GiB/s, 4 blocks ~37);
 * more rows take two blocks and up to four rows a pass, so the weights still stream from memory once. */
AVX2 static void gemv(const float *W, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t rows,
                      float *y, int64_t ldy, int mode) {
    int NB = rows <= 2 ? 4 : 2;
    int64_t blocks = N / 8, units = (blocks + NB - 1) / NB;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < units; u++) {
        int64_t first = u * NB;
        int nb = blocks - first < NB ? (int)(blocks - first) : NB;
        const float *w = W + first * K * 8;
        for (int64_t b = 0; b < rows; b += 4) {  /* NB == 4: rows <= 2, one pass */
            int r = rows - b < 4 ? (int)(rows - b) : 4;
            __m256 acc[8];
            const float *xb = x + b * ldx;
            if (NB == 4) {
                if (r == 1) unit_4_1(w, K, nb, xb, ldx, acc);
                else unit_4_2(w, K, nb, xb, ldx, acc);
            } else {
                switch (r) {
                    case 1: unit_2_1(w, K, nb, xb, ldx, acc); break;
                    case 2: unit_2_2(w, K, nb, xb, ldx, acc); break;
                    case 3: unit_2_3(w, K, nb, xb, ldx, acc); break;
                    default: unit_2_4(w, K, nb, xb, ldx, acc); break;
                }
            }
            for (int i = 0; i < r; i++) {
                float *out = y + (b + i) * ldy;
                __m256 *a = acc + i * NB;
                if (mode == SWIGLU) {  /* blocks 2j, 2j + 1 of the unit: gate and up of 8 rows */
                    for (int j = 0; 2 * j + 1 < nb; j++) {
                        float g[8], v[8];
                        _mm256_storeu_ps(g, a[2 * j]);
                        _mm256_storeu_ps(v, a[2 * j + 1]);
                        for (int e = 0; e < 8; e++) out[(first / 2 + j) * 8 + e] = silu_mul(g[e], v[e]);
                    }
                } else {
                    for (int j = 0; j < nb; j++) {
                        float *o = out + (first + j) * 8;
                        __m256 val = mode == ADD ? _mm256_add_ps(_mm256_loadu_ps(o), a[j]) : a[j];
                        _mm256_storeu_ps(o, val);
                    }
                }
            }
        }
    }
}

AVX2 static float dot(const float *a, const float *b, int64_t n) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

/* y = x * rsqrt(mean(x^2) + eps) * weight, per row (the transformers LlamaRMSNorm, in fp32). */
static void rmsnorm(const float *x, const float *weight, float *y, int64_t rows, int64_t n, float eps) {
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

/* One kv head of one row: rotate q and k, write k and v at column col, attend over first..col. */
AVX2 static void attend(const LlamaWeights *w, float *qkv_row, float *att_row, float *kc, float *vc,
                        int64_t g, int64_t pos, int64_t first, int64_t col, float *scores) {
    int64_t D = w->head_dim, half = D / 2, group = w->heads / w->kv_heads;
    int64_t nq = w->heads * D, nkv = w->kv_heads * D;
    float cs[256], sn[256];
    for (int64_t i = 0; i < half; i++) {
        float angle = (float)pos * w->inv_freq[i];
        cs[i] = cosf(angle) * w->rope_scale;
        sn[i] = sinf(angle) * w->rope_scale;
    }
    float *k = qkv_row + nq + g * D, *v = qkv_row + nq + nkv + g * D;
    rope(k, cs, sn, half);
    memcpy(kc + col * D, k, (size_t)D * sizeof(float));
    memcpy(vc + col * D, v, (size_t)D * sizeof(float));
    for (int64_t h = g * group; h < (g + 1) * group; h++) {
        float *q = qkv_row + h * D, *out = att_row + h * D;
        rope(q, cs, sn, half);
        float top = -INFINITY;
        for (int64_t t = first; t <= col; t++) {
            float s = dot(q, kc + t * D, D) * w->attn_scale;
            scores[t - first] = s;
            if (s > top) top = s;
        }
        float total = 0.0f;
        for (int64_t t = first; t <= col; t++) total += scores[t - first] = expf(scores[t - first] - top);
        float inv = 1.0f / total;
        for (int64_t d = 0; d < D; d += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t t = first; t <= col; t++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(scores[t - first] * inv), _mm256_loadu_ps(vc + t * D + d), acc);
            _mm256_storeu_ps(out + d, acc);
        }
    }
}

/* One decode step for `rows` sequences: logits[rows][vocab_padded]. kc / vc: per layer, the cache
 * buffer's first element; the new column is `col`; row b attends over columns first[b]..col at
 * position pos[b]. Returns 0 (-1 where not built for x86-64). Callers check llama_native_supported()
 * first: these functions use AVX2 and FMA instructions. */
AVX2 int llama_decode(const LlamaWeights *w, int64_t rows, const int64_t *tokens, const int64_t *pos,
                      float *const *kc, float *const *vc, int64_t row_stride, int64_t head_stride,
                      int64_t col, const int64_t *first, float *logits, float *scratch, int threads) {
    int64_t H = w->hidden, D = w->head_dim, nq = w->heads * D, nkv = w->kv_heads * D;
    int64_t nqkv = pad8(nq + 2 * nkv), I = w->inter;
    float *x = scratch, *h = x + rows * H, *qkv = h + rows * H, *att = qkv + rows * nqkv;
    float *act = att + rows * nq, *scores = act + rows * I;
    for (int64_t b = 0; b < rows; b++) memcpy(x + b * H, w->embed + tokens[b] * H, (size_t)H * sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *mine = scores + (int64_t)omp_get_thread_num() * (col + 8);
        for (int64_t l = 0; l < w->layers; l++) {
#pragma omp single
            rmsnorm(x, w->attn_norm[l], h, rows, H, w->eps);
            gemv(w->qkv[l], nqkv, H, h, H, rows, qkv, nqkv, STORE);
#pragma omp for schedule(static)
            for (int64_t task = 0; task < rows * w->kv_heads; task++) {
                int64_t b = task / w->kv_heads, g = task % w->kv_heads;
                int64_t at = b * row_stride + g * head_stride;
                attend(w, qkv + b * nqkv, att + b * nq, kc[l] + at, vc[l] + at, g, pos[b], first[b], col, mine);
            }
            gemv(w->o[l], H, nq, att, nq, rows, x, H, ADD);
#pragma omp single
            rmsnorm(x, w->mlp_norm[l], h, rows, H, w->eps);
            gemv(w->gate_up[l], 2 * I, H, h, H, rows, act, I, SWIGLU);
            gemv(w->down[l], H, I, act, I, rows, x, H, ADD);
        }
#pragma omp single
        rmsnorm(x, w->final_norm, h, rows, H, w->eps);
        gemv(w->lm_head, w->vocab_padded, H, h, H, rows, logits, w->vocab_padded, STORE);
    }
    return 0;
}

/* Only the weight matrix-vector products of one step (the "matmuls only" ceiling of bench/decode.py). */
AVX2 int llama_matmuls(const LlamaWeights *w, int64_t rows, float *logits, float *scratch, int threads) {
    int64_t H = w->hidden, nq = w->heads * w->head_dim, nqkv = pad8(nq + 2 * w->kv_heads * w->head_dim);
    float *x = scratch, *h = x + rows * H, *qkv = h + rows * H, *att = qkv + rows * nqkv, *act = att + rows * nq;
#pragma omp parallel num_threads(threads)
    {
        for (int64_t l = 0; l < w->layers; l++) {
            gemv(w->qkv[l], nqkv, H, h, H, rows, qkv, nqkv, STORE);
            gemv(w->o[l], H, nq, att, nq, rows, x, H, ADD);
            gemv(w->gate_up[l], 2 * w->inter, H, h, H, rows, act, w->inter, SWIGLU);
            gemv(w->down[l], H, w->inter, act, w->inter, rows, x, H, ADD);
        }
        gemv(w->lm_head, w->vocab_padded, H, h, H, rows, logits, w->vocab_padded, STORE);
    }
    return 0;
}

/* Sum of n floats read once, in parallel: how fast this machine streams memory (bench/decode.py).
 * Each thread reads one contiguous share with four independent sums, the way the GEMV reads. */
AVX2 double stream_read(const float *data, int64_t n, int threads) {
    double total = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        int64_t parts = omp_get_num_threads(), me = omp_get_thread_num();
        int64_t chunk = (n / 32 + parts - 1) / parts * 32;
        int64_t lo = me * chunk, hi = lo + chunk < n / 32 * 32 ? lo + chunk : n / 32 * 32;
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
        for (int64_t i = lo; i < hi; i += 32) {
            a = _mm256_add_ps(a, _mm256_loadu_ps(data + i));
            b = _mm256_add_ps(b, _mm256_loadu_ps(data + i + 8));
            c = _mm256_add_ps(c, _mm256_loadu_ps(data + i + 16));
            d = _mm256_add_ps(d, _mm256_loadu_ps(data + i + 24));
        }
        float s[8];
        _mm256_storeu_ps(s, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
        for (int j = 0; j < 8; j++) total += s[j];
    }
    return total;
}

#else /* not x86-64 with GCC/Clang: the native path reports itself unsupported */
int llama_native_supported(void) { return 0; }
int llama_decode(const LlamaWeights *w, int64_t rows, const int64_t *tokens, const int64_t *pos,
                 float *const *kc, float *const *vc, int64_t row_stride, int64_t head_stride,
                 int64_t col, const int64_t *first, float *logits, float *scratch, int threads) {
    return -1;
}
int llama_matmuls(const LlamaWeights *w, int64_t rows, float *logits, float *scratch, int threads) { return -1; }
double stream_read(const float *data, int64_t n, int threads) { return 0.0; }
#endif
