/* gemm_bf16.h -- the blocked bfloat16 GEMM driver (precision
 * MHA_PRECISION_BFLOAT16): the shape of gemm_blocked.h with operands packed
 * as bfloat16 pairs for a VDPBF16PS-style micro-kernel, products exact and
 * summed in float32.
 *
 * A template by inclusion, as gemm_blocked.h: the including file defines
 * GEMM_MR, GEMM_NR, GEMM_KC (even), GEMM_MC and
 *   void gemm_bf16_ukernel_rows(int64_t kp, const uint32_t *ap,
 *                               const uint32_t *bp, float *c, int64_t ldc,
 *                               int accumulate, int64_t mr);
 *     c[r, n] (+)= sum over pairs t < kp of
 *                  a1 * b1 + a0 * b0   (the odd k of the pair first, then the
 *                  even one, each added with one rounding, as VDPBF16PS),
 *     where ap[t*MR + r] holds A[r, 2t] (low half) and A[r, 2t+1] (high
 *     half) and bp[t*NR + n] holds B[2t, n] and B[2t+1, n]; r < mr, n < NR;
 * and optionally GEMM_BF16_HAVE_PAIR16 with
 *   void gemm_bf16_pair16(const float *x, uint32_t *pairs);
 *     pairs[i] = gemm_bf16_pair(x[2i], x[2i+1]) for i < 16, the same bits
 *     (the A rows are packed through it: per element, the scalar rounding
 *     cost as much as the products of a short k-block);
 * and optionally GEMM_BF16_HAVE_PACK_SLIVER with
 *   void gemm_bf16_pack_sliver(const float *A, int64_t lda, int64_t kc,
 *                              uint32_t *dst);
 *     a full sliver: dst[j*MR + r] = gemm_bf16_pair(A[r*lda + 2j],
 *     2j+1 < kc ? A[r*lda + 2j+1] : 0) for r < MR, j < ceil(kc/2), the same
 *     bits (slivers short of MR rows take the loop below).
 *
 * Packed B: ceil(N/NR) panels, each [ceil(K/2)][NR] pairs; an odd K and the
 * columns past N are padded with zeros (a zero product adds nothing).
 *
 *   for each MC-row block of [m0,m1):
 *     for k0 in 0, KC, 2KC, ...:
 *       ap = A[block rows, k0:k0+KC] rounded to bfloat16, as pairs [t][MR]
 *       for each panel p: for each sliver: C (+)= ap . Bpacked[p][k0/2 ...]
 *     C[block, n0:n1] += bias
 * Element C[m, n] is one chain over the pairs ascending, split at the fixed
 * k-blocks: the same bits whatever range or tile computed it.
 */
#ifndef MHA_BACKENDS_GEMM_BF16_H
#define MHA_BACKENDS_GEMM_BF16_H

#include <stdint.h>

#include "common/bf16.h"
#include "common/kernel_common.h"

#if !defined(GEMM_MR) || !defined(GEMM_NR) || !defined(GEMM_KC) || !defined(GEMM_MC) ||            \
    (GEMM_KC % 2)
#error "define GEMM_MR, GEMM_NR, GEMM_MC and an even GEMM_KC before including gemm_bf16.h"
#endif

/* k per block in bfloat16: twice the float32 block, so the packed A block
 * (KC / 2 pairs per row) and a B panel's slice take the bytes they take in
 * float32 (the stack the float32 driver uses), and a d_model 768 or 1024
 * projection is one block: C loaded and stored once. A chain split at a
 * block is stored and reloaded as a float, so the block size changes no
 * bits. */
#define GEMM_BF16_KC (2 * GEMM_KC)

/* Two floats of row-major data rounded and paired: lo = x[0], hi = x[1]
 * (or 0 past the end). */
static inline uint32_t gemm_bf16_pair(float lo, float hi) {
    return (uint32_t)bf16_from_float(lo) | ((uint32_t)bf16_from_float(hi) << 16);
}

/* Bytes of packed B; SIZE_MAX when the size overflows. */
static inline size_t gemm_bf16_packed_size(int64_t K, int64_t N) {
    if (K < 0 || N < 0) return SIZE_MAX;
    uint64_t panels = (uint64_t)(N + GEMM_NR - 1) / GEMM_NR;
    uint64_t pairs_per_panel = (uint64_t)(K + 1) / 2 * GEMM_NR;
    if (panels && pairs_per_panel > SIZE_MAX / sizeof(uint32_t) / panels) return SIZE_MAX;
    return (size_t)(panels * pairs_per_panel * sizeof(uint32_t));
}

/* B: [K, N] row-major (ldb) -> packed pairs [N/NR][K/2][NR]. */
static inline void gemm_bf16_pack_b(int64_t K, int64_t N, const float *B, int64_t ldb,
                                    void *packed) {
    uint32_t *dst = packed;
    const int64_t panels = (N + GEMM_NR - 1) / GEMM_NR, kp = (K + 1) / 2;
    for (int64_t p = 0; p < panels; p++)
        for (int64_t t = 0; t < kp; t++)
            for (int64_t c = 0; c < GEMM_NR; c++) {
                const int64_t n = p * GEMM_NR + c, k = 2 * t;
                const float lo = n < N ? B[k * ldb + n] : 0.0f;
                const float hi = n < N && k + 1 < K ? B[(k + 1) * ldb + n] : 0.0f;
                dst[(p * kp + t) * GEMM_NR + c] = gemm_bf16_pair(lo, hi);
            }
}

/* Rows [mb, mb + MC) (clipped to m1) against panels [p_first, p_last],
 * columns clipped to [n0, n1). Shapes as gemm_blocked_rows; K > 0. */
