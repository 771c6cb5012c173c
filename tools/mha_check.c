/* mha_check.c -- `mha check CASE_DIR...`: runs ONNX backend-test folders
 * (model.onnx, test_data_set_<k>/input_<i>.pb, output_<i>.pb) and compares
 * with the expected outputs under the tolerances of
 * ../shared/conformance/check.py. Prints one line per failing case, then
 * exactly "N passed, M failed". */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "mha/tensor_file.h"

enum { CHECK_RTOL = 1, CHECK_ATOL, CHECK_LIST };

static const cli_opt check_opts[] = {
    {CHECK_RTOL, "rtol", 0, "R", "override the relative tolerance for every float type"},
    {CHECK_ATOL, "atol", 0, "A", "override the absolute tolerance for every float type"},
    {CHECK_LIST, "list", 0, NULL, "also print one line per passing case"},
    {0},
};

static const cli_spec check_spec = {
    "Usage: mha check CASE_DIR... [options]\n"
    "\n"
    "Runs ONNX backend-test cases: CASE_DIR/model.onnx with\n"
    "CASE_DIR/test_data_set_<k>/input_<i>.pb and the expected output_<i>.pb. A folder\n"
    "without model.onnx stands for the case folders inside it.\n"
    "\n"
    "Tolerances: float32 |got - want| <= 1e-5 + 1e-4 |want|; float16 1e-3 + 1e-3 |want|;\n"
    "float64 1e-9 + 1e-7 |want|. -inf or the lowest finite value in the expected output\n"
    "matches either of them; NaN must meet NaN and +inf +inf; integers and bools must\n"
    "be equal. A model the engine refuses fails with the engine's message.\n"
    "A case folder may hold a file 'tolerance' with lines 'rtol R' / 'atol A'\n"
    "('#' comments): the floor that case's outputs are compared under (a quantized\n"
    "model's outputs from another runtime); --rtol / --atol override it.\n"
    "With --precision bfloat16 a float32 output is judged by\n"
    "|got - want| <= 3 * 2^-7 max |want| (three chained products of operands rounded\n"
    "to 8 significant bits, 2^-7 each; docs/PERFORMANCE.md).\n",
    check_opts,
    CLI_COMMON_RUNTIME | CLI_COMMON_VERBOSE | CLI_COMMON_PRECISION,
    "Prints one line per failing case and finally 'N passed, M failed' on stdout.\n"
    "A CASE_DIR that names no case (missing, not a folder, no model.onnx inside) is\n"
    "an error found before any case runs: one line on stderr, nothing on stdout. The\n"
    "exit status is 0 only when at least one case ran and none failed.\n",
};

/* ------------------------------------------------------------------------ */
/* comparison                                                                */
/* ------------------------------------------------------------------------ */

typedef struct check_tol {
    double rtol, atol; /* < 0: the dtype's default */
    double of_max;     /* > 0 (bfloat16 compute): atol = of_max * max |want|, rtol 0 */
    /* the case's own floor (its `tolerance` file; 0: none): what the
     * defaults above loosen to, below the command line's --rtol / --atol */
    double case_rtol, case_atol;
} check_tol;

/* The bound of a bfloat16 run against float32 expectations (as mha
 * bench's): three chained products, each operand within 2^-8. */
#define CHECK_BF16_OF_MAX (3.0 / 128.0)

static double check_get(const mha_tensor *t, size_t i) {
    switch (t->dtype) {
    case MHA_DTYPE_FLOAT32:
        return ((const float *)t->data)[i];
    case MHA_DTYPE_FLOAT64:
        return ((const double *)t->data)[i];
    case MHA_DTYPE_FLOAT16: {
        float f;
        mha_dtype_convert((const uint16_t *)t->data + i, MHA_DTYPE_FLOAT16, &f, MHA_DTYPE_FLOAT32,
                          1);
        return f;
    }
    case MHA_DTYPE_BFLOAT16: {
        float f;
        mha_dtype_convert((const uint16_t *)t->data + i, MHA_DTYPE_BFLOAT16, &f, MHA_DTYPE_FLOAT32,
                          1);
        return f;
    }
    default:
        return 0.0;
    }
}

