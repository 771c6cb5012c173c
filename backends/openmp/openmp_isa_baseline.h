/* openmp_isa_baseline.h -- the baseline-ISA variant of the openmp kernels
 * (included by openmp_kernels.c built with OPENMP_VARIANT_BASELINE and no
 * -m flag, so it runs wherever the scalar backend does): a portable 4-float
 * vector layer written with GCC vector extensions (SSE2 code on x86-64),
 * a 6 x 32 GEMM micro-kernel made of four 6 x 8 passes, and the flash
 * attention parameters for 4-lane vectors. Multiply and add stay separate
 * (the file is built with -ffp-contract=off) and horizontal reductions use
 * a fixed order. */
#ifndef MHA_BACKENDS_OPENMP_ISA_BASELINE_H
#define MHA_BACKENDS_OPENMP_ISA_BASELINE_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define OMP_ISA_NAME(x) x##_baseline
#define OMP_ISA_STRING "baseline"

/* ------------------------------------------------------------------------ */
/* Vector layer (the names the templates expect)                             */
/* ------------------------------------------------------------------------ */

#define VLEN 4
typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));

static inline vf vf_set1(float x) {
    return (vf){x, x, x, x};
}
static inline vf vf_zero(void) {
    return vf_set1(0.0f);
}
static inline vf vf_load(const float *p) {
    vf r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline void vf_store(float *p, vf x) {
    memcpy(p, &x, sizeof x);
}
static inline vf vf_load_part(const float *p, int64_t n) {
    vf r = vf_zero();
    for (int64_t i = 0; i < n && i < VLEN; i++)
        r[i] = p[i];
    return r;
}
static inline void vf_store_part(float *p, vf x, int64_t n) {
    for (int64_t i = 0; i < n && i < VLEN; i++)
        p[i] = x[i];
}
static inline vf vf_add(vf a, vf b) {
    return a + b;
}
static inline vf vf_mul(vf a, vf b) {
    return a * b;
}
static inline vf vf_div(vf a, vf b) {
    return a / b;
}
static inline vf vf_fma(vf a, vf b, vf c) {
    return a * b + c;
}
/* Lane select by a comparison mask (all ones = take a). */
static inline vf vf_select(vi m, vf a, vf b) {
    return (vf)((m & (vi)a) | (~m & (vi)b));
}
static inline vf vf_max(vf a, vf b) {
    return vf_select(a > b, a, b);
}
static inline float vf_hmax(vf x) {
    float a = x[0] > x[1] ? x[0] : x[1], b = x[2] > x[3] ? x[2] : x[3];
    return a > b ? a : b;
}
static inline float vf_hsum(vf x) {
    return (x[0] + x[1]) + (x[2] + x[3]);
}

/* exp as in the SIMD backends, for x <= 0: x = n*ln2 + r, Taylor to r^7, 2^n in the
 * exponent bits; n rounded to nearest by the 1.5*2^23 shift. */
static inline vf vf_exp(vf x) {
    x = vf_max(vf_set1(-87.33654f), x); /* NaN stays NaN */
    const vf shift = vf_set1(12582912.0f);
    vf n = (x * vf_set1(1.44269504088896341f) + shift) - shift;
    vf r = x - n * vf_set1(0.693359375f);
    r = r - n * vf_set1(-2.12194440e-4f);
    vf p = vf_set1(1.0f / 5040.0f);
    p = p * r + vf_set1(1.0f / 720.0f);
    p = p * r + vf_set1(1.0f / 120.0f);
    p = p * r + vf_set1(1.0f / 24.0f);
    p = p * r + vf_set1(1.0f / 6.0f);
    p = p * r + vf_set1(0.5f);
    p = p * r + vf_set1(1.0f);
    p = p * r + vf_set1(1.0f);
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}
static inline vf vf_tanh(vf x) {
    const vi sign = (vi)vf_set1(-0.0f);
    vf ax = (vf)((vi)x & ~sign);
    vf e = vf_exp(ax * vf_set1(-2.0f));
    vf t = (vf_set1(1.0f) - e) / (vf_set1(1.0f) + e);
    return (vf)((vi)t | ((vi)x & sign));
}
static inline vf vf_hide_masked(vf s, vf mv) {
    return vf_select(mv <= vf_set1(-FLT_MAX), vf_set1(-INFINITY), s + mv);
}
static inline vf vf_hide_tail(vf s, int64_t n) {
    int32_t k = n <= 0 ? 0 : n >= VLEN ? VLEN : (int32_t)n;
    vi lane = {0, 1, 2, 3};
    return vf_select(lane < (vi){k, k, k, k}, s, vf_set1(-INFINITY));
}
/* Lanes that are NaN or +inf, as bits: such a score poisons its row. */
static inline unsigned vf_bad_bits(vf x) {
    vi bad = ~(x < vf_set1(INFINITY)); /* false for NaN and +inf */
    return (unsigned)((bad[0] & 1) | (bad[1] & 2) | (bad[2] & 4) | (bad[3] & 8));
}
static inline vf vf_exp_or_zero(vf s, vf m) {
    return vf_select(s != vf_set1(-INFINITY), vf_exp(s - m), vf_zero());
}

/* ------------------------------------------------------------------------ */
/* GEMM micro-kernel                                                         */
/* ------------------------------------------------------------------------ */

#define GEMM_MR 6
#define GEMM_NR 32
#define GEMM_KC 256
/* 96-row blocks (16 slivers, a 96 KiB A block in L2) against 32 KiB B panel
 * slices: the same blocks as the other variants. */
#define GEMM_MC (16 * GEMM_MR)

/*
 * C[0:R, 0:32] (+)= ap . bp for rows r < mr only (R >= mr; the packed sliver
 * is zero past mr). ap: [kc][6] (A sliver), bp: [kc][32] (B panel rows), c:
 * row-major, ldc. The 32 columns are four passes of 8: R x 2 accumulators +
 * 2 B vectors + 1 broadcast = 15 of the 16 XMM registers at R = 6. Every
 * element is one chain c + a*b over k ascending, whatever R and pass, so
 * results do not depend on which kernel computed them.
 */
#define OPENMP_BASE_UKERNEL_ROWS(R)                                                                \
    static inline void gemm_ukernel_##R(int64_t kc, const float *ap, const float *bp, float *c,    \
                                        int64_t ldc, int accumulate, int64_t mr) {                 \
        for (int q = 0; q < GEMM_NR; q += 2 * VLEN) {                                              \
            vf acc[R][2];                                                                          \
            _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                                  \
                int live = accumulate && r < mr;                                                   \
                acc[r][0] = live ? vf_load(c + r * ldc + q) : vf_zero();                           \
                acc[r][1] = live ? vf_load(c + r * ldc + q + VLEN) : vf_zero();                    \
            }                                                                                      \
            for (int64_t k = 0; k < kc; k++) {                                                     \
                vf b0 = vf_load(bp + k * GEMM_NR + q);                                             \
                vf b1 = vf_load(bp + k * GEMM_NR + q + VLEN);                                      \
                _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {                              \
                    vf a = vf_set1(ap[k * GEMM_MR + r]);                                           \
                    acc[r][0] = vf_fma(a, b0, acc[r][0]);                                          \
                    acc[r][1] = vf_fma(a, b1, acc[r][1]);                                          \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < R && r < mr; r++) {                                                \
                vf_store(c + r * ldc + q, acc[r][0]);                                              \
                vf_store(c + r * ldc + q + VLEN, acc[r][1]);                                       \
            }                                                                                      \
        }                                                                                          \
    }
OPENMP_BASE_UKERNEL_ROWS(2)
OPENMP_BASE_UKERNEL_ROWS(4)
OPENMP_BASE_UKERNEL_ROWS(6)

/* The full tile: C[0:6, 0:32]. */
static inline void gemm_ukernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                int accumulate) {
    gemm_ukernel_6(kc, ap, bp, c, ldc, accumulate, GEMM_MR);
}

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

/* ------------------------------------------------------------------------ */
/* Flash attention parameters                                                */
/* ------------------------------------------------------------------------ */

#define FA_MR 4  /* score tile: 4 rows x 2 vectors */
#define FA_BR 32 /* query rows per block */
#define FA_BC 8  /* keys per block */

#endif
