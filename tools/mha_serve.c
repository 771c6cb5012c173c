/* mha_serve.c -- `mha serve MODEL`: an HTTP/1.1 endpoint on the request
 * queue of libmha (mha_queue_*, dynamic batching), built on GNU
 * libmicrohttpd (the HTTP parsing is the library's, not ours).
 *
 *   POST /run      body: one sequence as .npy (float32 [S, D] or [1, S, D],
 *                  or a whole model's token ids int64 [S] or [1, S]; as
 *                  `mha run` takes them, narrower integer ids widened and
 *                  other float types converted: serve_convert_body;
 *                  Content-Type application/x-npy or application/octet-stream)
 *                  or as JSON nested arrays (application/json, serve_json.c)
 *                  -> 200, the output the same way, of the same rank (.npy:
 *                  the output ?output=NAME, default the first; JSON: every
 *                  output, an object by name when there are several)
 *   GET  /health   -> 200 "ok" (503 "draining" once shutting down)
 *   GET  /metrics  -> Prometheus text: requests by code, batch sizes, queue
 *                  depth, latency histogram
 *   Every answer carries the request's X-Request-Id header back (up to
 *   128 bytes).
 *
 * Threads: libmicrohttpd's own few threads (--http-threads, default 1, each
 * an epoll loop over its share of the connections) read the requests and
 * write the answers; a request's connection is suspended while the queue
 * computes it (no thread waits on it) and resumed from the request's
 * completion callback, which the queue's dispatcher runs. With
 * --caller-runs a connection has a thread of its own instead, which blocks
 * in mha_request_wait and computes batches itself. SIGTERM / SIGINT: stop
 * accepting connections, drain the queue (every accepted request is
 * answered), stop, exit 0. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "mha_cli.h"
#include "cli_options.h"
#include "serve_guard.h"
#include "serve_json.h"
#include "serve_mhd.h"
#include "mha/npy.h"

enum {
    SERVE_PORT = 1,
    SERVE_MAX_BATCH,
    SERVE_MAX_TOKENS,
    SERVE_CAPACITY,
    SERVE_DISPATCHERS,
    SERVE_RUN_THREADS,
    SERVE_MAX_BODY,
    SERVE_MIN_BODY_RATE,
    SERVE_MAX_CONN,
    SERVE_HTTP_THREADS,
    SERVE_COMPUTE_NICE, /* the integer options: the order of serve_ints */
    SERVE_HOST,
    SERVE_PORT_FILE,
    SERVE_MAX_DELAY_MS,
    SERVE_MAX_QUEUE_MS,
    SERVE_MAX_LATENCY_MS,
    SERVE_DEADLINE_MS,
    SERVE_MAX_PADDING,
    SERVE_MAX_BATCH_MS,
    SERVE_HOLD_WHEN_IDLE,
    SERVE_HEADER_TIMEOUT_MS,
    SERVE_CALLER_RUNS,
};

static const cli_opt serve_opts[] = {
    {SERVE_HOST, "host", 0, "ADDR", "address to bind (default 127.0.0.1; IPv4 or IPv6)"},
    {SERVE_PORT, "port", 0, "N", "port (default 8080; 0 = any free port)"},
    {SERVE_PORT_FILE, "port-file", 0, "FILE", "write the bound port there once listening"},
    {SERVE_MAX_BATCH, "max-batch", 0, "N",
     "requests per batch at most (default 16; 1 = no batching)"},
    {SERVE_MAX_DELAY_MS, "max-delay-ms", 0, "X",
     "how long a batch waits for company while another batch\n"
     "runs (default 1)"},
    {SERVE_HOLD_WHEN_IDLE, "hold-when-idle", 0, NULL,
     "a request that finds the queue idle also waits\n"
     "--max-delay-ms for company (default: it goes at once)"},
    {SERVE_MAX_TOKENS, "max-tokens", 0, "N",
     "batch size x longest sequence at most (default 4096)"},
    {SERVE_CAPACITY, "capacity", 0, "N", "requests waiting at most, then 503 (default 256)"},
    {SERVE_MAX_QUEUE_MS, "max-queue-ms", 0, "X",
     "also 503 when the work waiting would take longer than\n"
     "X ms (at the recent cost per token; default 0: off)"},
    {SERVE_MAX_LATENCY_MS, "max-latency-ms", 0, "X",
     "also 503 when a request would not complete within X ms\n"
     "(the work ahead and its own at the rate the queue drained\n"
     "lately; default 0: twice --max-queue-ms if set, else off;\n"
     "'off': never): the latency target, kept under overload"},
    {SERVE_MAX_PADDING, "max-padding", 0, "X",
     "share of a batch run's rows that may be padding (default\n"
     "0.125): requests of lengths further apart run as separate\n"
     "runs; 1 = one padded run per batch"},
    {SERVE_MAX_BATCH_MS, "max-batch-ms", 0, "X",
     "a batch takes requests while they would compute in X ms\n"
     "(at the recent cost per token): what a request arriving\n"
     "behind a batch waits; about a fifth of the latency target\n"
     "(default 0: 0.4 x --max-queue-ms if set, else 2 ms; off:\n"
     "no such bound)"},
    {SERVE_DISPATCHERS, "dispatchers", 0, "N",
     "batches computed at once, sharing the threads (default 0:\n"
     "one per runtime thread)"},
    {SERVE_RUN_THREADS, "run-threads", 0, "N",
     "threads of each batch's run (default 0: one while one core\n"
     "computes the batch within --max-batch-ms, no barriers\n"
     "between two threads; else the runtime's, shared out\n"
     "between the batches running; 1: every batch on one core)"},
    {SERVE_CALLER_RUNS, "caller-runs", 0, NULL,
     "a connection's thread waiting on its request computes\n"
     "the next batch itself while a core is free (no hand-off\n"
     "to a dispatcher and back for a lone request); not with\n"
     "--hold-when-idle or --http-threads"},
    {SERVE_DEADLINE_MS, "deadline-ms", 0, "X",
     "a request not started by then gets 504, and one the work\n"
     "waiting would delay past it 503 at once (default: none)"},
    {SERVE_MAX_BODY, "max-body-bytes", 0, "N", "largest request body (default 16777216)"},
    {SERVE_MAX_CONN, "max-connections", 0, "N", "connections at once (default 256)"},
    {SERVE_HTTP_THREADS, "http-threads", 0, "N",
     "threads reading requests and writing answers, each over\n"
     "its share of the connections (default 1; the queue's\n"
     "dispatchers compute); not with --caller-runs, where each\n"
     "connection has a thread"},
    {SERVE_COMPUTE_NICE, "compute-nice", 0, "N",
     "the threads that compute (the runtime's and the queue's)\n"
     "run N nice steps below the HTTP threads (default 0; under\n"
     "SCHED_FIFO or SCHED_RR, as under 'chrt -f', they always run\n"
     "one real-time priority below them): a request is read,\n"
     "admitted or refused, and answered while batches compute"},
    {SERVE_HEADER_TIMEOUT_MS, "header-timeout-ms", 0, "X",
     "a request's headers must all arrive within X ms of the\n"
     "connection's start or of its last answer, else the\n"
     "connection is closed (default 5000; 0: off): clients that\n"
     "send headers slowly, or keep a connection idle, cannot\n"
     "hold the connections"},
    {SERVE_MIN_BODY_RATE, "min-body-rate", 0, "B",
     "then the body must arrive at B bytes a second on average\n"
     "at least, after a grace of --header-timeout-ms (default\n"
     "65536; 0: only the 30 s idle timeout; neither bound with\n"
     "--header-timeout-ms 0)"},
    {0},
};

