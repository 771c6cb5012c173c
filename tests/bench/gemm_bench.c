/* gemm_bench.c -- the float32 GEMM of a backend at the whole models'
 * shapes, alone and through the executor (`make gemm-bench`; a program,
 * not a test: it prints figures and checks nothing).
 *
 * Per shape C [M, N] = A [M, K] . W [K, N] + bias, W packed once by the
 * plugin, two ways:
 *   kernel  the plugin's gemm entry on the whole range from one thread
 *           (at 2 threads: two threads, each on one half of the rows, cut
 *           at the plugin's row block): the kernel, its A packing and its
 *           bias epilogue, no scheduling;
 *   exec    exec_gemm_run on a pool of that many threads: the tiles and
 *           column slabs the executor plans, claimed from its counter, as
 *           a model's GEMM step runs them.
 * Each figure is the median over repetitions (at least 3, and at least
 * --min-time seconds) of FLOPs (2 M N K) over the wall time of one call,
 * and, for one thread, also over its CPU time (less sensitive to a shared
 * machine's load; the median and the best call). "% peak" is against the FMA peak `mha peak`
 * measured
 * (--peak-json, the file `mha peak --json` writes).
 *
 * --cold writes 64 MiB before each call, so the weights come from memory
 * as in a whole model's run (each layer's weights are read once per run),
 * not from the L3 the previous call left them in.
 *
 * --precision bfloat16 packs W and runs the GEMM in the bfloat16 compute
 * mode; "% peak" is then against the avx512bf16 (VDPBF16PS) row of
 * --peak-json.
 * --act gelu|gelu-tanh|relu|silu adds that activation to the epilogue
 * (in the plugin's kernel, as a fused FFN-up step runs it), so its cost
 * shows against the bias-only call of the same shape.
 *
 * Usage: gemm_bench [--backend NAME] [--threads 1,2] [--min-time S] [--cold]
 *                   [--precision float32|bfloat16] [--act NAME]
 *                   [--peak-json FILE] [--shape MxKxN]... */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "pool.h"
#include "registry.h"
#include "testutil.h"

#define GB_MAX_SHAPES 32
#define GB_MAX_REPS 1000
/* --cold: 64 MiB written before each timed call, twice the L3 */
#define GB_FLUSH_FLOATS ((size_t)16 << 20)

typedef struct gb_shape {
    const char *what;
    int64_t M, K, N;
} gb_shape;

/* The four models' GEMMs (issue 15): ViT-B/16 B 8 (M = 8 x 197), BERT-base
 * and GPT-2 small (M = 1024; GPT-2's logits N = 50257), MiniLM-L6 B 32
 * (M = 4096). */
static const gb_shape gb_default[] = {
    {"vit qkv", 1576, 768, 2304},      {"vit out", 1576, 768, 768},
    {"vit ffn1", 1576, 768, 3072},     {"vit ffn2", 1576, 3072, 768},
    {"bert qkv", 1024, 768, 2304},     {"bert out", 1024, 768, 768},
    {"bert ffn1", 1024, 768, 3072},    {"bert ffn2", 1024, 3072, 768},
    {"gpt2 logits", 1024, 768, 50257}, {"minilm qkv", 4096, 384, 1152},
    {"minilm out", 4096, 384, 384},    {"minilm ffn1", 4096, 384, 1536},
    {"minilm ffn2", 4096, 1536, 384},
};

static double gb_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int gb_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct gb_call {
    const exec_env *env;
    const exec_gemm_weights *W;
    const float *A;
    float *C;
    int64_t M, m0, m1;
    const exec_gemm_fused *fused;
    mha_status st;
} gb_call;

static void *gb_kernel_part(void *arg) {
    gb_call *c = arg;
    mha_error err;
    c->st = exec_gemm_tile(c->env, c->W, c->M, c->A, c->W->K, c->C, c->W->N, c->m0, c->m1, 0,
                           c->W->N, 1, c->fused, &err);
    return NULL;
}

/* One call of the measured path: the kernel (threads split the rows in
 * halves at the row block) or the executor. */
/* The epilogue's activation (--act; MHA_ACT_NONE: bias only). */
static int gb_act = MHA_ACT_NONE;

