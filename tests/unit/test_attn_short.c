/* test_attn_short.c -- the avx512 float32 attention's path for short heads
 * (common/flash_attention.h: fa_short_head; rows that all see the same at
 * most 256 keys, no mask, the lazy form: every score block of a tile of 6
 * rows, then one P.V over every key with the accumulators in registers and
 * the rows normalised into O), as the avx512 plugin compiles it:
 *  - fa_attention_run on such heads bit for bit the block path
 *    (fa_query_block over blocks of FA_BR rows: every head before it), Q,
 *    K, V read in place from one fused projection [B, S, 3, H, d] and O
 *    written [B, S, H, d], for S 128 with d 64 and 32 (BERT's, MiniLM's),
 *    197 (ViT's: a last key block of 5), 256, 250 query rows (the last
 *    tile overlaps the one before), cross attention (Sq != Skv), d 17 and
 *    dv 40 (V copied, O's last vector partial), GQA, key lengths, and query
 *    ranges that start and end inside a head; nothing written outside the
 *    range; the path taken (the Q block's workspace, which it never
 *    writes, left as it was);
 *  - tiles it gives back to fa_query_block -- a query row of NaN, one of
 *    +inf, a key whose dots pass FA_LAZY_HUGE (a huge reference) -- the
 *    same bits as there (NaN rows included);
 *  - causal heads (GPT-2's S 256, 250 and 100 rows, a past, key lengths,
 *    rows 0-6 where row 0 sees 1 key) and heads under masks the lazy form
 *    takes (a key padding row of -inf / finfo.min or BERT's -10000, a bias
 *    per row, a causal mask folded in, a tile's rows in both modes)
 *    through fa_short_rows_tile, bit for bit the
 *    block path with every tile taken; a NaN in V past a causal row's end
 *    or a key length never reaching the row, one at a hidden key as in the
 *    block path; a NaN mask term and rows that see no key left to it;
 *  - fa_short_ok false for a key padding row shared by causal rows, more
 *    than 256 keys, fewer than 6 rows, bfloat16, softcap; true for a mask
 *    and for causal rows.
 * Compiled with the avx512 kernels' flags; on a CPU without AVX-512F/DQ
 * the tests report themselves skipped. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include "avx512/avx512_kernels.h"
#include "avx512/avx512_vec.h"

#include "avx512/avx512_gemm.h"

#include "avx512/avx512_gemm_bf16.h"

#include "avx512/avx512_attention_kernels.h"

/* masks of the cases (short_make) */
enum {
    SM_NONE,
    SM_PAD_HIDE, /* [B, 1, 1, Skv]: 0, then the last 5 b + 3 keys hidden (-inf,
                    the host's finfo.min fill on odd items): the lazy form's mode 1 */
    SM_PAD_BERT, /* [B, 1, 1, Skv]: 0, then -10000 on the last 5 b + 3 keys (BERT's
                    extended mask): mode 2, logit units */
    SM_ROWS,     /* [B, Sq, Skv]: a bias in [-3, 0) per row, 1 key in 16 -inf: mode 2 */
    SM_FOLDED,   /* [B, Sq, Skv]: 0 on keys j <= i, -inf after (a causal mask
                    folded into the mask) and on the last 3 b keys: mode 1 */
    SM_MIXED,    /* [B, Sq, Skv]: SM_FOLDED's rows on even i, SM_ROWS's on odd
                    i: a tile's rows in both modes */
    SM_NAN       /* SM_PAD_BERT with a NaN term on key 2: the exact row pass */
};

typedef struct short_case {
    int64_t B, Hq, Hkv, Sq, Skv, dk, dv;
    int64_t q0, q1; /* the call's query range (q1 0: Sq) */
    int kv_len;     /* per-item key lengths Skv, Skv - 3, ... */
    int causal;     /* 1: causal; 2: causal with offsets Skv - Sq - 7 b (a past) */
    int mask;       /* SM_* */
} short_case;

typedef struct short_data {
    mha_attn_args a;
    float *q, *kv, *o, *mask;
    int64_t kvl[8], offs[8];
    size_t n_o;
} short_data;