static const cli_spec serve_spec = {
    "Usage: mha serve MODEL [options]\n"
    "\n"
    "Serves MODEL (a self-attention layer: one query input; or a whole model\n"
    "taking token ids, such as a BERT or MiniLM export) over HTTP/1.1 with\n"
    "dynamic batching: a request that finds the queue idle runs at once, and\n"
    "the requests arriving while a batch runs are run as the next one, each\n"
    "result bitwise what the request gives alone.\n"
    "\n"
    "  POST /run       body: one sequence as .npy, float32 [S, D] or [1, S, D]\n"
    "                  (Content-Type: application/x-npy), or as JSON nested arrays\n"
    "                  [[x, ...], ...] (application/json; for small requests).\n"
    "                  A whole model: its token ids, .npy int64 [S] or [1, S], or\n"
    "                  JSON [id, ...] or [[id, ...]]; its masks are all ones and\n"
    "                  other ids (token types) zero. As for mha run, narrower\n"
    "                  integer ids (int32, int8, ...) are widened and other float\n"
    "                  types converted to float32.\n"
    "                  Answer: the output the same way, same rank (JSON numbers\n"
    "                  have 9 digits: the float32 exactly); .npy: the output named\n"
    "                  by ?output=NAME (default the first); JSON: every output,\n"
    "                  {\"NAME\": [...], ...} when there are several.\n"
    "                  400 bad body or unknown output, 413 too large,\n"
    "                  415 other content types, 503 queue full or shutting\n"
    "                  down (Retry-After: 1), 504 deadline passed\n"
    "  GET  /health    200 \"ok\", 503 while draining\n"
    "  GET  /metrics   Prometheus text format\n"
    "Every answer carries the request's X-Request-Id header back.\n",
    serve_opts,
    CLI_COMMON_RUNTIME | CLI_COMMON_VERBOSE | CLI_COMMON_PRECISION,
    "--precision bfloat16 runs every batch in bfloat16 (about 2x the float32 rate\n"
    "where the CPU has avx512bf16); each answer is still bitwise what the request\n"
    "gives alone ('mha run --precision bfloat16').\n"
    "SIGTERM or SIGINT drains: no new connections, every accepted request is\n"
    "answered, then the command exits 0.\n",
};

/* Latency histogram bounds, seconds (Prometheus `le` labels). */
static const double serve_latency_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                              0.05,   0.1,   0.2,   0.5,   1.0,  2.0};
#define SERVE_N_LATENCY (sizeof serve_latency_bounds / sizeof serve_latency_bounds[0])
static const int serve_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128};
#define SERVE_N_BATCH (sizeof serve_batch_bounds / sizeof serve_batch_bounds[0])
#define SERVE_N_CODES 8
#define SERVE_MAX_ID 128 /* longest X-Request-Id echoed */
static const int serve_codes[SERVE_N_CODES] = {200, 400, 404, 405, 413, 415, 503, 504};

/* libmicrohttpd's memory a connection (its default 32 KiB): its read
 * buffer is half of it, and a body is read a buffer at a time, so a .npy
 * request of the d 768 layer at S 32 (98 KiB) took 7 recv calls and as many
 * handler calls at 32 KiB and takes one at 256 KiB (strace); pages are
 * touched only as far as a connection's requests reach. */
#define SERVE_CONNECTION_MEMORY (256 << 10)

/* A backlog of this many HTTP requests at once, drained, gives the heap's
 * free memory back (serve_trim). */
#define SERVE_TRIM_AFTER 8

typedef struct serve_state {
    mha_queue *queue;
    mha_dtype in_dtype; /* of the sequence a request gives */
    int ids;            /* the model takes token ids (a whole model) */
    size_t n_out;       /* outputs a request gets, and their names */
    const char *out_names[8];
    double deadline_ms;
    size_t max_body;
    int draining;
    int in_flight;                       /* HTTP requests begun and not yet completed */
    int peak_in_flight;                  /* the most at once since the last trim */
    uint64_t trims;                      /* serve_trim calls */
    pthread_mutex_t mutex;               /* guards the metrics below, draining, in_flight */
    pthread_cond_t idle;                 /* in_flight fell to 0 */
    uint64_t by_code[SERVE_N_CODES + 1]; /* the last: other codes (500) */
    uint64_t latency_count[SERVE_N_LATENCY + 1];
    double latency_sum;
    /* 503s: arrival to answer, to tell a refusal the server was slow to
     * give from one the client waited for (a busy machine, no connection) */
    uint64_t refusal_count[SERVE_N_LATENCY + 1];
    double refusal_sum;
    uint64_t batch_count[SERVE_N_BATCH + 1];
    serve_guard *guard; /* the header deadline (NULL: off) */
    int blocking;       /* --caller-runs: a connection's thread waits on its request */
} serve_state;

/* Where a submitted request stands (serve_call.stage): the handler
 * suspends the connection, then marks it SUSPENDED unless the request is
 * DONE already; the completion callback marks it DONE and resumes a
 * SUSPENDED connection. ORPHAN: the connection ended first (the callback
 * frees the call). */
enum { CALL_PENDING, CALL_SUSPENDED, CALL_DONE, CALL_ORPHAN };

/* One HTTP request in flight (libmicrohttpd's per-connection pointer). */
typedef struct serve_call {
    char *body;
    size_t size, cap;
    int too_big;
    const char *bad_framing; /* why the body's length or type is ambiguous, or NULL */
    const char *coding;      /* a Content-Encoding other than identity, or NULL */
    double start;
    mha_request *req; /* submitted, not yet answered */
    struct MHD_Connection *conn;
    atomic_int stage; /* CALL_* once req is submitted */
    int json;         /* the answer as JSON */
    size_t which;     /* the output a .npy answer carries */
} serve_call;

static void serve_count(serve_state *s, int code, double seconds, int batch_size) {
    pthread_mutex_lock(&s->mutex);
    size_t i = 0;
    while (i < SERVE_N_CODES && serve_codes[i] != code)
        i++;
    s->by_code[i]++;
    size_t b = 0;
    while (b < SERVE_N_LATENCY && seconds > serve_latency_bounds[b])
        b++;
    if (code == 503) {
        s->refusal_count[b]++;
        s->refusal_sum += seconds;
    }
    if (code == 200) {
        s->latency_count[b]++;
        s->latency_sum += seconds;
        size_t k = 0;
        while (k < SERVE_N_BATCH && batch_size > serve_batch_bounds[k])
            k++;
        s->batch_count[k]++;
    }
    pthread_mutex_unlock(&s->mutex);
}

/* Sends the response r (destroyed here; NULL: out of memory). */
static enum MHD_Result serve_send(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                  int code, const char *type, struct MHD_Response *r,
                                  int batch_size) {
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (code == 503) MHD_add_response_header(r, "Retry-After", "1");
    /* the caller's request id back, so a client can tell which request an
     * answer belongs to (serve-load checks each id is answered once) */
    const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (id && strlen(id) <= SERVE_MAX_ID) MHD_add_response_header(r, "X-Request-Id", id);
    /* where the body ends is unknown, or it is refused unread: nothing more
     * is read from here */
    if (call && (call->bad_framing || call->coding))
        MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)code, r);
    MHD_destroy_response(r);
    if (call) serve_count(s, code, cli_now() - call->start, batch_size);
    return ret;
}

static enum MHD_Result serve_reply(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                   int code, const char *type, void *body, size_t size,
                                   enum MHD_ResponseMemoryMode mode, int batch_size) {
    return serve_send(conn, s, call, code, type, MHD_create_response_from_buffer(size, body, mode),
                      batch_size);
}

