/* bench_inputs.c -- the seeded inputs `mha bench` feeds a model: every
 * input's shape from its role and the requested batch / sequence lengths,
 * random float32 values, masks that attend almost everywhere, and the
 * outputs allocated to the shapes the model reports. The same seed gives
 * the same bytes in every child process, so every backend sees the same
 * inputs as the scalar reference. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

/* The message names the model's inputs: escaped for the terminal. */
static int fail_msg(char *msg, size_t size, const char *fmt, ...) {
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    cli_escape(raw, msg, size);
    return -1;
}

/* Sizes the shape of one input is made of. */
typedef struct shape_plan {
    int64_t B, Sq, S_new, S_past, Skv; /* Skv = S_past + S_new keys in all */
    const mha_model_info *info;
    int whole; /* a whole model (form "plan") */
} shape_plan;

/* Inputs of a whole model: token ids and integer masks [B, S] (a 0 / 1
 * mask per token, as tokenizers give them), rank-4 images [B, C, H, W]
 * with C, H, W from the model; 1 when io is one of these. */
static int bench_whole_model_shape(const mha_io_info *io, int64_t B, int64_t S, int64_t *shape) {
    int integer = io->dtype == MHA_DTYPE_INT64 || io->dtype == MHA_DTYPE_INT32;
    if ((io->role == MHA_ROLE_TOKEN_IDS || (io->role == MHA_ROLE_ATTN_MASK && integer)) &&
        io->rank == 2) {
        shape[0] = B;
        shape[1] = S;
        return 1;
    }
    if (io->role == MHA_ROLE_QUERY && io->rank == 4 && io->shape[1] >= 0 && io->shape[2] >= 0 &&
        io->shape[3] >= 0) {
        shape[0] = B;
        for (int a = 1; a < 4; a++)
            shape[a] = io->shape[a];
        return 1;
    }
    return 0;
}

/* Token ids are drawn below this: inside any vocabulary a real model has
 * (the time of a Gather does not depend on which rows it reads), and below
 * the rows of the table the model gathers them from when it has fewer (a
 * vocabulary of 20). Segment ids (an input named *type* or *segment*:
 * tables of 1 or 2 rows) are 0. */
#define BENCH_TOKEN_ID_BOUND 64

static int64_t bench_token_id_bound(const mha_model *model, size_t i, const char *name) {
    if (strstr(name, "type") || strstr(name, "segment")) return 1;
    const int64_t table = mha_model_input_id_extent(model, i);
    return table > 0 && table < BENCH_TOKEN_ID_BOUND ? table : BENCH_TOKEN_ID_BOUND;
}

/* Shape of input io under plan p into shape[]. Axes that carry batch or
 * sequence lengths come from the request; width and head axes from the
 * model (its static dims first, else what the layer info implies). */
