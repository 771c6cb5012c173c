/* interp_einsum.c -- Einsum in the reference interpreter, and the parser of
 * its equations the recogniser shares. Explicit equations of letters
 * ("abc,cde->abde"), each letter at most once per operand, no implicit
 * output; the interpreter also takes an ellipsis ("...qhd,...khd->...hqk",
 * LongT5's blocks), written out as letters for the operands' ranks (its
 * axes must then agree in size: no broadcasting of 1). Plain loops, accumulated in double:
 *
 *   for every output element (its letters' indices):
 *       Y = sum over the contracted letters' indices of prod_k X_k[...]
 */
#include "interp_internal.h"

#include <string.h>

/* Products one Einsum may evaluate (outputs x terms of each sum): the
 * probe's projections and attention products stay far below it. */
#define INTERP_EINSUM_MAX_WORK ((int64_t)1 << 32)

/* Letter slot 0..51 of 'a'..'z', 'A'..'Z', or -1. */
static int einsum_slot(char ch) {
    if (ch >= 'a' && ch <= 'z') return ch - 'a';
    if (ch >= 'A' && ch <= 'Z') return 26 + (ch - 'A');
    return -1;
}

/* Copies the letters of one term [from, to) into out (rank <= MHA_MAX_RANK,
 * each letter once); 0 when it is not such a term. */
static int einsum_term(const char *from, const char *to, char *out, int *rank) {
    int r = 0;
    unsigned char seen[52] = {0};
    for (const char *p = from; p < to; p++) {
        if (*p == ' ') continue;
        int s = einsum_slot(*p);
        if (s < 0 || seen[s] || r == MHA_MAX_RANK) return 0;
        seen[s] = 1;
        out[r++] = *p;
    }
    out[r] = '\0';
    *rank = r;
    return 1;
}

int interp_einsum_parse(const char *eq, interp_einsum *e) {
    memset(e, 0, sizeof *e);
    if (!eq) return 0;
    const char *arrow = strstr(eq, "->");
    if (!arrow || strstr(arrow + 2, "->")) return 0;
    const char *p = eq;
    while (p <= arrow) {
        const char *end = p;
        while (end < arrow && *end != ',')
            end++;
        if (e->n_in == INTERP_EINSUM_MAX_IN) return 0;
        if (!einsum_term(p, end, e->in[e->n_in], &e->rank_in[e->n_in])) return 0;
        e->n_in++;
        if (end == arrow) break;
        p = end + 1;
    }
    if (!einsum_term(arrow + 2, arrow + 2 + strlen(arrow + 2), e->out, &e->rank_out)) return 0;
    /* every output letter comes from an input */
    for (int k = 0; k < e->rank_out; k++) {
        int found = 0;
        for (int i = 0; i < e->n_in && !found; i++)
            found = strchr(e->in[i], e->out[k]) != NULL;
        if (!found) return 0;
    }
    return e->n_in > 0;
}

/* eq with each "..." written out for the operands' ranks (numpy's rule:
 * an operand's ellipsis stands for its axes the letters leave, aligned
 * from the right across operands; the output's for them all): letters the
 * equation does not use, into out. 0 when eq has no ellipsis or it cannot
 * be written so (too few axes, no free letters, an implicit output). */
static int einsum_expand_ellipsis(const char *eq, const interp_ctx *c, char *out, size_t cap) {
    const char *arrow = eq ? strstr(eq, "->") : NULL;
    if (!arrow || !strstr(eq, "...")) return 0;
    unsigned char used[52] = {0};
    for (const char *p = eq; *p; p++)
        if (einsum_slot(*p) >= 0) used[einsum_slot(*p)] = 1;
    /* each input term's ellipsis size */
    int ell[INTERP_EINSUM_MAX_IN], n = 0, max_ell = 0;
    for (const char *p = eq; p < arrow; n++) {
        const char *end = p;
        int letters = 0, has = 0;
        for (; end < arrow && *end != ','; end++) {
            letters += einsum_slot(*end) >= 0;
            has |= *end == '.';
        }
        const tensor *x = interp_in(c, (size_t)n);
        if (n == INTERP_EINSUM_MAX_IN || !x) return 0;
        ell[n] = has ? x->rank - letters : 0;
        if (ell[n] < 0) return 0;
        if (ell[n] > max_ell) max_ell = ell[n];
        p = end < arrow ? end + 1 : arrow;
    }
    char fresh[MHA_MAX_RANK];
    for (int s = 51, k = max_ell - 1; k >= 0; s--) {
        if (s < 0 || max_ell > MHA_MAX_RANK) return 0;
        if (!used[s]) fresh[k--] = (char)(s < 26 ? 'a' + s : 'A' + (s - 26));
    }
    size_t o = 0;
    int term = 0;
    for (const char *p = eq; *p; p++) {
        if (p == arrow) term = -1; /* the output from here */
        if (*p == ',') term++;
        if (strncmp(p, "...", 3) != 0) {
            if (o + 1 >= cap) return 0;
            out[o++] = *p;
            continue;
        }
        const int k = term < 0 ? max_ell : ell[term];
        for (int j = max_ell - k; j < max_ell; j++) {
            if (o + 1 >= cap) return 0;
            out[o++] = fresh[j];
        }
        p += 2;
    }
    out[o] = '\0';
    return 1;
}

