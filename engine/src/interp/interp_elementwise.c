/* interp_elementwise.c -- the reference interpreter's element-wise ops:
 * arithmetic (Add, Sub, Mul, Div, Pow, Max, Min) with numpy broadcasting,
 * unary math (Sqrt, Neg, Reciprocal, Exp, Log, Tanh, Erf, Relu, Sigmoid,
 * Abs), comparisons and logic (Equal, Less, Greater, LessOrEqual,
 * GreaterOrEqual, Not, And, Or, Xor, Where, IsNaN, IsInf) and the casts
 * (Cast, CastLike).
 *
 * Numerics: floating types compute in double and round once when stored
 * (for + - * / of float32 operands that equals float arithmetic exactly);
 * float16 / bfloat16 are widened and stored rounded. Integer types compute
 * in int64 with wrap-around (no signed-overflow UB) and store wrapped to
 * their width; integer Div truncates toward zero like C, and a zero
 * divisor is an error rather than a trap. */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

typedef enum elem_binary_kind {
    ELEM_ADD,
    ELEM_SUB,
    ELEM_MUL,
    ELEM_DIV,
    ELEM_POW,
    ELEM_MAX,
    ELEM_MIN,
    ELEM_MOD, /* Mod, fmod = 0: the remainder takes the divisor's sign */
    ELEM_FMOD /* Mod, fmod = 1: the dividend's sign (C's fmod) */
} elem_binary_kind;

static double elem_float_binary(elem_binary_kind kind, double a, double b) {
    switch (kind) {
    case ELEM_ADD:
        return a + b;
    case ELEM_SUB:
        return a - b;
    case ELEM_MUL:
        return a * b;
    case ELEM_DIV:
        return a / b;
    case ELEM_POW:
        return pow(a, b);
    case ELEM_MAX:
        return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b);
    case ELEM_MIN:
        return (isnan(a) || isnan(b)) ? NAN : (a < b ? a : b);
    case ELEM_MOD: {
        const double r = fmod(a, b);
        return r != 0.0 && (r < 0.0) != (b < 0.0) ? r + b : r;
    }
    case ELEM_FMOD:
        return fmod(a, b);
    }
    return 0.0;
}

/* Integer a (op) b in two's complement wrap-around; *ok = 0 on a zero
 * divisor. */
static int64_t elem_int_binary(elem_binary_kind kind, int64_t a, int64_t b, int *ok) {
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    switch (kind) {
    case ELEM_ADD:
        return (int64_t)(ua + ub);
    case ELEM_SUB:
        return (int64_t)(ua - ub);
    case ELEM_MUL:
        return (int64_t)(ua * ub);
    case ELEM_DIV:
        if (b == 0) {
            *ok = 0;
            return 0;
        }
        if (a == INT64_MIN && b == -1) return INT64_MIN; /* wraps */
        return a / b;                                    /* truncates toward zero */
    case ELEM_MAX:
        return a > b ? a : b;
    case ELEM_MIN:
        return a < b ? a : b;
    case ELEM_MOD:
    case ELEM_FMOD: {
        if (b == 0) {
            *ok = 0;
            return 0;
        }
        if (b == -1) return 0;   /* INT64_MIN % -1 overflows in C */
        const int64_t r = a % b; /* the dividend's sign */
        return kind == ELEM_MOD && r != 0 && (r < 0) != (b < 0) ? r + b : r;
    }
    case ELEM_POW:
        break; /* handled in floating point by the caller */
    }
    return 0;
}

static const char *elem_binary_name(elem_binary_kind kind) {
    static const char *const names[] = {"Add", "Sub", "Mul", "Div", "Pow",
                                        "Max", "Min", "Mod", "Mod"};
    return names[kind];
}

/* float32 operands of one shape (a residual add of a whole model): the
 * plain loop. Rounding each float result once gives the bits the double
 * path below gives (double holds the exact +, -, *, / of two floats to
 * within one rounding that cannot change the float rounding). 1 if done. */
