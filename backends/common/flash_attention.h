/* flash_attention.h -- the tiled online-softmax ("flash") attention the SIMD
 * backends share. Never forms the Sq x Skv score matrix: a block of FA_BR
 * query rows walks the keys in blocks of FA_BC, keeping per row a running
 * max m, a running sum l and an unnormalised output accumulator.
 *
 * A template by inclusion. The including kernel file defines first:
 *   VLEN                      floats per vector
 *   vf                        the vector type
 *   vf_zero, vf_set1, vf_load, vf_store, vf_load_part(p, n), vf_store_part(p, v, n),
 *   vf_add, vf_mul, vf_div, vf_max, vf_fma(a, b, c) = a*b + c,
 *   vf_hmax, vf_hsum          horizontal, in a fixed order
 *   vf_exp, vf_tanh           vectorised, exp(0) == 1 exactly; vf_exp is only
 *                             ever given x <= 0 (s - max, or -2|x| in tanh)
 *   vf_hide_masked(s, mv)     mv <= -FLT_MAX ? -inf : s + mv   (per lane)
 *   vf_hide_tail(s, n)        lanes >= n -> -inf
 *   vf_exp_or_zero(s, m)      s == -inf ? 0 : exp(s - m)
 *   FA_HAVE_EXP2 (optional) and vf_exp2(t) = 2^t for t <= 0, -inf -> 0:
 *                             the bfloat16 softmax then exponentiates in base 2
 *   FA_HAVE_EXP2_F32 (optional, with FA_HAVE_EXP2) and vf_exp2_f32(t) =
 *                             2^t to float32 accuracy for t <= 8, -inf -> 0:
 *                             float32 rows then take the lazy form too
 *   vf_bad_bits(s)            bit per lane that is NaN or +inf
 *   FA_HAVE_NONFINITE_BITS (optional) and vf_nonfinite_bits(s): bit per
 *                             lane that is NaN, +inf or -inf (plain rows
 *                             then skip the per-vector branches)
 *   FA_HAVE_GT_BITS (optional) and vf_gt_bits(a, b): bit per lane a > b
 *   FA_MR  rows of the score micro-tile (registers: FA_MR x FA_SCV)
 *   FA_BR  query rows per block (a multiple of FA_MR)
 *   FA_BC  keys per block (a multiple of VLEN)
 *   FA_SCV (optional) key vectors of the score micro-tile, dividing
 *          FA_BC/VLEN and at most 4 (default: FA_BC/VLEN up to 4); a wider
 *          block is scored in column pieces, each element's chain the same
 *   FA_PVR, FA_PVW (optional) rows and vectors of the P.V micro-tile
 *   FA_HAVE_TRANSPOSE (optional) and
 *   vf_transpose_tile(src, lds, dst, ldd): dst[i*ldd + j] = src[j*lds + i]
 *                             for i, j < VLEN (K's packing; else scalar)
 *
 * The algorithm in plain C, for one (b, h) and a block of query rows:
 *
 *   Kt = K[b,g]^T packed per key block; Vp = V[b,g] rows padded to dvp
 *   (V itself when dv is whole vectors)
 *   for each row r: m = -inf; l[:] = 0 (one per lane); acc[:] = 0
 *   for j0 in 0, BC, 2BC, ... while j0 < (last key any row may see):
 *     S[r, :] = Q[r, :] . Kt[:, j0:j0+BC]                  (micro-tile)
 *     for each row r with keys left in this block:
 *       s = scale*S[r, :]; softcap; + slope*(j - origin); + mask;
 *       -inf where masked
 *       if any s is NaN or +inf: the row is poisoned (its output is NaN)
 *       mb = max(s); if mb == -inf: continue       (row untouched by block)
 *       mn = max(m, mb); c = exp(m - mn)           (0 while m == -inf)
 *       p = exp(s - mn); l = l*c + (p summed over the block's vectors,
 *                                   lane by lane); m = mn
 *     for each group of FA_PVR rows the block touched:   (micro-tile)
 *       acc = acc*c + p . Vp[j0:j0+BC, :]
 *   O[r, :] = poisoned ? NaN : sum(l) > 0 ? acc / sum(l) : 0
 *                                     (fully masked row -> 0, as ONNX says;
 *                                      NaN scores -> NaN, never hidden)
 *
 * Determinism: every row's arithmetic is its own -- the same key blocks (at
 * fixed multiples of FA_BC), the same lanes, the same reduction orders (d
 * ascending in S; keys ascending in acc; per lane across blocks, then lanes, in l) -- and a
 * block a row cannot see is skipped for that row, not processed as zeros.
 * So row (b, h, i) is bitwise the same whatever range or block it is in.
 *
 * bfloat16 precision (ABI 1.3): the operands of both products are rounded
 * to bfloat16 where they are packed -- K^T and V per kv head, the Q block,
 * P after the exp (its sum l stays the unrounded float) -- and the products
 * of rounded operands are exact in float, so the FMA chains only round
 * their sums. Scores, softmax, masks and O stay float32. A backend with
 * FA_HAVE_BF16_DOT (avx512) stores them as bfloat16 pairs and multiplies
 * two by two (VDPBF16PS, or its exact emulation): K^T and the Q block
 * paired along d, V along the keys, P with its neighbour key; each element
 * is then one chain over the pairs ascending, the odd product added first.
 * The others keep the rounded floats and one FMA per product (the same
 * products, summed one by one).
 *
 * bfloat16 rows with no softcap or ALiBi, and no mask or one that only
 * hides keys (FA_HAVE_LAZY_MAX), keep a lazy reference max instead of the
 * exact running max: p = 2^(dot c2 - m2) may reach 2^FA_LAZY_SLACK, and m2
 * moves only past that (see fa_row_softmax_lazy); whole score tiles of
 * unmasked rows do that softmax on their accumulators
 * (fa_score_bf16_fused). A hidden key is then a 0 probability as a key
 * the row does not have is, so a padded batch item whose padding is
 * masked gets the bits it gets alone. With FA_HAVE_EXP2_F32 (avx512)
 * float32 rows take the same lazy form with vf_exp2_f32 (float32
 * accuracy, four FMA-pipe operations where vf_exp takes ten; whole score
 * tiles through fa_score_f32_fused, on avx512 fa_w3_20.h's fa_sch_tile:
 * the same operations, a tile's exponentials scheduled into the next
 * tile's products); the other float32 rows, and float32
 * on the other backends, keep the exact max and base e.
 *
 * Short heads (FA_HAVE_SHORT: avx512): float32 rows in the lazy form that
 * see at most FA_SHORT_KEYS keys -- BERT's, MiniLM's, ViT's heads, GPT-2's
 * causal ones, and under a padding or additive mask the lazy form takes
 * (fa_short_rows_tile) -- go by tiles of FA_MR rows through the key blocks
 * the tile sees: a block every row sees whole through a fused score tile
 * (Q read in place: no Q block transposed), a block some row sees in part
 * (the causal diagonal) row by row; then one P.V over the tile's keys with
 * the accumulators in registers, each row over its own keys, the rows
 * divided by l and stored to O from them (fa_short_head): the same
 * operations on the same values as the block path, so the same bits; a
 * tile leaving the common case (a NaN or infinite dot, a row that sees
 * nothing) is done again by fa_query_block.
 */
#ifndef MHA_BACKENDS_FLASH_ATTENTION_H
#define MHA_BACKENDS_FLASH_ATTENTION_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/bf16.h"
#include "common/kernel_common.h"

#define FA_NCV (FA_BC / VLEN) /* vectors per key block */
#ifndef FA_SCV
/* vectors of keys per score micro-tile (FA_MR x FA_SCV accumulators); a
 * wider key block is computed in FA_NCV / FA_SCV column pieces */
#define FA_SCV (FA_NCV < 4 ? FA_NCV : 4)
#endif
#define FA_LOG2E 1.44269504088896341f
#ifndef FA_PVR
#define FA_PVR 4 /* rows of the P.V micro-tile */
#endif
#ifndef FA_PVW
#define FA_PVW 4 /* vectors of d per P.V pass (FA_PVR x FA_PVW accumulators) */
#endif

/* Workspace plan, in floats, each region 64-byte aligned. Kt and Vp hold a
 * whole kv head (packed once per (b, g) per call and shared by the query
 * blocks and by the q heads of a GQA group); the rest is per query block. */
typedef struct fa_layout {
    int64_t dvp;     /* dv rounded up to VLEN */
    int64_t skv_pad; /* Skv rounded up to FA_BC */
    size_t kt;       /* [skv_pad / BC][dk][BC]  K transposed per key block */
    size_t vp;       /* [skv_pad][dvp]          V rows, zero padded */
    size_t qp;       /* [dk][BR]                Q block transposed */
    size_t s;        /* [BR][BC]                scores, then probabilities */
    size_t acc;      /* [BR][dvp]               unnormalised outputs */
    size_t ml;       /* [BR]                    running max */
    size_t lv;       /* [BR][VLEN]              running sum, per lane */
    size_t pad;      /* [BC + dvp] zeros        probabilities / outputs of the
                                                 rows that fill a short P.V group */
    size_t total;    /* floats */
} fa_layout;

static inline size_t fa_round16(size_t n) {
    return (n + 15) & ~(size_t)15;
}

/* 0 when a size overflows (the caller then reports SIZE_MAX). */
static inline int fa_plan(const mha_attn_args *a, fa_layout *L) {
    if (a->dk < 0 || a->dv < 0 || a->Skv < 0) return 0;
    if (a->dk > (INT64_C(1) << 30) || a->dv > (INT64_C(1) << 30) || a->Skv > (INT64_C(1) << 40))
        return 0;
    L->dvp = kernel_round_up(a->dv, VLEN);
    L->skv_pad = kernel_round_up(a->Skv, FA_BC);
    size_t dk = (size_t)a->dk, dvp = (size_t)L->dvp, skv = (size_t)L->skv_pad;
    if (skv && (dk + dvp) > SIZE_MAX / 8 / skv) return 0;
    size_t off = 0;
    L->kt = off;
    off += fa_round16(skv * dk);
    L->vp = off;
    off += fa_round16(skv * dvp);
    L->qp = off;
    off += fa_round16(dk * FA_BR);
    L->s = off;
    off += fa_round16((size_t)FA_BR * FA_BC);
    L->acc = off;
    off += fa_round16((size_t)FA_BR * dvp);
    L->ml = off;
    off += fa_round16((size_t)FA_BR);
    L->lv = off;
    off += fa_round16((size_t)FA_BR * VLEN);
    L->pad = off;
    off += fa_round16((size_t)FA_BC + dvp);
    L->total = off;
    return 1;
}

static inline size_t fa_workspace_size(const mha_attn_args *a) {
    fa_layout L;
    if (!a || !fa_plan(a, &L)) return SIZE_MAX;
    return L.total * sizeof(float) + 64; /* + slack to align the start */
}

/* dst[d * ldd + j] = src[j * lds + d] for j < n, d < dk: n rows of dk
 * floats become columns (K per key block, the Q block). Whole groups of VLEN
 * rows go through the backend's register transpose when it has one (a
 * decode step's one query otherwise spends most of its time packing K);
 * the rest is copied element by element. A pure copy: no rounding. */
static inline void fa_transpose_rows(const float *src, int64_t lds, int64_t n, int64_t dk,
                                     float *dst, int64_t ldd) {
    int64_t j0 = 0;
#ifdef FA_HAVE_TRANSPOSE
    const int64_t dk_tiles = dk / VLEN * VLEN;
    for (; j0 + VLEN <= n; j0 += VLEN) {
        for (int64_t d = 0; d < dk_tiles; d += VLEN)
            vf_transpose_tile(src + j0 * lds + d, lds, dst + d * ldd + j0, ldd);
        for (int64_t j = j0; j < j0 + VLEN; j++)
            for (int64_t d = dk_tiles; d < dk; d++)
                dst[d * ldd + j] = src[j * lds + d];
    }
#endif
    for (int64_t j = j0; j < n; j++)
        for (int64_t d = 0; d < dk; d++)
            dst[d * ldd + j] = src[j * lds + d];
}

/* 1 when the call computes in bfloat16. */
static inline int fa_bf16(const mha_attn_args *a) {
    return kernel_attn_precision(a) == MHA_PRECISION_BFLOAT16;
}

/* x[0:n] rounded to bfloat16 in place (operands of Q.K^T and P.V): whole
 * vectors through the backend's vf_round_bf16 when it has one (the same
 * rounding), the rest one by one. */
static inline void fa_round_bf16(float *x, int64_t n) {
    int64_t i = 0;
#ifdef FA_HAVE_ROUND_BF16
    for (; i + VLEN <= n; i += VLEN)
        vf_store(x + i, vf_round_bf16(vf_load(x + i)));
#endif
    for (; i < n; i++)
        x[i] = bf16_round(x[i]);
}

#ifdef FA_HAVE_BF16_DOT
/* bfloat16 pairs (FA_HAVE_BF16_DOT: the backend has vf_dot_bf16, vbf,
 * vbf_load / _load_lo / _set1 / _store, vbf_pair(lo, hi) and
 * vbf_pair_adjacent(a, b), rounding as common/bf16.h): the operands of
 * both products are stored as uint32 pairs, the even element of a pair in
 * the low half, and multiplied two by two. The pairs run along the sum: d
 * for Q.K^T (K^T and the Q block pair their rows d, d+1), keys for P.V (V
 * pairs its rows j, j+1; P its neighbours p[j], p[j+1]). */
#define FA_PAIRS(a) fa_bf16(a)

/* K, V and the Q block as pairs (fa_bf20_pair_transpose, fa_bf20_pair_v) */
#include "common/fa_bf20.h"
#else
#define FA_PAIRS(a) 0
#endif

/*
 * Packs keys [0, nkeys) of one kv head. Shapes: K rows kb + j*k_ss [dk],
 * V rows vb + j*v_ss [dv] -> kt [skv_pad/BC][dk][BC], vp [skv_pad][dvp];
 * key columns past nkeys in the last block are zero. vp NULL: V is read in
 * place (dv is whole vectors), only K is packed. bfloat16 pairs: each K
 * block becomes [dk/2 up][BC] pairs at its start, V [nkeys/2 up][dvp]
 * pairs (an odd last key paired with a zero row).
 */
