/* test_threads_pool.c -- the thread pool (pool.c): every unit claimed
 * exactly once, phases separated by barriers, many jobs in a row with
 * changing thread counts, failures and cancellation ending a job, idle
 * workers helping a second caller while the first one's job is stuck,
 * workers staying out when callers take every core, FTZ/DAZ in the
 * workers, many create/destroy cycles, and runs (pool_run_begin/end)
 * splitting the cores between them, a helper leaving a run's job when a
 * second run begins, runs beyond the cores waiting at the door, and two
 * threads claiming paired units from both ends. Runs under TSan (label
 * "threads"). */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#define MAX_UNITS 600

typedef struct count_ctx {
    atomic_int hits[POOL_MAX_PHASES][MAX_UNITS];
    atomic_int done[POOL_MAX_PHASES]; /* units finished per phase */
    int64_t n_units[POOL_MAX_PHASES];
    atomic_int barrier_violations;
    atomic_int bad_worker;
    int max_worker;
    int fail_phase; /* -1: none */
    int64_t fail_unit;
    atomic_int fp_bad;
} count_ctx;

static mha_status count_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    count_ctx *c = vctx;
    /* the previous phase must be complete before any unit of this one */
    if (phase > 0 && atomic_load(&c->done[phase - 1]) != c->n_units[phase - 1])
        atomic_fetch_add(&c->barrier_violations, 1);
    if (worker < 0 || worker >= c->max_worker) atomic_fetch_add(&c->bad_worker, 1);
#if defined(__x86_64__) || defined(__i386__)
    if (worker > 0 && (_mm_getcsr() & 0x8040u) != 0x8040u) atomic_fetch_add(&c->fp_bad, 1);
#endif
    atomic_fetch_add(&c->hits[phase][unit], 1);
    atomic_fetch_add(&c->done[phase], 1);
    if (phase == c->fail_phase && unit == c->fail_unit)
        return mha_fail(err, MHA_ERR_PLUGIN, "unit %lld of phase %d failed on purpose",
                        (long long)unit, phase);
    return MHA_OK;
}

static void count_ctx_init(count_ctx *c, int n_phases, const int64_t *n_units, int max_worker) {
    memset(c, 0, sizeof *c);
    for (int p = 0; p < n_phases; p++)
        c->n_units[p] = n_units[p];
    c->max_worker = max_worker;
    c->fail_phase = -1;
}

static void job_init(pool_job *job, count_ctx *c, int n_phases, int threads) {
    memset(job, 0, sizeof *job);
    job->fn = count_unit;
    job->ctx = c;
    job->n_phases = n_phases;
    for (int p = 0; p < n_phases; p++)
        job->n_units[p] = c->n_units[p];
    job->num_threads = threads;
}

static void check_counts(count_ctx *c, int n_phases) {
    for (int p = 0; p < n_phases; p++)
        for (int64_t u = 0; u < c->n_units[p]; u++)
            if (atomic_load(&c->hits[p][u]) != 1)
                fail_msg("phase %d unit %lld ran %d times", p, (long long)u,
                         atomic_load(&c->hits[p][u]));
    assert_int_equal(atomic_load(&c->barrier_violations), 0);
    assert_int_equal(atomic_load(&c->bad_worker), 0);
    assert_int_equal(atomic_load(&c->fp_bad), 0);
}

static void test_every_unit_once(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 5, 0, &p, NULL), MHA_OK);
    assert_int_equal(pool_size(p), 6);
    static count_ctx c;
    const int64_t units[4] = {1, 37, 0, 500};
    count_ctx_init(&c, 4, units, 6);
    pool_job job;
    job_init(&job, &c, 4, 0);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    /* workers join when they wake up in time: whether any did varies */
    assert_int_equal(job.threads_used, 6);
    check_counts(&c, 4);
    pool_destroy(p);
}

