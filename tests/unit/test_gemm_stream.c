/* test_gemm_stream.c -- the avx512 float32 GEMM's path for short row blocks
 * (a request of a few tokens), where the first sliver's kernel asks for the
 * B panel slice the driver reads next:
 *  - gemm_ukernel_stream (avx512_gemm.h): rows [0, mr) of a 12 x 32 tile
 *    for mr 1 to 12, bit for bit a scalar fmaf chain per element (from 0 or
 *    from C), for kc 1 to 70 and around a 768 k-block, and nothing written
 *    outside those rows of a wider C;
 *  - gemm_blocked_next_slice (common/gemm_blocked.h): for every slice the
 *    driver reads (k-blocks outer, panels inner), the one it reads next, NULL
 *    after the last, for one and several k-blocks and ranges of panels;
 *  - gemm_blocked_run on 1 to 40 rows (up to three slivers, 36 rows, take
 *    the path: W2's 32; 37 and more do not), whole and partial column
 *    ranges, K of one and two k-blocks: the first sliver of each panel but
 *    the last slice read through the stream kernel, and C bit for bit bias +
 *    the fmaf chain, nothing outside the range written;
 *  - gemm_blocked_run on many-row blocks (37 to 158 rows from row 0, 3 or
 *    12): the first panel's kernels pack the next slivers
 *    (gemm_ukernel_pf_pack, once for each full sliver but the last per
 *    k-block when the first panel is whole, else never), and, when the
 *    epilogue has no residual, the last k-block's full tiles in whole
 *    panels add the bias in the kernel call (gemm_ukernel_pf_bias) and the
 *    GELU (erf) right after it (gemm_gelu_erf_tile), C bit for bit.
 * Compiled with the avx512 kernels' flags; on a CPU without AVX-512F/DQ the
 * tests report themselves skipped. */
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

/* The driver's calls of the stream kernel counted (the same kernel, the
 * same bits): which row blocks take the path. */
static int64_t stream_calls;
static inline void gemm_ukernel_stream_counted(int64_t kc, const float *ap, const float *bp,
                                               float *c, int64_t ldc, int accumulate, int64_t mr,
                                               const float *next) {
    stream_calls++;
    gemm_ukernel_stream(kc, ap, bp, c, ldc, accumulate, mr, next);
}
#define gemm_ukernel_stream gemm_ukernel_stream_counted

/* Likewise the full tiles that pack the next sliver, and the full tiles
 * stored with the bias added (either kernel). */
static int64_t pack_calls, bias_calls;
static inline void gemm_ukernel_pf_pack_bias_counted(int64_t kc, const float *ap, const float *bp,
                                                     float *c, int64_t ldc, int accumulate,
                                                     const char *pf, int64_t npf, const float *A,
                                                     int64_t lda, float *dst, const float *bias) {
    pack_calls++;
    bias_calls += bias != NULL;
    gemm_ukernel_pf_pack_bias(kc, ap, bp, c, ldc, accumulate, pf, npf, A, lda, dst, bias);
}
static inline void gemm_ukernel_pf_bias_counted(int64_t kc, const float *ap, const float *bp,
                                                float *c, int64_t ldc, int accumulate,
                                                const char *pf, int64_t npf, const float *bias) {
    bias_calls += bias != NULL;
    gemm_ukernel_pf_bias(kc, ap, bp, c, ldc, accumulate, pf, npf, bias);
}
/* And the full tiles whose GELU runs right after their last kernel call. */
static int64_t gelu_tiles;
static inline void gemm_gelu_erf_tile_counted(float *c, int64_t ldc) {
    gelu_tiles++;
    gemm_gelu_erf_tile(c, ldc);
}
#define gemm_ukernel_pf_pack_bias gemm_ukernel_pf_pack_bias_counted
#define gemm_ukernel_pf_bias gemm_ukernel_pf_bias_counted
#define gemm_gelu_erf_tile gemm_gelu_erf_tile_counted

#include "common/gemm_blocked.h"