static int elem_binary_same_f32(elem_binary_kind kind, const tensor *x, const tensor *y,
                                tensor *res) {
    if (x->dtype != MHA_DTYPE_FLOAT32 || y->dtype != MHA_DTYPE_FLOAT32 || x->rank != y->rank ||
        memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)x->rank) != 0 ||
        (kind != ELEM_ADD && kind != ELEM_SUB && kind != ELEM_MUL && kind != ELEM_DIV))
        return 0;
    const float *a = x->data, *b = y->data;
    float *r = res->data;
    int64_t n = tensor_numel(x);
    switch (kind) {
    case ELEM_ADD:
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i] + b[i];
        break;
    case ELEM_SUB:
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i] - b[i];
        break;
    case ELEM_MUL:
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i] * b[i];
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i] / b[i];
        break;
    }
    return 1;
}

/* float32 operands broadcast against each other (the position embeddings
 * [1, S, D] added to the tokens' [B, S, D]): row by row of the last axis,
 * each operand's offset found once a row and stepped by its stride along
 * that axis (0 when it broadcasts), rather than an offset computed per
 * element. The same float results as the loop below. 1 if done. */
static int elem_binary_rows_f32(elem_binary_kind kind, const interp_bcast *bc, const tensor *x,
                                const tensor *y, tensor *res) {
    if (x->dtype != MHA_DTYPE_FLOAT32 || y->dtype != MHA_DTYPE_FLOAT32 || bc->rank < 1 ||
        (kind != ELEM_ADD && kind != ELEM_SUB && kind != ELEM_MUL && kind != ELEM_DIV))
        return 0;
    interp_bcast outer;
    int64_t D, rs[3];
    interp_bcast_rows(bc, &outer, &D, rs);
    if (D <= 0) return 1;
    const int64_t sa = rs[0], sb = rs[1];
    const float *a = x->data, *b = y->data;
    float *r = res->data;
    interp_bcast_walk w;
    interp_bcast_walk_start(&outer, &w);
    for (int64_t i0 = 0; i0 < bc->numel; i0 += D, interp_bcast_walk_step(&outer, &w)) {
        const float *pa = a + w.off[0], *pb = b + w.off[1];
        float *pr = r + i0;
        switch (kind) {
        case ELEM_ADD:
            for (int64_t j = 0; j < D; j++)
                pr[j] = pa[j * sa] + pb[j * sb];
            break;
        case ELEM_SUB:
            for (int64_t j = 0; j < D; j++)
                pr[j] = pa[j * sa] - pb[j * sb];
            break;
        case ELEM_MUL:
            for (int64_t j = 0; j < D; j++)
                pr[j] = pa[j * sa] * pb[j * sb];
            break;
        default:
            for (int64_t j = 0; j < D; j++)
                pr[j] = pa[j * sa] / pb[j * sb];
            break;
        }
    }
    return 1;
}

/* float32 x to the power of one number (the decomposed LayerNorm's
 * Pow(x, 2), on every activation of a model): each element once, without
 * the broadcast offsets. pow(a, 2) is a * a (a float's square is exact in
 * double, and pow is within a unit of the last place of an exact result
 * it can hold, so it returns it); either way the double rounds to float
 * once, as below. 1 if done. */
static int elem_pow_scalar_f32(const tensor *x, const tensor *y, tensor *res) {
    if (x->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(y) != 1 ||
        tensor_numel(res) != tensor_numel(x))
        return 0;
    const double e = tensor_get_f64(y, 0);
    const float *a = x->data;
    float *r = res->data;
    const int64_t n = tensor_numel(x);
    if (e == 2.0)
        for (int64_t i = 0; i < n; i++)
            r[i] = (float)((double)a[i] * (double)a[i]);
    else
        for (int64_t i = 0; i < n; i++)
            r[i] = (float)pow((double)a[i], e);
    return 1;
}

