/* test_interp.c -- the reference interpreter (engine/src/interp/): every op
 * on small hand-computed cases (broadcasting, opset differences, negative
 * axes and indices), the error paths (bad axis, shape mismatch, missing
 * input, out-of-range index, huge allocation, allocation failure) that
 * must return a status naming the node instead of crashing, constant
 * folding on a hand-built graph, and whole-graph runs of every case in
 * tests/data/conformance and tests/data/torch-export against the expected
 * outputs. */
#include "testutil.h"

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "onnx_ir.h"

static mha_alloc_ctx A;

/* ---- building nodes and tensors by hand ---- */

#define TN_MAX 12

/* A node with up to TN_MAX inputs / outputs / attributes; value ids are
 * 0..n-1 (only their sign matters to interp_eval_node). */
typedef struct tnode {
    ir_node n;
    ir_attr attrs[TN_MAX];
    int ins[TN_MAX];
    int outs[TN_MAX];
} tnode;

static void tn_init(tnode *t, const char *op, size_t n_in, size_t n_out) {
    memset(t, 0, sizeof *t);
    t->n.name = (char *)"t";
    t->n.op_type = (char *)op;
    t->n.domain = (char *)"";
    for (size_t k = 0; k < TN_MAX; k++)
        t->ins[k] = t->outs[k] = (int)k;
    t->n.inputs = t->ins;
    t->n.n_inputs = n_in;
    t->n.outputs = t->outs;
    t->n.n_outputs = n_out;
    t->n.attrs = t->attrs;
}

static ir_attr *tn_attr(tnode *t, const char *name, ir_attr_type type) {
    assert_true(t->n.n_attrs < TN_MAX);
    ir_attr *a = &t->attrs[t->n.n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = (char *)name;
    a->type = type;
    return a;
}

static void tn_int(tnode *t, const char *name, int64_t v) {
    tn_attr(t, name, IR_ATTR_INT)->i = v;
}
static void tn_float(tnode *t, const char *name, float v) {
    tn_attr(t, name, IR_ATTR_FLOAT)->f = v;
}
static void tn_ints(tnode *t, const char *name, const int64_t *v, size_t n) {
    ir_attr *a = tn_attr(t, name, IR_ATTR_INTS);
    a->ints = (int64_t *)v;
    a->n = n;
}
static void tn_floats(tnode *t, const char *name, const float *v, size_t n) {
    ir_attr *a = tn_attr(t, name, IR_ATTR_FLOATS);
    a->floats = (float *)v;
    a->n = n;
}
static void tn_tensor(tnode *t, const char *name, tensor *v) {
    tn_attr(t, name, IR_ATTR_TENSOR)->t = v;
}

static tensor *mk(mha_dtype dt, int rank, const int64_t *dims) {
    tensor *t = NULL;
    assert_int_equal(tensor_new(&A, dt, rank, dims, &t, NULL), MHA_OK);
    return t;
}

/* float32 / int64 / bool tensors from literal values (count must match). */
static tensor *tf(int rank, const int64_t *dims, const float *v) {
    tensor *t = mk(MHA_DTYPE_FLOAT32, rank, dims);
    if (t->nbytes) memcpy(t->data, v, t->nbytes);
    return t;
}
static tensor *ti(int rank, const int64_t *dims, const int64_t *v) {
    tensor *t = mk(MHA_DTYPE_INT64, rank, dims);
    if (t->nbytes) memcpy(t->data, v, t->nbytes);
    return t;
}
static tensor *tb(int rank, const int64_t *dims, const uint8_t *v) {
    tensor *t = mk(MHA_DTYPE_BOOL, rank, dims);
    if (t->nbytes) memcpy(t->data, v, t->nbytes);
    return t;
}
/* 1-D int64 from a list */
static tensor *ti1(size_t n, const int64_t *v) {
    int64_t d = (int64_t)n;
    return ti(1, &d, v);
}
static void set_int_elem(tensor *t, int64_t i, int64_t v) {
    if (t->dtype == MHA_DTYPE_INT64)
        ((int64_t *)t->data)[i] = v;
    else
        ((int32_t *)t->data)[i] = (int32_t)(v > INT32_MAX   ? INT32_MAX
                                            : v < INT32_MIN ? INT32_MIN
                                                            : v);
}
static tensor *ti0(int64_t v) {
    return ti(0, NULL, &v);
}
static tensor *tf0(float v) {
    return tf(0, NULL, &v);
}

#define D(...) ((const int64_t[]){__VA_ARGS__})
#define F(...) ((const float[]){__VA_ARGS__})
#define I(...) ((const int64_t[]){__VA_ARGS__})
#define B(...) ((const uint8_t[]){__VA_ARGS__})

static mha_error last_err;

/* Evaluates t at opset with inputs in[0..n_in) (NULL = omitted). */
static mha_status eval(int64_t opset, tnode *t, tensor **in, tensor **out) {
    ir_graph g;
    memset(&g, 0, sizeof g);
    g.opset = opset;
    mha_error_clear(&last_err);
    mha_status st = interp_eval_node(&A, &g, &t->n, in, out, &last_err);
    if (st != MHA_OK) {
        /* every error names the node */
        assert_non_null(strstr(last_err.message, t->n.op_type));
        assert_int_equal(last_err.status, st);
        for (size_t k = 0; k < t->n.n_outputs; k++)
            assert_null(out[k]);
    }
    return st;
}

static void free_all(tensor **ts, size_t n) {
    for (size_t i = 0; i < n; i++) {
        tensor_free(ts[i]);
        ts[i] = NULL;
    }
}

static void expect_shape(const tensor *t, int rank, const int64_t *dims) {
    assert_non_null(t);
    assert_int_equal(t->rank, rank);
    for (int i = 0; i < rank; i++)
        assert_int_equal(t->dims[i], dims[i]);
}

static void expect_f(const tensor *t, int rank, const int64_t *dims, const float *want,
                     double tol) {
    expect_shape(t, rank, dims);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double got = tensor_get_f64(t, i);
        if (isnan(want[i])) {
            assert_true(isnan(got));
        } else if (isinf(want[i])) {
            assert_true(got == (double)want[i]);
        } else if (fabs(got - want[i]) > tol + tol * fabs(want[i])) {
            print_error("element %lld: got %.9g want %.9g\n", (long long)i, got, (double)want[i]);
            fail();
        }
    }
}

static void expect_i(const tensor *t, int rank, const int64_t *dims, const int64_t *want) {
    expect_shape(t, rank, dims);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (tensor_get_i64(t, i) != want[i]) {
            print_error("element %lld: got %lld want %lld\n", (long long)i,
                        (long long)tensor_get_i64(t, i), (long long)want[i]);
            fail();
        }
    }
}

/* One-output op on given inputs; returns the output (caller frees). */
static tensor *run1(int64_t opset, tnode *t, tensor **in) {
    tensor *out[TN_MAX] = {0};
    mha_status st = eval(opset, t, in, out);
    if (st != MHA_OK) print_error("%s\n", last_err.message);
    assert_int_equal(st, MHA_OK);
    return out[0];
}

/* Expects failure with status st; frees the inputs. */
static void run_err(int64_t opset, tnode *t, tensor **in, size_t n_in, mha_status st) {
    tensor *out[TN_MAX] = {0};
    mha_status got = eval(opset, t, in, out);
    if (got != st) print_error("got %s (%s)\n", mha_status_name(got), last_err.message);
    assert_int_equal(got, st);
    free_all(in, n_in);
}

/* ---- element-wise ---- */

/* float32 broadcasting, row by row of the last axis: [3, 4, 5] (op) [4, 1]
 * (the second operand constant along the last axis) and [4, 5] (op)
 * [3, 4, 5], each element the float rounding of the exact result. */
static void test_binary_broadcast_rows_f32(void **state) {
    (void)state;
    static const char *const ops[4] = {"Add", "Sub", "Mul", "Div"};
    float a[60], b[20];
    tu_fill_random(a, 60, 71);
    tu_fill_random(b, 20, 72);
    for (int k = 0; k < 20; k++)
        b[k] += b[k] < 0 ? -0.5f : 0.5f; /* no divisor near 0 */
    for (int o = 0; o < 4; o++)
        for (int swap = 0; swap < 2; swap++) {
            tnode t;
            tn_init(&t, ops[o], 2, 1);
            const int64_t da[3] = {3, 4, 5}, db1[2] = {4, 1}, db2[2] = {4, 5};
            tensor *big = tf(3, da, a), *small = swap ? tf(2, db2, b) : tf(2, db1, b);
            tensor *in[2] = {swap ? small : big, swap ? big : small};
            tensor *y = run1(13, &t, in);
            float want[60];
            for (int i = 0; i < 60; i++) {
                double p = a[i], q = swap ? b[i % 20] : b[(i / 5) % 4];
                double l = swap ? q : p, r = swap ? p : q;
                want[i] = (float)(o == 0 ? l + r : o == 1 ? l - r : o == 2 ? l * r : l / r);
            }
            expect_f(y, 3, da, want, 0);
            tensor_free(y);
            free_all(in, 2);
        }
}

/* The flat index into an operand of shape in[in_rank] of output element i
 * of shape out[rank] under numpy broadcasting (an axis of 1 repeats). */
static int64_t bcast_src(const int64_t *out, int rank, const int64_t *in, int in_rank, int64_t i) {
    int64_t src = 0, stride = 1;
    for (int a = rank - 1; a >= 0; a--) {
        int64_t idx = i % out[a];
        i /= out[a];
        int ax = a - (rank - in_rank);
        if (ax < 0) continue;
        if (in[ax] != 1) src += idx * stride;
        stride *= in[ax];
    }
    return src;
}

/* Int64 Add, Where and Expand walk the output row by row of its last axis
 * (a [N, 1, 1, 3] mask against [N, 1, 3, 3] scores, an operand broadcast
 * along the last axis, a scalar): every element as the broadcasting rule
 * says. */
static void test_broadcast_rows(void **state) {
    (void)state;
    static const int64_t shapes[][2][4] = {
        {{4, 1, 1, 3}, {4, 1, 3, 3}}, {{2, 1, 3, 0}, {3, 1, 0, 0}}, {{1, 0, 0, 0}, {2, 3, 4, 0}}};
    static const int ranks[][2] = {{4, 4}, {3, 2}, {1, 3}};
    for (int c = 0; c < 3; c++)
        for (int swap = 0; swap < 2; swap++) {
            const int64_t *dx = shapes[c][swap], *dy = shapes[c][!swap];
            const int rx = ranks[c][swap], ry = ranks[c][!swap];
            int64_t vx[64], vy[64];
            uint8_t vc[64];
            for (int k = 0; k < 64; k++) {
                vx[k] = 1000 + k, vy[k] = 7 * k;
                vc[k] = (uint8_t)(k % 3 == 1);
            }
            int64_t out[4];
            int rank = rx > ry ? rx : ry;
            for (int a = 0; a < rank; a++) {
                int ax = a - (rank - rx), ay = a - (rank - ry);
                int64_t ex = ax >= 0 ? dx[ax] : 1, ey = ay >= 0 ? dy[ay] : 1;
                out[a] = ex > ey ? ex : ey;
            }
            int64_t n = 1;
            for (int a = 0; a < rank; a++)
                n *= out[a];
            int64_t want[64];
            float wantf[64];
            tnode t;
            tensor *in[3], *y;
            /* Add of int64 (the generic loop) */
            tn_init(&t, "Add", 2, 1);
            in[0] = ti(rx, dx, vx);
            in[1] = ti(ry, dy, vy);
            for (int64_t i = 0; i < n; i++)
                want[i] = vx[bcast_src(out, rank, dx, rx, i)] + vy[bcast_src(out, rank, dy, ry, i)];
            y = run1(13, &t, in);
            expect_i(y, rank, out, want);
            tensor_free(y);
            free_all(in, 2);
            /* Where(cond of x's shape, float of y's shape, a scalar) */
            tn_init(&t, "Where", 3, 1);
            float fy[64];
            for (int k = 0; k < 64; k++)
                fy[k] = (float)vy[k];
            in[0] = tb(rx, dx, vc);
            in[1] = tf(ry, dy, fy);
            in[2] = tf0(-1);
            for (int64_t i = 0; i < n; i++)
                wantf[i] = vc[bcast_src(out, rank, dx, rx, i)] ? fy[bcast_src(out, rank, dy, ry, i)]
                                                               : -1.0f;
            y = run1(13, &t, in);
            expect_f(y, rank, out, wantf, 0);
            tensor_free(y);
            free_all(in, 3);
            /* Expand x to the broadcast shape */
            tn_init(&t, "Expand", 2, 1);
            in[0] = ti(rx, dx, vx);
            in[1] = ti1((size_t)rank, out);
            for (int64_t i = 0; i < n; i++)
                want[i] = vx[bcast_src(out, rank, dx, rx, i)];
            y = run1(13, &t, in);
            expect_i(y, rank, out, want);
            tensor_free(y);
            free_all(in, 2);
        }
}

/* The typed Cast loops give what the loop through double gives: int64 to
 * float32 rounds twice (2^60 + 2^36 + 1 becomes 2^60, where one rounding
 * gives 2^60 + 2^37), NaN casts to true, int32 widens with its sign. */
static void test_cast_typed(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *y;
    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_FLOAT32);
    const int64_t big = ((int64_t)1 << 60) + ((int64_t)1 << 36) + 1;
    in[0] = ti(1, D(4), I(big, -3, 0, -big));
    y = run1(13, &t, in);
    expect_f(y, 1, D(4), F(0x1p60f, -3, 0, -0x1p60f), 0);
    tensor_free(y);
    free_all(in, 1);
    in[0] = tb(1, D(3), B(1, 0, 1));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(1, 0, 1), 0);
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_BOOL);
    in[0] = tf(1, D(4), F(NAN, -0.0f, 0.5f, 0));
    y = run1(13, &t, in);
    expect_i(y, 1, D(4), I(1, 0, 1, 0));
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_INT64);
    in[0] = mk(MHA_DTYPE_INT32, 1, D(3));
    ((int32_t *)in[0]->data)[0] = -2147483647 - 1;
    ((int32_t *)in[0]->data)[1] = -5;
    ((int32_t *)in[0]->data)[2] = 2147483647;
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(-2147483648LL, -5, 2147483647));
    tensor_free(y);
    free_all(in, 1);
}

static void test_add_broadcast(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Add", 2, 1);
    tensor *in[2] = {tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6)), tf(1, D(3), F(10, 20, 30))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(11, 22, 33, 14, 25, 36), 0);
    tensor_free(y);
    free_all(in, 2);

    /* [2,1] + [1,3] -> [2,3]; a scalar broadcasts everywhere */
    in[0] = tf(2, D(2, 1), F(1, 2));
    in[1] = tf(2, D(1, 3), F(10, 20, 30));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(11, 21, 31, 12, 22, 32), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(2, D(2, 2), F(1, 2, 3, 4));
    in[1] = tf0(0.5f);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(1.5, 2.5, 3.5, 4.5), 0);
    tensor_free(y);
    free_all(in, 2);

    /* int64 */
    in[0] = ti1(3, I(1, -2, INT64_MAX));
    in[1] = ti1(3, I(5, 7, 1));
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(6, 5, INT64_MIN)); /* wraps, no UB */
    tensor_free(y);
    free_all(in, 2);

    /* errors: shapes that do not broadcast, mixed types, missing input */
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = tf(1, D(2), F(1, 2));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = ti1(2, I(1, 2));
    run_err(13, &t, in, 2, MHA_ERR_DTYPE);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = NULL;
    run_err(13, &t, in, 2, MHA_ERR_MODEL_FORMAT);
    tn_init(&t, "Add", 1, 1);
    in[0] = tf(1, D(2), F(1, 2));
    run_err(13, &t, in, 1, MHA_ERR_MODEL_FORMAT);
}

static void test_arith(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    tn_init(&t, "Sub", 2, 1);
    in[0] = tf(1, D(3), F(5, 5, 5));
    in[1] = tf(1, D(3), F(1, 2, 8));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(4, 3, -3), 0);
    tensor_free(y);
    free_all(in, 2);

    tn_init(&t, "Mul", 2, 1);
    in[0] = tf(2, D(2, 2), F(1, 2, 3, 4));
    in[1] = tf(2, D(2, 1), F(2, -1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(2, 4, -3, -4), 0);
    tensor_free(y);
    free_all(in, 2);

    tn_init(&t, "Div", 2, 1);
    in[0] = tf(1, D(3), F(1, -3, 1));
    in[1] = tf(1, D(3), F(4, 2, 0));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(0.25, -1.5, INFINITY), 0);
    tensor_free(y);
    free_all(in, 2);
    /* integer division truncates toward zero, like C */
    in[0] = ti1(5, I(7, -7, 7, -7, INT64_MIN));
    in[1] = ti1(5, I(2, 2, -2, -2, -1));
    y = run1(13, &t, in);
    expect_i(y, 1, D(5), I(3, -3, -3, 3, INT64_MIN));
    tensor_free(y);
    free_all(in, 2);
    in[0] = ti1(2, I(1, 2));
    in[1] = ti1(2, I(1, 0));
    run_err(13, &t, in, 2, MHA_ERR_MODEL_FORMAT);
    /* int32 also truncates and wraps at its own width */
    in[0] = mk(MHA_DTYPE_INT32, 1, D(2));
    in[1] = mk(MHA_DTYPE_INT32, 1, D(2));
    ((int32_t *)in[0]->data)[0] = -9;
    ((int32_t *)in[0]->data)[1] = INT32_MIN;
    ((int32_t *)in[1]->data)[0] = 4;
    ((int32_t *)in[1]->data)[1] = -1;
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_INT32);
    assert_int_equal(((int32_t *)y->data)[0], -2);
    assert_int_equal(((int32_t *)y->data)[1], INT32_MIN);
    tensor_free(y);
    free_all(in, 2);
    /* bool arithmetic is refused */
    in[0] = tb(1, D(1), B(1));
    in[1] = tb(1, D(1), B(1));
    run_err(13, &t, in, 2, MHA_ERR_DTYPE);

    /* Pow: float base, int or float exponent */
    tn_init(&t, "Pow", 2, 1);
    in[0] = tf(1, D(3), F(2, 3, 4));
    in[1] = ti1(1, I(2));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(4, 9, 16), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(1, D(2), F(4, 9));
    in[1] = tf0(0.5f);
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(2, 3), 0);
    tensor_free(y);
    free_all(in, 2);
    /* one exponent of a float32 base (the LayerNorm's Pow(x, 2)) takes a
     * path of its own: pow's bits in double, rounded once, whatever the
     * exponent's type and rank (a [1, 1] exponent broadcasts the base up) */
    const float base[5] = {1.1f, -3.7e-3f, 1.9e19f, -0.0f, 7.25f};
    const double exps[4] = {2.0, 3.0, 0.5, -1.5};
    for (int k = 0; k < 4; k++) {
        in[0] = tf(2, D(1, 5), base);
        in[1] = k == 1 ? ti1(1, I(3)) : tf(2, D(1, 1), F((float)exps[k]));
        y = run1(13, &t, in);
        assert_int_equal(y->rank, 2);
        for (int i = 0; i < 5; i++) {
            const float want = (float)pow((double)base[i], exps[k]);
            const float got = ((const float *)y->data)[i];
            if (memcmp(&want, &got, sizeof want) != 0 && !(isnan(want) && isnan(got)))
                fail_msg("pow(%g, %g): %g, want %g", (double)base[i], exps[k], (double)got,
                         (double)want);
        }
        tensor_free(y);
        free_all(in, 2);
    }
}

/* CumSum along an axis: inclusive, exclusive, reversed; integers too (BLOOM
 * makes positions as cumsum(mask) - 1); a bool input is refused. */