static inline void fa_pack_kv(const mha_attn_args *a, const fa_layout *L, const float *kb,
                              const float *vb, int64_t nkeys, float *kt, float *vp) {
    const int64_t dk = a->dk, dv = a->dv, dvp = L->dvp;
    const int64_t nblocks = (nkeys + FA_BC - 1) / FA_BC;
#ifdef FA_HAVE_BF16_DOT
    if (FA_PAIRS(a)) { /* pairs straight from K's and V's rows (fa_bf20.h) */
        const int64_t np = (dk + 1) / 2;
        for (int64_t jb = 0; jb < nblocks; jb++) {
            uint32_t *blk = (uint32_t *)(void *)(kt + jb * dk * FA_BC);
            const int64_t jn = nkeys - jb * FA_BC < FA_BC ? nkeys - jb * FA_BC : FA_BC;
            fa_bf20_pair_transpose(kb + jb * FA_BC * a->k_ss, a->k_ss, jn, dk, blk, FA_BC);
            for (int64_t t = 0; jn < FA_BC && t < np; t++)
                memset(blk + t * FA_BC + jn, 0, (size_t)(FA_BC - jn) * sizeof(uint32_t));
        }
        if (vp) fa_bf20_pair_v(vb, a->v_ss, nkeys, dv, dvp, (uint32_t *)(void *)vp);
        return;
    }
#endif
    /* pass 1: K^T per key block, so the score tile loads BC keys of one d */
    for (int64_t jb = 0; jb < nblocks; jb++) {
        float *blk = kt + jb * dk * FA_BC;
        int64_t jn = nkeys - jb * FA_BC < FA_BC ? nkeys - jb * FA_BC : FA_BC;
        fa_transpose_rows(kb + jb * FA_BC * a->k_ss, a->k_ss, jn, dk, blk, FA_BC);
        if (jn < FA_BC)
            for (int64_t d = 0; d < dk; d++)
                memset(blk + d * FA_BC + jn, 0, (size_t)(FA_BC - jn) * sizeof(float));
        if (fa_bf16(a)) fa_round_bf16(blk, dk * FA_BC);
    }
    /* pass 2: V rows, padded to dvp with zeros */
    for (int64_t j = 0; vp && j < nkeys; j++) {
        float *row = vp + j * dvp;
        memcpy(row, vb + j * a->v_ss, (size_t)dv * sizeof(float));
        if (fa_bf16(a)) fa_round_bf16(row, dv);
        for (int64_t d = dv; d < dvp; d++)
            row[d] = 0.0f;
    }
}

/* The operand forms of the two products, by name prefix:
 *   F32   float32: one FMA per product;
 *   BF16  (FA_HAVE_BF16_DOT) bfloat16 pairs (uint32: the even element in
 *         the low half), one vf_dot_bf16 per two products, exact products
 *         summed in float, odd one first (VDPBF16PS's order).
 * LOAD_LO loads a vector whose odd elements are dropped (the last pair of
 * an odd count of keys; float32 has no pairs and never asks). */
#define FA_F32_LOAD(p) vf_load(p)
#define FA_F32_LOAD_LO(p) vf_load(p)
#define FA_F32_SET1(x) vf_set1(x)
#define FA_F32_MAC(acc, a, b) vf_fma(a, b, acc)
#define FA_BF16_LOAD(p) vbf_load(p)
#define FA_BF16_LOAD_LO(p) vbf_load_lo(p)
#define FA_BF16_SET1(x) vbf_set1(x)
#define FA_BF16_MAC(acc, a, b) vf_dot_bf16(acc, a, b)

/* S[r, 0:NV*VLEN] = sum_t qp[t][r] * kt[t][0:NV*VLEN] for r < R (R <=
 * FA_MR), t < nd (dk, or dk/2 rounded up in pairs): one chain per element,
 * t ascending, so a row's scores are the same bits whatever R and NV its
 * tile had. qp: [nd][FA_BR] at this tile's first row, kt: [nd][FA_BC], s:
 * [R][FA_BC] (the vectors past NV are not written). The full tile is R =
 * FA_MR, NV = FA_NCV; the narrower ones serve the last rows of a short
 * block (a decode step's single query does one row of work, not FA_MR) and
 * the first keys of a block the rows see only in part (the last block of S
 * 197 holds 5 keys: 1 vector, not 4). ET / VT: the element and vector types
 * of the form OPS. */
#define FA_DEFINE_SCORE(NAME, R, NV, ET, VT, OPS)                                                  \
    static inline void NAME(int64_t nd, const ET *qp, const ET *kt, float *s) {                    \
        vf acc[R][NV];                                                                             \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                       \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) acc[r][c] = vf_zero();            \
        for (int64_t d = 0; d < nd; d++) {                                                         \
            VT kv[NV];                                                                             \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) kv[c] =                           \
                FA_##OPS##_LOAD(kt + d * FA_BC + c * VLEN);                                        \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                 \
                VT qb = FA_##OPS##_SET1(qp[d * FA_BR + r]);                                        \
                _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) acc[r][c] =                   \
                    FA_##OPS##_MAC(acc[r][c], qb, kv[c]);                                          \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                       \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++)                                   \
                vf_store(s + r * FA_BC + c * VLEN, acc[r][c]);                                     \
    }

#if FA_MR > 6
#error "flash_attention.h: FA_MR above 6 needs more score tile variants"
#endif
#if FA_SCV > 4 || FA_NCV % FA_SCV
#error "flash_attention.h: FA_SCV must divide FA_NCV and be at most 4 (the score tile variants)"
#endif
/* The full tile over its first 1..3 vectors of keys (those at or above
 * FA_SCV are never called). */
#define FA_DEFINE_SCORE_NARROW(PRE, ET, VT, OPS)                                                   \
    FA_DEFINE_SCORE(PRE##_tile_v1, FA_MR, 1, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE(PRE##_tile_v2, FA_MR, (FA_SCV > 2 ? 2 : 1), ET, VT, OPS)                       \
    FA_DEFINE_SCORE(PRE##_tile_v3, FA_MR, (FA_SCV > 3 ? 3 : 1), ET, VT, OPS)
/* PRE_tile_full, PRE_tile_1..5 (those above FA_MR are never called),
 * PRE_tile_v1..v3 and PRE_rows(nd, qp, kt, s, nr, nv): rows [0, nr) of a
 * score tile, nr <= FA_MR, over its first nv vectors (a full tile only;
 * short ones take every vector). */
#define FA_DEFINE_SCORE_SET(PRE, ET, VT, OPS)                                                      \
    FA_DEFINE_SCORE(PRE##_tile_full, FA_MR, FA_SCV, ET, VT, OPS)                                   \
    FA_DEFINE_SCORE(PRE##_tile_1, 1, FA_SCV, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE(PRE##_tile_2, 2, FA_SCV, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE(PRE##_tile_3, 3, FA_SCV, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE(PRE##_tile_4, 4, FA_SCV, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE(PRE##_tile_5, 5, FA_SCV, ET, VT, OPS)                                          \
    FA_DEFINE_SCORE_NARROW(PRE, ET, VT, OPS)                                                       \
    static inline void PRE##_rows(int64_t nd, const ET *qp, const ET *kt, float *s, int64_t nr,    \
                                  int nv) {                                                        \
        if (nr >= FA_MR && nv >= FA_SCV)                                                           \
            PRE##_tile_full(nd, qp, kt, s);                                                        \
        else if (nr >= FA_MR && nv == 1)                                                           \
            PRE##_tile_v1(nd, qp, kt, s);                                                          \
        else if (nr >= FA_MR && nv == 2)                                                           \
            PRE##_tile_v2(nd, qp, kt, s);                                                          \
        else if (nr >= FA_MR)                                                                      \
            PRE##_tile_v3(nd, qp, kt, s);                                                          \
        else if (nr == 1)                                                                          \
            PRE##_tile_1(nd, qp, kt, s);                                                           \
        else if (nr == 2)                                                                          \
            PRE##_tile_2(nd, qp, kt, s);                                                           \
        else if (nr == 3)                                                                          \
            PRE##_tile_3(nd, qp, kt, s);                                                           \
        else if (nr == 4)                                                                          \
            PRE##_tile_4(nd, qp, kt, s);                                                           \
        else                                                                                       \
            PRE##_tile_5(nd, qp, kt, s);                                                           \
    }

/* acc[0:W*VLEN] = acc*corr + sum_{j<nv} p[j] * vp[j][0:W*VLEN], keys (or
 * pairs) ascending, W accumulators held in registers, then with tail the
 * pair nv with its odd key dropped. vp rows are vs apart. */
#define FA_DEFINE_PV(PRE, W, ET, VT, OPS)                                                          \
    static inline void PRE##_##W(const ET *p, int64_t nv, int tail, const ET *vp, int64_t vs,      \
                                 float *acc, float corr) {                                         \
        vf x[W];                                                                                   \
        _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) {                                      \
            x[w] = vf_load(acc + w * VLEN);                                                        \
            if (corr != 1.0f) x[w] = vf_mul(x[w], vf_set1(corr));                                  \
        }                                                                                          \
        for (int64_t j = 0; j < nv; j++) {                                                         \
            VT pj = FA_##OPS##_SET1(p[j]);                                                         \
            const ET *vr = vp + j * vs;                                                            \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[w] =                             \
                FA_##OPS##_MAC(x[w], pj, FA_##OPS##_LOAD(vr + w * VLEN));                          \
        }                                                                                          \
        if (tail) {                                                                                \
            VT pj = FA_##OPS##_SET1(p[nv]);                                                        \
            const ET *vr = vp + nv * vs;                                                           \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[w] =                             \
                FA_##OPS##_MAC(x[w], pj, FA_##OPS##_LOAD_LO(vr + w * VLEN));                       \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) vf_store(acc + w * VLEN, x[w]);        \
    }

/* FA_PVR rows at once: acc_r[0:W*VLEN] = acc_r*corr[r] + sum_{j<nv}
 * p_r[j] * vp[j][0:W*VLEN]. Each key's V vectors are loaded once for all the
 * rows (FA_PVR x W accumulators in registers), so P.V runs at FMA speed
 * instead of load speed. Every row's chain is exactly the one-row form's
 * (acc*corr, then keys ascending; x*1 is exact, and skipped), so a row gets the same
 * bits whichever rows share its group. p[r] rows are FA_BC floats apart, vp
 * rows vs apart. */
#define FA_DEFINE_PV_ROWS(PRE, W, ET, VT, OPS)                                                     \
    static inline void PRE##_rows_##W(ET *const *p, float *const *acc, const float *corr,          \
                                      int64_t nv, const ET *vp, int64_t vs, int64_t v0) {          \
        vf x[FA_PVR][W];                                                                           \
        int scaled = 0; /* a factor other than 1 (after the first blocks, seldom) */               \
        _Pragma("GCC unroll 8") for (int r = 0; r < FA_PVR; r++) scaled |= corr[r] != 1.0f;        \
        _Pragma("GCC unroll 8") for (int r = 0; r < FA_PVR; r++) {                                 \
            vf c = vf_set1(corr[r]);                                                               \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) {                                  \
                x[r][w] = vf_load(acc[r] + v0 + w * VLEN);                                         \
                if (scaled) x[r][w] = vf_mul(x[r][w], c);                                          \
            }                                                                                      \
        }                                                                                          \
        for (int64_t j = 0; j < nv; j++) {                                                         \
            const ET *vr = vp + j * vs + v0;                                                       \
            VT vv[W];                                                                              \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) vv[w] =                            \
                FA_##OPS##_LOAD(vr + w * VLEN);                                                    \
            _Pragma("GCC unroll 8") for (int r = 0; r < FA_PVR; r++) {                             \
                VT pj = FA_##OPS##_SET1(p[r][j]);                                                  \
                _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[r][w] =                      \
                    FA_##OPS##_MAC(x[r][w], pj, vv[w]);                                            \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int r = 0; r < FA_PVR; r++)                                   \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++)                                    \
                vf_store(acc[r] + v0 + w * VLEN, x[r][w]);                                         \
    }

/* The P.V entries of one operand form:
 *   PRE(p, nv, tail, vp, vs, dvp, acc, corr): one row, acc [dvp] = acc*corr
 *     + p[0:nv] . vp[0:nv][0:dvp] (+ the tail pair), in register chunks of
 *     up to 8 vectors (the chunking is fixed by dvp alone);
 *   PRE_group(p, acc, corr, nv, vp, vs, dvp): FA_PVR rows over every dvp
 *     chunk of up to FA_PVW vectors (likewise fixed by dvp alone). */
#define FA_DEFINE_PV_SET(PRE, ET, VT, OPS)                                                         \
    FA_DEFINE_PV(PRE, 1, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 2, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 3, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 4, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 5, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 6, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 7, ET, VT, OPS)                                                              \
    FA_DEFINE_PV(PRE, 8, ET, VT, OPS)                                                              \
    static inline void PRE(const ET *p, int64_t nv, int tail, const ET *vp, int64_t vs,            \
                           int64_t dvp, float *acc, float corr) {                                  \
        static void (*const chunk[8])(const ET *, int64_t, int, const ET *, int64_t, float *,      \
                                      float) = {PRE##_1, PRE##_2, PRE##_3, PRE##_4,                \
                                                PRE##_5, PRE##_6, PRE##_7, PRE##_8};               \
        for (int64_t v0 = 0; v0 < dvp; v0 += 8 * VLEN) {                                           \
            int64_t w = (dvp - v0) / VLEN;                                                         \
            chunk[(w > 8 ? 8 : w) - 1](p, nv, tail, vp + v0, vs, acc + v0, corr);                  \
        }                                                                                          \
    }                                                                                              \
    FA_DEFINE_PV_ROWS(PRE, 1, ET, VT, OPS)                                                         \
    FA_DEFINE_PV_ROWS(PRE, 2, ET, VT, OPS)                                                         \
    FA_DEFINE_PV_ROWS(PRE, 3, ET, VT, OPS)                                                         \
    FA_DEFINE_PV_ROWS(PRE, 4, ET, VT, OPS)                                                         \
    static inline void PRE##_group(ET *const *p, float *const *acc, const float *corr, int64_t nv, \
                                   const ET *vp, int64_t vs, int64_t dvp) {                        \
        static void (*const chunk[4])(ET *const *, float *const *, const float *, int64_t,         \
                                      const ET *, int64_t, int64_t) = {                            \
            PRE##_rows_1, PRE##_rows_2, PRE##_rows_3, PRE##_rows_4};                               \
        for (int64_t v0 = 0; v0 < dvp; v0 += FA_PVW * VLEN) {                                      \
            int64_t w = (dvp - v0) / VLEN;                                                         \
            chunk[(w > FA_PVW ? FA_PVW : w) - 1](p, acc, corr, nv, vp, vs, v0);                    \
        }                                                                                          \
    }

#if FA_PVW > 4
#error "flash_attention.h: FA_PVW above 4 needs more P.V tile variants"
#endif
FA_DEFINE_SCORE_SET(fa_score, float, vf, F32)
FA_DEFINE_PV_SET(fa_pv, float, vf, F32)
#ifdef FA_HAVE_BF16_DOT
#if FA_BC % (2 * VLEN)
#error "flash_attention.h: bfloat16 pairs need FA_BC a multiple of 2 * VLEN"
#endif
FA_DEFINE_SCORE_SET(fa_score_bf16, uint32_t, vbf, BF16)
FA_DEFINE_PV_SET(fa_pv_bf16, uint32_t, vbf, BF16)
#endif

/*
 * Pass 3 of a key block in one operand form: acc = acc*corr + P.V for the
 * n_live rows live[] (nv keys each, probabilities at s + row * FA_BC,
 * accumulators at acc + row * dvp); V of the block at vpb, rows vs apart.
 * FA_PVR rows at a time over the keys they all see, then each row alone
 * over the rest of its keys (same chain order either way); a short group is
 * filled with the zero rows of pad. SH: 0 for floats, 1 for pairs (nv keys
 * are nv >> 1 pairs, then with an odd nv a last pair whose odd key -- one
 * the row does not see -- is dropped from V, so a non-finite V there cannot
 * reach the row through 0 * inf).
 */
#define FA_DEFINE_PV_BLOCK(PRE, ET, SH)                                                            \
    static inline void PRE##_block(float *s, float *acc, float *pad, const int64_t *live,          \
                                   const int64_t *live_nv, const float *corr, int64_t n_live,      \
                                   const ET *vpb, int64_t vs, int64_t dvp) {                       \
        for (int64_t g0 = 0; g0 < n_live; g0 += FA_PVR) {                                          \
            if (2 * (n_live - g0) <= FA_PVR) {                                                     \
                /* a short last group: each row alone beats padding */                             \
                for (int64_t t = g0; t < n_live; t++)                                              \
                    PRE((const ET *)(void *)(s + live[t] * FA_BC), live_nv[t] >> SH,               \
                        (int)(live_nv[t] & SH), vpb, vs, dvp, acc + live[t] * dvp, corr[t]);       \
                return;                                                                            \
            }                                                                                      \
            ET *prow[FA_PVR];                                                                      \
            float *arow[FA_PVR], gcorr[FA_PVR];                                                    \
            int64_t nv_all = FA_BC;                                                                \
            for (int64_t t = 0; t < FA_PVR; t++) {                                                 \
                if (g0 + t < n_live) {                                                             \
                    prow[t] = (ET *)(void *)(s + live[g0 + t] * FA_BC);                            \
                    arow[t] = acc + live[g0 + t] * dvp;                                            \
                    gcorr[t] = corr[g0 + t];                                                       \
                    if (live_nv[g0 + t] < nv_all) nv_all = live_nv[g0 + t];                        \
                } else {                                                                           \
                    prow[t] = (ET *)(void *)pad;                                                   \
                    arow[t] = pad + FA_BC;                                                         \
                    gcorr[t] = 1.0f;                                                               \
                }                                                                                  \
            }                                                                                      \
            const int64_t n_all = nv_all >> SH; /* whole units every row sees */                   \
            PRE##_group(prow, arow, gcorr, n_all, vpb, vs, dvp);                                   \
            for (int64_t t = 0; t < FA_PVR && g0 + t < n_live; t++) {                              \
                const int64_t nv = live_nv[g0 + t];                                                \
                if (nv > (n_all << SH))                                                            \
                    PRE(prow[t] + n_all, (nv >> SH) - n_all, (int)(nv & SH), vpb + n_all * vs, vs, \
                        dvp, arow[t], 1.0f);                                                       \
            }                                                                                      \
        }                                                                                          \
    }
FA_DEFINE_PV_BLOCK(fa_pv, float, 0)
#ifdef FA_HAVE_BF16_DOT
FA_DEFINE_PV_BLOCK(fa_pv_bf16, uint32_t, 1)
#endif

/* ALiBi of one query row: score += slope * (p_j - origin). */
typedef struct fa_alibi {
    float slope;
    int64_t origin;
    const float *pos; /* key positions [Skv], or NULL: j */
} fa_alibi;

/* 0, 1, 2, ...: the lane offsets of a vector of keys */
static _Alignas(64) const
    float fa_lane_index[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* The probabilities x [FA_NCV] of a row's block to srow, as P.V reads
 * them: bfloat16 pairs of neighbours, rounded floats, or floats. */
static inline void fa_store_p(const mha_attn_args *a, const vf *x, float *srow) {
#ifdef FA_HAVE_BF16_DOT
    if (FA_PAIRS(a)) {
        uint32_t *prow = (uint32_t *)(void *)srow; /* [BC/2] pairs */
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c += 2)
            vbf_store(prow + c / 2 * VLEN, vbf_pair_adjacent(x[c], x[c + 1]));
    } else
#endif
    {
#ifdef FA_HAVE_ROUND_BF16
        /* fa_round_bf16's rounding, vector by vector (FA_BC is whole vectors) */
        const int rnd = fa_bf16(a);
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++)
            vf_store(srow + c * VLEN, rnd ? vf_round_bf16(x[c]) : x[c]);
#else
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) vf_store(srow + c * VLEN, x[c]);
        if (fa_bf16(a)) fa_round_bf16(srow, FA_BC);
#endif
    }
}

