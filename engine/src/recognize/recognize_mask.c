/* recognize_mask.c -- places the terms a Softmax core puts on its scores,
 * by their effect rather than by the ops that build them. The effective
 * term at score [slot n, query i, key j] is what lands on the scaled score:
 * the sum of the added values times the factors applied after each, or the
 * fill value of a Where (masked_fill, torch.where) where it replaces the
 * score. An entry is "masked" when that is -inf or a huge negative value
 * (finfo.min, -1e30: exp of it is 0 next to any real score).
 *
 *   no graph input behind it: zero, the causal pattern (masked iff j > i),
 *     causal with a sliding window (also masked iff j < i - w), or -- with
 *     static sequence axes -- a constant per-head bias (T5's position bias),
 *     checked at other probe sizes when the graph has dynamic axes;
 *   one graph input M behind it: with M set to "attend everywhere" the term
 *     must again be one of those; then for seeded random M it must equal
 *     what one of these roles means -- [B, Skv] key padding (bool True =
 *     ignore or True = attend; or any type through its value: m -> an
 *     additive, as the extended mask (1 - m) * finfo.min), a bool attention
 *     mask (True = attend, or True = ignore as nn.MultiheadAttention) or a
 *     float additive one, broadcast against [B, H, Sq, Skv]. */
#include "recognize_internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* An additive as the engine adds it: -inf stays -inf (the engine's masked
 * key, whose all-masked row gives 0); any other hiding value (finfo.min,
 * -1e30) becomes the float just above the lowest one. The kernels hide a
 * mask value <= -FLT_MAX outright; this one they add, so a row whose every
 * key is hidden so averages its keys as the graph's softmax does (all
 * scores absorbed into the same value), while in any other row its keys
 * still get exp(-3.4e38) = 0. */
static float rz_as_float_additive(double v) {
    if (v == -INFINITY) return -INFINITY;
    if (rz_is_masked_value(v) || v < -(double)FLT_MAX) return nextafterf(-FLT_MAX, 0.0f);
    return (float)v;
}

static mha_status rz_eff_eval(rz_ctx *z, const double *cf, rz_eff *e) {
    return rz_eff_eval_in(z, cf, z->probe, NULL, e);
}

/* With a KV cache, query i is at key position i + off (e->off): the
 * causal frontier is bottom-right aligned and the window moves with it. */
typedef enum rz_pattern {
    RZ_PAT_NONE = 0, /* nothing masked */
    RZ_PAT_CAUSAL,   /* masked iff j > i + off */
    RZ_PAT_WINDOW,   /* masked iff j > i + off or j < i + off - window */
    RZ_PAT_OTHER
} rz_pattern;

/* Which keys the terms hide, and whether they add anything elsewhere. */
static rz_pattern rz_eff_pattern(const rz_eff *e, int64_t *window, int *has_values) {
    int none = 1, causal = 1;
    *has_values = 0;
    *window = -1;
    for (int64_t idx = 0, n = e->n_slots * e->sq * e->skv; idx < n; idx++) {
        int64_t j = idx % e->skv, i = (idx / e->skv) % e->sq + e->off;
        int m = rz_is_masked_value(e->raw[idx]);
        if (!m && e->raw[idx] != 0.0) *has_values = 1;
        if (m) none = 0;
        if (m != (j > i)) causal = 0;
    }
    if (none) return RZ_PAT_NONE;
    if (causal) return RZ_PAT_CAUSAL;
    for (int64_t w = 0; w + 1 < e->sq + e->off; w++) {
        int ok = 1;
        for (int64_t idx = 0, n = e->n_slots * e->sq * e->skv; ok && idx < n; idx++) {
            int64_t j = idx % e->skv, i = (idx / e->skv) % e->sq + e->off;
            ok = rz_is_masked_value(e->raw[idx]) == (j > i || j < i - w);
        }
        if (ok) {
            *window = w;
            return RZ_PAT_WINDOW;
        }
    }
    return RZ_PAT_OTHER;
}

typedef enum rz_cand {
    RZ_CAND_KPM_IGNORE = 0, /* bool [B, Skv], True = padding */
    RZ_CAND_KPM_ATTEND,     /* bool [B, Skv], True = real token */
    RZ_CAND_KPM_VALUED,     /* any type [B, Skv]: m -> an additive (extended masks) */
    RZ_CAND_ATTN_BOOL,      /* bool, True = attend, broadcast to [B, H, Sq, Skv] */
    RZ_CAND_ATTN_BOOL_IGN,  /* bool, True = hidden (nn.MultiheadAttention) */
    RZ_CAND_ATTN_FLOAT,     /* float additive */
    RZ_CAND_ATTN_VALUED,    /* any type, broadcast: m -> an additive (Keras (1 - m) * c) */
    RZ_CAND_COUNT
} rz_cand;

static int rz_cand_valued(rz_cand c) {
    return c == RZ_CAND_KPM_VALUED || c == RZ_CAND_ATTN_VALUED;
}

/* Strides of M broadcast against [B, H, Sq, Skv]; 0 if it does not. A
 * 3-D M is [B, Sq, Skv] with batch_first 1 (Keras), [B*H, Sq, Skv] with 2
 * (PyTorch), a 4-D one [B, Sq, H, Skv] with 4 (GPT-BigCode), else M is
 * right-aligned. */
static int rz_attn_strides(const tensor *M, const int64_t *target, int batch_first,
                           int64_t *stride) {
    if (batch_first == 4) { /* [B, Sq, H, Skv] (folded heads' scores viewed so) */
        const int ax[4] = {0, 2, 1, 3};
        int64_t st = 1;
        if (M->rank != 4) return 0;
        for (int k = 3; k >= 0; k--) {
            if (M->dims[k] != 1 && M->dims[k] != target[ax[k]]) return 0;
            stride[ax[k]] = M->dims[k] == 1 ? 0 : st;
            st *= M->dims[k];
        }
        return 1;
    }
    if (batch_first == 2) {
        if (M->rank != 3 || M->dims[0] != target[0] * target[1]) return 0;
        for (int k = 1; k < 3; k++)
            if (M->dims[k] != 1 && M->dims[k] != target[k + 1]) return 0;
        stride[3] = M->dims[2] == 1 ? 0 : 1;
        stride[2] = M->dims[1] == 1 ? 0 : M->dims[2];
        stride[1] = M->dims[1] * M->dims[2];
        stride[0] = target[1] * stride[1];
        return 1;
    }
    if (batch_first) {
        const int ax[3] = {0, 2, 3};
        int64_t st = 1;
        if (M->rank != 3) return 0;
        stride[1] = 0;
        for (int k = 2; k >= 0; k--) {
            if (M->dims[k] != 1 && M->dims[k] != target[ax[k]]) return 0;
            stride[ax[k]] = M->dims[k] == 1 ? 0 : st;
            st *= M->dims[k];
        }
        return 1;
    }
    if (M->rank < 2 || M->rank > 4) return 0;
    int64_t st = 1;
    for (int ax = 3; ax >= 0; ax--) {
        int mx = ax - (4 - M->rank);
        if (mx < 0) {
            stride[ax] = 0;
            continue;
        }
        /* a query or key axis longer than the scores': the window of its
         * first rows / columns (a buffer the graph slices [:Sq, :Skv]; the
         * probes then check that the graph reads it so) */
        const int window = ax >= 2 && M->dims[mx] > target[ax];
        if (M->dims[mx] != 1 && M->dims[mx] != target[ax] && !window) return 0;
        stride[ax] = M->dims[mx] == 1 ? 0 : st;
        st *= M->dims[mx];
    }
    return 1;
}

