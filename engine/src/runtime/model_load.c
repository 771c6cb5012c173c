/* model_load.c -- loading an mha_model from ONNX: parse (onnx_load*.c),
 * recognise the attention layer (recognize*.c), verify it against the
 * original graph unless told not to, keep the layer and drop the graph. */
#include <string.h>

#include "model.h"
#include "onnx_ir.h"
#include "plan/plan.h"

static mha_status model_load_options(const mha_model_options *opts, mha_alloc_ctx *a,
                                     ir_load_options *ir_opts, int *skip_verify, mha_error *err) {
    mha_alloc_ctx_init(a, NULL);
    memset(ir_opts, 0, sizeof *ir_opts);
    *skip_verify = 0;
    if (!opts) return MHA_OK;
    if (opts->struct_size < sizeof *opts)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "model options: struct_size %u, expected %zu "
                        "(call mha_model_options_init first)",
                        opts->struct_size, sizeof *opts);
    if (opts->max_nesting_depth < 0)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "model options: max_nesting_depth %d < 0",
                        opts->max_nesting_depth);
    mha_alloc_ctx_init(a, opts->allocator);
    ir_opts->max_file_bytes = opts->max_file_bytes;
    ir_opts->max_nesting_depth = opts->max_nesting_depth;
    *skip_verify = opts->skip_verify != 0;
    return MHA_OK;
}

/* Recognise + verify g as one layer, then wrap the layer in a model. */
static mha_status model_from_layer_graph(const mha_model_options *opts, const mha_alloc_ctx *a,
                                         const ir_graph *g, int skip_verify, mha_model **out,
                                         mha_error *err) {
    layer L;
    memset(&L, 0, sizeof L);
    mha_status st = layer_recognize(a, g, &L, err);
    if (st == MHA_OK && !skip_verify) st = layer_verify(a, g, &L, err);
    if (st != MHA_OK) {
        layer_clear(a, &L);
        return st;
    }
    return model_create_from_layer(opts ? opts->allocator : NULL, &L, out, err);
}

/* A graph with one attention core is a layer as before (same behaviour,
 * same speed); one that is not just the layer (embeddings, feed-forward
 * around it) becomes a plan if the plan recognises its layer, else the
 * layer's refusal stands. A graph with several cores is a plan; one with
 * none (FNet's Fourier mixing, PoolFormer's pooling) a plan without
 * attention layers, or the plan's refusal (what it could not run: the
 * layer's "no attention found" would hide it). Takes
 * ownership of *g. `where` names the file for messages. */
static mha_status model_from_graph(const mha_model_options *opts, const mha_alloc_ctx *a,
                                   ir_graph **g, int skip_verify, const char *where,
                                   mha_model **out, mha_error *err) {
    size_t cores = plan_count_cores(*g);
    mha_error layer_err;
    mha_error_clear(&layer_err);
    mha_status st = MHA_ERR_MODEL_UNSUPPORTED;
    if (cores <= 1) {
        st = model_from_layer_graph(opts, a, *g, skip_verify, out, &layer_err);
        if (st == MHA_OK || st != MHA_ERR_MODEL_UNSUPPORTED) {
            ir_free(*g);
            *g = NULL;
            if (err && st != MHA_OK) *err = layer_err;
            if (st != MHA_OK && where && where[0]) mha_error_prefix(err, "%s", where);
            return st;
        }
    }
    plan *P = NULL;
    mha_status pst = plan_build(a, g, skip_verify ? PLAN_SKIP_VERIFY : 0, &P, err);
    if (pst == MHA_OK && cores == 1 && !P->layers[0].recognised) pst = MHA_ERR_MODEL_UNSUPPORTED;
    if (pst == MHA_OK) pst = plan_release_weights(P, err);
    if (pst != MHA_OK) {
        plan_free(P); /* NULL when plan_build failed */
        P = NULL;
    }
    /* one layer that neither path takes: the layer's reason, unless the
     * plan found the file itself wrong (an operator's attributes or
     * shapes), which no path would take */
    if (pst != MHA_OK && cores == 1 && pst != MHA_ERR_MODEL_FORMAT && pst != MHA_ERR_SHAPE) {
        if (err) *err = layer_err;
        pst = st;
    }
    if (pst != MHA_OK) {
        if (where && where[0]) mha_error_prefix(err, "%s", where);
        return pst;
    }
    return model_create_from_plan(opts ? opts->allocator : NULL, P, out, err);
}

/* The plan of m's file built again (not verified: it was at load), with
 * every weight, for a packing after the weights were released. */
static mha_status model_reload_plan(const mha_model *m, plan **out, mha_error *err) {
    ir_graph *g = NULL;
    *out = NULL;
    mha_status st = ir_load_file(&m->alloc, m->source_path, &m->source_opts, &g, err);
    if (st == MHA_OK) st = plan_build(&m->alloc, &g, PLAN_SKIP_VERIFY, out, err);
    if (st == MHA_OK && !plan_weights_match(m->plan, *out)) {
        plan_free(*out);
        *out = NULL;
        st = mha_fail(err, MHA_ERR_IO,
                      "%s: the file changed since the model was loaded (its weights, "
                      "released after the first packing, are needed again for another "
                      "backend or precision)",
                      m->source_path);
    } else if (st != MHA_OK) {
        mha_error_prefix(err, "reloading the weights released after the first packing");
    }
    return st;
}

MHA_API mha_status mha_model_load_file(const char *path, const mha_model_options *opts,
                                       mha_model **out, mha_error *err) {
    if (!out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_model_load_file: out is NULL");
    *out = NULL;
    if (!path) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_model_load_file: path is NULL");
    mha_alloc_ctx a;
    ir_load_options ir_opts;
    int skip_verify;
    mha_status st = model_load_options(opts, &a, &ir_opts, &skip_verify, err);
    if (st != MHA_OK) return st;
    ir_graph *g = NULL;
    st = ir_load_file(&a, path, &ir_opts, &g, err);
    if (st != MHA_OK) return st;
    const uint64_t external_id = g->external_id; /* g is freed by model_from_graph */
    st = model_from_graph(opts, &a, &g, skip_verify, path, out, err);
    if (st == MHA_OK) (*out)->external_id = external_id;
    if (st == MHA_OK && (*out)->plan &&
        (st = model_set_source(*out, path, &ir_opts, model_reload_plan, err)) != MHA_OK) {
        mha_model_free(*out);
        *out = NULL;
    }
    model_give_back_memory(&a); /* what the import and the verification freed */
    return st;
}

MHA_API mha_status mha_model_load_memory(const void *data, size_t size, const char *base_dir,
                                         const mha_model_options *opts, mha_model **out,
                                         mha_error *err) {
    if (!out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_model_load_memory: out is NULL");
    *out = NULL;
    if (!data && size)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_model_load_memory: data is NULL");
    mha_alloc_ctx a;
    ir_load_options ir_opts;
    int skip_verify;
    mha_status st = model_load_options(opts, &a, &ir_opts, &skip_verify, err);
    if (st != MHA_OK) return st;
    ir_graph *g = NULL;
    st = ir_load_memory(&a, data, size, base_dir, &ir_opts, &g, err);
    if (st != MHA_OK) return st;
    const uint64_t external_id = g->external_id;
    st = model_from_graph(opts, &a, &g, skip_verify, "<memory>", out, err);
    if (st == MHA_OK) (*out)->external_id = external_id;
    model_give_back_memory(&a);
    return st;
}
