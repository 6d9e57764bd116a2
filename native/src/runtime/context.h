// context.h — one conversation over a shared Model: KV cache, the token ids it holds, activation
// scratch, thread pools.
//
// Used by one thread at a time (edgert.h). Every check that can fail happens before any state
// changes, so a failed eval or load leaves the cache exactly as it was.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
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
    KVType kv_type_k = KVType::F16;
    KVType kv_type_v = KVType::F16;
    uint64_t memory_budget = 0;
};

// Throws StatusError: EDGERT_ERR_INVALID_ARGUMENT for out-of-range values or an unknown KV type,
// EDGERT_ERR_UNSUPPORTED for a quantized KV type the model's head_dim cannot use.
ContextConfig resolve_context_config(const Model& model, const edgert_context_params& params);

class Context {
public:
    // Throws StatusError(EDGERT_ERR_OUT_OF_MEMORY) if KV cache + scratch exceed memory_budget
    // (the message names a smaller n_ctx and KV types that fit) or cannot be allocated.
    Context(const Model& model, const ContextConfig& config);

    // Validates, then runs the tokens through the model in chunks of n_batch (see edgert_eval).
    void eval(const int32_t* tokens, int32_t n_tokens, float* logits, bool all_logits);
    // One decode step of several contexts over the same model in one forward pass
    // (edgert_eval_batch): tokens[t] appended to ctxs[t]; logits [n][vocab]. Validates every
    // context first; a failure changes no cache.
    static void eval_batch(Context* const* ctxs, const int32_t* tokens, int32_t n, float* logits);
    void trim(int32_t n_keep);
    // The cache state (model identity, KV types, token ids, rows of positions [0, n_past)) to a
    // file, and back (context_state.cpp). load validates the whole file before touching the
    // cache: EDGERT_ERR_IO (cannot open/read), EDGERT_ERR_FORMAT (not a state file, truncated,
    // checksum mismatch), EDGERT_ERR_VERSION (newer state format), EDGERT_ERR_INVALID_ARGUMENT
    // (another model or other KV types), EDGERT_ERR_CONTEXT_OVERFLOW (more tokens than n_ctx).
    void save(const std::string& path) const;
    void load(const std::string& path);

    const Model& model() const { return model_; }
    const ContextConfig& config() const { return config_; }
    int32_t n_past() const { return n_past_; }
    int32_t n_ctx() const { return config_.n_ctx; }
    const KvCache& kv() const { return kv_; }
    // The token ids whose K/V the cache holds, in position order (n_past of them).
    const std::vector<int32_t>& tokens() const { return tokens_; }
    // Room for one row of logits, for callers (generate) that need logits of their own.
    float* logits_buffer() { return logits_.data(); }

    // Bytes of KV cache plus scratch this configuration allocates.
    static uint64_t required_bytes(const Model& model, const ContextConfig& config);

private:
    friend void llama_forward(Context& ctx, const int32_t* tokens, int n_tok, int pos0,
                              float* logits, bool all_logits);
    friend void llama_forward_batch(Context* const* ctxs, const int32_t* tokens, int n, float* logits);

    const Model& model_;
    ContextConfig config_;
    KvCache kv_;
    Activations act_;
    std::vector<float> logits_;
    std::unique_ptr<ThreadPool> pool_;        // decode
    std::unique_ptr<ThreadPool> pool_batch_;  // prefill; null when it would equal pool_
    int32_t n_past_ = 0;
    std::vector<int32_t> tokens_;  // size n_past_; capacity n_ctx, reserved once
};

}  // namespace edgert
