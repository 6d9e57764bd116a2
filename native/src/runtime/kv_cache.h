// kv_cache.h — the K and V rows of every layer, KV head and position the model can still attend.
//
// Rows are kv_attention.h's: one per (layer, KV head, position), encoded by kv_store_rows for
// the cache's KV type (F32, F16, Q8, Q4; K and V chosen separately). K is stored after RoPE.
// Layout: per layer, [KV head][rows] rows, so one head's positions are contiguous and attention
// streams them with a stride of one row. GQA query heads read their group's head; K/V are never
// duplicated. A row depends only on its own position and its block's offset (Q4 keys: one
// offset per kKvOffsetBlock positions, chosen when the block's first row is written and kept
// until the block is written from its start again), so trimming is an index change and the rows
// past n_past are simply invalid.
//
// A full-attention layer holds n_ctx rows. A sliding-window layer (window W) needs only the last
// W positions, so when n_ctx is larger it holds a ring of ring_rows(W, n_batch) rows: position p
// lives in row p % rows. The ring holds the window plus one chunk of n_batch tokens (all of a
// chunk is stored before its attention runs) plus one offset block: a block started in the ring
// takes over the offset slot of the block `rows` positions earlier, which must by then be out of
// every query's window. Rows are a multiple of kKvOffsetBlock, so a block never straddles the
// wrap and attention tiles (one block each) stay contiguous.
//
// Each window layer remembers the oldest position it still holds intact (kept_from): writing
// overwrites older positions, and a state file (context_state.cpp) brings back only the window.
// trim() to n_keep is possible when the window of position n_keep is still held.
//
// Each layer has its own KV head count (a structurally pruned model's differ), its heads' rows
// laid out after the previous layer's, so the cache holds exactly the rows the model uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention/kv_attention.h"

namespace edgert {

// One layer's attention, as the cache needs to know it.
struct KvLayerSpec {
    int n_kv_heads = 0;
    int sliding_window = 0;  // 0: full attention
};

class KvCache {
public:
    // Every layer full attention with n_kv_heads heads (tests, tools).
    KvCache(int n_layers, int n_ctx, int n_kv_heads, int head_dim, KVType k_type, KVType v_type);
    // n_batch: the longest chunk stored before one attention call (sizes the rings).
    KvCache(const std::vector<KvLayerSpec>& layers, int n_ctx, int n_batch, int head_dim,
            KVType k_type, KVType v_type);

    // Rows a layer with this window holds for this n_ctx and n_batch (n_ctx without a window).
    static int layer_rows(int sliding_window, int n_ctx, int n_batch);
    // Bytes of the whole cache for this configuration (rows, offsets, sinks), without allocating.
    static uint64_t bytes_for(const std::vector<KvLayerSpec>& layers, int n_ctx, int n_batch,
                              int head_dim, KVType k_type, KVType v_type);
    // Bytes per position of the layers that keep every position (window layers cost a fixed
    // ring, counted in bytes_total()).
    static uint64_t bytes_per_token(int n_layers, int n_kv_heads, int head_dim, KVType k_type,
                                    KVType v_type);
    uint64_t bytes_per_token() const { return bytes_per_token_; }
    uint64_t bytes_total() const { return bytes_total_; }

    // Encodes n_tok tokens' K and V ([n_tok][n_kv_heads * head_dim] floats each) into the rows
    // of positions [pos, pos + n_tok) of a layer (n_tok <= n_batch for a ring layer).
    void store(int layer, int pos, int n_tok, const float* k, const float* v);
    // The oldest position of a layer that continuing from n_past positions reads: the window
    // of position n_past and, for Q4 keys, the block that the next new block's offset is taken
    // from (a block started by fewer than kKvMinOffsetRows rows averages the one before it).
    // 0 for full layers.
    int needed_from(int layer, int n_past) const;
    // Whether every layer still holds what continuing from n_keep reads (0 always works);
    // trim() forgets nothing else, so the caller only moves its n_past.
    bool can_trim_to(int n_keep) const;
    // The smallest n_keep > 0 that can_trim_to() accepts (n_past: only the current state).
    int min_trim(int n_past) const;
    void trim(int n_keep);

