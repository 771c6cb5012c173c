/* test_avx512_vec.c -- the AVX-512 vector layer's math (backends/avx512/
 * avx512_vec.h) on its own, lane by lane:
 *  - vf_exp2, the bfloat16 softmax's 2^t for t <= 0: within its stated
 *    8.6e-5 relative of exp2 in double over every 61st float of [-126, 0]
 *    and every 7th of [-2^-20, -2^-24], exactly 1 at +-0, exactly 0 at -inf and
 *    below -150 (no clamp: VREDUCEPS gives +0 for -inf), NaN kept, and never
 *    above 1;
 *  - vf_exp2_f32, the float32 lazy softmax's 2^t for t <= 8: within 1.1 ulp
 *    of exp2 in double over every 61st float of [-126, 8] (every float:
 *    1.02 ulp at worst, measured once), every float of 2^-24 to 2^-20 and
 *    every 61st below, both signs (near 0), exactly 1 at +-0, exact at
 *    integers, 0 at -inf and below -150, NaN kept;
 *  - vf_exp, the float32 softmax's exp(x) for x <= 0: exactly 1 at 0, within
 *    4 ulp of exp in double on a sweep (the float32 softmax's bits depend on
 *    it: this pins the function).
 *  - gemm_bf16_pack_sliver (avx512_gemm_bf16.h), the bfloat16 GEMM's A
 *    packing transposed in registers: bit for bit the element loop of
 *    common/gemm_bf16.h (rounding, pairing, the zero past an odd k, the
 *    layout [pair][row]) for every kc from 1 to 70 and the models' 768 and
 *    1024, and nothing written past the sliver.
 *  - gemm_ukernel_pf (avx512_gemm.h), the float32 GEMM's full tile with its
 *    prefetch of the next B slice: bit for bit a scalar fmaf chain per
 *    element, for odd and even kc and any count of lines to prefetch; and
 *    gemm_ukernel_pf_pack, the same tile while it packs the next sliver:
 *    the same tile, and the packed sliver gemm_pack_a's bytes, nothing
 *    written past it.
 *  - gemm_ukernel_pf_bias and gemm_ukernel_pf_pack_bias (avx512_gemm.h),
 *    the full tile stored with the bias added: bit for bit the fmaf chain
 *    + bias, nothing outside the 12 x 32 tile written.
 *  - gemm_gelu_erf_span (avx512_gemm.h), the GELU epilogue four vectors at
 *    a time: bit for bit kernel_gelu_erf over a sweep of floats, any span.
 * Compiled with the avx512 kernels' flags; on a CPU without AVX-512F/DQ the
 * tests report themselves skipped. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

#include "avx512/avx512_gemm_bf16.h"
#include "common/bf16.h"

static int cpu_has_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

/* y[i] = f(t[i]) for 16 lanes at a time */
static void apply(vf (*f)(vf), const float *t, float *y, size_t n) {
    for (size_t i = 0; i < n; i += VLEN) {
        float in[VLEN], out[VLEN];
        for (size_t l = 0; l < VLEN; l++)
            in[l] = i + l < n ? t[i + l] : 0.0f;
        vf_store(out, f(vf_load(in)));
        for (size_t l = 0; l < VLEN && i + l < n; l++)
            y[i + l] = out[l];
    }
}

/* the worst |vf_exp2(t) / exp2(t) - 1| over the floats of bits lo, lo +
 * step, ... up to hi (negative floats: larger bits, more negative t) */
static double exp2_worst(uint32_t lo, uint32_t hi, uint32_t step, float *at) {
    enum { N = 4096 };
    float t[N], y[N];
    double worst = 0.0;
    uint64_t b = lo;
    while (b <= hi) {
        size_t n = 0;
        for (; n < N && b <= hi; n++, b += step)
            memcpy(&t[n], &(uint32_t){(uint32_t)b}, sizeof(float));
        apply(vf_exp2, t, y, n);
        for (size_t i = 0; i < n; i++) {
            if (y[i] > 1.0f) fail_msg("vf_exp2(%.9g) = %.9g is above 1", t[i], y[i]);
            const double e = fabs((double)y[i] / exp2((double)t[i]) - 1.0);
            if (e > worst) {
                worst = e;
                *at = t[i];
            }
        }
    }
    return worst;
}

