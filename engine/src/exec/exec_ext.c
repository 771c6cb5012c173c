/* exec_ext.c -- the whole ONNX Attention operator on top of the float32
 * attention kernels (see exec_ext.h). For a bare Attention layer:
 *
 *   Q  [B, Hq, Sq, dk] or [B, Sq, Hq*dk]        -> float32, same layout
 *   K' = concat(past_key, K)   [B, Hkv, T, dk]   float32, T = P + Skv
 *   V' = concat(past_value, V) [B, Hkv, T, dv]   float32
 *   mask' [B|1, Hq|1, Sq, T] float32 additive, -inf where hidden by: the
 *         attn_mask (bool False, float -inf / lowest, keys past its end),
 *         the opset-25 window around the frontier i + offset[b]
 *   kv_len[b]        = nonpad_kv_seqlen[b] (and the run's kv_lengths)
 *   causal_offset[b] = P with a past, else nonpad_kv_seqlen[b] - Sq, else 0
 *   Y = plugin attention(Q, K', V', mask', kv_len, causal_offset)
 *   present_* = K', V' in the data type; qk_matmul_output computed here
 *
 * The opset-25 window is placed against the same frontier as the causal
 * rule: key j is visible when frontier - left <= j <= frontier + right
 * (a size of -1 leaves that side open). */
#include "exec_ext.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "tensor.h"

/* Larger than any sequence length: clamps key lengths so that frontier
 * arithmetic cannot overflow. */
#define EXT_BIG ((int64_t)1 << 40)

static mha_dtype ext_dtype(const layer *L) {
    return L->dtype == MHA_DTYPE_UNDEFINED ? MHA_DTYPE_FLOAT32 : L->dtype;
}

static float ext_load(const void *data, mha_dtype dt, int64_t i) {
    switch (dt) {
    case MHA_DTYPE_FLOAT32:
        return ((const float *)data)[i];
    case MHA_DTYPE_FLOAT16:
        return mha_half_to_float(((const uint16_t *)data)[i]);
    case MHA_DTYPE_BFLOAT16:
        return mha_bf16_to_float(((const uint16_t *)data)[i]);
    case MHA_DTYPE_FLOAT64:
        return (float)((const double *)data)[i];
    case MHA_DTYPE_BOOL:
    case MHA_DTYPE_UINT8:
        return (float)((const uint8_t *)data)[i];
    case MHA_DTYPE_INT32:
        return (float)((const int32_t *)data)[i];
    case MHA_DTYPE_INT64:
        return (float)((const int64_t *)data)[i];
    default:
        return 0.0f;
    }
}

static void ext_store(void *data, mha_dtype dt, int64_t i, float v) {
    switch (dt) {
    case MHA_DTYPE_FLOAT16:
        ((uint16_t *)data)[i] = mha_float_to_half(v);
        break;
    case MHA_DTYPE_BFLOAT16:
        ((uint16_t *)data)[i] = mha_float_to_bf16(v);
        break;
    default:
        ((float *)data)[i] = v;
        break;
    }
}

static int64_t ext_i64(const mha_tensor *t, int64_t i) {
    int64_t v =
        t->dtype == MHA_DTYPE_INT32 ? ((const int32_t *)t->data)[i] : ((const int64_t *)t->data)[i];
    return v > EXT_BIG ? EXT_BIG : v < -EXT_BIG ? -EXT_BIG : v;
}

/* The most negative finite value of a mask type: it hides its key as -inf
 * does (the spec's reference and ONNX Runtime write either). */
static float ext_lowest(mha_dtype dt) {
    switch (dt) {
    case MHA_DTYPE_FLOAT16:
        return -65504.0f;
    case MHA_DTYPE_BFLOAT16:
        return -3.38953139e38f;
    default:
        return -FLT_MAX;
    }
}

static const mha_tensor *ext_role_input(const layer *L, const mha_tensor *inputs, size_t n,
                                        mha_io_role role) {
    for (size_t i = 0; i < n && i < L->n_inputs; i++)
        if (L->inputs[i].role == role) return &inputs[i];
    return NULL;
}

