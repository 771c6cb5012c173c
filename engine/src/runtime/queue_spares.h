/* queue_spares.h -- the request queue's spare request blocks: the memory of
 * finished requests kept for the next ones (queue_spares.c).
 *
 * A request is one block (its header, its sequence, its outputs). Freeing
 * a block and allocating the next from malloc gives back fresh pages most
 * of the time (the allocator trims or unmaps them), and each first touch of
 * a page is a fault: about 12 per request of 8 x 768 floats in and out, as
 * much CPU as the queue's own work. The spares keep up to a bounded number
 * of blocks mapped instead.
 *
 * Lifetime: the queue holds one reference and every request one, so a
 * request freed after its queue is gone still finds the spares (which then
 * free the block). */
#ifndef MHA_QUEUE_SPARES_H
#define MHA_QUEUE_SPARES_H

#include <stddef.h>

typedef struct queue_spares queue_spares;

/* Keeps at most max_blocks blocks and max_bytes bytes; NULL when out of
 * memory. One reference (the creator's). */
queue_spares *queue_spares_create(int max_blocks, size_t max_bytes);

/* A block of at least bytes (64-byte aligned), a kept one when one fits
 * (never one more than twice as large), else a new one; NULL when out of
 * memory. *capacity receives its size. Takes a reference for the block. */
void *queue_spares_take(queue_spares *s, size_t bytes, size_t *capacity);

/* Gives a block of capacity bytes back: kept while the spares are open and
 * within their bounds, else freed. Drops the block's reference. */
void queue_spares_give(queue_spares *s, void *block, size_t capacity);

/* The queue lets go: every kept block is freed, later ones too; drops the
 * creator's reference. */
void queue_spares_close(queue_spares *s);

#endif