static void test_exp2_bound(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    float at = 0.0f;
    /* negative floats: bits 0x80000000 (-0) up to -126 (0xc2fc0000) */
    double w = exp2_worst(0x80000000u, 0xc2fc0000u, 61, &at);
    print_message("vf_exp2: worst relative error %.3g at %.9g\n", w, (double)at);
    assert_true(w <= 8.6e-5);
    /* just below 0, -2^-24 to -2^-20, where t - floor(t) rounds up to 1 */
    w = exp2_worst(0xb3800000u, 0xb5800000u, 7, &at);
    assert_true(w <= 8.6e-5);
}

/* the worst |vf_exp2_f32(t) - exp2(t)| in ulp of exp2(t) (2^(e - 24) for
 * exp2(t) in [2^(e-1), 2^e)) over the floats of bits lo, lo + step, ... up
 * to hi */
static double exp2_f32_worst_ulp(uint32_t lo, uint32_t hi, uint32_t step, float *at) {
    enum { N = 4096 };
    float t[N], y[N];
    double worst = 0.0;
    uint64_t b = lo;
    while (b <= hi) {
        size_t n = 0;
        for (; n < N && b <= hi; n++, b += step)
            memcpy(&t[n], &(uint32_t){(uint32_t)b}, sizeof(float));
        apply(vf_exp2_f32, t, y, n);
        for (size_t i = 0; i < n; i++) {
            const double want = exp2((double)t[i]);
            int e;
            frexp(want, &e);
            const double u = fabs((double)y[i] - want) / ldexp(1.0, e - 24);
            if (!(u <= worst)) {
                worst = u;
                *at = t[i];
            }
        }
    }
    return worst;
}

static void test_exp2_f32_bound(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    float at = 0.0f;
    double w = exp2_f32_worst_ulp(0x80000000u, 0xc2fc0000u, 61, &at); /* -0 to -126 */
    print_message("vf_exp2_f32: worst %.3g ulp at %.9g on [-126, 0]\n", w, (double)at);
    assert_true(w <= 1.1);
    w = exp2_f32_worst_ulp(0x00000000u, 0x41000000u, 61, &at); /* 0 to 8 */
    print_message("vf_exp2_f32: worst %.3g ulp at %.9g on [0, 8]\n", w, (double)at);
    assert_true(w <= 1.1);
    /* every float of size 2^-24 to 2^-20, both signs (the table's index
     * and the reduction at the boundary of a 1/16 step; 2^25 floats a
     * sign), and every 61st below 2^-24, where 2^t rounds to 1 or its
     * neighbour below (every float there was 1.7e9 evaluations: 20 s of
     * CI's release pass and 27 s of its ASan pass) */
    assert_true(exp2_f32_worst_ulp(0xb3800000u, 0xb5800000u, 1, &at) <= 1.1);
    assert_true(exp2_f32_worst_ulp(0x33800000u, 0x35800000u, 1, &at) <= 1.1);
    assert_true(exp2_f32_worst_ulp(0x80000000u, 0xb3800000u, 61, &at) <= 1.1);
    assert_true(exp2_f32_worst_ulp(0x00000000u, 0x33800000u, 61, &at) <= 1.1);
    const float t[10] = {0.0f,     -0.0f, -INFINITY, -150.0f, -1e30f,
                         -FLT_MAX, NAN,   -1.0f,     8.0f,    -3.0f};
    float y[10];
    apply(vf_exp2_f32, t, y, 10);
    assert_true(y[0] == 1.0f && y[1] == 1.0f);
    for (int i = 2; i < 6; i++)
        assert_true(y[i] == 0.0f);
    assert_true(isnan(y[6]));
    assert_true(y[7] == 0.5f && y[8] == 256.0f && y[9] == 0.125f);
}

