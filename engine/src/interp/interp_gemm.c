/* interp_gemm.c -- the one float32 contraction of the reference side: the
 * interpreter's MatMul, Gemm and Conv, and the verifier's GEMM steps, run
 *
 *     C [M, N] = init + A [M, K] . B [K, N]
 *
 * every element summed in double, from its init value (0 without one), over
 * k = 0 .. K-1 in that order, and rounded once. A product of two floats is
 * exact in double, so a fused multiply-add and a multiply then an add give
 * the same bits: the result is that of the plain triple loop whatever the
 * blocking, the instruction set the loop is compiled for or the compiler's
 * contraction (test_interp checks it bit for bit against one).
 *
 * Blocked the way fast GEMMs are, without their float32 sums:
 *
 *     for each pass of up to GEMM_A_BYTES of A's rows (all of them, mostly):
 *       pack its A into GEMM_MR-row panels of doubles, [K][GEMM_MR] each
 *       for each block of up to GEMM_B_BYTES of B's columns:
 *         pack its B into GEMM_NR-column panels, [K][GEMM_NR] each
 *         for each block of GEMM_NC columns of it:
 *           for each chunk of GEMM_MC rows of the pass:
 *             sums [MR][NR] of every panel pair = init
 *             for each slice of GEMM_KC steps of k, in order:
 *               for each pair: sums += A panel [slice] x B panel [slice]
 *             store the valid part of the sums
 *
 * B is read and packed once per pass, not once per chunk of rows: a
 * 197-row probe (one ViT image) was two chunks, the second of 5 rows, each
 * packing the whole weight, and reading B's strided rows was the loop's
 * largest cost.
 *
 * The padding (zero rows of A, zero columns of B) is computed and dropped:
 * no edge branches in the loop over k. On x86-64 the loop is compiled for AVX-512, AVX2 and the
 * baseline and picked at load (the same bits on each). */
#include <string.h>

#include "interp.h"

/* 6 x 8 doubles: 6 zmm or 12 ymm accumulators, which the register files of
 * AVX-512 (32) and AVX2 (16) hold with the operands beside them. */
#define GEMM_MR 6
#define GEMM_NR 8
/* Rows summed at a time: their slices of GEMM_KC steps (GEMM_MC *
 * GEMM_KC doubles) stay in L2 beside the block of B. */
#define GEMM_MC 192
/* A's packed doubles per pass (at least GEMM_MC rows): B is packed once per
 * pass, so the fewer passes the better, but the scratch stays bounded when
 * the interpreter runs a large batch. */
#define GEMM_A_BYTES ((size_t)16 << 20)
/* Columns of B summed at a time (GEMM_NC / GEMM_NR panels). */
#define GEMM_NC 64
/* B's packed floats at a time (at least GEMM_NC columns): its rows are read
 * that many columns at a time, a page or more, not one block's GEMM_NC (a
 * row each 256 bytes, in a new page each for a wide B, missed the cache on
 * every read and took as long as the sums). */
#define GEMM_B_BYTES ((size_t)4 << 20)
/* Rows of B packed per tile (pass 2). */
#define GEMM_KT 16
/* Steps of k per kernel call: an A panel's and a B panel's slices stay in
 * L1; the block's sums wait between slices in doubles. */
#define GEMM_KC 256
_Static_assert(GEMM_MR == 6, "gemm_panel holds six rows");

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define GEMM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GEMM_CLONES
#endif

/* GEMM_NR doubles (floats) as one vector of the compiler's: one zmm, two
 * ymm or four xmm, whichever the clone has. */
typedef double gemm_vd __attribute__((vector_size(GEMM_NR * sizeof(double))));
typedef float gemm_vf __attribute__((vector_size(GEMM_NR * sizeof(float))));

/* acc [MR] (a row of GEMM_NR each) += sum over k of ap [k][r] * b [k][..];
 * ap: the A panel in doubles, b: the B panel, GEMM_NR floats per row. */
