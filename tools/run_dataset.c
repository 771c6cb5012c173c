/* run_dataset.c -- `mha run` at dataset scale (see run_dataset.h).
 *
 * Rows are the batch axis: axis 0 of every batch-first input. Inputs whose
 * axis 0 is the batch (query, key/value, Q/K/V, past key/value, a [B, Skv]
 * key-padding mask, a [B, H, Sq, Skv] mask, [B] lengths) are cut into
 * chunks of --batch-size rows together; the rest is passed whole. Per
 * chunk [r, r+n):
 *
 *   prefetch rows [r+n, r+2n) of every mapped input (madvise WILLNEED)
 *   inputs  = mapped rows (zero-copy) or rows converted into a buffer
 *   mha_run(inputs -> outputs [n, ...]), kv_lengths = lengths[r..r+n)
 *   zero the query rows past each length; count rows with NaN/Inf
 *   append outputs to their partial files (OUT.partial.XXXXXX, made
 *   exclusively); drop the input rows (DONTNEED)
 *   every --checkpoint-every seconds: fsync the partials, then write
 *   OUT.ckpt (atomically) with the rows done, the bytes and partial file of
 *   each output and the hash of the input rows done
 *
 * The engine computes a row the same whatever else is in its batch (GEMM
 * rows do not depend on how M is split, attention units are per batch
 * item), so any chunk size gives the bits of a one-shot run; a resumed run
 * appends exactly what the uninterrupted one would have written.
 *
 * A checkpoint is written only after the data it counts is fsynced, so
 * after kill -9 the partial file holds at least what the checkpoint says;
 * --resume checks that the rows already scored hash as recorded (a dataset
 * replaced by another of the same size and time is refused), truncates the
 * partial file to that length and continues. SIGINT / SIGTERM / SIGHUP stop after
 * the current chunk with a fresh checkpoint and exit 128 + N. A last
 * checkpoint saying every row is done precedes the renames, so a stale one
 * after a finished run resumes to "already complete". Outputs written
 * directly (standard output, a FIFO, a device) keep no checkpoint. */
#define _GNU_SOURCE
#include "run_dataset.h"
#include "mha_merge.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mha/npy.h"
#include "mha/tensor_file.h"

#ifdef MHA_WITH_MPI
#include <mpi.h>
#endif