/*
 * The end of a row's online softmax update, shared by fa_row_softmax and
 * fa_row_softmax_plain: x [FA_NCV] holds the block's logits (hidden keys
 * -inf when hidden is nonzero; none otherwise), m_new the new running max
 * (finite or above *m). Writes the probabilities to srow (pairs or rounded
 * floats in bfloat16), rescales and adds to the per-lane sum lv, sets *m
 * and *corr_out (the factor of the row's accumulator).
 */
static inline void fa_row_update(const mha_attn_args *a, vf *x, float m_new, int hidden,
                                 float *srow, float *m, float *lv, float *corr_out) {
    /* acc and l are still 0 while m == -inf; an unchanged max (most blocks
     * after the first few) needs no exp: exp(0) is exactly 1 */
#ifdef FA_HAVE_EXP2
    /* bfloat16 exponentiates in base 2 while m log2(e) rounds by at most
     * 2^-5 (|m| < 2^19: always, but for huge logits -- masks of huge
     * finite values, dots of 1e10 -- base e then: the FMA's t at the max
     * itself is that rounding, which past 2^31 overflowed 2^t); float32
     * keeps base e, its bits unchanged. A row crossing 2^19 by a small
     * move keeps its old terms within 2^(2^-4) of the new base's, below
     * what rounding such logits costs the reference. */
    const int base2 = fa_bf16(a) && fabsf(m_new) < 0x1p19f;
#endif
    float corr = 0.0f;
    if (*m == m_new) {
        corr = 1.0f;
    } else if (*m != -INFINITY) {
        _Alignas(64) float e[VLEN];
#ifdef FA_HAVE_EXP2
        /* the same rounded m log2(e) as the probabilities use, so the
         * factor moves them exactly as far as their exponent moved (an old
         * m of base e was a huge negative: the factor is 0 either way) */
        if (base2)
            vf_store(e, vf_exp2(vf_set1(*m * FA_LOG2E - m_new * FA_LOG2E)));
        else
#endif
            vf_store(e, vf_exp(vf_set1(*m - m_new)));
        corr = e[0];
    }

    /* pass c: probabilities and their sum (vectors, then lanes); P for P.V
     * in bfloat16 (pairs, or rounded floats), l keeps the float sum. With
     * vf_exp2: p = 2^(s log2(e) - m log2(e)), one FMA into the exponent
     * (a hidden -inf gives 0). Without hidden keys the base-e exp skips its
     * -inf test: x + (-m) is x - m exactly, so the bits are the same. */
    vf psum = vf_zero();
#ifdef FA_HAVE_EXP2
    if (base2) {
        const vf vlog2e = vf_set1(FA_LOG2E), vneg_ml = vf_set1(-(m_new * FA_LOG2E));
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
            x[c] = vf_exp2(vf_fma(x[c], vlog2e, vneg_ml));
            psum = vf_add(psum, x[c]);
        }
    } else
#endif
    {
        const vf vm = vf_set1(m_new), vneg_m = vf_set1(-m_new);
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
            x[c] = hidden ? vf_exp_or_zero(x[c], vm) : vf_exp(vf_add(x[c], vneg_m));
            psum = vf_add(psum, x[c]);
        }
    }
    fa_store_p(a, x, srow);
    vf_store(lv, vf_fma(vf_load(lv), vf_set1(corr), psum));
    *m = m_new;
    *corr_out = corr;
}

/* *vmax = the lane-wise max of a block's logits x [FA_NCV]; 0 with
 * *poisoned set when bad flags a NaN or +inf among them. */
static inline int fa_block_max(const vf *x, unsigned bad, int *poisoned, vf *vmax) {
    if (bad) {
        *poisoned = 1;
        return 0;
    }
    vf v = x[0];
    _Pragma("GCC unroll 8") for (int c = 1; c < FA_NCV; c++) v = vf_max(v, x[c]);
    *vmax = v;
    return 1;
}

/* The mask terms of vector c of a key block at j0 for one row (mrow: the
 * row's mask, keys m_sk apart), lanes < lanes read (1 to VLEN), the rest
 * 0. */
static inline vf fa_mask_vec(const mha_attn_args *a, const float *mrow, int64_t j0, int c,
                             int64_t lanes) {
    const int64_t n = lanes < VLEN ? lanes : VLEN;
    const float *mp = mrow + (j0 + (int64_t)c * VLEN) * a->m_sk;
    if (a->m_sk == 1) return n == VLEN ? vf_load(mp) : vf_load_part(mp, n);
    if (a->m_sk == 0) return vf_set1(mp[0]);
    _Alignas(64) float tmp[VLEN];
    for (int64_t t = 0; t < VLEN; t++)
        tmp[t] = t < n ? mp[t * a->m_sk] : 0.0f;
    return vf_load(tmp);
}

/*
 * One row of a query block meets one key block [j0, j0 + BC): the online
 * softmax update up to P.V. srow [BC]: raw dot products in, probabilities
 * out; mrow: the mask row (keys at mrow[j * m_sk]) or NULL; al: the row's
 * ALiBi or NULL; nv in [1, BC]:
 * keys of the block this row may see (the rest is hidden by causal /
 * kv_len); m: running max; lv [VLEN]: running sum kept per lane (reduced
 * once, at the end: no horizontal sum per block). Returns 0 when the block
 * shows this row nothing (its state is untouched), else 1 with *corr the
 * factor its accumulator must be scaled by before acc += P . V. A visible
 * score that is NaN or +inf (the reference's exp(s - max) is NaN for both)
 * sets *poisoned and returns 0: the max and exp below would hide it.
 */
static inline int fa_row_softmax(const mha_attn_args *a, const float *mrow, const fa_alibi *al,
                                 int64_t j0, int64_t nv, float *srow, float *m, float *lv,
                                 float *corr_out, int *poisoned) {
    vf x[FA_NCV];
    unsigned bad = 0;
    const vf vscale = vf_set1(a->scale);

    /* pass a: logits = scale * dot, softcap, + ALiBi, + mask; hidden keys
     * -> -inf */
    _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
        int64_t lanes = nv - (int64_t)c * VLEN; /* visible lanes of this vector */
        vf t = vf_mul(vf_load(srow + c * VLEN), vscale);
        if (a->softcap > 0.0f)
            t = vf_mul(vf_tanh(vf_mul(t, vf_set1(1.0f / a->softcap))), vf_set1(a->softcap));
        if (al) {
            /* key distances p_j - origin of the vector's lanes, exact in
             * float (|p_j - origin| < 2^24); p_j = j, or the host's
             * positions (lanes past the keys read none) */
            const int64_t jc = j0 + (int64_t)c * VLEN;
            vf dist;
            if (al->pos) {
                const int64_t n = lanes < VLEN ? (lanes > 0 ? lanes : 0) : VLEN;
                dist = vf_add(n == VLEN ? vf_load(al->pos + jc) : vf_load_part(al->pos + jc, n),
                              vf_set1((float)-al->origin));
            } else {
                dist = vf_add(vf_set1((float)(jc - al->origin)), vf_load(fa_lane_index));
            }
            t = vf_fma(vf_set1(al->slope), dist, t);
        }
        if (mrow && lanes > 0) t = vf_hide_masked(t, fa_mask_vec(a, mrow, j0, c, lanes));
        if (lanes < VLEN) t = vf_hide_tail(t, lanes);
        bad |= vf_bad_bits(t);
        x[c] = t;
    }
    /* pass b: the block max; a row that sees nothing here keeps its state */
    vf vmax;
    if (!fa_block_max(x, bad, poisoned, &vmax)) return 0;
#ifdef FA_HAVE_GT_BITS
    /* the horizontal max only when a lane beats the running max (after the
     * first few blocks most do not): the same m_new */
    float m_new = *m;
    if (vf_gt_bits(vmax, vf_set1(*m)))
        m_new = vf_hmax(vmax);
    else if (!vf_gt_bits(vmax, vf_set1(-INFINITY)))
        return 0;
#else
    float bmax = vf_hmax(vmax);
    if (bmax == -INFINITY) return 0;
    float m_new = bmax > *m ? bmax : *m;
#endif
    fa_row_update(a, x, m_new, 1, srow, m, lv, corr_out);
    return 1;
}

#ifdef FA_HAVE_NONFINITE_BITS
/* The end of fa_row_softmax_plain (below) once its logits x [FA_NCV]
 * (scale * dot, every one finite) are known: the block max, then
 * fa_row_update. */
static inline void fa_row_softmax_plain_x(const mha_attn_args *a, vf *x, float *srow, float *m,
                                          float *lv, float *corr_out) {
    vf vmax = x[0];
    _Pragma("GCC unroll 8") for (int c = 1; c < FA_NCV; c++) vmax = vf_max(vmax, x[c]);
    /* every logit is finite: the max beats a running max of -inf */
    float m_new = *m;
    if (vf_gt_bits(vmax, vf_set1(*m))) m_new = vf_hmax(vmax);
    fa_row_update(a, x, m_new, 0, srow, m, lv, corr_out);
}

/*
 * fa_row_softmax for a plain row -- no softcap, ALiBi or mask, and every key
 * of the block visible (nv = FA_BC) -- with the same arithmetic, so the same
 * bits: logits, the block max, the exp and the sums exactly as there, but
 * none of the per-vector branches, and the exp without its -inf test (a
 * plain row has no hidden key). A logit that is NaN or +-inf (a dot product
 * overflowed, or the inputs hold one) returns -1, nothing written: the
 * caller then gives the row to fa_row_softmax, which starts again from the
 * raw scores (-inf stays a 0 probability there, NaN / +inf poison the row).
 * Else returns 1 with *corr as fa_row_softmax.
 */
