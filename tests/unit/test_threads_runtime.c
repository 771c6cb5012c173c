/* test_threads_runtime.c -- one runtime and one model shared by many
 * threads (runs under TSan, label "threads"): 16 threads x many runs with
 * mixed shapes, every result bitwise equal to a single-threaded run; 1,000
 * create/destroy cycles (100 under ASan, whose LeakSanitizer reports a leak
 * of any one); cancellation in the middle of a batch; a forked child gets
 * MHA_ERR_FORKED and destroys the runtime without hanging; the allocator
 * and logger hooks. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model.h"
#include "run_slots.h"

#define N_THREADS 16
#define N_SHAPES 24

static const char *model_path(const char *name) {
    static char buf[2][1024];
    static int slot;
    char *p = buf[slot++ & 1];
    snprintf(p, 1024, "%s/conformance/%s/model.onnx", MHA_TEST_DATA, name);
    return p;
}

static mha_model *load_model(const char *name) {
    mha_model *m = NULL;
    mha_error err = {0};
    if (mha_model_load_file(model_path(name), NULL, &m, &err) != MHA_OK)
        fail_msg("%s: %s", name, err.message);
    return m;
}

static mha_runtime *runtime_new(int threads) {
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.num_threads = threads;
    mha_runtime *rt = NULL;
    mha_error err = {0};
    if (mha_runtime_create(&o, &rt, &err) != MHA_OK) fail_msg("runtime: %s", err.message);
    return rt;
}

/* ------------------------------------------------------------------------ */
/* Inputs of one shape for the cross + padding-mask model:
 *   query [B, Sq, 32], memory [B, Skv, 32], key_padding_mask bool
 *   [B, 1, Sq, Skv] (True = attend; the first key always attended). */
/* ------------------------------------------------------------------------ */

typedef struct shape_case {
    int64_t B, Sq, Skv;
    float *query, *memory;
    uint8_t *mask;
    mha_tensor in[3];
    mha_tensor out;
    float *expect; /* the single-threaded result */
    size_t n_out;
} shape_case;

static void shape_make(shape_case *s, int idx) {
    uint64_t r = 1000 + (uint64_t)idx;
    s->B = 1 + (int64_t)(tu_rand_u64(&r) % 3);
    s->Sq = 1 + (int64_t)(tu_rand_u64(&r) % 12);
    s->Skv = 1 + (int64_t)(tu_rand_u64(&r) % 12);
    size_t nq = (size_t)(s->B * s->Sq * 32), nkv = (size_t)(s->B * s->Skv * 32);
    size_t nm = (size_t)(s->B * s->Sq * s->Skv);
    s->query = malloc(nq * sizeof(float));
    s->memory = malloc(nkv * sizeof(float));
    s->mask = malloc(nm);
    tu_fill_random(s->query, nq, r + 1);
    tu_fill_random(s->memory, nkv, r + 2);
    for (size_t i = 0; i < nm; i++)
        s->mask[i] = (uint8_t)(i % (size_t)s->Skv == 0 || tu_rand_u64(&r) % 4 != 0);
    s->in[0] = (mha_tensor){MHA_DTYPE_FLOAT32, 3, {s->B, s->Sq, 32}, s->query};
    s->in[1] = (mha_tensor){MHA_DTYPE_FLOAT32, 3, {s->B, s->Skv, 32}, s->memory};
    s->in[2] = (mha_tensor){MHA_DTYPE_BOOL, 4, {s->B, 1, s->Sq, s->Skv}, s->mask};
    s->out = (mha_tensor){MHA_DTYPE_FLOAT32, 3, {s->B, s->Sq, 32}, NULL};
    s->n_out = (size_t)(s->B * s->Sq * 32);
    s->expect = malloc(s->n_out * sizeof(float));
}

static void shape_free(shape_case *s) {
    free(s->query);
    free(s->memory);
    free(s->mask);
    free(s->expect);
}

typedef struct worker_arg {
    mha_runtime *rt;
    mha_model *m;
    shape_case *shapes;
    int runs;
    int seed;
    int mismatches;
    int failures;
    char first_error[MHA_ERROR_MESSAGE_MAX];
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *w = p;
    uint64_t r = (uint64_t)w->seed;
    float *y = malloc(32 * 12 * 3 * sizeof(float));
    mha_error err = {0}; /* one per thread */
    for (int i = 0; i < w->runs; i++) {
        shape_case *s = &w->shapes[tu_rand_u64(&r) % N_SHAPES];
        mha_tensor out = s->out;
        out.data = y;
        mha_run_options ro;
        mha_run_options_init(&ro);
        ro.num_threads = (int)(tu_rand_u64(&r) % 4); /* 0 = all */
        if (mha_run(w->rt, w->m, s->in, 3, &out, 1, &ro, &err) != MHA_OK) {
            if (!w->failures++) memcpy(w->first_error, err.message, sizeof err.message);
            continue;
        }
        if (memcmp(y, s->expect, s->n_out * sizeof(float)) != 0) w->mismatches++;
    }
    free(y);
    return NULL;
}

