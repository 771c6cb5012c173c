/* pool.c -- the thread pool of a runtime (see pool.h).
 *
 * Design (after ggml's CPU threadpool): all state lives in one struct pool;
 * the thread that calls pool_run is worker 0 and works like the others; one
 * atomic counter per phase hands out unit indices; a barrier ends each phase.
 *
 *   pool_run(job):                       worker i (1..n-1):
 *     try-lock busy, else run alone        wait until job_word changes
 *     publish job, wake workers            if i < active: for each phase:
 *     for each phase:                          claim units, barrier
 *        claim units, barrier              back to waiting
 *     unlock busy
 *
 * job_word packs (job generation << 16 | active thread count) in one atomic,
 * so a worker reads both at once: a worker that does not take part in a job
 * never dereferences the job (whose storage belongs to the caller and may be
 * gone by then). A worker that takes part cannot miss its job, because the
 * caller waits for it at the job's final barrier.
 *
 * Waiting (for a job, at a barrier) spins a short while, then sleeps on a
 * condition variable. The state changes that end a wait are made while
 * holding the mutex, so no wake-up is ever lost. */
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

struct pool {
    mha_alloc_ctx alloc;
    int n_workers;
    int n_started;
    pool_worker *workers;

    pthread_mutex_t busy; /* held by the job being served */

    pthread_mutex_t mutex; /* guards the sleeping side of every wait */
    pthread_cond_t job_cond;
    pthread_cond_t barrier_cond;
    atomic_ullong job_word; /* generation << 16 | active threads */
    _Atomic(pool_job *) job;
    atomic_int stop;

    atomic_int barrier_arrived;
    atomic_uint barrier_gen;

    /* pool_scratch_take/give: each a buffer whose first POOL_SCRATCH_HEADER
     * bytes hold its usable size, or NULL */
    _Atomic(void *) scratch[POOL_SCRATCH_SLOTS];
};

#define POOL_SCRATCH_HEADER 64 /* keeps the usable part 64-byte aligned */
/* Smaller buffers are not kept: the C library reuses freed heap memory of
 * that size without new page faults, and a run that still allocates keeps
 * its allocation-failure paths reachable. */
#define POOL_SCRATCH_KEEP_MIN ((size_t)1 << 20)

#define POOL_ACTIVE_BITS 16
#define POOL_ACTIVE_MASK ((1ull << POOL_ACTIVE_BITS) - 1)