static void test_cumsum(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "CumSum", 2, 1);
    tensor *in[2] = {tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6)), ti0(1)};
    tensor *y = run1(14, &t, in);
    expect_f(y, 2, D(2, 3), F(1, 3, 6, 4, 9, 15), 0);
    tensor_free(y);
    tn_int(&t, "exclusive", 1);
    y = run1(14, &t, in);
    expect_f(y, 2, D(2, 3), F(0, 1, 3, 0, 4, 9), 0);
    tensor_free(y);
    tn_int(&t, "reverse", 1);
    y = run1(14, &t, in);
    expect_f(y, 2, D(2, 3), F(5, 3, 0, 11, 6, 0), 0);
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "CumSum", 2, 1);
    in[0] = ti(2, D(2, 3), I(1, 1, 0, 1, 0, 1));
    in[1] = ti0(0);
    y = run1(14, &t, in);
    expect_i(y, 2, D(2, 3), I(1, 1, 0, 2, 1, 1));
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "CumSum", 2, 1);
    in[0] = tb(1, D(2), (const uint8_t[]){1, 0});
    in[1] = ti0(0);
    run_err(14, &t, in, 2, MHA_ERR_DTYPE);
}

static void test_unary(void **state) {
    (void)state;
    static const struct {
        const char *op;
        float x[4];
        float want[4];
    } cases[] = {
        {"Sqrt", {0, 1, 4, 2}, {0, 1, 2, 1.41421356f}},
        {"Neg", {0, 1, -4, 2}, {0, -1, 4, -2}},
        {"Reciprocal", {1, 2, -4, 0.5f}, {1, 0.5f, -0.25f, 2}},
        {"Exp", {0, 1, -1, 2}, {1, 2.71828183f, 0.36787944f, 7.3890561f}},
        {"Log", {1, 2.71828183f, 0, 10}, {0, 1, -INFINITY, 2.30258509f}},
        {"Tanh", {0, 1, -1, 20}, {0, 0.76159416f, -0.76159416f, 1}},
        {"Erf", {0, 1, -1, 0.5f}, {0, 0.84270079f, -0.84270079f, 0.52049988f}},
        {"Cos", {0, 1, -2, 100}, {1, 0.54030231f, -0.41614684f, 0.86231887f}},
        {"Sin", {0, 1, -2, 100}, {0, 0.84147098f, -0.90929743f, -0.50636564f}},
        {"Relu", {-1, 0, 2, -0.5f}, {0, 0, 2, 0}},
        {"Sigmoid", {0, 1, -1, -100}, {0.5f, 0.73105858f, 0.26894142f, 3.7200760e-44f}},
        {"Abs", {-1, 0, 2, -0.5f}, {1, 0, 2, 0.5f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tnode t;
        tn_init(&t, cases[k].op, 1, 1);
        tensor *in[1] = {tf(1, D(4), cases[k].x)};
        tensor *y = run1(13, &t, in);
        expect_f(y, 1, D(4), cases[k].want, 1e-6);
        tensor_free(y);
        free_all(in, 1);
    }
    /* Neg / Abs / Relu take integers, Exp does not */
    tnode t;
    tn_init(&t, "Neg", 1, 1);
    tensor *in[1] = {ti1(2, I(3, -4))};
    tensor *y = run1(13, &t, in);
    expect_i(y, 1, D(2), I(-3, 4));
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Exp", 1, 1);
    in[0] = ti1(1, I(1));
    run_err(13, &t, in, 1, MHA_ERR_DTYPE);
    /* float16 computes in float and stores rounded */
    tn_init(&t, "Sqrt", 1, 1);
    in[0] = mk(MHA_DTYPE_FLOAT16, 1, D(2));
    tensor_set_f64(in[0], 0, 2.0);
    tensor_set_f64(in[0], 1, 9.0);
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_FLOAT16);
    assert_int_equal(((uint16_t *)y->data)[0], mha_float_to_half(sqrtf(2.0f)));
    assert_true(tensor_get_f64(y, 1) == 3.0);
    tensor_free(y);
    free_all(in, 1);
}

static void test_max_min(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Max", 3, 1);
    tensor *in[3] = {tf(1, D(3), F(1, 5, 3)), tf(2, D(2, 1), F(2, 4)), tf0(0)};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(2, 5, 3, 4, 5, 4), 0);
    tensor_free(y);
    free_all(in, 3);
    tn_init(&t, "Min", 2, 1);
    in[0] = tf(1, D(3), F(1, NAN, 3));
    in[1] = tf(1, D(3), F(2, 0, -1));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(1, NAN, -1), 0);
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "Max", 1, 1);
    in[0] = ti1(2, I(4, -4));
    y = run1(13, &t, in);
    expect_i(y, 1, D(2), I(4, -4));
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Max", 2, 1);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = tf(1, D(3), F(1, 2, 3));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
}

static void test_compare_logic(void **state) {
    (void)state;
    static const struct {
        const char *op;
        uint8_t want[3];
    } cmp[] = {
        {"Equal", {0, 1, 0}},       {"Less", {1, 0, 0}},           {"Greater", {0, 0, 1}},
        {"LessOrEqual", {1, 1, 0}}, {"GreaterOrEqual", {0, 1, 1}},
    };
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        tnode t;
        tn_init(&t, cmp[k].op, 2, 1);
        tensor *in[2] = {tf(1, D(3), F(1, 2, 3)), tf0(2)};
        tensor *y = run1(13, &t, in);
        assert_int_equal(y->dtype, MHA_DTYPE_BOOL);
        expect_i(y, 1, D(3), I(cmp[k].want[0], cmp[k].want[1], cmp[k].want[2]));
        tensor_free(y);
        free_all(in, 2);
        /* the same on int64 */
        in[0] = ti1(3, I(1, 2, 3));
        in[1] = ti0(2);
        y = run1(13, &t, in);
        expect_i(y, 1, D(3), I(cmp[k].want[0], cmp[k].want[1], cmp[k].want[2]));
        tensor_free(y);
        free_all(in, 2);
    }
    static const struct {
        const char *op;
        int64_t want[4];
    } logic[] = {{"And", {0, 0, 0, 1}}, {"Or", {0, 1, 1, 1}}, {"Xor", {0, 1, 1, 0}}};
    for (size_t k = 0; k < sizeof logic / sizeof logic[0]; k++) {
        tnode t;
        tn_init(&t, logic[k].op, 2, 1);
        tensor *in[2] = {tb(2, D(2, 2), B(0, 0, 1, 1)), tb(2, D(2, 2), B(0, 1, 0, 1))};
        tensor *y = run1(13, &t, in);
        expect_i(y, 2, D(2, 2), logic[k].want);
        tensor_free(y);
        free_all(in, 2);
        in[0] = tf(1, D(1), F(1));
        in[1] = tf(1, D(1), F(1));
        run_err(13, &t, in, 2, MHA_ERR_DTYPE);
    }
    tnode t;
    tn_init(&t, "Not", 1, 1);
    tensor *in[3] = {tb(1, D(3), B(0, 1, 0))};
    tensor *y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(1, 0, 1));
    tensor_free(y);
    free_all(in, 1);
    in[0] = tf(1, D(1), F(0));
    run_err(13, &t, in, 1, MHA_ERR_DTYPE);
    /* Equal on bool is allowed, Less on bool is not */
    tn_init(&t, "Equal", 2, 1);
    in[0] = tb(1, D(2), B(0, 1));
    in[1] = tb(1, D(2), B(0, 0));
    y = run1(13, &t, in);
    expect_i(y, 1, D(2), I(1, 0));
    tensor_free(y);
    free_all(in, 2);

    /* Where with three-way broadcasting */
    tn_init(&t, "Where", 3, 1);
    in[0] = tb(2, D(2, 1), B(1, 0));
    in[1] = tf(1, D(3), F(1, 2, 3));
    in[2] = tf0(-1);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(1, 2, 3, -1, -1, -1), 0);
    tensor_free(y);
    free_all(in, 3);
    in[0] = tf(1, D(1), F(1));
    in[1] = tf(1, D(1), F(1));
    in[2] = tf(1, D(1), F(1));
    run_err(13, &t, in, 3, MHA_ERR_DTYPE);

    tn_init(&t, "IsNaN", 1, 1);
    in[0] = tf(1, D(3), F(NAN, 1, INFINITY));
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(1, 0, 0));
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "IsInf", 1, 1);
    tn_int(&t, "detect_negative", 0);
    in[0] = tf(1, D(4), F(NAN, -INFINITY, INFINITY, 1));
    y = run1(13, &t, in);
    expect_i(y, 1, D(4), I(0, 0, 1, 0));
    tensor_free(y);
    free_all(in, 1);
}

static void test_cast(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_INT64);
    tensor *in[2] = {tf(1, D(5), F(1.7f, -1.7f, 0, NAN, 1e30f))};
    tensor *y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_INT64);
    expect_i(y, 1, D(5), I(1, -1, 0, 0, INT64_MAX));
    tensor_free(y);
    free_all(in, 1);

    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_FLOAT32);
    in[0] = ti1(2, I(3, -4));
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_FLOAT32);
    expect_f(y, 1, D(2), F(3, -4), 0);
    tensor_free(y);
    free_all(in, 1);

    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_BOOL);
    in[0] = tf(1, D(3), F(0, 2, -0.5f));
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(0, 1, 1));
    tensor_free(y);
    free_all(in, 1);

    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", MHA_DTYPE_FLOAT16);
    in[0] = tf(1, D(2), F(1.0f / 3.0f, 70000));
    y = run1(13, &t, in);
    assert_int_equal(((uint16_t *)y->data)[0], mha_float_to_half(1.0f / 3.0f));
    assert_true(isinf(tensor_get_f64(y, 1)));
    tensor_free(y);
    free_all(in, 1);

    tn_init(&t, "Cast", 1, 1);
    tn_int(&t, "to", 999);
    in[0] = tf(1, D(1), F(1));
    run_err(13, &t, in, 1, MHA_ERR_DTYPE);
    tn_init(&t, "Cast", 1, 1);
    in[0] = tf(1, D(1), F(1));
    run_err(13, &t, in, 1, MHA_ERR_MODEL_FORMAT); /* 'to' missing */

    tn_init(&t, "CastLike", 2, 1);
    in[0] = ti1(2, I(1, 2));
    in[1] = tf0(0);
    y = run1(15, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_FLOAT32);
    expect_f(y, 1, D(2), F(1, 2), 0);
    tensor_free(y);
    free_all(in, 2);
}

/* ---- shape ops ---- */

static void test_identity_constant(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Identity", 1, 1);
    tensor *in[2] = {tf(2, D(1, 2), F(1, 2))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(1, 2), F(1, 2), 0);
    assert_ptr_not_equal(y->data, in[0]->data);
    tensor_free(y);
    free_all(in, 1);

    tn_init(&t, "Constant", 0, 1);
    tn_ints(&t, "value_ints", I(4, 5, 6), 3);
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(4, 5, 6));
    tensor_free(y);
    tn_init(&t, "Constant", 0, 1);
    tn_float(&t, "value_float", 2.5f);
    y = run1(13, &t, in);
    expect_f(y, 0, NULL, F(2.5), 0);
    tensor_free(y);
    tn_init(&t, "Constant", 0, 1);
    tn_int(&t, "value_int", -3);
    y = run1(13, &t, in);
    expect_i(y, 0, NULL, I(-3));
    tensor_free(y);
    tn_init(&t, "Constant", 0, 1);
    tn_floats(&t, "value_floats", F(1, 2), 2);
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(1, 2), 0);
    tensor_free(y);
    tensor *v = tf(2, D(2, 1), F(7, 8));
    tn_init(&t, "Constant", 0, 1);
    tn_tensor(&t, "value", v);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(7, 8), 0);
    tensor_free(y);
    /* two value attributes, or a string one */
    tn_int(&t, "value_int", 1);
    run_err(13, &t, in, 0, MHA_ERR_MODEL_FORMAT);
    tensor_free(v);
    tn_init(&t, "Constant", 0, 1);
    tn_attr(&t, "value_string", IR_ATTR_STRING);
    run_err(13, &t, in, 0, MHA_ERR_MODEL_UNSUPPORTED);

    tn_init(&t, "ConstantOfShape", 1, 1);
    in[0] = ti1(2, I(2, 3));
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_FLOAT32);
    expect_f(y, 2, D(2, 3), F(0, 0, 0, 0, 0, 0), 0);
    tensor_free(y);
    v = ti1(1, I(7));
    tn_tensor(&t, "value", v);
    y = run1(13, &t, in);
    expect_i(y, 2, D(2, 3), I(7, 7, 7, 7, 7, 7));
    tensor_free(y);
    free_all(in, 1);
    /* an empty shape gives a scalar */
    in[0] = ti(1, D(0), NULL);
    y = run1(13, &t, in);
    expect_i(y, 0, NULL, I(7));
    tensor_free(y);
    free_all(in, 1);
    tensor_free(v);
    /* negative and huge shapes are refused before allocating */
    tn_init(&t, "ConstantOfShape", 1, 1);
    in[0] = ti1(2, I(2, -1));
    run_err(13, &t, in, 1, MHA_ERR_SHAPE);
    in[0] = ti1(3, I(1000000, 1000000, 1000000));
    run_err(13, &t, in, 1, MHA_ERR_LIMIT);
    in[0] = ti1(2, I(INT64_MAX, INT64_MAX));
    run_err(13, &t, in, 1, MHA_ERR_LIMIT);
}

static void test_shape_size(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Shape", 1, 1);
    tensor *in[1] = {mk(MHA_DTYPE_FLOAT32, 3, D(2, 3, 4))};
    tensor *y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(2, 3, 4));
    tensor_free(y);
    tn_int(&t, "start", -2);
    y = run1(15, &t, in);
    expect_i(y, 1, D(2), I(3, 4));
    tensor_free(y);
    /* before opset 15 start/end do not exist */
    y = run1(14, &t, in);
    expect_i(y, 1, D(3), I(2, 3, 4));
    tensor_free(y);
    tn_init(&t, "Shape", 1, 1);
    tn_int(&t, "start", 1);
    tn_int(&t, "end", 100);
    y = run1(15, &t, in);
    expect_i(y, 1, D(2), I(3, 4));
    tensor_free(y);
    tn_init(&t, "Shape", 1, 1);
    tn_int(&t, "start", 2);
    tn_int(&t, "end", 1);
    y = run1(15, &t, in);
    expect_i(y, 1, D(0), NULL);
    tensor_free(y);

    tn_init(&t, "Size", 1, 1);
    y = run1(13, &t, in);
    expect_i(y, 0, NULL, I(24));
    tensor_free(y);
    free_all(in, 1);
}

static void test_gather(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Gather", 2, 1);
    tensor *in[2] = {tf(2, D(3, 2), F(1, 2, 3, 4, 5, 6)), ti1(2, I(2, -3))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(5, 6, 1, 2), 0);
    tensor_free(y);
    tensor_free(in[1]);
    /* a scalar index drops the axis (the Shape -> Gather idiom) */
    in[1] = ti0(-1);
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(5, 6), 0);
    tensor_free(y);
    tensor_free(in[1]);
    /* axis 1 with 2-D indices: [3] + [2,1] -> [3,2,1] */
    tn_int(&t, "axis", -1);
    in[1] = ti(2, D(2, 1), I(1, 0));
    y = run1(13, &t, in);
    expect_f(y, 3, D(3, 2, 1), F(2, 1, 4, 3, 6, 5), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti1(1, I(2));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* index 2 on an axis of 2 */
    tn_init(&t, "Gather", 2, 1);
    tn_int(&t, "axis", 2);
    in[0] = tf(2, D(3, 2), F(1, 2, 3, 4, 5, 6));
    in[1] = ti0(0);
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* bad axis */
    tn_init(&t, "Gather", 2, 1);
    in[0] = tf(2, D(3, 2), F(1, 2, 3, 4, 5, 6));
    in[1] = tf0(0);
    run_err(13, &t, in, 2, MHA_ERR_DTYPE);
    in[0] = tf0(1);
    in[1] = ti0(0);
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
}

/* GatherElements (torch.gather: each next token's log-probability) */
static void test_gather_elements(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "GatherElements", 2, 1);
    tn_int(&t, "axis", 1);
    /* x [2, 3], idx [2, 1]: one column per row, -1 the last */
    tensor *in[2] = {tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6)), ti(2, D(2, 1), I(2, -1))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(3, 6), 0);
    tensor_free(y);
    tensor_free(in[1]);
    /* axis 0 (the default), idx [1, 3]: a row per column */
    tn_init(&t, "GatherElements", 2, 1);
    in[1] = ti(2, D(1, 3), I(1, 0, 1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(1, 3), F(4, 2, 6), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti(2, D(1, 3), I(2, 0, 0));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* index 2 on an axis of 2 */
    tn_init(&t, "GatherElements", 2, 1);
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = ti1(2, I(0, 1));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* ranks differ */
}

/* SoftmaxCrossEntropyLoss (F.cross_entropy) and NegativeLogLikelihoodLoss
 * (F.nll_loss): a scorer's per-token negative log-likelihood */
static void test_losses(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *out[TN_MAX] = {0};
    /* scores [2, 3], labels [2]: -log_softmax(row)[label] per row */
    const double l0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0, l1 = log(3.0);
    tn_init(&t, "SoftmaxCrossEntropyLoss", 2, 2);
    tn_attr(&t, "reduction", IR_ATTR_STRING)->s = (char *)"none";
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 1, 1, 1));
    in[1] = ti1(2, I(2, 0));
    assert_int_equal(eval(13, &t, in, out), MHA_OK);
    expect_f(out[0], 1, D(2), F((float)l0, (float)l1), 1e-6);
    expect_f(out[1], 2, D(2, 3),
             F((float)(-2 - l0), (float)(-1 - l0), (float)-l0, (float)-l1, (float)-l1, (float)-l1),
             1e-6);
    free_all(out, 2);
    /* mean over the class weights of the labels counted */
    tn_init(&t, "SoftmaxCrossEntropyLoss", 3, 1);
    in[2] = tf(1, D(3), F(2, 1, 0.5f));
    tensor *y = run1(13, &t, in);
    expect_f(y, 0, D(0), F((float)((0.5 * l0 + 2 * l1) / 2.5)), 1e-6);
    tensor_free(y);
    tensor_free(in[2]);
    /* ignore_index: the label 0 row counts nothing, the mean is row 0's */
    tn_init(&t, "SoftmaxCrossEntropyLoss", 2, 1);
    tn_int(&t, "ignore_index", 0);
    y = run1(13, &t, in);
    expect_f(y, 0, D(0), F((float)l0), 1e-6);
    tensor_free(y);
    /* a label outside the classes, and not ignored */
    tensor_free(in[1]);
    in[1] = ti1(2, I(3, 0));
    tn_init(&t, "SoftmaxCrossEntropyLoss", 2, 2);
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    /* [N, C, D]: the classes on axis 1, labels [N, D] */
    tn_init(&t, "SoftmaxCrossEntropyLoss", 2, 1);
    tn_attr(&t, "reduction", IR_ATTR_STRING)->s = (char *)"none";
    in[0] = tf(3, D(1, 2, 2), F(0, 5, 0, 5));
    in[1] = ti(2, D(1, 2), I(0, 1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(1, 2), F((float)log(2.0), (float)log(2.0)), 1e-6);
    tensor_free(y);
    free_all(in, 2);
    /* NLL of log-probabilities: the sum of -x[n, label] */
    tn_init(&t, "NegativeLogLikelihoodLoss", 2, 1);
    tn_attr(&t, "reduction", IR_ATTR_STRING)->s = (char *)"sum";
    in[0] = tf(2, D(2, 2), F(-1, -2, -3, -4));
    in[1] = ti1(2, I(1, 0));
    y = run1(13, &t, in);
    expect_f(y, 0, D(0), F(5), 0);
    tensor_free(y);
    /* labels that are not the scores' shape without axis 1 */
    tensor_free(in[1]);
    in[1] = ti1(3, I(1, 0, 0));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
}

