/* peak_gemm.c -- `mha peak --gemm MxKxN,...`: one backend's GEMM alone at
 * given shapes, in GFLOP/s, to set beside the register-only peak of the
 * same run (mha_peak.c): how much of the peak the kernel, its packing of A
 * and its epilogue (a bias) keep at a model's shapes.
 *
 * Through the plugin ABI only, as the plugin test kit: B [K, N] packed once
 * in the asked precision, then C = A . B + bias over [0, M) x [0, N), timed.
 * The rows are cut into units of 72 (a multiple of the plugin's m block),
 * each whole-width; threads claim the units in order, as the engine's pool
 * does for a GEMM step whose weight is not cut into column slabs (the
 * engine slabs a weight wider than 2 MiB of float32 columns: ViT's 768 x
 * 3072, so at 2 threads its split differs from this one). A figure is the
 * median of --reps timings of at least --seconds each, in wall time and in
 * CPU time (threads x FLOP per CPU second: on a shared machine the wall
 * time counts the other programs' turns, the CPU time does not). */
#include "peak_gemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mha_cli.h"
#include "plugin_kit.h"

#define PG_UNIT_ROWS 72

typedef struct pg_shared {
    const mha_plugin *p;
    void *state;
    mha_gemm_args args; /* the whole product; units narrow m0, m1 */
    int64_t unit_rows, n_units;
    atomic_llong next; /* the next unclaimed unit */
    atomic_int failed;
    pthread_barrier_t start;
} pg_shared;

static void pg_units(pg_shared *sh) {
    for (;;) {
        const long long u = atomic_fetch_add_explicit(&sh->next, 1, memory_order_relaxed);
        if (u >= sh->n_units) return;
        mha_gemm_args g = sh->args;
        g.m0 = u * sh->unit_rows;
        g.m1 = g.m0 + sh->unit_rows < g.M ? g.m0 + sh->unit_rows : g.M;
        if (sh->p->gemm(sh->state, &g) != 0) atomic_store(&sh->failed, 1);
    }
}

static void *pg_worker(void *arg) {
    pg_shared *sh = arg;
    pthread_barrier_wait(&sh->start);
    pg_units(sh);
    return NULL;
}

static double pg_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds of one product on `threads` threads (the caller's included);
 * negative on a failure. */
static double pg_once(pg_shared *sh, int threads) {
    pthread_t tid[64];
    int started = 0;
    if (threads < 1 || threads > 64) return -1.0;
    atomic_store(&sh->next, 0);
    if (pthread_barrier_init(&sh->start, NULL, (unsigned)threads) != 0) return -1.0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, pg_worker, sh) != 0) break;
        started++;
    }
    if (started < threads - 1) { /* release the ones that wait: no units */
        atomic_store(&sh->next, sh->n_units);
        atomic_store(&sh->failed, 1);
        for (int i = started; i < threads - 1; i++)
            pthread_barrier_wait(&sh->start);
    }
    pthread_barrier_wait(&sh->start);
    const double t0 = cli_now();
    pg_units(sh);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    const double dt = cli_now() - t0;
    pthread_barrier_destroy(&sh->start);
    return atomic_load(&sh->failed) ? -1.0 : dt;
}

