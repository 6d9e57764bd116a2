// kv_cache.h — per-layer K and V rows of every position in the context window.
//
// Layout per layer: [n_ctx][kv_dim] with kv_dim = num_kv_heads * head_dim, one row per position,
// so appending and trimming are plain index changes. K/V are stored once per KV head; GQA query
// heads read their group's head (no duplication). Element type f16 (default) or f32.
#pragma once
#include <cstdint>
#include <memory>

#include "kernels/dtypes.h"

namespace edgert {

class KvCache {
public:
    KvCache(int n_layers, int n_ctx, int kv_dim, DType k_type, DType v_type);

    static uint64_t bytes_per_token(int n_layers, int kv_dim, DType k_type, DType v_type);
    uint64_t bytes_per_token() const { return bytes_per_token(n_layers_, kv_dim_, k_type_, v_type_); }
    uint64_t bytes_total() const { return bytes_per_token() * uint64_t(n_ctx_); }

    // Writes n_tok rows of K and V (kv_dim floats each) at positions [pos, pos + n_tok).
    void store(int layer, int pos, int n_tok, const float* k, const float* v);

    DType k_type() const { return k_type_; }
    DType v_type() const { return v_type_; }
    int kv_dim() const { return kv_dim_; }
    // Base of a layer's [n_ctx][kv_dim] block.
    const uint8_t* k_layer(int layer) const { return k_.get() + layer_offset(layer, k_type_); }
    const uint8_t* v_layer(int layer) const { return v_.get() + layer_offset(layer, v_type_); }

private:
    size_t layer_offset(int layer, DType t) const;

    int n_layers_, n_ctx_, kv_dim_;
    DType k_type_, v_type_;
    // Left uninitialized on purpose: a position is only read after it was written, and untouched
    // pages of a large window never count against resident memory.
    std::unique_ptr<uint8_t[]> k_, v_;
};

}  // namespace edgert
