/* avx512_bf16_kernels.c -- the bfloat16 GEMM and attention of the avx512
 * backend with VDPBF16PS. Compiled with the avx512 kernels' flags plus -mavx512bf16;
 * reached only when init() was told the CPU has AVX512-BF16. The other form
 * (exact emulation on AVX-512F) is in avx512_kernels.c, from the same
 * template. */
#include <immintrin.h>

#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

#include "avx512/avx512_gemm_bf16.h"

#include "common/gemm_bf16.h"

int avx512_gemm_bf16_dpbf16(const mha_gemm_args *args) {
    return gemm_bf16_run(args);
}

#define FA_BC AVX512_FA_BC_BF16
#include "avx512/avx512_attention_kernels.h"

int avx512_attention_dpbf16(const mha_attn_args *args, void *workspace, size_t workspace_size) {
    return fa_attention_run(args, workspace, workspace_size);
}
