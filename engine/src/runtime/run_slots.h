/* run_slots.h -- who computes the runs of a runtime (run_slots.c).
 *
 * At most `max` runs compute at once (max(runtime threads, online CPUs),
 * the pool's door). Callers beyond them wait in one line, oldest first, and
 * a thread that holds a slot computes the runs of the line in its order,
 * whosever they are, on the core it already holds, waking each run's
 * caller once its answer is ready:
 *
 *   run(r):  lock; take a free slot if there is one
 *            slot and an empty line: compute r
 *            else: r joins the line; until r is done:
 *              with a slot: compute the oldest run of the line (r at last),
 *                wake its caller; nothing to compute (r taken by another
 *                thread): leave the slot, sleep until r is done
 *              without one: sleep until r is done or a slot is free (take it)
 *            r done, with a slot: a closed loop (the caller came back at
 *              once: RUN_SLOTS_CLOSED_GAP_US) computes RUN_SLOTS_HANDED_MAX
 *              more and leaves; an open loop leaves at once and tells
 *   leave:   an own_thread run waiting gets the slot (passed, woken)
 *            else the slot is free: the first caller to come takes it (a
 *            thread coming back with its next run, most often); one
 *            waiting caller is told (woken) in case none comes: at once
 *            if no slot computes (or runs are long, or the leaving thread
 *            is an open loop's), else once a slot's thread takes its next
 *            run with the slot still free
 *
 * Before (serve13), a thread that left passed its slot to the oldest
 * waiting caller and woke it to compute: every second run of a slot began
 * with a wake-up on a core's critical path, and with 8 saturated clients
 * on 2 cores the scheduler left half the cores' time idle (the woken thread
 * queued behind the other core's run, or behind other processes, while
 * the freed core had nothing). Now a caller that comes back with its next
 * run finds the slot free and computes at once (the oldest run first).
 * serveB14 still told a waiting caller of every slot left free: with 8
 * clients on 2 cores it woke, took the slot before the leaving thread came
 * back, and that thread's next run then waited asleep (0.93 voluntary
 * switches a request). While another slot computes (and runs are short:
 * RUN_SLOTS_TELL_LATE_MS), the tell now waits for that slot's next run:
 * by then the leaving thread is back (0.80 switches a request), or the
 * slot has stayed free about a run and a waiting caller takes it.
 * Each result is bitwise what its caller would compute (a run does not
 * depend on the thread that computes it), and runs start in arrival order.
 * A thread computes runs of others before its own only while its own waits
 * in the line, and at most RUN_SLOTS_HANDED_MAX after it.
 *
 * A slot holds the pool's run (pool_run_begin/end) for its whole tenure;
 * a slot passed or freed while runs wait keeps it (free_held) until it is
 * taken or the line empties, so the runs in progress never widen for a
 * moment between two tenures of one slot. */
#ifndef MHA_RUN_SLOTS_H
#define MHA_RUN_SLOTS_H

#include <pthread.h>
#include <stdint.h>

#include "mha/mha.h"
#include "pool.h"

/* Runs of other callers a thread computes after its own before it leaves
 * its slot (each delays its own caller's return by about one run), when
 * its caller is a closed loop (RUN_SLOTS_CLOSED_GAP_US). */
#define RUN_SLOTS_HANDED_MAX 1

/* A thread that came back to run_slots_run within this time (microseconds
 * of the clock) of its last return is a closed loop: its caller computes
 * runs back to back, so after its own run it computes RUN_SLOTS_HANDED_MAX
 * waiting ones and leaves its slot untold (it comes back and takes it; a
 * caller told would take it first and the returning thread's next run
 * would wait asleep: serveA15). A thread that came back later (an open
 * loop: a server's client that sleeps until its next request) returns at
 * once after its own run and tells a waiting caller, which computes its own
 * run in 0.1-0.3 ms (its wake-up) where the one more run had added a whole
 * run (1-3 ms) to this caller's answer. A thread's first run counts as a
 * closed loop. */
#define RUN_SLOTS_CLOSED_GAP_US 200.0

/* A slot left free while another computes is announced to a waiting
 * caller at once only if a recent run took longer than this (ms of its
 * thread's CPU time); else when a slot's thread takes its next run, if the
 * slot is still free. */
#define RUN_SLOTS_TELL_LATE_MS 2.0

/* A caller whose run another thread takes gets this time slice from the
 * kernel (microseconds; Linux 6.12+'s custom slice of a SCHED_OTHER
 * thread, the shortest it grants; set by the taking thread) until its
 * answer is ready, then puts its own back. That thread posts the answer
 * and computes on; the woken caller waited for a core until the computing
 * thread's slice ended (1.4 ms by default on 2 CPUs, as long as a run at
 * S 32). With a shorter slice than the computing thread's, the kernel lets
 * it preempt at once: it returns its answer in microseconds. A caller
 * merely in the line keeps its slice: told of a free slot, it computes,
 * and a short slice would let it preempt the thread that left the slot
 * before that one returned. */
#define RUN_SLOTS_WAIT_SLICE_US 100

/* The kernel's struct sched_attr as of its first version (48 bytes): a
 * thread's time slice is its runtime (sched_getattr, sched_setattr). */
typedef struct run_slots_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} run_slots_sched_attr;

typedef struct run_slot_wait run_slot_wait;

typedef mha_status (*run_slots_fn)(void *ctx, mha_error *err);

typedef struct run_slots {
    pthread_mutex_t mutex;
    pool *pool;
    int max;       /* slots */
    int computing; /* slots taken */
    int waiting;
    int free_held;        /* free slots whose pool run is kept (runs wait) */
    int untold;           /* free slots no waiting caller was told of */
    double tell_late_ms;  /* RUN_SLOTS_TELL_LATE_MS (tests change it) */
    double closed_gap_us; /* RUN_SLOTS_CLOSED_GAP_US */
    double recent_ms;     /* the longest recent run (CPU ms), decaying */
    run_slot_wait *head;  /* runs waiting for a slot, oldest first */
    run_slot_wait *tail;
    unsigned long handed; /* runs computed by another caller's thread */
    unsigned long passed; /* slots passed to a waiting own_thread caller */
    unsigned long freed;  /* slots left free while runs waited */
    unsigned long told;   /* waiting callers woken to take a free slot */
    unsigned long futile; /* wake-ups that found neither the run done nor a
                           * slot to compute in (the caller slept again) */
    unsigned long opened; /* runs whose thread left at once after its own
                           * (an open loop: RUN_SLOTS_CLOSED_GAP_US) */
} run_slots;

void run_slots_init(run_slots *s, pool *p, int max);
void run_slots_destroy(run_slots *s);

/* fn(ctx, err) computed once, on this thread or (every slot taken) on the
 * thread of another caller that holds a slot; own_thread: always on this
 * thread (a run with a cancel callback, which mha.h promises is called
 * only there). Returns fn's status. */
mha_status run_slots_run(run_slots *s, run_slots_fn fn, void *ctx, int own_thread, mha_error *err);

/* What the slots hold now, and since run_slots_init: runs computed on
 * another caller's thread, slots passed to a waiting own_thread caller,
 * slots left free while runs waited. */
typedef struct run_slots_counts {
    int slots, computing, waiting;
    unsigned long handed, passed, freed, told, futile, opened;
} run_slots_counts;
void run_slots_count(run_slots *s, run_slots_counts *out);

/* run_slots_count of a runtime's slots (runtime.c; for tests). */
void runtime_run_slots_count(mha_runtime *rt, run_slots_counts *out);

#endif
