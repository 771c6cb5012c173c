/* onnx_ir.h -- an ONNX model as the engine sees it after parsing: values,
 * nodes in topological order, initializers loaded and checked. Built from
 * protobuf-c's ModelProto by onnx_load.c; everything downstream (the
 * reference interpreter, the layer recogniser) reads only this. */
#ifndef MHA_ONNX_IR_H
#define MHA_ONNX_IR_H

#include "common.h"
#include "tensor.h"

typedef enum ir_attr_type {
    IR_ATTR_FLOAT = 1,
    IR_ATTR_INT = 2,
    IR_ATTR_STRING = 3,
    IR_ATTR_TENSOR = 4,
    IR_ATTR_FLOATS = 6,
    IR_ATTR_INTS = 7,
    IR_ATTR_STRINGS = 8
} ir_attr_type;

typedef struct ir_attr {
    char *name;
    ir_attr_type type;
    float f;
    int64_t i;
    char *s;       /* STRING (NUL-terminated copy) */
    float *floats; /* FLOATS */
    int64_t *ints; /* INTS */
    size_t n;      /* count for FLOATS / INTS / STRINGS */
    char **strings;
    tensor *t; /* TENSOR, loaded through the one tensor loader */
} ir_attr;

typedef struct ir_node {
    char *name; /* may be "" */
    char *op_type;
    char *domain; /* "" for the default ONNX domain */
    int *inputs;  /* value ids; -1 for an omitted optional input ("") */
    size_t n_inputs;
    int *outputs; /* value ids; -1 for an omitted optional output */
    size_t n_outputs;
    ir_attr *attrs;
    size_t n_attrs;
    int index; /* position of the node in the file (its NodeProto
                  order, before sorting), for "Add node #12" */
} ir_node;

/* Static type info of a value from graph inputs/outputs/value_info. dims[i]
 * is -1 when dynamic (dim_param or missing). rank -1 = unknown. */
typedef struct ir_value {
    char *name;
    int producer;    /* node index, or -1 (graph input / initializer) */
    int graph_input; /* index among ir_graph.inputs, or -1 */
    tensor *init;    /* initializer data, or NULL */
    mha_dtype dtype; /* UNDEFINED when not declared */
    int rank;
    int64_t dims[MHA_MAX_RANK];
    char *dim_params[MHA_MAX_RANK]; /* symbolic names, or NULL */
} ir_value;

typedef struct ir_graph {
    mha_alloc_ctx alloc;
    ir_value *values;
    size_t n_values;
    ir_node *nodes; /* topologically sorted (cycles are refused at load) */
    size_t n_nodes;
    int *inputs; /* value ids of graph inputs that are not initializers */
    size_t n_inputs;
    int *outputs; /* value ids of graph outputs */
    size_t n_outputs;
    /* the element type each graph output declares (an mha_dtype), or
     * MHA_DTYPE_UNDEFINED when it declares none mha reads */
    mha_dtype *output_declared;
    int64_t opset;        /* default-domain opset version */
    int64_t ms_opset;     /* com.microsoft opset version, 0 if not imported */
    char *path;           /* the model file, "" when loaded from memory; for messages */
    uint64_t external_id; /* the external data files read (onnx_load_ctx.external_id) */
} ir_graph;

typedef struct ir_load_options {
    uint64_t max_file_bytes; /* 0 = 4 GiB */
    int max_nesting_depth;   /* 0 = 64 */
} ir_load_options;

/* Parses, checks every tensor (one loader: dtype, dims >= 0, checked
 * products, data length, external data inside base_dir only), builds value
 * ids and sorts nodes (refusing cycles and undefined inputs).
 * Errors carry the file name (or "<memory>") and the tensor / node name. */
mha_status ir_load_file(const mha_alloc_ctx *alloc, const char *path, const ir_load_options *opts,
                        ir_graph **out, mha_error *err);
mha_status ir_load_memory(const mha_alloc_ctx *alloc, const void *data, size_t size,
                          const char *base_dir, const ir_load_options *opts, ir_graph **out,
                          mha_error *err);
void ir_free(ir_graph *g);

/* Parses one serialized TensorProto (the ONNX test-data .pb format) through
 * the same tensor loader. base_dir NULL: external data refused.
 * `name_out` (optional) receives a copy of the tensor's name (mha_free it). */
mha_status ir_load_tensor_proto(const mha_alloc_ctx *alloc, const void *data, size_t size,
                                const char *what, tensor **out, char **name_out, mha_error *err);
/* Serializes a tensor as a TensorProto (raw_data) into a malloc'd buffer. */
mha_status ir_save_tensor_proto(const mha_alloc_ctx *alloc, const tensor *t, const char *name,
                                void **data, size_t *size, mha_error *err);

/* Attribute lookup by name; NULL when absent. */
const ir_attr *ir_node_attr(const ir_node *n, const char *name);
int64_t ir_attr_int(const ir_node *n, const char *name, int64_t dflt);
float ir_attr_float(const ir_node *n, const char *name, float dflt);
/* The node's input value id k, or -1 if k >= n_inputs. */
int ir_node_input(const ir_node *n, size_t k);
/* "Add 'node_name'" for messages (static buffer is NOT used: writes to buf). */
const char *ir_node_desc(const ir_node *n, char *buf, size_t size);

#endif