static enum MHD_Result serve_text(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                  int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result serve_text(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                  int code, const char *fmt, ...) {
    char msg[MHA_ERROR_MESSAGE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg - 1, fmt, ap);
    va_end(ap);
    strcat(msg, "\n");
    return serve_reply(conn, s, call, code, "text/plain; charset=utf-8", msg, strlen(msg),
                       MHD_RESPMEM_MUST_COPY, 0);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn, serve_state *s) {
    mha_queue_stats q;
    mha_queue_get_stats(s->queue, &q);
    size_t cap = 8192;
    char *t = malloc(cap);
    if (!t) return MHD_NO;
    size_t n = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(t + n, cap - n, __VA_ARGS__);                                            \
        if (w_ > 0) n += (size_t)w_ < cap - n ? (size_t)w_ : cap - n - 1;                          \
    } while (0)
    pthread_mutex_lock(&s->mutex);
    OUT("# HELP mha_http_requests_total HTTP requests to /run by status code.\n"
        "# TYPE mha_http_requests_total counter\n");
    for (size_t i = 0; i <= SERVE_N_CODES; i++)
        if (i < SERVE_N_CODES)
            OUT("mha_http_requests_total{code=\"%d\"} %llu\n", serve_codes[i],
                (unsigned long long)s->by_code[i]);
        else
            OUT("mha_http_requests_total{code=\"500\"} %llu\n", (unsigned long long)s->by_code[i]);
    uint64_t errors = 0;
    for (size_t i = 1; i <= SERVE_N_CODES; i++)
        errors += s->by_code[i];
    OUT("# HELP mha_http_errors_total /run requests answered with a code other than 200.\n"
        "# TYPE mha_http_errors_total counter\nmha_http_errors_total %llu\n",
        (unsigned long long)errors);
    static const struct {
        const char *name, *help;
    } hist[2] = {{"mha_request_duration_seconds",
                  "Time from the request's arrival to its answer (200 only)."},
                 {"mha_refusal_duration_seconds",
                  "Time from the request's arrival to its 503 answer (queue full, draining)."}};
    for (int h = 0; h < 2; h++) {
        const uint64_t *count = h ? s->refusal_count : s->latency_count;
        OUT("# HELP %s %s\n# TYPE %s histogram\n", hist[h].name, hist[h].help, hist[h].name);
        uint64_t c = 0;
        for (size_t b = 0; b < SERVE_N_LATENCY; b++) {
            c += count[b];
            OUT("%s_bucket{le=\"%g\"} %llu\n", hist[h].name, serve_latency_bounds[b],
                (unsigned long long)c);
        }
        c += count[SERVE_N_LATENCY];
        OUT("%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hist[h].name,
            (unsigned long long)c, hist[h].name, h ? s->refusal_sum : s->latency_sum, hist[h].name,
            (unsigned long long)c);
    }
    uint64_t cum = 0;
    OUT("# HELP mha_request_batch_size Requests in the batch each answered request ran in.\n"
        "# TYPE mha_request_batch_size histogram\n");
    cum = 0;
    uint64_t total = 0;
    for (size_t k = 0; k < SERVE_N_BATCH; k++) {
        cum += s->batch_count[k];
        OUT("mha_request_batch_size_bucket{le=\"%d\"} %llu\n", serve_batch_bounds[k],
            (unsigned long long)cum);
    }
    total = cum + s->batch_count[SERVE_N_BATCH];
    OUT("mha_request_batch_size_bucket{le=\"+Inf\"} %llu\nmha_request_batch_size_count %llu\n",
        (unsigned long long)total, (unsigned long long)total);
    const uint64_t trims = s->trims;
    pthread_mutex_unlock(&s->mutex);
    const struct {
        const char *name, *type, *help;
        unsigned long long value;
    } queue_metrics[] = {
        {"mha_queue_depth", "gauge", "Requests waiting for a batch.", (unsigned long long)q.depth},
        {"mha_queue_running", "gauge", "Requests in batches being computed.",
         (unsigned long long)q.running},
        {"mha_batches_total", "counter", "Batch runs.", (unsigned long long)q.batches},
        {"mha_batched_requests_total", "counter", "Requests that ran in batches.",
         (unsigned long long)q.batched},
        {"mha_queue_rejected_total", "counter", "Requests refused because the queue was full.",
         (unsigned long long)q.rejected_full},
        {"mha_queue_expired_total", "counter", "Requests whose deadline passed in the queue.",
         (unsigned long long)q.expired},
        {"mha_queue_refused_deadline_total", "counter",
         "Requests refused at once because the work ahead would pass their deadline.",
         (unsigned long long)q.rejected_deadline},
        {"mha_http_read_timeouts_total", "counter",
         "Connections closed because a request's headers or body did not arrive in time.",
         (unsigned long long)serve_guard_timeouts(s->guard)},
        {"mha_memory_trims_total", "counter",
         "Times a drained backlog's free heap memory was given back to the system.",
         (unsigned long long)trims},
    };
    for (size_t i = 0; i < sizeof queue_metrics / sizeof queue_metrics[0]; i++)
        OUT("# HELP %s %s\n# TYPE %s %s\n%s %llu\n", queue_metrics[i].name, queue_metrics[i].help,
            queue_metrics[i].name, queue_metrics[i].type, queue_metrics[i].name,
            queue_metrics[i].value);
#undef OUT
    return serve_reply(conn, s, NULL, 200, "text/plain; version=0.0.4", t, n, MHD_RESPMEM_MUST_FREE,
                       0);
}

/* What a request gives (a float32 sequence, or token ids: the model's first
 * token-id input) and the names of the outputs it gets back (a layer: its
 * first; a whole model: all). The queue accepted the model already. */
static void serve_describe_model(serve_state *s, const mha_model *m) {
    mha_model_info info;
    s->in_dtype = MHA_DTYPE_FLOAT32;
    s->n_out = 1;
    if (mha_model_get_info(m, &info) != MHA_OK) return;
    for (size_t i = 0; i < info.num_inputs; i++) {
        mha_io_info io;
        if (mha_model_input(m, i, &io) == MHA_OK && io.role == MHA_ROLE_TOKEN_IDS) {
            s->ids = 1;
            s->in_dtype = io.dtype;
            break;
        }
    }
    s->n_out = strcmp(info.form, "plan") == 0 && info.num_outputs <= 8 ? info.num_outputs : 1;
    for (size_t k = 0; k < s->n_out; k++) {
        mha_io_info io;
        s->out_names[k] = mha_model_output(m, k, &io) == MHA_OK ? io.name : "output";
    }
}

/* A .npy answer: its header, and the request whose output follows it. */
typedef struct serve_npy_answer {
    mha_request *req;
    char head[256];
} serve_npy_answer;

static void serve_npy_free(void *cls) {
    serve_npy_answer *a = cls;
    mha_request_free(a->req);
    free(a);
}

/* The answer to a completed request: its output as .npy, or as JSON when
 * the request came as JSON. Frees the request (a .npy answer once sent). */
static enum MHD_Result serve_answer(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                    mha_request *req, int json, size_t which) {
    mha_tensor ys[8];
    size_t n_out = mha_request_num_outputs(req);
    for (size_t k = 0; k < n_out && k < 8; k++)
        ys[k] = *mha_request_output_at(req, k);
    const mha_tensor *y = &ys[which];
    mha_request_info info;
    mha_request_get_info(req, &info);
    if (!json) {
        /* the .npy header, then the request's own output: sent from where
         * the queue left it, the request freed with the response */
        serve_npy_answer *a = malloc(sizeof *a);
        size_t hn =
            a ? mha_npy_format_header(y->dtype, y->rank, y->shape, a->head, sizeof a->head) : 0;
        struct MHD_Response *r = NULL;
        if (hn) {
            a->req = req;
            const struct MHD_IoVec iov[2] = {
                {a->head, hn}, {y->data, (size_t)mha_tensor_numel(y) * sizeof(float)}};
            r = MHD_create_response_from_iovec(iov, 2, serve_npy_free, a);
        }
        if (r) return serve_send(conn, s, call, 200, "application/x-npy", r, info.batch_size);
        free(a);
        mha_request_free(req);
        return serve_text(conn, s, call, 500, "error: out of memory for the answer");
    }
    size_t n = 0;
    char *out = serve_json_format(ys, s->out_names, n_out, &n);
    mha_request_free(req);
    if (!out) return serve_text(conn, s, call, 500, "error: out of memory for the answer");
    return serve_reply(conn, s, call, 200, "application/json", out, n, MHD_RESPMEM_MUST_FREE,
                       info.batch_size);
}