static void test_many_threads_one_runtime(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new(4);
    mha_model *m = load_model("mha_cross_padmask_d32_h4_b2_q6_kv9");
    static shape_case shapes[N_SHAPES];
    for (int i = 0; i < N_SHAPES; i++)
        shape_make(&shapes[i], i);

    /* 16 threads start together on a fresh model: the weights are packed
     * once, whoever comes first */
    int runs = 200;
    const char *env = getenv("MHA_TEST_RUNS_PER_THREAD");
    if (env && atoi(env) > 0) runs = atoi(env);

    /* the single-threaded results: the oracle */
    mha_runtime *rt1 = runtime_new(1);
    for (int i = 0; i < N_SHAPES; i++) {
        mha_tensor out = shapes[i].out;
        out.data = shapes[i].expect;
        mha_error err = {0};
        if (mha_run(rt1, m, shapes[i].in, 3, &out, 1, NULL, &err) != MHA_OK)
            fail_msg("single-threaded run: %s", err.message);
    }
    mha_runtime_destroy(rt1);
    mha_model_free(m);
    m = load_model("mha_cross_padmask_d32_h4_b2_q6_kv9");

    worker_arg args[N_THREADS];
    pthread_t th[N_THREADS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N_THREADS; i++) {
        args[i] = (worker_arg){.rt = rt, .m = m, .shapes = shapes, .runs = runs, .seed = 7 + i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &args[i]), 0);
    }
    int mismatches = 0, failures = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        mismatches += args[i].mismatches;
        failures += args[i].failures;
        if (args[i].failures) fprintf(stderr, "thread %d: %s\n", i, args[i].first_error);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "%d threads x %d runs: %.2f s\n", N_THREADS, runs,
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    assert_int_equal(failures, 0);
    assert_int_equal(mismatches, 0);
    assert_int_equal(model_pack_count(m), 1);
    for (int i = 0; i < N_SHAPES; i++)
        shape_free(&shapes[i]);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* A short self-attention request (B 1, S 32, 8 heads: W2's form) on two
 * threads runs its Q|K|V head by head in two column pieces and the
 * attention in the same phase, each head's unit starting once its piece
 * is done, or computing the piece itself when nobody took it yet (the
 * helper busy with another caller). Every result is bitwise the
 * single-threaded one: one caller at a time, three callers sharing the
 * two threads, and a runtime of three threads (no merged phase). */
typedef struct short_arg {
    mha_runtime *rt;
    mha_model *m;
    const mha_tensor *in;
    const float *expect;
    int runs, mismatches, failures;
} short_arg;

static void *short_main(void *p) {
    short_arg *a = p;
    float y[32 * 256];
    for (int i = 0; i < a->runs; i++) {
        mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {1, 32, 256}, y};
        mha_error err = {0};
        if (mha_run(a->rt, a->m, a->in, 1, &out, 1, NULL, &err) != MHA_OK)
            a->failures++;
        else if (memcmp(y, a->expect, sizeof y) != 0)
            a->mismatches++;
    }
    return NULL;
}

static void test_short_self_attention_threads(void **state) {
    (void)state;
    mha_model *m = load_model("mha_self_d256_h8_b1_s32");
    static float x[32 * 256], expect[32 * 256];
    tu_fill_random(x, 32 * 256, 77);
    const mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {1, 32, 256}, x};
    mha_runtime *rt1 = runtime_new(1);
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {1, 32, 256}, expect};
    mha_error err = {0};
    if (mha_run(rt1, m, &in, 1, &out, 1, NULL, &err) != MHA_OK) fail_msg("%s", err.message);
    mha_runtime_destroy(rt1);
    for (int threads = 2; threads <= 3; threads++) {
        mha_runtime *rt = runtime_new(threads);
        short_arg one = {.rt = rt, .m = m, .in = &in, .expect = expect, .runs = 200};
        short_main(&one);
        assert_int_equal(one.failures, 0);
        assert_int_equal(one.mismatches, 0);
        short_arg many[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++) {
            many[i] = one;
            many[i].runs = 50;
            assert_int_equal(pthread_create(&th[i], NULL, short_main, &many[i]), 0);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(many[i].failures, 0);
            assert_int_equal(many[i].mismatches, 0);
        }
        mha_runtime_destroy(rt);
    }
    mha_model_free(m);
}

/* 1,000 cycles in release (threads or descriptors leaked by a cycle pile
 * up); under ASan 100: its LeakSanitizer reports what any one cycle leaks,
 * and a cycle there cost 11 ms (the pool's threads made and joined: 11 of
 * the suite's 11.4 s, quiet). */
#ifdef TEST_UNDER_ASAN
#define CREATE_DESTROY_CYCLES 100
#else
#define CREATE_DESTROY_CYCLES 1000
#endif

static void test_create_destroy_cycles(void **state) {
    (void)state;
    for (int i = 0; i < CREATE_DESTROY_CYCLES; i++) {
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.num_threads = 1 + i % 4;
        o.backend = "scalar";
        mha_runtime *rt = NULL;
        mha_error err = {0};
        if (mha_runtime_create(&o, &rt, &err) != MHA_OK) fail_msg("cycle %d: %s", i, err.message);
        mha_runtime_destroy(rt);
    }
}

/* ------------------------------------------------------------------------ */
/* Cancellation                                                              */
/* ------------------------------------------------------------------------ */

typedef struct cancel_state {
    atomic_int polls;
    int cancel_at;
    atomic_int polls_after_yes;
} cancel_state;

static int cancel_cb(void *user) {
    cancel_state *c = user;
    int n = atomic_fetch_add(&c->polls, 1) + 1;
    if (n > c->cancel_at) atomic_fetch_add(&c->polls_after_yes, 1);
    return n >= c->cancel_at;
}