int ds_have_mpi(void) {
#ifdef MHA_WITH_MPI
    return 1;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct ds_input {
    const char *file;       /* NULL: generated from --lengths */
    mha_npy_reader *reader; /* .npy file */
    mha_npy_header h;
    int batch_major;         /* axis 0 is the batch: read by chunks */
    int zero_copy;           /* mapped and stored as the model wants it */
    mha_dtype dtype;         /* the model's dtype for it (what the reader gives) */
    size_t row_bytes;        /* one row in the model's dtype */
    void *buf;               /* chunk rows (batch-major) or the whole tensor */
    int64_t *wide;           /* int64 / uint32 ids for an int32 input: read as int64 */
    size_t wide_bytes;       /* here, then narrowed into buf, every value checked */
    uint64_t rows_hash;      /* of the rows read so far (batch-major files) */
    uint64_t ckpt_rows_hash; /* what the checkpoint recorded for them */
} ds_input;

typedef struct ds_output {
    const char *file;     /* NULL: computed but not written */
    char *resume_partial; /* the partial file a checkpoint names */
    int stream;           /* written directly ("-", FIFO, device): no partial */
    mha_npy_writer *writer;
    mha_tensor chunk;           /* dtype, rank and shape of one full chunk */
    int64_t dims[MHA_MAX_RANK]; /* of the file */
    size_t row_bytes;
    void *buf;
    uint64_t bytes_done; /* at the last checkpoint */
    /* the rows written, hashed one at a time (outputs by rows, not items
     * of axis 1): a checkpoint records it, a resume checks the partial
     * file's rows against it -- a byte of them changed since is refused,
     * not finished into a file of two runs */
    uint64_t rows_hash, ckpt_rows_hash;
    int has_ckpt_hash; /* the checkpoint has an 'out-hash' line for it */
} ds_output;

typedef struct ds_state {
    const ds_options *o;
    int precision; /* MHA_PRECISION_* of every chunk */
    mha_model *model;
    mha_model_info mi;
    int whole; /* a whole model (a plan): its inputs declare the batch axis */
    /* the batch axis: 0, or 1 for a sequence-first whole model (token ids
     * [S, B]): its inputs are read and its outputs written by items of
     * axis 1 (strided: [S, n, ...] a chunk) */
    int axis;
    /* rows per chunk: --batch-size, or 1 for a whole model exported with
     * its batch fixed at 1 (a dataset of more rows goes one row a run) */
    int64_t batch_rows;
    int batch_fixed_one;
    mha_runtime *rt;
    size_t n_in, n_out;
    mha_io_info *in_info, *out_info;
    ds_input *in;
    ds_output *out;
    mha_tensor *ins, *outs;
    int64_t B;        /* rows of the dataset */
    int64_t lo, hi;   /* this run's rows */
    int64_t done;     /* rows of [lo, hi) written */
    int64_t *lengths; /* [B] or NULL */
    /* [B] or NULL: the key lengths mha_run gets, the lengths but for a
     * whole model's rows of length 0, which keep their S keys: the mask of
     * zeros made for them decides, as given as a file (0 keys would make
     * the fused layers' rows 0 and a pooler's output of the row another) */
    int64_t *kv_lengths;
    size_t y_index; /* the MHA_ROLE_OUTPUT output */
    int sharded;
    char *ckpt_path;   /* FIRST_OUTPUT.ckpt, NULL without outputs */
    char *fingerprint; /* what must match for a resume */
    char
        shard_run[MHA_NPY_SHARD_RUN_MAX - 32]; /* a shard's run note, "; output I" added per file */
    long long nonfinite_rows;
    long long tokens_done; /* tokens of the rows run here (--lengths: their lengths) */
    int rank, size;        /* MPI; 0 and 1 otherwise */
    int have_ckpt;         /* a checkpoint on disk describes the partials */
    int keep_partials;     /* leave the partial files for a later --resume */
} ds_state;

static void *ds_calloc(size_t n, size_t size) {
    return calloc(n ? n : 1, size ? size : 1);
}

static char *ds_strcat2(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

static void ds_state_free(ds_state *s, int keep_partials) {
    for (size_t i = 0; s->in && i < s->n_in; i++) {
        mha_npy_reader_close(s->in[i].reader);
        free(s->in[i].buf);
        free(s->in[i].wide);
    }
    for (size_t i = 0; s->out && i < s->n_out; i++) {
        if (keep_partials)
            mha_npy_writer_detach(s->out[i].writer);
        else
            mha_npy_writer_abort(s->out[i].writer);
        free(s->out[i].resume_partial);
        free(s->out[i].buf);
    }
    free(s->in);
    free(s->out);
    free(s->ins);
    free(s->outs);
    free(s->in_info);
    free(s->out_info);
    free(s->lengths);
    free(s->kv_lengths);
    free(s->ckpt_path);
    free(s->fingerprint);
    mha_runtime_destroy(s->rt);
    mha_model_free(s->model);
}

/* ------------------------------------------------------------------------ */
/* Inputs                                                                    */
/* ------------------------------------------------------------------------ */

static int ds_role_is_sequence(mha_io_role r) {
    return r == MHA_ROLE_QUERY || r == MHA_ROLE_KEY_VALUE || r == MHA_ROLE_VALUE_INPUT ||
           r == MHA_ROLE_Q || r == MHA_ROLE_K || r == MHA_ROLE_V || r == MHA_ROLE_PAST_KEY ||
           r == MHA_ROLE_PAST_VALUE;
}

/* Whether axis 0 of input i (shape h, declared as info) is the batch of B
 * rows. A whole model (a plan) declares its batch axis: every input of the
 * file's rank whose axis 0 is dynamic (token ids, 0/1 masks [B, S], token
 * types, images [B, C, H, W]) goes by rows. */
static int ds_is_batch_major(const mha_io_info *info, const mha_npy_header *h, int64_t B, int whole,
                             int fixed_one, int axis) {
    if (h->rank <= axis || h->dims[axis] != B) return 0;
    if (whole)
        return info->rank == h->rank &&
               (info->shape[axis] < 0 || (fixed_one && info->shape[axis] == 1));
    switch (info->role) {
    case MHA_ROLE_KEY_PADDING_MASK:
        return h->rank == 2;
    case MHA_ROLE_NONPAD_KV_SEQLEN:
        return h->rank == 1;
    case MHA_ROLE_ATTN_MASK:
        return h->rank == 4;
    case MHA_ROLE_POSITION_IDS: /* [B, S] (a [1, S] row serves every batch) */
        return h->rank == 2;
    case MHA_ROLE_ROTARY_COS: /* [B, S, d] or [B, 1, S, d] */
    case MHA_ROLE_ROTARY_SIN:
        return h->rank == 3 || h->rank == 4;
    default:
        return ds_role_is_sequence(info->role);
    }
}

/* "query, memory" into buf. */
static const char *ds_input_names(const mha_io_info *info, size_t n_in, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n_in && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", info[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

/* An input --lengths can stand in for: a bool [B, Skv] key-padding mask or
 * [B] lengths. */
static int ds_generated_from_lengths(const mha_io_info *info, int whole) {
    if (whole) /* a whole model's 0/1 attention mask [B, S]: 1 = a token */
        return info->role == MHA_ROLE_ATTN_MASK && info->rank == 2;
    return (info->role == MHA_ROLE_KEY_PADDING_MASK && info->dtype == MHA_DTYPE_BOOL &&
            info->rank == 2) ||
           (info->role == MHA_ROLE_NONPAD_KV_SEQLEN && info->rank == 1 &&
            (info->dtype == MHA_DTYPE_INT64 || info->dtype == MHA_DTYPE_INT32));
}

/* Binds the INPUT arguments to model inputs: NAME=FILE by name, the rest in
 * order into the slots still free. With --lengths, a key-padding mask or
 * lengths input left without a file is made from the lengths (a whole
 * model's, `whole`: its [B, S] attention mask). */
int ds_bind_inputs(const cli_common *c, const mha_io_info *info, size_t n_in,
                   const char *const *args, size_t n_args, const char **in_file, int lengths_given,
                   int whole) {
    char names[512];
    for (size_t k = 0; k < n_args; k++) {
        const char *a = args[k];
        const char *eq = strchr(a, '=');
        size_t slot = n_in;
        const char *file = a;
        if (eq) {
            for (size_t i = 0; i < n_in; i++) {
                const char *nm = info[i].name;
                if (strlen(nm) == (size_t)(eq - a) && strncmp(nm, a, (size_t)(eq - a)) == 0) {
                    slot = i;
                    file = eq + 1;
                    break;
                }
            }
            if (slot < n_in && in_file[slot])
                return cli_usage_error(c, "input '%s' is given twice", info[slot].name);
            /* NAME=FILE naming no input: a file of that whole name is still
             * taken in order; otherwise the name is the mistake, not a
             * missing file "NAME=FILE" */
            struct stat sb;
            if (slot == n_in && stat(a, &sb) != 0)
                return cli_usage_error(c, "%s: the model has no input '%.*s'; it takes: %s", a,
                                       (int)(eq - a), a,
                                       ds_input_names(info, n_in, names, sizeof names));
        }
        if (slot == n_in) {
            for (size_t i = 0; i < n_in && slot == n_in; i++)
                if (!in_file[i] && !(lengths_given && ds_generated_from_lengths(&info[i], whole)))
                    slot = i;
            if (slot == n_in)
                return cli_usage_error(
                    c, "the model takes %zu input%s (%s) but %zu files were given%s", n_in,
                    n_in == 1 ? "" : "s", ds_input_names(info, n_in, names, sizeof names), n_args,
                    lengths_given ? ", beside --lengths, which makes the mask" : "");
        }
        in_file[slot] = file;
    }
    int made = 0; /* inputs --lengths makes */
    for (size_t i = 0; i < n_in; i++) {
        if (!in_file[i] && !(lengths_given && ds_generated_from_lengths(&info[i], whole)))
            return cli_usage_error(c, "input '%s' (%s) has no file; the model takes: %s",
                                   info[i].name, mha_io_role_name(info[i].role),
                                   ds_input_names(info, n_in, names, sizeof names));
        made += !in_file[i];
    }
    /* a whole model reads lengths only through the mask made of them: with
     * no such input they would be silently ignored */
    if (whole && lengths_given && !made)
        return cli_usage_error(c,
                               "--lengths: no input of the model is left to be made from them "
                               "(a [B, S] attention mask without a file); the model takes: %s",
                               ds_input_names(info, n_in, names, sizeof names));
    return CLI_OK;
}

/* Opens input i and checks it against what the model declares (rank and
 * feature width), so a wrong file is reported by its name. */
static int ds_open_input(ds_state *s, size_t i) {
    ds_input *in = &s->in[i];
    const mha_io_info *info = &s->in_info[i];
    mha_error err;
    mha_error_clear(&err);
    /* items of axis 1 are read by strided reads (a mapping would keep every
     * page of the file resident as the chunks pass over it) */
    if (mha_npy_reader_open(in->file, s->axis ? MHA_MMAP_NEVER : MHA_MMAP_AUTO, NULL, &in->reader,
                            &err) != MHA_OK)
        return cli_fail_err(in->file, &err);
    in->h = *mha_npy_reader_header(in->reader);
    /* a mapping cut short under the run: one line, not a silent SIGBUS */
    cli_bus_watch(mha_npy_reader_mapped_rows(in->reader, 0, in->h.rows), in->h.data_bytes,
                  in->file);
    /* int64 (or uint32) integers for an int32 input -- token ids saved by
     * numpy or torch as int64 for a model exported with int32 ids -- are
     * narrowed, each value checked as it is read (ds_read_rows) */
    const int narrow = cli_narrows_to_int32(in->h.dtype, info->dtype);
    if (!narrow && !mha_dtype_can_convert(in->h.dtype, info->dtype))
        return cli_fail("%s: %s data cannot be used as input '%s' (%s)", in->file,
                        mha_dtype_name(in->h.dtype), info->name, mha_dtype_name(info->dtype));
    in->dtype = narrow ? MHA_DTYPE_INT64 : info->dtype;
    return cli_check_input_shape(in->file, info, in->h.rank, in->h.dims,
                                 ds_role_is_sequence(info->role) && !s->whole);
}

/* A whole model's mask made from --lengths is [B, S] over the token ids'
 * tokens: refused when the model's mask covers other keys (its axis 1 not
 * the ids' axis 1 -- an encoder's tokens for a cross-attention, a cache's
 * past and new tokens), where a [B, S] mask would broadcast silently. */
static int ds_check_made_masks(const ds_state *s, size_t ids) {
    const int seq = mha_model_input_axis_symbol(s->model, ids, 1);
    for (size_t i = 0; i < s->n_in; i++) {
        if (s->in[i].file) continue;
        const int k = mha_model_input_axis_symbol(s->model, i, 1);
        const int64_t fixed = s->in_info[i].shape[1];
        const int same = s->in[ids].h.rank < 2 ? 0
                         : seq >= 0            ? k == seq
                                               : k < 0 && fixed == s->in[ids].h.dims[1];
        if (!same)
            return cli_fail("%s: --lengths: input '%s' masks keys other than the tokens of "
                            "input '%s' (an encoder's or a cache's): give it as a file",
                            s->o->model_path, s->in_info[i].name, s->in_info[ids].name);
    }
    return CLI_OK;
}

/* --lengths FILE.npy: one int32/int64 per row, each in [0, S]. */
static int ds_read_lengths(ds_state *s, int64_t S) {
    const char *path = s->o->lengths_path;
    mha_error err;
    mha_error_clear(&err);
    mha_tensor_file *tf = NULL;
    if (mha_tensor_file_read(path, NULL, &tf, &err) != MHA_OK) return cli_fail_err(path, &err);
    const mha_tensor *t = mha_tensor_file_tensor(tf);
    int rc = CLI_OK;
    if (t->dtype != MHA_DTYPE_INT64 && t->dtype != MHA_DTYPE_INT32) {
        rc = cli_fail("%s: lengths must be int64 or int32, not %s", path, mha_dtype_name(t->dtype));
    } else if (t->rank != 1 || t->shape[0] != s->B) {
        char have[160];
        cli_shape_str(t->rank, t->shape, have, sizeof have);
        rc = cli_fail("%s: shape %s: lengths must be one per row, shape [%lld]", path, have,
                      (long long)s->B);
    } else if (!(s->lengths = ds_calloc((size_t)s->B, sizeof *s->lengths))) {
        rc = cli_fail("%s: out of memory", path);
    } else {
        for (int64_t b = 0; b < s->B && rc == CLI_OK; b++) {
            int64_t v = t->dtype == MHA_DTYPE_INT64 ? ((const int64_t *)t->data)[b]
                                                    : ((const int32_t *)t->data)[b];
            if (v < 0 || v > S)
                rc = cli_fail("%s: row %lld has length %lld, outside [0, %lld]", path, (long long)b,
                              (long long)v, (long long)S);
            s->lengths[b] = v;
        }
    }
    mha_tensor_file_free(tf);
    if (rc == CLI_OK && !(s->kv_lengths = ds_calloc((size_t)s->B, sizeof *s->kv_lengths)))
        rc = cli_fail("%s: out of memory", path);
    for (int64_t b = 0; rc == CLI_OK && b < s->B; b++)
        s->kv_lengths[b] = s->whole && s->lengths[b] == 0 ? S : s->lengths[b];
    return rc;
}

/* 1 or 0 as one element of dtype at p (a generated mask). */
static void ds_put_one_or_zero(mha_dtype dtype, void *p, int one) {
    switch (dtype) {
    case MHA_DTYPE_INT64:
        *(int64_t *)p = one;
        break;
    case MHA_DTYPE_INT32:
        *(int32_t *)p = one;
        break;
    case MHA_DTYPE_FLOAT32:
        *(float *)p = (float)one;
        break;
    case MHA_DTYPE_FLOAT64:
        *(double *)p = one;
        break;
    default:
        *(uint8_t *)p = (uint8_t)one;
        break; /* bool, int8, uint8 */
    }
}

/* Rows [r0, r1) of input i into in->buf (dst_bytes, the model's dtype),
 * along axis 1 of the file when axis1 ([S, n, ...]). The reader converts,
 * but int64 ids for an int32 input are read as int64 and narrowed here: a
 * value past int32 is refused by its row, never wrapped into another id. */
static int ds_read_rows(ds_state *s, size_t i, int64_t r0, int64_t r1, int axis1,
                        size_t dst_bytes) {
    ds_input *in = &s->in[i];
    mha_error err;
    mha_error_clear(&err);
    const int narrow = in->dtype != s->in_info[i].dtype;
    void *dst = in->buf;
    size_t bytes = dst_bytes;
    if (narrow) { /* int64 [n elements] into wide, then int32 into buf */
        bytes = dst_bytes / sizeof(int32_t) * sizeof(int64_t);
        if (bytes > in->wide_bytes) {
            free(in->wide);
            in->wide_bytes = 0;
            if (!(in->wide = malloc(bytes ? bytes : 1)))
                return cli_fail("%s: out of memory for %zu bytes", in->file, bytes);
            in->wide_bytes = bytes;
        }
        dst = in->wide;
    }
    mha_status st =
        axis1 ? mha_npy_reader_read_rows_axis1(in->reader, r0, r1, in->dtype, dst, bytes, &err)
              : mha_npy_reader_read_rows(in->reader, r0, r1, in->dtype, dst, bytes, &err);
    if (st != MHA_OK) return cli_fail_err(in->file, &err);
    if (!narrow) return CLI_OK;
    const size_t n = dst_bytes / sizeof(int32_t), rows = (size_t)(r1 - r0);
    int64_t v = 0;
    const size_t e = cli_narrow_ids(in->wide, MHA_DTYPE_INT64, in->buf, n, &v);
    if (e == n) return CLI_OK;
    /* the dataset row of element e (rows > 0 here): of [rows, per] or
     * [S, rows, per] */
    const size_t per = axis1 ? n / rows / (size_t)in->h.dims[0] : n / rows;
    const int64_t row = r0 + (int64_t)(axis1 ? e / per % rows : e / per);
    return cli_fail("%s: row %lld holds %lld, past the int32 that input '%s' takes "
                    "(its int64 values are narrowed when they fit)",
                    in->file, (long long)row, (long long)v, s->in_info[i].name);
}

/* Points ins[i] at rows [r, r+n) of every input (whole inputs stay). */
static int ds_bind_chunk(ds_state *s, int64_t r, int64_t n, int64_t skv) {
    mha_error err;
    mha_error_clear(&err);
    for (size_t i = 0; i < s->n_in; i++) {
        ds_input *in = &s->in[i];
        mha_tensor *t = &s->ins[i];
        if (!in->file) { /* made from --lengths */
            const mha_io_info *info = &s->in_info[i];
            t->dtype = info->dtype;
            t->shape[0] = n;
            t->data = in->buf;
            if (info->role == MHA_ROLE_KEY_PADDING_MASK) {
                /* [n, Skv]; true = attend unless the model says otherwise */
                uint8_t *m = in->buf;
                uint8_t pad = s->mi.key_padding_true_means_ignore ? 1 : 0;
                for (int64_t b = 0; b < n; b++)
                    for (int64_t j = 0; j < skv; j++)
                        m[b * skv + j] = j < s->lengths[r + b] ? (uint8_t)!pad : pad;
            } else if (info->role == MHA_ROLE_ATTN_MASK) {
                /* a whole model's [n, S] mask: 1 for the first length tokens */
                size_t es = mha_dtype_size(info->dtype);
                for (int64_t b = 0; b < n; b++)
                    for (int64_t j = 0; j < skv; j++)
                        ds_put_one_or_zero(info->dtype,
                                           (char *)in->buf + (size_t)(b * skv + j) * es,
                                           j < s->lengths[r + b]);
            } else if (info->dtype == MHA_DTYPE_INT64) {
                memcpy(in->buf, s->lengths + r, (size_t)n * sizeof(int64_t));
            } else {
                for (int64_t b = 0; b < n; b++)
                    ((int32_t *)in->buf)[b] = (int32_t)s->lengths[r + b];
            }
            continue;
        }
        if (!in->batch_major) continue;
        t->shape[s->axis] = n;
        if (s->axis) { /* [S, n, ...] */
            int rc = ds_read_rows(s, i, r, r + n, 1, (size_t)n * in->row_bytes);
            if (rc != CLI_OK) return rc;
            t->data = in->buf;
            continue;
        }
        if (in->zero_copy) {
            t->data = (void *)mha_npy_reader_mapped_rows(in->reader, r, r + n);
            continue;
        }
        int rc = ds_read_rows(s, i, r, r + n, 0, (size_t)n * in->row_bytes);
        if (rc != CLI_OK) return rc;
        t->data = in->buf;
    }
    return CLI_OK;
}

static void ds_advise(ds_state *s, int64_t r0, int64_t r1, mha_npy_advice advice) {
    if (r1 > s->hi) r1 = s->hi;
    if (r0 >= r1) return;
    for (size_t i = 0; i < s->n_in; i++) /* (items of axis 1 are read, not mapped) */
        if (s->in[i].reader && s->in[i].batch_major && !s->axis)
            mha_npy_reader_advise(s->in[i].reader, r0, r1, advice);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/* The hash of a whole file, streamed (the model). */
static int ds_hash_file(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t h = CLI_HASH_SEED;
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        h = cli_hash_bytes(h, buf, got);
    int ok = !ferror(f);
    fclose(f);
    *out = h;
    return ok;
}

/* Every byte of an input file's data as stored, read in blocks of whole
 * rows (axis 0 of the file) of about 1 MiB: a dataset changed in any row
 * between two shard runs hashes apart. A shard reads the whole dataset
 * once for it, as it reads the whole model for the model's hash. */
static int ds_hash_input_data(ds_input *in, uint64_t *h) {
    const int64_t rows = in->h.rows;
    const size_t rb = in->h.row_bytes;
    if (rows <= 0 || rb == 0) return CLI_OK;
    const int64_t per = rb < ((size_t)1 << 20) ? (int64_t)(((size_t)1 << 20) / rb) : 1;
    void *buf = malloc((size_t)per * rb);
    if (!buf) return cli_fail("%s: out of memory for a row of %zu bytes", in->file, rb);
    mha_error err;
    mha_error_clear(&err);
    for (int64_t r = 0; r < rows; r += per) {
        const int64_t n = rows - r < per ? rows - r : per;
        if (mha_npy_reader_read_rows(in->reader, r, r + n, MHA_DTYPE_UNDEFINED, buf, (size_t)n * rb,
                                     &err) != MHA_OK) {
            free(buf);
            return cli_fail_err(in->file, &err);
        }
        *h = cli_hash_bytes(*h, buf, (size_t)n * rb);
    }
    free(buf);
    return CLI_OK;
}

/* The run a shard comes from, for `mha merge` to compare (the output index
 * is added per file): which shard of how many, the model (its bytes and
 * external data), the precision, the dataset (each input's name, dtype,
 * shape and file size and all its bytes) and the lengths.
 * Not the backend, threads or chunk size: shards run on other machines
 * merge into one run's rows (bitwise one run's on one backend). */
static int ds_make_shard_run(ds_state *s) {
    uint64_t model = 0, data = CLI_HASH_SEED, lengths = 0;
    if (!ds_hash_file(s->o->model_path, &model))
        return cli_fail("%s: cannot read the model again: %s", s->o->model_path, strerror(errno));
    const uint64_t ext = mha_model_external_data_id(s->model);
    if (ext) model = cli_hash_bytes(model, &ext, sizeof ext);
    for (size_t i = 0; i < s->n_in; i++) {
        ds_input *in = &s->in[i];
        char line[512];
        int n = snprintf(line, sizeof line, "%s %d", s->in_info[i].name, in->file ? 1 : 0);
        data = cli_hash_bytes(data, line, n > 0 ? (size_t)n : 0);
        if (!in->file) continue; /* made from the lengths */
        struct stat sb;
        if (stat(in->file, &sb) != 0) return cli_fail("%s: %s", in->file, strerror(errno));
        const int64_t size = (int64_t)sb.st_size, dt = in->h.dtype;
        data = cli_hash_bytes(data, &size, sizeof size);
        data = cli_hash_bytes(data, &dt, sizeof dt);
        data = cli_hash_bytes(data, in->h.dims, (size_t)in->h.rank * sizeof in->h.dims[0]);
        if (!in->batch_major) {
            data = cli_hash_bytes(data, in->buf, (size_t)in->h.rows * in->row_bytes);
            continue;
        }
        /* rows are the batch: every row, not only those of this shard (a
         * dataset of the same shape with a row changed, or shuffled) */
        int rc = ds_hash_input_data(in, &data);
        if (rc != CLI_OK) return rc;
    }
    if (s->lengths)
        lengths = cli_hash_bytes(CLI_HASH_SEED, s->lengths, (size_t)s->B * sizeof *s->lengths);
    char lens[24] = "none";
    if (s->lengths) snprintf(lens, sizeof lens, "%016llx", (unsigned long long)lengths);
    snprintf(s->shard_run, sizeof s->shard_run,
             "shard %d/%d; model %016llx; precision %s; data %016llx; lengths %s",
             s->o->shard_index, s->o->shard_count, (unsigned long long)model,
             s->precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32",
             (unsigned long long)data, lens);
    return CLI_OK;
}

/* Output i's shard: its rows and the run note naming the output, with
 * room for the hash of its rows (merge_shard_seal puts it there once every
 * row is written; not in a stream, whose header is gone by then). */
static void ds_output_shard(const ds_state *s, size_t i, mha_npy_shard *sh, char *run, size_t cap) {
    mha_npy_shard_init(sh);
    sh->r0 = s->lo;
    sh->total = s->B;
    const int n = snprintf(run, cap, "%s; output %zu%s", s->shard_run, i,
                           s->out[i].stream ? "" : MERGE_ROWS_HASH MERGE_ROWS_UNSEALED);
    sh->run = n > 0 && (size_t)n < cap ? run : NULL; /* (~160 bytes of the 240) */
}

/* Hashes rows [0, n) of input i as the model sees them (rows of row_bytes
 * at data), one row at a time so that any chunking gives the same value.
 * Along axis 1 (data [S, n, ...]) a row is S runs, hashed in order. */
static void ds_hash_rows(ds_input *in, const void *data, int64_t n, int axis) {
    in->rows_hash = cli_hash_rows(in->rows_hash, data, n, axis ? in->h.dims[0] : 1, in->row_bytes);
}

/* "PATH size N" of a file. The content decides whether a run may be
 * resumed (the hashes), so a touched or copied file with the same bytes
 * still resumes, and a different one with the same size and time (cp -p,
 * rsync -t) does not. */
static int ds_file_id(const char *path, char *buf, size_t n) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    return cli_format(buf, n, "%s size %lld", path, (long long)sb.st_size);
}

/* Everything that must be the same for a resumed run to append exactly
 * what this one would: model (its bytes), inputs (their sizes here; the
 * bytes of inputs read whole; the rows already scored are hashed per
 * checkpoint), lengths, backend (kernels differ in their last bits),
 * precision, row range, outputs. The chunk size and thread count do not change a bit of
 * the result, so they may differ. */
static int ds_make_fingerprint(ds_state *s) {
    size_t cap = 4096 + (s->n_in + s->n_out) * 4200;
    char *fp = malloc(cap), line[4200];
    if (!fp) return cli_fail("out of memory");
    size_t used = 0;
    uint64_t hash = 0;
#define DS_APPEND(...)                                                                             \
    do {                                                                                           \
        int w_ = snprintf(fp + used, cap - used, __VA_ARGS__);                                     \
        if (w_ < 0 || (size_t)w_ >= cap - used) {                                                  \
            free(fp);                                                                              \
            return cli_fail("%s: checkpoint text too long", s->ckpt_path);                         \
        }                                                                                          \
        used += (size_t)w_;                                                                        \
    } while (0)
    if (!ds_file_id(s->o->model_path, line, sizeof line) ||
        !ds_hash_file(s->o->model_path, &hash)) {
        free(fp);
        return cli_fail("%s: cannot read the model again: %s", s->o->model_path, strerror(errno));
    }
    DS_APPEND("mha-checkpoint 2\nmodel %s hash %016llx\n", line, (unsigned long long)hash);
    /* its external data: the model file names it, but a replaced data file
     * leaves the model's bytes as they were (only with external data, so
     * the checkpoints of other models read as before) */
    if (mha_model_external_data_id(s->model))
        DS_APPEND("external data %016llx\n",
                  (unsigned long long)mha_model_external_data_id(s->model));
    for (size_t i = 0; i < s->n_in; i++) {
        const ds_input *in = &s->in[i];
        if (!in->file) {
            DS_APPEND("input %s from lengths\n", s->in_info[i].name);
            continue;
        }
        if (!ds_file_id(in->file, line, sizeof line)) {
            free(fp);
            return cli_fail("%s: %s", in->file, strerror(errno));
        }
        if (in->batch_major) {
            DS_APPEND("input %s %s by rows\n", s->in_info[i].name, line);
        } else {
            uint64_t h = cli_hash_bytes(CLI_HASH_SEED, in->buf, (size_t)in->h.rows * in->row_bytes);
            DS_APPEND("input %s %s hash %016llx\n", s->in_info[i].name, line,
                      (unsigned long long)h);
        }
    }
    if (s->o->lengths_path) {
        if (!ds_file_id(s->o->lengths_path, line, sizeof line)) {
            free(fp);
            return cli_fail("%s: %s", s->o->lengths_path, strerror(errno));
        }
        hash = cli_hash_bytes(CLI_HASH_SEED, s->lengths, (size_t)s->B * sizeof *s->lengths);
        DS_APPEND("lengths %s hash %016llx\n", line, (unsigned long long)hash);
    }
    DS_APPEND("backend %s\n", mha_runtime_backend(s->rt));
    /* the precision changes every bit as a backend does (only when not
     * float32, so that the checkpoints of float32 runs read as before) */
    if (s->precision != MHA_PRECISION_FLOAT32) DS_APPEND("precision bfloat16\n");
    DS_APPEND("rows %lld:%lld of %lld\n", (long long)s->lo, (long long)s->hi, (long long)s->B);
    /* (only for a sequence-first model: the checkpoints of others read as
     * before) */
    if (s->axis) DS_APPEND("rows along axis 1\n");
    for (size_t i = 0; i < s->n_out; i++)
        if (s->out[i].file) DS_APPEND("output %zu %s\n", i, s->out[i].file);
#undef DS_APPEND
    s->fingerprint = fp;
    return CLI_OK;
}

/* fsyncs every partial output, then records the rows done (atomically):
 * the fingerprint, "done N", per output its bytes and its partial file,
 * per input read by rows the hash of the rows done. */
static int ds_checkpoint(ds_state *s) {
    mha_error err;
    mha_error_clear(&err);
    for (size_t i = 0; i < s->n_out; i++)
        if (s->out[i].writer &&
            mha_npy_writer_sync(s->out[i].writer, &s->out[i].bytes_done, &err) != MHA_OK)
            return cli_fail_err(mha_npy_writer_partial_path(s->out[i].writer), &err);
    size_t cap = strlen(s->fingerprint) + 64 + s->n_out * 4200 + s->n_in * 48;
    char *text = malloc(cap);
    if (!text) return cli_fail("out of memory");
    size_t used = (size_t)snprintf(text, cap, "%sdone %lld\n", s->fingerprint, (long long)s->done);
    for (size_t i = 0; i < s->n_out; i++)
        if (s->out[i].writer)
            used += (size_t)snprintf(text + used, cap - used, "bytes %zu %llu\npartial %zu %s\n", i,
                                     (unsigned long long)s->out[i].bytes_done, i,
                                     mha_npy_writer_partial_path(s->out[i].writer));
    for (size_t i = 0; i < s->n_in; i++)
        if (s->in[i].file && s->in[i].batch_major)
            used += (size_t)snprintf(text + used, cap - used, "rows-hash %zu %016llx\n", i,
                                     (unsigned long long)s->in[i].rows_hash);
    for (size_t i = 0; i < s->n_out && !s->axis; i++)
        if (s->out[i].writer)
            used += (size_t)snprintf(text + used, cap - used, "out-hash %zu %016llx\n", i,
                                     (unsigned long long)s->out[i].rows_hash);
    if (used >= cap) {
        free(text);
        return cli_fail("%s: checkpoint text too long", s->ckpt_path);
    }
    mha_status st = mha_output_save_nofollow(s->ckpt_path, text, used, &err);
    free(text);
    if (st != MHA_OK) return cli_fail_err(s->ckpt_path, &err);
    return CLI_OK;
}

/* The whole of a checkpoint file (never through a symlink), NUL-ended.
 * NULL with *missing = 1 when there is none; NULL after printing an
 * error otherwise. */
static char *ds_checkpoint_read(const char *path, int *missing) {
    *missing = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            *missing = 1;
        else
            cli_fail("%s: %s", path,
                     errno == ELOOP ? "a symbolic link, not a checkpoint" : strerror(errno));
        return NULL;
    }
    struct stat sb;
    char *text = NULL;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > (1 << 24)) {
        cli_fail("%s: not a checkpoint file", path);
    } else if (!(text = malloc((size_t)sb.st_size + 1))) {
        cli_fail("out of memory");
    } else {
        size_t got = 0;
        while (got < (size_t)sb.st_size) {
            ssize_t r = read(fd, text + got, (size_t)sb.st_size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        text[got] = '\0';
        if (got == 0) {
            cli_fail("%s: empty checkpoint", path);
            free(text);
            text = NULL;
        }
    }
    close(fd);
    return text;
}

/* Reads OUT.ckpt for --resume: the fingerprint must match line for line;
 * sets s->done, each output's bytes_done and partial file and each input's
 * hash of the rows done (checked by ds_verify_rows). *found = 0 when there
 * is no checkpoint (the run starts afresh). */
static int ds_checkpoint_load(ds_state *s, int *found) {
    *found = 0;
    int missing;
    char *text = ds_checkpoint_read(s->ckpt_path, &missing);
    if (!text) return missing ? CLI_OK : CLI_FAIL;

    /* compare line by line up to "done" */
    const char *want = s->fingerprint, *have = text;
    while (*want) {
        const char *we = strchr(want, '\n'), *he = strchr(have, '\n');
        size_t wl = we ? (size_t)(we - want) : strlen(want);
        size_t hl = he ? (size_t)(he - have) : strlen(have);
        if (wl != hl || memcmp(want, have, wl) != 0) {
            int rc = cli_fail("%s: cannot resume: the checkpoint has '%.*s' where this run has "
                              "'%.*s' (remove the .ckpt file to start over)",
                              s->ckpt_path, (int)(hl > 300 ? 300 : hl), have,
                              (int)(wl > 300 ? 300 : wl), want);
            free(text);
            return rc;
        }
        want += wl + (we ? 1 : 0);
        have += hl + (he ? 1 : 0);
    }
    long long done = -1;
    int pos = 0, rc = CLI_OK;
    if (sscanf(have, "done %lld\n%n", &done, &pos) != 1 || done < 0 || done > s->hi - s->lo)
        rc = cli_fail("%s: malformed checkpoint (no valid 'done' line)", s->ckpt_path);
    have += pos;
    for (size_t i = 0; i < s->n_out && rc == CLI_OK; i++) {
        if (!s->out[i].file) continue;
        size_t idx, idx2;
        unsigned long long bytes;
        int p2 = 0, p3 = 0, p4 = 0;
        if (sscanf(have, "bytes %zu %llu\n%n", &idx, &bytes, &p2) != 2 || idx != i ||
            sscanf(have + p2, "partial %zu %n%*[^\n]%n\n", &idx2, &p3, &p4) != 1 || idx2 != i ||
            p4 <= p3) {
            rc = cli_fail("%s: malformed checkpoint (output %zu has no 'bytes' and 'partial' "
                          "lines)",
                          s->ckpt_path, i);
            break;
        }
        s->out[i].bytes_done = bytes;
        s->out[i].resume_partial = strndup(have + p2 + p3, (size_t)(p4 - p3));
        if (!s->out[i].resume_partial) rc = cli_fail("out of memory");
        have += p2 + p4 + (have[p2 + p4] == '\n');
    }
    for (size_t i = 0; i < s->n_in && rc == CLI_OK; i++) {
        if (!s->in[i].file || !s->in[i].batch_major) continue;
        size_t idx;
        unsigned long long h = 0;
        int p2 = 0;
        if (sscanf(have, "rows-hash %zu %llx\n%n", &idx, &h, &p2) != 2 || idx != i)
            rc = cli_fail("%s: malformed checkpoint (input %zu has no 'rows-hash' line)",
                          s->ckpt_path, i);
        s->in[i].ckpt_rows_hash = h;
        have += p2;
    }
    /* the outputs' rows (a checkpoint of an earlier mha has none) */
    for (size_t i = 0; i < s->n_out && rc == CLI_OK; i++) {
        size_t idx;
        unsigned long long h = 0;
        int p2 = 0;
        if (!s->out[i].file || strncmp(have, "out-hash ", 9) != 0) continue;
        if (sscanf(have, "out-hash %zu %llx\n%n", &idx, &h, &p2) != 2 || idx != i || p2 == 0) {
            rc = cli_fail("%s: malformed checkpoint (output %zu's 'out-hash' line)", s->ckpt_path,
                          i);
            break;
        }
        s->out[i].ckpt_rows_hash = h;
        s->out[i].has_ckpt_hash = 1;
        have += p2;
    }
    free(text);
    if (rc != CLI_OK) return rc;
    s->done = done;
    *found = 1;
    return CLI_OK;
}

/* On resume: the rows already scored must be the rows the checkpoint was
 * made from. Reads them again (the one pass over the done part a resume
 * costs) and compares their hash; leaves each input's running hash where
 * the next chunk continues it. */
static int ds_verify_rows(ds_state *s, int64_t bs, int64_t skv) {
    for (int64_t r = s->lo; r < s->lo + s->done;) {
        int64_t n = s->lo + s->done - r < bs ? s->lo + s->done - r : bs;
        int rc = ds_bind_chunk(s, r, n, skv);
        if (rc != CLI_OK) return rc;
        for (size_t i = 0; i < s->n_in; i++)
            if (s->in[i].file && s->in[i].batch_major)
                ds_hash_rows(&s->in[i], s->ins[i].data, n, s->axis);
        ds_advise(s, r, r + n, MHA_NPY_DONTNEED);
        r += n;
    }
    for (size_t i = 0; i < s->n_in; i++)
        if (s->in[i].file && s->in[i].batch_major && s->in[i].rows_hash != s->in[i].ckpt_rows_hash)
            return cli_fail("%s: cannot resume: rows %lld:%lld, already scored, are not the rows "
                            "the checkpoint %s was made from (the file changed); remove the "
                            ".ckpt file to start over",
                            s->in[i].file, (long long)s->lo, (long long)(s->lo + s->done),
                            s->ckpt_path);
    return CLI_OK;
}

/* On resume: the rows of each partial file the checkpoint counts must be
 * the rows it recorded (a byte changed since, by hand or by the disk, would
 * be finished into the output in silence). Reads them once, as
 * ds_verify_rows reads the inputs', and leaves each output's running hash
 * where the next rows continue it. */
static int ds_verify_outputs(ds_state *s) {
    for (size_t i = 0; i < s->n_out && !s->axis; i++) {
        ds_output *out = &s->out[i];
        if (!out->file || !out->resume_partial) continue;
        const uint64_t data = (uint64_t)s->done * out->row_bytes;
        int fd = open(out->resume_partial, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue; /* gone or not a file: the writer says so */
        /* the rows start after the file's own header (its preamble says
         * how long), whatever the checkpoint's 'bytes' line holds */
        unsigned char pre[12] = {0};
        struct stat sb;
        const int v1 = pread(fd, pre, sizeof pre, 0) == (ssize_t)sizeof pre && pre[6] == 1;
        const uint64_t head = v1 ? 10u + (pre[8] | (unsigned)pre[9] << 8)
                                 : 12u + (pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
                                          (uint64_t)pre[11] << 24);
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || memcmp(pre, "\x93NUMPY", 6) != 0 ||
            (uint64_t)sb.st_size < head + data) {
            close(fd);
            continue; /* the writer refuses it by name */
        }
        char *row = malloc(out->row_bytes ? out->row_bytes : 1);
        if (!row) {
            close(fd);
            return cli_fail("out of memory");
        }
        uint64_t h = CLI_HASH_SEED, at = head;
        int ok = 1;
        for (int64_t r = 0; r < s->done && ok; r++, at += out->row_bytes) {
            size_t got = 0;
            while (got < out->row_bytes) {
                ssize_t n = pread(fd, row + got, out->row_bytes - got, (off_t)(at + got));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                got += (size_t)n;
            }
            ok = got == out->row_bytes;
            h = cli_hash_bytes(h, row, out->row_bytes);
        }
        free(row);
        close(fd);
        if (!ok)
            return cli_fail("%s: cannot read the rows its checkpoint counts", out->resume_partial);
        if (out->has_ckpt_hash && h != out->ckpt_rows_hash)
            return cli_fail("%s: cannot resume: rows %lld:%lld, already written there, are not "
                            "the rows the checkpoint %s recorded (the file changed); remove the "
                            ".ckpt file to start over",
                            out->resume_partial, (long long)s->lo, (long long)(s->lo + s->done),
                            s->ckpt_path);
        out->rows_hash = h;
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* Progress                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct ds_progress {
    int on;
    double t0, last;
    int64_t rows0; /* rows done before this process started (resume) */
} ds_progress;

static void ds_progress_draw(ds_progress *p, int64_t done, int64_t total, int final) {
    if (!p->on) return;
    double now = cli_now();
    if (!final && now - p->last < 0.1) return; /* at most ~10 redraws a second */
    p->last = now;
    double dt = now - p->t0;
    double rate = dt > 0 ? (double)(done - p->rows0) / dt : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    int width = 30, fill = total > 0 ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %lld/%lld rows %.1f rows/s ETA %d:%02d:%02d   ", bar, (long long)done,
            (long long)total, rate, (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
    if (final) fprintf(stderr, "\r%*s\r", 80, "");
    fflush(stderr);
}

/* ------------------------------------------------------------------------ */
/* Outputs                                                                   */
/* ------------------------------------------------------------------------ */

/* Whether output k of a whole model is one per token, [n, S, ...] (rank 3
 * or more, axis 1 of the ids' S): an axis the model fixes where the ids'
 * is dynamic is no sequence, though its size may equal this S -- the heads
 * of a present key [n, H, S, d] at S == H. */
static int ds_output_per_token(const ds_state *s, size_t k, int64_t n, int64_t S) {
    const mha_tensor *t = &s->outs[k];
    if (t->rank < 3 || t->shape[0] != n || t->shape[1] != S || S < 1) return 0;
    const mha_io_info *o = &s->out_info[k];
    if (o->rank != t->rank || o->shape[1] < 0) return 1;
    for (size_t i = 0; i < s->n_in; i++)
        if (s->in_info[i].role == MHA_ROLE_TOKEN_IDS && s->in_info[i].rank >= 2)
            return s->in_info[i].shape[1] == o->shape[1]; /* the ids fixed as well */
    return 1;
}

/* A whole model's outputs per token (ds_output_per_token): the rows of
 * positions past each row's length set to 0, as a layer's query rows are
 * (the padding's results are no row's). */
static void ds_zero_token_rows(ds_state *s, int64_t r, int64_t n, int64_t S) {
    for (size_t k = 0; k < s->n_out; k++) {
        mha_tensor *t = &s->outs[k];
        if (!ds_output_per_token(s, k, n, S)) continue;
        const size_t elem = mha_dtype_size(t->dtype);
        const size_t tok = (size_t)(mha_tensor_numel(t) / (n * S)) * elem;
        for (int64_t b = 0; b < n; b++) {
            const int64_t len = s->lengths[r + b] < S ? s->lengths[r + b] : S;
            memset((char *)t->data + ((size_t)(b * S + len)) * tok, 0, (size_t)(S - len) * tok);
        }
    }
}

/* How many of the n items of axis 1 of chunk output t ([S, n, ...]) hold a
 * NaN or an infinity. */
static long long ds_nonfinite_items_axis1(const mha_tensor *t, int64_t n) {
    const int64_t outer = t->shape[0];
    const size_t run = outer > 0 ? (size_t)(mha_tensor_numel(t) / (outer * n)) : 0;
    const size_t elem = mha_dtype_size(t->dtype);
    long long bad = 0;
    for (int64_t b = 0; b < n; b++)
        for (int64_t o = 0; o < outer; o++)
            if (ds_nonfinite_rows((const char *)t->data + ((size_t)(o * n + b)) * run * elem,
                                  t->dtype, 1, run)) {
                bad++;
                break;
            }
    return bad;
}

/* Zeroes the query rows of chunk output y past each row's length (query
 * position i is padding when i >= length; only for Sq == Skv, where a
 * query position is a key position) and counts rows holding NaN or Inf. */
static void ds_finish_chunk(ds_state *s, int64_t r, int64_t n, int64_t sq, int64_t skv) {
    mha_tensor *y = &s->outs[s->y_index];
    if (y->rank < 1 || n == 0) return;
    if (s->lengths && s->whole) ds_zero_token_rows(s, r, n, sq);
    size_t per_row = (size_t)(mha_tensor_numel(y) / n);
    if (s->axis) { /* [S, n, ...]: an item is S runs */
        s->nonfinite_rows += ds_nonfinite_items_axis1(y, n);
        return;
    }
    if (y->dtype != MHA_DTYPE_FLOAT32) { /* a float16 model's outputs: counted */
        s->nonfinite_rows += ds_nonfinite_rows(y->data, y->dtype, (size_t)n, per_row);
        return;
    }
    float *data = y->data;
    if (s->lengths && sq == skv && (y->rank == 3 || y->rank == 4) && !s->whole) {
        /* [n, Sq, w] or bare attention [n, H, Sq, dv] */
        int64_t heads = y->rank == 4 ? y->shape[1] : 1;
        int64_t width = y->shape[y->rank - 1];
        for (int64_t b = 0; b < n; b++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t i = s->lengths[r + b]; i < sq; i++)
                    memset(data + (size_t)b * per_row + (size_t)((h * sq + i) * width), 0,
                           (size_t)width * sizeof(float));
    }
    s->nonfinite_rows += ds_nonfinite_rows(data, y->dtype, (size_t)n, per_row);
}

/* Whether element i of a float16 / bfloat16 array has its exponent all
 * ones (an infinity or a NaN). */
static int ds_half_nonfinite(const uint16_t *h, size_t i, uint16_t exp_mask) {
    return (h[i] & exp_mask) == exp_mask;
}

long long ds_nonfinite_rows(const void *data, mha_dtype dt, size_t rows, size_t per_row) {
    long long bad = 0;
    const float *f = data;
    const uint16_t *h = data;
    if (dt != MHA_DTYPE_FLOAT32 && dt != MHA_DTYPE_FLOAT16 && dt != MHA_DTYPE_BFLOAT16) return 0;
    const uint16_t exp_mask = dt == MHA_DTYPE_FLOAT16 ? 0x7c00u : 0x7f80u;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < per_row; k++) {
            const size_t i = r * per_row + k;
            if (dt == MHA_DTYPE_FLOAT32 ? !isfinite(f[i]) : ds_half_nonfinite(h, i, exp_mask)) {
                bad++;
                break;
            }
        }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* Setup shared by the file and MPI modes                                    */
/* ------------------------------------------------------------------------ */

/* A run that cannot go by rows goes in one piece (DS_ONE_SHOT), unless
 * --batch-size or --checkpoint-every was given: the memory bound or the
 * checkpoints would be dropped in silence, so it is refused saying why. */
static int ds_one_shot(const ds_options *o, const char *why) {
    if (!o->batch_size_given && !o->checkpoint_given) return DS_ONE_SHOT;
    return cli_fail("%s: %s: %s, so the run goes in one piece (leave the option out)",
                    o->model_path, o->batch_size_given ? "--batch-size" : "--checkpoint-every",
                    why);
}

static int ds_setup(const cli_common *c, ds_state *s) {
    const ds_options *o = s->o;
    mha_error err;
    mha_error_clear(&err);
    if (mha_model_load_file(o->model_path, NULL, &s->model, &err) != MHA_OK)
        return cli_fail_err(o->model_path, &err);
    mha_model_get_info(s->model, &s->mi);
    s->whole = strcmp(s->mi.form, "plan") == 0;
    const mha_layout layout = mha_model_layout(s->model);
    /* a whole model whose ids are [S, B] goes by items of axis 1 */
    s->axis = layout == MHA_LAYOUT_SEQ_FIRST && s->whole;
    if (layout == MHA_LAYOUT_UNKNOWN && !o->dataset_options && !o->mpi)
        return ds_one_shot(o, "which axis of the model's token ids is the batch cannot be told");
    if (layout == MHA_LAYOUT_SEQ_FIRST && !s->whole && !o->dataset_options && !o->mpi)
        return ds_one_shot(o, "the model takes sequence-first inputs ([S, B, D])");
    if (layout == MHA_LAYOUT_SEQ_FIRST && !s->whole)
        return cli_fail("%s: the model takes sequence-first inputs ([S, B, D]); dataset runs "
                        "need the batch on axis 0 (use a .pb output to run it in one piece)",
                        o->model_path);
    if (s->axis && !o->dataset_options && !o->mpi) {
        /* an output written directly cannot take items of axis 1 in place:
         * such a run goes in one piece, as before */
        for (size_t i = 0; i < o->n_out_files; i++) {
            int stream = 0;
            if (mha_output_is_stream(o->out_files[i], &stream, &err) == MHA_OK && stream) {
                char why[4200];
                snprintf(why, sizeof why,
                         "the model's batch is axis 1 of its token ids and output '%s' is "
                         "written directly",
                         o->out_files[i]);
                return ds_one_shot(o, why);
            }
        }
    }
    if (s->axis && o->mpi)
        return cli_fail("%s: --mpi: the model takes sequence-first token ids [S, B], whose rows "
                        "MPI-IO does not write (use --shard I/N and mha merge)",
                        o->model_path);
    if (s->axis && o->lengths_path)
        return cli_fail("%s: --lengths: the model takes sequence-first token ids [S, B]; give "
                        "its mask as a file",
                        o->lengths_path);
    if (layout == MHA_LAYOUT_UNKNOWN)
        return cli_fail("%s: which axis of the model's token ids is the batch cannot be told "
                        "(one item's tokens change other items' outputs along either axis); "
                        "dataset runs split the batch (use a .pb output to run it in one piece)",
                        o->model_path);
    s->n_in = s->mi.num_inputs;
    s->n_out = s->mi.num_outputs;
    if (o->n_out_files > s->n_out)
        return cli_usage_error(c, "the model has %zu output%s but %zu -o files were given",
                               s->n_out, s->n_out == 1 ? "" : "s", o->n_out_files);
    s->in_info = ds_calloc(s->n_in, sizeof *s->in_info);
    s->out_info = ds_calloc(s->n_out, sizeof *s->out_info);
    s->in = ds_calloc(s->n_in, sizeof *s->in);
    s->out = ds_calloc(s->n_out, sizeof *s->out);
    s->ins = ds_calloc(s->n_in, sizeof *s->ins);
    s->outs = ds_calloc(s->n_out, sizeof *s->outs);
    const char **files = ds_calloc(s->n_in, sizeof *files);
    if (!s->in_info || !s->out_info || !s->in || !s->out || !s->ins || !s->outs || !files) {
        free(files);
        return cli_fail("out of memory");
    }
    for (size_t i = 0; i < s->n_in; i++)
        mha_model_input(s->model, i, &s->in_info[i]);
    for (size_t i = 0; i < s->n_out; i++) {
        mha_model_output(s->model, i, &s->out_info[i]);
        if (s->out_info[i].role == MHA_ROLE_OUTPUT) s->y_index = i;
        s->out[i].file = i < o->n_out_files ? o->out_files[i] : NULL;
    }
    int rc = ds_bind_inputs(c, s->in_info, s->n_in, o->in_args, o->n_in_args, files,
                            o->lengths_path != NULL, s->whole);
    for (size_t i = 0; i < s->n_in; i++)
        s->in[i].file = files[i];
    free(files);
    if (rc != CLI_OK) return rc;
    for (size_t i = 0; i < s->n_in; i++)
        if (s->in[i].file && (rc = ds_open_input(s, i)) != CLI_OK) return rc;

    /* rows: the batch of the query, a whole model's of its token ids (its
     * float inputs -- a KV cache's past keys [B, H, P, d] -- are no query),
     * else of the first file */
    size_t qi = s->n_in;
    for (size_t i = 0; i < s->n_in && qi == s->n_in; i++)
        if (s->in[i].file &&
            (s->whole ? s->in_info[i].role == MHA_ROLE_TOKEN_IDS
                      : s->in_info[i].role == MHA_ROLE_QUERY || s->in_info[i].role == MHA_ROLE_Q))
            qi = i;
    for (size_t i = 0; i < s->n_in && qi == s->n_in; i++)
        if (s->in[i].file) qi = i;
    if (qi == s->n_in || s->in[qi].h.rank < 1 + s->axis)
        return cli_fail("%s: no input with a batch axis to split into rows", o->model_path);
    s->B = s->in[qi].h.dims[s->axis];
    /* sequence lengths, for --lengths and a generated mask */
    int64_t sq = s->axis                 ? s->in[qi].h.dims[0]
                 : s->in[qi].h.rank == 4 ? s->in[qi].h.dims[2]
                 : s->in[qi].h.rank >= 2 ? s->in[qi].h.dims[1]
                                         : 1;
    int64_t skv = sq;
    for (size_t i = 0; i < s->n_in; i++) {
        const mha_npy_header *h = &s->in[i].h;
        if (s->in[i].file &&
            (s->in_info[i].role == MHA_ROLE_KEY_VALUE || s->in_info[i].role == MHA_ROLE_K))
            skv = h->rank == 4 ? h->dims[2] : h->rank >= 2 ? h->dims[1] : skv;
    }
    if (o->lengths_path && s->whole && (rc = ds_check_made_masks(s, qi)) != CLI_OK) return rc;
    if (o->lengths_path && (rc = ds_read_lengths(s, skv)) != CLI_OK) return rc;
    /* a whole model whose token ids declare a batch of 1: streamed a row
     * at a time (the inputs declaring the same fixed 1 go by rows too) */
    s->batch_rows = o->batch_rows;
    s->batch_fixed_one = s->whole && s->in_info[qi].rank == s->in[qi].h.rank &&
                         s->in_info[qi].rank > s->axis && s->in_info[qi].shape[s->axis] == 1;
    if (s->batch_fixed_one) s->batch_rows = 1;

    /* which inputs are chunked; buffers for those not read in place */
    int64_t bs = s->batch_rows;
    for (size_t i = 0; i < s->n_in; i++) {
        ds_input *in = &s->in[i];
        const mha_io_info *info = &s->in_info[i];
        mha_tensor *t = &s->ins[i];
        size_t esize = mha_dtype_size(info->dtype);
        if (!in->file) { /* generated per chunk from --lengths */
            in->batch_major = 1;
            t->dtype = info->dtype;
            t->rank = info->rank;
            t->shape[0] = bs;
            if (info->rank == 2) t->shape[1] = skv;
            in->row_bytes = esize * (info->rank == 2 ? (size_t)skv : 1);
            if (!(in->buf = ds_calloc((size_t)bs, in->row_bytes))) return cli_fail("out of memory");
            continue;
        }
        t->dtype = info->dtype;
        t->rank = in->h.rank;
        memcpy(t->shape, in->h.dims, sizeof t->shape);
        in->batch_major =
            ds_is_batch_major(info, &in->h, s->B, s->whole, s->batch_fixed_one, s->axis);
        /* a whole model's input with a batch axis goes by rows: one of
         * another number of rows than the first is refused here, by name,
         * not at the first chunk as an axis of another size */
        if (s->whole && !in->batch_major && info->rank == in->h.rank && info->rank > s->axis &&
            info->shape[s->axis] < 0)
            return cli_fail("%s: input '%s': axis %d (the batch) has %lld rows, but %lld in "
                            "input '%s' (%s)",
                            in->file, info->name, s->axis, (long long)in->h.dims[s->axis],
                            (long long)s->B, s->in_info[qi].name, s->in[qi].file);
        in->row_bytes = in->h.row_bytes / mha_dtype_size(in->h.dtype) * esize;
        if (in->batch_major && s->axis) { /* an item of axis 1: [S, 1, ...] */
            in->row_bytes =
                s->B > 0 ? in->h.data_bytes / (size_t)s->B / mha_dtype_size(in->h.dtype) * esize
                         : 0;
            if (!(in->buf = ds_calloc((size_t)bs, in->row_bytes)))
                return cli_fail("%s: out of memory for %lld rows of %zu bytes", in->file,
                                (long long)bs, in->row_bytes);
        } else if (in->batch_major) {
            in->zero_copy = mha_npy_reader_mapped_rows(in->reader, 0, 0) &&
                            in->h.dtype == info->dtype && info->dtype != MHA_DTYPE_BOOL;
            if (!in->zero_copy && !(in->buf = ds_calloc((size_t)bs, in->row_bytes)))
                return cli_fail("%s: out of memory for %lld rows of %zu bytes", in->file,
                                (long long)bs, in->row_bytes);
        } else {
            size_t bytes = (size_t)in->h.rows * in->row_bytes;
            if (!(in->buf = ds_calloc(bytes, 1)))
                return cli_fail("%s: out of memory for %zu bytes", in->file, bytes);
            if ((rc = ds_read_rows(s, i, 0, in->h.rows, 0, bytes)) != CLI_OK) return rc;
            t->data = in->buf;
        }
    }
    return cli_runtime_create(c, &s->rt);
}

/* A failed call on rows [r, r+n): the error against the input file it
 * names (an index it gives into the input is one into these rows), else
 * against the model. */
static int ds_fail_chunk(const ds_state *s, int64_t r, int64_t n, const mha_error *err) {
    const size_t i = cli_message_input(err->message, s->in_info, s->n_in);
    if (i < s->n_in && s->in[i].file) {
        if (r == 0 && n == s->B) return cli_fail_err(s->in[i].file, err);
        if (n == 1) return cli_fail("%s: row %lld: %s", s->in[i].file, (long long)r, err->message);
        return cli_fail("%s: rows %lld-%lld: %s", s->in[i].file, (long long)r,
                        (long long)(r + n - 1), err->message);
    }
    return cli_fail_err(s->o->model_path, err);
}

/* Output shapes of a full chunk of n rows; every output must have the
 * batch on axis 0. Allocates the chunk buffers. */
static int ds_setup_outputs(ds_state *s, int64_t n, int64_t file_rows, int64_t skv) {
    mha_error err;
    mha_error_clear(&err);
    /* the shapes come from real chunk tensors (the checks want data) */
    const int64_t r = s->lo + n <= s->B ? s->lo : s->B - n;
    int rc = ds_bind_chunk(s, r, n, skv);
    if (rc != CLI_OK) return rc;
    if (mha_model_output_shapes(s->model, s->ins, s->n_in, s->outs, s->n_out, &err) != MHA_OK)
        return ds_fail_chunk(s, r, n, &err);
    for (size_t i = 0; i < s->n_out; i++) {
        ds_output *out = &s->out[i];
        mha_tensor *t = &s->outs[i];
        if (t->rank <= s->axis || t->shape[s->axis] != n) {
            char shape[160], why[400];
            cli_shape_str(t->rank, t->shape, shape, sizeof shape);
            snprintf(why, sizeof why, "output '%s' [%s] has no batch axis", s->out_info[i].name,
                     shape);
            if (!s->o->dataset_options && !s->o->mpi) return ds_one_shot(s->o, why);
            return cli_fail("%s: output '%s' [%s] has no batch axis: it cannot be written by "
                            "rows (use a .pb output to run in one piece)",
                            s->o->model_path, s->out_info[i].name, shape);
        }
        int ok;
        size_t bytes = cli_tensor_bytes(t, &ok);
        out->row_bytes = n ? bytes / (size_t)n : 0;
        out->chunk = *t;
        memcpy(out->dims, t->shape, sizeof out->dims);
        out->dims[s->axis] = file_rows;
        if (!ok || !(out->buf = ds_calloc(bytes, 1)))
            return cli_fail("%s: output '%s' of %zu bytes per chunk does not fit in memory",
                            s->o->model_path, s->out_info[i].name, bytes);
        t->data = out->buf;
        /* a declaration the computed shape contradicts: said once, for
         * the whole dataset's rows (a shard's or a chunk's are no axis a
         * model declares) */
        int64_t whole[MHA_MAX_RANK];
        memcpy(whole, out->dims, sizeof whole);
        whole[s->axis] = s->B;
        cli_warn_declared_shape(s->o->model_path, s->model, i, t->rank, whole, "written");
    }
    return CLI_OK;
}

/* The tokens of rows [r, r+n) for the summary: with --lengths over the
 * sequence itself (a self-attention layer, a whole model's ids), each row's
 * length -- the padding after it is no token of the row; else rows x the
 * query length (a length of 0 is 0 tokens; unknown, no ids nor query: one
 * a row). */
static long long ds_chunk_tokens(const ds_state *s, int64_t r, int64_t n, int64_t sq, int64_t skv) {
    if (s->lengths && (s->whole || sq == skv)) {
        long long sum = 0;
        for (int64_t b = r; b < r + n; b++)
            sum += (long long)s->lengths[b];
        return sum;
    }
    return (long long)n * (sq >= 0 ? sq : 1);
}

/* Runs rows [r, r+n) into the chunk outputs. */
static int ds_compute_chunk(ds_state *s, int64_t r, int64_t n, int64_t sq, int64_t skv) {
    int rc = ds_bind_chunk(s, r, n, skv);
    if (rc != CLI_OK) return rc;
    for (size_t i = 0; i < s->n_out; i++)
        s->outs[i].shape[s->axis] = n;
    mha_run_options ro;
    mha_run_options_init(&ro);
    /* a whole model reads the lengths from the mask made of them and, in
     * its fused attention steps, as key lengths: a padded row's keys are
     * its own, as alone (a -10000 fill in bfloat16 would still weigh the
     * padding); a row of length 0 keeps its keys (kv_lengths) */
    ro.kv_lengths = s->kv_lengths ? s->kv_lengths + r : NULL;
    ro.precision = s->precision;
    mha_error err;
    mha_error_clear(&err);
    if (mha_run(s->rt, s->model, s->ins, s->n_in, s->outs, s->n_out, &ro, &err) != MHA_OK)
        return ds_fail_chunk(s, r, n, &err);
    ds_finish_chunk(s, r, n, sq, skv);
    s->tokens_done += ds_chunk_tokens(s, r, n, sq, skv);
    return CLI_OK;
}

/* Sq and Skv of the layer inputs (for padding rows). */
static void ds_seq_lengths(const ds_state *s, int64_t *sq, int64_t *skv) {
    *sq = *skv = -1;
    for (size_t i = 0; i < s->n_in; i++) {
        const mha_npy_header *h = &s->in[i].h;
        if (!s->in[i].file || h->rank < 2) continue;
        int64_t len = h->rank == 4 ? h->dims[2] : h->dims[1];
        mha_io_role role = s->in_info[i].role;
        if (role == MHA_ROLE_TOKEN_IDS && *sq < 0) /* [B, S], or [S, B] */
            *sq = *skv = h->dims[s->axis ? 0 : 1];
        /* a whole model's float inputs are no sequence of its own (a KV
         * cache's past keys [B, H, P, d]: P may be 0): the ids say */
        if (s->whole) continue;
        if (role == MHA_ROLE_QUERY || role == MHA_ROLE_Q) {
            *sq = len;
            if (*skv < 0) *skv = len;
        }
        if (role == MHA_ROLE_KEY_VALUE || role == MHA_ROLE_K) *skv = len;
    }
    /* a whole model without ids whose input is a query [B, S, D] (one
     * attention layer in float16, run as a plan): its S tokens a row */
    for (size_t i = 0; s->whole && *sq < 0 && i < s->n_in; i++) {
        const mha_npy_header *h = &s->in[i].h;
        mha_io_role role = s->in_info[i].role;
        if (s->in[i].file && h->rank == 3 && (role == MHA_ROLE_QUERY || role == MHA_ROLE_Q))
            *sq = *skv = h->dims[1];
    }
}

static void ds_summary(const ds_state *s, long long rows, long long tokens, double seconds,
                       double t_start, long long nonfinite) {
    double per = seconds > 0 ? 1.0 / seconds : 0.0;
    char where[4200] = "";
    size_t n_write = s->o->n_out_files;
    if (n_write)
        snprintf(where, sizeof where, "; wrote %s%s", s->o->out_files[0],
                 n_write > 1 ? ", ..." : "");
    char ranks[48] = "", arena[96] = "";
    if (s->size > 1) snprintf(ranks, sizeof ranks, " on each of %d MPI ranks", s->size);
    if (mha_model_arena_bytes(s->model)) /* a whole model's activations, per chunk */
        snprintf(arena, sizeof arena, "; arena %zu bytes, scratch %zu bytes",
                 mha_model_arena_bytes(s->model), mha_runtime_scratch_bytes(s->rt));
    fprintf(stderr,
            "mha run: %lld rows (%lld tokens) in %.3f s: %.1f rows/s, %.0f tokens/s; "
            "%lld rows with non-finite outputs; backend %s, %d thread%s%s; %.3f s with I/O%s%s\n",
            rows, tokens, seconds, (double)rows * per, (double)tokens * per, nonfinite,
            mha_runtime_backend(s->rt), mha_runtime_num_threads(s->rt),
            mha_runtime_num_threads(s->rt) == 1 ? "" : "s", ranks, cli_now() - t_start, arena,
            where);
}

/* ------------------------------------------------------------------------ */
/* File mode: whole run, a shard, resume                                     */
/* ------------------------------------------------------------------------ */

/* Test hooks of tests/cli/dataset.sh, compiled into the test build only
 * (mha-testhooks, MHA_TEST_HOOKS; the shipped `mha` reads no such
 * variable): MHA_TEST_DATASET_DELAY_MS sleeps after each chunk (so a
 * signal lands mid-run); MHA_TEST_DATASET_CRASH_ROWS=N kills the process
 * with SIGKILL right after the chunk that reaches N rows is written but
 * before its checkpoint. */
static long ds_test_env(const char *name) {
#ifdef MHA_TEST_HOOKS
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : 0;
#else
    (void)name;
    return 0;
#endif
}

/* Whether output i is already in place and complete: a regular file with
 * this run's header and the size all its rows make (a finished run whose
 * checkpoint was left behind). */
static int ds_output_complete(const ds_state *s, size_t i) {
    const ds_output *out = &s->out[i];
    unsigned char head[1024], have[1024];
    mha_npy_shard sh;
    char run[MHA_NPY_SHARD_RUN_MAX];
    ds_output_shard(s, i, &sh, run, sizeof run);
    size_t hn = s->axis ? mha_npy_format_header_axis1(out->chunk.dtype, out->chunk.rank, out->dims,
                                                      s->sharded ? &sh : NULL, head, sizeof head)
                : s->sharded ? mha_npy_format_header_shard_run(out->chunk.dtype, out->chunk.rank,
                                                               out->dims, &sh, head, sizeof head)
                             : mha_npy_format_header(out->chunk.dtype, out->chunk.rank, out->dims,
                                                     head, sizeof head);
    int fd = hn ? open(out->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    if (fd < 0) return 0;
    struct stat sb;
    int ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
             (uint64_t)sb.st_size == hn + (uint64_t)(s->hi - s->lo) * out->row_bytes &&
             pread(fd, have, hn, 0) == (ssize_t)hn;
    close(fd);
    /* a shard's header holds the hash of its rows where this run's has
     * the placeholder */
    const char *slot = s->sharded ? memmem(head, hn, MERGE_ROWS_UNSEALED, 16) : NULL;
    if (ok && slot) memcpy(have + (slot - (const char *)head), slot, 16);
    return ok && memcmp(have, head, hn) == 0;
}

/* Opens the writers: afresh, or (found: a checkpoint was loaded) on the
 * partial files it names. An output whose partial file is gone because an
 * earlier run finished it counts in *complete. */
static int ds_open_writers(ds_state *s, int found, size_t *complete) {
    mha_error err;
    mha_error_clear(&err);
    *complete = 0;
    for (size_t i = 0; i < s->n_out; i++) {
        ds_output *out = &s->out[i];
        if (!out->file) continue;
        struct stat sb;
        if (found && lstat(out->resume_partial, &sb) != 0 && errno == ENOENT) {
            if (ds_output_complete(s, i)) {
                (*complete)++;
                continue;
            }
            return cli_fail("%s: cannot resume: its partial file %s is gone (remove the .ckpt "
                            "file to start over)",
                            s->ckpt_path, out->resume_partial);
        }
        mha_npy_shard sh;
        char run[MHA_NPY_SHARD_RUN_MAX];
        ds_output_shard(s, i, &sh, run, sizeof run);
        mha_status st =
            s->axis /* items of axis 1, in place */
                ? mha_npy_writer_begin_axis1(out->file, found ? out->resume_partial : NULL,
                                             out->chunk.dtype, out->chunk.rank, out->dims,
                                             s->sharded ? &sh : NULL, found ? s->done : 0, NULL,
                                             &out->writer, &err)
                : s->sharded
                      ? mha_npy_writer_begin_shard(out->file, found ? out->resume_partial : NULL,
                                                   out->chunk.dtype, out->chunk.rank, out->dims,
                                                   &sh, found ? s->done : 0, NULL, &out->writer,
                                                   &err)
                      : mha_npy_writer_begin_partial(out->file, found ? out->resume_partial : NULL,
                                                     out->chunk.dtype, out->chunk.rank, out->dims,
                                                     s->lo, 0, found ? s->done : 0, NULL,
                                                     &out->writer, &err);
        if (st != MHA_OK) return cli_fail_err(found ? out->resume_partial : out->file, &err);
    }
    return CLI_OK;
}

/* Before the writers: which outputs are streams (no checkpoint then), the
 * checkpoint of a resume, and what kill -9 left behind (temporaries of
 * these outputs no checkpoint names; mha_run.c holds their locks, so no
 * other run is writing them). */
static int ds_prepare_outputs(const cli_common *c, ds_state *s, int *found) {
    const ds_options *o = s->o;
    int streamed = 0, rc;
    *found = 0;
    for (size_t i = 0; i < s->n_out; i++) {
        ds_output *out = &s->out[i];
        mha_error err;
        mha_error_clear(&err);
        if (!out->file) continue;
        if (mha_output_is_stream(out->file, &out->stream, &err) != MHA_OK)
            return cli_fail_err(out->file, &err);
        streamed |= out->stream;
        if (out->stream && (o->resume || o->checkpoint_given))
            return cli_usage_error(c,
                                   "%s: output '%s' is written directly (standard "
                                   "output, a FIFO or a device) and keeps no checkpoint",
                                   o->resume ? "--resume" : "--checkpoint-every", out->file);
    }
    if (o->n_out_files && !streamed) {
        s->ckpt_path = ds_strcat2(o->out_files[0], ".ckpt");
        if (!s->ckpt_path) return cli_fail("out of memory");
        if ((rc = ds_make_fingerprint(s)) != CLI_OK) return rc;
    }
    if (o->resume && s->ckpt_path && (rc = ds_checkpoint_load(s, found)) != CLI_OK) return rc;
    if (o->resume && !*found && !o->quiet)
        fprintf(stderr, "mha run: no checkpoint %s: starting from the first row\n",
                s->ckpt_path ? s->ckpt_path : "(no output)");
    if (!*found && s->ckpt_path) unlink(s->ckpt_path); /* a stale one must not count */
    for (size_t i = 0; i < s->n_out; i++) {
        const char *keep = s->out[i].resume_partial;
        if (s->out[i].file && !s->out[i].stream)
            mha_output_clean_stale_except(s->out[i].file, &keep, keep ? 1 : 0);
    }
    if (s->ckpt_path) mha_output_clean_stale(s->ckpt_path);
    s->have_ckpt = *found;
    return CLI_OK;
}

static int ds_run_files(const cli_common *c, ds_state *s) {
    const ds_options *o = s->o;
    double t_start = cli_now();
    int rc = ds_setup(c, s);
    if (rc != CLI_OK) return rc;

    /* this run's rows */
    s->lo = 0;
    s->hi = s->B;
    if (o->shard_count > 0) {
        s->sharded = 1;
        s->lo = s->B * o->shard_index / o->shard_count;
        s->hi = s->B * (o->shard_index + 1) / o->shard_count;
        if ((rc = ds_make_shard_run(s)) != CLI_OK) return rc;
    }
    int64_t bs = s->batch_rows;
    int64_t first = s->hi - s->lo < bs ? s->hi - s->lo : bs;
    if (first == 0) first = bs < s->B ? bs : s->B; /* an empty shard still has a shape */
    if (first == 0 && !o->dataset_options) return DS_ONE_SHOT;
    if (first == 0) return cli_fail("%s: the dataset has no rows", o->model_path);
    int64_t sq, skv;
    ds_seq_lengths(s, &sq, &skv);
    if ((rc = ds_setup_outputs(s, first, s->hi - s->lo, skv)) != CLI_OK) return rc;
    for (size_t i = 0; i < s->n_out; i++) /* chunk buffers: bs rows */
        if (first < bs) {
            free(s->out[i].buf);
            s->out[i].buf = ds_calloc((size_t)bs, s->out[i].row_bytes);
            if (!s->out[i].buf) return cli_fail("out of memory");
            s->outs[i].data = s->out[i].buf;
        }

    int found = 0;
    size_t complete = 0, n_files = 0;
    if ((rc = ds_prepare_outputs(c, s, &found)) != CLI_OK) return rc;
    for (size_t i = 0; i < s->n_out; i++)
        s->out[i].rows_hash = CLI_HASH_SEED;
    if (found && (rc = ds_verify_rows(s, bs, skv)) != CLI_OK) return rc;
    if (found && (rc = ds_verify_outputs(s)) != CLI_OK) return rc;
    /* caught before the partial files exist: a signal in between would end
     * the process and leave them behind */
    cli_signals sigs;
    cli_signals_catch(&sigs);
    if ((rc = ds_open_writers(s, found, &complete)) != CLI_OK) {
        cli_signals_restore(&sigs);
        return rc;
    }
    for (size_t i = 0; i < s->n_out; i++) {
        n_files += s->out[i].file != NULL;
        if (s->out[i].writer) /* (kept for --resume when a checkpoint exists) */
            cli_bus_remove(mha_npy_writer_partial_path(s->out[i].writer), s->ckpt_path);
    }
    if (found && complete == n_files) {
        cli_signals_restore(&sigs);
        unlink(s->ckpt_path);
        if (!o->quiet)
            fprintf(stderr,
                    "mha run: %s: already complete (an earlier run finished it); removed the "
                    "stale checkpoint %s\n",
                    o->out_files[0], s->ckpt_path);
        return CLI_OK;
    }

    mha_error err;
    mha_error_clear(&err);
    ds_progress prog = {0};
    prog.on = !o->quiet && isatty(STDERR_FILENO);
    prog.t0 = prog.last = cli_now();
    prog.rows0 = s->done;
    const long delay_ms = ds_test_env("MHA_TEST_DATASET_DELAY_MS");
    const long crash_rows = ds_test_env("MHA_TEST_DATASET_CRASH_ROWS");
    double t0 = cli_now(), last_ckpt = t0;
    int64_t rows_here = 0;
    ds_advise(s, s->lo + s->done, s->lo + s->done + bs, MHA_NPY_WILLNEED);
    while (s->lo + s->done < s->hi && rc == CLI_OK) {
        const int64_t r = s->lo + s->done;
        const int64_t n = s->hi - r < bs ? s->hi - r : bs;
        ds_advise(s, r + n, r + 2 * n, MHA_NPY_WILLNEED); /* read ahead while computing */
        if ((rc = ds_compute_chunk(s, r, n, sq, skv)) != CLI_OK) break;
        for (size_t i = 0; i < s->n_in; i++) /* what the checkpoint will vouch for */
            if (s->in[i].file && s->in[i].batch_major)
                ds_hash_rows(&s->in[i], s->ins[i].data, n, s->axis);
        for (size_t i = 0; i < s->n_out && rc == CLI_OK; i++) {
            ds_output *out = &s->out[i];
            if (!out->writer) continue;
            if (mha_npy_writer_write_rows(out->writer, out->buf, n, &err) != MHA_OK)
                rc = cli_fail_err(out->file, &err);
            if (!s->axis) /* what the checkpoint vouches for */
                out->rows_hash = cli_hash_rows(out->rows_hash, out->buf, n, 1, out->row_bytes);
        }
        if (rc != CLI_OK) break;
        ds_advise(s, r, r + n, MHA_NPY_DONTNEED);
        s->done += n;
        rows_here += n;
        if (crash_rows > 0 && s->done >= crash_rows) raise(SIGKILL);
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        ds_progress_draw(&prog, s->done, s->hi - s->lo, 0);
        double now = cli_now();
        int finished = s->lo + s->done >= s->hi;
        if (s->ckpt_path && !finished &&
            (cli_signal_caught() || now - last_ckpt >= o->checkpoint_seconds)) {
            /* a checkpoint that cannot be written (a full disk) leaves the
             * previous one in place, which still describes the partial
             * files up to its rows: they are kept for --resume, not
             * removed from under it */
            rc = ds_checkpoint(s);
            if (rc == CLI_OK) s->have_ckpt = 1;
            last_ckpt = now;
        }
        if (cli_signal_caught() && !finished) break;
    }
    int stopped = rc == CLI_OK && s->lo + s->done < s->hi;
    int sig = cli_signal_caught();
    ds_progress_draw(&prog, s->done, s->hi - s->lo, 1);
    if (stopped) {
        cli_signals_restore(&sigs);
        const char *name = cli_signal_name(sig);
        if (s->ckpt_path)
            cli_fail("interrupted by %s after %lld of %lld rows; checkpoint %s: run the same "
                     "command with --resume to continue",
                     name, (long long)s->done, (long long)(s->hi - s->lo), s->ckpt_path);
        else
            cli_fail("interrupted by %s after %lld of %lld rows (no checkpoint: %s)", name,
                     (long long)s->done, (long long)(s->hi - s->lo),
                     o->n_out_files ? "an output is written directly" : "no output to keep");
        s->keep_partials = s->ckpt_path != NULL;
        return CLI_SIGNALED(sig);
    }
    if (rc != CLI_OK) {
        /* a failure, not an interruption: keep what a checkpoint can resume */
        cli_signals_restore(&sigs);
        s->keep_partials = s->have_ckpt;
        return rc;
    }
    /* Every row is in the partial files: record that first, so that an
     * interruption between the renames below leaves a checkpoint from
     * which --resume finishes them (or says the outputs are complete). */
    if (s->ckpt_path && (rc = ds_checkpoint(s)) == CLI_OK) s->have_ckpt = 1;
    for (size_t i = 0; i < s->n_out && rc == CLI_OK && s->sharded; i++)
        if (s->out[i].writer && !s->out[i].stream)
            rc = merge_shard_seal(mha_npy_writer_partial_path(s->out[i].writer),
                                  s->axis ? NULL : &s->out[i].rows_hash);
    for (size_t i = 0; i < s->n_out && rc == CLI_OK; i++) {
        if (!s->out[i].writer) continue;
        mha_npy_writer *w = s->out[i].writer;
        s->out[i].writer = NULL;
        if (mha_npy_writer_commit(w, &err) != MHA_OK) rc = cli_fail_err(s->out[i].file, &err);
    }
    cli_signals_restore(&sigs);
    if (rc != CLI_OK) {
        s->keep_partials = s->have_ckpt;
        return rc;
    }
    if (s->ckpt_path) unlink(s->ckpt_path);
    if (!o->quiet)
        ds_summary(s, (long long)rows_here, s->tokens_done, cli_now() - t0, t_start,
                   s->nonfinite_rows);
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* MPI mode: each rank a row range, one output file through MPI-IO           */
/* ------------------------------------------------------------------------ */

#ifdef MHA_WITH_MPI
static int ds_mpi_fail(int rc) {
    /* a rank that fails cannot leave the others waiting in a collective */
    if (rc != CLI_OK) MPI_Abort(MPI_COMM_WORLD, rc);
    return rc;
}

/* What every rank does next, agreed at a collective point: 0 go on, a
 * signal number (SIGINT, SIGTERM or SIGHUP caught on some rank: stop, remove the
 * partial outputs), or DS_MPI_FAILED (some rank failed and said why). A
 * rank alone cannot stop: the others would wait in the next collective. */
#define DS_MPI_FAILED 1000
static int ds_mpi_agree(int local_rc) {
    int mine = local_rc != CLI_OK ? DS_MPI_FAILED : cli_signal_caught(), all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

static int ds_run_mpi(const cli_common *c, ds_state *s) {
    const ds_options *o = s->o;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &s->size);
    double t_start = cli_now();
    int rc = ds_mpi_fail(ds_setup(c, s));
    /* the run's rows [L, H): a shard's (--shard, a SLURM array task: a
     * shard file with its run note, as without MPI) or all; each rank a
     * contiguous part of them */
    int64_t L = 0, H = s->B;
    if (o->shard_count > 0) {
        s->sharded = 1;
        L = s->B * o->shard_index / o->shard_count;
        H = s->B * (o->shard_index + 1) / o->shard_count;
        ds_mpi_fail(ds_make_shard_run(s));
    }
    s->lo = L + (H - L) * s->rank / s->size;
    s->hi = L + (H - L) * (s->rank + 1) / s->size;
    int64_t bs = s->batch_rows;
    int64_t first = bs < s->B ? bs : s->B;
    if (first == 0) ds_mpi_fail(cli_fail("%s: the dataset has no rows", o->model_path));
    int64_t sq, skv;
    ds_seq_lengths(s, &sq, &skv);
    rc = ds_mpi_fail(ds_setup_outputs(s, first, H - L, skv));
    for (size_t i = 0; i < s->n_out; i++) /* chunk buffers: bs rows */
        if (first < bs) {
            free(s->out[i].buf);
            if (!(s->out[i].buf = ds_calloc((size_t)bs, s->out[i].row_bytes)))
                ds_mpi_fail(cli_fail("out of memory"));
            s->outs[i].data = s->out[i].buf;
        }

    /* caught before rank 0 creates the partial files: from here a signal on
     * any rank stops every rank at the next agreement, and rank 0 removes
     * them (MPI-IO writes in place: there is nothing to resume from) */
    cli_signals sigs;
    cli_signals_catch(&sigs);
    /* open every output collectively; rank 0 writes the headers */
    MPI_File *fh = ds_calloc(s->n_out, sizeof *fh);
    uint64_t *head_bytes = ds_calloc(s->n_out, sizeof *head_bytes);
    mha_output_file **partial = ds_calloc(s->n_out, sizeof *partial); /* rank 0's */
    if (!fh || !head_bytes || !partial) ds_mpi_fail(cli_fail("out of memory"));
    for (size_t i = 0; i < s->n_out; i++) {
        ds_output *out = &s->out[i];
        if (!out->file) continue;
        /* rank 0 creates the partial file exclusively and names it to all */
        char name[4096] = "";
        if (s->rank == 0) {
            mha_error err;
            mha_error_clear(&err);
            if (mha_output_file_begin_partial(out->file, NULL, &partial[i], &err) != MHA_OK)
                ds_mpi_fail(cli_fail_err(out->file, &err));
            if (!mha_output_file_tmp_path(partial[i]))
                ds_mpi_fail(cli_fail("%s: --mpi writes through MPI-IO: give a regular file, not "
                                     "standard output, a FIFO or a device",
                                     out->file));
            if (!cli_format(name, sizeof name, "%s", mha_output_file_tmp_path(partial[i])))
                ds_mpi_fail(cli_fail("%s: path too long", out->file));
        }
        MPI_Bcast(name, (int)sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD);
        if (MPI_File_open(MPI_COMM_WORLD, name, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh[i]) !=
            MPI_SUCCESS)
            ds_mpi_fail(cli_fail("%s: MPI_File_open failed", name));
        unsigned char head[640 + MHA_NPY_SHARD_RUN_MAX];
        mha_npy_shard sh;
        char run[MHA_NPY_SHARD_RUN_MAX];
        ds_output_shard(s, i, &sh, run, sizeof run);
        sh.r0 = L; /* the shard's first row, not this rank's */
        size_t hn = s->sharded ? mha_npy_format_header_shard_run(out->chunk.dtype, out->chunk.rank,
                                                                 out->dims, &sh, head, sizeof head)
                               : mha_npy_format_header(out->chunk.dtype, out->chunk.rank, out->dims,
                                                       head, sizeof head);
        if (hn == 0) ds_mpi_fail(cli_fail("%s: cannot format the header", out->file));
        head_bytes[i] = hn;
        if (s->rank == 0 &&
            MPI_File_write_at(fh[i], 0, head, (int)hn, MPI_BYTE, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            ds_mpi_fail(cli_fail("%s: writing the header failed", name));
    }

    int stop = ds_mpi_agree(CLI_OK);
    /* every rank makes the same number of collective writes */
    long long mine = (s->hi - s->lo + bs - 1) / bs, rounds = 0;
    MPI_Allreduce(&mine, &rounds, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    ds_progress prog = {0};
    prog.on = s->rank == 0 && !o->quiet && isatty(STDERR_FILENO);
    prog.t0 = prog.last = cli_now();
    double t0 = MPI_Wtime();
    for (long long k = 0; k < rounds && !stop; k++) {
        const int64_t r = s->lo + k * bs;
        const int64_t n = r < s->hi ? (s->hi - r < bs ? s->hi - r : bs) : 0;
        if (n > 0) {
            ds_advise(s, r + n, r + 2 * n, MHA_NPY_WILLNEED);
            rc = ds_compute_chunk(s, r, n, sq, skv);
        }
        /* a failed chunk writes nothing, but still joins the collectives */
        const int64_t n_ok = rc == CLI_OK ? n : 0;
        for (size_t i = 0; i < s->n_out; i++) {
            if (!s->out[i].file) continue;
            size_t bytes = (size_t)n_ok * s->out[i].row_bytes;
            if (bytes > (size_t)2147483647) {
                if (rc == CLI_OK)
                    rc = cli_fail("%s: a chunk of %zu bytes is too large for one MPI write; "
                                  "lower --batch-size",
                                  s->out[i].file, bytes);
                bytes = 0;
            }
            MPI_Offset off = (MPI_Offset)(head_bytes[i] + (uint64_t)(r - L) * s->out[i].row_bytes);
            if (MPI_File_write_at_all(fh[i], bytes > 0 ? off : 0, s->out[i].buf, (int)bytes,
                                      MPI_BYTE, MPI_STATUS_IGNORE) != MPI_SUCCESS &&
                rc == CLI_OK)
                rc = cli_fail("%s: MPI_File_write_at_all failed", s->out[i].file);
        }
        if (n > 0 && rc == CLI_OK) {
            ds_advise(s, r, r + n, MHA_NPY_DONTNEED);
            s->done += n;
        }
        ds_progress_draw(&prog, s->done, s->hi - s->lo, 0);
        stop = ds_mpi_agree(rc);
    }
    ds_progress_draw(&prog, s->done, s->hi - s->lo, 1);
    for (size_t i = 0; i < s->n_out; i++) {
        if (!s->out[i].file) continue;
        if (!stop) MPI_File_sync(fh[i]);
        MPI_File_close(&fh[i]);
    }
    if (stop) { /* nothing published: rank 0 removes the partial files */
        for (size_t i = 0; i < s->n_out; i++)
            if (partial[i]) mha_output_file_abort(partial[i]);
        const char *first_out = NULL;
        for (size_t i = 0; i < s->n_out && !first_out; i++)
            first_out = s->out[i].file;
        if (stop != DS_MPI_FAILED && s->rank == 0)
            cli_fail("%s: interrupted by %s; nothing written (--mpi keeps no partial output)",
                     first_out ? first_out : o->model_path, cli_signal_name(stop));
        /* a rank that failed printed why and returns its status */
        rc = stop == DS_MPI_FAILED ? (rc != CLI_OK ? rc : CLI_FAIL) : CLI_SIGNALED(stop);
        memset(partial, 0, s->n_out * sizeof *partial);
    }
    cli_signals_restore(&sigs);
    double seconds = MPI_Wtime() - t0;
    long long rows = s->done, all_rows = 0, bad = s->nonfinite_rows, all_bad = 0;
    long long tokens = s->tokens_done, all_tokens = 0;
    MPI_Reduce(&rows, &all_rows, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&tokens, &all_tokens, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bad, &all_bad, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    for (size_t i = 0; i < s->n_out; i++) { /* rank 0: fsync and rename into place */
        mha_error err;
        mha_error_clear(&err);
        mha_output_file *f = partial[i];
        partial[i] = NULL;
        if (f && rc == CLI_OK && s->sharded) /* (the rows of every rank: read back) */
            rc = merge_shard_seal(mha_output_file_tmp_path(f), NULL);
        if (f && rc == CLI_OK && mha_output_file_commit(f, &err) != MHA_OK)
            rc = cli_fail_err(s->out[i].file, &err);
        else if (f && rc != CLI_OK)
            mha_output_file_abort(f);
    }
    if (rc == CLI_OK && s->rank == 0 && !o->quiet)
        ds_summary(s, all_rows, all_tokens, seconds, t_start, all_bad);
    free(fh);
    free(head_bytes);
    free(partial);
    ds_state_free(s, 1);
    s->rt = NULL;
    s->model = NULL;
    MPI_Finalize();
    return rc;
}
#endif

int ds_run(const cli_common *c, const ds_options *o) {
    ds_state s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.precision = c->precision;
    s.size = 1;
    if (o->mpi) {
#ifdef MHA_WITH_MPI
        return ds_run_mpi(c, &s);
#else
        return cli_usage_error(c, "--mpi: this mha was built without MPI; run mha-mpi under "
                                  "mpirun instead");
#endif
    }
    int rc = ds_run_files(c, &s);
    cli_bus_clear();
    ds_state_free(&s, s.keep_partials);
    return rc;
}