#undef gemm_ukernel_stream
#undef gemm_ukernel_pf_pack_bias
#undef gemm_ukernel_pf_bias
#undef gemm_gelu_erf_tile

static void test_stream_kernel_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    enum { KMAX = 769, LDC = 40 };
    static float ap[KMAX * GEMM_MR], bp[KMAX * GEMM_NR], next[KMAX * GEMM_NR];
    static float c[GEMM_MR * LDC], want[GEMM_MR * LDC];
    tu_fill_lcg(ap, KMAX * GEMM_MR, 11, 1.0f);
    tu_fill_lcg(bp, KMAX * GEMM_NR, 12, 0.25f);
    tu_fill_lcg(next, KMAX * GEMM_NR, 13, 1.0f);
    for (int64_t kc = 1; kc <= KMAX; kc = kc < 70 ? kc + 1 : kc < 767 ? 767 : kc + 1)
        for (int64_t mr = 1; mr <= GEMM_MR; mr++)
            for (int accumulate = 0; accumulate < 2; accumulate++) {
                for (int i = 0; i < GEMM_MR * LDC; i++)
                    c[i] = i % LDC < GEMM_NR ? 0.25f * (float)(i % 13) - 1.0f : 7.0f;
                for (int r = 0; r < GEMM_MR; r++)
                    for (int n = 0; n < LDC; n++) {
                        float x = c[r * LDC + n];
                        if (n < GEMM_NR && r < mr) {
                            x = accumulate ? x : 0.0f;
                            for (int64_t k = 0; k < kc; k++)
                                x = fmaf(ap[k * GEMM_MR + r], bp[k * GEMM_NR + n], x);
                        }
                        want[r * LDC + n] = x;
                    }
                gemm_ukernel_stream(kc, ap, bp, c, LDC, accumulate, mr, next);
                if (memcmp(c, want, sizeof c) != 0)
                    fail_msg(
                        "kc %lld, %lld rows, accumulate %d: the tile differs from the fmaf chain",
                        (long long)kc, (long long)mr, accumulate);
            }
}

static void test_next_slice_order(void **state) {
    (void)state;
    static const int64_t shapes[][4] = {
        /* K, N, n0, n1 */
        {384, 1536, 0, 1536},  {384, 1536, 384, 768},        {1536, 384, 0, 384},
        {1536, 384, 100, 200}, {2 * GEMM_KC + 1, 96, 0, 96}, {GEMM_KC, 32, 0, 32},
        {5, 40, 33, 40},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        mha_gemm_args a;
        memset(&a, 0, sizeof a);
        a.K = shapes[s][0];
        a.N = shapes[s][1];
        a.n0 = shapes[s][2];
        a.n1 = shapes[s][3];
        const int64_t p_first = a.n0 / GEMM_NR, p_last = (a.n1 - 1) / GEMM_NR;
        /* the packed panels up to p_last (only addresses are compared, but
         * they must point into one object) */
        float *packed = calloc((size_t)((p_last + 1) * a.K * GEMM_NR), sizeof *packed);
        assert_non_null(packed);
        a.B_packed = packed;
        const float *prev = NULL;
        int64_t prev_p = 0, prev_k0 = 0, n = 0;
        /* the driver's order of reads: k-blocks outer, panels inner */
        for (int64_t k0 = 0; k0 < a.K; k0 += GEMM_KC)
            for (int64_t p = p_first; p <= p_last; p++, n++) {
                const float *slice = packed + (p * a.K + k0) * GEMM_NR;
                if (prev && gemm_blocked_next_slice(&a, prev_p, p_first, p_last, prev_k0) != slice)
                    fail_msg("K %lld, panels %lld-%lld: the slice after panel %lld at k %lld is "
                             "not panel %lld at k %lld",
                             (long long)a.K, (long long)p_first, (long long)p_last,
                             (long long)prev_p, (long long)prev_k0, (long long)p, (long long)k0);
                prev = slice;
                prev_p = p;
                prev_k0 = k0;
            }
        assert_true(n > 0);
        if (gemm_blocked_next_slice(&a, prev_p, p_first, p_last, prev_k0) != NULL)
            fail_msg("K %lld: a slice asked for after the last one", (long long)a.K);
        free(packed);
    }
}

