/* pool.h -- the thread pool of a runtime: a fixed set of worker threads
 * that help the callers of pool_run with their jobs.
 *
 * A job is a short list of phases; each phase is a range of unit indices
 * [0, n_units). The calling thread works its own job; idle workers join any
 * published job that still has units to hand out, so several callers'
 * jobs share the workers at once. Units are claimed from one atomic counter
 * per phase; a phase ends when its last unit is done (a count of finished
 * units, not a barrier of participants), and only then are the next
 * phase's units handed out (the next phase reads what the previous one
 * wrote).
 *
 * Cores are not oversubscribed: the pool counts the threads working
 * (callers inside pool_run and workers helping them) and a worker joins a
 * job only while that count is below pool_size; it leaves a job between
 * units when callers took the cores meanwhile. Waits spin briefly, then
 * block on a condition variable, so idle workers cost nothing.
 *
 * The pool keeps no global state; all of it lives in the struct pool. */
#ifndef MHA_POOL_H
#define MHA_POOL_H

#include <stdatomic.h>

#include "common.h"

#define POOL_MAX_PHASES 5
#define POOL_MAX_THREADS 1024

/* One unit of work. worker is in [0, threads used): index for per-worker
 * scratch. A non-OK status stops the job (the remaining units are skipped)
 * and becomes the job's status; err may receive the message (only the
 * first failing unit's message is kept). */
typedef mha_status (*pool_unit_fn)(void *ctx, int phase, int64_t unit, int worker, mha_error *err);

typedef struct pool_job {
    /* filled by the caller */
    pool_unit_fn fn;
    void *ctx;
    int n_phases;                     /* 1..POOL_MAX_PHASES */
    int64_t n_units[POOL_MAX_PHASES]; /* units per phase (may be 0) */
    /* Units [0, paired[ph]) of phase ph go out from both ends when the job
     * runs on two threads: the caller claims them from the front, the
     * helper from the back, and the rest [paired, n_units) after them, in
     * order, to either. Rows of consecutive phases and jobs then stay on
     * one core: the caller computes the first rows (batch items) of every
     * step, the helper the last ones, and only the units about where they
     * meet read what the other core wrote. 0 (memset): in order only. */
    int64_t paired[POOL_MAX_PHASES];
    int num_threads; /* wanted, 0 = all; capped to the pool */
    /* Polled on the calling thread only: before the job starts, before
     * each unit it claims, when a phase it worked on runs out of units, and
     * once the job is over (how often in all depends on how many units
     * the workers took); nonzero ends the job with MHA_ERR_CANCELLED. May
     * be NULL. */
    int (*cancel)(void *user);
    void *cancel_user;

    /* filled by pool_run */
    int threads_used; /* most participants at once (worker indices are below it) */
    int ran_alone;    /* no worker helped (the cores were taken, or nothing to share) */

    /* internal: the claim state, read by every participant */
    atomic_int phase; /* current phase; n_phases once the job is over */
    atomic_llong next_unit[POOL_MAX_PHASES];
    atomic_ullong ends[POOL_MAX_PHASES]; /* paired units: front | back << 32 */
    atomic_llong done_units[POOL_MAX_PHASES];
    atomic_int status;      /* MHA_OK until a unit fails */
    atomic_int message_set; /* err holds a unit's message */
    mha_error *err;
    /* internal: guarded by the pool's mutex */
    struct pool_job *next, *prev;              /* the pool's list of published jobs */
    atomic_int helpers;                        /* workers attached now (read unlocked to spin) */
    int helped;                                /* workers that ever attached */
    uint64_t slot_used[POOL_MAX_THREADS / 64]; /* worker indices taken by helpers */
} pool_job;

typedef struct pool pool;

/* Starts n_workers threads (0 is allowed: the caller then works alone) with
 * the given stack size (0 = 1 MiB). Each worker sets FTZ/DAZ (flush
 * denormals to zero) before its first unit. */
mha_status pool_create(const mha_alloc_ctx *a, int n_workers, size_t stack_bytes, pool **out,
                       mha_error *err);

/* Stops and joins the workers, frees the pool. Accepts NULL. */
void pool_destroy(pool *p);

/* In a forked child the worker threads do not exist: frees the memory
 * without joining or touching the (possibly locked) mutexes. */
void pool_abandon(pool *p);

/* Threads a job may use: n_workers + 1. */
int pool_size(const pool *p);

/* Threads a job started now may use: pool_size split between the runs in
 * progress (pool_run_begin below), at least 1; what a step plans its
 * units and per-thread scratch for (p NULL: 1). A job never gets more
 * threads than its share at pool_run, so worker indices stay below it. */
