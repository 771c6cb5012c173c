/* avx2_gemm.h -- the AVX2+FMA GEMM micro-kernel, 6 x 16 over 16-column
 * packed B panels, in the form common/gemm_blocked.h expects
 * (gemm_ukernel, gemm_ukernel_rows, GEMM_MR / NR / KC / MC). Included by
 * the avx2 backend and by the AVX2 variant of the openmp backend (both
 * built with -mavx2 -mfma), so there is one AVX2 kernel and one layout. */
#ifndef MHA_BACKENDS_AVX2_GEMM_H
#define MHA_BACKENDS_AVX2_GEMM_H

#if !defined(__AVX2__) || !defined(__FMA__)
#error "avx2_gemm.h needs -mavx2 -mfma"
#endif

#include <immintrin.h>
#include <stdint.h>

#include "avx2/avx2_vec.h"

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256
/* 96-row blocks, one exec unit: each B panel (16 KiB) meets 16 slivers of a
 * 96 KiB A block held in L2 before the next panel streams in */
#define GEMM_MC (16 * GEMM_MR)

/*
 * C[0:6, 0:16] (+)= ap . bp. ap: [kc][6] (A sliver), bp: [kc][16] (B panel
 * rows), c: row-major, ldc. 12 accumulators + 2 B vectors + 1 broadcast =
 * 15 of the 16 YMM registers.
 */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    vf acc[GEMM_MR][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
        acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);
        vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
            vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < GEMM_MR; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
}

/*
 * The same product for a short sliver: rows [0, mr) of C only, mr < 6 (the
 * last sliver of a range, e.g. rows 30..31 of W2's 32). R = 2, 4 or 6 rows
 * are computed (R >= mr; the packed sliver is zero past mr), so a 2-row
 * tail costs a third of a full tile, not a whole one. Each element is the
 * same one FMA chain over k as in gemm_ukernel.
 */
#define AVX2_GEMM_UKERNEL_ROWS(R)                                                                  \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        vf acc[R][2];                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                      \
            int live = accumulate && r < mr;                                                       \
            acc[r][0] = live ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();                 \
            acc[r][1] = live ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();             \
        }                                                                                          \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b0 = _mm256_loadu_ps(bp + k * GEMM_NR);                                             \
            vf b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);                                         \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                  \
                vf a = _mm256_broadcast_ss(ap + k * GEMM_MR + r);                                  \
                acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);                                     \
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);                                     \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R && r < mr; r++) {                                                    \
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);                                              \
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);                                          \
        }                                                                                          \
    }
AVX2_GEMM_UKERNEL_ROWS(2)
AVX2_GEMM_UKERNEL_ROWS(4)
AVX2_GEMM_UKERNEL_ROWS(6)

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 2)
        gemm_ukernel_2(kc, ap, bp, c, ldc, accumulate, mr);
    else if (mr <= 4)
        gemm_ukernel_4(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_6(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

#endif
