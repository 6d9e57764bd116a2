/*
 * chat.c — text in, text out with nothing but libedgert and edgert.h: formats one user message
 * with the model's own chat template, generates greedily and streams the answer to stdout as it
 * comes (pieces never split a UTF-8 character).
 *
 *     chat MODEL.edgt "message" [MAX_NEW_TOKENS] [--raw]
 *
 * --raw skips the chat template and continues the message as plain text (BOS as the file says).
 * Exits 1 with the runtime's message on any error. Build against an installed edgert wheel:
 *     cc chat.c $(python -m edgert --cflags --libs) -o chat
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgert.h"

static int32_t print_piece(const char *text, size_t len, void *user_data) {
    (void)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int fail(const char *what, edgert_status st) {
    fprintf(stderr, "%s failed: %s: %s\n", what, edgert_status_string(st), edgert_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.edgt MESSAGE [MAX_NEW_TOKENS] [--raw]\n", argv[0]);
        return 2;
    }
    const int32_t max_new = argc > 3 && argv[3][0] != '-' ? (int32_t)strtol(argv[3], NULL, 10) : 64;
    const int raw = argc > 3 && strcmp(argv[argc - 1], "--raw") == 0;

    edgert_model *model = NULL;
    edgert_status st = edgert_model_load(argv[1], NULL, &model);
    if (st != EDGERT_OK) return fail("edgert_model_load", st);

    char *prompt = NULL;
    size_t prompt_len = 0;
    int32_t flags = EDGERT_TOKENIZE_PARSE_SPECIAL;
    if (raw) {
        prompt = strdup(argv[2]);
        prompt_len = strlen(prompt);
        flags |= EDGERT_TOKENIZE_ADD_SPECIAL;
    } else {
        edgert_chat_message message = {"user", argv[2]};
        st = edgert_chat_format(model, NULL, &message, 1, 1, NULL, 0, &prompt_len);  /* size it */
        if (st == EDGERT_OK) {
            prompt = malloc(prompt_len + 1);
            st = edgert_chat_format(model, NULL, &message, 1, 1, prompt, prompt_len + 1, &prompt_len);
        }
        if (st != EDGERT_OK) {
            free(prompt);
            edgert_model_free(model);
            return fail("edgert_chat_format", st);
        }
    }

    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = 1024;
    edgert_context *ctx = NULL;
    edgert_sampler *sampler = NULL;
    st = edgert_context_new(model, &cp, &ctx);
    if (st == EDGERT_OK) st = edgert_sampler_new(NULL, &sampler);  /* defaults: greedy */
    int32_t n = 0;
    if (st == EDGERT_OK) {
        st = edgert_generate_text(ctx, sampler, prompt, prompt_len, flags, max_new, print_piece, NULL, &n);
    }
    printf("\n");
    int rc = 0;
    if (st != EDGERT_OK) rc = fail("generation", st);
    else fprintf(stderr, "generated %d tokens\n", (int)n);
    free(prompt);
    edgert_sampler_free(sampler);
    edgert_context_free(ctx);
    edgert_model_free(model);
    return rc;
}