static int check_is_float(mha_dtype d) {
    return d == MHA_DTYPE_FLOAT32 || d == MHA_DTYPE_FLOAT64 || d == MHA_DTYPE_FLOAT16 ||
           d == MHA_DTYPE_BFLOAT16;
}

/* "(0, 3, 1)" for flat index i of shape. */
static const char *check_index_str(const mha_tensor *t, size_t i, char *buf, size_t n) {
    size_t idx[MHA_MAX_RANK];
    for (int d = t->rank - 1; d >= 0; d--) {
        size_t dim = (size_t)t->shape[d];
        idx[d] = dim ? i % dim : 0;
        i = dim ? i / dim : 0;
    }
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < t->rank && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%zu", d ? ", " : "", idx[d]);
    if (used < n) snprintf(buf + used, n - used, ")");
    return buf;
}

static const char *check_compare(const mha_tensor *want, const mha_tensor *got, check_tol tol,
                                 char *buf, size_t n) {
    char a[160], b[160];
    if (want->dtype != got->dtype) {
        snprintf(buf, n, "dtype %s != expected %s", mha_dtype_name(got->dtype),
                 mha_dtype_name(want->dtype));
        return buf;
    }
    int same = want->rank == got->rank;
    for (int d = 0; same && d < want->rank; d++)
        same = want->shape[d] == got->shape[d];
    if (!same) {
        snprintf(buf, n, "shape %s != expected %s",
                 cli_shape_str(got->rank, got->shape, a, sizeof a),
                 cli_shape_str(want->rank, want->shape, b, sizeof b));
        return buf;
    }
    size_t count = (size_t)mha_tensor_numel(want), es = mha_dtype_size(want->dtype);
    if (!check_is_float(want->dtype)) {
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < count; i++)
            if (memcmp((const char *)want->data + i * es, (const char *)got->data + i * es, es)) {
                if (!bad) first = i;
                bad++;
            }
        if (!bad) return NULL;
        snprintf(buf, n, "%zu/%zu elements differ, first at %s", bad, count,
                 check_index_str(want, first, a, sizeof a));
        return buf;
    }
    double rtol = 1e-4, atol = 1e-5, low = -FLT_MAX;
    if (want->dtype == MHA_DTYPE_FLOAT16) {
        rtol = 1e-3;
        atol = 1e-3;
        low = -65504.0;
    } else if (want->dtype == MHA_DTYPE_FLOAT64) {
        rtol = 1e-7;
        atol = 1e-9;
        low = -DBL_MAX;
    } else if (want->dtype == MHA_DTYPE_BFLOAT16) {
        rtol = 1e-2;
        atol = 1e-2;
        low = -3.3895313892515355e38;
    }
    if (tol.of_max > 0) {
        double m = 0.0;
        for (size_t i = 0; i < count; i++) {
            const double e = fabs(check_get(want, i));
            if (isfinite(e) && e > m && check_get(want, i) > low) m = e;
        }
        rtol = 0.0;
        atol = tol.of_max * m;
    }
    if (rtol < tol.case_rtol) rtol = tol.case_rtol;
    if (atol < tol.case_atol) atol = tol.case_atol;
    if (tol.rtol >= 0) rtol = tol.rtol;
    if (tol.atol >= 0) atol = tol.atol;

    /* the worst element: a special-value mismatch beats any numeric one,
     * numeric ones rank by how far past the tolerance they are */
    size_t bad = 0, worst = 0;
    double worst_excess = -1.0, max_err = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = check_get(want, i), g = check_get(got, i);
        int ok;
        double excess;
        if (e <= low) { /* a masked score: -inf or the lowest finite value */
            ok = g <= low;
            excess = INFINITY;
        } else if (isnan(e)) {
            ok = isnan(g);
            excess = INFINITY;
        } else if (isinf(e)) {
            ok = isinf(g) && g > 0;
            excess = INFINITY;
        } else {
            double err = fabs(g - e);
            ok = !isnan(g) && err <= atol + rtol * fabs(e);
            excess = isnan(err) || isinf(err) ? INFINITY : err / (atol + rtol * fabs(e));
            if (isfinite(err) && err > max_err) max_err = err;
        }
        if (!ok) {
            if (excess > worst_excess) {
                worst_excess = excess;
                worst = i;
            }
            bad++;
        }
    }
    if (!bad) return NULL;
    snprintf(buf, n,
             "%zu/%zu elements off (rtol %g, atol %g); max abs err %.3g; worst at %s: "
             "expected %.9g, got %.9g",
             bad, count, rtol, atol, max_err, check_index_str(want, worst, a, sizeof a),
             check_get(want, worst), check_get(got, worst));
    return buf;
}