static void test_cancel_mid_batch(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new(3);
    mha_model *m = load_model("mha_causal_d16_h2_b4_s64");
    const int64_t B = 48, S = 64, D = 16;
    size_t n = (size_t)(B * S * D);
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    tu_fill_random(x, n, 5);
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {B, S, D}, x};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {B, S, D}, y};

    /* How often the caller polls depends on how many units the workers
     * took from it (pool.h): a run that ends before the at-th poll is
     * complete and says so; one that saw the "yes" stops there. The first
     * poll comes before any unit, so at = 1 always cancels. */
    for (int at = 1; at <= 4; at++) {
        cancel_state c;
        atomic_init(&c.polls, 0);
        atomic_init(&c.polls_after_yes, 0);
        c.cancel_at = at;
        mha_run_options ro;
        mha_run_options_init(&ro);
        ro.cancel = cancel_cb;
        ro.cancel_user = &c;
        mha_error err = {0};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        mha_status st = mha_run(rt, m, &in, 1, &out, 1, &ro, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (at == 1 || st != MHA_OK) {
            assert_int_equal(st, MHA_ERR_CANCELLED);
            assert_int_equal(err.status, MHA_ERR_CANCELLED);
            /* the run stopped at the first "yes": no poll after it */
            assert_int_equal(atomic_load(&c.polls), at);
        } else {
            assert_true(atomic_load(&c.polls) < at);
        }
        assert_int_equal(atomic_load(&c.polls_after_yes), 0);
        assert_true(s < 5.0);
    }
    /* the runtime is fine afterwards */
    mha_error err = {0};
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, NULL, &err), MHA_OK);
    free(x);
    free(y);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* ------------------------------------------------------------------------ */
/* Fork                                                                      */
/* ------------------------------------------------------------------------ */

static void test_forked_child(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new(4);
    mha_model *m = load_model("mha_self_d16_h1_b1_s1");
    float x[16], y[16];
    tu_fill_random(x, 16, 3);
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {1, 1, 16}, x};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {1, 1, 16}, y};
    mha_error err = {0};
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, NULL, &err), MHA_OK);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang in the child ends it with SIGALRM: a failure */
        mha_error cerr = {0};
        int ok = mha_run(rt, m, &in, 1, &out, 1, NULL, &cerr) == MHA_ERR_FORKED &&
                 cerr.status == MHA_ERR_FORKED && strstr(cerr.message, "fork") != NULL;
        mha_runtime_destroy(rt); /* must not wait for the parent's workers */
        mha_model_free(m);
        /* a runtime created in the child works (one thread: TSan cannot
         * follow new threads after a multi-threaded fork) */
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.num_threads = 1;
        o.backend = "scalar";
        mha_runtime *rt2 = NULL;
        mha_model *m2 = NULL;
        if (ok && mha_runtime_create(&o, &rt2, &cerr) == MHA_OK &&
            mha_model_load_file(model_path("mha_self_d16_h1_b1_s1"), NULL, &m2, &cerr) == MHA_OK)
            ok = mha_run(rt2, m2, &in, 1, &out, 1, NULL, &cerr) == MHA_OK;
        else
            ok = 0;
        mha_model_free(m2);
        mha_runtime_destroy(rt2);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    /* the parent's runtime still runs */
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, NULL, &err), MHA_OK);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* ------------------------------------------------------------------------ */
/* Hooks                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct counting_alloc {
    atomic_long live, total;
} counting_alloc;

static void *count_alloc(void *user, size_t size, size_t align) {
    counting_alloc *c = user;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) != 0) return NULL;
    atomic_fetch_add(&c->live, 1);
    atomic_fetch_add(&c->total, 1);
    return p;
}

static void count_free(void *user, void *p) {
    counting_alloc *c = user;
    if (!p) return;
    atomic_fetch_sub(&c->live, 1);
    free(p);
}

typedef struct log_capture {
    pthread_mutex_t lock;
    int n;
    int saw_backend;
} log_capture;

static void capture_log(void *user, mha_log_level level, const char *msg) {
    log_capture *l = user;
    pthread_mutex_lock(&l->lock);
    l->n++;
    if (level == MHA_LOG_INFO && strstr(msg, "backend")) l->saw_backend = 1;
    pthread_mutex_unlock(&l->lock);
}

static void test_allocator_and_logger(void **state) {
    (void)state;
    counting_alloc c;
    atomic_init(&c.live, 0);
    atomic_init(&c.total, 0);
    mha_allocator a = {count_alloc, count_free, &c};
    log_capture l = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.num_threads = 3;
    o.allocator = &a;
    o.log = capture_log;
    o.log_user = &l;
    o.log_level = MHA_LOG_DEBUG;
    mha_runtime *rt = NULL;
    mha_error err = {0};
    assert_int_equal(mha_runtime_create(&o, &rt, &err), MHA_OK);
    assert_true(l.saw_backend);
    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.allocator = &a;
    mha_model *m = NULL;
    assert_int_equal(mha_model_load_file(model_path("mha_causal_d16_h2_b4_s64"), &mo, &m, &err),
                     MHA_OK);
    float x[2 * 9 * 16], y[2 * 9 * 16];
    tu_fill_random(x, sizeof x / sizeof x[0], 9);
    mha_tensor in = {MHA_DTYPE_FLOAT32, 3, {2, 9, 16}, x};
    mha_tensor out = {MHA_DTYPE_FLOAT32, 3, {2, 9, 16}, y};
    long before = atomic_load(&c.total);
    assert_int_equal(mha_run(rt, m, &in, 1, &out, 1, NULL, &err), MHA_OK);
    assert_true(atomic_load(&c.total) > before); /* intermediates came from the hook */
    mha_model_free(m);
    mha_runtime_destroy(rt);
    assert_int_equal(atomic_load(&c.live), 0);
}