/* Many jobs in a row, thread counts 1..7 (capped to the pool's 6). */
static void test_many_jobs(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 5, 64 * 1024, &p, NULL), MHA_OK);
    static count_ctx c;
    uint64_t rng = 1;
    for (int j = 0; j < 1500; j++) {
        int n_phases = 1 + (int)(tu_rand_u64(&rng) % POOL_MAX_PHASES);
        int64_t units[POOL_MAX_PHASES];
        for (int k = 0; k < n_phases; k++)
            units[k] = (int64_t)(tu_rand_u64(&rng) % 40);
        int threads = (int)(tu_rand_u64(&rng) % 8);
        count_ctx_init(&c, n_phases, units, 6);
        pool_job job;
        job_init(&job, &c, n_phases, threads);
        assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
        int want = threads == 0 || threads > 6 ? 6 : threads;
        assert_int_equal(job.threads_used, want);
        check_counts(&c, n_phases);
    }
    pool_destroy(p);
}

/* A failing unit ends the job with its status and message; the pool then
 * serves the next job normally. */
static void test_failure_stops_job(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &p, NULL), MHA_OK);
    static count_ctx c;
    const int64_t units[3] = {50, 50, 50};
    for (int threads = 1; threads <= 4; threads++) {
        count_ctx_init(&c, 3, units, 4);
        c.fail_phase = 1;
        c.fail_unit = 7;
        pool_job job;
        job_init(&job, &c, 3, threads);
        mha_error err = {0};
        assert_int_equal(pool_run(p, &job, &err), MHA_ERR_PLUGIN);
        assert_int_equal(err.status, MHA_ERR_PLUGIN);
        assert_non_null(strstr(err.message, "unit 7 of phase 1"));
        /* no unit of the last phase ran after the failure */
        assert_int_equal(atomic_load(&c.done[2]), 0);
        count_ctx_init(&c, 3, units, 4);
        job_init(&job, &c, 3, threads);
        assert_int_equal(pool_run(p, &job, &err), MHA_OK);
        check_counts(&c, 3);
    }
    pool_destroy(p);
}

static int cancel_now(void *user) {
    atomic_int *calls = user;
    atomic_fetch_add(calls, 1);
    return 1;
}

static void test_cancel(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &p, NULL), MHA_OK);
    static count_ctx c;
    const int64_t units[2] = {100, 100};
    for (int threads = 1; threads <= 4; threads++) {
        count_ctx_init(&c, 2, units, 4);
        pool_job job;
        job_init(&job, &c, 2, threads);
        atomic_int calls;
        atomic_init(&calls, 0);
        job.cancel = cancel_now;
        job.cancel_user = &calls;
        mha_error err = {0};
        assert_int_equal(pool_run(p, &job, &err), MHA_ERR_CANCELLED);
        assert_int_equal(err.status, MHA_ERR_CANCELLED);
        assert_true(atomic_load(&calls) >= 1);
        /* the caller polls before its first unit; alone, it ran none (with
         * workers, they may have run some before they saw the flag) */
        if (threads == 1) assert_int_equal(atomic_load(&c.done[0]), 0);
        assert_int_equal(atomic_load(&c.done[1]), 0);
    }
    pool_destroy(p);
}

/* Concurrent callers share the workers: while a first caller's job is
 * stuck in one long unit, a second caller's job gets the idle workers. The
 * second job's unit 0 waits until another thread ran one of its units (a
 * pool serving one job at a time would leave it waiting, and the test
 * would fail after its time limit); units 1.. record which thread ran
 * them. */
typedef struct busy_ctx {
    atomic_int started;
    atomic_int second_done;
} busy_ctx;

static mha_status busy_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)phase, (void)worker, (void)err;
    busy_ctx *b = vctx;
    if (unit == 0) {
        atomic_store(&b->started, 1);
        while (!atomic_load(&b->second_done))
            sched_yield();
    }
    return MHA_OK;
}

typedef struct busy_thread {
    pool *p;
    busy_ctx *b;
    int num_threads;
    mha_status st;
    int ran_alone;
} busy_thread;