static int rz_cand_fits(const tensor *M, rz_cand cand, const int64_t *target, int bf) {
    int64_t stride[4];
    int any_type = M->dtype == MHA_DTYPE_BOOL || M->dtype == MHA_DTYPE_INT64 ||
                   M->dtype == MHA_DTYPE_INT32 || M->dtype == MHA_DTYPE_FLOAT32;
    int kpm_shape = M->rank == 2 && M->dims[0] == target[0] && M->dims[1] == target[3];
    switch (cand) {
    case RZ_CAND_KPM_IGNORE:
    case RZ_CAND_KPM_ATTEND:
        return M->dtype == MHA_DTYPE_BOOL && kpm_shape;
    case RZ_CAND_KPM_VALUED:
        return kpm_shape && any_type && !bf;
    case RZ_CAND_ATTN_BOOL:
    case RZ_CAND_ATTN_BOOL_IGN:
        return M->dtype == MHA_DTYPE_BOOL && rz_attn_strides(M, target, bf, stride);
    case RZ_CAND_ATTN_FLOAT:
        return M->dtype == MHA_DTYPE_FLOAT32 && rz_attn_strides(M, target, bf, stride);
    case RZ_CAND_ATTN_VALUED:
        return any_type && rz_attn_strides(M, target, bf, stride);
    default:
        return 0;
    }
}

/* Fills the mask input: every element `neutral` (attend everywhere) when
 * seed == 0, else seeded random. Bool candidates write their polarity of
 * "attend"; KPM_VALUED writes m = neutral or 1 - neutral, and random floats
 * in [0, 1) when `fractions` is set. */
static void rz_fill_mask(tensor *M, rz_cand cand, uint64_t seed, int neutral, int fractions) {
    int64_t n = tensor_numel(M);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = seed ? rz_rand(&s) : 0;
        double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
        if (rz_cand_valued(cand)) {
            double m = seed ? (fractions ? u : (double)(r >> 63)) : (double)neutral;
            tensor_set_f64(M, i, m);
        } else if (M->dtype == MHA_DTYPE_BOOL) {
            unsigned char attend = seed ? (unsigned char)(r >> 63) : 1;
            int true_hides = cand == RZ_CAND_KPM_IGNORE || cand == RZ_CAND_ATTN_BOOL_IGN;
            ((unsigned char *)M->data)[i] = true_hides ? (unsigned char)!attend : attend;
        } else {
            float v = 0.0f;
            if (seed) {
                v = (float)(2.0 * u - 1.0);
                if ((r & 7) == 0) v = -INFINITY;
            }
            ((float *)M->data)[i] = v;
        }
    }
}

/* What the candidate reading of M adds at (b, h, i, j). */
typedef struct rz_reading {
    rz_cand cand;
    int batch_first;     /* a 3-D attention mask is [B, Sq, Skv] (1), [B*H, Sq, Skv] (2) */
    double add[2];       /* valued: additive for m == 0, m == 1 */
    int affine;          /* valued: float m in between is interpolated */
    int alibi_counted;   /* key padding also moves ALiBi positions (BLOOM) */
    const double *slope; /* [H] ALiBi slopes seen with every key attended, or NULL */
    int bool_fill;       /* a bool mask read as valued (rz_bool_fill): 1 + its attending
                            value */
} rz_reading;

static double rz_valued(const rz_reading *rd, double m) {
    if (rd->affine && isfinite(rd->add[0]) && isfinite(rd->add[1]))
        return rd->add[0] + (rd->add[1] - rd->add[0]) * m;
    return rd->add[m != 0.0];
}

static double rz_reading_value(const rz_reading *rd, const tensor *M, const int64_t *stride,
                               int64_t b, int64_t h, int64_t i, int64_t j, int64_t skv) {
    switch (rd->cand) {
    case RZ_CAND_KPM_IGNORE:
    case RZ_CAND_KPM_ATTEND: {
        int on = ((const unsigned char *)M->data)[b * skv + j] != 0;
        return on == (rd->cand == RZ_CAND_KPM_IGNORE) ? -INFINITY : 0.0;
    }
    case RZ_CAND_KPM_VALUED:
        return rz_valued(rd, tensor_get_f64(M, b * skv + j));
    default:
        break;
    }
    int64_t off = b * stride[0] + h * stride[1] + i * stride[2] + j * stride[3];
    if (rd->cand == RZ_CAND_ATTN_VALUED) return rz_valued(rd, tensor_get_f64(M, off));
    if (rd->cand == RZ_CAND_ATTN_FLOAT) return ((const float *)M->data)[off];
    int on = ((const unsigned char *)M->data)[off] != 0;
    return on == (rd->cand == RZ_CAND_ATTN_BOOL) ? 0.0 : -INFINITY;
}

static int rz_close(double got, double want) {
    if (rz_is_masked_value(got) || rz_is_masked_value(want))
        return rz_is_masked_value(got) && rz_is_masked_value(want);
    return fabs(got - want) <= 1e-5 * (1.0 + fabs(want));
}

/* Whether e is base plus the reading of M at every score. With
 * rd->alibi_counted (key padding only), an attended key j also moves by
 * slope * (p_j - j), p_j the keys the reading lets through before j:
 * BLOOM's ALiBi positions cumsum(mask) - 1. */
