/* plan_bench.c -- where a whole model's run spends its time, step by step,
 * at several thread counts (a program, not a test: it prints figures and
 * checks nothing but that the outputs of every thread count are the same
 * bits).
 *
 * The model is loaded once (no verification); one runtime per thread
 * count shares it. Runs alternate between the thread counts (t1, t2, t1,
 * t2, ...), so a change in the machine's load touches them alike. Each run
 * records the wall time of every step (mha_run_options.step_seconds), the
 * run's wall and CPU time (CLOCK_PROCESS_CPUTIME_ID: every thread's) and
 * its context switches (getrusage: a worker or caller that went to sleep
 * and was woken, or was preempted). Printed, medians over the runs:
 *   - per step kind (attention, gemm, norm, interpreted; the norms split
 *     by their fused form): ms at each thread count, the speedup over the
 *     first count, the share of the run;
 *   - the run: wall ms, CPU ms, CPU / wall (cores kept busy: spinning
 *     counts as busy), context switches (voluntary: a thread slept in the
 *     pool; involuntary: the machine's load), the time outside every step.
 * --steps also prints every step.
 *
 * Inputs: token ids in [0, 1000), masks of ones, floats uniform in
 * [-1, 1); symbolic axes: the first is the batch (--batch), the others the
 * sequence (--seq).
 *
 * --precision bfloat16 runs the bfloat16 compute mode (the bits then
 * compared are those of that mode at every thread count).
 *
 * Usage: plan_bench MODEL [--batch B] [--seq S] [--threads 1,2] [--runs N]
 *                   [--backend NAME] [--precision float32|bfloat16] [--steps] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mha/mha.h"

#define PB_MAX_THREADS 8
#define PB_MAX_RUNS 200
#define PB_MAX_KINDS 16

typedef struct pb_sample {
    double wall, cpu, outside;
    long sleeps, preempted;
} pb_sample;

/* Where a run stands: wall and CPU seconds (CPU: every thread of the
 * process), context switches voluntary (a thread went to sleep: a worker
 * or caller blocking in the pool) and involuntary (a thread was
 * preempted: the machine's load). */
typedef struct pb_mark {
    double wall, cpu;
    long sleeps, preempted;
} pb_mark;

static double pb_seconds(const struct timespec *t) {
    return (double)t->tv_sec + 1e-9 * (double)t->tv_nsec;
}

static void pb_now(pb_mark *m) {
    struct timespec w, c;
    struct rusage u;
    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
    getrusage(RUSAGE_SELF, &u);
    m->wall = pb_seconds(&w);
    m->cpu = pb_seconds(&c);
    m->sleeps = u.ru_nvcsw;
    m->preempted = u.ru_nivcsw;
}