int exec_ext_wanted(const layer *L, const mha_tensor *inputs, size_t n_inputs) {
    if (!L) return 0;
    if (ext_dtype(L) != MHA_DTYPE_FLOAT32) return 1;
    /* a projected layer's window is a term of exec.c's mask */
    if (!L->has_proj && (L->has_left_window || L->has_right_window)) return 1;
    /* a projected layer's KV cache is the float32 core's (exec.c) */
    const int core_cache = layer_keeps_cache(L);
    for (size_t i = 0; i < L->n_inputs; i++) {
        mha_io_role r = L->inputs[i].role;
        if (((r == MHA_ROLE_PAST_KEY || r == MHA_ROLE_PAST_VALUE) && !core_cache) ||
            r == MHA_ROLE_NONPAD_KV_SEQLEN)
            return 1;
    }
    for (size_t i = 0; i < L->n_outputs; i++) {
        mha_io_role r = L->outputs[i].role;
        if (r != MHA_ROLE_OUTPUT &&
            !(core_cache && (r == MHA_ROLE_PRESENT_KEY || r == MHA_ROLE_PRESENT_VALUE)))
            return 1;
    }
    if (!inputs || n_inputs != L->n_inputs) return 0; /* layer_bind reports it */
    if (L->int_mask_attend_nonzero) {
        for (size_t i = 0; i < n_inputs; i++) {
            mha_io_role r = L->inputs[i].role;
            if ((r == MHA_ROLE_ATTN_MASK || r == MHA_ROLE_KEY_PADDING_MASK) &&
                (inputs[i].dtype == MHA_DTYPE_INT32 || inputs[i].dtype == MHA_DTYPE_INT64))
                return 1;
        }
    }
    if (L->mask_pads_keys && !L->has_proj) {
        /* a key axis shorter than the keys is padded, not broadcast */
        const mha_tensor *m = ext_role_input(L, inputs, n_inputs, MHA_ROLE_ATTN_MASK);
        const mha_tensor *k = ext_role_input(L, inputs, n_inputs, MHA_ROLE_K);
        if (m && k && m->rank >= 1 && (k->rank == 3 || k->rank == 4)) {
            int64_t skv = k->shape[k->rank - 2];
            if (m->shape[m->rank - 1] != skv) return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* A bare Attention layer                                                    */
/* ------------------------------------------------------------------------ */

typedef struct ext_bare {
    int64_t B, Hq, Hkv, Sq, Skv, P, T, dk, dv;
    int rank;       /* 3: [B, S, H*d]; 4: [B, H, S, d] */
    mha_dtype dt;   /* data type */
    float *q;       /* Q as float32, the input's layout (may alias the input) */
    float *kc, *vc; /* K', V' [B, Hkv, T, d] */
    float *y;       /* Y as float32, the output's layout (may alias the output) */
    float *mask;    /* [mb, mh, Sq, T] or NULL */
    int64_t mb, mh;
    int64_t *kv_len; /* [B] or NULL */
    int64_t *offset; /* [B] causal / window frontier offsets */
    float *owned[6];
} ext_bare;

/* Element offset of (b, h, s, e) in a 3-D or 4-D Q/K/V/Y layout. */
static int64_t ext_at(int rank, int64_t H, int64_t S, int64_t d, int64_t b, int64_t h, int64_t s,
                      int64_t e) {
    if (rank == 4) return ((b * H + h) * S + s) * d + e;
    return (b * S + s) * (H * d) + h * d + e;
}

static float *ext_alloc_floats(const mha_alloc_ctx *a, ext_bare *x, int slot, int64_t n) {
    size_t bytes;
    if (n < 0 || !mha_mul_size((size_t)n, sizeof(float), &bytes)) return NULL;
    x->owned[slot] = mha_malloc(a, bytes ? bytes : 1);
    return x->owned[slot];
}

/* K' or V' [B, Hkv, T, d] = concat(past [B, Hkv, P, d], new in its layout). */
static void ext_concat(const ext_bare *x, const mha_tensor *past, const mha_tensor *cur, int64_t d,
                       float *dst) {
    for (int64_t b = 0; b < x->B; b++)
        for (int64_t g = 0; g < x->Hkv; g++) {
            float *row = dst + (b * x->Hkv + g) * x->T * d;
            for (int64_t j = 0; j < x->P; j++)
                for (int64_t e = 0; e < d; e++)
                    row[j * d + e] =
                        ext_load(past->data, x->dt, ((b * x->Hkv + g) * x->P + j) * d + e);
            for (int64_t j = 0; j < x->Skv; j++)
                for (int64_t e = 0; e < d; e++)
                    row[(x->P + j) * d + e] =
                        ext_load(cur->data, x->dt, ext_at(x->rank, x->Hkv, x->Skv, d, b, g, j, e));
        }
}

/* mask' [mb, mh, Sq, T]: the attn_mask (padded past its end) and the
 * window, as 0 / -inf (float masks keep their finite values). */
static mha_status ext_build_mask(const mha_alloc_ctx *a, const layer *L, const mha_tensor *m,
                                 ext_bare *x, mha_error *err) {
    const int windowed = L->has_left_window || L->has_right_window;
    if (!m && !windowed) return MHA_OK;
    int64_t dims[4] = {1, 1, 1, 1}; /* the mask right-aligned to [B, H, Sq, len] */
    if (m)
        for (int i = 0; i < m->rank; i++)
            dims[4 - m->rank + i] = m->shape[i];
    x->mb = (windowed || dims[0] > 1) ? x->B : 1;
    x->mh = dims[1] > 1 ? x->Hq : 1;
    int64_t n = 0;
    if (!mha_mul_i64(x->mb, x->mh, &n) || !mha_mul_i64(n, x->Sq, &n) || !mha_mul_i64(n, x->T, &n))
        return mha_fail(err, MHA_ERR_LIMIT, "attention mask of %lldx%lldx%lldx%lld overflows",
                        (long long)x->mb, (long long)x->mh, (long long)x->Sq, (long long)x->T);
    x->mask = ext_alloc_floats(a, x, 4, n);
    if (!x->mask)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "attention mask: out of memory for %lld floats",
                        (long long)n);
    /* source strides (0 on a broadcast axis) */
    int64_t ms[4] = {0, 0, 0, 0}, stride = 1;
    for (int ax = 3; ax >= 0; ax--) {
        ms[ax] = dims[ax] == 1 && ax < 3 ? 0 : stride;
        stride *= dims[ax];
    }
    const float low = m ? ext_lowest(m->dtype) : -FLT_MAX;
    for (int64_t b = 0; b < x->mb; b++)
        for (int64_t h = 0; h < x->mh; h++)
            for (int64_t i = 0; i < x->Sq; i++) {
                float *row = x->mask + ((b * x->mh + h) * x->Sq + i) * x->T;
                const int64_t frontier = i + x->offset[b];
                for (int64_t j = 0; j < x->T; j++) {
                    float v = 0.0f;
                    if ((L->has_left_window && j < frontier - L->left_window) ||
                        (L->has_right_window && j > frontier + L->right_window))
                        v = -INFINITY;
                    if (m && v == 0.0f) {
                        if (j >= dims[3]) {
                            v = -INFINITY; /* the spec pads a short mask */
                        } else {
                            int64_t off = b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3];
                            float mv = ext_load(m->data, m->dtype, off);
                            if (m->dtype == MHA_DTYPE_BOOL || m->dtype == MHA_DTYPE_INT32 ||
                                m->dtype == MHA_DTYPE_INT64)
                                v = mv != 0.0f ? 0.0f : -INFINITY;
                            else
                                v = mv <= low ? -INFINITY : mv;
                        }
                    }
                    row[j] = v;
                }
            }
    return MHA_OK;
}

/* The qk_matmul_output of one row, computed as the kernels compute the
 * scores (double here): mode 0 scale*q.k, 1 after softcap, 2 after the
 * mask (-inf where hidden), 3 the softmax (0 for a fully hidden row). */
static void ext_qk_row(const layer *L, const ext_bare *x, int64_t b, int64_t h, int64_t i,
                       double *s, void *out, int64_t out_off) {
    const int64_t g = h / (x->Hq / x->Hkv);
    const float *qrow = x->q + ext_at(x->rank, x->Hq, x->Sq, x->dk, b, h, i, 0);
    const int64_t q_step = 1; /* features of one head are contiguous in both layouts */
    const float *mrow =
        x->mask ? x->mask + (((x->mb > 1 ? b : 0) * x->mh + (x->mh > 1 ? h : 0)) * x->Sq + i) * x->T
                : NULL;
    int64_t end = x->T;
    if (x->kv_len && x->kv_len[b] < end) end = x->kv_len[b];
    if (L->causal) {
        int64_t f = i + x->offset[b] + 1;
        if (f < end) end = f;
    }
    double mx = -INFINITY;
    int live = 0;
    for (int64_t j = 0; j < x->T; j++) {
        const float *krow = x->kc + ((b * x->Hkv + g) * x->T + j) * x->dk;
        double dot = 0.0;
        for (int64_t d = 0; d < x->dk; d++)
            dot += (double)qrow[d * q_step] * (double)krow[d];
        double v = (double)L->scale * dot;
        if (L->qk_mode >= 1 && L->softcap > 0.0f)
            v = (double)L->softcap * tanh(v / (double)L->softcap);
        if (L->qk_mode >= 2) {
            if (L->alibi_slopes) /* the bias comes before the mask, as in the kernels */
                v += (double)L->alibi_slopes[h] *
                     (double)(j - (L->alibi_relative ? i + x->offset[b] : 0));
            float mv = mrow ? mrow[j] : 0.0f;
            v = (j >= end || mv <= -FLT_MAX) ? -INFINITY : v + (double)mv;
        }
        s[j] = v;
        if (v > mx) mx = v;
        if (v != -INFINITY) live = 1; /* NaN is live: never a masked row */
    }
    if (L->qk_mode == 3) {
        /* every key masked: 0; a NaN or +inf score: the row is NaN */
        double sum = 0.0;
        for (int64_t j = 0; j < x->T; j++) {
            s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
            sum += s[j];
        }
        for (int64_t j = 0; j < x->T; j++)
            s[j] = live ? s[j] / sum : 0.0;
    }
    for (int64_t j = 0; j < x->T; j++)
        ext_store(out, x->dt, out_off + j, (float)s[j]);
}

static mha_status ext_check_outputs(const layer *L, const mha_tensor *inputs, size_t n_inputs,
                                    const mha_tensor *outputs, size_t n_outputs,
                                    const mha_alloc_ctx *a, mha_error *err) {
    mha_tensor *want = mha_calloc(a, n_outputs ? n_outputs : 1, sizeof *want);
    if (!want) return mha_fail(err, MHA_ERR_NO_MEMORY, "run: out of memory");
    mha_status st = layer_output_shapes(L, inputs, n_inputs, want, n_outputs, err);
    for (size_t k = 0; k < n_outputs && st == MHA_OK; k++) {
        const mha_tensor *got = &outputs[k];
        int same = got->dtype == want[k].dtype && got->rank == want[k].rank;
        for (int i = 0; same && i < got->rank; i++)
            same = got->shape[i] == want[k].shape[i];
        const char *name = L->outputs[k].name ? L->outputs[k].name : "?";
        if (!same) {
            char w[128], g[128];
            st = mha_fail(err, MHA_ERR_SHAPE, "output '%s': expected %s %s, got %s %s", name,
                          mha_dtype_name(want[k].dtype),
                          tensor_shape_str(want[k].rank, want[k].shape, w, sizeof w),
                          mha_dtype_name(got->dtype),
                          tensor_shape_str(got->rank, got->shape, g, sizeof g));
        } else if (mha_tensor_numel(got) > 0 && !got->data) {
            st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output '%s': data is NULL", name);
        }
    }
    mha_free(a, want);
    return st;
}

static mha_status ext_run_bare(const exec_env *env, const layer *L, const exec_binding *bd,
                               mha_tensor *outputs, mha_error *err) {
    const mha_alloc_ctx *a = env->alloc;
    ext_bare x;
    memset(&x, 0, sizeof x);
    x.B = bd->B, x.Hq = L->q_heads, x.Hkv = L->kv_heads, x.Sq = bd->Sq, x.Skv = bd->Skv;
    x.P = bd->P, x.T = bd->T, x.dk = bd->dk, x.dv = bd->dv;
    x.rank = L->qkv_rank == 4 ? 4 : 3;
    x.dt = ext_dtype(L);
    mha_tensor *Y = &outputs[bd->y_index];
    mha_status st = MHA_OK;
    const int64_t nq = x.B * x.Hq * x.Sq * x.dk, ny = x.B * x.Hq * x.Sq * x.dv;
    const int64_t nk = x.B * x.Hkv * x.T * x.dk, nv = x.B * x.Hkv * x.T * x.dv;
    int64_t *lens = mha_calloc(a, (size_t)(2 * (x.B > 0 ? x.B : 1)), sizeof(int64_t));
    if (!lens) return mha_fail(err, MHA_ERR_NO_MEMORY, "run: out of memory");
    x.offset = lens + x.B;

    /* ---- float32 operands ---- */
    if (x.dt == MHA_DTYPE_FLOAT32) {
        x.q = bd->q->data;
        x.y = Y->data;
    } else {
        x.q = ext_alloc_floats(a, &x, 0, nq);
        x.y = ext_alloc_floats(a, &x, 1, ny);
        if (x.q)
            for (int64_t i = 0; i < nq; i++)
                x.q[i] = ext_load(bd->q->data, x.dt, i);
    }
    x.kc = ext_alloc_floats(a, &x, 2, nk);
    x.vc = ext_alloc_floats(a, &x, 3, nv);
    if (!x.q || !x.y || !x.kc || !x.vc) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY,
                      "attention operands (B %lld, keys %lld): out of memory", (long long)x.B,
                      (long long)x.T);
        goto done;
    }
    ext_concat(&x, bd->past_key, bd->k, x.dk, x.kc);
    ext_concat(&x, bd->past_value, bd->v, x.dv, x.vc);

    /* ---- key lengths and the bottom-right frontier ---- */
    const mha_tensor *len = bd->kv_lengths;
    if (len || env->kv_lengths) {
        x.kv_len = lens;
        for (int64_t b = 0; b < x.B; b++) {
            int64_t n = x.T;
            if (len && ext_i64(len, b) < n) n = ext_i64(len, b);
            if (env->kv_lengths && env->kv_lengths[b] < n) n = env->kv_lengths[b];
            x.kv_len[b] = n;
        }
    }
    for (int64_t b = 0; b < x.B; b++)
        x.offset[b] = bd->past_key                      ? x.P
                      : (len && L->kv_len_moves_causal) ? ext_i64(len, b) - x.Sq
                                                        : 0;
    st = ext_build_mask(a, L, bd->attn_mask, &x, err);
    if (st != MHA_OK) goto done;

    /* ---- Y through the backend's attention kernel ---- */
    if (x.T == 0) {
        memset(x.y, 0, (size_t)ny * sizeof(float));
    } else {
        mha_attn_args at;
        memset(&at, 0, sizeof at);
        at.struct_size = sizeof at;
        at.B = x.B, at.Hq = x.Hq, at.Hkv = x.Hkv, at.Sq = x.Sq, at.Skv = x.T;
        at.dk = x.dk, at.dv = x.dv;
        at.q = x.q;
        if (x.rank == 4) {
            at.q_sb = x.Hq * x.Sq * x.dk, at.q_sh = x.Sq * x.dk, at.q_ss = x.dk;
            at.o_sb = x.Hq * x.Sq * x.dv, at.o_sh = x.Sq * x.dv, at.o_ss = x.dv;
        } else {
            at.q_sb = x.Sq * x.Hq * x.dk, at.q_sh = x.dk, at.q_ss = x.Hq * x.dk;
            at.o_sb = x.Sq * x.Hq * x.dv, at.o_sh = x.dv, at.o_ss = x.Hq * x.dv;
        }
        at.k = x.kc;
        at.k_sb = x.Hkv * x.T * x.dk, at.k_sh = x.T * x.dk, at.k_ss = x.dk;
        at.v = x.vc;
        at.v_sb = x.Hkv * x.T * x.dv, at.v_sh = x.T * x.dv, at.v_ss = x.dv;
        at.o = x.y;
        at.scale = L->scale;
        at.softcap = L->softcap;
        if (x.mask) {
            at.mask = x.mask;
            at.m_sb = x.mb > 1 ? x.mh * x.Sq * x.T : 0;
            at.m_sh = x.mh > 1 ? x.Sq * x.T : 0;
            at.m_sq = x.T;
            at.m_sk = 1;
        }
        at.causal = L->causal;
        at.causal_offset = x.offset;
        at.alibi_slopes = L->alibi_slopes;
        at.alibi_relative = L->alibi_relative;
        at.kv_len = x.kv_len;
        at.b1 = x.B, at.h1 = x.Hq, at.q1 = x.Sq;
        at.num_threads = 1;
        st = exec_run_attention_args(env, &at, err);
        if (st != MHA_OK) goto done;
    }
    if (x.dt != MHA_DTYPE_FLOAT32)
        for (int64_t i = 0; i < ny; i++)
            ext_store(Y->data, x.dt, i, x.y[i]);

    /* ---- present_key / present_value: the concatenated caches ---- */
    if (bd->present_key_index >= 0)
        for (int64_t i = 0; i < nk; i++)
            ext_store(outputs[bd->present_key_index].data, x.dt, i, x.kc[i]);
    if (bd->present_value_index >= 0)
        for (int64_t i = 0; i < nv; i++)
            ext_store(outputs[bd->present_value_index].data, x.dt, i, x.vc[i]);

    /* ---- qk_matmul_output [B, Hq, Sq, T] ---- */
    if (bd->qk_index >= 0 && x.T > 0) {
        double *s = mha_calloc(a, (size_t)x.T, sizeof(double));
        if (!s) {
            st = mha_fail(err, MHA_ERR_NO_MEMORY, "qk_matmul_output: out of memory");
            goto done;
        }
        for (int64_t b = 0; b < x.B; b++)
            for (int64_t h = 0; h < x.Hq; h++)
                for (int64_t i = 0; i < x.Sq; i++)
                    ext_qk_row(L, &x, b, h, i, s, outputs[bd->qk_index].data,
                               ((b * x.Hq + h) * x.Sq + i) * x.T);
        mha_free(a, s);
    }
