/* queue.c -- the request queue with dynamic batching (mha.h, "Serving").
 *
 * Requests (one sequence each, copied at submit: a float32 [S, D] query or
 * a whole model's token ids [S]) wait in a FIFO list. Each dispatcher
 * thread forms a batch and runs it through mha_run:
 *
 *   wait until a request waits (or shutdown)
 *   while another dispatcher's batch runs (or hold_when_idle): wait until
 *     the batch is full, or max_delay_ms after the oldest request's
 *     arrival, or no batch runs any more, or shutdown; an idle queue takes
 *     what waits at once (never hold a request while the cores are free:
 *     what arrives during a run is the next batch)
 *   take requests oldest first while count < max_batch (and its even part
 *     of them when other dispatchers are free: queue_batch_share) and
 *     count x longest <= max_batch_tokens (the first is always taken);
 *     a request past its deadline completes with MHA_ERR_DEADLINE instead
 *   order them longest first and cut them into runs of similar lengths
 *     (padding within max_padding of a run's rows: queue_run_batch; equal
 *     lengths only, or one request a run, where the probe at create found
 *     that batching changes results: queue_probe_batching); per run:
 *   X[b, 0:S_b, :] = request b's rows, zero rows after; kv_lengths[b] = S_b
 *   (a whole model: its masks attend at 0:S_b, other ids zero; queue_batch.c)
 *   mha_run(X) -> Y; request b's output = Y[b, 0:S_b, :] (or Y[b] per item)
 *   on one thread when num_threads is 1, or 0 and the batch's tokens at the
 *   cost a token took runs on one thread fit max_batch_ms (a short run
 *   split over two threads pays the phases' barriers); else on the
 *   runtime's threads
 *
 * Admission (mha_queue_submit, before the request is copied): refused at
 * once (MHA_ERR_QUEUE_FULL) when capacity requests wait, when the work
 * ahead passes max_queue_ms, or when the request's predicted completion
 * passes max_latency_ms (queue_admit.h: the tokens ahead and its own at
 * the rate the dispatchers drained tokens lately).
 *
 * Right padding with per-item key lengths gives each request what it gets
 * alone: its queries see only its own S_b keys (the padded keys are
 * ignored, a causal layer never sees later positions anyway), and every
 * row of the projections is computed on its own (engine: each unit writes
 * a disjoint part of the output, with the same arithmetic whatever the
 * batch). The padded rows' outputs are thrown away.
 *
 * Life of a request: WAITING (in the list) -> RUNNING (in a batch) -> DONE.
 * Two references keep it: the caller's (mha_request_free) and the queue's
 * (dropped after completion and its callback), so either side may let go
 * first. One mutex per queue guards the list, the states and the counters;
 * completions (callbacks) run outside it. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "model.h" /* runtime_pack_model */
#include "queue_admit.h"
#include "queue_batch.h"
#include "queue_spares.h"

/* max_batch_ms 0 with no max_queue_ms: a fifth of a 10 ms latency target */
#define QUEUE_AUTO_BATCH_MS 2.0

enum { REQ_WAITING, REQ_RUNNING, REQ_DONE };

/* A request is one block from the queue's spares (queue_spares.h):
 *   [struct mha_request | x: S x d_in | y[0] | y[1] ...], each part 64-byte aligned */
struct mha_request {
    mha_queue *queue;
    queue_spares *spares; /* where the block goes back */
    size_t block_bytes;
    struct mha_request *next, *prev; /* the waiting list */
    /* REQ_*: changed under queue->mutex; DONE is stored last (release) and
     * never changes again, so a done request is read without the queue
     * (which may be gone by then) */
    atomic_int state;
    atomic_int cancel_asked;
    atomic_int refs;
    mha_status status;
    char message[MHA_ERROR_MESSAGE_MAX];
    int64_t S;
    int input_rank;
    void *x;                    /* [S, d_in] of the primary input's dtype (in the block) */
    mha_tensor y[QUEUE_MAX_IO]; /* [S, d_out] or [1, S, d_out] once done OK (in the block) */
    size_t n_out;
    double submit;   /* monotonic seconds */
    double deadline; /* 0 = none */
    double started, finished;
    int batch_size;
    mha_request_done_fn done;
    void *done_user;
    pthread_cond_t cond; /* waiters of mha_request_wait */
};

typedef struct queue_dispatcher {
    mha_queue *queue;
    pthread_t thread;
    queue_batch buf; /* the batch's tensors, grown as needed and kept */
    int64_t *lengths;
    const void **xs;    /* [max_batch] each request's sequence */
    mha_status *status; /* [max_batch] each request's result */
    mha_request **batch;
    int in_use;   /* a caller slot (caller_runs) lent to a waiting thread (mutex) */
    int one_core; /* the batch's runs on one thread (num_threads 1, or 0: short) */
} queue_dispatcher;

struct mha_queue {
    mha_runtime *rt;
    const mha_model *model;
    mha_queue_options opts;
    queue_layout layout;

    pthread_mutex_t mutex;
    pthread_cond_t work_cond; /* dispatchers: a request arrived, or shutdown */
    pthread_cond_t idle_cond; /* shutdown: nothing waits or runs any more */
    mha_request *head, *tail;
    int accepting;
    int stopping; /* dispatchers leave once the list is empty */
    mha_queue_stats stats;
    queue_spares *spares; /* the memory of finished requests, for the next */
    /* max_queue_ms: tokens waiting or running, and the cost of one token
     * (milliseconds, a moving average over the batches; 0 until one ran) */
    int64_t tokens_ahead;
    /* waited_ms: when tokens_ahead last rose from 0 (queue_now), the start
     * of the stretch in which the queue has had work without a break */
    double busy_since;
    int64_t tokens_waiting; /* max_batch_ms: the tokens of the requests in the list */
    double ms_per_token;
    /* max_latency_ms: how fast the dispatchers together drain tokens
     * (queue_admit.h) */
    queue_drain drain;
    /* num_threads 0: what a token costs a run on one thread (ms, a moving
     * average over such runs, lowered by what a wider run shows; 0 until
     * one ran) and the longest run that goes on one thread */
    double ms_per_token_1;
    double one_core_ms;
    int n_dispatchers;
    int busy_dispatchers; /* batches taken and not yet completed (callers' too) */
    queue_dispatcher *dispatchers;
    /* caller_runs: the buffers of waiting threads that compute a batch, one
     * per dispatcher (batches at once stay within num_dispatchers) */
    queue_dispatcher *callers;
};

static double queue_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- options ---- */

void mha_queue_options_init(mha_queue_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->max_batch = 16;
    opts->max_batch_tokens = 4096;
    opts->max_delay_ms = 1.0;
    opts->capacity = 1024;
    opts->num_dispatchers = 0; /* one per runtime thread (mha_queue_create) */
    opts->max_padding = 0.125;
}