/* res = x (op) y with broadcasting, a new tensor of x's dtype. */
static mha_status elem_binary(interp_ctx *c, elem_binary_kind kind, const tensor *x,
                              const tensor *y, tensor **res) {
    *res = NULL;
    mha_dtype dt = x->dtype;
    int float_math = interp_is_float(dt);
    if (!float_math && !interp_is_int(dt))
        return interp_fail(c, MHA_ERR_DTYPE, "%s of %s is not supported", elem_binary_name(kind),
                           mha_dtype_name(dt));
    if (kind == ELEM_POW) {
        /* Pow's exponent may have its own numeric type. */
        if (!interp_is_float(y->dtype) && !interp_is_int(y->dtype))
            return interp_fail(c, MHA_ERR_DTYPE, "exponent of type %s is not supported",
                               mha_dtype_name(y->dtype));
    } else if (y->dtype != dt) {
        return interp_fail(c, MHA_ERR_DTYPE, "operands are %s and %s", mha_dtype_name(dt),
                           mha_dtype_name(y->dtype));
    }
    const tensor *ops[2] = {x, y};
    interp_bcast b;
    mha_status st = interp_bcast_init(c, &b, 2, ops);
    if (st == MHA_OK) st = interp_tensor_new(c, dt, b.rank, b.dims, res);
    if (st != MHA_OK) return st;
    if (elem_binary_same_f32(kind, x, y, *res) || elem_binary_rows_f32(kind, &b, x, y, *res) ||
        (kind == ELEM_POW && elem_pow_scalar_f32(x, y, *res)))
        return MHA_OK;
    /* row by row of the last axis (interp_bcast_rows) */
    interp_bcast outer;
    int64_t D, rs[3];
    interp_bcast_rows(&b, &outer, &D, rs);
    interp_bcast_walk w;
    interp_bcast_walk_start(&outer, &w);
    for (int64_t i = 0, j = 0; D > 0 && i < b.numel; i++, j++) {
        if (j == D) { /* the next row */
            j = 0;
            interp_bcast_walk_step(&outer, &w);
        }
        const int64_t off[2] = {w.off[0] + j * rs[0], w.off[1] + j * rs[1]};
        if (float_math || kind == ELEM_POW) {
            double v =
                elem_float_binary(kind, tensor_get_f64(x, off[0]), tensor_get_f64(y, off[1]));
            if (float_math) {
                tensor_set_f64(*res, i, v);
            } else {
                /* integer Pow: the exact power is an integer when it fits */
                interp_set_i64(*res, i,
                               isnan(v)       ? 0
                               : v >= 9.2e18  ? INT64_MAX
                               : v <= -9.2e18 ? INT64_MIN
                                              : (int64_t)v);
            }
        } else {
            int ok = 1;
            int64_t v =
                elem_int_binary(kind, tensor_get_i64(x, off[0]), tensor_get_i64(y, off[1]), &ok);
            if (!ok) {
                tensor_free(*res);
                *res = NULL;
                return interp_fail(c, MHA_ERR_MODEL_FORMAT, "integer %s by zero",
                                   kind == ELEM_DIV ? "division" : "modulo");
            }
            interp_set_i64(*res, i, v);
        }
    }
    return MHA_OK;
}

static mha_status elem_binary_op(interp_ctx *c, elem_binary_kind kind) {
    const tensor *x, *y;
    tensor *res;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &y);
    if (st == MHA_OK) st = elem_binary(c, kind, x, y, &res);
    if (st == MHA_OK) c->out[0] = res;
    return st;
}

