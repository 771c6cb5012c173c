/* avx512_kernels.h -- the kernel entry points of the avx512 backend, shared
 * between avx512_kernels.c (compiled with the avx512 ISA flags) and
 * avx512_plugin.c (the ISA-free table and probe). Hidden symbols: the plugin
 * exports only mha_plugin_get. */
#ifndef MHA_BACKENDS_AVX512_KERNELS_H
#define MHA_BACKENDS_AVX512_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

/* What init() chose from the CPU features the host passed; every call gets
 * it as its state. NULL (no init) is read as the baseline: no VDPBF16PS. */
typedef struct avx512_state {
    int has_dpbf16; /* AVX512-BF16: bfloat16 GEMM and attention use VDPBF16PS, else its exact
                       emulation */
} avx512_state;

size_t avx512_gemm_packed_size(void *state, int precision, int64_t K, int64_t N);
int avx512_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                       int64_t ldb, void *packed);
/* The bfloat16 GEMM with VDPBF16PS (avx512_bf16_kernels.c); args checked. */
int avx512_gemm_bf16_dpbf16(const mha_gemm_args *args);
/* The attention of bfloat16 calls: with VDPBF16PS (avx512_bf16_kernels.c)
 * or its exact emulation (avx512_bf16_emul_kernels.c), the same template,
 * 128-key blocks and bits; the workspace either form needs. */
int avx512_attention_dpbf16(const mha_attn_args *args, void *workspace, size_t workspace_size);
int avx512_attention_bf16_emul(const mha_attn_args *args, void *workspace, size_t workspace_size);
size_t avx512_attention_bf16_workspace_size(const mha_attn_args *args);
int avx512_gemm(void *state, const mha_gemm_args *args);
size_t avx512_attention_workspace_size(void *state, const mha_attn_args *args);
int avx512_attention(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size);
int avx512_rotary(void *state, const mha_rotary_args *args);
int avx512_norm(void *state, const mha_norm_args *args);

#endif