done:
    for (size_t k = 0; k < sizeof x.owned / sizeof x.owned[0]; k++)
        mha_free(a, x.owned[k]);
    mha_free(a, lens);
    return st;
}

/* ------------------------------------------------------------------------ */
/* A layer with projections (com.microsoft Attention)                        */
/* ------------------------------------------------------------------------ */

/* need_weights: W[b, i, j] = mean over the query heads h of softmax_j(scale
 * q_hi . k_gj + mask), g = h / (Hq / Hkv) -- the probabilities the kernel
 * uses but does not keep. Q and K are projected again here, in plain C, one
 * batch item at a time:
 *   q [Sq, Hq*dk] = X_q[b] Wq + bq,  k [Skv, Hkv*dk] = X_kv[b] Wk + bk
 * then per head and query row: scores, hidden keys, softmax, accumulate. */
static void ext_project_rows(const float *x, int64_t row0, int64_t row_step, int64_t rows,
                             int64_t din, const float *w, const float *bias, int64_t n,
                             float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + (row0 + r * row_step) * din;
        float *o = out + r * n;
        for (int64_t c = 0; c < n; c++)
            o[c] = bias ? bias[c] : 0.0f;
        for (int64_t k = 0; k < din; k++) {
            const float xv = xr[k], *wr = w + k * n;
            for (int64_t c = 0; c < n; c++)
                o[c] += xv * wr[c];
        }
    }
}

