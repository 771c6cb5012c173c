/* queue_admit.h -- admission by predicted latency (mha_queue_options
 * max_latency_ms; queue_admit.c).
 *
 * A bounded count is not a bounded wait: 16 requests ahead take 1 ms or
 * 30 depending on their lengths, the model and what else the cores do. So
 * the queue measures how fast it drains -- the tokens its dispatchers
 * together complete per ms of the time it computes -- and refuses at
 * submit a request that would not complete within its budget at that
 * rate:
 *
 *   drain:     every stretch from a batch that starts while none runs, or
 *              from the last completion, to the next completion adds its
 *              time and the tokens completed to two sums that decay by a
 *              quarter at each completion (the rate follows the load: the
 *              machine's other processes, the server's own threads)
 *   predicted: before_ms + max((tokens ahead + S) x ms a token,
 *                              oldest request's wait past its hold + S x ms a token)
 *
 * where tokens ahead are those waiting or running (a running batch counts
 * whole: at most one batch's time too many) and before_ms the part of the
 * request's wait before its submit while the queue had work. The second
 * term is the queue's delay as seen (admission by queue delay) rather than
 * estimated. Times come from the caller (the tests give a fake clock). */
#ifndef MHA_QUEUE_ADMIT_H
#define MHA_QUEUE_ADMIT_H

#include <stdint.h>

typedef struct mha_queue mha_queue;

typedef struct queue_drain {
    double tokens; /* decayed sum of the tokens completed */
    double ms;     /* decayed sum of the computing time they took */
    double mark;   /* seconds: where the next completion's stretch starts */
} queue_drain;

/* A batch starts while none of the queue's runs (the computing time
 * resumes at now, seconds). */
void queue_drain_start(queue_drain *d, double now);

/* A batch of tokens completed at now; counted = 0 (a failed or cancelled
 * run) only moves the stretch's start. */
void queue_drain_done(queue_drain *d, int64_t tokens, double now, int counted);

/* The queue's time a token at its measured rate (ms); 0 until a batch
 * completed. */
double queue_drain_ms_per_token(const queue_drain *d);

/* The predicted completion of a request of S tokens (ms from its submit),
 * at ms_per_token (queue_drain_ms_per_token); unpriced (0), the queue's
 * delay as seen and before_ms only. */
double queue_predict_ms(double ms_per_token, int64_t tokens_ahead, int64_t S, double oldest_ms,
                        double before_ms);

/* Test hook (internal, not in mha.h): prices the queue's drain at
 * ms_per_token as if measured, so that a test can check admission without
 * depending on how fast its runs are (the next completion mixes in what it
 * measures). */
void queue_test_price(mha_queue *q, double ms_per_token);

#endif