mha_status interp_op_add(interp_ctx *c) {
    return elem_binary_op(c, ELEM_ADD);
}
mha_status interp_op_sub(interp_ctx *c) {
    return elem_binary_op(c, ELEM_SUB);
}
mha_status interp_op_mul(interp_ctx *c) {
    return elem_binary_op(c, ELEM_MUL);
}
mha_status interp_op_div(interp_ctx *c) {
    return elem_binary_op(c, ELEM_DIV);
}
mha_status interp_op_pow(interp_ctx *c) {
    return elem_binary_op(c, ELEM_POW);
}
/* Mod (opset 10, 13): integers as Python's % (fmod = 0) or C's (fmod = 1);
 * floats as C's fmod, or with the divisor's sign when fmod = 0 (which the
 * standard asks of integers only). */
mha_status interp_op_mod(interp_ctx *c) {
    int64_t fmod_attr;
    mha_status st = interp_attr_int(c, "fmod", 0, &fmod_attr);
    if (st != MHA_OK) return st;
    return elem_binary_op(c, fmod_attr ? ELEM_FMOD : ELEM_MOD);
}

/* Max / Min take one or more inputs, folded left to right. */
static mha_status elem_variadic(interp_ctx *c, elem_binary_kind kind) {
    const tensor *x0;
    mha_status st = interp_check_arity(c, 1, SIZE_MAX, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x0);
    if (st != MHA_OK) return st;
    if (c->n_in == 1) {
        /* max(x) = x, but still only for the numeric types */
        const tensor *one[1] = {x0};
        tensor *res;
        st = elem_binary(c, kind, x0, one[0], &res);
        if (st == MHA_OK) c->out[0] = res;
        return st;
    }
    tensor *acc = NULL;
    for (size_t k = 1; k < c->n_in; k++) {
        const tensor *y;
        tensor *next;
        st = interp_in_req(c, k, &y);
        if (st == MHA_OK) st = elem_binary(c, kind, acc ? acc : x0, y, &next);
        tensor_free(acc);
        acc = NULL;
        if (st != MHA_OK) return st;
        acc = next;
    }
    c->out[0] = acc;
    return MHA_OK;
}

mha_status interp_op_max(interp_ctx *c) {
    return elem_variadic(c, ELEM_MAX);
}
mha_status interp_op_min(interp_ctx *c) {
    return elem_variadic(c, ELEM_MIN);
}

/* ---- unary ---- */

typedef enum elem_unary_kind {
    ELEM_SQRT,
    ELEM_NEG,
    ELEM_RECIPROCAL,
    ELEM_EXP,
    ELEM_LOG,
    ELEM_TANH,
    ELEM_ERF,
    ELEM_COS,
    ELEM_SIN,
    ELEM_RELU,
    ELEM_SIGMOID,
    ELEM_ABS
} elem_unary_kind;

static double elem_float_unary(elem_unary_kind kind, double x) {
    switch (kind) {
    case ELEM_SQRT:
        return sqrt(x);
    case ELEM_NEG:
        return -x;
    case ELEM_RECIPROCAL:
        return 1.0 / x;
    case ELEM_EXP:
        return exp(x);
    case ELEM_LOG:
        return log(x);
    case ELEM_TANH:
        return tanh(x);
    case ELEM_ERF:
        return erf(x);
    case ELEM_COS: /* rotary tables (float32 in, rounded once) */
        return cos(x);
    case ELEM_SIN:
        return sin(x);
    case ELEM_RELU:
        return x > 0 ? x : (isnan(x) ? x : 0.0);
    case ELEM_SIGMOID:
        /* the form that never overflows exp() */
        return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
    case ELEM_ABS:
        return fabs(x);
    }
    return 0.0;
}