static void test_unsqueeze_squeeze(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    /* opset 13: axes is an input; negative axes count in the output rank */
    tn_init(&t, "Unsqueeze", 2, 1);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = ti1(2, I(0, -1));
    y = run1(13, &t, in);
    expect_f(y, 3, D(1, 2, 1), F(1, 2), 0);
    tensor_free(y);
    free_all(in, 2);
    /* a scalar becomes [1] */
    in[0] = tf0(3);
    in[1] = ti1(1, I(0));
    y = run1(13, &t, in);
    expect_f(y, 1, D(1), F(3), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = ti1(1, I(3));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = ti1(2, I(1, 1));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* repeated */
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = NULL;
    run_err(13, &t, in, 2, MHA_ERR_MODEL_FORMAT);
    /* opset 11: axes attribute */
    tn_init(&t, "Unsqueeze", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    in[0] = tf(1, D(2), F(1, 2));
    y = run1(11, &t, in);
    expect_f(y, 2, D(2, 1), F(1, 2), 0);
    tensor_free(y);
    /* ... which opset 13 refuses */
    run_err(13, &t, in, 1, MHA_ERR_MODEL_FORMAT);

    tn_init(&t, "Squeeze", 1, 1);
    in[0] = tf(4, D(1, 2, 1, 1), F(1, 2));
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(1, 2), 0);
    tensor_free(y);
    tn_init(&t, "Squeeze", 2, 1);
    in[1] = ti1(2, I(-1, 0));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(1, 2), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti1(1, I(1));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* extent 2 */
    tn_init(&t, "Squeeze", 1, 1);
    tn_ints(&t, "axes", I(2), 1);
    in[0] = tf(3, D(2, 1, 1), F(1, 2));
    y = run1(11, &t, in);
    expect_f(y, 2, D(2, 1), F(1, 2), 0);
    tensor_free(y);
    free_all(in, 1);
}

static void test_concat(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Concat", 3, 1);
    tn_int(&t, "axis", -1);
    tensor *in[3] = {tf(2, D(2, 1), F(1, 2)), tf(2, D(2, 2), F(3, 4, 5, 6)), tf(2, D(2, 0), F(0))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(1, 3, 4, 2, 5, 6), 0);
    tensor_free(y);
    free_all(in, 3);
    tn_init(&t, "Concat", 2, 1);
    tn_int(&t, "axis", 0);
    in[0] = ti1(2, I(1, 2));
    in[1] = ti1(1, I(-1));
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(1, 2, -1));
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(2, D(2, 1), F(1, 2));
    in[1] = tf(2, D(1, 2), F(1, 2));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(1, D(1), F(1));
    in[1] = ti1(1, I(1));
    run_err(13, &t, in, 2, MHA_ERR_DTYPE);
    tn_init(&t, "Concat", 2, 1);
    in[0] = tf(1, D(1), F(1));
    in[1] = tf(1, D(1), F(1));
    run_err(13, &t, in, 2, MHA_ERR_MODEL_FORMAT); /* axis missing */
    tn_init(&t, "Concat", 2, 1);
    tn_int(&t, "axis", 1);
    in[0] = tf(1, D(1), F(1));
    in[1] = tf(1, D(1), F(1));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE); /* bad axis */
}

static void test_reshape(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Reshape", 2, 1);
    tensor *in[2] = {tf(3, D(2, 3, 2), F(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)),
                     ti1(3, I(0, -1, 3))};
    tensor *y = run1(13, &t, in);
    expect_shape(y, 3, D(2, 2, 3));
    assert_true(tensor_get_f64(y, 11) == 12.0);
    tensor_free(y);
    /* 12 is not a multiple of 5; two -1; wrong count; a 0 copying a dim the
     * input lacks; an extent below -1 */
    static const int64_t bad_shapes[5][5] = {{-1, 5}, {-1, -1}, {4, 4}, {0, 0, 0, 0, 1}, {-2, 6}};
    static const size_t bad_len[5] = {2, 2, 2, 5, 2};
    for (int k = 0; k < 5; k++) {
        tensor_free(in[1]);
        in[1] = ti1(bad_len[k], bad_shapes[k]);
        run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    }
    free_all(in, 2);
    /* allowzero: 0 means an empty axis */
    tn_init(&t, "Reshape", 2, 1);
    tn_int(&t, "allowzero", 1);
    in[0] = tf(2, D(0, 3), F(0));
    in[1] = ti1(2, I(3, 0));
    y = run1(14, &t, in);
    expect_shape(y, 2, D(3, 0));
    tensor_free(y);
    /* without allowzero the 0 copies the input's extent */
    tn_init(&t, "Reshape", 2, 1);
    tensor_free(in[1]);
    in[1] = ti1(2, I(0, 3));
    y = run1(14, &t, in);
    expect_shape(y, 2, D(0, 3));
    tensor_free(y);
    free_all(in, 2);
    /* opset 1..4: the shape is an attribute */
    tn_init(&t, "Reshape", 1, 1);
    tn_ints(&t, "shape", I(-1), 1);
    in[0] = tf(2, D(2, 2), F(1, 2, 3, 4));
    y = run1(4, &t, in);
    expect_f(y, 1, D(4), F(1, 2, 3, 4), 0);
    tensor_free(y);
    free_all(in, 1);
}

static void test_transpose(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "Transpose", 1, 1);
    tensor *in[1] = {tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6))};
    tensor *y = run1(13, &t, in);
    expect_f(y, 2, D(3, 2), F(1, 4, 2, 5, 3, 6), 0);
    tensor_free(y);
    free_all(in, 1);
    /* [2,1,3] perm (2,0,1) -> [3,2,1] */
    tn_ints(&t, "perm", I(2, 0, 1), 3);
    in[0] = tf(3, D(2, 1, 3), F(1, 2, 3, 4, 5, 6));
    y = run1(13, &t, in);
    expect_f(y, 3, D(3, 2, 1), F(1, 4, 2, 5, 3, 6), 0);
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Transpose", 1, 1);
    tn_ints(&t, "perm", I(0, 0), 2);
    in[0] = tf(2, D(1, 1), F(1));
    run_err(13, &t, in, 1, MHA_ERR_SHAPE);
    tn_init(&t, "Transpose", 1, 1);
    tn_ints(&t, "perm", I(0, 1, 2), 3);
    in[0] = tf(2, D(1, 1), F(1));
    run_err(13, &t, in, 1, MHA_ERR_SHAPE);
}

static void test_slice(void **state) {
    (void)state;
    tnode t;
    tensor *in[5], *y;
    const float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; /* [3, 4] */
    /* rows 1.., columns 0..-1 (negative end) */
    tn_init(&t, "Slice", 3, 1);
    in[0] = tf(2, D(3, 4), x);
    in[1] = ti1(2, I(1, 0));
    in[2] = ti1(2, I(INT64_MAX, -1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(4, 5, 6, 8, 9, 10), 0);
    tensor_free(y);
    free_all(in + 1, 2);
    /* axes and negative steps: columns reversed, every other row from the end */
    tn_init(&t, "Slice", 5, 1);
    in[1] = ti1(2, I(-1, -1));
    in[2] = ti1(2, I(INT64_MIN, INT64_MIN));
    in[3] = ti1(2, I(1, 0));
    in[4] = ti1(2, I(-1, -2));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 4), F(11, 10, 9, 8, 3, 2, 1, 0), 0);
    tensor_free(y);
    free_all(in + 1, 4);
    /* clamped starts past the end give an empty axis */
    tn_init(&t, "Slice", 4, 1);
    in[1] = ti1(1, I(10));
    in[2] = ti1(1, I(20));
    in[3] = ti1(1, I(-1));
    y = run1(13, &t, in);
    expect_shape(y, 2, D(3, 0));
    tensor_free(y);
    free_all(in + 1, 3);
    /* omitted axes ("") with steps given */
    tn_init(&t, "Slice", 5, 1);
    t.ins[3] = -1;
    in[1] = ti1(1, I(0));
    in[2] = ti1(1, I(3));
    in[3] = NULL;
    in[4] = ti1(1, I(2));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 4), F(0, 1, 2, 3, 8, 9, 10, 11), 0);
    tensor_free(y);
    free_all(in + 1, 4);
    /* regression: a negative step on an empty axis takes nothing (the
     * clamp range [0, d-1] is empty there) */
    tn_init(&t, "Slice", 5, 1);
    tensor *empty = mk(MHA_DTYPE_FLOAT32, 2, D(0, 2));
    in[1] = ti1(1, I(-1));
    in[2] = ti1(1, I(5));
    in[3] = ti1(1, I(0));
    in[4] = ti1(1, I(INT64_MIN));
    tensor *in_e[5] = {empty, in[1], in[2], in[3], in[4]};
    y = run1(13, &t, in_e);
    expect_shape(y, 2, D(0, 2));
    tensor_free(y);
    tensor_free(empty);
    free_all(in + 1, 4);
    /* the spec clamps a negative-step start to [0, d-1] (numpy would give
     * nothing for x[-10::-1]; ONNX gives element 0) */
    in[1] = ti1(1, I(-10));
    in[2] = ti1(1, I(INT64_MIN));
    in[3] = ti1(1, I(1));
    in[4] = ti1(1, I(-1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(3, 1), F(0, 4, 8), 0);
    tensor_free(y);
    free_all(in + 1, 4);
    /* errors: step 0, bad axis, length mismatch */
    tn_init(&t, "Slice", 5, 1);
    in[1] = ti1(1, I(0));
    in[2] = ti1(1, I(1));
    in[3] = ti1(1, I(0));
    in[4] = ti1(1, I(0));
    run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    tensor_free(in[3]);
    tensor_free(in[4]);
    in[3] = ti1(1, I(2));
    in[4] = ti1(1, I(1));
    run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    tensor_free(in[3]);
    in[3] = ti1(2, I(0, 1));
    run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    free_all(in + 1, 4);
    /* opset 9: starts / ends / axes are attributes */
    tn_init(&t, "Slice", 1, 1);
    tn_ints(&t, "starts", I(1), 1);
    tn_ints(&t, "ends", I(3), 1);
    tn_ints(&t, "axes", I(1), 1);
    y = run1(9, &t, in);
    expect_f(y, 2, D(3, 2), F(1, 2, 5, 6, 9, 10), 0);
    tensor_free(y);
    free_all(in, 1);
}

static void test_split(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *out[TN_MAX] = {0};
    const float x[6] = {1, 2, 3, 4, 5, 6};
    /* equal parts */
    tn_init(&t, "Split", 1, 3);
    in[0] = tf(1, D(6), x);
    assert_int_equal(eval(13, &t, in, out), MHA_OK);
    expect_f(out[0], 1, D(2), F(1, 2), 0);
    expect_f(out[2], 1, D(2), F(5, 6), 0);
    free_all(out, 3);
    /* sizes as an input (opset 13), along axis 1 of [2,3] */
    tn_init(&t, "Split", 2, 2);
    tn_int(&t, "axis", -1);
    tensor_free(in[0]);
    in[0] = tf(2, D(2, 3), x);
    in[1] = ti1(2, I(1, 2));
    assert_int_equal(eval(13, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 1), F(1, 4), 0);
    expect_f(out[1], 2, D(2, 2), F(2, 3, 5, 6), 0);
    free_all(out, 2);
    tensor_free(in[1]);
    in[1] = ti1(2, I(1, 1));
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_SHAPE);
    tensor_free(in[1]);
    /* sizes as an attribute (opset 11) */
    tn_init(&t, "Split", 1, 2);
    tn_int(&t, "axis", 1);
    tn_ints(&t, "split", I(2, 1), 2);
    assert_int_equal(eval(11, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 2), F(1, 2, 4, 5), 0);
    expect_f(out[1], 2, D(2, 1), F(3, 6), 0);
    free_all(out, 2);
    /* num_outputs (opset 18): ceil-sized parts, the last smaller */
    tn_init(&t, "Split", 1, 2);
    tn_int(&t, "axis", 1);
    tn_int(&t, "num_outputs", 2);
    assert_int_equal(eval(18, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 2), F(1, 2, 4, 5), 0);
    expect_f(out[1], 2, D(2, 1), F(3, 6), 0);
    free_all(out, 2);
    /* an uneven equal split without num_outputs is an error */
    tn_init(&t, "Split", 1, 2);
    tn_int(&t, "axis", 1);
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_SHAPE);
    tn_init(&t, "Split", 1, 2);
    tn_int(&t, "axis", 5);
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_SHAPE);
    free_all(in, 1);
}

static void test_expand_range_tile(void **state) {
    (void)state;
    tnode t;
    tensor *in[4] = {0}, *y;
    tn_init(&t, "Expand", 2, 1);
    in[0] = tf(2, D(3, 1), F(1, 2, 3));
    in[1] = ti1(3, I(2, 1, 2));
    y = run1(13, &t, in);
    expect_f(y, 3, D(2, 3, 2), F(1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti1(2, I(2, 2));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(1, D(1), F(1));
    in[1] = ti1(3, I(1 << 20, 1 << 20, 1 << 20));
    run_err(13, &t, in, 2, MHA_ERR_LIMIT);

    tn_init(&t, "Range", 3, 1);
    in[0] = ti0(10);
    in[1] = ti0(3);
    in[2] = ti0(-3);
    y = run1(13, &t, in);
    expect_i(y, 1, D(3), I(10, 7, 4));
    tensor_free(y);
    free_all(in, 3);
    in[0] = tf0(0);
    in[1] = tf0(1);
    in[2] = tf0(0.25f);
    y = run1(13, &t, in);
    expect_f(y, 1, D(4), F(0, 0.25, 0.5, 0.75), 0);
    tensor_free(y);
    free_all(in, 3);
    in[0] = ti0(0);
    in[1] = ti0(5);
    in[2] = ti0(0);
    run_err(13, &t, in, 3, MHA_ERR_SHAPE);
    in[0] = ti0(0);
    in[1] = ti0(INT64_MAX);
    in[2] = ti0(1);
    run_err(13, &t, in, 3, MHA_ERR_LIMIT);

    tn_init(&t, "Tile", 2, 1);
    in[0] = tf(2, D(1, 2), F(1, 2));
    in[1] = ti1(2, I(2, 2));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 4), F(1, 2, 1, 2, 1, 2, 1, 2), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti1(1, I(2));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);

    /* Pad: a constant, a crop by a negative pad, edge and reflect; opset 2
     * with attributes; opset 18 with axes (MobileBERT's trigram input) */
    tn_init(&t, "Pad", 3, 1);
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = ti1(4, I(0, 1, 1, -1));
    in[2] = tf0(9);
    y = run1(13, &t, in);
    expect_f(y, 2, D(3, 3), F(9, 1, 2, 9, 4, 5, 9, 9, 9), 0);
    tensor_free(y);
    tensor_free(in[2]);
    in[2] = NULL;
    tensor_free(in[1]);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"edge";
    in[1] = ti1(4, I(0, 2, 0, 1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 6), F(1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6), 0);
    tensor_free(y);
    tensor_free(in[1]);
    tn_init(&t, "Pad", 2, 1);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"reflect";
    in[1] = ti1(4, I(0, 2, 0, 2));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 7), F(3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti1(3, I(0, 2, 0));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    tn_init(&t, "Pad", 1, 1);
    tn_ints(&t, "pads", I(1, 0, 0, 0), 4);
    tn_float(&t, "value", 7);
    y = run1(2, &t, in);
    expect_f(y, 2, D(3, 3), F(7, 7, 7, 1, 2, 3, 4, 5, 6), 0);
    tensor_free(y);
    tn_init(&t, "Pad", 4, 1);
    in[1] = ti1(2, I(1, 0));
    in[2] = NULL;
    in[3] = ti1(1, I(-1));
    y = run1(18, &t, in);
    expect_f(y, 2, D(2, 4), F(0, 1, 2, 3, 0, 4, 5, 6), 0);
    tensor_free(y);
    free_all(in, 4);

    tn_init(&t, "Flatten", 1, 1);
    in[0] = tf(3, D(2, 1, 3), F(1, 2, 3, 4, 5, 6));
    y = run1(13, &t, in);
    expect_shape(y, 2, D(2, 3));
    tensor_free(y);
    tn_int(&t, "axis", 0);
    y = run1(13, &t, in);
    expect_shape(y, 2, D(1, 6));
    tensor_free(y);
    tn_init(&t, "Flatten", 1, 1);
    tn_int(&t, "axis", -1);
    y = run1(13, &t, in);
    expect_shape(y, 2, D(2, 3));
    tensor_free(y);
    tn_init(&t, "Flatten", 1, 1);
    tn_int(&t, "axis", 3);
    y = run1(13, &t, in);
    expect_shape(y, 2, D(6, 1));
    tensor_free(y);
    tn_init(&t, "Flatten", 1, 1);
    tn_int(&t, "axis", 4);
    run_err(13, &t, in, 1, MHA_ERR_SHAPE);
}

