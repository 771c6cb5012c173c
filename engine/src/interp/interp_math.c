/* interp_math.c -- the reference interpreter's contractions and row-wise
 * ops: MatMul (numpy batched broadcasting, 1-D operands), Gemm, Softmax,
 * LogSoftmax, the reductions (Sum, Mean, Max, Min, Prod, L1, L2,
 * SumSquare). Floating types accumulate in double and round once when
 * stored; integer MatMul / reductions accumulate in int64 with
 * wrap-around. */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

/* ---- MatMul ---- */

/* Element i of a float tensor as double, with a fast path for float32 (the
 * inner loops below run M*N*K times). */
static inline double math_f64(const tensor *t, int64_t i) {
    if (t->dtype == MHA_DTYPE_FLOAT32) return ((const float *)t->data)[i];
    return tensor_get_f64(t, i);
}

mha_status interp_op_matmul(interp_ctx *c) {
    const tensor *A, *B;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &A);
    if (st == MHA_OK) st = interp_in_req(c, 1, &B);
    if (st != MHA_OK) return st;
    if (A->dtype != B->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "operands are %s and %s", mha_dtype_name(A->dtype),
                           mha_dtype_name(B->dtype));
    int float_math = interp_is_float(A->dtype);
    if (!float_math && !interp_is_int(A->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "MatMul of %s is not supported",
                           mha_dtype_name(A->dtype));
    if (A->rank < 1 || B->rank < 1)
        return interp_fail(c, MHA_ERR_SHAPE, "operands must have rank >= 1, have %s and %s",
                           interp_shape(A, s0), interp_shape(B, s1));
    /* A [..., M, K] (1-D A is [1, K]), B [..., K, N] (1-D B is [K, 1]); the
     * batch dims broadcast; the unit dims of 1-D operands are dropped. */
    int a_vec = A->rank == 1, b_vec = B->rank == 1;
    int64_t M = a_vec ? 1 : A->dims[A->rank - 2], K = A->dims[A->rank - 1];
    int64_t Kb = b_vec ? B->dims[0] : B->dims[B->rank - 2], N = b_vec ? 1 : B->dims[B->rank - 1];
    if (K != Kb)
        return interp_fail(c, MHA_ERR_SHAPE, "inner dimensions differ: %s times %s",
                           interp_shape(A, s0), interp_shape(B, s1));
    tensor ab = {.dtype = A->dtype, .rank = a_vec ? 0 : A->rank - 2};
    tensor bb = {.dtype = B->dtype, .rank = b_vec ? 0 : B->rank - 2};
    for (int a = 0; a < ab.rank; a++)
        ab.dims[a] = A->dims[a];
    for (int a = 0; a < bb.rank; a++)
        bb.dims[a] = B->dims[a];
    const tensor *ops[2] = {&ab, &bb};
    interp_bcast b;
    st = interp_bcast_init(c, &b, 2, ops);
    if (st != MHA_OK) return st;
    int64_t dims[MHA_MAX_RANK + 2];
    int rank = b.rank;
    for (int a = 0; a < b.rank; a++)
        dims[a] = b.dims[a];
    if (!a_vec) dims[rank++] = M;
    if (!b_vec) dims[rank++] = N;
    tensor *Y;
    st = interp_out_new(c, 0, A->dtype, rank, dims, &Y);
    if (st != MHA_OK) return st;
    /* before any product: M or N may be huge */
    if (M == 0 || N == 0 || b.numel == 0) return MHA_OK;
    if (A->dtype == MHA_DTYPE_FLOAT32 && c->shape_only) return MHA_OK; /* zeros */
    if (A->dtype == MHA_DTYPE_FLOAT32) {
        /* the common case (the verifier runs whole projections through
         * here): interp_gemm.c, the bits of the loop below. A weight B
         * shared by every batch of A (a projection of [S, B, D], batches
         * of M = B rows each): one GEMM over all of A's rows, which packs
         * B once, not once per batch */
        int64_t a_batches = 1, b_batches = 1;
        for (int d = 0; d < ab.rank; d++)
            a_batches *= ab.dims[d];
        for (int d = 0; d < bb.rank; d++)
            b_batches *= bb.dims[d];
        if (b_batches == 1 && a_batches == b.numel) {
            const interp_gemm_args ga = {.M = b.numel * M,
                                         .N = N,
                                         .K = K,
                                         .A = (const float *)A->data,
                                         .a_row = K,
                                         .a_col = 1,
                                         .B = (const float *)B->data,
                                         .ldb = N,
                                         .C = (float *)Y->data,
                                         .ldc = N};
            return interp_gemm_f32(c->a, &ga, c->err);
        }
        for (int64_t bi = 0; bi < b.numel && st == MHA_OK; bi++) {
            int64_t off[2];
            interp_bcast_offsets(&b, bi, off);
            const interp_gemm_args ga = {.M = M,
                                         .N = N,
                                         .K = K,
                                         .A = (const float *)A->data + off[0] * M * K,
                                         .a_row = K,
                                         .a_col = 1,
                                         .B = (const float *)B->data + off[1] * K * N,
                                         .ldb = N,
                                         .C = (float *)Y->data + bi * M * N,
                                         .ldc = N};
            st = interp_gemm_f32(c->a, &ga, c->err);
        }
        return st;
    }
    /* one output row at a time: acc[n] = sum_k A[m,k] * B[k,n] */
    double *acc = mha_malloc(c->a, (size_t)N * sizeof *acc);
    int64_t *iacc = mha_malloc(c->a, (size_t)N * sizeof *iacc);
    if (acc == NULL || iacc == NULL) {
        mha_free(c->a, acc);
        mha_free(c->a, iacc);
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for a row of %lld", (long long)N);
    }
    for (int64_t bi = 0; bi < b.numel; bi++) {
        int64_t off[2];
        interp_bcast_offsets(&b, bi, off);
        int64_t a0 = off[0] * M * K, b0 = off[1] * K * N, y0 = bi * M * N;
        for (int64_t m = 0; m < M; m++) {
            for (int64_t n = 0; n < N; n++) {
                acc[n] = 0.0;
                iacc[n] = 0;
            }
            for (int64_t k = 0; k < K; k++) {
                if (float_math) {
                    double av = math_f64(A, a0 + m * K + k);
                    for (int64_t n = 0; n < N; n++)
                        acc[n] += av * math_f64(B, b0 + k * N + n);
                } else {
                    uint64_t av = (uint64_t)tensor_get_i64(A, a0 + m * K + k);
                    for (int64_t n = 0; n < N; n++)
                        iacc[n] = (int64_t)((uint64_t)iacc[n] +
                                            av * (uint64_t)tensor_get_i64(B, b0 + k * N + n));
                }
            }
            for (int64_t n = 0; n < N; n++) {
                if (float_math)
                    tensor_set_f64(Y, y0 + m * N + n, acc[n]);
                else
                    interp_set_i64(Y, y0 + m * N + n, iacc[n]);
            }
        }
    }
    mha_free(c->a, acc);
    mha_free(c->a, iacc);
    return MHA_OK;
}