static int plan_input_shape(const mha_io_info *io, const shape_plan *p, int64_t *shape, char *msg,
                            size_t msg_size) {
    const mha_model_info *in = p->info;
    int r = io->rank;
    int64_t hq = in->q_heads, hkv = in->kv_heads, dk = in->d_head, dv = in->d_head_v;
#define KEEP(axis, fallback) (io->shape[axis] >= 0 ? io->shape[axis] : (fallback))
    if (p->whole && bench_whole_model_shape(io, p->B, p->Sq, shape)) return 0;
    switch (io->role) {
    case MHA_ROLE_QUERY:
    case MHA_ROLE_KEY_VALUE:
    case MHA_ROLE_VALUE_INPUT: {
        int q = io->role == MHA_ROLE_QUERY;
        if (r != 3) break;
        shape[0] = p->B;
        shape[1] = q ? p->Sq : p->S_new;
        shape[2] = KEEP(2, q ? in->d_model : in->d_kv);
        return 0;
    }
    case MHA_ROLE_Q:
    case MHA_ROLE_K:
    case MHA_ROLE_V:
    case MHA_ROLE_PAST_KEY:
    case MHA_ROLE_PAST_VALUE: {
        int64_t heads = io->role == MHA_ROLE_Q ? hq : hkv;
        int64_t d = (io->role == MHA_ROLE_V || io->role == MHA_ROLE_PAST_VALUE) ? dv : dk;
        int64_t s = io->role == MHA_ROLE_Q                                               ? p->Sq
                    : (io->role == MHA_ROLE_PAST_KEY || io->role == MHA_ROLE_PAST_VALUE) ? p->S_past
                                                                                         : p->S_new;
        if (r == 3) { /* [B, S, H*d] */
            shape[0] = p->B;
            shape[1] = s;
            shape[2] = KEEP(2, heads * d);
            return 0;
        }
        if (r == 4) { /* [B, H, S, d] */
            shape[0] = p->B;
            shape[1] = KEEP(1, heads);
            shape[2] = s;
            shape[3] = KEEP(3, d);
            return 0;
        }
        break;
    }
    case MHA_ROLE_ATTN_MASK:
        /* [..., Sq, Skv]; leading axes broadcast (1) unless the model fixes
         * them */
        if (r < 2) break;
        for (int a = 0; a < r - 2; a++)
            shape[a] = KEEP(a, 1);
        shape[r - 2] = io->shape[r - 2] == 1 ? 1 : p->Sq; /* a static 1 broadcasts */
        shape[r - 1] = io->shape[r - 1] == 1 ? 1 : p->Skv;
        return 0;
    case MHA_ROLE_ATTN_BIAS: /* per head: [B * heads, 1 | Sq, Skv] or [B, heads, 1 | Sq, Skv] */
        if (r != 3 && r != 4) break;
        shape[0] = r == 3 ? p->B * hq : p->B;
        if (r == 4) shape[1] = KEEP(1, hq);
        shape[r - 2] = io->shape[r - 2] == 1 ? 1 : p->Sq;
        shape[r - 1] = p->Skv;
        return 0;
    case MHA_ROLE_KEY_PADDING_MASK:
        if (r != 2) break;
        shape[0] = p->B;
        shape[1] = p->Skv;
        return 0;
    case MHA_ROLE_NONPAD_KV_SEQLEN:
        if (r != 1) break;
        shape[0] = p->B;
        return 0;
    case MHA_ROLE_POSITION_IDS: /* [B, Sq] */
        if (r != 2) break;
        shape[0] = p->B;
        shape[1] = p->Sq;
        return 0;
    case MHA_ROLE_ROTARY_COS: /* [B, Sq, rotary_dim] or [B, 1, Sq, rotary_dim] */
    case MHA_ROLE_ROTARY_SIN:
        if (r != 3 && r != 4) break;
        shape[0] = p->B;
        if (r == 4) shape[1] = 1;
        shape[r - 2] = p->Sq;
        shape[r - 1] = KEEP(r - 1, dk);
        return 0;
    default:
        return fail_msg(msg, msg_size, "input '%s' has role %s, which is not an input role",
                        io->name, mha_io_role_name(io->role));
    }
#undef KEEP
    return fail_msg(msg, msg_size, "input '%s' (%s) has rank %d, which mha bench cannot shape",
                    io->name, mha_io_role_name(io->role), r);
}

/* "A few masked keys": key 0 always attends (so no row is fully masked,
 * causal or not); every other key is masked with probability 1/8. */
static int mask_hides(uint64_t *rng, int64_t key) {
    return key > 0 && (cli_rng_next(rng) & 7u) == 0;
}