void mha_submit_options_init(mha_submit_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
}

/* ---- requests ---- */

static void request_unref(mha_request *r) {
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    pthread_cond_destroy(&r->cond);
    queue_spares_give(r->spares, r, r->block_bytes);
}

static void list_remove(mha_queue *q, mha_request *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        q->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        q->tail = r->prev;
    r->next = r->prev = NULL;
    q->stats.depth--;
    q->tokens_waiting -= r->S;
}

/* Bytes rounded up to the 64 of a block's parts (a cache line). */
static size_t queue_block_round(size_t bytes) {
    return (bytes + 63) & ~(size_t)63;
}

/* *end += bytes, rounded; 0 on overflow. */
static int queue_block_add(size_t *end, size_t bytes) {
    if (bytes > SIZE_MAX - 64 - *end) return 0;
    *end += queue_block_round(bytes);
    return 1;
}

/* The time the work ahead (waiting and running) would take, in ms: its
 * tokens at the cost the last batches took per token, shared by the
 * dispatchers; 0 until a batch ran. (mutex held) */
static double queue_wait_estimate(const mha_queue *q) {
    return (double)q->tokens_ahead * q->ms_per_token / q->opts.num_dispatchers;
}

/* Would tokens take longer than a batch may to compute? max_batch_ms, or,
 * when the queue is behind, behind_ms: as long as the batch's oldest
 * request has already waited past its hold ("batch while busy"): requests that piled up while
 * every dispatcher computed go together, and a batch costs less a request
 * than its requests one by one (a whole model's weights are read once a
 * run, not once a request), so the backlog clears sooner. A whole model
 * whose one request takes longer than max_batch_ms (MiniLM at 16 tokens:
 * 4-5 ms against 2) otherwise never batched, even seconds behind.
 * (mutex held) */
static int queue_over_batch_time(const mha_queue *q, int64_t tokens, double behind_ms) {
    const double ms = (double)tokens * q->ms_per_token;
    return q->opts.max_batch_ms > 0 && ms > q->opts.max_batch_ms && ms > behind_ms;
}

/* Is the waiting list a full batch: max_batch requests, or (max_batch_ms)
 * work enough for one batch's time? (mutex held) */
static int queue_batch_full(const mha_queue *q) {
    return q->stats.depth >= q->opts.max_batch ||
           (q->opts.max_batch_ms > 0 && q->ms_per_token > 0 &&
            (double)q->tokens_waiting * q->ms_per_token >= q->opts.max_batch_ms);
}

/* Should a dispatcher hold the waiting requests for company? Only while
 * the cores are busy with another batch of this queue (or the caller asked
 * for the hold even when idle): a request held on an idle queue would wait
 * max_delay_ms with every core free, and every request behind it too.
 * (mutex held) */
static int queue_hold(const mha_queue *q) {
    return q->opts.hold_when_idle || q->stats.running > 0;
}

/* How many of the waiting requests a dispatcher takes: up to max_batch,
 * and when other dispatchers are free too, its even part of what waits
 * (rounded up), the rest left for them. Two batches side by side run one
 * per core (the runtime splits its threads between runs, mha_run), while
 * one batch of all of them runs on every core with a phase barrier between
 * the threads at each step: for short steps (a MiniLM-sized model at 16
 * tokens) that costs a fifth more CPU a request than a run on one core,
 * and the two halves finish no later than the whole. (mutex held) */
static int queue_batch_share(const mha_queue *q) {
    int most = q->opts.max_batch;
    const int free_others = q->n_dispatchers - q->busy_dispatchers - 1;
    if (free_others > 0 && q->stats.depth > 1) {
        const int even = (q->stats.depth + free_others) / (free_others + 1);
        if (even < most) most = even;
    }
    return most;
}

/* Marks r done with st (queue->mutex held) and counts it; the caller then
 * calls request_finish outside the mutex. */
static void request_complete_locked(mha_queue *q, mha_request *r, mha_status st,
                                    const char *message) {
    r->status = st;
    r->finished = queue_now();
    q->tokens_ahead -= r->S;
    if (message) snprintf(r->message, sizeof r->message, "%s", message);
    atomic_store_explicit(&r->state, REQ_DONE, memory_order_release);
    switch (st) {
    case MHA_OK:
        q->stats.completed_ok++;
        break;
    case MHA_ERR_CANCELLED:
        q->stats.cancelled++;
        break;
    case MHA_ERR_DEADLINE:
        q->stats.expired++;
        break;
    case MHA_ERR_SHUTDOWN:
        q->stats.shut++;
        break;
    default:
        q->stats.failed++;
        break;
    }
}

/* The waiters woken, the callback, then the queue's reference goes. The
 * wake-up is given here, outside the queue's mutex: a waiter woken under
 * it often ran at once on the completing thread's core and slept again on
 * the mutex still held (two more switches a request). It is not lost: the
 * state became DONE under the mutex, which a waiter holds from its check
 * of the state until it is inside its wait. */
static void request_finish(mha_request *r) {
    pthread_cond_broadcast(&r->cond);
    if (r->done) r->done(r->done_user, r);
    request_unref(r);
}

/* request_finish for each request of a list through next. */
static void queue_finish_list(mha_request *r) {
    while (r) {
        mha_request *next = r->next;
        r->next = NULL;
        request_finish(r);
        r = next;
    }
}

/* Why a submission is refused (or not). */
typedef struct queue_admission {
    mha_status status;   /* MHA_OK, MHA_ERR_SHUTDOWN or MHA_ERR_QUEUE_FULL */
    int depth;           /* the requests waiting */
    double wait_ms;      /* the expected wait: the larger of the two below */
    double ahead_ms;     /* the work ahead at the last batches' cost per token */
    double oldest_ms;    /* how long the oldest waiting request has waited past its hold */
    double before_ms;    /* the part of waited_ms the queue had work (queue_waited_busy) */
    double predicted_ms; /* max_latency_ms: the request's predicted completion (0: unpriced) */
} queue_admission;

/* The part of what a request waited before its submit (waited_ms: a server
 * reading its body) that counts against max_queue_ms: only the time the
 * queue has had work since, without a break. The time before the submit
 * matters when the server was behind (its HTTP thread starved by the
 * batches computing); on an idle queue it is the client's own (a slow
 * upload), and refusing that request would refuse one nothing waits
 * ahead of. (mutex held) */
static double queue_waited_busy(const mha_queue *q, double waited_ms) {
    if (q->tokens_ahead <= 0 || waited_ms <= 0) return 0.0;
    const double busy_ms = (queue_now() - q->busy_since) * 1e3;
    return busy_ms < waited_ms ? busy_ms : waited_ms;
}

