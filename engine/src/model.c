/* model.c -- the mha_model object: what was recognised (info, inputs,
 * outputs), freeing, and the per-plugin cache of packed weights. Loading
 * from ONNX lives in model_load.c, so programs that build layers in memory
 * do not pull in the importer. */
#include "model.h"
#include "mha/plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Appends "; phrase" (printf-style) to the idioms line, as far as it fits. */
static void model_idiom(char *buf, size_t size, const char *fmt, ...) MHA_PRINTF(3, 4);
static void model_idiom(char *buf, size_t size, const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 3 >= size) return;
    if (used) {
        memcpy(buf + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

/* The layer's idioms as mha info names them. */
static void model_describe(const layer *L, char *buf, size_t size) {
    buf[0] = '\0';
    const unsigned f = L->idioms;
    if (L->causal && !L->has_left_window) model_idiom(buf, size, "causal mask");
    if (L->causal && L->has_left_window)
        model_idiom(buf, size, "causal mask with a sliding window of %lld keys",
                    (long long)L->left_window + 1);
    if (L->kpm_valued)
        model_idiom(buf, size, "key padding from %s mask: m = 0 adds %g, m = 1 adds %g%s",
                    f & LAYER_IDIOM_EXT_MASK ? "an extended" : "a", (double)L->kpm_add[0],
                    (double)L->kpm_add[1], L->kpm_affine ? " (linear in m)" : "");
    if (L->attn_valued)
        model_idiom(buf, size,
                    "attention mask%s read through its values: m = 0 adds %g, m = 1 adds %g%s",
                    L->attn_mask_batch_first == 1 ? " [B, Sq, Skv]" : "", (double)L->kpm_add[0],
                    (double)L->kpm_add[1], L->kpm_affine ? " (linear in m)" : "");
    if (L->attn_bool_ignore_true) model_idiom(buf, size, "bool attention mask, true = hidden");
    if (L->attn_mask_batch_first == 2)
        model_idiom(buf, size, "attention mask [B * heads, Sq, Skv]");
    if (f & LAYER_IDIOM_WHERE_MASK) model_idiom(buf, size, "mask applied by Where (masked fill)");
    if (L->bias && L->bias_rel_len > 0)
        model_idiom(buf, size,
                    "relative position bias per head and key - query distance (lengths up to "
                    "%lld)",
                    (long long)L->bias_rel_len);
    else if (L->bias)
        model_idiom(buf, size, "constant position bias [%lld heads, %lld, %lld]",
                    (long long)L->bias_heads, (long long)L->bias_sq, (long long)L->bias_skv);
    if (L->kv_heads != L->q_heads)
        model_idiom(buf, size, "%s %lld query / %lld key/value heads",
                    L->kv_heads == 1 ? "MQA" : "GQA", (long long)L->q_heads,
                    (long long)L->kv_heads);
    if (L->has_proj && (L->bq || L->bk || L->bv))
        model_idiom(buf, size, "projection bias on %s%s%s", L->bq ? "Q" : "", L->bk ? "K" : "",
                    L->bv ? "V" : "");
    if (L->has_proj && !L->bk && (L->bq || L->bv)) model_idiom(buf, size, "K without bias");
    if (f & LAYER_IDIOM_FUSED_QKV) model_idiom(buf, size, "one fused projection split into Q/K/V");
    if (f & LAYER_IDIOM_QK_FACTORS) model_idiom(buf, size, "scale factors on both Q and K");
    if (f & LAYER_IDIOM_SOFTMAX_CAST) model_idiom(buf, size, "float32 softmax between Casts");
    if (f & LAYER_IDIOM_SCORE_RESHAPE) model_idiom(buf, size, "scores reshaped around the mask");
    if (L->need_weights)
        model_idiom(buf, size, "attention weights output (%s)",
                    L->need_weights == 1 ? "mean over heads" : "every head");
    if (L->rotary)
        model_idiom(buf, size, "rotary embedding (%s pairs) on %lld of %lld head dims, %s",
                    L->rotary == MHA_ROTARY_INTERLEAVED ? "interleaved" : "rotate-half",
                    (long long)L->rotary_dim, (long long)L->d_head,
                    L->rotary_inv_freq ? "angles from the model's inverse frequencies"
                                       : "the model's cos / sin tables");
    if (L->alibi_slopes)
        model_idiom(buf, size, "ALiBi, slope %g to %g, %s%s", (double)L->alibi_slopes[0],
                    (double)L->alibi_slopes[L->q_heads - 1],
                    L->alibi_relative ? "slope * (j - i)" : "slope * key position",
                    L->alibi_pos_from_mask ? " counted over the unpadded keys" : "");
}

mha_status model_create_from_layer(const mha_allocator *alloc, layer *L, mha_model **out,
                                   mha_error *err) {
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, alloc);
    if (!out) {
        layer_clear(&a, L);
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "model: out is NULL");
    }
    *out = NULL;
    mha_model *m = mha_calloc(&a, 1, sizeof *m);
    if (!m) {
        layer_clear(&a, L);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory");
    }
    m->alloc = a;
    m->L = *L;
    model_describe(&m->L, m->idioms, sizeof m->idioms);
    memset(L, 0, sizeof *L);
    if (pthread_mutex_init(&m->pack_lock, NULL) != 0) {
        layer_clear(&a, &m->L);
        mha_free(&a, m);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "model: cannot create a mutex");
    }
    *out = m;
    return MHA_OK;
}