/* A one-phase job of n units of fn. */
static void job_one_phase(pool_job *job, pool_unit_fn fn, void *ctx, int64_t n, int threads) {
    memset(job, 0, sizeof *job);
    job->fn = fn;
    job->ctx = ctx;
    job->n_phases = 1;
    job->n_units[0] = n;
    job->num_threads = threads;
}

static void *busy_first(void *arg) {
    busy_thread *t = arg;
    pool_job job;
    job_one_phase(&job, busy_unit, t->b, 4, t->num_threads);
    t->st = pool_run(t->p, &job, NULL);
    t->ran_alone = job.ran_alone;
    return NULL;
}

typedef struct helped_ctx {
    atomic_int by_helper; /* units run by a worker index > 0 */
    atomic_int timed_out;
    int wait_seconds; /* unit 0's limit */
} helped_ctx;

static mha_status helped_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)phase, (void)err;
    helped_ctx *h = vctx;
    if (worker > 0) atomic_fetch_add(&h->by_helper, 1);
    if (unit == 0 && worker == 0) {
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!atomic_load(&h->by_helper)) {
            sched_yield();
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec >= h->wait_seconds) {
                atomic_store(&h->timed_out, 1);
                break;
            }
        }
    }
    return MHA_OK;
}

static void run_second_caller(int n_workers, int first_threads, int *ran_alone, int *by_helper) {
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, n_workers, 0, &p, NULL), MHA_OK);
    busy_ctx b;
    atomic_init(&b.started, 0);
    atomic_init(&b.second_done, 0);
    busy_thread t = {.p = p, .b = &b, .num_threads = first_threads, .st = MHA_ERR_INTERNAL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, busy_first, &t), 0);
    while (!atomic_load(&b.started))
        sched_yield();
    helped_ctx h;
    atomic_init(&h.by_helper, 0);
    atomic_init(&h.timed_out, 0);
    h.wait_seconds = first_threads == 1 ? 1 : 30;
    pool_job job;
    job_one_phase(&job, helped_unit, &h, 64, 0);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    atomic_store(&b.second_done, 1);
    pthread_join(th, NULL);
    assert_int_equal(t.st, MHA_OK);
    pool_destroy(p);
    *ran_alone = job.ran_alone;
    *by_helper = atomic_load(&h.by_helper);
    assert_int_equal(atomic_load(&h.timed_out), first_threads == 1 && n_workers == 1);
}

static void test_second_caller_gets_help(void **state) {
    (void)state;
    int alone, by_helper;
    /* 3 threads, the first caller on one of them: the workers help */
    run_second_caller(2, 0, &alone, &by_helper);
    assert_int_equal(alone, 0);
    assert_true(by_helper > 0);
}

/* Two callers on a two-thread pool already fill both cores: the worker
 * stays out of the second job instead of competing for a core (the second
 * caller's unit 0 waits out its time limit for a helper that never comes). */
static void test_full_cores_no_helper(void **state) {
    (void)state;
    int alone, by_helper;
    run_second_caller(1, 1, &alone, &by_helper);
    assert_int_equal(alone, 1);
    assert_int_equal(by_helper, 0);
}

/* Callers beyond the cores wait for their turn: however many threads call
 * pool_run, at most max(pool size, online CPUs) jobs run at once (more
 * would share cores by time slices). Each job is one unit on its caller's
 * thread that stays a while, so callers let in would pile up. */
typedef struct gate_ctx {
    atomic_int inside, most;
} gate_ctx;

static mha_status gate_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)phase, (void)unit, (void)worker, (void)err;
    gate_ctx *g = vctx;
    int now = atomic_fetch_add(&g->inside, 1) + 1;
    for (int most = atomic_load(&g->most); now > most;)
        if (atomic_compare_exchange_weak(&g->most, &most, now)) break;
    struct timespec ts = {0, 2000000}; /* 2 ms */
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&g->inside, 1);
    return MHA_OK;
}

