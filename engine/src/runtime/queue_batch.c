/* queue_batch.c -- the request queue's batches: which model input a request
 * gives and how the others are filled, and how a padded batch's outputs go
 * back to each request.
 *
 * A batch of n requests of lengths S_i is padded to L = max S_i:
 *
 *   primary input  X[i, 0:S_i] = request i's sequence, zeros after it
 *   masks          M[i, j] = attend for j < S_i, ignore after
 *   other ids      zeros (token type / segment ids: one segment)
 *   outputs        Y[i, 0:S_i, ...] (per token) or Y[i, ...] (per item)
 *
 * and mha_run gets kv_lengths[i] = S_i, so each request's keys are its own
 * (queue.c). A model taking its ids sequence first (mha_model_layout: the
 * tutorial language model's `src` [S, B]) gets X[0:S_i, i] and masks
 * likewise. The output axes are found by asking the model for its output
 * shapes at two (B, S) pairs: an axis that follows B is the batch, one that
 * follows S the sequence (before or after the batch), anything else must
 * stay fixed. */
#include <string.h>

#include "queue_batch.h"
#include "tensor.h"

static int queue_is_int(mha_dtype t) {
    return t == MHA_DTYPE_INT64 || t == MHA_DTYPE_INT32;
}

/* The model's output shapes for a batch of B sequences of S. */
static mha_status queue_probe_outputs(const mha_model *model, const queue_layout *lay,
                                      const mha_io_info *ins, int64_t B, int64_t S, mha_tensor *y,
                                      mha_error *err) {
    mha_tensor x[QUEUE_MAX_IO];
    int64_t widest = 1;
    for (size_t i = 0; i < lay->n_in; i++)
        if (lay->in[i].row > widest) widest = lay->in[i].row;
    size_t bytes = (size_t)(B * S * widest) * 8;
    void *zeros = mha_calloc(NULL, 1, bytes);
    if (!zeros) return mha_fail(err, MHA_ERR_NO_MEMORY, "queue: out of memory");
    for (size_t i = 0; i < lay->n_in; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i].dtype = ins[i].dtype;
        x[i].rank = ins[i].rank;
        x[i].shape[lay->seq_first] = B;
        x[i].shape[!lay->seq_first] = S;
        if (ins[i].rank == 3) x[i].shape[2] = lay->in[i].row;
        x[i].data = zeros;
    }
    memset(y, 0, sizeof(mha_tensor) * lay->n_model_out);
    mha_status st = mha_model_output_shapes(model, x, lay->n_in, y, lay->n_model_out, err);
    mha_free(NULL, zeros);
    return st;
}

/* Which axes of each output follow the batch and the sequence. */
static mha_status queue_layout_outputs(const mha_model *model, queue_layout *lay,
                                       const mha_io_info *ins, mha_error *err) {
    mha_tensor a[QUEUE_MAX_IO], b[QUEUE_MAX_IO];
    mha_status st = queue_probe_outputs(model, lay, ins, 2, 3, a, err);
    if (st == MHA_OK) st = queue_probe_outputs(model, lay, ins, 3, 2, b, err);
    if (st != MHA_OK) return st;
    for (size_t k = 0; k < lay->n_out; k++) {
        queue_output *o = &lay->out[k];
        const mha_tensor *p = &a[k], *q = &b[k];
        o->dtype = p->dtype;
        o->elem = mha_dtype_size(p->dtype);
        o->rank = p->rank;
        /* [B, S, ...] (or [B, ...] per item) or [S, B, ...]: at (2, 3) then (3, 2) */
        const int two = p->rank >= 2 && p->rank == q->rank && o->elem > 0;
        o->seq_first =
            two && p->shape[0] == 3 && q->shape[0] == 2 && p->shape[1] == 2 && q->shape[1] == 3;
        int ok = p->rank >= 1 && p->rank == q->rank && o->elem > 0 &&
                 ((p->shape[0] == 2 && q->shape[0] == 3) || o->seq_first);
        o->per_token = o->seq_first || (ok && two && p->shape[1] == 3 && q->shape[1] == 2);
        o->row = 1;
        for (int d = o->per_token ? 2 : 1; ok && d < p->rank; d++) {
            ok = p->shape[d] == q->shape[d];
            o->shape[d] = p->shape[d];
            o->row *= p->shape[d];
        }
        mha_io_info io;
        if (!ok)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: output %zu ('%s') does not have the batch on its first axis "
                            "(and the sequence, if any, on its second; or the sequence then the "
                            "batch): it cannot be cut per request",
                            k, mha_model_output(model, k, &io) == MHA_OK ? io.name : "?");
    }
    lay->d_out = lay->out[0].row;
    return MHA_OK;
}