/* How long the oldest waiting request has waited beyond the hold a
 * dispatcher may give it for company (max_delay_ms), in ms; 0 when none
 * waits. What a new request will wait too, seen rather than estimated: the
 * estimate from the cost per token lags when the machine slows (other
 * processes, the server's own threads) and ignores the run a request joins
 * behind. (mutex held) */
static double queue_oldest_wait(const mha_queue *q) {
    if (!q->head) return 0.0;
    const double ms = (queue_now() - q->head->submit) * 1e3 - q->opts.max_delay_ms;
    return ms > 0 ? ms : 0.0;
}

/* May a request whose deadline is deadline_ms from now (0: none) join? It
 * may not when capacity requests wait, or the expected wait passes
 * max_queue_ms or its deadline: it would expire in the queue, so it is
 * refused at once instead (counted as rejected_full, or rejected_deadline
 * when only the request's own deadline refused it). The expected wait is
 * the larger of the estimate (the work ahead) and what the oldest waiting
 * request has already waited (admission by queue delay). (mutex held) */
static queue_admission queue_admit_locked(mha_queue *q, int64_t S, double deadline_ms,
                                          double waited_ms) {
    queue_admission a = {
        MHA_OK, q->stats.depth, 0.0, queue_wait_estimate(q), 0.0, queue_waited_busy(q, waited_ms),
        0.0};
    if (!q->accepting) {
        a.status = MHA_ERR_SHUTDOWN;
        return a;
    }
    const double budget = q->opts.max_latency_ms;
    if (q->opts.max_queue_ms > 0 || deadline_ms > 0 || budget > 0)
        a.oldest_ms = queue_oldest_wait(q);
    a.wait_ms = a.ahead_ms > a.oldest_ms ? a.ahead_ms : a.oldest_ms;
    /* an idle queue accepts: nothing ahead, the request's time is its own
     * run, which no refusal shortens */
    if (budget > 0 && q->tokens_ahead > 0)
        a.predicted_ms = queue_predict_ms(queue_drain_ms_per_token(&q->drain), q->tokens_ahead, S,
                                          a.oldest_ms, a.before_ms);
    const int full = q->stats.depth >= q->opts.capacity ||
                     (q->opts.max_queue_ms > 0 && a.wait_ms + a.before_ms > q->opts.max_queue_ms) ||
                     (budget > 0 && a.predicted_ms > budget);
    const int late = deadline_ms > 0 && a.wait_ms > deadline_ms;
    if (!full && !late) return a;
    if (full)
        q->stats.rejected_full++;
    else
        q->stats.rejected_deadline++;
    a.status = MHA_ERR_QUEUE_FULL;
    return a;
}

static mha_status queue_refuse(const mha_queue *q, const queue_admission *a, double deadline_ms,
                               mha_error *err) {
    const mha_status st = a->status;
    if (st == MHA_ERR_SHUTDOWN) return mha_fail(err, st, "queue submit: the queue is shut down");
    if (a->depth >= q->opts.capacity)
        return mha_fail(err, st, "queue submit: %d requests are waiting, the capacity", a->depth);
    if (q->opts.max_queue_ms > 0 && a->oldest_ms > q->opts.max_queue_ms &&
        a->oldest_ms >= a->ahead_ms)
        return mha_fail(err, st,
                        "queue submit: the oldest of the %d requests waiting has waited %.3g ms "
                        "past its hold, more than %g ms",
                        a->depth, a->oldest_ms, q->opts.max_queue_ms);
    if (q->opts.max_queue_ms > 0 && a->before_ms > 0 &&
        a->wait_ms + a->before_ms > q->opts.max_queue_ms)
        return mha_fail(err, st,
                        "queue submit: the request waited %.3g ms before it came while the queue "
                        "had work, and the %d ahead would take about %.3g ms, more than %g ms",
                        a->before_ms, a->depth, a->wait_ms, q->opts.max_queue_ms);
    if (q->opts.max_queue_ms > 0 && a->wait_ms > q->opts.max_queue_ms)
        return mha_fail(err, st,
                        "queue submit: the %d requests ahead would take more than %g ms "
                        "(about %.3g ms)",
                        a->depth, q->opts.max_queue_ms, a->wait_ms);
    if (q->opts.max_latency_ms > 0 && a->predicted_ms > q->opts.max_latency_ms)
        return mha_fail(err, st,
                        "queue submit: the request would complete in about %.3g ms (%d waiting, "
                        "at the queue's recent rate), past its latency budget of %g ms",
                        a->predicted_ms, a->depth, q->opts.max_latency_ms);
    return mha_fail(err, st,
                    "queue submit: the %d requests ahead would take about %.3g ms, past the "
                    "request's deadline of %g ms",
                    a->depth, a->wait_ms, deadline_ms);
}