typedef struct gate_thread {
    pool *p;
    gate_ctx *g;
    int as_runs; /* each a run (pool_run_begin/end) of no job, not a job */
    mha_status st;
} gate_thread;

static void *gate_caller(void *arg) {
    gate_thread *t = arg;
    for (int k = 0; k < 5 && t->st == MHA_OK; k++) {
        if (t->as_runs) {
            pool_run_begin(t->p);
            gate_unit(t->g, 0, 0, 0, NULL);
            pool_run_end(t->p);
            continue;
        }
        pool_job job;
        job_one_phase(&job, gate_unit, t->g, 1, 1);
        t->st = pool_run(t->p, &job, NULL);
    }
    return NULL;
}

/* Starts limit + 4 threads of gate_caller (on one pool with one worker;
 * as_runs: each holding runs instead of running jobs), joins them and checks that at most limit =
 * max(pool size, online CPUs) were inside at once; returns the pool for more checks. */
static pool *run_bounded(int as_runs) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 1, 0, &p, NULL), MHA_OK);
    const int limit = cpus > pool_size(p) ? (int)cpus : pool_size(p);
    enum { MAX_CALLERS = 64 };
    int n = limit + 4 < MAX_CALLERS ? limit + 4 : MAX_CALLERS;
    gate_ctx g;
    atomic_init(&g.inside, 0);
    atomic_init(&g.most, 0);
    gate_thread t[MAX_CALLERS];
    pthread_t th[MAX_CALLERS];
    for (int i = 0; i < n; i++) {
        t[i] = (gate_thread){p, &g, as_runs, MHA_OK};
        assert_int_equal(pthread_create(&th[i], NULL, gate_caller, &t[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].st, MHA_OK);
    }
    assert_true(atomic_load(&g.most) >= 1);
    assert_true(atomic_load(&g.most) <= limit);
    return p;
}

static void test_callers_wait_for_a_core(void **state) {
    (void)state;
    pool_destroy(run_bounded(0));
}

/* A reservation (a self-parallel plugin's run) holds the pool like a job. */
static void test_reserve(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &p, NULL), MHA_OK);
    assert_true(pool_try_reserve(p));
    busy_ctx b;
    atomic_init(&b.started, 0);
    atomic_init(&b.second_done, 1); /* busy_unit returns at once */
    busy_thread t = {.p = p, .b = &b, .st = MHA_ERR_INTERNAL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, busy_first, &t), 0);
    pthread_join(th, NULL);
    assert_int_equal(t.st, MHA_OK);
    assert_int_equal(t.ran_alone, 1);
    pool_release(p);
    assert_true(pool_try_reserve(p));
    pool_release(p);
    assert_false(pool_try_reserve(NULL));
    pool_destroy(p);
}

/* No pool, or a pool without workers: the caller does everything. */
static void test_no_workers(void **state) {
    (void)state;
    static count_ctx c;
    const int64_t units[2] = {9, 3};
    count_ctx_init(&c, 2, units, 1);
    pool_job job;
    job_init(&job, &c, 2, 4);
    assert_int_equal(pool_run(NULL, &job, NULL), MHA_OK);
    check_counts(&c, 2);
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 0, 0, &p, NULL), MHA_OK);
    count_ctx_init(&c, 2, units, 1);
    job_init(&job, &c, 2, 4);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    check_counts(&c, 2);
    pool_destroy(p);
    pool_destroy(NULL);
    mha_error err = {0};
    assert_int_equal(pool_create(NULL, -1, 0, &p, &err), MHA_ERR_INVALID_ARGUMENT);
    assert_int_equal(pool_create(NULL, POOL_MAX_THREADS, 0, &p, &err), MHA_ERR_INVALID_ARGUMENT);
    job.n_phases = 0;
    assert_int_equal(pool_run(NULL, &job, &err), MHA_ERR_INTERNAL);
}

