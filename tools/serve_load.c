/* serve_load.c -- `serve-load`: an open-loop (Poisson) HTTP load generator
 * for `mha serve`: one thread, one epoll loop over a fixed pool of at most
 * --connections keep-alive connections, each request's bytes written in
 * one call (its few header lines, then the body file's own bytes, never
 * copied) and its answer read as it comes. libcurl parses the URL only: its
 * multi interface, the transfers before, cost 0.28-0.47 CPU ms a request
 * (poll over every connection, per-request handles and header lists), time
 * this client took from the two cores the server computes on
 * (docs/SERVING.md, "serve-load on its own HTTP").
 *
 * Request i is due at t_i = t_{i-1} + Exp(rate) for DURATION seconds and
 * is started then, whatever the server does (open loop: a slow answer never
 * delays the next arrival); past --connections busy connections it waits
 * for one to free, and that wait counts in its latency, which runs
 * from t_i to the end of its answer. Request i carries "X-Request-Id: i";
 * the server echoes it, and the report checks that every id was answered
 * exactly once and each answer carried its own request's id. Requests take
 * the --body files in turn; every 200 answer to the same body must be the
 * same bytes (dynamic batching must not change a result).
 *
 *   serve-load --url http://127.0.0.1:8080/run --body x.npy [--body y.npy]
 *              --rate 2000 --duration 10 [--connections 64] [--seed 1]
 *              [--timeout 30] [--interval 10] [--json out.json]
 *
 * One line on stdout: offered and answered rate, answers by status code,
 * latency p50 / p99 / p99.9 / max of the 200 answers and the p99 of the 503
 * ones (ms), the connections opened and serve-load's own CPU time a
 * request. --interval SEC adds, in the JSON, the same per SEC of arrivals.
 * Exit 1 when an id went unanswered, was answered twice or with another id,
 * a body's answers differed, or no request got a 200; 2 on a usage error.
 * Loopback only: the URL must name 127.0.0.1, [::1] or localhost as its
 * host (as libcurl parses it: no user name before an @). A body
 * must be a regular file; the JSON report is checked before the run (not
 * a model's or data's name, not a body, its folder there) and written
 * whole by a rename, as `mha` writes its reports. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mha/mha.h"
#include "mha/tensor_file.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define LOAD_MAX_BODIES 16
#define LOAD_MAX_CODES 16
#define LOAD_HEAD_MAX 8192  /* an answer's status line and headers at most */
#define LOAD_READ (1 << 18) /* bytes a recv takes at most */
#define LOAD_MAX_ADDRS 4    /* addresses tried for the URL's host */

typedef struct load_body {
    const char *path;
    char *data;
    size_t size;
    uint64_t answer_hash; /* of the first 200 answer; 0 = none yet */
    size_t answer_size;
} load_body;

/* One request in flight: its id and what its answer carried. */
typedef struct load_call {
    size_t id;
    uint64_t hash; /* of the answer's body (load_on_body) */
    uint64_t word; /* its bytes not yet hashed, fewer than 8 */
    size_t size;
    long echoed; /* X-Request-Id of the answer, -1 = none */
} load_call;

enum { LOAD_CLOSED, LOAD_CONNECTING, LOAD_IDLE, LOAD_BUSY };

/* One connection of the pool and the request it carries (state BUSY, or
 * CONNECTING with a request waiting to be written). */
typedef struct load_conn {
    int fd, state;
    int in_idle;     /* on the idle stack */
    unsigned served; /* answers read on it: a kept-alive connection */
    load_call call;
    char head[320]; /* the request's header lines */
    struct iovec iov[2];
    size_t to_send;  /* bytes of iov not yet written */
    int send_failed; /* the write failed: the connection is not reused */
    char in[LOAD_HEAD_MAX];
    size_t in_len; /* the answer's header bytes so far */
    int have_head, close_after, got_any;
    long code;
    long long body_left; /* bytes of the answer's body to come; -1: until closed */
} load_conn;

typedef struct load_result {
    double latency_ms; /* < 0: unanswered */
    int code;
} load_result;

typedef struct load_state {
    load_body bodies[LOAD_MAX_BODIES];
    int n_bodies;
    const char *url, *type;
    double rate, duration, timeout, interval;
    long connections;
    unsigned long long seed;
    const char *json;

    double *due; /* [n] seconds after start */
    size_t n;
    load_result *res;  /* [n] */
    unsigned *answers; /* [n] answers carrying id i */
    size_t wrong_id, body_mismatch, failed_transfers;
    char first_failure[160]; /* the reason of the first request that got no answer */

    /* the URL, parsed once: where to dial, what the request line says */
    struct sockaddr_storage addrs[LOAD_MAX_ADDRS];
    socklen_t addr_len[LOAD_MAX_ADDRS];
    int n_addrs, addr_at; /* the address dialled (the next on a refusal) */
    char *target, *host;  /* path and query; the Host header's value */
    /* the pool */
    load_conn *conns;  /* [connections] */
    int *idle, n_idle; /* connected and free, the last freed on top */
    int *closed, n_closed;
    size_t *pending; /* ids due and waiting for a connection: a ring */
    size_t pend_head, pend_len;
    size_t busy; /* requests on connections */
    size_t opened, retried;
    int epfd;
    char *rbuf; /* [LOAD_READ] */
} load_state;