/* Q [B, Sq, Hq, dk]; K and V side by side [B, Skv, 2, Hkv, d] */
static void short_make(const short_case *c, short_data *D, uint64_t seed) {
    memset(D, 0, sizeof *D);
    mha_attn_args *a = &D->a;
    const int64_t lq = c->Hq * c->dk, lkv = c->Hkv * (c->dk + c->dv);
    D->q = malloc((size_t)(c->B * c->Sq * lq) * sizeof(float));
    D->kv = malloc((size_t)(c->B * c->Skv * lkv) * sizeof(float));
    D->n_o = (size_t)(c->B * c->Sq * c->Hq * c->dv);
    D->o = malloc(D->n_o * sizeof(float));
    tu_fill_lcg(D->q, (size_t)(c->B * c->Sq * lq), seed, 1.0f);
    tu_fill_lcg(D->kv, (size_t)(c->B * c->Skv * lkv), seed + 1, 1.0f);
    a->struct_size = sizeof *a;
    a->precision = MHA_PRECISION_FLOAT32;
    a->B = c->B, a->Hq = c->Hq, a->Hkv = c->Hkv, a->Sq = c->Sq, a->Skv = c->Skv;
    a->dk = c->dk, a->dv = c->dv;
    a->q = D->q, a->q_sb = c->Sq * lq, a->q_sh = c->dk, a->q_ss = lq;
    a->k = D->kv, a->k_sb = c->Skv * lkv, a->k_sh = c->dk, a->k_ss = lkv;
    a->v = D->kv + c->Hkv * c->dk, a->v_sb = c->Skv * lkv, a->v_sh = c->dv, a->v_ss = lkv;
    a->o = D->o, a->o_sb = c->Sq * c->Hq * c->dv, a->o_sh = c->dv, a->o_ss = c->Hq * c->dv;
    a->scale = 1.0f / sqrtf((float)c->dk);
    if (c->kv_len) {
        for (int64_t b = 0; b < c->B; b++)
            D->kvl[b] = c->Skv - 3 * b;
        a->kv_len = D->kvl;
    }
    a->causal = c->causal != 0;
    if (c->causal == 2) {
        for (int64_t b = 0; b < c->B; b++)
            D->offs[b] = c->Skv - c->Sq - 7 * b;
        a->causal_offset = D->offs;
    }
    if (c->mask != SM_NONE) {
        const int rows = c->mask >= SM_ROWS && c->mask <= SM_MIXED;
        const int64_t sq = rows ? c->Sq : 1;
        D->mask = malloc((size_t)(c->B * sq * c->Skv) * sizeof(float));
        tu_fill_lcg(D->mask, (size_t)(c->B * sq * c->Skv), seed + 2, 1.5f);
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t i = 0; i < sq; i++)
                for (int64_t j = 0; j < c->Skv; j++) {
                    float *m = &D->mask[(b * sq + i) * c->Skv + j];
                    const int pad = j >= c->Skv - 5 * b - 3, folded = j > i || j >= c->Skv - 3 * b;
                    const int bias = c->mask == SM_ROWS || (c->mask == SM_MIXED && (i & 1));
                    if (c->mask == SM_PAD_HIDE)
                        *m = !pad ? 0.0f : b & 1 ? nextafterf(-FLT_MAX, 0.0f) : -INFINITY;
                    else if (c->mask == SM_PAD_BERT || c->mask == SM_NAN)
                        *m = !pad ? 0.0f : -10000.0f;
                    else if (bias)
                        *m = j % 16 == 5 ? -INFINITY : *m - 1.5f;
                    else
                        *m = folded ? -INFINITY : 0.0f;
                }
        if (c->mask == SM_NAN) D->mask[2] = NAN;
        a->mask = D->mask, a->m_sb = sq * c->Skv, a->m_sh = 0, a->m_sq = rows ? c->Skv : 0;
        a->m_sk = 1;
    }
    a->b0 = 0, a->b1 = c->B, a->h0 = 0, a->h1 = c->Hq;
    a->q0 = c->q0, a->q1 = c->q1 ? c->q1 : c->Sq;
    a->num_threads = 1;
}

