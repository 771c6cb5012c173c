/* serve_json.c -- `mha serve`'s JSON bodies: one sequence as nested arrays
 * of numbers, [[x, ...], ...] ([S, D]) or [[[x, ...], ...]] ([1, S, D]), or
 * of a whole model's token ids, [id, ...] ([S]) or [[id, ...]] ([1, S]), in;
 * the outputs as nested arrays (one) or an object of them by name (several)
 * out. Only that shape of JSON is read (no objects, strings or literals):
 * anything else is refused with the byte offset where it went wrong.
 * Numbers are written with 9 significant digits, which give every float32
 * back exactly. */
#include "serve_json.h"

#include <errno.h>
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
    int ids;    /* integers into int64 (token ids), else float32 */
    void *data; /* float or int64_t */
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

/* 1 when s is a number as JSON spells it (RFC 8259 section 6):
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? -- no '+' in front, no
 * leading zero, no bare '.', which strtoll and strtof would take */
static int json_number_syntax(const char *s) {
    if (*s == '-') s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return 0;
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        if (*++s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static int json_number(json_reader *r) {
    char buf[64];
    size_t k = 0;
    /* a NUL byte is no digit (strchr would find the string's end) */
    while (r->at + k < r->n && k + 1 < sizeof buf && r->s[r->at + k] != '\0' &&
           strchr("+-0123456789.eE", r->s[r->at + k])) {
        buf[k] = r->s[r->at + k];
        k++;
    }
    buf[k] = '\0';
    char *end = NULL;
    float v = 0.0f;
    long long id = 0;
    /* were "not a finite number" (a ']' after a ',') and, for a number
     * cut at the buffer, "',' or ']' expected" in the middle of it */
    if (!k) return json_fail(r, "a number expected");
    if (k + 1 == sizeof buf && r->at + k < r->n && r->s[r->at + k] != '\0' &&
        strchr("+-0123456789.eE", r->s[r->at + k]))
        return json_fail(r, "a number of more than 63 characters");
    if (!json_number_syntax(buf)) return json_fail(r, "not a number as JSON writes it");
    if (r->ids) {
        errno = 0;
        id = k && !strpbrk(buf, ".eE") ? strtoll(buf, &end, 10) : 0;
        if (!k || !end || *end || strpbrk(buf, ".eE"))
            return json_fail(r, "not an integer token id");
        /* strtoll clamps: 2^63 would be read, and reported, as 2^63 - 1 */
        if (errno == ERANGE) return json_fail(r, "token id outside the int64 range");
    } else {
        v = k ? strtof(buf, &end) : 0.0f;
        if (!k || !end || *end || !isfinite(v)) return json_fail(r, "not a finite number");
    }
    const size_t elem = r->ids ? sizeof(int64_t) : sizeof(float);
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        void *d = realloc(r->data, cap * elem);
        if (!d) return json_fail(r, "out of memory");
        r->data = d;
        r->cap = cap;
    }
    if (r->ids)
        ((int64_t *)r->data)[r->count++] = id;
    else
        ((float *)r->data)[r->count++] = v;
    r->at += k;
    return 0;
}

/* An array at nesting depth `depth` (1 = outermost); every array at one
 * depth must have the same length (the tensor is rectangular). */
static int json_array(json_reader *r, int depth) {
    if (depth > (r->ids ? 2 : SERVE_JSON_MAX_RANK))
        return json_fail(r, r->ids ? "nested deeper than [1, S]" : "nested deeper than [1, S, D]");
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

int serve_json_parse(const char *text, size_t n, int ids, void **data, int *rank, int64_t *dims,
                     char *msg, size_t msg_size) {
    json_reader r;
    memset(&r, 0, sizeof r);
    r.s = text;
    r.n = n;
    r.ids = ids;
    r.msg = msg;
    r.msg_size = msg_size;
    json_skip_space(&r);
    if (r.at >= n || text[r.at] != '[') {
        json_fail(&r, ids ? "the token ids must be an array, [id, ...]"
                          : "the sequence must be an array of rows, [[x, ...], ...]");
        return -1;
    }
    if (json_array(&r, 1) != 0) {
        free(r.data);
        return -1;
    }
    json_skip_space(&r);
    if (r.at != n || (!ids && r.rank < 2)) {
        json_fail(&r, r.at != n ? "text after the array"
                                : "one row is not a sequence: [[x, ...], ...]");
        free(r.data);
        return -1;
    }
    *data = r.data;
    *rank = r.rank;
    memcpy(dims, r.dims, sizeof r.dims);
    return 0;
}

/* The nested arrays of t's axes from `axis` on, at v; n / cap as a growing
 * buffer sized by the caller. */
static size_t json_write(const mha_tensor *t, int axis, const float *v, char *out, size_t n,
                         size_t cap) {
    int64_t len = t->shape[axis], inner = 1;
    for (int d = axis + 1; d < t->rank; d++)
        inner *= t->shape[d];
    out[n++] = '[';
    for (int64_t i = 0; i < len; i++) {
        if (axis + 1 < t->rank)
            n = json_write(t, axis + 1, v + i * inner, out, n, cap);
        else
            n += (size_t)snprintf(out + n, cap - n, "%.9g", (double)v[i]);
        if (i + 1 < len) out[n++] = ',';
    }
    out[n++] = ']';
    return n;
}

/* Characters the nested arrays of t may take: 16 a number
 * ("-1.23456789e-38,") and 2 per array. */
static size_t json_size(const mha_tensor *t) {
    size_t numel = 1, arrays = 1, prod = 1;
    for (int d = 0; d < t->rank; d++) {
        numel *= (size_t)t->shape[d];
        if (d + 1 < t->rank) arrays += prod *= (size_t)t->shape[d];
    }
    return numel * 16 + arrays * 3 + 16;
}

char *serve_json_format(const mha_tensor *y, const char *const *names, size_t n_out, size_t *len) {
    size_t cap = 16;
    for (size_t k = 0; k < n_out; k++)
        cap += json_size(&y[k]) + (names ? strlen(names[k]) * 6 + 8 : 0);
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t n = 0;
    const int object = n_out > 1; /* several outputs: {"name": [...], ...} */
    if (object) out[n++] = '{';
    for (size_t k = 0; k < n_out; k++) {
        if (object) {
            out[n++] = '"';
            for (const char *c = names[k]; *c; c++) {
                unsigned char ch = (unsigned char)*c;
                if (ch < 0x20 || ch == '"' || ch == '\\')
                    n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
                else
                    out[n++] = (char)ch;
            }
            out[n++] = '"';
            out[n++] = ':';
        }
        if (y[k].rank == 0)
            n += (size_t)snprintf(out + n, cap - n, "%.9g", (double)*(const float *)y[k].data);
        else
            n = json_write(&y[k], 0, y[k].data, out, n, cap);
        if (k + 1 < n_out) out[n++] = ',';
    }
    if (object) out[n++] = '}';
    out[n++] = '\n';
    *len = n;
    return out;
}