/* Whether input i has the ids' batch axis symbol where the ids have their
 * sequence, or the sequence's where they have the batch (a [S, S] mask
 * beside [B, S] ids): its axes are not the ids'. */
static int queue_axes_swapped(const mha_model *model, long ids, size_t i) {
    const int a0 = mha_model_input_axis_symbol(model, (size_t)ids, 0),
              a1 = mha_model_input_axis_symbol(model, (size_t)ids, 1),
              b0 = mha_model_input_axis_symbol(model, i, 0),
              b1 = mha_model_input_axis_symbol(model, i, 1);
    return (b0 >= 0 && b0 == a1) || (b1 >= 0 && b1 == a0);
}

/* Token ids [B, S] (or [S, B]) with masks and other ids beside them. */
static mha_status queue_layout_tokens(const mha_model *model, const mha_model_info *info,
                                      queue_layout *lay, const mha_io_info *ins, mha_error *err) {
    int have_primary = 0, have_mask = 0;
    long ids = -1;
    for (size_t i = 0; i < lay->n_in && ids < 0; i++)
        if (ins[i].role == MHA_ROLE_TOKEN_IDS && ins[i].rank == 2 && queue_is_int(ins[i].dtype))
            ids = (long)i;
    for (size_t i = 0; i < lay->n_in; i++) {
        const mha_io_info *io = &ins[i];
        queue_input *qi = &lay->in[i];
        qi->dtype = io->dtype;
        qi->elem = mha_dtype_size(io->dtype);
        qi->row = 1;
        if (io->rank != 2)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: input '%s' is not [batch, sequence]: a batch cannot be padded",
                            io->name);
        if (ids >= 0 && queue_axes_swapped(model, ids, i))
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: input '%s' is not %s like the token ids '%s' (a [sequence, "
                            "sequence] mask?): a batch cannot be padded",
                            io->name, lay->seq_first ? "[sequence, batch]" : "[batch, sequence]",
                            ins[ids].name);
        if (io->role == MHA_ROLE_TOKEN_IDS && queue_is_int(io->dtype)) {
            qi->fill = have_primary ? QUEUE_FILL_ZERO : QUEUE_FILL_REQUEST;
            if (!have_primary) lay->primary = i;
            have_primary = 1;
        } else if (io->role == MHA_ROLE_ATTN_MASK || io->role == MHA_ROLE_KEY_PADDING_MASK) {
            qi->fill = QUEUE_FILL_MASK;
            qi->attend_value =
                !(io->role == MHA_ROLE_KEY_PADDING_MASK && info->key_padding_true_means_ignore);
            have_mask = 1;
        } else {
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: input '%s' (%s) is neither token ids nor a mask", io->name,
                            mha_io_role_name(io->role));
        }
    }
    if (!have_primary)
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED, "queue: the model takes no token ids");
    /* padded keys are kept out by kv_lengths in the fused attention steps
     * only; an interpreted layer sees them unless a mask hides them */
    for (size_t l = 0; !have_mask && l < mha_model_num_layers(model); l++) {
        mha_layer_info li;
        if (mha_model_layer(model, l, &li) == MHA_OK && !li.recognised)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: attention layer '%s' is interpreted and the model has no "
                            "mask input: padding would reach its keys",
                            li.core);
    }
    lay->primary_rank = 2;
    lay->d_in = 1;
    return MHA_OK;
}

