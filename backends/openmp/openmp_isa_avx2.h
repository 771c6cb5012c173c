/* openmp_isa_avx2.h -- the AVX2+FMA variant of the openmp kernels (included
 * by openmp_kernels.c built with OPENMP_VARIANT_AVX2 and -mavx2 -mfma,
 * chosen by init() only when the host reported AVX, AVX2 and FMA): the
 * avx2 backend's vector layer, a 3 x 32 GEMM micro-kernel (the shared
 * 32-column panel layout in one pass) and the avx2 backend's flash
 * attention parameters. */
#ifndef MHA_BACKENDS_OPENMP_ISA_AVX2_H
#define MHA_BACKENDS_OPENMP_ISA_AVX2_H

#if !defined(__AVX2__) || !defined(__FMA__)
#error "the AVX2 variant of the openmp kernels needs -mavx2 -mfma"
#endif

#include "avx2/avx2_vec.h"

#define OMP_ISA_NAME(x) x##_avx2
#define OMP_ISA_STRING "avx2"

/* ------------------------------------------------------------------------ */
/* GEMM micro-kernel                                                         */
/* ------------------------------------------------------------------------ */

#define GEMM_MR 3
#define GEMM_NR 32
#define GEMM_KC 256
/* 96-row blocks: a 96 KiB A block in L2 meets each B panel slice (KC x 32
 * floats, 32 KiB, L1) 32 times before the next one streams in. KC 512 was
 * no faster on the d_model 768 projections and needs twice the stack. */
#define GEMM_MC (32 * GEMM_MR)

/*
 * C[0:R, 0:32] (+)= ap . bp for rows r < mr only (R >= mr; the packed sliver
 * is zero past mr). ap: [kc][3] (A sliver), bp: [kc][32] (B panel rows), c:
 * row-major, ldc. At R = 3: 12 accumulators + 3 B vectors + 1 broadcast =
 * 16 YMM registers, the fourth B vector a memory operand of its FMAs: per k
 * 9 loads feed 12 FMAs. (A 6 x 16 tile run twice per 32-column panel, as
 * in the avx2 backend, was ~5 % slower on this layout; 2 x 32, ~20 %.)
 * Each element is one FMA chain over k ascending whatever R.
 */
#define OPENMP_AVX2_UKERNEL_ROWS(R)                                                                \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        vf acc[R][4];                                                                              \
        _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) {                                      \
            int live = accumulate && r < mr;                                                       \
            _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++) acc[r][w] =                        \
                live ? _mm256_loadu_ps(c + r * ldc + 8 * w) : _mm256_setzero_ps();                 \
        }                                                                                          \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b[4];                                                                               \
            _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++) b[w] =                             \
                _mm256_loadu_ps(bp + k * GEMM_NR + 8 * w);                                         \
            _Pragma("GCC unroll 3") for (int r = 0; r < R; r++) {                                  \
                vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);                                  \
                _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++) acc[r][w] =                    \
                    _mm256_fmadd_ps(a, b[w], acc[r][w]);                                           \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R && r < mr; r++)                                                      \
            _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++)                                    \
                _mm256_storeu_ps(c + r * ldc + 8 * w, acc[r][w]);                                  \
    }
OPENMP_AVX2_UKERNEL_ROWS(1)
OPENMP_AVX2_UKERNEL_ROWS(2)
OPENMP_AVX2_UKERNEL_ROWS(3)

/* The full tile: C[0:3, 0:32]. */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    gemm_ukernel_3(kc, ap, bp, c, ldc, accumulate, GEMM_MR);
}

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 1)
        gemm_ukernel_1(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_2(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

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
