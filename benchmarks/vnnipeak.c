/*
 * vnnipeak.c — one core's peak int8 dot-product throughput (AVX-512 VNNI vpdpbusd, or AVX-VNNI
 * on 256-bit vectors), the compute ceiling of the sensor benchmark's int8 part, as fmapeak.c is
 * for f32.
 *
 * One vpdpbusd multiplies 4 u8 x s8 pairs per 32-bit lane and adds them into the lane: 4 x lanes
 * multiply-adds per instruction, against 1 x lanes for an f32 FMA. Independent accumulator chains
 * (more than latency x ports) keep the ports busy; GOP/s = 2 x 4 x lanes x instructions per
 * second of the thread's CPU time (so a shared machine still gives the core's figure). Built
 * with -O2 -march=native by sensor_bench.py on the machine it measures; never shipped.
 *
 * Usage: vnnipeak [runs=7]
 * Prints one JSON object: {"lanes":..., "runs_gops":[...], "best_gops":...}, or
 * {"best_gops": null, ...} where the compiler targets neither VNNI flavour.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <immintrin.h>

#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#define LANES 16
typedef __m512i vi;
#define DP(acc, a, b) acc = _mm512_dpbusd_epi32(acc, a, b)
#define SET1(x) _mm512_set1_epi32(x)
#elif defined(__AVXVNNI__)
#define LANES 8
typedef __m256i vi;
#define DP(acc, a, b) acc = _mm256_dpbusd_avx_epi32(acc, a, b)
#define SET1(x) _mm256_set1_epi32(x)
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);  /* CPU time: fair on a shared machine */
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
#ifndef LANES
    (void)argc; (void)argv;
    printf("{\"lanes\": 0, \"runs_gops\": [], \"best_gops\": null, "
           "\"note\": \"neither AVX512-VNNI nor AVX-VNNI targeted\"}\n");
    return 0;
#else
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    const long iters = 20 * 1000 * 1000;
    volatile int seed = 0x01010101;
    vi a = SET1(seed), b = SET1(seed + 1);
    vi c0 = SET1(0), c1 = SET1(1), c2 = SET1(2), c3 = SET1(3), c4 = SET1(4), c5 = SET1(5),
       c6 = SET1(6), c7 = SET1(7), c8 = SET1(8), c9 = SET1(9), c10 = SET1(10), c11 = SET1(11),
       c12 = SET1(12), c13 = SET1(13), c14 = SET1(14), c15 = SET1(15);
    double best = 0;
    printf("{\"lanes\": %d, \"runs_gops\": [", LANES);
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (long k = 0; k < iters; k++) {
            /* written out so every chain stays in its own register */
            DP(c0, a, b); DP(c1, a, b); DP(c2, a, b); DP(c3, a, b);
            DP(c4, a, b); DP(c5, a, b); DP(c6, a, b); DP(c7, a, b);
            DP(c8, a, b); DP(c9, a, b); DP(c10, a, b); DP(c11, a, b);
            DP(c12, a, b); DP(c13, a, b); DP(c14, a, b); DP(c15, a, b);
            __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5),
                             "+v"(c6), "+v"(c7));
            __asm__ volatile("" : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(c12),
                             "+v"(c13), "+v"(c14), "+v"(c15));
        }
        double g = 2.0 * 4 * LANES * 16 * (double)iters / (now() - t0) / 1e9;
        if (g > best) best = g;
        printf("%s%.1f", r ? ", " : "", g);
    }
    int out[LANES];
    vi t = c0;
    t = t + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11 + c12 + c13 + c14 + c15;
    __builtin_memcpy(out, &t, sizeof out);
    printf("], \"best_gops\": %.1f, \"checksum\": %d}\n", best, out[0]);
    return 0;
#endif
}
