/* onnx_load_functions.c -- model-local functions (ModelProto.functions, IR
 * version 8+, as onnxscript and newer exporters write them) inlined at
 * import, before the graph is built: each node that calls a function (its
 * domain and op_type name one of the model's FunctionProtos) is replaced by
 * the function's body, in which
 *   - the formal inputs and outputs become the call's actual names (an
 *     omitted actual input stays omitted),
 *   - every other value gets a name unique to the call
 *     ("<function>#<call>/<name>"),
 *   - an attribute that refers to one of the function's (ref_attr_name)
 *     takes the call's value, else the function's default
 *     (attribute_proto), else is left out,
 * recursively for calls inside bodies. Refused with one message each: a
 * function that calls itself (directly or through others), a call of a
 * function the model does not define in a domain its functions use, a
 * function that imports another version of the default domain than the
 * model, nesting or node counts past the limits; a function defined twice,
 * in the default (or com.microsoft) domain, or referring to an attribute
 * it does not declare. Before anything is
 * inlined, the nodes the calls would make are counted (each function once,
 * memoised) and the count is held to the file: at most the larger of
 * FN_FLOOR_NODES and FN_PER_FILE_NODE times the nodes the file holds (its
 * graph's and its functions' bodies'), so a file of a few hundred bytes
 * cannot ask for millions of nodes (a function calling the next twice, 20
 * deep). The rest of the importer then sees one flat list of nodes. */
#include <stdio.h>
#include <string.h>

#include "onnx_load_internal.h"

#define FN_MAX_DEPTH 32
#define FN_MAX_NODES ((size_t)1 << 22)
#define FN_FLOOR_NODES ((size_t)1 << 16)
#define FN_PER_FILE_NODE 100

typedef struct fn_ctx {
    const mha_alloc_ctx *a;
    const Onnx__ModelProto *m;
    int64_t opset; /* the model's default-domain opset */
    mha_error *err;
    onnx_inlined *out;
    size_t n_calls;                                 /* numbering the calls */
    const Onnx__FunctionProto *stack[FN_MAX_DEPTH]; /* the calls being expanded */
    int depth;
} fn_ctx;

static mha_status fn_oom(fn_ctx *c) {
    return mha_fail(c->err, MHA_ERR_NO_MEMORY, "out of memory inlining the model's functions");
}

/* *arr (n elements of size bytes) moved into room for cap; 0 on failure. */
static int fn_grow(const mha_alloc_ctx *a, void **arr, size_t n, size_t cap, size_t size) {
    void *p = mha_calloc(a, cap, size);
    if (!p) return 0;
    if (n) memcpy(p, *arr, n * size);
    mha_free(a, *arr);
    *arr = p;
    return 1;
}

/* A zeroed block owned by out (freed with it). */
static void *fn_alloc(fn_ctx *c, size_t size) {
    onnx_inlined *o = c->out;
    if (o->n_blocks == o->cap_blocks) {
        size_t cap = o->cap_blocks ? 2 * o->cap_blocks : 64;
        if (!fn_grow(c->a, (void **)&o->blocks, o->n_blocks, cap, sizeof *o->blocks)) return NULL;
        o->cap_blocks = cap;
    }
    void *p = mha_calloc_small(c->a, 1, size ? size : 1);
    if (p) o->blocks[o->n_blocks++] = p;
    return p;
}

static const char *fn_str(const char *s) {
    return s ? s : "";
}