static inline int fa_row_softmax_plain(const mha_attn_args *a, float *srow, float *m, float *lv,
                                       float *corr_out) {
    vf x[FA_NCV];
    unsigned odd = 0;
    const vf vscale = vf_set1(a->scale);
    _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
        x[c] = vf_mul(vf_load(srow + c * VLEN), vscale);
        odd |= vf_nonfinite_bits(x[c]);
    }
    if (odd) return -1;
    fa_row_softmax_plain_x(a, x, srow, m, lv, corr_out);
    return 1;
}

#if defined(FA_HAVE_GT_BITS) && FA_SCV == FA_NCV && FA_MR <= VLEN
#define FA_HAVE_PLAIN_TILE 1
/*
 * A full float32 score tile (FA_MR rows x the whole key block, every row
 * seeing every key) of plain rows with the softmax done on its
 * accumulators. The same FMA chain as fa_score_tile_full, then per row
 * fa_row_softmax_plain's arithmetic (the same bits) laid out for the
 * tile: no store and reload of the scores, no branch per row on whether
 * its max moved (the row's max always taken: max(m, block max) is the
 * same m_new), and the factors exp(m - m_new) of the tile's rows in one
 * vf_exp instead of one each. Returns 0 with nothing written when a logit
 * is NaN or +-inf (the caller scores the tile again and gives its rows to
 * the row pass, as before); else 1, the probabilities at s + r * FA_BC,
 * each row's state (m, lv) updated and corr[r] its accumulator's factor.
 */
/* The products of a full float32 score tile (FA_MR rows x the whole key
 * block) into acc, kept in registers: fa_score_tile_full's chain. */
static inline void fa_score_f32_acc(int64_t nd, const float *qp, const float *kt,
                                    vf acc[FA_MR][FA_NCV]) {
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) acc[r][c] = vf_zero();
    for (int64_t d = 0; d < nd; d++) {
        vf kv[FA_NCV];
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) kv[c] =
            FA_F32_LOAD(kt + d * FA_BC + c * VLEN);
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
            vf qb = FA_F32_SET1(qp[d * FA_BR + r]);
            _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) acc[r][c] =
                FA_F32_MAC(acc[r][c], qb, kv[c]);
        }
    }
}

static inline int fa_score_plain_tile(const mha_attn_args *a, int64_t nd, const float *qp,
                                      const float *kt, float *s, float *m, float *lv, float *corr) {
    vf acc[FA_MR][FA_NCV];
    fa_score_f32_acc(nd, qp, kt, acc);
    /* logits; a tile holding a NaN or +-inf goes back to the row pass */
    const vf vscale = vf_set1(a->scale);
    unsigned odd = 0;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) {
            acc[r][c] = vf_mul(acc[r][c], vscale);
            odd |= vf_nonfinite_bits(acc[r][c]);
        }
    }
    if (odd) return 0;
    /* new maxima without a branch per row: max(m, the block's max) is
     * fa_row_softmax_plain's m_new (it takes the block's max only when a
     * lane beats m); the factors exp(m - m_new) of the FMA_MR rows in one
     * vf_exp, lane r for row r (vf_exp works lane by lane: the value
     * fa_row_update computes alone; 1 exactly where m did not move, 0
     * while m was -inf) */
    _Alignas(64) float dm[VLEN] = {0}, e[VLEN];
    float m_new[FA_MR];
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        vf vmax = acc[r][0];
        _Pragma("GCC unroll 4") for (int c = 1; c < FA_NCV; c++) vmax = vf_max(vmax, acc[r][c]);
        const float h = vf_hmax(vmax);
        m_new[r] = h > m[r] ? h : m[r];
        dm[r] = m[r] == -INFINITY ? 0.0f : m[r] - m_new[r];
    }
    vf_store(e, vf_exp(vf_load(dm)));
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        const float cr = m[r] == m_new[r] ? 1.0f : m[r] == -INFINITY ? 0.0f : e[r];
        const vf vneg_m = vf_set1(-m_new[r]);
        vf psum = vf_zero();
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) {
            const vf p = vf_exp(vf_add(acc[r][c], vneg_m));
            psum = vf_add(psum, p);
            vf_store(s + r * FA_BC + c * VLEN, p);
        }
        vf_store(lv + r * VLEN, vf_fma(vf_load(lv + r * VLEN), vf_set1(cr), psum));
        m[r] = m_new[r];
        corr[r] = cr;
    }
    return 1;
}
#endif
#endif

#if defined(FA_HAVE_EXP2) && defined(FA_HAVE_NONFINITE_BITS) && defined(FA_HAVE_GT_BITS)
#define FA_HAVE_LAZY_MAX 1
/* How far (in base 2) a probability may pass 1 before the row takes a new
 * reference max: p <= 2^8, so l and acc stay far from overflow. */
#define FA_LAZY_SLACK 8.0f
/* A row whose reference max times c2 is this large in size (a logit of
 * 2^20 in base 2, 7e5 in base e: far past any trained model's) keeps the
 * max's raw dot as its reference m2 (in dot units: |m2| >= FA_LAZY_HUGE
 * says which) and takes t = (dot - m2) c2: the lazy form's m2 = max c2
 * rounded made the FMA's t at the max itself that rounding error, up to
 * half an ulp of m2 -- past 2^7 at 2^31, where 2^t overflowed (or
 * underflowed for every key: a row of 0); and rounding dot c2 first would
 * merge dots an ulp apart that the reference's logits keep apart. Its thr
 * is the max itself ((m2 + FA_LAZY_SLACK) / c2 rounds by more than the
 * slack there). The fused score tiles leave such rows to the row pass
 * (fa_row_softmax_lazy). */
#define FA_LAZY_HUGE 0x1p20f

/* bfloat16 rows (and float32 ones with FA_HAVE_EXP2_F32) with no softcap
 * or ALiBi, when 0 < scale log2(e) <= 1 (fa_lazy_ok), and no mask or one that only hides keys
 * (fa_mask_lazy): the online softmax with a lazy reference max, in
 * base 2 on the raw dot products, p = 2^(dot c2 - m2) with c2 = scale
 * log2(e). */
static inline int fa_lazy_ok(const mha_attn_args *a, float c2) {
#ifdef FA_HAVE_EXP2_F32
    const int served = 1; /* float32 too, with its own 2^t */
#else
    const int served = fa_bf16(a);
#endif
    return served && !kernel_alibi_slopes(a) && !(a->softcap > 0.0f) && c2 > 0.0f && c2 <= 1.0f;
}

/* The lazy form's 2^t: bfloat16's short vf_exp2, float32's vf_exp2_f32
 * (fine: float32 accuracy) where the backend has it. */
static inline vf fa_exp2(int fine, vf t) {
#ifdef FA_HAVE_EXP2_F32
    if (fine) return vf_exp2_f32(t);
#endif
    (void)fine;
    return vf_exp2(t);
}

/* A mask term at or below this is a padding fill (finfo.min, which the
 * host passes as the next float up so that a row of such keys alone still
 * averages them, or -1e30): beside a key of term 0 its weight is
 * exp(scale dot + term - max) = 0 for scores below 1e29 in size. */
#define FA_MASK_FILL (-1e30f)

/* The terms of a row's mask over keys [0, n) (mrow[j * m_sk]): the first
 * key whose term is neither 0, nor hidden (<= -FLT_MAX, -inf to the
 * kernels) nor a fill (bad), the first of term 0 (zero) and the first fill
 * (fill), each n when there is none. */
typedef struct fa_mask_scan {
    int64_t bad, zero, fill;
} fa_mask_scan;

static inline fa_mask_scan fa_mask_scan_row(const mha_attn_args *a, const float *mrow, int64_t n) {
    fa_mask_scan m = {n, n, n};
    for (int64_t j = 0; j < n; j++) {
        const float v = mrow[j * a->m_sk];
        if (v == 0.0f) {
            if (m.zero == n) m.zero = j;
        } else if (v <= FA_MASK_FILL && !kernel_mask_hides(v)) {
            if (m.fill == n) m.fill = j;
        } else if (!kernel_mask_hides(v)) {
            m.bad = j;
            break;
        }
    }
    return m;
}

/* Whether a row that sees keys [0, n) takes the lazy form under its mask
 * (scanned over at least n keys): every term 0, hidden or a fill, and a
 * key of term 0 beside any fill. The lazy form hides fills as it hides
 * -inf (fa_row_softmax_lazy), and a hidden key is a 0 probability as a
 * key the row lacks is, so the row's bits are those of the row without
 * them: a batch item's masked padding gives the item alone. A row of fills
 * alone (which the graph averages) keeps fa_row_softmax. */
static inline int fa_mask_lazy(const fa_mask_scan *m, int64_t n) {
    return n <= m->bad && (m->fill >= n || m->zero < n);
}

/* A term at or above this in size keeps a general mask's row in
 * fa_row_softmax: its term log2(e) could overflow to an infinity the
 * graph's logit does not have. */
#define FA_MASK_GENERAL_MAX 1e30f

/* Whether a row that sees keys [0, n) under a general additive mask
 * (terms other than 0, hidden and fills: a bias, a relative position
 * table) takes the lazy form in logit units (fa_row_softmax_lazy's
 * general form): every term hidden or of size below FA_MASK_GENERAL_MAX
 * (no fill, no NaN, no infinity but -inf). */
static inline int fa_mask_general(const mha_attn_args *a, const float *mrow, int64_t n) {
    int64_t j = 0;
    if (a->m_sk == 1) {
        /* whole vectors: a lane is refused when NaN or +inf, above the
         * bound, or between -FLT_MAX and minus the bound (a fill) */
        const vf hi = vf_set1(FA_MASK_GENERAL_MAX), lo = vf_set1(-FA_MASK_GENERAL_MAX);
        const vf hide = vf_set1(-FLT_MAX);
        for (; j + VLEN <= n; j += VLEN) {
            const vf v = vf_load(mrow + j);
            if (vf_bad_bits(v) | vf_gt_bits(v, hi) | (vf_gt_bits(lo, v) & vf_gt_bits(v, hide)))
                return 0;
        }
    }
    for (; j < n; j++) {
        const float v = mrow[j * a->m_sk];
        if (!kernel_mask_hides(v) && !(fabsf(v) < FA_MASK_GENERAL_MAX)) return 0;
    }
    return 1;
}

/*
 * One row meets one key block in the lazy form. The exact online softmax
 * takes a new max m whenever a block holds a larger score (a horizontal
 * max, an exp for the factor, and a rescale of the row's accumulator in
 * P.V: ~3 times per row in 16 blocks of random data, each a mispredicted
 * branch); here the reference m2 moves only when a dot passes *thr =
 * (m2 + FA_LAZY_SLACK) / c2, so p may reach 2^FA_LAZY_SLACK instead of 1.
 * bfloat16 rounds p relative to its own size, so p / l and the bound
 * against the scalar reference are unchanged; the row's arithmetic still
 * depends on its own blocks only (split-invariant). srow [BC]: raw dots in
 * (lanes past nv hidden), probabilities out as fa_store_p; m2 starts at
 * -inf and *thr at -inf. mrow: the row's mask (fa_mask_lazy: every term
 * it reads 0, hidden or a fill) or NULL: a hidden or filled key's dot
 * becomes -inf (a NaN or +inf one at a fill still poisons the row), the
 * others stay (x + 0 is x but for a zero's sign, which 2^(x c2 - m2) does
 * not see). Returns 0 when the block shows the row nothing (state
 * untouched) or a dot is NaN or +inf (*poisoned set), else 1 with *corr
 * the accumulator's factor (1 unless m2 moved). A -inf dot is a 0
 * probability, as in fa_row_softmax.
 *
 * general (float32 rows under a general additive mask, fa_mask_general):
 * the same in logit units of base 2, x = dot c2 + term log2(e) (a hidden
 * key -inf; NaN or +inf poisons the row, as the graph's logit does), then
 * the steps above with c2 taken as 1: m2 the block's max x, thr = m2 +
 * FA_LAZY_SLACK, p = 2^(x - m2) (an FMA by 1 is that subtraction, exact).
 */
static inline int fa_row_softmax_lazy(float c2, int64_t nv, float *srow, float *m2, float *thr,
                                      float *lv, float *corr_out, int *poisoned,
                                      const mha_attn_args *a, const float *mrow, int64_t j0,
                                      int general) {
    vf x[FA_NCV];
    unsigned bad = 0;
    if (general) {
        const vf vc = vf_set1(c2), vlog2e = vf_set1(FA_LOG2E);
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
            const int64_t lanes = nv - (int64_t)c * VLEN;
            vf t = vf_mul(vf_load(srow + c * VLEN), vc);
            if (lanes > 0)
                t = vf_hide_masked(t, vf_mul(fa_mask_vec(a, mrow, j0, c, lanes), vlog2e));
            if (lanes < VLEN) t = vf_hide_tail(t, lanes);
            bad |= vf_bad_bits(t);
            x[c] = t;
        }
        c2 = 1.0f; /* x is in logit units already */
    }
    _Pragma("GCC unroll 8") for (int c = 0; !general && c < FA_NCV; c++) {
        vf t = vf_load(srow + c * VLEN);
        const int64_t lanes = nv - (int64_t)c * VLEN;
        vf mv = vf_zero();
        if (mrow && lanes > 0) {
            /* dot + term as fa_row_softmax adds it: a NaN or +inf dot at a
             * fill poisons the row, as in the graph; a hidden key is -inf */
            mv = fa_mask_vec(a, mrow, j0, c, lanes);
            t = vf_hide_masked(t, mv);
        }
        if (lanes < VLEN) t = vf_hide_tail(t, lanes); /* stale lanes never read as scores */
        bad |= vf_bad_bits(t);
        /* then a fill's key hidden too: its term times 2^30 is -inf
         * (2^30 1e30 > FLT_MAX), a 0 stays 0 (x + 0 is x) */
        if (mrow && lanes > 0) t = vf_hide_masked(t, vf_mul(mv, vf_set1(0x1p30f)));
        x[c] = t;
    }
    vf vmax;
    if (!fa_block_max(x, bad, poisoned, &vmax)) return 0;
    const int fine = !fa_bf16(a);
    float mn = *m2, corr = 1.0f;
    int huge = !(fabsf(mn) < FA_LAZY_HUGE); /* *m2 a raw reference (or -inf) */
    if (vf_gt_bits(vmax, vf_set1(*thr))) {
        /* past the slack, or the row's first visible key: the block's max
         * is the new reference (finite: c2 <= 1 and the max is finite) */
        const float xm = vf_hmax(vmax);
        const int was_huge = huge;
        mn = xm * c2;
        huge = !(fabsf(mn) < FA_LAZY_HUGE);
        if (*m2 != -INFINITY) {
            /* the factor's exponent, old reference minus new in base 2 */
            const float dt = !was_huge && !huge ? *m2 - mn
                             : !was_huge        ? fmaf(-xm, c2, *m2)
                             : huge             ? (*m2 - xm) * c2
                                                : fmaf(*m2, c2, -mn);
            _Alignas(64) float e[VLEN];
            vf_store(e, fa_exp2(fine, vf_set1(dt)));
            corr = e[0];
        } else {
            corr = 0.0f;
        }
        if (huge) mn = xm;
        *thr = huge ? xm : (mn + FA_LAZY_SLACK) / c2;
    } else if (mn == -INFINITY) {
        return 0;
    }
    float negm = -mn;
    if (huge) {
        /* a raw reference: t = (dot - m2) c2, 0 at the max itself */
        const vf vc = vf_set1(c2), vneg = vf_set1(negm);
        _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) x[c] =
            vf_mul(vf_add(x[c], vneg), vc);
        c2 = 1.0f, negm = 0.0f;
    }
    const vf vc = vf_set1(c2), vneg = vf_set1(negm);
    vf psum = vf_zero();
    _Pragma("GCC unroll 8") for (int c = 0; c < FA_NCV; c++) {
        x[c] = fa_exp2(fine, vf_fma(x[c], vc, vneg)); /* -inf -> 0 */
        psum = vf_add(psum, x[c]);
    }
    fa_store_p(a, x, srow);
    vf_store(lv, vf_fma(vf_load(lv), vf_set1(corr), psum));
    *m2 = mn;
    *corr_out = corr;
    return 1;
}

