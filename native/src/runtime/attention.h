// attention.h — causal grouped-query attention over the KV cache.
//
// Query head h reads KV head h / (num_heads / num_kv_heads) straight from the cache; K/V are never
// expanded per query head. Work is split over (token, query head) pairs on the thread pool.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/kv_cache.h"

namespace edgert {

class ThreadPool;

struct AttentionShape {
    int n_heads;
    int n_kv_heads;
    int head_dim;
};

// Per-thread buffers, sized once per context so decoding never allocates.
class AttentionScratch {
public:
    AttentionScratch(int n_threads, int n_ctx, int head_dim);
    static uint64_t bytes(int n_threads, int n_ctx, int head_dim);
    float* scores(int thread) { return scores_.data() + size_t(thread) * n_ctx_; }
    float* row(int thread) { return rows_.data() + size_t(thread) * 2 * head_dim_; }
    int n_threads() const { return n_threads_; }

private:
    int n_threads_, n_ctx_, head_dim_;
    std::vector<float> scores_;
    std::vector<float> rows_;  // one K and one V row per thread, converted from the cache type
};

// q: [n_tok][n_heads*head_dim], RoPE applied. Token t sits at position pos0 + t, whose K/V are
// already in the cache, and attends to positions [0, pos0 + t]. out: same shape as q.
void gqa_attention(const float* q, int n_tok, int pos0, const KvCache& kv, int layer,
                   const AttentionShape& shape, float* out, AttentionScratch& scratch,
                   ThreadPool* pool);

}  // namespace edgert
