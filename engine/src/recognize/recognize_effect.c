/* recognize_effect.c -- the effective term a Softmax core's mask terms put
 * on its scores (see recognize_mask.c): at score [slot n, query i, key j],
 * the sum of the added values times the factors applied after each, or the
 * fill value of a Where where it replaces the score, raised to the floor of
 * a Max that clamps the scores from below, evaluated from a set
 * of the graph's values. Shared by the mask reader (recognize_mask.c) and
 * the relative-position bias (recognize_relbias.c). */
#include "recognize_internal.h"

#include <float.h>
#include <string.h>

/* At or below this, a term hides its key. */
#define RZ_MASKED (-1e30)

/* A Where fill replaces the score: at or below this it hides the key as
 * surely as finfo.min does (exp(fill - score) is 0 in float32 for any
 * score above fill + 104), and a row filled everywhere averages every key
 * alike either way. -1e9 (the Annotated Transformer, BERT-pytorch), -1e4
 * (GPT-2's masked_bias in older Hugging Face releases). Only for a Where
 * alone: beside an added term (older GPT-2's padding, (1 - m) * -1e4) a
 * row whose visible keys are all padding weighs the filled keys against
 * the padded ones by their scores, which no hidden key reproduces. An
 * added term gets no such latitude: the score stays in the sum. */
#define RZ_FILL_HIDES (-1e4)

void rz_eff_free(rz_ctx *z, rz_eff *e) {
    mha_free(z->a, e->raw);
    memset(e, 0, sizeof *e);
}

int rz_is_masked_value(double v) {
    return v <= RZ_MASKED;
}

/* Strides of M broadcast (numpy, right-aligned) against T; 0 if it does not. */
static int rz_bcast_strides(const tensor *M, const tensor *T, int64_t *stride) {
    if (!M || M->rank > T->rank) return 0;
    int64_t st = 1;
    for (int ax = T->rank - 1; ax >= 0; ax--) {
        int mx = ax - (T->rank - M->rank);
        if (mx < 0) {
            stride[ax] = 0;
            continue;
        }
        if (M->dims[mx] != 1 && M->dims[mx] != T->dims[ax]) return 0;
        stride[ax] = M->dims[mx] == 1 ? 0 : st;
        st *= M->dims[mx];
    }
    return 1;
}

static int64_t rz_bcast_offset(const tensor *T, const int64_t *stride, int64_t i) {
    int64_t rem = i, off = 0;
    for (int ax = T->rank - 1; ax >= 0; ax--) {
        off += (rem % T->dims[ax]) * stride[ax];
        rem /= T->dims[ax];
    }
    return off;
}

static int rz_is_float_tensor(const tensor *t) {
    return t && (t->dtype == MHA_DTYPE_FLOAT32 || t->dtype == MHA_DTYPE_FLOAT64);
}

/* Whether term t is a Where applied before every other term (the terms
 * are listed from the Softmax back), each of the others an added one. */
static int rz_soft_fill_first(const rz_core *c, int t) {
    if (t != c->n_masks - 1) return 0;
    for (int k = 0; k < t; k++)
        if (c->masks[k].kind != RZ_TERM_ADD) return 0;
    return 1;
}

static mha_status rz_eff_terms(rz_ctx *z, const double *cf, tensor *const *vals,
                               const tensor *target, int64_t numel, rz_eff *e);
static mha_status rz_eff_unfold(rz_ctx *z, rz_eff *e);

/* The effective terms from values vals (the probe's, or a part of the
 * graph run apart). The terms were collected from the Softmax back to
 * Q.K^T, so they apply in reverse order; the score path only reshapes (flat
 * order kept), so flat index i of a term's output is score i. target, when
 * given, is the shape of the scores and of every term's output. */
mha_status rz_eff_eval_in(rz_ctx *z, const double *cf, tensor *const *vals, const tensor *target,
                          rz_eff *e) {
    const rz_core *c = &z->core;
    const tensor *S = target ? target : vals[z->g->nodes[c->score_mm].outputs[0]];
    rz_eff_free(z, e);
    int r = S->rank;
    e->sq = S->dims[r - 2];
    e->skv = S->dims[r - 1];
    e->off = z->P;
    int64_t numel = tensor_numel(S);
    e->n_slots = (e->sq > 0 && e->skv > 0) ? numel / (e->sq * e->skv) : 0;
    e->raw = mha_calloc(z->a, (size_t)(numel ? numel : 1), sizeof *e->raw);
    if (!e->raw) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    mha_status st = rz_eff_terms(z, cf, vals, target, numel, e);
    if (st == MHA_OK && z->fold > 1) st = rz_eff_unfold(z, e);
    return st;
}