static double load_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* splitmix64: a small seeded generator, the same arrivals for a seed. */
static double load_uniform(unsigned long long *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* (0, 1) */
}

/* A body: a regular file, read whole (a FIFO or /dev/zero was read
 * without end, into memory). -1 with errno set. */
static int load_read_file(const char *path, load_body *b) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *d = malloc(cap);
    for (size_t got; d && (got = fread(d + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *g = realloc(d, cap *= 2);
            if (!g) free(d);
            d = g;
        }
    }
    int bad = ferror(f) || !d;
    fclose(f);
    if (bad) {
        free(d);
        return -1;
    }
    b->data = d;
    b->size = n;
    return 0;
}

/* The answer's body hashed 8 bytes at a time (FNV-1a's step on words; the
 * bytes of a last part word are folded in by load_hash_end), the same for
 * the same bytes however they are cut into pieces: byte by byte, hashing
 * the answers took a quarter of serve-load's CPU time, which it takes from
 * the server's cores. */
static void load_on_body(load_call *c, const char *p, size_t len) {
    size_t k = 0, have = c->size % 8;
    for (; have && k < len; k++, have = (have + 1) % 8) { /* finish a part word */
        c->word |= (uint64_t)(unsigned char)p[k] << (8 * have);
        if (have == 7) {
            c->hash = (c->hash ^ c->word) * 0x100000001b3ULL;
            c->word = 0;
        }
    }
    for (; k + 8 <= len; k += 8) {
        uint64_t w;
        memcpy(&w, p + k, 8);
        c->hash = (c->hash ^ w) * 0x100000001b3ULL;
    }
    for (size_t b = 0; k < len; k++, b++) /* a part word, finished by the next piece */
        c->word |= (uint64_t)(unsigned char)p[k] << (8 * b);
    c->size += len;
}

static uint64_t load_hash_end(const load_call *c) {
    return c->size % 8 ? (c->hash ^ c->word) * 0x100000001b3ULL : c->hash;
}

/* A request done: its answer counted and checked (code > 0), or counted
 * as unanswered with why (code 0). */
static void load_finish(load_state *s, const load_call *c, long code, const char *why,
                        double start) {
    load_result *r = &s->res[c->id];
    if (code == 0) {
        if (!s->failed_transfers++)
            snprintf(s->first_failure, sizeof s->first_failure, "%s", why ? why : "?");
        return;
    }
    r->code = (int)code;
    r->latency_ms = (load_now() - (start + s->due[c->id])) * 1e3;
    /* the answer counts for the id it carries; it must be its own */
    if (c->echoed != (long)c->id) s->wrong_id++;
    if (c->echoed >= 0 && (size_t)c->echoed < s->n) s->answers[c->echoed]++;
    load_body *b = &s->bodies[c->id % (size_t)s->n_bodies];
    if (code == 200) {
        const uint64_t hash = load_hash_end(c);
        if (!b->answer_size) {
            b->answer_hash = hash;
            b->answer_size = c->size;
        } else if (b->answer_hash != hash || b->answer_size != c->size) {
            s->body_mismatch++;
        }
    }
}

/* The value of header line `line` (length n) if it is named `name` (lower
 * case, with its colon), blanks skipped; else NULL. */
static const char *load_header_value(const char *line, size_t n, const char *name) {
    const size_t k = strlen(name);
    if (n < k || strncasecmp(line, name, k) != 0) return NULL;
    while (k < n && (line[k] == ' ' || line[k] == '\t'))
        line++, n--;
    return line + k;
}

/* An answer's status line and headers, c->in[0..end): its code, length,
 * X-Request-Id and whether the connection closes after it. 0, or -1 with
 * why. */
static int load_parse_head(load_conn *c, size_t end, const char **why) {
    const char *p = c->in, *stop = c->in + end;
    if (end < 12 || strncmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[9])) {
        *why = "not an HTTP/1.x answer";
        return -1;
    }
    c->code = strtol(p + 9, NULL, 10);
    c->close_after = p[7] == '0'; /* HTTP/1.0: one answer a connection */
    c->body_left = -1;
    for (const char *line = memchr(p, '\n', end) + 1; line < stop;) {
        const char *eol = memchr(line, '\n', (size_t)(stop - line));
        size_t n = (size_t)((eol ? eol : stop) - line);
        const char *v;
        if ((v = load_header_value(line, n, "content-length:")))
            c->body_left = strtoll(v, NULL, 10);
        else if ((v = load_header_value(line, n, "connection:")) && strncasecmp(v, "close", 5) == 0)
            c->close_after = 1;
        else if ((v = load_header_value(line, n, "transfer-encoding:"))) {
            *why = "a chunked answer (not read)";
            return -1;
        } else if ((v = load_header_value(line, n, "x-request-id:"))) {
            char *e = NULL;
            long id = strtol(v, &e, 10);
            c->call.echoed = e != v && isdigit((unsigned char)*v) ? id : -1;
        }
        line += n + 1;
    }
    return 0;
}

