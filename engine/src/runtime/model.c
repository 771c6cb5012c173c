/* model.c -- the mha_model object: what was recognised (info, inputs,
 * outputs), freeing, and the per-plugin cache of packed weights. Loading
 * from ONNX lives in model_load.c, so programs that build layers in memory
 * do not pull in the importer. */
#include "model.h"
#include "mha/plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (f & LAYER_IDIOM_KV_CACHE)
        model_idiom(buf, size,
                    "KV cache: past keys / values [B, %lld, past, %lld] before the new ones, "
                    "present outputs; queries at positions past + i",
                    (long long)L->kv_heads, (long long)L->d_head);
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
    else if (L->bias && L->bias_windows > 1)
        model_idiom(buf, size,
                    "constant bias per window [%lld windows, %lld heads, %lld, %lld] over a "
                    "batch of windows (item b takes window b %% %lld)",
                    (long long)L->bias_windows, (long long)L->bias_heads, (long long)L->bias_sq,
                    (long long)L->bias_skv, (long long)L->bias_windows);
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
    if (L->has_proj && !L->kv_given && !L->bk && (L->bq || L->bv))
        model_idiom(buf, size, "K without bias");
    if (L->seq_first) model_idiom(buf, size, "sequence-first inputs and output [S, B, D]");
    if (L->kv_given)
        model_idiom(buf, size,
                    "K and V given already projected in head layout [B, heads, S, d] (a cached "
                    "cross-attention)");
    if (f & LAYER_IDIOM_FUSED_QKV) model_idiom(buf, size, "one fused projection split into Q/K/V");
    if (f & LAYER_IDIOM_QK_FACTORS) model_idiom(buf, size, "scale factors on both Q and K");
    if (f & LAYER_IDIOM_SOFTMAX_CAST) model_idiom(buf, size, "float32 softmax between Casts");
    if (f & LAYER_IDIOM_SCORE_RESHAPE) model_idiom(buf, size, "scores reshaped around the mask");
    if (L->need_weights)
        model_idiom(buf, size, "attention weights output (%s)",
                    L->need_weights == 1 ? "mean over heads" : "every head");
    int pos_input = 0;
    for (size_t i = 0; i < L->n_inputs; i++)
        pos_input |= L->inputs[i].role == MHA_ROLE_POSITION_IDS;
    if (L->rotary)
        model_idiom(buf, size, "rotary embedding (%s pairs) on %lld of %lld head dims, %s%s",
                    L->rotary == MHA_ROTARY_INTERLEAVED ? "interleaved" : "rotate-half",
                    (long long)L->rotary_dim, (long long)L->d_head,
                    L->rotary_tables_input ? "cos / sin tables given as inputs per token"
                    : L->rotary_inv_freq   ? "angles from the model's inverse frequencies"
                                           : "the model's cos / sin tables",
                    pos_input ? " at positions given as an input" : "");
    for (int s = 0; s < 2; s++)
        if (L->qk_norm[s])
            model_idiom(buf, size, "%s of %s before the rotary (eps %g)",
                        L->qk_norm[s] == LAYER_QK_NORM_LAYER ? "LayerNorm" : "RMSNorm",
                        s ? (L->qk_norm_whole[s] ? "K's row" : "each head of K")
                          : (L->qk_norm_whole[s] ? "Q's row" : "each head of Q"),
                        (double)L->qk_norm_eps[s]);
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

mha_status model_create_from_plan(const mha_allocator *alloc, plan *P, mha_model **out,
                                  mha_error *err) {
    layer none;
    memset(&none, 0, sizeof none);
    mha_status st = model_create_from_layer(alloc, &none, out, err);
    if (st != MHA_OK) {
        plan_free(P);
        return st;
    }
    (*out)->plan = P;
    return MHA_OK;
}

/* Whether layer i / GEMM step i of pack p packed its own weights (not
 * another's it shares). */
static int model_pack_owns_layer(const model_pack *p, size_t i) {
    return !p->layer_alias || p->layer_alias[i] < 0;
}

static int model_pack_owns_gemm(const model_pack *p, size_t i) {
    return !p->gemm_alias || p->gemm_alias[i] < 0;
}

static void model_pack_free(const mha_alloc_ctx *a, const mha_model *m, model_pack *p) {
    exec_packed_free(a, p->packed);
    for (size_t i = 0; p->layer_packed && i < m->plan->n_layers; i++)
        if (model_pack_owns_layer(p, i)) exec_packed_free(a, p->layer_packed[i]);
    mha_free(a, p->layer_packed);
    for (size_t i = 0; p->gemm_packed && i < m->plan->n_gemms; i++)
        if (model_pack_owns_gemm(p, i)) exec_weights_free(a, &p->gemm_packed[i]);
    mha_free(a, p->gemm_packed);
    mha_free(a, p->layer_alias);
    mha_free(a, p->gemm_alias);
    mha_free(a, p);
}