static int rz_eff_matches(const rz_eff *e, const rz_eff *base, const tensor *M,
                          const rz_reading *rd, const int64_t *target, const int64_t *bat,
                          const int64_t *head) {
    int64_t stride[4] = {0, 0, 0, 0};
    if (rd->cand >= RZ_CAND_ATTN_BOOL) rz_attn_strides(M, target, rd->batch_first, stride);
    for (int64_t n = 0; n < e->n_slots; n++)
        for (int64_t i = 0; i < e->sq; i++) {
            int64_t p = 0; /* attended keys so far */
            for (int64_t j = 0; j < e->skv; j++) {
                int64_t idx = (n * e->sq + i) * e->skv + j;
                double r = rz_reading_value(rd, M, stride, bat[n], head[n], i, j, e->skv);
                double want = base->raw[idx] + r;
                if (rd->alibi_counted && !rz_is_masked_value(r))
                    want += rd->slope[head[n]] * (double)(p++ - j);
                if (!rz_close(e->raw[idx], want)) return 0;
            }
        }
    return 1;
}

/* Two mask inputs at once: e must be base plus both readings (a key
 * hidden by either stays hidden). */
static int rz_eff_matches_both(const rz_eff *e, const rz_eff *base, tensor *const *Ms,
                               const rz_reading *rds, const int64_t *target, const int64_t *bat,
                               const int64_t *head) {
    int64_t stride[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    for (int k = 0; k < 2; k++)
        if (rds[k].cand >= RZ_CAND_ATTN_BOOL)
            rz_attn_strides(Ms[k], target, rds[k].batch_first, stride[k]);
    for (int64_t n = 0; n < e->n_slots; n++)
        for (int64_t i = 0; i < e->sq; i++)
            for (int64_t j = 0; j < e->skv; j++) {
                double want = base->raw[(n * e->sq + i) * e->skv + j];
                for (int k = 0; k < 2; k++)
                    want +=
                        rz_reading_value(&rds[k], Ms[k], stride[k], bat[n], head[n], i, j, e->skv);
                if (!rz_close(e->raw[(n * e->sq + i) * e->skv + j], want)) return 0;
            }
    return 1;
}

/* A mask input and how it was read. */
typedef struct rz_found {
    int mi; /* graph input */
    rz_reading rd;
    int neutral; /* the fill that attends everywhere (see rz_fill_mask) */
} rz_found;

static int rz_has_dynamic_dims(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++)
        for (int ax = 0; ax < L->inputs[i].rank; ax++)
            if (L->inputs[i].dims[ax] < 0) return 1;
    return 0;
}

/* A sequence axis of the layer's data inputs is dynamic. */
static int rz_has_dynamic_seq(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        if ((io->role == MHA_ROLE_QUERY || io->role == MHA_ROLE_KEY_VALUE ||
             io->role == MHA_ROLE_VALUE_INPUT) &&
            io->rank == 3 && io->dims[1] < 0)
            return 1;
    }
    return 0;
}

static int rz_layer_self(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_VALUE) return 0;
    return 1;
}

/* Sets the layer's causal flag and window from a pattern. */
static void rz_set_pattern(layer *L, rz_pattern p, int64_t window) {
    L->causal = p == RZ_PAT_CAUSAL || p == RZ_PAT_WINDOW;
    if (p == RZ_PAT_WINDOW) {
        L->has_left_window = 1;
        L->left_window = window;
        L->idioms |= LAYER_IDIOM_WINDOW;
    }
}

/* The hidden pattern must not depend on the probe size: probe again at
 * other sizes (mask input neutral) and compare -- once small, once long
 * enough to show a sliding window of up to 15 keys. A window too wide to
 * show at a smaller size looks causal there: the pattern seen at the larger
 * size wins then (*pat, *window updated). */
static mha_status rz_recheck_pattern(rz_ctx *z, const layer *L, const double *cf,
                                     const rz_found *found, int n_found, int64_t sq0,
                                     rz_pattern *pat, int64_t *window) {
    if (!rz_has_dynamic_dims(L)) return MHA_OK;
    const int self = rz_layer_self(L);
    /* a graph may not run at the long size (GPT-2's causal buffer of
     * n_positions rows): then at a shorter one, or not at all */
    const int64_t sizes[3][2] = {{4, 7}, {17, 19}, {9, 11}};
    int64_t seen_sq = sq0;
    mha_status st = MHA_OK;
    for (int k = 0; k < 3 && st == MHA_OK; k++) {
        /* the long sizes look for a window, which only a causal mask has
         * (they cost a probe of 17 tokens: seconds for d_model 4096) */
        if (k > 0 && *pat != RZ_PAT_CAUSAL && *pat != RZ_PAT_WINDOW) break;
        if (k == 2 && seen_sq >= sizes[1][0]) break;
        st = rz_run_probe(z, L, 1, sizes[k][0], self ? sizes[k][0] : sizes[k][1]);
        if (k > 0 && st != MHA_OK && st != MHA_ERR_NO_MEMORY && st != MHA_ERR_LIMIT) {
            mha_error_clear(z->err);
            st = MHA_OK;
            continue;
        }
        if (st == MHA_OK && n_found > 0) {
            for (int f = 0; f < n_found; f++)
                rz_fill_mask(z->inputs[found[f].mi], found[f].rd.cand, 0, found[f].neutral, 0);
            st = rz_rerun(z);
        }
        rz_eff e;
        memset(&e, 0, sizeof e);
        if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
        int64_t w;
        int vals;
        if (st == MHA_OK) {
            rz_pattern p = rz_eff_pattern(&e, &w, &vals);
            int same = p == *pat && (p != RZ_PAT_WINDOW || w == *window);
            if (!vals && !same && *pat == RZ_PAT_CAUSAL && p == RZ_PAT_WINDOW &&
                w >= seen_sq + e.off - 1) {
                *pat = RZ_PAT_WINDOW; /* the window did not show before */
                *window = w;
                same = 1;
            } else if (!vals && !same && *pat == RZ_PAT_WINDOW && p == RZ_PAT_CAUSAL &&
                       *window >= e.sq + e.off - 1) {
                same = 1; /* too short to show it */
            }
            if (vals || !same) {
                char d[160];
                st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                              "%s: the mask is %s at one probe size and not at another",
                              rz_node_desc(z, z->core.masks[0].add_node, d, sizeof d),
                              *pat == RZ_PAT_NONE     ? "zero"
                              : *pat == RZ_PAT_CAUSAL ? "causal"
                                                      : "a causal sliding window");
            }
            if (e.sq > seen_sq) seen_sq = e.sq;
        }
        rz_eff_free(z, &e);
    }
    return st;
}