mha_status mha_queue_submit(mha_queue *q, const mha_tensor *input, const mha_submit_options *opts,
                            mha_request **out, mha_error *err) {
    if (out) *out = NULL;
    if (!q || !input || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "queue submit: NULL argument");
    /* waited_ms was appended: callers built before it pass a smaller size */
    if (opts && opts->struct_size < offsetof(mha_submit_options, waited_ms))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "queue submit: options not initialised (mha_submit_options_init)");
    double waited_ms = 0.0;
    if (opts && opts->struct_size >= offsetof(mha_submit_options, waited_ms) + sizeof(double))
        waited_ms = opts->waited_ms;
    if (!(waited_ms >= 0))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "queue submit: waited_ms %g is %s",
                        waited_ms, waited_ms < 0 ? "negative" : "not a number");
    const queue_layout *lay = &q->layout;
    int64_t S = 0;
    mha_status cst = queue_layout_check(lay, input, &S, err);
    if (cst != MHA_OK) return cst;
    if (!input->data)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "queue submit: input data is NULL");
    if (opts && !(opts->deadline_ms >= 0))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "queue submit: deadline_ms %g is %s",
                        opts->deadline_ms, opts->deadline_ms < 0 ? "negative" : "not a number");
    int rank = input->rank;
    mha_tensor y[QUEUE_MAX_IO];
    queue_layout_request_outputs(lay, S, rank, y);
    /* the block: the header, the sequence, every output, each 64-byte
     * aligned (checked sums and products) */
    size_t nx, off_y[QUEUE_MAX_IO], end = 0;
    int big = !mha_mul_size((size_t)S, (size_t)lay->d_in, &nx) ||
              !mha_mul_size(nx, lay->in[lay->primary].elem, &nx) ||
              !queue_block_add(&end, sizeof(mha_request)) || !queue_block_add(&end, nx);
    const size_t off_x = queue_block_round(sizeof(mha_request));
    for (size_t k = 0; k < lay->n_out && !big; k++) {
        int64_t numel = mha_tensor_numel(&y[k]);
        size_t bytes = 0;
        off_y[k] = end;
        big = numel < 0 || !mha_mul_size((size_t)numel, lay->out[k].elem, &bytes) ||
              !queue_block_add(&end, bytes);
    }
    if (big)
        return mha_fail(err, MHA_ERR_LIMIT, "queue submit: a sequence of %lld is too long",
                        (long long)S);
    /* refused at once, before the copy: under overload most submissions
     * are refused, and a refusal must cost next to nothing (checked again
     * when the request joins) */
    const double deadline_ms = opts ? opts->deadline_ms : 0.0;
    pthread_mutex_lock(&q->mutex);
    queue_admission adm = queue_admit_locked(q, S, deadline_ms, waited_ms);
    pthread_mutex_unlock(&q->mutex);
    if (adm.status != MHA_OK) return queue_refuse(q, &adm, deadline_ms, err);

    size_t block_bytes = 0;
    char *block = queue_spares_take(q->spares, end, &block_bytes);
    if (!block)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "queue submit: out of memory for %lld rows",
                        (long long)S);
    mha_request *r = (mha_request *)block;
    memset(r, 0, sizeof *r);
    r->spares = q->spares;
    r->block_bytes = block_bytes;
    void *x = block + off_x;
    for (size_t k = 0; k < lay->n_out; k++)
        y[k].data = block + off_y[k];
    memcpy(x, input->data, nx);
    r->queue = q;
    r->S = S;
    r->input_rank = rank;
    r->x = x;
    memcpy(r->y, y, sizeof y);
    r->n_out = lay->n_out;
    r->submit = queue_now();
    if (opts && opts->deadline_ms > 0) r->deadline = r->submit + opts->deadline_ms * 1e-3;
    if (opts) {
        r->done = opts->done;
        r->done_user = opts->done_user;
    }
    atomic_init(&r->refs, 2); /* the caller's and the queue's */
    pthread_cond_init(&r->cond, NULL);
    atomic_init(&r->cancel_asked, 0);
    atomic_init(&r->state, REQ_WAITING);

    pthread_mutex_lock(&q->mutex);
    adm = queue_admit_locked(q, S, deadline_ms, waited_ms);
    if (adm.status != MHA_OK) {
        pthread_mutex_unlock(&q->mutex);
        atomic_store(&r->refs, 1);
        request_unref(r);
        return queue_refuse(q, &adm, deadline_ms, err);
    }
    atomic_store(&r->state, REQ_WAITING);
    r->prev = q->tail;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->stats.depth++;
    q->stats.submitted++;
    if (q->tokens_ahead == 0) q->busy_since = r->submit;
    q->tokens_ahead += S;
    q->tokens_waiting += S;
    /* a dispatcher waits for the first request, or for a full batch (a
     * batch short of it leaves at max_delay_ms by itself): waking it at
     * every request in between cost a wakeup each */
    const int wake = q->stats.depth == 1 || queue_batch_full(q);
    pthread_mutex_unlock(&q->mutex);
    /* after the unlock, as request_finish does (a dispatcher checks the
     * list under the mutex before it waits, so the signal is not lost) */
    if (wake) pthread_cond_signal(&q->work_cond);
    *out = r;
    return MHA_OK;
}

static int request_done(const mha_request *r) {
    return atomic_load_explicit(&((mha_request *)r)->state, memory_order_acquire) == REQ_DONE;
}

static void queue_caller_runs_locked(mha_queue *q, mha_request *r);

mha_status mha_request_wait(mha_request *r, double timeout_ms, mha_error *err) {
    if (!r) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "request wait: NULL request");
    mha_queue *q = r->queue;
    if (request_done(r)) goto done;
    pthread_mutex_lock(&q->mutex);
    if (timeout_ms < 0) {
        if (q->opts.caller_runs && !q->opts.hold_when_idle) queue_caller_runs_locked(q, r);
        while (r->state != REQ_DONE)
            pthread_cond_wait(&r->cond, &q->mutex);
    } else {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double end = (double)until.tv_sec + 1e-9 * (double)until.tv_nsec + timeout_ms * 1e-3;
        until.tv_sec = (time_t)end;
        until.tv_nsec = (long)((end - (double)until.tv_sec) * 1e9);
        while (r->state != REQ_DONE)
            if (pthread_cond_timedwait(&r->cond, &q->mutex, &until) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&q->mutex);
    if (!request_done(r))
        return mha_fail(err, MHA_ERR_LIMIT, "request wait: timed out, still pending");
done:;
    mha_status st = r->status;
    if (st != MHA_OK)
        return mha_fail(err, st, "%s", r->message[0] ? r->message : mha_status_text(st));
    return MHA_OK;
}

int mha_request_cancel(mha_request *r) {
    if (!r || request_done(r)) return 0;
    mha_queue *q = r->queue;
    pthread_mutex_lock(&q->mutex);
    int will = atomic_load(&r->state) != REQ_DONE;
    int now = atomic_load(&r->state) == REQ_WAITING;
    atomic_store(&r->cancel_asked, 1);
    if (now) {
        list_remove(q, r);
        request_complete_locked(q, r, MHA_ERR_CANCELLED, "request cancelled while waiting");
        if (q->stats.depth == 0 && q->stats.running == 0) pthread_cond_broadcast(&q->idle_cond);
    }
    pthread_mutex_unlock(&q->mutex);
    if (now) request_finish(r);
    return will;
}

void mha_request_get_info(const mha_request *r, mha_request_info *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!r) return;
    out->seq_len = r->S;
    if (!request_done(r)) return; /* the rest is written by the queue until then */
    out->done = 1;
    out->status = r->status;
    out->batch_size = r->batch_size;
    double start = r->started > 0 ? r->started : r->finished;
    out->queue_ms = (start - r->submit) * 1e3;
    out->run_ms = r->started > 0 ? (r->finished - r->started) * 1e3 : 0.0;
}

const mha_tensor *mha_request_output(const mha_request *r) {
    return mha_request_output_at(r, 0);
}

size_t mha_request_num_outputs(const mha_request *r) {
    return r ? r->n_out : 0;
}

const mha_tensor *mha_request_output_at(const mha_request *r, size_t i) {
    return r && i < r->n_out && request_done(r) && r->status == MHA_OK ? &r->y[i] : NULL;
}

void mha_request_free(mha_request *r) {
    if (!r) return;
    mha_request_cancel(r);
    request_unref(r);
}

/* ---- dispatching ---- */

static int queue_cancel_batch(void *user) {
    queue_dispatcher *d = user;
    for (int i = 0; d->batch[i]; i++)
        if (!atomic_load_explicit(&d->batch[i]->cancel_asked, memory_order_relaxed)) return 0;
    return 1;
}

static int queue_form_batch_locked(mha_queue *q, queue_dispatcher *d, mha_request **expired);