static void test_create_destroy_cycles(void **state) {
    (void)state;
    for (int i = 0; i < 200; i++) {
        pool *p = NULL;
        assert_int_equal(pool_create(NULL, 1 + i % 4, 0, &p, NULL), MHA_OK);
        if (i % 3 == 0) {
            static count_ctx c;
            const int64_t units[1] = {8};
            count_ctx_init(&c, 1, units, 5);
            pool_job job;
            job_init(&job, &c, 1, 0);
            assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
            check_counts(&c, 1);
        }
        pool_destroy(p);
    }
    /* allocation failure while creating */
    for (long n = 1; n <= 2; n++) {
        pool *p = NULL;
        mha_alloc_fail_at(n, 0);
        mha_status st = pool_create(NULL, 2, 0, &p, NULL);
        mha_alloc_fail_at(0, 0);
        assert_int_equal(st, MHA_ERR_NO_MEMORY);
        assert_null(p);
    }
}

/* Several callers sharing one pool at once: every job complete and
 * correct, whether it got the pool or ran alone. */
typedef struct shared_thread {
    pool *p;
    int fails;
    int alone;
} shared_thread;

static void *shared_main(void *arg) {
    shared_thread *t = arg;
    count_ctx *c = malloc(sizeof *c);
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    for (int j = 0; j < 150; j++) {
        int64_t units[2] = {(int64_t)(tu_rand_u64(&rng) % 30), (int64_t)(tu_rand_u64(&rng) % 30)};
        count_ctx_init(c, 2, units, 4);
        pool_job job;
        job_init(&job, c, 2, 0);
        if (pool_run(t->p, &job, NULL) != MHA_OK) t->fails++;
        t->alone += job.ran_alone;
        for (int ph = 0; ph < 2; ph++)
            for (int64_t u = 0; u < units[ph]; u++)
                if (atomic_load(&c->hits[ph][u]) != 1) t->fails++;
        if (atomic_load(&c->barrier_violations)) t->fails++;
    }
    free(c);
    return NULL;
}

static void test_concurrent_callers(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 3, 0, &p, NULL), MHA_OK);
    shared_thread t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (shared_thread){.p = p};
        assert_int_equal(pthread_create(&th[i], NULL, shared_main, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].fails, 0);
    }
    pool_destroy(p);
}

/* Runs split the cores: beside another run in progress a run's jobs get
 * pool_size / runs threads (a job of one thread is not even published), and
 * a lone run gets every thread again once the other ends. */
typedef struct run_thread {
    pool *p;
    atomic_int begun, release;
    int share; /* pool_run_begin's answer */
} run_thread;

static void *run_beside(void *arg) {
    run_thread *t = arg;
    t->share = pool_run_begin(t->p);
    atomic_store(&t->begun, 1);
    while (!atomic_load(&t->release))
        sched_yield();
    pool_run_end(t->p);
    atomic_store(&t->begun, 2);
    return NULL;
}

/* Starts run_beside on *th and returns once its run began. */
static void start_run_beside(run_thread *t, pool *p, pthread_t *th) {
    memset(t, 0, sizeof *t);
    t->p = p;
    atomic_init(&t->begun, 0);
    atomic_init(&t->release, 0);
    assert_int_equal(pthread_create(th, NULL, run_beside, t), 0);
    while (!atomic_load(&t->begun))
        sched_yield();
}