/* The smallest period P of base's bias over the batch items (P divides the
 * probe's batch; the batch itself when there is none): item b has item b %
 * P's bias, head by head -- 1 for a bias of the heads alone, the windows per
 * image for Swin's shifted windows. -1: out of memory. */
static int64_t rz_bias_period(rz_ctx *z, const rz_eff *base, const int64_t *bat,
                              const int64_t *head, int64_t H) {
    const int64_t B = z->B, per = base->sq * base->skv;
    int64_t *slot = mha_malloc(z->a, rz_count(B * H) * sizeof *slot);
    if (!slot) return -1;
    for (int64_t i = 0; i < B * H; i++)
        slot[i] = -1;
    for (int64_t n = 0; n < base->n_slots; n++)
        if (bat[n] >= 0 && bat[n] < B && head[n] >= 0 && head[n] < H)
            slot[bat[n] * H + head[n]] = n;
    int64_t P = 1;
    for (; P < B; P++) {
        if (B % P) continue;
        int same = 1;
        for (int64_t i = P * H; i < B * H && same; i++) {
            const int64_t a = slot[i], b = slot[i % (P * H)];
            if (a < 0 || b < 0) continue;
            for (int64_t k = 0; k < per && same; k++)
                same = rz_close(base->raw[a * per + k], base->raw[b * per + k]);
        }
        if (same) break;
    }
    mha_free(z->a, slot);
    return P;
}

/* A constant bias: base's values per head (the same for every batch item),
 * for the probe's sequence lengths -- which must be the file's own. */
static mha_status rz_take_bias(rz_ctx *z, layer *L, const rz_eff *base, const int64_t *bat,
                               const int64_t *head, const double *cf, int mi) {
    char d[160];
    const int add = z->core.masks[0].add_node;
    /* a bias of the key position per head: ALiBi (recognize_alibi.c); of
     * the key - query distance: a relative position bias
     * (recognize_relbias.c) */
    const int alibi = rz_alibi_take(z, L, base->raw, base->n_slots, base->sq, base->skv, head);
    if (alibi < 0) return MHA_ERR_NO_MEMORY;
    if (alibi > 0) return MHA_OK;
    if (rz_has_dynamic_seq(L)) return rz_relbias_take(z, L, cf, mi, head);
    /* a batch of windows (L->bias_windows): a bias per window and head,
     * item b taking window b % windows (Swin's shifted windows) */
    const int64_t H = L->q_heads, per = base->sq * base->skv;
    /* the windows: those the graph needs the batch in multiples of (the
     * probe's), else the bias's own period (a static batch of windows) */
    const int64_t period = rz_bias_period(z, base, bat, head, H);
    if (period < 0) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    if (L->bias_windows > 1 && L->bias_windows % period)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the bias on the scores repeats every %lld batch items, not every "
                        "%lld windows",
                        rz_node_desc(z, add, d, sizeof d), (long long)period,
                        (long long)L->bias_windows);
    if (L->bias_windows <= 1 && period > 1 && period < z->B) L->bias_windows = period;
    const int64_t W = L->bias_windows > 1 ? L->bias_windows : 1;
    L->bias = mha_calloc(z->a, rz_count(W * H * per), sizeof(float));
    unsigned char *seen = mha_calloc(z->a, rz_count(W * H), 1);
    mha_status st = MHA_OK;
    if (!L->bias || !seen) st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t n = 0; n < base->n_slots && st == MHA_OK; n++) {
        const int64_t slot = (bat[n] % W) * H + head[n];
        float *dst = L->bias + slot * per;
        const double *src = base->raw + n * per;
        for (int64_t k = 0; k < per; k++) {
            float v = rz_as_float_additive(src[k]);
            if (!seen[slot])
                dst[k] = v;
            else if (!rz_close(dst[k], v)) {
                st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                              "%s: the bias on the scores differs between batch items %lld "
                              "and another (a per-batch bias is not supported)",
                              rz_node_desc(z, add, d, sizeof d), (long long)bat[n]);
                break;
            }
        }
        seen[slot] = 1;
    }
    for (int64_t s = 0; s < W * H && st == MHA_OK; s++)
        if (!seen[s])
            st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                          "%s: the probe saw no batch item of window %lld",
                          rz_node_desc(z, add, d, sizeof d), (long long)(s / H));
    mha_free(z->a, seen);
    if (st != MHA_OK) {
        mha_free(z->a, L->bias);
        L->bias = NULL;
        return st;
    }
    L->bias_heads = H;
    L->bias_sq = base->sq;
    L->bias_skv = base->skv;
    L->idioms |= LAYER_IDIOM_POS_BIAS;
    return MHA_OK;
}

/* Reads base's pattern into L: a mask, or (static lengths) a bias. */
static mha_status rz_take_base(rz_ctx *z, layer *L, const rz_eff *base, const int64_t *bat,
                               const int64_t *head, const double *cf, int mi, rz_pattern *pat,
                               int64_t *window, int *biased) {
    int vals;
    *pat = rz_eff_pattern(base, window, &vals);
    *biased = vals || *pat == RZ_PAT_OTHER;
    if (!*biased) {
        rz_set_pattern(L, *pat, *window);
        return MHA_OK;
    }
    /* the bias carries the hidden keys too, unless they are causal */
    if (*pat == RZ_PAT_CAUSAL) L->causal = 1;
    return rz_take_bias(z, L, base, bat, head, cf, mi);
}

/* KPM_VALUED: the additive for m == 0 and m == 1, read where no other
 * term hides the key (the last query row, its own key). neutral is the m
 * whose run is base. */
static mha_status rz_read_values(rz_ctx *z, tensor *M, const double *cf, const rz_eff *base,
                                 int neutral, rz_reading *rd) {
    rz_eff other;
    memset(&other, 0, sizeof other);
    rz_fill_mask(M, rd->cand, 0, !neutral, 0);
    mha_status st = rz_rerun(z);
    if (st == MHA_OK) st = rz_eff_eval(z, cf, &other);
    if (st == MHA_OK) {
        int64_t i = base->sq - 1, j = i < base->skv - 1 ? i : base->skv - 1;
        int64_t at = i * base->skv + j;
        double v = other.raw[at];
        if (!rz_is_masked_value(v)) v -= base->raw[at];
        rd->add[neutral] = 0.0;
        rd->add[!neutral] = v;
    }
    rz_eff_free(z, &other);
    return st;
}

