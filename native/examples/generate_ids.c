/*
 * generate_ids.c — greedy generation over token ids with nothing but libedgert and edgert.h,
 * proof that the C API is usable without Python or C++.
 *
 *     generate_ids MODEL.edgt N_NEW ID [ID ...]
 *
 * Prints the generated ids on one line, space-separated. Exits 1 with the runtime's message on
 * any error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "edgert.h"

static int32_t print_token(int32_t token, void *user_data) {
    (void)user_data;
    printf("%d ", (int)token);
    return 0;
}

static void report(const char *what, edgert_status st) {
    fprintf(stderr, "%s failed: %s: %s\n", what, edgert_status_string(st), edgert_last_error());
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.edgt N_NEW ID [ID ...]\n", argv[0]);
        return 2;
    }
    const int32_t n_new = (int32_t)strtol(argv[2], NULL, 10);
    const int32_t n_prompt = argc - 3;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    if (!prompt) return 1;
    for (int32_t i = 0; i < n_prompt; ++i) prompt[i] = (int32_t)strtol(argv[3 + i], NULL, 10);

    /* One exit path: every handle starts NULL and the *_free functions accept NULL, so an error
     * at any step releases exactly what was made before it (an embedding app must do the same). */
    int rc = 1;
    edgert_model *model = NULL;
    edgert_context *ctx = NULL;
    edgert_sampler *smp = NULL;

    edgert_model_params mp = edgert_model_default_params();
    mp.verify_checksums = 1;
    edgert_status st = edgert_model_load(argv[1], &mp, &model);
    if (st != EDGERT_OK) {
        report("edgert_model_load", st);
        goto cleanup;
    }

    edgert_context_params cp = edgert_context_default_params();
    cp.n_threads = 1;
    st = edgert_context_new(model, &cp, &ctx);
    if (st != EDGERT_OK) {
        report("edgert_context_new", st);
        goto cleanup;
    }

    edgert_sampler_params sp = edgert_sampler_default_params(); /* temperature 0: greedy */
    st = edgert_sampler_new(&sp, &smp);
    if (st != EDGERT_OK) {
        report("edgert_sampler_new", st);
        goto cleanup;
    }

    int32_t n_out = 0;
    st = edgert_generate(ctx, smp, prompt, n_prompt, n_new, NULL, 0, print_token, NULL, &n_out);
    printf("\n");
    fflush(stdout); /* keep the ids ahead of the summary when both go to one pipe */
    if (st != EDGERT_OK) {
        report("edgert_generate", st);
        goto cleanup;
    }
    fprintf(stderr, "generated %d tokens, %d in the cache\n", (int)n_out,
            (int)edgert_context_n_past(ctx));
    rc = 0;

cleanup:
    edgert_sampler_free(smp);
    edgert_context_free(ctx);
    edgert_model_free(model);
    free(prompt);
    return rc;
}
