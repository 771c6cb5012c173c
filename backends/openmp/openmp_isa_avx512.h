/* openmp_isa_avx512.h -- the AVX-512 variant of the openmp kernels
 * (included by openmp_kernels.c built with OPENMP_VARIANT_AVX512 and
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma, chosen by init() only
 * when the host reported all of those plus AVX and AVX2): the avx512
 * backend's vector layer, a 12 x 32 GEMM micro-kernel with its blocking, and
 * its flash attention parameters. */
#ifndef MHA_BACKENDS_OPENMP_ISA_AVX512_H
#define MHA_BACKENDS_OPENMP_ISA_AVX512_H

#if !defined(__AVX512F__) || !defined(__AVX512DQ__) || !defined(__AVX512BW__) ||                   \
    !defined(__AVX512VL__) || !defined(__FMA__)
#error "the AVX-512 variant of the openmp kernels needs -mavx512f/dq/bw/vl -mfma"
#endif

#include "avx512/avx512_vec.h"

#define OMP_ISA_NAME(x) x##_avx512
#define OMP_ISA_STRING "avx512"

/* ------------------------------------------------------------------------ */
/* GEMM micro-kernel                                                         */
/* ------------------------------------------------------------------------ */

#include "avx512/avx512_gemm.h" /* the avx512 backend's micro-kernels and blocking */

/* ------------------------------------------------------------------------ */
/* Flash attention parameters                                                */
/* ------------------------------------------------------------------------ */

#define FA_MR 6  /* score tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_BR 48 /* query rows per block */
#define FA_BC 64 /* keys per block */
#define FA_PVR 6 /* P.V tile: 6 rows x 4 vectors = 24 accumulators */
#define FA_PVW 4
#include "avx512/avx512_transpose.h"
#define FA_HAVE_TRANSPOSE 1

#endif
