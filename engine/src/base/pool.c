/* pool.c -- the thread pool of a runtime (see pool.h).
 *
 * Design (after ggml's CPU threadpool, extended to several callers): all
 * state lives in one struct pool; the thread that calls pool_run works its
 * own job as worker 0; one atomic counter per phase hands out unit indices
 * and a second counts finished units, so any thread may join or leave a
 * job between units and the phase ends when its last unit is done.
 *
 *   pool_run(job):                        worker:
 *     working++ ; publish job              pick a published job with units
 *     loop: claim units of the current       left, if working < size
 *       phase; when none are left, wait      (attach: working++, take an index)
 *       for the phase to end (the thread     claim units of its current phase
 *       that finishes its last unit opens     until none are left or callers
 *       the next one)                         need the core back; detach
 *     wait for the helpers to detach;      none to pick: spin briefly, sleep
 *     unpublish ; working--
 *
 * `working` counts the threads computing: callers inside pool_run (minus
 * those asleep waiting for a helper's last unit) and attached workers. A
 * worker attaches only while working < pool_size, and detaches between
 * units when working > pool_size, so two callers on a two-core pool run
 * one thread each and a lone caller gets every worker: no core is shared
 * by two spinning threads.
 *
 * A job's storage belongs to its caller: a worker touches it only while
 * attached (helpers > 0), and the caller unpublishes it only once helpers
 * is 0, both under the mutex.
 *
 * Sleeping: every wait spins a short while on atomics, then sleeps on a
 * condition variable with its `sleepers` count raised: idle workers on one
 * (woken by a new job or a phase opened, and only while a core is free),
 * callers on the other (woken by a phase opened or a helper detached). A
 * thread that changes state a sleeper waits for does so with a
 * sequentially consistent atomic and then broadcasts under the mutex if
 * sleepers > 0, so no wake-up is lost. A caller leaving pool_run frees a
 * core without waking anyone: between two runs of one caller that would
 * wake a worker for nothing; the next phase opened anywhere wakes it.
 *
 * Two ends (pool_job.paired): on two threads the caller claims a phase's
 * paired units from the front and the helper from the back (one CAS on a
 * word holding both ends), then both take the rest in order. The layer
 * executor lists its units in the order of the rows (batch items) they
 * touch, so every step of a run keeps the first rows on the caller's core
 * and the last ones on the helper's: dynamic claiming otherwise dealt the
 * rows out alternately, and each phase read about half its input from the
 * other core's cache (W2 at 2 threads: the attention's 12 units took 63 us
 * of busy time against 38 at 1 thread, pool14's trace). With more threads
 * there is no pairing (a third thread would take the caller's rows).
 *
 * Callers beyond the cores wait: at most max_callers (the pool's size or
 * the online CPUs, the larger) are inside pool_run at once; the others
 * sleep at its door until one leaves. More callers than cores would share
 * cores by time slices, each evicting the others' weights and buffers from
 * the caches: 8 client threads on 2 cores spent 13-19 % more CPU time per
 * run than one client did, for no more throughput.
 *
 * Runs (pool_run_begin/end, one per mha_run) split the cores between
 * callers for longer than a job: with R runs in progress a job may use
 * pool_size / R threads (its share, at least 1). Without it, two callers on
 * a two-core pool kept trading the worker: a caller between two of its
 * jobs (a step's own work, a copy) left its core free, the worker joined
 * the other caller's job, and left it again a few units later when the
 * first came back, each time splitting a phase between two threads (and
 * its barrier) and spinning on the rest. A job beyond its share is not
 * published at all (cap 1: the caller works it alone, no mutex), and a
 * helper beyond the job's share leaves between units. The door of runs is
 * first come first in: run tickets are taken in arrival order and ticket t
 * enters once t < finished runs + max_callers; it sleeps on one of a few
 * condition variables chosen by t, and the run that lets it in wakes that
 * one only. */
#if defined(MHA_POOL_TRACE) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu */
#endif
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define POOL_X86 1
#endif

/* MHA_POOL_TRACE (a build flag, off in every build the project makes):
 * each unit, phase-end wait, helper's stay and job is recorded with its
 * thread and times into the pool's buffer, and written out as text by
 * pool_destroy to the file named by the environment variable
 * MHA_POOL_TRACE_FILE: what a measurement of the threads' idle time reads
 * (tools/pool_trace.py sums it per phase). */
#if defined(MHA_POOL_TRACE)
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef struct pool_trace_event {
    uint64_t t0, t1;
    int64_t job, unit;
    int32_t phase, worker, cpu;
    char kind; /* U unit, W phase-end wait, A helper's stay, J job, E end wait, R / T touch */
    int64_t touch[6]; /* R, T (pool_trace_touch): base, ld, r0, r1, c0, c1 */
} pool_trace_event;
#define POOL_TRACE_CAP ((size_t)1 << 22)
static uint64_t pool_trace_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
/* The unit this thread runs now (pool_trace_touch's job, phase, unit) */
static _Thread_local struct {
    struct pool *p;
    const pool_job *job;
    int phase, worker;
    int64_t unit;
} pool_trace_unit;
#define POOL_TRACE_UNIT(pl, jb, ph, u, w)                                                          \
    (pool_trace_unit.p = (pl), pool_trace_unit.job = (jb), pool_trace_unit.phase = (ph),           \
     pool_trace_unit.unit = (u), pool_trace_unit.worker = (w))