static void test_trilu(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    tn_init(&t, "Trilu", 1, 1);
    in[0] = tf(2, D(3, 3), ones);
    y = run1(14, &t, in);
    expect_f(y, 2, D(3, 3), F(1, 1, 1, 0, 1, 1, 0, 0, 1), 0);
    tensor_free(y);
    /* upper with k = 1: strictly above the diagonal (PyTorch's causal mask) */
    tn_init(&t, "Trilu", 2, 1);
    in[1] = ti0(1);
    y = run1(14, &t, in);
    expect_f(y, 2, D(3, 3), F(0, 1, 1, 0, 0, 1, 0, 0, 0), 0);
    tensor_free(y);
    tn_int(&t, "upper", 0);
    tensor_free(in[1]);
    in[1] = ti0(-1);
    y = run1(14, &t, in);
    expect_f(y, 2, D(3, 3), F(0, 0, 0, 1, 0, 0, 1, 1, 0), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(1, D(3), ones);
    in[1] = NULL;
    run_err(14, &t, in, 1, MHA_ERR_SHAPE);
}

/* ---- contractions and reductions ---- */

static void test_matmul(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    tn_init(&t, "MatMul", 2, 1);
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = tf(2, D(3, 2), F(1, 0, 0, 1, 1, 1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(4, 5, 10, 11), 0);
    tensor_free(y);
    free_all(in, 2);
    /* 1-D operands lose their unit dim */
    in[0] = tf(1, D(3), F(1, 2, 3));
    in[1] = tf(2, D(3, 2), F(1, 0, 0, 1, 1, 1));
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(4, 5), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = tf(1, D(3), F(1, 1, 1));
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(6, 15), 0);
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(1, D(2), F(1, 2));
    in[1] = tf(1, D(2), F(3, 4));
    y = run1(13, &t, in);
    expect_f(y, 0, NULL, F(11), 0);
    tensor_free(y);
    free_all(in, 2);
    /* batched broadcasting: [2,1,1,2] x [3,2,1] -> [2,3,1,1] */
    in[0] = tf(4, D(2, 1, 1, 2), F(1, 2, 3, 4));
    in[1] = tf(3, D(3, 2, 1), F(1, 0, 0, 1, 1, 1));
    y = run1(13, &t, in);
    expect_f(y, 4, D(2, 3, 1, 1), F(1, 2, 3, 3, 4, 7), 0);
    tensor_free(y);
    free_all(in, 2);
    /* int64 */
    in[0] = ti(2, D(1, 2), I(2, 3));
    in[1] = ti(2, D(2, 1), I(4, 5));
    y = run1(13, &t, in);
    expect_i(y, 2, D(1, 1), I(23));
    tensor_free(y);
    free_all(in, 2);
    /* errors */
    in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    in[1] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf(3, D(2, 1, 1), F(1, 2));
    in[1] = tf(3, D(3, 1, 1), F(1, 2, 3));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
    in[0] = tf0(1);
    in[1] = tf0(1);
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
}

/* Einsum as Keras writes it: projections, scores, P.V, the output. */
static void test_einsum(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    tn_init(&t, "Einsum", 2, 1);
    ir_attr *eq = tn_attr(&t, "equation", IR_ATTR_STRING);
    /* a projection [1, 2, 2] x [2, 1, 2] -> [1, 2, 1, 2] */
    eq->s = (char *)"abc,cde->abde";
    in[0] = tf(3, D(1, 2, 2), F(1, 2, 3, 4));
    in[1] = tf(3, D(2, 1, 2), F(1, 0, 0, 1));
    y = run1(14, &t, in);
    expect_f(y, 4, D(1, 2, 1, 2), F(1, 2, 3, 4), 0);
    tensor_free(y);
    free_all(in, 2);
    /* K first, the output transposed: S[a, c, b, e] = sum_d K[a,e,c,d] Q[a,b,c,d] */
    eq->s = (char *)"aecd,abcd->acbe";
    in[0] = tf(4, D(1, 2, 1, 2), F(1, 0, 0, 1));
    in[1] = tf(4, D(1, 1, 1, 2), F(3, 5));
    y = run1(14, &t, in);
    expect_f(y, 4, D(1, 1, 1, 2), F(3, 5), 0);
    tensor_free(y);
    free_all(in, 2);
    /* two contracted letters: [1, 1, 2, 1] x [2, 1, 3] -> [1, 1, 3] */
    eq->s = (char *)"abcd,cde->abe";
    in[0] = tf(4, D(1, 1, 2, 1), F(1, 2));
    in[1] = tf(3, D(2, 1, 3), F(1, 2, 3, 10, 20, 30));
    y = run1(14, &t, in);
    expect_f(y, 3, D(1, 1, 3), F(21, 42, 63), 0);
    tensor_free(y);
    free_all(in, 2);
    /* an ellipsis (LongT5's blocks): the leading axes, as letters of their
     * own; one of another length on each side */
    eq->s = (char *)"...qd,...kd->...qk";
    in[0] = tf(3, D(2, 1, 2), F(1, 2, 3, 4));
    in[1] = tf(3, D(2, 2, 2), F(1, 0, 0, 1, 1, 1, 2, 0));
    y = run1(14, &t, in);
    expect_f(y, 3, D(2, 1, 2), F(1, 2, 7, 6), 0);
    tensor_free(y);
    free_all(in, 2);
    eq->s = (char *)"...d,d->...";
    in[0] = tf(2, D(2, 2), F(1, 2, 3, 4));
    in[1] = tf(1, D(2), F(1, 10));
    y = run1(14, &t, in);
    expect_f(y, 1, D(2), F(21, 43), 0);
    tensor_free(y);
    free_all(in, 2);
    /* refused: an ellipsis over fewer axes than its letters, an implicit
     * output, letters of two sizes, a rank that differs from the term */
    static const char *const bad[] = {"...abc,cd->...abd", "ab,bc", "ab,bc->ac", "abc,cd->abd"};
    static const mha_status bad_st[] = {MHA_ERR_MODEL_UNSUPPORTED, MHA_ERR_MODEL_UNSUPPORTED,
                                        MHA_ERR_SHAPE, MHA_ERR_SHAPE};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eq->s = (char *)bad[i];
        in[0] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
        in[1] = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
        run_err(14, &t, in, 2, bad_st[i]);
    }
    /* an outer sum of 2^20 x 2^20 products per output: refused, not run */
    eq->s = (char *)"ab,cd->a";
    in[0] = mk(MHA_DTYPE_FLOAT32, 2, D(1, 1 << 20));
    in[1] = mk(MHA_DTYPE_FLOAT32, 2, D(1 << 10, 1 << 10));
    run_err(14, &t, in, 2, MHA_ERR_LIMIT);
    interp_einsum e;
    assert_int_equal(interp_einsum_parse("abc,cde->abde", &e), 1);
    assert_int_equal(e.n_in, 2);
    assert_string_equal(e.out, "abde");
    assert_int_equal(interp_einsum_parse("aab,b->a", &e), 0); /* a letter twice */
    assert_int_equal(interp_einsum_parse("ab,b->z", &e), 0);  /* z from nowhere */
}

static void test_gemm(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    /* Y = 2 * A^T . B^T + 0.5 * C, A [3,2] (transposed), B [2,3] (transposed), C [2] */
    tn_init(&t, "Gemm", 3, 1);
    tn_int(&t, "transA", 1);
    tn_int(&t, "transB", 1);
    tn_float(&t, "alpha", 2.0f);
    tn_float(&t, "beta", 0.5f);
    in[0] = tf(2, D(3, 2), F(1, 4, 2, 5, 3, 6)); /* A^T = [[1,2,3],[4,5,6]] */
    in[1] = tf(2, D(2, 3), F(1, 0, 1, 0, 1, 1)); /* B^T = [[1,0],[0,1],[1,1]] */
    in[2] = tf(1, D(2), F(10, 20));
    y = run1(13, &t, in);
    /* A^T.B^T = [[4,5],[10,11]] */
    expect_f(y, 2, D(2, 2), F(13, 20, 25, 32), 0);
    tensor_free(y);
    tensor_free(in[2]);
    /* C [2,1] broadcasts along columns; no C at all */
    in[2] = tf(2, D(2, 1), F(2, 4));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(9, 11, 22, 24), 0);
    tensor_free(y);
    tensor_free(in[2]);
    in[2] = NULL;
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(8, 10, 20, 22), 0);
    tensor_free(y);
    in[2] = tf(1, D(3), F(1, 2, 3));
    run_err(13, &t, in, 3, MHA_ERR_SHAPE);
    tn_init(&t, "Gemm", 2, 1);
    in[0] = tf(2, D(2, 2), F(1, 2, 3, 4));
    in[1] = tf(2, D(3, 2), F(1, 2, 3, 4, 5, 6));
    run_err(13, &t, in, 2, MHA_ERR_SHAPE);
}

/* The float32 MatMul takes rows in blocks and Gemm several columns at once:
 * every element must still be its double sum over k in order, rounded once
 * (sizes not multiples of the blocks, a broadcast batch, transB). */
static void test_contraction_blocks(void **state) {
    (void)state;
    enum { Bt = 2, M = 11, K = 13, N = 19 };
    float a[Bt * M * K], b[K * N], bt[N * K], want[Bt * M * N];
    uint32_t r = 12345;
    for (int i = 0; i < Bt * M * K; i++)
        a[i] = (float)((r = r * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < K * N; i++)
        b[i] = (float)((r = r * 1103515245u + 12345u) >> 8) / 16777216.0f - 0.5f;
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++)
            bt[n * K + k] = b[k * N + n];
    for (int i = 0; i < Bt * M; i++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)a[i * K + k] * (double)b[k * N + n];
            want[i * N + n] = (float)acc;
        }
    tnode t;
    tensor *in[2], *y;
    tn_init(&t, "MatMul", 2, 1);
    in[0] = tf(3, D(Bt, M, K), a);
    in[1] = tf(2, D(K, N), b);
    y = run1(13, &t, in);
    expect_f(y, 3, D(Bt, M, N), want, 0);
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "Gemm", 2, 1);
    tn_int(&t, "transB", 1);
    in[0] = tf(2, D(Bt * M, K), a);
    in[1] = tf(2, D(N, K), bt);
    y = run1(13, &t, in);
    expect_f(y, 2, D(Bt * M, N), want, 0);
    tensor_free(y);
    free_all(in, 2);
    /* with alpha, and beta * C [N] added to the double sum before the one
     * rounding; A given transposed ([K, M] read as op(A) [M, K]) */
    float at[K * Bt * M], c[N];
    for (int i = 0; i < Bt * M; i++)
        for (int k = 0; k < K; k++)
            at[k * Bt * M + i] = a[i * K + k];
    for (int n = 0; n < N; n++)
        c[n] = (float)n / 7.0f - 1.0f;
    for (int i = 0; i < Bt * M; i++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)a[i * K + k] * (double)b[k * N + n];
            want[i * N + n] = (float)(0.5 * acc + 2.0 * (double)c[n]);
        }
    tensor *in3[3];
    tn_init(&t, "Gemm", 3, 1);
    tn_int(&t, "transA", 1);
    tn_float(&t, "alpha", 0.5f);
    tn_float(&t, "beta", 2.0f);
    in3[0] = tf(2, D(K, Bt * M), at);
    in3[1] = tf(2, D(K, N), b);
    in3[2] = tf(1, D(N), c);
    y = run1(13, &t, in3);
    expect_f(y, 2, D(Bt * M, N), want, 0);
    tensor_free(y);
    free_all(in3, 3);
}

static void test_softmax(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *y;
    const double e = exp(1.0);
    const float p1 = (float)(1.0 / (1.0 + e)), p2 = (float)(e / (1.0 + e));
    tn_init(&t, "Softmax", 1, 1);
    in[0] = tf(2, D(2, 2), F(0, 1, 5, 5));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(p1, p2, 0.5, 0.5), 1e-7);
    tensor_free(y);
    free_all(in, 1);
    /* opset 13 along axis 0 of [2,1,2]; opset 11 coerces [2, 2] to 2-D at axis 1 */
    tn_int(&t, "axis", 0);
    in[0] = tf(3, D(2, 1, 2), F(0, 5, 1, 5));
    y = run1(13, &t, in);
    expect_f(y, 3, D(2, 1, 2), F(p1, 0.5, p2, 0.5), 1e-7);
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "Softmax", 1, 1);
    in[0] = tf(3, D(1, 2, 2), F(0, 0, 0, 0));
    y = run1(11, &t, in);
    expect_f(y, 3, D(1, 2, 2), F(0.25, 0.25, 0.25, 0.25), 1e-7);
    tensor_free(y);
    /* ... while opset 13 normalises only the last axis */
    y = run1(13, &t, in);
    expect_f(y, 3, D(1, 2, 2), F(0.5, 0.5, 0.5, 0.5), 1e-7);
    tensor_free(y);
    free_all(in, 1);
    /* -inf entries get 0; an all -inf row is NaN, as the spec computes it */
    in[0] = tf(2, D(2, 2), F(-INFINITY, 1, -INFINITY, -INFINITY));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 2), F(0, 1, NAN, NAN), 0);
    tensor_free(y);
    free_all(in, 1);
    tn_init(&t, "LogSoftmax", 1, 1);
    in[0] = tf(1, D(2), F(0, 1));
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(logf(p1), logf(p2)), 1e-6);
    tensor_free(y);
    tn_int(&t, "axis", 1);
    run_err(13, &t, in, 1, MHA_ERR_SHAPE);
}

static void test_reduce(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    const float x[6] = {1, 2, 3, 4, 5, 6}; /* [2, 3] */
    tn_init(&t, "ReduceSum", 2, 1);
    in[0] = tf(2, D(2, 3), x);
    in[1] = ti1(1, I(-1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(6, 15), 0);
    tensor_free(y);
    tn_int(&t, "keepdims", 0);
    tensor_free(in[1]);
    in[1] = ti1(1, I(0));
    y = run1(13, &t, in);
    expect_f(y, 1, D(3), F(5, 7, 9), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = NULL; /* no axes: everything */
    y = run1(13, &t, in);
    expect_f(y, 0, NULL, F(21), 0);
    tensor_free(y);
    /* noop_with_empty_axes */
    tn_int(&t, "noop_with_empty_axes", 1);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), x, 0);
    tensor_free(y);
    in[1] = ti1(1, I(2));
    run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    tensor_free(in[1]);

    /* opset 13 ReduceMean still has the axes attribute */
    tn_init(&t, "ReduceMean", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(2, 5), 0);
    tensor_free(y);
    tn_init(&t, "ReduceMax", 2, 1);
    in[1] = ti1(2, I(0, 1));
    y = run1(18, &t, in);
    expect_f(y, 2, D(1, 1), F(6), 0);
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "ReduceMax", 1, 1);
    in[0] = ti(2, D(2, 2), I(-5, 3, 7, -1));
    tn_ints(&t, "axes", I(0), 1);
    tn_int(&t, "keepdims", 0);
    y = run1(13, &t, in);
    expect_i(y, 1, D(2), I(7, 3));
    tensor_free(y);
    free_all(in, 1);
}

/* ---- quantization (interp_quant.c) and the opset 18-20 ops ---- */

/* an 8-bit / int32 tensor from int64 literals */
static tensor *tq(mha_dtype dt, int rank, const int64_t *dims, const int64_t *v) {
    tensor *t = mk(dt, rank, dims);
    for (int64_t i = 0, n = tensor_numel(t); i < n; i++)
        if (dt == MHA_DTYPE_UINT8)
            ((uint8_t *)t->data)[i] = (uint8_t)v[i];
        else if (dt == MHA_DTYPE_INT8)
            ((int8_t *)t->data)[i] = (int8_t)v[i];
        else
            ((int32_t *)t->data)[i] = (int32_t)v[i];
    return t;
}

/* DynamicQuantizeLinear: the specification's example (range widened to
 * hold 0, scale 5 / 255, zero point 153); an all-zero input keeps scale 1
 * as ONNX Runtime does */
static void test_dynamic_quantize_linear(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *out[3] = {0};
    tn_init(&t, "DynamicQuantizeLinear", 1, 3);
    in[0] = tf(2, D(2, 3), F(0, 2, -3, -2.5f, 1.34f, 0.5f));
    assert_int_equal(eval(11, &t, in, out), MHA_OK);
    assert_int_equal(out[0]->dtype, MHA_DTYPE_UINT8);
    expect_i(out[0], 2, D(2, 3), I(153, 255, 0, 26, 221, 179));
    expect_f(out[1], 0, NULL, F(5.0f / 255.0f), 1e-7);
    assert_int_equal(out[2]->dtype, MHA_DTYPE_UINT8);
    expect_i(out[2], 0, NULL, I(153));
    free_all(out, 3);
    free_all(in, 1);
    in[0] = tf(1, D(2), F(0, 0));
    assert_int_equal(eval(11, &t, in, out), MHA_OK);
    expect_i(out[0], 1, D(2), I(0, 0));
    expect_f(out[1], 0, NULL, F(1), 0);
    free_all(out, 3);
    free_all(in, 1);
}

/* QuantizeLinear: halves round to even, saturation at the type's ends,
 * per tensor (uint8 without a zero point) and per axis (opset 13) */
static void test_quantize_linear(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    tn_init(&t, "QuantizeLinear", 3, 1);
    in[0] = tf(1, D(7), F(0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 300, -300));
    in[1] = tf0(1);
    in[2] = tq(MHA_DTYPE_INT8, 0, NULL, I(0));
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_INT8);
    expect_i(y, 1, D(7), I(0, 2, 2, 0, -2, 127, -128));
    tensor_free(y);
    free_all(in, 3);
    tn_init(&t, "QuantizeLinear", 2, 1);
    in[0] = tf(1, D(4), F(0.5f, 3, -1, 1000));
    in[1] = tf0(2);
    y = run1(13, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_UINT8);
    expect_i(y, 1, D(4), I(0, 2, 0, 255));
    tensor_free(y);
    free_all(in, 2);
    /* per axis 1 of [2, 3]: scales 1, 2, 4, zero points 0, 1, -1 */
    tn_init(&t, "QuantizeLinear", 3, 1);
    tn_int(&t, "axis", 1);
    in[0] = tf(2, D(2, 3), F(2, 2, 2, -6, 6, 10));
    in[1] = tf(1, D(3), F(1, 2, 4));
    in[2] = tq(MHA_DTYPE_INT8, 1, D(3), I(0, 1, -1));
    y = run1(13, &t, in);
    expect_i(y, 2, D(2, 3), I(2, 2, -1, -6, 4, 1));
    tensor_free(y);
    /* a per-axis scale before opset 13, a scale of the wrong length */
    run_err(10, &t, in, 0, MHA_ERR_SHAPE);
    tn_init(&t, "QuantizeLinear", 3, 1);
    tn_int(&t, "axis", 0);
    run_err(13, &t, in, 0, MHA_ERR_SHAPE);
    /* blocked quantization (opset 21) is refused by name */
    tn_init(&t, "QuantizeLinear", 3, 1);
    tn_int(&t, "block_size", 2);
    run_err(21, &t, in, 3, MHA_ERR_MODEL_UNSUPPORTED);
}

/* DequantizeLinear: (x - zero point) * scale, per axis and per tensor */
static void test_dequantize_linear(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    tn_init(&t, "DequantizeLinear", 3, 1);
    tn_int(&t, "axis", 1);
    in[0] = tq(MHA_DTYPE_INT8, 2, D(2, 3), I(2, 2, -1, -6, 4, 1));
    in[1] = tf(1, D(3), F(1, 2, 4));
    in[2] = tq(MHA_DTYPE_INT8, 1, D(3), I(0, 1, -1));
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 3), F(2, 2, 0, -6, 6, 8), 0);
    tensor_free(y);
    free_all(in, 3);
    tn_init(&t, "DequantizeLinear", 3, 1);
    in[0] = tq(MHA_DTYPE_UINT8, 1, D(3), I(0, 128, 255));
    in[1] = tf0(0.5f);
    in[2] = tq(MHA_DTYPE_UINT8, 0, NULL, I(128));
    y = run1(10, &t, in);
    expect_f(y, 1, D(3), F(-64, 0, 63.5f), 0);
    tensor_free(y);
    tensor_free(in[2]);
    /* the zero point's type must be x's */
    in[2] = tq(MHA_DTYPE_INT8, 0, NULL, I(0));
    run_err(13, &t, in, 3, MHA_ERR_DTYPE);
}

/* MatMulInteger (uint8 A, zero point 1; int8 B, zero point per column),
 * com.microsoft MatMulIntegerToFloat (scales, bias) and
 * DynamicQuantizeMatMul (A quantized as DynamicQuantizeLinear does) */
static void test_matmul_integer(void **state) {
    (void)state;
    tnode t;
    tensor *in[7], *y;
    tn_init(&t, "MatMulInteger", 4, 1);
    in[0] = tq(MHA_DTYPE_UINT8, 3, D(1, 2, 3), I(1, 2, 3, 4, 5, 7));
    in[1] = tq(MHA_DTYPE_INT8, 2, D(3, 2), I(1, -1, 2, 0, -3, 4));
    in[2] = tq(MHA_DTYPE_UINT8, 0, NULL, I(1));
    in[3] = tq(MHA_DTYPE_INT8, 1, D(2), I(0, 1));
    y = run1(10, &t, in);
    assert_int_equal(y->dtype, MHA_DTYPE_INT32);
    expect_i(y, 3, D(1, 2, 2), I(-4, 5, -7, 8));
    tensor_free(y);
    /* ONNX Runtime's fused form: scales and bias applied to the sums */
    tn_init(&t, "MatMulIntegerToFloat", 7, 1);
    t.n.domain = (char *)"com.microsoft";
    in[6] = tf(1, D(2), F(10, 20));
    in[5] = in[3];
    in[4] = in[2];
    in[2] = tf0(0.5f);
    in[3] = tf(1, D(2), F(1, 2));
    y = run1(10, &t, in);
    expect_f(y, 3, D(1, 2, 2), F(8, 25, 6.5f, 28), 1e-6);
    tensor_free(y);
    free_all(in, 7);
    tn_init(&t, "DynamicQuantizeMatMul", 3, 1);
    t.n.domain = (char *)"com.microsoft";
    in[0] = tf(2, D(2, 3), F(0, 2, -3, -2.5f, 1.34f, 0.5f));
    in[1] = tq(MHA_DTYPE_INT8, 2, D(3, 1), I(1, 1, 1));
    in[2] = tf0(1);
    y = run1(10, &t, in);
    /* row sums of the quantized rows less 153, times 5 / 255 */
    expect_f(y, 2, D(2, 1), F(-51.0f * (5.0f / 255.0f), -33.0f * (5.0f / 255.0f)), 1e-6);
    tensor_free(y);
    free_all(in, 3);
    /* K mismatch */
    tn_init(&t, "MatMulInteger", 2, 1);
    in[0] = tq(MHA_DTYPE_UINT8, 2, D(1, 2), I(1, 2));
    in[1] = tq(MHA_DTYPE_INT8, 2, D(3, 1), I(1, 1, 1));
    run_err(10, &t, in, 2, MHA_ERR_SHAPE);
}