/* A .npy body of another dtype than the model's (in->dtype), converted as
 * `mha run` converts its files: narrower integer token ids (int32, int16,
 * int8, uint32, uint16, uint8) widened to int64, other float types to float32. in->data
 * points at the body's `bytes` of data; on success it points at a new
 * buffer (*owned, freed by the caller). Returns 0, or -1 with msg. */
static int serve_convert_body(mha_tensor *in, mha_dtype from, size_t bytes, void **owned, char *msg,
                              size_t msg_size) {
    const int64_t n = mha_tensor_numel(in);
    const size_t from_size = mha_dtype_size(from), to_size = mha_dtype_size(in->dtype);
    if (n < 0 || from_size == 0 || (uint64_t)n > bytes / from_size) {
        snprintf(msg, msg_size, "the body holds fewer elements than its header's shape");
        return -1;
    }
    void *buf = malloc(n > 0 ? (size_t)n * to_size : 1);
    if (!buf) {
        snprintf(msg, msg_size, "out of memory for %lld elements", (long long)n);
        return -1;
    }
    int64_t bad = 0;
    size_t at;
    if (cli_narrows_to_int32(from, in->dtype) &&
        (at = cli_narrow_ids(in->data, from, buf, (size_t)n, &bad)) != (size_t)n) {
        free(buf);
        snprintf(msg, msg_size,
                 "token id %lld (element %zu) is past the int32 the model's ids take",
                 (long long)bad, at);
        return -1;
    }
    if (!cli_narrows_to_int32(from, in->dtype))
        mha_dtype_convert(in->data, from, buf, in->dtype, (size_t)n);
    in->data = buf;
    *owned = buf;
    return 0;
}

/* Whether a Content-Type value names the media type `want` (lower case):
 * type and subtype compare without regard to case (RFC 9110 8.3.1), and
 * only parameters (";charset=utf-8") may follow -- not more name
 * ("application/json-seq" is another type). */
static int serve_media_is(const char *type, const char *want) {
    type += strspn(type, " \t");
    size_t n = strlen(want);
    if (strncasecmp(type, want, n) != 0) return 0;
    type += n;
    type += strspn(type, " \t");
    return *type == '\0' || *type == ';';
}

static void serve_done(void *user, mha_request *req);
static enum MHD_Result serve_finish(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                    mha_request *req, int json, size_t which, mha_status st,
                                    const mha_error *err);

/* Every value of one query argument: the first, and whether another
 * differs from it. */
typedef struct serve_query_arg {
    const char *key;
    const char *first;
    int seen;
    int values_differ;
} serve_query_arg;

static enum MHD_Result serve_query_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value) {
    (void)kind;
    serve_query_arg *q = cls;
    if (!key || strcmp(key, q->key) != 0) return MHD_YES;
    if (!q->seen)
        q->first = value ? value : "";
    else if (strcmp(q->first, value ? value : "") != 0)
        q->values_differ = 1;
    q->seen = 1;
    return MHD_YES;
}

/* POST /run once the whole body is in. */
static enum MHD_Result serve_run(struct MHD_Connection *conn, serve_state *s, serve_call *call) {
    if (call->bad_framing) return serve_text(conn, s, call, 400, "error: %s", call->bad_framing);
    if (call->coding)
        return serve_text(conn, s, call, 415,
                          "error: Content-Encoding '%s': send the body without a content coding "
                          "(as the .npy or JSON bytes themselves)",
                          call->coding);
    if (call->too_big)
        return serve_text(conn, s, call, 413, "error: the body is larger than %zu bytes",
                          s->max_body);
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    int json = type && serve_media_is(type, "application/json");
    if (type && !json && !serve_media_is(type, "application/x-npy") &&
        !serve_media_is(type, "application/octet-stream"))
        return serve_text(conn, s, call, 415,
                          "error: Content-Type '%s': send the sequence as application/x-npy "
                          "or application/json",
                          type);
    /* the output a .npy answer carries: one name, compared whole (a %00
     * in it ended the string: 'output%00x' answered as 'output') */
    size_t which = 0, want_len = 0;
    const char *want = NULL;
    serve_query_arg arg = {"output", NULL, 0, 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, serve_query_value, &arg);
    if (arg.values_differ)
        return serve_text(conn, s, call, 400, "error: ?output= is given twice with two names");
    if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, "output", 6, &want, &want_len) ==
            MHD_YES &&
        want) {
        while (which < s->n_out && (strlen(s->out_names[which]) != want_len ||
                                    memcmp(s->out_names[which], want, want_len) != 0))
            which++;
        if (which == s->n_out) {
            /* shown escaped, its NUL bytes as \x00 */
            char shown[256] = "";
            size_t used = 0;
            for (size_t at = 0; at <= want_len && used + 8 < sizeof shown;) {
                mha_text_escape(shown + used, sizeof shown - used, want + at);
                used += strlen(shown + used);
                at += strlen(want + at) + 1;
                if (at <= want_len && used + 5 < sizeof shown)
                    used += (size_t)sprintf(shown + used, "\\x00");
            }
            return serve_text(conn, s, call, 400, "error: the model has no output '%s'", shown);
        }
    }
    mha_error err;
    mha_error_clear(&err);
    mha_tensor in = {s->in_dtype, 0, {0}, NULL};
    void *parsed = NULL;
    if (json) {
        int64_t dims[SERVE_JSON_MAX_RANK];
        if (serve_json_parse(call->body ? call->body : "", call->size, s->ids, &parsed, &in.rank,
                             dims, err.message, sizeof err.message) != 0)
            return serve_text(conn, s, call, 400, "error: %s", err.message);
        if (s->ids && s->in_dtype == MHA_DTYPE_INT32) { /* narrowed in place, range checked */
            const int64_t count = in.rank == 2 ? dims[0] * dims[1] : dims[0];
            int64_t bad = 0;
            const size_t at = cli_narrow_ids(parsed, MHA_DTYPE_INT64, parsed, (size_t)count, &bad);
            if (at != (size_t)count) { /* the value kept before the free (was read after it) */
                free(parsed);
                return serve_text(conn, s, call, 400,
                                  "error: token id %lld (element %zu) is past the int32 the "
                                  "model's ids take",
                                  (long long)bad, at);
            }
        }
        memcpy(in.shape, dims, sizeof dims);
        in.data = parsed;
    } else {
        mha_npy_header h;
        if (call->size == 0)
            return serve_text(conn, s, call, 400,
                              "error: the body is empty: send one sequence as .npy or JSON");
        if (mha_npy_parse_header(call->body, call->size, call->size, "body", &h, &err) != MHA_OK)
            return serve_text(conn, s, call, 400, "error: %s", err.message);
        if (!mha_dtype_can_convert(h.dtype, s->in_dtype) &&
            !cli_narrows_to_int32(h.dtype, s->in_dtype))
            return serve_text(conn, s, call, 400, "error: the %s must be %s (or %s), not %s",
                              s->ids ? "token ids" : "sequence", mha_dtype_name(s->in_dtype),
                              s->ids ? "a narrower integer type" : "another float type",
                              mha_dtype_name(h.dtype));
        in.rank = h.rank;
        memcpy(in.shape, h.dims, sizeof in.shape);
        in.data = call->body + h.header_bytes;
        if (h.dtype != s->in_dtype &&
            serve_convert_body(&in, h.dtype, call->size - h.header_bytes, &parsed, err.message,
                               sizeof err.message) != 0)
            return serve_text(conn, s, call, 400, "error: %s", err.message);
    }
    mha_submit_options so;
    mha_submit_options_init(&so);
    so.deadline_ms = s->deadline_ms;
    /* the time since the headers came (the body's read, the HTTP thread's
     * turn) counts against --max-queue-ms while the queue had work: at 2x
     * overload on a starved machine a request could wait a long time here
     * and still be accepted; a slow upload to an idle server is the
     * client's own time (the queue counts only its busy part) */
    so.waited_ms = (cli_now() - call->start) * 1e3;
    if (!s->blocking) {
        so.done = serve_done;
        so.done_user = call;
        call->conn = conn;
        call->json = json;
        call->which = which;
        atomic_store(&call->stage, CALL_PENDING);
    }
    mha_request *req = NULL;
    mha_status st = mha_queue_submit(s->queue, &in, &so, &req, &err);
    free(parsed); /* the queue keeps a copy */
    if (st == MHA_ERR_QUEUE_FULL || st == MHA_ERR_SHUTDOWN)
        return serve_text(conn, s, call, 503, "error: %s", err.message);
    if (st != MHA_OK) return serve_text(conn, s, call, 400, "error: %s", err.message);
    if (!s->blocking) {
        /* no thread waits: the connection sleeps until serve_done resumes
         * it, and the handler's next call answers (serve_finish). Suspended
         * first, so that a resume never comes before the suspension. */
        call->req = req;
        MHD_suspend_connection(conn);
        int was = CALL_PENDING;
        if (!atomic_compare_exchange_strong(&call->stage, &was, CALL_SUSPENDED))
            MHD_resume_connection(conn); /* done already: answered at once */
        return MHD_YES;
    }
    st = mha_request_wait(req, -1, &err);
    return serve_finish(conn, s, call, req, json, which, st, &err);
}

