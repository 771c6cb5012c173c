/* open_loop_trace.c -- where an open-loop request's latency goes with N
 * client threads calling mha_run on one runtime (a program on the public
 * API, not a test: it prints figures and checks only that every answer is
 * bitwise the one computed alone).
 *
 * The client loop is `mha bench --scenario server`'s without the queue
 * (tools/bench_server.c): Poisson arrivals at --rate; a free client takes
 * the next request (in order), sleeps until it is due, calls mha_run; the
 * latency runs from the due time to mha_run's return. Each request's time
 * is split into
 *   client: due -> a client took it (every client was busy: the server's
 *           own threads, not the library)
 *   wake:   due (or the take, if later) -> the client's thread ran again
 *           after its sleep (the scheduler placing a woken thread)
 *   run:    the thread ran -> mha_run returned (the library: a slot, the
 *           arithmetic, and for a run computed on another thread the
 *           wake-up of its caller)
 * and beside it the caller's thread CPU time in mha_run (its own run
 * computed: about a run; handed to another thread: about nothing) and its
 * voluntary and involuntary context switches in mha_run. Printed: p50,
 * p90, p99 and max of each part over every request, and the mean of each
 * part over the requests at or past the p99 (what the p99 is made of);
 * then the process's CPU time and switches per request and the cores left
 * idle (2 x wall - CPU, for --cores 2).
 *
 * Usage: open_loop_trace MODEL --seq S --clients N --threads T --rate R
 *                        [--seconds SEC] [--seed K] [--backend NAME]
 *                        [--cores C] [--dump FILE]
 * --dump writes one line a request: due, take, woke, returned (ms after the
 * start), caller CPU ms, voluntary, involuntary switches, client.
 * Exit: 0 done, 3 an answer differed from the one computed alone, 1 a
 * failure, 2 usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include "mha/mha.h"

#include "bench_inputs.h"
#include "bench_util.h"

#define OLT_MAX_TENSORS 8
#define OLT_MAX_CLIENTS 64

typedef struct olt_req {
    double due, take, woke, ret; /* seconds after the start */
    double cpu_ms;               /* the caller's thread CPU time in mha_run */
    long vol, invol;             /* its context switches in mha_run */
    int client;
} olt_req;

typedef struct olt {
    mha_runtime *rt;
    mha_model *model;
    mha_tensor in[OLT_MAX_TENSORS], out[OLT_MAX_TENSORS];
    size_t n_in, n_out;
    uint64_t expect; /* the first output's hash, computed alone */
    olt_req *req;
    size_t n;
    double start;
    atomic_size_t next;
    atomic_int failed, mismatched;
} olt;

typedef struct olt_client {
    olt *o;
    int id;
} olt_client;

static double olt_now(void) {
    return bench_clock(CLOCK_MONOTONIC);
}

