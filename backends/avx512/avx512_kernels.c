/* avx512_kernels.c -- the AVX-512F kernels: a 12 x 32 register-blocked GEMM
 * micro-kernel over packed B panels, and the flash attention of
 * common/flash_attention.h on 16-float vectors with a vectorised exp.
 *
 * Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma: reached
 * only after avx512_plugin.c's probe saw those features (and the OS saving
 * ZMM state). Accumulation is in float with FMA, one chain per element (see
 * the determinism notes of the two templates).
 */
#include "avx512/avx512_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#include "avx512/avx512_vec.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#include "avx512/avx512_gemm.h"

#include "common/gemm_blocked.h"

/* The bfloat16 form: packed B is the pairs of common/gemm_bf16.h whichever
 * kernel init() chose (VDPBF16PS or its emulation), so a model packed once
 * serves both. */
#include "avx512/avx512_gemm_bf16.h"

#include "common/gemm_bf16.h"

size_t avx512_gemm_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    if (precision == MHA_PRECISION_FLOAT32) return gemm_blocked_packed_size(K, N);
    return precision == MHA_PRECISION_BFLOAT16 ? gemm_bf16_packed_size(K, N) : SIZE_MAX;
}

int avx512_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                       int64_t ldb, void *packed) {
    (void)state;
    if (precision == MHA_PRECISION_FLOAT32)
        gemm_blocked_pack_b(K, N, B, ldb, packed);
    else if (precision == MHA_PRECISION_BFLOAT16)
        gemm_bf16_pack_b(K, N, B, ldb, packed);
    else
        return KERNEL_ERR_ARGS;
    return KERNEL_OK;
}

int avx512_gemm(void *state, const mha_gemm_args *args) {
    if (!kernel_gemm_args_ok(args)) return KERNEL_ERR_ARGS;
    const int precision = kernel_gemm_precision(args);
    if (precision == MHA_PRECISION_FLOAT32) return gemm_blocked_run(args);
    if (precision != MHA_PRECISION_BFLOAT16) return KERNEL_ERR_ARGS;
    const avx512_state *s = state;
    return s && s->has_dpbf16 ? avx512_gemm_bf16_dpbf16(args) : gemm_bf16_run(args);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

#include "avx512/avx512_attention_kernels.h"

/* float32 here (64-key blocks); bfloat16 in its own sources (128-key
 * blocks, avx512_attention_kernels.h), each with its workspace. */
size_t avx512_attention_workspace_size(void *state, const mha_attn_args *args) {
    (void)state;
    if (args && fa_bf16(args)) return avx512_attention_bf16_workspace_size(args);
    return fa_workspace_size(args);
}

int avx512_attention(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size) {
    const avx512_state *s = state;
    if (args && fa_bf16(args))
        return s && s->has_dpbf16 ? avx512_attention_dpbf16(args, workspace, workspace_size)
                                  : avx512_attention_bf16_emul(args, workspace, workspace_size);
    return fa_attention_run(args, workspace, workspace_size);
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

#include "common/rotary.h"

int avx512_rotary(void *state, const mha_rotary_args *args) {
    (void)state;
    return rotary_run(args);
}

/* ------------------------------------------------------------------------ */
/* Normalisation                                                             */
/* ------------------------------------------------------------------------ */

/*
 * kernel_norm_sum over AVX512_NORM_ROWS rows at once, each row's result
 * bitwise the reference's: its 8 partial sums are the 8 double lanes of one
 * accumulator (column i into lane i mod 8, (double)x - mean, squared by a
 * multiply, added), the tail and the pairwise combination as there. One
 * row's sum is a chain of D / 8 dependent vector adds (4 cycles each), so a
 * row at a time waited on it: a 384-wide LayerNorm ran at ~0.37 ns an
 * element in MiniLM-L6 (1.3 % of its run at 1 thread); with 4 rows the
 * chains overlap.
 */
#define AVX512_NORM_ROWS 4
static void avx512_norm_sums(const float *const *x, int64_t D, const double *mean, int squares,
                             double *out) {
    __m512d s[AVX512_NORM_ROWS], m[AVX512_NORM_ROWS];
    for (int u = 0; u < AVX512_NORM_ROWS; u++) {
        s[u] = _mm512_setzero_pd();
        m[u] = _mm512_set1_pd(mean[u]);
    }
    int64_t i = 0;
    for (; i + 8 <= D; i += 8)
        for (int u = 0; u < AVX512_NORM_ROWS; u++) {
            const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x[u] + i)), m[u]);
            s[u] = _mm512_add_pd(s[u], squares ? _mm512_mul_pd(d, d) : d);
        }
    for (int u = 0; u < AVX512_NORM_ROWS; u++) {
        double t[8];
        _mm512_storeu_pd(t, s[u]);
        for (int64_t k = i, j = 0; k < D; k++, j++) {
            const double d = (double)x[u][k] - mean[u];
            t[j] += squares ? d * d : d;
        }
        out[u] = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
    }
}

/* kernel_norm_run's rows, AVX512_NORM_ROWS at a time (the same bits: the
 * same float passes per row, the sums above); the last few as there. */
int avx512_norm(void *state, const mha_norm_args *args) {
    (void)state;
    const mha_norm_args *a = args;
    if (!kernel_norm_args_ok(a)) return KERNEL_ERR_ARGS;
    if (a->D == 0) return KERNEL_OK;
    const double D = (double)a->D;
    int64_t r = a->r0;
    for (; r + AVX512_NORM_ROWS <= a->r1; r += AVX512_NORM_ROWS) {
        const float *x[AVX512_NORM_ROWS];
        double zero[AVX512_NORM_ROWS] = {0}, mean[AVX512_NORM_ROWS], var[AVX512_NORM_ROWS];
        for (int u = 0; u < AVX512_NORM_ROWS; u++)
            x[u] = kernel_norm_row_input(a, r + u);
        if (a->kind == MHA_NORM_LAYER) {
            avx512_norm_sums(x, a->D, zero, 0, mean);
            for (int u = 0; u < AVX512_NORM_ROWS; u++)
                mean[u] /= D;
        } else {
            memcpy(mean, zero, sizeof mean);
        }
        avx512_norm_sums(x, a->D, mean, 1, var);
        for (int u = 0; u < AVX512_NORM_ROWS; u++)
            kernel_norm_row_output(a, r + u, x[u], mean[u], var[u] / D);
    }
    kernel_norm_rows(a, r, a->r1);
    return KERNEL_OK;
}