static int fn_default_domain(const char *d) {
    return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

/* The function a node calls: same domain, name and overload. */
static const Onnx__FunctionProto *fn_find(const fn_ctx *c, const Onnx__NodeProto *np) {
    for (size_t i = 0; i < c->m->n_functions; i++) {
        const Onnx__FunctionProto *f = c->m->functions[i];
        if (strcmp(fn_str(f->name), fn_str(np->op_type)) == 0 &&
            strcmp(fn_str(f->domain), fn_str(np->domain)) == 0 &&
            strcmp(fn_str(f->overload), fn_str(np->overload)) == 0)
            return f;
    }
    return NULL;
}

/* Whether some function of the model lives in domain d. */
static int fn_domain_has_functions(const fn_ctx *c, const char *d) {
    if (fn_default_domain(d) || strcmp(d, "com.microsoft") == 0) return 0;
    for (size_t i = 0; i < c->m->n_functions; i++)
        if (strcmp(fn_str(c->m->functions[i]->domain), d) == 0) return 1;
    return 0;
}

static mha_status fn_push(fn_ctx *c, Onnx__NodeProto *np) {
    onnx_inlined *o = c->out;
    if (o->n >= FN_MAX_NODES)
        return mha_fail(c->err, MHA_ERR_LIMIT,
                        "the model's functions inline to more than %zu nodes", FN_MAX_NODES);
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        if (!fn_grow(c->a, (void **)&o->nodes, o->n, cap, sizeof *o->nodes)) return fn_oom(c);
        o->cap = cap;
    }
    o->nodes[o->n++] = np;
    return MHA_OK;
}

/* One call's renaming: formal names to actual ones, the rest prefixed. */
typedef struct fn_scope {
    const Onnx__FunctionProto *f;
    const Onnx__NodeProto *call; /* the call, already in the caller's names */
    char prefix[160];
} fn_scope;

static const char *fn_prefixed(fn_ctx *c, const fn_scope *s, const char *name) {
    size_t n = strlen(s->prefix) + strlen(name) + 1;
    char *d = fn_alloc(c, n);
    if (d) snprintf(d, n, "%s%s", s->prefix, name);
    return d;
}

static const char *fn_rename(fn_ctx *c, const fn_scope *s, const char *name) {
    if (!*name) return "";
    for (size_t i = 0; i < s->f->n_input; i++)
        if (strcmp(fn_str(s->f->input[i]), name) == 0)
            return i < s->call->n_input ? fn_str(s->call->input[i]) : "";
    for (size_t i = 0; i < s->f->n_output; i++)
        if (strcmp(fn_str(s->f->output[i]), name) == 0)
            return i < s->call->n_output ? fn_str(s->call->output[i]) : "";
    return fn_prefixed(c, s, name);
}

/* The value an attribute referring to `ref` takes in this call: the call's
 * attribute of that name, else the function's default; NULL: left out. */
static const Onnx__AttributeProto *fn_attr_value(const fn_scope *s, const char *ref) {
    for (size_t i = 0; i < s->call->n_attribute; i++)
        if (strcmp(fn_str(s->call->attribute[i]->name), ref) == 0) return s->call->attribute[i];
    for (size_t i = 0; i < s->f->n_attribute_proto; i++)
        if (strcmp(fn_str(s->f->attribute_proto[i]->name), ref) == 0)
            return s->f->attribute_proto[i];
    return NULL;
}

/* A body node in the call's names and attribute values. */
static mha_status fn_instantiate(fn_ctx *c, const fn_scope *s, const Onnx__NodeProto *bp,
                                 Onnx__NodeProto **out) {
    Onnx__NodeProto *np = fn_alloc(c, sizeof *np);
    if (!np) return fn_oom(c);
    onnx__node_proto__init(np);
    np->op_type = (char *)fn_str(bp->op_type);
    np->domain = (char *)fn_str(bp->domain);
    np->overload = (char *)fn_str(bp->overload);
    np->name = (char *)fn_prefixed(c, s, fn_str(bp->name));
    np->input = fn_alloc(c, (bp->n_input ? bp->n_input : 1) * sizeof(char *));
    np->output = fn_alloc(c, (bp->n_output ? bp->n_output : 1) * sizeof(char *));
    np->attribute =
        fn_alloc(c, (bp->n_attribute ? bp->n_attribute : 1) * sizeof(Onnx__AttributeProto *));
    if (!np->name || !np->input || !np->output || !np->attribute) return fn_oom(c);
    for (size_t k = 0; k < bp->n_input; k++)
        if (!(np->input[k] = (char *)fn_rename(c, s, fn_str(bp->input[k])))) return fn_oom(c);
    np->n_input = bp->n_input;
    for (size_t k = 0; k < bp->n_output; k++)
        if (!(np->output[k] = (char *)fn_rename(c, s, fn_str(bp->output[k])))) return fn_oom(c);
    np->n_output = bp->n_output;
    for (size_t k = 0; k < bp->n_attribute; k++) {
        const Onnx__AttributeProto *ap = bp->attribute[k];
        if (!ap->ref_attr_name || !*ap->ref_attr_name) {
            np->attribute[np->n_attribute++] = (Onnx__AttributeProto *)ap;
            continue;
        }
        const Onnx__AttributeProto *v = fn_attr_value(s, ap->ref_attr_name);
        if (!v) continue; /* neither given nor defaulted: the op's own default */
        Onnx__AttributeProto *cp = fn_alloc(c, sizeof *cp);
        if (!cp) return fn_oom(c);
        *cp = *v; /* shallow: the values stay the call's / the default's */
        cp->name = ap->name;
        cp->ref_attr_name = NULL;
        np->attribute[np->n_attribute++] = cp;
    }
    *out = np;
    return MHA_OK;
}

