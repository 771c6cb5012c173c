/* layer_bind.c -- the caller's tensors bound to a recognised layer's roles
 * and checked (dtype, rank, widths, batch and sequence agreement, mask
 * broadcastability), and so the output shapes a run will write. Messages
 * name the input and both shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layer_bind.h"
#include "mha/plugin.h"
#include "tensor.h"

static const char *layer_io_name(const layer_io *io) {
    return io->name && io->name[0] ? io->name : "(unnamed)";
}

/* "2x5x32" */
static const char *layer_shape(const mha_tensor *t, char *buf, size_t n) {
    return tensor_shape_str(t->rank, t->shape, buf, n);
}

/* Checks t against an expected rank and dims (-1 = any); msg names what. */
static mha_status layer_expect_shape(const layer_io *io, const mha_tensor *t, int rank,
                                     const int64_t *dims, const char *layout, mha_error *err) {
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = dims[i] < 0 || t->shape[i] == dims[i];
    if (ok) return MHA_OK;
    char got[128], want[128];
    size_t used = 0;
    want[0] = '\0';
    for (int i = 0; i < rank && used < sizeof want; i++) {
        int w = dims[i] < 0 ? snprintf(want + used, sizeof want - used, "%s?", i ? "x" : "")
                            : snprintf(want + used, sizeof want - used, "%s%lld", i ? "x" : "",
                                       (long long)dims[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return mha_fail(err, MHA_ERR_SHAPE, "input '%s': expected shape %s (%s), got %s",
                    layer_io_name(io), want, layout, layer_shape(t, got, sizeof got));
}

/* The float type of the layer's data inputs and outputs. */
static mha_dtype layer_data_dtype(const layer *L) {
    return L->dtype == MHA_DTYPE_UNDEFINED ? MHA_DTYPE_FLOAT32 : L->dtype;
}

static mha_status layer_expect_float(const layer *L, const layer_io *io, const mha_tensor *t,
                                     mha_error *err) {
    if (t->dtype == layer_data_dtype(L)) return MHA_OK;
    return mha_fail(err, MHA_ERR_DTYPE, "input '%s' (%s): dtype %s, expected %s", layer_io_name(io),
                    mha_io_role_name(io->role), mha_dtype_name(t->dtype),
                    mha_dtype_name(layer_data_dtype(L)));
}

static mha_status layer_expect_mask_dtype(const layer *L, const layer_io *io, const mha_tensor *t,
                                          mha_error *err) {
    int ok =
        t->dtype == MHA_DTYPE_BOOL || t->dtype == layer_data_dtype(L) ||
        ((L->int_mask_attend_nonzero || (L->kpm_valued && io->role == MHA_ROLE_KEY_PADDING_MASK) ||
          (L->attn_valued && io->role == MHA_ROLE_ATTN_MASK)) &&
         (t->dtype == MHA_DTYPE_INT32 || t->dtype == MHA_DTYPE_INT64));
    if (!ok)
        return mha_fail(err, MHA_ERR_DTYPE, "input '%s' (%s): dtype %s, expected bool or %s",
                        layer_io_name(io), mha_io_role_name(io->role), mha_dtype_name(t->dtype),
                        mha_dtype_name(layer_data_dtype(L)));
    if (io->dtype != MHA_DTYPE_UNDEFINED && io->dtype != t->dtype)
        return mha_fail(err, MHA_ERR_DTYPE, "input '%s' (%s): dtype %s, the model declares %s",
                        layer_io_name(io), mha_io_role_name(io->role), mha_dtype_name(t->dtype),
                        mha_dtype_name(io->dtype));
    return MHA_OK;
}

/* The additive mask broadcasts (right-aligned, numpy rules) to
 * [B, Hq, Sq, T] (T = past + new keys). With mask_pads_keys (ONNX
 * Attention) its key axis may be shorter than T: the missing keys are
 * masked. */
static mha_status layer_check_attn_mask(const layer *L, const layer_io *io, const mha_tensor *t,
                                        const exec_binding *bd, mha_error *err) {
    mha_status st = layer_expect_mask_dtype(L, io, t, err);
    if (st != MHA_OK) return st;
    const int64_t target[4] = {bd->B, L->q_heads, bd->Sq, bd->T};
    if (L->int_mask_attend_nonzero && t->rank == 3 &&
        (t->dtype == MHA_DTYPE_INT32 || t->dtype == MHA_DTYPE_INT64)) {
        /* com.microsoft mask_index [B, S, T]: batch first, not right-aligned */
        const int64_t want[3] = {bd->B, bd->Sq, bd->T};
        return layer_expect_shape(io, t, 3, want, "mask_index [B, S, T]", err);
    }
    if (L->attn_mask_batch_first == 4 && t->rank == 4) { /* [B, Sq, H, Skv], each may be 1 */
        const int64_t want[4] = {bd->B, bd->Sq, L->q_heads, bd->T};
        int fits = 1;
        for (int i = 0; i < 4; i++)
            fits = fits && (t->shape[i] == want[i] || t->shape[i] == 1);
        if (fits) return MHA_OK;
        return layer_expect_shape(io, t, 4, want, "attn_mask [B, Sq, heads, Skv]", err);
    }
    if (L->attn_mask_batch_first && t->rank == 3) { /* [B | B*H, Sq, Skv], Sq, Skv may be 1 */
        const int64_t want[3] = {L->attn_mask_batch_first == 2 ? bd->B * L->q_heads : bd->B, bd->Sq,
                                 bd->T};
        int fits = 1;
        for (int i = 0; i < 3; i++)
            fits = fits && (t->shape[i] == want[i] || (i > 0 && t->shape[i] == 1) ||
                            (i == 0 && t->shape[i] == 1 && L->attn_mask_batch_first == 1));
        if (fits) return MHA_OK;
        return layer_expect_shape(io, t, 3, want,
                                  L->attn_mask_batch_first == 2 ? "attn_mask [B*heads, Sq, Skv]"
                                                                : "attn_mask [B, Sq, Skv]",
                                  err);
    }
    int ok = t->rank <= 4;
    for (int i = 0; ok && i < t->rank; i++) {
        int64_t d = t->shape[t->rank - 1 - i], want = target[3 - i];
        ok = d == want || d == 1 || (i == 0 && L->mask_pads_keys && d <= want) ||
             (i <= 1 && L->attn_mask_window && d > want);
    }
    if (ok) return MHA_OK;
    char got[128], want[128];
    if (L->attn_mask_window)
        return mha_fail(err, MHA_ERR_SHAPE,
                        "input '%s' (attn_mask): shape %s covers fewer positions than "
                        "[B, heads, Sq, Skv] = %s (the layer reads its first Sq rows and "
                        "Skv columns)",
                        layer_io_name(io), layer_shape(t, got, sizeof got),
                        tensor_shape_str(4, target, want, sizeof want));
    return mha_fail(err, MHA_ERR_SHAPE,
                    "input '%s' (attn_mask): shape %s does not broadcast to "
                    "[B, heads, Sq, Skv] = %s",
                    layer_io_name(io), layer_shape(t, got, sizeof got),
                    tensor_shape_str(4, target, want, sizeof want));
}

/* Key padding: [B, Skv] (B may broadcast from 1). */
static mha_status layer_check_key_padding(const layer *L, const layer_io *io, const mha_tensor *t,
                                          const exec_binding *bd, mha_error *err) {
    mha_status st = layer_expect_mask_dtype(L, io, t, err);
    if (st != MHA_OK) return st;
    if (t->rank == 2 && (t->shape[0] == bd->B || t->shape[0] == 1) && t->shape[1] == bd->T)
        return MHA_OK;
    char got[128];
    return mha_fail(err, MHA_ERR_SHAPE,
                    "input '%s' (key_padding_mask): expected shape %lldx%lld ([B, Skv]%s), got %s",
                    layer_io_name(io), (long long)bd->B, (long long)bd->T,
                    bd->P ? ", Skv = past + new keys" : "", layer_shape(t, got, sizeof got));
}

static mha_status layer_bind_projected(const layer *L, exec_binding *bd, const layer_io *io_q,
                                       const layer_io *io_kv, const layer_io *io_k,
                                       const layer_io *io_v, mha_error *err) {
    const int sf = L->seq_first != 0;
    const char *layout = sf ? "[S, B, d_model]" : "[B, S, d_model]";
    mha_status st = layer_expect_float(L, io_q, bd->x_q, err);
    if (st != MHA_OK) return st;
    const int64_t want_q[3] = {-1, -1, L->d_model};
    st = layer_expect_shape(io_q, bd->x_q, 3, want_q, layout, err);
    if (st != MHA_OK) return st;
    bd->B = bd->x_q->shape[sf ? 1 : 0];
    bd->Sq = bd->x_q->shape[sf ? 0 : 1];
    if (L->kv_given) {
        /* K, V already projected, in head layout */
        if (bd->x_kv || !bd->k || !bd->v)
            return mha_fail(err, MHA_ERR_INTERNAL,
                            "layer with K / V given needs K and V inputs and no key/value input");
        const layer_io *io[2] = {io_k, io_v};
        const mha_tensor *t[2] = {bd->k, bd->v};
        for (int w = 0; w < 2; w++) {
            st = layer_expect_float(L, io[w], t[w], err);
            if (st != MHA_OK) return st;
            const int64_t want[4] = {bd->B, L->kv_heads, w ? bd->Skv : -1,
                                     w ? layer_dv(L) : L->d_head};
            st =
                layer_expect_shape(io[w], t[w], 4, want,
                                   w ? "[B, kv_heads, Skv, d_head_v] with the query's B and K's Skv"
                                     : "[B, kv_heads, Skv, d_head] with the query's B",
                                   err);
            if (st != MHA_OK) return st;
            if (!w) bd->Skv = bd->k->shape[2];
        }
    } else if (L->cross) {
        if (L->k_from_query) { /* K from the query input */
            if (bd->x_kv)
                return mha_fail(err, MHA_ERR_INTERNAL,
                                "layer keyed by its query has a key/value input '%s'",
                                layer_io_name(io_kv));
            bd->x_kv = bd->x_q;
            io_kv = io_q;
        }
        if (!bd->x_kv)
            return mha_fail(err, MHA_ERR_INTERNAL, "cross-attention layer has no key/value input");
        st = layer_expect_float(L, io_kv, bd->x_kv, err);
        if (st != MHA_OK) return st;
        int64_t want_kv[3] = {-1, -1, L->d_kv};
        want_kv[sf ? 1 : 0] = bd->B; /* the same batch as the query */
        st = layer_expect_shape(
            io_kv, bd->x_kv, 3, want_kv,
            sf ? "[S_kv, B, d_kv] with the query's B" : "[B, S_kv, d_kv] with the query's B", err);
        if (st != MHA_OK) return st;
        bd->Skv = bd->x_kv->shape[sf ? 0 : 1];
    } else {
        if (bd->x_kv)
            return mha_fail(err, MHA_ERR_INTERNAL,
                            "self-attention layer has a separate key/value input '%s'",
                            layer_io_name(io_kv));
        bd->x_kv = bd->x_q;
        bd->Skv = bd->Sq;
    }
    /* the weights themselves are the packing's (exec_pack_weights): a
     * packed layer may have released its unpacked copies */
    bd->y_shape.rank = 3;
    bd->y_shape.shape[0] = sf ? bd->Sq : bd->B;
    bd->y_shape.shape[1] = sf ? bd->B : bd->Sq;
    bd->y_shape.shape[2] = bd->d_out;
    return MHA_OK;
}

/* The V projection's own input (L->v_input): the key/value input's shape,
 * [B, S_kv, d_kv] (or [S_kv, B, d_kv]). Without one, V reads x_kv. */
static mha_status layer_bind_value_input(const layer *L, exec_binding *bd, const layer_io *io,
                                         const mha_tensor *t, mha_error *err) {
    bd->x_v = bd->x_kv;
    if (!L->v_input) {
        if (t)
            return mha_fail(err, MHA_ERR_INTERNAL, "layer has a value input '%s' it does not read",
                            layer_io_name(io));
        return MHA_OK;
    }
    if (!t || !bd->x_kv || (bd->x_kv == bd->x_q && !L->k_from_query))
        return mha_fail(err, MHA_ERR_INTERNAL, "layer with a value input lacks it or a key input");
    mha_status st = layer_expect_float(L, io, t, err);
    if (st != MHA_OK) return st;
    const int64_t want[3] = {bd->x_kv->shape[0], bd->x_kv->shape[1], layer_v_rows(L)};
    st = layer_expect_shape(
        io, t, 3, want, "the key input's rows, V's width ([B, S_kv, d_v] or [S_kv, B, d_v])", err);
    if (st == MHA_OK) bd->x_v = t;
    return st;
}

static mha_status layer_bind_bare(const layer *L, exec_binding *bd, const layer_io *io[3],
                                  mha_error *err) {
    const mha_tensor *t[3] = {bd->q, bd->k, bd->v};
    for (int i = 0; i < 3; i++) {
        mha_status st = layer_expect_float(L, io[i], t[i], err);
        if (st != MHA_OK) return st;
    }
    const int64_t Hq = L->q_heads, Hkv = L->kv_heads, dk = bd->dk, dv = bd->dv;
    const int rank = L->qkv_rank == 4 ? 4 : 3;
    mha_status st;
    if (rank == 3) {
        const int64_t wq[3] = {-1, -1, Hq * dk};
        st = layer_expect_shape(io[0], bd->q, 3, wq, "[B, Sq, q_heads*d_head]", err);
        if (st != MHA_OK) return st;
        bd->B = bd->q->shape[0];
        bd->Sq = bd->q->shape[1];
        const int64_t wk[3] = {bd->B, -1, Hkv * dk};
        st = layer_expect_shape(io[1], bd->k, 3, wk, "[B, Skv, kv_heads*d_head] with Q's B", err);
        if (st != MHA_OK) return st;
        bd->Skv = bd->k->shape[1];
        const int64_t wv[3] = {bd->B, bd->Skv, Hkv * dv};
        st = layer_expect_shape(io[2], bd->v, 3, wv, "[B, Skv, kv_heads*d_head_v] with K's B, Skv",
                                err);
        if (st != MHA_OK) return st;
        bd->y_shape.rank = 3;
        bd->y_shape.shape[0] = bd->B;
        bd->y_shape.shape[1] = bd->Sq;
        bd->y_shape.shape[2] = Hq * dv;
    } else {
        const int64_t wq[4] = {-1, Hq, -1, dk};
        st = layer_expect_shape(io[0], bd->q, 4, wq, "[B, q_heads, Sq, d_head]", err);
        if (st != MHA_OK) return st;
        bd->B = bd->q->shape[0];
        bd->Sq = bd->q->shape[2];
        const int64_t wk[4] = {bd->B, Hkv, -1, dk};
        st = layer_expect_shape(io[1], bd->k, 4, wk, "[B, kv_heads, Skv, d_head] with Q's B", err);
        if (st != MHA_OK) return st;
        bd->Skv = bd->k->shape[2];
        const int64_t wv[4] = {bd->B, Hkv, bd->Skv, dv};
        st = layer_expect_shape(io[2], bd->v, 4, wv, "[B, kv_heads, Skv, d_head_v] with K's B, Skv",
                                err);
        if (st != MHA_OK) return st;
        bd->y_shape.rank = 4;
        bd->y_shape.shape[0] = bd->B;
        bd->y_shape.shape[1] = Hq;
        bd->y_shape.shape[2] = bd->Sq;
        bd->y_shape.shape[3] = dv;
    }
    return MHA_OK;
}

/* past_key / past_value [B, Hkv, P, dk|dv] (bare layers, and projected
 * self-attention layers with a KV cache), the total key length T, and the
 * [B] key lengths. */
static mha_status layer_bind_cache(const layer *L, exec_binding *bd, const layer_io *const *io_role,
                                   const mha_tensor *const *t_role, mha_error *err) {
    const mha_tensor *pk = t_role[MHA_ROLE_PAST_KEY], *pv = t_role[MHA_ROLE_PAST_VALUE];
    bd->P = 0;
    if (pk || pv) {
        if (!pk || !pv || (L->has_proj && (L->cross || !layer_has_cache(L))))
            return mha_fail(err, MHA_ERR_INTERNAL,
                            "layer: past_key and past_value come together, on a bare layer or "
                            "a projected self-attention layer");
        mha_status st = layer_expect_float(L, io_role[MHA_ROLE_PAST_KEY], pk, err);
        if (st == MHA_OK) st = layer_expect_float(L, io_role[MHA_ROLE_PAST_VALUE], pv, err);
        if (st != MHA_OK) return st;
        const int64_t wk[4] = {bd->B, L->kv_heads, -1, bd->dk};
        st = layer_expect_shape(io_role[MHA_ROLE_PAST_KEY], pk, 4, wk,
                                "[B, kv_heads, past, d_head] with Q's B", err);
        if (st != MHA_OK) return st;
        const int64_t wv[4] = {bd->B, L->kv_heads, pk->shape[2], bd->dv};
        st = layer_expect_shape(io_role[MHA_ROLE_PAST_VALUE], pv, 4, wv,
                                "[B, kv_heads, past, d_head_v] with past_key's past", err);
        if (st != MHA_OK) return st;
        bd->past_key = pk;
        bd->past_value = pv;
        bd->P = pk->shape[2];
    }
    if (bd->P > INT64_MAX - bd->Skv)
        return mha_fail(err, MHA_ERR_LIMIT, "past %lld + new %lld keys overflow", (long long)bd->P,
                        (long long)bd->Skv);
    bd->T = bd->P + bd->Skv;
    const mha_tensor *len = t_role[MHA_ROLE_NONPAD_KV_SEQLEN];
    if (len) {
        const layer_io *io = io_role[MHA_ROLE_NONPAD_KV_SEQLEN];
        if (len->dtype != MHA_DTYPE_INT64 && len->dtype != MHA_DTYPE_INT32)
            return mha_fail(err, MHA_ERR_DTYPE, "input '%s' (%s): dtype %s, expected int64",
                            layer_io_name(io), mha_io_role_name(io->role),
                            mha_dtype_name(len->dtype));
        const int64_t wl[1] = {bd->B};
        mha_status st = layer_expect_shape(io, len, 1, wl, "[B]", err);
        if (st != MHA_OK) return st;
        bd->kv_lengths = len;
    }
    return MHA_OK;
}

/* ChatGLM's rotary cache: cos and sin of each pair stacked, [Sq, B or 1,
 * rotary_dim / 2, 2] or [Sq, rotary_dim / 2, 2] (layer.h rotary_tables_input
 * 3), as the role ROTARY_COS. */
static mha_status layer_bind_rotary_stacked(const layer *L, exec_binding *bd, const layer_io *io,
                                            const mha_tensor *t, mha_error *err) {
    mha_status st = layer_expect_float(L, io, t, err);
    if (st != MHA_OK) return st;
    const int rank = t->rank == 3 ? 3 : 4;
    const int64_t b = rank == 4 && t->shape[1] == 1 ? 1 : bd->B;
    const int64_t want4[4] = {bd->Sq, b, L->rotary_dim / 2, 2};
    const int64_t want3[3] = {bd->Sq, L->rotary_dim / 2, 2};
    st = layer_expect_shape(io, t, rank, rank == 4 ? want4 : want3,
                            rank == 4 ? "[S, B or 1, rotary_dim / 2, 2]" : "[S, rotary_dim / 2, 2]",
                            err);
    if (st == MHA_OK) bd->rotary_cos = t;
    return st;
}

/* Rotary positions [B or 1, Sq] (integer), or the cos / sin tables
 * [B or 1, Sq, rotary_dim] or [B or 1, 1, Sq, rotary_dim] given as inputs:
 * only to a rotary self-attention layer, and never both. */
static mha_status layer_bind_rotary_inputs(const layer *L, exec_binding *bd,
                                           const layer_io *const *io_role,
                                           const mha_tensor *const *t_role, mha_error *err) {
    const mha_tensor *pos = t_role[MHA_ROLE_POSITION_IDS];
    const mha_tensor *cs = t_role[MHA_ROLE_ROTARY_COS], *sn = t_role[MHA_ROLE_ROTARY_SIN];
    if (!pos && !cs && !sn) return MHA_OK;
    if (cs && !sn && !pos && L->rotary && L->has_proj && !L->cross && L->rotary_tables_input == 3)
        return layer_bind_rotary_stacked(L, bd, io_role[MHA_ROLE_ROTARY_COS], cs, err);
    if (!L->rotary || !L->has_proj || L->cross || (pos && (cs || sn)) || (!pos && (!cs || !sn)))
        return mha_fail(err, MHA_ERR_INTERNAL,
                        "layer: rotary inputs (positions %d, cos %d, sin %d) do not fit a %s layer",
                        pos != NULL, cs != NULL, sn != NULL,
                        L->rotary ? "rotary self-attention" : "non-rotary");
    if (pos) {
        const layer_io *io = io_role[MHA_ROLE_POSITION_IDS];
        if (pos->dtype != MHA_DTYPE_INT64 && pos->dtype != MHA_DTYPE_INT32)
            return mha_fail(err, MHA_ERR_DTYPE,
                            "input '%s' (position_ids): dtype %s, expected int64",
                            layer_io_name(io), mha_dtype_name(pos->dtype));
        const int64_t b = pos->rank == 2 && pos->shape[0] == 1 ? 1 : bd->B;
        const int64_t want[2] = {b, bd->Sq};
        mha_status st = layer_expect_shape(io, pos, 2, want, "[B or 1, S]", err);
        if (st != MHA_OK) return st;
        bd->position_ids = pos;
        return MHA_OK;
    }
    for (int w = 0; w < 2; w++) {
        const mha_tensor *t = w ? sn : cs;
        const layer_io *io = io_role[w ? MHA_ROLE_ROTARY_SIN : MHA_ROLE_ROTARY_COS];
        mha_status st = layer_expect_float(L, io, t, err);
        if (st != MHA_OK) return st;
        const int rank = t->rank == 4 || t->rank == 2 ? t->rank : 3;
        const int64_t b = t->rank >= 1 && t->shape[0] == 1 ? 1 : bd->B;
        /* a column per turning dim, or one per pair */
        const int64_t W = L->rotary_tables_input == 2 ? L->rotary_dim / 2 : L->rotary_dim;
        const int64_t want3[3] = {b, bd->Sq, W};
        /* the 1 before the tokens, or after them (GPT-J's [B, S, 1, d]): one layout */
        const int tokens_first = rank == 4 && t->shape[1] != 1 && t->shape[2] == 1;
        const int64_t want4[4] = {b, tokens_first ? bd->Sq : 1, tokens_first ? 1 : bd->Sq, W};
        /* [S, rotary_dim]: one table for the whole batch */
        const int64_t *want = rank == 4 ? want4 : rank == 3 ? want3 : want3 + 1;
        st = layer_expect_shape(
            io, t, rank, want,
            rank == 4 ? (tokens_first ? "[B or 1, S, 1, rotary_dim]" : "[B or 1, 1, S, rotary_dim]")
            : rank == 3 ? "[B or 1, S, rotary_dim]"
                        : "[S, rotary_dim]",
            err);
        if (st != MHA_OK) return st;
    }
    if (cs->rank != sn->rank || cs->shape[0] != sn->shape[0])
        return mha_fail(err, MHA_ERR_SHAPE, "inputs '%s' and '%s': cos and sin differ in batch",
                        layer_io_name(io_role[MHA_ROLE_ROTARY_COS]),
                        layer_io_name(io_role[MHA_ROLE_ROTARY_SIN]));
    bd->rotary_cos = cs;
    bd->rotary_sin = sn;
    return MHA_OK;
}

mha_status layer_bind(const layer *L, const mha_tensor *inputs, size_t n_inputs, size_t n_outputs,
                      exec_binding *bd, mha_error *err) {
    memset(bd, 0, sizeof *bd);
    if (!L) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "no layer");
    if (L->q_heads < 1 || L->kv_heads < 1 || L->q_heads % L->kv_heads || L->d_head < 1 ||
        (L->has_proj && (L->d_model < 1 || (L->cross && !L->kv_given && L->d_kv < 1))))
        return mha_fail(err, MHA_ERR_INTERNAL,
                        "layer: inconsistent sizes (q_heads %lld, kv_heads %lld, d_head %lld)",
                        (long long)L->q_heads, (long long)L->kv_heads, (long long)L->d_head);
    if (L->rotary != MHA_ROTARY_NONE &&
        ((L->rotary != MHA_ROTARY_HALF && L->rotary != MHA_ROTARY_INTERLEAVED) || !L->has_proj ||
         L->rotary_dim < 2 || L->rotary_dim % 2 || L->rotary_dim > L->d_head ||
         L->rotary_n_pos < 0 || (L->rotary_n_pos > 0 && (!L->rotary_cos || !L->rotary_sin)) ||
         (L->rotary_n_pos == 0 && !L->rotary_inv_freq && !L->rotary_tables_input)))
        return mha_fail(err, MHA_ERR_INTERNAL,
                        "layer: rotary embedding of kind %d over %lld of %lld dims, %lld table "
                        "rows, is inconsistent",
                        L->rotary, (long long)L->rotary_dim, (long long)L->d_head,
                        (long long)L->rotary_n_pos);
    for (int s = 0; s < 2; s++)
        if (L->qk_norm[s] != LAYER_QK_NORM_NONE &&
            ((L->qk_norm[s] != LAYER_QK_NORM_RMS && L->qk_norm[s] != LAYER_QK_NORM_LAYER) ||
             !L->has_proj || !L->qk_norm_w[s] || !(L->qk_norm_eps[s] >= 0.0f) ||
             !isfinite(L->qk_norm_eps[s]) || L->need_weights || (s == 1 && L->kv_given)))
            return mha_fail(err, MHA_ERR_INTERNAL,
                            "layer: the norm of %s before the rotary (kind %d) is inconsistent",
                            s ? "K" : "Q", L->qk_norm[s]);
    if (n_inputs != L->n_inputs)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "the model has %zu inputs, %zu given",
                        L->n_inputs, n_inputs);
    if (n_outputs != L->n_outputs)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "the model has %zu outputs, %zu given",
                        L->n_outputs, n_outputs);
    if (n_inputs && !inputs) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "inputs is NULL");
    bd->dk = L->d_head;
    bd->dv = layer_dv(L);
    bd->d_out = layer_dout(L);

    const layer_io *io_role[MHA_ROLE_ATTN_BIAS + 1] = {0};
    const mha_tensor *t_role[MHA_ROLE_ATTN_BIAS + 1] = {0};
    for (size_t i = 0; i < n_inputs; i++) {
        const layer_io *io = &L->inputs[i];
        const mha_tensor *t = &inputs[i];
        if (t->rank < 0 || t->rank > MHA_MAX_RANK)
            return mha_fail(err, MHA_ERR_SHAPE, "input '%s': rank %d out of range",
                            layer_io_name(io), t->rank);
        int64_t numel = mha_tensor_numel(t);
        if (numel < 0)
            return mha_fail(err, MHA_ERR_SHAPE,
                            "input '%s': a dimension is negative or the size overflows",
                            layer_io_name(io));
        if (numel > 0 && !t->data)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "input '%s': data is NULL",
                            layer_io_name(io));
        if (io->rank > 0 && t->rank != io->rank) {
            char got[128];
            return mha_fail(err, MHA_ERR_SHAPE,
                            "input '%s': rank %d (shape %s), the model "
                            "declares rank %d",
                            layer_io_name(io), t->rank, layer_shape(t, got, sizeof got), io->rank);
        }
        switch (io->role) {
        case MHA_ROLE_QUERY:
        case MHA_ROLE_KEY_VALUE:
        case MHA_ROLE_Q:
        case MHA_ROLE_K:
        case MHA_ROLE_V:
        case MHA_ROLE_ATTN_MASK:
        case MHA_ROLE_KEY_PADDING_MASK:
        case MHA_ROLE_PAST_KEY:
        case MHA_ROLE_PAST_VALUE:
        case MHA_ROLE_NONPAD_KV_SEQLEN:
        case MHA_ROLE_POSITION_IDS:
        case MHA_ROLE_ROTARY_COS:
        case MHA_ROLE_ROTARY_SIN:
        case MHA_ROLE_VALUE_INPUT:
        case MHA_ROLE_ATTN_BIAS:
            if (io_role[io->role])
                return mha_fail(err, MHA_ERR_INTERNAL, "layer: two inputs with role %s",
                                mha_io_role_name(io->role));
            io_role[io->role] = io;
            t_role[io->role] = t;
            break;
        default:
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "input '%s' has role %s, which the executor does not run yet",
                            layer_io_name(io), mha_io_role_name(io->role));
        }
    }
    int have_y = 0;
    bd->present_key_index = bd->present_value_index = bd->qk_index = bd->weights_index = -1;
    for (size_t i = 0; i < n_outputs; i++) {
        const mha_io_role role = L->outputs[i].role;
        int64_t *extra = role == MHA_ROLE_PRESENT_KEY     ? &bd->present_key_index
                         : role == MHA_ROLE_PRESENT_VALUE ? &bd->present_value_index
                         : role == MHA_ROLE_QK_OUTPUT     ? &bd->qk_index
                         : role == MHA_ROLE_ATTN_WEIGHTS  ? &bd->weights_index
                                                          : NULL;
        /* the cache and the scores of bare layers; the averaged weights and
         * the cache of projected ones */
        int served = role == MHA_ROLE_ATTN_WEIGHTS ? L->has_proj && L->need_weights
                     : role == MHA_ROLE_PRESENT_KEY || role == MHA_ROLE_PRESENT_VALUE
                         ? !L->has_proj || layer_keeps_cache(L)
                         : !L->has_proj;
        int ok = role == MHA_ROLE_OUTPUT ? !have_y : (extra && *extra < 0 && served);
        if (!ok)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "output '%s' has role %s, which the executor does not produce for "
                            "this layer",
                            layer_io_name(&L->outputs[i]), mha_io_role_name(role));
        if (extra) {
            *extra = (int64_t)i;
        } else {
            bd->y_index = i;
            have_y = 1;
        }
    }
    if (!have_y) return mha_fail(err, MHA_ERR_INTERNAL, "layer has no output");
    bd->y_shape.dtype = layer_data_dtype(L);

    mha_status st;
    if (L->has_proj) {
        if (!t_role[MHA_ROLE_QUERY])
            return mha_fail(err, MHA_ERR_INTERNAL, "layer has projections but no query input");
        if (t_role[MHA_ROLE_Q] || (!L->kv_given && (t_role[MHA_ROLE_K] || t_role[MHA_ROLE_V])))
            return mha_fail(err, MHA_ERR_INTERNAL, "layer with projections has bare Q/K/V inputs");
        bd->x_q = t_role[MHA_ROLE_QUERY];
        bd->x_kv = t_role[MHA_ROLE_KEY_VALUE];
        bd->k = t_role[MHA_ROLE_K];
        bd->v = t_role[MHA_ROLE_V];
        st = layer_bind_projected(L, bd, io_role[MHA_ROLE_QUERY], io_role[MHA_ROLE_KEY_VALUE],
                                  io_role[MHA_ROLE_K], io_role[MHA_ROLE_V], err);
        if (st == MHA_OK)
            st = layer_bind_value_input(L, bd, io_role[MHA_ROLE_VALUE_INPUT],
                                        t_role[MHA_ROLE_VALUE_INPUT], err);
    } else {
        if (!t_role[MHA_ROLE_Q] || !t_role[MHA_ROLE_K] || !t_role[MHA_ROLE_V])
            return mha_fail(err, MHA_ERR_INTERNAL, "bare attention layer lacks a Q, K or V input");
        if (t_role[MHA_ROLE_QUERY] || t_role[MHA_ROLE_KEY_VALUE] || t_role[MHA_ROLE_VALUE_INPUT])
            return mha_fail(err, MHA_ERR_INTERNAL, "bare attention layer has a layer input");
        bd->q = t_role[MHA_ROLE_Q];
        bd->k = t_role[MHA_ROLE_K];
        bd->v = t_role[MHA_ROLE_V];
        const layer_io *io[3] = {io_role[MHA_ROLE_Q], io_role[MHA_ROLE_K], io_role[MHA_ROLE_V]};
        st = layer_bind_bare(L, bd, io, err);
    }
    if (st != MHA_OK) return st;

    st = layer_bind_cache(L, bd, io_role, t_role, err);
    if (st != MHA_OK) return st;
    if (t_role[MHA_ROLE_ATTN_MASK]) {
        bd->attn_mask = t_role[MHA_ROLE_ATTN_MASK];
        st = layer_check_attn_mask(L, io_role[MHA_ROLE_ATTN_MASK], bd->attn_mask, bd, err);
        if (st != MHA_OK) return st;
    }
    if (t_role[MHA_ROLE_ATTN_BIAS]) { /* float, shaped as a float attn_mask */
        bd->attn_bias = t_role[MHA_ROLE_ATTN_BIAS];
        st = layer_expect_float(L, io_role[MHA_ROLE_ATTN_BIAS], bd->attn_bias, err);
        if (st == MHA_OK)
            st = layer_check_attn_mask(L, io_role[MHA_ROLE_ATTN_BIAS], bd->attn_bias, bd, err);
        if (st != MHA_OK) return st;
    }
    if (L->bias && L->bias_rel_len > 0 && (bd->Sq > L->bias_rel_len || bd->Skv > L->bias_rel_len))
        return mha_fail(err, MHA_ERR_SHAPE,
                        "query length %lld, key length %lld: the model's relative position bias "
                        "is tabulated for lengths up to %lld",
                        (long long)bd->Sq, (long long)bd->Skv, (long long)L->bias_rel_len);
    if (L->bias && L->bias_rel_len == 0 && (bd->Sq != L->bias_sq || bd->Skv != L->bias_skv))
        return mha_fail(err, MHA_ERR_SHAPE,
                        "query length %lld, key length %lld: the model's constant position "
                        "bias is for query length %lld, key length %lld only",
                        (long long)bd->Sq, (long long)bd->Skv, (long long)L->bias_sq,
                        (long long)L->bias_skv);
    if (L->bias_windows > 1 && bd->B % L->bias_windows)
        return mha_fail(err, MHA_ERR_SHAPE,
                        "a batch of %lld windows: the model's layer takes %lld windows per "
                        "image",
                        (long long)bd->B, (long long)L->bias_windows);
    if (t_role[MHA_ROLE_KEY_PADDING_MASK]) {
        bd->key_padding = t_role[MHA_ROLE_KEY_PADDING_MASK];
        st = layer_check_key_padding(L, io_role[MHA_ROLE_KEY_PADDING_MASK], bd->key_padding, bd,
                                     err);
        if (st != MHA_OK) return st;
    }
    return layer_bind_rotary_inputs(L, bd, io_role, t_role, err);
}

