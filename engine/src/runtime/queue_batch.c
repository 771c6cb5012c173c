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
 * (queue.c). The output axes are found by asking the model for its output
 * shapes at two (B, S) pairs: an axis that follows B is the batch, one that
 * follows S the sequence, anything else must stay fixed. */
#include <string.h>

#include "queue_batch.h"

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
        x[i].shape[0] = B;
        x[i].shape[1] = S;
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
        int ok = p->rank >= 1 && p->rank == q->rank && o->elem > 0 && p->shape[0] == 2 &&
                 q->shape[0] == 3;
        o->per_token = ok && p->rank >= 2 && p->shape[1] == 3 && q->shape[1] == 2;
        o->row = 1;
        for (int d = o->per_token ? 2 : 1; ok && d < p->rank; d++) {
            ok = p->shape[d] == q->shape[d];
            o->shape[d] = p->shape[d];
            o->row *= p->shape[d];
        }
        if (!ok)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "queue: output %zu does not have the batch on its first axis (and the "
                            "sequence, if any, on its second): it cannot be cut per request",
                            k);
    }
    lay->d_out = lay->out[0].row;
    return MHA_OK;
}

/* Token ids [B, S] with masks and other ids [B, S] beside them. */
static mha_status queue_layout_tokens(const mha_model *model, const mha_model_info *info,
                                      queue_layout *lay, const mha_io_info *ins, mha_error *err) {
    int have_primary = 0, have_mask = 0;
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
    if ((rank != full && rank != full - 1) || (rank == full && input->shape[0] != 1)) {
        if (full == 3)
            return mha_fail(err, MHA_ERR_SHAPE,
                            "queue submit: one sequence is [S, %lld] or [1, S, %lld] (rank %d "
                            "given)",
                            (long long)lay->d_in, (long long)lay->d_in, rank);
        return mha_fail(err, MHA_ERR_SHAPE,
                        "queue submit: one sequence of token ids is [S] or [1, S] (rank %d given)",
                        rank);
    }
    int64_t s = input->shape[rank - full + 1];
    if (s < 1 || (full == 3 && input->shape[rank - 1] != lay->d_in))
        return mha_fail(err, MHA_ERR_SHAPE,
                        "queue submit: sequence of %lld x %lld, the model wants S >= 1 x %lld",
                        (long long)s, (long long)(full == 3 ? input->shape[rank - 1] : 1),
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
        if (batch) t->shape[d++] = 1;
        if (o->per_token) t->shape[d++] = S;
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
        for (int i = 0; i < n; i++) {
            char *dst = base + (size_t)i * item;
            const size_t used = (size_t)S[i] * tok;
            if (qi->fill == QUEUE_FILL_REQUEST) {
                memcpy(dst, x[i], used);
                memset(dst + used, 0, item - used);
            } else if (qi->fill == QUEUE_FILL_MASK) {
                queue_set(dst, qi->dtype, (size_t)S[i], qi->attend_value);
                queue_set(dst + used, qi->dtype, (size_t)(L - S[i]), !qi->attend_value);
            } else {
                memset(dst, 0, item);
            }
        }
        mha_tensor *t = &b->tin[k];
        memset(t, 0, sizeof *t);
        t->dtype = qi->dtype;
        t->rank = qi->row > 1 || lay->primary_rank == 3 ? 3 : 2;
        t->shape[0] = n;
        t->shape[1] = L;
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
        t->shape[0] = n;
        if (o->per_token) t->shape[1] = L;
        t->data = b->out[k];
    }
    return MHA_OK;
}

void queue_batch_take(const queue_layout *lay, const queue_batch *b, int i, int64_t L, int64_t S,
                      mha_tensor *y) {
    for (size_t k = 0; k < lay->n_out; k++) {
        const queue_output *o = &lay->out[k];
        const size_t tok = (size_t)o->row * o->elem;
        const size_t item = (size_t)(o->per_token ? L : 1) * tok;
        memcpy(y[k].data, (const char *)b->out[k] + (size_t)i * item,
               (size_t)(o->per_token ? S : 1) * tok);
    }
}

void queue_batch_free(queue_batch *b) {
    for (size_t k = 0; k < QUEUE_MAX_IO; k++) {
        mha_free(NULL, b->in[k]);
        mha_free(NULL, b->out[k]);
    }
}