/* Whether a lane of a score tile's row r (FA_MR x FA_SCV accumulators)
 * passes thr[r]: the tile's reference max must move. */
static inline unsigned fa_tile_over(vf acc[FA_MR][FA_SCV], const float *thr) {
    unsigned over = 0;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        vf vmax = acc[r][0];
        _Pragma("GCC unroll 4") for (int c = 1; c < FA_SCV; c++) vmax = vf_max(vmax, acc[r][c]);
        over |= vf_gt_bits(vmax, vf_set1(thr[r]));
    }
    return over;
}

/* A score tile's lazy probabilities in place, acc = 2^(acc c2 - m2)
 * (negm [FA_MR]: -m2; fine: float32's exp), each row's sum over its
 * vectors in key order added to psum[r]; returns a bit per row whose sum
 * is not finite (a NaN dot). */
static inline unsigned fa_tile_exp2(vf acc[FA_MR][FA_SCV], const float *negm, float c2, vf *psum,
                                    int fine) {
    const vf vc = vf_set1(c2);
    unsigned bad = 0;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        const vf vneg = vf_set1(negm[r]);
        vf ps = psum[r];
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCV; c++) {
            acc[r][c] = fa_exp2(fine, vf_fma(acc[r][c], vc, vneg));
            ps = vf_add(ps, acc[r][c]);
        }
        psum[r] = ps;
        bad |= vf_nonfinite_bits(ps) ? 1u << r : 0u;
    }
    return bad;
}

#ifdef FA_HAVE_BF16_DOT
#define FA_HAVE_FUSED_TILE 1
/*
 * A full bfloat16 score tile (FA_MR rows x FA_SCV vectors of keys: one
 * column piece of a key block every row sees whole) with the lazy softmax
 * done on its accumulators, for rows whose reference m2 is set: the scores
 * never go to memory and back, and the block skips fa_row_softmax_lazy.
 * The same operations on the same values as there, piece by piece (t =
 * dot c2 - m2 by one FMA, 2^t, the sum over the vectors in key order
 * carried in psum across the pieces, neighbours paired), so a row gets the
 * same bits whichever path its tile took. Returns 0 -- psum partly
 * updated, nothing of the row state touched -- when a dot passes its row's
 * thr (m2 must move) or a sum is not finite (a NaN or +inf dot): the caller
 * then scores the tile again and gives it to fa_row_softmax_lazy. Else 1,
 * the probabilities stored as pairs at p (row r at p + r * FA_BC, this
 * piece's pairs at its offset). negm [FA_MR]: -m2; thr [FA_MR]. Not
 * inlined: inside fa_query_block the compiler kept other values in zmm
 * registers across the product loop and one of the 24 accumulators went
 * to the stack, a store and reload in every step's dependency chain (the
 * float32 fused tile's lesson; docs/PERFORMANCE.md, "bf19").
 */
__attribute__((noinline)) static int fa_score_bf16_fused(int64_t nd, const uint32_t *qp,
                                                         const uint32_t *kt, uint32_t *p,
                                                         const float *negm, const float *thr,
                                                         float c2, vf *psum) {
    vf acc[FA_MR][FA_SCV];
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCV; c++) acc[r][c] = vf_zero();
    for (int64_t d = 0; d < nd; d++) {
        vbf kv[FA_SCV];
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCV; c++) kv[c] =
            vbf_load(kt + d * FA_BC + c * VLEN);
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
            vbf qb = vbf_set1(qp[d * FA_BR + r]);
            _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCV; c++) acc[r][c] =
                vf_dot_bf16(acc[r][c], qb, kv[c]);
        }
    }
    if (fa_tile_over(acc, thr)) return 0;
    const unsigned bad = fa_tile_exp2(acc, negm, c2, psum, 0);
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_SCV; c += 2)
            vbf_store(p + r * FA_BC + c / 2 * VLEN, vbf_pair_adjacent(acc[r][c], acc[r][c + 1]));
    return !bad;
}
#endif

#if defined(FA_HAVE_EXP2_F32) && FA_SCV == FA_NCV && FA_MR <= VLEN
#define FA_HAVE_FUSED_F32 1
/*
 * A full float32 score tile (FA_MR rows x the whole key block, every row
 * seeing every key) with the lazy softmax done on its accumulators:
 * fa_row_softmax_lazy's operations on the same values, so a row gets the
 * same bits whichever path its tile took. The products are
 * fa_score_tile_full's chain; then per row r:
 *
 *   vmax = max over the key vectors (lane by lane, vectors ascending)
 *   if a lane of vmax passes thr[r] (the row's first block: thr = -inf):
 *     mn = hmax(vmax) c2; corr = m2 == -inf ? 0 : 2^(m2 - mn);
 *     thr = (mn + FA_LAZY_SLACK) / c2
 *   else mn = m2, corr = 1
 *   p = 2^(dot c2 - mn) (one FMA, vf_exp2_f32); l = l corr + sum of p
 *   (the vectors in key order)
 *
 * so the first key block of a row and a block that moves its reference
 * stay in registers too (at S 128 the first block is half the blocks; the
 * row pass stored the dots, loaded them again and took a branch per row).
 * The factors of the rows that moved a set reference come from one
 * vf_exp2_f32, lane r for row r (it works lane by lane: the value the row
 * pass computes alone). Returns 1 with the probabilities at s + r *
 * FA_BC, m2, thr and lv [FA_MR][VLEN] updated and corr[r] each row's
 * accumulator factor; -1 with the row state untouched and s holding
 * nothing usable when a row's sum is not finite (a NaN or +inf dot, or a
 * row of -inf ones) or a row's new reference is huge (FA_LAZY_HUGE; the
 * caller passes no row that has one): the caller scores the tile again
 * for the row pass, which poisons or skips those rows, or takes the huge
 * reference's t. The softmax on the accumulators (fa_f32_fused_softmax)
 * serves two product loops, each in its own function: fa_score_f32_fused
 * (the Q block transposed) and fa_score_f32_fused_q (Q read in place, the
 * short-head path). Not inlined: in fa_query_block the
 * compiler kept the exp's constants in registers across the tiles, and
 * two of the 24 accumulators went to the stack in the product loop (W3's
 * node 0.99 of the plain tile's time instead of ~0.9).
 */
__attribute__((always_inline)) static inline int fa_f32_fused_softmax(vf acc[FA_MR][FA_NCV],
                                                                      float *s, float *m2,
                                                                      float *thr, float *lv,
                                                                      float *corr, float c2) {
    _Alignas(64) float dm[VLEN] = {0}, e[VLEN];
    float mn[FA_MR], negm[FA_MR];
    unsigned over = 0, moved = 0; /* rows taking a new reference; those that had one */
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        vf vmax = acc[r][0];
        _Pragma("GCC unroll 4") for (int c = 1; c < FA_NCV; c++) vmax = vf_max(vmax, acc[r][c]);
        mn[r] = m2[r];
        if (vf_gt_bits(vmax, vf_set1(thr[r]))) {
            over |= 1u << r;
            mn[r] = vf_hmax(vmax) * c2;
            if (m2[r] != -INFINITY) {
                moved |= 1u << r;
                dm[r] = m2[r] - mn[r];
            }
        }
        negm[r] = -mn[r];
    }
    if (over) {
        /* a row taking a huge reference: the row pass's t (rows within the
         * bound as lanes, one test for the tile) */
        const vf v = vf_load_part(mn, FA_MR);
        const unsigned within =
            vf_gt_bits(v, vf_set1(-FA_LAZY_HUGE)) & vf_gt_bits(vf_set1(FA_LAZY_HUGE), v);
        if (over & ~within) return -1;
    }
    if (moved) vf_store(e, vf_exp2_f32(vf_load(dm)));
    vf psum[FA_MR];
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) psum[r] = vf_zero();
    if (fa_tile_exp2(acc, negm, c2, psum, 1)) return -1;
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++)
            vf_store(s + r * FA_BC + c * VLEN, acc[r][c]);
        const float cr = moved >> r & 1u ? e[r] : over >> r & 1u ? 0.0f : 1.0f;
        vf_store(lv + r * VLEN, vf_fma(vf_load(lv + r * VLEN), vf_set1(cr), psum[r]));
        if (over >> r & 1u) thr[r] = (mn[r] + FA_LAZY_SLACK) / c2;
        m2[r] = mn[r];
        corr[r] = cr;
    }
    return 1;
}

/* (unused where fa_w3_20.h's fa_sch_tile takes its place: attn_tile_bench
 * measures the two side by side) */
__attribute__((noinline, unused)) static int fa_score_f32_fused(int64_t nd, const float *qp,
                                                                const float *kt, float *s,
                                                                float *m2, float *thr, float *lv,
                                                                float *corr, float c2) {
    vf acc[FA_MR][FA_NCV];
    fa_score_f32_acc(nd, qp, kt, acc);
    return fa_f32_fused_softmax(acc, s, m2, thr, lv, corr, c2);
}

/* The products of a full float32 score tile with Q read where it is (row r
 * of the tile at q + r * qs, d contiguous): fa_score_f32_acc's chain on
 * the same values, so the same bits, without the Q block's transpose. */
#define FA_DEFINE_SCORE_Q(NAME, NV)                                                                \
    static inline void NAME(int64_t nd, const float *q, int64_t qs, const float *kt,               \
                            vf acc[FA_MR][NV]) {                                                   \
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)                                   \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) acc[r][c] = vf_zero();            \
        for (int64_t d = 0; d < nd; d++) {                                                         \
            vf kv[NV];                                                                             \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) kv[c] =                           \
                vf_load(kt + d * FA_BC + c * VLEN);                                                \
            _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {                             \
                const vf qb = vf_set1(q[r * qs + d]);                                              \
                _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++) acc[r][c] =                   \
                    vf_fma(qb, kv[c], acc[r][c]);                                                  \
            }                                                                                      \
        }                                                                                          \
    }
FA_DEFINE_SCORE_Q(fa_score_q_acc, FA_NCV)
/* The dot products of a key block's first NV vectors for a full tile of
 * rows, Q in place, stored at s + r * FA_BC: the narrow tiles' chain (the
 * same bits as fa_score_rows on the transposed block). */
#define FA_DEFINE_SCORE_Q_STORE(NAME, NV)                                                          \
    FA_DEFINE_SCORE_Q(NAME##_acc, NV)                                                              \
    static inline void NAME(int64_t nd, const float *q, int64_t qs, const float *kt, float *s) {   \
        vf acc[FA_MR][NV];                                                                         \
        NAME##_acc(nd, q, qs, kt, acc);                                                            \
        _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)                                   \
            _Pragma("GCC unroll 4") for (int c = 0; c < NV; c++)                                   \
                vf_store(s + r * FA_BC + c * VLEN, acc[r][c]);                                     \
    }
FA_DEFINE_SCORE_Q_STORE(fa_score_q_v1, 1)
FA_DEFINE_SCORE_Q_STORE(fa_score_q_v2, 2)
FA_DEFINE_SCORE_Q_STORE(fa_score_q_v3, 3)
FA_DEFINE_SCORE_Q_STORE(fa_score_q_v4, 4)

/* fa_score_f32_fused with Q read in place (fa_score_q_acc) */
__attribute__((noinline)) static int fa_score_f32_fused_q(int64_t nd, const float *q, int64_t qs,
                                                          const float *kt, float *s, float *m2,
                                                          float *thr, float *lv, float *corr,
                                                          float c2) {
    vf acc[FA_MR][FA_NCV];
    fa_score_q_acc(nd, q, qs, kt, acc);
    return fa_f32_fused_softmax(acc, s, m2, thr, lv, corr, c2);
}

/* fa_score_q_v1..v4 by the key vectors nv (1 to 4) */
static inline void fa_score_q_narrow(int64_t nd, const float *q, int64_t qs, const float *kt,
                                     float *s, int nv) {
    if (nv == 1)
        fa_score_q_v1(nd, q, qs, kt, s);
    else if (nv == 2)
        fa_score_q_v2(nd, q, qs, kt, s);
    else if (nv == 3)
        fa_score_q_v3(nd, q, qs, kt, s);
    else
        fa_score_q_v4(nd, q, qs, kt, s);
}
#endif

#include "common/fa_w3_20.h" /* FA_HAVE_SCHED_F32: the scheduled fused tile */
#ifdef FA_HAVE_SCHED_F32
/* A tile fa_sch_tile gave back with its dots at s (a row's dots pass its
 * thr): fa_score_f32_fused's softmax on them, 1 or -1 as there. Not
 * inlined: fa_sch_tile's caller keeps no accumulators. */
__attribute__((noinline)) static int fa_f32_fused_stored(float *s, float *m2, float *thr, float *lv,
                                                         float *corr, float c2) {
    vf acc[FA_MR][FA_NCV];
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) acc[r][c] =
            vf_load(s + r * FA_BC + c * VLEN);
    return fa_f32_fused_softmax(acc, s, m2, thr, lv, corr, c2);
}