/* Gelu (opset 20): erf by default, the tanh form with approximate */
static void test_gelu_op20(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *y;
    tn_init(&t, "Gelu", 1, 1);
    in[0] = tf(1, D(4), F(-1, 0, 1, 2));
    y = run1(20, &t, in);
    expect_f(y, 1, D(4), F(-0.15865525f, 0, 0.84134475f, 1.95449974f), 1e-6);
    tensor_free(y);
    ir_attr *a = tn_attr(&t, "approximate", IR_ATTR_STRING);
    a->s = (char *)"tanh";
    y = run1(20, &t, in);
    expect_f(y, 1, D(4), F(-0.15880801f, 0, 0.84119199f, 1.95459769f), 1e-6);
    tensor_free(y);
    a->s = (char *)"fast";
    run_err(20, &t, in, 1, MHA_ERR_MODEL_FORMAT);
}

/* GroupNormalization: 4 channels in 2 groups; scale and bias per channel
 * at opset 21, per group at opset 18 */
static void test_group_normalization(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    tn_init(&t, "GroupNormalization", 3, 1);
    tn_int(&t, "num_groups", 2);
    tn_float(&t, "epsilon", 0);
    in[0] = tf(3, D(1, 4, 2), F(1, 2, 3, 4, 0, 0, 0, 4));
    in[1] = tf(1, D(4), F(1, 2, 1, 1));
    in[2] = tf(1, D(4), F(0, 0, 1, 0));
    y = run1(21, &t, in);
    expect_f(y, 3, D(1, 4, 2),
             F(-1.3416408f, -0.4472136f, 0.8944272f, 2.6832816f, 0.42264974f, 0.42264974f,
               -0.57735027f, 1.7320508f),
             1e-6);
    tensor_free(y);
    /* opset 18 wants [num_groups] */
    run_err(18, &t, in, 0, MHA_ERR_SHAPE);
    tensor_free(in[1]);
    tensor_free(in[2]);
    in[1] = tf(1, D(2), F(2, 1));
    in[2] = tf(1, D(2), F(0, 1));
    y = run1(18, &t, in);
    expect_f(y, 3, D(1, 4, 2),
             F(-2.6832816f, -0.8944272f, 0.8944272f, 2.6832816f, 0.42264974f, 0.42264974f,
               0.42264974f, 2.7320508f),
             1e-6);
    tensor_free(y);
    tn_init(&t, "GroupNormalization", 3, 1);
    tn_int(&t, "num_groups", 3);
    run_err(18, &t, in, 3, MHA_ERR_SHAPE);
}

/* HardSwish (opset 14) and HardSigmoid with its default and given
 * alpha / beta: both ends clamped, NaN kept */
static void test_hard_activations(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *y;
    tn_init(&t, "HardSwish", 1, 1);
    in[0] = tf(1, D(5), F(-4, -1.5f, 0.5f, 3.5f, NAN));
    y = run1(14, &t, in);
    expect_f(y, 1, D(5), F(0, -0.375f, 0.29166667f, 3.5f, NAN), 1e-6);
    tensor_free(y);
    tn_init(&t, "HardSigmoid", 1, 1);
    y = run1(14, &t, in);
    expect_f(y, 1, D(5), F(0, 0.2f, 0.6f, 1, NAN), 1e-6);
    tensor_free(y);
    tn_float(&t, "alpha", 0.5f);
    tn_float(&t, "beta", 0.25f);
    y = run1(14, &t, in);
    expect_f(y, 1, D(5), F(0, 0, 0.5f, 1, NAN), 1e-6);
    tensor_free(y);
    free_all(in, 1);
    in[0] = ti1(1, I(1));
    run_err(14, &t, in, 1, MHA_ERR_DTYPE);
}

/* BatchNormalization in inference: per channel (x - mean) / sqrt(var + eps)
 * * scale + B over [N, C, L]; a statistic not [C] and training_mode = 1
 * refused */
static void test_batch_normalization(void **state) {
    (void)state;
    tnode t;
    tensor *in[5], *y;
    tn_init(&t, "BatchNormalization", 5, 1);
    tn_float(&t, "epsilon", 0.5f);
    in[0] = tf(3, D(2, 2, 2), F(1, 2, 3, 4, 5, 6, 7, 8));
    in[1] = tf(1, D(2), F(2, -1));
    in[2] = tf(1, D(2), F(0.5f, 0));
    in[3] = tf(1, D(2), F(1, 4));
    in[4] = tf(1, D(2), F(3.5f, 0.5f));
    y = run1(15, &t, in);
    /* channel 0: (x - 1) * 2 / sqrt(4) + 0.5; channel 1: -(x - 4) / 1 */
    expect_f(y, 3, D(2, 2, 2), F(0.5f, 1.5f, 1, 0, 4.5f, 5.5f, -3, -4), 1e-6);
    tensor_free(y);
    tensor_free(in[4]);
    in[4] = tf(1, D(3), F(1, 1, 1));
    run_err(15, &t, in, 5, MHA_ERR_SHAPE);
    in[0] = tf(3, D(1, 2, 1), F(1, 2));
    for (size_t i = 1; i < 5; i++)
        in[i] = tf(1, D(2), F(1, 1));
    tn_int(&t, "training_mode", 1);
    run_err(15, &t, in, 5, MHA_ERR_MODEL_UNSUPPORTED);
}

/* Mod: integers with the divisor's sign (fmod = 0, Python's %) or the
 * dividend's (fmod = 1); floats as C's fmod; an integer modulo by zero is
 * refused */
static void test_mod(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    tn_init(&t, "Mod", 2, 1);
    in[0] = ti1(4, I(-7, 7, -7, 7));
    in[1] = ti1(4, I(3, -3, -3, 3));
    y = run1(13, &t, in);
    expect_i(y, 1, D(4), I(2, -2, -1, 1));
    tensor_free(y);
    tn_int(&t, "fmod", 1);
    y = run1(13, &t, in);
    expect_i(y, 1, D(4), I(-1, 1, -1, 1));
    tensor_free(y);
    free_all(in, 2);
    in[0] = tf(1, D(2), F(-7.5f, 7.5f));
    in[1] = tf(1, D(2), F(2, 2));
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(-1.5f, 1.5f), 0);
    tensor_free(y);
    free_all(in, 2);
    tn_init(&t, "Mod", 2, 1);
    in[0] = ti1(1, I(5));
    in[1] = ti1(1, I(0));
    run_err(13, &t, in, 2, MHA_ERR_MODEL_FORMAT);
}

/* DFT: [1, 2, 3, 4] real along axis 1 (opset 17's attribute) is 10, -2 + 2i,
 * -2, -2 - 2i; onesided keeps the first three; the inverse of the complex
 * result gives the signal back; dft_length 2 cuts it to [1, 2] (3, -1);
 * opset 20 reads the axis from its third input (-2); an input not ending
 * in 1 or 2 and a onesided complex transform are refused */
static void test_dft(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    tn_init(&t, "DFT", 1, 1);
    in[0] = tf(3, D(1, 4, 1), F(1, 2, 3, 4));
    y = run1(17, &t, in);
    expect_f(y, 3, D(1, 4, 2), F(10, 0, -2, 2, -2, 0, -2, -2), 1e-6);
    tensor_free(y);
    tn_int(&t, "onesided", 1);
    y = run1(17, &t, in);
    expect_f(y, 3, D(1, 3, 2), F(10, 0, -2, 2, -2, 0), 1e-6);
    tensor_free(y);
    tensor_free(in[0]);
    tn_init(&t, "DFT", 1, 1);
    tn_int(&t, "inverse", 1);
    in[0] = tf(3, D(1, 4, 2), F(10, 0, -2, 2, -2, 0, -2, -2));
    y = run1(17, &t, in);
    expect_f(y, 3, D(1, 4, 2), F(1, 0, 2, 0, 3, 0, 4, 0), 1e-6);
    tensor_free(y);
    tn_int(&t, "onesided", 1);
    run_err(17, &t, in, 1, MHA_ERR_MODEL_UNSUPPORTED);
    tn_init(&t, "DFT", 2, 1);
    in[0] = tf(3, D(1, 4, 1), F(1, 2, 3, 4));
    in[1] = ti0(2);
    y = run1(17, &t, in);
    expect_f(y, 3, D(1, 2, 2), F(3, 0, -1, 0), 1e-6);
    tensor_free(y);
    free_all(in, 2);
    /* opset 20: [2, 2, 1], axis -2 (the middle one) as the third input */
    tn_init(&t, "DFT", 3, 1);
    in[0] = tf(3, D(2, 2, 1), F(1, 2, 5, 1));
    in[1] = NULL;
    in[2] = ti0(-2);
    y = run1(20, &t, in);
    expect_f(y, 3, D(2, 2, 2), F(3, 0, -1, 0, 6, 0, 4, 0), 1e-6);
    tensor_free(y);
    tensor_free(in[0]);
    tensor_free(in[2]);
    tn_init(&t, "DFT", 1, 1);
    in[0] = tf(3, D(1, 2, 3), F(1, 2, 3, 4, 5, 6));
    run_err(17, &t, in, 1, MHA_ERR_SHAPE);
}

/* ScatterND: whole rows by [n, 1] indices (a negative one from the end),
 * with reduction add; one element by a full index; an index out of range */
static void test_scatter_nd(void **state) {
    (void)state;
    tnode t;
    tensor *in[3], *y;
    tn_init(&t, "ScatterND", 3, 1);
    in[0] = tf(2, D(4, 2), F(1, 2, 3, 4, 5, 6, 7, 8));
    in[1] = ti(2, D(2, 1), I(1, -1));
    in[2] = tf(2, D(2, 2), F(10, 11, 12, 13));
    y = run1(18, &t, in);
    expect_f(y, 2, D(4, 2), F(1, 2, 10, 11, 5, 6, 12, 13), 0);
    tensor_free(y);
    ir_attr *a = tn_attr(&t, "reduction", IR_ATTR_STRING);
    a->s = (char *)"add";
    y = run1(18, &t, in);
    expect_f(y, 2, D(4, 2), F(1, 2, 13, 15, 5, 6, 19, 21), 0);
    tensor_free(y);
    free_all(in + 1, 2);
    tn_init(&t, "ScatterND", 3, 1);
    in[1] = ti(2, D(1, 2), I(0, 1));
    in[2] = tf(1, D(1), F(100));
    y = run1(18, &t, in);
    expect_f(y, 2, D(4, 2), F(1, 100, 3, 4, 5, 6, 7, 8), 0);
    tensor_free(y);
    tensor_free(in[1]);
    in[1] = ti(2, D(1, 2), I(4, 0));
    run_err(18, &t, in, 3, MHA_ERR_SHAPE);
}

/* com.microsoft EmbedLayerNormalization (what ONNX Runtime's BERT
 * optimizer writes): word + position embeddings normalised, mask_index
 * the count of each row's ones (as ONNX Runtime 1.30 gives it), the sum
 * before the norm as the third output */
static void test_embed_layer_norm(void **state) {
    (void)state;
    tnode t;
    tensor *in[8] = {0}, *out[3] = {0};
    tn_init(&t, "EmbedLayerNormalization", 8, 3);
    t.n.domain = (char *)"com.microsoft";
    tn_float(&t, "epsilon", 0);
    in[0] = tq(MHA_DTYPE_INT32, 2, D(1, 2), I(1, 2));
    in[2] = tf(2, D(3, 2), F(1, 2, 3, 5, 0, 0));
    in[3] = tf(2, D(2, 2), F(0, 1, 1, 0));
    in[5] = tf(1, D(2), F(1, 1));
    in[6] = tf(1, D(2), F(0, 0));
    in[7] = tq(MHA_DTYPE_INT32, 2, D(1, 2), I(1, 0));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 2, 2), F(-1, 1, 1, -1), 1e-6);
    expect_i(out[1], 1, D(1), I(1));
    expect_f(out[2], 3, D(1, 2, 2), F(3, 6, 1, 0), 0);
    free_all(out, 3);
    /* an id past the word table */
    ((int32_t *)in[0]->data)[1] = 3;
    run_err(17, &t, in, 8, MHA_ERR_SHAPE);
}

/* ReduceL1 / ReduceL2 / ReduceSumSquare / ReduceMin / ReduceProd:
 * F.normalize (sentence-transformers pooling) writes ReduceL2, x.std()
 * ReduceProd, with the axes an attribute before opset 18 */
