/* avx512_attention_kernels.h -- the flash attention of the avx512 backend:
 * common/flash_attention.h with its AVX-512 parameters, bfloat16 through
 * pairs multiplied by AVX512_BF16_DOT. Included by three kernel sources:
 * avx512_kernels.c (AVX-512F: float32), avx512_bf16_kernels.c
 * (-mavx512bf16: bfloat16 on VDPBF16PS itself) and
 * avx512_bf16_emul_kernels.c (AVX-512F: bfloat16 on the exact emulation of
 * VDPBF16PS); the two bfloat16 ones define FA_BC as AVX512_FA_BC_BF16
 * first, so both forms run the same template and give the same bits. Needs
 * avx512_vec.h and avx512_gemm_bf16.h first. */
#ifndef MHA_BACKENDS_AVX512_ATTENTION_KERNELS_H
#define MHA_BACKENDS_AVX512_ATTENTION_KERNELS_H

#include "avx512/avx512_transpose.h"

/* K and the Q block are packed by register transposes */
#define FA_HAVE_TRANSPOSE 1
#define FA_MR 6 /* score tile: 6 rows x 4 vectors = 24 accumulators */
/* query rows per block: 96 (16 score tiles) read each key block's K^T and V
 * once for twice the rows of 48 (W3's bare float32 Attention node -1 to
 * -1.5 % on a 2-FMA-pipe core; bfloat16 level); a row's arithmetic does not
 * depend on it, so neither do the bits */
#define FA_BR 96
/* keys per block: 64 in float32 (its bits are those of 64-key blocks);
 * 128 in bfloat16, whose products take half the slots of float32's, so the
 * per-row work of a block (its max, the running-max test, the factor and
 * sum, the P.V call's accumulator loads and stores) weighs twice as much
 * per key: 128 keys halve it. The score tile stays 6 rows x 4 vectors (24
 * accumulators), two column pieces per block (FA_SCV). */
#define AVX512_FA_BC_BF16 128
#ifndef FA_BC
#define FA_BC 64
#endif
#define FA_SCV 4
#define FA_PVR 6 /* P.V tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_PVW 4

/* acc + a.b over the bfloat16 pairs of each lane, odd element first */
#define FA_HAVE_BF16_DOT 1
static inline vf vf_dot_bf16(vf acc, vbf a, vbf b) {
    AVX512_BF16_DOT(acc, a, b);
    return acc;
}

#include "common/flash_attention.h"

#endif
