/* run_slots.c -- the computing slots of a runtime and the runs handed to
 * them (see run_slots.h for the design). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "run_slots.h"

#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Posts a thread owes that wait for the mutex's release (a handed run, a
 * passed slot, the callers told of free slots). */
#define RUN_SLOTS_POSTS 8

enum {
    RUN_WAITING,  /* in the line */
    RUN_CLAIMED,  /* being computed (by its caller or another thread) */
    RUN_DONE,     /* status set */
    RUN_YOUR_SLOT /* an own_thread run: a slot passed to its caller */
};

/* A caller's run; on its caller's stack until it returns. */
struct run_slot_wait {
    run_slot_wait *next;
    run_slots_fn fn;
    void *ctx;
    mha_error *err;
    int own_thread;
    int state;                  /* RUN_*, under the mutex */
    int hinted;                 /* a free slot was announced to this caller, not yet seen */
    int begin;                  /* RUN_YOUR_SLOT: the slot comes without its pool run */
    unsigned posts;             /* posts promised under the mutex: all are waited for
                                 * before the caller returns (its stack goes with it) */
    long tid;                   /* the caller's thread (for its time slice) */
    int shortened;              /* its slice made short by the thread computing the run */
    run_slots_sched_attr saved; /* its attributes before (shortened) */
    mha_status status;
    /* posted outside the mutex: a waiter woken while the poster still held
     * it went back to sleep on the mutex (two more switches) */
    sem_t posted;
};

/* Waiters to post once the mutex is released (at most a few at a time). */
typedef struct run_slots_posts {
    run_slot_wait *w[RUN_SLOTS_POSTS];
    int n;
} run_slots_posts;

void run_slots_init(run_slots *s, pool *p, int max) {
    pthread_mutex_init(&s->mutex, NULL);
    s->pool = p;
    s->max = max > 0 ? max : 1;
    s->computing = 0;
    s->waiting = 0;
    s->free_held = 0;
    s->untold = 0;
    s->tell_late_ms = RUN_SLOTS_TELL_LATE_MS;
    s->closed_gap_us = RUN_SLOTS_CLOSED_GAP_US;
    s->recent_ms = 0.0;
    s->head = s->tail = NULL;
    s->handed = s->passed = s->freed = s->told = s->futile = s->opened = 0;
}

void run_slots_destroy(run_slots *s) {
    pthread_mutex_destroy(&s->mutex);
}

/* mutex released: the promised posts (w may return once posted) */
static void run_slots_post(run_slots_posts *ps) {
    for (int i = 0; i < ps->n; i++)
        sem_post(&ps->w[i]->posted);
    ps->n = 0;
}

/* A post owed to w, given once the mutex is released (or now, under it,
 * when more are owed than ps holds: a wake-up costlier, none lost).
 * (mutex held) */
static void run_slots_promise(run_slots_posts *ps, run_slot_wait *w) {
    w->posts++;
    if (ps->n == RUN_SLOTS_POSTS) run_slots_post(ps);
    ps->w[ps->n++] = w;
}

/* 0 once the kernel refused sched_getattr or sched_setattr (too old, a
 * seccomp filter): not asked again */
static atomic_int run_slots_slices = 1;

/* w's run is taken by another thread: the caller, asleep or about to be,
 * gets the short slice (RUN_SLOTS_WAIT_SLICE_US), its attributes kept in
 * w->saved for it to put back (run_slots_slice_restore). A SCHED_OTHER
 * thread only. (mutex held: w's caller reads w->shortened under it) */
static void run_slots_slice_shorten(run_slot_wait *w) {
#if defined(__linux__) && defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    if (!w->tid || !atomic_load_explicit(&run_slots_slices, memory_order_relaxed)) return;
    w->saved = (run_slots_sched_attr){.size = sizeof w->saved};
    if (syscall(SYS_sched_getattr, (pid_t)w->tid, &w->saved, sizeof w->saved, 0) != 0) {
        atomic_store_explicit(&run_slots_slices, 0, memory_order_relaxed);
        return;
    }
    /* SCHED_OTHER only (FIFO, RR, BATCH, IDLE and DEADLINE threads keep
     * what their program chose); already as short: nothing to do */
    const uint64_t slice = (uint64_t)RUN_SLOTS_WAIT_SLICE_US * 1000u;
    if (w->saved.policy != 0 || w->saved.runtime <= slice) return;
    run_slots_sched_attr a = w->saved;
    a.size = sizeof a;
    a.flags = 0;
    a.runtime = slice;
    if (syscall(SYS_sched_setattr, (pid_t)w->tid, &a, 0) == 0)
        w->shortened = 1;
    else
        atomic_store_explicit(&run_slots_slices, 0, memory_order_relaxed);
#else
    (void)w;
#endif
}

/* The caller's own attributes back (w->shortened, its run done). */
static void run_slots_slice_restore(run_slot_wait *w) {
#if defined(__linux__) && defined(SYS_sched_setattr)
    w->saved.size = sizeof w->saved;
    w->saved.flags = 0;
    (void)syscall(SYS_sched_setattr, 0, &w->saved, 0);
#else
    (void)w;
#endif
}