#define POOL_TRACE_NOW(v) const uint64_t v = pool_trace_now()
#define POOL_TRACE(p, k, jb, ph, u, w, start) pool_trace_add(p, k, jb, ph, u, w, start)
#else
#define POOL_TRACE_UNIT(pl, jb, ph, u, w) ((void)0)
#define POOL_TRACE_NOW(v) ((void)0)
#define POOL_TRACE(p, k, jb, ph, u, w, start) ((void)0)
#endif

/* Condition variables of the door of runs (sleepers by ticket). */
#define POOL_DOORS 8
/* Iterations of the pause loop before a waiter blocks: about 10-50 us. */
#define POOL_SPIN_ITERATIONS 2000
#define POOL_DEFAULT_STACK ((size_t)1 << 20)
/* Kernels keep their packing buffers on the stack (plugin.h: up to 256 KiB);
 * a smaller worker stack than this is raised to it. */
#define POOL_MIN_STACK ((size_t)512 << 10)

typedef struct pool_worker {
    struct pool *pool;
    int id; /* 1..n_workers */
    pthread_t thread;
} pool_worker;

typedef struct pool_waitq {
    pthread_cond_t cond;
    atomic_int sleepers;
} pool_waitq;

struct pool {
    mha_alloc_ctx alloc;
    int n_workers;
    int n_started;
    pool_worker *workers;

    pthread_mutex_t busy; /* held by a reservation (pool_try_reserve) */

    pthread_mutex_t mutex; /* guards the job list and every sleep */
    pool_waitq idle;       /* workers with nothing to join */
    pool_waitq callers;    /* callers waiting for a phase to end or helpers to leave */
    pool_job *jobs;        /* published jobs, oldest first */
    atomic_int n_jobs;
    atomic_uint work_gen;         /* moves when work appears: a job, a phase */
    atomic_int working;           /* threads computing (see above) */
    atomic_ullong worker_wakeups; /* idle workers' returns from a wait (pool_worker_wakeups) */
    atomic_int stop;
    /* callers inside pool_run, at most max_callers (pool_enter) */
    atomic_int callers_in;
    int max_callers;
    pool_waitq gate; /* callers waiting for their turn */

    /* runs (pool_run_begin/end): in progress, tickets taken and runs
     * finished (the door), sleepers at the door by ticket mod POOL_DOORS */
    atomic_int runs;
    atomic_ullong run_tickets;
    atomic_ullong runs_done;
    atomic_int door_sleepers;
    pthread_mutex_t door_mutex; /* the door's own: see pool_run_end */
    pthread_cond_t door[POOL_DOORS];

    /* pool_scratch_take/give: each a buffer whose first POOL_SCRATCH_HEADER
     * bytes hold its usable size, or NULL */
    _Atomic(void *) scratch[POOL_SCRATCH_SLOTS];
#if defined(MHA_POOL_TRACE)
    pool_trace_event *trace;
    atomic_size_t trace_n;
#endif
};

#if defined(MHA_POOL_TRACE)
static void pool_trace_add(struct pool *p, char kind, const pool_job *job, int phase, int64_t unit,
                           int worker, uint64_t t0) {
    if (!p || !p->trace) return;
    const uint64_t t1 = pool_trace_now();
    const size_t i = atomic_fetch_add_explicit(&p->trace_n, 1, memory_order_relaxed);
    if (i >= POOL_TRACE_CAP) return;
    pool_trace_event *e = &p->trace[i];
    e->t0 = t0;
    e->t1 = t1;
    e->job = (int64_t)(uintptr_t)job;
    e->unit = unit;
    e->phase = phase;
    e->worker = worker;
    e->kind = kind;
    e->cpu = sched_getcpu();
}

void pool_trace_touch(const void *base, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      int write) {
    struct pool *p = pool_trace_unit.p;
    if (!p || !p->trace || r1 <= r0 || c1 <= c0) return;
    const size_t i = atomic_fetch_add_explicit(&p->trace_n, 1, memory_order_relaxed);
    if (i >= POOL_TRACE_CAP) return;
    pool_trace_event *e = &p->trace[i];
    e->t0 = e->t1 = pool_trace_now();
    e->job = (int64_t)(uintptr_t)pool_trace_unit.job;
    e->unit = pool_trace_unit.unit;
    e->phase = pool_trace_unit.phase;
    e->worker = pool_trace_unit.worker;
    e->kind = write ? 'T' : 'R';
    e->cpu = sched_getcpu();
    const int64_t t[6] = {(int64_t)(uintptr_t)base, ld, r0, r1, c0, c1};
    memcpy(e->touch, t, sizeof t);
}

