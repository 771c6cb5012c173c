/* entry_onnx_model.c -- fuzz entry for ONNX model loading: bytes -> the
 * importer (ir_load_memory) -> the recogniser and verifier (through
 * mha_model_load_memory) -> for a small recognised layer, one run on the
 * scalar backend compared with the layer's reference forward pass.
 *
 * What must hold for any input: a clean status with a one-line message, no
 * descriptor leak, and for a loaded graph every structural promise of
 * onnx_ir.h (value ids in range, nodes in topological order, initializers
 * whose byte size matches their shape). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_entry.h"
#include "layer.h"
#include "layer_reference.h"
#include "model.h"
#include "onnx_ir.h"

/* Caps what a fuzzed file may make the loader allocate: it bounds the file
 * and what a sparse initializer may densify to, so that the fuzzer's
 * -malloc_limit_mb only fires on allocations the caps do not cover. */
#define FUZZ_MAX_MODEL_BYTES ((uint64_t)64 << 20)
/* A recognised layer is run when its inputs and outputs stay this small. */
#define FUZZ_MAX_RUN_ELEMENTS ((int64_t)1 << 16)

static void check_tensor(const tensor *t, const char *what) {
    FUZZ_CHECK(t->rank >= 0 && t->rank <= MHA_MAX_RANK, "%s: rank %d", what, t->rank);
    size_t esize = mha_dtype_size(t->dtype);
    FUZZ_CHECK(esize > 0, "%s: dtype %d", what, (int)t->dtype);
    int64_t numel = 1;
    for (int i = 0; i < t->rank; i++) {
        FUZZ_CHECK(t->dims[i] >= 0, "%s: dim %d is %lld", what, i, (long long)t->dims[i]);
        FUZZ_CHECK(!__builtin_mul_overflow(numel, t->dims[i], &numel), "%s: numel overflows", what);
    }
    FUZZ_CHECK((uint64_t)numel * esize == t->nbytes, "%s: %zu bytes for %lld elements of %zu", what,
               t->nbytes, (long long)numel, esize);
    FUZZ_CHECK(t->nbytes == 0 || t->data, "%s: no data", what);
    if (t->dtype == MHA_DTYPE_BOOL)
        for (size_t i = 0; i < t->nbytes; i++)
            FUZZ_CHECK(((const uint8_t *)t->data)[i] <= 1, "%s: bool byte %zu is %u", what, i,
                       ((const uint8_t *)t->data)[i]);
}

static void check_value_id(const ir_graph *g, int v, int allow_omitted, const char *what) {
    FUZZ_CHECK((allow_omitted && v == -1) || (v >= 0 && (size_t)v < g->n_values),
               "%s: value id %d of %zu", what, v, g->n_values);
}

/* The structural promises of onnx_ir.h. */
static void check_graph(const ir_graph *g) {
    for (size_t v = 0; v < g->n_values; v++) {
        const ir_value *val = &g->values[v];
        FUZZ_CHECK(val->name != NULL, "value %zu has no name", v);
        FUZZ_CHECK(val->producer >= -1 && (val->producer < 0 || (size_t)val->producer < g->n_nodes),
                   "value '%s': producer %d", val->name, val->producer);
        FUZZ_CHECK(val->rank >= -1 && val->rank <= MHA_MAX_RANK, "value '%s': rank %d", val->name,
                   val->rank);
        if (val->init) {
            check_tensor(val->init, val->name);
            FUZZ_CHECK(val->producer == -1, "initializer '%s' also has a producer", val->name);
        }
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        FUZZ_CHECK(n->op_type && n->domain && n->name, "node %zu: missing strings", i);
        for (size_t k = 0; k < n->n_inputs; k++) {
            check_value_id(g, n->inputs[k], 1, n->op_type);
            int v = n->inputs[k];
            /* topological order: an input is made by an earlier node */
            if (v >= 0)
                FUZZ_CHECK(g->values[v].producer < (int)i,
                           "node %zu (%s) reads '%s' made by node %d", i, n->op_type,
                           g->values[v].name, g->values[v].producer);
        }
        for (size_t k = 0; k < n->n_outputs; k++) {
            check_value_id(g, n->outputs[k], 1, n->op_type);
            int v = n->outputs[k];
            if (v >= 0)
                FUZZ_CHECK(g->values[v].producer == (int)i, "node %zu (%s) output '%s' producer %d",
                           i, n->op_type, g->values[v].name, g->values[v].producer);
        }
        for (size_t k = 0; k < n->n_attrs; k++) {
            const ir_attr *at = &n->attrs[k];
            FUZZ_CHECK(at->name != NULL, "node %zu: attribute without a name", i);
            if (at->type == IR_ATTR_TENSOR) {
                FUZZ_CHECK(at->t != NULL, "attribute '%s': no tensor", at->name);
                check_tensor(at->t, at->name);
            }
            if (at->type == IR_ATTR_INTS && at->n) FUZZ_CHECK(at->ints, "'%s': no ints", at->name);
            if (at->type == IR_ATTR_FLOATS && at->n)
                FUZZ_CHECK(at->floats, "'%s': no floats", at->name);
            if (at->type == IR_ATTR_STRING) FUZZ_CHECK(at->s, "'%s': no string", at->name);
        }
    }
    for (size_t k = 0; k < g->n_inputs; k++) {
        check_value_id(g, g->inputs[k], 0, "graph input");
        const ir_value *val = &g->values[g->inputs[k]];
        FUZZ_CHECK(!val->init, "graph input '%s' is an initializer", val->name);
        FUZZ_CHECK(val->graph_input == (int)k, "graph input '%s': index %d, expected %zu",
                   val->name, val->graph_input, k);
    }
    for (size_t k = 0; k < g->n_outputs; k++)
        check_value_id(g, g->outputs[k], 0, "graph output");
}