mha_status queue_layout_make(const mha_model *model, queue_layout *lay, mha_error *err) {
    memset(lay, 0, sizeof *lay);
    mha_model_info info;
    mha_status st = mha_model_get_info(model, &info);
    if (st != MHA_OK) return mha_fail(err, st, "queue: cannot read the model's description");
    if (info.num_inputs < 1 || info.num_inputs > QUEUE_MAX_IO || info.num_outputs < 1)
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "queue: the model has %zu inputs and %zu outputs (1..%d inputs served)",
                        info.num_inputs, info.num_outputs, QUEUE_MAX_IO);
    mha_io_info ins[QUEUE_MAX_IO];
    for (size_t i = 0; i < info.num_inputs; i++)
        if (mha_model_input(model, i, &ins[i]) != MHA_OK)
            return mha_fail(err, MHA_ERR_INTERNAL, "queue: cannot read input %zu", i);
    lay->n_in = info.num_inputs;
    const int plan = strcmp(info.form, "plan") == 0;
    const mha_layout layout = mha_model_layout(model);
    if (layout == MHA_LAYOUT_UNKNOWN)
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "queue: which axis of the token ids '%s' is the batch cannot be told (one "
                        "item's tokens change other items' outputs along either axis): a batch "
                        "cannot be padded",
                        ins[0].name);
    lay->seq_first = layout == MHA_LAYOUT_SEQ_FIRST;
    /* a layer's extra outputs (present keys, weights) are not returned;
     * a plan computes all of its outputs, so all are cut */
    lay->n_out = plan ? info.num_outputs : 1;
    lay->n_model_out = info.num_outputs;
    if (lay->n_model_out > QUEUE_MAX_IO)
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "queue: the model has %zu outputs (%d at most)", info.num_outputs,
                        QUEUE_MAX_IO);
    const mha_io_info *x = &ins[0];
    if (info.num_inputs == 1 && x->role == MHA_ROLE_QUERY && x->rank == 3 &&
        x->dtype == MHA_DTYPE_FLOAT32 && x->shape[2] > 0) {
        lay->in[0].fill = QUEUE_FILL_REQUEST;
        lay->in[0].dtype = MHA_DTYPE_FLOAT32;
        lay->in[0].elem = sizeof(float);
        lay->in[0].row = x->shape[2];
        lay->primary_rank = 3;
        lay->d_in = x->shape[2];
    } else if (info.num_inputs == 1 && x->role == MHA_ROLE_QUERY && x->rank == 3) {
        /* a layer of another float type (a float16 model runs as a plan):
         * its sequences are not token ids, whatever the plan says */
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "queue: input '%s' is a %s sequence [B, S, %lld]: a layer is served on "
                        "float32 sequences only",
                        x->name, mha_dtype_name(x->dtype), (long long)x->shape[2]);
    } else if (plan) {
        st = queue_layout_tokens(model, &info, lay, ins, err);
        if (st != MHA_OK) return st;
    } else {
        return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                        "queue: the model must take one float32 query sequence [B, S, D] and "
                        "nothing else (self-attention), or token ids [B, S] (a whole model); it "
                        "has %zu inputs",
                        info.num_inputs);
    }
    return queue_layout_outputs(model, lay, ins, err);
}

mha_status queue_layout_check(const queue_layout *lay, const mha_tensor *input, int64_t *S,
                              mha_error *err) {
    const queue_input *p = &lay->in[lay->primary];
    const int full = lay->primary_rank, rank = input->rank;
    if (input->dtype != p->dtype)
        return mha_fail(err, MHA_ERR_DTYPE, "queue submit: the sequence must be %s, not %s",
                        mha_dtype_name(p->dtype), mha_dtype_name(input->dtype));
    const int sf = lay->seq_first; /* the batch axis of 1 on axis 1: [S, 1(, D)] */
    /* the shape given, as messages show it (a rank out of range unread) */
    char given[160];
    tensor_shape_str(rank, input->shape, given, sizeof given);
    if ((rank != full && rank != full - 1) || (rank == full && input->shape[sf] != 1)) {
        if (full == 3)
            return mha_fail(err, MHA_ERR_SHAPE,
                            "queue submit: one sequence is [S, %lld] or %s, not %s",
                            (long long)lay->d_in, sf ? "[S, 1, D]" : "[1, S, D]", given);
        return mha_fail(err, MHA_ERR_SHAPE,
                        "queue submit: one sequence of token ids is [S] or %s, not %s",
                        sf ? "[S, 1]" : "[1, S]", given);
    }
    int64_t s = rank == full && !sf ? input->shape[1] : input->shape[0];
    if (full != 3 && s < 1)
        return mha_fail(err, MHA_ERR_SHAPE,
                        "queue submit: token ids %s hold %lld tokens; the model wants at least 1",
                        given, (long long)s);
    if (s < 1 || (full == 3 && input->shape[rank - 1] != lay->d_in))
        return mha_fail(err, MHA_ERR_SHAPE,
                        "queue submit: sequence %s, the model wants S >= 1 tokens of %lld", given,
                        (long long)lay->d_in);
    *S = s;
    return MHA_OK;
}

void queue_layout_request_outputs(const queue_layout *lay, int64_t S, int input_rank,
                                  mha_tensor *y) {
    const int batch = input_rank == lay->primary_rank; /* the request kept its batch axis */
    for (size_t k = 0; k < lay->n_out; k++) {
        const queue_output *o = &lay->out[k];
        mha_tensor *t = &y[k];
        memset(t, 0, sizeof *t);
        t->dtype = o->dtype;
        int d = 0;
        if (batch && !o->seq_first) t->shape[d++] = 1;
        if (o->per_token) t->shape[d++] = S;
        if (batch && o->seq_first) t->shape[d++] = 1;
        for (int a = o->per_token ? 2 : 1; a < o->rank; a++)
            t->shape[d++] = o->shape[a];
        t->rank = d;
    }
}

static int queue_grow(void **buf, size_t *cap, size_t want) {
    if (want <= *cap) return 1;
    void *b = mha_malloc(NULL, want);
    if (!b) return 0;
    mha_free(NULL, *buf);
    *buf = b;
    *cap = want;
    return 1;
}