/* A pending tile whose sums failed (fa_sch_finish -1): its rows leave the
 * fused ones (n_pdone: the block's count of them) and its dots are made
 * again at s for the row pass, as the scoring loop makes a tile's that
 * the fused tile sent back */
static inline void fa_sch_undo(int64_t dk, const float *qp, const float *ktb, float *s, char *fused,
                               int64_t *n_pdone, int64_t r0) {
    fa_score_tile_full(dk, qp + r0, ktb, s + r0 * FA_BC);
    for (int r = 0; r < FA_MR; r++)
        fused[r0 + r] = 0;
    *n_pdone -= FA_MR;
}
#endif

#ifdef FA_HAVE_FUSED_TILE
/* A whole bfloat16 score tile's lazy softmax on its accumulators, piece by
 * piece: 1 done (psum[r] added to by each row's sum), -1 nothing usable
 * written (score it again for the row pass). */
static inline int fa_fused_tile(int64_t dk, const float *qp, const float *ktb, float *s,
                                const float *negm, const float *thr, float c2, vf *psum) {
    int ok = 1;
    for (int c0 = 0; ok && c0 < FA_NCV; c0 += FA_SCV)
        ok = fa_score_bf16_fused((dk + 1) / 2, (const uint32_t *)(const void *)qp,
                                 (const uint32_t *)(const void *)ktb + c0 * VLEN,
                                 (uint32_t *)(void *)s + c0 / 2 * VLEN, negm, thr, c2, psum);
    return ok ? 1 : -1;
}
#endif
#endif

/*
 * Query rows [i0, i0 + br) of head (b, h), br <= FA_BR. kt already holds
 * the kv head g = h / (Hq / Hkv) for at least the keys these rows may see;
 * its V rows are at vp, vs floats apart (the packed copy, or V itself).
 * Writes O[b, h, i0:i0+br, :].
 */
static inline void fa_query_block(const mha_attn_args *a, const fa_layout *L, float *ws,
                                  const float *vp, int64_t vs, int64_t b, int64_t h, int64_t i0,
                                  int64_t br) {
    const int64_t dk = a->dk, dvp = L->dvp;
    const float *qb = a->q + b * a->q_sb + h * a->q_sh;
    float *kt = ws + L->kt, *qp = ws + L->qp, *s = ws + L->s;
    float *acc = ws + L->acc, *mx = ws + L->ml, *lv = ws + L->lv;
    float *pad = ws + L->pad;
    int64_t row_end[FA_BR], live[FA_BR], live_nv[FA_BR];
    int poisoned[FA_BR];
    float corr[FA_BR];
    fa_alibi alibi[FA_BR];
    const float *slopes = kernel_alibi_slopes(a);
#ifdef FA_HAVE_NONFINITE_BITS
    /* rows with no softcap, ALiBi or mask take fa_row_softmax_plain */
    const int plain = !slopes && !a->mask && !(a->softcap > 0.0f);
#endif
#ifdef FA_HAVE_LAZY_MAX
    /* bfloat16 rows (float32 too with FA_HAVE_EXP2_F32) with no mask or one
     * that only hides keys: the lazy max (lazy_row, set with the rows'
     * ends); mx then holds m2, thr the dots past which m2 moves */
    const float c2 = a->scale * FA_LOG2E;
    const int lazy = fa_lazy_ok(a, c2);
    float thr[FA_BR];
    char lazy_row[FA_BR];
#endif
#ifdef FA_HAVE_PLAIN_TILE
    /* float32 plain rows: whole score tiles do their softmax on their
     * accumulators (fa_score_plain_tile); pdone / pcorr: the rows of this
     * key block it did and their factors (pcorr: the float32 fused tile's
     * too) */
    int plain_tile = plain && !fa_bf16(a);
#ifdef FA_HAVE_LAZY_MAX
    plain_tile &= !lazy; /* float32 in the lazy form (FA_HAVE_EXP2_F32) */
#endif
    char pdone[FA_BR];
    float pcorr[FA_BR];
    /* A key block whose rows the plain tile (or the float32 fused one)
     * all did, no row poisoned yet, skips pass 2: its P.V list is then
     * every row in order, each seeing the whole block, with the tiles'
     * factors -- the list pass 2 would build, entry by entry (W3's node
     * -1.2 %, its layer -1.1 %). */
    int64_t all_rows[FA_BR], all_nv[FA_BR];
    int any_poisoned = 0;
    for (int64_t r = 0; r < br; r++) {
        all_rows[r] = r;
        all_nv[r] = FA_BC;
    }
#endif

    for (int64_t t = 0; t < FA_BC + dvp; t++)
        pad[t] = 0.0f;

    /* pass 0: Q block transposed [dk][BR], fresh state, for the rows the
     * block has only (a short block -- one query of a decode step -- costs
     * what it uses; the score tiles read no row past br) */
    int64_t blk_end = 0;
    if (FA_PAIRS(a)) {
#ifdef FA_HAVE_BF16_DOT
        fa_bf20_pair_transpose(qb + i0 * a->q_ss, a->q_ss, br, dk, (uint32_t *)(void *)qp, FA_BR);
#endif
    } else {
        fa_transpose_rows(qb + i0 * a->q_ss, a->q_ss, br, dk, qp, FA_BR);
        if (fa_bf16(a))
            for (int64_t d = 0; d < dk; d++)
                fa_round_bf16(qp + d * FA_BR, br);
    }
    for (int64_t r = 0; r < br; r++) {
        row_end[r] = kernel_row_key_end(a, b, i0 + r);
        if (slopes) {
            alibi[r].slope = slopes[h];
            alibi[r].origin = kernel_alibi_origin(a, b, i0 + r);
            alibi[r].pos = kernel_alibi_pos(a, b);
        }
        if (row_end[r] > blk_end) blk_end = row_end[r];
        mx[r] = -INFINITY;
#ifdef FA_HAVE_LAZY_MAX
        thr[r] = -INFINITY;
#endif
        poisoned[r] = 0;
        vf_store(lv + r * VLEN, vf_zero());
        memset(acc + r * dvp, 0, (size_t)dvp * sizeof(float));
    }
#ifdef FA_HAVE_LAZY_MAX
    /* under a mask, the rows whose terms only hide keys (lazy_row 1), and
     * in float32 those under a general additive mask (lazy_row 2: the lazy
     * form in logit units): one scan for a mask shared by the rows (a key
     * padding row), else one per row */
    const int general = lazy && a->mask && !fa_bf16(a);
    if (lazy && a->mask && a->m_sq == 0) {
        const float *mrow = kernel_mask_row(a, b, h, i0);
        const fa_mask_scan ms = fa_mask_scan_row(a, mrow, blk_end);
        const int gen = general && fa_mask_general(a, mrow, blk_end);
        for (int64_t r = 0; r < br; r++)
            lazy_row[r] = (char)(fa_mask_lazy(&ms, row_end[r]) ? 1 : gen ? 2 : 0);
    } else {
        for (int64_t r = 0; r < br; r++) {
            fa_mask_scan ms = {0, 0, 0};
            const float *mrow = a->mask ? kernel_mask_row(a, b, h, i0 + r) : NULL;
            if (lazy && mrow) ms = fa_mask_scan_row(a, mrow, row_end[r]);
            lazy_row[r] = (char)(lazy && (!mrow || fa_mask_lazy(&ms, row_end[r])));
            if (!lazy_row[r] && general && fa_mask_general(a, mrow, row_end[r])) lazy_row[r] = 2;
        }
    }
#endif

    for (int64_t j0 = 0; j0 < blk_end; j0 += FA_BC) {
        const float *ktb = kt + (j0 / FA_BC) * dk * FA_BC;

        /* pass 1: scores of every row tile against this key block, over
         * the key vectors its rows may see (row_end grows with the row, so
         * the tile's last row sees most; vectors past them stay unwritten,
         * and pass 2 hides those lanes without reading them as scores) */
#if defined(FA_HAVE_FUSED_TILE) || defined(FA_HAVE_FUSED_F32)
        char fused[FA_BR] = {0}; /* rows whose block the fused tile did */
#endif
#ifdef FA_HAVE_SCHED_F32
        fa_sch_pend pend = {.on = 0, .r0 = 0};
#endif
#ifdef FA_HAVE_PLAIN_TILE
        int64_t n_pdone = 0; /* rows the plain tile (or the float32 fused one) did */
#endif
        for (int64_t r0 = 0; r0 < br; r0 += FA_MR) {
            const int64_t seen = row_end[(r0 + FA_MR < br ? r0 + FA_MR : br) - 1] - j0;
            if (seen <= 0) continue; /* no row of the tile sees this block */
            const int nv = seen >= FA_BC ? FA_NCV : (int)((seen + VLEN - 1) / VLEN);
#ifdef FA_HAVE_FUSED_F32
            /* float32: a whole tile of rows that all see every key of the
             * block, their first one too: scores and softmax at once */
            if (lazy && !a->mask && !fa_bf16(a) && r0 + FA_MR <= br && row_end[r0] - j0 >= FA_BC) {
                int ok = 1;
                for (int r = 0; r < FA_MR; r++) /* none with a huge reference (FA_LAZY_HUGE) */
                    ok &= !poisoned[r0 + r] &&
                          (mx[r0 + r] == -INFINITY || fabsf(mx[r0 + r]) < FA_LAZY_HUGE);
#ifdef FA_HAVE_SCHED_F32
                /* the exponentials of a tile keeping its references wait
                 * for the next tile's products (fa_w3_20.h) */
                int prev = 0;
                const int64_t pr0 = pend.r0;
                int done = ok ? fa_sch_tile(dk, qp + r0, ktb, s + r0 * FA_BC, mx + r0, thr + r0,
                                            lv + r0 * VLEN, pcorr + r0, c2, &pend, r0, &prev)
                              : 0;
                if (done == 3)
                    done = fa_f32_fused_stored(s + r0 * FA_BC, mx + r0, thr + r0, lv + r0 * VLEN,
                                               pcorr + r0, c2);
                if (prev < 0) fa_sch_undo(dk, qp, ktb, s, fused, &n_pdone, pr0);
                if (done > 0) {
#else
                if (ok && fa_score_f32_fused(dk, qp + r0, ktb, s + r0 * FA_BC, mx + r0, thr + r0,
                                             lv + r0 * VLEN, pcorr + r0, c2) == 1) {
#endif
                    for (int r = 0; r < FA_MR; r++)
                        fused[r0 + r] = 1;
                    n_pdone += FA_MR; /* pass 2 may skip */
                    continue;
                }
            }
#endif
#ifdef FA_HAVE_FUSED_TILE
            /* bfloat16 pairs: a whole tile of rows past their first block
             * that all see every key of it */
            if (lazy && !a->mask && FA_PAIRS(a) && j0 > 0 && r0 + FA_MR <= br &&
                row_end[r0] - j0 >= FA_BC) {
                int ok = 1;
                float negm[FA_MR];
                vf psum[FA_MR];
                for (int r = 0; r < FA_MR; r++) {
                    /* a set reference, not a huge one (FA_LAZY_HUGE) */
                    ok &= fabsf(mx[r0 + r]) < FA_LAZY_HUGE && !poisoned[r0 + r];
                    negm[r] = -mx[r0 + r];
                    psum[r] = vf_zero();
                }
                if (ok && fa_fused_tile(dk, qp + r0, ktb, s + r0 * FA_BC, negm, thr + r0, c2,
                                        psum) == 1) {
                    for (int r = 0; r < FA_MR; r++) {
                        float *l = lv + (r0 + r) * VLEN;
                        vf_store(l, vf_add(vf_load(l), psum[r]));
                        fused[r0 + r] = 1;
                    }
                    continue;
                }
            }
#endif
#ifdef FA_HAVE_PLAIN_TILE
            if (plain_tile) {
                /* a whole tile of rows that all see every key of it */
                const int done = r0 + FA_MR <= br && row_end[r0] - j0 >= FA_BC &&
                                 fa_score_plain_tile(a, dk, qp + r0, ktb, s + r0 * FA_BC, mx + r0,
                                                     lv + r0 * VLEN, pcorr + r0);
                for (int64_t r = r0; r < r0 + FA_MR && r < br; r++)
                    pdone[r] = (char)done;
                if (done) {
                    n_pdone += FA_MR;
                    continue;
                }
            }
#endif
            for (int c0 = 0; c0 < nv; c0 += FA_SCV) {
                const int w = nv - c0 < FA_SCV ? nv - c0 : FA_SCV; /* vectors of this piece */
                const int full = w == FA_SCV && r0 + FA_MR <= br;
                float *sp = s + r0 * FA_BC + c0 * VLEN;
#ifdef FA_HAVE_BF16_DOT
                if (FA_PAIRS(a)) {
                    const uint32_t *qt = (const uint32_t *)(const void *)qp + r0;
                    const uint32_t *kp = (const uint32_t *)(const void *)ktb + c0 * VLEN;
                    if (full)
                        fa_score_bf16_tile_full((dk + 1) / 2, qt, kp, sp);
                    else
                        fa_score_bf16_rows((dk + 1) / 2, qt, kp, sp, br - r0, w);
                    continue;
                }
#endif
                if (full)
                    fa_score_tile_full(dk, qp + r0, ktb + c0 * VLEN, sp);
                else
                    fa_score_rows(dk, qp + r0, ktb + c0 * VLEN, sp, br - r0, w);
            }
        }

#ifdef FA_HAVE_SCHED_F32
        if (pend.on) { /* the block's last pending tile */
            const int64_t pr0 = pend.r0;
            if (fa_sch_flush(&pend) < 0) fa_sch_undo(dk, qp, ktb, s, fused, &n_pdone, pr0);
        }
#endif
#ifdef FA_HAVE_PLAIN_TILE
        if (n_pdone == br && !any_poisoned) {
            /* a tile is done only when its first row, so every row of it,
             * sees the whole block (a fused tile's rows: none poisoned) */
            fa_pv_block(s, acc, pad, all_rows, all_nv, pcorr, br, vp + j0 * vs, vs, dvp);
            continue;
        }
#endif
        /* pass 2: per row, the online softmax update; the rows the block
         * shows something join the P.V list */
        int64_t n_live = 0;
        for (int64_t r = 0; r < br; r++) {
            int64_t nv = row_end[r] - j0;
            if (nv <= 0 || poisoned[r]) continue;
            if (nv > FA_BC) nv = FA_BC;
#ifdef FA_HAVE_PLAIN_TILE
            if (plain_tile && pdone[r]) {
                corr[n_live] = pcorr[r];
                live[n_live] = r;
                live_nv[n_live] = nv;
                n_live++;
                continue;
            }
#endif
#ifdef FA_HAVE_LAZY_MAX
            if (lazy_row[r]) {
#if defined(FA_HAVE_FUSED_TILE) || defined(FA_HAVE_FUSED_F32)
                if (fused[r]) {
#ifdef FA_HAVE_FUSED_F32
                    corr[n_live] = fa_bf16(a) ? 1.0f : pcorr[r]; /* float32: the tile's factor */
#else
                    corr[n_live] = 1.0f;
#endif
                    live[n_live] = r;
                    live_nv[n_live] = nv;
                    n_live++;
                    continue;
                }
#endif
                if (fa_row_softmax_lazy(c2, nv, s + r * FA_BC, &mx[r], &thr[r], lv + r * VLEN,
                                        &corr[n_live], &poisoned[r], a,
                                        kernel_mask_row(a, b, h, i0 + r), j0, lazy_row[r] == 2)) {
                    live[n_live] = r;
                    live_nv[n_live] = nv;
                    n_live++;
                }
                continue;
            }
#endif
#ifdef FA_HAVE_NONFINITE_BITS
            int shown = -1;
            if (plain && nv == FA_BC)
                shown =
                    fa_row_softmax_plain(a, s + r * FA_BC, &mx[r], lv + r * VLEN, &corr[n_live]);
            if (shown == 1) {
                live[n_live] = r;
                live_nv[n_live] = nv;
                n_live++;
                continue;
            }
#endif
            if (fa_row_softmax(a, kernel_mask_row(a, b, h, i0 + r), slopes ? &alibi[r] : NULL, j0,
                               nv, s + r * FA_BC, &mx[r], lv + r * VLEN, &corr[n_live],
                               &poisoned[r])) {
                live[n_live] = r;
                live_nv[n_live] = nv;
                n_live++;
            }
#ifdef FA_HAVE_PLAIN_TILE
            any_poisoned |= poisoned[r]; /* only fa_row_softmax poisons a row */
#endif
        }

        /* pass 3: acc = acc*corr + P.V */
        if (FA_PAIRS(a)) {
#ifdef FA_HAVE_BF16_DOT
            fa_pv_bf16_block(s, acc, pad, live, live_nv, corr, n_live,
                             (const uint32_t *)(const void *)vp + j0 / 2 * vs, vs, dvp);
#endif
        } else {
            fa_pv_block(s, acc, pad, live, live_nv, corr, n_live, vp + j0 * vs, vs, dvp);
        }
    }

    /* pass 4: normalise; a row that saw no key is 0, a poisoned row NaN */
    float *ob = a->o + b * a->o_sb + h * a->o_sh;
    for (int64_t r = 0; r < br; r++) {
        float *orow = ob + (i0 + r) * a->o_ss;
        const float l = vf_hsum(vf_load(lv + r * VLEN));
        if (poisoned[r]) {
            for (int64_t d = 0; d < a->dv; d++)
                orow[d] = NAN;
        } else if (l > 0.0f) {
            vf vl = vf_set1(l);
            int64_t d = 0;
            for (; d + VLEN <= a->dv; d += VLEN)
                vf_store(orow + d, vf_div(vf_load(acc + r * dvp + d), vl));
            if (d < a->dv)
                vf_store_part(orow + d, vf_div(vf_load(acc + r * dvp + d), vl), a->dv - d);
        } else {
            memset(orow, 0, (size_t)a->dv * sizeof(float));
        }
    }
}

/* A (b, h) whose Q, V and O rows take at most this many bytes has them
 * prefetched at its start (fa_attention_run) */
#define FA_PREFETCH_BYTES ((int64_t)256 << 10)

/* Prefetch into L2 of rows [0, rows) of row_bytes each, stride floats
 * apart (write: for a store). Bits: none change, only when lines arrive. */
static inline void fa_prefetch_rows(const float *p, int64_t stride, int64_t rows, int64_t row_bytes,
                                    int write) {
    for (int64_t r = 0; r < rows; r++) {
        const uintptr_t start = (uintptr_t)(const void *)(p + r * stride);
        for (uintptr_t c = start & ~(uintptr_t)63; c < start + (uintptr_t)row_bytes; c += 64) {
            if (write)
                __builtin_prefetch((const void *)c, 1, 2);
            else
                __builtin_prefetch((const void *)c, 0, 2);
        }
    }
}

#if defined(FA_HAVE_FUSED_F32) && FA_NCV == 4
#define FA_HAVE_SHORT 1
/* Keys up to which a head whose rows all see every key takes fa_short_head */
#define FA_SHORT_KEYS 256

/*
 * P.V of a tile of FA_PVR (= FA_MR) rows over every key at once, then the
 * division by l, the outputs stored straight to O: the accumulators stay in
 * registers from the first key to the store. p: the tile's probabilities
 * per key block, block jb's row r at p + (jb * FA_MR + r) * FA_BC; corr
 * [nb][FA_MR]: each block's factors; nkeys: the keys the tile's rows see
 * (the last row's); with ROWS, cnt [nb][FA_MR]: the keys of each block
 * each row takes (0: the row skips the block, its factor then 1), else
 * every row takes every key (cnt unused); vp:
 * V rows vs apart; l [FA_MR]: the rows' sums; o: row r at o + r * os, dv
 * columns. Columns [v0, v0 + W VLEN) of dvp. Each element's chain is
 * fa_pv_rows's across the blocks (acc*corr when a factor of the tile is not
 * 1, then the row's keys ascending, none past its count: a causal row's
 * later keys, whose V may hold anything, are never multiplied; the acc's
 * trip through memory between blocks was exact), then pass 4's division:
 * the same bits.
 */
#define FA_DEFINE_SHORT_PV(NAME, W, ROWS)                                                          \
    __attribute__((noinline)) static void NAME##_##W(                                              \
        const float *p, const float *corr, const unsigned char *cnt, int64_t nkeys,                \
        const float *vp, int64_t vs, int64_t v0, const float *l, float *o, int64_t os,             \
        int64_t dv) {                                                                              \
        vf x[FA_MR][W];                                                                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++)                                    \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[r][w] = vf_zero();               \
        for (int64_t j0 = 0, jb = 0; j0 < nkeys; j0 += FA_BC, jb++) {                              \
            const float *cb = corr + jb * FA_MR, *pb = p + jb * FA_MR * FA_BC;                     \
            const unsigned char *nr = ROWS ? cnt + jb * FA_MR : cnt;                               \
            int64_t lo = nkeys - j0 < FA_BC ? nkeys - j0 : FA_BC, hi = lo;                         \
            int scaled = 0;                                                                        \
            _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++) {                              \
                scaled |= cb[r] != 1.0f;                                                           \
                if (ROWS) lo = r == 0 || nr[r] < lo ? nr[r] : lo;                                  \
                if (ROWS) hi = r == 0 || nr[r] > hi ? nr[r] : hi;                                  \
            }                                                                                      \
            if (scaled) {                                                                          \
                _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++) {                          \
                    const vf c = vf_set1(cb[r]);                                                   \
                    _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[r][w] =                  \
                        vf_mul(x[r][w], c);                                                        \
                }                                                                                  \
            }                                                                                      \
            const float *vb = vp + j0 * vs + v0;                                                   \
            for (int64_t j = 0; j < lo; j++) { /* keys every row takes */                          \
                vf vv[W];                                                                          \
                _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) vv[w] =                        \
                    vf_load(vb + j * vs + w * VLEN);                                               \
                _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++) {                          \
                    const vf pj = vf_set1(pb[r * FA_BC + j]);                                      \
                    _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[r][w] =                  \
                        vf_fma(pj, vv[w], x[r][w]);                                                \
                }                                                                                  \
            }                                                                                      \
            for (int64_t j = lo; ROWS && j < hi; j++) { /* the rest: the rows that take key j */   \
                vf vv[W];                                                                          \
                _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) vv[w] =                        \
                    vf_load(vb + j * vs + w * VLEN);                                               \
                _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++) {                          \
                    if (j >= nr[r]) continue;                                                      \
                    const vf pj = vf_set1(pb[r * FA_BC + j]);                                      \
                    _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) x[r][w] =                  \
                        vf_fma(pj, vv[w], x[r][w]);                                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int r = 0; r < FA_MR; r++) {                                  \
            const vf vl = vf_set1(l[r]);                                                           \
            _Pragma("GCC unroll 8") for (int w = 0; w < W; w++) {                                  \
                const int64_t n = dv - (v0 + w * VLEN);                                            \
                if (n >= VLEN)                                                                     \
                    vf_store(o + r * os + v0 + w * VLEN, vf_div(x[r][w], vl));                     \
                else if (n > 0)                                                                    \
                    vf_store_part(o + r * os + v0 + w * VLEN, vf_div(x[r][w], vl), n);             \
            }                                                                                      \
        }                                                                                          \
    }