static void load_push_idle(load_state *s, load_conn *c) {
    c->state = LOAD_IDLE;
    if (!c->in_idle) {
        c->in_idle = 1;
        s->idle[s->n_idle++] = (int)(c - s->conns);
    }
}

static void load_close(load_state *s, load_conn *c) {
    if (c->fd >= 0) close(c->fd); /* leaves the epoll set with it */
    if (c->state == LOAD_BUSY || c->state == LOAD_CONNECTING) s->busy--;
    c->fd = -1;
    c->state = LOAD_CLOSED;
    s->closed[s->n_closed++] = (int)(c - s->conns);
}

/* The request on c got no answer: retried once on a new connection when a
 * kept-alive one closed before any byte of it came (the server may close
 * an idle connection as the request goes out), else counted unanswered. */
static void load_lost(load_state *s, load_conn *c, const char *why, double start) {
    const load_call call = c->call;
    const int retry = c->served > 0 && !c->got_any;
    load_close(s, c);
    if (retry) {
        s->retried++;
        s->pend_head = (s->pend_head + s->n - 1) % s->n; /* first in line */
        s->pending[s->pend_head] = call.id;
        s->pend_len++;
    } else {
        load_finish(s, &call, 0, why, start);
    }
}

/* Writes what is left of c's request, until the socket is full. A failed
 * write ends the sending: the server may have answered and closed (a body
 * refused early), and what came is read next. */
static void load_send(load_conn *c) {
    while (c->to_send) {
        struct iovec *v = c->iov[0].iov_len ? c->iov : c->iov + 1;
        struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)(c->iov + 2 - v)};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            c->to_send = 0;
            c->send_failed = 1;
            return;
        }
        c->to_send -= (size_t)w;
        for (size_t left = (size_t)w; left;) {
            struct iovec *x = c->iov[0].iov_len ? &c->iov[0] : &c->iov[1];
            const size_t k = left < x->iov_len ? left : x->iov_len;
            x->iov_base = (char *)x->iov_base + k;
            x->iov_len -= k;
            left -= k;
        }
    }
}

/* Starts request id on connection c (connected or connecting). */
static void load_begin(load_state *s, load_conn *c, size_t id, double start) {
    const load_body *b = &s->bodies[id % (size_t)s->n_bodies];
    int n = snprintf(c->head, sizeof c->head,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nX-Request-Id: %zu\r\nContent-Type: "
                     "%s\r\nContent-Length: %zu\r\n\r\n",
                     s->target, s->host, id, s->type, b->size);
    if (n < 0 || (size_t)n >= sizeof c->head) n = 0; /* never: the parts are bounded */
    memset(&c->call, 0, sizeof c->call);
    c->call.id = id;
    c->call.hash = 0xcbf29ce484222325ULL;
    c->call.echoed = -1;
    c->iov[0] = (struct iovec){c->head, (size_t)n};
    c->iov[1] = (struct iovec){b->data, b->size};
    c->to_send = (size_t)n + b->size;
    c->in_len = 0;
    c->have_head = c->close_after = c->got_any = c->send_failed = 0;
    c->code = 0;
    c->body_left = -1;
    s->busy++;
    if (c->state == LOAD_IDLE) {
        c->state = LOAD_BUSY;
        load_send(c);
    }
}

/* Opens connection c to the URL's address, for request id. */
static void load_open(load_state *s, load_conn *c, size_t id, double start) {
    const struct sockaddr_storage *a = &s->addrs[s->addr_at];
    c->fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = LOAD_CONNECTING;
    c->served = 0;
    load_begin(s, c, id, start);
    if (c->fd < 0) {
        load_lost(s, c, strerror(errno), start);
        return;
    }
    const int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)(c - s->conns)};
    const int err =
        connect(c->fd, (const struct sockaddr *)a, s->addr_len[s->addr_at]) == 0 ? 0 : errno;
    if (err && err != EINPROGRESS && s->addr_at + 1 < s->n_addrs) {
        s->addr_at++; /* localhost: ::1 refused at once, 127.0.0.1 next */
        close(c->fd);
        c->fd = -1;
        s->busy--; /* load_open's load_begin counts it again */
        load_open(s, c, id, start);
        return;
    }
    if ((err && err != EINPROGRESS) || epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        char why[160];
        snprintf(why, sizeof why, "Couldn't connect to server: %s",
                 strerror(err && err != EINPROGRESS ? err : errno));
        load_lost(s, c, why, start);
        return;
    }
    s->opened++;
}