static mha_status elem_unary_op(interp_ctx *c, elem_unary_kind kind, int ints_too) {
    const tensor *x;
    tensor *y;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    int float_math = interp_is_float(x->dtype);
    if (!float_math && !(ints_too && interp_is_int(x->dtype)))
        return interp_fail(c, MHA_ERR_DTYPE, "input of type %s is not supported",
                           mha_dtype_name(x->dtype));
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        if (float_math) {
            tensor_set_f64(y, i, elem_float_unary(kind, tensor_get_f64(x, i)));
            continue;
        }
        int64_t v = tensor_get_i64(x, i);
        switch (kind) {
        case ELEM_NEG:
            v = (int64_t)((uint64_t)0 - (uint64_t)v);
            break;
        case ELEM_ABS:
            v = v < 0 ? (int64_t)((uint64_t)0 - (uint64_t)v) : v;
            break;
        case ELEM_RELU:
            v = v > 0 ? v : 0;
            break;
        default:
            break;
        }
        interp_set_i64(y, i, v);
    }
    return MHA_OK;
}

mha_status interp_op_sqrt(interp_ctx *c) {
    return elem_unary_op(c, ELEM_SQRT, 0);
}
mha_status interp_op_neg(interp_ctx *c) {
    return elem_unary_op(c, ELEM_NEG, 1);
}
mha_status interp_op_reciprocal(interp_ctx *c) {
    return elem_unary_op(c, ELEM_RECIPROCAL, 0);
}
mha_status interp_op_exp(interp_ctx *c) {
    return elem_unary_op(c, ELEM_EXP, 0);
}
mha_status interp_op_log(interp_ctx *c) {
    return elem_unary_op(c, ELEM_LOG, 0);
}
mha_status interp_op_tanh(interp_ctx *c) {
    return elem_unary_op(c, ELEM_TANH, 0);
}
mha_status interp_op_erf(interp_ctx *c) {
    return elem_unary_op(c, ELEM_ERF, 0);
}
mha_status interp_op_cos(interp_ctx *c) {
    return elem_unary_op(c, ELEM_COS, 0);
}
mha_status interp_op_sin(interp_ctx *c) {
    return elem_unary_op(c, ELEM_SIN, 0);
}
mha_status interp_op_relu(interp_ctx *c) {
    return elem_unary_op(c, ELEM_RELU, 1);
}
mha_status interp_op_sigmoid(interp_ctx *c) {
    return elem_unary_op(c, ELEM_SIGMOID, 0);
}
mha_status interp_op_abs(interp_ctx *c) {
    return elem_unary_op(c, ELEM_ABS, 1);
}

/* HardSigmoid(X; alpha = 0.2, beta = 0.5) = max(0, min(1, alpha x + beta));
 * HardSwish(X) = x HardSigmoid(x; 1/6, 1/2) (opset 14; PyTorch writes
 * hardswish as HardSigmoid times x below it). NaN stays NaN. */
static mha_status elem_hard(interp_ctx *c, int swish) {
    const tensor *x;
    tensor *y;
    float alpha = 1.0f / 6.0f, beta = 0.5f;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK && !swish) st = interp_attr_float(c, "alpha", 0.2f, &alpha);
    if (st == MHA_OK && !swish) st = interp_attr_float(c, "beta", 0.5f, &beta);
    if (st != MHA_OK) return st;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input of type %s is not supported",
                           mha_dtype_name(x->dtype));
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    /* HardSwish's constants exactly (1/6 is not a float) */
    const double a = swish ? 1.0 / 6.0 : (double)alpha, b = swish ? 0.5 : (double)beta;
    const int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        const double v = tensor_get_f64(x, i);
        double h = a * v + b;
        if (!isnan(h)) h = h < 0.0 ? 0.0 : (h > 1.0 ? 1.0 : h);
        tensor_set_f64(y, i, swish ? v * h : h);
    }
    return MHA_OK;
}

mha_status interp_op_hard_sigmoid(interp_ctx *c) {
    return elem_hard(c, 0);
}
mha_status interp_op_hard_swish(interp_ctx *c) {
    return elem_hard(c, 1);
}

/* ---- comparisons and logic (bool results) ---- */

typedef enum elem_cmp_kind {
    ELEM_EQ,
    ELEM_LT,
    ELEM_GT,
    ELEM_LE,
    ELEM_GE,
    ELEM_AND,
    ELEM_OR,
    ELEM_XOR
} elem_cmp_kind;

