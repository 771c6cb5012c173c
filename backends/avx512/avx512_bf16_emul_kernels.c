/* avx512_bf16_emul_kernels.c -- the bfloat16 attention of the avx512
 * backend on a CPU without AVX512-BF16: the template and block size of
 * avx512_bf16_kernels.c on the exact emulation of VDPBF16PS (two FMAs per
 * pair, the odd product first), so both forms give the same bits. Compiled
 * with the AVX-512F flags only. */
#include <immintrin.h>

#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

#include "avx512/avx512_gemm_bf16.h"

#define FA_BC AVX512_FA_BC_BF16
#include "avx512/avx512_attention_kernels.h"

int avx512_attention_bf16_emul(const mha_attn_args *args, void *workspace, size_t workspace_size) {
    return fa_attention_run(args, workspace, workspace_size);
}

size_t avx512_attention_bf16_workspace_size(const mha_attn_args *args) {
    return fa_workspace_size(args);
}
