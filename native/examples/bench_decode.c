/*
 * bench_decode.c — prefill and decode speed of a model through the C API alone.
 *
 *     bench_decode MODEL.edgt [N_THREADS [N_PROMPT [N_DECODE]]]
 *
 * Feeds N_PROMPT (default 64) synthetic token ids as one prefill, then decodes N_DECODE (default
 * 64) tokens greedily, and prints tokens/s for both. Wall-clock timing: run it on an idle machine.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "edgert.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail_with(const char *what, edgert_status st) {
    fprintf(stderr, "%s failed: %s: %s\n", what, edgert_status_string(st), edgert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.edgt [N_THREADS [N_PROMPT [N_DECODE]]]\n", argv[0]);
        return 2;
    }
    const int32_t n_threads = argc > 2 ? (int32_t)atoi(argv[2]) : 0;
    const int32_t n_prompt = argc > 3 ? (int32_t)atoi(argv[3]) : 64;
    const int32_t n_decode = argc > 4 ? (int32_t)atoi(argv[4]) : 64;
    if (n_prompt < 1 || n_decode < 0) {
        fprintf(stderr, "N_PROMPT must be >= 1 and N_DECODE >= 0\n");
        return 2;
    }

    double t0 = now_s();
    edgert_model *model = NULL;
    edgert_status st = edgert_model_load(argv[1], NULL, &model);
    if (st != EDGERT_OK) return fail_with("edgert_model_load", st);
    const double load_s = now_s() - t0;
    edgert_model_info info;
    edgert_model_get_info(model, &info);

    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = n_prompt + n_decode + 1;
    cp.n_threads = n_threads;
    edgert_context *ctx = NULL;
    st = edgert_context_new(model, &cp, &ctx);
    if (st != EDGERT_OK) return fail_with("edgert_context_new", st);

    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    float *logits = malloc(sizeof(float) * (size_t)info.vocab_size);
    if (!prompt || !logits) return 1;
    for (int32_t i = 0; i < n_prompt; ++i) prompt[i] = (int32_t)((i * 7919 + 13) % info.vocab_size);

    t0 = now_s();
    st = edgert_eval(ctx, prompt, n_prompt, logits, 0);
    if (st != EDGERT_OK) return fail_with("edgert_eval", st);
    const double prefill_s = now_s() - t0;

    t0 = now_s();
    for (int32_t i = 0; i < n_decode; ++i) {
        int32_t best = 0;
        for (int32_t v = 1; v < info.vocab_size; ++v) best = logits[v] > logits[best] ? v : best;
        st = edgert_eval(ctx, &best, 1, logits, 0);
        if (st != EDGERT_OK) return fail_with("edgert_eval", st);
    }
    const double decode_s = now_s() - t0;

    printf("model %s (%llu params, %llu bytes), isa %s, threads %d\n", info.name,
           (unsigned long long)info.n_params, (unsigned long long)info.file_size, edgert_isa(),
           (int)n_threads);
    edgert_model_layout layout;
    if (edgert_model_get_layout(model, &layout) == EDGERT_OK && layout.isa[0] != '\0')
        printf("re-layout for %s at load: %.1f MB in %.1f ms (part of load)\n", layout.isa,
               layout.bytes / 1e6, layout.seconds * 1e3);
    printf("load %.1f ms | prefill %d tokens: %.1f tok/s | decode %d tokens: %.2f tok/s\n",
           1e3 * load_s, (int)n_prompt, n_prompt / prefill_s, (int)n_decode,
           n_decode > 0 ? n_decode / decode_s : 0.0);

    free(prompt);
    free(logits);
    edgert_context_free(ctx);
    edgert_model_free(model);
    return 0;
}
