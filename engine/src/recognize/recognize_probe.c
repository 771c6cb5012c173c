/* recognize_probe.c -- concrete probe shapes for a layer's graph inputs,
 * shared by the recogniser (which evaluates the graph once to give every
 * value a shape) and the verifier (which evaluates it to compare). Each
 * dynamic axis is one of three sizes -- batch B, query length Sq, key length
 * Skv -- or, for the past axis of a projected layer's KV cache, the past
 * length P (the keys are then Skv = P + Sq), decided by the input's role;
 * static axes keep their size and, where they are one of those, fix it for
 * every other input. */
#include "recognize_internal.h"

#include <math.h>

typedef enum rz_sym {
    RZ_SYM_FIXED = 0,
    RZ_SYM_B,
    RZ_SYM_SQ,
    RZ_SYM_SKV,
    RZ_SYM_ONE,
    RZ_SYM_P /* the past length of a projected layer's KV cache */
} rz_sym;

/* Which size axis `axis` of input io is (cache: the layer has a KV cache
 * between projections, layer_has_cache). */
static rz_sym rz_axis_symbol(const layer *L, const layer_io *io, int axis, int cache) {
    int r = io->rank, from_end = r - 1 - axis;
    /* [S, B, D] layers: the first two axes swap */
    const int ax_b = L->seq_first ? 1 : 0, ax_s = L->seq_first ? 0 : 1;
    switch (io->role) {
    case MHA_ROLE_QUERY:
        return axis == ax_b ? RZ_SYM_B : axis == ax_s && r == 3 ? RZ_SYM_SQ : RZ_SYM_FIXED;
    case MHA_ROLE_KEY_VALUE:
    case MHA_ROLE_VALUE_INPUT: {
        /* beside K on the query input, V's rows are the query's */
        const rz_sym s =
            io->role == MHA_ROLE_VALUE_INPUT && L->k_from_query ? RZ_SYM_SQ : RZ_SYM_SKV;
        return axis == ax_b ? RZ_SYM_B : axis == ax_s && r == 3 ? s : RZ_SYM_FIXED;
    }
    case MHA_ROLE_Q:
    case MHA_ROLE_K:
    case MHA_ROLE_V: {
        rz_sym s = io->role == MHA_ROLE_Q ? RZ_SYM_SQ : RZ_SYM_SKV;
        if (axis == 0) return RZ_SYM_B;
        if ((r == 3 && axis == 1) || (r == 4 && axis == 2)) return s;
        return RZ_SYM_FIXED;
    }
    case MHA_ROLE_KEY_PADDING_MASK:
        return axis == 0 ? RZ_SYM_B : RZ_SYM_SKV;
    case MHA_ROLE_NONPAD_KV_SEQLEN:
        return axis == 0 ? RZ_SYM_B : RZ_SYM_FIXED;
    case MHA_ROLE_PAST_KEY:
    case MHA_ROLE_PAST_VALUE:
        /* [B, kv_heads, past, d]: between projections the past has its own
         * length (the keys are P + Sq); a bare node's the key length's size */
        return axis == 0 ? RZ_SYM_B : axis == 2 ? (cache ? RZ_SYM_P : RZ_SYM_SKV) : RZ_SYM_FIXED;
    /* a static 1 on their batch axis broadcasts (one row of positions for
     * the whole batch): it does not fix the batch of the probes */
    case MHA_ROLE_POSITION_IDS: /* [B, S] */
        return axis == 0   ? (io->dims[0] == 1 ? RZ_SYM_FIXED : RZ_SYM_B)
               : axis == 1 ? RZ_SYM_SQ
                           : RZ_SYM_FIXED;
    case MHA_ROLE_ROTARY_COS:            /* [S, d] (LLaMA's, made from the length), */
    case MHA_ROLE_ROTARY_SIN:            /* [B, S, d], [B, 1, S, d] or [B, S, 1, d] (GPT-J's) */
        if (L->rotary_tables_input == 3) /* [S, B | 1, r / 2, 2] or [S, r / 2, 2] */
            return axis == 0             ? RZ_SYM_SQ
                   : axis == 1 && r == 4 ? (io->dims[1] == 1 ? RZ_SYM_FIXED : RZ_SYM_B)
                                         : RZ_SYM_FIXED;
        if (r == 4 && io->dims[2] == 1 && io->dims[1] != 1)
            return axis == 1   ? RZ_SYM_SQ
                   : axis == 0 ? (io->dims[0] == 1 ? RZ_SYM_FIXED : RZ_SYM_B)
                               : RZ_SYM_FIXED;
        return from_end == 1 ? RZ_SYM_SQ
               : axis == 0   ? (io->dims[0] == 1 ? RZ_SYM_FIXED : RZ_SYM_B)
                             : RZ_SYM_FIXED;
    case MHA_ROLE_ATTN_MASK:
    case MHA_ROLE_ATTN_BIAS:
        /* com.microsoft integer masks are [B, S, T], not right-aligned */
        if ((io->dtype == MHA_DTYPE_INT32 || io->dtype == MHA_DTYPE_INT64) && r == 3)
            return axis == 0 ? RZ_SYM_B : axis == 1 ? RZ_SYM_SQ : RZ_SYM_SKV;
        /* a static query or key axis longer than 1 beside a dynamic query
         * length: a buffer the graph slices to the lengths (GPT-2's causal
         * `bias` [1, 1, n, n] handed in by the caller), read as a window
         * (layer.h attn_mask_window); it fixes no length */
        if (from_end <= 1 && r >= 2 && io->dims[axis] > 1 && layer_query_len_dynamic(L))
            return RZ_SYM_FIXED;
        /* Broadcast against [B, H, Sq, Skv] from the right -- but a dynamic
         * first axis of a 3-D mask is the batch (Keras [B, Sq, Skv]) */
        if (from_end == 0) return RZ_SYM_SKV;
        /* a static 1 broadcasts (a model's extended mask [B, 1, 1, S], made
         * once outside the layers): it does not make the queries 1 long */
        if (io->dims[axis] == 1) return RZ_SYM_ONE;
        if (from_end == 1) return RZ_SYM_SQ;
        if (from_end == 3) return RZ_SYM_B;
        if (r == 3 && io->dims[0] < 0) return RZ_SYM_B;
        return RZ_SYM_ONE;
    default:
        return RZ_SYM_FIXED;
    }
}