/* ---- Gemm ---- */

/* Rows of the float32 Gemm summed per call of interp_gemm_f32: their
 * double sums wait in a buffer for alpha and C. */
#define MATH_GEMM_ROWS 64

/* Y [M, N] = alpha * op(A) . op(B) + beta * C for float32, each sum over
 * k = 0 .. K-1 in double, in order (interp_gemm_f32), then scaled, C added
 * and rounded once (the bits of the plain loop below): op(B) laid out
 * [K, N] once (a Gemm with transB = 1 is how nn.Linear exports), op(A)
 * read through its strides. */
static mha_status math_gemm_f32(interp_ctx *c, const tensor *A, const tensor *B, const tensor *C,
                                int64_t trans_a, int64_t trans_b, float alpha, float beta,
                                int64_t M, int64_t N, int64_t K, int64_t c_rows, int64_t c_cols,
                                tensor *Y) {
    if (c->shape_only) return MHA_OK; /* Y stays zero */
    const float *a = A->data, *b = B->data;
    float *bt = NULL;
    if (trans_b) { /* [N, K] -> [K, N] */
        bt = mha_malloc(c->a, (size_t)K * (size_t)N * sizeof *bt);
        if (!bt && K > 0) return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for op(B)");
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++)
                bt[k * N + n] = b[n * K + k];
        b = bt;
    }
    double *acc = mha_malloc(c->a, (size_t)MATH_GEMM_ROWS * (size_t)N * sizeof *acc);
    if (!acc) {
        mha_free(c->a, bt);
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for %d rows of %lld",
                           MATH_GEMM_ROWS, (long long)N);
    }
    float *y = Y->data;
    mha_status st = MHA_OK;
    for (int64_t m0 = 0; m0 < M && st == MHA_OK; m0 += MATH_GEMM_ROWS) {
        const int64_t mb = M - m0 < MATH_GEMM_ROWS ? M - m0 : MATH_GEMM_ROWS;
        /* op(A) (m, k): A [K, M] when transposed, else A [M, K] */
        const interp_gemm_args ga = {.M = mb,
                                     .N = N,
                                     .K = K,
                                     .A = trans_a ? a + m0 : a + m0 * K,
                                     .a_row = trans_a ? 1 : K,
                                     .a_col = trans_a ? M : 1,
                                     .B = b,
                                     .ldb = N,
                                     .Cd = acc,
                                     .ldc = N};
        st = interp_gemm_f32(c->a, &ga, c->err);
        for (int64_t r = 0; r < mb && st == MHA_OK; r++)
            for (int64_t n = 0; n < N; n++) {
                const int64_t m = m0 + r;
                double v = (double)alpha * acc[r * N + n];
                if (C != NULL)
                    v += (double)beta *
                         math_f64(C, (c_rows == 1 ? 0 : m) * c_cols + (c_cols == 1 ? 0 : n));
                y[m * N + n] = (float)v;
            }
    }
    mha_free(c->a, acc);
    mha_free(c->a, bt);
    return st;
}