/* A bool reading hides its keys outright, but the file may hide them with a
 * finite fill (masked_fill(mask, finfo.min)): a query row whose every key
 * is hidden then averages all its keys, where the kernels' -inf gives 0.
 * The fill every key the reading hides gets in e (and base does not hide),
 * when it is one finite value; else 0 (-inf, or several values). */
static int rz_bool_fill(const rz_eff *e, const rz_eff *base, const tensor *M, const rz_reading *rd,
                        const int64_t *target, const int64_t *bat, const int64_t *head,
                        double *fill) {
    int64_t stride[4] = {0, 0, 0, 0};
    if (rd->cand >= RZ_CAND_ATTN_BOOL) rz_attn_strides(M, target, rd->batch_first, stride);
    int seen = 0;
    for (int64_t n = 0; n < e->n_slots; n++)
        for (int64_t i = 0; i < e->sq; i++)
            for (int64_t j = 0; j < e->skv; j++) {
                const int64_t idx = (n * e->sq + i) * e->skv + j;
                const double r = rz_reading_value(rd, M, stride, bat[n], head[n], i, j, e->skv);
                if (r != -INFINITY || rz_is_masked_value(base->raw[idx])) continue;
                const double v = e->raw[idx];
                if (!isfinite(v) || (seen && v != *fill)) return 0;
                *fill = v;
                seen = 1;
            }
    return seen;
}

/* Tries reading mask input M as cand; *ok when every probe agrees. */
static mha_status rz_try_candidate(rz_ctx *z, layer *L, const double *cf, tensor *M, rz_cand cand,
                                   int neutral, int bf, const int64_t *target, const int64_t *bat,
                                   const int64_t *head, rz_reading *rd, rz_eff *base, int *ok) {
    *ok = 0;
    memset(rd, 0, sizeof *rd);
    rd->cand = cand;
    rd->batch_first = bf;
    rz_fill_mask(M, cand, 0, neutral, 0);
    mha_status st = rz_rerun(z);
    if (st == MHA_OK) st = rz_eff_eval(z, cf, base);
    if (st != MHA_OK) return st;
    int64_t w;
    int vals;
    rz_pattern p = rz_eff_pattern(base, &w, &vals);
    if (p == RZ_PAT_OTHER && rz_has_dynamic_seq(L)) return MHA_OK;
    (void)vals;
    if (rz_cand_valued(cand)) {
        st = rz_read_values(z, M, cf, base, neutral, rd);
        if (st != MHA_OK) return st;
        if (rd->add[!neutral] == 0.0) return MHA_OK; /* m does nothing here */
    }
    rz_eff e;
    memset(&e, 0, sizeof e);
    /* key padding over ALiBi: the slopes with every key attended, in case
     * the mask moves the positions too (BLOOM) */
    double *slope = NULL;
    if (cand <= RZ_CAND_KPM_VALUED && p != RZ_PAT_OTHER) {
        slope = mha_calloc(z->a, rz_count(L->q_heads), sizeof *slope);
        if (!slope) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        int found = rz_alibi_slopes(z, base->raw, base->n_slots, base->sq, base->skv, head,
                                    L->q_heads, slope, NULL);
        if (found < 0) {
            mha_free(z->a, slope);
            return MHA_ERR_NO_MEMORY;
        }
        if (!found) {
            mha_free(z->a, slope);
            slope = NULL;
        }
        rd->slope = slope;
    }
    int good = 1;
    for (int counted = 0; counted <= (slope != NULL) && st == MHA_OK; counted++) {
        rd->alibi_counted = counted;
        good = 1;
        for (uint64_t trial = 1; good && trial <= 3; trial++) {
            rz_fill_mask(M, cand, 0x6d61736b00ull + trial, neutral, 0);
            st = rz_rerun(z);
            if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
            if (st != MHA_OK) break;
            good = rz_eff_matches(&e, base, M, rd, target, bat, head);
        }
        if (good) break;
    }
    double fill = 0.0;
    if (st == MHA_OK && good && !rz_cand_valued(cand) && cand != RZ_CAND_ATTN_FLOAT &&
        rz_bool_fill(&e, base, M, rd, target, bat, head, &fill)) {
        /* read as the values they are: the attending value (neutral, see
         * rz_find_reading) adds 0, the other the fill */
        const int attend = cand == RZ_CAND_KPM_ATTEND || cand == RZ_CAND_ATTN_BOOL;
        rd->cand = cand <= RZ_CAND_KPM_VALUED ? RZ_CAND_KPM_VALUED : RZ_CAND_ATTN_VALUED;
        rd->add[attend] = 0.0;
        rd->add[!attend] = fill;
        rd->bool_fill = 1 + attend;
    }
    if (st == MHA_OK && good && rz_cand_valued(cand) && M->dtype == MHA_DTYPE_FLOAT32) {
        /* float m between 0 and 1: interpolated ((1 - m) * c) or a step (m != 0) */
        rz_fill_mask(M, cand, 0x6672616374ull, neutral, 1);
        st = rz_rerun(z);
        if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
        if (st == MHA_OK) {
            rd->affine = 1;
            good = rz_eff_matches(&e, base, M, rd, target, bat, head);
            if (!good) {
                rd->affine = 0;
                good = rz_eff_matches(&e, base, M, rd, target, bat, head);
            }
        }
    }
    rz_eff_free(z, &e);
    mha_free(z->a, slope);
    rd->slope = NULL;
    if (st == MHA_OK) {
        /* the base run again: the caller reads the pattern from it */
        rz_fill_mask(M, rd->cand, 0, rd->bool_fill ? rd->bool_fill - 1 : neutral, 0);
        st = rz_rerun(z);
        if (st == MHA_OK) st = rz_eff_eval(z, cf, base);
    }
    *ok = st == MHA_OK && good;
    return st;
}

/* Frees base and refuses "<the first mask node>: <message>". */
static mha_status rz_mask_refusal(rz_ctx *z, rz_eff *base, const char *fmt, ...) MHA_PRINTF(3, 4);
static mha_status rz_mask_refusal(rz_ctx *z, rz_eff *base, const char *fmt, ...) {
    char d[160], msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rz_eff_free(z, base);
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: %s",
                    rz_node_desc(z, z->core.masks[0].add_node, d, sizeof d), msg);
}

/* Tries the readings of mask input M in turn; *ok with the first every
 * probe agrees with (f->rd, f->neutral; *base the run at its neutral fill). */
