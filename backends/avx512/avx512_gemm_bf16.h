/* avx512_gemm_bf16.h -- the AVX-512 bfloat16 GEMM micro-kernel for
 * common/gemm_bf16.h (12 x 32 tile, as the float32 one), in two forms of
 * the same arithmetic:
 *   - with __AVX512BF16__ (a kernel source built with -mavx512bf16):
 *     VDPBF16PS, two products per lane per instruction;
 *   - without: an exact emulation on AVX-512F, for CPUs without
 *     AVX512-BF16: the pair is split into its two floats (a bfloat16 is the
 *     high half of a float) and added by two FMAs, odd k first, as the
 *     instruction's definition does; the products are exact, so each FMA
 *     rounds only its sum, as VDPBF16PS does.
 * Needs avx512_vec.h (vf) and avx512_gemm.h (GEMM_MR / GEMM_NR, the
 * accumulator load / store) first.
 */
#ifndef MHA_BACKENDS_AVX512_GEMM_BF16_H
#define MHA_BACKENDS_AVX512_GEMM_BF16_H

#include <immintrin.h>
#include <stdint.h>

#ifdef __AVX512BF16__
/* acc += a.pair . b.pair per lane */
#define AVX512_BF16_DOT(acc, a, b) ((acc) = _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b)))
#else
#define AVX512_BF16_DOT(acc, a, b)                                                                 \
    do {                                                                                           \
        const __m512i hi_ = _mm512_set1_epi32((int)0xffff0000u);                                   \
        (acc) = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512((a), hi_)),                   \
                                _mm512_castsi512_ps(_mm512_and_si512((b), hi_)), (acc));           \
        (acc) = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32((a), 16)),                   \
                                _mm512_castsi512_ps(_mm512_slli_epi32((b), 16)), (acc));           \
    } while (0)
#endif

/*
 * C[0:R, 0:32] (+)= ap . bp over kp pairs, rows r < mr stored (the packed
 * sliver is zero past mr). ap: [kp][12] pairs, bp: [kp][32] pairs. 24
 * accumulators + 2 B vectors + 1 broadcast, as the float32 kernel.
 */
#define AVX512_GEMM_BF16_UKERNEL_ROWS(R)                                                           \
    static inline void gemm_bf16_ukernel_##R(int64_t kp, const uint32_t *ap, const uint32_t *bp,   \
                                             float *c, int64_t ldc, int accumulate, int64_t mr) {  \
        AVX512_GEMM_ACC_LOAD(R)                                                                    \
        for (int64_t t = 0; t < kp; t++) {                                                         \
            const __m512i b0 = _mm512_loadu_si512(bp + t * GEMM_NR);                               \
            const __m512i b1 = _mm512_loadu_si512(bp + t * GEMM_NR + 16);                          \
            _Pragma("GCC unroll 12") for (int r = 0; r < R; r++) {                                 \
                const __m512i a = _mm512_set1_epi32((int)ap[t * GEMM_MR + r]);                     \
                AVX512_BF16_DOT(acc[r][0], a, b0);                                                 \
                AVX512_BF16_DOT(acc[r][1], a, b1);                                                 \
            }                                                                                      \
        }                                                                                          \
        AVX512_GEMM_ACC_STORE(R)                                                                   \
    }
AVX512_GEMM_BF16_UKERNEL_ROWS(4)
AVX512_GEMM_BF16_UKERNEL_ROWS(8)
AVX512_GEMM_BF16_UKERNEL_ROWS(12)

/* 32 floats to 16 pairs, neighbours paired (avx512_vec.h: VCVTNE2PS2BF16
 * or its exact emulation, the rounding of common/bf16.h) */
#define GEMM_BF16_HAVE_PAIR16 1
static inline void gemm_bf16_pair16(const float *x, uint32_t *pairs) {
    vbf_store(pairs, vbf_pair_adjacent(vf_load(x), vf_load(x + 16)));
}

static inline void gemm_bf16_ukernel_rows(int64_t kp, const uint32_t *ap, const uint32_t *bp,
                                          float *c, int64_t ldc, int accumulate, int64_t mr) {
    /* the smallest register block holding mr rows (a short last sliver
     * spends no dot products on padding) */
    void (*const k)(int64_t, const uint32_t *, const uint32_t *, float *, int64_t, int, int64_t) =
        mr <= 4   ? gemm_bf16_ukernel_4
        : mr <= 8 ? gemm_bf16_ukernel_8
                  : gemm_bf16_ukernel_12;
    k(kp, ap, bp, c, ldc, accumulate, mr);
}

#endif
