/* serve_cpu.c -- `serve-cpu`: the CPU time per request of the request
 * queue, batching off and on, for one set of request lengths submitted
 * together (a burst), through nothing but mha.h.
 *
 *   serve-cpu MODEL --lengths 32,24,16,8 [--reps N] [--rounds R] [--threads T]
 *             [--precision float32|bfloat16] [--ceiling B]
 *
 * MODEL: a self-attention layer (one float32 query input [B, S, D]) or a
 * whole model over token ids (a request: ids [S]; `mha gen --preset
 * minilm-l6`, BERT / MiniLM / GPT-2 exports). Each repetition submits one request of each length at
 * once and waits for all; the process's CPU time (every thread: the dispatcher, the pool's workers)
 * over N repetitions, divided by the requests, is the cost of a request in each mode:
 *
 *   alone      max_batch 1: every request its own run
 *   one-run    max_batch = the burst, max_padding 1: one run padded to the longest
 *   by-length  max_batch = the burst, the default max_padding: runs of similar lengths
 *   mha_run    no queue: the burst as one mha_run padded to the longest (the
 *              requests' key lengths; a whole model's masks 1 at each
 *              request's tokens, other ids 0), the arithmetic of one-run and
 *              nothing else; one-run minus this is what the queue costs
 *   caller     alone with caller_runs: the thread that waits computes each
 *              request itself while the dispatcher is idle (no hand-off)
 *
 * Beside the CPU time, the context switches and page faults of the process
 * per request (getrusage): the queue's handoffs and its memory's first
 * touches. The modes alternate within each of R rounds; one line per mode
 * and round (CPU time is what a shared machine inflates least; still read
 * the medians of the rounds). --precision: every run in that precision.
 *
 * --ceiling B: instead of the modes, what a batch of b = 1..B requests of
 * the first length costs as one mha_run (the arithmetic a queue cannot go
 * below) on a runtime of 1 thread and one of T (default every CPU),
 * alternating: one line per b with the medians over the rounds of the CPU
 * ms a request and of the run's wall ms, then the batch times a queue
 * simulation takes (tools/queue_bound.py --costs): on one core b x the CPU
 * ms a request, on T cores b x the CPU ms a request / T (the run's time on
 * an otherwise idle machine; the wall time a loaded one gives is not).
 * Exit 1 on a failure, 2 on a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mha/mha.h>

#define CPU_MAX_BURST 64
#define CPU_MAX_ROUNDS 64

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The process's context switches and minor page faults so far. */
static void cpu_events(double *switches, double *faults) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    *switches = (double)(u.ru_nvcsw + u.ru_nivcsw);
    *faults = (double)u.ru_minflt;
}

/* What one mode measured, per request. */
typedef struct cpu_cost {
    double ms, switches, faults, per_run, wall_ms; /* wall_ms: a run's (mha_run mode) */
} cpu_cost;

/* The process's counters at the start of a measure. */
typedef struct cpu_meter {
    double cpu, switches, faults, wall;
} cpu_meter;

static double wall_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void cpu_meter_start(cpu_meter *m) {
    m->cpu = cpu_seconds();
    m->wall = wall_seconds();
    cpu_events(&m->switches, &m->faults);
}

/* Since cpu_meter_start, per request of `requests`, into c. */
static void cpu_meter_stop(const cpu_meter *m, double requests, cpu_cost *c) {
    double s1, f1;
    cpu_events(&s1, &f1);
    c->ms = (cpu_seconds() - m->cpu) * 1e3 / requests;
    c->wall_ms = (wall_seconds() - m->wall) * 1e3;
    c->switches = (s1 - m->switches) / requests;
    c->faults = (f1 - m->faults) / requests;
}

