// attention.h — causal grouped-query attention of one layer over the KV cache.
//
// Every (layer, KV head) goes through edgert::attention() (kernels/attention/kv_attention.h),
// which reads the cache rows of any KV type directly, tiled with an online softmax; the query
// heads of a group share their KV head's rows (GQA via n_group, no K/V copy). The same call
// serves decode (one token) and causal prefill (many). Tasks are (block of query tokens, KV head,
// slice of the group's query heads), spread over the thread pool; slices only appear when there
// are fewer (block, head) tasks than threads, as in decode with few KV heads.
// The oracle for tests is attention_ref() over the same rows.
#pragma once
#include <cstdint>

#include "runtime/kv_cache.h"

namespace edgert {

class ThreadPool;

struct AttentionShape {
    int n_heads;
    int n_kv_heads;
    int head_dim;
    float scale = 0.0f;    // of the scores; 0: 1/sqrt(head_dim)
    float softcap = 0.0f;  // AttentionArgs::softcap
};

// q: [n_tok][n_heads*head_dim], RoPE applied. Token t sits at position pos0 + t, whose K/V are
// already in the cache, and attends to positions [0, pos0 + t] (the layer's last
// sliding_window of them for a window layer). out: same shape as q.
// pool may be null (single-threaded).
void gqa_attention(const float* q, int n_tok, int pos0, const KvCache& kv, int layer,
                   const AttentionShape& shape, float* out, ThreadPool* pool);

}  // namespace edgert
