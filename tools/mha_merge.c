/* mha_merge.c -- `mha merge OUT SHARD...`: checks that the shard files of a
 * split run (each a .npy whose header note names its rows, written by
 * `mha run --shard I/N`) come from one run (their run notes: model,
 * precision, dataset, lengths, output, shard count), agree in dtype and
 * row shape, cover every row of the dataset exactly once, and writes their rows in order into OUT
 * (one plain .npy, atomically): byte for byte what an unsplit run writes. */
#define _GNU_SOURCE
#include "mha_merge.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "mha/npy.h"

enum { MERGE_OUTPUT = 1, MERGE_QUIET };

static const cli_opt merge_opts[] = {
    {MERGE_OUTPUT, "output", 'o', "OUT.npy", "the merged file (without -o: the first file named)"},
    {MERGE_QUIET, "quiet", 'q', NULL, "no summary on stderr"},
    {0},
};

/* No runtime options: merge runs no model. */
static const cli_spec merge_spec = {
    "Usage: mha merge -o OUT.npy SHARD.npy...    (or: mha merge OUT.npy SHARD.npy...)\n"
    "\n"
    "Joins the shard files of a split run ('mha run --shard I/N', or a SLURM job\n"
    "array) into OUT.npy. Every shard's header names the rows it holds; the shards\n"
    "must have the same dtype and row shape and cover every row exactly once (any\n"
    "order on the command line; a sequence-first model's shards hold theirs along\n"
    "axis 1, and OUT too). OUT appears only when it is complete: SIGINT or\n"
    "SIGTERM remove the temporary file, and one left by kill -9 is removed by the\n"
    "next merge into the same OUT.\n",
    merge_opts,
    0,
    NULL,
};

/* Bytes copied per read/write while merging. */
#define MERGE_COPY_BYTES ((size_t)16 << 20)

typedef struct merge_shard {
    const char *path;
    mha_npy_reader *reader;
    mha_npy_header h;
    const char *run;    /* its run note, "" when written without one */
    int axis;           /* its rows along axis 0, or 1 (a sequence-first model's) */
    int sealed;         /* its note holds the hash of its rows (rows_hash) */
    uint64_t rows_hash; /* (MERGE_ROWS_HASH) */
} merge_shard;

/* Bytes of one row of a shard (along axis 1: its dims[0] runs). */
static size_t merge_row_bytes(const mha_npy_header *h, int axis) {
    return axis ? (h->dims[1] ? h->data_bytes / (size_t)h->dims[1] : 0) : h->row_bytes;
}

/* Rows [r, r + m) of a shard into buf, as they lie in the file's data:
 * [m, ...], or along axis 1 [dims[0], m, ...]. */
static mha_status merge_read(mha_npy_reader *r, int axis, int64_t r0, int64_t m, void *buf,
                             size_t cap, mha_error *err) {
    return axis ? mha_npy_reader_read_rows_axis1(r, r0, r0 + m, MHA_DTYPE_UNDEFINED, buf, cap, err)
                : mha_npy_reader_read_rows(r, r0, r0 + m, MHA_DTYPE_UNDEFINED, buf, cap, err);
}

/* A shard's hash of its rows, as its note says (MERGE_ROWS_HASH); 0 when
 * it has none, -1 when the field is not 16 hex digits. */
static int merge_note_hash(const char *run, uint64_t *hash) {
    const char *at = strstr(run, MERGE_ROWS_HASH);
    if (!at) return 0;
    at += strlen(MERGE_ROWS_HASH);
    if (strlen(at) != 16 || strspn(at, "0123456789abcdef") != 16) return -1;
    *hash = strtoull(at, NULL, 16);
    return 1;
}