/* C of a run of gemm_blocked_run on A [M, K] (lda K), B [K, ldc] (bias)
 * whose C was all -3 before: bit for bit the fmaf chain over k ascending,
 * then a->bias, a->activation (none or GELU erf) and a->residual as
 * kernel_gemm_epilogue_rows orders them, inside [m0, m1) x [n0, n1), -3
 * outside. */
static void expect_c(const mha_gemm_args *a, const float *B) {
    for (int64_t m = 0; m < a->M; m++)
        for (int64_t n = 0; n < a->ldc; n++) {
            float want = -3.0f;
            if (m >= a->m0 && m < a->m1 && n >= a->n0 && n < a->n1) {
                float x = 0.0f;
                for (int64_t k = 0; k < a->K; k++)
                    x = fmaf(a->A[m * a->lda + k], B[k * a->ldc + n], x);
                if (a->bias) x = x + a->bias[n];
                if (a->activation == MHA_ACT_GELU_ERF) x = kernel_gelu_erf(x);
                if (a->residual) x = x + a->residual[m * a->ldr + n];
                want = x;
            }
            if (memcmp(&a->C[m * a->ldc + n], &want, sizeof want) != 0)
                fail_msg("M %lld (rows %lld-%lld), K %lld, columns %lld-%lld: C[%lld, %lld] = "
                         "%.9g, want %.9g",
                         (long long)a->M, (long long)a->m0, (long long)a->m1, (long long)a->K,
                         (long long)a->n0, (long long)a->n1, (long long)m, (long long)n,
                         (double)a->C[m * a->ldc + n], (double)want);
        }
}

static void test_short_blocks_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    enum { MMAX = 40, NMAX = 96, KMAX = GEMM_KC + 40 };
    static const int64_t ks[] = {5, 384, GEMM_KC, KMAX};
    static const int64_t ranges[][2] = {{0, 96}, {0, 64}, {32, 96}, {7, 90}};
    float *A = malloc(sizeof(float) * MMAX * KMAX), *B = malloc(sizeof(float) * KMAX * NMAX);
    float *bias = malloc(sizeof(float) * NMAX), *C = malloc(sizeof(float) * MMAX * NMAX);
    void *Bp = malloc(gemm_blocked_packed_size(KMAX, NMAX));
    assert_non_null(A);
    assert_non_null(B);
    assert_non_null(bias);
    assert_non_null(C);
    assert_non_null(Bp);
    tu_fill_lcg(A, (size_t)MMAX * KMAX, 21, 1.0f);
    tu_fill_lcg(B, (size_t)KMAX * NMAX, 22, 0.25f);
    tu_fill_lcg(bias, NMAX, 23, 1.0f);
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int64_t K = ks[ki];
        gemm_blocked_pack_b(K, NMAX, B, NMAX, Bp);
        for (int64_t M = 1; M <= MMAX; M++)
            for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
                mha_gemm_args a = {.struct_size = sizeof a,
                                   .precision = MHA_PRECISION_FLOAT32,
                                   .M = M,
                                   .N = NMAX,
                                   .K = K,
                                   .A = A,
                                   .lda = K,
                                   .B_packed = Bp,
                                   .C = C,
                                   .ldc = NMAX,
                                   .m0 = 0,
                                   .m1 = M,
                                   .n0 = ranges[ri][0],
                                   .n1 = ranges[ri][1],
                                   .num_threads = 1,
                                   .bias = bias};
                for (int64_t i = 0; i < M * NMAX; i++)
                    C[i] = -3.0f;
                stream_calls = 0;
                assert_int_equal(gemm_blocked_run(&a), KERNEL_OK);
                /* a block of up to three slivers streams every slice but
                 * the last one's (nothing after it) when the range is
                 * whole, some when not; a longer block none */
                const int64_t slices = (K + GEMM_KC - 1) / GEMM_KC * (NMAX / GEMM_NR);
                const int streams = M <= 3 * GEMM_MR;
                if (streams ? (ri == 0 ? stream_calls != slices - 1 : stream_calls == 0)
                            : stream_calls != 0)
                    fail_msg("M %lld, K %lld, columns %lld-%lld: %lld stream kernel calls (%s)",
                             (long long)M, (long long)K, (long long)a.n0, (long long)a.n1,
                             (long long)stream_calls,
                             streams ? "a short block's first slivers stream" : "none wanted");
                expect_c(&a, B);
            }
    }
    free(A);
    free(B);
    free(bias);
    free(C);
    free(Bp);
}