static void test_exp2_special_values(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    const float t[8] = {0.0f, -0.0f, -INFINITY, -150.0f, -1e30f, -FLT_MAX, NAN, -1.0f};
    float y[8];
    apply(vf_exp2, t, y, 8);
    assert_true(y[0] == 1.0f && y[1] == 1.0f);
    for (int i = 2; i < 6; i++)
        assert_true(y[i] == 0.0f);
    assert_true(isnan(y[6]));
    assert_true(y[7] == 0.5f); /* an integer t: the constant 1 times 2^t */
}

static void test_exp_pinned(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    enum { N = 4096 };
    float t[N], y[N];
    for (int i = 0; i < N; i++)
        t[i] = -87.0f * (float)i / (float)N;
    apply(vf_exp, t, y, N);
    assert_true(y[0] == 1.0f);
    for (int i = 1; i < N; i++) {
        const double want = exp((double)t[i]);
        assert_true(fabs((double)y[i] - want) <= 4.0 * want * FLT_EPSILON);
    }
}

static void test_bf16_pack_sliver(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    enum { KMAX = 1024, LDA = KMAX + 3, PAIRS = KMAX / 2 };
    /* + 4: the slivers start kc % 5 floats in, so the last row of a
     * kc = KMAX sliver ends up to 4 floats past GEMM_MR * LDA */
    static float A[GEMM_MR * LDA + 4];
    static uint32_t got[(PAIRS + 1) * GEMM_MR], want[PAIRS * GEMM_MR];
    /* every rounding case among pseudo-random bits: ties, NaN, inf,
     * subnormals, and values that carry into the exponent */
    static const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x7fc00001u, 0xff800001u,
                                       0x7f800000u, 0x00000001u, 0x807fffffu, 0x7f7fffffu,
                                       0x3fffffffu, 0x80000000u};
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof A / sizeof A[0]; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        uint32_t b = (uint32_t)(s >> 32);
        if (i % 7 == 3) b = special[(s >> 20) % (sizeof special / sizeof special[0])];
        memcpy(&A[i], &b, sizeof b);
    }
    for (int64_t kc = 1; kc <= KMAX; kc = kc < 70 ? kc + 1 : kc < 768 ? 768 : 2 * kc - 512) {
        const int64_t kp = (kc + 1) / 2;
        for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
            got[i] = 0xdeadbeefu;
        gemm_bf16_pack_sliver(A + kc % 5, LDA, kc, got);
        for (int64_t j = 0; j < kp; j++)
            for (int r = 0; r < GEMM_MR; r++) {
                const float *row = A + kc % 5 + r * LDA;
                const uint16_t lo = bf16_from_float(row[2 * j]);
                const uint16_t hi = 2 * j + 1 < kc ? bf16_from_float(row[2 * j + 1]) : 0;
                want[j * GEMM_MR + r] = (uint32_t)lo | (uint32_t)hi << 16;
            }
        if (memcmp(got, want, (size_t)(kp * GEMM_MR) * sizeof got[0]) != 0)
            fail_msg("kc %lld: the packed sliver differs from the element loop", (long long)kc);
        for (int64_t i = kp * GEMM_MR; i < (PAIRS + 1) * GEMM_MR; i++)
            if (got[i] != 0xdeadbeefu)
                fail_msg("kc %lld: written past the sliver at %lld", (long long)kc, (long long)i);
    }
}