static int pb_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pb_median(double *v, int n) {
    if (n <= 0) return 0.0;
    qsort(v, (size_t)n, sizeof *v, pb_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The model's inputs at batch B and sequence S, filled as the top says. */
static int pb_inputs(const mha_model *m, int64_t B, int64_t S, mha_tensor *in, size_t n) {
    unsigned seed = 12345;
    for (size_t i = 0; i < n; i++) {
        mha_io_info io;
        if (mha_model_input(m, i, &io) != MHA_OK) return -1;
        memset(&in[i], 0, sizeof in[i]);
        in[i].dtype = io.dtype;
        in[i].rank = io.rank;
        int first = 1;
        for (int d = 0; d < io.rank; d++) {
            in[i].shape[d] = io.shape[d] >= 0 ? io.shape[d] : first ? B : S;
            if (io.shape[d] < 0) first = 0;
        }
        const int64_t k = mha_tensor_numel(&in[i]);
        in[i].data = calloc((size_t)(k > 0 ? k : 1), mha_dtype_size(io.dtype));
        if (!in[i].data) return -1;
        for (int64_t e = 0; e < k; e++) {
            seed = seed * 1103515245u + 12345u;
            const unsigned r = seed >> 8;
            if (io.dtype == MHA_DTYPE_FLOAT32)
                ((float *)in[i].data)[e] = (float)r / (float)(1u << 23) - 1.0f;
            else if (io.dtype == MHA_DTYPE_INT64)
                ((int64_t *)in[i].data)[e] =
                    io.role == MHA_ROLE_TOKEN_IDS ? (int64_t)(r % 1000) : 1;
            else if (io.dtype == MHA_DTYPE_INT32)
                ((int32_t *)in[i].data)[e] =
                    io.role == MHA_ROLE_TOKEN_IDS ? (int32_t)(r % 1000) : 1;
            else if (io.dtype == MHA_DTYPE_BOOL)
                ((unsigned char *)in[i].data)[e] = 1;
        }
    }
    return 0;
}

/* A step's kind for the table: norms by their fused form (residual or
 * not), the others by kind. */
static const char *pb_kind(const mha_step_info *si) {
    if (strcmp(si->kind, "norm") == 0)
        return strncmp(si->op, "residual", 8) == 0 ? "norm (residual+)" : "norm";
    return si->kind;
}

int main(int argc, char **argv) {
    const char *path = NULL, *backend = "auto";
    int64_t B = 8, S = 128;
    int threads[PB_MAX_THREADS] = {1, 2}, n_threads = 2, runs = 5, per_step = 0;
    int precision = MHA_PRECISION_FLOAT32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--batch") && v) {
            B = atoll(v), i++;
        } else if (!strcmp(a, "--seq") && v) {
            S = atoll(v), i++;
        } else if (!strcmp(a, "--runs") && v) {
            runs = atoi(v), i++;
        } else if (!strcmp(a, "--backend") && v) {
            backend = v, i++;
        } else if (!strcmp(a, "--precision") && v &&
                   (!strcmp(v, "float32") || !strcmp(v, "bfloat16"))) {
            precision = strcmp(v, "bfloat16") ? MHA_PRECISION_FLOAT32 : MHA_PRECISION_BFLOAT16;
            i++;
        } else if (!strcmp(a, "--steps")) {
            per_step = 1;
        } else if (!strcmp(a, "--threads") && v) {
            n_threads = 0;
            for (const char *p = v; *p && n_threads < PB_MAX_THREADS;
                 p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
                threads[n_threads++] = atoi(p);
            i++;
        } else if (a[0] != '-' && !path) {
            path = a;
        } else {
            fprintf(stderr, "usage: plan_bench MODEL [--batch B] [--seq S] [--threads 1,2] "
                            "[--runs N] [--backend NAME] [--precision float32|bfloat16] "
                            "[--steps]\n");
            return 2;
        }
    }
    if (!path || runs < 1 || runs > PB_MAX_RUNS || B < 1 || S < 1) {
        fprintf(stderr, "plan_bench: a model, --runs in [1, %d], --batch and --seq >= 1\n",
                PB_MAX_RUNS);
        return 2;
    }
    mha_error err;
    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.skip_verify = 1;
    mha_model *m = NULL;
    if (mha_model_load_file(path, &mo, &m, &err) != MHA_OK) {
        fprintf(stderr, "plan_bench: %s: %s\n", path, err.message);
        return 1;
    }
    mha_model_info info;
    mha_model_get_info(m, &info);
    const size_t n_steps = mha_model_num_steps(m);
    if (n_steps == 0 || info.num_outputs > 8) {
        fprintf(stderr, "plan_bench: %s is not a whole model (no plan of steps)\n", path);
        return 1;
    }
    mha_tensor in[16], out[PB_MAX_THREADS][8];
    if (info.num_inputs > 16 || pb_inputs(m, B, S, in, info.num_inputs) != 0) {
        fprintf(stderr, "plan_bench: cannot make the inputs\n");
        return 1;
    }
    mha_runtime *rt[PB_MAX_THREADS] = {NULL};
    for (int t = 0; t < n_threads; t++) {
        mha_runtime_options ro;
        mha_runtime_options_init(&ro);
        ro.backend = backend;
        ro.num_threads = threads[t];
        if (mha_runtime_create(&ro, &rt[t], &err) != MHA_OK ||
            mha_model_output_shapes(m, in, info.num_inputs, out[t], info.num_outputs, &err) !=
                MHA_OK) {
            fprintf(stderr, "plan_bench: %s\n", err.message);
            return 1;
        }
        for (size_t k = 0; k < info.num_outputs; k++)
            out[t][k].data =
                calloc((size_t)mha_tensor_numel(&out[t][k]) + 1, mha_dtype_size(out[t][k].dtype));
    }
    /* step_s[t][r][s]: wall seconds of step s in run r at thread count t */
    double *step_s = calloc((size_t)n_threads * (size_t)runs * n_steps, sizeof *step_s);
    pb_sample *smp = calloc((size_t)n_threads * (size_t)runs, sizeof *smp);
    double *col = calloc((size_t)runs, sizeof *col);
    double flops = 0.0;
    if (!step_s || !smp || !col) return 1;
    for (int r = -1; r < runs; r++) /* run -1: untimed (the arena is planned on it) */
        for (int t = 0; t < n_threads; t++) {
            mha_run_options opt;
            mha_run_options_init(&opt);
            double *sec = r >= 0 ? step_s + ((size_t)t * (size_t)runs + (size_t)r) * n_steps
                                 : step_s; /* overwritten later */
            opt.step_seconds = sec;
            opt.flops = &flops;
            opt.precision = precision;
            pb_mark m0, m1;
            pb_now(&m0);
            if (mha_run(rt[t], m, in, info.num_inputs, out[t], info.num_outputs, &opt, &err) !=
                MHA_OK) {
                fprintf(stderr, "plan_bench: run at %d threads: %s\n", threads[t], err.message);
                return 1;
            }
            pb_now(&m1);
            if (r < 0) continue;
            pb_sample *x = &smp[t * runs + r];
            x->wall = m1.wall - m0.wall;
            x->cpu = m1.cpu - m0.cpu;
            x->sleeps = m1.sleeps - m0.sleeps;
            x->preempted = m1.preempted - m0.preempted;
            double sum = 0.0;
            for (size_t s = 0; s < n_steps; s++)
                sum += sec[s];
            x->outside = x->wall - sum;
        }
    /* the same bits at every thread count */
    for (int t = 1; t < n_threads; t++)
        for (size_t k = 0; k < info.num_outputs; k++)
            if (memcmp(out[t][k].data, out[0][k].data,
                       (size_t)mha_tensor_numel(&out[0][k]) * mha_dtype_size(out[0][k].dtype)))
                printf("!! output %zu differs between %d and %d threads\n", k, threads[0],
                       threads[t]);

    /* the kinds, in first-seen order */
    const char *kinds[PB_MAX_KINDS];
    int n_kinds = 0, *kind_of = calloc(n_steps, sizeof *kind_of);
    for (size_t s = 0; s < n_steps; s++) {
        mha_step_info si;
        mha_model_step(m, s, &si);
        const char *k = pb_kind(&si);
        int j = 0;
        while (j < n_kinds && strcmp(kinds[j], k) != 0)
            j++;
        if (j == n_kinds && n_kinds < PB_MAX_KINDS) kinds[n_kinds++] = k;
        kind_of[s] = j < n_kinds ? j : n_kinds - 1;
    }
    printf("%s: batch %lld, seq %lld, backend %s, %s, %d runs per thread count, %.1f GFLOP\n", path,
           (long long)B, (long long)S, backend,
           precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32", runs, flops * 1e-9);
    double base[PB_MAX_KINDS + 1] = {0};
    printf("%-18s", "step kind");
    for (int t = 0; t < n_threads; t++)
        printf(" | %2d thr ms  speedup  share", threads[t]);
    printf("\n");
    for (int j = 0; j <= n_kinds; j++) {
        printf("%-18s", j < n_kinds ? kinds[j] : "outside the steps");
        for (int t = 0; t < n_threads; t++) {
            for (int r = 0; r < runs; r++) {
                const double *sec = step_s + ((size_t)t * (size_t)runs + (size_t)r) * n_steps;
                double sum = 0.0;
                for (size_t s = 0; s < n_steps; s++)
                    if (j < n_kinds && kind_of[s] == j) sum += sec[s];
                col[r] = j < n_kinds ? sum : smp[t * runs + r].outside;
            }
            const double ms = 1e3 * pb_median(col, runs);
            for (int r = 0; r < runs; r++)
                col[r] = smp[t * runs + r].wall;
            const double wall = 1e3 * pb_median(col, runs);
            if (t == 0) base[j] = ms;
            printf(" | %9.2f  %6.2fx  %4.1f%%", ms, ms > 0 ? base[j] / ms : 0.0,
                   wall > 0 ? 100.0 * ms / wall : 0.0);
        }
        printf("\n");
    }
    printf("%-18s", "run");
    for (int t = 0; t < n_threads; t++)
        printf(" | %-26d", threads[t]);
    printf("\n");
    const char *rows[5] = {"wall ms", "CPU ms", "CPU / wall", "sleeps (vol. cs)",
                           "preempted (invol.)"};
    for (int row = 0; row < 5; row++) {
        printf("%-18s", rows[row]);
        for (int t = 0; t < n_threads; t++) {
            for (int r = 0; r < runs; r++) {
                const pb_sample *x = &smp[t * runs + r];
                col[r] = row == 0   ? 1e3 * x->wall
                         : row == 1 ? 1e3 * x->cpu
                         : row == 2 ? x->cpu / x->wall
                         : row == 3 ? (double)x->sleeps
                                    : (double)x->preempted;
            }
            printf(" | %-26.2f", pb_median(col, runs));
        }
        printf("\n");
    }
    if (per_step) {
        printf("\n%-5s %-18s %-40s", "step", "kind", "fused ops");
        for (int t = 0; t < n_threads; t++)
            printf(" %2d thr ms", threads[t]);
        printf("\n");
        for (size_t s = 0; s < n_steps; s++) {
            mha_step_info si;
            mha_model_step(m, s, &si);
            printf("%-5zu %-18s %-40.40s", s, pb_kind(&si), si.op);
            for (int t = 0; t < n_threads; t++) {
                for (int r = 0; r < runs; r++)
                    col[r] = step_s[((size_t)t * (size_t)runs + (size_t)r) * n_steps + s];
                printf(" %9.3f", 1e3 * pb_median(col, runs));
            }
            printf("\n");
        }
    }
    for (int t = 0; t < n_threads; t++) {
        for (size_t k = 0; k < info.num_outputs; k++)
            free(out[t][k].data);
        mha_runtime_destroy(rt[t]);
    }
    for (size_t i = 0; i < info.num_inputs; i++)
        free(in[i].data);
    free(kind_of);
    free(col);
    free(smp);
    free(step_s);
    mha_model_free(m);
    return 0;
}