static mha_status rz_find_reading(rz_ctx *z, layer *L, const double *cf, tensor *M,
                                  const int64_t *target, const int64_t *bat, const int64_t *head,
                                  rz_found *f, rz_eff *base, int *ok) {
    mha_status st = MHA_OK;
    *ok = 0;
    for (int k = 0; k < 4 * RZ_CAND_COUNT && st == MHA_OK && !*ok; k++) {
        /* valued readings are tried with m = 1 meaning "attend", then m = 0;
         * a 3-D mask batch-first ([B, Sq, Skv]), then right-aligned */
        rz_cand cand = (rz_cand)(k % RZ_CAND_COUNT);
        int neutral = (k / RZ_CAND_COUNT) % 2 == 0, bf = k < 2 * RZ_CAND_COUNT;
        if (bf && L->attn_mask_batch_first == 2) bf = 2; /* probed as [B*H, Sq, Skv] */
        /* a static first axis of B * heads: PyTorch's [B*H, Sq, Skv] (an
         * export without dynamic axes, never probed as [1, Sq, Skv]) */
        if (bf && M->rank == 3 && target[1] > 1 && M->dims[0] == target[0] * target[1]) bf = 2;
        /* the scores of folded heads are viewed [B, Sq, H, Skv] (z->fold) */
        if (bf && M->rank == 4 && z->fold > 1) bf = 4;
        if ((!neutral && !rz_cand_valued(cand)) || (bf && M->rank != 3 && bf != 4) ||
            !rz_cand_fits(M, cand, target, bf))
            continue;
        st = rz_try_candidate(z, L, cf, M, cand, neutral, bf, target, bat, head, &f->rd, base, ok);
        f->neutral = f->rd.bool_fill ? f->rd.bool_fill - 1 : neutral;
    }
    return st;
}

/* The input's role and the layer fields of its reading. */
/* What a reading takes the mask for, in words (refusals). */
static const char *rz_cand_desc(rz_cand c) {
    switch (c) {
    case RZ_CAND_ATTN_BOOL:
        return "bool, True = attend";
    case RZ_CAND_ATTN_BOOL_IGN:
        return "bool, True = hidden";
    case RZ_CAND_ATTN_FLOAT:
        return "float additive";
    case RZ_CAND_ATTN_VALUED:
        return "values mapped to an additive";
    default:
        return "key padding";
    }
}

static void rz_assign_reading(layer *L, const rz_found *f) {
    layer_io *io = &L->inputs[f->mi];
    const rz_cand cand = f->rd.cand;
    if (f->rd.alibi_counted && L->alibi_slopes) L->alibi_pos_from_mask = 1;
    if (cand == RZ_CAND_KPM_IGNORE || cand == RZ_CAND_KPM_ATTEND) {
        io->role = MHA_ROLE_KEY_PADDING_MASK;
        L->kpm_true_means_ignore = cand == RZ_CAND_KPM_IGNORE;
    } else if (rz_cand_valued(cand)) {
        io->role = cand == RZ_CAND_KPM_VALUED ? MHA_ROLE_KEY_PADDING_MASK : MHA_ROLE_ATTN_MASK;
        L->kpm_true_means_ignore = !f->neutral;
        L->kpm_valued = cand == RZ_CAND_KPM_VALUED;
        L->attn_valued = cand == RZ_CAND_ATTN_VALUED;
        L->kpm_affine = f->rd.affine;
        for (int v = 0; v < 2; v++)
            L->kpm_add[v] = rz_as_float_additive(f->rd.add[v]);
        L->idioms |= LAYER_IDIOM_EXT_MASK;
    } else {
        io->role = MHA_ROLE_ATTN_MASK;
        L->attn_bool_ignore_true = cand == RZ_CAND_ATTN_BOOL_IGN;
    }
    if (io->role == MHA_ROLE_ATTN_MASK) {
        L->attn_mask_batch_first = f->rd.batch_first;
        /* a static query or key axis beside a dynamic length: read as a
         * window (the probes had the graph slice it, rz_attn_strides) */
        const int r = io->rank;
        L->attn_mask_window = !f->rd.batch_first && r >= 2 && layer_query_len_dynamic(L) &&
                              (io->dims[r - 1] > 1 || io->dims[r - 2] > 1);
    }
}

/* Left padding under a causal mask the file writes with finfo.min (GPT-2's
 * torch.where, LLaMA's triu merged with the padding): a query row whose
 * every visible key is padding gets only huge finite terms, and the file's
 * softmax then averages every key whose term did not overflow to -inf,
 * future keys included. Which ones, read at the probe on row 0, key 1 (a
 * future key) with the first key of every batch item hidden, then the
 * first two (with a KV cache of P keys: key P + 1, with the first P + 1,
 * then P + 2 hidden): sets L->causal_finite (layer.h). M is left at its
 * neutral fill. */
static mha_status rz_causal_finite(rz_ctx *z, layer *L, const double *cf, const rz_found *f) {
    tensor *M = z->inputs[f->mi];
    const rz_cand cand = f->rd.cand;
    L->causal_finite = 0;
    /* a float mask that broadcasts over the queries ([B, 1, 1, Skv]: a
     * model's extended mask made once outside the layers), or the same
     * expanded over them ([B, 1, Sq, Skv], CLIP's), pads keys as a key
     * padding mask does; it hides a key with finfo.min */
    const int float_padding =
        cand == RZ_CAND_ATTN_FLOAT && M->dtype == MHA_DTYPE_FLOAT32 && M->rank >= 2;
    if ((cand > RZ_CAND_KPM_VALUED && !float_padding) || M->rank < 1) return MHA_OK;
    /* with a KV cache, row 0 sees keys 0 .. off: hide those, then key off + 1 */
    const int64_t skv = M->dims[M->rank - 1], off = z->P;
    double v[2] = {0.0, 0.0};
    rz_eff e;
    memset(&e, 0, sizeof e);
    mha_status st = MHA_OK;
    for (int hidden = 1; hidden <= 2 && st == MHA_OK; hidden++) {
        for (int64_t k = 0, n = tensor_numel(M); k < n; k++) {
            const int hide = k % skv < off + hidden;
            if (rz_cand_valued(cand))
                tensor_set_f64(M, k, hide ? !f->neutral : f->neutral);
            else if (float_padding)
                ((float *)M->data)[k] = hide ? -FLT_MAX : 0.0f;
            else
                ((unsigned char *)M->data)[k] =
                    (unsigned char)((cand == RZ_CAND_KPM_IGNORE) == hide);
        }
        st = rz_rerun(z);
        if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
        if (st == MHA_OK && e.sq + off == skv && e.skv == skv && skv >= off + 3)
            v[hidden - 1] = e.raw[off + 1];
    }
    rz_eff_free(z, &e);
    if (st != MHA_OK) return st;
    rz_fill_mask(M, cand, 0, f->neutral, 0);
    st = rz_rerun(z);
    /* as float32: a term below -FLT_MAX is -inf there */
    if (st == MHA_OK && rz_is_masked_value(v[0]) && v[0] >= -(double)FLT_MAX) {
        L->causal_finite = rz_is_masked_value(v[1]) && v[1] >= -(double)FLT_MAX ? 2 : 1;
        /* finfo.min itself as the padding's own value (rz_as_float_additive),
         * so that the two compare equal as in the file */
        L->causal_fill =
            v[0] <= -(double)FLT_MAX * (1.0 - 1e-6) ? rz_as_float_additive(v[0]) : (float)v[0];
    }
    return st;
}