/* gemm_ukernel_pf (avx512_gemm.h), the full 12 x 32 tile of a packed A
 * sliver, prefetching while it runs (two k-steps a turn, one more for an
 * odd kc): every element the one FMA chain over k ascending, from 0 or from
 * C, of a scalar fmaf loop, bit for bit, for kc 1 to 70 and around the 768
 * of a k-block, any count of lines to prefetch (none, fewer than the
 * turns, more), and nothing written outside the tile's 12 x 32 of a wider
 * C. gemm_ukernel_pf_pack the same, and the next sliver it packs from 12
 * rows of A (lda not a multiple of 8: every column offset mod 8) gemm_pack_a's
 * bytes, nothing past them written. */
static void test_gemm_ukernel_pf(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    enum { KMAX = 769, LDC = 40, LDA = KMAX + 8 };
    static float ap[KMAX * GEMM_MR], bp[KMAX * GEMM_NR], c[GEMM_MR * LDC], want[GEMM_MR * LDC];
    static float A[GEMM_MR * LDA], packed[(KMAX + 1) * GEMM_MR], ref[(KMAX + 1) * GEMM_MR];
    static char lines[64 * 512];
    uint64_t s = 777;
    for (int i = 0; i < KMAX * GEMM_MR; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        ap[i] = (float)((int32_t)(s >> 32)) * 0x1p-31f;
    }
    for (int i = 0; i < GEMM_MR * LDA; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        A[i] = (float)((int32_t)(s >> 32)) * 0x1p-30f;
    }
    for (int i = 0; i < KMAX * GEMM_NR; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        bp[i] = (float)((int32_t)(s >> 32)) * 0x1p-33f;
    }
    static const int64_t npfs[] = {0, 1, 5, 512};
    for (int64_t kc = 1; kc <= KMAX; kc = kc < 70 ? kc + 1 : kc < 767 ? 767 : kc + 1)
        for (int accumulate = 0; accumulate < 2; accumulate++)
            for (size_t q = 0; q < sizeof npfs / sizeof npfs[0]; q++) {
                for (int i = 0; i < GEMM_MR * LDC; i++)
                    c[i] = i % LDC < GEMM_NR ? 0.25f * (float)(i % 13) - 1.0f : 7.0f;
                for (int r = 0; r < GEMM_MR; r++)
                    for (int n = 0; n < LDC; n++) {
                        float x = c[r * LDC + n];
                        if (n < GEMM_NR) {
                            x = accumulate ? x : 0.0f;
                            for (int64_t k = 0; k < kc; k++)
                                x = fmaf(ap[k * GEMM_MR + r], bp[k * GEMM_NR + n], x);
                        }
                        want[r * LDC + n] = x;
                    }
                float init[GEMM_MR * LDC];
                memcpy(init, c, sizeof c);
                gemm_ukernel_pf(kc, ap, bp, c, LDC, accumulate, lines, npfs[q]);
                if (memcmp(c, want, sizeof c) != 0)
                    fail_msg("kc %lld, accumulate %d, %lld lines: the tile differs from the "
                             "fmaf chain",
                             (long long)kc, accumulate, (long long)npfs[q]);
                /* the same tile while packing the next sliver, at A's
                 * column offset kc % 8 (an unaligned start) */
                const float *a0 = A + kc % 8;
                memcpy(c, init, sizeof c);
                memset(packed, 0xa5, sizeof packed);
                memset(ref, 0xa5, sizeof ref);
                gemm_pack_a(a0, LDA, kc, ref);
                gemm_ukernel_pf_pack(kc, ap, bp, c, LDC, accumulate, lines, npfs[q], a0, LDA,
                                     packed);
                if (memcmp(c, want, sizeof c) != 0)
                    fail_msg("kc %lld, accumulate %d, %lld lines: the packing tile differs "
                             "from the fmaf chain",
                             (long long)kc, accumulate, (long long)npfs[q]);
                for (int64_t i = 0; i < kc * GEMM_MR; i++)
                    if (packed[i] != a0[(i % GEMM_MR) * LDA + i / GEMM_MR])
                        fail_msg("kc %lld: packed[%lld] is not A[%lld, %lld]", (long long)kc,
                                 (long long)i, (long long)(i % GEMM_MR), (long long)(i / GEMM_MR));
                if (memcmp(packed, ref, sizeof packed) != 0)
                    fail_msg("kc %lld: the sliver packed in the kernel is not gemm_pack_a's "
                             "bytes (or written past its end)",
                             (long long)kc);
            }
}