static void short_free(short_data *D) {
    free(D->q), free(D->kv), free(D->o), free(D->mask);
}

static float *ws_align(void *w) {
    return (float *)(((uintptr_t)w + 63) & ~(uintptr_t)63);
}

/* fa_attention_run without the short path: K (and V) packed per kv head,
 * then fa_query_block over blocks of FA_BR rows */
static void block_path(const mha_attn_args *a, void *w) {
    fa_layout L;
    assert_true(fa_plan(a, &L));
    float *ws = ws_align(w);
    const int64_t group = a->Hq / a->Hkv;
    const int v_in_place = L.dvp == a->dv;
    for (int64_t b = a->b0; b < a->b1; b++) {
        const int64_t nkeys = kernel_row_key_end(a, b, a->q1 - 1);
        for (int64_t h = a->h0; h < a->h1; h++) {
            const int64_t g = h / group;
            const float *vb = a->v + b * a->v_sb + g * a->v_sh;
            fa_pack_kv(a, &L, a->k + b * a->k_sb + g * a->k_sh, vb, nkeys, ws + L.kt,
                       v_in_place ? NULL : ws + L.vp);
            const float *vp = v_in_place ? vb : ws + L.vp;
            const int64_t vs = v_in_place ? a->v_ss : L.dvp;
            for (int64_t i0 = a->q0; i0 < a->q1; i0 += FA_BR) {
                const int64_t br = a->q1 - i0 < FA_BR ? a->q1 - i0 : FA_BR;
                fa_query_block(a, &L, ws, vp, vs, b, h, i0, br);
            }
        }
    }
}

/* O of the call through fa_attention_run (short: 1) or the block path,
 * O filled with 7 first; returns whether the Q block's workspace kept its
 * fill (fa_short_head never writes it) */
static int run(short_data *D, int short_path) {
    const size_t wsz = fa_workspace_size(&D->a);
    assert_true(wsz != SIZE_MAX);
    void *w = malloc(wsz);
    assert_non_null(w);
    memset(w, 0x7f, wsz);
    for (size_t i = 0; i < D->n_o; i++)
        D->o[i] = 7.0f;
    if (short_path)
        assert_int_equal(fa_attention_run(&D->a, w, wsz), KERNEL_OK);
    else
        block_path(&D->a, w);
    fa_layout L = {0};
    assert_true(fa_plan(&D->a, &L));
    const unsigned char *qp = (const unsigned char *)(ws_align(w) + L.qp);
    int kept = 1;
    for (size_t i = 0; i < (size_t)(D->a.dk * FA_BR) * sizeof(float); i++)
        kept &= qp[i] == 0x7f;
    free(w);
    return kept;
}

/* fa_attention_run bit for bit the block path on case c (edit: changes to
 * the inputs first, or NULL); taken: whether the short path must have done
 * every tile (the Q block's workspace untouched) */
static void check_case(const short_case *c, void (*edit)(short_data *), int taken, uint64_t seed) {
    short_data D;
    short_make(c, &D, seed);
    if (edit) edit(&D);
    float *want = malloc(D.n_o * sizeof(float));
    assert_non_null(want);
    (void)run(&D, 0);
    memcpy(want, D.o, D.n_o * sizeof(float));
    const int kept = run(&D, 1);
    if (memcmp(want, D.o, D.n_o * sizeof(float)) != 0) {
        for (size_t i = 0; i < D.n_o; i++)
            if (memcmp(&want[i], &D.o[i], sizeof(float)) != 0)
                fail_msg("B %lld Hq %lld Sq %lld Skv %lld dk %lld dv %lld q [%lld, %lld) causal "
                         "%d mask %d: O[%zu] %a, the block path %a",
                         (long long)c->B, (long long)c->Hq, (long long)c->Sq, (long long)c->Skv,
                         (long long)c->dk, (long long)c->dv, (long long)D.a.q0, (long long)D.a.q1,
                         c->causal, c->mask, i, (double)D.o[i], (double)want[i]);
    }
    if (taken && !kept)
        fail_msg("Sq %lld Skv %lld dk %lld causal %d mask %d: the short path was not taken",
                 (long long)c->Sq, (long long)c->Skv, (long long)c->dk, c->causal, c->mask);
    free(want);
    short_free(&D);
}

