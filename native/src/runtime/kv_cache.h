// kv_cache.h — the K and V rows of every layer, KV head and position of the context window.
//
// Rows are kv_attention.h's: one per (layer, KV head, position), encoded by kv_store_rows for
// the cache's KV type (F32, F16, Q8, Q4; K and V chosen separately). K is stored after RoPE.
// Layout: [layer][KV head][n_ctx] rows, so one head's positions are contiguous and attention
// streams them with a stride of one row. GQA query heads read their group's head; K/V are never
// duplicated. A row depends only on its own position and its block's offset (Q4 keys: one
// offset per kKvOffsetBlock positions, chosen when the block's first row is written and kept
// until the block is written from its start again), so trimming is an index change and the rows
// past n_past are simply invalid. A structurally pruned model has a KV head count per layer; the
// layers' heads are then laid out back to back (head_base_), so the cache holds exactly the rows
// the model uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention/kv_attention.h"

namespace edgert {

class KvCache {
public:
    // Every layer with n_kv_heads heads.
    KvCache(int n_layers, int n_ctx, int n_kv_heads, int head_dim, KVType k_type, KVType v_type);
    // layer_kv_heads[l] heads in layer l.
    KvCache(const std::vector<int>& layer_kv_heads, int n_ctx, int head_dim, KVType k_type, KVType v_type);

    // total_kv_heads: KV heads summed over the layers.
    static uint64_t bytes_per_token(int64_t total_kv_heads, int head_dim, KVType k_type, KVType v_type);
    uint64_t bytes_per_token() const {
        return bytes_per_token(int64_t(head_base_.back()), head_dim_, k_type_, v_type_);
    }
    uint64_t bytes_total() const { return bytes_per_token() * uint64_t(n_ctx_); }

    // Encodes n_tok tokens' K and V ([n_tok][n_kv_heads * head_dim] floats each) into the rows
    // of positions [pos, pos + n_tok) of a layer.
    void store(int layer, int pos, int n_tok, const float* k, const float* v);

    KVType k_type() const { return k_type_; }
    KVType v_type() const { return v_type_; }
    int n_layers() const { return n_layers_; }
    int n_kv_heads(int layer) const { return int(head_base_[size_t(layer) + 1] - head_base_[size_t(layer)]); }
    int head_dim() const { return head_dim_; }
    int n_ctx() const { return n_ctx_; }
    size_t k_row_bytes() const { return k_row_; }
    size_t v_row_bytes() const { return v_row_; }
    // First row (position 0) of a (layer, KV head); position p is p row-bytes further.
    const uint8_t* k_head(int layer, int head) const { return k_.get() + head_offset(layer, head, k_row_); }
    const uint8_t* v_head(int layer, int head) const { return v_.get() + head_offset(layer, head, v_row_); }
    uint8_t* k_head(int layer, int head) { return k_.get() + head_offset(layer, head, k_row_); }
    uint8_t* v_head(int layer, int head) { return v_.get() + head_offset(layer, head, v_row_); }
    // Q4 keys' extra state of a (layer, KV head), one contiguous range (saved and loaded as is):
    // position 0's exact key (f16, rotated), then one offset per block ([block][head_dim] f16).
    // Null when the K type has none (kv_has_block_offset).
    const uint16_t* offset_state(int layer, int head) const {
        return k_offset_ ? k_offset_.get() + offset_index(layer, head) : nullptr;
    }
    uint16_t* offset_state(int layer, int head) {
        return k_offset_ ? k_offset_.get() + offset_index(layer, head) : nullptr;
    }
    const uint16_t* k_sink(int layer, int head) const { return offset_state(layer, head); }
    const uint16_t* k_offset(int layer, int head) const {
        return k_offset_ ? offset_state(layer, head) + head_dim_ : nullptr;
    }
    // Bytes of offset_state() that the first n positions use (save/load).
    size_t k_offset_bytes(int n) const;

private:
    size_t offset_index(int layer, int head) const {
        return (head_base_[size_t(layer)] + size_t(head)) * size_t(n_blocks_ + 1) * size_t(head_dim_);
    }
    size_t head_offset(int layer, int head, size_t row) const {
        return (head_base_[size_t(layer)] + size_t(head)) * size_t(n_ctx_) * row;
    }

    int n_layers_, n_ctx_, head_dim_;
    std::vector<size_t> head_base_;  // [n_layers + 1]: index of each layer's first head
    KVType k_type_, v_type_;
    size_t k_row_, v_row_;
    int n_blocks_ = 0;  // offset blocks per (layer, KV head); 0 without offsets
    // Left uninitialized on purpose: a position is only read after it was written, and untouched
    // pages of a large window never count against resident memory.
    std::unique_ptr<uint8_t[]> k_, v_;
    std::unique_ptr<uint16_t[]> k_offset_;
};

}  // namespace edgert
