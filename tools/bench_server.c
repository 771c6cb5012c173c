/* bench_server.c -- the server scenario of `mha bench` (after MLPerf's):
 * batch-1 requests arrive as a Poisson process at a target rate and are
 * served by several client threads sharing one runtime. A request's latency
 * runs from its scheduled arrival to its completion, so time spent waiting
 * for a free client counts, as it would for a real caller.
 *
 * The search for the highest rate whose p99 latency stays within the bound:
 *   r = 0.5 / (latency of one request alone)
 *   while trial(r) meets the bound: good = r, r *= 2        (doubling)
 *   if the first trial missed: halve until one meets it     (at most 4 times)
 *   bisect between good and the first miss while they differ by > 10%
 * where a trial has at least 1000 requests and a rate misses only when two
 * trials at it miss (search_trial), or with --server-trials N, a rate is
 * tried N times and the median p99 decides (the median trial reported: a
 * lucky pass no longer sets the row). (--server-rate R: one trial at R
 * instead.) Each trial also takes the
 * process's CPU time per request (getrusage: the clients, the pool's
 * workers spinning or not, the queue's dispatchers), the cost that a load
 * on other processes inflates far less than wall-clock latency.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include "bench_internal.h"

#define SERVER_MAX_REQUESTS 200000
/* A p99 over 100 requests is their second worst: one preemption of the
 * process decides it, and a search of such trials stopped at rates the
 * queue sustained. Over 1000 it is the tenth worst. */
#define SERVER_MIN_REQUESTS 1000
#define SERVER_MAX_DOUBLINGS 16
#define SERVER_MAX_HALVINGS 4
#define SERVER_MAX_BISECTIONS 6

typedef struct server_trial_state {
    mha_runtime *rt;
    const mha_model *model;
    const bench_tensors *t;
    mha_run_options run_opts; /* without the queue: each request's run (its precision) */
    const double *arrival;    /* seconds after start, ascending */
    size_t n;
    double *latency_ms; /* [n] */
    double *wait_ms;    /* [n] through the queue: submit to the batch's start */
    double batch_sum;   /* through the queue: the sum of each request's run size */
    double start;       /* bench_now() time of arrival 0 */
    double stop;        /* > 0: no request starts after this time (a fixed
                           --server-rate, maybe beyond what is sustained) */
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t lock; /* guards error and last_done */
    char error[BENCH_ERROR_MAX];
    double last_done;
} server_trial_state;

/* CPU seconds of the whole process so far (every thread: clients, the
 * pool's workers, the queue's dispatchers), user and system. */