static void run_slots_unlink(run_slots *s, run_slot_wait *prev, run_slot_wait *w) {
    if (prev)
        prev->next = w->next;
    else
        s->head = w->next;
    if (s->tail == w) s->tail = prev;
    w->next = NULL;
    s->waiting--;
}

/* The pool's runs of free slots are kept only while runs wait (the runs in
 * progress must not widen between a slot's release and its next taker);
 * with the line empty they end. (mutex held) */
static void run_slots_end_held(run_slots *s) {
    if (s->head) return;
    for (; s->free_held > 0; s->free_held--)
        pool_run_end(s->pool);
}

/* The oldest waiting run this thread may compute (mine: its own, which may
 * be an own_thread run), with the entry before it; NULL if none.
 * (mutex held) */
static run_slot_wait *run_slots_first(const run_slots *s, const run_slot_wait *mine,
                                      run_slot_wait **prev_out) {
    run_slot_wait *prev = NULL;
    for (run_slot_wait *w = s->head; w; prev = w, w = w->next)
        if (!w->own_thread || w == mine) {
            *prev_out = prev;
            return w;
        }
    return NULL;
}

/* Waiting callers not yet told of a free slot are told, one per untold
 * free slot. (mutex held) */
static void run_slots_tell(run_slots *s, run_slots_posts *ps) {
    for (run_slot_wait *w = s->head; w && s->untold > 0; w = w->next) {
        if (w->hinted) continue;
        w->hinted = 1;
        s->told++;
        s->untold--;
        run_slots_promise(ps, w);
    }
    s->untold = 0; /* every waiting caller knows of one */
}

/* run_slots_first, taken out of the line; runs still waiting beyond it
 * and a slot left free untold: a waiting caller is told now (the slot has
 * stayed free for a run). (mutex held) */
static run_slot_wait *run_slots_take(run_slots *s, const run_slot_wait *mine, run_slots_posts *ps) {
    run_slot_wait *prev = NULL;
    run_slot_wait *w = run_slots_first(s, mine, &prev);
    if (!w) return NULL;
    run_slots_unlink(s, prev, w);
    w->state = RUN_CLAIMED;
    /* its caller waits for the answer only: woken, it preempts this
     * thread at once (RUN_SLOTS_WAIT_SLICE_US) */
    if (w != mine) run_slots_slice_shorten(w);
    run_slots_end_held(s);
    if (s->untold > 0) run_slots_tell(s, ps);
    return w;
}

/* A free slot taken by this thread; 1 if it must begin a pool run.
 * (mutex held, computing < max) */
static int run_slots_claim(run_slots *s) {
    s->computing++;
    if (s->untold > s->max - s->computing) s->untold = s->max - s->computing;
    if (s->free_held > 0) {
        s->free_held--;
        return 0;
    }
    return 1;
}

/* This thread gives up its slot (held: with the pool's run it began): to
 * the oldest own_thread run (which only its own caller may compute), else
 * it is freed: any caller may take it and compute the oldest run. While
 * another slot computes and recent runs were brief, nobody is told: this
 * thread's caller mostly comes back with its next run at once and takes
 * it, and a caller woken for it would find it taken (or take it, and that
 * caller's next run would wait asleep); a slot's thread tells one when it
 * takes its next run if the slot is still free then (within about a run).
 * The last slot to leave tells at once, and so does a thread that will not
 * come back soon (tell: an open loop's, RUN_SLOTS_CLOSED_GAP_US). (mutex
 * held) */
static void run_slots_leave(run_slots *s, int held, int tell, run_slots_posts *ps) {
    run_slot_wait *prev = NULL;
    for (run_slot_wait *w = s->head; w; prev = w, w = w->next) {
        if (!w->own_thread) continue;
        run_slots_unlink(s, prev, w);
        w->state = RUN_YOUR_SLOT;
        w->begin = !held;
        s->passed++;
        run_slots_promise(ps, w);
        return;
    }
    s->computing--;
    if (!s->head) {
        if (held) pool_run_end(s->pool);
        return;
    }
    if (held) s->free_held++;
    s->freed++;
    s->untold++;
    if (tell || s->computing == 0 || s->recent_ms > s->tell_late_ms) run_slots_tell(s, ps);
}

/* This thread's CPU time: a run's length as the workload makes it, not
 * as other processes stretch it on a shared machine. */
static double run_slots_cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

/* The clock (microseconds) when this thread last returned from
 * run_slots_run (of any runtime); 0: never. */
static _Thread_local double run_slots_returned_us;

static double run_slots_clock_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

/* Computes w (taken, CLAIMED) on this thread; its caller, if another,
 * is told. Returns with the mutex held. (mutex held) */
