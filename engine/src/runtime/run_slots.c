/* run_slots.c -- the computing slots of a runtime and the runs handed to
 * them (see run_slots.h for the design). */
#include "run_slots.h"

#include <errno.h>
#include <semaphore.h>

enum { RUN_WAITING, RUN_DONE, RUN_YOUR_SLOT };

/* A caller waiting for a slot; on its own stack until it returns. */
struct run_slot_wait {
    run_slot_wait *next;
    run_slots_fn fn;
    void *ctx;
    mha_error *err;
    int own_thread;
    int state; /* RUN_*: written before the post, read after the wait */
    mha_status status;
    /* posted once, outside the mutex: a waiter woken while the poster
     * still held it went back to sleep on the mutex (two more switches) */
    sem_t posted;
};

void run_slots_init(run_slots *s, pool *p, int max) {
    pthread_mutex_init(&s->mutex, NULL);
    s->pool = p;
    s->max = max > 0 ? max : 1;
    s->computing = 0;
    s->waiting = 0;
    s->head = s->tail = NULL;
    s->handed = s->passed = 0;
}

void run_slots_destroy(run_slots *s) {
    pthread_mutex_destroy(&s->mutex);
}

/* The slot of the calling thread serves the waiting runs (see the top of
 * run_slots.h), then is freed or passed on. s->mutex is not held. */
static void run_slots_drain(run_slots *s) {
    int handed = 0;
    pthread_mutex_lock(&s->mutex);
    while (s->head) {
        run_slot_wait *w = s->head;
        s->head = w->next;
        if (!s->head) s->tail = NULL;
        s->waiting--;
        if (w->own_thread || handed >= RUN_SLOTS_HANDED_MAX) {
            /* the slot and its pool run go to w */
            w->state = RUN_YOUR_SLOT;
            s->passed++;
            pthread_mutex_unlock(&s->mutex);
            sem_post(&w->posted);
            return;
        }
        s->handed++;
        pthread_mutex_unlock(&s->mutex);
        const mha_status st = w->fn(w->ctx, w->err);
        handed++;
        w->status = st;
        w->state = RUN_DONE;
        sem_post(&w->posted); /* w may be gone from here on */
        pthread_mutex_lock(&s->mutex);
    }
    /* ended before the slot is free, so a caller taking it never finds the
     * pool's door still closed */
    pool_run_end(s->pool);
    s->computing--;
    pthread_mutex_unlock(&s->mutex);
}

mha_status run_slots_run(run_slots *s, run_slots_fn fn, void *ctx, int own_thread, mha_error *err) {
    pthread_mutex_lock(&s->mutex);
    if (s->computing < s->max && !s->head) {
        s->computing++;
        pthread_mutex_unlock(&s->mutex);
        (void)pool_run_begin(s->pool);
    } else {
        run_slot_wait w = {.fn = fn,
                           .ctx = ctx,
                           .err = err,
                           .own_thread = own_thread,
                           .state = RUN_WAITING,
                           .status = MHA_OK};
        sem_init(&w.posted, 0, 0);
        if (s->tail)
            s->tail->next = &w;
        else
            s->head = &w;
        s->tail = &w;
        s->waiting++;
        pthread_mutex_unlock(&s->mutex);
        while (sem_wait(&w.posted) != 0 && errno == EINTR) {
        }
        sem_destroy(&w.posted);
        if (w.state == RUN_DONE) return w.status;
        /* RUN_YOUR_SLOT: the slot (and the pool's run) came with it */
    }
    const mha_status st = fn(ctx, err);
    run_slots_drain(s);
    return st;
}

void run_slots_count(run_slots *s, run_slots_counts *out) {
    pthread_mutex_lock(&s->mutex);
    out->slots = s->max;
    out->computing = s->computing;
    out->waiting = s->waiting;
    out->handed = s->handed;
    out->passed = s->passed;
    pthread_mutex_unlock(&s->mutex);
}