static int pg_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One shape at each thread count: prints its line(s). */
static int pg_shape(const mha_plugin *p, void *state, int precision, int64_t M, int64_t K,
                    int64_t N, const int *threads, int n_threads, double seconds, int reps,
                    const double *peak, double core_peak) {
    const size_t packed_size = p->gemm_packed_size(state, precision, K, N);
    if (packed_size == SIZE_MAX)
        return cli_fail("peak: %s packs no %lldx%lld weight", p->name, (long long)K, (long long)N);
    float *A = malloc((size_t)(M * K) * sizeof(float)),
          *B = malloc((size_t)(K * N) * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float)), *C = malloc((size_t)(M * N) * sizeof(float));
    void *packed = aligned_alloc(64, (packed_size + 63) / 64 * 64);
    int rc = CLI_OK;
    if (!A || !B || !bias || !C || !packed) {
        rc = cli_fail("peak: out of memory for a %lldx%lldx%lld GEMM", (long long)M, (long long)K,
                      (long long)N);
        goto done;
    }
    uint64_t seed = 1;
    for (int64_t i = 0; i < M * K; i++)
        A[i] = (float)(2.0 * cli_rng_uniform(&seed) - 1.0);
    for (int64_t i = 0; i < K * N; i++)
        B[i] = (float)(2.0 * cli_rng_uniform(&seed) - 1.0);
    for (int64_t i = 0; i < N; i++)
        bias[i] = (float)cli_rng_uniform(&seed);
    if (p->gemm_pack_b(state, precision, K, N, B, N, packed) != 0) {
        rc = cli_fail("peak: %s failed to pack a %lldx%lld weight", p->name, (long long)K,
                      (long long)N);
        goto done;
    }

    pg_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.p = p;
    sh.state = state;
    mha_gemm_args *g = &sh.args;
    g->struct_size = sizeof *g;
    g->precision = precision;
    g->M = M, g->N = N, g->K = K, g->A = A, g->lda = K, g->B_packed = packed;
    g->C = C, g->ldc = N, g->bias = bias;
    g->m0 = 0, g->m1 = M, g->n0 = 0, g->n1 = N, g->num_threads = 1;
    const int64_t mb = p->gemm_m_block > 0 ? p->gemm_m_block : 1;
    sh.unit_rows = (PG_UNIT_ROWS + mb - 1) / mb * mb;
    sh.n_units = (M + sh.unit_rows - 1) / sh.unit_rows;
    atomic_init(&sh.next, 0);
    atomic_init(&sh.failed, 0);

    const double flop = 2.0 * (double)M * (double)K * (double)N;
    for (int t = 0; t < n_threads; t++) {
        double dt = pg_once(&sh, threads[t]); /* warm: caches, pages of C */
        int per = dt > 0.0 && dt < seconds ? (int)(seconds / dt) + 1 : 1;
        double v[99], vc[99];
        for (int r = 0; r < reps && dt >= 0.0; r++) {
            double sum = 0.0;
            const double c0 = pg_cpu_now();
            for (int i = 0; i < per && dt >= 0.0; i++)
                sum += dt = pg_once(&sh, threads[t]);
            v[r] = flop * per / sum * 1e-9;
            vc[r] = flop * per / (pg_cpu_now() - c0) * threads[t] * 1e-9;
        }
        if (dt < 0.0) {
            rc = cli_fail("peak: the %s GEMM failed on %lldx%lldx%lld", p->name, (long long)M,
                          (long long)K, (long long)N);
            goto done;
        }
        qsort(v, (size_t)reps, sizeof v[0], pg_cmp);
        qsort(vc, (size_t)reps, sizeof vc[0], pg_cmp);
        const double gf = v[reps / 2], gc = vc[reps / 2];
        printf("%-8s %-9s %5lld x %4lld x %4lld %7d %9.1f  (%6.1f-%6.1f) %9.1f", p->name,
               precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32", (long long)M,
               (long long)K, (long long)N, threads[t], gf, v[0], v[reps - 1], gc);
        if (peak[t] > 0.0) printf("  %5.1f %%", 100.0 * gf / peak[t]);
        if (core_peak > 0.0) printf("  %5.1f %%", 100.0 * gc / (core_peak * threads[t]));
        printf("\n");
        fflush(stdout);
    }
done:
    free(A), free(B), free(bias), free(C), free(packed);
    return rc;
}

int peak_gemm_run(const char *shapes, const char *backend, int precision, const int *threads,
                  int n_threads, double seconds, int reps, const double *peak, double core_peak) {
    cli_common c = {0};
    c.cmd = "peak";
    c.backend = backend;
    c.threads = 1;
    mha_runtime *rt = NULL;
    int rc = cli_runtime_create(&c, &rt);
    if (rc != CLI_OK) return rc;
    const mha_plugin *p = NULL;
    const char *name = mha_runtime_backend(rt);
    mha_plugin_info pi;
    for (size_t i = 0; i < mha_runtime_plugin_count(rt) && !p; i++)
        if (mha_runtime_plugin(rt, i, &pi) == MHA_OK && pi.name && strcmp(pi.name, name) == 0)
            p = mha_runtime_plugin_table(rt, i);
    if (!p || !(p->precisions & MHA_PRECISION_BIT(precision))) {
        mha_runtime_destroy(rt);
        return cli_fail("peak: backend '%s' has no %s GEMM", name,
                        precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32");
    }
    mha_plugin_services services;
    plugin_kit_services(mha_runtime_cpu_features(rt), &services);
    void *state = NULL;
    if (p->init && p->init(&services, &state) != 0) {
        mha_runtime_destroy(rt);
        return cli_fail("peak: backend '%s' failed to start", name);
    }
    /* wall: the product's wall time (what a run sees); cpu: threads x
     * FLOP per CPU second (what each core did while it ran, the same on a
     * shared machine; blind to a thread waiting for the last unit) */
    printf("backend  precision   M x    K x    N threads  wall GF/s  (min - max)    cpu GF/s  "
           "%% of peak (wall; cpu vs threads x 1 core), median of %d\n",
           reps);
    for (const char *s = shapes; rc == CLI_OK && *s;) {
        long long m, k, n;
        int used = 0;
        if (sscanf(s, "%lldx%lldx%lld%n", &m, &k, &n, &used) != 3 || m < 1 || k < 1 || n < 1 ||
            m > (1 << 20) || k > (1 << 16) || n > (1 << 20) || (s[used] && s[used] != ',')) {
            rc = cli_usage_error(&c, "--gemm wants MxKxN[,MxKxN...], not '%s'", s);
            break;
        }
        rc = pg_shape(p, state, precision, m, k, n, threads, n_threads, seconds, reps, peak,
                      core_peak);
        s += used + (s[used] == ',');
    }
    if (p->fini) p->fini(state);
    mha_runtime_destroy(rt);
    return rc;
}