static void pool_trace_write(struct pool *p) {
    const char *path = getenv("MHA_POOL_TRACE_FILE");
    if (!p->trace || !path) return;
    FILE *f = fopen(path, "a");
    if (f) {
        size_t n = atomic_load(&p->trace_n);
        if (n > POOL_TRACE_CAP) n = POOL_TRACE_CAP;
        fprintf(f, "# pool %p threads %d events %zu\n", (void *)p, p->n_workers + 1, n);
        for (size_t i = 0; i < n; i++) {
            const pool_trace_event *e = &p->trace[i];
            fprintf(f, "%c %lld %d %lld %d %llu %llu %d", e->kind, (long long)e->job, e->phase,
                    (long long)e->unit, e->worker, (unsigned long long)e->t0,
                    (unsigned long long)e->t1, e->cpu);
            if (e->kind == 'R' || e->kind == 'T')
                fprintf(f, " %lld %lld %lld %lld %lld %lld", (long long)e->touch[0],
                        (long long)e->touch[1], (long long)e->touch[2], (long long)e->touch[3],
                        (long long)e->touch[4], (long long)e->touch[5]);
            fputc('\n', f);
        }
        fclose(f);
    }
    free(p->trace);
    p->trace = NULL;
}
#endif

#define POOL_SCRATCH_HEADER 64 /* keeps the usable part 64-byte aligned */
/* Smaller buffers are not kept: the C library reuses freed heap memory of
 * that size without new page faults, and a run that still allocates keeps
 * its allocation-failure paths reachable. */
#define POOL_SCRATCH_KEEP_MIN ((size_t)1 << 20)

/* Threads a job may use now: the pool's size split between the runs in
 * progress (every thread when there are none: a job outside a run). */
static int pool_share(const struct pool *p) {
    const int size = p->n_workers + 1;
    const int runs = atomic_load_explicit(&p->runs, memory_order_relaxed);
    if (runs <= 1) return size;
    return size / runs > 1 ? size / runs : 1;
}

static void pool_cpu_relax(void) {
#if defined(POOL_X86)
    _mm_pause();
#endif
}

void pool_wait_step(unsigned spins) {
    if (spins % 64 == 63)
        sched_yield();
    else
        pool_cpu_relax();
}

unsigned pool_fp_flush_denormals(void) {
#if defined(POOL_X86)
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
#else
    return 0;
#endif
}

void pool_fp_restore(unsigned saved) {
#if defined(POOL_X86)
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

/* ---- scratch kept between runs ---- */

void *pool_scratch_take(pool *p, const mha_alloc_ctx *a, int slot, size_t bytes) {
    if (!p || slot < 0 || slot >= POOL_SCRATCH_SLOTS) return mha_malloc(a, bytes ? bytes : 1);
    char *buf = atomic_exchange_explicit(&p->scratch[slot], NULL, memory_order_acq_rel);
    if (buf) {
        size_t have;
        memcpy(&have, buf, sizeof have);
        if (have >= bytes) return buf + POOL_SCRATCH_HEADER;
        mha_free(&p->alloc, buf);
    }
    if (bytes > SIZE_MAX - POOL_SCRATCH_HEADER) return NULL;
    buf = mha_malloc(&p->alloc, POOL_SCRATCH_HEADER + bytes);
    if (!buf) return NULL;
    memcpy(buf, &bytes, sizeof bytes);
    return buf + POOL_SCRATCH_HEADER;
}

void pool_scratch_give(pool *p, const mha_alloc_ctx *a, int slot, void *ptr) {
    if (!ptr) return;
    if (!p || slot < 0 || slot >= POOL_SCRATCH_SLOTS) {
        mha_free(a, ptr);
        return;
    }
    void *buf = (char *)ptr - POOL_SCRATCH_HEADER;
    size_t have;
    memcpy(&have, buf, sizeof have);
    void *expected = NULL;
    if (have < POOL_SCRATCH_KEEP_MIN ||
        !atomic_compare_exchange_strong_explicit(&p->scratch[slot], &expected, buf,
                                                 memory_order_acq_rel, memory_order_acquire))
        mha_free(&p->alloc, buf);
}

size_t pool_scratch_bytes(pool *p) {
    size_t total = 0;
    for (int i = 0; p && i < POOL_SCRATCH_SLOTS; i++) {
        const char *buf = atomic_load_explicit(&p->scratch[i], memory_order_acquire);
        size_t have = 0;
        if (buf) memcpy(&have, buf, sizeof have);
        total += have;
    }
    return total;
}

/* ---- waking and sleeping ---- */

/* Called after a sequentially consistent change a sleeper may wait for. */
static void pool_wake(struct pool *p, pool_waitq *q) {
    if (atomic_load(&q->sleepers) == 0) return;
    pthread_mutex_lock(&p->mutex);
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&p->mutex);
}

/* Idle workers, if a core is free for them. */
static void pool_wake_workers(struct pool *p) {
    if (atomic_load(&p->working) < p->n_workers + 1) pool_wake(p, &p->idle);
}

