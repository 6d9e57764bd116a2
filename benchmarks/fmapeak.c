/*
 * fmapeak.c — one core's peak f32 FMA throughput, the compute ceiling of the sensor benchmark.
 *
 * The sensor models are small enough to live in L1/L2, so their latency is bounded by how many
 * FMAs one core retires per second, not by memory. This runs independent chains of vector FMAs
 * (more chains than FMA latency x FMA ports, so the ports never wait on a result) and reports
 * GFLOP/s = 2 x lanes x FMAs per second of the thread's CPU time (so a shared machine still
 * gives the core's figure). The widest vector the compiler targets is used (built with
 * -O2 -march=native by sensor_bench.py on the machine it measures; never shipped).
 *
 * Usage: fmapeak [runs=7]
 * Prints one JSON object: {"lanes":..., "runs_gflops":[...], "best_gflops":...}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define CHAINS 16   /* >= 4-cycle latency x 2 ports x 2 for slack */

typedef float vf __attribute__((vector_size(LANES * 4)));

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);  /* CPU time: fair on a shared machine */
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    const long iters = 20 * 1000 * 1000;
    volatile float seed = 1e-7f;
    vf m, c;
    for (int j = 0; j < LANES; j++) { m[j] = 1.0f - seed; c[j] = seed; }
    vf a0 = c * 0.f, a1 = c * 1.f, a2 = c * 2.f, a3 = c * 3.f, a4 = c * 4.f, a5 = c * 5.f,
       a6 = c * 6.f, a7 = c * 7.f, a8 = c * 8.f, a9 = c * 9.f, a10 = c * 10.f, a11 = c * 11.f,
       a12 = c * 12.f, a13 = c * 13.f, a14 = c * 14.f, a15 = c * 15.f;
    double best = 0;
    printf("{\"lanes\": %d, \"runs_gflops\": [", LANES);
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (long k = 0; k < iters; k++) {
            /* written out so every chain stays in its own register */
#define STEP(i) a##i = a##i * m + c;
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
            STEP(8) STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15)
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                             "+v"(a6), "+v"(a7));
            __asm__ volatile("" : "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11), "+v"(a12),
                             "+v"(a13), "+v"(a14), "+v"(a15));
        }
        double g = 2.0 * LANES * CHAINS * (double)iters / (now() - t0) / 1e9;
        if (g > best) best = g;
        printf("%s%.1f", r ? ", " : "", g);
    }
    float s = 0;
    vf t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15;
    s = t[0];
    printf("], \"best_gflops\": %.1f, \"checksum\": %g}\n", best, (double)s);
    return 0;
}