/* The completion callback (on the thread that completed the request): a
 * suspended connection is resumed to answer; the call of a connection that
 * ended meanwhile is freed. */
static void serve_done(void *user, mha_request *req) {
    serve_call *call = user;
    struct MHD_Connection *conn = call->conn;
    int was = atomic_exchange(&call->stage, CALL_DONE);
    if (was == CALL_SUSPENDED) {
        MHD_resume_connection(conn);
    } else if (was == CALL_ORPHAN) {
        mha_request_free(req);
        free(call->body);
        free(call);
    }
}

/* The answer to a completed request (status st, err its message), which is
 * freed. */
static enum MHD_Result serve_finish(struct MHD_Connection *conn, serve_state *s, serve_call *call,
                                    mha_request *req, int json, size_t which, mha_status st,
                                    const mha_error *err) {
    enum MHD_Result ret;
    if (st == MHA_OK) return serve_answer(conn, s, call, req, json, which);
    if (st == MHA_ERR_DEADLINE)
        ret = serve_text(conn, s, call, 504, "error: %s", err->message);
    else if (st == MHA_ERR_SHUTDOWN || st == MHA_ERR_CANCELLED)
        ret = serve_text(conn, s, call, 503, "error: %s", err->message);
    else if (st == MHA_ERR_INVALID_ARGUMENT || st == MHA_ERR_SHAPE || st == MHA_ERR_DTYPE)
        /* the request's own values (a token id outside the vocabulary): it
         * failed alone, after its batch did */
        ret = serve_text(conn, s, call, 400, "error: %s", err->message);
    else
        ret = serve_text(conn, s, call, 500, "error: %s", err->message);
    mha_request_free(req);
    return ret;
}

/* The headers that say where a request's body ends. */
typedef struct serve_framing {
    const char *length; /* the first Content-Length */
    int lengths_differ; /* a second Content-Length with another value */
    int chunked;        /* any Transfer-Encoding */
    int other_coding;   /* a Transfer-Encoding other than chunked alone */
    const char *type;   /* the first Content-Type */
    int types_differ;   /* a second Content-Type with another value */
    const char *coding; /* the first Content-Encoding other than identity */
} serve_framing;

static enum MHD_Result serve_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value) {
    (void)kind;
    serve_framing *fr = cls;
    if (!key) return MHD_YES;
    if (strcasecmp(key, "Transfer-Encoding") == 0) {
        fr->chunked = 1;
        fr->other_coding |= !value || strcasecmp(value, "chunked") != 0;
    }
    if (strcasecmp(key, "Content-Length") == 0) {
        if (!fr->length)
            fr->length = value ? value : "";
        else if (strcmp(fr->length, value ? value : "") != 0)
            fr->lengths_differ = 1;
    }
    /* Content-Type is one value (RFC 9110 8.3): two that differ leave the
     * body's format to whichever a reader takes, as two lengths do */
    if (strcasecmp(key, "Content-Type") == 0) {
        if (!fr->type)
            fr->type = value ? value : "";
        else if (strcmp(fr->type, value ? value : "") != 0)
            fr->types_differ = 1;
    }
    /* a coded body (gzip, ...) was read as if plain: the coding ignored */
    if (strcasecmp(key, "Content-Encoding") == 0 && !fr->coding &&
        strcasecmp(value ? value : "", "identity") != 0)
        fr->coding = value ? value : "";
    return MHD_YES;
}

/* A request this server does not take: 405 for /run other than POST and
 * for /health or /metrics other than GET / HEAD, 404 for any other path;
 * 0 for POST /run, GET / HEAD /health and /metrics. */
static int serve_route_refused(const char *url, const char *method) {
    if (strcmp(url, "/run") == 0) return strcmp(method, "POST") != 0 ? 405 : 0;
    if (strcmp(url, "/health") == 0 || strcmp(url, "/metrics") == 0)
        return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 ? 405 : 0;
    return 404;
}

static enum MHD_Result serve_route_refusal(struct MHD_Connection *conn, serve_state *s,
                                           serve_call *call, const char *url, int code) {
    if (code == 404)
        return serve_text(conn, s, NULL, 404,
                          "error: no %s here (POST /run, GET /health, /metrics)", url);
    if (strcmp(url, "/run") == 0) return serve_text(conn, s, call, 405, "error: /run takes POST");
    return serve_text(conn, s, NULL, 405, "error: %s takes GET", url);
}

/* GET / HEAD /health or /metrics. */
static enum MHD_Result serve_get(struct MHD_Connection *conn, serve_state *s, const char *url) {
    if (url[1] == 'm') return serve_metrics(conn, s);
    pthread_mutex_lock(&s->mutex);
    int draining = s->draining;
    pthread_mutex_unlock(&s->mutex);
    return draining ? serve_text(conn, s, NULL, 503, "draining")
                    : serve_text(conn, s, NULL, 200, "ok");
}