static mha_status elem_compare_op(interp_ctx *c, elem_cmp_kind kind) {
    const tensor *x, *y;
    tensor *z;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &y);
    if (st != MHA_OK) return st;
    if (x->dtype != y->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "operands are %s and %s", mha_dtype_name(x->dtype),
                           mha_dtype_name(y->dtype));
    int logic = kind == ELEM_AND || kind == ELEM_OR || kind == ELEM_XOR;
    int is_bool = x->dtype == MHA_DTYPE_BOOL;
    if (logic ? !is_bool
              : !(interp_is_float(x->dtype) || interp_is_int(x->dtype) ||
                  (is_bool && kind == ELEM_EQ)))
        return interp_fail(c, MHA_ERR_DTYPE, "operands of type %s are not supported",
                           mha_dtype_name(x->dtype));
    const tensor *ops[2] = {x, y};
    interp_bcast b;
    st = interp_bcast_init(c, &b, 2, ops);
    if (st == MHA_OK) st = interp_out_new(c, 0, MHA_DTYPE_BOOL, b.rank, b.dims, &z);
    if (st != MHA_OK) return st;
    int float_math = interp_is_float(x->dtype);
    uint8_t *out = z->data;
    interp_bcast_walk w;
    interp_bcast_walk_start(&b, &w);
    for (int64_t i = 0; i < b.numel; i++, interp_bcast_walk_step(&b, &w)) {
        const int64_t *off = w.off;
        int r = 0;
        if (float_math) {
            double p = tensor_get_f64(x, off[0]), q = tensor_get_f64(y, off[1]);
            switch (kind) {
            case ELEM_EQ:
                r = p == q;
                break;
            case ELEM_LT:
                r = p < q;
                break;
            case ELEM_GT:
                r = p > q;
                break;
            case ELEM_LE:
                r = p <= q;
                break;
            case ELEM_GE:
                r = p >= q;
                break;
            default:
                break;
            }
        } else {
            int64_t p = tensor_get_i64(x, off[0]), q = tensor_get_i64(y, off[1]);
            switch (kind) {
            case ELEM_EQ:
                r = p == q;
                break;
            case ELEM_LT:
                r = p < q;
                break;
            case ELEM_GT:
                r = p > q;
                break;
            case ELEM_LE:
                r = p <= q;
                break;
            case ELEM_GE:
                r = p >= q;
                break;
            case ELEM_AND:
                r = p && q;
                break;
            case ELEM_OR:
                r = p || q;
                break;
            case ELEM_XOR:
                r = (p != 0) != (q != 0);
                break;
            }
        }
        out[i] = (uint8_t)r;
    }
    return MHA_OK;
}

mha_status interp_op_equal(interp_ctx *c) {
    return elem_compare_op(c, ELEM_EQ);
}
mha_status interp_op_less(interp_ctx *c) {
    return elem_compare_op(c, ELEM_LT);
}
mha_status interp_op_greater(interp_ctx *c) {
    return elem_compare_op(c, ELEM_GT);
}
mha_status interp_op_less_or_equal(interp_ctx *c) {
    return elem_compare_op(c, ELEM_LE);
}
mha_status interp_op_greater_or_equal(interp_ctx *c) {
    return elem_compare_op(c, ELEM_GE);
}
mha_status interp_op_and(interp_ctx *c) {
    return elem_compare_op(c, ELEM_AND);
}
mha_status interp_op_or(interp_ctx *c) {
    return elem_compare_op(c, ELEM_OR);
}
mha_status interp_op_xor(interp_ctx *c) {
    return elem_compare_op(c, ELEM_XOR);
}