static void test_short_heads_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const short_case cs[] = {
        {2, 3, 3, 128, 128, 64, 64, 0, 0, 0, 0, SM_NONE},  /* BERT-base */
        {2, 3, 3, 128, 128, 32, 32, 0, 0, 0, 0, SM_NONE},  /* MiniLM */
        {1, 2, 2, 197, 197, 64, 64, 0, 0, 0, 0, SM_NONE},  /* ViT-B/16: 5 keys in the last block */
        {1, 2, 2, 256, 256, 64, 64, 0, 0, 0, 0, SM_NONE},  /* W4 */
        {1, 2, 2, 250, 250, 64, 64, 0, 0, 0, 0, SM_NONE},  /* the last tile overlaps */
        {1, 2, 2, 40, 100, 64, 64, 0, 0, 0, 0, SM_NONE},   /* cross */
        {1, 2, 2, 30, 70, 17, 17, 0, 0, 0, 0, SM_NONE},    /* V copied, O partial */
        {1, 2, 2, 30, 90, 24, 40, 0, 0, 0, 0, SM_NONE},    /* dk != dv */
        {1, 4, 2, 50, 130, 64, 64, 0, 0, 0, 0, SM_NONE},   /* GQA */
        {3, 2, 2, 60, 150, 32, 32, 0, 0, 1, 0, SM_NONE},   /* key lengths 150, 147, 144 */
        {1, 2, 2, 128, 128, 64, 64, 5, 83, 0, 0, SM_NONE}, /* a range inside the head */
        {1, 2, 2, 197, 197, 64, 64, 190, 197, 0, 0, SM_NONE},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        check_case(&cs[i], NULL, 1, 100 + i);
}

/* Causal heads (GPT-2's: row i sees keys [0, i + 1), a tile's rows up to
 * 6 keys apart, the blocks past its last row's keys skipped) and heads
 * under masks the lazy form takes, bit for bit the block path, the short
 * path taking every tile */
static void test_short_heads_causal_masked_bits(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const short_case cs[] = {
        {1, 2, 2, 256, 256, 64, 64, 0, 0, 0, 1, SM_NONE},     /* GPT-2 */
        {1, 2, 2, 250, 250, 64, 64, 0, 0, 0, 1, SM_NONE},     /* 6 does not divide the rows */
        {1, 2, 2, 100, 100, 64, 64, 0, 0, 0, 1, SM_NONE},     /* keys not whole vectors */
        {1, 2, 2, 61, 61, 32, 32, 0, 0, 0, 1, SM_NONE},       /* one short block */
        {1, 2, 2, 70, 70, 17, 17, 0, 0, 0, 1, SM_NONE},       /* V copied, O partial */
        {1, 4, 2, 128, 128, 64, 64, 0, 0, 0, 1, SM_NONE},     /* GQA */
        {3, 2, 2, 40, 200, 32, 32, 0, 0, 0, 2, SM_NONE},      /* a past of 160, 153, 146 */
        {3, 2, 2, 90, 90, 32, 32, 0, 0, 1, 1, SM_NONE},       /* key lengths 90, 87, 84 */
        {1, 2, 2, 256, 256, 64, 64, 61, 197, 0, 1, SM_NONE},  /* a range inside the head */
        {1, 2, 2, 256, 256, 64, 64, 0, 7, 0, 1, SM_NONE},     /* rows 0-6: row 0 sees 1 key */
        {3, 3, 3, 128, 128, 64, 64, 0, 0, 0, 0, SM_PAD_HIDE}, /* padding hidden */
        {3, 3, 3, 128, 128, 64, 64, 0, 0, 0, 0, SM_PAD_BERT}, /* BERT's -10000 */
        {3, 2, 2, 197, 197, 64, 64, 0, 0, 0, 0, SM_PAD_BERT},
        {3, 2, 2, 40, 150, 32, 32, 0, 0, 1, 0, SM_PAD_HIDE}, /* with key lengths */
        {2, 2, 2, 130, 130, 64, 64, 0, 0, 0, 0, SM_ROWS},    /* a bias per row */
        {2, 2, 2, 130, 130, 64, 64, 0, 0, 0, 1, SM_ROWS},    /* ... and causal */
        {2, 2, 2, 200, 200, 32, 32, 0, 0, 0, 0, SM_FOLDED},  /* causal folded in */
        {2, 2, 2, 100, 100, 64, 64, 0, 0, 0, 0, SM_MIXED},   /* modes 1 and 2 in a tile */
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        check_case(&cs[i], NULL, 1, 200 + i);
}

/* V of key 100 NaN (every item and kv head) */
static void edit_nan_v(short_data *D) {
    const mha_attn_args *a = &D->a;
    float *v = D->kv + (a->v - D->kv);
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t g = 0; g < a->Hkv; g++)
            v[b * a->v_sb + g * a->v_sh + 100 * a->v_ss + 3] = NAN;
}

