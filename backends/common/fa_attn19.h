/* fa_attn19.h -- the causal and masked rows of the float32 short-head
 * path (fa_short_head in common/flash_attention.h, which includes this
 * file inside its FA_HAVE_SHORT block: a template by inclusion, after the
 * lazy row pass, the float32 fused score tiles and FA_DEFINE_SHORT_PV it
 * calls). Heads whose rows all see every key with no mask keep
 * fa_short_tile (a general tile in their place cost 5-7 % of the core at
 * BERT's and MiniLM's shapes, paired, for reasons not found);
 * fa_short_rows_tile takes a row's own key end and its mask.
 *
 * A row under an additive mask takes the lazy form in one of two ways
 * (fa_query_block's lazy_row): 1 when every term it reads is 0, hidden or
 * a fill (a key padding mask of -inf or finfo.min), 2 in logit units when
 * the terms are a general additive mask of moderate size (BERT's (1 - m)
 * -10000, a bias); 0 otherwise, and then the exact row pass
 * (fa_row_softmax) of the block path. The short path takes rows of mode 1
 * and 2 and gives the others to fa_query_block. */
#ifndef MHA_BACKENDS_FA_ATTN19_H
#define MHA_BACKENDS_FA_ATTN19_H

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
    float m2[FA_MR], thr[FA_MR], l[FA_MR], corr[FA_SHORT_KEYS / FA_BC * FA_MR];
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
    for (int r = 0; r < FA_MR; r++) {
        l[r] = vf_hsum(vf_load(lv + r * VLEN));
        if (!(l[r] > 0.0f)) return 0;
    }
    float *o = a->o + b * a->o_sb + h * a->o_sh + i0 * a->o_ss;
    for (int64_t v0 = 0; v0 < dvp; v0 += FA_PVW * VLEN) {
        const int64_t w = (dvp - v0) / VLEN;
        if (w >= 4)
            fa_short_rows_pv_4(p, corr, cnt, e_hi, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (w == 3)
            fa_short_rows_pv_3(p, corr, cnt, e_hi, vp, vs, v0, l, o, a->o_ss, a->dv);
        else if (w == 2)
            fa_short_rows_pv_2(p, corr, cnt, e_hi, vp, vs, v0, l, o, a->o_ss, a->dv);
        else
            fa_short_rows_pv_1(p, corr, cnt, e_hi, vp, vs, v0, l, o, a->o_ss, a->dv);
    }
    return 1;
}

#endif
