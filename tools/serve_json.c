/* serve_json.c -- `mha serve`'s JSON bodies: one sequence as nested arrays
 * of numbers, [[x, ...], ...] ([S, D]) or [[[x, ...], ...]] ([1, S, D]), in
 * and out. Only that shape of JSON is read (no objects, strings or
 * literals): anything else is refused with the byte offset where it went
 * wrong. Numbers are written with 9 significant digits, which give every
 * float32 back exactly. */
#include "serve_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_reader {
    const char *s;
    size_t n, at;
    int rank; /* nesting depth of the numbers, 0 until the first */
    int64_t dims[SERVE_JSON_MAX_RANK];
    int dims_known[SERVE_JSON_MAX_RANK];
    float *data;
    size_t count, cap;
    char *msg;
    size_t msg_size;
} json_reader;

static void json_skip_space(json_reader *r) {
    while (r->at < r->n && (r->s[r->at] == ' ' || r->s[r->at] == '\t' || r->s[r->at] == '\n' ||
                            r->s[r->at] == '\r'))
        r->at++;
}

static int json_fail(json_reader *r, const char *what) {
    snprintf(r->msg, r->msg_size, "JSON body, byte %zu: %s", r->at, what);
    return -1;
}

static int json_number(json_reader *r) {
    char buf[64];
    size_t k = 0;
    while (r->at + k < r->n && k + 1 < sizeof buf && strchr("+-0123456789.eE", r->s[r->at + k])) {
        buf[k] = r->s[r->at + k];
        k++;
    }
    buf[k] = '\0';
    char *end = NULL;
    float v = k ? strtof(buf, &end) : 0.0f;
    if (!k || !end || *end || !isfinite(v)) return json_fail(r, "not a finite number");
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        float *d = realloc(r->data, cap * sizeof *d);
        if (!d) return json_fail(r, "out of memory");
        r->data = d;
        r->cap = cap;
    }
    r->data[r->count++] = v;
    r->at += k;
    return 0;
}

/* An array at nesting depth `depth` (1 = outermost); every array at one
 * depth must have the same length (the tensor is rectangular). */
static int json_array(json_reader *r, int depth) {
    if (depth > SERVE_JSON_MAX_RANK) return json_fail(r, "nested deeper than [1, S, D]");
    r->at++; /* '[' */
    int64_t len = 0;
    json_skip_space(r);
    if (r->at < r->n && r->s[r->at] == ']') return json_fail(r, "an empty array");
    for (;;) {
        json_skip_space(r);
        if (r->at >= r->n) return json_fail(r, "the body ends inside an array");
        int is_array = r->s[r->at] == '[';
        if (!r->rank && !is_array) r->rank = depth; /* the first number says the rank */
        if (is_array ? depth >= r->rank && r->rank : depth != r->rank)
            return json_fail(r, "numbers and arrays mixed at one depth");
        if ((is_array ? json_array(r, depth + 1) : json_number(r)) != 0) return -1;
        len++;
        json_skip_space(r);
        if (r->at < r->n && r->s[r->at] == ',') {
            r->at++;
            continue;
        }
        if (r->at < r->n && r->s[r->at] == ']') break;
        return json_fail(r, "',' or ']' expected");
    }
    r->at++;
    int d = depth - 1;
    if (!r->dims_known[d]) {
        r->dims[d] = len;
        r->dims_known[d] = 1;
    } else if (r->dims[d] != len) {
        return json_fail(r, "rows of different lengths");
    }
    return 0;
}

int serve_json_parse(const char *text, size_t n, float **data, int *rank, int64_t *dims, char *msg,
                     size_t msg_size) {
    json_reader r;
    memset(&r, 0, sizeof r);
    r.s = text;
    r.n = n;
    r.msg = msg;
    r.msg_size = msg_size;
    json_skip_space(&r);
    if (r.at >= n || text[r.at] != '[') {
        json_fail(&r, "the sequence must be an array of rows, [[x, ...], ...]");
        return -1;
    }
    if (json_array(&r, 1) != 0) {
        free(r.data);
        return -1;
    }
    json_skip_space(&r);
    if (r.at != n || r.rank < 2) {
        json_fail(&r, r.rank < 2 ? "one row is not a sequence: [[x, ...], ...]"
                                 : "text after the array");
        free(r.data);
        return -1;
    }
    *data = r.data;
    *rank = r.rank;
    memcpy(dims, r.dims, sizeof r.dims);
    return 0;
}

char *serve_json_format(const mha_tensor *y, size_t *len) {
    const int64_t rows = y->shape[y->rank - 2], cols = y->shape[y->rank - 1];
    const float *v = y->data;
    /* at most 16 characters a number ("-1.23456789e-38,"), plus brackets */
    size_t cap = (size_t)(rows * cols) * 16 + (size_t)rows * 4 + 16;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t n = 0;
    if (y->rank == 3) out[n++] = '[';
    out[n++] = '[';
    for (int64_t i = 0; i < rows; i++) {
        out[n++] = '[';
        for (int64_t j = 0; j < cols; j++)
            n += (size_t)snprintf(out + n, cap - n, j + 1 < cols ? "%.9g," : "%.9g",
                                  (double)v[i * cols + j]);
        out[n++] = ']';
        if (i + 1 < rows) out[n++] = ',';
    }
    out[n++] = ']';
    if (y->rank == 3) out[n++] = ']';
    out[n++] = '\n';
    *len = n;
    return out;
}
