// kv_cache.cpp — allocation and row encoding of the KV cache (rows: kernels/attention).
#include "runtime/kv_cache.h"

namespace edgert {

KvCache::KvCache(int n_layers, int n_ctx, int n_kv_heads, int head_dim, KVType k_type,
                 KVType v_type)
    : n_layers_(n_layers), n_ctx_(n_ctx), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      k_type_(k_type), v_type_(v_type), k_row_(kv_row_bytes(k_type, head_dim)),
      v_row_(kv_row_bytes(v_type, head_dim)) {
    const size_t rows = size_t(n_layers) * size_t(n_kv_heads) * size_t(n_ctx);
    k_.reset(new uint8_t[rows * k_row_]);
    v_.reset(new uint8_t[rows * v_row_]);
}

uint64_t KvCache::bytes_per_token(int n_layers, int n_kv_heads, int head_dim, KVType k_type,
                                  KVType v_type) {
    return uint64_t(n_layers) * uint64_t(n_kv_heads) *
           (kv_row_bytes(k_type, head_dim) + kv_row_bytes(v_type, head_dim));
}

void KvCache::store(int layer, int pos, int n_tok, const float* k, const float* v) {
    const int64_t kv_dim = int64_t(n_kv_heads_) * head_dim_;
    for (int h = 0; h < n_kv_heads_; ++h) {
        kv_store_rows(k_type_, true, k + int64_t(h) * head_dim_, kv_dim, n_tok, head_dim_,
                      k_head(layer, h) + size_t(pos) * k_row_, k_row_);
        kv_store_rows(v_type_, false, v + int64_t(h) * head_dim_, kv_dim, n_tok, head_dim_,
                      v_head(layer, h) + size_t(pos) * v_row_, v_row_);
    }
}

}  // namespace edgert