static int fill_input(const mha_io_info *io, const mha_model_info *info, int64_t Skv, mha_tensor *t,
                      uint64_t seed, int64_t id_bound, char *msg, size_t msg_size) {
    int64_t n = mha_tensor_numel(t);
    size_t es = mha_dtype_size(t->dtype);
    uint64_t rng = seed;
    int64_t last = t->rank > 0 ? t->shape[t->rank - 1] : 1;
    if (n < 0 || es == 0) return fail_msg(msg, msg_size, "input '%s': bad size", io->name);
    t->data = calloc((size_t)n + 1, es); /* +1: a zero-size input still gets a pointer */
    if (!t->data)
        return fail_msg(msg, msg_size, "input '%s': out of memory for %lld elements", io->name,
                        (long long)n);
    if (io->role == MHA_ROLE_TOKEN_IDS ||
        (io->role == MHA_ROLE_ATTN_MASK &&
         (t->dtype == MHA_DTYPE_INT64 || t->dtype == MHA_DTYPE_INT32))) {
        /* ids, or a 0 / 1 mask per token that attends everywhere */
        uint64_t bound = (uint64_t)id_bound;
        for (int64_t e = 0; e < n; e++) {
            int64_t v = io->role == MHA_ROLE_ATTN_MASK ? 1 : (int64_t)(cli_rng_next(&rng) % bound);
            if (t->dtype == MHA_DTYPE_INT64)
                ((int64_t *)t->data)[e] = v;
            else
                ((int32_t *)t->data)[e] = (int32_t)v;
        }
        return 0;
    }
    switch (io->role) {
    case MHA_ROLE_ATTN_MASK:
        if (t->dtype == MHA_DTYPE_BOOL) { /* True = attend */
            unsigned char *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = mask_hides(&rng, e % last) ? 0 : 1;
            return 0;
        }
        if (t->dtype == MHA_DTYPE_FLOAT32) { /* additive */
            float *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = mask_hides(&rng, e % last) ? -INFINITY : 0.0f;
            return 0;
        }
        break;
    case MHA_ROLE_ATTN_BIAS: /* finite, falling with the key (ALiBi's shape) */
        if (t->dtype == MHA_DTYPE_FLOAT32) {
            float *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = -0.0625f * (float)(e % last);
            return 0;
        }
        break;
    case MHA_ROLE_KEY_PADDING_MASK: { /* nothing is padding: bool, integer or float 0 / 1 */
        const int attend = info->key_padding_true_means_ignore ? 0 : 1;
        for (int64_t e = 0; e < n; e++)
            switch (t->dtype) {
            case MHA_DTYPE_BOOL:
                ((unsigned char *)t->data)[e] = (unsigned char)attend;
                break;
            case MHA_DTYPE_INT64:
                ((int64_t *)t->data)[e] = attend;
                break;
            case MHA_DTYPE_INT32:
                ((int32_t *)t->data)[e] = attend;
                break;
            case MHA_DTYPE_FLOAT32:
                ((float *)t->data)[e] = (float)attend;
                break;
            default:
                e = n;
                break;
            }
        if (t->dtype == MHA_DTYPE_BOOL || t->dtype == MHA_DTYPE_INT64 ||
            t->dtype == MHA_DTYPE_INT32 || t->dtype == MHA_DTYPE_FLOAT32)
            return 0;
        break;
    }
    case MHA_ROLE_NONPAD_KV_SEQLEN: /* every key valid */
        if (t->dtype == MHA_DTYPE_INT64) {
            int64_t *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = Skv;
            return 0;
        }
        if (t->dtype == MHA_DTYPE_INT32) {
            int32_t *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = (int32_t)Skv;
            return 0;
        }
        break;
    case MHA_ROLE_POSITION_IDS: /* 0 .. Sq - 1 in every row */
        for (int64_t e = 0; e < n; e++) {
            if (t->dtype == MHA_DTYPE_INT64)
                ((int64_t *)t->data)[e] = e % last;
            else if (t->dtype == MHA_DTYPE_INT32)
                ((int32_t *)t->data)[e] = (int32_t)(e % last);
        }
        if (t->dtype == MHA_DTYPE_INT64 || t->dtype == MHA_DTYPE_INT32) return 0;
        break;
    case MHA_ROLE_ROTARY_COS: /* angles (s + 1) / (1 + t), halves repeated */
    case MHA_ROLE_ROTARY_SIN:
        if (t->dtype != MHA_DTYPE_FLOAT32 || last < 2) break;
        for (int64_t e = 0; e < n; e++) {
            const int64_t s = (e / last) % t->shape[t->rank - 2], c = e % last % (last / 2);
            const double angle = (double)(s + 1) / (double)(1 + c);
            ((float *)t->data)[e] =
                (float)(io->role == MHA_ROLE_ROTARY_COS ? cos(angle) : sin(angle));
        }
        return 0;
    default:
        if (t->dtype == MHA_DTYPE_FLOAT32) { /* uniform in [-1, 1) */
            float *d = t->data;
            for (int64_t e = 0; e < n; e++)
                d[e] = (float)(2.0 * cli_rng_uniform(&rng) - 1.0);
            return 0;
        }
        break;
    }
    free(t->data);
    t->data = NULL;
    return fail_msg(msg, msg_size,
                    "input '%s' (%s) is %s: mha bench feeds only float32 data, "
                    "bool or float32 masks and int32/int64 lengths",
                    io->name, mha_io_role_name(io->role), mha_dtype_name(t->dtype));
}