/* Reads what came on c; the answer checked once whole. */
static void load_read(load_state *s, load_conn *c, double start) {
    for (;;) {
        ssize_t got = recv(c->fd, s->rbuf, LOAD_READ, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (got <= 0) { /* closed, or reset */
            char why[160];
            snprintf(why, sizeof why, "%s",
                     got < 0      ? strerror(errno)
                     : c->got_any ? "the connection closed in the middle of the answer"
                                  : "Server returned nothing (no headers, no status line)");
            if (c->have_head && c->body_left < 0) { /* the body ran to the close */
                load_finish(s, &c->call, c->code, NULL, start);
                c->served++;
                load_close(s, c);
            } else {
                load_lost(s, c, why, start);
            }
            return;
        }
        c->got_any = 1;
        const char *p = s->rbuf;
        size_t n = (size_t)got;
        while (!c->have_head && n) { /* the status line and headers */
            size_t room = sizeof c->in - c->in_len, take = n < room ? n : room;
            memcpy(c->in + c->in_len, p, take);
            const size_t from = c->in_len > 3 ? c->in_len - 3 : 0;
            c->in_len += take;
            const char *end = NULL;
            for (size_t k = from; k + 4 <= c->in_len && !end; k++)
                if (memcmp(c->in + k, "\r\n\r\n", 4) == 0) end = c->in + k + 4;
            if (!end) {
                if (c->in_len == sizeof c->in) {
                    load_lost(s, c, "the answer's headers are too long", start);
                    return;
                }
                p += take;
                n -= take;
                continue;
            }
            const size_t used = (size_t)(end - c->in) - (c->in_len - take); /* of this piece */
            const char *why = NULL;
            if (load_parse_head(c, (size_t)(end - c->in), &why) != 0) {
                c->got_any = 0, c->served = 0; /* counted, not retried */
                load_lost(s, c, why, start);
                return;
            }
            p += used;
            n -= used;
            if (c->code >= 100 && c->code < 200) { /* an interim answer: the next follows */
                c->in_len = 0;
                continue;
            }
            c->have_head = 1;
        }
        if (!c->have_head) continue;
        size_t body =
            c->body_left >= 0 && (unsigned long long)c->body_left < n ? (size_t)c->body_left : n;
        load_on_body(&c->call, p, body);
        if (c->body_left >= 0) c->body_left -= (long long)body;
        if (c->body_left == 0) { /* whole */
            load_finish(s, &c->call, c->code, NULL, start);
            c->served++;
            if (c->close_after || c->to_send ||
                c->send_failed) { /* answered before the whole body went */
                load_close(s, c);
            } else {
                s->busy--;
                load_push_idle(s, c);
            }
            return;
        }
    }
}

/* An event on connection c. */
static void load_event(load_state *s, load_conn *c, uint32_t events, double start) {
    if (c->state == LOAD_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
            c->state = LOAD_BUSY;
        } else if (err == EINPROGRESS || err == EALREADY) {
            return;
        } else {
            const size_t id = c->call.id;
            if (s->addr_at + 1 < s->n_addrs) { /* localhost: ::1 refused, 127.0.0.1 next */
                s->addr_at++;
                load_close(s, c);
                s->n_closed--; /* reopened at once */
                load_open(s, c, id, start);
                return;
            }
            char why[160];
            snprintf(why, sizeof why, "Couldn't connect to server: %s",
                     strerror(err ? err : ECONNREFUSED));
            c->served = 0;
            load_lost(s, c, why, start);
            return;
        }
    }
    if (c->state == LOAD_BUSY && c->to_send && (events & EPOLLOUT)) load_send(c);
    if (c->state == LOAD_BUSY && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        load_read(s, c, start);
    else if (c->state == LOAD_IDLE && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        /* an idle connection the server closed (its idle timeout) */
        s->busy++; /* load_close counts it down again */
        c->state = LOAD_BUSY;
        load_close(s, c);
    }
}

/* The requests waiting for a connection go on free ones: a kept-alive
 * connection first, else a new one while the pool has room. */
static void load_assign(load_state *s, double start) {
    while (s->pend_len) {
        load_conn *c = NULL;
        while (s->n_idle && !c) {
            load_conn *k = &s->conns[s->idle[--s->n_idle]];
            k->in_idle = 0;
            if (k->state == LOAD_IDLE) c = k;
        }
        if (!c && !s->n_closed) return;
        const size_t id = s->pending[s->pend_head];
        s->pend_head = (s->pend_head + 1) % s->n;
        s->pend_len--;
        if (c)
            load_begin(s, c, id, start);
        else
            load_open(s, &s->conns[s->closed[--s->n_closed]], id, start);
    }
}

/* Requests past --timeout on their connection: closed, counted unanswered. */
static void load_expire(load_state *s, double start, double now) {
    for (long i = 0; i < s->connections; i++) {
        load_conn *c = &s->conns[i];
        if ((c->state == LOAD_BUSY || c->state == LOAD_CONNECTING) &&
            now - (start + s->due[c->call.id]) > s->timeout) {
            c->served = 0; /* not retried */
            load_lost(s, c, "Timeout was reached", start);
        }
    }
}

/* Sends every request at its time and waits for every answer. The next
 * arrival's time is set on a timer that the epoll set watches beside the
 * connections (a wait of whole milliseconds let arrivals slip, and polling
 * out the part of a millisecond before one spun). */
static int load_drive(load_state *s, double start) {
    const int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (tfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, tfd, &tev) != 0) {
        if (tfd >= 0) close(tfd);
        return -1;
    }
    size_t next = 0;
    double timer_at = -1, checked = 0;
    for (;;) {
        double now = load_now();
        for (; next < s->n && start + s->due[next] <= now; next++) {
            s->pending[(s->pend_head + s->pend_len) % s->n] = next;
            s->pend_len++;
        }
        load_assign(s, start);
        if (next >= s->n && !s->busy && !s->pend_len) break;
        if (now - checked > 0.01) {
            load_expire(s, start, now);
            checked = now;
            load_assign(s, start);
        }
        if (next < s->n && start + s->due[next] != timer_at) {
            timer_at = start + s->due[next];
            struct itimerspec it;
            memset(&it, 0, sizeof it);
            it.it_value.tv_sec = (time_t)timer_at;
            it.it_value.tv_nsec = (long)((timer_at - (double)it.it_value.tv_sec) * 1e9);
            if (it.it_value.tv_nsec > 999999999L) it.it_value.tv_nsec = 999999999L;
            if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0) it.it_value.tv_nsec = 1;
            (void)timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
        }
        struct epoll_event ev[64];
        const int k = epoll_wait(s->epfd, ev, 64, 100);
        for (int i = 0; i < k; i++) {
            if (ev[i].data.u64 == UINT64_MAX) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0) { /* not yet due */
                }
                continue;
            }
            load_conn *c = &s->conns[ev[i].data.u64];
            if (c->fd >= 0) load_event(s, c, ev[i].events, start);
        }
    }
    close(tfd);
    return 0;
}