static void olt_sleep_until(double when) {
    double d = when - olt_now();
    if (d <= 0) return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *olt_client_main(void *p) {
    olt_client *c = p;
    olt *o = c->o;
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* as bench_server.c */
    mha_tensor out[OLT_MAX_TENSORS];
    for (size_t i = 0; i < o->n_out; i++) {
        out[i] = o->out[i];
        const size_t bytes = (size_t)mha_tensor_numel(&out[i]) * mha_dtype_size(out[i].dtype);
        out[i].data = malloc(bytes ? bytes : 1);
        if (!out[i].data) {
            atomic_store(&o->failed, 1);
            return NULL;
        }
    }
    for (;;) {
        const size_t i = atomic_fetch_add(&o->next, 1);
        if (i >= o->n || atomic_load(&o->failed)) break;
        olt_req *r = &o->req[i];
        r->take = olt_now() - o->start;
        olt_sleep_until(o->start + r->due);
        struct rusage u0, u1;
        getrusage(RUSAGE_THREAD, &u0);
        const double c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
        r->woke = olt_now() - o->start;
        mha_error err;
        const mha_status st = mha_run(o->rt, o->model, o->in, o->n_in, out, o->n_out, NULL, &err);
        r->ret = olt_now() - o->start;
        r->cpu_ms = 1e3 * (bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0);
        getrusage(RUSAGE_THREAD, &u1);
        r->vol = u1.ru_nvcsw - u0.ru_nvcsw;
        r->invol = u1.ru_nivcsw - u0.ru_nivcsw;
        r->client = c->id;
        if (st != MHA_OK) {
            fprintf(stderr, "open_loop_trace: %s\n", err.message);
            atomic_store(&o->failed, 1);
            break;
        }
        const size_t bytes = (size_t)mha_tensor_numel(&out[0]) * mha_dtype_size(out[0].dtype);
        if (bench_fnv1a(out[0].data, bytes) != o->expect) atomic_fetch_add(&o->mismatched, 1);
    }
    for (size_t i = 0; i < o->n_out; i++)
        free(out[i].data);
    return NULL;
}

/* p-quantile of x[n] (sorted in place) */
static double olt_q(double *x, size_t n, double p) {
    if (n == 0) return NAN;
    qsort(x, n, sizeof *x, bench_cmp_double);
    size_t k = (size_t)ceil(p * (double)n);
    return x[k > 0 ? k - 1 : 0];
}

static int olt_inputs(olt *o, int64_t seq) {
    uint32_t seed = 12345;
    for (size_t i = 0; i < o->n_in; i++) {
        mha_io_info io;
        mha_model_input(o->model, i, &io);
        mha_tensor *t = &o->in[i];
        t->dtype = io.dtype;
        t->rank = io.rank;
        int open = 0;
        for (int d = 0; d < io.rank; d++)
            t->shape[d] = io.shape[d] >= 0 ? io.shape[d] : open++ == 0 ? 1 : seq;
        const int64_t n = mha_tensor_numel(t);
        t->data = calloc((size_t)(n > 0 ? n : 1), mha_dtype_size(io.dtype));
        if (!t->data) return -1;
        bench_fill_seeded(t->data, n, io.dtype, io.role == MHA_ROLE_TOKEN_IDS, &seed);
    }
    return 0;
}

static void olt_usage(void) {
    fprintf(stderr, "usage: open_loop_trace MODEL --seq S --clients N --threads T --rate R "
                    "[--seconds SEC] [--seed K] [--backend NAME] [--cores C] [--dump FILE]\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        olt_usage();
        return 2;
    }
    const char *path = argv[1], *backend = NULL, *dump = NULL;
    int64_t seq = 32;
    int clients = 8, threads = 1, cores = 2;
    double rate = 500, seconds = 2.0;
    uint64_t rng = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            olt_usage();
            return 2;
        }
        if (!strcmp(a, "--seq"))
            seq = atoll(v);
        else if (!strcmp(a, "--clients"))
            clients = atoi(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--seed"))
            rng = (uint64_t)atoll(v);
        else if (!strcmp(a, "--backend"))
            backend = v;
        else if (!strcmp(a, "--cores"))
            cores = atoi(v);
        else if (!strcmp(a, "--dump"))
            dump = v;
        else {
            olt_usage();
            return 2;
        }
        i++;
    }
    if (clients < 1 || clients > OLT_MAX_CLIENTS || rate <= 0 || seconds <= 0 || seq < 1) {
        olt_usage();
        return 2;
    }
    static olt o;
    mha_error err;
    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.skip_verify = 1;
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.num_threads = threads;
    ro.backend = backend;
    if (mha_model_load_file(path, &mo, &o.model, &err) != MHA_OK ||
        mha_runtime_create(&ro, &o.rt, &err) != MHA_OK) {
        fprintf(stderr, "open_loop_trace: %s\n", err.message);
        return 1;
    }
    mha_model_info info;
    mha_model_get_info(o.model, &info);
    if (info.num_inputs > OLT_MAX_TENSORS || info.num_outputs > OLT_MAX_TENSORS ||
        info.num_outputs < 1)
        return 1;
    o.n_in = info.num_inputs;
    o.n_out = info.num_outputs;
    if (olt_inputs(&o, seq) != 0 ||
        mha_model_output_shapes(o.model, o.in, o.n_in, o.out, o.n_out, &err) != MHA_OK) {
        fprintf(stderr, "open_loop_trace: %s\n", err.message);
        return 1;
    }
    for (size_t i = 0; i < o.n_out; i++) {
        const size_t bytes = (size_t)mha_tensor_numel(&o.out[i]) * mha_dtype_size(o.out[i].dtype);
        o.out[i].data = malloc(bytes ? bytes : 1);
        if (!o.out[i].data) return 1;
    }
    /* the answer alone (and a warm-up) */
    double alone[5], alone_cpu[5];
    for (int k = 0; k < 5; k++) {
        const double t0 = olt_now(), c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
        if (mha_run(o.rt, o.model, o.in, o.n_in, o.out, o.n_out, NULL, &err) != MHA_OK) {
            fprintf(stderr, "open_loop_trace: %s\n", err.message);
            return 1;
        }
        alone[k] = 1e3 * (olt_now() - t0);
        alone_cpu[k] = 1e3 * (bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0);
    }
    o.expect = bench_fnv1a(o.out[0].data,
                           (size_t)mha_tensor_numel(&o.out[0]) * mha_dtype_size(o.out[0].dtype));
    const size_t cap = (size_t)(rate * seconds * 1.5 + 16);
    o.req = calloc(cap, sizeof *o.req);
    if (!o.req) return 1;
    for (double at = 0; o.n < cap;) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift64 */
        at += -log(1.0 - (double)(rng >> 11) / 9007199254740992.0) / rate;
        if (at >= seconds) break;
        o.req[o.n++].due = at;
    }
    atomic_init(&o.next, 0);
    atomic_init(&o.failed, 0);
    atomic_init(&o.mismatched, 0);
    pthread_t th[OLT_MAX_CLIENTS];
    olt_client cl[OLT_MAX_CLIENTS];
    struct rusage p0, p1;
    getrusage(RUSAGE_SELF, &p0);
    const double cpu0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
    o.start = olt_now() + 0.002;
    for (int c = 0; c < clients; c++) {
        cl[c] = (olt_client){&o, c};
        if (pthread_create(&th[c], NULL, olt_client_main, &cl[c]) != 0) return 1;
    }
    for (int c = 0; c < clients; c++)
        pthread_join(th[c], NULL);
    const double wall = olt_now() - o.start, cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    getrusage(RUSAGE_SELF, &p1);
    if (atomic_load(&o.failed)) return 1;

    const size_t n = o.n;
    double *lat = malloc(n * sizeof *lat), *part[3];
    for (int k = 0; k < 3; k++)
        part[k] = malloc(n * sizeof *part[k]);
    if (!lat || !part[0] || !part[1] || !part[2]) return 1;
    double sw_v = 0, sw_i = 0;
    for (size_t i = 0; i < n; i++) {
        const olt_req *r = &o.req[i];
        lat[i] = 1e3 * (r->ret - r->due);
        part[0][i] = 1e3 * fmax(0.0, r->take - r->due);
        part[1][i] = 1e3 * (r->woke - fmax(r->due, r->take));
        part[2][i] = 1e3 * (r->ret - r->woke);
        sw_v += (double)r->vol;
        sw_i += (double)r->invol;
    }
    if (dump) {
        FILE *f = fopen(dump, "w");
        if (f) {
            for (size_t i = 0; i < n; i++) {
                const olt_req *r = &o.req[i];
                fprintf(f, "%.4f %.4f %.4f %.4f %.4f %ld %ld %d\n", 1e3 * r->due, 1e3 * r->take,
                        1e3 * r->woke, 1e3 * r->ret, r->cpu_ms, r->vol, r->invol, r->client);
            }
            fclose(f);
        }
    }
    /* what the p99 is made of: the parts' means over the requests at or
     * past the p99 latency */
    double *sorted = malloc(n * sizeof *sorted);
    if (!sorted) return 1;
    memcpy(sorted, lat, n * sizeof *lat);
    const double p99 = olt_q(sorted, n, 0.99);
    double tail[4] = {0, 0, 0, 0}, tail_cpu = 0;
    size_t n_tail = 0, handed = 0, tail_handed = 0;
    /* computed on the caller's thread: at least half the caller's CPU time
     * of a run alone (at 2 threads a run beside another gets one core) */
    const double own = 0.5 * olt_q(alone_cpu, 5, 0.5);
    for (size_t i = 0; i < n; i++) {
        const olt_req *r = &o.req[i];
        const int h = r->cpu_ms < own;
        handed += h;
        if (lat[i] < p99) continue;
        n_tail++;
        tail_handed += h;
        for (int k = 0; k < 3; k++)
            tail[k] += part[k][i];
        tail[3] += lat[i];
        tail_cpu += r->cpu_ms;
    }
    printf("open_loop_trace: %s S %lld, %d clients, %d threads, %.0f requests/s offered, %zu "
           "requests in %.2f s; one alone %.3f ms (median of 5)\n",
           path, (long long)seq, clients, threads, rate, n, wall, olt_q(alone, 5, 0.5));
    printf("%-26s %8s %8s %8s %8s %10s\n", "ms", "p50", "p90", "p99", "max", "p99 tail");
    const char *names[3] = {"client (all clients busy)", "wake (after the sleep)",
                            "run (in mha_run)"};
    for (int k = 0; k < 3; k++) {
        const double m = n_tail ? tail[k] / (double)n_tail : NAN;
        const double q50 = olt_q(part[k], n, 0.5), q90 = olt_q(part[k], n, 0.9);
        const double q99 = olt_q(part[k], n, 0.99);
        printf("%-26s %8.3f %8.3f %8.3f %8.3f %10.3f\n", names[k], q50, q90, q99, part[k][n - 1],
               m);
    }
    const double q50 = olt_q(lat, n, 0.5), q90 = olt_q(lat, n, 0.9);
    printf("%-26s %8.3f %8.3f %8.3f %8.3f %10.3f\n", "latency", q50, q90, p99, lat[n - 1],
           n_tail ? tail[3] / (double)n_tail : NAN);
    printf("runs computed on another thread: %.1f %% (p99 tail %.1f %%, its caller CPU %.3f ms "
           "a request)\n",
           100.0 * (double)handed / (double)n, n_tail ? 100.0 * (double)tail_handed / n_tail : 0.0,
           n_tail ? tail_cpu / (double)n_tail : 0.0);
    printf("per request: process CPU %.3f ms, callers' switches in mha_run %.2f voluntary %.2f "
           "involuntary, process %.2f / %.2f; cores idle %.0f %% (of %d)\n",
           1e3 * cpu / (double)n, sw_v / (double)n, sw_i / (double)n,
           (double)(p1.ru_nvcsw - p0.ru_nvcsw) / (double)n,
           (double)(p1.ru_nivcsw - p0.ru_nivcsw) / (double)n, 100.0 * (1.0 - cpu / (wall * cores)),
           cores);
    /* the longest time no request returned while one was due and not yet
     * answered: a stall of the whole process (another process's time
     * slices, on a shared machine) rather than of its queue */
    double *ends = malloc(n * sizeof *ends), stall = 0;
    if (!ends) return 1;
    for (size_t i = 0; i < n; i++)
        ends[i] = o.req[i].ret;
    qsort(ends, n, sizeof *ends, bench_cmp_double);
    /* after k + 1 answers, once k + 2 requests are due one waits until
     * the next answer (dues ascend) */
    for (size_t k = 0; k + 1 < n; k++) {
        const double gap = ends[k + 1] - fmax(ends[k], o.req[k + 1].due);
        if (gap > stall) stall = gap;
    }
    if (n && ends[0] - o.req[0].due > stall) stall = ends[0] - o.req[0].due;
    printf("longest stall: %.3f ms without an answer while a request was due\n", 1e3 * stall);
    free(ends);
    const int bad = atomic_load(&o.mismatched);
    if (bad) printf("%d answers differed from the one computed alone\n", bad);
    return bad ? 3 : 0;
}
