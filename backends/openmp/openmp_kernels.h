/* openmp_kernels.h -- what the openmp backend's table (openmp_plugin.c,
 * ISA-free) knows of its kernels. openmp_kernels.c is compiled once per ISA
 * variant (baseline, AVX2+FMA, AVX-512; see openmp_isa_*.h), and each
 * variant defines one static const kernel set, openmp_kernels_<isa>. init()
 * picks one of them from the host's CPU features and hands it out as the
 * plugin state, so every later call runs the variant chosen once. Hidden
 * symbols: the plugin exports only mha_plugin_get. */
#ifndef MHA_BACKENDS_OPENMP_KERNELS_H
#define MHA_BACKENDS_OPENMP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

/* The host splits N at multiples of this: a multiple of every variant's
 * panel width (AVX-512 and baseline 32, AVX2 16). Each variant packs B in
 * its own panels (packing gets the state, ABI 2.0). */
#define OPENMP_GEMM_NR 32
/* The host splits M at multiples of this: a multiple of every variant's
 * micro-kernel rows (AVX-512 12, AVX2 3, baseline 6), so no split leaves a
 * short sliver in the middle of a range. */
#define OPENMP_GEMM_M_BLOCK 12

/* One variant's kernels and packed layout. The entry points take no state:
 * the state is the kernel set itself. */
typedef struct openmp_kernels {
    const char *isa; /* "avx512", "avx2" or "baseline" (init's debug line) */
    size_t (*gemm_packed_size)(int precision, int64_t K, int64_t N);
    int (*gemm_pack_b)(int precision, int64_t K, int64_t N, const float *B, int64_t ldb,
                       void *packed);
    int (*gemm)(const mha_gemm_args *args);
    size_t (*attention_workspace_size)(const mha_attn_args *args);
    int (*attention)(const mha_attn_args *args, void *workspace, size_t workspace_size);
    int (*rotary)(const mha_rotary_args *args);
    int (*norm)(const mha_norm_args *args);
} openmp_kernels;

/* Only the baseline exists on every target; the other two are built on
 * x86 (OPENMP_HAVE_ISA_VARIANTS in openmp_plugin.c). */
extern const openmp_kernels openmp_kernels_baseline;
extern const openmp_kernels openmp_kernels_avx2;
extern const openmp_kernels openmp_kernels_avx512;

#endif