static void runs_share(int n_workers) {
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, n_workers, 0, &p, NULL), MHA_OK);
    const int size = n_workers + 1;
    assert_int_equal(pool_run_begin(p), size);
    assert_int_equal(pool_threads(p), size);
    run_thread t;
    pthread_t th;
    start_run_beside(&t, p, &th);
    assert_int_equal(t.share, size / 2);
    assert_int_equal(pool_threads(p), size / 2);
    const int64_t n[1] = {64};
    count_ctx *c = malloc(sizeof *c);
    assert_non_null(c);
    count_ctx_init(c, 1, n, size);
    pool_job job;
    job_init(&job, c, 1, 0);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    check_counts(c, 1);
    assert_int_equal(job.threads_used, size / 2);
    if (size / 2 == 1) assert_int_equal(job.ran_alone, 1);
    atomic_store(&t.release, 1);
    pthread_join(th, NULL);
    assert_int_equal(pool_threads(p), size);
    count_ctx_init(c, 1, n, size);
    job_init(&job, c, 1, 0);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    check_counts(c, 1);
    assert_int_equal(job.threads_used, size);
    pool_run_end(p);
    free(c);
    pool_destroy(p);
}

static void test_runs_share_the_cores(void **state) {
    (void)state;
    runs_share(1); /* two threads, two runs: one each */
    runs_share(3); /* four threads, two runs: two each */
}

/* A worker helping a lone run's job leaves it between units once a second
 * run begins (the second caller has not even called pool_run yet): it
 * starts at most the one unit it may have claimed already. Unit 0 (the
 * caller's) holds until a helper ran a unit, so the helper is attached
 * when the second run begins. */
typedef struct leave_ctx {
    atomic_int by_helper;    /* units a worker ran */
    atomic_int second_begun; /* the second run is in progress */
    atomic_int late;         /* units a worker started after that */
    atomic_int hits[MAX_UNITS];
} leave_ctx;

static mha_status leave_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)phase, (void)err;
    leave_ctx *l = vctx;
    atomic_fetch_add(&l->hits[unit], 1);
    if (worker > 0) {
        if (atomic_load(&l->second_begun)) atomic_fetch_add(&l->late, 1);
        atomic_fetch_add(&l->by_helper, 1);
    }
    if (unit == 0 && worker == 0)
        while (!atomic_load(&l->second_begun))
            sched_yield();
    struct timespec ts = {0, 100000}; /* 0.1 ms: the units outlast a wake-up */
    nanosleep(&ts, NULL);
    return MHA_OK;
}

typedef struct leave_thread {
    pool *p;
    leave_ctx *l;
    atomic_int job_done;
} leave_thread;

static void *leave_second(void *arg) {
    leave_thread *t = arg;
    while (!atomic_load(&t->l->by_helper))
        sched_yield();
    pool_run_begin(t->p);
    atomic_store(&t->l->second_begun, 1);
    while (!atomic_load(&t->job_done))
        sched_yield();
    pool_run_end(t->p);
    return NULL;
}

static void test_helper_leaves_for_a_new_run(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 1, 0, &p, NULL), MHA_OK);
    leave_ctx *l = calloc(1, sizeof *l);
    assert_non_null(l);
    leave_thread t = {.p = p, .l = l};
    atomic_init(&t.job_done, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, leave_second, &t), 0);
    pool_run_begin(p);
    pool_job job;
    job_one_phase(&job, leave_unit, l, 400, 0);
    assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
    atomic_store(&t.job_done, 1);
    pthread_join(th, NULL);
    pool_run_end(p);
    for (int u = 0; u < 400; u++)
        assert_int_equal(atomic_load(&l->hits[u]), 1);
    assert_true(atomic_load(&l->by_helper) > 0);
    assert_true(atomic_load(&l->late) <= 1);
    free(l);
    pool_destroy(p);
}

/* An idle worker is woken only when there is something it may join: not
 * by the phases of a job its caller works alone (a run beside another on
 * a two-thread pool gets one thread: its jobs are not published), and not
 * while more runs than cores pass through the door (a run waiting there
 * counts in the share, so the runs inside never see a core to spare when
 * one of them ends and lets the next in). Each such wake-up was a context
 * switch for nothing, about one a run with 8 clients on 2 cores. */
static mha_status wake_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)phase, (void)unit, (void)worker, (void)err;
    atomic_fetch_add((atomic_int *)vctx, 1);
    /* 20 us of work: a worker woken meanwhile has time to run */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000);
    return MHA_OK;
}