mha_status interp_op_gemm(interp_ctx *c) {
    const tensor *A, *B, *C;
    int64_t trans_a, trans_b;
    float alpha, beta;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 2, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &A);
    if (st == MHA_OK) st = interp_in_req(c, 1, &B);
    if (st == MHA_OK) st = interp_attr_int(c, "transA", 0, &trans_a);
    if (st == MHA_OK) st = interp_attr_int(c, "transB", 0, &trans_b);
    if (st == MHA_OK) st = interp_attr_float(c, "alpha", 1.0f, &alpha);
    if (st == MHA_OK) st = interp_attr_float(c, "beta", 1.0f, &beta);
    if (st != MHA_OK) return st;
    C = interp_in(c, 2);
    if (!interp_is_float(A->dtype) || B->dtype != A->dtype || (C && C->dtype != A->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "operands must share one float type (A is %s)",
                           mha_dtype_name(A->dtype));
    if (A->rank != 2 || B->rank != 2)
        return interp_fail(c, MHA_ERR_SHAPE, "A and B must be 2-D, are %s and %s",
                           interp_shape(A, s0), interp_shape(B, s1));
    /* Y [M, N] = alpha * op(A) [M, K] . op(B) [K, N] + beta * C (broadcast) */
    int64_t M = trans_a ? A->dims[1] : A->dims[0], K = trans_a ? A->dims[0] : A->dims[1];
    int64_t Kb = trans_b ? B->dims[1] : B->dims[0], N = trans_b ? B->dims[0] : B->dims[1];
    if (K != Kb)
        return interp_fail(c, MHA_ERR_SHAPE, "inner dimensions differ: %s%s times %s%s",
                           interp_shape(A, s0), trans_a ? " (transposed)" : "", interp_shape(B, s1),
                           trans_b ? " (transposed)" : "");
    int64_t c_rows = 1, c_cols = 1;
    if (C != NULL) {
        /* unidirectional broadcast of C to [M, N] */
        int ok = C->rank <= 2;
        if (ok && C->rank == 2) {
            c_rows = C->dims[0];
            c_cols = C->dims[1];
        } else if (ok && C->rank == 1) {
            c_cols = C->dims[0];
        }
        ok = ok && (c_rows == 1 || c_rows == M) && (c_cols == 1 || c_cols == N);
        if (!ok)
            return interp_fail(c, MHA_ERR_SHAPE, "C of shape %s does not broadcast to %lldx%lld",
                               interp_shape(C, s0), (long long)M, (long long)N);
    }
    int64_t dims[2] = {M, N};
    tensor *Y;
    st = interp_out_new(c, 0, A->dtype, 2, dims, &Y);
    if (st != MHA_OK) return st;
    if (A->dtype == MHA_DTYPE_FLOAT32 && M > 0 && N > 0)
        return math_gemm_f32(c, A, B, C, trans_a, trans_b, alpha, beta, M, N, K, c_rows, c_cols, Y);
    /* MATH_GEMM_COLS outputs of a row at once: independent sums, each over
     * k = 0 .. K-1 in order as one at a time would add them (same bits), so
     * the additions overlap instead of waiting on one another */
    enum { MATH_GEMM_COLS = 8 };
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n0 = 0; n0 < N; n0 += MATH_GEMM_COLS) {
            const int64_t nb = N - n0 < MATH_GEMM_COLS ? N - n0 : MATH_GEMM_COLS;
            double acc[MATH_GEMM_COLS] = {0};
            for (int64_t k = 0; k < K; k++) {
                const double av = math_f64(A, trans_a ? k * M + m : m * K + k);
                for (int64_t j = 0; j < nb; j++)
                    acc[j] += av * math_f64(B, trans_b ? (n0 + j) * K + k : k * N + n0 + j);
            }
            for (int64_t j = 0; j < nb; j++) {
                const int64_t n = n0 + j;
                double y = (double)alpha * acc[j];
                if (C != NULL) {
                    int64_t ci = (c_rows == 1 ? 0 : m) * c_cols + (c_cols == 1 ? 0 : n);
                    y += (double)beta * math_f64(C, ci);
                }
                tensor_set_f64(Y, m * N + n, y);
            }
        }
    }
    return MHA_OK;
}