/* Sleeps on q until done(p, arg) holds; p->mutex is held by the caller. */
static void pool_sleep_locked(struct pool *p, pool_waitq *q, int (*done)(struct pool *, void *),
                              void *arg) {
    atomic_fetch_add(&q->sleepers, 1);
    while (!done(p, arg))
        pthread_cond_wait(&q->cond, &p->mutex);
    atomic_fetch_sub(&q->sleepers, 1);
}

/* ---- running a job ---- */

/* The first failure wins; its message goes to the job's err. */
static void pool_job_fail(pool_job *job, mha_status st, const mha_error *unit_err) {
    int expected = MHA_OK;
    if (atomic_compare_exchange_strong(&job->status, &expected, (int)st)) {
        if (job->err && unit_err && unit_err->status == st && unit_err->message[0]) {
            job->err->status = st;
            memcpy(job->err->message, unit_err->message, sizeof job->err->message);
            atomic_store(&job->message_set, 1);
        }
    }
}

static int pool_job_cancel_requested(pool_job *job) {
    if (job->cancel && job->cancel(job->cancel_user)) {
        mha_error e;
        mha_fail(&e, MHA_ERR_CANCELLED, "run cancelled by the caller's cancel callback");
        pool_job_fail(job, MHA_ERR_CANCELLED, &e);
        return 1;
    }
    return 0;
}

/* The paired units of phase ph not yet claimed: [front, back). */
static int pool_paired_left(pool_job *job, int ph) {
    const unsigned long long v = atomic_load_explicit(&job->ends[ph], memory_order_relaxed);
    return (uint32_t)v < (uint32_t)(v >> 32);
}

/* Phase ph has units left to claim (a failed job has none: what is left is
 * claimed only to be skipped, by whoever is there). */
static int pool_job_claimable(pool_job *job) {
    int ph = atomic_load(&job->phase);
    return ph < job->n_phases &&
           (pool_paired_left(job, ph) ||
            atomic_load_explicit(&job->next_unit[ph], memory_order_relaxed) < job->n_units[ph]);
}

/* The next unit of phase ph for this worker: a paired one from its end
 * (the caller's front, a helper's back) while any are left, then the rest
 * in order; n_units or more when none is left. */
static int64_t pool_claim(pool_job *job, int ph, int worker) {
    unsigned long long v = atomic_load_explicit(&job->ends[ph], memory_order_relaxed);
    for (;;) {
        const uint32_t front = (uint32_t)v, back = (uint32_t)(v >> 32);
        if (front >= back) break;
        const unsigned long long taken = worker == 0 ? v + 1 : v - (1ull << 32);
        if (atomic_compare_exchange_weak_explicit(&job->ends[ph], &v, taken, memory_order_relaxed,
                                                  memory_order_relaxed))
            return worker == 0 ? (int64_t)front : (int64_t)back - 1;
    }
    return (int64_t)atomic_fetch_add_explicit(&job->next_unit[ph], 1, memory_order_relaxed);
}

/* Opens the phase after ph (its units were all done), skipping empty
 * phases; a failed job ends at once. The store publishes every finished
 * unit's writes to whoever claims from the next phase. */
static void pool_job_next_phase(struct pool *p, pool_job *job, int ph) {
    int next = ph + 1;
    if (atomic_load(&job->status) != MHA_OK) next = job->n_phases;
    while (next < job->n_phases && job->n_units[next] == 0)
        next++;
    atomic_store(&job->phase, next);
    /* A job worked alone (not published: its share was one thread) has no
     * helper or sleeping caller to tell, and its phases give an idle worker
     * nothing to join: waking one would only put it back to sleep (a
     * switch per phase, with many callers about once a run). */
    if (p && job->threads_used > 1) {
        atomic_fetch_add(&p->work_gen, 1);
        pool_wake(p, &p->callers);
        pool_wake_workers(p);
    }
}

/* Claims and runs units of job's current phase until none is left.
 * Returns 1 when the phase ran out of units (it may still be finishing on
 * other threads), 0 when the job is over, -1 when a helper should leave
 * (callers want the cores back). */
static int pool_work_phase(struct pool *p, pool_job *job, int worker) {
    const int ph = atomic_load(&job->phase);
    if (ph >= job->n_phases) return 0;
    const int64_t n = job->n_units[ph];
    mha_error unit_err;
    for (;;) {
        if (worker == 0 && atomic_load_explicit(&job->status, memory_order_relaxed) == MHA_OK)
            pool_job_cancel_requested(job);
        const int64_t u = pool_claim(job, ph, worker);
        if (u >= n) return 1;
        if (atomic_load_explicit(&job->status, memory_order_relaxed) == MHA_OK) {
            unit_err.status = MHA_OK;
            unit_err.message[0] = '\0';
            POOL_TRACE_NOW(t_unit);
            POOL_TRACE_UNIT(p, job, ph, u, worker);
            mha_status st = job->fn(job->ctx, ph, u, worker, &unit_err);
            POOL_TRACE_UNIT(NULL, NULL, 0, 0, 0);
            POOL_TRACE(p, 'U', job, ph, u, worker, t_unit);
            if (st != MHA_OK) pool_job_fail(job, st, &unit_err);
        }
        /* acq_rel: the thread that finishes the phase sees every unit's writes */
        if (atomic_fetch_add_explicit(&job->done_units[ph], 1, memory_order_acq_rel) + 1 == n) {
            pool_job_next_phase(p, job, ph);
            return 1;
        }
        if (worker != 0 && p &&
            (atomic_load_explicit(&p->working, memory_order_relaxed) > p->n_workers + 1 ||
             worker >= pool_share(p)))
            return -1;
    }
}