/* n elements of t set to v (0 or 1). */
static void queue_set(void *dst, mha_dtype t, size_t n, int v) {
    for (size_t j = 0; j < n; j++) {
        switch (t) {
        case MHA_DTYPE_INT64:
            ((int64_t *)dst)[j] = v;
            break;
        case MHA_DTYPE_INT32:
            ((int32_t *)dst)[j] = v;
            break;
        case MHA_DTYPE_FLOAT32:
            ((float *)dst)[j] = (float)v;
            break;
        default: /* bool, uint8, int8 */
            ((uint8_t *)dst)[j] = (uint8_t)v;
            break;
        }
    }
}

mha_status queue_batch_fill(const queue_layout *lay, queue_batch *b, int n, int64_t L,
                            const void *const *x, const int64_t *S, mha_error *err) {
    for (size_t k = 0; k < lay->n_in; k++) {
        const queue_input *qi = &lay->in[k];
        const size_t tok = (size_t)qi->row * qi->elem; /* bytes per token */
        const size_t item = (size_t)L * tok;
        if (!queue_grow(&b->in[k], &b->in_cap[k], (size_t)n * item))
            return mha_fail(err, MHA_ERR_NO_MEMORY, "queue: out of memory for a batch of %d x %lld",
                            n, (long long)L);
        char *base = b->in[k];
        /* token j of request i: [n, L] at i L + j, sequence first [L, n] at j n + i */
        const size_t i_step = lay->seq_first ? tok : item, j_step = lay->seq_first ? n * tok : tok;
        for (int i = 0; i < n; i++)
            for (int64_t j = 0; j < L; j++) {
                char *dst = base + (size_t)i * i_step + (size_t)j * j_step;
                if (qi->fill == QUEUE_FILL_REQUEST && j < S[i])
                    memcpy(dst, (const char *)x[i] + (size_t)j * tok, tok);
                else if (qi->fill == QUEUE_FILL_MASK)
                    queue_set(dst, qi->dtype, 1, j < S[i] ? qi->attend_value : !qi->attend_value);
                else
                    memset(dst, 0, tok);
            }
        mha_tensor *t = &b->tin[k];
        memset(t, 0, sizeof *t);
        t->dtype = qi->dtype;
        t->rank = qi->row > 1 || lay->primary_rank == 3 ? 3 : 2;
        t->shape[lay->seq_first] = n;
        t->shape[!lay->seq_first] = L;
        if (t->rank == 3) t->shape[2] = qi->row;
        t->data = base;
    }
    for (size_t k = 0; k < lay->n_out; k++) {
        const queue_output *o = &lay->out[k];
        const size_t item = (size_t)(o->per_token ? L : 1) * (size_t)o->row * o->elem;
        if (!queue_grow(&b->out[k], &b->out_cap[k], (size_t)n * item))
            return mha_fail(err, MHA_ERR_NO_MEMORY, "queue: out of memory for a batch of %d x %lld",
                            n, (long long)L);
        mha_tensor *t = &b->tout[k];
        memset(t, 0, sizeof *t);
        t->dtype = o->dtype;
        t->rank = o->rank;
        memcpy(t->shape, o->shape, sizeof t->shape);
        t->shape[o->seq_first] = n;
        if (o->per_token) t->shape[!o->seq_first] = L;
        t->data = b->out[k];
    }
    b->n = n;
    return MHA_OK;
}

const char *queue_output_at(const queue_layout *lay, const queue_batch *b, size_t k, int i,
                            int64_t L, int64_t s) {
    const queue_output *o = &lay->out[k];
    const size_t tok = (size_t)o->row * o->elem;
    const int64_t at = !o->per_token ? i : o->seq_first ? s * b->n + i : (int64_t)i * L + s;
    return (const char *)b->out[k] + (size_t)at * tok;
}

void queue_batch_take(const queue_layout *lay, const queue_batch *b, int i, int64_t L, int64_t S,
                      mha_tensor *y) {
    for (size_t k = 0; k < lay->n_out; k++) {
        const queue_output *o = &lay->out[k];
        const size_t tok = (size_t)o->row * o->elem;
        if (!o->seq_first) { /* the request's rows in one piece */
            memcpy(y[k].data, queue_output_at(lay, b, k, i, L, 0),
                   (size_t)(o->per_token ? S : 1) * tok);
            continue;
        }
        for (int64_t s = 0; s < S; s++)
            memcpy((char *)y[k].data + (size_t)s * tok, queue_output_at(lay, b, k, i, L, s), tok);
    }
}

void queue_batch_free(queue_batch *b) {
    for (size_t k = 0; k < QUEUE_MAX_IO; k++) {
        mha_free(NULL, b->in[k]);
        mha_free(NULL, b->out[k]);
    }
}