/* ------------------------------------------------------------------------ */
/* Runs beyond the cores are handed to the threads computing (run_slots.h):
 * every slot of a 1-thread runtime is held by a run whose cancel callback
 * (called only on its caller's thread) waits for a gate; 6 more callers
 * queue. Once the gate opens, each holder computes the oldest waiting run
 * itself on the core it holds (no wake-up of another thread to compute it)
 * and leaves its slot free after RUN_SLOTS_HANDED_MAX of them (a waiting
 * caller told of it takes it); every waiting run is computed exactly once,
 * and every result is bitwise what the run gives alone. */
/* ------------------------------------------------------------------------ */

#define HAND_QUEUED 6

static void hand_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct hand_case {
    mha_runtime *rt;
    mha_model *m;
    shape_case *shape;
    atomic_int *gate;    /* 0: holders wait in their cancel callback */
    atomic_int *holding; /* holders inside their run */
    pthread_t self;
    atomic_int wrong_thread; /* the cancel callback ran on another thread */
    int hold;                /* a holder: polls the gate */
    int polled;
    mha_status st;
    int mismatch;
} hand_case;

static int hand_cancel(void *user) {
    hand_case *c = user;
    if (!pthread_equal(pthread_self(), c->self)) atomic_store(&c->wrong_thread, 1);
    if (c->hold && !c->polled++) {
        atomic_fetch_add(c->holding, 1);
        while (!atomic_load(c->gate))
            hand_sleep_ms(1);
    }
    return 0;
}

static void *hand_main(void *p) {
    hand_case *c = p;
    c->self = pthread_self();
    float y[12 * 3 * 32];
    mha_tensor out = c->shape->out;
    out.data = y;
    mha_run_options ro;
    mha_run_options_init(&ro);
    if (c->hold) {
        ro.cancel = hand_cancel;
        ro.cancel_user = c;
    }
    mha_error err = {0};
    c->st = mha_run(c->rt, c->m, c->shape->in, 3, &out, 1, &ro, &err);
    c->mismatch = c->st == MHA_OK && memcmp(y, c->shape->expect, c->shape->n_out * sizeof(float));
    return NULL;
}

static void test_runs_handed_to_busy_cores(void **state) {
    (void)state;
    mha_runtime *rt = runtime_new(1);
    mha_model *m = load_model("mha_cross_padmask_d32_h4_b2_q6_kv9");
    static shape_case shape;
    shape_make(&shape, 3);
    mha_tensor out = shape.out;
    out.data = shape.expect;
    mha_error err = {0};
    assert_int_equal(mha_run(rt, m, shape.in, 3, &out, 1, NULL, &err), MHA_OK);

    run_slots_counts c0;
    runtime_run_slots_count(rt, &c0);
    const int slots = c0.slots; /* max(1, online CPUs) */
    assert_true(slots >= 1 && slots <= 256);
    const int n = slots + HAND_QUEUED;
    hand_case *cs = calloc((size_t)n, sizeof *cs);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    atomic_int gate = 0, holding = 0;
    for (int i = 0; i < n; i++) {
        cs[i] = (hand_case){.rt = rt,
                            .m = m,
                            .shape = &shape,
                            .gate = &gate,
                            .holding = &holding,
                            .hold = i < slots};
        atomic_init(&cs[i].wrong_thread, 0);
    }
    for (int i = 0; i < slots; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hand_main, &cs[i]), 0);
    while (atomic_load(&holding) < slots)
        hand_sleep_ms(1);
    for (int i = slots; i < n; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hand_main, &cs[i]), 0);
    run_slots_counts c1;
    do {
        hand_sleep_ms(1);
        runtime_run_slots_count(rt, &c1);
    } while (c1.waiting < HAND_QUEUED);
    assert_int_equal(c1.computing, slots);
    atomic_store(&gate, 1);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);

    run_slots_counts c2;
    runtime_run_slots_count(rt, &c2);
    const unsigned long handed = c2.handed - c0.handed, passed = c2.passed - c0.passed;
    fprintf(stderr,
            "%d slots, %d queued: %lu computed by a thread already computing, %lu "
            "slots passed on, %lu left free\n",
            slots, HAND_QUEUED, handed, passed, c2.freed - c0.freed);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cs[i].st, MHA_OK);
        assert_int_equal(cs[i].mismatch, 0);
        assert_int_equal(atomic_load(&cs[i].wrong_thread), 0);
    }
    /* each holder computed one waiting run on its core before it left it
     * free (at the pool's door none was: each caller was woken to compute
     * its own); no slot is passed to a run without a cancel callback */
    const unsigned long most = slots < HAND_QUEUED ? (unsigned long)slots : HAND_QUEUED;
    assert_true(handed >= most);
    assert_true(handed <= HAND_QUEUED);
    assert_int_equal(passed, 0);
    assert_int_equal(c2.computing, 0);
    assert_int_equal(c2.waiting, 0);
    free(cs);
    free(th);
    shape_free(&shape);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* ------------------------------------------------------------------------ */