/* A Where fill that does not hide its key by itself, applied before the
 * other terms (rz_ctx soft_fill): older GPT-2's torch.where(causal, w,
 * masked_bias = -1e4), then + (1 - m) * -1e4. Taken only as the causal
 * mask beside one mask input (the padding), the condition a constant: a future
 * key's score is replaced by the fill, then the padding's term is added
 * (layer.h causal_finite 3). */
static mha_status rz_take_soft_fill(rz_ctx *z, layer *L, int count, int pat, const rz_found *f) {
    const rz_core *c = &z->core;
    const int cond = z->soft_fill_cond;
    char d[160];
    if (count != 1 || !f || pat != RZ_PAT_CAUSAL || L->bias || L->alibi_slopes || c->softcap_on ||
        cond < 0 || (size_t)cond >= z->g->n_values || z->deps[cond] != 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: fills scores with %g before another term, which does not hide "
                        "them (supported as the causal mask's fill beside one mask input)",
                        rz_node_desc(z, c->masks[c->n_masks - 1].add_node, d, sizeof d),
                        z->soft_fill);
    L->causal_finite = 3;
    L->causal_fill = (float)z->soft_fill;
    return MHA_OK;
}

/* A Max clamping the scores (RZ_TERM_CLAMP): its floor, one constant
 * value times the factors after it, a finite float32 that hides its key
 * (rz_eff_eval_in checks the same on every score). */
static mha_status rz_take_clamp(rz_ctx *z, layer *L, const rz_mask_term *t, double cf) {
    const tensor *F = z->probe[t->value];
    char d[160];
    const int64_t n = F ? tensor_numel(F) : 0;
    double v = n > 0 ? tensor_get_f64(F, 0) : 0.0;
    int same = n > 0 && (F->dtype == MHA_DTYPE_FLOAT32 || F->dtype == MHA_DTYPE_FLOAT64);
    for (int64_t k = 1; same && k < n; k++)
        same = tensor_get_f64(F, k) == v;
    v *= cf;
    if (!same || !rz_is_masked_value(v) || v < -(double)FLT_MAX ||
        (L->mask_clamped && (float)v != L->mask_floor))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: clamps the scores at something other than one finite float32 "
                        "floor at or below -1e30 (such as finfo.min)",
                        rz_node_desc(z, t->add_node, d, sizeof d));
    L->mask_clamped = 1;
    L->mask_floor = (float)v;
    return MHA_OK;
}

