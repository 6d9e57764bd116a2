/*
 * edgert.h — the one stable C API of the edgert on-device LLM runtime.
 *
 * Everything else (the pybind11 module, the Android JNI bridge) wraps this header and nothing
 * else. The ABI is versioned by EDGERT_ABI_VERSION; additions keep old symbols and struct
 * prefixes intact, removals or layout changes bump the version.
 *
 * Usage (error checks shortened):
 *
 *     edgert_model_params mp = edgert_model_default_params();
 *     edgert_model *model;
 *     if (edgert_model_load("smollm2.edgt", &mp, &model) != EDGERT_OK) {
 *         fprintf(stderr, "%s\n", edgert_last_error());
 *         return 1;
 *     }
 *     edgert_context_params cp = edgert_context_default_params();
 *     cp.n_ctx = 2048;
 *     edgert_context *ctx;
 *     edgert_context_new(model, &cp, &ctx);
 *
 *     edgert_sampler_params sp = edgert_sampler_default_params();   // temperature 0 = greedy
 *     edgert_sampler *smp;
 *     edgert_sampler_new(&sp, &smp);
 *
 *     // Text in, text out (ABI 2): the model's own chat template and tokenizer.
 *     edgert_chat_message chat[] = {{"user", "What is the capital of France?"}};
 *     char prompt[4096];
 *     size_t prompt_len;
 *     edgert_chat_format(model, NULL, chat, 1, 1, prompt, sizeof prompt, &prompt_len);
 *     edgert_generate_text(ctx, smp, prompt, prompt_len, EDGERT_TOKENIZE_PARSE_SPECIAL, 64,
 *                          on_piece, user_data, NULL);   // on_piece(text, len, user_data)
 *
 *     // Or token ids in, token ids out:
 *     int32_t ids[64], n_ids = 0;
 *     edgert_tokenize(model, "The capital of France is", 24, EDGERT_TOKENIZE_ADD_SPECIAL, ids, 64, &n_ids);
 *     edgert_generate(ctx, smp, ids, n_ids, 32, NULL, 0, on_token, user_data, NULL);
 *
 *     edgert_sampler_free(smp);
 *     edgert_context_free(ctx);
 *     edgert_model_free(model);
 *
 * Tokenization (ABI 2) is native: the tokenizer.json the file carries is read by libedgert
 * itself (byte-level BPE of GPT-2 / Llama 3 / Qwen2 / SmolLM, SentencePiece-style BPE with byte
 * fallback of Llama 2 / Mistral / TinyLlama) and gives the ids Hugging Face `tokenizers` gives.
 *
 * Threading contract:
 *   - An edgert_model is immutable after load and may be shared by any number of contexts on
 *     any threads. Free it only after every context and detokenizer made from it is freed.
 *   - An edgert_context (one conversation: KV cache, scratch, thread pool) and an
 *     edgert_sampler must be used by one thread at a time.
 *   - The tokenizer and chat functions take a const edgert_model and may be called from any
 *     number of threads at once (the tokenizer is built once, on first use, thread-safely).
 *     An edgert_detokenizer is like a context: one thread at a time.
 *   - edgert_last_error() is per thread.
 *   - edgert_set_isa() changes process-wide kernel dispatch; call it before loading models.
 *   So N threads may each run their own context (and sampler) on one shared model, tokenizing,
 *   generating and detokenizing at once; the contexts share nothing mutable
 *   (native/tests/test_threads.c, run under ThreadSanitizer by tests/test_native.py).
 *
 * Errors: every function that can fail returns edgert_status; on failure the out-parameters are
 * left untouched (pointers are not set), nothing is leaked, and edgert_last_error() returns a
 * message saying what was wrong and what to do.
 */
#ifndef EDGERT_H
#define EDGERT_H

#include <stddef.h>
#include <stdint.h>

#define EDGERT_ABI_VERSION 2

