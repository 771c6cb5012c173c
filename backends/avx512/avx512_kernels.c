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

/* The shared reference of common/kernel_common.h: memory-bound, the host's
 * threads split the rows. */
int avx512_norm(void *state, const mha_norm_args *args) {
    (void)state;
    return kernel_norm_run(args);
}