/* gemm_ukernel_pf_bias / gemm_ukernel_pf_pack_bias (avx512_gemm.h): the
 * full tile of the last k-block stored with the bias added, from 0 or from
 * C, kc around a k-block: each element the fmaf chain + bias, bit for bit;
 * the rest of a wider C untouched; the packing kernel's sliver still
 * gemm_pack_a's bytes; with no bias (NULL) the plain tile. */
static void test_gemm_ukernel_bias(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    enum { KMAX = 769, LDC = 40, LDA = KMAX + 8 };
    static float ap[KMAX * GEMM_MR], bp[KMAX * GEMM_NR], c[GEMM_MR * LDC], want[GEMM_MR * LDC];
    static float bias[GEMM_NR], init[GEMM_MR * LDC];
    static float A[GEMM_MR * LDA], packed[KMAX * GEMM_MR], ref[KMAX * GEMM_MR];
    static char lines[64 * 64];
    uint64_t s = 4242;
    for (int i = 0; i < KMAX * GEMM_MR; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        ap[i] = (float)((int32_t)(s >> 32)) * 0x1p-31f;
    }
    for (int i = 0; i < KMAX * GEMM_NR; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        bp[i] = (float)((int32_t)(s >> 32)) * 0x1p-33f;
    }
    for (int i = 0; i < GEMM_MR * LDA; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        A[i] = (float)((int32_t)(s >> 32)) * 0x1p-30f;
    }
    for (int i = 0; i < GEMM_NR; i++)
        bias[i] = 0.375f * (float)(i % 9) - 1.5f + 0x1p-20f * (float)i;
    static const int64_t kcs[] = {1, 2, 7, 8, 9, 64, 767, 768, 769};
    for (size_t ki = 0; ki < sizeof kcs / sizeof kcs[0]; ki++)
        for (int with_bias = 0; with_bias < 2; with_bias++)
            for (int accumulate = 0; accumulate < 2; accumulate++)
                for (int pack = 0; pack < 2; pack++) {
                    const int64_t kc = kcs[ki];
                    for (int i = 0; i < GEMM_MR * LDC; i++)
                        init[i] = i % LDC < GEMM_NR ? 0.25f * (float)(i % 13) - 1.0f : 7.0f;
                    for (int r = 0; r < GEMM_MR; r++)
                        for (int n = 0; n < LDC; n++) {
                            float x = init[r * LDC + n];
                            if (n < GEMM_NR) {
                                x = accumulate ? x : 0.0f;
                                for (int64_t k = 0; k < kc; k++)
                                    x = fmaf(ap[k * GEMM_MR + r], bp[k * GEMM_NR + n], x);
                                if (with_bias) x = x + bias[n];
                            }
                            want[r * LDC + n] = x;
                        }
                    memcpy(c, init, sizeof c);
                    if (pack) {
                        memset(packed, 0xa5, sizeof packed);
                        memset(ref, 0xa5, sizeof ref);
                        gemm_pack_a(A, LDA, kc, ref);
                        gemm_ukernel_pf_pack_bias(kc, ap, bp, c, LDC, accumulate, lines, 3, A, LDA,
                                                  packed, with_bias ? bias : NULL);
                        if (memcmp(packed, ref, sizeof packed) != 0)
                            fail_msg("kc %lld: the sliver packed is not gemm_pack_a's bytes",
                                     (long long)kc);
                    } else {
                        gemm_ukernel_pf_bias(kc, ap, bp, c, LDC, accumulate, lines, 3,
                                             with_bias ? bias : NULL);
                    }
                    for (int i = 0; i < GEMM_MR * LDC; i++)
                        if (memcmp(&c[i], &want[i], sizeof want[i]) != 0)
                            fail_msg("kc %lld, bias %d, accumulate %d, packing %d: C[%d, %d] = "
                                     "%a, want %a",
                                     (long long)kc, with_bias, accumulate, pack, i / LDC, i % LDC,
                                     (double)c[i], (double)want[i]);
                }
}

