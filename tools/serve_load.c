/* serve_load.c -- `serve-load`: an open-loop (Poisson) HTTP load generator
 * for `mha serve`, on libcurl's multi interface (one thread, many
 * keep-alive connections; the HTTP is libcurl's).
 *
 * Request i is due at t_i = t_{i-1} + Exp(rate) for DURATION seconds and
 * is started then, whatever the server does (open loop: a slow answer never
 * delays the next arrival); past --connections busy connections libcurl
 * holds it until one frees, and that wait counts in its latency, which runs
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
 * ones (ms). --interval SEC adds, in the JSON, the same per SEC of arrivals.
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
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define LOAD_MAX_BODIES 16
#define LOAD_MAX_CODES 16

typedef struct load_body {
    const char *path;
    char *data;
    size_t size;
    uint64_t answer_hash; /* of the first 200 answer; 0 = none yet */
    size_t answer_size;
} load_body;

/* One request in flight (its easy handle's private pointer). */
typedef struct load_call {
    CURL *easy;
    struct curl_slist *headers;
    size_t id;
    uint64_t hash; /* of the answer's body (load_on_body) */
    uint64_t word; /* its bytes not yet hashed, fewer than 8 */
    size_t size;
    long echoed; /* X-Request-Id of the answer, -1 = none */
} load_call;

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
    const char *first_failure; /* libcurl's reason for the first failed transfer */
    load_call **free_calls;    /* idle calls, their handles kept for reuse */
    size_t n_free;
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
static size_t load_on_body(char *p, size_t one, size_t n, void *user) {
    load_call *c = user;
    const size_t len = n * one;
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
    return len;
}

static uint64_t load_hash_end(const load_call *c) {
    return c->size % 8 ? (c->hash ^ c->word) * 0x100000001b3ULL : c->hash;
}

static size_t load_on_header(char *p, size_t one, size_t n, void *user) {
    load_call *c = user;
    static const char name[] = "x-request-id:";
    size_t len = n * one;
    if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        char buf[32];
        size_t k = sizeof name - 1, m = 0;
        while (k < len && (p[k] == ' ' || p[k] == '\t'))
            k++;
        while (k < len && m < sizeof buf - 1 && isdigit((unsigned char)p[k]))
            buf[m++] = p[k++];
        buf[m] = 0;
        c->echoed = m ? strtol(buf, NULL, 10) : -1;
    }
    return len;
}

/* Starts request id now: a kept handle if one is idle, else a new one. */
static int load_start(load_state *s, CURLM *multi, size_t id) {
    load_call *c = s->n_free ? s->free_calls[--s->n_free] : calloc(1, sizeof *c);
    if (!c) return -1;
    if (!c->easy) {
        c->easy = curl_easy_init();
        if (!c->easy) {
            free(c);
            return -1;
        }
    }
    const load_body *b = &s->bodies[id % (size_t)s->n_bodies];
    char h_id[64], h_type[160];
    snprintf(h_id, sizeof h_id, "X-Request-Id: %zu", id);
    snprintf(h_type, sizeof h_type, "Content-Type: %s", s->type);
    curl_slist_free_all(c->headers);
    c->headers = curl_slist_append(NULL, h_id);
    c->headers = c->headers ? curl_slist_append(c->headers, h_type) : NULL;
    /* no "Expect: 100-continue" round trip before the body */
    c->headers = c->headers ? curl_slist_append(c->headers, "Expect:") : NULL;
    if (!c->headers) return -1;
    c->id = id;
    c->hash = 0xcbf29ce484222325ULL;
    c->word = 0;
    c->size = 0;
    c->echoed = -1;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, s->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->size);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, load_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, load_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(s->timeout * 1e3));
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    return curl_multi_add_handle(multi, e) == CURLM_OK ? 0 : -1;
}