const char *cli_compare_tensors(const mha_tensor *want, const mha_tensor *got, char *buf,
                                size_t n) {
    check_tol tol = {-1.0, -1.0, 0.0, 0.0, 0.0};
    return check_compare(want, got, tol, buf, n);
}

/* ------------------------------------------------------------------------ */
/* folders                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

static int name_list_add(name_list *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return 0;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(s);
    return l->v[l->n++] != NULL;
}

static void name_list_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Whether p names anything at all: a file, a folder, a FIFO, a symlink
 * even to nothing. A case's model.onnx or tolerance of another kind is a
 * fault of the case to say, not an absence to pass over in silence. */
static int has_entry(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* Entries of dir (sorted by name) that are folders starting with prefix. */
static int list_subdirs(const char *dir, const char *prefix, name_list *out) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    char p[4096];
    int ok = 1;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (is_dir(p)) ok = name_list_add(out, e->d_name);
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return ok;
}

/* The highest k such that dir/<prefix>_0.pb ... <prefix>_<k-1>.pb all exist
 * counts them; a gap is reported through *gap. Numbered files only. */
static size_t count_numbered(const char *dir, const char *prefix, int *gap) {
    DIR *d = opendir(dir);
    size_t max_plus_one = 0, seen = 0;
    *gap = 0;
    if (!d) return 0;
    struct dirent *e;
    size_t pl = strlen(prefix);
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, prefix, pl) != 0 || s[pl] != '_') continue;
        char *end;
        /* digits only: strtoul also skips spaces and takes a sign */
        if (!isdigit((unsigned char)s[pl + 1])) continue;
        unsigned long k = strtoul(s + pl + 1, &end, 10);
        if (end == s + pl + 1 || strcmp(end, ".pb") != 0) continue;
        seen++;
        if (k + 1 > max_plus_one) max_plus_one = k + 1;
    }
    closedir(d);
    if (seen != max_plus_one) *gap = 1;
    return max_plus_one;
}

/* What is wrong with the numbering of a data set's PREFIX_<k>.pb files when
 * count_numbered found a gap: the first number missing (below max, the
 * highest there), or a number given twice (input_0.pb beside input_00.pb).
 * Written to buf. */
static void numbered_gap(const char *dir, const char *prefix, size_t max, char *buf, size_t n) {
    enum { CAP = 1 << 16 };
    const size_t len = max < CAP ? max : CAP;
    unsigned char *have = calloc(len + 1, 1);
    DIR *d = have ? opendir(dir) : NULL;
    unsigned long twice = ULONG_MAX;
    const size_t pl = strlen(prefix);
    for (struct dirent *e; d && (e = readdir(d));) {
        const char *s = e->d_name;
        if (strncmp(s, prefix, pl) != 0 || s[pl] != '_') continue;
        char *end;
        if (!isdigit((unsigned char)s[pl + 1])) continue;
        unsigned long k = strtoul(s + pl + 1, &end, 10);
        if (end == s + pl + 1 || strcmp(end, ".pb") != 0 || k >= len) continue;
        if (have[k] && twice == ULONG_MAX) twice = k;
        have[k] = 1;
    }
    if (d) closedir(d);
    size_t k = 0;
    while (have && k < len && have[k])
        k++;
    if (have && k < len)
        snprintf(buf, n, "%s_%zu.pb is missing (%s_%zu.pb is there)", prefix, k, prefix, max - 1);
    else if (twice != ULONG_MAX)
        snprintf(buf, n, "two %s files are numbered %lu", prefix, twice);
    else
        snprintf(buf, n, "the %s files are not numbered 0, 1, 2, ...", prefix);
    free(have);
}