mha_status interp_op_not(interp_ctx *c) {
    const tensor *x;
    tensor *y;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    if (x->dtype != MHA_DTYPE_BOOL)
        return interp_fail(c, MHA_ERR_DTYPE, "input must be bool, not %s",
                           mha_dtype_name(x->dtype));
    st = interp_out_new(c, 0, MHA_DTYPE_BOOL, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        ((uint8_t *)y->data)[i] = !((const uint8_t *)x->data)[i];
    return MHA_OK;
}

mha_status interp_op_where(interp_ctx *c) {
    const tensor *cond, *x, *y;
    tensor *z;
    mha_status st = interp_check_arity(c, 3, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &cond);
    if (st == MHA_OK) st = interp_in_req(c, 1, &x);
    if (st == MHA_OK) st = interp_in_req(c, 2, &y);
    if (st != MHA_OK) return st;
    if (cond->dtype != MHA_DTYPE_BOOL)
        return interp_fail(c, MHA_ERR_DTYPE, "condition must be bool, not %s",
                           mha_dtype_name(cond->dtype));
    if (x->dtype != y->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "X is %s but Y is %s", mha_dtype_name(x->dtype),
                           mha_dtype_name(y->dtype));
    const tensor *ops[3] = {cond, x, y};
    interp_bcast b;
    st = interp_bcast_init(c, &b, 3, ops);
    if (st == MHA_OK) st = interp_out_new(c, 0, x->dtype, b.rank, b.dims, &z);
    if (st != MHA_OK) return st;
    /* row by row of the last axis (interp_bcast_rows) */
    const size_t es = mha_dtype_size(x->dtype);
    const uint8_t *pc = cond->data;
    const char *px = x->data, *py = y->data;
    char *pz = z->data;
    interp_bcast outer;
    int64_t D, rs[3];
    interp_bcast_rows(&b, &outer, &D, rs);
    interp_bcast_walk w;
    interp_bcast_walk_start(&outer, &w);
    for (int64_t i0 = 0; D > 0 && i0 < b.numel; i0 += D, interp_bcast_walk_step(&outer, &w))
        for (int64_t j = 0; j < D; j++) {
            const char *src = pc[w.off[0] + j * rs[0]] ? px + (size_t)(w.off[1] + j * rs[1]) * es
                                                       : py + (size_t)(w.off[2] + j * rs[2]) * es;
            memcpy(pz + (size_t)(i0 + j) * es, src, es);
        }
    return MHA_OK;
}

mha_status interp_op_isnan(interp_ctx *c) {
    const tensor *x;
    tensor *y;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input must be a float type, not %s",
                           mha_dtype_name(x->dtype));
    st = interp_out_new(c, 0, MHA_DTYPE_BOOL, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        ((uint8_t *)y->data)[i] = isnan(tensor_get_f64(x, i)) != 0;
    return MHA_OK;
}

mha_status interp_op_isinf(interp_ctx *c) {
    const tensor *x;
    tensor *y;
    int64_t neg, pos;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "detect_negative", 1, &neg);
    if (st == MHA_OK) st = interp_attr_int(c, "detect_positive", 1, &pos);
    if (st != MHA_OK) return st;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input must be a float type, not %s",
                           mha_dtype_name(x->dtype));
    st = interp_out_new(c, 0, MHA_DTYPE_BOOL, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_get_f64(x, i);
        ((uint8_t *)y->data)[i] = (uint8_t)((pos && v == INFINITY) || (neg && v == -INFINITY));
    }
    return MHA_OK;
}

/* ---- casts ---- */

/* Float to integer: truncation toward zero, NaN to 0, saturated at the
 * target's range (the spec leaves out-of-range undefined; this is at
 * least deterministic and free of UB). */
static int64_t elem_float_to_int(double v, mha_dtype to) {
    double lo, hi;
    switch (to) {
    case MHA_DTYPE_INT32:
        lo = -2147483648.0;
        hi = 2147483647.0;
        break;
    case MHA_DTYPE_INT8:
        lo = -128.0;
        hi = 127.0;
        break;
    case MHA_DTYPE_UINT8:
        lo = 0.0;
        hi = 255.0;
        break;
    default:
        lo = -9223372036854775808.0;
        hi = 9223372036854774784.0;
        break;
    }
    if (isnan(v)) return 0;
    v = trunc(v);
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return to == MHA_DTYPE_INT64 ? INT64_MAX : (int64_t)hi;
    return (int64_t)v;
}