/* The URL's parts the requests need: the addresses of its host (127.0.0.1,
 * ::1, localhost's), the Host header, the path and query. 0, or -1 said
 * on stderr. */
static int load_resolve(load_state *s) {
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *path = NULL, *query = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, s->url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        (void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
        char name[64];
        snprintf(name, sizeof name, "%s", host);
        size_t len = strlen(name);
        if (name[0] == '[' && len > 2 && name[len - 1] == ']') { /* [::1] */
            memmove(name, name + 1, len - 2);
            name[len - 2] = 0;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int g = getaddrinfo(name, port, &hints, &res);
        for (struct addrinfo *a = res; a && s->n_addrs < LOAD_MAX_ADDRS; a = a->ai_next) {
            memcpy(&s->addrs[s->n_addrs], a->ai_addr, a->ai_addrlen);
            s->addr_len[s->n_addrs++] = a->ai_addrlen;
        }
        if (res) freeaddrinfo(res);
        size_t tn = strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
        s->target = malloc(tn);
        s->host = malloc(strlen(host) + strlen(port) + 2);
        if (s->target && s->host) {
            snprintf(s->target, tn, "%s%s%s", path, query ? "?" : "", query ? query : "");
            sprintf(s->host, "%s:%s", host, port);
        }
        if (g != 0 || !s->n_addrs)
            fprintf(stderr, "serve-load: %s: cannot resolve %s: %s\n", s->url, name,
                    g ? gai_strerror(g) : "no address");
        else if (s->target && s->host && strlen(s->target) < 128 && strlen(s->host) < 64)
            rc = 0;
        else
            fprintf(stderr, "serve-load: %s: the URL is too long\n", s->url);
    }
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

static int load_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of v[0..n) sorted ascending (q in [0, 100]). */
static double load_pct(const double *v, size_t n, double q) {
    if (!n) return NAN;
    size_t rank = (size_t)ceil(q / 100.0 * (double)n);
    if (rank < 1) rank = 1;
    return v[(rank > n ? n : rank) - 1];
}

typedef struct load_summary {
    size_t requests, ok, refused, codes_n[LOAD_MAX_CODES];
    int codes[LOAD_MAX_CODES];
    size_t n_codes;
    double p50, p99, p999, max, refused_p50, refused_p99;
} load_summary;

/* Summarises the requests due in [t0, t1). scratch: [n] doubles. */
static void load_summarise(const load_state *s, double t0, double t1, double *scratch,
                           load_summary *out) {
    memset(out, 0, sizeof *out);
    size_t n_ok = 0, n_ref = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->due[i] < t0 || s->due[i] >= t1) continue;
        out->requests++;
        const load_result *r = &s->res[i];
        if (r->code == 200) scratch[n_ok++] = r->latency_ms;
        size_t k = 0;
        while (k < out->n_codes && out->codes[k] != r->code)
            k++;
        if (k == out->n_codes && k < LOAD_MAX_CODES) out->codes[out->n_codes++] = r->code;
        if (k < LOAD_MAX_CODES) out->codes_n[k]++;
    }
    qsort(scratch, n_ok, sizeof *scratch, load_cmp);
    out->ok = n_ok;
    out->p50 = load_pct(scratch, n_ok, 50);
    out->p99 = load_pct(scratch, n_ok, 99);
    out->p999 = load_pct(scratch, n_ok, 99.9);
    out->max = n_ok ? scratch[n_ok - 1] : NAN;
    for (size_t i = 0; i < s->n; i++)
        if (s->due[i] >= t0 && s->due[i] < t1 && s->res[i].code == 503)
            scratch[n_ref++] = s->res[i].latency_ms;
    qsort(scratch, n_ref, sizeof *scratch, load_cmp);
    out->refused = n_ref;
    out->refused_p50 = load_pct(scratch, n_ref, 50);
    out->refused_p99 = load_pct(scratch, n_ref, 99);
}