#if defined(_WIN32)
#  if defined(EDGERT_BUILDING)
#    define EDGERT_API __declspec(dllexport)
#  else
#    define EDGERT_API __declspec(dllimport)
#  endif
#else
#  define EDGERT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum edgert_status {
    EDGERT_OK = 0,
    EDGERT_ERR_INVALID_ARGUMENT = 1,  /* NULL pointer or a parameter out of its range */
    EDGERT_ERR_IO = 2,                /* the file could not be opened, read or mapped */
    EDGERT_ERR_FORMAT = 3,            /* not an edgert file, truncated, corrupt, checksum mismatch,
                                         an offset or size outside the file */
    EDGERT_ERR_VERSION = 4,           /* the file's format version is newer than this runtime */
    EDGERT_ERR_UNSUPPORTED = 5,       /* unknown dtype, architecture or option */
    EDGERT_ERR_TOKEN = 6,             /* a token id outside [0, vocab_size) */
    EDGERT_ERR_CONTEXT_OVERFLOW = 7,  /* the tokens do not fit in the context window */
    EDGERT_ERR_OUT_OF_MEMORY = 8,     /* allocation failed or the memory budget is exceeded */
    EDGERT_ERR_INTERNAL = 9,
    EDGERT_ERR_INVALID_TEXT = 10      /* text is not valid UTF-8 (ABI 2); the message gives the
                                         byte offset */
} edgert_status;

/* Name of a status code, e.g. "EDGERT_ERR_FORMAT". Never NULL. */
EDGERT_API const char *edgert_status_string(edgert_status status);
/* Detailed message of the last failed call on this thread ("" if none). Valid until the next
 * call on this thread. */
EDGERT_API const char *edgert_last_error(void);

EDGERT_API int32_t edgert_abi_version(void);     /* == EDGERT_ABI_VERSION of the built library */
EDGERT_API const char *edgert_version(void);     /* e.g. "0.1.0" */

/* Kernel dispatch. Names: "scalar", "avx2", "avx512", "neon", ... The best ISA the CPU supports
 * is chosen at start-up; the environment variable EDGERT_ISA overrides that choice. */
EDGERT_API const char *edgert_isa(void);                        /* the ISA in use */
EDGERT_API const char *edgert_available_isas(void);             /* comma-separated list */
EDGERT_API edgert_status edgert_set_isa(const char *name);      /* EDGERT_ERR_UNSUPPORTED if the
                                                                   CPU or build lacks it */

/* ---------------------------------------------------------------------------------------------
 * Model: the weights, mapped read-only from the file. */
typedef struct edgert_model edgert_model;

typedef struct edgert_model_params {
    int32_t verify_checksums;  /* 1: check every tensor's CRC-32 at load (reads the whole file);
                                  0 (default): check the header CRC only */
    int32_t exact_matmul;      /* 1: multiply quantized weights with f32 activations, dequantizing
                                  each weight row in the kernel (no int8 activation rounding).
                                  Slower; the reference mode that matches PyTorch on the same
                                  weights. 0 (default): int8 activations, as llama.cpp does */
} edgert_model_params;

typedef struct edgert_model_info {
    char architecture[32];
    char name[128];
    uint32_t format_version;
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t num_layers;
    int32_t num_heads;
    int32_t num_kv_heads;
    int32_t head_dim;
    int32_t context_length;    /* the model's trained context */
    int32_t bos_token_id;      /* -1 if none */
    int32_t eos_token_id;      /* the first EOS id, -1 if none */
    float rope_theta;
    float rms_norm_eps;
    uint64_t n_params;         /* number of weights */
    uint64_t file_size;        /* bytes */
    uint64_t weights_size;     /* bytes of tensor data */
} edgert_model_info;

/* The load-time re-layout of quantized weights for this CPU's kernels: an extra copy in RAM,
 * made once per load (edgert_model_load's cost beyond mapping the file). */
typedef struct edgert_model_layout {
    char isa[32];              /* kernel table the copies serve ("avx512vnni", "amx", ...);
                                  "" when no weight was re-laid out (scalar kernels,
                                  EDGERT_REPACK=0, exact_matmul) */
    uint64_t bytes;            /* bytes of re-laid-out copies */
    double seconds;            /* wall time spent making them */
} edgert_model_layout;

EDGERT_API edgert_model_params edgert_model_default_params(void);
EDGERT_API edgert_status edgert_model_load(const char *path, const edgert_model_params *params,
                                           edgert_model **out_model);
EDGERT_API void edgert_model_free(edgert_model *model);  /* NULL is a no-op */
EDGERT_API edgert_status edgert_model_get_info(const edgert_model *model, edgert_model_info *out);
EDGERT_API edgert_status edgert_model_get_layout(const edgert_model *model, edgert_model_layout *out);
/* The file's metadata JSON (not NUL-terminated; *out_len receives its length). Valid until the
 * model is freed. */
