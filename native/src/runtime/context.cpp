// context.cpp — context parameters, memory accounting and the eval/trim entry points.
#include "runtime/context.h"

#include <algorithm>
#include <new>

#include "core/status_error.h"
#include "models/llama.h"

namespace edgert {
namespace {

constexpr int32_t kDefaultMaxCtx = 4096;
constexpr int32_t kDefaultBatch = 512;
constexpr int32_t kMaxThreads = 256;

DType kv_dtype(int32_t kv_type, const char* which) {
    switch (kv_type) {
        case EDGERT_KV_F32: return DType::F32;
        case EDGERT_KV_F16: return DType::F16;
        case EDGERT_KV_Q8:
        case EDGERT_KV_Q4:
            fail(EDGERT_ERR_UNSUPPORTED, std::string(which) +
                                             ": quantized KV caches (Q8/Q4) are not implemented "
                                             "yet; use EDGERT_KV_F16 or EDGERT_KV_F32");
        default:
            fail(EDGERT_ERR_INVALID_ARGUMENT, std::string(which) + " " + std::to_string(kv_type) +
                                                  " is not an edgert_kv_type");
    }
}

}  // namespace

ContextConfig resolve_context_config(const Model& model, const edgert_context_params& p) {
    if (p.n_ctx < 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "n_ctx must be >= 0 (0 = default)");
    if (p.n_threads < 0 || p.n_threads > kMaxThreads) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "n_threads must be in [0, 256] (0 = physical cores)");
    }
    if (p.n_threads_batch < 0 || p.n_threads_batch > kMaxThreads) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "n_threads_batch must be in [0, 256] (0 = n_threads)");
    }
    if (p.n_batch < 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "n_batch must be >= 0 (0 = 512)");
    ContextConfig c;
    c.kv_type_k = kv_dtype(p.kv_type_k, "kv_type_k");
    c.kv_type_v = kv_dtype(p.kv_type_v, "kv_type_v");
    c.n_ctx = p.n_ctx ? p.n_ctx : std::min(model.meta.hparams.context_length, kDefaultMaxCtx);
    c.n_threads = p.n_threads ? p.n_threads : std::max(1, physical_core_count());
    c.n_threads_batch = p.n_threads_batch ? p.n_threads_batch : c.n_threads;
    // A chunk longer than the window could never be filled.
    c.n_batch = std::min(p.n_batch ? p.n_batch : kDefaultBatch, c.n_ctx);
    c.memory_budget = p.memory_budget;
    return c;
}

uint64_t Context::required_bytes(const Model& model, const ContextConfig& c) {
    const Hparams& hp = model.meta.hparams;
    const int kv_dim = hp.num_kv_heads * hp.head_dim;
    const int n_threads = std::max(c.n_threads, c.n_threads_batch);
    // Products of int32 factors; n_ctx * bytes_per_token fits in uint64 for any int32 n_ctx.
    return KvCache::bytes_per_token(hp.num_layers, kv_dim, c.kv_type_k, c.kv_type_v) * uint64_t(c.n_ctx) +
           Activations::bytes(hp, c.n_batch) +
           AttentionScratch::bytes(n_threads, c.n_ctx, hp.head_dim) +
           uint64_t(hp.vocab_size) * sizeof(float);
}

namespace {

const ContextConfig& check_budget(const Model& model, const ContextConfig& c) {
    const uint64_t need = Context::required_bytes(model, c);
    if (c.memory_budget != 0 && need > c.memory_budget) {
        fail(EDGERT_ERR_OUT_OF_MEMORY,
             "the context needs " + std::to_string(need) + " bytes (KV cache + scratch) but "
             "memory_budget is " + std::to_string(c.memory_budget) +
             "; lower n_ctx or n_batch, use EDGERT_KV_F16, or raise the budget");
    }
    return c;
}

}  // namespace

Context::Context(const Model& model, const ContextConfig& config)
    : model_(model),
      config_(check_budget(model, config)),
      kv_(model.meta.hparams.num_layers, config.n_ctx,
          model.meta.hparams.num_kv_heads * model.meta.hparams.head_dim, config.kv_type_k,
          config.kv_type_v),
      act_(model.meta.hparams, config.n_batch),
      attn_scratch_(std::max(config.n_threads, config.n_threads_batch), config.n_ctx,
                    model.meta.hparams.head_dim),
      logits_(size_t(model.meta.hparams.vocab_size)) {
    pool_ = std::make_unique<ThreadPool>(config.n_threads);
    if (config.n_threads_batch != config.n_threads) {
        pool_batch_ = std::make_unique<ThreadPool>(config.n_threads_batch);
    }
}

void Context::eval(const int32_t* tokens, int32_t n_tokens, float* logits, bool all_logits) {
    if (n_tokens < 1) fail(EDGERT_ERR_INVALID_ARGUMENT, "n_tokens must be >= 1");
    if (!tokens) fail(EDGERT_ERR_INVALID_ARGUMENT, "tokens is NULL");
    const int32_t vocab = model_.meta.hparams.vocab_size;
    for (int32_t i = 0; i < n_tokens; ++i) {
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            fail(EDGERT_ERR_TOKEN, "token id " + std::to_string(tokens[i]) + " at index " +
                                       std::to_string(i) + " is outside [0, " +
                                       std::to_string(vocab) + ")");
        }
    }
    if (int64_t(n_past_) + n_tokens > config_.n_ctx) {
        fail(EDGERT_ERR_CONTEXT_OVERFLOW,
             std::to_string(n_tokens) + " tokens do not fit: " + std::to_string(n_past_) + " of " +
                 std::to_string(config_.n_ctx) +
                 " context positions are used; trim the context or create it with a larger n_ctx");
    }
    // n_past_ moves only once every chunk has run, so an exception midway leaves it unchanged.
    int32_t pos = n_past_;
    for (int32_t done = 0; done < n_tokens;) {
        const int32_t n = std::min(config_.n_batch, n_tokens - done);
        const bool last_chunk = done + n == n_tokens;
        float* out = nullptr;
        if (logits && all_logits) out = logits + size_t(done) * size_t(vocab);
        if (logits && !all_logits && last_chunk) out = logits;
        llama_forward(*this, tokens + done, n, pos, out, all_logits);
        pos += n;
        done += n;
    }
    n_past_ = pos;
}

void Context::trim(int32_t n_keep) {
    if (n_keep < 0 || n_keep > n_past_) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "n_keep " + std::to_string(n_keep) +
                                              " is outside [0, n_past = " + std::to_string(n_past_) + "]");
    }
    n_past_ = n_keep;
}

}  // namespace edgert