int pool_threads(const pool *p);

/* Runs job to completion on the calling thread plus up to
 * job->num_threads - 1 workers at once, as many as are idle: jobs of
 * concurrent callers are served together, each caller working its own job
 * and the workers helping wherever units remain. Which thread runs which
 * unit varies from run to run; results must not depend on it. p may be
 * NULL (caller alone). Returns the job's status: MHA_OK, the first failing
 * unit's status, or MHA_ERR_CANCELLED. */
mha_status pool_run(pool *p, pool_job *job, mha_error *err);

/* A run: the jobs of one caller that belong together (one mha_run).
 * While several runs are in progress each takes its share of the cores,
 * pool_size / runs (at least 1; runs waiting at the door below count too,
 * so a run's end that lets the next one in never shows the runs inside a
 * core to spare for a moment): on a two-thread pool two runs compute one
 * core each, their jobs unpublished (no handoffs, no worker spinning on
 * someone else's phase), and a lone run gets every thread. The share is
 * read again at every pool_run, so a run that started alone gives up its
 * helpers when a second one begins, and one that started beside another
 * gets the workers back once that one ends. At most max(pool size, online
 * CPUs) runs are in progress; later ones wait at pool_run_begin, first
 * come first in (tickets), so no caller is passed over under load.
 * pool_run_begin returns the share at the run's start (p NULL: 1); every
 * pool_run_begin needs its pool_run_end on the same pool. A run may nest
 * no other run of the same pool (it could wait at the door for itself). */
int pool_run_begin(pool *p);
void pool_run_end(pool *p);

/* Takes the pool for work that is parallel in some other way (a
 * self-parallel plugin's own threads), so only one such run is active at a
 * time and the workers stay out of the way meanwhile (the reservation
 * counts as every core working): 1 = taken (pool_release later, from the
 * same thread), 0 = another reservation holds it, or other callers are
 * working (or p is NULL); the caller then runs one thread. */
int pool_try_reserve(pool *p);
void pool_release(pool *p);

/* How many times an idle worker woke from its sleep (for whatever
 * reason, found work or not) since pool_create: what the pool's wake-ups
 * cost in context switches, for tests and measurements. */
unsigned long long pool_worker_wakeups(pool *p);

/* Sets FTZ and DAZ in the calling thread's FP control register; returns the
 * previous value for fp_restore. A no-op (returning 0) off x86. */
unsigned pool_fp_flush_denormals(void);
void pool_fp_restore(unsigned saved);

/* Scratch memory kept by the pool between runs, so a run does not map,
 * fault in and unmap its intermediates every time (W1's 50 MB of Q|K|V and
 * attention output cost ~12k page faults per run before). Slot s holds at
 * most one buffer; take hands it out (NULL slot: a new one) when it has at
 * least bytes, else frees it and allocates; give puts it back (or frees it
 * when another run refilled the slot meanwhile). Thread-safe: concurrent
 * runs each get their own buffer. Buffers under 1 MiB are freed, not kept
 * (malloc serves those without page faults). Contents are undefined (not zeroed);
 * 64-byte aligned. p may be NULL (plain allocation with a, give frees).
 * The buffers are freed by pool_destroy / pool_abandon. */
#define POOL_SCRATCH_SLOTS 2
void *pool_scratch_take(pool *p, const mha_alloc_ctx *a, int slot, size_t bytes);
void pool_scratch_give(pool *p, const mha_alloc_ctx *a, int slot, void *buf);
/* Bytes of the scratch buffers p keeps (while no run takes or gives one). */
size_t pool_scratch_bytes(pool *p);

/* MHA_POOL_TRACE builds only (a measurement): the unit running on this
 * thread read (write 0) or wrote (1) rows [r0, r1) of a matrix at base,
 * row stride ld bytes, bytes [c0, c1) of each row; the trace then says
 * which cache lines a thread reads that another wrote (tools/pool_trace.py
 * --cross). A no-op in every other build. */
#if defined(MHA_POOL_TRACE)
void pool_trace_touch(const void *base, int64_t ld, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      int write);
#else
static inline void pool_trace_touch(const void *base, int64_t ld, int64_t r0, int64_t r1,
                                    int64_t c0, int64_t c1, int write) {
    (void)base;
    (void)ld;
    (void)r0;
    (void)r1;
    (void)c0;
    (void)c1;
    (void)write;
}
#endif

/* One step of a unit's wait for a unit of its job that another thread is
 * running (exec's Q|K|V pieces): a pause, and every 64th step a yield of
 * the CPU, so that a peer sharing it (an oversubscribed machine) runs.
 * spins counts the steps so far. */
void pool_wait_step(unsigned spins);

#endif
