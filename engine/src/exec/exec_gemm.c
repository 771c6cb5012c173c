/* exec_gemm.c -- one GEMM of a model's plan on the runtime's backend:
 * C [M, N] = A [M, K] . W (+ bias), W packed once by the plugin. The
 * product is cut into tiles of rows x columns at multiples of the plugin's
 * blocks, one pool unit each; the epilogue runs on each tile while it is
 * in cache -- inside the plugin's kernel when it declares the step's form
 * (activation, residual: exec_gemm_fuse), else the host's elementwise
 * program right after the call. Every tile writes its own part of C, so
 * the result is bitwise the same for any thread count. */
#include <string.h>

#include "exec.h"
#include "registry.h"

typedef struct gemm_job {
    const exec_env *env;
    const exec_gemm_weights *W;
    const float *A;
    float *C;
    int64_t M, m_tile, n_tile, n_tiles;
    const exec_gemm_fused *fused;
    const exec_gemm_epilogue *ep;
} gemm_job;

static int64_t gemm_round_up(int64_t x, int64_t block) {
    return (x + block - 1) / block * block;
}

static mha_status gemm_call(const gemm_job *j, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                            int threads, mha_error *err) {
    return exec_gemm_tile(j->env, j->W, j->M, j->A, j->W->K, j->C, j->W->N, m0, m1, n0, n1, threads,
                          j->fused, err);
}

static mha_status gemm_unit(void *ctx, int phase, int64_t u, int worker, mha_error *err) {
    const gemm_job *j = ctx;
    (void)phase;
    (void)worker;
    int64_t m0 = (u / j->n_tiles) * j->m_tile, n0 = (u % j->n_tiles) * j->n_tile;
    int64_t m1 = m0 + j->m_tile < j->M ? m0 + j->m_tile : j->M;
    int64_t n1 = n0 + j->n_tile < j->W->N ? n0 + j->n_tile : j->W->N;
    mha_status st = gemm_call(j, m0, m1, n0, n1, 1, err);
    if (st == MHA_OK && j->ep) j->ep->fn(j->ep->user, j->C, j->W->N, m0, m1, n0, n1);
    return st;
}

int exec_gemm_fuse(const exec_env *env, int act, const float *residual, int64_t ldr,
                   exec_gemm_fused *out) {
    if (act < 0 || !registry_plugin_epilogue(env->plugin, act, residual != NULL)) return 0;
    out->activation = act;
    out->residual = residual;
    out->ldr = ldr;
    return 1;
}

mha_status exec_gemm_run(const exec_env *env, const exec_gemm_weights *W, const float *A, int64_t M,
                         float *C, const exec_gemm_fused *fused, const exec_gemm_epilogue *ep,
                         mha_error *err) {
    const mha_plugin *p = env->plugin;
    if (!W->packed && W->K > 0 && W->N > 0)
        return mha_fail(err, MHA_ERR_INTERNAL, "exec: a %lldx%lld GEMM without packed weights",
                        (long long)W->K, (long long)W->N);
    if (M <= 0 || W->N <= 0) return MHA_OK;
    int threads = env->pool ? pool_size(env->pool) : 1;
    if (env->num_threads > 0 && env->num_threads < threads) threads = env->num_threads;
    gemm_job j = {env, W, A, C, M, 0, 0, 0, fused, ep && ep->fn ? ep : NULL};
    if (p->flags & MHA_PLUGIN_SELF_PARALLEL) {
        int reserved = pool_try_reserve(env->pool);
        mha_status st = gemm_call(&j, 0, M, 0, W->N, reserved ? threads : 1, err);
        if (reserved) pool_release(env->pool);
        if (st == MHA_OK && j.ep) j.ep->fn(j.ep->user, C, W->N, 0, M, 0, W->N);
        return st;
    }
    const int64_t mb = p->gemm_m_block > 0 ? p->gemm_m_block : 1;
    const int64_t nb = p->gemm_n_block > 0 ? p->gemm_n_block : 1;
    /* rows in tiles of about 64, columns cut so that there are a few
     * units per thread even for short M */
    j.m_tile = gemm_round_up(64, mb);
    int64_t m_tiles = (M + j.m_tile - 1) / j.m_tile;
    int64_t want_cols = (4 * threads + m_tiles - 1) / m_tiles;
    j.n_tile = gemm_round_up((W->N + want_cols - 1) / want_cols, nb);
    if (j.n_tile < gemm_round_up(64, nb)) j.n_tile = gemm_round_up(64, nb);
    j.n_tiles = (W->N + j.n_tile - 1) / j.n_tile;
    return exec_pool_units(env, gemm_unit, &j, m_tiles * j.n_tiles, threads, err);
}

mha_status exec_pool_units(const exec_env *env, pool_unit_fn fn, void *ctx, int64_t units,
                           int threads, mha_error *err) {
    pool_job job;
    memset(&job, 0, sizeof job);
    job.fn = fn;
    job.ctx = ctx;
    job.n_phases = 1;
    job.n_units[0] = units;
    job.num_threads = threads;
    job.cancel = env->cancel;
    job.cancel_user = env->cancel_user;
    unsigned fp = env->pool ? pool_fp_flush_denormals() : 0;
    mha_status st = pool_run(env->pool, &job, err);
    if (env->pool) pool_fp_restore(fp);
    return st;
}
