/* run_slots.h -- who computes the runs of a runtime (run_slots.c).
 *
 * At most `max` runs compute at once (max(runtime threads, online CPUs),
 * the pool's door). A caller that finds a slot free computes its run on its
 * own thread. A caller that finds every slot taken hands its run over and
 * sleeps until it is done: the next thread whose run ends computes it on
 * the core it already holds, then wakes its caller:
 *
 *   run(r):  lock; if a slot is free and nobody waits: take it, compute r
 *            else: append r; sleep until r is done (return its status)
 *                  or the slot is passed to r (compute r)
 *            then drain
 *   drain:   while runs wait: pop the oldest w
 *              if w must compute itself, or this thread computed
 *              RUN_SLOTS_HANDED_MAX runs of others since its own: pass the
 *              slot to w (wake it) and return
 *              compute w; mark it done; wake its caller
 *            free the slot
 *
 * Before, a caller beyond the slots slept at the pool's door and a run's
 * end woke it to compute: every such run began with a wake-up on the
 * critical path of a core (the scheduler placing the woken thread, often
 * on the other core, which was computing, while this one went idle). Now
 * a core whose run ends goes straight on to the next one; the only
 * wake-up is the caller's, once its answer is ready. Runs still start in
 * arrival order; each result is bitwise what its caller would compute (a
 * run does not depend on the thread that computes it). The bound on runs
 * of others keeps a thread's own caller from waiting behind a long line.
 *
 * A slot holds the pool's run (pool_run_begin/end) for its whole tenure,
 * passed with the slot, so the pool never sees the runs in progress drop
 * between two runs of one slot (the other run would widen for a moment). */
#ifndef MHA_RUN_SLOTS_H
#define MHA_RUN_SLOTS_H

#include <pthread.h>

#include "mha/mha.h"
#include "pool.h"

/* Runs of other callers a thread computes after its own before it passes
 * its slot on (each delays its own caller's return by about one run). */
#define RUN_SLOTS_HANDED_MAX 1

typedef struct run_slot_wait run_slot_wait;

typedef mha_status (*run_slots_fn)(void *ctx, mha_error *err);

typedef struct run_slots {
    pthread_mutex_t mutex;
    pool *pool;
    int max;       /* slots */
    int computing; /* slots taken */
    int waiting;
    run_slot_wait *head; /* runs waiting for a slot, oldest first */
    run_slot_wait *tail;
    unsigned long handed; /* runs computed by another caller's thread */
    unsigned long passed; /* slots passed to a waiting caller */
} run_slots;

void run_slots_init(run_slots *s, pool *p, int max);
void run_slots_destroy(run_slots *s);

/* fn(ctx, err) computed once, on this thread or (every slot taken) on the
 * thread of a run that ends; own_thread: always on this thread (a run with
 * a cancel callback, which mha.h promises is called only there). Returns
 * fn's status. */
mha_status run_slots_run(run_slots *s, run_slots_fn fn, void *ctx, int own_thread, mha_error *err);

/* What the slots hold now, and since run_slots_init: runs computed on
 * another caller's thread, and slots passed to a waiting caller. */
typedef struct run_slots_counts {
    int slots, computing, waiting;
    unsigned long handed, passed;
} run_slots_counts;
void run_slots_count(run_slots *s, run_slots_counts *out);

/* run_slots_count of a runtime's slots (runtime.c; for tests). */
void runtime_run_slots_count(mha_runtime *rt, run_slots_counts *out);

#endif
