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
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 10^k exactly: in a double up to 10^22, in a long double (64-bit
 * significand on x86) up to 10^27 */
static const double json_p10d[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The float32 strtof gives for s (a number as JSON spells it), in one
 * correctly rounded double operation where that is exact (Clinger's fast
 * path: at most 15 significant digits, a power of ten within 10^+-22, both
 * exact in a double) and then one rounding to float, which is strtof's
 * unless the double falls on a midpoint between two floats; those, and
 * every other number, go through strtof itself. strtof took 100 ns a
 * number: 2.4 CPU ms of the 2.5 a request of 32 x 768 numbers cost. */
float serve_json_strtof(const char *s) {
    const char *p = s;
    const int neg = *p == '-';
    p += neg;
    uint64_t w = 0;
    int sig = 0, q = 0, frac = 0, over = 0;
    for (;; p++) {
        if (*p == '.' && !frac) {
            frac = 1;
            continue;
        }
        if (*p < '0' || *p > '9') break;
        if (sig < 16) {
            w = w * 10 + (uint64_t)(*p - '0');
            sig += w != 0;
            q -= frac;
        } else {
            over = 1;
        }
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        const int eneg = *p == '-';
        p += *p == '-' || *p == '+';
        int ex = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (ex < 10000) ex = ex * 10 + (*p - '0');
        q += eneg ? -ex : ex;
    }
    if (over || sig > 15 || q < -22 || q > 22) return strtof(s, NULL);
    const double d = q < 0 ? (double)w / json_p10d[-q] : (double)w * json_p10d[q];
    const float f = (float)d;
    if (!(f >= FLT_MIN && f <= FLT_MAX)) return w ? strtof(s, NULL) : neg ? -0.0f : 0.0f;
    /* a midpoint between two floats: the 29 bits a float drops are 1000...0 */
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    if ((bits & 0x1fffffffu) == 0x10000000u) return strtof(s, NULL);
    return neg ? -f : f;
}

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

/* A character a number may hold: +-0123456789.eE (a NUL byte is none). */
static int json_number_char(char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E';
}

static int json_number(json_reader *r) {
    char buf[64];
    size_t k = 0;
    while (r->at + k < r->n && k + 1 < sizeof buf && json_number_char(r->s[r->at + k])) {
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
    if (k + 1 == sizeof buf && r->at + k < r->n && json_number_char(r->s[r->at + k]))
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
        v = serve_json_strtof(buf); /* the syntax is JSON's: strtof reads all of it */
        if (!isfinite(v)) return json_fail(r, "not a finite number");
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

/* "%.9g" of f at out (room for 16 characters), its length: the nine
 * digits from one scaling by a power of ten in a long double -- exact for
 * 10^0..10^17 (a float's 24 bits times 5^17's 40 fit its 64), correctly
 * rounded when dividing by 10^1..10^27 -- rounded half away from the
 * tenth digit; a value whose tenth digit is within a hair of a tie (where
 * printf rounds to even, exactly), zeros, and magnitudes outside 1e-9..1e36
 * go through snprintf, so the text is always printf's. snprintf took 135 ns
 * a number: 3.3 CPU ms to answer 32 x 768 numbers, three times the layer's
 * compute, on the one HTTP thread. */
size_t serve_json_float(float f, char *out) {
    static const long double p10[28] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                        1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                        1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                        1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    const double a = fabs((double)f);
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    /* floor(log10(a)), or one below: the binary exponent times log10(2) */
    int e = (((int)(bits >> 23 & 0xff) - 127) * 78913) >> 18;
    uint64_t n = 0;
    if (LDBL_MANT_DIG >= 64 && a >= 1e-9 && a < 1e36) {
        for (int tries = 0; tries < 3; tries++) {
            const int p = 8 - e;
            /* in a double where the product is exact (24 + 28 bits for
             * 5^12): |f| from 1e-4 up, most values a model gives */
            double rest;
            if (p >= 0 && p <= 12) {
                const double x = a * json_p10d[p];
                if (x >= 1e9 || x < 1e8) {
                    e += x >= 1e9 ? 1 : -1;
                    continue;
                }
                n = (uint64_t)x;
                rest = x - (double)n;
            } else {
                const long double x = p >= 0 ? (long double)a * p10[p] : (long double)a / p10[-p];
                if (x >= 1e9L || x < 1e8L) {
                    e += x >= 1e9L ? 1 : -1;
                    continue;
                }
                n = (uint64_t)x;
                rest = (double)(x - (long double)n);
            }
            if (fabs(rest - 0.5) < 1e-6)
                n = 0; /* a tie or nearly: printf decides */
            else if (rest > 0.5 && ++n == 1000000000u) {
                n = 100000000u;
                e++;
            }
            break;
        }
    }
    if (!n) return (size_t)snprintf(out, 16, "%.9g", (double)f);
    char d[9];
    for (int i = 8; i >= 0; i--, n /= 10)
        d[i] = (char)('0' + n % 10);
    int nd = 9; /* the digits left once trailing zeros go */
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    size_t k = 0;
    if (f < 0) out[k++] = '-';
    if (e < -4 || e >= 9) { /* d.dddddddde+XX */
        out[k++] = d[0];
        if (nd > 1) out[k++] = '.';
        for (int i = 1; i < nd; i++)
            out[k++] = d[i];
        out[k++] = 'e';
        out[k++] = e < 0 ? '-' : '+';
        const int x = e < 0 ? -e : e;
        out[k++] = (char)('0' + x / 10);
        out[k++] = (char)('0' + x % 10);
    } else if (e >= 0) { /* ddd.dddddd */
        for (int i = 0; i <= e; i++)
            out[k++] = d[i];
        if (nd > e + 1) out[k++] = '.';
        for (int i = e + 1; i < nd; i++)
            out[k++] = d[i];
    } else { /* 0.000ddddddddd */
        out[k++] = '0';
        out[k++] = '.';
        for (int i = -1; i > e; i--)
            out[k++] = '0';
        for (int i = 0; i < nd; i++)
            out[k++] = d[i];
    }
    out[k] = '\0';
    return k;
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
            n += serve_json_float(v[i], out + n);
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
            n += serve_json_float(*(const float *)y[k].data, out + n);
        else
            n = json_write(&y[k], 0, y[k].data, out, n, cap);
        if (k + 1 < n_out) out[n++] = ',';
    }
    if (object) out[n++] = '}';
    out[n++] = '\n';
    *len = n;
    return out;
}