/* A slot left free goes to the first caller that comes (run_slots.h): one
 * slot; A holds it (its run waits for a gate), B and C wait in line. C's
 * thread is then held in a signal handler, so it cannot wake. Once the gate
 * opens, A computes its run and B's, and leaves the slot free (C is told);
 * A's thread comes back with a second run at once, takes the free slot and
 * computes C's run (the oldest) and its own, while C's thread is still
 * held: no core waits for a woken caller. Before, the slot was passed to C
 * and A's second run waited until C's thread ran (here: until the handler
 * is let go, which the test does only after the check). */
/* ------------------------------------------------------------------------ */

typedef struct free_slot_run {
    atomic_int *gate; /* non-NULL: wait until it is 1 */
    pthread_t by;     /* the thread that computed it */
    atomic_int done;
} free_slot_run;

static mha_status free_slot_fn(void *ctx, mha_error *err) {
    (void)err;
    free_slot_run *r = ctx;
    while (r->gate && !atomic_load(r->gate))
        hand_sleep_ms(1);
    r->by = pthread_self();
    atomic_store(&r->done, 1);
    return MHA_OK;
}

typedef struct free_slot_caller {
    run_slots *slots;
    free_slot_run *first, *second; /* second may be NULL */
    mha_status st1, st2;
} free_slot_caller;

static void *free_slot_main(void *p) {
    free_slot_caller *c = p;
    mha_error err = {0};
    c->st1 = run_slots_run(c->slots, free_slot_fn, c->first, 0, &err);
    if (c->second) c->st2 = run_slots_run(c->slots, free_slot_fn, c->second, 0, &err);
    return NULL;
}

static atomic_int free_slot_in_handler, free_slot_release;