EDGERT_API const char *edgert_model_metadata_json(const edgert_model *model, size_t *out_len);

/* ---------------------------------------------------------------------------------------------
 * Context: one conversation — KV cache, scratch buffers and thread pool. */
typedef struct edgert_context edgert_context;

typedef enum edgert_kv_type {
    EDGERT_KV_F32 = 0,
    EDGERT_KV_F16 = 1,
    EDGERT_KV_Q8 = 2,
    EDGERT_KV_Q4 = 3
} edgert_kv_type;

typedef struct edgert_context_params {
    int32_t n_ctx;            /* context window in tokens; 0 = min(model context, 4096) */
    int32_t n_threads;        /* threads for decode (one token); 0 = physical cores */
    int32_t n_threads_batch;  /* threads for prefill (many tokens); 0 = n_threads */
    int32_t n_batch;          /* tokens per forward chunk in prefill; 0 = 512 */
    int32_t kv_type_k;        /* edgert_kv_type; default EDGERT_KV_AUTO */
    int32_t kv_type_v;        /* edgert_kv_type; default EDGERT_KV_AUTO */
    uint64_t memory_budget;   /* bytes the context may allocate; 0 = no limit. A context whose
                                 KV cache and scratch do not fit fails with
                                 EDGERT_ERR_OUT_OF_MEMORY instead of swapping */
} edgert_context_params;

EDGERT_API edgert_context_params edgert_context_default_params(void);
EDGERT_API edgert_status edgert_context_new(const edgert_model *model,
                                            const edgert_context_params *params,
                                            edgert_context **out_ctx);
EDGERT_API void edgert_context_free(edgert_context *ctx);  /* NULL is a no-op */
EDGERT_API int32_t edgert_context_n_past(const edgert_context *ctx);  /* tokens in the cache */
EDGERT_API int32_t edgert_context_n_ctx(const edgert_context *ctx);
/* Bytes the KV cache holds per token, and in total for n_ctx tokens. */
EDGERT_API uint64_t edgert_context_kv_bytes_per_token(const edgert_context *ctx);
EDGERT_API uint64_t edgert_context_kv_bytes_total(const edgert_context *ctx);
/* Keep the first n_keep tokens of the cache, drop the rest. 0 resets the conversation.
 * EDGERT_ERR_INVALID_ARGUMENT if n_keep < 0 or n_keep > n_past. */
EDGERT_API edgert_status edgert_context_trim(edgert_context *ctx, int32_t n_keep);

/* Run the model over n_tokens tokens appended at position n_past; they enter the KV cache.
 * logits: NULL; or, when all_logits == 0, room for vocab_size floats (the last position's);
 * or, when all_logits != 0, room for n_tokens * vocab_size floats (row t = position t).
 * Fails without changing the cache with EDGERT_ERR_TOKEN (an id out of range) or
 * EDGERT_ERR_CONTEXT_OVERFLOW (n_past + n_tokens > n_ctx). */
EDGERT_API edgert_status edgert_eval(edgert_context *ctx, const int32_t *tokens, int32_t n_tokens,
                                     float *logits, int32_t all_logits);

/* One decode step of n contexts of the same model in one forward pass: tokens[t] is appended to
 * ctxs[t] (at its own n_past); logits: room for n * vocab_size floats (row t = ctxs[t]'s). The
 * weights are read once for all of them (a server's parallel conversations). Row t equals what
 * edgert_eval(ctxs[t], &tokens[t], 1, ...) would give, bit for bit. Threads and scratch are
 * ctxs[0]'s; n <= its n_batch. Fails without changing any cache with EDGERT_ERR_INVALID_ARGUMENT
 * (a NULL, a context of another model, a context given twice), EDGERT_ERR_TOKEN or
 * EDGERT_ERR_CONTEXT_OVERFLOW (a full context). The contexts must not be used by other threads
 * meanwhile. Added in ABI 2. */
EDGERT_API edgert_status edgert_eval_batch(edgert_context *const *ctxs, const int32_t *tokens,
                                           int32_t n, float *logits);

/* ---------------------------------------------------------------------------------------------
 * Sampler: turns logits into a token. Holds its RNG and the repetition history. */
typedef struct edgert_sampler edgert_sampler;