/* ---- Softmax / LogSoftmax ---- */

static mha_status math_softmax(interp_ctx *c, int log_form) {
    const tensor *x;
    int64_t axis_attr;
    int axis;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", c->opset >= 13 ? -1 : 1, &axis_attr);
    if (st != MHA_OK) return st;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input must be a float type, not %s",
                           mha_dtype_name(x->dtype));
    if (x->rank < 1) return interp_fail(c, MHA_ERR_SHAPE, "input must have rank >= 1");
    st = interp_axis(c, axis_attr, x->rank, "axis", &axis);
    if (st != MHA_OK) return st;
    /* Rows of `len` elements `stride` apart: before opset 13 the input is
     * coerced to 2-D [prod(d[:axis]), prod(d[axis:])] and each row is one
     * softmax; from 13 on only the axis itself is normalised. */
    int64_t outer = 1, len = 1, stride = 1;
    for (int a = 0; a < axis; a++)
        outer *= x->dims[a];
    if (c->opset < 13) {
        for (int a = axis; a < x->rank; a++)
            len *= x->dims[a];
    } else {
        len = x->dims[axis];
        for (int a = axis + 1; a < x->rank; a++)
            stride *= x->dims[a];
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t s = 0; s < stride; s++) {
            int64_t base = o * len * stride + s;
            double mx = -INFINITY;
            for (int64_t j = 0; j < len; j++) {
                double v = tensor_get_f64(x, base + j * stride);
                if (v > mx || isnan(v)) mx = v;
                if (isnan(v)) break;
            }
            /* Plain formula: a row of only -inf gives NaN, as the spec's
             * exp(x - max) / sum does. */
            double sum = 0.0;
            for (int64_t j = 0; j < len; j++)
                sum += exp(tensor_get_f64(x, base + j * stride) - mx);
            for (int64_t j = 0; j < len; j++) {
                double d = tensor_get_f64(x, base + j * stride) - mx;
                tensor_set_f64(y, base + j * stride, log_form ? d - log(sum) : exp(d) / sum);
            }
        }
    }
    return MHA_OK;
}