/* gemm_gelu_erf_span (avx512_gemm.h), the GELU epilogue's span: bit for bit
 * kernel_gelu_erf element by element, over every 4099th float (both signs:
 * each polynomial's range, the switch to 1, denormals, infinities, NaNs),
 * the break points and their neighbours, and spans of every length from 0
 * to 200 at every start offset mod 16 (the vector groups and the tail);
 * nothing outside [n0, n1) written. */
static void test_gelu_erf_span(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
    assert_non_null(x);
    assert_non_null(got);
    int n = 0;
    for (uint64_t bits = 0; bits <= 0xffffffffu && n < N - 64; bits += 4099) {
        const uint32_t b = (uint32_t)bits;
        memcpy(&x[n++], &b, sizeof b);
    }
    static const float edges[] = {1.0f, KERNEL_ERF_ONE_FROM, KERNEL_ERF_E_CENTRE, 0.0f, FLT_MIN};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (int sign = -1; sign <= 1; sign += 2) {
            /* |x / sqrt 2| at the edge: x near edge * sqrt 2 */
            const float at = (float)sign * edges[e] * 1.41421356f;
            x[n++] = at, x[n++] = nextafterf(at, 0.0f), x[n++] = nextafterf(at, 10.0f * at);
        }
    x[n++] = INFINITY, x[n++] = -INFINITY, x[n++] = NAN, x[n++] = -0.0f;
    memcpy(got, x, (size_t)n * sizeof(float));
    gemm_gelu_erf_span(got, 0, n);
    for (int i = 0; i < n; i++) {
        const float want = kernel_gelu_erf(x[i]);
        if (memcmp(&got[i], &want, sizeof want) != 0)
            fail_msg("x %a: %a, kernel_gelu_erf %a", (double)x[i], (double)got[i], (double)want);
    }
    for (int off = 0; off < 16; off++)
        for (int len = 0; len <= 200; len++) {
            memcpy(got, x + 1000, 256 * sizeof(float));
            gemm_gelu_erf_span(got, off, off + len);
            for (int i = 0; i < 256; i++) {
                const float want =
                    i >= off && i < off + len ? kernel_gelu_erf(x[1000 + i]) : x[1000 + i];
                if (memcmp(&got[i], &want, sizeof want) != 0)
                    fail_msg("span [%d, %d): element %d is %a, want %a", off, off + len, i,
                             (double)got[i], (double)want);
            }
        }
    free(x), free(got);
}

#else
/* not built with the AVX-512 flags (not x86-64): nothing to run */
static int cpu_has_avx512(void) {
    return 0;
}
static void test_exp2_bound(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
}
#define test_exp2_special_values test_exp2_bound
#define test_exp2_f32_bound test_exp2_bound
#define test_exp_pinned test_exp2_bound
#define test_bf16_pack_sliver test_exp2_bound
#define test_gemm_ukernel_pf test_exp2_bound
#define test_gemm_ukernel_bias test_exp2_bound
#define test_gelu_erf_span test_exp2_bound
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp2_bound),        cmocka_unit_test(test_exp2_special_values),
        cmocka_unit_test(test_exp2_f32_bound),    cmocka_unit_test(test_exp_pinned),
        cmocka_unit_test(test_bf16_pack_sliver),  cmocka_unit_test(test_gemm_ukernel_pf),
        cmocka_unit_test(test_gemm_ukernel_bias), cmocka_unit_test(test_gelu_erf_span),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