/* Waits for and takes the next batch into d->batch (NULL-terminated);
 * returns its size, 0 when the dispatcher should stop. Requests found past
 * their deadline are completed into *expired (a list through next). */
static int queue_take_batch(mha_queue *q, queue_dispatcher *d, mha_request **expired) {
    pthread_mutex_lock(&q->mutex);
    for (;;) {
        /* a core free: with caller_runs a waiting thread may hold one */
        while ((!q->head || q->busy_dispatchers >= q->n_dispatchers) && !q->stopping)
            pthread_cond_wait(&q->work_cond, &q->mutex);
        if (!q->head) {
            pthread_mutex_unlock(&q->mutex);
            return 0;
        }
        /* wait for company (only while the cores are busy: queue_hold):
         * until the batch would be full or the oldest request waited
         * max_delay_ms */
        double until = q->head->submit + q->opts.max_delay_ms * 1e-3;
        while (q->head && !q->stopping && queue_hold(q) && !queue_batch_full(q) &&
               queue_now() < until) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double end = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + (until - queue_now());
            ts.tv_sec = (time_t)end;
            ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&q->work_cond, &q->mutex, &ts);
        }
        /* another dispatcher (or a cancel) may have emptied it, a caller
         * taken the last free core */
        if (q->head && (q->busy_dispatchers < q->n_dispatchers || q->stopping)) break;
    }
    const int n = queue_form_batch_locked(q, d, expired);
    /* more requests than this batch took: wake another dispatcher (after
     * the unlock, as request_finish wakes) */
    const int more = q->head != NULL;
    pthread_mutex_unlock(&q->mutex);
    if (more) pthread_cond_signal(&q->work_cond);
    return n > 0 ? n : -1;
}

/* Takes the next batch from the head of the list into d->batch
 * (NULL-terminated) and counts it running; returns its size (0 if every
 * request looked at was past its deadline: those are completed into
 * *expired). (mutex held) */
static int queue_form_batch_locked(mha_queue *q, queue_dispatcher *d, mha_request **expired) {
    double now = queue_now();
    int n = 0;
    int64_t longest = 0, tokens = 0;
    const int most = queue_batch_share(q);
    const double behind_ms = q->opts.max_batch_ms > 0 ? queue_oldest_wait(q) : 0.0;
    mha_request *r = q->head;
    while (r && n < most) {
        mha_request *next = r->next;
        if (r->deadline > 0 && now > r->deadline) {
            list_remove(q, r);
            request_complete_locked(q, r, MHA_ERR_DEADLINE,
                                    "request deadline passed while it waited in the queue");
            r->next = *expired;
            *expired = r;
            r = next;
            continue;
        }
        int64_t l = r->S > longest ? r->S : longest;
        if (n > 0 && ((int64_t)(n + 1) * l > q->opts.max_batch_tokens ||
                      queue_over_batch_time(q, tokens + r->S, behind_ms)))
            break;
        longest = l;
        tokens += r->S;
        list_remove(q, r);
        atomic_store(&r->state, REQ_RUNNING);
        r->started = now;
        d->batch[n++] = r;
        r = next;
    }
    d->batch[n] = NULL;
    /* num_threads 0: a batch that one core computes within one_core_ms
     * (or before any such run measured it) runs on one thread: a short run
     * split over two pays the phases' barriers, and a second batch can take
     * the other core; a longer one gets the runtime's threads */
    d->one_core =
        q->opts.num_threads == 1 ||
        (q->opts.num_threads == 0 && (double)tokens * q->ms_per_token_1 <= q->one_core_ms);
    /* the queue computes again: its drain's time resumes */
    if (n > 0 && q->stats.running == 0) queue_drain_start(&q->drain, now);
    q->stats.running += n;
    if (n > 0) q->busy_dispatchers++;
    return n;
}

/* One padded run of n sequences xs[i] of lengths S[i] (longest L) in buf,
 * the way every batch runs; d (may be NULL) is asked for cancels. */
static mha_status queue_run_padded(mha_queue *q, queue_batch *buf, queue_dispatcher *d, int n,
                                   int64_t L, const void *const *xs, const int64_t *S,
                                   mha_error *err) {
    const queue_layout *lay = &q->layout;
    mha_status st = queue_batch_fill(lay, buf, n, L, xs, S, err);
    if (st != MHA_OK) return st;
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.num_threads = d && d->one_core ? 1 : q->opts.num_threads;
    if (d) {
        ro.cancel = queue_cancel_batch;
        ro.cancel_user = d;
    }
    /* every item's length, even for a batch of one: the same run either way */
    ro.kv_lengths = S;
    ro.precision = q->opts.precision;
    return mha_run(q->rt, q->model, buf->tin, lay->n_in, buf->tout, lay->n_out, &ro, err);
}

/* Runs the n requests of items (a run of d->batch): pads, runs, copies
 * each request's part out. */
static mha_status queue_run_items(mha_queue *q, queue_dispatcher *d, mha_request *const *items,
                                  int n, mha_error *err) {
    const queue_layout *lay = &q->layout;
    int64_t L = 0;
    for (int i = 0; i < n; i++) {
        if (items[i]->S > L) L = items[i]->S;
        d->lengths[i] = items[i]->S;
        d->xs[i] = items[i]->x;
    }
    mha_status st = queue_run_padded(q, &d->buf, d, n, L, d->xs, d->lengths, err);
    if (st != MHA_OK) return st;
    for (int i = 0; i < n; i++)
        queue_batch_take(lay, &d->buf, i, L, items[i]->S, items[i]->y);
    return MHA_OK;
}

/* Runs the n requests of items as one padded run, each request's status
 * into status[]. A run that fails (a request longer than the model's
 * position table, say) is run again request by request, so one bad request
 * fails alone; the others' results are the same either way. */
