/* queue_batch.h -- how the request queue (queue.c) turns single requests
 * into one padded batch of a model's inputs and cuts the batch's outputs
 * back into each request's (queue_batch.c). */
#ifndef MHA_QUEUE_BATCH_H
#define MHA_QUEUE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Model inputs and outputs a queue handles at most. */
#define QUEUE_MAX_IO 8

/* How a batch fills one model input, [B, L] or [B, L, D]. */
typedef enum queue_fill {
    QUEUE_FILL_REQUEST = 0, /* the request's sequence, zeros after it */
    QUEUE_FILL_ZERO,        /* zeros (segment ids: one segment) */
    QUEUE_FILL_MASK         /* attend at the request's tokens, ignore after */
} queue_fill;

typedef struct queue_input {
    queue_fill fill;
    mha_dtype dtype;
    size_t elem;      /* bytes per element */
    int64_t row;      /* elements per token: D of [B, S, D], 1 of [B, S] */
    int attend_value; /* QUEUE_FILL_MASK: a token's value (1 or 0), padding the other */
} queue_input;

typedef struct queue_output {
    mha_dtype dtype;
    size_t elem;
    int rank;                    /* the model's, batch axis included */
    int per_token;               /* axes 0 and 1 are the batch and the sequence */
    int seq_first;               /* per_token: axis 0 the sequence, axis 1 the batch */
    int64_t shape[MHA_MAX_RANK]; /* the fixed axes (after batch and sequence) */
    int64_t row;                 /* elements per token (per_token) or per batch item */
} queue_output;

/* What the queue knows of its model: the input a request gives (primary)
 * and how to fill every other, and which outputs it returns. */
typedef struct queue_layout {
    size_t n_in, n_out; /* n_out: the outputs a request gets (a layer's first only) */
    size_t n_model_out;
    queue_input in[QUEUE_MAX_IO];
    queue_output out[QUEUE_MAX_IO];
    size_t primary;   /* the input a request gives */
    int primary_rank; /* its rank in the model, batch axis included (2 or 3) */
    int seq_first;    /* the inputs are [S, B(, D)] (mha_model_layout) */
    int64_t d_in;     /* elements per token of it */
    int64_t d_out;    /* elements per token (or item) of output 0 */
} queue_layout;

/* Reads the model's inputs and outputs: either one float32 query sequence
 * [B, S, D] (a layer, or a plan over one), or token ids [B, S] with masks
 * and more token ids beside them (a whole model); sequence first [S, B]
 * when mha_model_layout says so. MHA_ERR_MODEL_UNSUPPORTED
 * with the reason for anything a padded batch cannot serve. */
mha_status queue_layout_make(const mha_model *model, queue_layout *lay, mha_error *err);

/* Checks one request's sequence: [S, D] / [1, S, D] (or [S] / [1, S] for
 * token ids; [S, 1, D] / [S, 1] sequence first), in the primary input's
 * dtype; *S receives its length. */
mha_status queue_layout_check(const queue_layout *lay, const mha_tensor *input, int64_t *S,
                              mha_error *err);

/* The shapes of one request's outputs (data NULL), with a batch axis of 1
 * when its input had one (input_rank == the model's rank). */
void queue_layout_request_outputs(const queue_layout *lay, int64_t S, int input_rank,
                                  mha_tensor *y);

/* A batch's buffers, grown as needed and kept by a dispatcher. */
typedef struct queue_batch {
    int n; /* requests in the batch (queue_batch_fill) */
    void *in[QUEUE_MAX_IO], *out[QUEUE_MAX_IO];
    size_t in_cap[QUEUE_MAX_IO], out_cap[QUEUE_MAX_IO]; /* bytes */
    mha_tensor tin[QUEUE_MAX_IO], tout[QUEUE_MAX_IO];
} queue_batch;

/* Fills the batch's inputs for n requests padded to L: request i gives
 * x[i] ([S[i], d_in] elements of the primary dtype). */
mha_status queue_batch_fill(const queue_layout *lay, queue_batch *b, int n, int64_t L,
                            const void *const *x, const int64_t *S, mha_error *err);

/* Where token s of request i lies in output k of batch b padded to L (s
 * 0 for an output per item): [n, L, ...] or sequence first [L, n, ...]. */
const char *queue_output_at(const queue_layout *lay, const queue_batch *b, size_t k, int i,
                            int64_t L, int64_t s);

/* Copies request i's part of every output into y (shaped by
 * queue_layout_request_outputs). */
void queue_batch_take(const queue_layout *lay, const queue_batch *b, int i, int64_t L, int64_t S,
                      mha_tensor *y);

void queue_batch_free(queue_batch *b);

#endif