MHA_API void mha_model_free(mha_model *m) {
    if (!m) return;
    mha_alloc_ctx a = m->alloc;
    for (model_pack *p = m->packs, *next; p; p = next) {
        next = p->next;
        exec_packed_free(&a, p->packed);
        mha_free(&a, p);
    }
    pthread_mutex_destroy(&m->pack_lock);
    layer_clear(&a, &m->L);
    mha_free(&a, m);
}

mha_status model_packed_for(const mha_model *cm, const mha_plugin *p, const exec_packed **out,
                            mha_error *err) {
    return model_packed_for_prec(cm, p, NULL, MHA_PRECISION_FLOAT32, out, err);
}

mha_status model_packed_for_prec(const mha_model *cm, const mha_plugin *p, void *plugin_state,
                                 int precision, const exec_packed **out, mha_error *err) {
    /* The cache is the one mutable part of a model; it is guarded by the
     * mutex, so a const model may still fill it. */
    mha_model *m = (mha_model *)cm;
    *out = NULL;
    mha_status st = MHA_OK;
    pthread_mutex_lock(&m->pack_lock);
    model_pack *e = m->packs;
    while (e && (e->plugin != p || e->precision != precision))
        e = e->next;
    if (!e) {
        e = mha_calloc(&m->alloc, 1, sizeof *e);
        if (!e) {
            st = mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory for packed weights");
        } else {
            st = exec_pack_weights_prec(&m->alloc, &m->L, p, plugin_state, precision, &e->packed,
                                        err);
            if (st == MHA_OK) {
                e->plugin = p;
                e->precision = precision;
                e->next = m->packs;
                m->packs = e;
            } else {
                mha_free(&m->alloc, e);
                e = NULL;
            }
        }
    }
    pthread_mutex_unlock(&m->pack_lock);
    if (e) *out = e->packed;
    return st;
}

size_t model_pack_count(const mha_model *cm) {
    mha_model *m = (mha_model *)cm;
    size_t n = 0;
    pthread_mutex_lock(&m->pack_lock);
    for (const model_pack *e = m->packs; e; e = e->next)
        n++;
    pthread_mutex_unlock(&m->pack_lock);
    return n;
}

MHA_API mha_status mha_model_get_info(const mha_model *m, mha_model_info *out) {
    if (!m || !out) return MHA_ERR_INVALID_ARGUMENT;
    const layer *L = &m->L;
    memset(out, 0, sizeof *out);
    out->form = L->form ? L->form : "";
    out->has_projections = L->has_proj;
    out->d_model = L->has_proj ? L->d_model : 0;
    out->d_kv = L->has_proj ? (L->cross ? L->d_kv : L->d_model) : 0;
    out->q_heads = L->q_heads;
    out->kv_heads = L->kv_heads;
    out->d_head = L->d_head;
    out->d_head_v = L->d_head_v > 0 ? L->d_head_v : L->d_head;
    out->causal = L->causal;
    out->scale = L->scale;
    out->softcap = L->softcap;
    out->cross = L->cross;
    out->key_padding_true_means_ignore = L->kpm_true_means_ignore;
    out->weight_bytes = layer_weight_bytes(L);
    out->num_inputs = L->n_inputs;
    out->num_outputs = L->n_outputs;
    return MHA_OK;
}

MHA_API const char *mha_model_idioms(const mha_model *m) {
    return m ? m->idioms : NULL;
}

static void model_io_info(const layer_io *io, mha_io_info *out) {
    memset(out, 0, sizeof *out);
    out->name = io->name ? io->name : "";
    out->role = io->role;
    out->dtype = io->dtype;
    out->rank = io->rank;
    for (int i = 0; i < io->rank && i < MHA_MAX_RANK; i++)
        out->shape[i] = io->dims[i];
}

MHA_API mha_status mha_model_input(const mha_model *m, size_t i, mha_io_info *out) {
    if (!m || !out || i >= m->L.n_inputs) return MHA_ERR_INVALID_ARGUMENT;
    model_io_info(&m->L.inputs[i], out);
    return MHA_OK;
}

MHA_API mha_status mha_model_output(const mha_model *m, size_t i, mha_io_info *out) {
    if (!m || !out || i >= m->L.n_outputs) return MHA_ERR_INVALID_ARGUMENT;
    model_io_info(&m->L.outputs[i], out);
    return MHA_OK;
}

MHA_API void mha_model_options_init(mha_model_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}