static int pool_phase_moved(struct pool *p, void *arg) {
    (void)p;
    void **a = arg;
    return atomic_load(&((pool_job *)a[0])->phase) != *(int *)a[1];
}

/* The caller's side: works its job to the end, waiting for helpers'
 * last units between phases (spinning, then asleep and not counted as
 * working, so a worker may use the core meanwhile). The cancel callback is
 * polled before each unit the caller claims, whenever a phase it worked on
 * ran out of units, and once the job is over. */
static void pool_work_own(struct pool *p, pool_job *job) {
    int end_polled = 0;
    for (;;) {
        int ph = atomic_load(&job->phase);
        if (ph >= job->n_phases) break;
        pool_work_phase(p, job, 0);
        if (atomic_load(&job->status) == MHA_OK) pool_job_cancel_requested(job);
        if (atomic_load(&job->phase) >= job->n_phases) {
            end_polled = 1;
            break;
        }
        POOL_TRACE_NOW(t_wait);
        int spins = 0;
        while (atomic_load(&job->phase) == ph && spins < POOL_SPIN_ITERATIONS) {
            pool_cpu_relax();
            spins++;
        }
        if (atomic_load(&job->phase) != ph) {
            POOL_TRACE(p, 'W', job, ph, 0, 0, t_wait);
            continue;
        }
        atomic_fetch_sub(&p->working, 1);
        pool_wake_workers(p); /* this core is free while the caller sleeps */
        pthread_mutex_lock(&p->mutex);
        void *arg[2] = {job, &ph};
        pool_sleep_locked(p, &p->callers, pool_phase_moved, arg);
        pthread_mutex_unlock(&p->mutex);
        atomic_fetch_add(&p->working, 1);
        POOL_TRACE(p, 'W', job, ph, 1, 0, t_wait);
    }
    if (!end_polled && atomic_load(&job->status) == MHA_OK) pool_job_cancel_requested(job);
}

/* A published job a worker may join now, oldest first; p->mutex held. */
static pool_job *pool_pick_locked(struct pool *p) {
    if (atomic_load(&p->working) >= p->n_workers + 1) return NULL;
    const int share = pool_share(p);
    for (pool_job *j = p->jobs; j; j = j->next) {
        const int cap = j->threads_used < share ? j->threads_used : share;
        if (atomic_load(&j->helpers) + 1 < cap && pool_job_claimable(j)) return j;
    }
    return NULL;
}

static int pool_worker_may_go(struct pool *p, void *arg) {
    (void)arg;
    return atomic_load(&p->stop) || pool_pick_locked(p) != NULL;
}

static int pool_slot_take(pool_job *job) {
    for (int i = 1; i < job->threads_used; i++)
        if (!(job->slot_used[i / 64] >> (i % 64) & 1)) {
            job->slot_used[i / 64] |= (uint64_t)1 << (i % 64);
            return i;
        }
    return -1; /* not reached: helpers + 1 < threads_used */
}

/* A worker's share of one job: phase after phase, staying through short
 * waits for a phase to end. p->mutex is not held. */
static void pool_help(struct pool *p, pool_job *job, int slot) {
    for (;;) {
        int ph = atomic_load(&job->phase);
        int r = pool_work_phase(p, job, slot);
        if (r <= 0) return;
        POOL_TRACE_NOW(t_wait);
        int spins = 0;
        while (atomic_load(&job->phase) == ph && spins < POOL_SPIN_ITERATIONS) {
            pool_cpu_relax();
            spins++;
        }
        POOL_TRACE(p, 'W', job, ph, atomic_load(&job->phase) == ph, slot, t_wait);
        if (atomic_load(&job->phase) == ph) return; /* a long unit elsewhere: look around */
    }
}