GEMM_CLONES
static void gemm_panel(int64_t K, const double *ap, const float *b, gemm_vd acc[GEMM_MR]) {
    gemm_vd c0 = acc[0], c1 = acc[1], c2 = acc[2], c3 = acc[3], c4 = acc[4], c5 = acc[5];
    for (int64_t k = 0; k < K; k++) {
        gemm_vf bf;
        memcpy(&bf, b + k * GEMM_NR, sizeof bf);
        const gemm_vd bk = __builtin_convertvector(bf, gemm_vd);
        const double *a = ap + k * GEMM_MR;
        c0 += a[0] * bk;
        c1 += a[1] * bk;
        c2 += a[2] * bk;
        c3 += a[3] * bk;
        c4 += a[4] * bk;
        c5 += a[5] * bk;
    }
    acc[0] = c0;
    acc[1] = c1;
    acc[2] = c2;
    acc[3] = c3;
    acc[4] = c4;
    acc[5] = c5;
}

/* The sums of the panels of rows [m0, m0 + mr) x columns from c0 (nq
 * panels): out = 0 sets them to init (pass 3), out = 1 stores their valid
 * part into C or Cd (pass 5). */
static void gemm_sums(const interp_gemm_args *g, gemm_vd *sums, int64_t m0, int64_t mr, int64_t c0,
                      int64_t nq, int out) {
    const int64_t np = (mr + GEMM_MR - 1) / GEMM_MR;
    for (int64_t p = 0; p < np; p++)
        for (int64_t q = 0; q < nq; q++)
            for (int r = 0; r < GEMM_MR; r++)
                for (int j = 0; j < GEMM_NR; j++) {
                    const int64_t m = m0 + p * GEMM_MR + r, n = c0 + q * GEMM_NR + j;
                    /* (an element of a vector has no address in clang) */
                    gemm_vd *v = &sums[(p * nq + q) * GEMM_MR + r];
                    const int valid = m < m0 + mr && n < g->N;
                    if (!out)
                        (*v)[j] = !g->init || !valid ? 0.0
                                  : g->init_per_row  ? (double)g->init[m]
                                                     : (double)g->init[n];
                    else if (valid && g->Cd)
                        g->Cd[m * g->ldc + n] = (*v)[j];
                    else if (valid)
                        g->C[m * g->ldc + n] = (float)(*v)[j];
                }
}