static void test_reduce_norms(void **state) {
    (void)state;
    tnode t;
    tensor *in[2], *y;
    const float x[6] = {3, -4, 0, 1, 2, -2}; /* [2, 3] */
    tn_init(&t, "ReduceL2", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    in[0] = tf(2, D(2, 3), x);
    y = run1(14, &t, in);
    expect_f(y, 2, D(2, 1), F(5, 3), 1e-6);
    tensor_free(y);
    tn_init(&t, "ReduceL1", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    tn_int(&t, "keepdims", 0);
    y = run1(14, &t, in);
    expect_f(y, 1, D(2), F(7, 5), 0);
    tensor_free(y);
    /* opset 18: the axes an input */
    tn_init(&t, "ReduceSumSquare", 2, 1);
    in[1] = ti1(1, I(0));
    y = run1(18, &t, in);
    expect_f(y, 2, D(1, 3), F(10, 20, 4), 0);
    tensor_free(y);
    free_all(in, 2);
    /* ReduceMin, ReduceProd (torch's x.std() counts elements with one) */
    tn_init(&t, "ReduceMin", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    in[0] = tf(2, D(2, 3), x);
    y = run1(13, &t, in);
    expect_f(y, 2, D(2, 1), F(-4, -2), 0);
    tensor_free(y);
    tn_init(&t, "ReduceProd", 1, 1);
    tn_ints(&t, "axes", I(1), 1);
    tn_int(&t, "keepdims", 0);
    y = run1(13, &t, in);
    expect_f(y, 1, D(2), F(0, -4), 0);
    tensor_free(y);
    free_all(in, 1);
    in[0] = ti(1, D(3), I(2, 3, -4));
    tn_init(&t, "ReduceProd", 1, 1);
    tn_int(&t, "keepdims", 0);
    y = run1(13, &t, in);
    expect_i(y, 0, NULL, I(-24));
    tensor_free(y);
    tn_init(&t, "ReduceMin", 1, 1);
    y = run1(13, &t, in);
    expect_i(y, 1, D(1), I(-4));
    tensor_free(y);
    free_all(in, 1);
    /* integers: L2 of (3, 4) is 5 */
    tn_init(&t, "ReduceL2", 1, 1);
    in[0] = ti(1, D(2), I(3, -4));
    y = run1(13, &t, in);
    expect_i(y, 1, D(1), I(5));
    tensor_free(y);
    free_all(in, 1);
}

/* ---- Attention ---- */

/* One Attention node with the given attributes; inputs Q, K, V, mask,
 * past_key, past_value, nonpad (NULL = omitted). */
static mha_status attn_eval(int64_t opset, tnode *t, tensor **in, size_t n_in, size_t n_out,
                            tensor **out) {
    t->n.n_inputs = n_in;
    t->n.n_outputs = n_out;
    for (size_t k = 0; k < n_in; k++)
        t->ins[k] = in[k] ? (int)k : -1;
    return eval(opset, t, in, out);
}

static void test_attention_basic(void **state) {
    (void)state;
    tnode t;
    tensor *in[7] = {0}, *out[4] = {0};
    const double e = exp(1.0);
    /* one query q=[1], keys [0],[1], values 1, 3, head size 1 -> scale 1:
     * p = [1, e] / (1 + e), y = (1 + 3e) / (1 + e) */
    tn_init(&t, "Attention", 3, 1);
    in[0] = tf(4, D(1, 1, 1, 1), F(1));
    in[1] = tf(4, D(1, 1, 2, 1), F(0, 1));
    in[2] = tf(4, D(1, 1, 2, 1), F(1, 3));
    assert_int_equal(attn_eval(23, &t, in, 3, 4, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F((float)((1 + 3 * e) / (1 + e))), 1e-6);
    expect_f(out[1], 4, D(1, 1, 2, 1), F(0, 1), 0);    /* present_key = K */
    expect_f(out[3], 4, D(1, 1, 1, 2), F(0, 1), 1e-7); /* mode 0: q.k * scale */
    free_all(out, 4);

    /* scale 2 and softcap 1: s = 2 * [0, 1] -> tanh -> [0, tanh 2] */
    tn_float(&t, "scale", 2.0f);
    tn_float(&t, "softcap", 1.0f);
    tn_int(&t, "qk_matmul_output_mode", 1);
    assert_int_equal(attn_eval(23, &t, in, 3, 4, out), MHA_OK);
    double th = tanh(2.0), w = exp(th);
    expect_f(out[3], 4, D(1, 1, 1, 2), F(0, (float)th), 1e-6);
    expect_f(out[0], 4, D(1, 1, 1, 1), F((float)((1 + 3 * w) / (1 + w))), 1e-6);
    free_all(out, 4);

    /* float mask added after the softcap (mode 2 shows it), softmax mode 3 */
    tensor *mask = tf(2, D(1, 2), F(0, -INFINITY));
    in[3] = mask;
    tn_init(&t, "Attention", 4, 4);
    tn_float(&t, "softcap", 1.0f);
    tn_int(&t, "qk_matmul_output_mode", 2);
    assert_int_equal(attn_eval(23, &t, in, 4, 4, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(1), 1e-6); /* only key 0 */
    expect_f(out[3], 4, D(1, 1, 1, 2), F(0, -INFINITY), 1e-6);
    free_all(out, 4);
    tn_init(&t, "Attention", 4, 4);
    tn_int(&t, "qk_matmul_output_mode", 3);
    assert_int_equal(attn_eval(23, &t, in, 4, 4, out), MHA_OK);
    expect_f(out[3], 4, D(1, 1, 1, 2), F(1, 0), 1e-7);
    free_all(out, 4);
    /* a mask value of the lowest float counts as masked: all masked -> 0 */
    tensor_free(mask);
    in[3] = mask = tf(2, D(1, 2), F(-FLT_MAX, -INFINITY));
    assert_int_equal(attn_eval(23, &t, in, 4, 4, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(0), 0);
    expect_f(out[3], 4, D(1, 1, 1, 2), F(0, 0), 0);
    free_all(out, 4);
    /* bool mask: True = attend; all False -> zero row, never NaN */
    tensor_free(mask);
    in[3] = mask = tb(1, D(2), B(0, 1));
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(3), 1e-6);
    free_all(out, 1);
    ((uint8_t *)mask->data)[1] = 0;
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(0), 0);
    free_all(out, 1);
    /* a mask shorter than the keys is padded with "masked" */
    tensor_free(mask);
    in[3] = mask = tb(1, D(1), B(1));
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(1), 1e-6);
    free_all(out, 1);
    free_all(in, 7);
}

static void test_attention_causal_past_gqa(void **state) {
    (void)state;
    tnode t;
    tensor *in[7] = {0}, *out[4] = {0};
    /* Two query heads sharing one kv head (GQA), 2 queries, 1 past key +
     * 2 new keys, head size 1, q = 0 so every allowed key weighs the same:
     * causal with offset P = 1 lets query 0 see keys 0..1, query 1 keys 0..2. */
    tn_init(&t, "Attention", 6, 3);
    tn_int(&t, "is_causal", 1);
    in[0] = tf(4, D(1, 2, 2, 1), F(0, 0, 0, 0));
    in[1] = tf(4, D(1, 1, 2, 1), F(5, 6));
    in[2] = tf(4, D(1, 1, 2, 1), F(20, 30));
    in[4] = tf(4, D(1, 1, 1, 1), F(4));
    in[5] = tf(4, D(1, 1, 1, 1), F(10));
    assert_int_equal(attn_eval(23, &t, in, 6, 3, out), MHA_OK);
    expect_f(out[0], 4, D(1, 2, 2, 1), F(15, 20, 15, 20), 1e-6);
    expect_f(out[1], 4, D(1, 1, 3, 1), F(4, 5, 6), 0);
    expect_f(out[2], 4, D(1, 1, 3, 1), F(10, 20, 30), 0);
    free_all(out, 3);
    free_all(in, 7);

    /* nonpad_kv_seqlen (opset 24): keys >= nonpad masked, causal offset
     * nonpad - Sq; batch 1 has nonpad 0 -> structurally empty -> zeros */
    tn_init(&t, "Attention", 7, 1);
    tn_int(&t, "is_causal", 1);
    in[0] = tf(4, D(2, 1, 1, 1), F(0, 0));
    in[1] = tf(4, D(2, 1, 3, 1), F(1, 2, 3, 1, 2, 3));
    in[2] = tf(4, D(2, 1, 3, 1), F(1, 2, 3, 1, 2, 3));
    in[6] = ti1(2, I(2, 0));
    assert_int_equal(attn_eval(24, &t, in, 7, 1, out), MHA_OK);
    expect_f(out[0], 4, D(2, 1, 1, 1), F(1.5, 0), 1e-6);
    free_all(out, 1);
    /* opset 23 has no 7th input */
    assert_int_equal(attn_eval(23, &t, in, 7, 1, out), MHA_ERR_MODEL_FORMAT);
    /* absurd lengths and windows: defined results, no overflow */
    tensor_free(in[6]);
    in[6] = ti1(2, I(INT64_MAX, INT64_MIN));
    tn_int(&t, "left_window_size", INT64_MAX);
    tn_int(&t, "right_window_size", INT64_MAX);
    assert_int_equal(attn_eval(25, &t, in, 7, 1, out), MHA_OK);
    expect_f(out[0], 4, D(2, 1, 1, 1), F(2, 0), 1e-6);
    free_all(out, 1);
    free_all(in, 7);

    /* opset-25 window: left 1 with causal over 4 self keys, q = 0:
     * query 3 sees keys 2..3 */
    tn_init(&t, "Attention", 3, 1);
    tn_int(&t, "is_causal", 1);
    tn_int(&t, "left_window_size", 1);
    in[0] = tf(4, D(1, 1, 4, 1), F(0, 0, 0, 0));
    in[1] = tf(4, D(1, 1, 4, 1), F(1, 1, 1, 1));
    in[2] = tf(4, D(1, 1, 4, 1), F(1, 2, 3, 4));
    assert_int_equal(attn_eval(25, &t, in, 3, 1, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 4, 1), F(1, 1.5, 2.5, 3.5), 1e-6);
    free_all(out, 1);
    free_all(in, 7);
}

/* The 3-D form is the 4-D form with heads packed in the last axis. */
static void test_attention_3d(void **state) {
    (void)state;
    enum { Bn = 2, Hq = 4, Hkv = 2, S = 3, T = 5, Dh = 2, Dv = 3 };
    float q4[Bn * Hq * S * Dh], k4[Bn * Hkv * T * Dh], v4[Bn * Hkv * T * Dv];
    float q3[Bn * S * Hq * Dh], k3[Bn * T * Hkv * Dh], v3[Bn * T * Hkv * Dv];
    tu_fill_random(q4, sizeof q4 / sizeof q4[0], 1);
    tu_fill_random(k4, sizeof k4 / sizeof k4[0], 2);
    tu_fill_random(v4, sizeof v4 / sizeof v4[0], 3);
    for (int b = 0; b < Bn; b++) {
        for (int h = 0; h < Hq; h++)
            for (int s = 0; s < S; s++)
                for (int d = 0; d < Dh; d++)
                    q3[((b * S + s) * Hq + h) * Dh + d] = q4[((b * Hq + h) * S + s) * Dh + d];
        for (int h = 0; h < Hkv; h++)
            for (int s = 0; s < T; s++) {
                for (int d = 0; d < Dh; d++)
                    k3[((b * T + s) * Hkv + h) * Dh + d] = k4[((b * Hkv + h) * T + s) * Dh + d];
                for (int d = 0; d < Dv; d++)
                    v3[((b * T + s) * Hkv + h) * Dv + d] = v4[((b * Hkv + h) * T + s) * Dv + d];
            }
    }
    tnode t;
    tensor *in[7] = {0}, *out4[4] = {0}, *out3[4] = {0};
    tn_init(&t, "Attention", 3, 1);
    tn_int(&t, "is_causal", 1);
    in[0] = tf(4, D(Bn, Hq, S, Dh), q4);
    in[1] = tf(4, D(Bn, Hkv, T, Dh), k4);
    in[2] = tf(4, D(Bn, Hkv, T, Dv), v4);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out4), MHA_OK);
    free_all(in, 3);
    tn_int(&t, "q_num_heads", Hq);
    tn_int(&t, "kv_num_heads", Hkv);
    in[0] = tf(3, D(Bn, S, Hq * Dh), q3);
    in[1] = tf(3, D(Bn, T, Hkv * Dh), k3);
    in[2] = tf(3, D(Bn, T, Hkv * Dv), v3);
    assert_int_equal(attn_eval(23, &t, in, 3, 2, out3), MHA_OK);
    expect_shape(out3[0], 3, D(Bn, S, Hq * Dv));
    expect_f(out3[1], 4, D(Bn, Hkv, T, Dh), k4, 0); /* present_key is 4-D */
    for (int b = 0; b < Bn; b++)
        for (int h = 0; h < Hq; h++)
            for (int s = 0; s < S; s++)
                for (int d = 0; d < Dv; d++)
                    assert_true(tensor_get_f64(out3[0], ((b * S + s) * Hq + h) * Dv + d) ==
                                tensor_get_f64(out4[0], ((b * Hq + h) * S + s) * Dv + d));
    free_all(out3, 4);
    free_all(out4, 4);
    free_all(in, 3);
}

static void test_attention_errors(void **state) {
    (void)state;
    tnode t;
    tensor *in[7] = {0}, *out[TN_MAX] = {0};
    const float z[48] = {0};
    /* 3 query heads cannot share 2 kv heads */
    tn_init(&t, "Attention", 3, 1);
    in[0] = tf(4, D(1, 3, 2, 2), z);
    in[1] = tf(4, D(1, 2, 2, 2), z);
    in[2] = tf(4, D(1, 2, 2, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_SHAPE);
    free_all(in, 3);
    /* head size mismatch between Q and K */
    in[0] = tf(4, D(1, 1, 2, 2), z);
    in[1] = tf(4, D(1, 1, 2, 3), z);
    in[2] = tf(4, D(1, 1, 2, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_SHAPE);
    free_all(in, 3);
    /* mixed ranks, rank 2 */
    in[0] = tf(3, D(1, 2, 2), z);
    in[1] = tf(4, D(1, 1, 2, 2), z);
    in[2] = tf(4, D(1, 1, 2, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_SHAPE);
    free_all(in, 3);
    /* 3-D without head counts; hidden size not divisible */
    in[0] = tf(3, D(1, 2, 4), z);
    in[1] = tf(3, D(1, 2, 4), z);
    in[2] = tf(3, D(1, 2, 4), z);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_MODEL_FORMAT);
    tn_int(&t, "q_num_heads", 3);
    tn_int(&t, "kv_num_heads", 3);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_SHAPE);
    free_all(in, 3);
    /* a mask that does not broadcast; one longer than the keys */
    tn_init(&t, "Attention", 4, 1);
    in[0] = tf(4, D(1, 1, 2, 2), z);
    in[1] = tf(4, D(1, 1, 3, 2), z);
    in[2] = tf(4, D(1, 1, 3, 2), z);
    in[3] = tf(2, D(3, 3), z);
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_ERR_SHAPE);
    tensor_free(in[3]);
    in[3] = tf(2, D(2, 4), z);
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_ERR_SHAPE);
    tensor_free(in[3]);
    in[3] = ti(2, D(2, 3), (const int64_t *)z);
    assert_int_equal(attn_eval(23, &t, in, 4, 1, out), MHA_ERR_DTYPE);
    tensor_free(in[3]);
    in[3] = NULL;
    /* past_key without past_value; wrong past shape */
    in[4] = tf(4, D(1, 1, 1, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 6, 1, out), MHA_ERR_MODEL_FORMAT);
    in[5] = tf(4, D(1, 1, 2, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 6, 1, out), MHA_ERR_SHAPE);
    free_all(in + 4, 2);
    /* nonpad of the wrong length; bad mode; negative softcap; K as int */
    in[6] = ti1(2, I(1, 1));
    assert_int_equal(attn_eval(24, &t, in, 7, 1, out), MHA_ERR_SHAPE);
    free_all(in + 6, 1);
    tn_int(&t, "qk_matmul_output_mode", 4);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_MODEL_FORMAT);
    tn_init(&t, "Attention", 3, 1);
    tn_float(&t, "softcap", -1.0f);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_MODEL_FORMAT);
    tn_init(&t, "Attention", 3, 1);
    tensor_free(in[1]);
    in[1] = ti(4, D(1, 1, 3, 2), (const int64_t *)z);
    assert_int_equal(attn_eval(23, &t, in, 3, 1, out), MHA_ERR_DTYPE);
    /* five outputs */
    tensor_free(in[1]);
    in[1] = tf(4, D(1, 1, 3, 2), z);
    assert_int_equal(attn_eval(23, &t, in, 3, 5, out), MHA_ERR_MODEL_FORMAT);
    free_all(in, 3);
}

/* ---- Conv ---- */

/* 2-D Conv: a 2x2 kernel over a 3x3 image; with bias, stride 2 and
 * padding 1; two groups; what it refuses. */
/* Clip with scalar bound inputs (mean pooling's clamp(count, min=1e-9)),
 * one bound omitted; ArgMax / ArgMin along an axis, first or last of ties
 * (CLIP's EOS position). */
/* Resize: the examples of the ONNX operator's page (linear half_pixel,
 * nearest asymmetric floor) and PyTorch's F.interpolate of a [2, 3] image
 * (bicubic to [3, 4]; bilinear align_corners to [3, 5]); an unsupported
 * mode and scales with sizes are refused. */
static void test_resize(void **state) {
    (void)state;
    tnode t;
    tensor *in[4] = {0}, *y;
    tn_init(&t, "Resize", 3, 1);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"linear";
    in[0] = tf(4, D(1, 1, 2, 2), F(1, 2, 3, 4));
    in[2] = tf(1, D(4), F(1, 1, 2, 2));
    y = run1(13, &t, in);
    expect_f(y, 4, D(1, 1, 4, 4),
             F(1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4),
             1e-6);
    tensor_free(y);
    free_all(in, 4);

    tn_init(&t, "Resize", 3, 1);
    tn_attr(&t, "coordinate_transformation_mode", IR_ATTR_STRING)->s = (char *)"asymmetric";
    tn_attr(&t, "nearest_mode", IR_ATTR_STRING)->s = (char *)"floor";
    in[0] = ti(4, D(1, 1, 2, 2), I(1, 2, 3, 4));
    in[2] = tf(1, D(4), F(1, 1, 2, 3));
    y = run1(13, &t, in);
    expect_i(y, 4, D(1, 1, 4, 6),
             I(1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4));
    tensor_free(y);
    free_all(in, 4);

    tn_init(&t, "Resize", 4, 1);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"cubic";
    in[0] = tf(4, D(1, 1, 2, 3), F(1, 2, 4, 3, -1, 0.5f));
    in[3] = ti1(4, I(1, 1, 3, 4));
    y = run1(13, &t, in);
    expect_f(y, 4, D(1, 1, 3, 4),
             F(0.7234583497f, 1.5191679001f, 3.1543076038f, 4.4504904747f, 2.107666015625f,
               0.8482666015625f, 0.9658203125f, 2.3756103515625f, 3.4918735027f, 0.1773658842f,
               -1.2226657867f, 0.3007320464f),
             1e-5);
    tensor_free(y);
    tensor_free(in[3]);
    in[3] = ti1(2, I(3, 5));
    tn_init(&t, "Resize", 4, 1);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"linear";
    tn_attr(&t, "coordinate_transformation_mode", IR_ATTR_STRING)->s = (char *)"align_corners";
    tn_ints(&t, "axes", I(2, 3), 2);
    y = run1(18, &t, in);
    expect_f(y, 4, D(1, 1, 3, 5),
             F(1, 1.5, 2, 3, 4, 2, 1.25, 0.5, 1.375, 2.25, 3, 1, -1, -0.25, 0.5), 1e-6);
    tensor_free(y);
    /* scales and sizes both given */
    in[2] = tf(1, D(2), F(2, 2));
    run_err(18, &t, in, 4, MHA_ERR_MODEL_FORMAT);
    tn_init(&t, "Resize", 3, 1);
    tn_attr(&t, "mode", IR_ATTR_STRING)->s = (char *)"area";
    in[0] = tf(4, D(1, 1, 2, 2), F(1, 2, 3, 4));
    in[1] = NULL;
    in[2] = tf(1, D(4), F(1, 1, 2, 2));
    run_err(13, &t, in, 3, MHA_ERR_MODEL_UNSUPPORTED);
}

static void test_clip_argmax(void **state) {
    (void)state;
    tnode t;
    tensor *in[3] = {0}, *out[1] = {0};
    tn_init(&t, "Clip", 2, 1);
    in[0] = tf(1, D(4), F(-2, 0, 1e-12f, 3));
    in[1] = tf(0, D(0), F(1e-9f));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 1, D(4), F(1e-9f, 1e-9f, 1e-9f, 3), 0);
    free_all(out, 1);
    /* max only (min omitted) */
    tn_init(&t, "Clip", 3, 1);
    tensor *lo = in[1];
    in[1] = NULL;
    in[2] = tf(0, D(0), F(0.5f));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 1, D(4), F(-2, 0, 1e-12f, 0.5f), 0);
    free_all(out, 1);
    in[1] = lo;
    free_all(in, 3);
    /* ArgMax over the last axis of [2, 3] with a tie in row 1 */
    tn_init(&t, "ArgMax", 1, 1);
    tn_int(&t, "axis", -1);
    tn_int(&t, "keepdims", 0);
    in[0] = ti(2, D(2, 3), I(5, 9, 2, 7, 1, 7));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_i(out[0], 1, D(2), I(1, 0));
    free_all(out, 1);
    tn_int(&t, "select_last_index", 1);
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_i(out[0], 1, D(2), I(1, 2));
    free_all(out, 1);
    free_all(in, 1);
    /* ArgMin over axis 0, keepdims */
    tn_init(&t, "ArgMin", 1, 1);
    in[0] = tf(2, D(2, 2), F(3, -1, 2, 4));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_i(out[0], 2, D(1, 2), I(1, 0));
    free_all(out, 1);
    free_all(in, 1);
}

/* TopK and ScatterElements as Mixtral's router writes them: the top 2 of
 * each row (a tie kept in index order, NaN the largest), the smallest with
 * largest = 0; the weights scattered back over the experts, and scatter's
 * add reduction with a repeated index; a K past the axis is refused.
 * InstanceNormalization (GroupNorm of one group per channel): each (n, c)
 * over its own elements, then scale and B of the channel. */
static void test_topk_scatter_instnorm(void **state) {
    (void)state;
    tnode t;
    tensor *in[3] = {0}, *out[2] = {0};
    tn_init(&t, "TopK", 2, 2);
    in[0] = tf(2, D(2, 4), F(0.1f, 0.7f, 0.2f, 0.7f, 3, NAN, -1, 2));
    in[1] = ti1(1, I(2));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_i(out[1], 2, D(2, 2), I(1, 3, 1, 0));
    assert_float_equal(((const float *)out[0]->data)[0], 0.7f, 0);
    assert_true(isnan(((const float *)out[0]->data)[2]));
    assert_float_equal(((const float *)out[0]->data)[3], 3, 0);
    free_all(out, 2);
    tn_int(&t, "largest", 0);
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 2), F(0.1f, 0.2f, -1, 2), 0);
    expect_i(out[1], 2, D(2, 2), I(0, 2, 2, 3));
    free_all(out, 2);
    tensor_free(in[1]);
    in[1] = ti1(1, I(5));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_SHAPE);
    free_all(out, 2);
    free_all(in, 2);

    tn_init(&t, "ScatterElements", 3, 1);
    tn_int(&t, "axis", -1);
    in[0] = tf(2, D(2, 4), F(0, 0, 0, 0, 1, 1, 1, 1));
    in[1] = ti(2, D(2, 2), I(3, 1, 0, 0));
    in[2] = tf(2, D(2, 2), F(0.6f, 0.4f, 2, 5));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 4), F(0, 0.4f, 0, 0.6f, 5, 1, 1, 1), 0);
    free_all(out, 1);
    tn_attr(&t, "reduction", IR_ATTR_STRING)->s = (char *)"add";
    assert_int_equal(eval(18, &t, in, out), MHA_OK);
    expect_f(out[0], 2, D(2, 4), F(0, 0.4f, 0, 0.6f, 8, 1, 1, 1), 0);
    free_all(out, 1);
    free_all(in, 3);

    tn_init(&t, "InstanceNormalization", 3, 1);
    tn_float(&t, "epsilon", 0);
    in[0] = tf(3, D(1, 2, 2), F(1, 3, 10, 10.5f));
    in[1] = tf(1, D(2), F(2, 1));
    in[2] = tf(1, D(2), F(0, 5));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 2, 2), F(-2, 2, 4, 6), 1e-6);
    free_all(out, 1);
    free_all(in, 3);
}

