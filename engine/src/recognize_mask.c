/* recognize_mask.c -- places the additive terms a Softmax core adds to its
 * scores, by their effect rather than by the ops that build them. The
 * effective mask at score [slot n, query i, key j] is the sum of the terms
 * times the factors applied after each; an entry is "masked" when a term is
 * -inf (or the lowest float, as some exporters write it).
 *
 *   no graph input behind it: it must be all zero or exactly the causal
 *     pattern (masked iff j > i), at two probe sizes when the graph has
 *     dynamic axes;
 *   one graph input M behind it: with M set to "attend everywhere" the mask
 *     must again be zero or causal; then for seeded random M it must equal
 *     what one of these roles means -- bool [B, Skv] key padding (True =
 *     ignore, or True = attend), a bool attention mask (True = attend) or a
 *     float additive one, broadcast against [B, H, Sq, Skv]. */
#include "recognize_internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct rz_eff {
    int64_t n_slots, sq, skv;
    unsigned char *masked; /* [n_slots * sq * skv] */
    double *val;
} rz_eff;

static void rz_eff_free(rz_ctx *z, rz_eff *e) {
    mha_free(z->a, e->masked);
    mha_free(z->a, e->val);
    memset(e, 0, sizeof *e);
}

static int rz_is_masked_value(double v) {
    return v == -INFINITY || v <= -(double)FLT_MAX;
}

/* The effective mask from the current probe values. */
static mha_status rz_eff_eval(rz_ctx *z, const double *cf, rz_eff *e) {
    const rz_core *c = &z->core;
    const tensor *S = z->probe[z->g->nodes[c->score_mm].outputs[0]];
    char d[160];
    rz_eff_free(z, e);
    int r = S->rank;
    e->sq = S->dims[r - 2];
    e->skv = S->dims[r - 1];
    int64_t numel = tensor_numel(S);
    e->n_slots = (e->sq > 0 && e->skv > 0) ? numel / (e->sq * e->skv) : 0;
    e->masked = mha_calloc(z->a, (size_t)(numel ? numel : 1), 1);
    e->val = mha_calloc(z->a, (size_t)(numel ? numel : 1), sizeof *e->val);
    if (!e->masked || !e->val) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int t = 0; t < c->n_masks; t++) {
        const tensor *M = z->probe[c->masks[t].value];
        /* numpy broadcasting of M against the scores */
        int64_t stride[MHA_MAX_RANK];
        int ok =
            M && M->rank <= r && (M->dtype == MHA_DTYPE_FLOAT32 || M->dtype == MHA_DTYPE_FLOAT64);
        int64_t st = 1;
        for (int ax = r - 1; ok && ax >= 0; ax--) {
            int mx = ax - (r - M->rank);
            if (mx < 0) {
                stride[ax] = 0;
                continue;
            }
            if (M->dims[mx] != 1 && M->dims[mx] != S->dims[ax]) ok = 0;
            stride[ax] = M->dims[mx] == 1 ? 0 : st;
            st *= M->dims[mx];
        }
        if (!ok)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the added mask does not broadcast to the scores as a float "
                            "tensor",
                            rz_node_desc(z, c->masks[t].add_node, d, sizeof d));
        for (int64_t i = 0; i < numel; i++) {
            int64_t rem = i, off = 0;
            for (int ax = r - 1; ax >= 0; ax--) {
                off += (rem % S->dims[ax]) * stride[ax];
                rem /= S->dims[ax];
            }
            double v = tensor_get_f64(M, off);
            if (rz_is_masked_value(v))
                e->masked[i] = 1;
            else
                e->val[i] += cf[t] * v;
        }
    }
    return MHA_OK;
}

/* 0: no mask, 1: exactly causal, -1: something else. */
static int rz_eff_causal(const rz_eff *e) {
    int zero = 1, causal = 1;
    for (int64_t n = 0; n < e->n_slots; n++)
        for (int64_t i = 0; i < e->sq; i++)
            for (int64_t j = 0; j < e->skv; j++) {
                int64_t idx = (n * e->sq + i) * e->skv + j;
                if (!e->masked[idx] && e->val[idx] != 0.0) return -1;
                if (e->masked[idx]) zero = 0;
                if (e->masked[idx] != (j > i)) causal = 0;
            }
    return zero ? 0 : causal ? 1 : -1;
}

typedef enum rz_cand {
    RZ_CAND_KPM_IGNORE = 0, /* bool [B, Skv], True = padding */
    RZ_CAND_KPM_ATTEND,     /* bool [B, Skv], True = real token */
    RZ_CAND_ATTN_BOOL,      /* bool, True = attend, broadcast to [B, H, Sq, Skv] */
    RZ_CAND_ATTN_FLOAT,     /* float additive */
    RZ_CAND_COUNT
} rz_cand;

