// kv_cache.cpp — allocation and row encoding of the KV cache (rows: kernels/attention).
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/checked_size.h"

namespace edgert {

KvCache::KvCache(int n_layers, int n_ctx, int n_kv_heads, int head_dim, KVType k_type,
                 KVType v_type)
    : n_layers_(n_layers), n_ctx_(n_ctx), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      k_type_(k_type), v_type_(v_type), k_row_(kv_row_bytes(k_type, head_dim)),
      v_row_(kv_row_bytes(v_type, head_dim)) {
    const size_t rows = size_t(n_layers) * size_t(n_kv_heads) * size_t(n_ctx);
    k_.reset(new uint8_t[rows * k_row_]);
    v_.reset(new uint8_t[rows * v_row_]);
    if (kv_has_block_offset(k_type, true)) {
        n_blocks_ = int((int64_t(n_ctx) + kKvOffsetBlock - 1) / kKvOffsetBlock);
        // Per (layer, KV head): the sink row, then one offset per block.
        const size_t n = size_t(n_layers) * size_t(n_kv_heads) * size_t(n_blocks_ + 1) * size_t(head_dim);
        k_offset_.reset(new uint16_t[n]());
    }
}

size_t KvCache::k_offset_bytes(int n) const {
    if (!k_offset_ || n <= 0) return 0;
    const size_t blocks = size_t((int64_t(n) + kKvOffsetBlock - 1) / kKvOffsetBlock);
    return (1 + blocks) * size_t(head_dim_) * sizeof(uint16_t);
}

uint64_t KvCache::bytes_per_token(int n_layers, int n_kv_heads, int head_dim, KVType k_type,
                                  KVType v_type) {
    // Rows are at most 4 * head_dim + 4 bytes each (< 2^34), so only the products can overflow.
    const uint64_t row = kv_row_bytes(k_type, head_dim) + kv_offset_bytes_per_row(k_type, true, head_dim) +
                         kv_row_bytes(v_type, head_dim);
    return size_mul(size_mul(uint64_t(n_layers), uint64_t(n_kv_heads), "the KV cache"), row, "the KV cache");
}

void KvCache::store(int layer, int pos, int n_tok, const float* k, const float* v) {
    const int64_t kv_dim = int64_t(n_kv_heads_) * head_dim_;
    const int64_t D = head_dim_;
    for (int h = 0; h < n_kv_heads_; ++h) {
        const float* kh = k + int64_t(h) * D;
        if (!k_offset_) {
            kv_store_rows(k_type_, true, kh, kv_dim, n_tok, D, k_head(layer, h) + size_t(pos) * k_row_, k_row_);
        } else {
            // One call per offset block; a block written from its start gets a fresh offset.
            for (int p = pos; p < pos + n_tok;) {
                const int b = int(p / kKvOffsetBlock);
                const int end = int(std::min<int64_t>(pos + n_tok, int64_t(b + 1) * kKvOffsetBlock));
                uint16_t* sink = offset_state(layer, h);
                uint16_t* off = sink + D + size_t(b) * size_t(D);
                if (p == 0) kv_sink_row(kh, D, sink);
                if (p == int64_t(b) * kKvOffsetBlock) {
                    // Position 0 (kept exactly as the sink) stays out of block 0's mean.
                    const int skip = p == 0 ? 1 : 0;
                    if (end - p - skip >= kKvMinOffsetRows) {
                        kv_block_offset(kh + int64_t(p + skip - pos) * kv_dim, kv_dim, end - p - skip, D, off);
                    } else if (b == 0) {
                        std::memset(off, 0, size_t(D) * sizeof(uint16_t));  // plain rows
                    } else {
                        const int64_t first = b == 1 ? 1 : 0;
                        std::vector<float> prev(size_t(kKvOffsetBlock * D));
                        const uint16_t* poff = off - D;
                        for (int64_t j = first; j < kKvOffsetBlock; ++j) {
                            const int64_t q = int64_t(b - 1) * kKvOffsetBlock + j;
                            kv_load_row(k_type_, true, k_head(layer, h) + size_t(q) * k_row_, D,
                                        prev.data() + (j - first) * D, poff);
                        }
                        kv_block_offset(prev.data(), D, kKvOffsetBlock - first, D, off);
                    }
                }
                kv_store_rows(k_type_, true, kh + int64_t(p - pos) * kv_dim, kv_dim, end - p, D,
                              k_head(layer, h) + size_t(p) * k_row_, k_row_, off);
                p = end;
            }
        }
        kv_store_rows(v_type_, false, v + int64_t(h) * D, kv_dim, n_tok, D,
                      v_head(layer, h) + size_t(pos) * v_row_, v_row_);
    }
}

}  // namespace edgert