static enum MHD_Result serve_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    serve_state *s = cls;
    serve_call *call = *con_cls;
    if (!call) { /* the headers are in: start the call */
        serve_guard_headers_in(s->guard, conn);
        call = calloc(1, sizeof *call);
        if (!call) return MHD_NO;
        call->start = cli_now();
        *con_cls = call;
        pthread_mutex_lock(&s->mutex);
        if (++s->in_flight > s->peak_in_flight) s->peak_in_flight = s->in_flight;
        pthread_mutex_unlock(&s->mutex);
        if (strcmp(method, "POST") == 0 && strcmp(url, "/run") == 0) {
            serve_framing fr = {NULL, 0, 0, 0, NULL, 0, NULL};
            MHD_get_connection_values(conn, MHD_HEADER_KIND, serve_framing_header, &fr);
            /* two lengths, or a length beside chunked: a proxy in front may
             * have read another body than this server would (request
             * smuggling), so the request is refused and the connection
             * closed (RFC 9112 section 6.3) */
            /* a coding this server cannot undo (gzip, chunked) left the
             * connection waiting for its timeout */
            if (fr.lengths_differ || (fr.length && fr.chunked) || fr.other_coding ||
                fr.types_differ) {
                call->bad_framing =
                    fr.lengths_differ ? "Content-Length given twice with different values"
                    : fr.other_coding ? "a Transfer-Encoding other than chunked"
                    : fr.types_differ ? "Content-Type given twice with different types"
                                      : "both Content-Length and Transfer-Encoding given";
                return serve_run(conn, s, call);
            }
            /* refused before the body is sent, as one too large is */
            if (fr.coding) {
                call->coding = fr.coding;
                return serve_run(conn, s, call);
            }
            const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
            /* refused before the body is sent (no "100 Continue") */
            if (len && strtoull(len, NULL, 10) > s->max_body) {
                call->too_big = 1;
                return serve_run(conn, s, call);
            }
            /* the body's buffer at its size at once (no growing copies) */
            size_t want = len ? (size_t)strtoull(len, NULL, 10) : 0;
            if (want > 0 && (call->body = malloc(want)) != NULL) call->cap = want;
        } else {
            /* a body sent where none is taken (POST /health, PUT /run, a
             * GET with a body): answered now, before it is read, as a body
             * over the limit is (an answer queued on one of its pieces
             * closed the connection without any answer) */
            const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
            if ((len && strtoull(len, NULL, 10) > 0) ||
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding")) {
                const int refused = serve_route_refused(url, method);
                return refused ? serve_route_refusal(conn, s, call, url, refused)
                               : serve_get(conn, s, url);
            }
        }
        return MHD_YES;
    }
    if (call->req) { /* resumed: the request completed */
        mha_request *req = call->req;
        mha_error err;
        mha_error_clear(&err);
        call->req = NULL;
        mha_status st = mha_request_wait(req, 0, &err);
        return serve_finish(conn, s, call, req, call->json, call->which, st, &err);
    }
    if (*upload_size)
        serve_guard_body(s->guard, conn, *upload_size);
    else
        serve_guard_body_in(s->guard, conn);
    const int refused = serve_route_refused(url, method);
    if (refused) return serve_route_refusal(conn, s, call, url, refused);
    if (strcmp(url, "/run") == 0) {
        if (*upload_size) { /* a piece of the body */
            size_t n = *upload_size;
            *upload_size = 0;
            if (call->too_big || n > s->max_body - call->size) {
                /* a chunked body over the limit: read, dropped, answered
                 * 413 at its end (clients wait for the answer after the
                 * body; one given earlier is lost to many of them) */
                call->too_big = 1;
                return MHD_YES;
            }
            if (call->size + n > call->cap) {
                size_t cap = call->cap ? call->cap : 65536;
                while (cap < call->size + n)
                    cap *= 2;
                char *b = realloc(call->body, cap);
                if (!b) return MHD_NO;
                call->body = b;
                call->cap = cap;
            }
            memcpy(call->body + call->size, upload_data, n);
            call->size += n;
            return MHD_YES;
        }
        return serve_run(conn, s, call);
    }
    return serve_get(conn, s, url);
}

/* Once a backlog has drained, the free memory it leaves in the C library's
 * heaps goes back to the system: the bodies, copies and answers of the
 * requests that were in flight at once were freed, but the allocator kept
 * their pages (a 10-minute soak on a loaded machine: RSS 37 MiB after the
 * warm-up, 76 MiB at the end, no request waiting; after four bursts of a
 * 4-second backlog 84-96 MiB, 47-60 MiB trimmed). Only where glibc has
 * malloc_trim; elsewhere a no-op. */
static void serve_trim(void) {
#if defined(__GLIBC__)
    (void)malloc_trim(0);
#endif
}

static void serve_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode code) {
    (void)code;
    serve_state *s = cls;
    serve_call *call = *con_cls;
    serve_guard_request_done(s->guard, conn);
    if (call) {
        /* a request still computing when its connection ended: the
         * completion callback frees the call */
        int orphan = call->req && atomic_exchange(&call->stage, CALL_ORPHAN) != CALL_DONE;
        if (!orphan) {
            mha_request_free(call->req);
            free(call->body);
            free(call);
        }
        *con_cls = NULL;
        int trim = 0;
        pthread_mutex_lock(&s->mutex);
        if (--s->in_flight == 0) {
            pthread_cond_broadcast(&s->idle);
            trim = s->peak_in_flight >= SERVE_TRIM_AFTER;
            if (trim) {
                s->peak_in_flight = 0;
                s->trims++;
            }
        }
        pthread_mutex_unlock(&s->mutex);
        if (trim) serve_trim();
    }
}

typedef struct serve_options {
    const char *host, *port_file;
    long long port, max_batch, max_tokens, capacity, dispatchers, run_threads, max_body, max_conn,
        min_body_rate, http_threads, compute_nice;
    double max_delay_ms, deadline_ms, max_queue_ms, max_padding, max_batch_ms, header_timeout_ms;
    double max_latency_ms;
    int hold_when_idle, caller_runs, http_threads_given;
} serve_options;

static int serve_parse_ms(const cli_common *c, const char *opt, const char *v, double *out) {
    char *end = NULL;
    double d = strtod(v, &end);
    if (!cli_number_text(v) || !end || *end || !(d >= 0 && d <= 600000))
        return cli_usage_error(c, "%s wants milliseconds in [0, 600000], got '%s'", opt, v);
    *out = d;
    return 0;
}

/* Returns -1 to go on, else the exit status (a usage error printed, or
 * --help / --version answered). */