/* ------------------------------------------------------------------------ */
/* one case                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct check_ctx {
    mha_runtime *rt;
    check_tol tol;
    int list;
    int passed, failed;
    mha_run_options run; /* its precision */
    double max_rel;      /* bfloat16: worst |got - want| / max |want| of an output */
    double rel_sum;      /* ... and the sum over elements, for the mean */
    size_t rel_n;
} check_ctx;

/* Adds a float32 output's errors relative to its max |want| (finite
 * elements) to the context's statistics. */
static void check_rel_stats(check_ctx *cx, const mha_tensor *want, const mha_tensor *got) {
    if (want->dtype != MHA_DTYPE_FLOAT32 || got->dtype != MHA_DTYPE_FLOAT32) return;
    const size_t n = (size_t)mha_tensor_numel(want);
    const float *w = want->data, *g = got->data;
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(w[i]) && w[i] > -FLT_MAX && fabs(w[i]) > m) m = fabs(w[i]);
    if (m == 0.0) return;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]) || w[i] <= -FLT_MAX) continue;
        const double r = fabs((double)g[i] - (double)w[i]) / m;
        cx->max_rel = isnan(r) || r > cx->max_rel ? r : cx->max_rel;
        cx->rel_sum += r;
        cx->rel_n++;
    }
}