static mha_status fn_expand(fn_ctx *c, Onnx__NodeProto *np);

/* The body of f for the call np (in the caller's names). */
static mha_status fn_inline_call(fn_ctx *c, const Onnx__FunctionProto *f, Onnx__NodeProto *np) {
    for (int d = 0; d < c->depth; d++)
        if (c->stack[d] == f)
            return mha_fail(c->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "function '%s.%s' calls itself (node '%s'): recursive functions are "
                            "not supported",
                            fn_str(f->domain), fn_str(f->name), fn_str(np->name));
    if (c->depth == FN_MAX_DEPTH)
        return mha_fail(c->err, MHA_ERR_LIMIT, "functions nest deeper than %d calls (at '%s.%s')",
                        FN_MAX_DEPTH, fn_str(f->domain), fn_str(f->name));
    for (size_t i = 0; i < f->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *op = f->opset_import[i];
        if (fn_default_domain(op->domain) && op->has_version && op->version != c->opset)
            return mha_fail(c->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "function '%s.%s' imports opset %lld of the default domain, the "
                            "model opset %lld: one opset per model is supported",
                            fn_str(f->domain), fn_str(f->name), (long long)op->version,
                            (long long)c->opset);
    }
    if (np->n_input > f->n_input || np->n_output > f->n_output)
        return mha_fail(c->err, MHA_ERR_MODEL_FORMAT,
                        "node '%s' calls function '%s.%s' with %zu inputs and %zu outputs; it "
                        "has %zu and %zu",
                        fn_str(np->name), fn_str(f->domain), fn_str(f->name), np->n_input,
                        np->n_output, f->n_input, f->n_output);
    fn_scope s = {.f = f, .call = np};
    snprintf(s.prefix, sizeof s.prefix, "%.100s#%zu/", fn_str(f->name), c->n_calls++);
    c->stack[c->depth++] = f;
    mha_status st = MHA_OK;
    for (size_t i = 0; st == MHA_OK && i < f->n_node; i++) {
        Onnx__NodeProto *inst = NULL;
        st = fn_instantiate(c, &s, f->node[i], &inst);
        if (st == MHA_OK) st = fn_expand(c, inst);
    }
    c->depth--;
    return st;
}

/* np itself, or the body of the function it calls. */
static mha_status fn_expand(fn_ctx *c, Onnx__NodeProto *np) {
    const char *dom = fn_str(np->domain);
    if (fn_default_domain(dom) || strcmp(dom, "com.microsoft") == 0) return fn_push(c, np);
    const Onnx__FunctionProto *f = fn_find(c, np);
    if (f) return fn_inline_call(c, f, np);
    if (fn_domain_has_functions(c, dom))
        return mha_fail(c->err, MHA_ERR_MODEL_FORMAT,
                        "node '%s' calls function '%s.%s', which the model does not define",
                        fn_str(np->name), dom, fn_str(np->op_type));
    return fn_push(c, np); /* some other domain: refused later by op */
}

/* The count before inlining: per function, the nodes one call makes
 * (saturating) and the calls it nests (1 for a body of ops alone). */
typedef struct fn_measure {
    size_t nodes;
    int height;
    unsigned char state; /* 0 not seen, 1 being measured, 2 done */
} fn_measure;