mha_status interp_op_einsum(interp_ctx *c) {
    mha_status st = interp_check_arity(c, 1, INTERP_EINSUM_MAX_IN, 1, 1);
    if (st != MHA_OK) return st;
    const ir_attr *at = ir_node_attr(c->n, "equation");
    interp_einsum e;
    char expanded[256];
    const char *eq = at && at->type == IR_ATTR_STRING ? at->s : NULL;
    if (einsum_expand_ellipsis(eq, c, expanded, sizeof expanded)) eq = expanded;
    if (!eq || !interp_einsum_parse(eq, &e))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "equation '%s' is not supported (explicit letters or an "
                           "ellipsis: \"abc,cde->abde\", \"...qd,...kd->...qk\")",
                           at && at->s ? at->s : "");
    if ((size_t)e.n_in != c->n_in)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "the equation has %d operands, the node %zu",
                           e.n_in, c->n_in);
    /* sizes of the letters, and each operand's stride per letter */
    int64_t size[52];
    int64_t stride[INTERP_EINSUM_MAX_IN][52];
    for (int s = 0; s < 52; s++)
        size[s] = -1;
    memset(stride, 0, sizeof stride);
    const tensor *X[INTERP_EINSUM_MAX_IN];
    char sh[INTERP_SHAPE_BUF];
    for (int i = 0; i < e.n_in; i++) {
        st = interp_in_req(c, (size_t)i, &X[i]);
        if (st != MHA_OK) return st;
        if (X[i]->dtype != MHA_DTYPE_FLOAT32 || X[i]->rank != e.rank_in[i])
            return interp_fail(c, MHA_ERR_SHAPE, "operand %d is %s %s for the term '%s'", i,
                               mha_dtype_name(X[i]->dtype), interp_shape(X[i], sh), e.in[i]);
        int64_t str = 1;
        for (int ax = X[i]->rank - 1; ax >= 0; ax--) {
            int s = einsum_slot(e.in[i][ax]);
            if (size[s] >= 0 && size[s] != X[i]->dims[ax])
                return interp_fail(c, MHA_ERR_SHAPE, "letter '%c' has sizes %lld and %lld",
                                   e.in[i][ax], (long long)size[s], (long long)X[i]->dims[ax]);
            size[s] = X[i]->dims[ax];
            stride[i][s] = str;
            str *= X[i]->dims[ax];
        }
    }
    int64_t dims[MHA_MAX_RANK];
    for (int k = 0; k < e.rank_out; k++)
        dims[k] = size[einsum_slot(e.out[k])];
    /* the contracted letters: in an input, not in the output */
    int sum_slots[52], n_sum = 0;
    for (int s = 0; s < 52; s++) {
        char ch = (char)(s < 26 ? 'a' + s : 'A' + (s - 26));
        if (size[s] >= 0 && !strchr(e.out, ch)) sum_slots[n_sum++] = s;
    }
    /* the work: every output element sums n_acc products; a product of
     * letters that is not a real contraction (e.g. "ab,cd->") can ask for
     * far more than a reference evaluation should do */
    int64_t n_out = 1, n_acc = 1, work = 1;
    for (int k = 0; k < e.rank_out; k++)
        if (!mha_mul_i64(n_out, dims[k], &n_out)) n_out = INT64_MAX;
    for (int k = 0; k < n_sum; k++)
        if (!mha_mul_i64(n_acc, size[sum_slots[k]], &n_acc)) n_acc = INT64_MAX;
    if (!mha_mul_i64(n_out, n_acc, &work) || work > INTERP_EINSUM_MAX_WORK)
        return interp_fail(c, MHA_ERR_LIMIT,
                           "'%s' needs %lld outputs x %lld products (limit %lld in all)", at->s,
                           (long long)n_out, (long long)n_acc, (long long)INTERP_EINSUM_MAX_WORK);
    tensor *Y;
    st = interp_out_new(c, 0, MHA_DTYPE_FLOAT32, e.rank_out, dims, &Y);
    if (st != MHA_OK) return st;
    if (n_acc == 0) return MHA_OK; /* an empty sum: zeros */
    float *y = Y->data;
    for (int64_t o = 0; o < n_out; o++) {
        /* the operands' offsets of this output element */
        int64_t base[INTERP_EINSUM_MAX_IN] = {0}, rem = o;
        for (int k = e.rank_out - 1; k >= 0; k--) {
            int s = einsum_slot(e.out[k]);
            int64_t idx = rem % dims[k];
            rem /= dims[k];
            for (int i = 0; i < e.n_in; i++)
                base[i] += idx * stride[i][s];
        }
        double acc = 0.0;
        for (int64_t t = 0; t < n_acc; t++) {
            int64_t off[INTERP_EINSUM_MAX_IN], r = t;
            for (int i = 0; i < e.n_in; i++)
                off[i] = base[i];
            for (int k = n_sum - 1; k >= 0; k--) {
                int s = sum_slots[k];
                int64_t idx = r % size[s];
                r /= size[s];
                for (int i = 0; i < e.n_in; i++)
                    off[i] += idx * stride[i][s];
            }
            double prod = 1.0;
            for (int i = 0; i < e.n_in; i++)
                prod *= ((const float *)X[i]->data)[off[i]];
            acc += prod;
        }
        y[o] = (float)acc;
    }
    return MHA_OK;
}