/* JSON has no NaN: null instead. */
static void load_json_num(FILE *f, const char *name, double v, const char *after) {
    if (isnan(v))
        fprintf(f, "\"%s\": null%s", name, after);
    else
        fprintf(f, "\"%s\": %.3f%s", name, v, after);
}

static void load_json_summary(FILE *f, const load_summary *m) {
    fprintf(f, "\"requests\": %zu, \"codes\": {", m->requests);
    for (size_t k = 0; k < m->n_codes; k++)
        fprintf(f, "%s\"%d\": %zu", k ? ", " : "", m->codes[k], m->codes_n[k]);
    fprintf(f, "}, ");
    load_json_num(f, "p50_ms", m->p50, ", ");
    load_json_num(f, "p99_ms", m->p99, ", ");
    load_json_num(f, "p99.9_ms", m->p999, ", ");
    load_json_num(f, "max_ms", m->max, ", ");
    load_json_num(f, "refused_p50_ms", m->refused_p50, ", ");
    load_json_num(f, "refused_p99_ms", m->refused_p99, "");
}

static void load_usage(void) {
    fprintf(stderr, "usage: serve-load --url http://127.0.0.1:PORT/run --body FILE [--body FILE]"
                    " --rate R [--duration SEC] [--connections N] [--seed N] [--timeout SEC]"
                    " [--interval SEC] [--type CONTENT-TYPE] [--json FILE]\n");
}

/* Whether url is one this tool may load: http to 127.0.0.1, [::1] or
 * localhost, as libcurl itself parses it -- a prefix compare passed
 * "http://127.0.0.1:x@example.com/run", whose host is example.com (the
 * text before '@' is a user name and password). 1 yes; 0 with the reason
 * in why. */
static int load_loopback(const char *url, char *why, size_t why_n) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL;
    const char *bad = NULL;
    CURLUcode rc = u ? curl_url_set(u, CURLUPART_URL, url, 0) : CURLUE_OUT_OF_MEMORY;
    if (rc != CURLUE_OK)
        bad = curl_url_strerror(rc);
    else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
        bad = "it names a user ('@' before the host)";
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             strcmp(scheme, "http") != 0)
        bad = "not http";
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
             (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "[::1]") != 0 &&
              strcasecmp(host, "localhost") != 0))
        bad = "its host is not loopback";
    if (bad) snprintf(why, why_n, "%s", bad);
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_url_cleanup(u);
    return bad == NULL;
}

/* --json, before any request: the report is written at the end, over
 * whatever the name held -- a model, a dataset, the body being sent (all
 * were replaced by the JSON) -- or into a folder that is not there, a
 * name that is no file ("", "dir/"), a read-only file (found only after
 * the whole run, and the run's exit was 0). 0 if it may be written. */
static int load_json_check(const load_state *s) {
    static const char *const data[] = {".onnx", ".npy", ".npz", ".pb"};
    const char *dot = strrchr(s->json, '.');
    for (size_t k = 0; dot && !strchr(dot, '/') && k < sizeof data / sizeof data[0]; k++)
        if (strcasecmp(dot, data[k]) == 0) {
            fprintf(stderr,
                    "serve-load: --json writes a report, not '%s' (%s is a model or data)\n",
                    s->json, dot);
            return -1;
        }
    for (int i = 0; i < s->n_bodies; i++)
        if (mha_output_same_file(s->json, s->bodies[i].path)) {
            fprintf(stderr, "serve-load: --json '%s' is the body '%s'\n", s->json,
                    s->bodies[i].path);
            return -1;
        }
    mha_error err;
    mha_error_clear(&err);
    if (mha_output_check(s->json, &err) == MHA_OK) return 0;
    fprintf(stderr, "serve-load: --json %s\n", err.message);
    return -1;
}