FA_DEFINE_SHORT_PV(fa_short_pv, 1, 0)
FA_DEFINE_SHORT_PV(fa_short_pv, 2, 0)
FA_DEFINE_SHORT_PV(fa_short_pv, 3, 0)
FA_DEFINE_SHORT_PV(fa_short_pv, 4, 0)

/*
 * The causal and masked rows of the short-head path. A row under an
 * additive mask takes the lazy form in one of two ways (fa_query_block's
 * lazy_row): 1 when every term it reads is 0, hidden or a fill (a key
 * padding mask of -inf or finfo.min), 2 in logit units when the terms are
 * a general additive mask of moderate size (BERT's (1 - m) -10000, a
 * bias); 0 otherwise, and then the exact row pass (fa_row_softmax) of the
 * block path. fa_short_rows_tile takes rows of mode 1 and 2 and a row's
 * own key end; heads whose rows all see every key with no mask keep
 * fa_short_tile (the general tile in their place cost 5-7 % of the core at
 * BERT's and MiniLM's shapes, paired, for reasons not found).
 */

/* The lazy form of a row that sees keys [0, n) under its mask row mrow:
 * fa_query_block's lazy_row for it (1 hides, 2 general, 0 neither). The
 * same value as there when the rows that share a mask row (m_sq 0) all
 * see the same keys: the block's scan over its last row's keys is then
 * this row's. */
static inline int fa_short_mask_mode(const mha_attn_args *a, const float *mrow, int64_t n) {
    const fa_mask_scan ms = fa_mask_scan_row(a, mrow, n);
    return fa_mask_lazy(&ms, n) ? 1 : fa_mask_general(a, mrow, n) ? 2 : 0;
}

/*
 * fa_score_f32_fused_q for a full tile of rows under a mask, all in the
 * same mode (mode 1 or 2; mrow[r]: row r's mask row): the dots in
 * registers, each row's terms of key block j0 applied as
 * fa_row_softmax_lazy applies them -- mode 1: dot + term with hidden keys
 * -inf, then the fills hidden too; mode 2: dot c2 + term log2(e), the
 * softmax then in logit units (c2 taken as 1) -- then
 * fa_f32_fused_softmax, whose steps are the row pass's on those logits: a
 * row gets the bits the row pass gives it. Returns 1 as
 * fa_score_f32_fused_q; -1 with the row state untouched when a logit is
 * NaN or +inf (the row pass poisons the row), a row sees nothing yet and
 * nothing here (every key hidden: the row pass skips it), or a new
 * reference is huge: the caller scores the block again for the row pass.
 */
__attribute__((noinline)) static int
fa_short_fused_masked(const mha_attn_args *a, int64_t nd, const float *q, int64_t qs,
                      const float *kt, float *s, float *m2, float *thr, float *lv, float *corr,
                      float c2, const float *const *mrow, int64_t j0, int mode) {
    vf acc[FA_MR][FA_NCV];
    fa_score_q_acc(nd, q, qs, kt, acc);
    unsigned bad = 0;
    const vf vc = vf_set1(c2), vlog2e = vf_set1(FA_LOG2E), vfill = vf_set1(0x1p30f);
    _Pragma("GCC unroll 16") for (int r = 0; r < FA_MR; r++) {
        _Pragma("GCC unroll 4") for (int c = 0; c < FA_NCV; c++) {
            const vf mv = fa_mask_vec(a, mrow[r], j0, c, VLEN);
            vf t;
            if (mode == 2) {
                t = vf_hide_masked(vf_mul(acc[r][c], vc), vf_mul(mv, vlog2e));
                bad |= vf_bad_bits(t);
            } else {
                t = vf_hide_masked(acc[r][c], mv);
                bad |= vf_bad_bits(t);
                t = vf_hide_masked(t, vf_mul(mv, vfill));
            }
            acc[r][c] = t;
        }
    }
    if (bad) return -1;
    return fa_f32_fused_softmax(acc, s, m2, thr, lv, corr, mode == 2 ? 1.0f : c2);
}

FA_DEFINE_SHORT_PV(fa_short_rows_pv, 1, 1)
FA_DEFINE_SHORT_PV(fa_short_rows_pv, 2, 1)
FA_DEFINE_SHORT_PV(fa_short_rows_pv, 3, 1)
FA_DEFINE_SHORT_PV(fa_short_rows_pv, 4, 1)

/* The end of a short-head tile (fa_short_tile, fa_short_rows_tile): each
 * row's sum l from its lane sums lv (0 when a row is refused: a non-positive
 * or NaN sum goes to the block path), then P.V by column groups of up to
 * FA_PVW vectors, divided by l and stored to O -- every row over all nkeys
 * keys when cnt is NULL, else each row over its own count per key block. */
