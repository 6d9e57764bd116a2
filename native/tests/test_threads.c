/*
 * test_threads.c — edgert.h's threading contract, exercised: one model shared by several
 * contexts on several threads at once, each thread tokenizing, generating text and detokenizing
 * through the C API. The threads start together on a fresh model, so the tokenizer's
 * build-on-first-use races too. Every thread's text must equal what one thread alone produced.
 * tests/test_native.py builds this with EDGERT_TSAN (-fsanitize=thread) and requires a clean run.
 *
 *     test_threads MODEL.edgt N_THREADS N_NEW
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgert.h"

#define MAX_THREADS 16
#define TEXT_CAP 8192

static const char *const kPrompts[] = {"Once upon a time", "The little dog", "Lily and Tom went",
                                       "One day, a bird", "The sun was hot", "A big red ball"};
#define N_PROMPTS (sizeof kPrompts / sizeof kPrompts[0])

typedef struct {
    char text[TEXT_CAP];
    size_t len;
} Text;

static int32_t append_piece(const char *piece, size_t len, void *user_data) {
    Text *t = (Text *)user_data;
    if (t->len + len < TEXT_CAP) {
        memcpy(t->text + t->len, piece, len);
        t->len += len;
        t->text[t->len] = '\0';
    }
    return 0;
}

typedef struct {
    const edgert_model *model;
    const char *prompt;
    int32_t n_new;
    pthread_barrier_t *start;
    Text out;       /* generate_text's pieces */
    Text decoded;   /* detokenize(tokenize(prompt)) */
    int failed;
} Job;

static int run(Job *job) {
    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 2;
    edgert_context *ctx = NULL;
    edgert_sampler *smp = NULL;
    int32_t ids[512], n_ids = 0;
    if (edgert_context_new(job->model, &cp, &ctx) != EDGERT_OK) return 1;
    if (edgert_sampler_new(NULL, &smp) != EDGERT_OK) return 1;
    if (edgert_tokenize(job->model, job->prompt, strlen(job->prompt), 0, ids, 512, &n_ids) != EDGERT_OK) return 1;
    if (edgert_detokenize(job->model, ids, n_ids, 0, job->decoded.text, TEXT_CAP, &job->decoded.len) != EDGERT_OK) return 1;
    if (edgert_generate_text(ctx, smp, job->prompt, strlen(job->prompt), EDGERT_TOKENIZE_ADD_SPECIAL, job->n_new,
                             append_piece, &job->out, NULL) != EDGERT_OK) {
        return 1;
    }
    edgert_sampler_free(smp);
    edgert_context_free(ctx);
    return 0;
}

static void *thread_main(void *arg) {
    Job *job = (Job *)arg;
    pthread_barrier_wait(job->start);
    job->failed = run(job);
    if (job->failed) fprintf(stderr, "thread failed: %s\n", edgert_last_error());
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.edgt N_THREADS N_NEW\n", argv[0]);
        return 2;
    }
    const int n_threads = atoi(argv[2]);
    const int32_t n_new = (int32_t)atoi(argv[3]);
    if (n_threads < 1 || n_threads > MAX_THREADS) return 2;

    /* The reference: each prompt alone, on its own model. */
    static Job ref[N_PROMPTS];
    edgert_model *ref_model = NULL;
    if (edgert_model_load(argv[1], NULL, &ref_model) != EDGERT_OK) {
        fprintf(stderr, "load: %s\n", edgert_last_error());
        return 1;
    }
    for (size_t i = 0; i < N_PROMPTS; ++i) {
        ref[i].model = ref_model;
        ref[i].prompt = kPrompts[i];
        ref[i].n_new = n_new;
        if (run(&ref[i])) {
            fprintf(stderr, "reference run: %s\n", edgert_last_error());
            return 1;
        }
    }

    edgert_model *model = NULL;  /* fresh: its tokenizer is built by whichever thread comes first */
    if (edgert_model_load(argv[1], NULL, &model) != EDGERT_OK) return 1;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n_threads);
    static Job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < n_threads; ++i) {
        jobs[i].model = model;
        jobs[i].prompt = kPrompts[(size_t)i % N_PROMPTS];
        jobs[i].n_new = n_new;
        jobs[i].start = &start;
        pthread_create(&tid[i], NULL, thread_main, &jobs[i]);
    }
    int bad = 0;
    for (int i = 0; i < n_threads; ++i) {
        pthread_join(tid[i], NULL);
        const Job *want = &ref[(size_t)i % N_PROMPTS];
        if (jobs[i].failed || strcmp(jobs[i].out.text, want->out.text) != 0 ||
            strcmp(jobs[i].decoded.text, want->decoded.text) != 0) {
            fprintf(stderr, "thread %d differs: '%s' vs '%s'\n", i, jobs[i].out.text, want->out.text);
            bad = 1;
        }
    }
    pthread_barrier_destroy(&start);
    edgert_model_free(model);
    edgert_model_free(ref_model);
    if (!bad) printf("%d threads agree; e.g. '%s%s'\n", n_threads, kPrompts[0], ref[0].out.text);
    return bad;
}
