/* openmp_isa_avx2.h -- the AVX2+FMA variant of the openmp kernels (included
 * by openmp_kernels.c built with OPENMP_VARIANT_AVX2 and -mavx2 -mfma,
 * chosen by init() only when the host reported AVX, AVX2 and FMA): the
 * avx2 backend's vector layer, GEMM micro-kernel and packed layout
 * (16-column panels), and its flash attention parameters. */
#ifndef MHA_BACKENDS_OPENMP_ISA_AVX2_H
#define MHA_BACKENDS_OPENMP_ISA_AVX2_H

#if !defined(__AVX2__) || !defined(__FMA__)
#error "the AVX2 variant of the openmp kernels needs -mavx2 -mfma"
#endif

#include "avx2/avx2_vec.h"

#define OMP_ISA_NAME(x) x##_avx2
#define OMP_ISA_STRING "avx2"

/* GEMM: the avx2 backend's 6 x 16 micro-kernel on its own 16-column
 * panels (ABI 2.0 packing takes the state, so this variant packs B its
 * own way): one AVX2 kernel in the tree, not two. */
#include "avx2/avx2_gemm.h"

/* ------------------------------------------------------------------------ */
/* Flash attention parameters                                                */
/* ------------------------------------------------------------------------ */

#define FA_MR 3  /* score tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_BR 24 /* query rows per block */
#define FA_BC 32 /* keys per block: 4 vectors amortise each row's softmax */
#define FA_PVR 3 /* P.V tile: 3 rows x 4 vectors = 12 accumulators */
#define FA_PVW 4
#include "avx2/avx2_transpose.h"
#define FA_HAVE_TRANSPOSE 1

#endif