typedef struct edgert_sampler_params {
    float temperature;      /* <= 0: greedy (argmax); default 0 */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off; keep tokens with p >= min_p * p_max */
    float repeat_penalty;   /* 1: off; logits of recent tokens divided (>0) or multiplied (<0) */
    int32_t repeat_last_n;  /* how many recent tokens the penalty looks at; default 64 */
    uint64_t seed;          /* RNG seed; equal seeds give equal samples */
} edgert_sampler_params;

EDGERT_API edgert_sampler_params edgert_sampler_default_params(void);
EDGERT_API edgert_status edgert_sampler_new(const edgert_sampler_params *params,
                                            edgert_sampler **out_sampler);
EDGERT_API void edgert_sampler_free(edgert_sampler *sampler);  /* NULL is a no-op */
EDGERT_API void edgert_sampler_reset(edgert_sampler *sampler);  /* clears history, reseeds */
/* Record a token (prompt or generated) in the repetition history. */
EDGERT_API void edgert_sampler_accept(edgert_sampler *sampler, int32_t token);
/* Choose a token from logits (not modified). Does not call accept. */
EDGERT_API edgert_status edgert_sampler_sample(edgert_sampler *sampler, const float *logits,
                                               int32_t n_vocab, int32_t *out_token);

/* Structured output: edgert_sampler_sample with a token mask from a grammar engine. allowed is a
 * bitmask in the layout grammar engines produce (llguidance, xgrammar): bit (t % 32) of
 * allowed[t / 32] set = token t may be chosen; n_words >= (n_vocab + 31) / 32. A masked-out
 * token is removed before the repetition penalty's effect is ranked and before top-k, top-p and
 * min-p, so the filters choose among allowed tokens only. EDGERT_ERR_INVALID_ARGUMENT if the mask
 * allows no token (the grammar cannot be continued) or n_words is too small. allowed == NULL is
 * edgert_sampler_sample. Added in ABI 2. */
EDGERT_API edgert_status edgert_sampler_sample_masked(edgert_sampler *sampler, const float *logits,
                                                      int32_t n_vocab, const uint32_t *allowed,
                                                      int32_t n_words, int32_t *out_token);

/* The distribution edgert_sampler_sample(_masked) draws from for these logits: probs receives
 * n_vocab floats summing to 1, 0 for every token the mask, top-k, top-p or min-p removed; one-hot
 * at the greedy choice when temperature <= 0. Uses the repetition history but not the RNG, so
 * the next sample is unchanged. For speculative decoding's rejection test. allowed may be NULL.
 * Added in ABI 2. */
EDGERT_API edgert_status edgert_sampler_probs(edgert_sampler *sampler, const float *logits,
                                              int32_t n_vocab, const uint32_t *allowed,
                                              int32_t n_words, float *probs);

/* ---------------------------------------------------------------------------------------------
 * Generation loop over token ids. */

/* Called once per generated token; return 0 to go on, non-zero to stop. */
typedef int32_t (*edgert_token_callback)(int32_t token, void *user_data);

/* Evaluates the prompt (appended at n_past), then samples up to max_new_tokens tokens, calling
 * callback (may be NULL) for each. A token listed in stop_tokens ends generation; it is neither
 * passed to the callback nor counted. Generation also ends when the context is full (not an
 * error: compare *n_generated with max_new_tokens). Each sampled token is evaluated only before
 * the next one is sampled, so on return the cache holds the prompt and every generated token but
 * the last sampled one. Fails with EDGERT_ERR_CONTEXT_OVERFLOW before any work if the prompt does
 * not fit. n_generated may be NULL. */
EDGERT_API edgert_status edgert_generate(edgert_context *ctx, edgert_sampler *sampler,
                                         const int32_t *prompt, int32_t n_prompt,
                                         int32_t max_new_tokens,
                                         const int32_t *stop_tokens, int32_t n_stop_tokens,
                                         edgert_token_callback callback, void *user_data,
                                         int32_t *n_generated);

/* ---------------------------------------------------------------------------------------------
 * Context state: the KV cache as a file, and the token ids it holds. */

/* Writes the context's state to path: a magic and version, the model's identity (a CRC-32 over
 * its metadata and tensor table), the KV types, n_past, the token ids and the K/V rows of
 * positions [0, n_past) exactly as the cache holds them. The file is written beside path and
 * renamed, so an interrupted save never leaves a partial file under that name. EDGERT_ERR_IO if
 * it cannot be written. */
