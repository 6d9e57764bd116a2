// context_api.cpp — edgert_context_* and edgert_eval of the C API.
#include <string>
#include <vector>

#include "api/api_guard.h"
#include "api/handles.h"

extern "C" {

EDGERT_API edgert_context_params edgert_context_default_params(void) {
    edgert_context_params p;
    p.n_ctx = 0;
    p.n_threads = 0;
    p.n_threads_batch = 0;
    p.n_batch = 0;
    p.kv_type_k = EDGERT_KV_AUTO;  // Q8 where the model allows it (edgert.h)
    p.kv_type_v = EDGERT_KV_AUTO;
    p.memory_budget = 0;
    return p;
}

EDGERT_API edgert_status edgert_context_new(const edgert_model* model,
                                            const edgert_context_params* params,
                                            edgert_context** out_ctx) {
    return edgert::api_call("edgert_context_new", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(out_ctx, "out_ctx");
        const edgert_context_params p = params ? *params : edgert_context_default_params();
        const edgert::ContextConfig config = edgert::resolve_context_config(*model->impl, p);
        auto handle = std::make_unique<edgert_context>();
        handle->impl = std::make_unique<edgert::Context>(*model->impl, config);
        handle->model = model;
        *out_ctx = handle.release();
    });
}

EDGERT_API void edgert_context_free(edgert_context* ctx) { delete ctx; }

EDGERT_API int32_t edgert_context_n_past(const edgert_context* ctx) {
    return ctx ? ctx->impl->n_past() : 0;
}

EDGERT_API int32_t edgert_context_n_ctx(const edgert_context* ctx) {
    return ctx ? ctx->impl->n_ctx() : 0;
}

EDGERT_API uint64_t edgert_context_kv_bytes_per_token(const edgert_context* ctx) {
    return ctx ? ctx->impl->kv().bytes_per_token() : 0;
}

EDGERT_API uint64_t edgert_context_kv_bytes_total(const edgert_context* ctx) {
    return ctx ? ctx->impl->kv().bytes_total() : 0;
}

EDGERT_API edgert_status edgert_context_trim(edgert_context* ctx, int32_t n_keep) {
    return edgert::api_call("edgert_context_trim", [&] {
        edgert::require_non_null(ctx, "ctx");
        ctx->impl->trim(n_keep);
    });
}

EDGERT_API edgert_status edgert_eval(edgert_context* ctx, const int32_t* tokens, int32_t n_tokens,
                                     float* logits, int32_t all_logits) {
    return edgert::api_call("edgert_eval", [&] {
        edgert::require_non_null(ctx, "ctx");
        ctx->impl->eval(tokens, n_tokens, logits, all_logits != 0);
    });
}

EDGERT_API edgert_status edgert_eval_batch(edgert_context* const* ctxs, const int32_t* tokens,
                                           int32_t n, float* logits) {
    return edgert::api_call("edgert_eval_batch", [&] {
        edgert::require_non_null(ctxs, "ctxs");
        if (n < 1) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "n must be >= 1");
        std::vector<edgert::Context*> impls(static_cast<size_t>(n));
        for (int32_t t = 0; t < n; ++t) {
            if (!ctxs[t]) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "ctxs[" + std::to_string(t) + "] is NULL");
            impls[size_t(t)] = ctxs[t]->impl.get();
        }
        edgert::Context::eval_batch(impls.data(), tokens, n, logits);
    });
}

}  // extern "C"