mha_status interp_op_softmax(interp_ctx *c) {
    return math_softmax(c, 0);
}
mha_status interp_op_log_softmax(interp_ctx *c) {
    return math_softmax(c, 1);
}

/* ---- reductions ---- */

/* Each kind sums a function of the element (MATH_MAX / MATH_MIN keep the
 * largest / smallest, MATH_PROD multiplies): ReduceL1 |v|, ReduceSumSquare
 * v*v, ReduceL2 the square root of the sum of v*v (torch.nn.functional.
 * normalize writes it: sentence-transformers pooling ends with one).
 * torch's x.std() counts the elements with a ReduceProd of the shape. */
typedef enum math_reduce_kind {
    MATH_SUM,
    MATH_MEAN,
    MATH_MAX,
    MATH_MIN,
    MATH_PROD,
    MATH_L1,
    MATH_L2,
    MATH_SUM_SQUARE
} math_reduce_kind;

/* the term element v adds to its sum */
static double math_reduce_term(math_reduce_kind kind, double v) {
    if (kind == MATH_L1) return fabs(v);
    if (kind == MATH_L2 || kind == MATH_SUM_SQUARE) return v * v;
    return v;
}

static int64_t math_reduce_term_i64(math_reduce_kind kind, int64_t v) {
    if (kind == MATH_L1) return v < 0 ? (int64_t)(0 - (uint64_t)v) : v;
    if (kind == MATH_L2 || kind == MATH_SUM_SQUARE) return (int64_t)((uint64_t)v * (uint64_t)v);
    return v;
}

/* the accumulator after element v (NaN wins a max or min) */
static double math_reduce_step(math_reduce_kind kind, double acc, double v) {
    if (kind == MATH_MAX || kind == MATH_MIN) {
        if (isnan(v) || isnan(acc)) return NAN;
        return (kind == MATH_MAX ? v > acc : v < acc) ? v : acc;
    }
    if (kind == MATH_PROD) return acc * v;
    return acc + math_reduce_term(kind, v);
}

static int64_t math_reduce_step_i64(math_reduce_kind kind, int64_t acc, int64_t v) {
    if (kind == MATH_MAX) return v > acc ? v : acc;
    if (kind == MATH_MIN) return v < acc ? v : acc;
    if (kind == MATH_PROD) return (int64_t)((uint64_t)acc * (uint64_t)v);
    return (int64_t)((uint64_t)acc + (uint64_t)math_reduce_term_i64(kind, v));
}

