/* openmp_kernels.h -- the kernel entry points of the openmp backend, shared
 * between openmp_kernels.c (compiled with -fopenmp, baseline ISA) and
 * openmp_plugin.c (the table and probe). Hidden symbols. */
#ifndef MHA_BACKENDS_OPENMP_KERNELS_H
#define MHA_BACKENDS_OPENMP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

#define OPENMP_GEMM_MR 4
#define OPENMP_GEMM_NR 8

size_t openmp_gemm_packed_size(int64_t K, int64_t N);
void openmp_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed);
int openmp_gemm(void *state, const mha_gemm_args *args);
size_t openmp_attention_workspace_size(void *state, const mha_attn_args *args);
int openmp_attention(void *state, const mha_attn_args *args, void *workspace,
                     size_t workspace_size);

#endif
