/* serve_guard.c -- the header deadline of `mha serve`'s connections (see
 * serve_guard.h).
 *
 * Every open connection has a watch entry: its socket, what it is waiting
 * for and since when:
 *
 *   headers  since its start or its last answer    overdue after the bound
 *   body     since its headers, bytes so far        overdue after the bound
 *                                                   + bytes / min_body_rate
 *   (none)   while the request is computed and answered
 *
 * A thread looks every quarter of the bound (at most every 100 ms) and
 * shuts down the socket of each overdue connection; libmicrohttpd's
 * thread for that connection then reads end of file and closes it. The
 * socket is touched only under the guard's mutex while its entry exists,
 * and libmicrohttpd tells of a connection's close (the entry removed under
 * the same mutex) before it closes the socket, so a socket number reused
 * by a newer connection is never shut down by mistake. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "serve_guard.h"
#include "serve_mhd.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

typedef enum { GUARD_HEADERS, GUARD_BODY, GUARD_BUSY } guard_phase;

typedef struct guard_entry {
    struct guard_entry *prev, *next;
    int fd;
    guard_phase phase;
    int cut;      /* shut down already */
    double since; /* monotonic seconds: when the phase began */
    double bytes; /* of the body so far */
} guard_entry;

struct serve_guard {
    pthread_mutex_t mutex; /* guards the list, stop and timeouts */
    pthread_cond_t wake;   /* stop was set */
    pthread_t thread;
    guard_entry *head;
    double bound_s;
    double min_body_rate; /* bytes a second; 0: bodies unbounded */
    int stop;
    uint64_t timeouts;
};

static double guard_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *guard_main(void *arg) {
    serve_guard *g = arg;
    double period = g->bound_s / 4 < 0.1 ? g->bound_s / 4 : 0.1;
    if (period < 0.005) period = 0.005;
    pthread_mutex_lock(&g->mutex);
    while (!g->stop) {
        double now = guard_now();
        for (guard_entry *e = g->head; e; e = e->next) {
            const double late = now - e->since - g->bound_s;
            const int overdue = e->phase == GUARD_HEADERS ? late > 0
                                : e->phase == GUARD_BODY
                                    ? g->min_body_rate > 0 && late > e->bytes / g->min_body_rate
                                    : 0;
            if (overdue && !e->cut) {
                shutdown(e->fd, SHUT_RDWR);
                e->cut = 1;
                g->timeouts++;
            }
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long ns = until.tv_nsec + (long)(period * 1e9);
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&g->wake, &g->mutex, &until);
    }
    pthread_mutex_unlock(&g->mutex);
    return NULL;
}

serve_guard *serve_guard_start(double header_ms, double min_body_rate) {
    serve_guard *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->bound_s = header_ms / 1e3;
    g->min_body_rate = min_body_rate;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mutex, NULL);
    pthread_cond_init(&g->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->mutex);
        free(g);
        return NULL;
    }
    return g;
}

void serve_guard_stop(serve_guard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mutex);
    g->stop = 1;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mutex);
    pthread_join(g->thread, NULL);
    while (g->head) { /* none once the daemon stopped; kept safe anyway */
        guard_entry *e = g->head;
        g->head = e->next;
        free(e);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->mutex);
    free(g);
}

void serve_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode code) {
    serve_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        guard_entry *e = fi ? calloc(1, sizeof *e) : NULL;
        *socket_context = e;
        if (!e) return; /* unwatched: the idle timeout still applies */
        e->fd = fi->connect_fd;
        e->phase = GUARD_HEADERS;
        e->since = guard_now();
        pthread_mutex_lock(&g->mutex);
        e->next = g->head;
        if (g->head) g->head->prev = e;
        g->head = e;
        pthread_mutex_unlock(&g->mutex);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        guard_entry *e = *socket_context;
        if (!e) return;
        pthread_mutex_lock(&g->mutex);
        if (e->prev)
            e->prev->next = e->next;
        else
            g->head = e->next;
        if (e->next) e->next->prev = e->prev;
        pthread_mutex_unlock(&g->mutex);
        free(e);
        *socket_context = NULL;
    }
}

/* conn's entry (called on its own thread: the entry lives while it runs). */
static guard_entry *guard_entry_of(serve_guard *g, struct MHD_Connection *conn) {
    if (!g) return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* conn waits for `phase` from now. */
static void guard_set_phase(serve_guard *g, struct MHD_Connection *conn, guard_phase phase) {
    guard_entry *e = guard_entry_of(g, conn);
    if (!e) return;
    pthread_mutex_lock(&g->mutex);
    e->phase = phase;
    e->since = guard_now();
    e->bytes = 0;
    pthread_mutex_unlock(&g->mutex);
}

void serve_guard_headers_in(serve_guard *g, struct MHD_Connection *conn) {
    guard_set_phase(g, conn, GUARD_BODY);
}

void serve_guard_body(serve_guard *g, struct MHD_Connection *conn, size_t bytes) {
    guard_entry *e = guard_entry_of(g, conn);
    if (!e) return;
    pthread_mutex_lock(&g->mutex);
    e->bytes += (double)bytes;
    pthread_mutex_unlock(&g->mutex);
}

void serve_guard_body_in(serve_guard *g, struct MHD_Connection *conn) {
    guard_set_phase(g, conn, GUARD_BUSY);
}

void serve_guard_request_done(serve_guard *g, struct MHD_Connection *conn) {
    guard_set_phase(g, conn, GUARD_HEADERS);
}

uint64_t serve_guard_timeouts(serve_guard *g) {
    if (!g) return 0;
    pthread_mutex_lock(&g->mutex);
    uint64_t n = g->timeouts;
    pthread_mutex_unlock(&g->mutex);
    return n;
}