/* Every row of shard file r (rows along axis) hashed as merge reads them. */
static int merge_hash_file(mha_npy_reader *r, const char *path, uint64_t *hash) {
    const mha_npy_header *h = mha_npy_reader_header(r);
    const int axis = mha_npy_reader_shard_axis(r);
    const size_t rb = merge_row_bytes(h, axis);
    const int64_t rows = h->rank > axis ? h->dims[axis] : 0;
    int64_t per = rb ? (int64_t)(MERGE_COPY_BYTES / rb) : 1;
    if (per < 1) per = 1;
    void *buf = malloc(rb ? (size_t)per * rb : 1);
    if (!buf) return cli_fail("%s: out of memory for a row of %zu bytes", path, rb);
    mha_error err;
    mha_error_clear(&err);
    uint64_t hv = CLI_HASH_SEED;
    for (int64_t r0 = 0; r0 < rows && rb; r0 += per) {
        const int64_t m = rows - r0 < per ? rows - r0 : per;
        if (merge_read(r, axis, r0, m, buf, (size_t)per * rb, &err) != MHA_OK) {
            free(buf);
            return cli_fail_err(path, &err);
        }
        hv = cli_hash_rows(hv, buf, m, axis ? h->dims[0] : 1, rb);
    }
    free(buf);
    *hash = hv;
    return CLI_OK;
}

int merge_shard_seal(const char *path, const uint64_t *rows_hash) {
    mha_npy_reader *r = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (mha_npy_reader_open(path, MHA_MMAP_NEVER, NULL, &r, &err) != MHA_OK)
        return cli_fail_err(path, &err);
    const mha_npy_header h = *mha_npy_reader_header(r);
    const int axis = mha_npy_reader_shard_axis(r);
    char run[MHA_NPY_SHARD_RUN_MAX];
    snprintf(run, sizeof run, "%s", mha_npy_reader_shard_run(r));
    char *at = strstr(run, MERGE_ROWS_HASH MERGE_ROWS_UNSEALED);
    uint64_t hash = 0;
    /* (a note too long for the field has none: merged unchecked, as an
     * earlier mha's shards are) */
    if (rows_hash) hash = *rows_hash;
    int rc = at && h.is_shard && !rows_hash ? merge_hash_file(r, path, &hash) : CLI_OK;
    mha_npy_reader_close(r);
    if (rc != CLI_OK || !at || !h.is_shard) return rc;
    snprintf(at + strlen(MERGE_ROWS_HASH), 17, "%016llx", (unsigned long long)hash);
    mha_npy_shard sh;
    mha_npy_shard_init(&sh);
    sh.r0 = h.shard_r0;
    sh.total = h.shard_total;
    sh.run = run;
    unsigned char head[640 + MHA_NPY_SHARD_RUN_MAX];
    const size_t hn =
        axis ? mha_npy_format_header_axis1(h.dtype, h.rank, h.dims, &sh, head, sizeof head)
             : mha_npy_format_header_shard_run(h.dtype, h.rank, h.dims, &sh, head, sizeof head);
    if (hn == 0 || hn != h.header_bytes)
        return cli_fail("%s: the header with the hash of its rows is %zu bytes, not %zu", path, hn,
                        h.header_bytes);
    /* the same bytes but the 16 digits: the partial file's own header,
     * rewritten in place before the commit fsyncs and renames it */
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t put = fd >= 0 ? pwrite(fd, head, hn, 0) : -1;
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && put == (ssize_t)hn) {
        e = errno;
        put = -1;
    }
    if (put != (ssize_t)hn)
        return cli_fail("%s: writing the hash of its rows: %s", path,
                        put < 0 ? strerror(e) : "short write");
    return CLI_OK;
}

/* The value of field `key` of a run note ("key value; key value"), copied
 * into val; 0 when the note has no such field. */
static int merge_run_field(const char *run, const char *key, char *val, size_t cap) {
    const size_t kn = strlen(key);
    for (const char *p = run; p && *p;) {
        const char *end = strstr(p, "; ");
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kn && strncmp(p, key, kn) == 0 && p[kn] == ' ') {
            snprintf(val, cap, "%.*s", (int)(len - kn - 1), p + kn + 1);
            return 1;
        }
        p = end ? end + 2 : NULL;
    }
    return 0;
}

/* Every shard comes from the run of the first: the same model, precision,
 * dataset, lengths, output and number of shards (its own shard index
 * aside), as their run notes say; a shard without a note beside one with
 * is refused too. Shards all written without notes (by an older mha)
 * merge as before. */