/* Keys a row does not see: a NaN in V past a causal row's last key or past
 * a key length never reaches the row (finite, as in the block path); one
 * at a hidden key in the row's range is 0 * NaN there (NaN, as in the
 * graph): bit for bit the block path either way. A mask the lazy form does
 * not take (a NaN term) and rows that see no key (a past of -2) go to the
 * block path. */
static void test_short_heads_unseen_keys(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const short_case causal = {1, 2, 2, 200, 200, 64, 64, 0, 0, 0, 1, SM_NONE};
    const short_case lens = {3, 2, 2, 60, 103, 64, 64, 0, 0, 1, 0, SM_NONE};
    const short_case hidden = {3, 2, 2, 128, 128, 64, 64, 0, 0, 0, 0, SM_PAD_HIDE};
    const short_case folded = {2, 2, 2, 128, 128, 64, 64, 0, 0, 0, 0, SM_FOLDED};
    check_case(&causal, edit_nan_v, 1, 31);
    check_case(&lens, edit_nan_v, 1, 32);
    check_case(&hidden, edit_nan_v, 1, 33);
    check_case(&folded, edit_nan_v, 1, 34);
    const short_case nan_term = {2, 2, 2, 128, 128, 64, 64, 0, 0, 0, 0, SM_NAN};
    check_case(&nan_term, NULL, 0, 35);
    const short_case none_seen = {2, 2, 2, 30, 30, 64, 64, 0, 0, 0, 2, SM_NONE};
    check_case(&none_seen, NULL, 0, 36);

    short_data D;
    short_make(&causal, &D, 31);
    edit_nan_v(&D);
    (void)run(&D, 1);
    for (int64_t i = 0; i < causal.Sq; i++)
        for (int64_t h = 0; h < causal.Hq; h++)
            for (int64_t d = 0; d < causal.dv; d++) {
                const float x = D.o[i * D.a.o_ss + h * D.a.o_sh + d];
                assert_true(i >= 100 && d == 3 ? isnan(x) : isfinite(x));
            }
    short_free(&D);
    short_make(&lens, &D, 32);
    edit_nan_v(&D);
    (void)run(&D, 1);
    for (int64_t b = 0; b < lens.B; b++) /* items 1, 2 see 100, 97 keys */
        for (int64_t i = 0; i < lens.Sq * lens.Hq * lens.dv; i++) {
            const float x = D.o[b * D.a.o_sb + i];
            assert_true(b == 0 && i % lens.dv == 3 ? isnan(x) : isfinite(x));
        }
    short_free(&D);
}

/* a query row of NaN (b 0, every head, row 9), one of +inf (row 20) */
static void edit_nonfinite_q(short_data *D) {
    const mha_attn_args *a = &D->a;
    for (int64_t h = 0; h < a->Hq; h++)
        for (int64_t d = 0; d < a->dk; d++) {
            D->q[h * a->q_sh + 9 * a->q_ss + d] = NAN;
            D->q[h * a->q_sh + 20 * a->q_ss + d] = INFINITY;
        }
}

