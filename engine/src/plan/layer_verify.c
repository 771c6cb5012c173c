/* verify.c -- layer_verify: trust, then verify. The recognised layer is run
 * with the reference forward pass and the original graph with the reference
 * interpreter, on the same small seeded random inputs, and their outputs
 * must agree. Masks get random patterns that keep at least one attended key
 * per query row (key 0, which a top-left causal mask never hides), so mask
 * polarity, scale placement and head order all show in the output. When the
 * graph has dynamic axes it is checked at two sets of sizes. */
#include "layer_bind.h"
#include "layer_reference.h"
#include "recognize_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* max |got - want| relative to the output's scale (at least 1). */
#define VERIFY_TOLERANCE 1e-4

static void verify_fill_input(const layer *L, const layer_io *io, tensor *t, int64_t Sq,
                              int64_t skv_hint, uint64_t *seed) {
    int64_t n = tensor_numel(t);
    int64_t last = t->rank > 0 ? t->dims[t->rank - 1] : 1;
    if (io->role == MHA_ROLE_POSITION_IDS || io->role == MHA_ROLE_ROTARY_COS ||
        io->role == MHA_ROLE_ROTARY_SIN) {
        /* positions other than 0 .. S - 1, different per batch item */
        rz_fill_rotary_input(L, io, t, 1, L->rotary_inv_freq ? 0 : L->rotary_n_pos, 0);
        return;
    }
    if (io->role == MHA_ROLE_NONPAD_KV_SEQLEN) {
        /* key lengths: batch item b keeps Skv - b keys (at least Sq and 1,
         * so the bottom-right frontier is exercised without empty rows) */
        int64_t skv = skv_hint;
        for (int64_t b = 0; b < n; b++) {
            int64_t len = skv - b;
            if (len < Sq) len = Sq;
            if (len > skv) len = skv;
            if (len < 1) len = 1;
            tensor_set_f64(t, b, (double)len);
        }
        return;
    }
    if (io->role == MHA_ROLE_KEY_PADDING_MASK && t->rank == 2) {
        /* batch item b pads its last min(b + 1, Skv - 1) keys; in a causal
         * layer the last item pads its first keys instead, so that its
         * first query rows see only padding, as a left-padded batch's do:
         * where finite and -inf causal masks part ways, and where a graph
         * hiding with -inf gives NaN (its softmax over -inf alone) */
        int64_t skv = t->dims[1];
        int finite_pad = 0;
        for (int v = 0; v < 2; v++)
            finite_pad |= L->kpm_valued && L->kpm_add[v] <= -1e30f && isfinite(L->kpm_add[v]);
        /* (a position bias other than ALiBi is not folded with a finite
         * padding: exec_fold_causal) */
        const int finite_causal_pad = L->causal && !(finite_pad && L->bias);
        /* with a KV cache of P = Skv - Sq keys, row 0 sees keys 0 .. P */
        const int64_t past = layer_has_cache(L) && skv > Sq ? skv - Sq : 0;
        for (int64_t b = 0; b < t->dims[0]; b++) {
            int64_t pad = b + 1 < skv - 1 ? b + 1 : skv - 1;
            /* a sliding window shows the last row only its last keys: keep
             * one of them */
            if (L->has_left_window && pad > L->left_window)
                pad = L->left_window > 0 ? L->left_window : 0;
            const int left = finite_causal_pad && b > 0 && b == t->dims[0] - 1;
            if (left && pad < past + 1) pad = past + 1 < skv - 1 ? past + 1 : skv - 1;
            for (int64_t j = 0; j < skv; j++) {
                int padded = left ? j < pad : j >= skv - pad;
                tensor_set_f64(t, b * skv + j, (L->kpm_true_means_ignore ? padded : !padded));
            }
        }
        return;
    }
    if (io->role == MHA_ROLE_ATTN_MASK && L->attn_valued) {
        /* 0 / 1 (the attending value for key 0 always) */
        for (int64_t i = 0; i < n; i++) {
            int attend = (i % last) == 0 || (rz_rand(seed) >> 62) != 0;
            tensor_set_f64(t, i, attend != L->kpm_true_means_ignore ? 1.0 : 0.0);
        }
        return;
    }
    if (t->dtype == MHA_DTYPE_INT32 || t->dtype == MHA_DTYPE_INT64) {
        /* an integer 0/1 mask (com.microsoft): key 0 always attended */
        for (int64_t i = 0; i < n; i++)
            tensor_set_f64(t, i, ((i % last) == 0 || (rz_rand(seed) >> 62) != 0) ? 1.0 : 0.0);
        return;
    }
    /* a layer of a graph's softmax (softmax_nan): the mask's last row hides
     * every key, where the graph gives NaN */
    const int64_t hide_from = io->role == MHA_ROLE_ATTN_MASK && L->softmax_nan ? n - last : n;
    if (t->dtype == MHA_DTYPE_BOOL) {
        /* True = attend, or True = hidden (attn_bool_ignore_true) */
        unsigned char *m = t->data;
        const int flip = io->role == MHA_ROLE_ATTN_MASK && L->attn_bool_ignore_true;
        for (int64_t i = 0; i < n; i++) {
            const int attend = i < hide_from && ((i % last) == 0 || (rz_rand(seed) >> 62) != 0);
            m[i] = (unsigned char)(attend != flip);
        }
        return;
    }
    /* floats of any width: random values, rounded to the tensor's type */
    for (int64_t i = 0; i < n; i++) {
        float x;
        rz_fill_random(&x, 1, seed);
        if (io->role == MHA_ROLE_ATTN_MASK &&
            (i >= hide_from || ((i % last) != 0 && (rz_rand(seed) & 3) == 0)))
            x = -INFINITY;
        tensor_set_f64(t, i, (double)x);
    }
}