static void test_conv(void **state) {
    (void)state;
    tnode t;
    tensor *in[3] = {0}, *out[1] = {0};
    tn_init(&t, "Conv", 3, 1);
    in[0] = tf(4, D(1, 1, 3, 3), F(1, 2, 3, 4, 5, 6, 7, 8, 9));
    in[1] = tf(4, D(1, 1, 2, 2), F(1, 0, 0, 1));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 2, 2), F(6, 8, 12, 14), 0);
    free_all(out, 1);
    /* stride 2, pads 1 on every side, bias 10: windows centred on the
     * corners of the padded image */
    in[2] = tf(1, D(1), F(10));
    tn_ints(&t, "strides", D(2, 2), 2);
    tn_ints(&t, "pads", D(1, 1, 1, 1), 4);
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 2, 2), F(11, 13, 17, 24), 0);
    free_all(out, 1);
    free_all(in, 3);
    /* two groups of one channel, kernel 1x1: each output channel scales
     * its own input channel */
    tn_init(&t, "Conv", 2, 1);
    tn_int(&t, "group", 2);
    in[0] = tf(4, D(1, 2, 1, 2), F(1, 2, 3, 4));
    in[1] = tf(4, D(2, 1, 1, 1), F(10, 100));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 2, 1, 2), F(10, 20, 300, 400), 0);
    free_all(out, 1);
    free_all(in, 2);
    /* 1-D (an audio stem's): kernel 3 of ones, stride 2, pads 1 and 1,
     * bias 0.5: sums of (0, 1, 2), (2, 3, 4), (4, 5, 0) */
    tn_init(&t, "Conv", 3, 1);
    tn_ints(&t, "strides", (int64_t[]){2}, 1);
    tn_ints(&t, "pads", (int64_t[]){1, 1}, 2);
    in[0] = tf(3, D(1, 1, 5), F(1, 2, 3, 4, 5));
    in[1] = tf(3, D(1, 1, 3), F(1, 1, 1));
    in[2] = tf(1, D(1), F(0.5f));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 1, 3), F(3.5f, 9.5f, 9.5f), 0);
    free_all(out, 1);
    free_all(in, 3);
    /* auto_pad over 4 samples, kernel 3 of ones, stride 2 (tf2onnx's
     * Convs): SAME_UPPER pads (0, 1) -- sums of (1, 2, 3), (3, 4, 0) --
     * SAME_LOWER (1, 0) -- (0, 1, 2), (2, 3, 4) -- VALID none -- (1, 2, 3);
     * another mode is refused */
    static const struct {
        const char *mode;
        int64_t n;
        float y[2];
    } autopad[] = {{"SAME_UPPER", 2, {6, 7}}, {"SAME_LOWER", 2, {3, 9}}, {"VALID", 1, {6, 0}}};
    for (size_t k = 0; k < 3; k++) {
        tn_init(&t, "Conv", 2, 1);
        tn_ints(&t, "strides", (int64_t[]){2}, 1);
        tn_attr(&t, "auto_pad", IR_ATTR_STRING)->s = (char *)autopad[k].mode;
        in[0] = tf(3, D(1, 1, 4), F(1, 2, 3, 4));
        in[1] = tf(3, D(1, 1, 3), F(1, 1, 1));
        assert_int_equal(eval(17, &t, in, out), MHA_OK);
        expect_f(out[0], 3, D(1, 1, autopad[k].n), autopad[k].y, 0);
        free_all(out, 1);
        free_all(in, 2);
    }
    tn_init(&t, "Conv", 2, 1);
    tn_attr(&t, "auto_pad", IR_ATTR_STRING)->s = (char *)"SAME_MIDDLE";
    in[0] = tf(3, D(1, 1, 4), F(1, 2, 3, 4));
    in[1] = tf(3, D(1, 1, 3), F(1, 1, 1));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    free_all(in, 2);
    /* 1-D with two strides is malformed; 3-D convolution and channels that
     * do not fit are refused */
    tn_init(&t, "Conv", 2, 1);
    tn_ints(&t, "strides", (int64_t[]){1, 1}, 2);
    in[0] = tf(3, D(1, 1, 3), F(1, 2, 3));
    in[1] = tf(3, D(1, 1, 2), F(1, 1));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_FORMAT);
    free_all(in, 2);
    tn_init(&t, "Conv", 2, 1);
    in[0] = tf(5, D(1, 1, 1, 1, 2), F(1, 2));
    in[1] = tf(5, D(1, 1, 1, 1, 1), F(1));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    free_all(in, 2);
    in[0] = tf(4, D(1, 3, 1, 1), F(1, 2, 3));
    in[1] = tf(4, D(1, 2, 1, 1), F(1, 1));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_SHAPE);
    free_all(in, 2);
}

/* AveragePool and MaxPool: Funnel's pooling of 7 rows by pairs in ceil
 * mode (the last row alone, averaged over itself), count_include_pad, a
 * ceil-mode window that would start past the input dropped, dilations; the
 * forms the interpreter refuses. */
static void test_pool(void **state) {
    (void)state;
    tnode t;
    tensor *in[1] = {0}, *out[2] = {0};
    tn_init(&t, "AveragePool", 1, 1);
    tn_ints(&t, "kernel_shape", D(2, 1), 2);
    tn_ints(&t, "strides", D(2, 1), 2);
    in[0] = tf(4, D(1, 1, 7, 1), F(1, 2, 3, 4, 5, 6, 7));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 3, 1), F(1.5f, 3.5f, 5.5f), 0);
    free_all(out, 1);
    tn_int(&t, "ceil_mode", 1);
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 4, 1), F(1.5f, 3.5f, 5.5f, 7), 0);
    free_all(out, 1);
    /* one row under a kernel of 2 in ceil mode: one window (PyTorch's) */
    free_all(in, 1);
    in[0] = tf(4, D(1, 1, 1, 1), F(3));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 1, 1), F(3), 0);
    free_all(out, 1);
    /* MaxPool of the same rows negated: the minimum of each pair */
    tn_init(&t, "MaxPool", 1, 1);
    tn_ints(&t, "kernel_shape", D(2, 1), 2);
    tn_ints(&t, "strides", D(2, 1), 2);
    tn_int(&t, "ceil_mode", 1);
    free_all(in, 1);
    in[0] = tf(4, D(1, 1, 7, 1), F(-1, -0, -1, -1, -1, -0, -0));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 4, D(1, 1, 4, 1), F(0, -1, 0, 0), 0);
    free_all(out, 1);
    free_all(in, 1);
    /* 1-D, pads 1 and 1: windows (pad, 1) and (2, 3); the pad counted or not */
    tn_init(&t, "AveragePool", 1, 1);
    tn_ints(&t, "kernel_shape", (int64_t[]){2}, 1);
    tn_ints(&t, "strides", (int64_t[]){2}, 1);
    tn_ints(&t, "pads", (int64_t[]){1, 1}, 2);
    in[0] = tf(3, D(1, 1, 3), F(1, 2, 3));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 1, 2), F(1, 2.5f), 0);
    free_all(out, 1);
    tn_int(&t, "count_include_pad", 1);
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 1, 2), F(0.5f, 2.5f), 0);
    free_all(out, 1);
    free_all(in, 1);
    /* kernel 3, stride 4, end pad 2, ceil: a second window would start at
     * 4, past the input: one output */
    tn_init(&t, "AveragePool", 1, 1);
    tn_ints(&t, "kernel_shape", (int64_t[]){3}, 1);
    tn_ints(&t, "strides", (int64_t[]){4}, 1);
    tn_ints(&t, "pads", (int64_t[]){0, 2}, 2);
    tn_int(&t, "ceil_mode", 1);
    in[0] = tf(3, D(1, 1, 4), F(1, 2, 3, 4));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 1, 1), F(2), 0);
    free_all(out, 1);
    free_all(in, 1);
    /* MaxPool, kernel 2 dilated by 2: (x0, x2), (x1, x3), (x2, x4) */
    tn_init(&t, "MaxPool", 1, 1);
    tn_ints(&t, "kernel_shape", (int64_t[]){2}, 1);
    tn_ints(&t, "dilations", (int64_t[]){2}, 1);
    in[0] = tf(3, D(1, 1, 5), F(3, -1, 4, 1, 5));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 1, 3), F(4, 1, 5), 0);
    free_all(out, 1);
    /* no kernel_shape; MaxPool's Indices; 3-D pooling */
    tn_init(&t, "MaxPool", 1, 1);
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_FORMAT);
    tn_init(&t, "MaxPool", 1, 2);
    tn_ints(&t, "kernel_shape", (int64_t[]){2}, 1);
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    free_all(out, 2);
    free_all(in, 1);
    tn_init(&t, "AveragePool", 1, 1);
    tn_ints(&t, "kernel_shape", D(1, 1, 1), 3);
    in[0] = tf(5, D(1, 1, 1, 1, 2), F(1, 2));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    free_all(in, 1);
}

/* EyeLike: ones on the k-th diagonal of the input's shape, in the dtype
 * attribute's type or the input's; a rank other than 2 refused. */
static void test_eye_like(void **state) {
    (void)state;
    tnode t;
    tensor *in[1], *y;
    tn_init(&t, "EyeLike", 1, 1);
    in[0] = tf(2, D(2, 3), F(5, 5, 5, 5, 5, 5));
    y = run1(17, &t, in);
    expect_f(y, 2, D(2, 3), F(1, 0, 0, 0, 1, 0), 0);
    tensor_free(y);
    tn_int(&t, "k", 1);
    tn_int(&t, "dtype", MHA_DTYPE_INT64);
    y = run1(17, &t, in);
    expect_i(y, 2, D(2, 3), I(0, 1, 0, 0, 0, 1));
    tensor_free(y);
    free_all(in, 1);
    in[0] = tf(1, D(3), F(1, 2, 3));
    run_err(17, &t, in, 1, MHA_ERR_SHAPE);
}

/* LayerNormalization over the last axis, with Scale, B and the Mean /
 * InvStdDev outputs; over the last two axes; a Scale that does not fit. */
static void test_layer_normalization(void **state) {
    (void)state;
    tnode t;
    tensor *in[3] = {0}, *out[3] = {0};
    tn_init(&t, "LayerNormalization", 3, 3);
    tn_float(&t, "epsilon", 0.0f);
    in[0] = tf(2, D(2, 2), F(1, 3, 5, 9));
    in[1] = tf(1, D(2), F(2, 10));
    in[2] = tf(1, D(2), F(0.5, -1));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    /* row 0: mean 2, var 1: [-1 1] -> [-2+0.5, 10-1]; row 1: mean 7, var 4:
     * [-1 1] -> same */
    expect_f(out[0], 2, D(2, 2), F(-1.5, 9, -1.5, 9), 1e-6);
    expect_f(out[1], 2, D(2, 1), F(2, 7), 1e-6);
    expect_f(out[2], 2, D(2, 1), F(1, 0.5), 1e-6);
    free_all(out, 3);
    free_all(in, 3);
    /* axis -2 of [1, 2, 2]: one group of four */
    tn_init(&t, "LayerNormalization", 2, 1);
    tn_int(&t, "axis", -2);
    tn_float(&t, "epsilon", 0.0f);
    in[0] = tf(3, D(1, 2, 2), F(1, 3, 1, 3));
    in[1] = tf(1, D(1), F(1));
    assert_int_equal(eval(17, &t, in, out), MHA_OK);
    expect_f(out[0], 3, D(1, 2, 2), F(-1, 1, -1, 1), 1e-6);
    free_all(out, 1);
    tensor_free(in[1]);
    in[1] = tf(1, D(3), F(1, 1, 1));
    assert_int_equal(eval(17, &t, in, out), MHA_ERR_SHAPE);
    free_all(in, 2);
}

/* ---- driver behaviour ---- */

static void test_unsupported_and_outputs(void **state) {
    (void)state;
    assert_true(interp_supports("", "MatMul"));
    assert_true(interp_supports("ai.onnx", "Attention"));
    assert_true(interp_supports("com.microsoft", "Attention"));
    assert_true(interp_supports("com.microsoft", "MultiHeadAttention"));
    assert_false(interp_supports("com.microsoft", "GroupQueryAttention"));
    assert_false(interp_supports("com.microsoft", "MatMul"));
    assert_false(interp_supports("", "LSTM"));
    tnode t;
    tensor *in[2] = {tf(1, D(1), F(1)), NULL}, *out[2] = {0};
    tn_init(&t, "LSTM", 1, 1);
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    assert_non_null(strstr(last_err.message, "LSTM"));
    assert_non_null(strstr(last_err.message, "'t'"));
    tn_init(&t, "GroupQueryAttention", 1, 1);
    t.n.domain = (char *)"com.microsoft";
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_MODEL_UNSUPPORTED);
    /* a known com.microsoft op checks its operands like any other */
    tn_init(&t, "MultiHeadAttention", 1, 1);
    t.n.domain = (char *)"com.microsoft";
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_MODEL_FORMAT);
    /* an omitted output ("") is dropped; too many outputs is an error */
    tn_init(&t, "Split", 1, 2);
    t.outs[1] = -1;
    tensor_free(in[0]);
    in[0] = tf(1, D(2), F(1, 2));
    assert_int_equal(eval(13, &t, in, out), MHA_OK);
    assert_non_null(out[0]);
    assert_null(out[1]);
    free_all(out, 2);
    tn_init(&t, "Relu", 1, 2);
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_MODEL_FORMAT);
    /* an attribute of the wrong type */
    tn_init(&t, "Gather", 2, 1);
    tn_float(&t, "axis", 0.0f);
    in[1] = ti0(0);
    assert_int_equal(eval(13, &t, in, out), MHA_ERR_MODEL_FORMAT);
    free_all(in, 2);
}

/* com.microsoft MultiHeadAttention: a query row whose scores are all NaN
 * gives a NaN output row (never the 0 of a fully masked row), while a row
 * whose keys are all masked (key length 0) gives 0. B 2, S 2, T 3, H 1, dh 2. */
static void test_msft_nan_rows(void **state) {
    (void)state;
    tnode t;
    tn_init(&t, "MultiHeadAttention", 5, 1);
    t.n.domain = (char *)"com.microsoft";
    tn_int(&t, "num_heads", 1);
    t.ins[3] = -1; /* no bias */
    float q[8], k[12], v[12];
    tu_fill_random(q, 8, 3);
    tu_fill_random(k, 12, 4);
    tu_fill_random(v, 12, 5);
    q[2] = q[3] = NAN; /* batch 0, query 1 */
    tensor *in[5] = {tf(3, D(2, 2, 2), q), tf(3, D(2, 3, 2), k), tf(3, D(2, 3, 2), v), NULL,
                     mk(MHA_DTYPE_INT32, 1, D(2))};
    ((int32_t *)in[4]->data)[0] = 3;
    ((int32_t *)in[4]->data)[1] = 0; /* batch 1: every key masked */
    tensor *out[1] = {0};
    assert_int_equal(eval(1, &t, in, out), MHA_OK);
    const float *y = out[0]->data; /* [2, 2, 2] */
    assert_true(isfinite(y[0]) && isfinite(y[1]));
    assert_true(isnan(y[2]) && isnan(y[3]));
    for (int e = 4; e < 8; e++)
        assert_true(y[e] == 0.0f);
    free_all(out, 1);
    free_all(in, 5);
}

/* Allocation failure at every point of a few ops: a status, no crash. */
static void test_alloc_failure(void **state) {
    (void)state;
    tnode ta, tm, tt;
    tn_init(&ta, "Attention", 4, 4);
    tn_int(&ta, "is_causal", 1);
    tn_init(&tm, "MatMul", 2, 1);
    tn_init(&tt, "ReduceSum", 1, 1);
    tnode *nodes[3] = {&ta, &tm, &tt};
    float v[16];
    tu_fill_random(v, 16, 7);
    for (int k = 0; k < 3; k++) {
        int ok = 0;
        for (long n = 1; n < 40 && !ok; n++) {
            tensor *in[4] = {tf(4, D(1, 1, 2, 2), v), tf(4, D(1, 1, 2, 2), v),
                             tf(4, D(1, 1, 2, 2), v), tf(2, D(2, 2), v)};
            tensor *out[4] = {0};
            ir_graph g;
            memset(&g, 0, sizeof g);
            g.opset = 23;
            mha_error err;
            mha_alloc_fail_at(n, 0);
            mha_status st = interp_eval_node(&A, &g, &nodes[k]->n, in, out, &err);
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK)
                ok = 1;
            else
                assert_int_equal(st, MHA_ERR_NO_MEMORY);
            free_all(out, 4);
            free_all(in, 4);
        }
        assert_true(ok);
    }
}

/* ---- graphs built by hand: interp_run and constant folding ---- */

typedef struct hgraph {
    ir_graph g;
    ir_value values[8];
    ir_node nodes[4];
    ir_attr attrs[2];
    int ins[4][3];
    int outs[4][1];
    int graph_inputs[1];
    int graph_outputs[1];
} hgraph;

/* X [2, 3] (input) --Shape--> s --Gather(idx=1 initializer)--> d
 * X + W (initializer [3]) --> y;  Constant (value_int 5) --> c
 * values: 0 X, 1 s, 2 idx, 3 d, 4 W, 5 y, 6 c */
static void hgraph_build(hgraph *h, int64_t x_dim0) {
    memset(h, 0, sizeof *h);
    ir_graph *g = &h->g;
    mha_alloc_ctx_init(&g->alloc, NULL);
    g->values = h->values;
    g->n_values = 7;
    g->nodes = h->nodes;
    g->n_nodes = 4;
    g->opset = 17;
    static const char *names[] = {"X", "s", "idx", "d", "W", "y", "c"};
    for (int i = 0; i < 7; i++) {
        h->values[i].name = (char *)names[i];
        h->values[i].producer = -1;
        h->values[i].graph_input = -1;
        h->values[i].rank = -1;
    }
    h->values[0].graph_input = 0;
    h->values[0].dtype = MHA_DTYPE_FLOAT32;
    h->values[0].rank = 2;
    h->values[0].dims[0] = x_dim0;
    h->values[0].dims[1] = 3;
    h->values[2].init = ti0(1);
    h->values[4].init = tf(1, D(3), F(10, 20, 30));
    h->graph_inputs[0] = 0;
    g->inputs = h->graph_inputs;
    g->n_inputs = 1;
    h->graph_outputs[0] = 5;
    g->outputs = h->graph_outputs;
    g->n_outputs = 1;
    static const char *ops[] = {"Shape", "Gather", "Add", "Constant"};
    static const int n_in[] = {1, 2, 2, 0};
    static const int in_ids[4][2] = {{0, -1}, {1, 2}, {0, 4}, {-1, -1}};
    static const int out_ids[] = {1, 3, 5, 6};
    for (int k = 0; k < 4; k++) {
        ir_node *n = &h->nodes[k];
        n->name = (char *)ops[k];
        n->op_type = (char *)ops[k];
        n->domain = (char *)"";
        for (int j = 0; j < n_in[k]; j++)
            h->ins[k][j] = in_ids[k][j];
        n->inputs = h->ins[k];
        n->n_inputs = (size_t)n_in[k];
        h->outs[k][0] = out_ids[k];
        n->outputs = h->outs[k];
        n->n_outputs = 1;
        h->values[out_ids[k]].producer = k;
    }
    h->attrs[0].name = (char *)"value_int";
    h->attrs[0].type = IR_ATTR_INT;
    h->attrs[0].i = 5;
    h->nodes[3].attrs = h->attrs;
    h->nodes[3].n_attrs = 1;
}

static void hgraph_free(hgraph *h) {
    tensor_free(h->values[2].init);
    tensor_free(h->values[4].init);
}

static void test_graph_run_and_fold(void **state) {
    (void)state;
    hgraph h;
    hgraph_build(&h, 2);
    tensor **v = NULL;
    mha_error err;
    tensor *x = tf(2, D(2, 3), F(1, 2, 3, 4, 5, 6));
    const tensor *inputs[1] = {x};
    assert_int_equal(interp_run(&A, &h.g, inputs, &v, &err), MHA_OK);
    expect_f(v[5], 2, D(2, 3), F(11, 22, 33, 14, 25, 36), 0);
    expect_i(v[3], 0, NULL, I(3));
    expect_i(v[6], 0, NULL, I(5));
    expect_f(v[0], 2, D(2, 3), F(1, 2, 3, 4, 5, 6), 0);
    assert_ptr_not_equal(v[0], x); /* inputs are cloned */
    interp_values_free(&h.g, v);

    /* folding: Shape of X is known from its static dims, so s and d fold;
     * y depends on X's data and stays unknown */
    assert_int_equal(interp_fold_constants(&A, &h.g, &v, &err), MHA_OK);
    expect_i(v[1], 1, D(2), I(2, 3));
    expect_i(v[3], 0, NULL, I(3));
    expect_i(v[6], 0, NULL, I(5));
    expect_f(v[4], 1, D(3), F(10, 20, 30), 0);
    assert_null(v[0]);
    assert_null(v[5]);
    interp_values_free(&h.g, v);
    hgraph_free(&h);

    /* a dynamic dim: Shape does not fold */
    hgraph_build(&h, -1);
    assert_int_equal(interp_fold_constants(&A, &h.g, &v, &err), MHA_OK);
    assert_null(v[1]);
    assert_null(v[3]);
    assert_non_null(v[6]);
    interp_values_free(&h.g, v);

    /* a bound input of the wrong shape / type, or none */
    assert_int_equal(interp_run(&A, &h.g, NULL, &v, &err), MHA_ERR_INVALID_ARGUMENT);
    tensor *bad = tf(2, D(2, 2), F(1, 2, 3, 4));
    inputs[0] = bad;
    assert_int_equal(interp_run(&A, &h.g, inputs, &v, &err), MHA_ERR_SHAPE);
    assert_non_null(strstr(err.message, "'X'"));
    assert_null(v);
    tensor_free(bad);
    bad = ti(2, D(2, 3), I(1, 2, 3, 4, 5, 6));
    inputs[0] = bad;
    assert_int_equal(interp_run(&A, &h.g, inputs, &v, &err), MHA_ERR_DTYPE);
    tensor_free(bad);
    /* a node failing mid-graph names itself */
    h.g.nodes[2].op_type = (char *)"Conv";
    inputs[0] = x;
    assert_int_equal(interp_run(&A, &h.g, inputs, &v, &err), MHA_ERR_MODEL_UNSUPPORTED);
    assert_non_null(strstr(err.message, "Conv"));
    /* ... and folding skips what it does not know */
    assert_int_equal(interp_fold_constants(&A, &h.g, &v, &err), MHA_OK);
    interp_values_free(&h.g, v);
    tensor_free(x);
    hgraph_free(&h);
}