static void run_slots_compute(run_slots *s, run_slot_wait *w, const run_slot_wait *mine, int *begin,
                              run_slots_posts *ps) {
    pthread_mutex_unlock(&s->mutex);
    run_slots_post(ps);
    if (*begin) {
        (void)pool_run_begin(s->pool);
        *begin = 0;
    }
    const double t0 = run_slots_cpu_ms();
    const mha_status st = w->fn(w->ctx, w->err);
    const double took = run_slots_cpu_ms() - t0;
    pthread_mutex_lock(&s->mutex);
    /* the longest of the recent runs, forgotten by 1/8 a run */
    s->recent_ms = took > s->recent_ms * 0.875 ? took : s->recent_ms * 0.875;
    w->status = st;
    w->state = RUN_DONE;
    if (w != mine) {
        s->handed++;
        run_slots_promise(ps, w);
    }
}

mha_status run_slots_run(run_slots *s, run_slots_fn fn, void *ctx, int own_thread, mha_error *err) {
    run_slot_wait w = {.fn = fn,
                       .ctx = ctx,
                       .err = err,
                       .own_thread = own_thread,
                       .state = RUN_WAITING,
                       .status = MHA_OK};
    sem_init(&w.posted, 0, 0);
    /* a closed loop: this thread's caller came back at once (or this is
     * its first run) */
    const int closed = run_slots_returned_us == 0.0 ||
                       run_slots_clock_us() - run_slots_returned_us <= s->closed_gap_us;
    run_slots_posts ps = {.n = 0};
    unsigned seen = 0; /* posts consumed */
    int have = 0, begin = 0;
    pthread_mutex_lock(&s->mutex);
    if (s->computing < s->max) {
        begin = run_slots_claim(s);
        have = 1;
    }
    if (have && !s->head) {
        w.state = RUN_CLAIMED;
        run_slots_compute(s, &w, &w, &begin, &ps);
    } else {
        /* in line, oldest first: with a slot, this thread computes the
         * runs ahead of its own (each handed back to its caller), then its
         * own */
        if (s->tail)
            s->tail->next = &w;
        else
            s->head = &w;
        s->tail = &w;
        s->waiting++;
#if defined(__linux__) && defined(SYS_gettid)
        w.tid = syscall(SYS_gettid);
#endif
    }
    while (w.state != RUN_DONE) {
        if (w.state == RUN_YOUR_SLOT) {
            have = 1;
            begin = w.begin;
            w.state = RUN_CLAIMED;
            run_slots_compute(s, &w, &w, &begin, &ps);
            break;
        }
        run_slot_wait *unused;
        if (!have && s->computing < s->max && run_slots_first(s, &w, &unused)) {
            /* a free slot and a run this thread may compute (its own, or
             * the oldest: awake, it computes rather than sleeps) */
            begin = run_slots_claim(s);
            have = 1;
        }
        if (have) {
            run_slot_wait *next = run_slots_take(s, &w, &ps);
            if (next) {
                run_slots_compute(s, next, &w, &begin, &ps);
                continue;
            }
            /* mine is computed by another thread and nothing else can be
             * computed here: the slot goes on, this thread waits */
            run_slots_leave(s, !begin, 0, &ps);
            begin = 0;
            have = 0;
        }
        w.hinted = 0;
        pthread_mutex_unlock(&s->mutex);
        run_slots_post(&ps);
        while (sem_wait(&w.posted) != 0 && errno == EINTR) {
        }
        seen++;
        pthread_mutex_lock(&s->mutex);
        if (w.state != RUN_DONE && w.state != RUN_YOUR_SLOT &&
            !(s->computing < s->max && run_slots_first(s, &w, &unused)))
            s->futile++;
    }
    if (have) {
        /* a closed loop: a run or more of others on the core this thread
         * holds (a caller woken to compute its own would start only once
         * the scheduler placed it: RUN_SLOTS_HANDED_MAX), then the slot is
         * left for this thread's next run. An open loop returns at once
         * (one more run would add a run to its answer) and a waiting
         * caller is told. */
        for (int k = 0; closed && k < RUN_SLOTS_HANDED_MAX; k++) {
            run_slot_wait *next = run_slots_take(s, NULL, &ps);
            if (!next) break;
            run_slots_compute(s, next, &w, &begin, &ps);
        }
        if (!closed && s->head) s->opened++;
        run_slots_leave(s, !begin, !closed, &ps);
    }
    const unsigned promised = w.posts;
    const int shortened = w.shortened;
    pthread_mutex_unlock(&s->mutex);
    if (shortened) run_slots_slice_restore(&w);
    run_slots_post(&ps);
    for (; seen < promised; seen++)
        while (sem_wait(&w.posted) != 0 && errno == EINTR) {
        }
    sem_destroy(&w.posted);
    run_slots_returned_us = run_slots_clock_us();
    return w.status;
}

void run_slots_count(run_slots *s, run_slots_counts *out) {
    pthread_mutex_lock(&s->mutex);
    out->slots = s->max;
    out->computing = s->computing;
    out->waiting = s->waiting;
    out->handed = s->handed;
    out->passed = s->passed;
    out->freed = s->freed;
    out->told = s->told;
    out->futile = s->futile;
    out->opened = s->opened;
    pthread_mutex_unlock(&s->mutex);
}
