/* avx512_attention_kernels.h -- the flash attention of the avx512 backend:
 * common/flash_attention.h with its AVX-512 parameters, bfloat16 through
 * pairs multiplied by AVX512_BF16_DOT. Included by the two kernel sources:
 * avx512_kernels.c (AVX-512F: float32, and bfloat16 on the exact emulation
 * of VDPBF16PS) and avx512_bf16_kernels.c (-mavx512bf16: VDPBF16PS itself),
 * so both forms run the same template and give the same bits. Needs
 * avx512_vec.h and avx512_gemm_bf16.h first. */
#ifndef MHA_BACKENDS_AVX512_ATTENTION_KERNELS_H
#define MHA_BACKENDS_AVX512_ATTENTION_KERNELS_H

#include "avx512/avx512_transpose.h"

/* K and the Q block are packed by register transposes */
#define FA_HAVE_TRANSPOSE 1
#define FA_MR 6  /* score tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_BR 48 /* query rows per block */
#define FA_BC 64 /* keys per block */
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