/* ---- whole-graph conformance ---- */

/* The conformance tolerance: |got - want| <= atol + rtol * |want|; a masked
 * score (-inf or the lowest finite value) matches either; NaN meets NaN. */
static double worst_ratio; /* largest |got - want| / tolerance seen */

static int close_enough(double got, double want, mha_dtype dt) {
    double atol = dt == MHA_DTYPE_FLOAT16 ? 1e-3 : 1e-5;
    double rtol = dt == MHA_DTYPE_FLOAT16 ? 1e-3 : 1e-4;
    if (isnan(want)) return isnan(got);
    double lowest = dt == MHA_DTYPE_FLOAT16 ? -65504.0 : -(double)FLT_MAX;
    if (want == -INFINITY || want == lowest) return got == -INFINITY || got == lowest;
    if (isinf(want)) return got == want;
    double ratio = fabs(got - want) / (atol + rtol * fabs(want));
    if (ratio > worst_ratio) worst_ratio = ratio;
    return ratio <= 1.0;
}

static tensor *load_pb(const char *path) {
    size_t size;
    void *data = tu_read_file(path, &size);
    if (data == NULL) return NULL;
    tensor *t = NULL;
    mha_error err;
    mha_status st = ir_load_tensor_proto(&A, data, size, path, &t, NULL, &err);
    free(data);
    if (st != MHA_OK) print_error("%s\n", err.message);
    assert_int_equal(st, MHA_OK);
    return t;
}

/* Runs one case folder; returns the number of mismatching outputs. */
static int run_case(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ir_graph *g = NULL;
    mha_error err;
    mha_status st = ir_load_file(&A, path, NULL, &g, &err);
    if (st != MHA_OK) {
        print_error("%s: load failed: %s\n", dir, err.message);
        return 1;
    }
    tensor *inputs[16] = {0};
    assert_true(g->n_inputs <= 16);
    for (size_t i = 0; i < g->n_inputs; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%zu.pb", dir, i);
        inputs[i] = load_pb(path);
        assert_non_null(inputs[i]);
    }
    tensor **values = NULL;
    int bad = 0;
    st = interp_run(&A, g, (const tensor *const *)inputs, &values, &err);
    if (st != MHA_OK) {
        print_error("%s: run failed: %s\n", dir, err.message);
        bad = 1;
    }
    for (size_t k = 0; st == MHA_OK && k < g->n_outputs; k++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/output_%zu.pb", dir, k);
        tensor *want = load_pb(path);
        assert_non_null(want);
        const tensor *got = values[g->outputs[k]];
        int ok = got != NULL && got->dtype == want->dtype && got->rank == want->rank;
        for (int a = 0; ok && a < got->rank; a++)
            ok = got->dims[a] == want->dims[a];
        if (!ok) {
            print_error("%s: output %zu has the wrong type or shape\n", dir, k);
            bad++;
        } else {
            int64_t n = tensor_numel(want), worst = -1;
            for (int64_t i = 0; i < n; i++)
                if (!close_enough(tensor_get_f64(got, i), tensor_get_f64(want, i), want->dtype)) {
                    worst = i;
                    break;
                }
            if (worst >= 0) {
                print_error("%s: output %zu element %lld: got %.9g want %.9g\n", dir, k,
                            (long long)worst, tensor_get_f64(got, worst),
                            tensor_get_f64(want, worst));
                bad++;
            }
        }
        tensor_free(want);
    }
    interp_values_free(g, values);
    for (size_t i = 0; i < g->n_inputs; i++)
        tensor_free(inputs[i]);
    ir_free(g);
    return bad;
}

static int run_all_cases(const char *root, int *n_cases) {
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *e;
    int failed = 0;
    *n_cases = 0;
    while ((e = readdir(d)) != NULL) {
        char dir[1024], model[1100];
        if (e->d_name[0] == '.') continue;
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(model, sizeof model, "%s/model.onnx", dir);
        FILE *f = fopen(model, "rb");
        if (f == NULL) continue;
        fclose(f);
        (*n_cases)++;
        if (run_case(dir) != 0) failed++;
    }
    closedir(d);
    return failed;
}

static void test_conformance_cases(void **state) {
    (void)state;
    int n;
    worst_ratio = 0.0;
    int failed = run_all_cases(MHA_TEST_DATA "/conformance", &n);
    print_message("conformance: %d cases, %d failed, worst error %.3f of the tolerance\n", n,
                  failed, worst_ratio);
    assert_true(n >= 58); /* all 58 shipped cases, float16 included */
    assert_int_equal(failed, 0);
}

static void test_torch_export_cases(void **state) {
    (void)state;
    int n;
    worst_ratio = 0.0;
    int failed = run_all_cases(MHA_TEST_DATA "/torch-export", &n);
    print_message("torch-export: %d cases, %d failed, worst error %.3f of the tolerance\n", n,
                  failed, worst_ratio);
    assert_true(n >= 5);
    assert_int_equal(failed, 0);
}

/* Allocation failure at every point of interp_run and interp_fold_constants
 * on whole graphs: NO_MEMORY (never a crash, never a leak under ASan). */
static void run_alloc_failure(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ir_graph *g = NULL;
    mha_error err;
    assert_int_equal(ir_load_file(&A, path, NULL, &g, &err), MHA_OK);
    tensor *inputs[16] = {0};
    for (size_t i = 0; i < g->n_inputs; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%zu.pb", dir, i);
        inputs[i] = load_pb(path);
    }
    for (int fold = 0; fold < 2; fold++) {
        int ok = 0;
        long n;
        for (n = 1; n < 5000 && !ok; n++) {
            tensor **values = NULL;
            mha_alloc_fail_at(n, 0);
            mha_status st = fold ? interp_fold_constants(&A, g, &values, &err)
                                 : interp_run(&A, g, (const tensor *const *)inputs, &values, &err);
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK) {
                ok = 1;
                assert_non_null(values);
            } else {
                assert_int_equal(st, MHA_ERR_NO_MEMORY);
                assert_null(values);
            }
            interp_values_free(g, values);
        }
        assert_true(ok);
        assert_true(n > (fold ? 3 : 20)); /* the failures did happen */
    }
    for (size_t i = 0; i < g->n_inputs; i++)
        tensor_free(inputs[i]);
    ir_free(g);
}

static void test_graph_alloc_failure(void **state) {
    (void)state;
    run_alloc_failure(MHA_TEST_DATA
                      "/conformance/onnx_attention_4d_with_past_and_present_qk_matmul");
    run_alloc_failure(MHA_TEST_DATA "/torch-export/torch_mha_keypad_d16_h2_b2_s5");
}

/* Random operands and attributes for every op: each evaluation returns a
 * status (outputs all set on success, all NULL on failure) and never
 * crashes or reads out of bounds (the test runs under ASan in CI). */
/* op, usual input count, usual output count, bit k set = input k is an
 * integer list (shape, axes, indices, ...), bit 7 = input 0 is bool */
static const struct {
    const char *op;
    int n_in, n_out, int_inputs;
} fuzz_ops[] = {
    {"Identity", 1, 1, 0},
    {"Constant", 0, 1, 0},
    {"ConstantOfShape", 1, 1, 1},
    {"Shape", 1, 1, 0},
    {"Size", 1, 1, 0},
    {"Gather", 2, 1, 2},
    {"Unsqueeze", 2, 1, 2},
    {"Squeeze", 2, 1, 2},
    {"Concat", 3, 1, 0},
    {"Reshape", 2, 1, 2},
    {"Transpose", 1, 1, 0},
    {"Slice", 5, 1, 30},
    {"Split", 2, 3, 2},
    {"Expand", 2, 1, 2},
    {"Range", 3, 1, 7},
    {"Trilu", 2, 1, 2},
    {"EyeLike", 1, 1, 0},
    {"AveragePool", 1, 1, 0},
    {"MaxPool", 1, 1, 0},
    {"Flatten", 1, 1, 0},
    {"Tile", 2, 1, 2},
    {"Pad", 2, 1, 2},
    {"Cast", 1, 1, 0},
    {"CastLike", 2, 1, 0},
    {"Add", 2, 1, 0},
    {"Sub", 2, 1, 0},
    {"Mul", 2, 1, 0},
    {"Div", 2, 1, 0},
    {"Pow", 2, 1, 0},
    {"Sqrt", 1, 1, 0},
    {"Neg", 1, 1, 0},
    {"Reciprocal", 1, 1, 0},
    {"Exp", 1, 1, 0},
    {"Log", 1, 1, 0},
    {"Tanh", 1, 1, 0},
    {"Erf", 1, 1, 0},
    {"Cos", 1, 1, 0},
    {"Sin", 1, 1, 0},
    {"Relu", 1, 1, 0},
    {"Sigmoid", 1, 1, 0},
    {"Abs", 1, 1, 0},
    {"Max", 3, 1, 0},
    {"Min", 2, 1, 0},
    {"Equal", 2, 1, 0},
    {"Less", 2, 1, 0},
    {"Greater", 2, 1, 0},
    {"LessOrEqual", 2, 1, 0},
    {"GreaterOrEqual", 2, 1, 0},
    {"Not", 1, 1, 128},
    {"And", 2, 1, 128},
    {"Or", 2, 1, 128},
    {"Xor", 2, 1, 128},
    {"Where", 3, 1, 128},
    {"IsNaN", 1, 1, 0},
    {"IsInf", 1, 1, 0},
    {"MatMul", 2, 1, 0},
    {"Gemm", 3, 1, 0},
    {"Softmax", 1, 1, 0},
    {"LogSoftmax", 1, 1, 0},
    {"ReduceSum", 2, 1, 2},
    {"ReduceMean", 1, 1, 0},
    {"ReduceMax", 2, 1, 2},
    {"ReduceL2", 1, 1, 0},
    {"GatherElements", 2, 1, 2},
    {"SoftmaxCrossEntropyLoss", 3, 2, 2},
    {"NegativeLogLikelihoodLoss", 3, 1, 2},
    {"ReduceProd", 1, 1, 0},
    {"Attention", 4, 4, 64},
    {"Resize", 4, 1, 8},
    {"ScatterND", 3, 1, 2},
    {"GroupNormalization", 3, 1, 0},
    {"BatchNormalization", 5, 1, 0},
    {"HardSwish", 1, 1, 0},
    {"HardSigmoid", 1, 1, 0},
    {"DFT", 2, 1, 2},
    {"Mod", 2, 1, 0},
    {"Gelu", 1, 1, 0},
    {"QuantizeLinear", 3, 1, 0},
    {"DequantizeLinear", 3, 1, 1},
    {"MatMulInteger", 4, 1, 0},
    {"DynamicQuantizeLinear", 1, 3, 0},
};

static const char *const fuzz_attr_names[] = {"axis",
                                              "axes",
                                              "perm",
                                              "keepdims",
                                              "to",
                                              "start",
                                              "end",
                                              "upper",
                                              "allowzero",
                                              "num_outputs",
                                              "split",
                                              "transA",
                                              "ignore_index",
                                              "transB",
                                              "alpha",
                                              "beta",
                                              "is_causal",
                                              "q_num_heads",
                                              "kv_num_heads",
                                              "qk_matmul_output_mode",
                                              "softcap",
                                              "scale",
                                              "noop_with_empty_axes",
                                              "value",
                                              "value_int",
                                              "value_ints",
                                              "value_float",
                                              "left_window_size",
                                              "shape",
                                              "starts",
                                              "ends",
                                              "exclude_outside",
                                              "num_groups",
                                              "block_size"};

static int64_t fuzz_small(uint64_t *rng) {
    uint64_t r = tu_rand_u64(rng);
    if (r % 23 == 0) return (r >> 8) % 2 ? INT64_MAX : INT64_MIN;
    return (int64_t)((r >> 8) % 9) - 3; /* -3..5 */
}

/* kind 0: any type (mostly float32); 1: an int64 list; 2: bool */
static tensor *fuzz_tensor(uint64_t *rng, int kind) {
    static const mha_dtype dts[] = {MHA_DTYPE_FLOAT32, MHA_DTYPE_FLOAT32, MHA_DTYPE_FLOAT32,
                                    MHA_DTYPE_FLOAT32, MHA_DTYPE_INT64,   MHA_DTYPE_BOOL,
                                    MHA_DTYPE_FLOAT16, MHA_DTYPE_INT32};
    int wild = tu_rand_u64(rng) % 8 == 0; /* now and then, anything goes */
    mha_dtype dt = kind == 1 ? MHA_DTYPE_INT64 : kind == 2 ? MHA_DTYPE_BOOL : MHA_DTYPE_FLOAT32;
    if (wild || kind == 0) dt = dts[tu_rand_u64(rng) % 8];
    int rank = kind == 1 && !wild ? 1 : (int)(tu_rand_u64(rng) % 5);
    int64_t dims[4];
    for (int a = 0; a < rank; a++)
        dims[a] = (int64_t)(tu_rand_u64(rng) % (wild ? 4 : kind == 1 ? 4 : 3)) + (wild ? 0 : 1);
    tensor *t = mk(dt, rank, dims);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == MHA_DTYPE_INT64 || dt == MHA_DTYPE_INT32)
            set_int_elem(t, i, fuzz_small(rng));
        else
            tensor_set_f64(t, i, (double)fuzz_small(rng) * 0.5);
    }
    return t;
}

#ifndef INTERP_FUZZ_ITERS
#define INTERP_FUZZ_ITERS 20000
#endif
#ifndef INTERP_FUZZ_SEED
#define INTERP_FUZZ_SEED 12345
#endif

static void test_fuzz_ops(void **state) {
    (void)state;
    uint64_t rng = INTERP_FUZZ_SEED;
    int64_t ints_pool[64][4];
    float floats_pool[64][2] = {{0}};
    tensor *attr_tensors[TN_MAX];
    size_t n_ops = sizeof fuzz_ops / sizeof fuzz_ops[0];
    long ok = 0, failed = 0;
    for (int iter = 0; iter < INTERP_FUZZ_ITERS; iter++) {
        tnode t;
        size_t which = (size_t)iter % n_ops;
        const char *op = fuzz_ops[which].op;
        size_t n_in = (size_t)fuzz_ops[which].n_in, n_out = (size_t)fuzz_ops[which].n_out;
        if (tu_rand_u64(&rng) % 4 == 0) n_in = tu_rand_u64(&rng) % 8;
        if (tu_rand_u64(&rng) % 4 == 0) n_out = 1 + tu_rand_u64(&rng) % 4;
        tn_init(&t, op, n_in, n_out);
        tensor *in[TN_MAX] = {0}, *out[TN_MAX] = {0};
        for (size_t k = 0; k < n_in; k++) {
            if (tu_rand_u64(&rng) % 6 == 0) {
                t.ins[k] = -1; /* omitted */
                continue;
            }
            int bits = fuzz_ops[which].int_inputs;
            int kind = (k < 7 && (bits >> k & 1)) ? 1 : (k == 0 && (bits & 128)) ? 2 : 0;
            in[k] = fuzz_tensor(&rng, kind);
        }
        size_t n_attr = tu_rand_u64(&rng) % 4, n_tensors = 0;
        for (size_t k = 0; k < n_attr; k++) {
            const char *name =
                fuzz_attr_names[tu_rand_u64(&rng) % (sizeof fuzz_attr_names / sizeof(char *))];
            int kind = (int)(tu_rand_u64(&rng) % 4);
            int64_t *iv = ints_pool[(iter * 4 + (int)k) % 64];
            size_t cnt = tu_rand_u64(&rng) % 4;
            for (size_t j = 0; j < cnt; j++)
                iv[j] = fuzz_small(&rng);
            if (strcmp(name, "value") == 0 || kind == 3) {
                attr_tensors[n_tensors] = fuzz_tensor(&rng, 0);
                tn_tensor(&t, name, attr_tensors[n_tensors++]);
            } else if (kind == 0) {
                tn_int(&t, name, fuzz_small(&rng));
            } else if (kind == 1) {
                tn_ints(&t, name, iv, cnt);
            } else {
                float *fv = floats_pool[(iter * 4 + (int)k) % 64];
                fv[0] = (float)fuzz_small(&rng);
                tn_float(&t, name, fv[0]);
            }
        }
        static const int64_t opsets[] = {9, 11, 13, 15, 17, 18, 23, 24, 25};
        mha_status st = eval(opsets[tu_rand_u64(&rng) % 9], &t, in, out);
        if (st == MHA_OK) {
            ok++;
            for (size_t k = 0; k < n_out; k++) {
                if (t.outs[k] < 0)
                    assert_null(out[k]);
                else
                    assert_non_null(out[k]);
            }
        } else {
            failed++;
        }
        free_all(out, n_out);
        free_all(in, n_in);
        free_all(attr_tensors, n_tensors);
    }
    print_message("fuzz: %ld evaluations succeeded, %ld refused\n", ok, failed);
    assert_true(ok > 1000);
}

int main(void) {
    mha_alloc_ctx_init(&A, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_broadcast),
        cmocka_unit_test(test_binary_broadcast_rows_f32),
        cmocka_unit_test(test_broadcast_rows),
        cmocka_unit_test(test_cast_typed),
        cmocka_unit_test(test_arith),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_cumsum),
        cmocka_unit_test(test_max_min),
        cmocka_unit_test(test_compare_logic),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_identity_constant),
        cmocka_unit_test(test_shape_size),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_gather_elements),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_unsqueeze_squeeze),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_expand_range_tile),
        cmocka_unit_test(test_trilu),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_einsum),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_contraction_blocks),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_reduce_norms),
        cmocka_unit_test(test_dynamic_quantize_linear),
        cmocka_unit_test(test_quantize_linear),
        cmocka_unit_test(test_dequantize_linear),
        cmocka_unit_test(test_matmul_integer),
        cmocka_unit_test(test_gelu_op20),
        cmocka_unit_test(test_group_normalization),
        cmocka_unit_test(test_hard_activations),
        cmocka_unit_test(test_batch_normalization),
        cmocka_unit_test(test_dft),
        cmocka_unit_test(test_mod),
        cmocka_unit_test(test_scatter_nd),
        cmocka_unit_test(test_embed_layer_norm),
        cmocka_unit_test(test_attention_basic),
        cmocka_unit_test(test_attention_causal_past_gqa),
        cmocka_unit_test(test_attention_3d),
        cmocka_unit_test(test_attention_errors),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_eye_like),
        cmocka_unit_test(test_clip_argmax),
        cmocka_unit_test(test_topk_scatter_instnorm),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_layer_normalization),
        cmocka_unit_test(test_unsupported_and_outputs),
        cmocka_unit_test(test_msft_nan_rows),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_fuzz_ops),
        cmocka_unit_test(test_graph_run_and_fold),
        cmocka_unit_test(test_conformance_cases),
        cmocka_unit_test(test_torch_export_cases),
        cmocka_unit_test(test_graph_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