/* Strides of M broadcast against [B, H, Sq, Skv]; 0 if it does not. */
static int rz_attn_strides(const tensor *M, const int64_t *target, int64_t *stride) {
    if (M->rank < 2 || M->rank > 4) return 0;
    int64_t st = 1;
    for (int ax = 3; ax >= 0; ax--) {
        int mx = ax - (4 - M->rank);
        if (mx < 0) {
            stride[ax] = 0;
            continue;
        }
        if (M->dims[mx] != 1 && M->dims[mx] != target[ax]) return 0;
        stride[ax] = M->dims[mx] == 1 ? 0 : st;
        st *= M->dims[mx];
    }
    return 1;
}

static int rz_cand_fits(const tensor *M, rz_cand cand, const int64_t *target) {
    int64_t stride[4];
    switch (cand) {
    case RZ_CAND_KPM_IGNORE:
    case RZ_CAND_KPM_ATTEND:
        return M->dtype == MHA_DTYPE_BOOL && M->rank == 2 && M->dims[0] == target[0] &&
               M->dims[1] == target[3];
    case RZ_CAND_ATTN_BOOL:
        return M->dtype == MHA_DTYPE_BOOL && rz_attn_strides(M, target, stride);
    case RZ_CAND_ATTN_FLOAT:
        return M->dtype == MHA_DTYPE_FLOAT32 && rz_attn_strides(M, target, stride);
    default:
        return 0;
    }
}

/* Fills the mask input: neutral (attend everywhere) when seed == 0. */
static void rz_fill_mask(tensor *M, rz_cand cand, uint64_t seed) {
    int64_t n = tensor_numel(M);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = seed ? rz_rand(&s) : 0;
        if (M->dtype == MHA_DTYPE_BOOL) {
            unsigned char attend = seed ? (unsigned char)(r >> 63) : 1;
            ((unsigned char *)M->data)[i] =
                cand == RZ_CAND_KPM_IGNORE ? (unsigned char)!attend : attend;
        } else {
            float v = 0.0f;
            if (seed) {
                v = (float)((double)(r >> 11) * (2.0 / 9007199254740992.0) - 1.0);
                if ((r & 7) == 0) v = -INFINITY;
            }
            ((float *)M->data)[i] = v;
        }
    }
}

static int rz_eff_matches(const rz_eff *e, const tensor *M, rz_cand cand, int causal,
                          const int64_t *target, const int64_t *bat, const int64_t *head) {
    int64_t stride[4] = {0, 0, 0, 0};
    if (cand == RZ_CAND_ATTN_BOOL || cand == RZ_CAND_ATTN_FLOAT) rz_attn_strides(M, target, stride);
    for (int64_t n = 0; n < e->n_slots; n++)
        for (int64_t i = 0; i < e->sq; i++)
            for (int64_t j = 0; j < e->skv; j++) {
                int64_t idx = (n * e->sq + i) * e->skv + j, b = bat[n], h = head[n];
                int masked = causal && j > i;
                double want = 0.0;
                if (cand == RZ_CAND_KPM_IGNORE || cand == RZ_CAND_KPM_ATTEND) {
                    int on = ((const unsigned char *)M->data)[b * e->skv + j] != 0;
                    if (on == (cand == RZ_CAND_KPM_IGNORE)) masked = 1;
                } else {
                    int64_t off = b * stride[0] + h * stride[1] + i * stride[2] + j * stride[3];
                    if (cand == RZ_CAND_ATTN_BOOL) {
                        if (!((const unsigned char *)M->data)[off]) masked = 1;
                    } else {
                        double v = ((const float *)M->data)[off];
                        if (rz_is_masked_value(v))
                            masked = 1;
                        else
                            want = v;
                    }
                }
                if (masked != e->masked[idx]) return 0;
                if (!masked && fabs(e->val[idx] - want) > 1e-5 * (1.0 + fabs(want))) return 0;
            }
    return 1;
}

static int rz_has_dynamic_dims(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++)
        for (int ax = 0; ax < L->inputs[i].rank; ax++)
            if (L->inputs[i].dims[ax] < 0) return 1;
    return 0;
}

/* The causal pattern must not depend on the probe size: probe again at
 * other sizes (mask input neutral) and compare. */
static mha_status rz_recheck_causal(rz_ctx *z, const layer *L, const double *cf, int mi,
                                    rz_cand cand, int causal) {
    if (!rz_has_dynamic_dims(L)) return MHA_OK;
    int self = 1;
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_VALUE) self = 0;
    mha_status st = rz_run_probe(z, L, 1, 4, self ? 4 : 7);
    if (st == MHA_OK && mi >= 0) {
        rz_fill_mask(z->inputs[mi], cand, 0);
        st = rz_rerun(z);
    }
    rz_eff e;
    memset(&e, 0, sizeof e);
    if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
    if (st == MHA_OK && rz_eff_causal(&e) != causal) {
        char d[160];
        st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                      "%s: the mask is %s at one probe size and not at another",
                      rz_node_desc(z, z->core.masks[0].add_node, d, sizeof d),
                      causal ? "causal" : "zero");
    }
    rz_eff_free(z, &e);
    return st;
}