static size_t fn_sat_add(size_t a, size_t b) {
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static mha_status fn_measure_call(fn_ctx *c, fn_measure *ms, const Onnx__NodeProto *np, int depth,
                                  size_t *nodes, int *height);

/* The nodes a list of nodes (a body, or the graph) at call depth `depth`
 * inlines to, and its deepest nesting. */
static mha_status fn_measure_nodes(fn_ctx *c, fn_measure *ms, Onnx__NodeProto *const *nodes,
                                   size_t n, int depth, size_t *total, int *height) {
    *total = 0;
    *height = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 1;
        int h = 0;
        mha_status st = fn_measure_call(c, ms, nodes[i], depth, &k, &h);
        if (st != MHA_OK) return st;
        *total = fn_sat_add(*total, k);
        if (h > *height) *height = h;
    }
    return MHA_OK;
}

/* What one node inlines to: itself (1) or its function's count. The
 * recursion and depth refusals are fn_inline_call's, found here first. */
static mha_status fn_measure_call(fn_ctx *c, fn_measure *ms, const Onnx__NodeProto *np, int depth,
                                  size_t *nodes, int *height) {
    const char *dom = fn_str(np->domain);
    const Onnx__FunctionProto *f = NULL;
    if (!fn_default_domain(dom) && strcmp(dom, "com.microsoft") != 0) f = fn_find(c, np);
    if (!f) return MHA_OK; /* an op (or a missing function fn_expand names) */
    size_t fi = 0;
    while (c->m->functions[fi] != f)
        fi++;
    fn_measure *m = &ms[fi];
    if (m->state == 1)
        return mha_fail(c->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "function '%s.%s' calls itself (node '%s'): recursive functions are "
                        "not supported",
                        fn_str(f->domain), fn_str(f->name), fn_str(np->name));
    if (m->state == 0) {
        if (depth == FN_MAX_DEPTH)
            return mha_fail(c->err, MHA_ERR_LIMIT,
                            "functions nest deeper than %d calls (at '%s.%s')", FN_MAX_DEPTH,
                            fn_str(f->domain), fn_str(f->name));
        m->state = 1;
        mha_status st =
            fn_measure_nodes(c, ms, f->node, f->n_node, depth + 1, &m->nodes, &m->height);
        if (st != MHA_OK) return st;
        m->height += 1;
        m->state = 2;
    } else if (depth + m->height > FN_MAX_DEPTH) {
        return mha_fail(c->err, MHA_ERR_LIMIT,
                        "functions nest deeper than %d calls (through '%s.%s')", FN_MAX_DEPTH,
                        fn_str(f->domain), fn_str(f->name));
    }
    *nodes = m->nodes;
    *height = m->height;
    return MHA_OK;
}

/* What ONNX asks of the function list itself: each (domain, name,
 * overload) once; a domain of its own (a function in the default domain
 * or com.microsoft is never called here -- the operator of that name runs
 * -- so it would be ignored in silence); every attribute reference naming
 * an attribute the function declares. */