static void free_slot_hold(int sig) {
    (void)sig;
    const int saved = errno;
    atomic_store(&free_slot_in_handler, 1);
    while (!atomic_load(&free_slot_release)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    errno = saved;
}

static void wait_line(run_slots *s, int waiting) {
    run_slots_counts c;
    do {
        hand_sleep_ms(1);
        run_slots_count(s, &c);
    } while (c.waiting < waiting);
}

static void test_free_slot_taken_by_returning_caller(void **state) {
    (void)state;
    run_slots s;
    run_slots_init(&s, NULL, 1);
    atomic_int gate = 0;
    free_slot_run a1 = {.gate = &gate}, a2 = {0}, b = {0}, c = {0};
    atomic_init(&a1.done, 0);
    atomic_init(&a2.done, 0);
    atomic_init(&b.done, 0);
    atomic_init(&c.done, 0);
    free_slot_caller ca = {&s, &a1, &a2, MHA_ERR_INTERNAL, MHA_ERR_INTERNAL};
    free_slot_caller cb = {&s, &b, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cc = {&s, &c, NULL, MHA_ERR_INTERNAL, MHA_OK};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = free_slot_hold;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR2, &sa, &old), 0);
    atomic_store(&free_slot_in_handler, 0);
    atomic_store(&free_slot_release, 0);

    pthread_t ta, tb, tc;
    assert_int_equal(pthread_create(&ta, NULL, free_slot_main, &ca), 0);
    run_slots_counts k;
    do {
        hand_sleep_ms(1);
        run_slots_count(&s, &k);
    } while (k.computing < 1);
    assert_int_equal(pthread_create(&tb, NULL, free_slot_main, &cb), 0);
    wait_line(&s, 1);
    assert_int_equal(pthread_create(&tc, NULL, free_slot_main, &cc), 0);
    wait_line(&s, 2);
    assert_int_equal(pthread_kill(tc, SIGUSR2), 0);
    while (!atomic_load(&free_slot_in_handler))
        hand_sleep_ms(1);
    atomic_store(&gate, 1);
    /* A's second run finishes while C's thread is held (10 s at most) */
    for (int i = 0; i < 10000 && !atomic_load(&a2.done); i++)
        hand_sleep_ms(1);
    const int a2_done = atomic_load(&a2.done), c_done = atomic_load(&c.done);
    atomic_store(&free_slot_release, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    assert_int_equal(sigaction(SIGUSR2, &old, NULL), 0);
    run_slots_count(&s, &k);
    fprintf(stderr, "free slot: A's second run %s, C's run %s while C's thread was held\n",
            a2_done ? "done" : "not done", c_done ? "done" : "not done");
    assert_true(a2_done);
    assert_true(c_done);
    assert_true(pthread_equal(b.by, ta));
    assert_true(pthread_equal(c.by, ta));
    assert_true(pthread_equal(a2.by, ta));
    assert_int_equal(ca.st1, MHA_OK);
    assert_int_equal(ca.st2, MHA_OK);
    assert_int_equal(cb.st1, MHA_OK);
    assert_int_equal(cc.st1, MHA_OK);
    assert_int_equal(k.handed, 2);
    assert_int_equal(k.passed, 0);
    assert_int_equal(k.freed, 1);
    assert_int_equal(k.computing, 0);
    assert_int_equal(k.waiting, 0);
    run_slots_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* A slot left free while another slot computes is not announced at once
 * (run_slots.h): two slots, A and B hold them (their runs wait for gates),
 * C and D wait in line. Once A's gate opens, A computes its run and C's and
 * leaves its slot free with D waiting and B still computing; A's thread
 * comes back with a second run, takes the slot and computes D's run and its
 * own. No waiting caller was woken to take the slot (before, D was told,
 * and woke to find the slot taken or took it and left A's run waiting),
 * and D's thread woke only for its answer. */
/* ------------------------------------------------------------------------ */

static void start_caller(pthread_t *t, free_slot_caller *c, run_slots *s, int computing,
                         int waiting) {
    assert_int_equal(pthread_create(t, NULL, free_slot_main, c), 0);
    run_slots_counts k;
    do {
        hand_sleep_ms(1);
        run_slots_count(s, &k);
    } while (k.computing < computing || k.waiting < waiting);
}

static void wait_done(free_slot_run *r) {
    for (int i = 0; i < 10000 && !atomic_load(&r->done); i++) /* 10 s at most */
        hand_sleep_ms(1);
}

/* every run over: no slot taken, nobody in line; then s is destroyed */
static void slots_idle_destroy(run_slots *s) {
    run_slots_counts k;
    run_slots_count(s, &k);
    assert_int_equal(k.computing, 0);
    assert_int_equal(k.waiting, 0);
    run_slots_destroy(s);
}

static void test_free_slot_kept_for_returning_caller(void **state) {
    (void)state;
    run_slots s;
    run_slots_init(&s, NULL, 2);
    s.tell_late_ms = 1e9; /* every run counts as brief, however the test is scheduled */
    atomic_int gate_a = 0, gate_b = 0;
    free_slot_run a1 = {.gate = &gate_a}, a2 = {0}, b = {.gate = &gate_b}, c = {0}, d = {0};
    free_slot_run *runs[] = {&a1, &a2, &b, &c, &d};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        atomic_init(&runs[i]->done, 0);
    free_slot_caller ca = {&s, &a1, &a2, MHA_ERR_INTERNAL, MHA_ERR_INTERNAL};
    free_slot_caller cb = {&s, &b, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cc = {&s, &c, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cd = {&s, &d, NULL, MHA_ERR_INTERNAL, MHA_OK};
    pthread_t ta, tb, tc, td;
    start_caller(&ta, &ca, &s, 1, 0);
    start_caller(&tb, &cb, &s, 2, 0);
    start_caller(&tc, &cc, &s, 2, 1);
    start_caller(&td, &cd, &s, 2, 2);
    atomic_store(&gate_a, 1);
    wait_done(&a2);
    run_slots_counts k;
    run_slots_count(&s, &k);
    const int a2_done = atomic_load(&a2.done), b_done = atomic_load(&b.done);
    fprintf(stderr,
            "kept slot: A's second run %s with B's run %s; %lu waiting callers told of a free "
            "slot, %lu woken for nothing\n",
            a2_done ? "done" : "not done", b_done ? "done" : "not done", k.told, k.futile);
    atomic_store(&gate_b, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    pthread_join(td, NULL);
    assert_true(a2_done);
    assert_false(b_done);
    assert_int_equal(k.told, 0);
    assert_int_equal(k.futile, 0);
    assert_true(pthread_equal(c.by, ta));
    assert_true(pthread_equal(d.by, ta));
    assert_true(pthread_equal(a2.by, ta));
    assert_int_equal(ca.st1, MHA_OK);
    assert_int_equal(ca.st2, MHA_OK);
    assert_int_equal(cb.st1, MHA_OK);
    assert_int_equal(cc.st1, MHA_OK);
    assert_int_equal(cd.st1, MHA_OK);
    slots_idle_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* A slot left free untold is announced once another slot's run ends (no
 * run waits behind a free core for long): two slots held by A and B (gated
 * runs), C, D and E wait. A computes its run and C's and leaves, not to
 * come back: the slot is free, nobody told. B's gate opens: B computes its
 * run and takes D's (which waits for a gate of its own); E still waits with
 * the slot free, so E is told now, takes the slot and computes its run
 * while D's is held. Without the announcement E would wait for D's gate. */
/* ------------------------------------------------------------------------ */

static void test_free_slot_told_when_not_taken(void **state) {
    (void)state;
    run_slots s;
    run_slots_init(&s, NULL, 2);
    s.tell_late_ms = 1e9;
    atomic_int gate_a = 0, gate_b = 0, gate_d = 0;
    free_slot_run a = {.gate = &gate_a}, b = {.gate = &gate_b}, c = {0}, d = {.gate = &gate_d},
                  e = {0};
    free_slot_run *runs[] = {&a, &b, &c, &d, &e};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        atomic_init(&runs[i]->done, 0);
    free_slot_caller ca = {&s, &a, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cb = {&s, &b, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cc = {&s, &c, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cd = {&s, &d, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller ce = {&s, &e, NULL, MHA_ERR_INTERNAL, MHA_OK};
    pthread_t ta, tb, tc, td, te;
    start_caller(&ta, &ca, &s, 1, 0);
    start_caller(&tb, &cb, &s, 2, 0);
    start_caller(&tc, &cc, &s, 2, 1);
    start_caller(&td, &cd, &s, 2, 2);
    start_caller(&te, &ce, &s, 2, 3);
    atomic_store(&gate_a, 1);
    pthread_join(ta, NULL);
    run_slots_counts k1;
    run_slots_count(&s, &k1);
    atomic_store(&gate_b, 1);
    wait_done(&e);
    run_slots_counts k2;
    run_slots_count(&s, &k2);
    const int e_done = atomic_load(&e.done), d_done = atomic_load(&d.done);
    fprintf(stderr,
            "slot left untold: %lu told after A left (%d waiting); after B's run E's run %s "
            "with D's %s, %lu told, %lu woken for nothing\n",
            k1.told, k1.waiting, e_done ? "done" : "not done", d_done ? "done" : "not done",
            k2.told, k2.futile);
    atomic_store(&gate_d, 1);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    pthread_join(td, NULL);
    pthread_join(te, NULL);
    assert_int_equal(k1.told, 0);
    assert_int_equal(k1.computing, 1);
    assert_int_equal(k1.waiting, 2);
    assert_true(pthread_equal(c.by, ta));
    assert_true(e_done);
    assert_false(d_done);
    assert_int_equal(k2.told, 1);
    assert_int_equal(k2.futile, 0);
    assert_true(pthread_equal(d.by, tb));
    assert_true(pthread_equal(e.by, te));
    assert_int_equal(cd.st1, MHA_OK);
    assert_int_equal(ce.st1, MHA_OK);
    slots_idle_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* An open loop's thread returns at once after its own run (run_slots.h:
 * RUN_SLOTS_CLOSED_GAP_US): two slots; A's thread computes a run, sleeps
 * 20 ms (a server's client between requests) and comes back with a gated
 * run a2; B holds the other slot (gated); C waits in line. A's gate opens:
 * A computes a2 and returns without computing C's run, and C is told at
 * once, takes the free slot and computes its own run while B's gate is
 * still shut. Before, A computed C's run too (C's run done by A's thread,
 * A's answer a run later); leaving without the tell, C would wait for
 * B's run. The closed loop is test_free_slot_kept_for_returning_caller. */
/* ------------------------------------------------------------------------ */

typedef struct open_loop_caller {
    free_slot_caller c;
    atomic_int second; /* about to call its second run */
    atomic_int returned;
} open_loop_caller;

static void *open_loop_main(void *p) {
    open_loop_caller *o = p;
    mha_error err = {0};
    o->c.st1 = run_slots_run(o->c.slots, free_slot_fn, o->c.first, 0, &err);
    hand_sleep_ms(20);
    atomic_store(&o->second, 1);
    o->c.st2 = run_slots_run(o->c.slots, free_slot_fn, o->c.second, 0, &err);
    atomic_store(&o->returned, 1);
    return NULL;
}

static void test_open_loop_returns_at_once(void **state) {
    (void)state;
    run_slots s;
    run_slots_init(&s, NULL, 2);
    s.tell_late_ms = 1e9; /* every run counts as brief: only the open loop tells */
    atomic_int gate_a = 0, gate_b = 0;
    free_slot_run a1 = {0}, a2 = {.gate = &gate_a}, b = {.gate = &gate_b}, c = {0};
    free_slot_run *runs[] = {&a1, &a2, &b, &c};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        atomic_init(&runs[i]->done, 0);
    open_loop_caller oa = {.c = {&s, &a1, &a2, MHA_ERR_INTERNAL, MHA_ERR_INTERNAL}};
    atomic_init(&oa.second, 0);
    atomic_init(&oa.returned, 0);
    free_slot_caller cb = {&s, &b, NULL, MHA_ERR_INTERNAL, MHA_OK};
    free_slot_caller cc = {&s, &c, NULL, MHA_ERR_INTERNAL, MHA_OK};
    pthread_t ta, tb, tc;
    assert_int_equal(pthread_create(&ta, NULL, open_loop_main, &oa), 0);
    while (!atomic_load(&oa.second))
        hand_sleep_ms(1);
    run_slots_counts k;
    do { /* a2 holds a slot */
        hand_sleep_ms(1);
        run_slots_count(&s, &k);
    } while (k.computing < 1);
    start_caller(&tb, &cb, &s, 2, 0);
    start_caller(&tc, &cc, &s, 2, 1);
    atomic_store(&gate_a, 1);
    wait_done(&c);
    for (int i = 0; i < 10000 && !atomic_load(&oa.returned); i++) /* 10 s at most */
        hand_sleep_ms(1);
    run_slots_count(&s, &k);
    const int c_done = atomic_load(&c.done), a_returned = atomic_load(&oa.returned),
              b_done = atomic_load(&b.done);
    const int c_by_own = c_done && pthread_equal(c.by, tc);
    fprintf(stderr, "open loop: A %s; C's run %s%s with B's run %s; %lu told, %lu left at once\n",
            a_returned ? "returned" : "did not return", c_done ? "done" : "not done",
            c_done ? (c_by_own ? " by its own thread" : " by another thread") : "",
            b_done ? "done" : "not done", k.told, k.opened);
    atomic_store(&gate_b, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    assert_true(a_returned);
    assert_true(c_done);
    assert_true(c_by_own);
    assert_false(b_done);
    assert_int_equal(k.told, 1);
    assert_int_equal(k.opened, 1);
    assert_true(pthread_equal(a2.by, ta));
    assert_int_equal(oa.c.st1, MHA_OK);
    assert_int_equal(oa.c.st2, MHA_OK);
    assert_int_equal(cb.st1, MHA_OK);
    assert_int_equal(cc.st1, MHA_OK);
    slots_idle_destroy(&s);
}

/* ------------------------------------------------------------------------ */
/* A caller whose run another thread computes has a short time slice while
 * it waits (run_slots.h: RUN_SLOTS_WAIT_SLICE_US), so the wake-up that
 * brings its answer preempts that thread, which computes on; it gets its
 * own slice back before it returns. A caller merely in the line (it may be
 * told of a slot and compute) keeps its own. One slot held by A (a gated
 * run), B waits in line: B's thread's slice, read from outside
 * (sched_getattr of its thread id), is its own; A's gate opens, A computes
 * its run and then B's (held by a gate of its own): B's slice is the short
 * one; after its run it is what it was. Without the short slice B waits
 * with the kernel's default (1.4 ms on 2 CPUs) and the test fails. Skipped
 * where the kernel grants no custom slice to a SCHED_OTHER thread (not
 * Linux, before 6.12: its sched_getattr
 * reports no runtime) or refuses to set one (a seccomp filter). */
/* ------------------------------------------------------------------------ */

static uint64_t slice_of(long tid) {
    run_slots_sched_attr a = {.size = sizeof a};
    if (syscall(SYS_sched_getattr, (pid_t)tid, &a, sizeof a, 0) != 0) return 0;
    return a.policy == 0 ? a.runtime : 0;
}

/* 1 if this thread may set itself a slice (a seccomp filter may refuse) */
static int slice_settable(uint64_t slice) {
    run_slots_sched_attr a = {.size = sizeof a};
    if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0) return 0;
    run_slots_sched_attr b = a;
    b.flags = 0;
    b.runtime = slice;
    if (syscall(SYS_sched_setattr, 0, &b, 0) != 0) return 0;
    a.flags = 0;
    return syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

typedef struct slice_caller {
    run_slots *slots;
    free_slot_run *run;
    atomic_long tid;
    uint64_t before, after;
    mha_status st;
} slice_caller;

static void *slice_main(void *p) {
    slice_caller *c = p;
    const long tid = syscall(SYS_gettid);
    c->before = slice_of(tid);
    atomic_store(&c->tid, tid);
    mha_error err = {0};
    c->st = run_slots_run(c->slots, free_slot_fn, c->run, 0, &err);
    c->after = slice_of(tid);
    return NULL;
}

static void test_waiting_caller_short_slice(void **state) {
    (void)state;
    const uint64_t mine = slice_of(syscall(SYS_gettid));
    const uint64_t slice = (uint64_t)RUN_SLOTS_WAIT_SLICE_US * 1000u;
    if (mine <= slice || !slice_settable(slice)) {
        fprintf(stderr, "short slice: the kernel grants no custom slice (%llu ns): skipped\n",
                (unsigned long long)mine);
        skip();
    }
    run_slots s;
    run_slots_init(&s, NULL, 1);
    atomic_int gate_a = 0, gate_b = 0;
    free_slot_run a = {.gate = &gate_a}, b = {.gate = &gate_b};
    atomic_init(&a.done, 0);
    atomic_init(&b.done, 0);
    free_slot_caller ca = {&s, &a, NULL, MHA_ERR_INTERNAL, MHA_OK};
    slice_caller cb = {.slots = &s, .run = &b, .st = MHA_ERR_INTERNAL};
    atomic_init(&cb.tid, 0);
    pthread_t ta, tb;
    start_caller(&ta, &ca, &s, 1, 0);
    assert_int_equal(pthread_create(&tb, NULL, slice_main, &cb), 0);
    wait_line(&s, 1);
    hand_sleep_ms(20); /* B asleep in the line */
    const uint64_t in_line = slice_of(atomic_load(&cb.tid));
    atomic_store(&gate_a, 1);
    /* A takes B's run after its own (5 s at most) */
    uint64_t claimed = 0;
    for (int i = 0; i < 5000 && claimed != slice; i++) {
        claimed = slice_of(atomic_load(&cb.tid));
        if (claimed != slice) hand_sleep_ms(1);
    }
    atomic_store(&gate_b, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    fprintf(stderr,
            "short slice: B's thread %llu ns before, %llu in line, %llu while A computes its "
            "run, %llu after\n",
            (unsigned long long)cb.before, (unsigned long long)in_line, (unsigned long long)claimed,
            (unsigned long long)cb.after);
    assert_int_equal(in_line, cb.before);
    assert_int_equal(claimed, slice);
    assert_int_equal(cb.after, cb.before);
    assert_true(pthread_equal(b.by, ta));
    assert_int_equal(ca.st1, MHA_OK);
    assert_int_equal(cb.st, MHA_OK);
    run_slots_destroy(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_one_runtime),
        cmocka_unit_test(test_short_self_attention_threads),
        cmocka_unit_test(test_create_destroy_cycles),
        cmocka_unit_test(test_cancel_mid_batch),
        cmocka_unit_test(test_forked_child),
        cmocka_unit_test(test_allocator_and_logger),
        cmocka_unit_test(test_runs_handed_to_busy_cores),
        cmocka_unit_test(test_free_slot_taken_by_returning_caller),
        cmocka_unit_test(test_free_slot_kept_for_returning_caller),
        cmocka_unit_test(test_free_slot_told_when_not_taken),
        cmocka_unit_test(test_open_loop_returns_at_once),
        cmocka_unit_test(test_waiting_caller_short_slice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
