/* model.h -- the inside of an mha_model: the recognised layer (a one-layer
 * graph) or the plan of a whole model, plus a cache of the weights packed
 * for each backend plugin that ran it. Internal: the runtime (runtime.c)
 * and the tests reach it; users see only mha.h. */
#ifndef MHA_MODEL_H
#define MHA_MODEL_H

#include <pthread.h>

#include "exec.h"
#include "onnx_ir.h"
#include "layer.h"
#include "plan/plan.h"

typedef struct model_pack {
    const mha_plugin *plugin;
    uint64_t features;              /* told to the init() of the state that packed it */
    int precision;                  /* MHA_PRECISION_*: a model may hold both packings */
    exec_packed *packed;            /* the one layer (plan == NULL) */
    exec_packed **layer_packed;     /* plan: per plan layer, NULL for refused ones */
    exec_gemm_weights *gemm_packed; /* plan: per GEMM step */
    /* plan: per layer / GEMM step, the earlier one whose packing it shares
     * (the same weights: ALBERT's layers), -1 its own */
    int *layer_alias, *gemm_alias;
    struct model_pack *next;
} model_pack;

struct mha_model {
    mha_alloc_ctx alloc;
    layer L;    /* the one layer, unless plan is set */
    plan *plan; /* a whole model: steps over the graph, NULL for one layer */
    /* Immutable after loading except this cache: the mutex guards the list;
     * an entry, once linked, never changes until the model is freed. */
    pthread_mutex_t pack_lock;
    model_pack *packs;
    /* A plan loaded from a file: after the first packing the unpacked
     * weights of GEMM steps and attention layers are released (release.c)
     * and a later packing rebuilds the plan from the file for them. NULL:
     * always kept. */
    char *source_path;
    ir_load_options source_opts;
    mha_status (*reload)(const struct mha_model *m, plan **fresh, mha_error *err);
    int weights_released; /* under pack_lock */
    char idioms[768];     /* mha_model_idioms, written at creation */
    uint64_t external_id; /* mha_model_external_data_id: the graph's, set by the loader */
};

/* Makes a model from a layer built in memory (tests, tools). Takes
 * ownership of *L (cleared on return, on success and on failure); its
 * memory must come from the allocator `alloc` (NULL = malloc). */
mha_status model_create_from_layer(const mha_allocator *alloc, layer *L, mha_model **out,
                                   mha_error *err);

/* Builds the plan of m's file again, every weight kept, checked to hold
 * the weights m released (model_load.c; the importer stays out of
 * model.c). */
typedef mha_status (*model_reload_fn)(const mha_model *m, plan **fresh, mha_error *err);

/* Where a plan model came from (a copy of path is kept) and how to build it
 * again, so its unpacked weights may be released after the first
 * packing. */
mha_status model_set_source(mha_model *m, const char *path, const ir_load_options *opts,
                            model_reload_fn reload, mha_error *err);

/* Makes a model from a plan (takes ownership of P, freed on failure). */
mha_status model_create_from_plan(const mha_allocator *alloc, plan *P, mha_model **out,
                                  mha_error *err);

/* The model's weights packed for plugin p in a compute precision
 * (MHA_PRECISION_*): packed with plugin_state (the runtime's state of p,
 * whose init() was told `features`) on the first call, under the model's
 * mutex so concurrent first runs pack once, then shared by every runtime
 * of p told the same features (plugin.h: a layout follows the features
 * alone). The result lives as long as the model. */
mha_status model_packed_for(const mha_model *m, const mha_plugin *p, void *plugin_state,
                            uint64_t features, int precision, const model_pack **out,
                            mha_error *err);

/* The model's weights packed for rt's backend in `precision` now, as the
 * first mha_run in it would (runtime.c): the request queue packs at create,
 * so that a precision its backend does not serve is refused there
 * (MHA_ERR_BACKEND) and no request pays the packing. */
mha_status runtime_pack_model(mha_runtime *rt, const mha_model *m, int precision, mha_error *err);

/* Gives the pages of freed memory back to the system when the C library's
 * allocator is in use (glibc keeps them otherwise): after a load, after
 * unpacked weights were released. */
void model_give_back_memory(const mha_alloc_ctx *a);

/* Number of plugins the model holds packed weights for (tests). */
size_t model_pack_count(const mha_model *m);
/* Bytes of the packed weights the model holds (each shared packing once),
 * over every plugin and precision (tests). */
size_t model_packed_bytes(const mha_model *m);

#endif
