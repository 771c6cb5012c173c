/* wake_slice.c -- how long a woken thread waits for a core that a
 * computing thread holds, with the kernel's default time slice and with a
 * short one asked for before it sleeps (what run_slots.c does for a caller
 * asleep in the line: RUN_SLOTS_WAIT_SLICE_US). A program, not a test.
 *
 * Both threads on one CPU (--cpu): the computing thread spins, posts the
 * sleeping thread's semaphore at a random moment of each spin and spins on
 * (as a slot's thread posts a handed run's answer and computes the next
 * run); the woken thread notes when it runs. Rounds alternate default and
 * short; printed: the wake-up latency's p50, p90, p99 and max of each.
 *
 * Usage: wake_slice [--cpu N] [--rounds N] [--slice-us US]
 * Exit: 0 done, 1 a failure (sched_setattr refused: no custom slices). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define WS_MAX 4000

typedef struct ws_attr { /* the kernel's struct sched_attr, first version */
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} ws_attr;

typedef struct ws {
    sem_t go, ready, posted, noted;
    atomic_int stop;
    int cpu, short_slice;
    uint64_t slice_ns;
    double posted_at, woke_at;
    int failed;
} ws;

static double ws_now(void) {
    return bench_clock(CLOCK_MONOTONIC);
}

static void ws_pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *ws_sleeper(void *p) {
    ws *w = p;
    ws_pin(w->cpu);
    ws_attr saved = {.size = sizeof saved};
    if (syscall(SYS_sched_getattr, 0, &saved, sizeof saved, 0) != 0) w->failed = 1;
    while (!atomic_load(&w->stop)) {
        sem_wait(&w->go); /* the spinner is about to spin */
        if (atomic_load(&w->stop)) break;
        if (w->short_slice) {
            ws_attr a = saved;
            a.runtime = w->slice_ns;
            if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) w->failed = 1;
        }
        sem_post(&w->ready);
        sem_wait(&w->posted);
        w->woke_at = ws_now();
        if (w->short_slice) (void)syscall(SYS_sched_setattr, 0, &saved, 0);
        sem_post(&w->noted);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int cpu = 1, rounds = 10;
    double slice_us = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cpu"))
            cpu = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--slice-us"))
            slice_us = atof(argv[i + 1]);
    }
    static ws w;
    w.cpu = cpu;
    w.slice_ns = (uint64_t)(slice_us * 1e3);
    sem_init(&w.go, 0, 0);
    sem_init(&w.posted, 0, 0);
    sem_init(&w.ready, 0, 0);
    sem_init(&w.noted, 0, 0);
    atomic_init(&w.stop, 0);
    ws_pin(cpu);
    pthread_t t;
    if (pthread_create(&t, NULL, ws_sleeper, &w) != 0) return 1;
    static double lat[2][WS_MAX];
    int n[2] = {0, 0};
    uint64_t rng = 88172645463325252ull;
    const int per_round = 100;
    for (int r = 0; r < 2 * rounds; r++) {
        const int s = r % 2;
        w.short_slice = s;
        for (int k = 0; k < per_round && n[s] < WS_MAX; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const double spin = 2e-3 + 3e-3 * (double)(rng >> 11) / 9007199254740992.0;
            const double post_after = spin * 0.2 + spin * 0.6 * (double)(rng & 1023) / 1024.0;
            /* the sleeper goes to sleep on `posted` while this thread
             * sleeps too (0.2 ms after it said so) */
            sem_post(&w.go);
            sem_wait(&w.ready);
            const struct timespec pause = {0, 200000};
            nanosleep(&pause, NULL);
            const double t0 = ws_now();
            int posted = 0;
            while (ws_now() - t0 < spin) {
                if (!posted && ws_now() - t0 >= post_after) {
                    w.posted_at = ws_now();
                    sem_post(&w.posted);
                    posted = 1;
                }
            }
            if (!posted) { /* this thread was preempted past the spin */
                w.posted_at = ws_now();
                sem_post(&w.posted);
            }
            sem_wait(&w.noted); /* the sleeper noted its wake-up */
            if (posted) lat[s][n[s]++] = 1e3 * (w.woke_at - w.posted_at);
        }
    }
    atomic_store(&w.stop, 1);
    sem_post(&w.go);
    pthread_join(t, NULL);
    if (w.failed) {
        fprintf(stderr, "wake_slice: sched_getattr / sched_setattr refused\n");
        return 1;
    }
    printf("wake_slice: a thread posted while the poster spins on CPU %d; wake-up latency, ms\n",
           cpu);
    printf("%-24s %6s %8s %8s %8s %8s\n", "slice", "n", "p50", "p90", "p99", "max");
    for (int s = 0; s < 2; s++) {
        qsort(lat[s], (size_t)n[s], sizeof(double), bench_cmp_double);
        char name[32];
        snprintf(name, sizeof name, s ? "short (%.0f us)" : "default", slice_us);
        printf("%-24s %6d %8.3f %8.3f %8.3f %8.3f\n", name, n[s], lat[s][n[s] / 2],
               lat[s][(int)(0.9 * n[s])], lat[s][(int)(0.99 * n[s])], lat[s][n[s] - 1]);
    }
    return 0;
}