EDGERT_API edgert_status edgert_context_save(const edgert_context *ctx, const char *path);

/* Replaces the context's state with the one saved in path; continuing from it gives exactly the
 * tokens the saved context would have produced. The whole file is checked before the context
 * changes; on failure the context is left as it was:
 *   EDGERT_ERR_IO                the file cannot be opened or read
 *   EDGERT_ERR_FORMAT            not a state file, truncated, trailing bytes, checksum mismatch
 *   EDGERT_ERR_VERSION           a newer state format than this runtime reads
 *   EDGERT_ERR_INVALID_ARGUMENT  saved from another model, or with other KV types than ctx's
 *   EDGERT_ERR_CONTEXT_OVERFLOW  it holds more tokens than ctx's n_ctx */
EDGERT_API edgert_status edgert_context_load(edgert_context *ctx, const char *path);

/* The token ids whose K/V the cache holds, in position order: copies min(n_past, capacity) ids
 * into out (which may be NULL when capacity is 0) and returns n_past. 0 for a NULL ctx. */
EDGERT_API int32_t edgert_context_tokens(const edgert_context *ctx, int32_t *out, int32_t capacity);

/* ---------------------------------------------------------------------------------------------
 * Text (ABI 2): tokenizer, streaming detokenizer, chat formatting, generation over text.
 *
 * Output buffers follow one rule: the call writes at most `capacity` elements (text: capacity - 1
 * bytes and a NUL) and always reports the full size in the length out-parameter, so a caller
 * whose buffer was too small calls again with a larger one. Text is UTF-8 everywhere; text that
 * is not valid UTF-8 fails with EDGERT_ERR_INVALID_TEXT. A tokenizer.json this runtime cannot
 * read fails every text function with EDGERT_ERR_UNSUPPORTED (the message names the part); the
 * token-id functions above work regardless. */

#define EDGERT_TOKENIZE_ADD_SPECIAL 1    /* prepend BOS / append EOS as the model file says
                                            (tokenizer.add_bos / add_eos) */
#define EDGERT_TOKENIZE_PARSE_SPECIAL 2  /* special tokens written in the text ("<|im_start|>")
                                            become their ids, as `tokenizers` does; without it
                                            they are tokenized as plain text */
#define EDGERT_DETOKENIZE_SKIP_SPECIAL 1 /* leave special tokens (BOS, EOS, ...) out of the text */

/* Token ids of text[0, text_len). Writes min(n, capacity) ids and sets *n_tokens = n;
 * text_len + 3 ids always suffice. */
EDGERT_API edgert_status edgert_tokenize(const edgert_model *model, const char *text,
                                         size_t text_len, int32_t flags, int32_t *tokens,
                                         int32_t capacity, int32_t *n_tokens);

/* The text of n_tokens ids, as `tokenizers`' decode gives it (a leading SentencePiece space
 * stripped; bytes that form no character become U+FFFD). EDGERT_ERR_TOKEN for an id outside
 * [0, vocab_size). */
EDGERT_API edgert_status edgert_detokenize(const edgert_model *model, const int32_t *tokens,
                                           int32_t n_tokens, int32_t flags, char *text,
                                           size_t capacity, size_t *text_len);

/* The bytes one token adds in the middle of a text (no leading-space strip). May be part of a
 * UTF-8 character (byte-fallback and byte-level tokens): to show text as it is generated, use an
 * edgert_detokenizer, which never splits a character. */
EDGERT_API edgert_status edgert_token_to_piece(const edgert_model *model, int32_t token,
                                               char *piece, size_t capacity, size_t *piece_len);

/* 1 if token ends generation (one of the file's EOS ids), else 0. */
EDGERT_API int32_t edgert_token_is_eog(const edgert_model *model, int32_t token);

/* Streaming detokenizer: token ids in, text out, never ending inside a character.
 * context: ids already in the text before the stream (the prompt; only the last few are used),
 * so the first piece decodes as it does inside the whole text. */
typedef struct edgert_detokenizer edgert_detokenizer;
EDGERT_API edgert_status edgert_detokenizer_new(const edgert_model *model, const int32_t *context,
                                                int32_t n_context, int32_t flags,
                                                edgert_detokenizer **out);