/* Plan layer i's weights as packing reads them: a released layer's from
 * the fresh build of the file. */
static layer model_pack_layer(const plan *P, const plan *fresh, size_t i) {
    layer L = P->layers[i].L;
    if (P->layers[i].w_released) {
        const layer *F = &fresh->layers[i].L;
        L.wq = F->wq, L.wk = F->wk, L.wv = F->wv, L.wo = F->wo;
    }
    return L;
}

/* e->layer_alias and e->gemm_alias: for each recognised layer and each
 * GEMM step, the first earlier one with the same weights, else -1. Found
 * before any packing releases the unpacked weights. */
static mha_status model_pack_aliases(const mha_model *m, const plan *fresh, model_pack *e,
                                     mha_error *err) {
    const plan *P = m->plan;
    e->layer_alias = mha_calloc(&m->alloc, P->n_layers ? P->n_layers : 1, sizeof *e->layer_alias);
    e->gemm_alias = mha_calloc(&m->alloc, P->n_gemms ? P->n_gemms : 1, sizeof *e->gemm_alias);
    if (!e->layer_alias || !e->gemm_alias)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory for packed weights");
    for (size_t i = 0; i < P->n_layers; i++) {
        e->layer_alias[i] = -1;
        if (!P->layers[i].recognised) continue;
        const layer L = model_pack_layer(P, fresh, i);
        for (size_t j = 0; j < i && e->layer_alias[i] < 0; j++) {
            if (!P->layers[j].recognised || e->layer_alias[j] >= 0) continue;
            const layer J = model_pack_layer(P, fresh, j);
            if (layer_weights_alike(&L, &J)) e->layer_alias[i] = (int)j;
        }
    }
    for (size_t i = 0; i < P->n_gemms; i++) {
        e->gemm_alias[i] = -1;
        for (size_t j = 0; j < i && e->gemm_alias[i] < 0; j++)
            if (e->gemm_alias[j] < 0 && plan_gemms_alike(P, fresh, i, j)) e->gemm_alias[i] = (int)j;
    }
    return MHA_OK;
}

void model_give_back_memory(const mha_alloc_ctx *a) {
    /* glibc raises its mmap threshold to the largest block freed (up to 32
     * MiB): after the load freed weights and probe values, blocks of many
     * MiB came from the heap and their pages stay mapped until trimmed */
    mha_alloc_trim(a);
}

/* Gives the freed pages back once the weights released since the last time
 * add up to MHA_TRIM_AFTER_BYTES: a trim walks the whole heap and every page
 * it returns faults in again at the next allocation, so trimming after each
 * small weight cost a corpus of small models' checks a quarter of their CPU
 * (system time), while what waits for the next trim is at most that much. */
static void model_give_back_some(const mha_alloc_ctx *a, size_t *unreturned, size_t freed) {
    *unreturned += freed;
    if (*unreturned < MHA_TRIM_AFTER_BYTES) return;
    *unreturned = 0;
    model_give_back_memory(a);
}

/* Packs the one layer, or every recognised layer of the plan. */
/* Every weight of the model packed for plugin p (state: its runtime's) in
 * `precision`. */