static void probe_set_input(bench_probe *p, size_t i, const mha_io_info *io, const mha_tensor *t) {
    bench_input_desc *d = &p->inputs[i];
    cli_escape(io->name, d->name, sizeof d->name); /* printed in the report */
    d->role = io->role;
    d->dtype = t->dtype;
    d->rank = t->rank;
    memcpy(d->shape, t->shape, sizeof d->shape);
}

int bench_tensors_make(const mha_model *model, int64_t B, int64_t Sq, int64_t Skv, uint64_t seed,
                       bench_tensors *t, bench_probe *probe, char *msg, size_t msg_size) {
    mha_model_info info;
    mha_error err;
    mha_io_info ios[BENCH_MAX_INPUTS];
    shape_plan plan;
    int has_past = 0;
    memset(t, 0, sizeof *t);
    mha_error_clear(&err);
    if (mha_model_get_info(model, &info) != MHA_OK)
        return fail_msg(msg, msg_size, "cannot read the model's layer info");
    if (info.num_inputs > BENCH_MAX_INPUTS || info.num_outputs > BENCH_MAX_OUTPUTS)
        return fail_msg(msg, msg_size,
                        "model has %zu inputs and %zu outputs; mha bench "
                        "handles at most %d and %d",
                        info.num_inputs, info.num_outputs, BENCH_MAX_INPUTS, BENCH_MAX_OUTPUTS);
    for (size_t i = 0; i < info.num_inputs; i++) {
        if (mha_model_input(model, i, &ios[i]) != MHA_OK)
            return fail_msg(msg, msg_size, "cannot read model input %zu", i);
        if (ios[i].role == MHA_ROLE_PAST_KEY || ios[i].role == MHA_ROLE_PAST_VALUE) has_past = 1;
    }
    if (info.has_projections && !info.cross && !has_past && Skv != Sq)
        return fail_msg(msg, msg_size,
                        "the model is self-attention (its keys are its queries): "
                        "S_kv must equal S, got S=%lld S_kv=%lld",
                        (long long)Sq, (long long)Skv);
    plan.info = &info;
    plan.whole = info.form && strcmp(info.form, "plan") == 0;
    plan.B = B;
    plan.Sq = Sq;
    plan.Skv = Skv;
    if (has_past) { /* new keys = the queries; the rest of S_kv is the cache */
        if (Skv < Sq)
            return fail_msg(msg, msg_size,
                            "the model has past key/value inputs: S_kv (keys in "
                            "all, past + new) must be >= S, got S=%lld S_kv=%lld",
                            (long long)Sq, (long long)Skv);
        plan.S_new = Sq;
        plan.S_past = Skv - Sq;
    } else {
        plan.S_new = Skv;
        plan.S_past = 0;
    }

    t->n_inputs = info.num_inputs;
    for (size_t i = 0; i < info.num_inputs; i++) {
        mha_tensor *x = &t->inputs[i];
        x->dtype = ios[i].dtype;
        x->rank = ios[i].rank;
        if (x->rank < 0 || x->rank > MHA_MAX_RANK) {
            bench_tensors_free(t);
            return fail_msg(msg, msg_size, "input '%s' has rank %d", ios[i].name, x->rank);
        }
        if (plan_input_shape(&ios[i], &plan, x->shape, msg, msg_size) != 0 ||
            fill_input(&ios[i], &info, Skv, x, seed ^ (0xA0761D6478BD642Full * (i + 1)),
                       bench_token_id_bound(model, i, ios[i].name), msg, msg_size) != 0) {
            bench_tensors_free(t);
            return -1;
        }
    }

    /* Output shapes; the model checks every input on the way. A layer whose
     * inputs are sequence-first ([S, B, D]) refuses [B, S, D] when B != S:
     * try that layout before giving up. */
    t->n_outputs = info.num_outputs;
    mha_status st =
        mha_model_output_shapes(model, t->inputs, t->n_inputs, t->outputs, t->n_outputs, &err);
    int seq_first = 0;
    if (st == MHA_ERR_SHAPE && B != Sq) {
        bench_tensors alt = *t;
        for (size_t i = 0; i < t->n_inputs; i++) {
            if ((ios[i].role == MHA_ROLE_QUERY || ios[i].role == MHA_ROLE_KEY_VALUE) &&
                alt.inputs[i].rank == 3) {
                int64_t s = alt.inputs[i].shape[0];
                alt.inputs[i].shape[0] = alt.inputs[i].shape[1];
                alt.inputs[i].shape[1] = s;
            }
        }
        mha_error err2;
        if (mha_model_output_shapes(model, alt.inputs, alt.n_inputs, alt.outputs, alt.n_outputs,
                                    &err2) == MHA_OK) {
            *t = alt;
            st = MHA_OK;
            seq_first = 1;
        }
    }
    if (st != MHA_OK) {
        bench_tensors_free(t);
        return fail_msg(msg, msg_size, "%s (shape B=%lld S=%lld S_kv=%lld)",
                        err.message[0] ? err.message : mha_status_text(st), (long long)B,
                        (long long)Sq, (long long)Skv);
    }
    for (size_t i = 0; i < t->n_outputs; i++) {
        int64_t n = mha_tensor_numel(&t->outputs[i]);
        size_t es = mha_dtype_size(t->outputs[i].dtype);
        t->outputs[i].data = (n >= 0 && es) ? calloc((size_t)n + 1, es) : NULL;
        if (!t->outputs[i].data) {
            bench_tensors_free(t);
            return fail_msg(msg, msg_size, "output %zu: out of memory", i);
        }
    }

    if (probe) {
        snprintf(probe->form, sizeof probe->form, "%s", info.form ? info.form : "?");
        probe->has_projections = info.has_projections;
        probe->causal = info.causal;
        probe->cross = info.cross;
        probe->seq_first = seq_first;
        probe->key_padding_true_means_ignore = info.key_padding_true_means_ignore;
        probe->d_model = info.d_model;
        probe->d_kv = info.d_kv;
        probe->q_heads = info.q_heads;
        probe->kv_heads = info.kv_heads;
        probe->d_head = info.d_head;
        probe->d_head_v = info.d_head_v;
        probe->B = B;
        probe->Sq = Sq;
        probe->Skv = Skv;
        probe->S_past = plan.S_past;
        probe->n_inputs = (int)t->n_inputs;
        probe->shape_note[0] = '\0';
        for (size_t i = 0; i < t->n_inputs; i++) {
            probe_set_input(probe, i, &ios[i], &t->inputs[i]);
            /* the engine may accept another size than a fixed dimension of
             * the file says; other runtimes will not: say so once */
            for (int a = 0; a < t->inputs[i].rank && !probe->shape_note[0]; a++) {
                if (ios[i].shape[a] >= 0 && ios[i].shape[a] != t->inputs[i].shape[a])
                    snprintf(probe->shape_note, sizeof probe->shape_note,
                             "input '%.64s' axis %d is fixed to %lld in the model; the bench "
                             "runs %lld",
                             probe->inputs[i].name, a, (long long)ios[i].shape[a],
                             (long long)t->inputs[i].shape[a]);
            }
        }
        probe->n_outputs = 0;
        probe->n_ref_floats = 0;
        probe->d_out = 0;
        for (size_t i = 0; i < t->n_outputs; i++) {
            mha_io_info oi;
            if (mha_model_output(model, i, &oi) == MHA_OK && oi.role == MHA_ROLE_OUTPUT &&
                t->outputs[i].rank > 0)
                probe->d_out = t->outputs[i].shape[t->outputs[i].rank - 1];
            if (t->outputs[i].dtype != MHA_DTYPE_FLOAT32) continue;
            size_t n = (size_t)mha_tensor_numel(&t->outputs[i]);
            probe->output_floats[probe->n_outputs++] = n;
            probe->n_ref_floats += n;
        }
    }
    return 0;
}

void bench_tensors_free(bench_tensors *t) {
    for (size_t i = 0; i < BENCH_MAX_INPUTS; i++) {
        free(t->inputs[i].data);
        t->inputs[i].data = NULL;
    }
    bench_outputs_free(t->outputs, BENCH_MAX_OUTPUTS);
}

int bench_outputs_clone(const bench_tensors *t, mha_tensor *outputs) {
    for (size_t i = 0; i < t->n_outputs; i++) {
        int64_t n = mha_tensor_numel(&t->outputs[i]);
        outputs[i] = t->outputs[i];
        outputs[i].data = calloc((size_t)n + 1, mha_dtype_size(t->outputs[i].dtype));
        if (!outputs[i].data) {
            bench_outputs_free(outputs, i);
            return -1;
        }
    }
    return 0;
}

void bench_outputs_free(mha_tensor *outputs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(outputs[i].data);
        outputs[i].data = NULL;
    }
}