static void append(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t n, const char *fmt, ...) {
    size_t used = strlen(buf);
    if (used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

/* Runs one data set; appends the reason to `why` when it fails. */
static void check_dataset(check_ctx *cx, const mha_model *model, const char *dset, char *why,
                          size_t why_n) {
    mha_model_info mi;
    mha_model_get_info(model, &mi);
    size_t n_in = mi.num_inputs, n_out = mi.num_outputs;
    int gap_in, gap_out;
    size_t files_in = count_numbered(dset, "input", &gap_in);
    size_t files_out = count_numbered(dset, "output", &gap_out);
    const char *name = strrchr(dset, '/') ? strrchr(dset, '/') + 1 : dset;
    if (gap_in || gap_out) {
        char what[160];
        numbered_gap(dset, gap_in ? "input" : "output", gap_in ? files_in : files_out, what,
                     sizeof what);
        append(why, why_n, "%s%s: %s", *why ? " | " : "", name, what);
        return;
    }
    if (files_in != n_in || files_out > n_out || files_out == 0) {
        append(why, why_n,
               "%s%s: %zu input and %zu output files for a model of %zu inputs and %zu "
               "outputs",
               *why ? " | " : "", name, files_in, files_out, n_in, n_out);
        return;
    }
    mha_tensor_file **tin = calloc(n_in + 1, sizeof *tin);
    int32_t **narrowed = calloc(n_in + 1, sizeof *narrowed);
    mha_tensor *ins = calloc(n_in + 1, sizeof *ins), *outs = calloc(n_out + 1, sizeof *outs);
    mha_error err;
    mha_error_clear(&err);
    char path[4096], reason[1024];
    if (!tin || !narrowed || !ins || !outs) {
        append(why, why_n, "%sout of memory", *why ? " | " : "");
        goto done;
    }
    for (size_t i = 0; i < n_in; i++) {
        mha_io_info info;
        mha_model_input(model, i, &info);
        mha_tensor_file_options o;
        mha_tensor_file_options_init(&o);
        /* int64 ids for an int32 input: narrowed, every value checked, as
         * `mha run` narrows them (read as stored first) */
        o.want = info.dtype == MHA_DTYPE_INT32 ? MHA_DTYPE_UNDEFINED : info.dtype;
        if (!cli_format(path, sizeof path, "%s/input_%zu.pb", dset, i)) {
            append(why, why_n, "%s%s: path too long", *why ? " | " : "", name);
            goto done;
        }
        if (mha_tensor_file_read(path, &o, &tin[i], &err) != MHA_OK) {
            append(why, why_n, "%s%s: %s", *why ? " | " : "", name, err.message);
            goto done;
        }
        ins[i] = *mha_tensor_file_tensor(tin[i]);
        if (info.dtype == MHA_DTYPE_INT32 &&
            cli_ids_as_int32(mha_tensor_file_tensor(tin[i]), info.name, &ins[i], &narrowed[i],
                             reason, sizeof reason) != 0) {
            append(why, why_n, "%s%s: %s: %s", *why ? " | " : "", name, path, reason);
            goto done;
        }
    }
    if (mha_model_output_shapes(model, ins, n_in, outs, n_out, &err) != MHA_OK) {
        append(why, why_n, "%s%s: %s", *why ? " | " : "", name, err.message);
        goto done;
    }
    for (size_t i = 0; i < n_out; i++) {
        int ok;
        size_t bytes = cli_tensor_bytes(&outs[i], &ok);
        outs[i].data = ok ? calloc(bytes ? bytes : 1, 1) : NULL;
        if (!outs[i].data) {
            append(why, why_n, "%s%s: output %zu too large", *why ? " | " : "", name, i);
            goto done;
        }
    }
    if (mha_run(cx->rt, model, ins, n_in, outs, n_out, &cx->run, &err) != MHA_OK) {
        append(why, why_n, "%s%s: %s", *why ? " | " : "", name, err.message);
        goto done;
    }
    for (size_t i = 0; i < files_out; i++) {
        mha_tensor_file *want = NULL;
        if (!cli_format(path, sizeof path, "%s/output_%zu.pb", dset, i)) {
            append(why, why_n, "%s%s: path too long", *why ? " | " : "", name);
            continue;
        }
        if (mha_tensor_file_read(path, NULL, &want, &err) != MHA_OK) {
            append(why, why_n, "%s%s: %s", *why ? " | " : "", name, err.message);
            continue;
        }
        const mha_tensor *w = mha_tensor_file_tensor(want);
        const char *r = check_compare(w, &outs[i], cx->tol, reason, sizeof reason);
        if (cx->run.precision != MHA_PRECISION_FLOAT32 && w->rank == outs[i].rank &&
            mha_tensor_numel(w) == mha_tensor_numel(&outs[i]))
            check_rel_stats(cx, w, &outs[i]);
        if (r)
            append(why, why_n, "%s%s: output_%zu.pb (%s): %s", *why ? " | " : "", name, i,
                   mha_tensor_file_name(want), r);
        mha_tensor_file_free(want);
    }
done:
    for (size_t i = 0; tin && i < n_in; i++)
        mha_tensor_file_free(tin[i]);
    for (size_t i = 0; narrowed && i < n_in; i++)
        free(narrowed[i]);
    free(narrowed);
    for (size_t i = 0; outs && i < n_out; i++)
        free(outs[i].data);
    free(tin);
    free(ins);
    free(outs);
}

/* A case's `tolerance` file, when it has one: lines "rtol R" / "atol A"
 * ('#' starts a comment), the floor its outputs are compared under (a
 * quantized model's expected outputs from another runtime: a value on a
 * rounding boundary may quantize one step apart). A number as a person
 * writes it (no hexadecimal, no leading space: cli_number_text), each key
 * once, lines of text (no NUL byte, at most 255 bytes). 0 when it is fine
 * (or absent); else 1 with the reason in why. */
static int check_case_tolerance(const char *dir, check_tol *tol, char *why, size_t why_n) {
    char path[4096], line[258];
    tol->case_rtol = tol->case_atol = 0.0;
    if (!cli_format(path, sizeof path, "%s/tolerance", dir) || !has_entry(path)) return 0;
    /* there, but no file to read: a link to nothing, a folder, a FIFO */
    struct stat sb;
    const int found = stat(path, &sb) == 0;
    if (!found || !S_ISREG(sb.st_mode)) {
        snprintf(why, why_n, "%.3000s: %s", path, found ? "not a regular file" : strerror(errno));
        return 1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, why_n, "%.3000s: %s", path, strerror(errno));
        return 1;
    }
    int n = 0, seen_rtol = 0, seen_atol = 0;
    const char *bad = NULL;
    while (!bad) {
        /* a line by hand: fgets would split a long one into two and stop
         * reading at a NUL byte in silence */
        size_t len = 0;
        int ch = EOF;
        while (len < sizeof line - 1 && (ch = getc(f)) != EOF && ch != '\n' && ch != '\0')
            line[len++] = (char)ch;
        line[len] = '\0';
        if (ch == EOF && len == 0) break;
        n++;
        if (ch == '\0') {
            bad = "holds a NUL byte";
            break;
        }
        if (len == sizeof line - 1) {
            bad = "is longer than 256 bytes";
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char key[16], num[64], extra;
        int got = sscanf(line, "%15s %63s %c", key, num, &extra);
        if (got <= 0) continue; /* blank or comment */
        int is_rtol = strcmp(key, "rtol") == 0, is_atol = strcmp(key, "atol") == 0;
        char *end = NULL;
        errno = 0;
        double v = got == 2 && cli_number_text(num) ? strtod(num, &end) : -1.0;
        if (got != 2 || (!is_rtol && !is_atol) || !end || *end || errno || !(v >= 0 && v < 1)) {
            bad = "is not 'rtol R' or 'atol A' (0 <= value < 1)";
        } else if ((is_rtol && seen_rtol) || (is_atol && seen_atol)) {
            bad = is_rtol ? "gives 'rtol' a second time" : "gives 'atol' a second time";
        } else if (is_rtol) {
            tol->case_rtol = v;
            seen_rtol = n;
        } else {
            tol->case_atol = v;
            seen_atol = n;
        }
        if (ch == EOF) break;
    }
    fclose(f);
    if (bad) snprintf(why, why_n, "%.3000s: line %d %s", path, n, bad);
    return bad != NULL;
}

static void check_case(check_ctx *cx, const char *dir, const char *label) {
    char why[4096] = "", path[4096];
    mha_model *model = NULL;
    mha_error err;
    mha_error_clear(&err);
    name_list sets = {0};
    if (!cli_format(path, sizeof path, "%s/model.onnx", dir)) {
        snprintf(why, sizeof why, "path too long");
    } else if (check_case_tolerance(dir, &cx->tol, why, sizeof why)) {
        /* why says what is wrong with the file */
    } else if (mha_model_load_file(path, NULL, &model, &err) != MHA_OK) {
        snprintf(why, sizeof why, "%s", err.message);
    } else if (!list_subdirs(dir, "test_data_set_", &sets)) {
        snprintf(why, sizeof why, "%s: cannot list the folder", dir);
    } else if (sets.n == 0) {
        snprintf(why, sizeof why, "no test_data_set_* folder");
    } else {
        for (size_t k = 0; k < sets.n; k++) {
            if (!cli_format(path, sizeof path, "%s/%s", dir, sets.v[k])) continue;
            check_dataset(cx, model, path, why, sizeof why);
        }
    }
    char safe_label[1024], safe_why[2048];
    cli_escape(label, safe_label, sizeof safe_label);
    if (*why) {
        cx->failed++;
        printf("FAIL %s: %s\n", safe_label, cli_escape(why, safe_why, sizeof safe_why));
    } else {
        cx->passed++;
        if (cx->list) printf("ok   %s\n", safe_label);
    }
    fflush(stdout);
    name_list_free(&sets);
    mha_model_free(model);
}

/* A case folder, or a folder of case folders: its cases are run, or with
 * cx NULL only counted. Returns the number of cases; 0 (a bad argument,
 * not a failing case) has printed its one line on stderr. */
static size_t check_path(check_ctx *cx, const char *arg) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.onnx", arg);
    if (has_entry(p)) { /* not a regular file: the case fails, saying so */
        const char *label = strrchr(arg, '/');
        label = label && label[1] ? label + 1 : arg;
        if (cx) check_case(cx, arg, label);
        return 1;
    }
    struct stat sb;
    int st = stat(arg, &sb);
    if (st != 0 || !S_ISDIR(sb.st_mode)) {
        cli_fail("%s: %s", arg, st != 0 ? strerror(errno) : "not a case folder");
        return 0;
    }
    name_list subs = {0};
    list_subdirs(arg, "", &subs);
    size_t found = 0;
    for (size_t i = 0; i < subs.n; i++) {
        snprintf(p, sizeof p, "%s/%s/model.onnx", arg, subs.v[i]);
        if (!has_entry(p)) continue;
        snprintf(p, sizeof p, "%s/%s", arg, subs.v[i]);
        if (cx) check_case(cx, p, subs.v[i]);
        found++;
    }
    if (!found) cli_fail("%s: no model.onnx and no case folders", arg);
    name_list_free(&subs);
    return found;
}

int cli_cmd_check(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "check";
    check_ctx cx = {0};
    cx.tol.rtol = cx.tol.atol = -1.0;
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    size_t n_dirs = 0;
    int rc = CLI_OK;
    if (!dirs) return cli_fail("out of memory");
    cli_parser p;
    if (cli_parse_begin(&p, &check_spec, &c, argc, argv) != 0) {
        free(dirs);
        return cli_fail("too many options");
    }
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        double *tol = id == CHECK_RTOL ? &cx.tol.rtol : id == CHECK_ATOL ? &cx.tol.atol : NULL;
        if (id == CLI_PARSE_EXIT) {
            free(dirs);
            return p.status;
        } else if (id == CLI_PARSE_ARG) {
            dirs[n_dirs++] = p.value;
        } else if (id == CHECK_LIST) {
            cx.list = 1;
        } else if (tol) {
            char *end;
            *tol = strtod(p.value, &end);
            if (!cli_number_text(p.value) || end == p.value || *end || !(*tol >= 0)) {
                cli_usage_error(&c, "--%s wants a number >= 0, not '%s'", p.name, p.value);
                goto usage;
            }
        }
    }
    if (n_dirs == 0) {
        cli_usage_error(&c, "no case folder given");
        goto usage;
    }
    /* every argument names cases before any runs: a bad one is an error
     * (one line, nothing on stdout), not a failing case */
    for (size_t k = 0; k < n_dirs; k++)
        if (check_path(NULL, dirs[k]) == 0) {
            free(dirs);
            return CLI_FAIL;
        }
    cx.run = cli_run_options(&c);
    if (c.precision == MHA_PRECISION_BFLOAT16) cx.tol.of_max = CHECK_BF16_OF_MAX;
    if ((rc = cli_runtime_create(&c, &cx.rt)) != CLI_OK) {
        free(dirs);
        return rc;
    }
    for (size_t k = 0; k < n_dirs; k++)
        check_path(&cx, dirs[k]);
    printf("%d passed, %d failed\n", cx.passed, cx.failed);
    if (c.precision == MHA_PRECISION_BFLOAT16)
        printf("bfloat16 against the expected float32 outputs: max relative error %.3g, mean "
               "%.3g (relative to each output's max |want|; bound %.3g)\n",
               cx.max_rel, cx.rel_n ? cx.rel_sum / (double)cx.rel_n : 0.0, CHECK_BF16_OF_MAX);
    mha_runtime_destroy(cx.rt);
    free(dirs);
    return cx.failed == 0 && cx.passed > 0 ? CLI_OK : CLI_FAIL;
usage:
    free(dirs);
    return CLI_USAGE;
}