static void *pool_worker_main(void *arg) {
    pool_worker *w = arg;
    struct pool *p = w->pool;
    pool_fp_flush_denormals();
    pthread_mutex_lock(&p->mutex);
    for (;;) {
        if (atomic_load(&p->stop)) break;
        pool_job *job = pool_pick_locked(p);
        if (job) {
            int slot = pool_slot_take(job);
            atomic_fetch_add(&job->helpers, 1);
            job->helped++;
            atomic_fetch_add(&p->working, 1);
            pthread_mutex_unlock(&p->mutex);
            POOL_TRACE_NOW(t_attach);
            pool_help(p, job, slot);
            POOL_TRACE(p, 'A', job, 0, 0, slot, t_attach);
            atomic_fetch_sub(&p->working, 1);
            pthread_mutex_lock(&p->mutex);
            job->slot_used[slot / 64] &= ~((uint64_t)1 << (slot % 64));
            atomic_fetch_sub(&job->helpers, 1);
            if (atomic_load(&p->callers.sleepers) > 0) pthread_cond_broadcast(&p->callers.cond);
            continue;
        }
        /* Nothing to join: spin a while (the next job of a caller running
         * job after job comes within microseconds), then sleep. */
        unsigned gen = atomic_load(&p->work_gen);
        pthread_mutex_unlock(&p->mutex);
        int moved = 0;
        for (int i = 0; i < POOL_SPIN_ITERATIONS && !moved; i++) {
            if (atomic_load_explicit(&p->working, memory_order_relaxed) >= p->n_workers + 1 ||
                pool_share(p) <= 1)
                break; /* the cores are taken (or every one has its run): no reason to spin */
            moved = atomic_load_explicit(&p->work_gen, memory_order_relaxed) != gen ||
                    atomic_load_explicit(&p->stop, memory_order_relaxed);
            pool_cpu_relax();
        }
        pthread_mutex_lock(&p->mutex);
        if (!moved) {
            atomic_fetch_add(&p->idle.sleepers, 1);
            while (!pool_worker_may_go(p, NULL)) {
                pthread_cond_wait(&p->idle.cond, &p->mutex);
                atomic_fetch_add_explicit(&p->worker_wakeups, 1, memory_order_relaxed);
            }
            atomic_fetch_sub(&p->idle.sleepers, 1);
        }
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

static int pool_helpers_gone(struct pool *p, void *arg) {
    (void)p;
    return atomic_load(&((pool_job *)arg)->helpers) == 0;
}

static int pool_enter_try(struct pool *p) {
    int n = atomic_load(&p->callers_in);
    while (n < p->max_callers)
        if (atomic_compare_exchange_weak(&p->callers_in, &n, n + 1)) return 1;
    return 0;
}

static int pool_may_enter(struct pool *p, void *arg) {
    (void)arg;
    return pool_enter_try(p);
}

/* A caller's turn: at once while fewer than max_callers are inside, else
 * asleep until one leaves (its sleepers count raised before the last try,
 * so pool_leave cannot miss it). */
static void pool_enter(struct pool *p) {
    if (pool_enter_try(p)) return;
    pthread_mutex_lock(&p->mutex);
    pool_sleep_locked(p, &p->gate, pool_may_enter, NULL);
    pthread_mutex_unlock(&p->mutex);
}

static void pool_leave(struct pool *p) {
    atomic_fetch_sub(&p->callers_in, 1);
    if (atomic_load(&p->gate.sleepers) == 0) return;
    pthread_mutex_lock(&p->mutex);
    pthread_cond_signal(&p->gate.cond);
    pthread_mutex_unlock(&p->mutex);
}

static mha_status pool_run_entered(pool *p, pool_job *job, mha_error *err);

mha_status pool_run(pool *p, pool_job *job, mha_error *err) {
    if (!job || !job->fn || job->n_phases < 1 || job->n_phases > POOL_MAX_PHASES)
        return mha_fail(err, MHA_ERR_INTERNAL, "pool_run: malformed job");
    if (!p) return pool_run_entered(p, job, err);
    pool_enter(p);
    mha_status st = pool_run_entered(p, job, err);
    pool_leave(p);
    return st;
}

static mha_status pool_run_entered(pool *p, pool_job *job, mha_error *err) {
    POOL_TRACE_NOW(t_job);
#if defined(MHA_POOL_TRACE)
    for (int i = 0; i < job->n_phases; i++)
        POOL_TRACE(p, 'N', job, i, job->n_units[i], 0, t_job);
#endif
    int cap = p ? p->n_workers + 1 : 1;
    if (job->num_threads > 0 && job->num_threads < cap) cap = job->num_threads;
    if (p && pool_share(p) < cap) cap = pool_share(p);
    job->threads_used = cap;
    for (int i = 0; i < job->n_phases; i++) {
        /* both ends only for two threads (a third would take the front
         * thread's rows); the ends are 32-bit indices */
        const int64_t paired = cap == 2 && job->paired[i] > 0 &&
                                       job->paired[i] <= job->n_units[i] &&
                                       job->paired[i] <= (int64_t)UINT32_MAX
                                   ? job->paired[i]
                                   : 0;
        atomic_init(&job->ends[i], (unsigned long long)paired << 32);
        atomic_init(&job->next_unit[i], paired);
        atomic_init(&job->done_units[i], 0);
    }
    int first = 0;
    while (first < job->n_phases && job->n_units[first] == 0)
        first++;
    atomic_init(&job->phase, first);
    atomic_init(&job->status, MHA_OK);
    atomic_init(&job->message_set, 0);
    atomic_init(&job->helpers, 0);
    memset(job->slot_used, 0, sizeof job->slot_used);
    job->helped = 0;
    job->next = job->prev = NULL;
    job->err = err;

    /* polled once before anything runs, so a job cancelled already costs nothing */
    pool_job_cancel_requested(job);
    if (p) atomic_fetch_add(&p->working, 1);
    if (cap <= 1 || atomic_load(&job->status) != MHA_OK) {
        pool_work_own(p, job);
    } else {
        pthread_mutex_lock(&p->mutex);
        pool_job **at = &p->jobs; /* appended: the list stays oldest first */
        while (*at) {
            job->prev = *at;
            at = &(*at)->next;
        }
        *at = job;
        atomic_fetch_add(&p->n_jobs, 1);
        atomic_fetch_add(&p->work_gen, 1);
        if (atomic_load(&p->idle.sleepers) > 0 && atomic_load(&p->working) < p->n_workers + 1)
            pthread_cond_broadcast(&p->idle.cond);
        pthread_mutex_unlock(&p->mutex);

        pool_work_own(p, job);

        POOL_TRACE_NOW(t_end);
        int spins = 0;
        while (atomic_load(&job->helpers) > 0 && spins < POOL_SPIN_ITERATIONS) {
            pool_cpu_relax();
            spins++;
        }
        pthread_mutex_lock(&p->mutex);
        if (atomic_load(&job->helpers) > 0)
            pool_sleep_locked(p, &p->callers, pool_helpers_gone, job);
        if (job->prev)
            job->prev->next = job->next;
        else
            p->jobs = job->next;
        if (job->next) job->next->prev = job->prev;
        atomic_fetch_sub(&p->n_jobs, 1);
        pthread_mutex_unlock(&p->mutex);
        POOL_TRACE(p, 'E', job, 0, 0, 0, t_end);
    }
    POOL_TRACE(p, 'J', job, job->n_phases, cap, 0, t_job);
    if (p) atomic_fetch_sub(&p->working, 1); /* no wake-up: see the top of the file */
    job->ran_alone = job->helped == 0;
    job->err = NULL;
    mha_status st = (mha_status)atomic_load(&job->status);
    if (st != MHA_OK && !atomic_load(&job->message_set))
        mha_fail(err, st, "run failed: %s", mha_status_text(st));
    return st;
}

int pool_run_begin(pool *p) {
    if (!p) return 1;
    /* counted from the ticket on, waiting or not: see pool_share */
    atomic_fetch_add(&p->runs, 1);
    const unsigned long long t = atomic_fetch_add(&p->run_tickets, 1);
    const unsigned long long most = (unsigned long long)p->max_callers;
    if (t >= atomic_load(&p->runs_done) + most) {
        pthread_mutex_lock(&p->door_mutex);
        atomic_fetch_add(&p->door_sleepers, 1);
        while (t >= atomic_load(&p->runs_done) + most)
            pthread_cond_wait(&p->door[t % POOL_DOORS], &p->door_mutex);
        atomic_fetch_sub(&p->door_sleepers, 1);
        pthread_mutex_unlock(&p->door_mutex);
    }
    return pool_share(p);
}

void pool_run_end(pool *p) {
    if (!p) return;
    atomic_fetch_sub(&p->runs, 1);
    /* the ticket this run's end lets in: done + max_callers - 1 */
    const unsigned long long done = atomic_fetch_add(&p->runs_done, 1) + 1;
    if (atomic_load(&p->door_sleepers) == 0) return;
    /* The lock and unlock order this after the check of a sleeper that
     * is not yet inside its wait, so the wake-up is not lost; the signal
     * itself is given without the mutex: the woken caller often runs at
     * once on this core, and finding the mutex still held it slept again
     * (with 8 clients on 2 cores that was a third of the switches). The
     * door has its own mutex, apart from the pool's job list. */
    pthread_mutex_lock(&p->door_mutex);
    pthread_mutex_unlock(&p->door_mutex);
    pthread_cond_broadcast(&p->door[(done + (unsigned long long)p->max_callers - 1) % POOL_DOORS]);
}

int pool_try_reserve(pool *p) {
    if (!p || pthread_mutex_trylock(&p->busy) != 0) return 0;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&p->working, &idle, p->n_workers + 1)) {
        pthread_mutex_unlock(&p->busy);
        return 0;
    }
    return 1;
}

