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

/* 4 rows x 16 pairs (v[r]: row r) stored transposed: dst[i * GEMM_MR + r]
 * = v[r][i] for i < n. Per 128-bit lane l a 4 x 4 transpose leaves pairs
 * 4l + c of the 4 rows in lane l of t[c], stored as one 16-byte piece. */
#define AVX512_BF16_STORE_LANE(l)                                                                  \
    for (int c = 0; c < 4 && 4 * (l) + c < n; c++)                                                 \
        _mm_storeu_si128((__m128i *)(dst + (4 * (l) + c) * GEMM_MR),                               \
                         _mm512_extracti32x4_epi32(t[c], (l)));
static inline void gemm_bf16_store_4x16(const __m512i v[4], int64_t n, uint32_t *dst) {
    const __m512i lo01 = _mm512_unpacklo_epi32(v[0], v[1]); /* v0[0] v1[0] v0[1] v1[1] */
    const __m512i hi01 = _mm512_unpackhi_epi32(v[0], v[1]); /* v0[2] v1[2] v0[3] v1[3] */
    const __m512i lo23 = _mm512_unpacklo_epi32(v[2], v[3]);
    const __m512i hi23 = _mm512_unpackhi_epi32(v[2], v[3]);
    const __m512i t[4] = {_mm512_unpacklo_epi64(lo01, lo23), _mm512_unpackhi_epi64(lo01, lo23),
                          _mm512_unpacklo_epi64(hi01, hi23), _mm512_unpackhi_epi64(hi01, hi23)};
    AVX512_BF16_STORE_LANE(0)
    AVX512_BF16_STORE_LANE(1)
    AVX512_BF16_STORE_LANE(2)
    AVX512_BF16_STORE_LANE(3)
}
#undef AVX512_BF16_STORE_LANE

/* A full sliver (GEMM_MR rows of A, kc floats each) rounded and packed:
 * dst[j * GEMM_MR + r] = gemm_bf16_pair(A[r][2j], A[r][2j + 1] or 0 past
 * kc), the bits of the generic loop. It spread each row's pairs with a
 * 48-byte stride, one 4-byte store per pair (~13 % of the GEMM's time on
 * ViT's shapes); here 16 pairs of 4 rows are transposed in registers and
 * stored as 16-byte pieces. The last step of a row loads past kc as zeros
 * (masked), which pair as gemm_bf16_pair(x, 0) does. */
#define GEMM_BF16_HAVE_PACK_SLIVER 1
static inline void gemm_bf16_pack_sliver(const float *A, int64_t lda, int64_t kc, uint32_t *dst) {
    for (int64_t j = 0; 2 * j < kc; j += 16) {
        const int64_t left = kc - 2 * j, n = left >= 32 ? 16 : (left + 1) / 2;
        for (int r0 = 0; r0 < GEMM_MR; r0 += 4) {
            __m512i v[4];
            for (int r = 0; r < 4; r++) {
                const float *p = A + (r0 + r) * lda + 2 * j;
                v[r] = left >= 32 ? vbf_pair_adjacent(vf_load(p), vf_load(p + 16))
                                  : vbf_pair_adjacent(vf_load_part(p, left),
                                                      vf_load_part(p + 16, left - 16));
            }
            gemm_bf16_store_4x16(v, n, dst + j * GEMM_MR + r0);
        }
    }
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
