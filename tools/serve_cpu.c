/* serve_cpu.c -- `serve-cpu`: the CPU time per request of the request
 * queue, batching off and on, for one set of request lengths submitted
 * together (a burst), through nothing but mha.h.
 *
 *   serve-cpu MODEL --lengths 32,24,16,8 [--reps N] [--rounds R] [--threads T]
 *
 * MODEL: a self-attention layer (one float32 query input [B, S, D]). Each
 * repetition submits one request of each length at once and waits for all;
 * the process's CPU time (every thread: the dispatcher, the pool's
 * workers) over N repetitions, divided by the requests, is the cost of a
 * request in each mode:
 *
 *   alone      max_batch 1: every request its own run
 *   one-run    max_batch = the burst, max_padding 1: one run padded to the longest
 *   by-length  max_batch = the burst, the default max_padding: runs of similar lengths
 *   mha_run    no queue: the burst as one mha_run of [n, longest, D] with the
 *              requests' key lengths, the arithmetic of one-run and nothing
 *              else; one-run minus this is what the queue itself costs
 *
 * Beside the CPU time, the context switches and page faults of the process
 * per request (getrusage): the queue's handoffs and its memory's first
 * touches. The modes alternate within each of R rounds; one line per mode
 * and round (CPU time is what a shared machine inflates least; still read
 * the medians of the rounds). Exit 1 on a failure, 2 on a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <mha/mha.h>

#define CPU_MAX_BURST 64

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
    double ms, switches, faults, per_run;
} cpu_cost;

/* The process's counters at the start of a measure. */
typedef struct cpu_meter {
    double cpu, switches, faults;
} cpu_meter;

static void cpu_meter_start(cpu_meter *m) {
    m->cpu = cpu_seconds();
    cpu_events(&m->switches, &m->faults);
}

/* Since cpu_meter_start, per request of `requests`, into c. */
static void cpu_meter_stop(const cpu_meter *m, double requests, cpu_cost *c) {
    double s1, f1;
    cpu_events(&s1, &f1);
    c->ms = (cpu_seconds() - m->cpu) * 1e3 / requests;
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

/* The floor: reps bursts as one mha_run each, padded to the longest with
 * every request's key length (x [longest, D] repeated per item). */
static int cpu_run_alone(mha_runtime *rt, const mha_model *m, const int64_t *S, int n, int64_t D,
                         const float *x, int reps, cpu_cost *c) {
    int64_t L = 0;
    for (int i = 0; i < n; i++)
        L = S[i] > L ? S[i] : L;
    float *xb = malloc((size_t)(n * L * D) * sizeof *xb);
    float *yb = malloc((size_t)(n * L * D) * sizeof *yb);
    int rc = xb && yb ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++)
        memcpy(xb + (size_t)(i * L * D), x, (size_t)(L * D) * sizeof *xb);
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {n, L, D}, xb};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {n, L, D}, yb};
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.kv_lengths = S;
    mha_error err;
    cpu_meter meter = {0};
    for (int k = 0; k < reps + 2 && rc == 0; k++) {
        if (k == 2) cpu_meter_start(&meter); /* two runs to warm up */
        if (mha_run(rt, m, &in, 1, &out, 1, &ro, &err) != MHA_OK) {
            fprintf(stderr, "serve-cpu: mha_run: %s\n", err.message);
            rc = -1;
        }
    }
    cpu_meter_stop(&meter, (double)reps * n, c);
    c->per_run = n;
    free(xb);
    free(yb);
    return rc;
}

/* One mode: reps bursts through a fresh queue; the cost per request and
 * the requests per run. */
static int cpu_measure(mha_runtime *rt, const mha_model *m, const mha_queue_options *qo,
                       const int64_t *S, int n, int64_t D, const float *x, int reps, cpu_cost *c) {
    mha_error err;
    mha_queue *q = NULL;
    if (mha_queue_create(rt, m, qo, &q, &err) != MHA_OK) {
        fprintf(stderr, "serve-cpu: queue: %s\n", err.message);
        return -1;
    }
    cpu_meter meter = {0};
    int rc = 0;
    for (int k = 0; k < reps + 2 && rc == 0; k++) {
        if (k == 2) cpu_meter_start(&meter); /* two bursts to warm up */
        mha_request *r[CPU_MAX_BURST] = {0};
        for (int i = 0; i < n && rc == 0; i++) {
            mha_tensor in = {MHA_DTYPE_FLOAT32, 2, {S[i], D}, (void *)x};
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

int main(int argc, char **argv) {
    const char *model = NULL, *lengths = "32,24,16,8";
    int reps = 40, rounds = 3, threads = 0;
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
        else if (a[0] != '-' && !model)
            model = a;
        else
            model = NULL, i = argc;
    }
    int64_t S[CPU_MAX_BURST];
    int n = cpu_parse_lengths(lengths, S);
    if (!model || !n || reps < 1 || rounds < 1 || threads < 0) {
        fprintf(stderr, "usage: serve-cpu MODEL [--lengths S,S,...] [--reps N] [--rounds R] "
                        "[--threads T]\n");
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
    mha_io_info in;
    int64_t longest = 0;
    for (int i = 0; i < n; i++)
        longest = S[i] > longest ? S[i] : longest;
    float *x = NULL;
    int rc = 1;
    if (mha_runtime_create(&ro, &rt, &err) != MHA_OK || mha_model_input(m, 0, &in) != MHA_OK ||
        in.rank != 3 || in.shape[2] < 1) {
        fprintf(stderr, "serve-cpu: %s: wants a layer with one [B, S, D] input\n", model);
        goto done;
    }
    const int64_t D = in.shape[2];
    x = malloc((size_t)(longest * D) * sizeof *x);
    if (!x) goto done;
    for (int64_t i = 0; i < longest * D; i++) /* any values: the cost does not depend on them */
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    static const char *const names[4] = {"alone", "one-run", "by-length", "mha_run"};
    for (int round = 0; round < rounds; round++) {
        for (int mode = 0; mode < 4; mode++) {
            mha_queue_options qo;
            mha_queue_options_init(&qo);
            if (mode == 0) {
                qo.max_batch = 1;
                qo.max_delay_ms = 0;
            } else {
                qo.max_batch = n;
                qo.max_delay_ms = 1000; /* the burst closes the batch */
                qo.max_batch_tokens = (int64_t)n * longest;
                if (mode == 1) qo.max_padding = 1.0;
            }
            cpu_cost c;
            if ((mode < 3 ? cpu_measure(rt, m, &qo, S, n, D, x, reps, &c)
                          : cpu_run_alone(rt, m, S, n, D, x, reps, &c)) != 0)
                goto done;
            printf("round %d, lengths %s, %-9s: %.4f CPU ms per request (%.2f requests a run), "
                   "%.2f context switches, %.2f page faults\n",
                   round + 1, lengths, names[mode], c.ms, c.per_run, c.switches, c.faults);
            fflush(stdout);
        }
    }
    rc = 0;
done:
    free(x);
    mha_runtime_destroy(rt);
    mha_model_free(m);
    return rc;
}