static mha_status gb_once(int exec_path, const exec_env *env, const exec_gemm_weights *W,
                          const float *A, int64_t M, float *C, int threads) {
    mha_error err;
    exec_gemm_fused fused;
    const exec_gemm_fused *fp =
        gb_act != MHA_ACT_NONE && exec_gemm_fuse(env, gb_act, NULL, 0, &fused) ? &fused : NULL;
    if (exec_path) return exec_gemm_run(env, W, A, M, C, fp, NULL, &err);
    exec_env bare = *env;
    bare.pool = NULL;
    const int64_t mb = env->plugin->gemm_m_block > 0 ? env->plugin->gemm_m_block : 1;
    gb_call part[2];
    int parts = threads > 1 ? 2 : 1;
    int64_t cut = parts == 2 ? (M / 2 + mb - 1) / mb * mb : M;
    if (cut > M) cut = M;
    for (int i = 0; i < parts; i++)
        part[i] = (gb_call){&bare, W, A, C, M, i ? cut : 0, i ? M : cut, fp, MHA_OK};
    pthread_t th;
    int spawned = parts == 2 && pthread_create(&th, NULL, gb_kernel_part, &part[1]) == 0;
    if (parts == 2 && !spawned) gb_kernel_part(&part[1]);
    gb_kernel_part(&part[0]);
    if (spawned) pthread_join(th, NULL);
    return part[0].st != MHA_OK ? part[0].st : part[1 % parts].st;
}

/* Median wall and CPU seconds of one call over >= 3 calls and min_time,
 * and the least CPU time (on a loaded machine the calls that were not
 * interrupted: the steadiest figure for an A/B). */
static int gb_measure(int exec_path, const exec_env *env, const exec_gemm_weights *W,
                      const float *A, int64_t M, float *C, int threads, double min_time,
                      float *flush, double *wall, double *cpu, double *cpu_best) {
    static double w[GB_MAX_REPS], c[GB_MAX_REPS];
    if (gb_once(exec_path, env, W, A, M, C, threads) != MHA_OK) return -1; /* warm */
    int n = 0;
    double start = gb_clock(CLOCK_MONOTONIC);
    while (n < GB_MAX_REPS && (n < 3 || gb_clock(CLOCK_MONOTONIC) - start < min_time)) {
        for (size_t i = 0; flush && i < GB_FLUSH_FLOATS; i += 16)
            flush[i] += 1.0f; /* every line written: the caches hold none of W, A, C */
        double c0 = gb_clock(CLOCK_PROCESS_CPUTIME_ID), w0 = gb_clock(CLOCK_MONOTONIC);
        if (gb_once(exec_path, env, W, A, M, C, threads) != MHA_OK) return -1;
        w[n] = gb_clock(CLOCK_MONOTONIC) - w0;
        c[n] = gb_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
        n++;
    }
    qsort(w, (size_t)n, sizeof w[0], gb_cmp);
    qsort(c, (size_t)n, sizeof c[0], gb_cmp);
    *wall = w[n / 2];
    *cpu = c[n / 2];
    *cpu_best = c[0];
    return 0;
}

/* The avx512 row of `mha peak --json`: {"avx512": {"1": G, "2": G}, ...}. */
static void gb_read_peak(const char *path, const char *isa, double peak[3]) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char key[64];
    snprintf(key, sizeof key, "\"%s\": {", isa);
    const char *s = strstr(buf, key);
    for (int t = 1; s && t <= 2; t++) {
        char tk[16];
        snprintf(tk, sizeof tk, "\"%d\": ", t);
        const char *v = strstr(s, tk);
        const char *end = strchr(s, '}');
        if (v && end && v < end) peak[t] = strtod(v + strlen(tk), NULL);
    }
}

