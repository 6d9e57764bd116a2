// context.cpp — context parameters, memory accounting and the eval/trim entry points.
#include "runtime/context.h"

#include <algorithm>
#include <new>

#include "core/checked_size.h"
#include "core/status_error.h"
#include "kernels/attention/kv_attention.h"
#include "models/llama.h"

namespace edgert {
namespace {

constexpr int32_t kDefaultMaxCtx = 4096;
constexpr int32_t kDefaultBatch = 512;
constexpr int32_t kMaxThreads = 256;

const char* kv_type_name(KVType t) {
    switch (t) {
        case KVType::F32: return "EDGERT_KV_F32";
        case KVType::F16: return "EDGERT_KV_F16";
        case KVType::Q8: return "EDGERT_KV_Q8";
        case KVType::Q4: return "EDGERT_KV_Q4";
    }
    return "?";
}

KVType kv_type_of(int32_t kv_type, const char* which, int head_dim) {
    if (kv_type == EDGERT_KV_AUTO) {
        // Q8 measured within the quality bar (edgert.h, EDGERT_KV_AUTO) at half the bytes.
        return kv_head_dim_supported(KVType::Q8, head_dim) ? KVType::Q8 : KVType::F16;
    }
    if (kv_type < EDGERT_KV_F32 || kv_type > EDGERT_KV_Q4) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, std::string(which) + " " + std::to_string(kv_type) +
                                              " is not an edgert_kv_type");
    }
    const auto t = static_cast<KVType>(kv_type);
    if (!kv_head_dim_supported(t, head_dim)) {
        fail(EDGERT_ERR_UNSUPPORTED,
             std::string(which) + " " + kv_type_name(t) + " needs head_dim a power of two in [32, " +
                 std::to_string(kKvMaxHeadDim) + "] (its rows are Hadamard-rotated); this "
                 "model has head_dim " + std::to_string(head_dim) + ": use EDGERT_KV_F16");
    }
    return t;
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
    const int head_dim = model.meta.hparams.head_dim;
    ContextConfig c;
    c.kv_type_k = kv_type_of(p.kv_type_k, "kv_type_k", head_dim);
    c.kv_type_v = kv_type_of(p.kv_type_v, "kv_type_v", head_dim);
    c.n_ctx = p.n_ctx ? p.n_ctx : std::min(model.meta.hparams.context_length, kDefaultMaxCtx);
    c.n_threads = p.n_threads ? p.n_threads : std::max(1, physical_core_count());
    c.n_threads_batch = p.n_threads_batch ? p.n_threads_batch : c.n_threads;
    // A chunk longer than the window could never be filled.
    c.n_batch = std::min(p.n_batch ? p.n_batch : kDefaultBatch, c.n_ctx);
    c.memory_budget = p.memory_budget;
    return c;
}

