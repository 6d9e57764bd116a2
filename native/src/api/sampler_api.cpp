// sampler_api.cpp — edgert_sampler_* of the C API.
#include "api/api_guard.h"
#include "api/handles.h"

extern "C" {

EDGERT_API edgert_sampler_params edgert_sampler_default_params(void) {
    edgert_sampler_params p;
    p.temperature = 0.f;
    p.top_k = 0;
    p.top_p = 1.f;
    p.min_p = 0.f;
    p.repeat_penalty = 1.f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

EDGERT_API edgert_status edgert_sampler_new(const edgert_sampler_params* params,
                                            edgert_sampler** out_sampler) {
    return edgert::api_call("edgert_sampler_new", [&] {
        edgert::require_non_null(out_sampler, "out_sampler");
        const edgert_sampler_params p = params ? *params : edgert_sampler_default_params();
        auto handle = std::make_unique<edgert_sampler>();
        handle->impl = std::make_unique<edgert::Sampler>(p);
        *out_sampler = handle.release();
    });
}

EDGERT_API void edgert_sampler_free(edgert_sampler* sampler) { delete sampler; }

EDGERT_API void edgert_sampler_reset(edgert_sampler* sampler) {
    if (sampler) sampler->impl->reset();
}

EDGERT_API void edgert_sampler_accept(edgert_sampler* sampler, int32_t token) {
    // The history is bounded by repeat_last_n, but a push can still fail to allocate.
    edgert::api_call("edgert_sampler_accept", [&] {
        if (sampler) sampler->impl->accept(token);
    });
}

EDGERT_API edgert_status edgert_sampler_sample(edgert_sampler* sampler, const float* logits,
                                               int32_t n_vocab, int32_t* out_token) {
    return edgert::api_call("edgert_sampler_sample", [&] {
        edgert::require_non_null(sampler, "sampler");
        edgert::require_non_null(logits, "logits");
        edgert::require_non_null(out_token, "out_token");
        *out_token = sampler->impl->sample(logits, n_vocab);
    });
}

EDGERT_API edgert_status edgert_sampler_sample_masked(edgert_sampler* sampler, const float* logits,
                                                      int32_t n_vocab, const uint32_t* allowed,
                                                      int32_t n_words, int32_t* out_token) {
    return edgert::api_call("edgert_sampler_sample_masked", [&] {
        edgert::require_non_null(sampler, "sampler");
        edgert::require_non_null(logits, "logits");
        edgert::require_non_null(out_token, "out_token");
        *out_token = sampler->impl->sample(logits, n_vocab, allowed, n_words);
    });
}

EDGERT_API edgert_status edgert_sampler_probs(edgert_sampler* sampler, const float* logits,
                                              int32_t n_vocab, const uint32_t* allowed,
                                              int32_t n_words, float* probs) {
    return edgert::api_call("edgert_sampler_probs", [&] {
        edgert::require_non_null(sampler, "sampler");
        edgert::require_non_null(logits, "logits");
        edgert::require_non_null(probs, "probs");
        sampler->impl->probs(logits, n_vocab, allowed, n_words, probs);
    });
}

}  // extern "C"
