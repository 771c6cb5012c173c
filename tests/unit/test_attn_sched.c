/* test_attn_sched.c -- the avx512 float32 attention's scheduled score tile
 * (common/fa_w3_20.h: a tile's exponentials run in the next tile's product
 * loop, in inline assembly), as the avx512 plugin compiles it:
 *  - its exponential (FA_SCH_EXP) bit for bit vf_exp2_f32 of x c2 - m2,
 *    over t from -160 to 9 and -inf, NaN, +-0, subnormals;
 *  - a query block's tiles through fa_sch_tile (each pending until the next
 *    tile, the last flushed) bit for bit fa_score_f32_fused tile by tile --
 *    the probabilities, every row's m2, thr, l and factor, and which tiles
 *    go back to the row pass -- over the first key block (every row takes
 *    its reference), later ones, a key that moves some rows' references, a
 *    NaN query row and a NaN key (deferred tiles sent back), +inf dots, and
 *    d 64, 128, 33, 16, 7 and 1 (all, some or none of the exponentials in
 *    the loop);
 *  - fa_attention_run with a NaN query row (its tile sent back by the first
 *    key block, its row poisoned there): that row NaN, every other row the
 *    bits it gets without it; with a NaN key in the third key block (the
 *    deferred tiles sent back after the next tile or the flush): that
 *    head's rows NaN, the other head's the bits they get without it.
 * Compiled with the avx512 kernels' flags; on a CPU without AVX-512F/DQ
 * the tests report themselves skipped. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__x86_64__)
#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

#include "avx512/avx512_gemm_bf16.h"

#include "avx512/avx512_attention_kernels.h"
#endif

#ifdef FA_HAVE_SCHED_F32
static int same_bits(float x, float y) {
    return memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y));
}

static void test_sched_exp_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    _Alignas(64) float s[FA_MR * FA_BC], x[FA_MR * FA_BC], lv[FA_MR * VLEN];
    const float c2s[3] = {1.0f, 0.125f * FA_LOG2E, 0.1803369f};
    long n = 0;
    for (int k = 0; k < 3; k++) {
        for (int64_t start = 0; start < 40000; start += FA_MR * FA_BC) {
            fa_sch_pend p = {.s = s, .lv = lv, .c2 = c2s[k], .r0 = 0, .on = 1};
            for (int e = 0; e < FA_MR * FA_NCV; e++)
                p.negx[e] = k == 0 ? 0.0f : -3.0f + 0.37f * (float)e;
            for (int i = 0; i < FA_MR * FA_BC; i++) {
                /* t = x c2 - m2 from -160 to 9 in steps of ~4e-3 */
                const float t = -160.0f + 169.0f * (float)(start + i) / 40000.0f;
                x[i] = (t - p.negx[i / VLEN]) / c2s[k];
            }
            if (start == 0) {
                const float special[8] = {-INFINITY, NAN,        0.0f,          -0.0f,
                                          0x1p-140f, -0x1p-140f, 8.0f / c2s[k], -150.0f / c2s[k]};
                memcpy(x, special, sizeof special);
            }
            memcpy(s, x, sizeof s);
            fa_sch_exps(&p, 0);
            for (int i = 0; i < FA_MR * FA_BC; i += VLEN) {
                _Alignas(64) float want[VLEN];
                vf_store(want, vf_exp2_f32(vf_fma(vf_load(x + i), vf_set1(p.c2),
                                                  vf_set1(p.negx[i / VLEN]))));
                for (int l = 0; l < VLEN; l++, n++)
                    if (!same_bits(s[i + l], want[l]))
                        fail_msg("c2 %a: x %a: 2^t %a, vf_exp2_f32 %a", (double)c2s[k],
                                 (double)x[i + l], (double)s[i + l], (double)want[l]);
            }
        }
    }
    assert_true(n > 100000);
}

/* a query block's tiles (Q transposed [dk][FA_BR], K^T blocks [dk][FA_BC])
 * through both forms, block after block */
typedef struct sched_state {
    float m2[FA_BR], thr[FA_BR], corr[FA_BR];
    _Alignas(64) float lv[FA_BR * VLEN];
    _Alignas(64) float s[FA_BR * FA_BC];
    int ok[FA_BR / FA_MR]; /* 1 done, -1 sent back */
} sched_state;

static void sched_init(sched_state *S) {
    memset(S, 0, sizeof *S);
    for (int r = 0; r < FA_BR; r++)
        S->m2[r] = S->thr[r] = -INFINITY;
}

/* one key block: the tiles whose rows all have a usable reference, as
 * fa_query_block calls them (others marked 0 and skipped) */
