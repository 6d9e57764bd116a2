// generate_api.cpp — edgert_generate: prompt eval, then sample → callback → eval, one token at
// a time. Semantics (stop tokens, full context, what the cache holds on return) are edgert.h's.
#include <algorithm>
#include <vector>

#include "api/api_guard.h"
#include "api/handles.h"

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
        edgert::Context& c = *ctx->impl;
        edgert::Sampler& s = *sampler->impl;
        const int32_t vocab = c.model().meta.hparams.vocab_size;
        float* logits = c.logits_buffer();
        const std::vector<int32_t> stops(stop_tokens, stop_tokens + n_stop_tokens);

        c.eval(prompt, n_prompt, logits, false);  // validates ids and space before any change
        for (int32_t i = 0; i < n_prompt; ++i) s.accept(prompt[i]);

        // NaN or +Inf logits come from the model here, not from the caller: say so.
        auto sample = [&] {
            try {
                return s.sample(logits, vocab);
            } catch (const edgert::StatusError& e) {
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
            if (callback && callback(token, user_data) != 0) break;
            if (produced == max_new_tokens || c.n_past() >= c.n_ctx()) break;
            c.eval(&token, 1, logits, false);
        }
        if (n_generated) *n_generated = produced;
    });
}

}  // extern "C"