static inline int fa_short_finish(const mha_attn_args *a, int64_t b, int64_t h, int64_t i0,
                                  int64_t dvp, const float *p, const float *corr,
                                  const unsigned char *cnt, int64_t nkeys, const float *vp,
                                  int64_t vs, const float *lv) {
    float l[FA_MR];
    for (int r = 0; r < FA_MR; r++) {
        l[r] = vf_hsum(vf_load(lv + r * VLEN));
        if (!(l[r] > 0.0f)) return 0;
    }
    float *o = a->o + b * a->o_sb + h * a->o_sh + i0 * a->o_ss;
    for (int64_t v0 = 0; v0 < dvp; v0 += FA_PVW * VLEN) {
        const int64_t w = (dvp - v0) / VLEN;
        if (cnt && w >= 4)
            fa_short_rows_pv_4(p, corr, cnt, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (cnt && w == 3)
            fa_short_rows_pv_3(p, corr, cnt, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (cnt && w == 2)
            fa_short_rows_pv_2(p, corr, cnt, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (cnt)
            fa_short_rows_pv_1(p, corr, cnt, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (w >= 4)
            fa_short_pv_4(p, corr, NULL, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (w == 3)
            fa_short_pv_3(p, corr, NULL, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (w == 2)
            fa_short_pv_2(p, corr, NULL, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
        else
            fa_short_pv_1(p, corr, NULL, nkeys, vp, vs, v0, l, o, a->o_ss, a->dv);
    }
    return 1;
}

/*
 * Rows [i0, i0 + FA_MR) of head (b, h) in the float32 lazy form, row r
 * seeing keys [0, e_r) (e_r = kernel_row_key_end: the same for every row,
 * or growing by row when causal) under no mask or one whose terms it reads
 * take the lazy form (mode: the rows' fa_short_mask_mode when they share a
 * mask row, else 0: each row's own). The key blocks any row sees in turn:
 * one every row sees whole (unless the rows' modes differ) through a fused
 * score tile (fa_score_f32_fused_q, Q read in place; under a mask
 * fa_short_fused_masked), the others -- a block some row sees in part or
 * not at all, or one the fused tile gave back -- scored and given row by
 * row to fa_row_softmax_lazy over the keys each row sees, a row the block
 * shows nothing skipping it; their probabilities kept per block, then one
 * P.V over the blocks with the accumulators in registers, each row over
 * its own keys, and the normalised rows stored to O (fa_short_rows_pv). The
 * operations of fa_query_block on the same values, so the same bits.
 * Returns 0 with O untouched when a row leaves the common case (a NaN or
 * infinite logit, a mask the lazy form does not take, a row that sees
 * nothing or sums to 0): the caller gives the rows to fa_query_block.
 */
static inline int fa_short_rows_tile(const mha_attn_args *a, const fa_layout *L, float *ws,
                                     const float *vp, int64_t vs, int64_t b, int64_t h, int64_t i0,
                                     int mode) {
    const int64_t dk = a->dk, dvp = L->dvp;
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i0 * a->q_ss;
    const float *kt = ws + L->kt;
    float *p = ws + L->s; /* [nb][FA_MR][FA_BC] <= [FA_BR][FA_BC] */
    const float c2 = a->scale * FA_LOG2E;
    float m2[FA_MR], thr[FA_MR], corr[FA_SHORT_KEYS / FA_BC * FA_MR];
    unsigned char cnt[FA_SHORT_KEYS / FA_BC * FA_MR];
    int64_t e[FA_MR], e_lo = INT64_MAX, e_hi = 0;
    const float *mrow[FA_MR];
    int rmode[FA_MR], same = 1;
    _Alignas(64) float lv[FA_MR * VLEN];
    const int64_t e0 = kernel_row_key_end(a, b, i0); /* every row's unless causal */
    for (int r = 0; r < FA_MR; r++) {
        e[r] = a->causal ? kernel_row_key_end(a, b, i0 + r) : e0;
        e_lo = e[r] < e_lo ? e[r] : e_lo;
        e_hi = e[r] > e_hi ? e[r] : e_hi;
        mrow[r] = NULL;
        rmode[r] = 0;
        if (a->mask) {
            mrow[r] = kernel_mask_row(a, b, h, i0 + r);
            rmode[r] = mode ? mode : fa_short_mask_mode(a, mrow[r], e[r]);
            if (!rmode[r]) return 0; /* the exact row pass's */
            same &= rmode[r] == rmode[0];
        }
        m2[r] = -INFINITY;
        thr[r] = -INFINITY;
        vf_store(lv + r * VLEN, vf_zero());
    }
    if (e_hi > FA_SHORT_KEYS) return 0;
    int64_t jb = 0;
    for (int64_t j0 = 0; j0 < e_hi; j0 += FA_BC, jb++) {
        const float *ktb = kt + jb * dk * FA_BC;
        float *pb = p + jb * FA_MR * FA_BC, *cb = corr + jb * FA_MR;
        unsigned char *nb = cnt + jb * FA_MR;
        if (same && j0 + FA_BC <= e_lo) {
            int ok = 1, rc = 0;
            for (int r = 0; r < FA_MR; r++) /* a huge reference is the row pass's */
                ok &= m2[r] == -INFINITY || fabsf(m2[r]) < FA_LAZY_HUGE;
            if (ok && rmode[0])
                rc = fa_short_fused_masked(a, dk, q, a->q_ss, ktb, pb, m2, thr, lv, cb, c2, mrow,
                                           j0, rmode[0]);
            else if (ok)
                rc = fa_score_f32_fused_q(dk, q, a->q_ss, ktb, pb, m2, thr, lv, cb, c2);
            if (rc == 1) {
                memset(nb, FA_BC, FA_MR);
                continue;
            }
        }
        /* the row pass: the key vectors the last row sees scored, then each row */
        const int64_t seen = e_hi - j0;
        fa_score_q_narrow(dk, q, a->q_ss, ktb, pb,
                          seen >= FA_BC ? FA_NCV : (int)((seen + VLEN - 1) / VLEN));
        for (int r = 0; r < FA_MR; r++) {
            const int64_t nv = e[r] - j0 < FA_BC ? e[r] - j0 : FA_BC;
            int poisoned = 0;
            nb[r] = 0;
            cb[r] = 1.0f;
            if (nv <= 0) continue;
            if (fa_row_softmax_lazy(c2, nv, pb + r * FA_BC, &m2[r], &thr[r], lv + r * VLEN, &cb[r],
                                    &poisoned, a, mrow[r], j0, rmode[r] == 2))
                nb[r] = (unsigned char)nv;
            else if (poisoned)
                return 0;
        }
    }
    return fa_short_finish(a, b, h, i0, dvp, p, corr, cnt, e_hi, vp, vs, lv);
}

/*
 * Rows [i0, i0 + FA_MR) of head (b, h) when every row sees keys [0,
 * nkeys) and takes the float32 lazy form with no mask: the key blocks'
 * score tiles in turn (fa_score_f32_fused, Q read in place; a last short
 * block through fa_row_softmax_lazy), their probabilities kept per block,
 * then one P.V over every key with the accumulators in registers and the
 * normalised rows stored to O (fa_short_pv). The operations of
 * fa_query_block on the same values, so the same bits. Returns 0 with O
 * untouched when a row leaves the common case (a NaN or infinite dot, a
 * huge reference, a row that sees nothing or sums to 0): the caller gives
 * the rows to fa_query_block.
 */
static inline int fa_short_tile(const mha_attn_args *a, const fa_layout *L, float *ws,
                                const float *vp, int64_t vs, int64_t b, int64_t h, int64_t i0,
                                int64_t nkeys) {
    const int64_t dk = a->dk, dvp = L->dvp;
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i0 * a->q_ss;
    const float *kt = ws + L->kt;
    float *p = ws + L->s; /* [nb][FA_MR][FA_BC] <= [FA_BR][FA_BC] */
    const float c2 = a->scale * FA_LOG2E;
    float m2[FA_MR], thr[FA_MR], corr[FA_SHORT_KEYS / FA_BC * FA_MR];
    _Alignas(64) float lv[FA_MR * VLEN];
    for (int r = 0; r < FA_MR; r++) {
        m2[r] = -INFINITY;
        thr[r] = -INFINITY;
        vf_store(lv + r * VLEN, vf_zero());
    }
    int64_t j0 = 0, jb = 0;
    for (; j0 + FA_BC <= nkeys; j0 += FA_BC, jb++) {
        for (int r = 0; r < FA_MR; r++) /* a huge reference is the row pass's */
            if (m2[r] != -INFINITY && !(fabsf(m2[r]) < FA_LAZY_HUGE)) return 0;
        if (fa_score_f32_fused_q(dk, q, a->q_ss, kt + jb * dk * FA_BC, p + jb * FA_MR * FA_BC, m2,
                                 thr, lv, corr + jb * FA_MR, c2) != 1)
            return 0;
    }
    if (j0 < nkeys) {
        /* the last, short block: its key vectors scored, then the row pass */
        const int64_t nv = nkeys - j0;
        float *pb = p + jb * FA_MR * FA_BC;
        fa_score_q_narrow(dk, q, a->q_ss, kt + jb * dk * FA_BC, pb, (int)((nv + VLEN - 1) / VLEN));
        for (int r = 0; r < FA_MR; r++) {
            int poisoned = 0;
            if (fa_row_softmax_lazy(c2, nv, pb + r * FA_BC, &m2[r], &thr[r], lv + r * VLEN,
                                    &corr[jb * FA_MR + r], &poisoned, a, NULL, j0, 0) != 1)
                return 0;
        }
    }
    return fa_short_finish(a, b, h, i0, dvp, p, corr, NULL, nkeys, vp, vs, lv);
}

/* Whether the query rows of (b, h) in the call take fa_short_head: float32
 * in the lazy form, at least FA_MR rows, the last seeing nkeys keys, at
 * most FA_SHORT_KEYS (causal rows see fewer), and no mask shared by rows
 * that see different keys (causal rows under a key padding row: the block
 * path reads that row's terms up to its block's last row). */
static inline int fa_short_ok(const mha_attn_args *a, int64_t b, int64_t nkeys) {
    (void)b;
    return FA_PVW == 4 && !fa_bf16(a) && fa_lazy_ok(a, a->scale * FA_LOG2E) && nkeys > 0 &&
           nkeys <= FA_SHORT_KEYS && a->q1 - a->q0 >= FA_MR &&
           !(a->mask && a->m_sq == 0 && a->causal);
}

/* The call's rows of head (b, h) by tiles of FA_MR rows (fa_short_tile; the
 * last tile ends at q1, overlapping the one before when FA_MR does not
 * divide the rows: the rows it does again get the same bits); a tile
 * fa_short_tile refuses goes to fa_query_block. Rows that share a mask row
 * (m_sq 0; they see the same keys then) take its mode once; a mode the
 * lazy form does not take sends the head to fa_query_block by blocks of
 * FA_BR rows. */
static inline void fa_short_head(const mha_attn_args *a, const fa_layout *L, float *ws,
                                 const float *vp, int64_t vs, int64_t b, int64_t h, int64_t nkeys) {
    int mode = 0;
    if (a->mask && a->m_sq == 0) {
        mode = fa_short_mask_mode(a, kernel_mask_row(a, b, h, a->q0), nkeys);
        if (!mode) {
            for (int64_t i0 = a->q0; i0 < a->q1; i0 += FA_BR)
                fa_query_block(a, L, ws, vp, vs, b, h, i0, a->q1 - i0 < FA_BR ? a->q1 - i0 : FA_BR);
            return;
        }
    }
    for (int64_t i0 = a->q0; i0 < a->q1; i0 += FA_MR) {
        const int64_t t0 = i0 + FA_MR <= a->q1 ? i0 : a->q1 - FA_MR;
        if (!(a->mask || a->causal ? fa_short_rows_tile(a, L, ws, vp, vs, b, h, t0, mode)
                                   : fa_short_tile(a, L, ws, vp, vs, b, h, t0, nkeys)))
            fa_query_block(a, L, ws, vp, vs, b, h, t0, FA_MR);
    }
}
#endif

/* The whole call: for each (b, h) in range, pack its kv head (unless the
 * previous head of the same GQA group already did), then the query blocks. */
static inline int fa_attention_run(const mha_attn_args *a, void *workspace, size_t workspace_size) {
    if (!kernel_attn_args_ok(a) || !kernel_precision_known(kernel_attn_precision(a)))
        return KERNEL_ERR_ARGS;
    if (a->b0 == a->b1 || a->h0 == a->h1 || a->q0 == a->q1) return KERNEL_OK;
    fa_layout L;
    if (!fa_plan(a, &L)) return KERNEL_ERR_ARGS;
    if (!workspace || workspace_size < L.total * sizeof(float) + 64) return KERNEL_ERR_WORKSPACE;
    float *ws = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    const int64_t group = a->Hq / a->Hkv;
    /* V rows of whole vectors are read where they are (a copy would only
     * cost memory traffic: a decode step's one query reads every V row
     * once); otherwise they are copied padded to dvp. bfloat16 copies
     * them to round them. */
    const int v_in_place = L.dvp == a->dv && !fa_bf16(a);

    for (int64_t b = a->b0; b < a->b1; b++) {
        /* keys any row of this call may see: row_end grows with i */
        const int64_t nkeys = kernel_row_key_end(a, b, a->q1 - 1);
        /* a head whose Q, V (read in place) and O rows fit in L2 many times
         * over (MiniLM's, BERT's: 48-96 KB at S 128) is prefetched whole;
         * a long one (W3's 1.5 MB) is left to the hardware, and so are
         * calls of a few queries (a decode step's one) */
        const int64_t nq = a->q1 - a->q0;
        const int64_t head_bytes =
            (nq * (a->dk + a->dv) + (v_in_place ? nkeys * a->dv : 0)) * (int64_t)sizeof(float);
        const int small = nq >= VLEN && head_bytes <= FA_PREFETCH_BYTES;
        int64_t packed_g = -1;
        for (int64_t h = a->h0; h < a->h1; h++) {
            const int64_t g = h / group;
            const float *vb = a->v + b * a->v_sb + g * a->v_sh;
            /* a small head: its Q, V and O rows requested now, while K
             * is packed (they are read and written right after) */
            if (small) {
                fa_prefetch_rows(a->q + b * a->q_sb + h * a->q_sh + a->q0 * a->q_ss, a->q_ss, nq,
                                 a->dk * (int64_t)sizeof(float), 0);
                if (v_in_place && g != packed_g)
                    fa_prefetch_rows(vb, a->v_ss, nkeys, a->dv * (int64_t)sizeof(float), 0);
                fa_prefetch_rows(a->o + b * a->o_sb + h * a->o_sh + a->q0 * a->o_ss, a->o_ss, nq,
                                 a->dv * (int64_t)sizeof(float), 1);
            }
            if (g != packed_g && nkeys > 0) {
                fa_pack_kv(a, &L, a->k + b * a->k_sb + g * a->k_sh, vb, nkeys, ws + L.kt,
                           v_in_place ? NULL : ws + L.vp);
                packed_g = g;
            }
            const float *vp = v_in_place ? vb : ws + L.vp;
            const int64_t vs = v_in_place ? a->v_ss : L.dvp;
#ifdef FA_HAVE_SHORT
            if (fa_short_ok(a, b, nkeys)) {
                fa_short_head(a, &L, ws, vp, vs, b, h, nkeys);
                continue;
            }
#endif
            for (int64_t i0 = a->q0; i0 < a->q1; i0 += FA_BR) {
                int64_t br = a->q1 - i0 < FA_BR ? a->q1 - i0 : FA_BR;
                fa_query_block(a, &L, ws, vp, vs, b, h, i0, br);
            }
        }
    }
    return KERNEL_OK;
}

#endif