static void queue_run_group(mha_queue *q, queue_dispatcher *d, mha_request **items,
                            mha_status *status, int n) {
    mha_error err;
    mha_error_clear(&err);
    mha_status st = queue_run_items(q, d, items, n, &err);
    if (st == MHA_OK || st == MHA_ERR_CANCELLED || n == 1) {
        for (int i = 0; i < n; i++) {
            status[i] = st;
            if (st != MHA_OK)
                snprintf(items[i]->message, sizeof items[i]->message, "%s", err.message);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        mha_request *r = items[i];
        mha_error_clear(&err);
        status[i] =
            atomic_load(&r->cancel_asked) ? MHA_ERR_CANCELLED : queue_run_items(q, d, &r, 1, &err);
        if (status[i] != MHA_OK) snprintf(r->message, sizeof r->message, "%s", err.message);
    }
}

/* Longest first; among equal lengths the oldest first (a total order:
 * no two requests share a submit time and an address). */
static int queue_by_length(const void *a, const void *b) {
    const mha_request *x = *(mha_request *const *)a, *y = *(mha_request *const *)b;
    if (x->S != y->S) return x->S > y->S ? -1 : 1;
    if (x->submit != y->submit) return x->submit < y->submit ? -1 : 1;
    return (uintptr_t)x < (uintptr_t)y ? -1 : (uintptr_t)x > (uintptr_t)y;
}

/* Runs d->batch[0..n): ordered longest first and cut into runs whose
 * padding (rows past each request's length) stays within max_padding of
 * the run's rows, since a padded row costs a GEMM as much as a real one:
 *
 *   run = [longest];  while the next request fits: add it
 *     fits: (count + 1) x L_run - (tokens + S_next) <= max_padding x (count + 1) x L_run
 *
 * Lengths alike give one run; 32, 24, 16 and 8 give three. Returns the
 * number of runs (mha_run calls). */
static int queue_run_batch(mha_queue *q, queue_dispatcher *d, int n) {
    mha_request **b = d->batch;
    qsort(b, (size_t)n, sizeof *b, queue_by_length);
    int runs = 0;
    for (int g0 = 0; g0 < n; runs++) {
        const int64_t L = b[g0]->S;
        int64_t tokens = L;
        int g1 = g0 + 1;
        while (g1 < n) {
            const double rows = (double)(g1 - g0 + 1) * (double)L;
            if (rows - (double)(tokens + b[g1]->S) > q->opts.max_padding * rows) break;
            /* what the probe at create allows (queue_probe_batching) */
            if (q->stats.batching == MHA_BATCH_ALONE ||
                (q->stats.batching == MHA_BATCH_EQUAL_LENGTHS && b[g1]->S != L))
                break;
            tokens += b[g1++]->S;
        }
        /* the dispatcher's own until completion (published by the DONE store) */
        for (int i = g0; i < g1; i++)
            b[i]->batch_size = g1 - g0;
        queue_run_group(q, d, b + g0, d->status + g0, g1 - g0);
        g0 = g1;
    }
    return runs;
}

/* Runs d's batch of n requests, completes them and finishes them (their
 * waiters woken, their callbacks run). */
static void queue_compute_batch(mha_queue *q, queue_dispatcher *d, int n) {
    double t0 = queue_now();
    const int runs = queue_run_batch(q, d, n);
    mha_status st = d->status[0];
    double ms = (queue_now() - t0) * 1e3;
    int64_t tokens = 0;
    for (int i = 0; i < n; i++)
        tokens += d->batch[i]->S;
    pthread_mutex_lock(&q->mutex);
    queue_drain_done(&q->drain, tokens, queue_now(), st == MHA_OK);
    q->stats.batches += (uint64_t)runs;
    q->stats.batched += (uint64_t)n;
    if (st == MHA_OK) { /* a moving average: the cost follows the load */
        double per = ms / (double)tokens;
        q->ms_per_token = q->ms_per_token > 0 ? 0.75 * q->ms_per_token + 0.25 * per : per;
        /* num_threads 0: on one core, the same; on T threads, T x its time
         * bounds what one core takes (a wider run pays barriers), so it may
         * only lower the estimate */
        const double wide = per * mha_runtime_num_threads(q->rt);
        if (d->one_core)
            q->ms_per_token_1 = q->ms_per_token_1 > 0 ? 0.75 * q->ms_per_token_1 + 0.25 * per : per;
        else if (wide < q->ms_per_token_1)
            q->ms_per_token_1 = wide;
    }
    if (d->one_core) q->stats.runs_one_core += (uint64_t)runs;
    for (int i = 0; i < n; i++) {
        mha_request *r = d->batch[i];
        if (atomic_load(&r->cancel_asked))
            request_complete_locked(q, r, MHA_ERR_CANCELLED,
                                    "request cancelled while its batch ran");
        else
            request_complete_locked(q, r, d->status[i], NULL);
    }
    q->stats.running -= n;
    q->busy_dispatchers--;
    if (q->stats.depth == 0 && q->stats.running == 0) pthread_cond_broadcast(&q->idle_cond);
    /* the cores are free: a dispatcher holding requests for company
     * (queue_hold) takes them now; with caller_runs one may be waiting
     * for a core that this batch held */
    const int held = (q->stats.running == 0 || q->opts.caller_runs) && q->head;
    pthread_mutex_unlock(&q->mutex);
    if (held) pthread_cond_signal(&q->work_cond);
    for (int i = 0; i < n; i++)
        request_finish(d->batch[i]);
}

static void *queue_dispatcher_main(void *arg) {
    queue_dispatcher *d = arg;
    mha_queue *q = d->queue;
    for (;;) {
        mha_request *expired = NULL;
        int n = queue_take_batch(q, d, &expired);
        queue_finish_list(expired);
        if (n == 0) break;
        if (n > 0) queue_compute_batch(q, d, n);
    }
    return NULL;
}

/* caller_runs: while r waits and a core is free (fewer batches taken than
 * dispatchers), the waiting thread takes the next batch into a free caller
 * slot and computes it, r in it or not. (mutex held on entry and return) */
static void queue_caller_runs_locked(mha_queue *q, mha_request *r) {
    while (atomic_load(&r->state) == REQ_WAITING && q->busy_dispatchers < q->n_dispatchers) {
        queue_dispatcher *d = NULL;
        for (int i = 0; i < q->n_dispatchers && !d; i++)
            if (!q->callers[i].in_use) d = &q->callers[i];
        if (!d) return;
        mha_request *expired = NULL;
        const int n = queue_form_batch_locked(q, d, &expired);
        d->in_use = n > 0;
        const int more = n > 0 && q->head != NULL;
        pthread_mutex_unlock(&q->mutex);
        if (more) pthread_cond_signal(&q->work_cond);
        queue_finish_list(expired);
        if (n > 0) queue_compute_batch(q, d, n);
        pthread_mutex_lock(&q->mutex);
        d->in_use = 0;
    }
}

/* ---- life cycle ---- */

static void queue_dispatchers_free(queue_dispatcher *ds, int n) {
    for (int i = 0; ds && i < n; i++) {
        queue_batch_free(&ds[i].buf);
        mha_free(NULL, ds[i].xs);
        mha_free(NULL, ds[i].status);
        mha_free(NULL, ds[i].lengths);
        mha_free(NULL, ds[i].batch);
    }
    mha_free(NULL, ds);
}

/* n dispatchers' buffers for batches of up to max_batch requests; NULL
 * when out of memory. */
static queue_dispatcher *queue_dispatchers_new(mha_queue *q, int n, int max_batch) {
    queue_dispatcher *ds = mha_calloc(NULL, (size_t)n, sizeof *ds);
    for (int i = 0; ds && i < n; i++) {
        queue_dispatcher *d = &ds[i];
        d->queue = q;
        d->lengths = mha_calloc(NULL, (size_t)max_batch, sizeof *d->lengths);
        d->batch = mha_calloc(NULL, (size_t)max_batch + 1, sizeof *d->batch);
        d->xs = mha_calloc(NULL, (size_t)max_batch, sizeof *d->xs);
        d->status = mha_calloc(NULL, (size_t)max_batch, sizeof *d->status);
        if (!d->lengths || !d->batch || !d->xs || !d->status) {
            queue_dispatchers_free(ds, n);
            return NULL;
        }
    }
    return ds;
}

/* A sequence of S of the primary input for the batching probe: token ids
 * 1..3 (any vocabulary has them) or small float rows, varied by seed. */
static void queue_probe_sequence(const queue_layout *lay, void *x, int64_t S, int seed) {
    const queue_input *p = &lay->in[lay->primary];
    for (int64_t j = 0; j < S * p->row; j++) {
        const int v = (int)((j * 7 + seed * 5) % 3);
        if (p->dtype == MHA_DTYPE_INT64)
            ((int64_t *)x)[j] = v + 1;
        else if (p->dtype == MHA_DTYPE_INT32)
            ((int32_t *)x)[j] = v + 1;
        else
            ((float *)x)[j] = 0.25f * (float)(v - 1) + 0.125f * (float)(j % 5);
    }
}

/* Whether every output of item i of batch x equals item j of batch y (runs
 * padded to Lx and Ly), for a request of S. */
static int queue_probe_same(const queue_layout *lay, const queue_batch *x, int i, int64_t Lx,
                            const queue_batch *y, int j, int64_t Ly, int64_t S) {
    for (size_t k = 0; k < lay->n_out; k++) {
        const queue_output *o = &lay->out[k];
        const size_t row = (size_t)o->row * o->elem;
        for (int64_t s = 0; s < (o->per_token ? S : 1); s++)
            if (memcmp(queue_output_at(lay, x, k, i, Lx, s), queue_output_at(lay, y, k, j, Ly, s),
                       row) != 0)
                return 0;
    }
    return 1;
}

/* How requests may share a run (mha_queue_batching), found once through
 * the batches' own path (the same fill, masks, key lengths, precision):
 * sequences s and t of 2 each alone, together, and s padded to 3 beside a
 * longer one, every output compared bitwise. The masks and key lengths
 * keep padding out of attention only: a model that reads the last
 * position (or pools, or attends, without them) gives a padded request
 * the padding's results; one that quantizes its activations over the
 * whole batch gives each request a scale set by the others. A run that
 * fails leaves the queue unsure: one request a run. A lone attention
 * layer's rows are its own by construction: not probed. */
static mha_queue_batching queue_probe_batching(mha_queue *q) {
    mha_model_info info;
    if (mha_model_get_info(q->model, &info) != MHA_OK) return MHA_BATCH_ALONE;
    if (strcmp(info.form, "plan") != 0) return MHA_BATCH_MIXED_LENGTHS;
    const queue_layout *lay = &q->layout;
    const queue_input *p = &lay->in[lay->primary];
    const size_t tok = (size_t)p->row * p->elem;
    char *x = mha_calloc(NULL, 7, tok > 8 ? tok : 8);
    if (!x) return MHA_BATCH_ALONE;
    const char *s = x, *t = x + 2 * tok, *l = x + 4 * tok;
    queue_probe_sequence(lay, x, 2, 2);
    queue_probe_sequence(lay, x + 2 * tok, 2, 3);
    queue_probe_sequence(lay, x + 4 * tok, 3, 1);
    const void *xs[4][2] = {{s}, {t}, {t, s}, {l, s}};
    const int64_t S[4][2] = {{2}, {2}, {2, 2}, {3, 2}};
    const int n[4] = {1, 1, 2, 2};
    const int64_t L[4] = {2, 2, 2, 3};
    queue_batch b[4];
    memset(b, 0, sizeof b);
    mha_error err;
    mha_error_clear(&err);
    int ran = 1;
    for (int r = 0; r < 4 && ran; r++)
        ran = queue_run_padded(q, &b[r], NULL, n[r], L[r], xs[r], S[r], &err) == MHA_OK;
    mha_queue_batching rule = MHA_BATCH_ALONE;
    if (ran && queue_probe_same(lay, &b[0], 0, 2, &b[2], 1, 2, 2) &&
        queue_probe_same(lay, &b[1], 0, 2, &b[2], 0, 2, 2))
        rule = queue_probe_same(lay, &b[0], 0, 2, &b[3], 1, 3, 2) ? MHA_BATCH_MIXED_LENGTHS
                                                                  : MHA_BATCH_EQUAL_LENGTHS;
    for (int r = 0; r < 4; r++)
        queue_batch_free(&b[r]);
    mha_free(NULL, x);
    return rule;
}

static void queue_free_memory(mha_queue *q) {
    queue_dispatchers_free(q->dispatchers, q->opts.num_dispatchers);
    queue_dispatchers_free(q->callers, q->opts.num_dispatchers);
    queue_spares_close(q->spares);
    pthread_mutex_destroy(&q->mutex);
    pthread_cond_destroy(&q->work_cond);
    pthread_cond_destroy(&q->idle_cond);
    mha_free(NULL, q);
}

static void queue_join(mha_queue *q) {
    pthread_mutex_lock(&q->mutex);
    q->stopping = 1;
    q->accepting = 0;
    pthread_cond_broadcast(&q->work_cond);
    pthread_mutex_unlock(&q->mutex);
    for (int i = 0; i < q->n_dispatchers; i++)
        pthread_join(q->dispatchers[i].thread, NULL);
    q->n_dispatchers = 0;
}

mha_status mha_queue_create(mha_runtime *rt, const mha_model *model, const mha_queue_options *opts,
                            mha_queue **out, mha_error *err) {
    if (out) *out = NULL;
    if (!rt || !model || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "queue create: NULL argument");
    mha_queue_options o;
    mha_queue_options_init(&o);
    if (opts) {
        /* max_padding was appended: a caller built before it passes less */
        const size_t v0 = offsetof(mha_queue_options, max_padding);
        if (opts->struct_size < v0)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "queue create: options not initialised (mha_queue_options_init)");
        memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
        o.struct_size = sizeof o;
    }
    if (o.max_batch < 1 || o.max_batch > 4096 || o.max_batch_tokens < 1 ||
        !(o.max_delay_ms >= 0 && o.max_delay_ms <= 60000) || o.capacity < 1 ||
        o.num_dispatchers < 0 || o.num_dispatchers > 64 || o.num_threads < 0 ||
        !(o.max_queue_ms >= 0) || isnan(o.max_latency_ms) ||
        !(o.max_padding >= 0 && o.max_padding <= 1) || isnan(o.max_batch_ms) || o.caller_runs < 0 ||
        o.caller_runs > 1 ||
        (o.precision != MHA_PRECISION_FLOAT32 && o.precision != MHA_PRECISION_BFLOAT16))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "queue create: options out of range (max_batch 1..4096, "
                        "max_batch_tokens >= 1, max_delay_ms 0..60000, capacity >= 1, "
                        "num_dispatchers 0..64, num_threads >= 0, max_queue_ms >= 0, "
                        "max_latency_ms a number, "
                        "max_padding 0..1, max_batch_ms a number, caller_runs 0 or 1, "
                        "precision MHA_PRECISION_FLOAT32 or MHA_PRECISION_BFLOAT16)");
    /* caller_runs was dropped in silence beside hold_when_idle (a waiter
     * never computes while the queue holds requests for company) */
    if (o.caller_runs && o.hold_when_idle)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "queue create: caller_runs does not go with hold_when_idle");
    /* the weights packed in the batches' precision now: a backend that does
     * not serve it is refused here, and no request pays the packing */
    mha_status pst = runtime_pack_model(rt, model, o.precision, err);
    if (pst != MHA_OK) return pst;
    /* 0: one dispatcher per runtime thread, so that under load every core
     * computes a batch of its own (the pool gives a lone batch them all) */
    if (o.num_dispatchers == 0) {
        const int n = mha_runtime_num_threads(rt);
        o.num_dispatchers = n < 1 ? 1 : n > 64 ? 64 : n;
    }
    /* max_batch_ms 0: a fifth of the latency target, taken as twice
     * max_queue_ms when that is set (mha.h's guidance), else 10 ms;
     * negative: off */
    if (o.max_batch_ms == 0)
        o.max_batch_ms = o.max_queue_ms > 0 ? 0.4 * o.max_queue_ms : QUEUE_AUTO_BATCH_MS;
    else if (o.max_batch_ms < 0)
        o.max_batch_ms = 0;
    /* max_latency_ms 0: the same target, twice max_queue_ms, when set;
     * negative: off */
    if (o.max_latency_ms == 0)
        o.max_latency_ms = 2.0 * o.max_queue_ms;
    else if (o.max_latency_ms < 0)
        o.max_latency_ms = 0;
    mha_queue *q = mha_calloc(NULL, 1, sizeof *q);
    if (!q) return mha_fail(err, MHA_ERR_NO_MEMORY, "queue create: out of memory");
    q->rt = rt;
    q->model = model;
    q->opts = o;
    q->one_core_ms = o.max_batch_ms > 0 ? o.max_batch_ms : QUEUE_AUTO_BATCH_MS;
    q->accepting = 1;
    pthread_mutex_init(&q->mutex, NULL);
    pthread_cond_init(&q->work_cond, NULL);
    pthread_cond_init(&q->idle_cond, NULL);
    /* a batch's worth of requests waiting and one running, within 32 MiB */
    q->spares = queue_spares_create(2 * o.max_batch + 2 * o.num_dispatchers, (size_t)32 << 20);
    if (!q->spares) {
        queue_free_memory(q);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "queue create: out of memory");
    }
    mha_status st = queue_layout_make(model, &q->layout, err);
    if (st != MHA_OK) {
        queue_free_memory(q);
        return st;
    }
    /* once, before any batch: how may requests share a run? */
    q->stats.batching = (int)queue_probe_batching(q);
    q->dispatchers = queue_dispatchers_new(q, o.num_dispatchers, o.max_batch);
    if (o.caller_runs) q->callers = queue_dispatchers_new(q, o.num_dispatchers, o.max_batch);
    if (!q->dispatchers || (o.caller_runs && !q->callers)) {
        queue_free_memory(q);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "queue create: out of memory");
    }

    /* Dispatchers call mha_run, whose calling thread needs kernel stack
     * (mha.h: 512 KiB free); they block every signal, as pool workers do. */
    size_t stack = o.stack_bytes ? o.stack_bytes : ((size_t)2 << 20);
    if (stack < ((size_t)1 << 20)) stack = (size_t)1 << 20;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int i = 0; i < o.num_dispatchers; i++) {
        rc = pthread_create(&q->dispatchers[i].thread, &attr, queue_dispatcher_main,
                            &q->dispatchers[i]);
        if (rc != 0) break;
        q->n_dispatchers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        queue_join(q);
        queue_free_memory(q);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "queue create: cannot start a dispatcher: %s",
                        strerror(rc));
    }
    *out = q;
    return MHA_OK;
}