static int load_parse(load_state *s, int argc, char **argv) {
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},
                                         {"body", required_argument, 0, 'b'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"connections", required_argument, 0, 'c'},
                                         {"seed", required_argument, 0, 's'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"interval", required_argument, 0, 'i'},
                                         {"type", required_argument, 0, 'y'},
                                         {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int idx = 0;
    const char *given[128] = {0}; /* the value of each single-valued option */
    for (int o; (o = getopt_long(argc, argv, "", opts, &idx)) != -1;) {
        /* one given twice took the last value in silence */
        if (o != 'b' && o > 0 && o < 128 && optarg) {
            if (given[o] && strcmp(given[o], optarg) != 0) {
                fprintf(stderr, "serve-load: --%s is given twice, as '%s' and '%s': give it once\n",
                        opts[idx].name, given[o], optarg);
                return 2;
            }
            given[o] = optarg;
        }
        char *end = NULL;
        double v = optarg ? strtod(optarg, &end) : 0;
        int num = optarg && end && *end == 0 && end != optarg;
        switch (o) {
        case 'u':
            s->url = optarg;
            break;
        case 'b':
            if (s->n_bodies == LOAD_MAX_BODIES) {
                fprintf(stderr, "serve-load: %d bodies at most\n", LOAD_MAX_BODIES);
                return 2;
            }
            if (load_read_file(optarg, &s->bodies[s->n_bodies]) != 0) {
                fprintf(stderr, "serve-load: %s: %s\n", optarg,
                        errno == EINVAL ? "not a regular file" : strerror(errno));
                return 1;
            }
            s->bodies[s->n_bodies++].path = optarg;
            break;
        case 'y':
            /* a header value: a CR or LF would end it and start headers of
             * the caller's making (a second Content-Length, a request) */
            for (const char *c = optarg; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                    fprintf(stderr, "serve-load: --type holds a control byte (0x%02x)\n",
                            (unsigned char)*c);
                    return 2;
                }
            s->type = optarg;
            break;
        case 'j':
            s->json = optarg;
            break;
        case 'r':
        case 'd':
        case 't':
        case 'i':
        case 'c':
        case 's':
            if (!num || !(v >= 0) || v > 1e9) {
                fprintf(stderr, "serve-load: --%s wants a number >= 0, got '%s'\n", opts[idx].name,
                        optarg);
                return 2;
            }
            if (o == 'r') s->rate = v;
            if (o == 'd') s->duration = v;
            if (o == 't') s->timeout = v;
            if (o == 'i') s->interval = v;
            if (o == 'c') s->connections = (long)v;
            if (o == 's') s->seed = (unsigned long long)v;
            break;
        default:
            load_usage();
            return o == 'h' ? 0 : 2;
        }
    }
    if (s->url && s->n_bodies && optind == argc && (!(s->rate > 0) || s->connections < 1)) {
        fprintf(stderr, "serve-load: --%s wants a number %s, got 0\n",
                !(s->rate > 0) ? "rate" : "connections", !(s->rate > 0) ? "> 0" : ">= 1");
        return 2;
    }
    if (!s->url || !s->n_bodies || !(s->rate > 0) || optind != argc || s->connections < 1) {
        load_usage();
        return 2;
    }
    if (s->json && load_json_check(s) != 0) return 2;
    char why[160];
    if (!load_loopback(s->url, why, sizeof why)) {
        fprintf(stderr,
                "serve-load: loopback only (http to 127.0.0.1, [::1], localhost), not %s: %s\n",
                s->url, why);
        return 2;
    }
    return -1;
}

/* The arrivals: Poisson at s->rate over s->duration seconds. */
static int load_arrivals(load_state *s) {
    size_t cap = (size_t)(s->rate * s->duration * 1.2) + 16;
    s->due = malloc(cap * sizeof *s->due);
    unsigned long long g = s->seed;
    for (double t = -log(load_uniform(&g)) / s->rate; s->due && t < s->duration;
         t += -log(load_uniform(&g)) / s->rate) {
        if (s->n == cap) {
            double *d = realloc(s->due, (cap *= 2) * sizeof *d);
            if (!d) {
                free(s->due);
                s->due = NULL;
                break;
            }
            s->due = d;
        }
        s->due[s->n++] = t;
    }
    size_t n = s->n ? s->n : 1;
    s->res = calloc(n, sizeof *s->res);
    s->answers = calloc(n, sizeof *s->answers);
    s->pending = calloc(n, sizeof *s->pending);
    s->conns = calloc((size_t)s->connections, sizeof *s->conns);
    s->idle = calloc((size_t)s->connections, sizeof *s->idle);
    s->closed = calloc((size_t)s->connections, sizeof *s->closed);
    s->rbuf = malloc(LOAD_READ);
    if (!s->due || !s->res || !s->answers || !s->pending || !s->conns || !s->idle || !s->closed ||
        !s->rbuf)
        return -1;
    for (long i = s->connections; i-- > 0;) { /* the first taken first */
        s->conns[i].fd = -1;
        s->closed[s->n_closed++] = (int)i;
    }
    for (size_t i = 0; i < s->n; i++)
        s->res[i].latency_ms = -1;
    return 0;
}

/* Prints the summary and writes --json; 0, or -1 when the report could
 * not be written (said on stderr). */