mha_status rz_place_masks(rz_ctx *z, layer *L, const int64_t *bat, const int64_t *head,
                          int64_t n_slots) {
    const rz_core *c = &z->core;
    char d[160];
    L->causal = 0;
    if (c->n_masks == 0) return MHA_OK;

    /* factor applied to each term: the score-path factors above it */
    double cf[RZ_MAX_MASK_TERMS];
    uint64_t deps = 0;
    for (int t = 0; t < c->n_masks; t++) {
        cf[t] = 1.0;
        for (int s = 0; s < c->masks[t].above; s++) {
            rz_chain one;
            one.n = 1;
            one.steps[0] = c->score_steps[s];
            double f;
            mha_status st = rz_chain_factor(z, &one, &f);
            if (st != MHA_OK) return st;
            cf[t] *= f;
        }
        if (!(cf[t] > 0.0))
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the mask is scaled by %g afterwards (must be positive)",
                            rz_node_desc(z, c->masks[t].add_node, d, sizeof d), cf[t]);
        deps |= z->deps[c->masks[t].value];
    }
    uint64_t data = ((uint64_t)1 << c->qp.x_input) | ((uint64_t)1 << c->kp.x_input);
    if (deps & data)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the added term depends on the query / key values, it is not a "
                        "mask",
                        rz_node_desc(z, c->masks[0].add_node, d, sizeof d));
    int mi = -1, count = 0;
    for (int i = 0; i < RZ_MAX_INPUTS; i++)
        if (deps & ((uint64_t)1 << i)) {
            mi = i;
            count++;
        }
    if (count > 1)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the mask combines %d graph inputs (one is supported)",
                        rz_node_desc(z, c->masks[0].add_node, d, sizeof d), count);

    rz_eff e;
    memset(&e, 0, sizeof e);
    mha_status st = MHA_OK;
    if (mi < 0) {
        st = rz_eff_eval(z, cf, &e);
        int causal = st == MHA_OK ? rz_eff_causal(&e) : -1;
        rz_eff_free(z, &e);
        if (st != MHA_OK) return st;
        if (causal < 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: the constant mask added to the scores is neither zero nor "
                            "the causal pattern",
                            rz_node_desc(z, c->masks[0].add_node, d, sizeof d));
        L->causal = causal;
        return rz_recheck_causal(z, L, cf, -1, RZ_CAND_COUNT, causal);
    }

    tensor *M = z->inputs[mi];
    const tensor *S = z->probe[z->g->nodes[c->score_mm].outputs[0]];
    int64_t target[4] = {z->B, n_slots / (z->B ? z->B : 1), S->dims[S->rank - 2],
                         S->dims[S->rank - 1]};
    for (int cand = 0; cand < RZ_CAND_COUNT; cand++) {
        if (!rz_cand_fits(M, (rz_cand)cand, target)) continue;
        rz_fill_mask(M, (rz_cand)cand, 0);
        st = rz_rerun(z);
        if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
        if (st != MHA_OK) break;
        int causal = rz_eff_causal(&e);
        int ok = causal >= 0;
        for (uint64_t trial = 1; ok && trial <= 3; trial++) {
            rz_fill_mask(M, (rz_cand)cand, 0x6d61736b00ull + trial);
            st = rz_rerun(z);
            if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
            if (st != MHA_OK) break;
            ok = rz_eff_matches(&e, M, (rz_cand)cand, causal, target, bat, head);
        }
        if (st != MHA_OK) break;
        if (!ok) continue;
        rz_eff_free(z, &e);
        L->causal = causal;
        layer_io *io = &L->inputs[mi];
        if (cand == RZ_CAND_KPM_IGNORE || cand == RZ_CAND_KPM_ATTEND) {
            io->role = MHA_ROLE_KEY_PADDING_MASK;
            L->kpm_true_means_ignore = cand == RZ_CAND_KPM_IGNORE;
        } else {
            io->role = MHA_ROLE_ATTN_MASK;
        }
        return rz_recheck_causal(z, L, cf, mi, (rz_cand)cand, causal);
    }
    rz_eff_free(z, &e);
    if (st != MHA_OK) return st;
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                    "%s: mask input '%s' changes the scores, but not as a key padding mask "
                    "or an attention mask would",
                    rz_node_desc(z, c->masks[0].add_node, d, sizeof d), L->inputs[mi].name);
}