/* The casts a whole model's probes run on every mask and id element
 * (int64 or bool to float32, float32 to bool, int32 or int64 to int64):
 * typed loops, where the loop below goes through double and two switches
 * per element. The same values as that loop. 1 if done. */
static int elem_cast_typed(const tensor *x, tensor *y) {
    const int64_t n = tensor_numel(x);
    const mha_dtype from = x->dtype, to = y->dtype;
    if (to == MHA_DTYPE_FLOAT32 && from == MHA_DTYPE_INT64) {
        const int64_t *a = x->data;
        float *r = y->data;
        for (int64_t i = 0; i < n; i++)
            r[i] = (float)(double)a[i]; /* rounded twice, as tensor_set_f64 does */
    } else if (to == MHA_DTYPE_FLOAT32 && from == MHA_DTYPE_BOOL) {
        const uint8_t *a = x->data;
        float *r = y->data;
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i] ? 1.0f : 0.0f;
    } else if (to == MHA_DTYPE_BOOL && from == MHA_DTYPE_FLOAT32) {
        const float *a = x->data;
        uint8_t *r = y->data;
        for (int64_t i = 0; i < n; i++)
            r[i] = (double)a[i] != 0.0; /* NaN is true */
    } else if (to == MHA_DTYPE_INT64 && from == MHA_DTYPE_INT64) {
        memcpy(y->data, x->data, (size_t)n * sizeof(int64_t));
    } else if (to == MHA_DTYPE_INT64 && from == MHA_DTYPE_INT32) {
        const int32_t *a = x->data;
        int64_t *r = y->data;
        for (int64_t i = 0; i < n; i++)
            r[i] = a[i];
    } else {
        return 0;
    }
    return 1;
}

static mha_status elem_cast(interp_ctx *c, const tensor *x, mha_dtype to) {
    tensor *y;
    if (!mha_dtype_in_models(to))
        return interp_fail(c, MHA_ERR_DTYPE, "cast to unsupported data type %d", (int)to);
    mha_status st = interp_out_new(c, 0, to, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    if (elem_cast_typed(x, y)) return MHA_OK;
    int64_t n = tensor_numel(x);
    int from_float = interp_is_float(x->dtype);
    for (int64_t i = 0; i < n; i++) {
        if (from_float) {
            double v = tensor_get_f64(x, i);
            if (interp_is_float(to))
                tensor_set_f64(y, i, v);
            else if (to == MHA_DTYPE_BOOL)
                ((uint8_t *)y->data)[i] = v != 0.0; /* NaN is true, as in numpy */
            else
                interp_set_i64(y, i, elem_float_to_int(v, to));
        } else {
            int64_t v = tensor_get_i64(x, i);
            if (interp_is_float(to))
                tensor_set_f64(y, i, (double)v);
            else
                interp_set_i64(y, i, v);
        }
    }
    return MHA_OK;
}

mha_status interp_op_cast(interp_ctx *c) {
    const tensor *x;
    int64_t to;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    if (!interp_has_attr(c, "to"))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'to' is required");
    st = interp_attr_int(c, "to", 0, &to);
    if (st != MHA_OK) return st;
    if (to <= 0 || to > 64 || !mha_dtype_in_models((mha_dtype)to))
        return interp_fail(c, MHA_ERR_DTYPE, "cast to unsupported data type %lld", (long long)to);
    return elem_cast(c, x, (mha_dtype)to);
}

mha_status interp_op_cast_like(interp_ctx *c) {
    const tensor *x, *like;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &like);
    if (st != MHA_OK) return st;
    return elem_cast(c, x, like->dtype);
}