static mha_status ext_head_weights(const exec_env *env, const layer *L, const mha_tensor *inputs,
                                   size_t n_inputs, size_t n_outputs, mha_tensor *wt,
                                   mha_error *err) {
    const mha_alloc_ctx *a = env->alloc;
    exec_binding bd;
    exec_mask m;
    memset(&m, 0, sizeof m);
    mha_status st = layer_bind(L, inputs, n_inputs, n_outputs, &bd, err);
    if (st == MHA_OK) st = exec_mask_build(a, L, &bd, NULL, &m, err);
    if (st != MHA_OK) return st;
    const int64_t B = bd.B, Sq = bd.Sq, Skv = bd.Skv, dk = bd.dk;
    const int64_t Hq = L->q_heads, Hkv = L->kv_heads, G = Hq / Hkv, nq = Hq * dk, nk = Hkv * dk;
    const int sf = L->seq_first != 0;
    float *q = mha_calloc(a, (size_t)(Sq * nq > 0 ? Sq * nq : 1), sizeof(float));
    float *k = mha_calloc(a, (size_t)(Skv * nk > 0 ? Skv * nk : 1), sizeof(float));
    float *s = mha_calloc(a, (size_t)(Skv > 0 ? Skv : 1), sizeof(float));
    if (!q || !k || !s) st = mha_fail(err, MHA_ERR_NO_MEMORY, "attention weights: out of memory");
    float *w = wt->data;
    if (st == MHA_OK) memset(w, 0, (size_t)mha_tensor_numel(wt) * sizeof(float));
    for (int64_t b = 0; b < B && st == MHA_OK; b++) {
        /* rows of item b: [B, S, D] contiguous, or [S, B, D] B rows apart */
        ext_project_rows(bd.x_q->data, sf ? b : b * Sq, sf ? B : 1, Sq, L->d_model, L->wq, L->bq,
                         nq, q);
        ext_project_rows(bd.x_kv->data, sf ? b : b * Skv, sf ? B : 1, Skv,
                         L->cross ? L->d_kv : L->d_model, L->wk, L->bk, nk, k);
        int64_t len = env->kv_lengths && env->kv_lengths[b] < Skv ? env->kv_lengths[b] : Skv;
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Sq; i++) {
                float mx = -INFINITY;
                for (int64_t j = 0; j < Skv; j++) {
                    const float *qi = q + i * nq + h * dk, *kj = k + j * nk + (h / G) * dk;
                    float dot = 0.0f;
                    for (int64_t e = 0; e < dk; e++)
                        dot += qi[e] * kj[e];
                    float v = L->scale * dot;
                    if (m.data) {
                        float mv = m.data[b * m.sb + h * m.sh + i * m.sq + j * m.sk];
                        v = mv <= -FLT_MAX ? -INFINITY : v + mv;
                    }
                    if ((L->causal && j > i) || j >= len) v = -INFINITY;
                    s[j] = v;
                    if (v > mx) mx = v;
                }
                if (mx == -INFINITY) continue; /* every key hidden: weights 0 */
                double sum = 0.0;
                for (int64_t j = 0; j < Skv; j++) {
                    s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
                    sum += s[j];
                }
                /* averaged: W[b, i, :]; per head: W[b, h, i, :] */
                const int per_head = L->need_weights == 2;
                float *row = w + ((per_head ? b * Hq + h : b) * Sq + i) * Skv;
                const double f = per_head ? 1.0 / sum : 1.0 / sum / (double)Hq;
                for (int64_t j = 0; j < Skv; j++)
                    row[j] += (float)(s[j] * f);
            }
    }
    mha_free(a, q);
    mha_free(a, k);
    mha_free(a, s);
    mha_free(a, m.owned);
    return st;
}

