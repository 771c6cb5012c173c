/* queue_admit.c -- the queue's drain rate and the predicted completion of
 * a request (queue_admit.h). Plain arithmetic on the times given; the
 * queue calls it under its mutex. */
#include "queue_admit.h"

/* The weight the sums keep at each completion: about the last four
 * completions decide, as the queue's cost a token (queue.c) */
#define DRAIN_KEEP 0.75

void queue_drain_start(queue_drain *d, double now) {
    d->mark = now;
}

void queue_drain_done(queue_drain *d, int64_t tokens, double now, int counted) {
    const double ms = (now - d->mark) * 1e3;
    d->mark = now;
    if (!counted || tokens <= 0 || !(ms >= 0)) return;
    d->tokens = DRAIN_KEEP * d->tokens + (double)tokens;
    d->ms = DRAIN_KEEP * d->ms + ms;
}

double queue_drain_ms_per_token(const queue_drain *d) {
    return d->tokens > 0 ? d->ms / d->tokens : 0.0;
}

double queue_predict_ms(double ms_per_token, int64_t tokens_ahead, int64_t S, double oldest_ms,
                        double before_ms) {
    /* unpriced (no batch completed yet: the first one may take long, its
     * shapes new to the runtime): what is seen only */
    const double c = ms_per_token > 0 ? ms_per_token : 0.0;
    const double own = (double)S * c;
    const double ahead = (double)tokens_ahead * c + own;
    const double seen = oldest_ms + own;
    return before_ms + (ahead > seen ? ahead : seen);
}