/* gemm_blocked_run on many-row blocks (37 rows and more), whose first
 * panel's kernels pack the block's next slivers (gemm_ukernel_pf_pack):
 * row ranges that start inside A and end in a short sliver or a short
 * block, K of one and two k-blocks and under 8 columns, whole and partial
 * column ranges. Every k-block of a block whose first panel is whole calls
 * it once for each full sliver but the last (none for a partial first
 * panel), and C is bit for bit bias + the fmaf chain, -3 outside the
 * range. A sliver packed from the wrong rows or columns, or a kernel that
 * reads a sliver before it is packed, changes C. The epilogue turns over
 * the runs (bias; bias and residual; bias and GELU erf; all three; the
 * residual alone; none): without a residual (and with the GELU, K a
 * multiple of GEMM_KC), the last k-block's full tiles in whole panels add
 * the bias in the kernel call (gemm_ukernel_pf_bias / _pack_bias with a
 * bias: one call each) and the GELU right after it (gemm_gelu_erf_tile:
 * one call each); the pass after
 * the block does the rest (with a residual, all of it), and C is bit for
 * bit the chain, + bias, GELU, + residual. */
static void test_many_row_blocks_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    enum { MMAX = 170, NMAX = 96, KMAX = GEMM_KC + 40 };
    static const int64_t ks[] = {5, 384, GEMM_KC, KMAX};
    static const int64_t rows[][2] = {{0, 37}, {0, 72}, {3, 83}, {0, 150}, {12, 170}};
    static const int64_t ranges[][2] = {{0, 96}, {0, 64}, {32, 96}, {7, 90}};
    float *A = malloc(sizeof(float) * MMAX * KMAX), *B = malloc(sizeof(float) * KMAX * NMAX);
    enum { LDR = NMAX + 5 };
    float *bias = malloc(sizeof(float) * NMAX), *C = malloc(sizeof(float) * MMAX * NMAX);
    float *res = malloc(sizeof(float) * MMAX * LDR);
    void *Bp = malloc(gemm_blocked_packed_size(KMAX, NMAX));
    assert_non_null(A);
    assert_non_null(B);
    assert_non_null(bias);
    assert_non_null(C);
    assert_non_null(res);
    assert_non_null(Bp);
    tu_fill_lcg(A, (size_t)MMAX * KMAX, 31, 1.0f);
    tu_fill_lcg(B, (size_t)KMAX * NMAX, 32, 0.25f);
    tu_fill_lcg(bias, NMAX, 33, 1.0f);
    tu_fill_lcg(res, (size_t)MMAX * LDR, 34, 2.0f);
    int64_t runs_bias = 0, runs_gelu = 0;
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int64_t K = ks[ki];
        gemm_blocked_pack_b(K, NMAX, B, NMAX, Bp);
        for (size_t mi = 0; mi < sizeof rows / sizeof rows[0]; mi++)
            for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
                mha_gemm_args a = {.struct_size = sizeof a,
                                   .precision = MHA_PRECISION_FLOAT32,
                                   .M = MMAX,
                                   .N = NMAX,
                                   .K = K,
                                   .A = A,
                                   .lda = K,
                                   .B_packed = Bp,
                                   .C = C,
                                   .ldc = NMAX,
                                   .m0 = rows[mi][0],
                                   .m1 = rows[mi][1],
                                   .n0 = ranges[ri][0],
                                   .n1 = ranges[ri][1],
                                   .num_threads = 1};
                const int e = (int)((ki + mi + ri) % 6);
                a.bias = e == 0 || e == 1 || e == 2 || e == 3 ? bias : NULL;
                a.activation = e == 2 || e == 3 ? MHA_ACT_GELU_ERF : MHA_ACT_NONE;
                a.residual = e == 1 || e == 3 || e == 4 ? res : NULL;
                a.ldr = LDR;
                for (int64_t i = 0; i < MMAX * NMAX; i++)
                    C[i] = -3.0f;
                pack_calls = bias_calls = gelu_tiles = 0;
                assert_int_equal(gemm_blocked_run(&a), KERNEL_OK);
                int64_t want_calls = 0, want_bias = 0, want_gelu = 0;
                const int64_t whole = a.n1 / GEMM_NR - (a.n0 + GEMM_NR - 1) / GEMM_NR;
                for (int64_t mb = a.m0; mb < a.m1; mb += GEMM_MC) {
                    const int64_t r = a.m1 - mb < GEMM_MC ? a.m1 - mb : GEMM_MC;
                    if (r > GEMM_STREAM_ROWS && a.n0 % GEMM_NR == 0)
                        want_calls += (r / GEMM_MR - 1) * ((K + GEMM_KC - 1) / GEMM_KC);
                    if (r > GEMM_STREAM_ROWS && a.bias && !a.residual &&
                        (!a.activation || K % GEMM_KC == 0) && whole > 0)
                        want_bias += r / GEMM_MR * whole;
                    if (r > GEMM_STREAM_ROWS && a.activation && !a.residual && K % GEMM_KC == 0 &&
                        whole > 0)
                        want_gelu += r / GEMM_MR * whole;
                }
                if (gelu_tiles != want_gelu)
                    fail_msg("rows %lld-%lld, K %lld, columns %lld-%lld, epilogue %d: %lld tiles "
                             "through the GELU after their kernel, want %lld",
                             (long long)a.m0, (long long)a.m1, (long long)K, (long long)a.n0,
                             (long long)a.n1, e, (long long)gelu_tiles, (long long)want_gelu);
                runs_gelu += want_gelu > 0;
                if (bias_calls != want_bias)
                    fail_msg("rows %lld-%lld, K %lld, columns %lld-%lld, epilogue %d: %lld tiles "
                             "stored with the bias, want %lld",
                             (long long)a.m0, (long long)a.m1, (long long)K, (long long)a.n0,
                             (long long)a.n1, e, (long long)bias_calls, (long long)want_bias);
                runs_bias += want_bias > 0;
                if (pack_calls != want_calls)
                    fail_msg("rows %lld-%lld, K %lld, columns %lld-%lld: %lld packing kernel "
                             "calls, want %lld",
                             (long long)a.m0, (long long)a.m1, (long long)K, (long long)a.n0,
                             (long long)a.n1, (long long)pack_calls, (long long)want_calls);
                expect_c(&a, B);
            }
    }
    assert_true(runs_bias >= 8); /* the bias in the kernel was tried */
    assert_true(runs_gelu >= 3); /* and the GELU after it */
    free(A);
    free(B);
    free(bias);
    free(C);
    free(res);
    free(Bp);
}

#else
/* not built with the AVX-512 flags (not x86-64): nothing to run */
static void test_stream_kernel_bits(void **state) {
    (void)state;
    skip();
}
#define test_next_slice_order test_stream_kernel_bits
#define test_short_blocks_bits test_stream_kernel_bits
#define test_many_row_blocks_bits test_stream_kernel_bits
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_kernel_bits),
        cmocka_unit_test(test_next_slice_order),
        cmocka_unit_test(test_short_blocks_bits),
        cmocka_unit_test(test_many_row_blocks_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
