/* exec_norm.c -- one normalisation step of a model's plan on the runtime's
 * backend: y [rows, D] = LayerNorm / RMSNorm of x, on the plugin's norm
 * entry when it declares one (MHA_OP_NORM), else on the built-in scalar's
 * (the shared reference). Rows are cut into blocks, one pool unit each (a
 * self-parallel plugin gets them all at once); a row's result never
 * depends on its block, so any thread count gives the same bits. */
#include "exec.h"
#include "registry_table.h"

/* Rows per pool unit: enough that a unit is worth handing out (a row is a
 * few passes over D floats), few enough for every thread to get some. */
#define EXEC_NORM_ROWS 32

typedef struct norm_job {
    registry_norm_fn fn;
    void *state;
    const char *name;
    const mha_norm_args *args;
} norm_job;

static mha_status norm_call(const norm_job *j, int64_t r0, int64_t r1, int threads,
                            mha_error *err) {
    mha_norm_args a = *j->args;
    a.r0 = r0;
    a.r1 = r1;
    a.num_threads = threads;
    if (j->fn(j->state, &a) == 0) return MHA_OK;
    return mha_fail(err, MHA_ERR_PLUGIN,
                    "backend '%s': norm failed on rows [%lld, %lld) of %lld x %lld", j->name,
                    (long long)r0, (long long)r1, (long long)a.rows, (long long)a.D);
}

static mha_status norm_unit(void *ctx, int phase, int64_t u, int worker, mha_error *err) {
    const norm_job *j = ctx;
    (void)phase;
    (void)worker;
    const int64_t r0 = j->args->r0 + u * EXEC_NORM_ROWS;
    const int64_t r1 = r0 + EXEC_NORM_ROWS < j->args->r1 ? r0 + EXEC_NORM_ROWS : j->args->r1;
    const int64_t fl = (int64_t)sizeof(float), D = j->args->D;
    pool_trace_touch(j->args->x, j->args->ldx * fl, r0, r1, 0, D * fl, 0);
    if (j->args->residual)
        pool_trace_touch(j->args->residual, j->args->ldr * fl, r0, r1, 0, D * fl, 0);
    pool_trace_touch(j->args->y, j->args->ldy * fl, r0, r1, 0, D * fl, 1);
    return norm_call(j, r0, r1, 1, err);
}

/* The plugin's norm entry, else the built-in scalar's; 1 when the plugin's. */
static int norm_job_init(const exec_env *env, const mha_norm_args *args, norm_job *j) {
    const mha_plugin *p = env->plugin;
    *j = (norm_job){registry_plugin_norm(p), env->plugin_state, p->name, args};
    if (j->fn) return 1;
    j->fn = mha_scalar_plugin_table()->norm;
    j->state = NULL;
    j->name = "scalar (built-in)";
    return 0;
}

mha_status exec_norm_rows(const exec_env *env, const mha_norm_args *args, mha_error *err) {
    norm_job j;
    norm_job_init(env, args, &j);
    if (args->r1 <= args->r0 || args->D <= 0) return MHA_OK;
    return norm_call(&j, args->r0, args->r1, 1, err);
}

mha_status exec_norm_run(const exec_env *env, const mha_norm_args *args, mha_error *err) {
    const mha_plugin *p = env->plugin;
    norm_job j;
    const int own = norm_job_init(env, args, &j);
    if (args->r1 <= args->r0 || args->D <= 0) return MHA_OK;
    int threads = env->pool ? pool_threads(env->pool) : 1;
    if (env->num_threads > 0 && env->num_threads < threads) threads = env->num_threads;
    if (own && (p->flags & MHA_PLUGIN_SELF_PARALLEL)) {
        int reserved = pool_try_reserve(env->pool);
        mha_status st = norm_call(&j, args->r0, args->r1, reserved ? threads : 1, err);
        if (reserved) pool_release(env->pool);
        return st;
    }
    const int64_t units = (args->r1 - args->r0 + EXEC_NORM_ROWS - 1) / EXEC_NORM_ROWS;
    return exec_pool_units(env, norm_unit, &j, units, units, threads, err);
}