static mha_status fn_check_list(fn_ctx *c) {
    const Onnx__ModelProto *m = c->m;
    for (size_t i = 0; i < m->n_functions; i++) {
        const Onnx__FunctionProto *f = m->functions[i];
        const char *dom = fn_str(f->domain);
        if (fn_default_domain(dom) || strcmp(dom, "com.microsoft") == 0)
            return mha_fail(c->err, MHA_ERR_MODEL_FORMAT,
                            "function '%s' is defined in the domain '%s' of the operators it "
                            "would shadow; model-local functions need a domain of their own",
                            fn_str(f->name), dom);
        for (size_t j = 0; j < i; j++) {
            const Onnx__FunctionProto *g = m->functions[j];
            if (strcmp(fn_str(g->name), fn_str(f->name)) == 0 &&
                strcmp(fn_str(g->domain), dom) == 0 &&
                strcmp(fn_str(g->overload), fn_str(f->overload)) == 0)
                return mha_fail(c->err, MHA_ERR_MODEL_FORMAT,
                                "function '%s.%s'%s%s is defined twice (functions %zu and %zu)",
                                dom, fn_str(f->name), *fn_str(f->overload) ? " overload " : "",
                                fn_str(f->overload), j, i);
        }
        for (size_t k = 0; k < f->n_node; k++)
            for (size_t a = 0; a < f->node[k]->n_attribute; a++) {
                const char *ref = f->node[k]->attribute[a]->ref_attr_name;
                if (!ref || !*ref) continue;
                int declared = 0;
                for (size_t d = 0; !declared && d < f->n_attribute; d++)
                    declared = strcmp(fn_str(f->attribute[d]), ref) == 0;
                for (size_t d = 0; !declared && d < f->n_attribute_proto; d++)
                    declared = strcmp(fn_str(f->attribute_proto[d]->name), ref) == 0;
                if (!declared)
                    return mha_fail(c->err, MHA_ERR_MODEL_FORMAT,
                                    "function '%s.%s': attribute '%s' of node '%s' refers to "
                                    "'%s', which the function does not declare",
                                    dom, fn_str(f->name), fn_str(f->node[k]->attribute[a]->name),
                                    fn_str(f->node[k]->name), ref);
            }
    }
    return MHA_OK;
}

/* Refuses a model whose calls would inline to more nodes than its file
 * justifies, before any is made. */
static mha_status fn_check_size(fn_ctx *c) {
    const Onnx__ModelProto *m = c->m;
    fn_measure *ms = mha_calloc(c->a, m->n_functions, sizeof *ms);
    if (!ms) return fn_oom(c);
    size_t total = 0;
    int height = 0;
    mha_status st = fn_measure_nodes(c, ms, m->graph->node, m->graph->n_node, 0, &total, &height);
    mha_free(c->a, ms);
    if (st != MHA_OK) return st;
    size_t held = m->graph->n_node;
    for (size_t i = 0; i < m->n_functions; i++)
        held = fn_sat_add(held, m->functions[i]->n_node);
    size_t limit = held > FN_MAX_NODES / FN_PER_FILE_NODE ? FN_MAX_NODES : held * FN_PER_FILE_NODE;
    if (limit < FN_FLOOR_NODES) limit = FN_FLOOR_NODES;
    if (total > limit) {
        if (total == SIZE_MAX)
            return mha_fail(c->err, MHA_ERR_LIMIT,
                            "the model's functions would inline to 2^64 - 1 nodes or more from "
                            "the %zu its file holds (at most %zu: the larger of %zu and %d per "
                            "node of the file, up to %zu)",
                            held, limit, FN_FLOOR_NODES, FN_PER_FILE_NODE, FN_MAX_NODES);
        return mha_fail(c->err, MHA_ERR_LIMIT,
                        "the model's functions would inline to %zu nodes from the %zu its file "
                        "holds (at most %zu: the larger of %zu and %d per node of the file, up "
                        "to %zu)",
                        total, held, limit, FN_FLOOR_NODES, FN_PER_FILE_NODE, FN_MAX_NODES);
    }
    return MHA_OK;
}

mha_status onnx_inline_functions(const mha_alloc_ctx *a, const Onnx__ModelProto *m, int64_t opset,
                                 onnx_inlined *out, mha_error *err) {
    memset(out, 0, sizeof *out);
    fn_ctx c = {.a = a, .m = m, .opset = opset, .err = err, .out = out};
    const Onnx__GraphProto *gp = m->graph;
    mha_status st = fn_check_list(&c);
    if (st == MHA_OK) st = fn_check_size(&c);
    if (st != MHA_OK) return st;
    for (size_t i = 0; st == MHA_OK && i < gp->n_node; i++)
        st = fn_expand(&c, gp->node[i]);
    if (st != MHA_OK) onnx_inlined_free(a, out);
    return st;
}

void onnx_inlined_free(const mha_alloc_ctx *a, onnx_inlined *in) {
    for (size_t i = 0; i < in->n_blocks; i++)
        mha_free(a, in->blocks[i]);
    mha_free(a, in->blocks);
    mha_free(a, in->nodes);
    memset(in, 0, sizeof *in);
}
