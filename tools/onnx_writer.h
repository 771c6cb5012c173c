/* onnx_writer.h -- ONNX files written by `mha gen`: a ModelProto built as a
 * tree of protobuf messages and serialised in one pass into one buffer of
 * the file's size.
 *
 * The command's own encoder of the protobuf wire format (varints, 32-bit
 * floats, length-delimited fields) with the field numbers of onnx.proto;
 * it needs nothing of the library, which only reads ONNX. Large tensors are
 * not held while the graph is built: a weight is a seeded random stream
 * that is drawn straight into the output buffer when the file is written,
 * so writing BERT-base needs the file's size in memory, not twice that.
 *
 * Every allocation comes from the writer's arena; a failed one is
 * remembered (ow_failed) and makes the later calls do nothing, so a
 * builder checks once at the end. Not thread-safe; one writer per file. */
#ifndef MHA_ONNX_WRITER_H
#define MHA_ONNX_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ow_writer ow_writer;
typedef struct ow_msg ow_msg; /* one protobuf message of the tree */

/* ONNX element types (TensorProto.DataType) the generator writes. */
enum { OW_FLOAT = 1, OW_INT64 = 7, OW_BOOL = 9 };

/* A new model: ir_version, opset of the default domain (plus com.microsoft
 * version 1 when ms_opset), producer "mha gen" at `version`, and the graph
 * named `name`. NULL when out of memory. */
ow_writer *ow_create(int64_t ir_version, int64_t opset, int ms_opset, const char *version,
                     const char *name);
void ow_free(ow_writer *w); /* accepts NULL */
/* 1 once an allocation failed (nothing more is added). */
int ow_failed(const ow_writer *w);
/* The serialised ModelProto into a fresh malloc'd buffer (*size bytes);
 * NULL when out of memory. */
uint8_t *ow_serialize(ow_writer *w, size_t *size);

/* A copy of s kept until ow_free (names built with snprintf). */
const char *ow_str(ow_writer *w, const char *s);
/* ow_str of a printf format. */
const char *ow_fmt(ow_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Graph inputs and outputs: a tensor of elem_type with rank dims, each a
 * fixed size (>= 0) or, when negative, the symbolic axis names[i]. */
void ow_input(ow_writer *w, const char *name, int elem_type, int rank, const int64_t *dims,
              const char *const *names);
void ow_output(ow_writer *w, const char *name, int elem_type, int rank, const int64_t *dims,
               const char *const *names);

/* Initializers. ow_random: float32 of shape dims, U(-scale, scale) +
 * offset, drawn from a copy of *seed taken now (and *seed advanced past
 * the values, so later tensors draw the values after them), generated
 * only when the file is written. */
void ow_random(ow_writer *w, const char *name, int rank, const int64_t *dims, float scale,
               float offset, uint64_t *seed);
/* float32 [n] (or a scalar when n == 0) with the given values, copied. */
void ow_floats(ow_writer *w, const char *name, const float *v, size_t n);
/* int64 [n] (or a scalar when n == 0) with the given values, copied. */
void ow_ints(ow_writer *w, const char *name, const int64_t *v, size_t n);

/* A node op(inputs...) -> outputs (NULL-terminated lists; "" is an
 * omitted optional input). Attributes follow on the returned node. */
ow_msg *ow_node(ow_writer *w, const char *op, const char *name, const char *const *inputs,
                const char *const *outputs);
void ow_domain(ow_msg *node, const char *domain);
void ow_attr_int(ow_msg *node, const char *name, int64_t v);
void ow_attr_float(ow_msg *node, const char *name, float v);
void ow_attr_ints(ow_msg *node, const char *name, const int64_t *v, size_t n);

#endif