/* key 70 of item 0 (every kv head) at 2e5: its dots with rows whose sum of
 * q is large pass FA_LAZY_HUGE / c2, a huge reference */
static void edit_huge_key(short_data *D) {
    const mha_attn_args *a = &D->a;
    for (int64_t g = 0; g < a->Hkv; g++)
        for (int64_t d = 0; d < a->dk; d++)
            D->kv[g * a->k_sh + 70 * a->k_ss + d] = 2e5f;
    for (int64_t h = 0; h < a->Hq; h++)
        for (int64_t d = 0; d < a->dk; d++)
            D->q[h * a->q_sh + 30 * a->q_ss + d] = 1.0f;
}

static void test_short_heads_refused_tiles(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const short_case c = {1, 2, 2, 128, 128, 64, 64, 0, 0, 0, 0, SM_NONE};
    const short_case t = {1, 2, 2, 100, 197, 64, 64, 0, 0, 0, 0, SM_NONE};
    check_case(&c, edit_nonfinite_q, 0, 7);
    check_case(&t, edit_nonfinite_q, 0, 8);
    check_case(&c, edit_huge_key, 0, 9);
    check_case(&t, edit_huge_key, 0, 10);
    /* the NaN and +inf rows are NaN, the others finite */
    short_data D;
    short_make(&c, &D, 7);
    edit_nonfinite_q(&D);
    (void)run(&D, 1);
    for (int64_t i = 0; i < c.Sq; i++)
        for (int64_t d = 0; d < c.dv; d++) {
            const float x = D.o[i * D.a.o_ss + d];
            assert_true(i == 9 || i == 20 ? isnan(x) : isfinite(x));
        }
    short_free(&D);
}

static void test_short_heads_not_taken(void **state) {
    (void)state;
    if (!tu_cpu_has_avx512()) skip();
    const short_case c = {1, 2, 2, 128, 128, 64, 64, 0, 0, 0, 0, SM_NONE};
    short_data D;
    short_make(&c, &D, 3);
    mha_attn_args *a = &D.a;
    assert_true(fa_short_ok(a, 0, 128));
    assert_false(fa_short_ok(a, 0, 257)); /* keys past FA_SHORT_KEYS */
    float zeros[128] = {0};
    a->mask = zeros, a->m_sk = 1;
    assert_true(fa_short_ok(a, 0, 128)); /* a key padding row */
    a->causal = 1;
    assert_false(fa_short_ok(a, 0, 128)); /* shared by rows that see different keys */
    a->m_sq = 1;
    assert_true(fa_short_ok(a, 0, 128)); /* a row each */
    a->mask = NULL;
    assert_true(fa_short_ok(a, 0, 128)); /* causal rows */
    a->causal = 0;
    a->q0 = 100, a->q1 = 105;
    assert_false(fa_short_ok(a, 0, 128)); /* 5 rows */
    a->q0 = 0, a->q1 = 128;
    a->softcap = 30.0f;
    assert_false(fa_short_ok(a, 0, 128));
    a->softcap = 0.0f;
    a->precision = MHA_PRECISION_BFLOAT16;
    assert_false(fa_short_ok(a, 0, 128));
    short_free(&D);
}

#else
/* not built with the AVX-512 flags (not x86-64): nothing to run */
static void test_short_heads_bits(void **state) {
    (void)state;
    skip();
}
#define test_short_heads_refused_tiles test_short_heads_bits
#define test_short_heads_causal_masked_bits test_short_heads_bits
#define test_short_heads_unseen_keys test_short_heads_bits
#define test_short_heads_not_taken test_short_heads_bits
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_heads_bits),
        cmocka_unit_test(test_short_heads_causal_masked_bits),
        cmocka_unit_test(test_short_heads_unseen_keys),
        cmocka_unit_test(test_short_heads_refused_tiles),
        cmocka_unit_test(test_short_heads_not_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