mha_status rz_place_masks(rz_ctx *z, layer *L, const int64_t *bat, const int64_t *head,
                          int64_t n_slots) {
    const rz_core *c = &z->core;
    char d[160];
    L->causal = 0;
    z->soft_fill_on = 0;
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
        if (c->masks[t].negated) cf[t] = -cf[t]; /* subtracted from the scores */
        deps |= z->deps[c->masks[t].value];
        if (c->masks[t].kind == RZ_TERM_CLAMP) {
            mha_status st = rz_take_clamp(z, L, &c->masks[t], cf[t]);
            if (st != MHA_OK) return st;
        }
        if (c->masks[t].kind == RZ_TERM_WHERE) {
            deps |= z->deps[c->masks[t].cond];
            L->idioms |= LAYER_IDIOM_WHERE_MASK;
        }
    }
    uint64_t data = ((uint64_t)1 << c->qp.x_input) | ((uint64_t)1 << c->kp.x_input) |
                    ((uint64_t)1 << c->vp.x_input);
    if (deps & data)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the added term depends on the query / key values, it is not a "
                        "mask",
                        rz_node_desc(z, c->masks[0].add_node, d, sizeof d));
    int mis[2] = {-1, -1}, count = 0;
    int bias_input = -1; /* the graph input read as a per-head bias beside the mask */
    for (int i = 0; i < RZ_MAX_INPUTS; i++)
        if (deps & ((uint64_t)1 << i)) {
            if (count < 2) mis[count] = i;
            count++;
        }
    if (count > 2)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the mask combines %d graph inputs (two are supported: an attention "
                        "mask and a key padding mask)",
                        rz_node_desc(z, c->masks[0].add_node, d, sizeof d), count);

    rz_eff base;
    memset(&base, 0, sizeof base);
    mha_status st = MHA_OK;
    const tensor *S0 = z->probe[z->g->nodes[c->score_mm].outputs[0]];
    /* (rows of folded heads: z->fold) */
    const int64_t sq0 = S0->dims[S0->rank - 2] / (z->fold > 1 ? z->fold : 1);
    rz_pattern pat;
    int64_t window;
    int biased;
    if (count == 0) {
        st = rz_eff_eval(z, cf, &base);
        if (st == MHA_OK) st = rz_take_base(z, L, &base, bat, head, cf, -1, &pat, &window, &biased);
        rz_eff_free(z, &base);
        if (st == MHA_OK && z->soft_fill_on) st = rz_take_soft_fill(z, L, 0, pat, NULL);
        if (st != MHA_OK || biased) return st;
        st = rz_recheck_pattern(z, L, cf, NULL, 0, sq0, &pat, &window);
        if (st == MHA_OK) rz_set_pattern(L, pat, window);
        return st;
    }

    /* a 3-D mask first probed as [1, Sq, Skv] (its first axis is not the
     * batch): now that the heads are known, as PyTorch's [B * heads, ...] */
    if (L->attn_mask_batch_first == 3) {
        L->attn_mask_batch_first = 2;
        st = rz_run_probe(z, L, z->B, z->Sq, z->Skv);
        if (st != MHA_OK) return st;
    }
    /* each input in turn, the other one at its current fill (zeros, which
     * attend everywhere for PyTorch's bool masks, or its neutral fill once
     * read) */
    const tensor *S = z->probe[z->g->nodes[c->score_mm].outputs[0]];
    int64_t target[4] = {z->B, n_slots / (z->B ? z->B : 1),
                         S->dims[S->rank - 2] / (z->fold > 1 ? z->fold : 1), S->dims[S->rank - 1]};
    rz_found found[2];
    memset(found, 0, sizeof found);
    for (int f = 0; f < count && st == MHA_OK; f++) {
        found[f].mi = mis[f];
        int ok = 0;
        st = rz_find_reading(z, L, cf, z->inputs[mis[f]], target, bat, head, &found[f], &base, &ok);
        tensor *other = count == 2 && f == 0 ? z->inputs[mis[1]] : NULL;
        if (st == MHA_OK && !ok && other && other->dtype == MHA_DTYPE_BOOL) {
            /* zeros hide every key of a True = attend bool mask (GPT-2's
             * causal buffer handed in): this one read beside it all True */
            memset(other->data, 1, (size_t)tensor_numel(other));
            st = rz_rerun(z);
            if (st == MHA_OK)
                st = rz_find_reading(z, L, cf, z->inputs[mis[f]], target, bat, head, &found[f],
                                     &base, &ok);
        }
        if (st == MHA_OK && !ok)
            return rz_mask_refusal(z, &base,
                                   "mask input '%s' changes the scores, but not as a key padding "
                                   "mask or an attention mask would",
                                   L->inputs[mis[f]].name);
    }
    if (st == MHA_OK && count == 2) {
        /* both at once: their effects add up, and they play two roles */
        int valued = rz_cand_valued(found[0].rd.cand) && rz_cand_valued(found[1].rd.cand);
        int kpm0 = found[0].rd.cand <= RZ_CAND_KPM_VALUED,
            kpm1 = found[1].rd.cand <= RZ_CAND_KPM_VALUED;
        /* two attention masks (BLOOM's ALiBi tensor [B*H, 1, S] beside its
         * bool causal | padding mask): one attention mask role */
        /* an additive float one beside a bool one: a per-head bias input;
         * two additive float ones (CLIP's causal and padding masks, added
         * one after the other): the second is the bias */
        int bias_f = -1;
        for (int f = 0; f < 2; f++)
            if (!kpm0 && !kpm1 && found[f].rd.cand == RZ_CAND_ATTN_FLOAT &&
                (found[1 - f].rd.cand != RZ_CAND_ATTN_FLOAT || f == 1) && !valued &&
                (z->inputs[mis[1 - f]]->rank != 3 || z->inputs[mis[f]]->rank != 3 ||
                 found[f].rd.batch_first == found[1 - f].rd.batch_first))
                bias_f = f;
        if (!kpm0 && !kpm1 && bias_f < 0)
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "%s: mask inputs '%s' and '%s' each act as an attention mask over "
                            "[B, H, Sq, Skv] (%s and %s); the layer takes one attention mask, "
                            "with one key padding mask or one float additive per-head bias "
                            "beside it",
                            rz_node_desc(z, c->masks[0].add_node, d, sizeof d),
                            L->inputs[mis[0]].name, L->inputs[mis[1]].name,
                            rz_cand_desc(found[0].rd.cand), rz_cand_desc(found[1].rd.cand));
        int good = !valued && (kpm0 != kpm1 || bias_f >= 0) && !found[0].rd.alibi_counted &&
                   !found[1].rd.alibi_counted;
        bias_input = bias_f >= 0 ? mis[bias_f] : -1;
        rz_eff e;
        memset(&e, 0, sizeof e);
        tensor *Ms[2] = {z->inputs[mis[0]], z->inputs[mis[1]]};
        rz_reading rds[2] = {found[0].rd, found[1].rd};
        for (uint64_t trial = 1; good && st == MHA_OK && trial <= 2; trial++) {
            for (int f = 0; f < 2; f++)
                rz_fill_mask(Ms[f], rds[f].cand, 0x626f7468ull + 2 * trial + (uint64_t)f,
                             found[f].neutral, 0);
            st = rz_rerun(z);
            if (st == MHA_OK) st = rz_eff_eval(z, cf, &e);
            if (st == MHA_OK) good = rz_eff_matches_both(&e, &base, Ms, rds, target, bat, head);
        }
        rz_eff_free(z, &e);
        if (st == MHA_OK && !good)
            return rz_mask_refusal(z, &base,
                                   "mask inputs '%s' and '%s' do not act as one attention mask "
                                   "and one key padding mask added together",
                                   L->inputs[mis[0]].name, L->inputs[mis[1]].name);
        for (int f = 0; f < 2 && st == MHA_OK; f++)
            rz_fill_mask(Ms[f], rds[f].cand, 0, found[f].neutral, 0);
        if (st == MHA_OK) st = rz_rerun(z);
    }
    if (st == MHA_OK) st = rz_take_base(z, L, &base, bat, head, cf, mis[0], &pat, &window, &biased);
    rz_eff_free(z, &base);
    if (st != MHA_OK) return st;
    /* the bias first: the mask's reading sets the layer's mask fields */
    for (int f = 0; f < count; f++)
        if (found[f].mi == bias_input) rz_assign_reading(L, &found[f]);
    for (int f = 0; f < count; f++)
        if (found[f].mi != bias_input) rz_assign_reading(L, &found[f]);
    if (bias_input >= 0) {
        L->inputs[bias_input].role = MHA_ROLE_ATTN_BIAS;
        for (int f = 0; f < count; f++) /* a 3-D one sets the layout both follow */
            if (z->inputs[found[f].mi]->rank == 3)
                L->attn_mask_batch_first = found[f].rd.batch_first;
    }
    if (z->soft_fill_on) {
        st = rz_take_soft_fill(z, L, count, pat, &found[0]);
        if (st != MHA_OK) return st;
    } else if (count == 1 && (pat == RZ_PAT_CAUSAL || pat == RZ_PAT_WINDOW) && !L->bias) {
        st = rz_causal_finite(z, L, cf, &found[0]);
        if (st != MHA_OK) return st;
    }
    if (biased) return MHA_OK;
    st = rz_recheck_pattern(z, L, cf, found, count, sq0, &pat, &window);
    if (st == MHA_OK) rz_set_pattern(L, pat, window);
    /* a window with the causal term's fill (exec_fold_causal), not a soft one */
    if (L->has_left_window && L->causal_finite == 3) L->causal_finite = 0;
    return st;
}
