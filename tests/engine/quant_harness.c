/* Sanitizer harness for llmasos/engine/quant.c (built with -fsanitize=address,undefined by
 * tests/engine/test_quant.py): every weight format on every instruction-set path this CPU runs, every
 * row count of a pass (1-4 and more; on the VNNI path 1-7 rows are section 3c's, 8+ rows section
 * 3b's: one to four groups of 16 a pass, a second pass, partial groups), each mode, and a number of outputs that is not a multiple of 8 or 4,
 * on buffers of exactly the size the layout needs (malloc'd apart, so a read past one is reported).
 * Each result is checked against a double-precision sum over quant_row_to_f32's dequantized weights:
 * within 1e-4 (relative), and on the VNNI path (int8 activations) within the rounding bound of the
 * activations besides: sum_k |w_k| * dx / 2, dx = the block's max|x| / 127.
 * Prints one line per path; exits 1 on a wrong result (the sanitizers abort on a bad access). */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

int quant_matmul(int fmt, int isa, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t rows,
                 float *y, int threads, uint8_t *scratch, int64_t qx_bytes);

static uint32_t rng = 12345;
static uint32_t next(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }
static float uniform(void) { return (float)(next() % 20001) / 10000.0f - 1.0f; }

/* A random row in fmt with finite, modest scales (fp16 0x2000..0x27ff: ~0.008-0.03). */
static void random_row(int fmt, uint8_t *row, int64_t K) {
    int64_t n = quant_row_bytes(fmt, K);
    for (int64_t i = 0; i < n; i++) row[i] = (uint8_t)next();
    if (fmt == FMT_BF16) {
        for (int64_t i = 0; i < K; i++) row[2 * i + 1] = (uint8_t)(0x3c + next() % 3) | (next() & 0x80);
        return;
    }
    int64_t bb = fmt == FMT_Q4_1 ? 20 : 34;
    for (int64_t b = 0; b < K / 32; b++) {
        uint8_t *blk = row + b * bb;
        blk[1] = (uint8_t)(0x20 + next() % 8);
        if (fmt == FMT_Q4_1) blk[3] = (uint8_t)(0x20 + next() % 8) | (next() & 0x80);
    }
}

/* The int8 rounding bound of row r's dot product with weight row n (0 off the VNNI path). */
static double rounding(const float *deq, const float *x, int64_t K, int64_t n, int64_t r, int vnni) {
    double bound = 0;
    for (int64_t b = 0; vnni && b < K / 32; b++) {
        double amax = 0, wsum = 0;
        for (int64_t k = b * 32; k < b * 32 + 32; k++) {
            amax = fabs(x[r * K + k]) > amax ? fabs(x[r * K + k]) : amax;
            wsum += fabs(deq[n * K + k]);
        }
        bound += wsum * amax / 127.0 / 2 * 1.01;
    }
    return bound;
}

static int check(int fmt, int isa, int64_t N, int64_t K, int64_t rows, int mode) {
    int64_t rb = quant_row_bytes(fmt, K), wrows = mode == QSWIGLU ? 2 * N : N;
    uint8_t *W = malloc((size_t)(wrows * rb)), *qx = malloc((size_t)quant_qx_bytes(rows, K));
    float *x = malloc(sizeof(float) * (size_t)(rows * K)), *y = malloc(sizeof(float) * (size_t)(rows * N));
    float *deq = malloc(sizeof(float) * (size_t)(wrows * K));
    int vnni = isa >= ISA_VNNI && fmt != FMT_BF16;  /* (1-7 rows: section 3c, 8+: 3b) */
    for (int64_t n = 0; n < wrows; n++) random_row(fmt, W + n * rb, K);
    for (int64_t i = 0; i < rows * K; i++) x[i] = uniform();
    for (int64_t i = 0; i < rows * N; i++) y[i] = 0.5f;
    for (int64_t n = 0; n < wrows; n++) quant_row_to_f32(fmt, W + n * rb, K, deq + n * K);
    if (mode == QSTORE && rows > 2)  /* the Linear layers' entry: a scratch buffer, or too short a one */
        quant_matmul(fmt, isa, W, N, K, x, rows, y, 2, qx, rows % 2 ? quant_qx_bytes(rows, K) : 64);
    else
#pragma omp parallel num_threads(2)
        quant_gemv(fmt, isa, W, N, K, x, K, rows, y, N, mode, qx);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, u = 0, want, es = rounding(deq, x, K, n, r, vnni), eu = 0, err;
            for (int64_t k = 0; k < K; k++) {
                s += (double)deq[n * K + k] * x[r * K + k];
                if (mode == QSWIGLU) u += (double)deq[(n + N) * K + k] * x[r * K + k];
            }
            want = mode == QSWIGLU ? s / (1 + exp(-s)) * u : mode == QADD ? s + 0.5 : s;
            err = es;
            if (mode == QSWIGLU) {  /* |silu'| <= 1.1; |silu(s)| <= |s| + 0.28 */
                eu = rounding(deq, x, K, n + N, r, vnni);
                err = 1.1 * es * (fabs(u) + eu) + (fabs(s) + es + 0.28) * eu;
            }
            if (fabs(y[r * N + n] - want) > err + 1e-4 * (1 + fabs(want))) bad++;
        }
    free(W);
    free(qx);
    free(x);
    free(y);
    free(deq);
    return bad;
}

int main(void) {
    const char *fmts[] = {"", "q4_1", "q8_0", "bf16"}, *isas[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    const int64_t row_counts[] = {1, 2, 3, 4, 5, 9, 20, 70};
    int failed = 0;
    for (int isa = 0; isa <= quant_best_isa(); isa++)
        for (int fmt = FMT_Q4_1; fmt <= FMT_BF16; fmt++) {
            int bad = 0;
            for (int i = 0; i < 8; i++) {
                int64_t rows = row_counts[i];
                for (int mode = QSTORE; mode <= QSWIGLU; mode++) bad += check(fmt, isa, 13, 96 + 32 * (rows % 2), rows, mode);
            }
            printf("%s %s %s\n", isas[isa], fmts[fmt], bad ? "WRONG" : "ok");
            failed |= bad != 0;
        }
    return failed;
}
