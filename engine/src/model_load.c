/* model_load.c -- loading an mha_model from ONNX: parse (onnx_load*.c),
 * recognise the attention layer (recognize*.c), verify it against the
 * original graph unless told not to, keep the layer and drop the graph. */
#include <string.h>

#include "model.h"
#include "onnx_ir.h"

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

/* Recognise + verify g, then wrap the layer in a model. `where` names the
 * file for messages that do not carry it yet. */
static mha_status model_from_graph(const mha_model_options *opts, const mha_alloc_ctx *a,
                                   const ir_graph *g, int skip_verify, const char *where,
                                   mha_model **out, mha_error *err) {
    layer L;
    memset(&L, 0, sizeof L);
    mha_status st = layer_recognize(a, g, &L, err);
    if (st == MHA_OK && !skip_verify) st = layer_verify(a, g, &L, err);
    if (st != MHA_OK) {
        layer_clear(a, &L);
        if (where && where[0]) mha_error_prefix(err, "%s", where);
        return st;
    }
    return model_create_from_layer(opts ? opts->allocator : NULL, &L, out, err);
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
    st = model_from_graph(opts, &a, g, skip_verify, path, out, err);
    ir_free(g);
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
    st = model_from_graph(opts, &a, g, skip_verify, "<memory>", out, err);
    ir_free(g);
    return st;
}