static mha_status model_pack_all(const mha_model *m, const plan *fresh, const mha_plugin *p,
                                 void *state, int precision, model_pack *e, size_t *unpacked_bytes,
                                 mha_error *err) {
    *unpacked_bytes = 0;
    if (!m->plan) return exec_pack_weights(&m->alloc, &m->L, p, state, precision, &e->packed, err);
    const plan *P = m->plan;
    e->layer_packed = mha_calloc(&m->alloc, P->n_layers ? P->n_layers : 1, sizeof *e->layer_packed);
    e->gemm_packed = mha_calloc(&m->alloc, P->n_gemms ? P->n_gemms : 1, sizeof *e->gemm_packed);
    if (!e->layer_packed || !e->gemm_packed)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory for packed weights");
    /* layers and steps with the same weights share one packing */
    mha_status ast = model_pack_aliases(m, fresh, e, err);
    if (ast != MHA_OK) return ast;
    /* the first packing frees each unpacked weight as soon as it is packed
     * (when the file can give it back): the two copies never coexist for
     * the whole model */
    const int release = m->reload && !fresh;
    size_t unreturned = 0; /* bytes released since the last trim */
    for (size_t i = 0; i < P->n_layers; i++) {
        if (!P->layers[i].recognised) continue;
        mha_status st = MHA_OK;
        if (e->layer_alias[i] >= 0) {
            e->layer_packed[i] = e->layer_packed[e->layer_alias[i]];
        } else {
            const layer L = model_pack_layer(P, fresh, i);
            *unpacked_bytes += layer_weight_bytes(&L);
            st = exec_pack_weights(&m->alloc, &L, p, state, precision, &e->layer_packed[i], err);
        }
        if (st != MHA_OK) return st;
        const size_t freed = release ? plan_release_layer_weights(m->plan, i) : 0;
        if (freed) {
            ((mha_model *)m)->weights_released = 1;
            model_give_back_some(&m->alloc, &unreturned, freed); /* before the next packing */
        }
    }
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *g = &P->gemms[i];
        /* a released weight comes from the fresh build of the file */
        const float *w[1] = {g->W ? g->W : fresh->gemms[i].W}, *b[1] = {g->bias};
        int64_t cols[1] = {g->N};
        mha_status st = MHA_OK;
        if (e->gemm_alias[i] >= 0)
            e->gemm_packed[i] = e->gemm_packed[e->gemm_alias[i]];
        else {
            *unpacked_bytes += (size_t)g->K * (size_t)g->N * sizeof(float);
            st = exec_pack_parts(&m->alloc, p, state, precision, g->K, 1, w, cols, b, "a GEMM step",
                                 &e->gemm_packed[i], err);
        }
        if (st != MHA_OK) return st;
        const size_t freed = release ? plan_release_gemm_weight(m->plan, i) : 0;
        if (freed) {
            ((mha_model *)m)->weights_released = 1;
            model_give_back_some(&m->alloc, &unreturned, freed);
        }
    }
    return MHA_OK;
}

MHA_API void mha_model_free(mha_model *m) {
    if (!m) return;
    mha_alloc_ctx a = m->alloc;
    for (model_pack *p = m->packs, *next; p; p = next) {
        next = p->next;
        model_pack_free(&a, m, p);
    }
    pthread_mutex_destroy(&m->pack_lock);
    mha_free(&a, m->source_path);
    layer_clear(&a, &m->L);
    plan_free(m->plan);
    mha_free(&a, m);
}

mha_status model_set_source(mha_model *m, const char *path, const ir_load_options *opts,
                            model_reload_fn reload, mha_error *err) {
    char *abs = realpath(path, NULL); /* the run may change directory */
    const char *keep = abs ? abs : path;
    size_t n = strlen(keep) + 1;
    m->source_path = mha_malloc_small(&m->alloc, n);
    if (m->source_path) memcpy(m->source_path, keep, n);
    free(abs);
    if (!m->source_path) return mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory");
    m->source_opts = *opts;
    m->reload = reload;
    return MHA_OK;
}

