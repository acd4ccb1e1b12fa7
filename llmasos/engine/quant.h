/* Weight formats of the native step other than blocked fp32 (quant.c), as llama_decode.c calls them.
 *
 * A matrix of N rows x K inputs is stored row after row, each row as the GGUF file stores it:
 *   FMT_Q4_1: K / 32 blocks of 20 bytes {fp16 d, fp16 m, uint8 qs[16]}; element j of a block is
 *             d * q + m with q = qs[j] & 15 for j < 16 and qs[j - 16] >> 4 for j >= 16.
 *   FMT_Q8_0: K / 32 blocks of 34 bytes {fp16 d, int8 qs[32]}; element j is d * qs[j].
 *   FMT_BF16: K bfloat16 values (the top 16 bits of the fp32 value).
 * On ISA_SCALAR, ISA_AVX2 and ISA_AVX512 (and bf16 weights on ISA_VNNI) activations stay fp32: a
 * weight block is widened to fp32 in registers and multiplied there, so the result is the
 * dequantized fp32 model's, up to the order of the sums. On ISA_VNNI (AVX-512 VNNI), Q4_1 / Q8_0
 * products quantize the activations to int8 per row and 32-value block first, at any row count
 * given a qx buffer (quant.c sections 3b and 3c; their layouts are described there).
 * ISA_*: which compiled path computes the dot products; the caller picks one the CPU has
 * (quant_best_isa) or a lower one (tests force ISA_SCALAR).
 */
#ifndef LLMASOS_QUANT_H
#define LLMASOS_QUANT_H

#include <stdint.h>

enum { FMT_F32 = 0, FMT_Q4_1 = 1, FMT_Q8_0 = 2, FMT_BF16 = 3 };
enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_VNNI = 3 };
/* Rows from which ISA_VNNI puts 16 activation rows in the lanes (quant.c section 3b); fewer take
 * section 3c, which puts several weight blocks there instead. */
#define VNNI_MIN_ROWS 8
enum { QSTORE = 0, QADD = 1, QSWIGLU = 2 };

int quant_best_isa(void);
int64_t quant_row_bytes(int fmt, int64_t K);
/* Bytes of the int8 activation buffer (qx) quant_gemv's VNNI path needs for rows x K. */
int64_t quant_qx_bytes(int64_t rows, int64_t K);
void quant_row_to_f32(int fmt, const uint8_t *row, int64_t K, float *out);
/* y[rows][ldy] = / += W x, or (QSWIGLU, W of 2N rows: gate rows then up rows) silu(gate x) * (up x).
 * An orphaned `omp for`: call it from every thread of a parallel region (or from one thread alone).
 * qx: quant_qx_bytes(rows, K) bytes the VNNI path may overwrite, or NULL (never that path). */
void quant_gemv(int fmt, int isa, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx,
                int64_t rows, float *y, int64_t ldy, int mode, uint8_t *qx);
/* quant_gemv's VNNI paths (quant_vnni.c), for Q4_1 / Q8_0 on a CPU with AVX-512 VNNI and a qx buffer:
 * the same contract, called by quant_gemv only. */
void quant_vnni_gemv(int fmt, const uint8_t *W, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t rows,
                     float *y, int64_t ldy, int mode, uint8_t *qx);

#endif