static int merge_check_runs(const merge_shard *sh, size_t n) {
    static const char *const keys[] = {"model", "precision", "data", "lengths", "output", "shard"};
    static const char *const what[] = {"model",   "precision", "dataset",
                                       "lengths", "output",    "number of shards"};
    for (size_t k = 1; k < n; k++) {
        const char *a = sh[0].run, *b = sh[k].run;
        if (!*a != !*b)
            return cli_fail("%s: a shard %s a run note, but %s %s: shards of different mha "
                            "versions or runs",
                            sh[k].path, *b ? "with" : "without", sh[0].path,
                            *a ? "has one" : "has none");
        for (size_t f = 0; *a && f < sizeof keys / sizeof keys[0]; f++) {
            char va[MHA_NPY_SHARD_RUN_MAX] = "", vb[MHA_NPY_SHARD_RUN_MAX] = "";
            const int ha = merge_run_field(a, keys[f], va, sizeof va),
                      hb = merge_run_field(b, keys[f], vb, sizeof vb);
            /* "shard K/N": the count must agree, the index differs */
            const char *ca = f == 5 && strchr(va, '/') ? strchr(va, '/') + 1 : va;
            const char *cb = f == 5 && strchr(vb, '/') ? strchr(vb, '/') + 1 : vb;
            if (ha != hb || strcmp(ca, cb) != 0)
                return cli_fail("%s: a shard of another run: its %s is %s, %s's is %s", sh[k].path,
                                what[f], hb ? cb : "not named", sh[0].path, ha ? ca : "not named");
        }
    }
    return CLI_OK;
}

static int merge_by_first_row(const void *a, const void *b) {
    const merge_shard *x = a, *y = b;
    return x->h.shard_r0 < y->h.shard_r0 ? -1 : x->h.shard_r0 > y->h.shard_r0;
}

/* Every shard is one, of the first's run (merge_check_runs), agrees with
 * the first on dtype, rank, row shape and total; sorted by first row, they
 * tile [0, total). */
static int merge_check(merge_shard *sh, size_t n) {
    char a[160], b[160];
    for (size_t k = 0; k < n; k++)
        if (!sh[k].h.is_shard)
            return cli_fail("%s: not a shard file (its header names no rows; write shards "
                            "with 'mha run --shard I/N')",
                            sh[k].path);
    int rc = merge_check_runs(sh, n);
    if (rc != CLI_OK) return rc;
    for (size_t k = 0; k < n; k++) {
        const mha_npy_header *h = &sh[k].h, *h0 = &sh[0].h;
        if (sh[k].axis != sh[0].axis)
            return cli_fail("%s: a shard of rows along axis %d, but %s has them along axis %d",
                            sh[k].path, sh[k].axis, sh[0].path, sh[0].axis);
        int same = h->dtype == h0->dtype && h->rank == h0->rank;
        for (int d = 0; same && d < h->rank; d++)
            same = d == sh[0].axis || h->dims[d] == h0->dims[d];
        if (!same)
            return cli_fail("%s: %s rows of [%s] do not match %s: %s rows of [%s]", sh[k].path,
                            mha_dtype_name(h->dtype), cli_shape_str(h->rank, h->dims, a, sizeof a),
                            sh[0].path, mha_dtype_name(h0->dtype),
                            cli_shape_str(h0->rank, h0->dims, b, sizeof b));
        if (h->shard_total != h0->shard_total)
            return cli_fail("%s: a shard of %lld rows, but %s is a shard of %lld rows", sh[k].path,
                            (long long)h->shard_total, sh[0].path, (long long)h0->shard_total);
    }
    qsort(sh, n, sizeof *sh, merge_by_first_row);
    int64_t next = 0;
    for (size_t k = 0; k < n; k++) {
        const mha_npy_header *h = &sh[k].h;
        if (h->shard_r0 < next)
            return cli_fail("%s holds rows %lld:%lld, overlapping %s (rows %lld:%lld)", sh[k].path,
                            (long long)h->shard_r0, (long long)h->shard_r1, sh[k - 1].path,
                            (long long)sh[k - 1].h.shard_r0, (long long)sh[k - 1].h.shard_r1);
        /* a gap: named by the shards around it */
        if (h->shard_r0 > next && k == 0)
            return cli_fail("%s: rows 0:%lld of %lld are in no shard given: the first shard "
                            "starts at row %lld (missing shard?)",
                            sh[k].path, (long long)h->shard_r0, (long long)h->shard_total,
                            (long long)h->shard_r0);
        if (h->shard_r0 > next)
            return cli_fail("%s: rows %lld:%lld of %lld are in no shard given: %s ends at row "
                            "%lld, %s starts at row %lld (missing shard?)",
                            sh[k].path, (long long)next, (long long)h->shard_r0,
                            (long long)h->shard_total, sh[k - 1].path, (long long)next, sh[k].path,
                            (long long)h->shard_r0);
        next = h->shard_r1;
    }
    if (next != sh[0].h.shard_total)
        return cli_fail("%s: rows %lld:%lld of %lld are in no shard given: the last shard ends "
                        "at row %lld (missing shard?)",
                        sh[n - 1].path, (long long)next, (long long)sh[0].h.shard_total,
                        (long long)sh[0].h.shard_total, (long long)next);
    return CLI_OK;
}

