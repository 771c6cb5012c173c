/* fa_attn19.h -- the masked rows of the float32 short-head path
 * (fa_short_head in common/flash_attention.h, which includes this file
 * inside its FA_HAVE_SHORT block: a template by inclusion, after the lazy
 * row pass and the float32 fused score tiles it calls).
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

#endif