static mha_runtime *fuzz_runtime(void) {
    /* created once, kept for the process (reachable, so not a leak) */
    static mha_runtime *rt;
    if (!rt) {
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.num_threads = 1;
        o.backend = "scalar";
        o.no_env = 1;
        mha_error err;
        if (mha_runtime_create(&o, &rt, &err) != MHA_OK)
            fuzz_check_failed(__FILE__, __LINE__, "cannot create a runtime: %s", err.message);
    }
    return rt;
}

/* Deterministic input values: floats in [-1, 1), masks that attend, small
 * integers (a non-pad length of 1). */
static void fill_input(mha_tensor *t, int64_t n, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        switch (t->dtype) {
        case MHA_DTYPE_FLOAT32:
            ((float *)t->data)[i] = (float)u;
            break;
        case MHA_DTYPE_FLOAT64:
            ((double *)t->data)[i] = u;
            break;
        case MHA_DTYPE_FLOAT16:
            ((uint16_t *)t->data)[i] = mha_float_to_half((float)u);
            break;
        case MHA_DTYPE_BFLOAT16:
            ((uint16_t *)t->data)[i] = mha_float_to_bf16((float)u);
            break;
        case MHA_DTYPE_BOOL:
            ((uint8_t *)t->data)[i] = 1;
            break;
        case MHA_DTYPE_INT64:
            ((int64_t *)t->data)[i] = 1;
            break;
        case MHA_DTYPE_INT32:
            ((int32_t *)t->data)[i] = 1;
            break;
        default:
            memset((char *)t->data + (size_t)i * mha_dtype_size(t->dtype), 0,
                   mha_dtype_size(t->dtype));
        }
    }
}

static double element_f64(const mha_tensor *t, int64_t i) {
    switch (t->dtype) {
    case MHA_DTYPE_FLOAT32:
        return ((const float *)t->data)[i];
    case MHA_DTYPE_FLOAT64:
        return ((const double *)t->data)[i];
    case MHA_DTYPE_FLOAT16:
        return mha_half_to_float(((const uint16_t *)t->data)[i]);
    case MHA_DTYPE_BFLOAT16:
        return mha_bf16_to_float(((const uint16_t *)t->data)[i]);
    default:
        return 0.0;
    }
}

/* Runs a recognised layer once on the scalar backend and compares with
 * layer_reference_forward where the reference is finite and moderate (a
 * fuzzed weight of 1e30 overflows differently in any two summation
 * orders). */