static int64_t *rz_sym_slot(rz_sizes *sz, rz_sym s) {
    switch (s) {
    case RZ_SYM_B:
        return &sz->B;
    case RZ_SYM_SQ:
        return &sz->Sq;
    case RZ_SYM_SKV:
        return &sz->Skv;
    case RZ_SYM_P:
        return &sz->P;
    default:
        return NULL;
    }
}

mha_status rz_probe_dims(const layer *L, int self, rz_sizes *sz, int64_t (*dims)[MHA_MAX_RANK],
                         mha_error *err) {
    /* Pass 1: static axes fix the sizes (the first one wins; a conflict
     * between inputs is the graph's, and its evaluation reports it). */
    const int cache = layer_has_cache(L);
    int fixed[6] = {0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < L->n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        for (int ax = 0; ax < io->rank; ax++) {
            rz_sym s = rz_axis_symbol(L, io, ax, cache);
            int64_t *slot = rz_sym_slot(sz, s);
            if (!slot || io->dims[ax] < 0 || fixed[s]) continue;
            *slot = io->dims[ax];
            fixed[s] = 1;
        }
    }
    if (self) {
        if (fixed[RZ_SYM_SQ])
            sz->Skv = sz->Sq;
        else
            sz->Sq = sz->Skv = fixed[RZ_SYM_SKV] ? sz->Skv : sz->Sq;
    }
    /* a batch of windows: B items of every window (the graph reshapes it) */
    if (!fixed[RZ_SYM_B] && L->bias_windows > 1) sz->B *= L->bias_windows;
    if (!cache) sz->P = 0;
    if (cache && self) sz->Skv = sz->Sq + sz->P; /* P earlier positions, then Sq new ones */
    /* Pass 2: every dynamic axis gets its size. */
    for (size_t i = 0; i < L->n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        if (io->rank < 0 || io->rank > MHA_MAX_RANK)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED, "input '%s': its rank is not declared",
                            io->name);
        for (int ax = 0; ax < io->rank; ax++) {
            if (io->dims[ax] >= 0) {
                dims[i][ax] = io->dims[ax];
                continue;
            }
            rz_sym s = rz_axis_symbol(L, io, ax, cache);
            int64_t *slot = rz_sym_slot(sz, s);
            if ((io->role == MHA_ROLE_ATTN_MASK || io->role == MHA_ROLE_ATTN_BIAS) &&
                io->rank == 3 && ax == 0 && L->attn_mask_batch_first >= 2) {
                /* [B * q_heads, ...] once the heads are known, 1 before */
                dims[i][ax] = L->attn_mask_batch_first == 2 ? sz->B * L->q_heads : 1;
                continue;
            }
            if (slot)
                dims[i][ax] = *slot;
            else if (s == RZ_SYM_ONE)
                dims[i][ax] = 1;
            else
                return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                "input '%s' (%s): axis %d is dynamic, but only batch and "
                                "sequence axes may be",
                                io->name, mha_io_role_name(io->role), ax);
        }
    }
    /* The probe runs the whole graph in the reference interpreter (for the
     * recogniser and the verifier alike): a model whose fixed shapes are huge
     * cannot be probed in bounded memory and time, and a crafted file must
     * not make us try. Bound every input and the score matrix. */
    for (size_t i = 0; i < L->n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        int64_t numel = 1;
        for (int ax = 0; ax < io->rank; ax++)
            if (!mha_mul_i64(numel, dims[i][ax], &numel) || numel > RZ_PROBE_MAX_ELEMENTS) {
                char shape[96];
                return mha_fail(err, MHA_ERR_LIMIT,
                                "input '%s' has the fixed shape %s: too large to probe the graph "
                                "(limit %lld elements)",
                                io->name, tensor_shape_str(io->rank, dims[i], shape, sizeof shape),
                                (long long)RZ_PROBE_MAX_ELEMENTS);
            }
    }
    int64_t heads = L->q_heads > 0 ? L->q_heads : 1, scores = 1;
    if (!mha_mul_i64(scores, sz->B, &scores) || !mha_mul_i64(scores, heads, &scores) ||
        !mha_mul_i64(scores, sz->Sq, &scores) || !mha_mul_i64(scores, sz->Skv, &scores) ||
        scores > RZ_PROBE_MAX_SCORES)
        return mha_fail(err, MHA_ERR_LIMIT,
                        "fixed sizes batch %lld, query length %lld, key length %lld: the score "
                        "matrix is too large to probe the graph (limit %lld elements)",
                        (long long)sz->B, (long long)sz->Sq, (long long)sz->Skv,
                        (long long)RZ_PROBE_MAX_SCORES);
    return MHA_OK;
}