static mha_status math_reduce(interp_ctx *c, math_reduce_kind kind, int64_t axes_input_opset) {
    const tensor *x;
    int64_t axes[MHA_MAX_RANK], keepdims, noop = 0;
    size_t n_axes = 0;
    int present = 0;
    char sb[INTERP_SHAPE_BUF];
    int input_axes = c->opset >= axes_input_opset;
    mha_status st = interp_check_arity(c, 1, input_axes ? 2 : 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "keepdims", 1, &keepdims);
    if (st != MHA_OK) return st;
    if (input_axes) {
        const tensor *ta = interp_in(c, 1);
        if (interp_has_attr(c, "axes"))
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "the 'axes' attribute was replaced by an input in opset %lld",
                               (long long)axes_input_opset);
        st = interp_attr_int(c, "noop_with_empty_axes", 0, &noop);
        if (st == MHA_OK && ta != NULL) {
            present = 1;
            st = interp_read_ints(c, ta, "axes", axes, MHA_MAX_RANK, &n_axes);
        }
    } else {
        const int64_t *v;
        st = interp_attr_ints(c, "axes", &v, &n_axes);
        if (st == MHA_OK && n_axes > MHA_MAX_RANK)
            st = interp_fail(c, MHA_ERR_SHAPE, "%zu axes given, at most %d allowed", n_axes,
                             MHA_MAX_RANK);
        for (size_t i = 0; st == MHA_OK && i < n_axes; i++)
            axes[i] = v[i];
        present = interp_has_attr(c, "axes");
    }
    if (st != MHA_OK) return st;
    int float_math = interp_is_float(x->dtype);
    if (!float_math && !interp_is_int(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input of type %s is not supported",
                           mha_dtype_name(x->dtype));
    int flags[MHA_MAX_RANK];
    if ((!present || n_axes == 0) && noop) {
        /* empty axes with noop_with_empty_axes: the input unchanged */
        tensor *y;
        st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
        if (st == MHA_OK && x->nbytes) memcpy(y->data, x->data, x->nbytes);
        return st;
    }
    if (!present || n_axes == 0) {
        for (int a = 0; a < x->rank; a++)
            flags[a] = 1;
    } else {
        for (int a = 0; a < x->rank; a++)
            flags[a] = 0;
        for (size_t i = 0; i < n_axes; i++) {
            int ax;
            st = interp_axis(c, axes[i], x->rank, "axis", &ax);
            if (st != MHA_OK) return st;
            if (flags[ax])
                return interp_fail(c, MHA_ERR_SHAPE, "axis %lld is repeated (input %s)",
                                   (long long)axes[i], interp_shape(x, sb));
            flags[ax] = 1;
        }
    }
    /* Output: reduced axes become 1 (keepdims) or vanish. The accumulator
     * uses the keepdims layout either way (same element order). */
    int64_t kdims[MHA_MAX_RANK], dims[MHA_MAX_RANK];
    int rank = 0;
    int64_t count = 1;
    for (int a = 0; a < x->rank; a++) {
        kdims[a] = flags[a] ? 1 : x->dims[a];
        if (flags[a]) count *= x->dims[a];
        if (!flags[a] || keepdims) dims[rank++] = kdims[a];
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, rank, dims, &y);
    if (st != MHA_OK) return st;
    int64_t n_out = tensor_numel(y), n_in = tensor_numel(x);
    double *acc = mha_malloc(c->a, (size_t)(n_out ? n_out : 1) * sizeof *acc);
    int64_t *iacc = mha_malloc(c->a, (size_t)(n_out ? n_out : 1) * sizeof *iacc);
    if (acc == NULL || iacc == NULL) {
        mha_free(c->a, acc);
        mha_free(c->a, iacc);
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for %lld accumulators",
                           (long long)n_out);
    }
    for (int64_t o = 0; o < n_out; o++) {
        acc[o] = kind == MATH_MAX ? -INFINITY : kind == MATH_MIN ? INFINITY : kind == MATH_PROD;
        iacc[o] = kind == MATH_MAX ? INT64_MIN : kind == MATH_MIN ? INT64_MAX : kind == MATH_PROD;
    }
    /* float32 reduced over its last axes only (a LayerNorm's ReduceMean
     * over D): row by row, each row's elements in order -- the order the
     * loop below visits them in, so the same sums -- without an output
     * index worked out per element */
    int64_t inner = 1;
    int lead = x->rank - 1, trailing = 1;
    while (lead >= 0 && flags[lead])
        inner *= x->dims[lead--];
    for (int a = 0; a <= lead; a++)
        trailing &= !flags[a];
    const int by_rows = float_math && x->dtype == MHA_DTYPE_FLOAT32 && trailing && inner > 0;
    if (by_rows) {
        const float *xf = x->data;
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t j = 0; j < inner; j++)
                acc[o] = math_reduce_step(kind, acc[o], (double)xf[o * inner + j]);
    }
    for (int64_t i = 0; i < n_in && !by_rows; i++) {
        /* output index of input element i: reduced axes pinned to 0 */
        int64_t rem = i, o = 0, ostride = 1;
        for (int a = x->rank - 1; a >= 0; a--) {
            int64_t idx = rem % x->dims[a];
            rem /= x->dims[a];
            o += (flags[a] ? 0 : idx) * ostride;
            ostride *= kdims[a];
        }
        if (float_math)
            acc[o] = math_reduce_step(kind, acc[o], tensor_get_f64(x, i));
        else
            iacc[o] = math_reduce_step_i64(kind, iacc[o], tensor_get_i64(x, i));
    }
    for (int64_t o = 0; o < n_out; o++) {
        if (float_math) {
            double v = acc[o];
            if (kind == MATH_MEAN) v = count ? v / (double)count : NAN;
            if (kind == MATH_L2) v = sqrt(v);
            tensor_set_f64(y, o, v);
        } else {
            int64_t v = iacc[o];
            if (kind == MATH_MEAN) v = count ? v / count : 0;
            /* integer ReduceL2: the square root truncated, as a cast would */
            if (kind == MATH_L2) v = (int64_t)sqrt((double)v);
            interp_set_i64(y, o, v);
        }
    }
    mha_free(c->a, acc);
    mha_free(c->a, iacc);
    return MHA_OK;
}