static void sched_block(sched_state *S, int sched, int64_t dk, const float *qp, const float *ktb,
                        float c2) {
    fa_sch_pend pend = {.on = 0, .r0 = 0};
    for (int t = 0; t < FA_BR / FA_MR; t++) {
        const int r0 = t * FA_MR;
        int usable = 1;
        for (int r = r0; r < r0 + FA_MR; r++)
            usable &= S->m2[r] == -INFINITY || fabsf(S->m2[r]) < FA_LAZY_HUGE;
        S->ok[t] = 0;
        if (!usable) continue;
        if (!sched) {
            S->ok[t] = fa_score_f32_fused(dk, qp + r0, ktb, S->s + r0 * FA_BC, S->m2 + r0,
                                          S->thr + r0, S->lv + r0 * VLEN, S->corr + r0, c2);
            continue;
        }
        int prev = 0;
        const int64_t pr0 = pend.r0;
        const int done = fa_sch_tile(dk, qp + r0, ktb, S->s + r0 * FA_BC, S->m2 + r0, S->thr + r0,
                                     S->lv + r0 * VLEN, S->corr + r0, c2, &pend, r0, &prev);
        if (prev) S->ok[pr0 / FA_MR] = prev;
        if (done == 3)
            S->ok[t] = fa_f32_fused_stored(S->s + r0 * FA_BC, S->m2 + r0, S->thr + r0,
                                           S->lv + r0 * VLEN, S->corr + r0, c2);
        else
            S->ok[t] = done == 2 ? 0 : done;
    }
    if (pend.on) {
        const int64_t pr0 = pend.r0;
        S->ok[pr0 / FA_MR] = fa_sch_flush(&pend);
    }
}

/* what a block's tiles left, both forms alike: the rows' state, the tiles
 * sent back, the probabilities of those done */
static void sched_compare(const sched_state *A, const sched_state *B, int64_t dk, int blk) {
    for (int t = 0; t < FA_BR / FA_MR; t++) {
        if (A->ok[t] != B->ok[t])
            fail_msg("d %lld block %d tile %d: fa_score_f32_fused %d, fa_sch_tile %d",
                     (long long)dk, blk, t, A->ok[t], B->ok[t]);
        for (int r = t * FA_MR; r < (t + 1) * FA_MR; r++) {
            int same = same_bits(A->m2[r], B->m2[r]) && same_bits(A->thr[r], B->thr[r]);
            for (int l = 0; l < VLEN; l++)
                same &= same_bits(A->lv[r * VLEN + l], B->lv[r * VLEN + l]);
            if (A->ok[t] == 1) {
                same &= same_bits(A->corr[r], B->corr[r]);
                for (int j = 0; j < FA_BC; j++)
                    same &= same_bits(A->s[r * FA_BC + j], B->s[r * FA_BC + j]);
            }
            if (!same) fail_msg("d %lld block %d row %d: state differs", (long long)dk, blk, r);
        }
    }
}

static void test_sched_tiles_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const int64_t dks[6] = {64, 128, 33, 16, 7, 1};
    enum { NBLK = 7 };
    int sent_back = 0, deferred_back = 0;
    for (int k = 0; k < 6; k++) {
        const int64_t dk = dks[k];
        const float c2 = FA_LOG2E / sqrtf((float)dk);
        float *qp = aligned_alloc(64, (size_t)(dk * FA_BR) * sizeof(float));
        float *kt = aligned_alloc(64, (size_t)(NBLK * dk * FA_BC) * sizeof(float));
        sched_state *A = aligned_alloc(64, sizeof *A), *B = aligned_alloc(64, sizeof *B);
        assert_true(qp && kt && A && B);
        tu_fill_lcg(qp, (size_t)(dk * FA_BR), 11 + (uint64_t)dk, 1.0f);
        tu_fill_lcg(kt, (size_t)(NBLK * dk * FA_BC), 12 + (uint64_t)dk, 1.0f);
        for (int64_t d = 0; d < dk; d++) {
            float *kb = kt + d * FA_BC;
            /* block 2: key 5 large along Q's rows 0-29 (their references
             * move past the slack in a later block than their first) */
            for (int r = 0; r < 30; r++)
                kt[2 * dk * FA_BC + d * FA_BC + 5] += 400.0f * qp[d * FA_BR + r] / (float)dk;
            /* block 4: key 9 NaN (every tile's sums NaN: all sent back,
             * the deferred ones after the next tile or the flush) */
            if (d == dk / 2) kb[4 * dk * FA_BC + 9] = NAN;
            /* block 6: key 3 +inf */
            if (d == 0) kb[6 * dk * FA_BC + 3] = INFINITY;
        }
        /* query row 40 NaN from block 5 on (its tile alone sent back) */
        sched_init(A);
        sched_init(B);
        for (int blk = 0; blk < NBLK; blk++) {
            if (blk == 5) qp[(dk - 1) * FA_BR + 40] = NAN;
            const float *ktb = kt + (int64_t)blk * dk * FA_BC;
            sched_block(A, 0, dk, qp, ktb, c2);
            sched_block(B, 1, dk, qp, ktb, c2);
            sched_compare(A, B, dk, blk);
            for (int t = 0; t < FA_BR / FA_MR; t++) {
                sent_back += B->ok[t] < 0;
                deferred_back += B->ok[t] < 0 && blk == 4;
            }
            /* both rows' states as the row pass would leave them for a
             * tile sent back: untouched here, the same in both */
        }
        free(qp), free(kt), free(A), free(B);
    }
    /* the cases happened: NaN tiles sent back after deferral */
    assert_true(deferred_back >= 6 * (FA_BR / FA_MR));
    assert_true(sent_back > deferred_back);
}