int mha_cmd_merge(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "merge";
    const char *out_path = NULL;
    merge_shard *sh = calloc((size_t)argc, sizeof *sh);
    size_t n = 0;
    int quiet = 0, rc = CLI_OK, catching = 0;
    cli_outputs claimed = {0};
    cli_signals sigs;
    void *buf = NULL;
    mha_npy_writer *w = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (!sh) return cli_fail("out of memory");
    cli_parser p;
    if (cli_parse_begin(&p, &merge_spec, &c, argc, argv) != 0) {
        rc = cli_fail("too many options");
        goto done;
    }
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        if (id == CLI_PARSE_EXIT) {
            rc = p.status;
            goto done;
        } else if (id == CLI_PARSE_ARG) {
            sh[n++].path = p.value;
        } else if (id == MERGE_QUIET) {
            quiet = 1;
        } else if (id == MERGE_OUTPUT) {
            if (out_path) {
                rc = cli_usage_error(&c, "-o is given twice");
                goto done;
            }
            out_path = p.value;
        }
    }
    /* without -o, the first file named is the output (mha merge OUT SHARD...) */
    if (!out_path && n > 0) {
        out_path = sh[0].path;
        memmove(sh, sh + 1, --n * sizeof *sh);
    }
    if (!out_path || n == 0) {
        rc = cli_usage_error(&c, "give the output file and at least one shard");
        goto done;
    }
    if (mha_file_format_of(out_path) != MHA_FILE_NPY) {
        rc = cli_usage_error(&c, "output '%s': expected a .npy file", out_path);
        goto done;
    }
    /* the output checked and locked first; what a merge killed with -9
     * left of it is removed (the lock says no other merge is writing it) */
    if ((rc = cli_outputs_claim(&c, &out_path, 1, 1, &claimed)) != CLI_OK) goto done;
    const char **shard_paths = calloc(n, sizeof *shard_paths);
    if (!shard_paths) {
        rc = cli_fail("out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++)
        shard_paths[k] = sh[k].path;
    rc = cli_outputs_spare_inputs(&c, &out_path, 1, shard_paths, n, "shard");
    free(shard_paths);
    if (rc != CLI_OK) goto done;
    mha_output_clean_stale(out_path);
    double t0 = cli_now();
    for (size_t k = 0; k < n; k++)
        if (mha_npy_reader_open(sh[k].path, MHA_MMAP_NEVER, NULL, &sh[k].reader, &err) != MHA_OK) {
            rc = cli_fail_err(sh[k].path, &err);
            goto done;
        } else {
            sh[k].h = *mha_npy_reader_header(sh[k].reader);
            sh[k].run = mha_npy_reader_shard_run(sh[k].reader);
            sh[k].axis = mha_npy_reader_shard_axis(sh[k].reader);
            sh[k].sealed = merge_note_hash(sh[k].run, &sh[k].rows_hash);
            if (sh[k].sealed < 0) {
                rc = cli_fail("%s: malformed shard header (its 'rows-hash' is not 16 hex digits)",
                              sh[k].path);
                goto done;
            }
            if (sh[k].sealed && strcmp(strstr(sh[k].run, MERGE_ROWS_HASH) + strlen(MERGE_ROWS_HASH),
                                       MERGE_ROWS_UNSEALED) == 0) {
                rc = cli_fail("%s: the partial file of a shard run that did not finish (its "
                              "header holds no hash of its rows yet)",
                              sh[k].path);
                goto done;
            }
        }
    if ((rc = merge_check(sh, n)) != CLI_OK) goto done;

    /* the full file: the shards' rows in order under a plain header */
    const mha_npy_header *h0 = &sh[0].h;
    const int axis = sh[0].axis; /* 1: [S, rows, ...], each shard's in place */
    int64_t dims[MHA_MAX_RANK];
    memcpy(dims, h0->dims, sizeof dims);
    dims[axis] = h0->shard_total;
    /* SIGINT / SIGTERM stop between two copies: the temporary is removed.
     * Caught before the temporary exists: a signal between its creation
     * and the catch would end the process and leave it behind. */
    cli_signals_catch(&sigs);
    catching = 1;
    if ((axis ? mha_npy_writer_begin_axis1(out_path, NULL, h0->dtype, h0->rank, dims, NULL, 0, NULL,
                                           &w, &err)
              : mha_npy_writer_begin(out_path, h0->dtype, h0->rank, dims, NULL, &w, &err)) !=
        MHA_OK) {
        rc = cli_fail_err(out_path, &err);
        goto done;
    }
    /* one row: along axis 1, its dims[0] runs */
    const size_t row_bytes = merge_row_bytes(h0, axis);
    int64_t per = row_bytes ? (int64_t)(MERGE_COPY_BYTES / row_bytes) : 1;
    if (per < 1) per = 1;
    size_t buf_bytes = (size_t)per * row_bytes;
    buf = malloc(buf_bytes ? buf_bytes : 1);
    if (!buf) {
        rc = cli_fail("out of memory for a %zu-byte copy buffer", buf_bytes);
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        const int64_t rows = sh[k].h.dims[axis];
        uint64_t hash = CLI_HASH_SEED;
        for (int64_t r = 0; r < rows; r += per) {
            int64_t m = rows - r < per ? rows - r : per;
            if ((rc = cli_signal_stop(out_path)) != CLI_OK) goto done;
            if (merge_read(sh[k].reader, axis, r, m, buf, buf_bytes, &err) != MHA_OK) {
                rc = cli_fail_err(sh[k].path, &err);
                goto done;
            }
            if (sh[k].sealed) hash = cli_hash_rows(hash, buf, m, axis ? h0->dims[0] : 1, row_bytes);
            if (mha_npy_writer_write_rows(w, buf, m, &err) != MHA_OK) {
                rc = cli_fail_err(out_path, &err);
                goto done;
            }
        }
        /* (the output, a temporary until the commit, is removed) */
        if (sh[k].sealed && hash != sh[k].rows_hash) {
            rc = cli_fail("%s: rows %lld:%lld are not the rows its run wrote (they hash to "
                          "%016llx, its header says %016llx): the file changed after it was "
                          "written",
                          sh[k].path, (long long)sh[k].h.shard_r0, (long long)sh[k].h.shard_r1,
                          (unsigned long long)hash, (unsigned long long)sh[k].rows_hash);
            goto done;
        }
    }
    mha_npy_writer *done_w = w;
    w = NULL;
    if (mha_npy_writer_commit(done_w, &err) != MHA_OK) {
        rc = cli_fail_err(out_path, &err);
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "mha merge: %lld rows from %zu shard%s into %s in %.3f s\n",
                (long long)h0->shard_total, n, n == 1 ? "" : "s", out_path, cli_now() - t0);

done:
    mha_npy_writer_abort(w);
    if (catching) rc = cli_signals_end(&sigs, rc);
    cli_outputs_release(&claimed);
    for (size_t k = 0; k < n; k++)
        mha_npy_reader_close(sh[k].reader);
    free(sh);
    free(buf);
    return rc;
}