static void verify_as_mha(const tensor *t, mha_tensor *m) {
    memset(m, 0, sizeof *m);
    m->dtype = t->dtype;
    m->rank = t->rank;
    for (int i = 0; i < t->rank; i++)
        m->shape[i] = t->dims[i];
    m->data = t->data;
}

static int verify_has_dynamic(const layer *L) {
    for (size_t i = 0; i < L->n_inputs; i++)
        for (int ax = 0; ax < L->inputs[i].rank; ax++)
            if (L->inputs[i].dims[ax] < 0) return 1;
    return 0;
}

static mha_status verify_once(const mha_alloc_ctx *a, const ir_graph *g, const layer *L,
                              rz_sizes sz, uint64_t seed, mha_error *err) {
    size_t ni = L->n_inputs, no = L->n_outputs;
    int self = L->has_proj;
    for (size_t i = 0; i < ni; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_VALUE) self = 0;
    mha_status st = MHA_OK;
    int64_t(*dims)[MHA_MAX_RANK] = mha_calloc(a, ni ? ni : 1, sizeof *dims);
    tensor **in = mha_calloc(a, ni ? ni : 1, sizeof *in);
    mha_tensor *min = mha_calloc(a, ni ? ni : 1, sizeof *min);
    mha_tensor *mout = mha_calloc(a, no ? no : 1, sizeof *mout);
    float **outbuf = mha_calloc(a, no ? no : 1, sizeof *outbuf);
    tensor **values = NULL;
    if (!dims || !in || !min || !mout || !outbuf) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "verify: out of memory");
        goto done;
    }
    st = rz_probe_dims(L, self, &sz, dims, err);
    for (size_t i = 0; i < ni && st == MHA_OK; i++) {
        st = tensor_new(a, L->inputs[i].dtype, L->inputs[i].rank, dims[i], &in[i], err);
        if (st != MHA_OK) break;
        verify_fill_input(L, &L->inputs[i], in[i], sz.Sq, sz.Skv, &seed);
        verify_as_mha(in[i], &min[i]);
    }
    if (st != MHA_OK) goto done;

    st = interp_run(a, g, (const tensor *const *)in, &values, err);
    if (st != MHA_OK) {
        mha_error_prefix(err, "verify: evaluating the graph");
        goto done;
    }
    st = layer_output_shapes(L, min, ni, mout, no, err);
    for (size_t k = 0; k < no && st == MHA_OK; k++) {
        int64_t n = mha_tensor_numel(&mout[k]);
        size_t es = mha_dtype_size(mout[k].dtype);
        outbuf[k] = mha_calloc(a, n > 0 ? (size_t)n : 1, es ? es : sizeof(float));
        if (!outbuf[k]) st = mha_fail(err, MHA_ERR_NO_MEMORY, "verify: out of memory");
        mout[k].data = outbuf[k];
    }
    if (st == MHA_OK) st = layer_reference_forward(a, L, min, ni, mout, no, err);
    if (st != MHA_OK) {
        mha_error_prefix(err, "verify: running the recognised layer");
        goto done;
    }

    for (size_t k = 0; k < no && st == MHA_OK; k++) {
        const tensor *want = values[g->outputs[k]];
        const mha_tensor *got = &mout[k];
        char s1[96], s2[96];
        if (!want || want->dtype != got->dtype || want->rank != got->rank ||
            memcmp(want->dims, got->shape, sizeof(int64_t) * (size_t)got->rank) != 0) {
            st = mha_fail(err, MHA_ERR_MODEL_VERIFY,
                          "verify: output '%s' is %s in the graph but %s from the recognised "
                          "layer",
                          L->outputs[k].name,
                          want ? tensor_shape_str(want->rank, want->dims, s1, sizeof s1) : "?",
                          tensor_shape_str(got->rank, got->shape, s2, sizeof s2));
            break;
        }
        /* the graph and the layer round to a narrow type independently:
         * allow a few of its units in the last place */
        double tol = want->dtype == MHA_DTYPE_FLOAT16    ? 4e-3
                     : want->dtype == MHA_DTYPE_BFLOAT16 ? 3e-2
                                                         : VERIFY_TOLERANCE;
        tensor gt;
        memset(&gt, 0, sizeof gt);
        gt.dtype = got->dtype;
        gt.rank = got->rank;
        gt.data = got->data;
        int64_t n = tensor_numel(want);
        double scale = 1.0, maxerr = 0.0, w_at = 0.0, o_at = 0.0;
        int64_t at = 0;
        for (int64_t i = 0; i < n; i++) {
            double w = tensor_get_f64(want, i);
            if (isfinite(w)) scale = fmax(scale, fabs(w));
        }
        for (int64_t i = 0; i < n; i++) {
            double w = tensor_get_f64(want, i), o = tensor_get_f64(&gt, i), e;
            if (isnan(w) || isnan(o))
                e = (isnan(w) && isnan(o)) ? 0.0 : INFINITY;
            else if (isinf(w) || isinf(o))
                e = w == o ? 0.0 : INFINITY;
            else
                e = fabs(o - w);
            if (e > maxerr) {
                maxerr = e;
                at = i;
            }
        }
        if (n > 0) {
            w_at = tensor_get_f64(want, at);
            o_at = tensor_get_f64(&gt, at);
        }
        if (maxerr / scale > tol)
            st = mha_fail(err, MHA_ERR_MODEL_VERIFY,
                          "verify: output '%s' of the recognised %s layer differs from the "
                          "graph by %.3g (relative to output scale %.3g; tolerance %g) at "
                          "element %lld (graph %g, layer %g); probe batch %lld, query length "
                          "%lld, key length %lld, past %lld",
                          L->outputs[k].name, L->form ? L->form : "?", maxerr / scale, scale, tol,
                          (long long)at, w_at, o_at, (long long)sz.B, (long long)sz.Sq,
                          (long long)sz.Skv, (long long)sz.P);
    }
