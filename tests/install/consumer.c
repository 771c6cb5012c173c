/* consumer.c -- a program outside the project that uses an installed
 * libmha through its public header only: lists the plugins the runtime
 * found, loads a model, runs it on zeros and prints the output checksum.
 * Usage: consumer MODEL.onnx [BACKEND] */
#include <mha/mha.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: consumer MODEL.onnx [BACKEND]\n");
        return 2;
    }
    mha_error err;
    mha_error_clear(&err);
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.num_threads = 2;
    ro.backend = argc > 2 ? argv[2] : NULL;
    mha_runtime *rt = NULL;
    mha_model *model = NULL;
    int rc = 1;
    if (mha_runtime_create(&ro, &rt, &err) != MHA_OK) goto fail;
    printf("libmha %s, backend %s\n", mha_version_string(), mha_runtime_backend(rt));
    for (size_t i = 0; i < mha_runtime_plugin_count(rt); i++) {
        mha_plugin_info pi;
        if (mha_runtime_plugin(rt, i, &pi) == MHA_OK)
            printf("plugin %s usable=%d score=%d\n", pi.name ? pi.name : "?", pi.usable, pi.score);
    }
    if (mha_model_load_file(argv[1], NULL, &model, &err) != MHA_OK) goto fail;

    /* One input per graph input, each of its declared shape with dynamic
     * dimensions set to 2; masks all ones. */
    mha_model_info info;
    mha_model_get_info(model, &info);
    mha_tensor in[8], out[8];
    size_t nin = info.num_inputs, nout = info.num_outputs;
    if (nin > 8 || nout > 8) goto fail;
    for (size_t i = 0; i < nin; i++) {
        mha_io_info io;
        mha_model_input(model, i, &io);
        in[i].dtype = io.dtype;
        in[i].rank = io.rank;
        for (int d = 0; d < io.rank; d++)
            in[i].shape[d] = io.shape[d] < 0 ? 2 : io.shape[d];
        int64_t n = mha_tensor_numel(&in[i]);
        in[i].data = calloc((size_t)n, mha_dtype_size(io.dtype));
        if (io.dtype == MHA_DTYPE_BOOL)
            for (int64_t k = 0; k < n; k++)
                ((unsigned char *)in[i].data)[k] = 1;
    }
    if (mha_model_output_shapes(model, in, nin, out, nout, &err) != MHA_OK) goto fail;
    for (size_t i = 0; i < nout; i++)
        out[i].data = calloc((size_t)mha_tensor_numel(&out[i]), mha_dtype_size(out[i].dtype));
    if (mha_run(rt, model, in, nin, out, nout, NULL, &err) != MHA_OK) goto fail;
    double sum = 0;
    for (int64_t k = 0; k < mha_tensor_numel(&out[0]); k++)
        sum += ((float *)out[0].data)[k];
    printf("ran %s: output checksum %.6f\n", argv[1], sum);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "consumer: %s: %s\n", mha_status_name(err.status), err.message);
    mha_model_free(model);
    mha_runtime_destroy(rt);
    return rc;
}