namespace {

uint64_t kv_bytes_per_token(const Hparams& hp, KVType k, KVType v) {
    return KvCache::bytes_per_token(hp.num_layers, hp.num_kv_heads, hp.head_dim, k, v);
}

// What each position of the window costs: its K/V rows and its token id.
uint64_t per_position_bytes(const Hparams& hp, KVType k, KVType v) {
    return size_add(kv_bytes_per_token(hp, k, v), sizeof(int32_t), "the KV cache");
}

// Everything but the per-position part; depends on n_ctx only through n_batch <= n_ctx.
uint64_t fixed_bytes(const Hparams& hp, int32_t n_batch) {
    return size_add(Activations::bytes(hp, n_batch), uint64_t(hp.vocab_size) * sizeof(float), "the context");
}

// The largest n_ctx (<= the requested one) whose cache fits the budget with these KV types; 0 if
// none does.
int64_t largest_fitting_ctx(const Hparams& hp, const ContextConfig& c, KVType k, KVType v) {
    const uint64_t fixed = fixed_bytes(hp, c.n_batch);
    if (fixed >= c.memory_budget) return 0;
    return std::min<int64_t>(c.n_ctx - 1, int64_t((c.memory_budget - fixed) / per_position_bytes(hp, k, v)));
}

std::string suggestion(const Model& model, const ContextConfig& c) {
    const Hparams& hp = model.meta.hparams;
    std::string s;
    const int64_t n = largest_fitting_ctx(hp, c, c.kv_type_k, c.kv_type_v);
    if (n >= 1) s += "n_ctx <= " + std::to_string(n) + " fits with these KV types";
    // Smaller KV types at the requested n_ctx, quality first (K is the more sensitive one, so
    // V shrinks first).
    const std::pair<KVType, KVType> options[] = {
        {KVType::F16, KVType::F16}, {KVType::F16, KVType::Q8}, {KVType::Q8, KVType::Q8},
        {KVType::Q8, KVType::Q4},   {KVType::Q4, KVType::Q4}};
    for (const auto& [k, v] : options) {
        if (!kv_head_dim_supported(k, hp.head_dim) || !kv_head_dim_supported(v, hp.head_dim)) continue;
        if (kv_bytes_per_token(hp, k, v) >= kv_bytes_per_token(hp, c.kv_type_k, c.kv_type_v)) continue;
        const uint64_t need = fixed_bytes(hp, c.n_batch) + per_position_bytes(hp, k, v) * uint64_t(c.n_ctx);
        if (need <= c.memory_budget) {
            s += std::string(s.empty() ? "" : "; or ") + "kv_type_k " + kv_type_name(k) +
                 " with kv_type_v " + kv_type_name(v) + " fits n_ctx " + std::to_string(c.n_ctx) +
                 " (" + std::to_string(need) + " bytes)";
            break;
        }
    }
    if (s.empty()) s = "even n_ctx 1 does not fit: raise the budget or lower n_batch";
    return s;
}

const ContextConfig& check_budget(const Model& model, const ContextConfig& c) {
    const uint64_t need = Context::required_bytes(model, c);
    if (c.memory_budget != 0 && need > c.memory_budget) {
        fail(EDGERT_ERR_OUT_OF_MEMORY,
             "the context needs " + std::to_string(need) + " bytes (KV cache " +
                 std::to_string(kv_bytes_per_token(model.meta.hparams, c.kv_type_k, c.kv_type_v) *
                                uint64_t(c.n_ctx)) +
                 " + scratch) for n_ctx " + std::to_string(c.n_ctx) + " but memory_budget is " +
                 std::to_string(c.memory_budget) + " bytes: " + suggestion(model, c));
    }
    return c;
}

}  // namespace

uint64_t Context::required_bytes(const Model& model, const ContextConfig& c) {
    const Hparams& hp = model.meta.hparams;
    // Every factor comes from the file or the caller; an overflow fails (checked_size.h) before
    // the KvCache and Activations constructors form the same products unchecked.
    return size_add(size_mul(per_position_bytes(hp, c.kv_type_k, c.kv_type_v), uint64_t(c.n_ctx), "the KV cache"),
                    fixed_bytes(hp, c.n_batch), "the context");
}

Context::Context(const Model& model, const ContextConfig& config)
    : model_(model),
      config_(check_budget(model, config)),
      kv_(model.meta.hparams.num_layers, config.n_ctx, model.meta.hparams.num_kv_heads,
          model.meta.hparams.head_dim, config.kv_type_k, config.kv_type_v),
      act_(model.meta.hparams, config.n_batch),
      logits_(size_t(model.meta.hparams.vocab_size)) {
    tokens_.reserve(size_t(config.n_ctx));
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
    // Within the capacity reserved at construction, so this cannot throw.
    tokens_.insert(tokens_.end(), tokens, tokens + n_tokens);
    n_past_ = pos;
}

void Context::trim(int32_t n_keep) {
    if (n_keep < 0 || n_keep > n_past_) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "n_keep " + std::to_string(n_keep) +
                                              " is outside [0, n_past = " + std::to_string(n_past_) + "]");
    }
    // Rows past n_keep stay in memory but are never read again before being overwritten.
    tokens_.resize(size_t(n_keep));
    n_past_ = n_keep;
}

}  // namespace edgert