/* Integer masks become bool (nonzero = attend; [B, S, T] as [B, 1, S, T]),
 * key lengths [B] become the run's kv_lengths; then the float32 core runs
 * on a copy of the layer that sees only those standard inputs. */
static mha_status ext_run_projected(const exec_env *env, const layer *L, const exec_packed *pk,
                                    const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                                    size_t n_outputs, mha_error *err) {
    const mha_alloc_ctx *a = env->alloc;
    size_t n = n_inputs ? n_inputs : 1;
    layer_io *io = mha_calloc(a, n, sizeof *io);
    mha_tensor *in = mha_calloc(a, n, sizeof *in);
    unsigned char **bools = mha_calloc(a, n, sizeof *bools);
    int64_t *lens = NULL;
    mha_status st = MHA_OK;
    if (!io || !in || !bools) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "run: out of memory");
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n_inputs && st == MHA_OK; i++) {
        const layer_io *src = &L->inputs[i];
        const mha_tensor *t = &inputs[i];
        if (src->role == MHA_ROLE_NONPAD_KV_SEQLEN) {
            /* [B] valid keys (right padding), with the caller's own lengths */
            int64_t B = t->shape[0];
            lens = mha_calloc(a, (size_t)(B ? B : 1), sizeof *lens);
            if (!lens) {
                st = mha_fail(err, MHA_ERR_NO_MEMORY, "run: out of memory");
                break;
            }
            for (int64_t b = 0; b < B; b++) {
                int64_t v = ext_i64(t, b);
                if (env->kv_lengths && env->kv_lengths[b] < v) v = env->kv_lengths[b];
                lens[b] = v < 0 ? 0 : v;
            }
            continue;
        }
        io[m] = *src;
        in[m] = *t;
        int is_int = t->dtype == MHA_DTYPE_INT32 || t->dtype == MHA_DTYPE_INT64;
        if ((src->role == MHA_ROLE_ATTN_MASK || src->role == MHA_ROLE_KEY_PADDING_MASK) && is_int) {
            int64_t count = mha_tensor_numel(t);
            bools[i] = mha_malloc(a, (size_t)(count > 0 ? count : 1));
            if (!bools[i]) {
                st = mha_fail(err, MHA_ERR_NO_MEMORY, "run: out of memory");
                break;
            }
            for (int64_t k = 0; k < count; k++)
                bools[i][k] = ext_load(t->data, t->dtype, k) != 0.0f;
            in[m].dtype = MHA_DTYPE_BOOL;
            in[m].data = bools[i];
            io[m].dtype = MHA_DTYPE_BOOL;
            if (src->role == MHA_ROLE_ATTN_MASK && t->rank == 3) {
                in[m].rank = 4;
                in[m].shape[3] = t->shape[2];
                in[m].shape[2] = t->shape[1];
                in[m].shape[1] = 1;
                io[m].rank = 4;
                io[m].dims[3] = src->dims[2];
                io[m].dims[2] = src->dims[1];
                io[m].dims[1] = 1;
            }
        }
        m++;
    }
    if (st == MHA_OK) {
        /* the kernel computes Y; the averaged weights are computed apart */
        layer core = *L;
        core.inputs = io;
        core.n_inputs = m;
        core.int_mask_attend_nonzero = 0;
        core.need_weights = 0;
        size_t y = 0, wi = n_outputs;
        for (size_t k = 0; k < n_outputs; k++) {
            if (L->outputs[k].role == MHA_ROLE_OUTPUT) y = k;
            if (L->outputs[k].role == MHA_ROLE_ATTN_WEIGHTS) wi = k;
        }
        if (wi < n_outputs) {
            core.outputs = &L->outputs[y];
            core.n_outputs = 1;
        }
        exec_env e = *env;
        if (lens) e.kv_lengths = lens;
        st = exec_run_core(&e, &core, pk, in, m, wi < n_outputs ? &outputs[y] : outputs,
                           core.n_outputs, err);
        if (st == MHA_OK && wi < n_outputs)
            st = ext_head_weights(&e, L, inputs, n_inputs, n_outputs, &outputs[wi], err);
    }