/* "32,24,16,8" into S[]; returns the count, 0 when malformed. */
static int cpu_parse_lengths(const char *s, int64_t *S) {
    int n = 0;
    for (const char *p = s; *p && n < CPU_MAX_BURST;) {
        char *end = NULL;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 1 || v > 1 << 20 || (*end && *end != ',')) return 0;
        S[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n;
}

/* What a request gives: a layer's float32 rows [S, D], or token ids [S]
 * (the model's first token-id input, of its integer type). */
typedef struct cpu_model {
    mha_model *m;
    int ids;         /* a whole model over token ids */
    mha_dtype dtype; /* of the request's sequence */
    int64_t D;       /* elements per token: d_model of a layer, 1 for ids */
    size_t elem;     /* bytes per element */
    void *x;         /* [longest, D]: the sequence every request gives the start of */
} cpu_model;

/* Element j of a [.., ..] integer or float tensor set to v. */
static void cpu_set(void *p, mha_dtype t, size_t j, int64_t v) {
    if (t == MHA_DTYPE_INT64)
        ((int64_t *)p)[j] = v;
    else if (t == MHA_DTYPE_INT32)
        ((int32_t *)p)[j] = (int32_t)v;
    else if (t == MHA_DTYPE_FLOAT32)
        ((float *)p)[j] = (float)v;
    else
        ((unsigned char *)p)[j] = (unsigned char)v;
}

/* The burst as one padded batch of the model's inputs, [n, L] (ids and
 * masks) or [n, L, D] (a layer): each item the first S[i] tokens of cm->x,
 * then zeros; masks 1 at the tokens, 0 after; other ids 0. Returns the
 * number of inputs, 0 when unsupported or out of memory. */
static size_t cpu_batch_inputs(const cpu_model *cm, const int64_t *S, int n, int64_t L,
                               mha_tensor *in, size_t max_in) {
    mha_model_info info;
    if (mha_model_get_info(cm->m, &info) != MHA_OK || info.num_inputs > max_in) return 0;
    int have_ids = 0;
    for (size_t k = 0; k < info.num_inputs; k++) {
        mha_io_info io;
        if (mha_model_input(cm->m, k, &io) != MHA_OK) return 0;
        const int64_t row = cm->ids ? 1 : cm->D;
        const size_t elem = mha_dtype_size(io.dtype);
        memset(&in[k], 0, sizeof in[k]);
        in[k] = (mha_tensor){io.dtype, cm->ids ? 2 : 3, {n, L, row}, NULL};
        char *b = calloc((size_t)(n * L * row), elem);
        if (!b) return 0;
        in[k].data = b;
        const int primary = !cm->ids || (io.role == MHA_ROLE_TOKEN_IDS && !have_ids);
        have_ids |= primary;
        for (int i = 0; i < n; i++) {
            char *item = b + (size_t)(i * L * row) * elem;
            if (primary)
                memcpy(item, cm->x, (size_t)(S[i] * row) * elem);
            else if (io.role == MHA_ROLE_ATTN_MASK)
                for (int64_t j = 0; j < S[i]; j++)
                    cpu_set(item, io.dtype, (size_t)j, 1);
        }
    }
    return info.num_inputs;
}

/* The floor: reps bursts as one mha_run each, padded to the longest with
 * every request's key length. */
static int cpu_run_alone(mha_runtime *rt, const cpu_model *cm, const int64_t *S, int n, int reps,
                         int precision, cpu_cost *c) {
    int64_t L = 0;
    for (int i = 0; i < n; i++)
        L = S[i] > L ? S[i] : L;
    mha_tensor in[8], out[8];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    mha_model_info info;
    mha_error err;
    size_t n_in = cpu_batch_inputs(cm, S, n, L, in, 8);
    int rc = n_in && mha_model_get_info(cm->m, &info) == MHA_OK && info.num_outputs <= 8 &&
                     mha_model_output_shapes(cm->m, in, n_in, out, info.num_outputs, &err) == MHA_OK
                 ? 0
                 : -1;
    for (size_t k = 0; rc == 0 && k < info.num_outputs; k++) {
        size_t numel = 1;
        for (int d = 0; d < out[k].rank; d++)
            numel *= (size_t)out[k].shape[d];
        out[k].data = malloc(numel * mha_dtype_size(out[k].dtype));
        rc = out[k].data ? 0 : -1;
    }
    if (rc != 0) fprintf(stderr, "serve-cpu: cannot make the batch's inputs and outputs\n");
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.kv_lengths = S;
    ro.precision = precision;
    cpu_meter meter = {0};
    for (int k = 0; k < reps + 2 && rc == 0; k++) {
        if (k == 2) cpu_meter_start(&meter); /* two runs to warm up */
        if (mha_run(rt, cm->m, in, n_in, out, info.num_outputs, &ro, &err) != MHA_OK) {
            fprintf(stderr, "serve-cpu: mha_run: %s\n", err.message);
            rc = -1;
        }
    }
    cpu_meter_stop(&meter, (double)reps * n, c);
    c->per_run = n;
    c->wall_ms /= reps;
    for (size_t k = 0; k < 8; k++) {
        free(in[k].data);
        free(out[k].data);
    }
    return rc;
}

/* One mode: reps bursts through a fresh queue; the cost per request and
 * the requests per run. */
static int cpu_measure(mha_runtime *rt, const cpu_model *cm, const mha_queue_options *qo,
                       const int64_t *S, int n, int reps, cpu_cost *c) {
    mha_error err;
    mha_queue *q = NULL;
    if (mha_queue_create(rt, cm->m, qo, &q, &err) != MHA_OK) {
        fprintf(stderr, "serve-cpu: queue: %s\n", err.message);
        return -1;
    }
    cpu_meter meter = {0};
    int rc = 0;
    for (int k = 0; k < reps + 2 && rc == 0; k++) {
        if (k == 2) cpu_meter_start(&meter); /* two bursts to warm up */
        mha_request *r[CPU_MAX_BURST] = {0};
        for (int i = 0; i < n && rc == 0; i++) {
            mha_tensor in = {cm->dtype, cm->ids ? 1 : 2, {S[i], cm->D}, cm->x};
            if (mha_queue_submit(q, &in, NULL, &r[i], &err) != MHA_OK) rc = -1;
        }
        for (int i = 0; i < n; i++) {
            if (r[i] && mha_request_wait(r[i], -1, &err) != MHA_OK) rc = -1;
            mha_request_free(r[i]);
        }
    }
    if (rc != 0) fprintf(stderr, "serve-cpu: request: %s\n", err.message);
    cpu_meter_stop(&meter, (double)reps * n, c);
    mha_queue_stats st;
    mha_queue_get_stats(q, &st);
    c->per_run = st.batches ? (double)st.batched / (double)st.batches : 0;
    mha_queue_destroy(q);
    return rc;
}

/* What the model takes (a layer's [B, S, D] float32 input, or its first
 * token-id input) and a sequence of longest tokens of it; 0, or -1. */
static int cpu_model_read(cpu_model *cm, int64_t longest) {
    mha_model_info info;
    if (mha_model_get_info(cm->m, &info) != MHA_OK) return -1;
    for (size_t k = 0; k < info.num_inputs && !cm->D; k++) {
        mha_io_info io;
        if (mha_model_input(cm->m, k, &io) != MHA_OK) return -1;
        if (io.rank == 3 && io.dtype == MHA_DTYPE_FLOAT32 && io.shape[2] > 0 && k == 0) {
            cm->D = io.shape[2];
        } else if (io.role == MHA_ROLE_TOKEN_IDS &&
                   (io.dtype == MHA_DTYPE_INT64 || io.dtype == MHA_DTYPE_INT32)) {
            cm->ids = 1;
            cm->D = 1;
            cm->dtype = io.dtype;
        }
    }
    if (!cm->D) return -1;
    cm->elem = mha_dtype_size(cm->dtype);
    cm->x = malloc((size_t)(longest * cm->D) * cm->elem);
    if (!cm->x) return -1;
    /* any values: the cost does not depend on them (ids within any vocabulary) */
    for (int64_t i = 0; i < longest * cm->D; i++)
        if (cm->ids)
            cpu_set(cm->x, cm->dtype, (size_t)i, 1 + (i * 7919) % 100);
        else
            ((float *)cm->x)[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    return 0;
}

static int cpu_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cpu_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* --ceiling: batches of b = 1..most requests of S tokens as one mha_run on
 * rt[0] (1 thread) and rt[1] (T threads), alternating within each round;
 * the medians over the rounds, and the batch times for queue_bound.py. */
static int cpu_ceiling(mha_runtime *const rt[2], const int T[2], const cpu_model *cm, int64_t S,
                       int most, int reps, int rounds, int precision) {
    static double ms[2][CPU_MAX_BURST][CPU_MAX_ROUNDS], wall[2][CPU_MAX_BURST][CPU_MAX_ROUNDS];
    int64_t lengths[CPU_MAX_BURST];
    for (int b = 0; b < most; b++)
        lengths[b] = S;
    for (int r = 0; r < rounds; r++)
        for (int b = 1; b <= most; b++)
            for (int k = 0; k < 2; k++) {
                cpu_cost c;
                /* about reps requests a measure, at least 3 runs */
                if (cpu_run_alone(rt[k], cm, lengths, b, reps / b > 3 ? reps / b : 3, precision,
                                  &c) != 0)
                    return -1;
                ms[k][b - 1][r] = c.ms;
                wall[k][b - 1][r] = c.wall_ms;
            }
    double cost[2][CPU_MAX_BURST];
    printf("S %lld, %s: one mha_run of b requests, medians of %d rounds\n", (long long)S,
           precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32", rounds);
    printf(
        "   b | 1 thread: CPU ms a request, run wall ms | %d threads: CPU ms a request, run wall "
        "ms\n",
        T[1]);
    for (int b = 1; b <= most; b++) {
        double m[2], w[2];
        for (int k = 0; k < 2; k++) {
            m[k] = cpu_median(ms[k][b - 1], rounds);
            w[k] = cpu_median(wall[k][b - 1], rounds);
            cost[k][b - 1] = m[k] * b / T[k];
        }
        printf("  %2d | %8.4f %8.3f | %8.4f %8.3f\n", b, m[0], w[0], m[1], w[1]);
    }
    for (int k = 0; k < 2; k++) {
        printf("costs %d thread%s (ms a batch of 1..%d: b x CPU ms a request / %d):", T[k],
               T[k] > 1 ? "s" : "", most, T[k]);
        for (int b = 0; b < most; b++)
            printf("%s%.4f", b ? "," : " ", cost[k][b]);
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *lengths = "32,24,16,8";
    int reps = 40, rounds = 3, threads = 0, ceiling = 0, precision = MHA_PRECISION_FLOAT32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--lengths") && v)
            lengths = argv[++i];
        else if (!strcmp(a, "--reps") && v)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "--rounds") && v)
            rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--ceiling") && v)
            ceiling = atoi(argv[++i]);
        else if (!strcmp(a, "--precision") && v && !strcmp(v, "float32"))
            precision = MHA_PRECISION_FLOAT32, i++;
        else if (!strcmp(a, "--precision") && v && !strcmp(v, "bfloat16"))
            precision = MHA_PRECISION_BFLOAT16, i++;
        else if (a[0] != '-' && !model)
            model = a;
        else
            model = NULL, i = argc;
    }
    int64_t S[CPU_MAX_BURST];
    int n = cpu_parse_lengths(lengths, S);
    if (!model || !n || reps < 1 || rounds < 1 || rounds > CPU_MAX_ROUNDS || threads < 0 ||
        ceiling < 0 || ceiling > CPU_MAX_BURST) {
        fprintf(stderr, "usage: serve-cpu MODEL [--lengths S,S,...] [--reps N] [--rounds R] "
                        "[--threads T] [--precision float32|bfloat16] [--ceiling B]\n");
        return 2;
    }
    mha_error err;
    mha_model *m = NULL;
    mha_runtime *rt = NULL;
    if (mha_model_load_file(model, NULL, &m, &err) != MHA_OK) {
        fprintf(stderr, "serve-cpu: %s: %s\n", model, err.message);
        return 1;
    }
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.num_threads = threads;
    int64_t longest = 0;
    for (int i = 0; i < n; i++)
        longest = S[i] > longest ? S[i] : longest;
    cpu_model cm = {m, 0, MHA_DTYPE_FLOAT32, 0, sizeof(float), NULL};
    int rc = 1;
    mha_runtime *rt1 = NULL;
    if (mha_runtime_create(&ro, &rt, &err) != MHA_OK || cpu_model_read(&cm, longest) != 0) {
        fprintf(stderr,
                "serve-cpu: %s: wants a layer with one [B, S, D] input or token ids [B, S]\n",
                model);
        goto done;
    }
    if (ceiling) {
        ro.num_threads = 1;
        if (mha_runtime_create(&ro, &rt1, &err) != MHA_OK) {
            fprintf(stderr, "serve-cpu: runtime: %s\n", err.message);
            goto done;
        }
        mha_runtime *const rts[2] = {rt1, rt};
        const int T[2] = {1, mha_runtime_num_threads(rt)};
        rc = cpu_ceiling(rts, T, &cm, S[0], ceiling, reps, rounds, precision) != 0;
        goto done;
    }
    static const char *const names[5] = {"alone", "one-run", "by-length", "mha_run", "caller"};
    for (int round = 0; round < rounds; round++) {
        for (int mode = 0; mode < 5; mode++) {
            mha_queue_options qo;
            mha_queue_options_init(&qo);
            qo.num_dispatchers = 1; /* the burst's batches one after another */
            qo.precision = precision;
            if (mode == 0 || mode == 4) {
                qo.max_batch = 1;
                qo.max_delay_ms = 0;
                qo.caller_runs = mode == 4;
            } else {
                qo.max_batch = n;
                qo.max_delay_ms = 1000; /* the burst closes the batch */
                qo.hold_when_idle = 1;
                qo.max_batch_tokens = (int64_t)n * longest;
                qo.max_batch_ms = -1; /* the burst in one run: no bound in time (the default
                                         2 ms cuts it where a run is slow: sanitizers) */
                if (mode == 1) qo.max_padding = 1.0;
            }
            cpu_cost c;
            if ((mode != 3 ? cpu_measure(rt, &cm, &qo, S, n, reps, &c)
                           : cpu_run_alone(rt, &cm, S, n, reps, precision, &c)) != 0)
                goto done;
            printf("round %d, lengths %s, %-9s: %.4f CPU ms per request (%.2f requests a run), "
                   "%.2f context switches, %.2f page faults\n",
                   round + 1, lengths, names[mode], c.ms, c.per_run, c.switches, c.faults);
            fflush(stdout);
        }
    }
    rc = 0;
done:
    free(cm.x);
    mha_runtime_destroy(rt1);
    mha_runtime_destroy(rt);
    mha_model_free(m);
    return rc;
}
