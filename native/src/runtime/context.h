// context.h — one conversation over a shared Model: KV cache, activation scratch, thread pools.
//
// Used by one thread at a time (edgert.h). Every check that can fail happens before any state
// changes, so a failed eval leaves the cache exactly as it was.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "edgert.h"
#include "models/model.h"
#include "runtime/activations.h"
#include "runtime/attention.h"
#include "runtime/kv_cache.h"
#include "runtime/thread_pool.h"

namespace edgert {

// edgert_context_params with defaults applied and ranges checked.
struct ContextConfig {
    int32_t n_ctx = 0;
    int32_t n_threads = 0;
    int32_t n_threads_batch = 0;
    int32_t n_batch = 0;
    DType kv_type_k = DType::F16;
    DType kv_type_v = DType::F16;
    uint64_t memory_budget = 0;
};

// Throws StatusError: EDGERT_ERR_INVALID_ARGUMENT for out-of-range values,
// EDGERT_ERR_UNSUPPORTED for the not yet implemented Q8/Q4 KV types.
ContextConfig resolve_context_config(const Model& model, const edgert_context_params& params);

class Context {
public:
    // Throws StatusError(EDGERT_ERR_OUT_OF_MEMORY) if KV cache + scratch exceed memory_budget or
    // cannot be allocated.
    Context(const Model& model, const ContextConfig& config);

    // Validates, then runs the tokens through the model in chunks of n_batch (see edgert_eval).
    void eval(const int32_t* tokens, int32_t n_tokens, float* logits, bool all_logits);
    void trim(int32_t n_keep);

    const Model& model() const { return model_; }
    const ContextConfig& config() const { return config_; }
    int32_t n_past() const { return n_past_; }
    int32_t n_ctx() const { return config_.n_ctx; }
    const KvCache& kv() const { return kv_; }
    // Room for one row of logits, for callers (generate) that need logits of their own.
    float* logits_buffer() { return logits_.data(); }

    // Bytes of KV cache plus scratch this configuration allocates.
    static uint64_t required_bytes(const Model& model, const ContextConfig& config);

private:
    friend void llama_forward(Context& ctx, const int32_t* tokens, int n_tok, int pos0,
                              float* logits, bool all_logits);

    const Model& model_;
    ContextConfig config_;
    KvCache kv_;
    Activations act_;
    AttentionScratch attn_scratch_;
    std::vector<float> logits_;
    std::unique_ptr<ThreadPool> pool_;        // decode
    std::unique_ptr<ThreadPool> pool_batch_;  // prefill; null when it would equal pool_
    int32_t n_past_ = 0;
};

}  // namespace edgert
