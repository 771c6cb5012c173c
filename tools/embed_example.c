/* embed_example.c -- how a program embeds libmha: one model and one runtime
 * shared by several request threads, each with its own tensors and its own
 * mha_error. It uses nothing but <mha/mha.h>.
 *
 *   mha_embed_example MODEL.onnx [CLIENT_THREADS [REQUESTS_PER_THREAD]]
 *
 * Every request runs the model on the same seeded inputs, so every answer
 * must be bitwise equal to the first one: libmha guarantees that whatever
 * the thread count and however concurrent runs share the runtime's pool.
 * Prints one summary line. Exit 0: all answers agreed; 1: a failure;
 * 2: bad usage. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mha/mha.h>

#define MAX_TENSORS 8
#define DYNAMIC_DIM 4 /* the size used for dimensions the model leaves open */

/* The tensors of one request; the caller owns every buffer. */
typedef struct request {
    mha_tensor in[MAX_TENSORS], out[MAX_TENSORS];
    size_t n_in, n_out;
} request;

/* What the request threads share: both objects are safe to share. */
typedef struct server {
    mha_runtime *rt;  /* thread-safe */
    mha_model *model; /* immutable */
    request reference;
} server;

typedef struct client {
    server *srv;
    int requests, failed, mismatched;
    char first_error[MHA_ERROR_MESSAGE_MAX];
    pthread_t thread;
} client;

static void request_free(request *r) {
    for (size_t i = 0; i < r->n_in; i++)
        free(r->in[i].data);
    for (size_t i = 0; i < r->n_out; i++)
        free(r->out[i].data);
    memset(r, 0, sizeof *r);
}

/* Inputs shaped as the model declares them (open dimensions = DYNAMIC_DIM):
 * floats from a fixed sequence, masks that let every key through. */
static mha_status request_make(const mha_model *m, request *r, mha_error *err) {
    mha_model_info info;
    memset(r, 0, sizeof *r);
    mha_model_get_info(m, &info);
    if (info.num_inputs > MAX_TENSORS || info.num_outputs > MAX_TENSORS) {
        snprintf(err->message, sizeof err->message, "too many inputs or outputs");
        return err->status = MHA_ERR_LIMIT;
    }
    uint32_t seed = 12345;
    for (size_t i = 0; i < info.num_inputs; i++, r->n_in++) {
        mha_io_info io;
        mha_model_input(m, i, &io);
        mha_tensor *t = &r->in[i];
        t->dtype = io.dtype;
        t->rank = io.rank;
        for (int d = 0; d < io.rank; d++)
            t->shape[d] = io.shape[d] < 0 ? DYNAMIC_DIM : io.shape[d];
        int64_t n = mha_tensor_numel(t);
        t->data = calloc((size_t)(n > 0 ? n : 1), mha_dtype_size(io.dtype));
        if (!t->data) {
            request_free(r);
            snprintf(err->message, sizeof err->message, "out of memory");
            return err->status = MHA_ERR_NO_MEMORY;
        }
        if (io.dtype == MHA_DTYPE_FLOAT32) {
            float *x = t->data;
            for (int64_t k = 0; k < n; k++) {
                seed = seed * 1664525u + 1013904223u;
                x[k] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
            }
        } else if (io.dtype == MHA_DTYPE_BOOL) {
            int ignore = io.role == MHA_ROLE_KEY_PADDING_MASK && info.key_padding_true_means_ignore;
            memset(t->data, ignore ? 0 : 1, (size_t)n);
        }
    }
    /* the library says how large the outputs are; we allocate them */
    r->n_out = info.num_outputs;
    mha_status st = mha_model_output_shapes(m, r->in, r->n_in, r->out, r->n_out, err);
    for (size_t i = 0; st == MHA_OK && i < r->n_out; i++) {
        int64_t n = mha_tensor_numel(&r->out[i]);
        r->out[i].data = malloc((size_t)(n > 0 ? n : 1) * mha_dtype_size(r->out[i].dtype));
        if (!r->out[i].data) st = MHA_ERR_NO_MEMORY;
    }
    if (st != MHA_OK) request_free(r);
    return st;
}

static int outputs_equal(const request *a, const request *b) {
    for (size_t i = 0; i < a->n_out; i++) {
        size_t bytes = (size_t)mha_tensor_numel(&a->out[i]) * mha_dtype_size(a->out[i].dtype);
        if (memcmp(a->out[i].data, b->out[i].data, bytes) != 0) return 0;
    }
    return 1;
}

static void *client_main(void *arg) {
    client *c = arg;
    mha_error err; /* one per thread */
    request r;
    if (request_make(c->srv->model, &r, &err) != MHA_OK) {
        c->failed = c->requests;
        snprintf(c->first_error, sizeof c->first_error, "%s", err.message);
        return NULL;
    }
    for (int i = 0; i < c->requests; i++) {
        if (mha_run(c->srv->rt, c->srv->model, r.in, r.n_in, r.out, r.n_out, NULL, &err) !=
            MHA_OK) {
            if (!c->failed++) snprintf(c->first_error, sizeof c->first_error, "%s", err.message);
            continue;
        }
        if (!outputs_equal(&r, &c->srv->reference)) c->mismatched++;
    }
    request_free(&r);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s MODEL.onnx [CLIENT_THREADS [REQUESTS_PER_THREAD]]\n", argv[0]);
        return 2;
    }
    int n_clients = argc > 2 ? atoi(argv[2]) : 4;
    int requests = argc > 3 ? atoi(argv[3]) : 100;
    if (n_clients < 1 || n_clients > 64 || requests < 1) {
        fprintf(stderr, "%s: CLIENT_THREADS must be 1..64 and REQUESTS_PER_THREAD >= 1\n", argv[0]);
        return 2;
    }

    /* 1. the model and the runtime: once, shared by every request */
    server srv = {0};
    mha_error err;
    if (mha_model_load_file(argv[1], NULL, &srv.model, &err) != MHA_OK ||
        mha_runtime_create(NULL, &srv.rt, &err) != MHA_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
        mha_model_free(srv.model);
        return 1;
    }

    /* 2. the reference answer */
    int rc = 1;
    client clients[64];
    if (request_make(srv.model, &srv.reference, &err) != MHA_OK ||
        mha_run(srv.rt, srv.model, srv.reference.in, srv.reference.n_in, srv.reference.out,
                srv.reference.n_out, NULL, &err) != MHA_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
        goto done;
    }

    /* 3. the request threads, all at once on the same runtime and model */
    for (int i = 0; i < n_clients; i++) {
        clients[i] = (client){.srv = &srv, .requests = requests};
        pthread_create(&clients[i].thread, NULL, client_main, &clients[i]);
    }
    int failed = 0, mismatched = 0;
    for (int i = 0; i < n_clients; i++) {
        pthread_join(clients[i].thread, NULL);
        failed += clients[i].failed;
        mismatched += clients[i].mismatched;
        if (clients[i].failed)
            fprintf(stderr, "%s: client %d: %s\n", argv[0], i, clients[i].first_error);
    }
    printf("%d requests on %d client threads (backend %s, %d threads per run): %d failed, "
           "%d differed from the reference\n",
           n_clients * requests, n_clients, mha_runtime_backend(srv.rt),
           mha_runtime_num_threads(srv.rt), failed, mismatched);
    rc = failed || mismatched ? 1 : 0;

done:
    request_free(&srv.reference);
    mha_runtime_destroy(srv.rt);
    mha_model_free(srv.model);
    return rc;
}