done:
    for (size_t i = 0; bools && i < n_inputs; i++)
        mha_free(a, bools[i]);
    mha_free(a, bools);
    mha_free(a, io);
    mha_free(a, in);
    mha_free(a, lens);
    return st;
}

mha_status exec_ext_run(const exec_env *env, const layer *L, const exec_packed *pk,
                        const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                        size_t n_outputs, mha_error *err) {
    (void)pk;
    exec_binding bd;
    mha_status st = layer_bind(L, inputs, n_inputs, n_outputs, &bd, err);
    if (st == MHA_OK)
        st = ext_check_outputs(L, inputs, n_inputs, outputs, n_outputs, env->alloc, err);
    if (st != MHA_OK) return st;
    for (int64_t b = 0; env->kv_lengths && b < bd.B; b++)
        if (env->kv_lengths[b] < 0)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "run options: kv_lengths[%lld] = %lld is negative", (long long)b,
                            (long long)env->kv_lengths[b]);
    if (L->has_proj)
        return ext_run_projected(env, L, pk, inputs, n_inputs, outputs, n_outputs, err);
    return ext_run_bare(env, L, &bd, outputs, err);
}

mha_status exec_run(const exec_env *env, const layer *L, const exec_packed *pk,
                    const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                    size_t n_outputs, mha_error *err) {
    if (!env || !env->plugin || !L || (n_outputs && !outputs) || (n_inputs && !inputs))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "run: NULL argument");
    const int ext = exec_ext_wanted(L, inputs, n_inputs);
    /* a residual the output projection cannot add (no projection, or a
     * path of its own here): added to the float32 output Y afterwards (the
     * layer's one output, or the first beside the present keys and values
     * of a cache) */
    if ((env->residual || env->y_rows) && (ext || !L->has_proj)) {
        int others = 0;
        for (size_t k = 1; k < n_outputs && k < L->n_outputs; k++)
            others |= L->outputs[k].role != MHA_ROLE_PRESENT_KEY &&
                      L->outputs[k].role != MHA_ROLE_PRESENT_VALUE;
        if (n_outputs < 1 || n_outputs != L->n_outputs || others ||
            L->outputs[0].role != MHA_ROLE_OUTPUT || outputs[0].dtype != MHA_DTYPE_FLOAT32 ||
            outputs[0].rank < 1)
            return mha_fail(err, MHA_ERR_INTERNAL,
                            "run: a residual or row epilogue needs the layer's float32 output "
                            "first, beside present keys and values only");
        exec_env plain = *env;
        plain.residual = NULL;
        plain.y_rows = NULL;
        mha_status st = exec_run(&plain, L, pk, inputs, n_inputs, outputs, n_outputs, err);
        float *y = outputs[0].data;
        const int64_t n = mha_tensor_numel(&outputs[0]), d = outputs[0].shape[outputs[0].rank - 1];
        for (int64_t i = 0; st == MHA_OK && env->residual && i < n; i++)
            y[i] += env->residual[i];
        if (st == MHA_OK && env->y_rows && d > 0)
            env->y_rows->rows(env->y_rows->user, y, d, 0, n / d);
        return st;
    }
    /* KV cache, key lengths, windows, float16, extra outputs: here */
    if (ext) return exec_ext_run(env, L, pk, inputs, n_inputs, outputs, n_outputs, err);
    return exec_run_core(env, L, pk, inputs, n_inputs, outputs, n_outputs, err);
}
