/* avx512_gemm.h -- the AVX-512 GEMM micro-kernels and blocking for
 * common/gemm_blocked.h, shared by the avx512 backend and the AVX-512 variant
 * of the openmp backend. Needs the AVX-512F / FMA kernels' ISA flags and
 * avx512_vec.h (the vf type) first. */
#ifndef MHA_BACKENDS_AVX512_GEMM_H
#define MHA_BACKENDS_AVX512_GEMM_H

#include <immintrin.h>
#include <stdint.h>

#define GEMM_MR 12
#define GEMM_NR 32
#define GEMM_KC 512
/* 96-row blocks, one exec unit: each B panel slice (KC x 32 floats, 64 KiB,
 * L1/L2) meets 8 slivers of a 192 KiB A block held in L2 before the next
 * slice streams in. At 48 rows B's traffic from L3 was twice this and W1 ran
 * ~10 % slower at 2 threads; KC 512 instead of 256 halves the passes over C
 * (a 96 x 3072 C block is larger than L2): +2-4 % on the d_model 768 and
 * 1024 projections. The A block lives on the stack (plugin.h: <= 256 KiB). */
#define GEMM_MC (8 * GEMM_MR)

/*
 * C[0:R, 0:32] (+)= ap . bp for rows r < mr only (mr <= R; the packed
 * sliver is zero past mr). ap: [kc][12] (A sliver), bp: [kc][32] (B panel
 * rows), c: row-major, ldc. At R = 12: 24 accumulators + 2 B vectors + 1
 * broadcast = 27 of the 32 ZMM registers; no loop in the MR or NR direction
 * survives unrolling. R = 4 and 8 serve the short last sliver of a range
 * (W2's 32 rows end in an 8-row sliver: no FMAs spent on padding). Each
 * element is the same one FMA chain over k ascending whatever R computed it,
 * so results do not depend on the kernel.
 */
/* The R x 32 accumulators of a micro-kernel: from C (accumulate, rows
 * r < mr) or zero; and back to C's rows r < mr. */
#define AVX512_GEMM_ACC_LOAD(R)                                                                    \
    vf acc[R][2];                                                                                  \
    _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                         \
        int live = accumulate && r < mr;                                                           \
        acc[r][0] = live ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();                     \
        acc[r][1] = live ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();                \
    }
#define AVX512_GEMM_ACC_STORE(R)                                                                   \
    _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                         \
        if (r >= mr) break;                                                                        \
        _mm512_storeu_ps(c + r * ldc, acc[r][0]);                                                  \
        _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);                                             \
    }

#define AVX512_GEMM_UKERNEL_ROWS(R)                                                                \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        AVX512_GEMM_ACC_LOAD(R)                                                                    \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vf b0 = _mm512_loadu_ps(bp + k * GEMM_NR);                                             \
            vf b1 = _mm512_loadu_ps(bp + k * GEMM_NR + 16);                                        \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                 \
                vf a = _mm512_set1_ps(ap[k * GEMM_MR + r]);                                        \
                acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                                     \
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                                     \
            }                                                                                      \
        }                                                                                          \
        AVX512_GEMM_ACC_STORE(R)                                                                   \
    }
AVX512_GEMM_UKERNEL_ROWS(4)
AVX512_GEMM_UKERNEL_ROWS(8)
AVX512_GEMM_UKERNEL_ROWS(12)

/* The full tile: C[0:12, 0:32]. */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    gemm_ukernel_12(kc, ap, bp, c, ldc, accumulate, GEMM_MR);
}

/* Rows [0, mr) of a full-width tile, 0 < mr < GEMM_MR. */
static inline void gemm_ukernel_rows(int64_t kc, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int accumulate, int64_t mr) {
    if (mr <= 4)
        gemm_ukernel_4(kc, ap, bp, c, ldc, accumulate, mr);
    else if (mr <= 8)
        gemm_ukernel_8(kc, ap, bp, c, ldc, accumulate, mr);
    else
        gemm_ukernel_12(kc, ap, bp, c, ldc, accumulate, mr);
}
#define GEMM_HAVE_UKERNEL_ROWS 1

#endif