    KVType k_type() const { return k_type_; }
    KVType v_type() const { return v_type_; }
    int n_layers() const { return int(layers_.size()); }
    int n_kv_heads(int layer = 0) const { return layers_[size_t(layer)].n_kv_heads; }
    int head_dim() const { return head_dim_; }
    int n_ctx() const { return n_ctx_; }
    size_t k_row_bytes() const { return k_row_; }
    size_t v_row_bytes() const { return v_row_; }
    int sliding_window(int layer) const { return layers_[size_t(layer)].window; }
    // Rows of a layer's ring (positions wrap modulo it), or 0 if position p is row p.
    int ring(int layer) const { return layers_[size_t(layer)].ring ? layers_[size_t(layer)].rows : 0; }
    int row_of(int layer, int64_t pos) const {
        const Layer& L = layers_[size_t(layer)];
        return int(L.ring ? pos % L.rows : pos);
    }
    // Oldest position a layer still holds (0 for full layers).
    int kept_from(int layer) const { return layers_[size_t(layer)].kept_from; }
    // After a load that brought back positions [first, n_past) of a window layer.
    void set_kept_from(int layer, int first) { layers_[size_t(layer)].kept_from = first; }
    // First row (row 0) of a (layer, KV head); row r is r row-bytes further (row_of(pos)).
    const uint8_t* k_head(int layer, int head) const { return k_.get() + row_offset(layer, head) * k_row_; }
    const uint8_t* v_head(int layer, int head) const { return v_.get() + row_offset(layer, head) * v_row_; }
    uint8_t* k_head(int layer, int head) { return k_.get() + row_offset(layer, head) * k_row_; }
    uint8_t* v_head(int layer, int head) { return v_.get() + row_offset(layer, head) * v_row_; }
    // Q4 keys' extra state of a (layer, KV head): position 0's exact key (f16, rotated), then
    // one offset per block slot ([slot][head_dim] f16; block b in slot b, or b % slots in a
    // ring). Null when the K type has none (kv_has_block_offset).
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
    // The offset of the block holding position pos (k_offset_ only).
    const uint16_t* block_offset(int layer, int head, int64_t pos) const {
        return offset_state(layer, head) + block_slot(layer, pos);
    }
    uint16_t* block_offset(int layer, int head, int64_t pos) {
        return offset_state(layer, head) + block_slot(layer, pos);
    }

private:
    struct Layer {
        int n_kv_heads = 0, window = 0, rows = 0;
        bool ring = false;
        size_t first_row = 0;     // rows of the layers before this one, all heads
        size_t first_offset = 0;  // offset-state values of the layers before
        int kept_from = 0;
    };
    size_t block_slot(int layer, int64_t pos) const {
        const Layer& L = layers_[size_t(layer)];
        const int64_t b = pos / kKvOffsetBlock;
        return size_t(head_dim_) * size_t(1 + (L.ring ? b % (L.rows / kKvOffsetBlock) : b));
    }
    size_t row_offset(int layer, int head) const {
        const Layer& L = layers_[size_t(layer)];
        return L.first_row + size_t(head) * size_t(L.rows);
    }
    size_t offset_index(int layer, int head) const {
        const Layer& L = layers_[size_t(layer)];
        return L.first_offset + size_t(head) * offset_values(L.rows, head_dim_);
    }
    // Sink row plus one offset per block slot.
    static size_t offset_values(int rows, int head_dim) {
        return size_t(1 + (int64_t(rows) + kKvOffsetBlock - 1) / kKvOffsetBlock) * size_t(head_dim);
    }
    void store_keys(int layer, int h, int pos, int n_tok, const float* kh, int64_t kv_dim);

    std::vector<Layer> layers_;
    int n_ctx_, head_dim_;
    KVType k_type_, v_type_;
    size_t k_row_, v_row_;
    uint64_t bytes_per_token_ = 0, bytes_total_ = 0;
    // Left uninitialized on purpose: a position is only read after it was written, and untouched
    // pages of a large window never count against resident memory.
    std::unique_ptr<uint8_t[]> k_, v_;
    std::unique_ptr<uint16_t[]> k_offset_;
};

}  // namespace edgert