static int load_report(load_state *s, double elapsed, double *scratch) {
    load_summary all;
    load_summarise(s, 0, s->duration + 1, scratch, &all);
    size_t unanswered = 0, twice = 0;
    for (size_t i = 0; i < s->n; i++) {
        unanswered += s->answers[i] == 0;
        twice += s->answers[i] > 1;
    }
    printf("offered %.0f/s, %zu requests: %.0f answered 200/s; codes {", s->rate, s->n,
           (double)all.ok / elapsed);
    for (size_t k = 0; k < all.n_codes; k++)
        printf("%s%d: %zu", k ? ", " : "", all.codes[k], all.codes_n[k]);
    /* this process's own CPU time (user + system) a request: what the
     * client takes from the cores the server computes on */
    struct rusage ru;
    double cpu_ms = NAN;
    if (getrusage(RUSAGE_SELF, &ru) == 0 && s->n)
        cpu_ms = ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                  1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) *
                 1e3 / (double)s->n;
    printf("}; unanswered %zu, twice %zu, wrong id %zu, differing answers %zu; latency p50 %.2f "
           "ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; 503 p50 %.2f ms, p99 %.2f ms; "
           "%zu connections opened, %zu requests retried; serve-load CPU %.3f ms a request\n",
           unanswered, twice, s->wrong_id, s->body_mismatch, all.p50, all.p99, all.p999, all.max,
           all.refused_p50, all.refused_p99, s->opened, s->retried, cpu_ms);
    if (!s->json) return 0;
    /* the report whole or not at all: printed to memory, then saved by
     * libmha's atomic writer (a temporary beside the target renamed into
     * place; a FIFO or device written directly) */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        fprintf(stderr, "serve-load: %s: %s\n", s->json, strerror(errno));
        return -1;
    }
    fprintf(f, "{\"offered_rps\": %.3f, \"duration_s\": %.3f, \"achieved_rps\": %.3f, ", s->rate,
            s->duration, (double)all.ok / elapsed);
    fprintf(f,
            "\"unanswered\": %zu, \"answered_twice\": %zu, \"wrong_id\": %zu, "
            "\"differing_answers\": %zu, \"failed_transfers\": %zu, \"connections_opened\": %zu, "
            "\"retried\": %zu, ",
            unanswered, twice, s->wrong_id, s->body_mismatch, s->failed_transfers, s->opened,
            s->retried);
    load_json_num(f, "cpu_ms_per_request", cpu_ms, ", ");
    load_json_summary(f, &all);
    fprintf(f, ",\n \"intervals\": [");
    for (double t = 0; s->interval > 0 && t < s->duration; t += s->interval) {
        load_summary m;
        load_summarise(s, t, t + s->interval, scratch, &m);
        fprintf(f, "%s\n  {\"t_s\": %.1f, ", t > 0 ? "," : "", t);
        load_json_summary(f, &m);
        fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    mha_error err;
    mha_error_clear(&err);
    int rc = 0;
    if (bad) {
        fprintf(stderr, "serve-load: %s: out of memory\n", s->json);
        rc = -1;
    } else if (mha_output_save(s->json, buf, len, &err) != MHA_OK) {
        fprintf(stderr, "serve-load: %s\n", err.message);
        rc = -1;
    }
    free(buf);
    return rc;
}

int main(int argc, char **argv) {
    load_state s;
    memset(&s, 0, sizeof s);
    s.type = "application/x-npy";
    s.duration = 10;
    s.timeout = 30;
    s.connections = 64;
    s.seed = 1;
    int rc = load_parse(&s, argc, argv);
    if (rc >= 0) { /* refused (or --help): the bodies read so far go */
        for (int b = 0; b < s.n_bodies; b++)
            free(s.bodies[b].data);
        return rc;
    }
    rc = 1;
    double *scratch = NULL;
    s.epfd = -1;
    if (load_resolve(&s) != 0) goto done;
    if (load_arrivals(&s) != 0 || !(scratch = malloc((s.n ? s.n : 1) * sizeof *scratch))) {
        fprintf(stderr, "serve-load: out of memory for %zu requests\n", s.n);
        goto done;
    }
    signal(SIGPIPE, SIG_IGN); /* a write to a closed connection fails, and is said */
    double start = load_now() + 0.05;
    if ((s.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 || load_drive(&s, start) != 0) {
        fprintf(stderr, "serve-load: cannot wait for the connections: %s\n", strerror(errno));
        goto done;
    }
    double elapsed = load_now() - start;
    const int saved = load_report(&s, elapsed > 1e-9 ? elapsed : 1e-9, scratch);
    size_t unanswered = 0, twice = 0, ok = 0;
    for (size_t i = 0; i < s.n; i++) {
        unanswered += s.answers[i] == 0;
        twice += s.answers[i] > 1;
        ok += s.res[i].code == 200;
    }
    /* a report that could not be written fails the run (it said 0) */
    rc = unanswered || twice || s.wrong_id || s.body_mismatch || !ok || saved != 0 ? 1 : 0;
    /* and a failed run says why on stderr, not only in the summary */
    if (s.failed_transfers)
        fprintf(stderr, "serve-load: %s: %zu of %zu requests got no answer: %s\n", s.url,
                s.failed_transfers, s.n, s.first_failure);
    else if (rc && saved == 0)
        fprintf(stderr,
                "serve-load: %s: %zu of %zu requests answered 200; unanswered %zu, twice %zu, "
                "wrong id %zu, differing answers %zu\n",
                s.url, ok, s.n, unanswered, twice, s.wrong_id, s.body_mismatch);
done:
    for (long i = 0; s.conns && i < s.connections; i++)
        if (s.conns[i].fd >= 0) close(s.conns[i].fd);
    if (s.epfd >= 0) close(s.epfd);
    for (int b = 0; b < s.n_bodies; b++)
        free(s.bodies[b].data);
    free(s.due);
    free(s.res);
    free(s.answers);
    free(s.pending);
    free(s.conns);
    free(s.idle);
    free(s.closed);
    free(s.rbuf);
    free(s.target);
    free(s.host);
    free(scratch);
    return rc;
}