static double process_cpu_seconds(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return NAN;
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec +
           (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

/* The threads that wait for arrival times wake within a microsecond or
 * so of them rather than the kernel's default 50 us slack: a late wake-up
 * is latency the search would charge to the engine. */
static void precise_timers(void) {
#if defined(PR_SET_TIMERSLACK)
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
}

static void sleep_until(double when) {
    double now = bench_now();
    if (when <= now) return;
    double d = when - now;
    struct timespec ts;
    ts.tv_sec = (time_t)d;
    ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One client: takes the next request, waits for its arrival, serves it. */
static void *server_client(void *arg) {
    server_trial_state *s = arg;
    mha_tensor outputs[BENCH_MAX_OUTPUTS];
    mha_error err;
    double last = 0.0;
    precise_timers();
    if (bench_outputs_clone(s->t, outputs) != 0) {
        pthread_mutex_lock(&s->lock);
        snprintf(s->error, sizeof s->error, "server client: out of memory for outputs");
        pthread_mutex_unlock(&s->lock);
        atomic_store(&s->failed, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&s->next, 1);
        if (i >= s->n || atomic_load(&s->failed)) break;
        if (s->stop > 0 && bench_now() > s->stop) break; /* i stays unserved (NAN) */
        double due = s->start + s->arrival[i];
        sleep_until(due);
        mha_status st = mha_run(s->rt, s->model, s->t->inputs, s->t->n_inputs, outputs,
                                s->t->n_outputs, &s->run_opts, &err);
        double done = bench_now();
        if (st != MHA_OK) {
            pthread_mutex_lock(&s->lock);
            snprintf(s->error, sizeof s->error, "server request: %s", err.message);
            pthread_mutex_unlock(&s->lock);
            atomic_store(&s->failed, 1);
            break;
        }
        s->latency_ms[i] = (done - due) * 1e3;
        last = done;
    }
    pthread_mutex_lock(&s->lock);
    if (last > s->last_done) s->last_done = last;
    pthread_mutex_unlock(&s->lock);
    bench_outputs_free(outputs, s->t->n_outputs);
    return NULL;
}

/* With a request queue (--max-batch): one thread submits every request at
 * its arrival time (open loop: no client to wait for) and a completion
 * callback records its latency; the queue's dispatcher forms the batches. A
 * request the queue refuses (full) counts as infinitely late. */
typedef struct server_queued {
    server_trial_state *s;
    size_t i;
    double due;
    atomic_int *left; /* requests not completed yet */
} server_queued;

static void server_queued_done(void *user, mha_request *req) {
    server_queued *q = user;
    server_trial_state *s = q->s;
    double done = bench_now();
    mha_request_info info;
    mha_request_get_info(req, &info);
    if (info.status != MHA_OK) {
        pthread_mutex_lock(&s->lock);
        snprintf(s->error, sizeof s->error, "server request: %s", mha_status_text(info.status));
        pthread_mutex_unlock(&s->lock);
        atomic_store(&s->failed, 1);
    }
    s->latency_ms[q->i] = (done - q->due) * 1e3;
    s->wait_ms[q->i] = info.queue_ms;
    pthread_mutex_lock(&s->lock);
    s->batch_sum += info.batch_size;
    if (done > s->last_done) s->last_done = done;
    pthread_mutex_unlock(&s->lock);
    mha_request_free(req);
    atomic_fetch_sub(q->left, 1);
}

static void server_submit_all(server_trial_state *s, mha_queue *queue) {
    server_queued *slots = calloc(s->n, sizeof *slots);
    if (!slots) {
        snprintf(s->error, sizeof s->error, "server: out of memory");
        atomic_store(&s->failed, 1);
        return;
    }
    atomic_int left;
    atomic_init(&left, (int)s->n);
    precise_timers();
    for (size_t i = 0; i < s->n; i++) {
        if (s->stop > 0 && bench_now() > s->stop) { /* the rest stay unserved (NAN) */
            atomic_fetch_sub(&left, (int)(s->n - i));
            break;
        }
        server_queued *q = &slots[i];
        *q = (server_queued){s, i, s->start + s->arrival[i], &left};
        sleep_until(q->due);
        mha_submit_options so;
        mha_submit_options_init(&so);
        so.done = server_queued_done;
        so.done_user = q;
        mha_request *req = NULL;
        mha_error err;
        mha_status st = mha_queue_submit(queue, &s->t->inputs[0], &so, &req, &err);
        if (st == MHA_ERR_QUEUE_FULL) {
            s->latency_ms[i] = INFINITY;
            atomic_fetch_sub(&left, 1);
        } else if (st != MHA_OK) {
            snprintf(s->error, sizeof s->error, "server submit: %s", err.message);
            atomic_store(&s->failed, 1);
            atomic_fetch_sub(&left, (int)(s->n - i));
            break;
        }
    }
    while (atomic_load(&left) > 0)
        sleep_until(bench_now() + 1e-4);
    free(slots);
}

/* Serves Poisson arrivals at `rate` per second for about opts->server_time
 * seconds (longer at low rates, to collect SERVER_MIN_REQUESTS). */
static int server_trial(mha_runtime *rt, const mha_model *model, mha_queue *queue,
                        const bench_tensors *t, const bench_options *o, double rate, uint64_t seed,
                        bench_trial *out, char *msg, size_t msg_size) {
    double duration = o->server_time;
    if (rate * duration < SERVER_MIN_REQUESTS)
        duration = fmin(SERVER_MIN_REQUESTS / rate, 4.0 * o->server_time);
    size_t cap = (size_t)fmin(rate * duration * 1.5 + 16.0, (double)SERVER_MAX_REQUESTS);
    server_trial_state s;
    pthread_t threads[256];
    int started = 0;
    uint64_t rng = seed;
    bench_stats st;
    memset(&s, 0, sizeof s);
    s.arrival = NULL;
    double *arrival = malloc(cap * sizeof *arrival);
    s.latency_ms = malloc(cap * sizeof *s.latency_ms);
    s.wait_ms = malloc(cap * sizeof *s.wait_ms);
    if (!arrival || !s.latency_ms || !s.wait_ms) {
        free(arrival);
        free(s.latency_ms);
        free(s.wait_ms);
        snprintf(msg, msg_size, "server: out of memory");
        return -1;
    }
    /* exponential gaps of mean 1/rate */
    for (double at = 0.0; s.n < cap;) {
        at += -log(1.0 - cli_rng_uniform(&rng)) / rate;
        if (at >= duration && s.n > 0) break;
        arrival[s.n++] = at;
    }
    s.arrival = arrival;
    s.rt = rt;
    s.model = model;
    s.t = t;
    mha_run_options_init(&s.run_opts);
    s.run_opts.precision = o->precision;
    atomic_init(&s.next, 0);
    atomic_init(&s.failed, 0);
    pthread_mutex_init(&s.lock, NULL);
    s.start = bench_now() + 0.002; /* let the clients start first */
    if (o->server_rate > 0) {
        s.stop = s.start + duration;
        for (size_t i = 0; i < s.n; i++)
            s.latency_ms[i] = NAN;
    }
    for (size_t i = 0; i < s.n; i++)
        s.wait_ms[i] = NAN;
    const double cpu0 = process_cpu_seconds();
    if (queue) {
        server_submit_all(&s, queue);
        started = -1;
    }
    for (int c = 0; !queue && c < o->clients && c < 256; c++) {
        if (pthread_create(&threads[c], NULL, server_client, &s) != 0) break;
        started++;
    }
    if (started == 0) {
        snprintf(s.error, sizeof s.error, "server: cannot start client threads");
        atomic_store(&s.failed, 1);
    }
    for (int c = 0; c < started; c++)
        pthread_join(threads[c], NULL);
    const double cpu = process_cpu_seconds() - cpu0;
    pthread_mutex_destroy(&s.lock);
    if (atomic_load(&s.failed)) {
        snprintf(msg, msg_size, "%s", s.error);
        free(arrival);
        free(s.latency_ms);
        free(s.wait_ms);
        return -1;
    }
    size_t served = 0; /* the requests started before s.stop, in order */
    for (size_t i = 0; i < s.n; i++)
        if (!isnan(s.latency_ms[i])) s.latency_ms[served++] = s.latency_ms[i];
    size_t done = 0; /* and of them, not refused by a full queue */
    for (size_t i = 0; i < served; i++)
        done += isfinite(s.latency_ms[i]) != 0;
    bench_stats ast = {0}; /* the latencies of the requests the queue accepted */
    size_t n_acc = 0;
    double *acc = queue && done ? malloc(done * sizeof *acc) : NULL;
    for (size_t i = 0; acc && i < served; i++)
        if (isfinite(s.latency_ms[i])) acc[n_acc++] = s.latency_ms[i];
    if (n_acc) bench_stats_compute(acc, n_acc, &ast);
    free(acc);
    size_t waited = 0; /* the queue's waits of the requests it ran */
    for (size_t i = 0; i < s.n; i++)
        if (!isnan(s.wait_ms[i])) s.wait_ms[waited++] = s.wait_ms[i];
    bench_stats wst = {0};
    if (waited) bench_stats_compute(s.wait_ms, waited, &wst);
    bench_stats_compute(s.latency_ms, served, &st);
    memset(out, 0, sizeof *out);
    out->target_rps = rate;
    out->requests = (long)served;
    out->achieved_rps = s.last_done > s.start ? (double)done / (s.last_done - s.start) : 0.0;
    out->p50_ms = st.median;
    out->p90_ms = st.p90;
    out->p99_ms = st.p99;
    out->min_ms = st.min;
    out->mean_ms = st.mean;
    out->cv = st.cv;
    out->max_ms = st.max;
    out->wait_p99_ms = waited ? wst.p99 : NAN;
    out->mean_batch = waited ? s.batch_sum / (double)waited : NAN;
    out->accepted_p99_ms = n_acc ? ast.p99 : NAN;
    out->refused = (long)(served - done);
    out->cpu_ms = done ? cpu * 1e3 / (double)done : NAN;
    out->ok = st.p99 <= o->p99_ms;
    free(arrival);
    free(s.latency_ms);
    free(s.wait_ms);
    return 0;
}

/* One trial of the search at `rate` into the next slot of res->trials:
 * 1 met the bound, 0 missed it, -1 no slot left, -2 failed (res->error). */
static int search_trial_once(mha_runtime *rt, const mha_model *model, mha_queue *queue,
                             const bench_tensors *t, const bench_options *o, uint64_t seed,
                             double rate, bench_result *res) {
    if (res->n_trials >= BENCH_MAX_TRIALS) return -1;
    bench_trial *tr = &res->trials[res->n_trials];
    if (server_trial(rt, model, queue, t, o, rate, seed + (uint64_t)res->n_trials, tr, res->error,
                     sizeof res->error) != 0)
        return -2;
    res->n_trials++;
    return tr->ok;
}

/* A rate misses the bound only if two trials (other arrival times) both
 * miss: a miss that queueing causes comes again, while one that another
 * process's time slice caused (a shared machine; the p99 of 1000
 * requests is their tenth worst) seldom does, and one such miss at a low
 * rate had stopped the search there (a rate that met the bound is not
 * tried again). */
static int search_trial(mha_runtime *rt, const mha_model *model, mha_queue *queue,
                        const bench_tensors *t, const bench_options *o, uint64_t seed, double rate,
                        bench_result *res) {
    if (o->server_trials > 1 && o->server_rate <= 0) {
        /* N trials; the one of median p99 goes last (the search reports the
         * last trial of a rate) and decides */
        const int first = res->n_trials;
        for (int k = 0; k < o->server_trials; k++) {
            int ok = search_trial_once(rt, model, queue, t, o, seed, rate, res);
            if (ok < 0) return ok == -2 ? -2 : (k ? 0 : -1);
        }
        bench_trial *tr = res->trials + first;
        const int n = o->server_trials;
        for (int i = 1; i < n; i++) /* by p99, a few at most */
            for (int j = i; j > 0 && tr[j].p99_ms < tr[j - 1].p99_ms; j--) {
                bench_trial x = tr[j];
                tr[j] = tr[j - 1];
                tr[j - 1] = x;
            }
        bench_trial med = tr[n / 2];
        tr[n / 2] = tr[n - 1];
        tr[n - 1] = med;
        return med.ok;
    }
    int ok = search_trial_once(rt, model, queue, t, o, seed, rate, res);
    if (ok != 0 || o->server_rate > 0) return ok;
    int again = search_trial_once(rt, model, queue, t, o, seed, rate, res);
    return again == -1 ? 0 : again;
}

static int bench_server_search(mha_runtime *rt, const mha_model *model, mha_queue *queue,
                               bench_tensors *t, const bench_options *o, bench_result *res);

int bench_server_run(mha_runtime *rt, const mha_model *model, bench_tensors *t,
                     const bench_options *o, bench_result *res) {
    double alone[5];
    mha_error err;
    bench_stats st;
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.precision = o->precision;
    /* one request alone: where the search starts, and a floor for p99 */
    for (int i = 0; i < 5; i++) {
        double t0 = bench_now();
        if (mha_run(rt, model, t->inputs, t->n_inputs, t->outputs, t->n_outputs, &ro, &err) !=
            MHA_OK) {
            snprintf(res->error, sizeof res->error, "server warm-up: %s", err.message);
            return -1;
        }
        alone[i] = (bench_now() - t0) * 1e3;
    }
    bench_stats_compute(alone, 5, &st);
    res->single_ms = st.median;
    res->n_trials = 0;
    res->server_found = 0;
    /* no rate can meet the bound (a fixed --server-rate is tried anyway) */
    if (st.median > o->p99_ms && o->server_rate <= 0) return 0;

    mha_queue *queue = NULL;
    if (o->max_batch > 0) {
        mha_queue_options qo;
        mha_queue_options_init(&qo);
        qo.max_batch = o->max_batch;
        qo.max_delay_ms = o->batch_delay_ms;
        qo.max_batch_ms = o->batch_ms;
        qo.num_dispatchers = o->dispatchers;
        qo.num_threads = o->run_threads;
        qo.caller_runs = o->caller_runs;
        qo.max_queue_ms = o->max_queue_ms;
        qo.max_latency_ms = o->max_latency_ms;
        qo.precision = o->precision;
        qo.max_batch_tokens = (int64_t)o->max_batch * t->inputs[0].shape[1];
        qo.capacity = 4096;
        if (mha_queue_create(rt, model, &qo, &queue, &err) != MHA_OK) {
            snprintf(res->error, sizeof res->error, "server queue: %s", err.message);
            return -1;
        }
    }
    int rc = bench_server_search(rt, model, queue, t, o, res);
    mha_queue_destroy(queue);
    return rc;
}

/* The rate search (see the top of this file). */
static int bench_server_search(mha_runtime *rt, const mha_model *model, mha_queue *queue,
                               bench_tensors *t, const bench_options *o, bench_result *res) {
    bench_cpu_sample s0, s1;
    int have_cpu;
    have_cpu = bench_cpu_sample_take(&s0) == 0;
    double rate = 0.5 * 1e3 / fmax(res->single_ms, 1e-3);
    double good = 0.0, bad = 0.0;
    int good_i = -1;
    uint64_t seed = o->seed * 0x9E3779B97F4A7C15ull + 7;
    if (o->server_rate > 0) { /* one trial at the given rate, reported whatever its p99 */
        if (search_trial(rt, model, queue, t, o, seed, o->server_rate, res) == -2) return -1;
        good_i = res->n_trials - 1;
    }
    for (int d = 0; o->server_rate <= 0 && d < SERVER_MAX_DOUBLINGS; d++) {
        int ok = search_trial(rt, model, queue, t, o, seed, rate, res);
        if (ok == -2) return -1;
        if (ok < 0) break;
        if (ok == 0) {
            bad = rate;
            break;
        }
        good = rate;
        good_i = res->n_trials - 1;
        rate *= 2.0;
    }
    for (int h = 0; o->server_rate <= 0 && good == 0.0 && h < SERVER_MAX_HALVINGS; h++) {
        rate *= 0.5;
        int ok = search_trial(rt, model, queue, t, o, seed, rate, res);
        if (ok == -2) return -1;
        if (ok < 0) break;
        if (ok == 1) {
            good = rate;
            good_i = res->n_trials - 1;
        } else {
            bad = rate;
        }
    }
    for (int k = 0; good > 0.0 && bad > good * 1.1 && k < SERVER_MAX_BISECTIONS; k++) {
        double mid = 0.5 * (good + bad);
        int ok = search_trial(rt, model, queue, t, o, seed, mid, res);
        if (ok == -2) return -1;
        if (ok < 0) break;
        if (ok) {
            good = mid;
            good_i = res->n_trials - 1;
        } else {
            bad = mid;
        }
    }
    if (have_cpu && bench_cpu_sample_take(&s1) == 0)
        res->other_cpus =
            bench_cpu_other(&s0, &s1, (int)sysconf(_SC_NPROCESSORS_ONLN), &res->own_cpus);
    if (good_i >= 0) {
        const bench_trial *b = &res->trials[good_i];
        res->server_found = 1;
        res->max_rate_rps = b->target_rps;
        res->achieved_rps = b->achieved_rps;
        res->reps = b->requests;
        res->median_ms = b->p50_ms;
        res->p90_ms = b->p90_ms;
        res->p99_ms = b->p99_ms;
        res->min_ms = b->min_ms;
        res->mean_ms = b->mean_ms;
        res->cv = b->cv;
        res->cpu_ms_per_request = b->cpu_ms;
    }
    return 0;
}