EDGERT_API void edgert_detokenizer_free(edgert_detokenizer *detok);  /* NULL is a no-op */
/* The text token completes (often "", while a character is incomplete). *text is NUL-terminated
 * and valid until the next call on detok. */
EDGERT_API edgert_status edgert_detokenizer_feed(edgert_detokenizer *detok, int32_t token,
                                                 const char **text, size_t *text_len);
/* Whatever is held back at the end (an incomplete character, as U+FFFD); then starts over. */
EDGERT_API edgert_status edgert_detokenizer_flush(edgert_detokenizer *detok, const char **text,
                                                  size_t *text_len);

typedef struct edgert_chat_message {
    const char *role;     /* "system", "user", "assistant" */
    const char *content;  /* UTF-8, NUL-terminated */
} edgert_chat_message;

/* Formats a conversation with chat_template (NULL: the model file's own) into the prompt text,
 * ending with the assistant's turn header when add_generation_prompt != 0. Tokenize the result
 * with EDGERT_TOKENIZE_PARSE_SPECIAL and without EDGERT_TOKENIZE_ADD_SPECIAL (the template
 * writes BOS itself). Template families are recognised from the template text: ChatML
 * (SmolLM2, Qwen2), Llama 3, Llama 2 and Mistral [INST], Gemma, Phi-3.
 *   EDGERT_ERR_UNSUPPORTED       no template, or a template of another family
 *   EDGERT_ERR_FORMAT            chat_template NULL and the file's chat_template is not text
 *                                (such a file loads and runs on ids all the same)
 *   EDGERT_ERR_INVALID_ARGUMENT  a conversation the template rejects (roles not alternating,
 *                                a system message where the family has none)
 *   EDGERT_ERR_INVALID_TEXT      chat_template or a message that is not valid UTF-8 */
EDGERT_API edgert_status edgert_chat_format(const edgert_model *model, const char *chat_template,
                                            const edgert_chat_message *messages,
                                            int32_t n_messages, int32_t add_generation_prompt,
                                            char *text, size_t capacity, size_t *text_len);
/* The family edgert_chat_format recognises in chat_template (NULL: the model's): "chatml",
 * "llama3", "llama2", "mistral", "gemma", "phi3"; NULL if none or no template. */
EDGERT_API const char *edgert_chat_template_family(const edgert_model *model,
                                                   const char *chat_template);

/* Called with each piece of generated text (never ending inside a character; not
 * NUL-terminated); return 0 to go on, non-zero to stop. */
typedef int32_t (*edgert_text_callback)(const char *text, size_t len, void *user_data);

/* edgert_generate from text: tokenizes prompt[0, prompt_len) with flags (EDGERT_TOKENIZE_*),
 * generates up to max_new_tokens tokens, stopping at the model's EOS ids (not passed on), and
 * calls callback with the text as it completes, the last piece after the loop ends. The cache
 * afterwards is as edgert_generate leaves it. n_generated (may be NULL) counts tokens. */
EDGERT_API edgert_status edgert_generate_text(edgert_context *ctx, edgert_sampler *sampler,
                                              const char *prompt, size_t prompt_len,
                                              int32_t flags, int32_t max_new_tokens,
                                              edgert_text_callback callback, void *user_data,
                                              int32_t *n_generated);

/* kv_type_k / kv_type_v value that picks the measured default, and what
 * edgert_context_default_params() now returns for both (replacing the EDGERT_KV_F16 stated in
 * edgert_context_params): EDGERT_KV_Q8 when the model's head_dim allows quantized rows (a power
 * of two in [32, 256]), else EDGERT_KV_F16. Q8 rows are 0.52-0.53x the bytes of F16 and measured
 * on SmolLM2-135M over wikitext-2 (context 512, 16,575 tokens scored): PPL +0.07%, mean KLD
 * 0.0032 against the F16 cache, 96.1% top-1 agreement. EDGERT_KV_Q4 for K and V (0.28-0.30x the
 * bytes of F16; Q4 keys carry one offset vector per 64 positions and position 0's exact key)
 * measured the same way: PPL +2.08%, mean KLD 0.0179; Q8 keys with Q4 values: +0.76%, 0.41x. */
#define EDGERT_KV_AUTO (-1)

#ifdef __cplusplus
}
#endif

#endif /* EDGERT_H */
