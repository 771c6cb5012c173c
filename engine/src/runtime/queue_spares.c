/* queue_spares.c -- spare request blocks of a request queue (see
 * queue_spares.h): a LIFO list threaded through the kept blocks, under its
 * own mutex (a request may be freed after its queue is gone). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common.h"
#include "queue_spares.h"

/* The head of a kept block: the next one and the block's size. */
typedef struct spare {
    struct spare *next;
    size_t capacity;
} spare;

struct queue_spares {
    pthread_mutex_t mutex;
    atomic_int refs; /* the queue's, one per block handed out */
    int open;        /* the queue lives: blocks given back may be kept */
    spare *list;
    int count, max_blocks;
    size_t bytes, max_bytes;
};

queue_spares *queue_spares_create(int max_blocks, size_t max_bytes) {
    queue_spares *s = mha_calloc(NULL, 1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mutex, NULL);
    atomic_init(&s->refs, 1);
    s->open = 1;
    s->max_blocks = max_blocks;
    s->max_bytes = max_bytes;
    return s;
}

static void spares_unref(queue_spares *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mutex);
    mha_free(NULL, s);
}

void *queue_spares_take(queue_spares *s, size_t bytes, size_t *capacity) {
    if (bytes < sizeof(spare)) bytes = sizeof(spare);
    pthread_mutex_lock(&s->mutex);
    spare **at = &s->list;
    while (*at && !((*at)->capacity >= bytes && (*at)->capacity / 2 <= bytes))
        at = &(*at)->next;
    spare *got = *at;
    if (got) {
        *at = got->next;
        s->count--;
        s->bytes -= got->capacity;
    }
    pthread_mutex_unlock(&s->mutex);
    size_t cap = got ? got->capacity : bytes;
    void *block = got ? (void *)got : mha_malloc(NULL, bytes);
    if (!block) return NULL;
    atomic_fetch_add(&s->refs, 1);
    *capacity = cap;
    return block;
}

void queue_spares_give(queue_spares *s, void *block, size_t capacity) {
    if (!block) return;
    pthread_mutex_lock(&s->mutex);
    int keep = s->open && s->count < s->max_blocks && capacity <= s->max_bytes - s->bytes;
    if (keep) {
        spare *b = block;
        b->next = s->list;
        b->capacity = capacity;
        s->list = b;
        s->count++;
        s->bytes += capacity;
    }
    pthread_mutex_unlock(&s->mutex);
    if (!keep) mha_free(NULL, block);
    spares_unref(s);
}

void queue_spares_close(queue_spares *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mutex);
    s->open = 0;
    spare *list = s->list;
    s->list = NULL;
    s->count = 0;
    s->bytes = 0;
    pthread_mutex_unlock(&s->mutex);
    while (list) {
        spare *next = list->next;
        mha_free(NULL, list);
        list = next;
    }
    spares_unref(s);
}
