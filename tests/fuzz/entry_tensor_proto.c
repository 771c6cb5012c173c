/* entry_tensor_proto.c -- fuzz entry for one serialized TensorProto (the
 * ONNX test-data .pb format): bytes -> ir_load_tensor_proto. A refused
 * input must give a clean status; a loaded tensor must be consistent
 * (shape, byte size, bools 0/1), must convert to float32 when it is a float
 * type, and must come back unchanged from ir_save_tensor_proto -> load. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_entry.h"
#include "onnx_ir.h"
#include "tensorfile.h"

static void check_loaded(const tensor *t, const char *what) {
    FUZZ_CHECK(t->rank >= 0 && t->rank <= MHA_MAX_RANK, "%s: rank %d", what, t->rank);
    size_t esize = mha_dtype_size(t->dtype);
    FUZZ_CHECK(esize > 0, "%s: dtype %d", what, (int)t->dtype);
    int64_t numel = 1;
    for (int i = 0; i < t->rank; i++) {
        FUZZ_CHECK(t->dims[i] >= 0, "%s: negative dim", what);
        FUZZ_CHECK(!__builtin_mul_overflow(numel, t->dims[i], &numel), "%s: overflow", what);
    }
    FUZZ_CHECK((uint64_t)numel * esize == t->nbytes, "%s: %zu bytes for %lld x %zu", what,
               t->nbytes, (long long)numel, esize);
    FUZZ_CHECK(t->nbytes == 0 || t->data, "%s: no data", what);
    if (t->dtype == MHA_DTYPE_BOOL)
        for (size_t i = 0; i < t->nbytes; i++)
            FUZZ_CHECK(((const uint8_t *)t->data)[i] <= 1, "%s: bool byte %zu", what, i);
}

int fuzz_tensor_proto_one(const uint8_t *data, size_t size) {
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    tensor *t = (tensor *)&a; /* must be overwritten */
    char *name = (char *)&a;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ir_load_tensor_proto(&a, data, size, "fuzz.pb", &t, &name, &err);
    fuzz_note("ir_load_tensor_proto", st, &err);
    if (st != MHA_OK) {
        fuzz_check_error("ir_load_tensor_proto", st, &err);
        FUZZ_CHECK(t == NULL && name == NULL, "a failed load left a tensor or a name");
        FUZZ_CHECK(strstr(err.message, "fuzz.pb") != NULL, "message does not name the file: %s",
                   err.message);
        FUZZ_CHECK(st != MHA_ERR_MODEL_FORMAT, "a test-data file reported as a model: %s",
                   err.message);
        return 0;
    }
    FUZZ_CHECK(t != NULL && name != NULL, "loaded without a tensor or a name");
    check_loaded(t, "loaded tensor");

    /* the conversion a run would apply to a float input */
    size_t n = t->nbytes / mha_dtype_size(t->dtype);
    if (tensorfile_can_convert(t->dtype, MHA_DTYPE_FLOAT32) && n <= ((size_t)1 << 22)) {
        float *f = malloc(n ? n * sizeof *f : 1);
        FUZZ_CHECK(f, "malloc");
        tensorfile_convert(t->data, t->dtype, f, MHA_DTYPE_FLOAT32, n);
        free(f);
    }

    /* round trip */
    void *buf = NULL;
    size_t bytes = 0;
    st = ir_save_tensor_proto(&a, t, name, &buf, &bytes, &err);
    if (st != MHA_OK) {
        /* only a tensor too big for one protobuf field may be refused */
        FUZZ_CHECK(st == MHA_ERR_LIMIT, "ir_save_tensor_proto: %s", err.message);
    } else {
        tensor *back = NULL;
        char *back_name = NULL;
        st = ir_load_tensor_proto(&a, buf, bytes, "round trip", &back, &back_name, &err);
        FUZZ_CHECK(st == MHA_OK, "a saved tensor does not load again: %s", err.message);
        FUZZ_CHECK(back->dtype == t->dtype && back->rank == t->rank &&
                       memcmp(back->dims, t->dims, sizeof(int64_t) * (size_t)t->rank) == 0 &&
                       back->nbytes == t->nbytes,
                   "round trip changed the header");
        FUZZ_CHECK(t->nbytes == 0 || memcmp(back->data, t->data, t->nbytes) == 0,
                   "round trip changed the data");
        FUZZ_CHECK(strcmp(back_name, name) == 0, "round trip changed the name");
        tensor_free(back);
        mha_free(&a, back_name);
        mha_free(&a, buf);
    }
    tensor_free(t);
    mha_free(&a, name);
    return 0;
}