static inline void gemm_bf16_rows(const mha_gemm_args *a, int64_t mb, int64_t p_first,
                                  int64_t p_last) {
    _Alignas(64) uint32_t ap[GEMM_MC * GEMM_BF16_KC / 2];
    _Alignas(64) float ct[GEMM_MR * GEMM_NR];
    const int64_t rows = a->m1 - mb < GEMM_MC ? a->m1 - mb : GEMM_MC;
    const int64_t tiles = (rows + GEMM_MR - 1) / GEMM_MR, kp_all = (a->K + 1) / 2;

    for (int64_t k0 = 0; k0 < a->K; k0 += GEMM_BF16_KC) {
        const int64_t kc = a->K - k0 < GEMM_BF16_KC ? a->K - k0 : GEMM_BF16_KC, kp = (kc + 1) / 2;

        /* pass 1: the A slivers as rounded pairs [tile][kp][MR], zero past
         * the rows and past K */
        for (int64_t t = 0; t < tiles; t++)
            for (int64_t r = 0; r < GEMM_MR; r++) {
#ifdef GEMM_BF16_HAVE_PACK_SLIVER
                if ((t + 1) * GEMM_MR <= rows) {
                    gemm_bf16_pack_sliver(a->A + (mb + t * GEMM_MR) * a->lda + k0, a->lda, kc,
                                          ap + t * kp * GEMM_MR);
                    break;
                }
#endif
                uint32_t *dst = ap + t * kp * GEMM_MR + r;
                if (t * GEMM_MR + r >= rows) {
                    for (int64_t j = 0; j < kp; j++)
                        dst[j * GEMM_MR] = 0;
                    continue;
                }
                const float *arow = a->A + (mb + t * GEMM_MR + r) * a->lda + k0;
                int64_t j = 0;
#ifdef GEMM_BF16_HAVE_PAIR16
                /* 16 pairs (32 floats) at a time through the backend's
                 * vector rounding (the same bits), spread to the sliver */
                for (; 2 * j + 32 <= kc; j += 16) {
                    _Alignas(64) uint32_t pairs[16];
                    gemm_bf16_pair16(arow + 2 * j, pairs);
                    for (int64_t i = 0; i < 16; i++)
                        dst[(j + i) * GEMM_MR] = pairs[i];
                }
#endif
                for (; j < kp; j++)
                    dst[j * GEMM_MR] =
                        gemm_bf16_pair(arow[2 * j], 2 * j + 1 < kc ? arow[2 * j + 1] : 0.0f);
            }

        /* pass 2: per panel, the micro-kernel per sliver; a panel cut by
         * [n0, n1) goes through ct */
        for (int64_t p = p_first; p <= p_last; p++) {
            const int64_t cn0 = a->n0 > p * GEMM_NR ? a->n0 : p * GEMM_NR;
            const int64_t cn1 = a->n1 < (p + 1) * GEMM_NR ? a->n1 : (p + 1) * GEMM_NR;
            const int full_n = cn0 == p * GEMM_NR && cn1 == (p + 1) * GEMM_NR;
            const uint32_t *bp = (const uint32_t *)a->B_packed + (p * kp_all + k0 / 2) * GEMM_NR;
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t m = mb + t * GEMM_MR;
                const int64_t mr = rows - t * GEMM_MR < GEMM_MR ? rows - t * GEMM_MR : GEMM_MR;
                const uint32_t *as = ap + t * kp * GEMM_MR;
                if (full_n) {
                    gemm_bf16_ukernel_rows(kp, as, bp, a->C + m * a->ldc + p * GEMM_NR, a->ldc,
                                           k0 > 0, mr);
                    continue;
                }
                kernel_gemm_tile_in(a, ct, GEMM_NR, m, mr, p * GEMM_NR, cn0, cn1);
                gemm_bf16_ukernel_rows(kp, as, bp, ct, GEMM_NR, k0 > 0, mr);
                kernel_gemm_tile_out(a, ct, GEMM_NR, m, mr, p * GEMM_NR, cn0, cn1);
            }
        }
    }

    /* pass 3: the epilogue (bias, activation, residual), once after the
     * whole k chain, while the block is in cache; GELU (erf) through the
     * kernel file's vector span when it has one, as gemm_blocked.h does
     * (the same bits: kernel_gelu_erf element by element, test_avx512_vec)
     * -- MiniLM-L6 in bfloat16 0.98x the CPU time (docs/PERFORMANCE.md,
     * "bf19") */
#ifdef GEMM_HAVE_GELU_ERF_SPAN
    kernel_gemm_epilogue(a, mb, rows, p_first, p_last, GEMM_NR, gemm_gelu_erf_span);
#else
    kernel_gemm_epilogue(a, mb, rows, p_first, p_last, GEMM_NR, NULL);
#endif
}

/* The whole range on the calling thread; args checked by the caller. */
static inline int gemm_bf16_run(const mha_gemm_args *a) {
    if (a->m0 == a->m1 || a->n0 == a->n1) return KERNEL_OK;
    if (a->K == 0) { /* the product is 0: C = epilogue(bias) */
        kernel_gemm_epilogue_range(a, a->m0, a->m1, a->n0, a->n1, 1);
        return KERNEL_OK;
    }
    const int64_t p_first = a->n0 / GEMM_NR, p_last = (a->n1 - 1) / GEMM_NR;
    for (int64_t mb = a->m0; mb < a->m1; mb += GEMM_MC)
        gemm_bf16_rows(a, mb, p_first, p_last);
    return KERNEL_OK;
}

#endif