static void pool_cpu_relax(void) {
#if defined(POOL_X86)
    _mm_pause();
#endif
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

/* ---- barrier ---- */

/* Every one of n participants calls this; it returns once all n arrived.
 * The last to arrive resets the count (before the generation moves on, so a
 * fast thread re-entering the next barrier counts from zero) and wakes the
 * others. */
static void pool_barrier(struct pool *p, int n) {
    if (n <= 1) return;
    unsigned gen = atomic_load_explicit(&p->barrier_gen, memory_order_acquire);
    int arrived = atomic_fetch_add_explicit(&p->barrier_arrived, 1, memory_order_acq_rel);
    if (arrived == n - 1) {
        atomic_store_explicit(&p->barrier_arrived, 0, memory_order_relaxed);
        pthread_mutex_lock(&p->mutex);
        atomic_fetch_add_explicit(&p->barrier_gen, 1, memory_order_acq_rel);
        pthread_cond_broadcast(&p->barrier_cond);
        pthread_mutex_unlock(&p->mutex);
        return;
    }
    for (int i = 0; i < POOL_SPIN_ITERATIONS; i++) {
        if (atomic_load_explicit(&p->barrier_gen, memory_order_acquire) != gen) return;
        pool_cpu_relax();
    }
    pthread_mutex_lock(&p->mutex);
    while (atomic_load_explicit(&p->barrier_gen, memory_order_acquire) == gen)
        pthread_cond_wait(&p->barrier_cond, &p->mutex);
    pthread_mutex_unlock(&p->mutex);
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

static void pool_run_units(pool_job *job, int phase, int worker) {
    const int64_t n = job->n_units[phase];
    mha_error unit_err;
    while (atomic_load_explicit(&job->status, memory_order_relaxed) == MHA_OK) {
        if (worker == 0 && pool_job_cancel_requested(job)) return;
        int64_t u =
            (int64_t)atomic_fetch_add_explicit(&job->next_unit[phase], 1, memory_order_relaxed);
        if (u >= n) return;
        unit_err.status = MHA_OK;
        unit_err.message[0] = '\0';
        mha_status st = job->fn(job->ctx, phase, u, worker, &unit_err);
        if (st != MHA_OK) {
            pool_job_fail(job, st, &unit_err);
            return;
        }
    }
}

/* One participant's share of a job: every phase, each ended by a barrier
 * (the last one tells the caller that every worker is done with the job). */
static void pool_work_job(struct pool *p, pool_job *job, int worker, int active) {
    /* Read once: after the final barrier the job's storage may already be
     * reused by the caller, so the loop must not look at it again. */
    const int n_phases = job->n_phases;
    for (int phase = 0; phase < n_phases; phase++) {
        pool_run_units(job, phase, worker);
        if (worker == 0 && atomic_load(&job->status) == MHA_OK) pool_job_cancel_requested(job);
        pool_barrier(p, active);
    }
}

static void *pool_worker_main(void *arg) {
    pool_worker *w = arg;
    struct pool *p = w->pool;
    pool_fp_flush_denormals();
    unsigned long long seen_gen = 0;
    for (;;) {
        unsigned long long word = 0;
        int spins = 0;
        for (;;) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
            word = atomic_load_explicit(&p->job_word, memory_order_acquire);
            if ((word >> POOL_ACTIVE_BITS) != seen_gen) break;
            if (spins < POOL_SPIN_ITERATIONS) {
                spins++;
                pool_cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mutex);
            while (!atomic_load_explicit(&p->stop, memory_order_acquire) &&
                   (atomic_load_explicit(&p->job_word, memory_order_acquire) >> POOL_ACTIVE_BITS) ==
                       seen_gen)
                pthread_cond_wait(&p->job_cond, &p->mutex);
            pthread_mutex_unlock(&p->mutex);
        }
        seen_gen = word >> POOL_ACTIVE_BITS;
        int active = (int)(word & POOL_ACTIVE_MASK);
        if (w->id < active) {
            pool_job *job = atomic_load_explicit(&p->job, memory_order_acquire);
            pool_work_job(p, job, w->id, active);
        }
    }
}

mha_status pool_run(pool *p, pool_job *job, mha_error *err) {
    if (!job || !job->fn || job->n_phases < 1 || job->n_phases > POOL_MAX_PHASES)
        return mha_fail(err, MHA_ERR_INTERNAL, "pool_run: malformed job");
    for (int i = 0; i < job->n_phases; i++)
        atomic_init(&job->next_unit[i], 0);
    atomic_init(&job->status, MHA_OK);
    atomic_init(&job->message_set, 0);
    job->err = err;
    job->ran_alone = 0;

    int active = p ? p->n_workers + 1 : 1;
    if (job->num_threads > 0 && job->num_threads < active) active = job->num_threads;
    int locked = 0;
    if (active > 1) {
        if (pthread_mutex_trylock(&p->busy) == 0) {
            locked = 1;
        } else {
            active = 1;
            job->ran_alone = 1;
        }
    }
    job->threads_used = active;

    if (!locked) {
        for (int phase = 0; phase < job->n_phases; phase++) {
            pool_run_units(job, phase, 0);
            if (atomic_load(&job->status) == MHA_OK) pool_job_cancel_requested(job);
        }
    } else {
        atomic_store_explicit(&p->job, job, memory_order_release);
        pthread_mutex_lock(&p->mutex);
        unsigned long long word = atomic_load_explicit(&p->job_word, memory_order_relaxed);
        unsigned long long gen = (word >> POOL_ACTIVE_BITS) + 1;
        atomic_store_explicit(&p->job_word, (gen << POOL_ACTIVE_BITS) | (unsigned)active,
                              memory_order_release);
        pthread_cond_broadcast(&p->job_cond);
        pthread_mutex_unlock(&p->mutex);
        pool_work_job(p, job, 0, active);
        pthread_mutex_unlock(&p->busy);
    }
    job->err = NULL;
    mha_status st = (mha_status)atomic_load(&job->status);
    if (st != MHA_OK && !atomic_load(&job->message_set))
        mha_fail(err, st, "run failed: %s", mha_status_text(st));
    return st;
}

int pool_try_reserve(pool *p) {
    return p && pthread_mutex_trylock(&p->busy) == 0;
}

void pool_release(pool *p) {
    if (p) pthread_mutex_unlock(&p->busy);
}

/* ---- life cycle ---- */

int pool_size(const pool *p) {
    return p ? p->n_workers + 1 : 1;
}

static void pool_stop_workers(struct pool *p) {
    pthread_mutex_lock(&p->mutex);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->job_cond);
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
    pthread_mutex_destroy(&p->busy);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->job_cond);
    pthread_cond_destroy(&p->barrier_cond);
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
    pthread_cond_init(&p->job_cond, NULL);
    pthread_cond_init(&p->barrier_cond, NULL);
    atomic_init(&p->job_word, 0);
    atomic_init(&p->job, NULL);
    atomic_init(&p->stop, 0);
    atomic_init(&p->barrier_arrived, 0);
    atomic_init(&p->barrier_gen, 0);
    for (int i = 0; i < POOL_SCRATCH_SLOTS; i++)
        atomic_init(&p->scratch[i], NULL);
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
     * the program's signals go to its own threads. */
    sigset_t all, old;
    sigfillset(&all);
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