void pool_release(pool *p) {
    if (!p) return;
    atomic_fetch_sub(&p->working, p->n_workers + 1);
    pthread_mutex_unlock(&p->busy);
    pool_wake_workers(p);
}

/* ---- life cycle ---- */

unsigned long long pool_worker_wakeups(pool *p) {
    return p ? atomic_load_explicit(&p->worker_wakeups, memory_order_relaxed) : 0;
}

int pool_size(const pool *p) {
    return p ? p->n_workers + 1 : 1;
}

int pool_threads(const pool *p) {
    return p ? pool_share(p) : 1;
}

static void pool_stop_workers(struct pool *p) {
    pthread_mutex_lock(&p->mutex);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->idle.cond);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
    p->n_started = 0;
}

static void pool_free_memory(struct pool *p) {
    mha_alloc_ctx a = p->alloc;
    for (int i = 0; i < POOL_SCRATCH_SLOTS; i++)
        mha_free(&a, atomic_exchange(&p->scratch[i], NULL));
    mha_free(&a, p->workers);
    mha_free(&a, p);
}

void pool_destroy(pool *p) {
    if (!p) return;
    pool_stop_workers(p);
#if defined(MHA_POOL_TRACE)
    pool_trace_write(p);
#endif
    pthread_mutex_destroy(&p->busy);
    pthread_mutex_destroy(&p->mutex);
    pthread_mutex_destroy(&p->door_mutex);
    pthread_cond_destroy(&p->idle.cond);
    pthread_cond_destroy(&p->callers.cond);
    pthread_cond_destroy(&p->gate.cond);
    for (int i = 0; i < POOL_DOORS; i++)
        pthread_cond_destroy(&p->door[i]);
    pool_free_memory(p);
}

