// generate_api.cpp — edgert_generate: prompt eval, then sample → callback → eval, one token at
// a time; edgert_generate_text: the same loop from text to text pieces. Semantics (stop tokens,
// full context, what the cache holds on return) are edgert.h's.
#include <algorithm>
#include <functional>
#include <vector>

#include "api/api_guard.h"
#include "api/handles.h"

namespace edgert {
namespace {

// The loop both entry points share. on_token returns non-zero to stop.
int32_t generate_loop(Context& c, Sampler& s, const int32_t* prompt, int32_t n_prompt,
                      int32_t max_new_tokens, const std::vector<int32_t>& stops,
                      const std::function<int32_t(int32_t)>& on_token) {
    const int32_t vocab = c.model().meta.hparams.vocab_size;
    float* logits = c.logits_buffer();
    c.eval(prompt, n_prompt, logits, false);  // validates ids and space before any change
    for (int32_t i = 0; i < n_prompt; ++i) s.accept(prompt[i]);

    // NaN or +Inf logits come from the model here, not from the caller: say so.
    auto sample = [&] {
        try {
            return s.sample(logits, vocab);
        } catch (const StatusError& e) {
            fail(e.status(), std::string(e.what()) + " in the model's output; its weights may be "
                             "non-finite or overflow (load with verify_checksums to check)");
        }
    };
    int32_t produced = 0;
    while (produced < max_new_tokens) {
        const int32_t token = sample();
        if (std::find(stops.begin(), stops.end(), token) != stops.end()) break;
        s.accept(token);
        ++produced;
        if (on_token(token) != 0) break;
        if (produced == max_new_tokens || c.n_past() >= c.n_ctx()) break;
        c.eval(&token, 1, logits, false);
    }
    return produced;
}

}  // namespace
}  // namespace edgert

extern "C" {

EDGERT_API edgert_status edgert_generate(edgert_context* ctx, edgert_sampler* sampler,
                                         const int32_t* prompt, int32_t n_prompt,
                                         int32_t max_new_tokens, const int32_t* stop_tokens,
                                         int32_t n_stop_tokens, edgert_token_callback callback,
                                         void* user_data, int32_t* n_generated) {
    return edgert::api_call("edgert_generate", [&] {
        using edgert::fail;
        edgert::require_non_null(ctx, "ctx");
        edgert::require_non_null(sampler, "sampler");
        edgert::require_non_null(prompt, "prompt");
        if (n_prompt < 1) {
            fail(EDGERT_ERR_INVALID_ARGUMENT,
                 "n_prompt must be >= 1 (the first sample needs the logits of a fresh token)");
        }
        if (max_new_tokens < 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "max_new_tokens must be >= 0");
        if (n_stop_tokens < 0 || (n_stop_tokens > 0 && !stop_tokens)) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "stop_tokens is NULL or n_stop_tokens < 0");
        }
        const std::vector<int32_t> stops(stop_tokens, stop_tokens + n_stop_tokens);
        const int32_t produced = edgert::generate_loop(
            *ctx->impl, *sampler->impl, prompt, n_prompt, max_new_tokens, stops,
            [&](int32_t token) { return callback ? callback(token, user_data) : 0; });
        if (n_generated) *n_generated = produced;
    });
}

EDGERT_API edgert_status edgert_generate_text(edgert_context* ctx, edgert_sampler* sampler,
                                              const char* prompt, size_t prompt_len, int32_t flags,
                                              int32_t max_new_tokens, edgert_text_callback callback,
                                              void* user_data, int32_t* n_generated) {
    return edgert::api_call("edgert_generate_text", [&] {
        using edgert::fail;
        edgert::require_non_null(ctx, "ctx");
        edgert::require_non_null(sampler, "sampler");
        if (!prompt && prompt_len > 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "prompt is NULL");
        if (max_new_tokens < 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "max_new_tokens must be >= 0");
        if ((flags & ~(EDGERT_TOKENIZE_ADD_SPECIAL | EDGERT_TOKENIZE_PARSE_SPECIAL)) != 0) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "unknown bits in flags");
        }
        const edgert_model& model = *ctx->model;
        const edgert::Tokenizer& tok = edgert::model_tokenizer(model);
        const std::vector<int32_t> ids =
            tok.encode(std::string_view(prompt ? prompt : "", prompt_len),
                       (flags & EDGERT_TOKENIZE_ADD_SPECIAL) != 0, (flags & EDGERT_TOKENIZE_PARSE_SPECIAL) != 0);
        if (ids.empty()) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "the prompt is empty after tokenization (the first "
                                              "sample needs the logits of a fresh token)");
        }
        edgert::DecodeStream stream(tok, ids.data(), ids.size(), false);
        bool stopped = false;
        const int32_t produced = edgert::generate_loop(
            *ctx->impl, *sampler->impl, ids.data(), int32_t(ids.size()), max_new_tokens,
            model.impl->meta.eos_token_ids, [&](int32_t token) -> int32_t {
                const std::string piece = stream.step(token);
                if (piece.empty() || !callback) return 0;
                stopped = callback(piece.data(), piece.size(), user_data) != 0;
                return stopped;
            });
        if (!stopped && callback) {
            const std::string tail = stream.flush();
            if (!tail.empty()) callback(tail.data(), tail.size(), user_data);
        }
        if (n_generated) *n_generated = produced;
    });
}

}  // extern "C"