mha_status model_packed_for(const mha_model *cm, const mha_plugin *p, void *plugin_state,
                            uint64_t features, int precision, const model_pack **out,
                            mha_error *err) {
    /* The cache is the one mutable part of a model; it is guarded by the
     * mutex, so a const model may still fill it. */
    mha_model *m = (mha_model *)cm;
    *out = NULL;
    mha_status st = MHA_OK;
    pthread_mutex_lock(&m->pack_lock);
    model_pack *e = m->packs;
    while (e && (e->plugin != p || e->features != features || e->precision != precision))
        e = e->next;
    if (!e) {
        plan *fresh = NULL;
        if (m->weights_released) st = m->reload(m, &fresh, err);
        e = st == MHA_OK ? mha_calloc(&m->alloc, 1, sizeof *e) : NULL;
        if (st != MHA_OK) {
            /* said by reload */
        } else if (!e) {
            st = mha_fail(err, MHA_ERR_NO_MEMORY, "model: out of memory for packed weights");
        } else {
            int had_released = m->weights_released;
            size_t unpacked = 0;
            st = model_pack_all(m, fresh, p, plugin_state, precision, e, &unpacked, err);
            /* the unpacked weights just freed, or the fresh build's (a small
             * model's leave too little in the heap to pay for a trim) */
            if ((fresh || had_released != m->weights_released) && unpacked >= MHA_TRIM_AFTER_BYTES)
                model_give_back_memory(&m->alloc);
            if (st == MHA_OK) {
                e->plugin = p;
                e->features = features;
                e->precision = precision;
                e->next = m->packs;
                m->packs = e;
            } else {
                model_pack_free(&m->alloc, m, e);
                e = NULL;
            }
        }
        plan_free(fresh);
    }
    pthread_mutex_unlock(&m->pack_lock);
    if (e) *out = e;
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

size_t model_packed_bytes(const mha_model *cm) {
    mha_model *m = (mha_model *)cm;
    size_t n = 0;
    pthread_mutex_lock(&m->pack_lock);
    for (const model_pack *e = m->packs; e; e = e->next) {
        n += exec_packed_bytes(e->packed);
        for (size_t i = 0; e->layer_packed && i < m->plan->n_layers; i++)
            if (model_pack_owns_layer(e, i)) n += exec_packed_bytes(e->layer_packed[i]);
        for (size_t i = 0; e->gemm_packed && i < m->plan->n_gemms; i++)
            if (model_pack_owns_gemm(e, i)) n += exec_weights_bytes(&e->gemm_packed[i]);
    }
    pthread_mutex_unlock(&m->pack_lock);
    return n;
}

/* What a layer says about its attention (shared by one-layer models and
 * the first recognised layer of a plan). */
static void model_layer_info(const layer *L, mha_model_info *out) {
    out->has_projections = L->has_proj;
    out->d_model = L->has_proj ? L->d_model : 0;
    out->d_kv = L->has_proj ? (L->cross ? L->d_kv : L->d_model) : 0;
    out->q_heads = L->q_heads;
    out->kv_heads = L->kv_heads;
    out->d_head = L->d_head;
    out->d_head_v = layer_dv(L);
    out->causal = L->causal;
    out->scale = L->scale;
    out->softcap = L->softcap;
    out->cross = L->cross;
    out->key_padding_true_means_ignore = L->kpm_true_means_ignore;
}

static mha_status model_plan_info(const plan *P, mha_model_info *out) {
    memset(out, 0, sizeof *out);
    out->form = "plan";
    for (size_t i = 0; i < P->n_layers; i++)
        if (P->layers[i].recognised) {
            model_layer_info(&P->layers[i].L, out);
            break;
        }
    out->weight_bytes = plan_weight_bytes(P);
    out->num_inputs = P->g->n_inputs;
    out->num_outputs = P->g->n_outputs;
    return MHA_OK;
}

MHA_API mha_layout mha_model_layout(const mha_model *m) {
    if (m && m->plan)
        return m->plan->batch_axis == 1                    ? MHA_LAYOUT_SEQ_FIRST
               : m->plan->batch_axis == PLAN_BATCH_UNKNOWN ? MHA_LAYOUT_UNKNOWN
                                                           : MHA_LAYOUT_BATCH_FIRST;
    return m && m->L.seq_first ? MHA_LAYOUT_SEQ_FIRST : MHA_LAYOUT_BATCH_FIRST;
}

MHA_API mha_status mha_model_get_info(const mha_model *m, mha_model_info *out) {
    if (!m || !out) return MHA_ERR_INVALID_ARGUMENT;
    if (m->plan) return model_plan_info(m->plan, out);
    const layer *L = &m->L;
    memset(out, 0, sizeof *out);
    out->form = L->form ? L->form : "";
    model_layer_info(L, out);
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
    if (m && m->plan && out && i < m->plan->g->n_inputs) {
        model_io_info(&m->plan->inputs[i], out);
        return MHA_OK;
    }
    if (!m || !out || i >= m->L.n_inputs) return MHA_ERR_INVALID_ARGUMENT;
    model_io_info(&m->L.inputs[i], out);
    return MHA_OK;
}

MHA_API mha_status mha_model_output(const mha_model *m, size_t i, mha_io_info *out) {
    if (m && m->plan && out && i < m->plan->g->n_outputs) {
        model_io_info(&m->plan->outputs[i], out);
        return MHA_OK;
    }
    if (!m || !out || i >= m->L.n_outputs) return MHA_ERR_INVALID_ARGUMENT;
    model_io_info(&m->L.outputs[i], out);
    return MHA_OK;
}

/* A whole model's outputs hold the shapes the plan computes; the file's
 * declaration is the graph value's (onnx_load.c keeps the output's own
 * ValueInfo first). A one-layer model's outputs are the declared ones. */
MHA_API mha_status mha_model_output_declared(const mha_model *m, size_t i, mha_io_info *out) {
    mha_status st = mha_model_output(m, i, out);
    if (st != MHA_OK || !m->plan) return st;
    const ir_value *v = &m->plan->g->values[m->plan->g->outputs[i]];
    out->rank = v->rank >= 0 && v->rank <= MHA_MAX_RANK ? v->rank : -1;
    for (int d = 0; d < MHA_MAX_RANK; d++)
        out->shape[d] = d < out->rank ? v->dims[d] : 0;
    return MHA_OK;
}

MHA_API int64_t mha_model_input_id_extent(const mha_model *m, size_t i) {
    if (!m || !m->plan || !m->plan->id_extent || i >= m->plan->g->n_inputs) return 0;
    const int64_t x = m->plan->id_extent[i];
    return x > 0 ? x : 0; /* PLAN_IDS_MASK01: a mask, no table */
}

MHA_API void mha_model_options_init(mha_model_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

/* ---- the plan, described ---- */

MHA_API size_t mha_model_num_steps(const mha_model *m) {
    return m && m->plan ? m->plan->n_steps : 0;
}

MHA_API int mha_model_input_axis_symbol(const mha_model *m, size_t i, int axis) {
    if (!m || !m->plan || !m->plan->in_syms || i >= m->plan->g->n_inputs || axis < 0 ||
        axis >= MHA_MAX_RANK)
        return -1;
    return m->plan->in_syms[i][axis];
}

MHA_API mha_status mha_model_step(const mha_model *m, size_t i, mha_step_info *out) {
    if (!m || !m->plan || !out || i >= m->plan->n_steps) return MHA_ERR_INVALID_ARGUMENT;
    const plan *P = m->plan;
    const plan_step *s = &P->steps[i];
    memset(out, 0, sizeof *out);
    out->flops = s->flops;
    if (s->kind == PLAN_STEP_ATTENTION) {
        const plan_layer *pl = &P->layers[s->index];
        out->kind = "attention";
        out->op = pl->desc[0] ? pl->desc : pl->L.form ? pl->L.form : "";
        out->name = P->g->nodes[pl->core_node].name;
        out->num_nodes = pl->n_nodes;
    } else if (s->kind == PLAN_STEP_NORM) {
        const plan_norm *nm = &P->norms[s->index];
        out->kind = "norm";
        out->op = nm->desc;
        out->name = P->g->nodes[nm->nodes[0]].name;
        out->num_nodes = nm->n_nodes;
    } else if (s->kind == PLAN_STEP_ADD) {
        out->kind = "add";
        out->op = "add";
        out->name = P->g->nodes[P->adds[s->index].node].name;
        out->num_nodes = 1;
    } else if (s->kind == PLAN_STEP_GATHER) {
        out->kind = "gather";
        out->op = "gather rows";
        out->name = P->g->nodes[P->gathers[s->index].node].name;
        out->num_nodes = 1;
    } else if (s->kind == PLAN_STEP_CONCAT) {
        out->kind = "concat";
        out->op = "concat";
        out->name = P->g->nodes[P->concats[s->index].node].name;
        out->num_nodes = 1;
    } else if (s->kind == PLAN_STEP_GEMM) {
        const plan_gemm *g = &P->gemms[s->index];
        out->kind = "gemm";
        out->op = g->desc;
        out->name = P->g->nodes[g->node].name;
        out->num_nodes = g->bias_node >= 0 ? 2 : 1;
    } else {
        const ir_node *n = &P->g->nodes[s->index];
        out->kind = "interpreted";
        out->op = n->op_type;
        out->name = n->name;
        out->num_nodes = 1;
    }
    return MHA_OK;
}

MHA_API size_t mha_model_num_layers(const mha_model *m) {
    return m && m->plan ? m->plan->n_layers : 0;
}

MHA_API mha_status mha_model_layer(const mha_model *m, size_t i, mha_layer_info *out) {
    if (!m || !m->plan || !out || i >= m->plan->n_layers) return MHA_ERR_INVALID_ARGUMENT;
    const plan_layer *pl = &m->plan->layers[i];
    memset(out, 0, sizeof *out);
    out->recognised = pl->recognised;
    out->form = !pl->recognised ? "" : pl->desc[0] ? pl->desc : pl->L.form ? pl->L.form : "";
    out->core = m->plan->g->nodes[pl->core_node].name;
    out->reason = pl->recognised ? "" : pl->reason;
    return MHA_OK;
}

MHA_API uint64_t mha_model_external_data_id(const mha_model *m) {
    return m ? m->external_id : 0;
}

MHA_API size_t mha_model_arena_bytes(const mha_model *m) {
    if (!m || !m->plan) return 0;
    plan *P = m->plan; /* the arena list is the plan's one mutable part */
    size_t most = 0;
    pthread_mutex_lock(&P->arena_lock);
    for (const plan_arena *A = P->arenas; A; A = A->next)
        if (A->bytes > most) most = A->bytes;
    pthread_mutex_unlock(&P->arena_lock);
    return most;
}