/* A finished transfer: its answer counted and checked, its handle kept. */
static void load_finish(load_state *s, CURLM *multi, CURL *e, CURLcode result, double start) {
    load_call *c = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
    curl_multi_remove_handle(multi, e);
    long code = 0;
    if (result == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    load_result *r = &s->res[c->id];
    if (code == 0) {
        if (!s->failed_transfers++) s->first_failure = curl_easy_strerror(result);
    } else {
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
    s->free_calls[s->n_free++] = c;
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
    s->free_calls = calloc(n, sizeof *s->free_calls);
    if (!s->due || !s->res || !s->answers || !s->free_calls) return -1;
    for (size_t i = 0; i < s->n; i++)
        s->res[i].latency_ms = -1;
    return 0;
}

/* Sends every request at its time and waits for every answer. The next
 * arrival's time is set on a timer that the poll watches beside the
 * connections: curl_multi_poll waits whole milliseconds, and before the
 * timer the part of a millisecond left before an arrival was spent
 * polling with no wait, again and again (at 500 requests/s about 0.3 of
 * serve-load's 0.6 CPU ms a request, taken from the cores the server
 * computes on). */
static int load_drive(load_state *s, CURLM *multi, double start) {
    size_t next = 0;
    int running = 0;
    const int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    for (;;) {
        double now = load_now();
        for (; next < s->n && start + s->due[next] <= now; next++)
            if (load_start(s, multi, next) != 0) {
                if (tfd >= 0) close(tfd);
                return -1;
            }
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                load_finish(s, multi, msg->easy_handle, msg->data.result, start);
        if (next >= s->n && running == 0) break;
        double wait = next < s->n ? start + s->due[next] - load_now() : 0.1;
        if (wait <= 0) continue;
        int ms = wait >= 0.1 ? 100 : (int)ceil(wait * 1e3);
        struct curl_waitfd timer = {tfd, CURL_WAIT_POLLIN, 0};
        if (tfd >= 0 && next < s->n) {
            const double at = start + s->due[next];
            struct itimerspec it;
            memset(&it, 0, sizeof it);
            it.it_value.tv_sec = (time_t)at;
            it.it_value.tv_nsec = (long)((at - (double)it.it_value.tv_sec) * 1e9);
            if (it.it_value.tv_nsec > 999999999L) it.it_value.tv_nsec = 999999999L;
            if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL) == 0) {
                curl_multi_poll(multi, &timer, 1, ms, NULL);
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0) { /* not yet due */
                }
                continue;
            }
        }
        /* no timer: wait the whole milliseconds, then poll without one */
        curl_multi_poll(multi, NULL, 0, (int)(wait * 1e3), NULL);
    }
    if (tfd >= 0) close(tfd);
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
    printf("}; unanswered %zu, twice %zu, wrong id %zu, differing answers %zu; latency p50 %.2f "
           "ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; 503 p50 %.2f ms, p99 %.2f ms\n",
           unanswered, twice, s->wrong_id, s->body_mismatch, all.p50, all.p99, all.p999, all.max,
           all.refused_p50, all.refused_p99);
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
            "\"differing_answers\": %zu, \"failed_transfers\": %zu, ",
            unanswered, twice, s->wrong_id, s->body_mismatch, s->failed_transfers);
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
    CURLM *multi = NULL;
    double *scratch = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || load_arrivals(&s) != 0 ||
        !(scratch = malloc((s.n ? s.n : 1) * sizeof *scratch)) || !(multi = curl_multi_init())) {
        fprintf(stderr, "serve-load: out of memory for %zu requests\n", s.n);
        goto done;
    }
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, s.connections);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, s.connections);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, s.connections);
    double start = load_now() + 0.05;
    if (load_drive(&s, multi, start) != 0) {
        fprintf(stderr, "serve-load: cannot start a request (out of memory)\n");
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
                s.failed_transfers, s.n, s.first_failure ? s.first_failure : "?");
    else if (rc && saved == 0)
        fprintf(stderr,
                "serve-load: %s: %zu of %zu requests answered 200; unanswered %zu, twice %zu, "
                "wrong id %zu, differing answers %zu\n",
                s.url, ok, s.n, unanswered, twice, s.wrong_id, s.body_mismatch);
done:
    for (size_t i = 0; i < s.n_free; i++) {
        curl_easy_cleanup(s.free_calls[i]->easy);
        curl_slist_free_all(s.free_calls[i]->headers);
        free(s.free_calls[i]);
    }
    if (multi) curl_multi_cleanup(multi);
    curl_global_cleanup();
    for (int b = 0; b < s.n_bodies; b++)
        free(s.bodies[b].data);
    free(s.due);
    free(s.res);
    free(s.answers);
    free(s.free_calls);
    free(scratch);
    return rc;
}
