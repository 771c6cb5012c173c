/* avx2_kernels.h -- the kernel entry points of the avx2 backend, shared
 * between avx2_kernels.c (compiled with the avx2 ISA flags) and
 * avx2_plugin.c (the ISA-free table and probe). Hidden symbols: the plugin
 * exports only mha_plugin_get. */
#ifndef MHA_BACKENDS_AVX2_KERNELS_H
#define MHA_BACKENDS_AVX2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

size_t avx2_gemm_packed_size(void *state, int precision, int64_t K, int64_t N);
int avx2_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B, int64_t ldb,
                     void *packed);
int avx2_gemm(void *state, const mha_gemm_args *args);
size_t avx2_attention_workspace_size(void *state, const mha_attn_args *args);
int avx2_attention(void *state, const mha_attn_args *args, void *workspace, size_t workspace_size);
int avx2_rotary(void *state, const mha_rotary_args *args);
int avx2_norm(void *state, const mha_norm_args *args);

#endif