typedef struct wake_client {
    pool *p;
    atomic_int *units;
    int runs;
    mha_status st;
} wake_client;

static void wake_job(pool_job *job, atomic_int *units) {
    memset(job, 0, sizeof *job);
    job->fn = wake_unit;
    job->ctx = units;
    job->n_phases = POOL_MAX_PHASES;
    for (int ph = 0; ph < POOL_MAX_PHASES; ph++)
        job->n_units[ph] = 8;
}

static void *wake_client_main(void *arg) {
    wake_client *c = arg;
    for (int r = 0; r < c->runs && c->st == MHA_OK; r++) {
        pool_run_begin(c->p);
        pool_job job;
        wake_job(&job, c->units);
        c->st = pool_run(c->p, &job, NULL);
        pool_run_end(c->p);
    }
    return NULL;
}

static void test_no_wakeups_for_nothing(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 1, 0, &p, NULL), MHA_OK);
    atomic_int units;
    atomic_init(&units, 0);
    /* a run beside: every job of this thread's runs is worked alone */
    run_thread t;
    pthread_t th;
    start_run_beside(&t, p, &th);
    struct timespec ts = {0, 2000000}; /* the worker goes to sleep meanwhile */
    nanosleep(&ts, NULL);
    const unsigned long long w0 = pool_worker_wakeups(p);
    wake_client self = {p, &units, 100, MHA_OK};
    wake_client_main(&self);
    assert_int_equal(self.st, MHA_OK);
    assert_int_equal(atomic_load(&units), 100 * POOL_MAX_PHASES * 8);
    nanosleep(&ts, NULL); /* a worker woken at the end has counted */
    const unsigned long long alone = pool_worker_wakeups(p) - w0;
    atomic_store(&t.release, 1);
    pthread_join(th, NULL);

    /* more clients than the door lets in, each run after run */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    enum { MAX_CLIENTS = 64, RUNS = 100 };
    int n = cpus > 0 && cpus + 3 < MAX_CLIENTS ? (int)cpus + 3 : MAX_CLIENTS;
    wake_client c[MAX_CLIENTS];
    pthread_t ct[MAX_CLIENTS];
    atomic_store(&units, 0);
    const unsigned long long w1 = pool_worker_wakeups(p);
    for (int i = 0; i < n; i++) {
        c[i] = (wake_client){p, &units, RUNS, MHA_OK};
        assert_int_equal(pthread_create(&ct[i], NULL, wake_client_main, &c[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(ct[i], NULL);
        assert_int_equal(c[i].st, MHA_OK);
    }
    nanosleep(&ts, NULL);
    const unsigned long long crowd = pool_worker_wakeups(p) - w1;
    assert_int_equal(atomic_load(&units), n * RUNS * POOL_MAX_PHASES * 8);
    pool_destroy(p);
    if (alone > 2) fail_msg("%llu worker wake-ups for 100 runs worked alone", alone);
    if (crowd > (unsigned long long)n * RUNS / 20)
        fail_msg("%llu worker wake-ups for %d runs of %d clients", crowd, n * RUNS, n);
}

/* Runs beyond the cores wait at the door: at most max(pool size, online
 * CPUs) are in progress at once, and every one gets in (each run holds a
 * while with nothing else to do, so runs let in would pile up). */
static void test_runs_wait_at_the_door(void **state) {
    (void)state;
    pool *p = run_bounded(1);
    assert_int_equal(pool_threads(p), pool_size(p)); /* every run ended */
    pool_destroy(p);
}

/* Two threads and paired units (pool_job.paired): the caller claims them
 * from the front, the helper from the back, so the caller's units of a
 * phase are a prefix and the helper's a suffix of [0, paired); the units
 * after `paired` go out only once every paired one is claimed. Unit 0
 * (the caller's first) holds until the helper ran a unit, so both take
 * part; each unit lasts ~20 us, so they alternate. With three threads the
 * ends are not paired (every unit still runs once). */
enum { PAIR_UNITS = 40 };
typedef struct pair_ctx {
    atomic_int by_helper;
    atomic_int seq;                          /* claims so far */
    int worker[POOL_MAX_PHASES][PAIR_UNITS]; /* who ran each unit */
    int order[POOL_MAX_PHASES][PAIR_UNITS];  /* when it began */
    atomic_int hits[POOL_MAX_PHASES][PAIR_UNITS];
} pair_ctx;

static mha_status pair_unit(void *vctx, int phase, int64_t unit, int worker, mha_error *err) {
    (void)err;
    pair_ctx *c = vctx;
    c->order[phase][unit] = atomic_fetch_add(&c->seq, 1);
    c->worker[phase][unit] = worker;
    atomic_fetch_add(&c->hits[phase][unit], 1);
    if (worker > 0) atomic_fetch_add(&c->by_helper, 1);
    if (phase == 0 && unit == 0 && worker == 0)
        while (!atomic_load(&c->by_helper))
            sched_yield();
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
    return MHA_OK;
}

static void test_two_threads_pair_the_ends(void **state) {
    (void)state;
    pool *p = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &p, NULL), MHA_OK);
    static pair_ctx c;
    for (int threads = 2; threads <= 3; threads++) {
        memset(&c, 0, sizeof c);
        pool_job job;
        memset(&job, 0, sizeof job);
        job.fn = pair_unit;
        job.ctx = &c;
        job.n_phases = 2;
        job.n_units[0] = job.n_units[1] = PAIR_UNITS;
        job.paired[0] = PAIR_UNITS;     /* every unit from both ends */
        job.paired[1] = PAIR_UNITS - 8; /* the last 8 after them */
        job.num_threads = threads;
        assert_int_equal(pool_run(p, &job, NULL), MHA_OK);
        for (int ph = 0; ph < 2; ph++)
            for (int u = 0; u < PAIR_UNITS; u++)
                assert_int_equal(atomic_load(&c.hits[ph][u]), 1);
        if (threads == 3) break; /* in order: nothing more to check */
        assert_int_equal(job.threads_used, 2);
        assert_true(atomic_load(&c.by_helper) > 0);
        for (int ph = 0; ph < 2; ph++) {
            const int paired = (int)job.paired[ph];
            int k = 0; /* the caller's prefix */
            while (k < paired && c.worker[ph][k] == 0)
                k++;
            for (int u = k; u < paired; u++)
                if (c.worker[ph][u] == 0)
                    fail_msg("phase %d: unit %d ran on the caller after the helper's unit %d", ph,
                             u, k);
            /* a unit after `paired` is claimed once every paired one is; at
             * most the other thread's last claim may not have begun yet */
            for (int u = paired; u < PAIR_UNITS; u++) {
                int later = 0;
                for (int v = 0; v < paired; v++)
                    later += c.order[ph][v] > c.order[ph][u];
                if (later > 1)
                    fail_msg("phase %d: unit %d began before %d paired units", ph, u, later);
            }
        }
        assert_true(c.worker[0][PAIR_UNITS - 1] > 0); /* the helper began at the back */
    }
    pool_destroy(p);
}

int main(void) {
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_unit_once),
        cmocka_unit_test(test_many_jobs),
        cmocka_unit_test(test_failure_stops_job),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_second_caller_gets_help),
        cmocka_unit_test(test_full_cores_no_helper),
        cmocka_unit_test(test_callers_wait_for_a_core),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_no_workers),
        cmocka_unit_test(test_create_destroy_cycles),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_runs_share_the_cores),
        cmocka_unit_test(test_helper_leaves_for_a_new_run),
        cmocka_unit_test(test_runs_wait_at_the_door),
        cmocka_unit_test(test_no_wakeups_for_nothing),
        cmocka_unit_test(test_two_threads_pair_the_ends),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