done:
    if (values) interp_values_free(g, values);
    for (size_t i = 0; in && i < ni; i++)
        tensor_free(in[i]);
    for (size_t k = 0; outbuf && k < no; k++)
        mha_free(a, outbuf[k]);
    mha_free(a, dims);
    mha_free(a, in);
    mha_free(a, min);
    mha_free(a, mout);
    mha_free(a, outbuf);
    return st;
}

mha_status layer_verify(const mha_alloc_ctx *a, const ir_graph *g, const layer *L, mha_error *err) {
    if (!g || !L) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "layer_verify: NULL argument");
    if (L->n_inputs != g->n_inputs || L->n_outputs != g->n_outputs)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "layer_verify: the layer has %zu inputs / %zu outputs, the graph %zu / "
                        "%zu",
                        L->n_inputs, L->n_outputs, g->n_inputs, g->n_outputs);
    /* a KV cache: a past of 2 positions, then an empty one (the first step
     * of generation passes a zero-length past) */
    rz_sizes first = {2, 3, 5, 2}, second = {3, 4, 2, 0};
    /* fixed lengths (a ViT's 197 tokens): a batch item is a forward pass
     * at full size, so one check, a batch of 2 -- two items to mix up (a
     * batch of 1 would not tell [S, B, D] from [B, S, D]); the batch axis
     * is the only size, and nothing else about it differs between sizes */
    if (rz_batch_only(L)) {
        first.B = 2;
        return verify_once(a, g, L, first, 0x7665726966790001ull, err);
    }
    mha_status st = verify_once(a, g, L, first, 0x7665726966790001ull, err);
    if (st != MHA_OK || !verify_has_dynamic(L)) return st;
    return verify_once(a, g, L, second, 0x7665726966790002ull, err);
}