mha_status interp_gemm_f32(const mha_alloc_ctx *a, const interp_gemm_args *g, mha_error *err) {
    const int64_t M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0) return MHA_OK;
    const size_t kk = (size_t)(K > 0 ? K : 1);
    /* rows per pass: as many as GEMM_A_BYTES hold, whole chunks, at most M */
    int64_t ma = (int64_t)(GEMM_A_BYTES / (kk * sizeof(double))) / GEMM_MC * GEMM_MC;
    if (ma < GEMM_MC) ma = GEMM_MC;
    if (ma > M) ma = M;
    const int64_t panels = (ma + GEMM_MR - 1) / GEMM_MR;
    const int64_t mc_panels = GEMM_MC / GEMM_MR;
    double *ap = mha_malloc(a, (size_t)panels * GEMM_MR * kk * sizeof *ap);
    /* columns per block of B: whole GEMM_NC blocks, at most N's */
    int64_t nw = (int64_t)(GEMM_B_BYTES / (kk * sizeof(float))) / GEMM_NC * GEMM_NC;
    if (nw < GEMM_NC) nw = GEMM_NC;
    if (nw > (N + GEMM_NC - 1) / GEMM_NC * GEMM_NC) nw = (N + GEMM_NC - 1) / GEMM_NC * GEMM_NC;
    float *bpad = mha_malloc(a, kk * (size_t)nw * sizeof *bpad);
    gemm_vd *sums = mha_malloc(a, (size_t)mc_panels * (GEMM_NC / GEMM_NR) * GEMM_MR * sizeof *sums);
    if (!ap || !bpad || !sums) {
        mha_free(a, ap);
        mha_free(a, bpad);
        mha_free(a, sums);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "out of memory for a %lld x %lld GEMM block",
                        (long long)ma, (long long)K);
    }
    for (int64_t a0 = 0; a0 < M; a0 += ma) {
        const int64_t mb = M - a0 < ma ? M - a0 : ma;
        /* pass 1: A's rows [a0, a0 + mb) as panels [k][r], zero past them */
        for (int64_t p = 0; p * GEMM_MR < mb; p++)
            for (int r = 0; r < GEMM_MR; r++) {
                const int64_t m = a0 + p * GEMM_MR + r;
                double *dst = ap + (size_t)p * GEMM_MR * kk + (size_t)r;
                const float *src = g->A + m * g->a_row;
                if (m >= a0 + mb)
                    for (int64_t k = 0; k < K; k++)
                        dst[k * GEMM_MR] = 0.0;
                else if (g->a_col == 1)
                    for (int64_t k = 0; k < K; k++)
                        dst[k * GEMM_MR] = (double)src[k];
                else
                    for (int64_t k = 0; k < K; k++)
                        dst[k * GEMM_MR] = (double)src[k * g->a_col];
            }
        for (int64_t w0 = 0; w0 < N; w0 += nw) {
            const int64_t wb = N - w0 < nw ? N - w0 : nw;
            const int64_t wq = (wb + GEMM_NR - 1) / GEMM_NR;
            /* pass 2: B's columns [w0, w0 + wb) as panels [k][j] of GEMM_NR,
             * zero past N, GEMM_KT rows of B at a time: each row a page
             * or more apart, each panel too, so a tile touches GEMM_KT
             * pages of B and one of a panel at a time (the TLB holds
             * them; row by row, or panel by panel over all of k, missed
             * it on every copy) */
            for (int64_t k0 = 0; k0 < K; k0 += GEMM_KT) {
                const int64_t k1 = K - k0 < GEMM_KT ? K : k0 + GEMM_KT;
                for (int64_t q = 0; q < wq; q++) {
                    const int64_t w = wb - q * GEMM_NR < GEMM_NR ? wb - q * GEMM_NR : GEMM_NR;
                    for (int64_t k = k0; k < k1; k++) {
                        float *dst = bpad + q * GEMM_NR * (int64_t)kk + k * GEMM_NR;
                        if (w < GEMM_NR) memset(dst, 0, GEMM_NR * sizeof *dst);
                        memcpy(dst, g->B + k * g->ldb + w0 + q * GEMM_NR, (size_t)w * sizeof *dst);
                    }
                }
            }
            for (int64_t c0 = w0; c0 < w0 + wb; c0 += GEMM_NC) {
                const int64_t cb = w0 + wb - c0 < GEMM_NC ? w0 + wb - c0 : GEMM_NC;
                const int64_t nq = (cb + GEMM_NR - 1) / GEMM_NR;
                const float *bq = bpad + (c0 - w0) / GEMM_NR * GEMM_NR * (int64_t)kk;
                for (int64_t m0 = a0; m0 < a0 + mb; m0 += GEMM_MC) {
                    const int64_t mr = a0 + mb - m0 < GEMM_MC ? a0 + mb - m0 : GEMM_MC;
                    const int64_t np = (mr + GEMM_MR - 1) / GEMM_MR;
                    const double *apc = ap + (size_t)((m0 - a0) / GEMM_MR) * GEMM_MR * kk;
                    gemm_sums(g, sums, m0, mr, c0, nq, 0); /* pass 3 */
                    /* pass 4: slice by slice of k, in order */
                    for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
                        const int64_t kb = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
                        for (int64_t q = 0; q < nq; q++)
                            for (int64_t p = 0; p < np; p++)
                                gemm_panel(kb, apc + ((size_t)p * kk + (size_t)k0) * GEMM_MR,
                                           bq + q * GEMM_NR * (int64_t)kk + k0 * GEMM_NR,
                                           sums + (p * nq + q) * GEMM_MR);
                    }
                    gemm_sums(g, sums, m0, mr, c0, nq, 1); /* pass 5 */
                }
            }
        }
    }
    mha_free(a, ap);
    mha_free(a, bpad);
    mha_free(a, sums);
    return MHA_OK;
}