mha_status layer_output_shapes(const layer *L, const mha_tensor *inputs, size_t n_inputs,
                               mha_tensor *outputs, size_t n_outputs, mha_error *err) {
    exec_binding bd;
    mha_status st = layer_bind(L, inputs, n_inputs, n_outputs, &bd, err);
    if (st != MHA_OK) return st;
    if (n_outputs && !outputs) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "outputs is NULL");
    mha_tensor *y = &outputs[bd.y_index];
    y->dtype = bd.y_shape.dtype;
    y->rank = bd.y_shape.rank;
    for (int i = 0; i < MHA_MAX_RANK; i++)
        y->shape[i] = i < y->rank ? bd.y_shape.shape[i] : 0;
    /* present_key [B, Hkv, T, dk], present_value [B, Hkv, T, dv],
     * qk_matmul_output [B, Hq, Sq, T] */
    const int64_t extra_index[3] = {bd.present_key_index, bd.present_value_index, bd.qk_index};
    const int64_t extra_dims[3][4] = {{bd.B, L->kv_heads, bd.T, bd.dk},
                                      {bd.B, L->kv_heads, bd.T, bd.dv},
                                      {bd.B, L->q_heads, bd.Sq, bd.T}};
    if (bd.weights_index >= 0) { /* [B, Sq, Skv] averaged, or [B, Hq, Sq, Skv] */
        mha_tensor *t = &outputs[bd.weights_index];
        const int per_head = L->need_weights == 2;
        memset(t->shape, 0, sizeof t->shape);
        t->dtype = MHA_DTYPE_FLOAT32;
        t->rank = 3 + per_head;
        t->shape[0] = bd.B;
        if (per_head) t->shape[1] = L->q_heads;
        t->shape[1 + per_head] = bd.Sq;
        t->shape[2 + per_head] = bd.Skv;
    }
    for (int e = 0; e < 3; e++) {
        if (extra_index[e] < 0) continue;
        mha_tensor *t = &outputs[extra_index[e]];
        t->dtype = bd.y_shape.dtype;
        t->rank = 4;
        for (int i = 0; i < MHA_MAX_RANK; i++)
            t->shape[i] = i < 4 ? extra_dims[e][i] : 0;
    }
    return MHA_OK;
}