mha_status interp_op_reduce_sum(interp_ctx *c) {
    return math_reduce(c, MATH_SUM, 13);
}
mha_status interp_op_reduce_mean(interp_ctx *c) {
    return math_reduce(c, MATH_MEAN, 18);
}
mha_status interp_op_reduce_max(interp_ctx *c) {
    return math_reduce(c, MATH_MAX, 18);
}
mha_status interp_op_reduce_min(interp_ctx *c) {
    return math_reduce(c, MATH_MIN, 18);
}
mha_status interp_op_reduce_prod(interp_ctx *c) {
    return math_reduce(c, MATH_PROD, 18);
}
mha_status interp_op_reduce_l1(interp_ctx *c) {
    return math_reduce(c, MATH_L1, 18);
}
mha_status interp_op_reduce_l2(interp_ctx *c) {
    return math_reduce(c, MATH_L2, 18);
}
mha_status interp_op_reduce_sum_square(interp_ctx *c) {
    return math_reduce(c, MATH_SUM_SQUARE, 18);
}

/* ---- CumSum ---- */

/* Running sums along one axis (exclusive: the element itself left out;
 * reverse: from the end), in double for floats and int64 for integers.
 * BLOOM makes its ALiBi positions with it: cumsum(mask) - 1. */
mha_status interp_op_cumsum(interp_ctx *c) {
    const tensor *x, *ta;
    int64_t exclusive, reverse, axis;
    int ax;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &ta);
    if (st == MHA_OK) st = interp_attr_int(c, "exclusive", 0, &exclusive);
    if (st == MHA_OK) st = interp_attr_int(c, "reverse", 0, &reverse);
    if (st == MHA_OK) st = interp_read_scalar_int(c, ta, "axis", &axis);
    if (st == MHA_OK) st = interp_axis(c, axis, x->rank, "axis", &ax);
    if (st != MHA_OK) return st;
    const int is_float = interp_is_float(x->dtype);
    if (!is_float && x->dtype != MHA_DTYPE_INT32 && x->dtype != MHA_DTYPE_INT64)
        return interp_fail(c, MHA_ERR_DTYPE, "input of type %s (float or int32 / int64 only)",
                           mha_dtype_name(x->dtype));
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    int64_t outer, inner;
    interp_around_axis(x, ax, &outer, &inner);
    const int64_t n = x->dims[ax];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            double facc = 0.0;
            int64_t iacc = 0;
            for (int64_t k = 0; k < n; k++) {
                const int64_t kk = reverse ? n - 1 - k : k;
                const int64_t at = (o * n + kk) * inner + in;
                if (is_float) {
                    const double v = tensor_get_f64(x, at);
                    if (!exclusive) facc += v;
                    tensor_set_f64(y, at, facc);
                    if (exclusive) facc += v;
                } else {
                    const int64_t v = tensor_get_i64(x, at);
                    if (!exclusive) iacc = (int64_t)((uint64_t)iacc + (uint64_t)v);
                    interp_set_i64(y, at, iacc);
                    if (exclusive) iacc = (int64_t)((uint64_t)iacc + (uint64_t)v);
                }
            }
        }
    return MHA_OK;
}