/* Q, K, V, O [B, H, S, d] */
static void node_run(const float *q, const float *k, const float *v, float *o, int64_t S,
                     int64_t d) {
    mha_attn_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.precision = MHA_PRECISION_FLOAT32;
    a.B = 1, a.Hq = a.Hkv = 2, a.Sq = a.Skv = S, a.dk = a.dv = d;
    a.q = q, a.q_sb = 2 * S * d, a.q_sh = S * d, a.q_ss = d;
    a.k = k, a.k_sb = 2 * S * d, a.k_sh = S * d, a.k_ss = d;
    a.v = v, a.v_sb = 2 * S * d, a.v_sh = S * d, a.v_ss = d;
    a.o = o, a.o_sb = 2 * S * d, a.o_sh = S * d, a.o_ss = d;
    a.scale = 1.0f / sqrtf((float)d);
    a.b0 = 0, a.b1 = 1, a.h0 = 0, a.h1 = 2, a.q0 = 0, a.q1 = S;
    a.num_threads = 1;
    const size_t wsz = fa_workspace_size(&a);
    void *w = malloc(wsz);
    assert_non_null(w);
    assert_int_equal(fa_attention_run(&a, w, wsz), KERNEL_OK);
    free(w);
}

static void test_sched_nan_query_row(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const int64_t S = 300, d = 64, n = 2 * S * d;
    float *q = malloc((size_t)n * sizeof(float)), *k = malloc((size_t)n * sizeof(float));
    float *v = malloc((size_t)n * sizeof(float)), *o1 = malloc((size_t)n * sizeof(float));
    float *o2 = malloc((size_t)n * sizeof(float));
    assert_true(q && k && v && o1 && o2);
    tu_fill_lcg(q, (size_t)n, 21, 1.0f);
    tu_fill_lcg(k, (size_t)n, 22, 1.0f);
    tu_fill_lcg(v, (size_t)n, 23, 1.0f);
    node_run(q, k, v, o1, S, d);
    /* row 7 of head 1 (tile 1 of its first query block) */
    const int64_t row = S + 7;
    q[row * d + 3] = NAN;
    node_run(q, k, v, o2, S, d);
    for (int64_t i = 0; i < 2 * S; i++)
        for (int64_t j = 0; j < d; j++) {
            const float x = o2[i * d + j], want = i == row ? NAN : o1[i * d + j];
            if (!same_bits(x, want))
                fail_msg("row %lld col %lld: %a, want %a", (long long)i, (long long)j, (double)x,
                         (double)want);
        }
    /* key 150 of head 1 NaN instead */
    q[row * d + 3] = 1.0f;
    node_run(q, k, v, o1, S, d);
    k[(S + 150) * d + 5] = NAN;
    node_run(q, k, v, o2, S, d);
    for (int64_t i = 0; i < 2 * S * d; i++) {
        const float want = i >= S * d ? NAN : o1[i];
        if (!same_bits(o2[i], want))
            fail_msg("NaN key: O[%lld] %a, want %a", (long long)i, (double)o2[i], (double)want);
    }
    free(q), free(k), free(v), free(o1), free(o2);
}
#else
static void test_sched_exp_bits(void **state) {
    (void)state;
    skip();
}
static void test_sched_tiles_bits(void **state) {
    (void)state;
    skip();
}
static void test_sched_nan_query_row(void **state) {
    (void)state;
    skip();
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sched_exp_bits),
        cmocka_unit_test(test_sched_tiles_bits),
        cmocka_unit_test(test_sched_nan_query_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
