/* runtime.c -- the mha_runtime object (registry + chosen backend + thread
 * pool) and the run path of the public API: option defaults, output shapes,
 * mha_run.
 *
 * Fork safety: a runtime remembers the process that created it. Its worker
 * threads do not exist in a forked child, so a run there returns
 * MHA_ERR_FORKED, and destroying it there frees memory without joining the
 * threads (which would wait forever). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec_ext.h"
#include "model.h"
#include "pool.h"
#include "registry.h"
#include "run_slots.h"

struct mha_runtime {
    mha_alloc_ctx alloc;
    registry *reg;
    const plugin_entry *entry;
    const mha_plugin *plugin;
    void *plugin_state;
    int plugin_ready;       /* init() succeeded: fini() is owed */
    exec_services services; /* lent to the plugin; lives here */
    pool *pool;
    run_slots slots; /* who computes the runs (run_slots.h) */
    int slots_ready;
    int num_threads;
    pid_t pid; /* the process that created the runtime */
    mha_log_fn log;
    void *log_user;
    mha_log_level log_level;
};

/* ---- small public helpers ---- */

MHA_API void mha_runtime_options_init(mha_runtime_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->log_level = MHA_LOG_WARN;
}

MHA_API void mha_run_options_init(mha_run_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

static void runtime_log(const mha_runtime *rt, mha_log_level level, const char *fmt, ...)
    MHA_PRINTF(3, 4);

static void runtime_log(const mha_runtime *rt, mha_log_level level, const char *fmt, ...) {
    if (!rt->log || level > rt->log_level) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rt->log(rt->log_user, level, msg);
}

/* CPUs this process may run on (the affinity mask, which containers and
 * taskset narrow), else the online count. */
static int runtime_online_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- create / destroy ---- */

MHA_API mha_status mha_runtime_create(const mha_runtime_options *opts, mha_runtime **out,
                                      mha_error *err) {
    if (!out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_runtime_create: out is NULL");
    *out = NULL;
    mha_runtime_options defaults;
    if (!opts) {
        mha_runtime_options_init(&defaults);
        opts = &defaults;
    }
    if (opts->struct_size < sizeof *opts)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "runtime options: struct_size %u, expected %zu "
                        "(call mha_runtime_options_init first)",
                        opts->struct_size, sizeof *opts);
    if (opts->num_threads < 0 || opts->num_threads > POOL_MAX_THREADS)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "runtime options: num_threads %d (allowed 0 = all CPUs, 1..%d)",
                        opts->num_threads, POOL_MAX_THREADS);

    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, opts->allocator);
    mha_runtime *rt = mha_calloc(&a, 1, sizeof *rt);
    if (!rt) return mha_fail(err, MHA_ERR_NO_MEMORY, "runtime: out of memory");
    rt->alloc = a;
    rt->pid = getpid();
    rt->log = opts->log;
    rt->log_user = opts->log_user;
    rt->log_level = opts->log_level;
    rt->num_threads = opts->num_threads ? opts->num_threads : runtime_online_cpus();
    if (rt->num_threads > POOL_MAX_THREADS) rt->num_threads = POOL_MAX_THREADS;

    /* a plugin file or folder the caller names must be there: a missing
     * one would leave the run on the default plugins in silence */
    struct stat psb;
    if (opts->plugin_path && opts->plugin_path[0] && stat(opts->plugin_path, &psb) != 0) {
        const int e = errno;
        char cwd[PATH_MAX];
        const int rel = opts->plugin_path[0] != '/' && getcwd(cwd, sizeof cwd);
        mha_status st =
            mha_fail(err, MHA_ERR_BACKEND, "plugin path '%s'%s%s%s: %s", opts->plugin_path,
                     rel ? " (in " : "", rel ? cwd : "", rel ? ")" : "", strerror(e));
        mha_free(&a, rt);
        return st;
    }

    const char *backend = opts->backend;
    if (!backend && !opts->no_env) backend = getenv("MHA_BACKEND");

    registry_options ro;
    memset(&ro, 0, sizeof ro);
    ro.plugin_path = opts->plugin_path;
    ro.only_name = backend; /* a named backend: no other plugin is opened */
    ro.use_env = !opts->no_env;
    ro.cpu_mask = opts->cpu_feature_mask;
    ro.log = opts->log;
    ro.log_user = opts->log_user;
    ro.log_level = opts->log_level;
    mha_status st = registry_create(&rt->alloc, &ro, &rt->reg, err);
    if (st == MHA_OK) st = registry_select(rt->reg, backend, &rt->entry, err);
    if (st == MHA_OK) {
        rt->plugin = rt->entry->plugin;
        exec_services_init(&rt->services, &rt->alloc, rt->log, rt->log_user, rt->log_level,
                           rt->reg->cpu_features);
        if (rt->plugin->init && rt->plugin->init(&rt->services.table, &rt->plugin_state) != 0)
            st = mha_fail(err, MHA_ERR_PLUGIN, "backend '%s' (%s): init failed", rt->plugin->name,
                          rt->entry->path);
        else
            rt->plugin_ready = 1;
    }
    if (st == MHA_OK)
        st = pool_create(&rt->alloc, rt->num_threads - 1, opts->worker_stack_bytes, &rt->pool, err);
    if (st == MHA_OK) {
        /* as many runs at once as the pool's door lets in */
        const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        run_slots_init(&rt->slots, rt->pool,
                       cpus > rt->num_threads && cpus < INT_MAX ? (int)cpus : rt->num_threads);
        rt->slots_ready = 1;
    }
    if (st != MHA_OK) {
        mha_runtime_destroy(rt);
        return st;
    }
    runtime_log(rt, MHA_LOG_INFO, "runtime: backend '%s' (%s, score %d), %d threads",
                rt->plugin->name, rt->entry->path, rt->entry->score, rt->num_threads);
    *out = rt;
    return MHA_OK;
}

