/* avx2_kernels.c -- the AVX2+FMA kernels: a 6 x 16 register-blocked GEMM
 * micro-kernel over packed B panels, and the flash attention of
 * common/flash_attention.h on 8-float vectors with a vectorised exp.
 *
 * Compiled with -mavx2 -mfma: reached only after avx2_plugin.c's probe saw
 * AVX, AVX2 and FMA (and the OS saving YMM state). Accumulation is in float
 * with FMA, one chain per element (see the determinism notes of the two
 * templates).
 */
#include "avx2/avx2_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#include "avx2/avx2_vec.h"

/* ------------------------------------------------------------------------ */
/* GEMM                                                                      */
/* ------------------------------------------------------------------------ */

#include "avx2/avx2_gemm.h"

#include "common/gemm_blocked.h"

/* float32 only: 16-column panels of common/gemm_blocked.h. */
size_t avx2_gemm_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state;
    return precision == MHA_PRECISION_FLOAT32 ? gemm_blocked_packed_size(K, N) : SIZE_MAX;
}

int avx2_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B, int64_t ldb,
                     void *packed) {
    (void)state;
    if (precision != MHA_PRECISION_FLOAT32) return KERNEL_ERR_ARGS;
    gemm_blocked_pack_b(K, N, B, ldb, packed);
    return KERNEL_OK;
}

int avx2_gemm(void *state, const mha_gemm_args *args) {
    (void)state;
    if (args && args->precision != MHA_PRECISION_FLOAT32) return KERNEL_ERR_ARGS;
    return gemm_blocked_run(args);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

#include "avx2/avx2_transpose.h"
/* K and the Q block are packed by register transposes */
#define FA_HAVE_TRANSPOSE 1
#define FA_MR 3  /* score tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_BR 24 /* query rows per block */
#define FA_BC 32 /* keys per block: 4 vectors amortise each row's softmax */
#define FA_PVR 3 /* P.V tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_PVW 4

#include "common/flash_attention.h"

size_t avx2_attention_workspace_size(void *state, const mha_attn_args *args) {
    (void)state;
    return fa_workspace_size(args);
}

int avx2_attention(void *state, const mha_attn_args *args, void *workspace, size_t workspace_size) {
    (void)state;
    return fa_attention_run(args, workspace, workspace_size);
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding                                                          */
/* ------------------------------------------------------------------------ */

#include "common/rotary.h"

int avx2_rotary(void *state, const mha_rotary_args *args) {
    (void)state;
    return rotary_run(args);
}

/* ------------------------------------------------------------------------ */
/* Normalisation                                                             */
/* ------------------------------------------------------------------------ */

/* The shared reference of common/kernel_common.h: memory-bound, the host's
 * threads split the rows. */
int avx2_norm(void *state, const mha_norm_args *args) {
    (void)state;
    return kernel_norm_run(args);
}