void pool_abandon(pool *p) {
    if (!p) return;
    pool_free_memory(p);
}

mha_status pool_create(const mha_alloc_ctx *a, int n_workers, size_t stack_bytes, pool **out,
                       mha_error *err) {
    *out = NULL;
    if (n_workers < 0 || n_workers >= POOL_MAX_THREADS)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "thread pool: %d workers requested, the limit is %d", n_workers,
                        POOL_MAX_THREADS - 1);
    struct pool *p = mha_calloc(a, 1, sizeof *p);
    if (!p) return mha_fail(err, MHA_ERR_NO_MEMORY, "thread pool: out of memory");
    if (a) p->alloc = *a;
    p->n_workers = n_workers;
    if (n_workers > 0) {
        p->workers = mha_calloc(a, (size_t)n_workers, sizeof *p->workers);
        if (!p->workers) {
            mha_free(a, p);
            return mha_fail(err, MHA_ERR_NO_MEMORY, "thread pool: out of memory for %d workers",
                            n_workers);
        }
    }
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->idle.cond, NULL);
    pthread_cond_init(&p->callers.cond, NULL);
    pthread_cond_init(&p->gate.cond, NULL);
    atomic_init(&p->idle.sleepers, 0);
    atomic_init(&p->callers.sleepers, 0);
    atomic_init(&p->gate.sleepers, 0);
    atomic_init(&p->callers_in, 0);
    atomic_init(&p->runs, 0);
    atomic_init(&p->run_tickets, 0);
    atomic_init(&p->runs_done, 0);
    atomic_init(&p->door_sleepers, 0);
    pthread_mutex_init(&p->door_mutex, NULL);
    for (int i = 0; i < POOL_DOORS; i++)
        pthread_cond_init(&p->door[i], NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->max_callers = cpus > n_workers + 1 && cpus < INT_MAX ? (int)cpus : n_workers + 1;
    p->jobs = NULL;
    atomic_init(&p->n_jobs, 0);
    atomic_init(&p->work_gen, 0);
    atomic_init(&p->working, 0);
    atomic_init(&p->worker_wakeups, 0);
    atomic_init(&p->stop, 0);
    for (int i = 0; i < POOL_SCRATCH_SLOTS; i++)
        atomic_init(&p->scratch[i], NULL);
#if defined(MHA_POOL_TRACE)
    p->trace = getenv("MHA_POOL_TRACE_FILE") ? malloc(POOL_TRACE_CAP * sizeof *p->trace) : NULL;
    atomic_init(&p->trace_n, 0);
#endif
    if (n_workers == 0) {
        *out = p;
        return MHA_OK;
    }

    /* An explicit stack size: the C library's default (often 8 MiB of
     * address space per thread) is not what an embedding program chose. */
    size_t stack = stack_bytes ? stack_bytes : POOL_DEFAULT_STACK;
    if (stack < POOL_MIN_STACK) stack = POOL_MIN_STACK;
    if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0) stack = (stack + (size_t)page - 1) / (size_t)page * (size_t)page;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_attr_setstacksize(&attr, stack);
    if (rc != 0) {
        pthread_attr_destroy(&attr);
        pool_destroy(p);
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "thread pool: stack size %zu bytes refused: %s", stack, strerror(rc));
    }
    /* Workers block every signal (they inherit the mask at creation), so
     * the program's signals go to its own threads -- but the faults a
     * worker's own access raises: blocked, they ended the process past the
     * program's handlers (a mapped input cut short, a sanitizer's report). */
    sigset_t all, old;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < n_workers; i++) {
        p->workers[i].pool = p;
        p->workers[i].id = i + 1;
        rc = pthread_create(&p->workers[i].thread, &attr, pool_worker_main, &p->workers[i]);
        if (rc != 0) break;
        p->n_started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        int started = p->n_started;
        pool_destroy(p);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "thread pool: cannot start worker %d of %d: %s",
                        started + 1, n_workers, strerror(rc));
    }
    *out = p;
    return MHA_OK;
}