MHA_API void mha_runtime_destroy(mha_runtime *rt) {
    if (!rt) return;
    if (getpid() != rt->pid)
        pool_abandon(rt->pool); /* the workers live only in the parent */
    else
        pool_destroy(rt->pool);
    if (rt->slots_ready) run_slots_destroy(&rt->slots);
    if (rt->plugin_ready && rt->plugin->fini) rt->plugin->fini(rt->plugin_state);
    registry_free(rt->reg);
    mha_alloc_ctx a = rt->alloc;
    mha_free(&a, rt);
}

/* ---- queries ---- */

MHA_API const char *mha_runtime_backend(const mha_runtime *rt) {
    return rt && rt->plugin ? rt->plugin->name : "";
}

MHA_API int mha_runtime_num_threads(const mha_runtime *rt) {
    return rt ? rt->num_threads : 0;
}

MHA_API size_t mha_runtime_scratch_bytes(const mha_runtime *rt) {
    return rt ? pool_scratch_bytes(rt->pool) : 0;
}

MHA_API size_t mha_runtime_plugin_count(const mha_runtime *rt) {
    return rt && rt->reg ? rt->reg->n_entries : 0;
}

MHA_API mha_status mha_runtime_plugin(const mha_runtime *rt, size_t i, mha_plugin_info *out) {
    if (!rt || !out || !rt->reg || i >= rt->reg->n_entries) return MHA_ERR_INVALID_ARGUMENT;
    const plugin_entry *e = &rt->reg->entries[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->version = e->version;
    out->path = e->path;
    out->score = e->score;
    out->usable = e->usable;
    out->selected = e == rt->entry;
    out->reason = e->reason;
    return MHA_OK;
}

MHA_API uint64_t mha_runtime_cpu_features(const mha_runtime *rt) {
    return rt && rt->reg ? rt->reg->cpu_features : 0;
}

MHA_API const char *mha_cpu_features_string(uint64_t features, char *buf, size_t size) {
    return cpu_features_str(features, buf, size);
}

MHA_API const struct mha_plugin *mha_runtime_plugin_table(const mha_runtime *rt, size_t i) {
    if (!rt || !rt->reg || i >= rt->reg->n_entries) return NULL;
    const plugin_entry *e = &rt->reg->entries[i];
    return e->usable ? e->plugin : NULL;
}

/* ---- running ---- */

MHA_API mha_status mha_model_output_shapes(const mha_model *model, const mha_tensor *inputs,
                                           size_t num_inputs, mha_tensor *outputs,
                                           size_t num_outputs, mha_error *err) {
    if (!model)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_model_output_shapes: model is NULL");
    if (model->plan)
        return plan_output_shapes(model->plan, inputs, num_inputs, outputs, num_outputs, err);
    return layer_output_shapes(&model->L, inputs, num_inputs, outputs, num_outputs, err);
}

/* An attention step of a plan, on the runtime's backend and pool. B and S:
 * the batch and sequence axes of the model's token ids (axes 0 and 1, or 1
 * and 0 sequence first; the first input's when it has no ids; -1 when it
 * has fewer). */
typedef struct runtime_plan_ctx {
    const exec_env *env;
    const model_pack *pk;
    int64_t B, S;
    double *flops; /* the run's count (mha_run_options.flops), or NULL */
} runtime_plan_ctx;

/* FLOPs of one attention layer on these inputs (mha_run_options.flops):
 * the projections, 2 m n k each, and the core, halved when causal. 0 when
 * the inputs do not bind (the run then fails on them). */
static double runtime_layer_flops(const layer *L, const mha_tensor *inputs, size_t n_inputs,
                                  size_t n_outputs) {
    exec_binding bd;
    if (layer_bind(L, inputs, n_inputs, n_outputs, &bd, NULL) != MHA_OK) return 0.0;
    const double B = (double)bd.B, Sq = (double)bd.Sq, Skv = (double)bd.Skv;
    const double T = (double)(bd.P + bd.Skv), hq = (double)L->q_heads, hkv = (double)L->kv_heads;
    double core = 2.0 * B * hq * Sq * T * (double)(bd.dk + bd.dv);
    if (L->causal) core *= 0.5;
    double proj = 0.0;
    if (L->has_proj)
        proj = 2.0 * B * Sq * (double)L->d_model * hq * (double)bd.dk +
               2.0 * B * Skv * (double)L->d_kv * hkv * (double)(bd.dk + bd.dv) +
               2.0 * B * Sq * hq * (double)bd.dv * (double)bd.d_out;
    return proj + core;
}

/* The run's key lengths ([B]) reach a layer that attends over the model's
 * sequence, self-attention with S_q = S_kv = S and no past keys: there the
 * keys past an item's length are the padding of a batch (mha_queue).
 * Other layers (patches, a cross-attention memory) get none. */
static const int64_t *runtime_plan_kv_lengths(const runtime_plan_ctx *pc, const layer *L,
                                              const mha_tensor *inputs, size_t n_inputs) {
    if (!pc->env->kv_lengths || pc->S < 0) return NULL;
    exec_binding bd;
    if (layer_bind(L, inputs, n_inputs, 1, &bd, NULL) != MHA_OK) return NULL;
    if (bd.B != pc->B || bd.Sq != pc->S || bd.Skv != pc->S || bd.P != 0 ||
        (bd.x_q && bd.x_kv != bd.x_q))
        return NULL;
    return pc->env->kv_lengths;
}

/* What a GEMM or attention step runs after its product: the host's
 * epilogue program per tile (ep, or NULL when the plugin fuses it), the
 * norm (nm, or NULL) per completed row tile; the first norm failure kept
 * for the step. */
typedef struct runtime_gemm_after {
    const plan_ep *ep;
    const plan_norm *nm;
    const exec_env *env;
    atomic_int failed;
    mha_error err;
} runtime_gemm_after;

/* The step's status after its run: a norm failure of a row tile. */
static mha_status runtime_after_status(runtime_gemm_after *after, mha_status st, mha_error *err) {
    if (st != MHA_OK || !atomic_load(&after->failed)) return st;
    if (err) *err = after->err;
    return after->err.status;
}

static void runtime_plan_ep_tile(void *user, float *C, int64_t N, int64_t m0, int64_t m1,
                                 int64_t n0, int64_t n1) {
    const runtime_gemm_after *a = user;
    plan_ep_tile(a->ep, C, N, m0, m1, n0, n1);
}

static void runtime_plan_norm_tile(void *user, float *C, int64_t N, int64_t m0, int64_t m1) {
    runtime_gemm_after *a = user;
    mha_norm_args args;
    mha_error err;
    (void)N;
    plan_norm_args(a->nm, C, NULL, C, m1, &args);
    args.r0 = m0;
    args.r1 = m1;
    if (exec_norm_rows(a->env, &args, &err) != MHA_OK && atomic_exchange(&a->failed, 1) == 0)
        a->err = err;
}

static mha_status runtime_plan_layer(void *user, const plan *P, size_t li, const mha_tensor *inputs,
                                     size_t n_inputs, mha_tensor *outputs, size_t n_outputs,
                                     const float *residual, mha_error *err) {
    const runtime_plan_ctx *pc = user;
    const plan_layer *pl = &P->layers[li];
    exec_env env = *pc->env;
    env.residual = residual;
    env.kv_lengths = runtime_plan_kv_lengths(pc, &pl->L, inputs, n_inputs);
    /* a post-norm LayerNorm after the layer: on each completed row tile */
    runtime_gemm_after after = {NULL, pl->norm >= 0 ? &P->norms[pl->norm] : NULL, pc->env, 0, {0}};
    exec_gemm_epilogue rows = {NULL, &after, runtime_plan_norm_tile};
    env.y_rows = after.nm ? &rows : NULL;
    if (pc->flops) *pc->flops += runtime_layer_flops(&pl->L, inputs, n_inputs, n_outputs);
    mha_status st =
        exec_run(&env, &pl->L, pc->pk->layer_packed[li], inputs, n_inputs, outputs, n_outputs, err);
    return runtime_after_status(&after, st, err);
}

/* A norm step of a plan on the runtime's plugin (or the built-in
 * scalar's) and pool. */
static mha_status runtime_plan_norm(void *user, const plan *P, size_t ni, const float *x,
                                    const float *res, float *y, int64_t rows, mha_error *err) {
    const runtime_plan_ctx *pc = user;
    mha_norm_args a;
    plan_norm_args(&P->norms[ni], x, res, y, rows, &a);
    return exec_norm_run(pc->env, &a, err);
}

/* A data pass of a plan step (plan_backend.parallel) on the runtime's
 * pool: [0, n) in pieces of `grain` items, about 4 per thread, one pool
 * unit each. */
typedef struct runtime_pieces {
    void (*fn)(void *ctx, int64_t i0, int64_t i1);
    void *ctx;
    int64_t n, piece;
} runtime_pieces;

static mha_status runtime_piece_unit(void *ctx, int phase, int64_t u, int worker, mha_error *err) {
    const runtime_pieces *rp = ctx;
    (void)phase;
    (void)worker;
    (void)err;
    const int64_t i0 = u * rp->piece;
    rp->fn(rp->ctx, i0, rp->n - i0 < rp->piece ? rp->n : i0 + rp->piece);
    return MHA_OK;
}

static mha_status runtime_plan_parallel(void *user, void (*fn)(void *ctx, int64_t i0, int64_t i1),
                                        void *ctx, int64_t n, int64_t grain, mha_error *err) {
    const runtime_plan_ctx *pc = user;
    const exec_env *env = pc->env;
    if (n <= 0) return MHA_OK;
    int threads = env->pool ? pool_threads(env->pool) : 1;
    if (env->num_threads > 0 && env->num_threads < threads) threads = env->num_threads;
    if (grain < 1) grain = 1;
    if (threads <= 1 || n < 2 * grain) {
        fn(ctx, 0, n);
        return MHA_OK;
    }
    int64_t piece = (n + 4 * (int64_t)threads - 1) / (4 * (int64_t)threads);
    if (piece < grain) piece = grain;
    runtime_pieces rp = {fn, ctx, n, piece};
    const int64_t units = (n + piece - 1) / piece;
    return exec_pool_units(env, runtime_piece_unit, &rp, units, units, threads, err);
}

/* A GEMM step of a plan; its epilogue inside the plugin's kernel when the
 * plugin declares the step's fused form, else on the host after each
 * tile. */
static mha_status runtime_plan_gemm(void *user, const plan *P, size_t gi, const float *A, int64_t M,
                                    float *C, const plan_ep *ep, mha_error *err) {
    const runtime_plan_ctx *pc = user;
    const plan_gemm *pg = &P->gemms[gi];
    const exec_gemm_weights *W = &pc->pk->gemm_packed[gi];
    if (pc->flops) *pc->flops += 2.0 * (double)M * (double)W->N * (double)W->K;
    exec_gemm_fused fused;
    const int in_kernel = ep && exec_gemm_fuse(pc->env, pg->fused_act,
                                               pg->fused_residual ? ep->ext : NULL, pg->N, &fused);
    runtime_gemm_after after = {ep, pg->norm >= 0 ? &P->norms[pg->norm] : NULL, pc->env, 0, {0}};
    exec_gemm_epilogue host = {ep && !in_kernel ? runtime_plan_ep_tile : NULL, &after,
                               after.nm ? runtime_plan_norm_tile : NULL};
    mha_status st = exec_gemm_run(pc->env, W, A, M, C, in_kernel ? &fused : NULL, &host, err);
    return runtime_after_status(&after, st, err);
}

/* One run's arguments, for whichever thread computes it (run_slots.h). */
typedef struct runtime_run_ctx {
    const exec_env *env;
    const mha_model *model;
    const model_pack *pk;
    const mha_run_options *opts;
    const mha_tensor *inputs;
    size_t num_inputs;
    mha_tensor *outputs;
    size_t num_outputs;
} runtime_run_ctx;

static mha_status runtime_run_body(void *ctx, mha_error *err) {
    const runtime_run_ctx *rc = ctx;
    const mha_run_options *opts = rc->opts;
    const mha_model *model = rc->model;
    mha_status st;
    /* flops was appended after precision */
    double *flops = NULL;
    if (opts->struct_size >= offsetof(mha_run_options, flops) + sizeof(double *))
        flops = opts->flops;
    if (flops) *flops = 0.0;
    if (model->plan) {
        runtime_plan_ctx pc = {rc->env, rc->pk, -1, -1, flops};
        /* the token ids' batch and sequence, [B, S] or [S, B] */
        const plan *P = model->plan;
        const size_t ids = P->ids_input >= 0 ? (size_t)P->ids_input : 0;
        if (ids < rc->num_inputs && rc->inputs && rc->inputs[ids].rank >= 2) {
            const int b = P->batch_axis == 1;
            pc.B = rc->inputs[ids].shape[b];
            pc.S = rc->inputs[ids].shape[1 - b];
        }
        plan_backend be = {runtime_plan_layer,      runtime_plan_gemm,     &pc,  runtime_plan_norm,
                           NULL /* step_seconds */, runtime_plan_parallel, flops};
        /* step_seconds was appended after flops */
        if (opts->struct_size >= offsetof(mha_run_options, step_seconds) + sizeof(double *))
            be.step_seconds = opts->step_seconds;
        st = plan_run(model->plan, rc->inputs, rc->num_inputs, rc->outputs, rc->num_outputs, &be,
                      err);
    } else {
        if (flops)
            *flops = runtime_layer_flops(&model->L, rc->inputs, rc->num_inputs, rc->num_outputs);
        st = exec_run(rc->env, &model->L, rc->pk->packed, rc->inputs, rc->num_inputs, rc->outputs,
                      rc->num_outputs, err);
    }
    return st;
}

MHA_API mha_status mha_run(mha_runtime *rt, const mha_model *model, const mha_tensor *inputs,
                           size_t num_inputs, mha_tensor *outputs, size_t num_outputs,
                           const mha_run_options *opts, mha_error *err) {
    if (!rt || !model)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "mha_run: %s is NULL",
                        !rt ? "runtime" : "model");
    pid_t pid = getpid();
    if (pid != rt->pid)
        return mha_fail(err, MHA_ERR_FORKED,
                        "runtime created in process %ld used in forked process %ld: create a "
                        "new runtime in the child",
                        (long)rt->pid, (long)pid);
    mha_run_options defaults;
    if (!opts) {
        mha_run_options_init(&defaults);
        opts = &defaults;
    }
    /* kv_lengths was appended: callers built before it pass a smaller size */
    const size_t run_opts_v0 = offsetof(mha_run_options, kv_lengths);
    if (opts->struct_size < run_opts_v0)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "run options: struct_size %u, expected %zu (call mha_run_options_init "
                        "first)",
                        opts->struct_size, sizeof *opts);
    if (opts->num_threads < 0)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "run options: num_threads %d < 0",
                        opts->num_threads);

    /* precision was appended after kv_lengths */
    int precision = MHA_PRECISION_FLOAT32;
    if (opts->struct_size >= offsetof(mha_run_options, precision) + sizeof(int))
        precision = opts->precision;
    if (precision != MHA_PRECISION_FLOAT32 && precision != MHA_PRECISION_BFLOAT16)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "run options: precision %d (expected MHA_PRECISION_FLOAT32 or "
                        "MHA_PRECISION_BFLOAT16)",
                        precision);

    const model_pack *pk = NULL;
    mha_status st = model_packed_for(model, rt->plugin, rt->plugin_state, rt->reg->cpu_features,
                                     precision, &pk, err);
    if (st != MHA_OK) return st;

    exec_env env;
    memset(&env, 0, sizeof env);
    env.alloc = &rt->alloc;
    env.plugin = rt->plugin;
    env.plugin_state = rt->plugin_state;
    env.pool = rt->pool;
    env.num_threads = opts->num_threads && opts->num_threads < rt->num_threads ? opts->num_threads
                                                                               : rt->num_threads;
    env.cancel = opts->cancel;
    env.cancel_user = opts->cancel_user;
    if (opts->struct_size >= offsetof(mha_run_options, kv_lengths) + sizeof(void *))
        env.kv_lengths = opts->kv_lengths;
    env.precision = precision;
    runtime_run_ctx rc = {&env, model, pk, opts, inputs, num_inputs, outputs, num_outputs};
    /* a run among others gets its share of the cores, step by step (pool.h:
     * each step plans for pool_threads, the share at its start); with every
     * core taken the run is handed to the next one free (run_slots.h),
     * unless its cancel callback must be called on this thread */
    return run_slots_run(&rt->slots, runtime_run_body, &rc, opts->cancel != NULL, err);
}

mha_status runtime_pack_model(mha_runtime *rt, const mha_model *m, int precision, mha_error *err) {
    const model_pack *pk = NULL;
    return model_packed_for(m, rt->plugin, rt->plugin_state, rt->reg->cpu_features, precision, &pk,
                            err);
}

void runtime_run_slots_count(mha_runtime *rt, run_slots_counts *out) {
    run_slots_count(&rt->slots, out);
}