static int serve_parse_args(cli_common *c, int argc, char **argv, serve_options *o,
                            const char **model) {
    struct {
        long long lo, hi, *dst;
    } ints[] = {[SERVE_PORT] = {0, 65535, &o->port},
                [SERVE_MAX_BATCH] = {1, 4096, &o->max_batch},
                [SERVE_MAX_TOKENS] = {1, 1LL << 40, &o->max_tokens},
                [SERVE_CAPACITY] = {1, 1 << 24, &o->capacity},
                [SERVE_DISPATCHERS] = {0, 64, &o->dispatchers},
                [SERVE_RUN_THREADS] = {0, 1024, &o->run_threads},
                [SERVE_MAX_BODY] = {64, 1LL << 40, &o->max_body},
                [SERVE_MIN_BODY_RATE] = {0, 1LL << 40, &o->min_body_rate},
                [SERVE_MAX_CONN] = {1, 65536, &o->max_conn},
                [SERVE_HTTP_THREADS] = {1, 64, &o->http_threads},
                [SERVE_COMPUTE_NICE] = {0, 19, &o->compute_nice}};
    cli_parser p;
    if (cli_parse_begin(&p, &serve_spec, c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        const char *v = p.value;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", p.name ? p.name : "");
        if (id == CLI_PARSE_EXIT) return p.status;
        if (id == CLI_PARSE_ARG) {
            if (*model) return cli_usage_error(c, "one model at a time ('%s' is extra)", v);
            *model = v;
        } else if (id >= SERVE_PORT && id <= SERVE_COMPUTE_NICE) {
            if (!cli_parse_int(c, opt, v, ints[id].lo, ints[id].hi, ints[id].dst)) return CLI_USAGE;
            o->http_threads_given |= id == SERVE_HTTP_THREADS;
        } else if (id == SERVE_HOST) {
            o->host = v;
        } else if (id == SERVE_PORT_FILE) {
            o->port_file = v;
        } else if (id == SERVE_HOLD_WHEN_IDLE) {
            o->hold_when_idle = 1;
        } else if (id == SERVE_CALLER_RUNS) {
            o->caller_runs = 1;
        } else if (id == SERVE_MAX_PADDING) {
            char *end = NULL;
            double x = strtod(v, &end);
            if (!cli_number_text(v) || !end || *end || end == v || !(x >= 0 && x <= 1))
                return cli_usage_error(c, "--max-padding wants a share in [0, 1], got '%s'", v);
            o->max_padding = x;
        } else {
            double *ms = id == SERVE_MAX_DELAY_MS        ? &o->max_delay_ms
                         : id == SERVE_MAX_QUEUE_MS      ? &o->max_queue_ms
                         : id == SERVE_MAX_LATENCY_MS    ? &o->max_latency_ms
                         : id == SERVE_MAX_BATCH_MS      ? &o->max_batch_ms
                         : id == SERVE_HEADER_TIMEOUT_MS ? &o->header_timeout_ms
                                                         : &o->deadline_ms;
            if ((id == SERVE_MAX_BATCH_MS || id == SERVE_MAX_LATENCY_MS) && !strcmp(v, "off"))
                *ms = -1.0; /* mha.h: negative is off */
            else if (serve_parse_ms(c, opt, v, ms))
                return CLI_USAGE;
        }
    }
    /* each was dropped in silence: --caller-runs gives every connection a
     * thread of its own, and the queue runs no waiter's batch when it
     * holds requests on an idle queue */
    if (o->caller_runs && o->http_threads_given)
        return cli_usage_error(c, "--http-threads does not go with --caller-runs (each connection "
                                  "then has a thread of its own)");
    if (o->caller_runs && o->hold_when_idle)
        return cli_usage_error(c, "--caller-runs does not go with --hold-when-idle (a waiting "
                                  "connection computes only when no request is held)");
    return -1;
}

/* The threads that compute -- the runtime's workers and the queue's
 * dispatchers -- run a step below the HTTP threads. Under SCHED_FIFO /
 * SCHED_RR the main thread first raises itself one real-time priority
 * where it may (the HTTP threads, started by it later, inherit that) and
 * the compute threads are started by a thread of their own at the
 * server's priority; where it may not, that thread lowers itself one step
 * instead. Under the normal policy the compute threads run --compute-nice
 * steps below. A request is then read, admitted or refused, and answered
 * while batches compute: at twice the sustainable rate with every thread
 * at one real-time priority (`chrt -f 10`) the dispatchers kept both cores
 * and the HTTP thread read the requests only between batches, after they
 * had waited unseen in the connections' buffers (docs/SERVING.md, "The
 * HTTP threads first"). */
typedef struct serve_setup {
    const cli_common *c;
    const mha_model *m;
    const mha_queue_options *qo;
    int nice;    /* --compute-nice */
    int rt_prio; /* the server's real-time priority to run at; -1: lower a step */
    mha_runtime *rt;
    mha_queue *queue;
    int runtime_rc;
    mha_status queue_st;
    mha_error err;
} serve_setup;

/* The calling thread's real-time priority, or -1 under another policy;
 * *policy receives the policy. */
static int serve_rt_priority(int *policy) {
    struct sched_param sp;
    if (pthread_getschedparam(pthread_self(), policy, &sp) != 0) return -1;
    return *policy == SCHED_FIFO || *policy == SCHED_RR ? sp.sched_priority : -1;
}

/* Under a real-time policy, raises the calling thread one priority (the
 * threads it starts next inherit it) and returns the priority it had; -1
 * when it is not real-time or may not rise (no CAP_SYS_NICE, a low
 * RLIMIT_RTPRIO, the top priority already). */
static int serve_raise_priority(void) {
    int policy;
    const int prio = serve_rt_priority(&policy);
    if (prio < 0 || prio >= sched_get_priority_max(policy)) return -1;
    struct sched_param sp = {.sched_priority = prio + 1};
    return pthread_setschedparam(pthread_self(), policy, &sp) == 0 ? prio : -1;
}

/* Sets the calling thread a step below the HTTP threads: to rt_prio when
 * the main thread rose above it, else one real-time priority lower (above
 * the lowest), or under the normal policy `nice` steps of its nice value
 * (Linux: per thread). Lowering needs no privilege; a failure leaves the
 * priority as it was. */
static void serve_lower_priority(int rt_prio, int nice) {
    int policy;
    const int prio = serve_rt_priority(&policy);
    if (prio >= 0) {
        struct sched_param sp = {.sched_priority = rt_prio >= 0 ? rt_prio : prio - 1};
        if (sp.sched_priority >= sched_get_priority_min(policy) && sp.sched_priority < prio)
            (void)pthread_setschedparam(pthread_self(), policy, &sp);
        return;
    }
#if defined(__linux__)
    if (nice > 0) {
        const id_t tid = (id_t)syscall(SYS_gettid);
        errno = 0;
        const int now = getpriority(PRIO_PROCESS, tid);
        if (errno == 0) (void)setpriority(PRIO_PROCESS, tid, now + nice);
    }
#else
    (void)nice;
#endif
}

static void *serve_setup_main(void *arg) {
    serve_setup *st = arg;
    serve_lower_priority(st->rt_prio, st->nice);
    st->runtime_rc = cli_runtime_create(st->c, &st->rt);
    if (st->runtime_rc == CLI_OK)
        st->queue_st = mha_queue_create(st->rt, st->m, st->qo, &st->queue, &st->err);
    return NULL;
}

int mha_cmd_serve(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "serve";
    serve_options o = {.host = "127.0.0.1",
                       .port = 8080,
                       .max_batch = 16,
                       .max_tokens = 4096,
                       .capacity = 256,
                       .dispatchers = 0,
                       .max_body = 16 << 20,
                       .max_conn = 256,
                       .http_threads = 1,
                       .max_delay_ms = 1.0,
                       .max_padding = 0.125,
                       .header_timeout_ms = 5000,
                       .min_body_rate = 65536};
    const char *model_path = NULL;
    int rc = serve_parse_args(&c, argc, argv, &o, &model_path);
    if (rc >= 0) return rc;
    if (!model_path) return cli_usage_error(&c, "no model given");
    /* the port file is written once listening: named as the model (or as
     * data), it replaced the model with the port number */
    if (o.port_file) {
        const char *outs[1] = {o.port_file}, *ins[1] = {model_path};
        if (cli_outputs_spare_inputs(&c, outs, 1, ins, 1, "model") != CLI_OK ||
            cli_report_path_check(&c, "--port-file", "the port number", o.port_file) != CLI_OK)
            return CLI_USAGE;
    }

    /* the address first: a typo is a usage error, before any loading */
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    int ipv6 = 0;
    if (inet_pton(AF_INET, o.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)o.port);
    } else if (inet_pton(AF_INET6, o.host, &a6.sin6_addr) == 1) {
        ipv6 = 1;
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)o.port);
    } else {
        return cli_usage_error(&c, "--host wants a numeric IPv4 or IPv6 address, got '%s'", o.host);
    }
    /* the HTTP library, opened here only (serve_mhd.h) */
    char mhd_msg[600];
    if (serve_mhd_load(mhd_msg, sizeof mhd_msg) != 0) return cli_fail("serve: %s", mhd_msg);

    mha_model *m = NULL;
    mha_runtime *rt = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (mha_model_load_file(model_path, NULL, &m, &err) != MHA_OK)
        return cli_fail_err(model_path, &err);
    serve_state s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mutex, NULL);
    pthread_cond_init(&s.idle, NULL);
    s.deadline_ms = o.deadline_ms;
    s.max_body = (size_t)o.max_body;
    mha_queue_options qo;
    mha_queue_options_init(&qo);
    qo.max_batch = (int)o.max_batch;
    qo.max_batch_tokens = o.max_tokens;
    qo.max_delay_ms = o.max_delay_ms;
    qo.hold_when_idle = o.hold_when_idle;
    qo.capacity = (int)o.capacity;
    qo.num_dispatchers = (int)o.dispatchers;
    qo.num_threads = (int)o.run_threads;
    qo.max_queue_ms = o.max_queue_ms;
    qo.max_latency_ms = o.max_latency_ms;
    qo.max_padding = o.max_padding;
    qo.max_batch_ms = o.max_batch_ms;
    qo.caller_runs = o.caller_runs;
    qo.precision = c.precision;
    rc = CLI_FAIL;
    struct MHD_Daemon *d = NULL;

    /* Signals are taken by sigwait below: block them before any thread
     * starts, so every thread inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    serve_setup setup = {
        &c, m, &qo, (int)o.compute_nice, serve_raise_priority(), NULL, NULL, CLI_FAIL, MHA_OK, {0}};
    mha_error_clear(&setup.err);
    pthread_t setup_thread;
    if (pthread_create(&setup_thread, NULL, serve_setup_main, &setup) != 0) {
        cli_fail("serve: cannot start a thread");
        goto done;
    }
    pthread_join(setup_thread, NULL);
    rt = setup.rt;
    s.queue = setup.queue;
    err = setup.err;
    if (setup.runtime_rc != CLI_OK) goto done; /* said by cli_runtime_create */
    if (setup.queue_st != MHA_OK) {
        if (err.status == MHA_ERR_MODEL_UNSUPPORTED) /* a ViT, a cache: say what serve takes */
            cli_fail("%s: cannot be served: %s (mha serve takes one attention layer, or a model "
                     "whose inputs are token ids and masks [batch, sequence]; 'mha run' runs it)",
                     model_path, err.message);
        else
            cli_fail_err(model_path, &err);
        goto done;
    }
    serve_describe_model(&s, m);
    /* a declared output shape the graph contradicts on an axis it fixes:
     * said once, at load (a request's batch and length are its own) */
    for (size_t k = 0;; k++) {
        mha_io_info io;
        if (mha_model_output(m, k, &io) != MHA_OK) break;
        cli_warn_declared_shape(model_path, m, k, io.rank, io.shape, "answered");
    }

    if (o.header_timeout_ms > 0 &&
        !(s.guard = serve_guard_start(o.header_timeout_ms, (double)o.min_body_rate))) {
        cli_fail("serve: cannot start the header timeout's thread");
        goto done;
    }
    /* --caller-runs: a thread per connection, which computes batches (the
     * stack mha_run needs, 512 KiB free); else --http-threads event loops,
     * each connection suspended while its request computes: a fixed set of
     * threads whatever the connections (a thread per connection cost a
     * thread's wake-up and switch per request, and its stack and heap arena
     * stayed after it exited) */
    s.blocking = o.caller_runs;
    const size_t stack = o.caller_runs ? (size_t)2 << 20 : (size_t)256 << 10;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | (ipv6 ? MHD_USE_IPv6 : 0);
    flags |=
        o.caller_runs ? MHD_USE_THREAD_PER_CONNECTION : MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    d = MHD_start_daemon(
        flags, (uint16_t)o.port, NULL, NULL, serve_handle, &s, MHD_OPTION_SOCK_ADDR,
        ipv6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o.max_conn, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_THREAD_STACK_SIZE,
        stack, MHD_OPTION_THREAD_POOL_SIZE, o.caller_runs ? 0u : (unsigned)o.http_threads,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVE_CONNECTION_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, serve_completed, &s,
        s.guard ? MHD_OPTION_NOTIFY_CONNECTION : MHD_OPTION_END, serve_guard_notify, s.guard,
        MHD_OPTION_END);
    if (!d) {
        /* named as the address a client would dial; a port under 1024 is
         * the system's to allow (root or CAP_NET_BIND_SERVICE) */
        const int e = errno;
        cli_fail("serve: cannot listen on %s%s%s:%lld: %s", ipv6 ? "[" : "", o.host,
                 ipv6 ? "]" : "", o.port, e ? strerror(e) : "the server did not start");
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : (unsigned)o.port;
    if (o.port_file) {
        char msg[512];
        cli_out_file pf;
        if (cli_out_open(&pf, o.port_file, msg, sizeof msg) != 0) {
            cli_fail("%s", msg);
            goto done;
        }
        fprintf(pf.f, "%u\n", port);
        if (cli_out_commit(&pf, msg, sizeof msg) != 0) {
            cli_fail("%s", msg);
            goto done;
        }
    }
    char runs[48] = "";
    if (o.run_threads > 0)
        snprintf(runs, sizeof runs, ", each batch on %lld thread%s", o.run_threads,
                 o.run_threads > 1 ? "s" : "");
    printf("mha serve: %s on http://%s%s%s:%u/ (backend %s%s, %d threads, max batch %lld, "
           "max delay %g ms%s)\n",
           model_path, ipv6 ? "[" : "", o.host, ipv6 ? "]" : "", port, mha_runtime_backend(rt),
           c.precision == MHA_PRECISION_BFLOAT16 ? " in bfloat16" : "", mha_runtime_num_threads(rt),
           o.max_batch, o.max_delay_ms, runs);
    mha_queue_stats probe;
    mha_queue_get_stats(s.queue, &probe);
    if (probe.batching == MHA_BATCH_EQUAL_LENGTHS)
        printf("mha serve: padding changes this model's results (the queue's probe at start): "
               "only requests of equal length share a batch\n");
    else if (probe.batching == MHA_BATCH_ALONE)
        printf("mha serve: a request's results depend on the others in its batch (the queue's "
               "probe at start): one request a batch\n");
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    pthread_mutex_lock(&s.mutex);
    s.draining = 1;
    pthread_mutex_unlock(&s.mutex);
    MHD_quiesce_daemon(d); /* no new connections */
    uint64_t drained = 0, cancelled = 0;
    mha_queue_shutdown(s.queue, 1, &drained, &cancelled);
    /* every handler has its answer now; let them send it (a stopping
     * daemon closes connections), at most 10 s */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s.mutex);
    while (s.in_flight > 0)
        if (pthread_cond_timedwait(&s.idle, &s.mutex, &until) != 0) break;
    pthread_mutex_unlock(&s.mutex);
    MHD_stop_daemon(d); /* joins the connection threads */
    d = NULL;
    mha_queue_stats qs;
    mha_queue_get_stats(s.queue, &qs);
    fprintf(stderr,
            "mha serve: %s: drained %llu waiting requests; %llu answered, %llu refused (queue "
            "full), %llu refused (the work ahead past their deadline), %llu past their deadline "
            "in the queue\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)drained,
            (unsigned long long)qs.completed_ok, (unsigned long long)qs.rejected_full,
            (unsigned long long)qs.rejected_deadline, (unsigned long long)qs.expired);
    rc = CLI_OK;
done:
    if (d) MHD_stop_daemon(d);
    serve_guard_stop(s.guard);
    mha_queue_destroy(s.queue);
    pthread_mutex_destroy(&s.mutex);
    pthread_cond_destroy(&s.idle);
    mha_runtime_destroy(rt);
    mha_model_free(m);
    return rc;
}