int rz_batch_only(const layer *L) {
    const int cache = layer_has_cache(L);
    int dynamic = 0;
    for (size_t i = 0; i < L->n_inputs; i++)
        for (int ax = 0; ax < L->inputs[i].rank; ax++) {
            if (L->inputs[i].dims[ax] >= 0) continue;
            if (rz_axis_symbol(L, &L->inputs[i], ax, cache) != RZ_SYM_B) return 0;
            dynamic = 1;
        }
    return dynamic;
}

/* ChatGLM's stacked cache [S, B', half, 2] (or [S, half, 2]): the cos and
 * sin of angle (p + 1) * (0.31 + 0.67 t / half) at position p of pair t. */
static void rz_fill_stacked(tensor *t, int vary_batch, int64_t max_pos, int64_t first) {
    const int64_t n = tensor_numel(t);
    if (t->rank < 3 || n <= 0) return;
    const int64_t half = t->dims[t->rank - 2], items = t->rank == 4 ? t->dims[1] : 1;
    if (half <= 0 || items <= 0) return;
    for (int64_t i = 0; i < n; i++) {
        const int64_t c = i % 2, pair = i / 2 % half, b = i / (2 * half) % items;
        const int64_t s = i / (2 * half * items);
        int64_t p = first + (vary_batch ? 2 * s + 3 * b : s);
        if (max_pos > 0) p %= max_pos;
        const float angle = (float)(p + 1) * (0.31f + 0.67f * (float)pair / (float)half);
        tensor_set_f64(t, i, c == 0 ? cos(angle) : sin(angle));
    }
}

void rz_fill_rotary_input(const layer *L, const layer_io *io, tensor *t, int vary_batch,
                          int64_t max_pos, int64_t first) {
    const int pos = io->role == MHA_ROLE_POSITION_IDS;
    if (!pos && io->role != MHA_ROLE_ROTARY_COS && io->role != MHA_ROLE_ROTARY_SIN) return;
    if (!pos && L->rotary_tables_input == 3) {
        rz_fill_stacked(t, vary_batch, max_pos, first);
        return;
    }
    const int64_t n = tensor_numel(t);
    if (t->rank < 2 || n <= 0) return;
    const int64_t W = pos ? 1 : t->dims[t->rank - 1];
    /* [S, d] tables have no batch axis: one item; the rows of an item are
     * its tokens whichever axis of a 4-D table is the 1 */
    const int64_t items = !pos && t->rank == 2 ? 1 : t->dims[0];
    if (items <= 0 || W <= 0) return;
    const int64_t per_item = n / items, half = W / 2 > 0 ? W / 2 : 1, S = per_item / W;
    if (S <= 0) return;
    for (int64_t i = 0; i < n; i++) {
        const int64_t b = i / per_item, s = (i % per_item) / W % S, c = i % W;
        int64_t p = first + (vary_batch ? 2 * s + 3 * b : s);
        if (max_pos > 0) p %= max_pos;
        if (pos) {
            tensor_set_f64(t, i, (double)p);
            continue;
        }
        /* one angle for columns c and c + half (rotate-half's pair, tables
         * cat(freqs, freqs)) and for 2t and 2t + 1 (GPT-J's interleaved
         * pair, repeat_interleave(freqs, 2)), so that either pairing reads
         * a rotation from the table; no angle a multiple of pi. An odd half
         * links every column: one angle per token. */
        const int64_t j = half % 2 == 0 ? (c % half) / 2 : 0;
        const float angle = (float)(p + 1) * (0.31f + 0.67f * (float)j / (float)half);
        tensor_set_f64(t, i, io->role == MHA_ROLE_ROTARY_COS ? cos(angle) : sin(angle));
    }
}

uint64_t rz_rand(uint64_t *state) {
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rz_fill_random(float *x, int64_t n, uint64_t *state) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((double)(rz_rand(state) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}