static int gb_usage(void) {
    fprintf(stderr, "usage: gemm_bench [--backend NAME] [--threads 1,2] [--min-time S] [--cold] "
                    "[--precision float32|bfloat16] [--act gelu|gelu-tanh|relu|silu] "
                    "[--peak-json FILE] [--shape MxKxN]...\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *backend = "avx512", *peak_json = NULL;
    float *flush = NULL;
    double min_time = 1.0, peak[3] = {0, 0, 0};
    int precision = MHA_PRECISION_FLOAT32;
    int threads[2] = {1, 2}, n_threads = 2;
    gb_shape shapes[GB_MAX_SHAPES];
    size_t n_shapes = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--cold") == 0) {
            if (!flush) flush = calloc(GB_FLUSH_FLOATS, sizeof(float));
            if (!flush) return 1;
            continue;
        }
        if (!v) return gb_usage();
        i++;
        if (strcmp(o, "--backend") == 0) {
            backend = v;
        } else if (strcmp(o, "--precision") == 0) {
            if (strcmp(v, "float32") == 0)
                precision = MHA_PRECISION_FLOAT32;
            else if (strcmp(v, "bfloat16") == 0)
                precision = MHA_PRECISION_BFLOAT16;
            else
                return gb_usage();
        } else if (strcmp(o, "--act") == 0) {
            static const char *names[] = {"gelu", "gelu-tanh", "relu", "silu"};
            static const int acts[] = {MHA_ACT_GELU_ERF, MHA_ACT_GELU_TANH, MHA_ACT_RELU,
                                       MHA_ACT_SILU};
            gb_act = -1;
            for (size_t a = 0; a < sizeof names / sizeof names[0]; a++)
                if (strcmp(v, names[a]) == 0) gb_act = acts[a];
            if (gb_act < 0) return gb_usage();
        } else if (strcmp(o, "--threads") == 0) {
            n_threads = sscanf(v, "%d,%d", &threads[0], &threads[1]);
            if (n_threads < 1 || threads[0] < 1 || threads[0] > 2 ||
                (n_threads == 2 && (threads[1] < 1 || threads[1] > 2)))
                return gb_usage();
        } else if (strcmp(o, "--min-time") == 0) {
            min_time = strtod(v, NULL);
        } else if (strcmp(o, "--peak-json") == 0) {
            peak_json = v;
        } else if (strcmp(o, "--shape") == 0 && n_shapes < GB_MAX_SHAPES) {
            gb_shape *s = &shapes[n_shapes++];
            long long m, k, n;
            if (sscanf(v, "%lldx%lldx%lld", &m, &k, &n) != 3 || m < 1 || k < 1 || n < 1)
                return gb_usage();
            *s = (gb_shape){"-", m, k, n};
        } else {
            return gb_usage();
        }
    }
    if (!n_shapes) {
        n_shapes = sizeof gb_default / sizeof gb_default[0];
        memcpy(shapes, gb_default, sizeof gb_default);
    }
    gb_read_peak(peak_json,
                 precision == MHA_PRECISION_BFLOAT16 ? "avx512bf16"
                 : strcmp(backend, "avx2") == 0      ? "avx2"
                                                     : "avx512",
                 peak);

    mha_alloc_ctx A;
    mha_alloc_ctx_init(&A, NULL);
    if (!getenv("MHA_PLUGIN_PATH")) setenv("MHA_PLUGIN_PATH", MHA_PLUGIN_BUILD_DIR, 1);
    registry_options ro = {0};
    ro.use_env = 1;
    ro.only_name = backend;
    registry *reg = NULL;
    const plugin_entry *pe = NULL;
    mha_error err = {0};
    if (registry_create(&A, &ro, &reg, &err) != MHA_OK ||
        registry_select(reg, backend, &pe, &err) != MHA_OK) {
        fprintf(stderr, "gemm_bench: %s\n", err.message);
        return 1;
    }
    mha_plugin_services svc = tu_plugin_services(reg->cpu_features);
    void *state = NULL;
    pool *pl = NULL;
    if ((pe->plugin->init && pe->plugin->init(&svc, &state) != 0) ||
        pool_create(&A, 1, 0, &pl, &err) != MHA_OK) {
        fprintf(stderr, "gemm_bench: init of %s failed\n", backend);
        return 1;
    }
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = pe->plugin;
    env.plugin_state = state;
    env.pool = pl;
    env.precision = precision;
    exec_gemm_fused probe;
    if (gb_act != MHA_ACT_NONE && !exec_gemm_fuse(&env, gb_act, NULL, 0, &probe)) {
        fprintf(stderr, "gemm_bench: backend %s does not run --act in its GEMM epilogue\n",
                backend);
        return 1;
    }

    printf("backend %s, %s, epilogue bias%s; peak %.1f / %.1f GFLOP/s (1 / 2 threads); medians, "
           "min-time %.1f s\n",
           backend, precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32",
           gb_act == MHA_ACT_GELU_ERF    ? " + gelu"
           : gb_act == MHA_ACT_GELU_TANH ? " + gelu-tanh"
           : gb_act == MHA_ACT_RELU      ? " + relu"
           : gb_act == MHA_ACT_SILU      ? " + silu"
                                         : "",
           peak[1], peak[2], min_time);
    printf("%-12s %5s %5s %6s %3s  %-14s %-14s %s\n", "shape", "M", "K", "N", "thr",
           "kernel GF (%)", "exec GF (%)",
           "1 thread: GF by CPU time, kernel / exec: median (%), best");
    int rc = 0;
    for (size_t s = 0; s < n_shapes && !rc; s++) {
        const gb_shape *sh = &shapes[s];
        float *Wm = malloc(sizeof(float) * (size_t)(sh->K * sh->N));
        float *bias = malloc(sizeof(float) * (size_t)sh->N);
        float *Am = malloc(sizeof(float) * (size_t)(sh->M * sh->K));
        float *C = malloc(sizeof(float) * (size_t)(sh->M * sh->N));
        exec_gemm_weights W;
        memset(&W, 0, sizeof W);
        if (!Wm || !bias || !Am || !C) {
            fprintf(stderr, "gemm_bench: out of memory\n");
            rc = 1;
        }
        if (!rc) {
            tu_fill_random(Wm, (size_t)(sh->K * sh->N), 1);
            tu_fill_random(bias, (size_t)sh->N, 2);
            tu_fill_random(Am, (size_t)(sh->M * sh->K), 3);
            memset(C, 0, sizeof(float) * (size_t)(sh->M * sh->N));
            const float *w[1] = {Wm}, *b[1] = {bias};
            int64_t cols[1] = {sh->N};
            if (exec_pack_parts(&A, pe->plugin, state, precision, sh->K, 1, w, cols, b, "W", &W,
                                &err) != MHA_OK) {
                fprintf(stderr, "gemm_bench: %s\n", err.message);
                rc = 1;
            }
        }
        free(Wm);
        free(bias);
        const double flops = 2.0 * (double)sh->M * (double)sh->K * (double)sh->N;
        for (int t = 0; t < n_threads && !rc; t++) {
            double kw, kc, kb, ew, ec, eb;
            env.num_threads = threads[t];
            if (gb_measure(0, &env, &W, Am, sh->M, C, threads[t], min_time, flush, &kw, &kc, &kb) ||
                gb_measure(1, &env, &W, Am, sh->M, C, threads[t], min_time, flush, &ew, &ec, &eb)) {
                fprintf(stderr, "gemm_bench: a gemm call failed\n");
                rc = 1;
                break;
            }
            const double pk = peak[threads[t]] > 0 ? peak[threads[t]] : 0;
            const double kg = flops / kw * 1e-9, eg = flops / ew * 1e-9;
            printf("%-12s %5lld %5lld %6lld %3d  %6.1f (%3.0f%%)  %6.1f (%3.0f%%) ", sh->what,
                   (long long)sh->M, (long long)sh->K, (long long)sh->N, threads[t], kg,
                   pk ? 100 * kg / pk : 0, eg, pk ? 100 * eg / pk : 0);
            if (threads[t] == 1)
                printf(" %6.1f / %6.1f (%3.0f%% / %3.0f%%) best %6.1f / %6.1f", flops / kc * 1e-9,
                       flops / ec * 1e-9, pk ? 100 * flops / kc * 1e-9 / pk : 0,
                       pk ? 100 * flops / ec * 1e-9 / pk : 0, flops / kb * 1e-9, flops / eb * 1e-9);
            printf("\n");
            fflush(stdout);
        }
        exec_weights_free(&A, &W);
        free(Am);
        free(C);
    }
    pool_destroy(pl);
    if (pe->plugin->fini) pe->plugin->fini(state);
    registry_free(reg);
    free(flush);
    return rc;
}
