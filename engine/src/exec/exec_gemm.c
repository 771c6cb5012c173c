/* exec_gemm.c -- one GEMM of a model's plan on the runtime's backend:
 * C [M, N] = A [M, K] . W (+ bias), W packed once by the plugin. The
 * product is cut into tiles of rows x columns by the layer executor's
 * planner (exec_gemm_plan), one pool unit each; the epilogue runs on each
 * tile while it is in cache -- inside the plugin's kernel when it declares
 * the step's form (activation, residual: exec_gemm_fuse), else the host's
 * elementwise program right after the call. Every tile writes its own part
 * of C, so the result is bitwise the same for any thread count. */
#include <stdatomic.h>
#include <string.h>

#include "exec.h"
#include "registry_table.h"

typedef struct gemm_job {
    const exec_env *env;
    exec_gemm_family f;
    const exec_gemm_fused *fused;
    const exec_gemm_epilogue *ep;
    /* [m_tiles] with ep->rows: the column pieces of each row tile not yet
     * done; the unit that takes one to 0 runs ep->rows on the tile's rows
     * (acq_rel: it sees the other pieces' writes to C) */
    atomic_int *pieces;
} gemm_job;

static mha_status gemm_unit(void *ctx, int phase, int64_t u, int worker, mha_error *err) {
    const gemm_job *j = ctx;
    const exec_gemm_family *f = &j->f;
    (void)phase;
    (void)worker;
    int64_t seg, r[4];
    exec_gemm_unit_range(f, u, &seg, r);
    mha_status st = exec_gemm_tile(j->env, f->W, f->M, f->A, f->lda, f->C, f->ldc, r[0], r[1], r[2],
                                   r[3], 1, j->fused, err);
    exec_gemm_touch(f, 0, r, j->fused ? j->fused->residual : NULL);
    if (st == MHA_OK && j->ep && j->ep->fn)
        j->ep->fn(j->ep->user, f->C, f->W->N, r[0], r[1], r[2], r[3]);
    if (st == MHA_OK && j->pieces && exec_gemm_piece_done(f, j->pieces, u, r)) {
        j->ep->rows(j->ep->user, f->C, f->W->N, r[0], r[1]);
        pool_trace_touch(f->C, f->ldc * (int64_t)sizeof(float), r[0], r[1], 0,
                         f->W->N * (int64_t)sizeof(float), 1);
    }
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
    int threads = env->pool ? pool_threads(env->pool) : 1;
    if (env->num_threads > 0 && env->num_threads < threads) threads = env->num_threads;
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.env = env;
    j.fused = fused;
    j.ep = ep && (ep->fn || ep->rows) ? ep : NULL;
    j.f.W = W;
    j.f.A = A;
    j.f.lda = W->K;
    j.f.C = C;
    j.f.ldc = W->N;
    j.f.M = M;
    j.f.n_segs = 1;
    j.f.paired_ends = 1; /* exec_pool_units below pairs its body */
    if (p->flags & MHA_PLUGIN_SELF_PARALLEL) {
        int reserved = pool_try_reserve(env->pool);
        mha_status st = exec_gemm_tile(env, W, M, A, W->K, C, W->N, 0, M, 0, W->N,
                                       reserved ? threads : 1, fused, err);
        if (reserved) pool_release(env->pool);
        if (st == MHA_OK && j.ep && j.ep->fn) j.ep->fn(j.ep->user, C, W->N, 0, M, 0, W->N);
        if (st == MHA_OK && j.ep && j.ep->rows) j.ep->rows(j.ep->user, C, W->N, 0, M);
        return st;
    }
    /* the layer executor's tiles: a batch of short sequences shares each
     * pass over the weights (one per kernel row block) */
    exec_gemm_plan(&j.f, p, threads);
    if (j.ep && j.ep->rows) {
        j.pieces =
            mha_calloc(env->alloc, (size_t)(j.f.m_tiles > 0 ? j.f.m_tiles : 1), sizeof *j.pieces);
        if (!j.pieces) return mha_fail(err, MHA_ERR_NO_MEMORY, "exec: out of memory");
        exec_gemm_pieces_init(&j.f, j.pieces);
    }
    mha_status st =
        exec_pool_units(env, gemm_unit, &j, j.f.n_units, exec_gemm_body_units(&j.f), threads, err);
    mha_free(env->alloc, j.pieces);
    return st;
}

mha_status exec_pool_units(const exec_env *env, pool_unit_fn fn, void *ctx, int64_t units,
                           int64_t paired, int threads, mha_error *err) {
    pool_job job;
    memset(&job, 0, sizeof job);
    job.fn = fn;
    job.ctx = ctx;
    job.n_phases = 1;
    job.n_units[0] = units;
    job.paired[0] = paired;
    job.num_threads = threads;
    job.cancel = env->cancel;
    job.cancel_user = env->cancel_user;
    unsigned fp = env->pool ? pool_fp_flush_denormals() : 0;
    mha_status st = pool_run(env->pool, &job, err);
    if (env->pool) pool_fp_restore(fp);
    return st;
}