static void run_model(const mha_model *m, size_t ni, size_t no) {
    if (ni == 0 || no == 0 || ni > 16 || no > 16) return;
    mha_tensor in[16], out[16], ref[16];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    memset(ref, 0, sizeof ref);
    int ok = 1;
    for (size_t i = 0; i < ni && ok; i++) {
        mha_io_info info;
        FUZZ_CHECK(mha_model_input(m, i, &info) == MHA_OK, "input %zu info", i);
        if (info.rank < 0 || mha_dtype_size(info.dtype) == 0) {
            ok = 0;
            break;
        }
        in[i].dtype = info.dtype;
        in[i].rank = info.rank;
        for (int d = 0; d < info.rank; d++)
            in[i].shape[d] = info.shape[d] < 0 ? 2 : info.shape[d];
        int64_t n = mha_tensor_numel(&in[i]);
        if (n < 0 || n > FUZZ_MAX_RUN_ELEMENTS) {
            ok = 0;
            break;
        }
        in[i].data = calloc((size_t)(n ? n : 1), mha_dtype_size(info.dtype));
        FUZZ_CHECK(in[i].data, "calloc");
        fill_input(&in[i], n, 0x9e3779b97f4a7c15ull * (i + 1));
    }
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ok ? mha_model_output_shapes(m, in, ni, out, no, &err) : MHA_ERR_SHAPE;
    if (ok) fuzz_note("mha_model_output_shapes", st, &err);
    if (ok && st != MHA_OK) fuzz_check_error("mha_model_output_shapes", st, &err);
    for (size_t i = 0; i < no && ok && st == MHA_OK; i++) {
        int64_t n = mha_tensor_numel(&out[i]);
        if (n < 0 || n > FUZZ_MAX_RUN_ELEMENTS || mha_dtype_size(out[i].dtype) == 0) {
            ok = 0;
            break;
        }
        ref[i] = out[i];
        out[i].data = calloc((size_t)(n ? n : 1), mha_dtype_size(out[i].dtype));
        ref[i].data = calloc((size_t)(n ? n : 1), mha_dtype_size(out[i].dtype));
        FUZZ_CHECK(out[i].data && ref[i].data, "calloc");
    }
    if (ok && st == MHA_OK) {
        st = mha_run(fuzz_runtime(), m, in, ni, out, no, NULL, &err);
        fuzz_note("mha_run", st, &err);
        if (st != MHA_OK) fuzz_check_error("mha_run", st, &err);
        /* a whole model (a plan) was verified against the interpreter at
         * load; the run itself must end cleanly, and a one-layer model also
         * match its reference forward pass */
        mha_error rerr;
        mha_error_clear(&rerr);
        mha_status rst =
            m->plan ? st : layer_reference_forward(&m->alloc, &m->L, in, ni, ref, no, &rerr);
        if (m->plan) {
            for (size_t i = 0; i < no; i++)
                if (out[i].data && ref[i].data)
                    memcpy(ref[i].data, out[i].data,
                           (size_t)mha_tensor_numel(&out[i]) * mha_dtype_size(out[i].dtype));
            rerr = err;
        }
        if (rst != MHA_OK) fuzz_check_error("layer_reference_forward", rst, &rerr);
        FUZZ_CHECK((st == MHA_OK) == (rst == MHA_OK), "mha_run says %s, the reference %s",
                   mha_status_name(st), mha_status_name(rst));
        for (size_t i = 0; i < no && st == MHA_OK && rst == MHA_OK; i++) {
            int64_t n = mha_tensor_numel(&out[i]);
            double scale = 1.0, worst = 0.0;
            int comparable = 1;
            for (int64_t e = 0; e < n; e++) {
                double r = element_f64(&ref[i], e);
                if (!isfinite(r) || fabs(r) > 1e4) comparable = 0;
                if (fabs(r) > scale) scale = fabs(r);
            }
            for (int64_t e = 0; e < n && comparable; e++) {
                double d = fabs(element_f64(&out[i], e) - element_f64(&ref[i], e));
                if (!(d <= worst)) worst = d; /* NaN makes it infinite */
            }
            if (comparable && out[i].dtype == MHA_DTYPE_FLOAT32)
                FUZZ_CHECK(worst / scale <= 1e-3,
                           "output %zu: scalar backend differs from the reference by %g "
                           "(relative to %g)",
                           i, worst, scale);
        }
    }
    for (size_t i = 0; i < 16; i++) {
        free(in[i].data);
        free(out[i].data);
        free(ref[i].data);
    }
}

int fuzz_onnx_model_one(const uint8_t *data, size_t size) {
    int fd_before = fuzz_lowest_free_fd();
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    ir_load_options o;
    memset(&o, 0, sizeof o);
    o.max_file_bytes = FUZZ_MAX_MODEL_BYTES;
    ir_graph *g = (ir_graph *)&o; /* must be overwritten */
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ir_load_memory(&a, data, size, NULL, &o, &g, &err);
    fuzz_note("ir_load_memory", st, &err);
    if (st != MHA_OK) {
        fuzz_check_error("ir_load_memory", st, &err);
        FUZZ_CHECK(g == NULL, "ir_load_memory failed but left a graph");
        FUZZ_CHECK(fuzz_lowest_free_fd() == fd_before, "descriptor leak");
        return 0;
    }
    FUZZ_CHECK(g != NULL, "ir_load_memory succeeded without a graph");
    check_graph(g);
    ir_free(g);

    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.max_file_bytes = FUZZ_MAX_MODEL_BYTES;
    mha_model *m = (mha_model *)&mo;
    mha_error_clear(&err);
    st = mha_model_load_memory(data, size, NULL, &mo, &m, &err);
    fuzz_note("mha_model_load_memory", st, &err);
    if (st != MHA_OK) {
        fuzz_check_error("mha_model_load_memory", st, &err);
        FUZZ_CHECK(m == NULL, "mha_model_load_memory failed but left a model");
    } else {
        FUZZ_CHECK(m != NULL, "mha_model_load_memory succeeded without a model");
        mha_model_info info;
        FUZZ_CHECK(mha_model_get_info(m, &info) == MHA_OK, "mha_model_get_info");
        size_t ni = m->plan ? m->plan->g->n_inputs : m->L.n_inputs;
        size_t no = m->plan ? m->plan->g->n_outputs : m->L.n_outputs;
        FUZZ_CHECK(info.form != NULL && info.num_inputs == ni && info.num_outputs == no,
                   "model info disagrees with the %s", m->plan ? "plan" : "layer");
        /* a plan whose layers were all refused (interpreted) has no heads */
        FUZZ_CHECK((m->plan && info.q_heads == 0 && info.kv_heads == 0) ||
                       (info.q_heads > 0 && info.kv_heads > 0 && info.q_heads % info.kv_heads == 0),
                   "heads %lld / %lld", (long long)info.q_heads, (long long)info.kv_heads);
        run_model(m, ni, no);
        mha_model_free(m);
    }
    FUZZ_CHECK(fuzz_lowest_free_fd() == fd_before, "descriptor leak");
    return 0;
}
