/*
 * membw.c — the machine's sustained memory read bandwidth, the ceiling of LLM decode speed.
 *
 * Decoding one token reads every weight once, so decode tok/s can never exceed
 * bandwidth / bytes-read-per-token (the "roofline" in benchmarks/README.md). This measures that
 * bandwidth the way decode uses memory: T threads, each streaming through its own contiguous
 * slice of a buffer far larger than the last-level cache, with wide loads and no writes.
 *
 * Built on the machine it measures (run_bench.py compiles it with -O3 -march=native into the bench
 * cache): unlike edgert's kernels it is never shipped, so native code is the point here.
 *
 * Usage: membw [MiB=1024] [threads=2] [runs=9]
 * Prints one JSON object: {"mib":..., "threads":..., "runs_gbps":[...], "median_gbps":...}.
 * GB/s are 1e9 bytes per second.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *p;
    size_t n;               /* uint64 elements in this thread's slice */
    uint64_t sum;           /* kept so the compiler cannot drop the loads */
    pthread_barrier_t *start;
} slice;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Eight independent accumulators so the loop is load-bound, not add-latency-bound; -O3 turns it
 * into 256/512-bit vector loads. */
static uint64_t read_slice(const uint64_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += p[i + 0]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    for (; i < n; i++) a0 += p[i];
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

static void *worker(void *arg) {
    slice *s = (slice *)arg;
    pthread_barrier_wait(s->start);
    s->sum = read_slice(s->p, s->n);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int runs = argc > 3 ? atoi(argv[3]) : 9;
    if (threads < 1 || threads > 256 || runs < 1 || mib < 1) {
        fprintf(stderr, "usage: membw [MiB>=1] [threads 1..256] [runs>=1]\n");
        return 2;
    }
    size_t bytes = mib << 20, n = bytes / sizeof(uint64_t);
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, bytes) != 0) {
        fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = i;  /* touch every page: no page faults while timed */

    double *gbps = calloc((size_t)runs, sizeof(double));
    pthread_t *tid = calloc((size_t)threads, sizeof(pthread_t));
    slice *sl = calloc((size_t)threads, sizeof(slice));
    uint64_t check = 0;
    for (int r = 0; r < runs + 1; r++) {  /* run 0 is a warm-up */
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
        size_t per = n / (size_t)threads;
        for (int t = 0; t < threads; t++) {
            sl[t].p = buf + (size_t)t * per;
            sl[t].n = t == threads - 1 ? n - (size_t)t * per : per;
            sl[t].start = &start;
            pthread_create(&tid[t], NULL, worker, &sl[t]);
        }
        double t0 = now_s();
        pthread_barrier_wait(&start);
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        double dt = now_s() - t0;
        pthread_barrier_destroy(&start);
        for (int t = 0; t < threads; t++) check += sl[t].sum;
        if (r > 0) gbps[r - 1] = (double)bytes / dt / 1e9;
    }
    printf("{\"mib\": %zu, \"threads\": %d, \"runs_gbps\": [", mib, threads);
    for (int r = 0; r < runs; r++) printf("%s%.3f", r ? ", " : "", gbps[r]);
    qsort(gbps, (size_t)runs, sizeof(double), cmp_double);
    double med = runs % 2 ? gbps[runs / 2] : 0.5 * (gbps[runs / 2 - 1] + gbps[runs / 2]);
    printf("], \"median_gbps\": %.3f, \"checksum\": %llu}\n", med, (unsigned long long)(check & 0xffff));
    free(sl); free(tid); free(gbps); free(buf);
    return 0;
}