void mha_queue_get_stats(mha_queue *q, mha_queue_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!q) return;
    pthread_mutex_lock(&q->mutex);
    *out = q->stats;
    pthread_mutex_unlock(&q->mutex);
}

void mha_queue_shutdown(mha_queue *q, int drain, uint64_t *drained, uint64_t *cancelled) {
    if (drained) *drained = 0;
    if (cancelled) *cancelled = 0;
    if (!q) return;
    pthread_mutex_lock(&q->mutex);
    if (!q->accepting) {
        pthread_mutex_unlock(&q->mutex);
        return;
    }
    q->accepting = 0;
    mha_request *gone = NULL;
    uint64_t n_cancelled = 0;
    uint64_t n_drained = (uint64_t)q->stats.depth;
    if (!drain) {
        n_drained = 0;
        while (q->head) {
            mha_request *r = q->head;
            list_remove(q, r);
            request_complete_locked(q, r, MHA_ERR_SHUTDOWN,
                                    "request cancelled: the queue shut down");
            r->next = gone;
            gone = r;
            n_cancelled++;
        }
    }
    pthread_cond_broadcast(&q->work_cond);
    pthread_mutex_unlock(&q->mutex);
    while (gone) {
        mha_request *next = gone->next;
        gone->next = NULL;
        request_finish(gone);
        gone = next;
    }
    /* the dispatchers run what is left (and wait no longer for company) */
    pthread_mutex_lock(&q->mutex);
    q->stopping = 1;
    pthread_cond_broadcast(&q->work_cond);
    while (q->stats.depth > 0 || q->stats.running > 0)
        pthread_cond_wait(&q->idle_cond, &q->mutex);
    pthread_mutex_unlock(&q->mutex);
    if (drained) *drained = n_drained;
    if (cancelled) *cancelled = n_cancelled;
}

void mha_queue_destroy(mha_queue *q) {
    if (!q) return;
    mha_queue_shutdown(q, 0, NULL, NULL);
    queue_join(q);
    queue_free_memory(q);
}

void queue_test_price(mha_queue *q, double ms_per_token) {
    pthread_mutex_lock(&q->mutex);
    q->drain.tokens = 1000.0;
    q->drain.ms = 1000.0 * ms_per_token;
    pthread_mutex_unlock(&q->mutex);
}
