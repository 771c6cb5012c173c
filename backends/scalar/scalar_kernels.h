/* scalar_kernels.h -- the reference kernels of backends/scalar as plain
 * functions (one GEMM block, one attention row), for any in-tree code that
 * wants the reference without going through the plugin table. Not part of
 * any ABI: whoever compiles scalar_kernels.c gets its own hidden copy. */
#ifndef MHA_BACKENDS_SCALAR_KERNELS_H
#define MHA_BACKENDS_SCALAR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

/* Packed B of the scalar GEMM: B transposed, [N][K] floats, so that each
 * output column's weights are contiguous. */
size_t scalar_gemm_packed_size(int64_t K, int64_t N);
void scalar_gemm_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb, void *packed);
/* C[m, n] for m in [m0,m1), n in [n0,n1); args already checked. */
void scalar_gemm_block(const mha_gemm_args *a, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

/* Doubles of scratch one attention row needs: scores [Skv] + accumulator [dv]. */
size_t scalar_attention_row_doubles(const mha_attn_args *a);
/* Output row O[b, h, i, :]; args already checked; scratch holds
 * scalar_attention_row_doubles(a) doubles. */
void scalar_attention_row(const mha_attn_args *a, int64_t b, int64_t h, int64_t i, double *scratch);

const mha_plugin *mha_scalar_plugin_table(void);

#endif