/* Scores whose rows fold query heads ([n, S*f, skv], row t*f + h; z->fold)
 * as the map unfolded them: [n*f, S, skv], slot n*f + h. */
static mha_status rz_eff_unfold(rz_ctx *z, rz_eff *e) {
    const int64_t f = z->fold, n = e->n_slots, S = e->sq / f, kv = e->skv;
    if (e->sq % f != 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the scores have %lld rows, not a whole number of %lld heads",
                        (long long)e->sq, (long long)f);
    const size_t numel = (size_t)(n * e->sq * kv);
    double *raw = mha_calloc(z->a, numel ? numel : 1, sizeof *raw);
    if (!raw) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t s = 0; s < n; s++)
        for (int64_t t = 0; t < S; t++)
            for (int64_t h = 0; h < f; h++)
                memcpy(raw + ((s * f + h) * S + t) * kv, e->raw + (s * e->sq + t * f + h) * kv,
                       (size_t)kv * sizeof *raw);
    mha_free(z->a, e->raw);
    e->raw = raw;
    e->n_slots = n * f;
    e->sq = S;
    return MHA_OK;
}

/* The terms' sum into e->raw (numel scores, the shape e says). */
static mha_status rz_eff_terms(rz_ctx *z, const double *cf, tensor *const *vals,
                               const tensor *target, int64_t numel, rz_eff *e) {
    const rz_core *c = &z->core;
    char d[160];
    for (int t = c->n_masks - 1; t >= 0; t--) {
        const rz_mask_term *term = &c->masks[t];
        const ir_node *n = &z->g->nodes[term->add_node];
        const tensor *T = target ? target : n->n_outputs > 0 ? vals[n->outputs[0]] : NULL;
        const tensor *M = vals[term->value];
        const tensor *C = term->kind == RZ_TERM_WHERE ? vals[term->cond] : NULL;
        int64_t ms[MHA_MAX_RANK], cs[MHA_MAX_RANK];
        int ok = T && tensor_numel(T) == numel && rz_is_float_tensor(M) &&
                 rz_bcast_strides(M, T, ms) &&
                 (term->kind != RZ_TERM_WHERE ||
                  (C && C->dtype == MHA_DTYPE_BOOL && rz_bcast_strides(C, T, cs)));
        if (!ok)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the %s does not broadcast to the scores as a float tensor",
                            rz_node_desc(z, term->add_node, d, sizeof d),
                            term->kind == RZ_TERM_WHERE ? "condition or fill value" : "added mask");
        for (int64_t i = 0; i < numel; i++) {
            double v = cf[t] * tensor_get_f64(M, rz_bcast_offset(T, ms, i));
            if (term->kind == RZ_TERM_CLAMP) {
                /* max(score + term, floor) is max(term, floor) on top of the
                 * score only for a floor that no unmasked score goes below
                 * and that still hides its key: a finite float32 at or
                 * below RZ_MASKED (finfo.min) */
                if (!rz_is_masked_value(v) || v < -(double)FLT_MAX)
                    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                    "%s: clamps the scores at %g (only a finite float32 floor "
                                    "at or below %g, such as finfo.min, is supported)",
                                    rz_node_desc(z, term->add_node, d, sizeof d), v, RZ_MASKED);
                if (e->raw[i] < v) e->raw[i] = v;
                continue;
            }
            if (term->kind == RZ_TERM_ADD) {
                e->raw[i] += v;
                continue;
            }
            int on = ((const unsigned char *)C->data)[rz_bcast_offset(T, cs, i)] != 0;
            if (on != term->fill_when) continue;
            /* a fill replaces the score: the same as adding it only when
             * it hides the key. A smaller one applied before added terms
             * is recorded for rz_place_masks (the causal fill of older
             * GPT-2 beside its padding), which reads it as hiding here. */
            const int soft = !rz_is_masked_value(v) && v <= RZ_FILL_HIDES;
            if (soft && c->n_masks > 1 && rz_soft_fill_first(c, t) &&
                (!z->soft_fill_on || (z->soft_fill == v && z->soft_fill_cond == term->cond))) {
                z->soft_fill_on = 1;
                z->soft_fill = v;
                z->soft_fill_cond = term->cond;
            } else if (!rz_is_masked_value(v) && !(c->n_masks == 1 && soft)) {
                return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                "%s: fills scores with %g, which does not hide them (only "
                                "-inf or huge negative fills, or a fill at or below %g with no "
                                "other mask term or before added ones, are supported)",
                                rz_node_desc(z, term->add_node, d, sizeof d), v, RZ_FILL_HIDES);
            }
            e->raw[i] = rz_is_masked_value(v) ? v : -(double)FLT_MAX;
        }
    }
    return MHA_OK;
}
