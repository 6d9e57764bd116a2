// kv_cache.cpp — allocation, row encoding and window bookkeeping of the KV cache (rows:
// kernels/attention).
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/checked_size.h"

namespace edgert {
namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

std::vector<KvLayerSpec> uniform_layers(int n_layers, int n_kv_heads) {
    return std::vector<KvLayerSpec>(size_t(n_layers), KvLayerSpec{n_kv_heads, 0});
}

uint64_t row_bytes(int head_dim, KVType k_type, KVType v_type) {
    // Offsets averaged over their block, as bytes_per_token has always counted them.
    return kv_row_bytes(k_type, head_dim) + kv_offset_bytes_per_row(k_type, true, head_dim) +
           kv_row_bytes(v_type, head_dim);
}

}  // namespace

int KvCache::layer_rows(int sliding_window, int n_ctx, int n_batch) {
    if (sliding_window <= 0) return n_ctx;
    const int64_t ring = round_up(int64_t(sliding_window) + n_batch - 1, kKvOffsetBlock) + kKvOffsetBlock;
    return ring < n_ctx ? int(ring) : n_ctx;
}

uint64_t KvCache::bytes_for(const std::vector<KvLayerSpec>& layers, int n_ctx, int n_batch,
                            int head_dim, KVType k_type, KVType v_type) {
    // Rows are at most 4 * head_dim + 4 bytes each (< 2^34), so only the products can overflow.
    uint64_t total = 0;
    for (const KvLayerSpec& s : layers) {
        const uint64_t rows = size_mul(uint64_t(s.n_kv_heads), uint64_t(layer_rows(s.sliding_window, n_ctx, n_batch)),
                                       "the KV cache");
        total = size_add(total, size_mul(rows, row_bytes(head_dim, k_type, v_type), "the KV cache"), "the KV cache");
    }
    return total;
}

uint64_t KvCache::bytes_per_token(int n_layers, int n_kv_heads, int head_dim, KVType k_type,
                                  KVType v_type) {
    return size_mul(size_mul(uint64_t(n_layers), uint64_t(n_kv_heads), "the KV cache"),
                    row_bytes(head_dim, k_type, v_type), "the KV cache");
}

KvCache::KvCache(int n_layers, int n_ctx, int n_kv_heads, int head_dim, KVType k_type,
                 KVType v_type)
    : KvCache(uniform_layers(n_layers, n_kv_heads), n_ctx, n_ctx, head_dim, k_type, v_type) {}

KvCache::KvCache(const std::vector<KvLayerSpec>& specs, int n_ctx, int n_batch, int head_dim,
                 KVType k_type, KVType v_type)
    : n_ctx_(n_ctx), head_dim_(head_dim), k_type_(k_type), v_type_(v_type),
      k_row_(kv_row_bytes(k_type, head_dim)), v_row_(kv_row_bytes(v_type, head_dim)) {
    const bool offsets = kv_has_block_offset(k_type, true);
    size_t rows = 0, offset_vals = 0;
    for (const KvLayerSpec& s : specs) {
        Layer L;
        L.n_kv_heads = s.n_kv_heads;
        L.window = s.sliding_window;
        L.rows = layer_rows(s.sliding_window, n_ctx, n_batch);
        L.ring = L.rows < n_ctx;
        L.first_row = rows;
        L.first_offset = offset_vals;
        rows += size_t(L.n_kv_heads) * size_t(L.rows);
        if (offsets) offset_vals += size_t(L.n_kv_heads) * offset_values(L.rows, head_dim);
        if (L.window == 0) bytes_per_token_ += uint64_t(L.n_kv_heads) * row_bytes(head_dim, k_type, v_type);
        layers_.push_back(L);
    }
    bytes_total_ = bytes_for(specs, n_ctx, n_batch, head_dim, k_type, v_type);
    k_.reset(new uint8_t[rows * k_row_]);
    v_.reset(new uint8_t[rows * v_row_]);
    if (offsets) k_offset_.reset(new uint16_t[offset_vals]());
}

void KvCache::store_keys(int layer, int h, int pos, int n_tok, const float* kh, int64_t kv_dim) {
    const int64_t D = head_dim_;
    uint8_t* base = k_head(layer, h);
    // One call per offset block: a block never straddles a ring's wrap, and a block written from
    // its start gets a fresh offset.
    for (int p = pos; p < pos + n_tok;) {
        const int b = int(p / kKvOffsetBlock);
        const int end = int(std::min<int64_t>(pos + n_tok, int64_t(b + 1) * kKvOffsetBlock));
        uint16_t* off = nullptr;
        if (k_offset_) {
            uint16_t* sink = offset_state(layer, h);
            off = block_offset(layer, h, p);
            if (p == 0) kv_sink_row(kh, D, sink);
            if (p == int64_t(b) * kKvOffsetBlock) {
                // Position 0 (kept exactly as the sink) stays out of block 0's mean.
                const int skip = p == 0 ? 1 : 0;
                if (end - p - skip >= kKvMinOffsetRows) {
                    kv_block_offset(kh + int64_t(p + skip - pos) * kv_dim, kv_dim, end - p - skip, D, off);
                } else if (b == 0) {
                    std::memset(off, 0, size_t(D) * sizeof(uint16_t));  // plain rows
                } else {
                    // The previous block's decoded keys (still held: a ring keeps a spare block).
                    const int64_t first = b == 1 ? 1 : 0;
                    std::vector<float> prev(size_t(kKvOffsetBlock * D));
                    for (int64_t j = first; j < kKvOffsetBlock; ++j) {
                        const int64_t q = int64_t(b - 1) * kKvOffsetBlock + j;
                        kv_load_row(k_type_, true, base + size_t(row_of(layer, q)) * k_row_, D,
                                    prev.data() + (j - first) * D, block_offset(layer, h, q));
                    }
                    kv_block_offset(prev.data(), D, kKvOffsetBlock - first, D, off);
                }
            }
        }
        kv_store_rows(k_type_, true, kh + int64_t(p - pos) * kv_dim, kv_dim, end - p, D,
                      base + size_t(row_of(layer, p)) * k_row_, k_row_, off);
        p = end;
    }
}

void KvCache::store(int layer, int pos, int n_tok, const float* k, const float* v) {
    Layer& L = layers_[size_t(layer)];
    const int64_t kv_dim = int64_t(L.n_kv_heads) * head_dim_;
    const int64_t D = head_dim_;
    for (int h = 0; h < L.n_kv_heads; ++h) {
        store_keys(layer, h, pos, n_tok, k + int64_t(h) * D, kv_dim);
        // V rows in pieces that do not cross a ring's wrap (a full layer is one piece).
        for (int p = pos; p < pos + n_tok;) {
            const int r = row_of(layer, p);
            const int n = std::min(pos + n_tok - p, L.rows - r);
            kv_store_rows(v_type_, false, v + int64_t(h) * D + int64_t(p - pos) * kv_dim, kv_dim, n, D,
                          v_head(layer, h) + size_t(r) * v_row_, v_row_);
            p += n;
        }
    }
    if (L.ring) {
        // Rows of positions [end - rows, ...) are gone; a block started here took the offset
        // slot of the block `rows` positions earlier, so that block is gone as a whole.
        const int end = pos + n_tok;
        int lo = std::max(L.kept_from, end - L.rows);
        const int last_start = int((end - 1) / kKvOffsetBlock * kKvOffsetBlock);
        if (k_offset_ && last_start >= pos) lo = std::max<int>(lo, last_start + int(kKvOffsetBlock) - L.rows);
        L.kept_from = std::max(lo, 0);
    }
}

int KvCache::needed_from(int layer, int n_past) const {
    const Layer& L = layers_[size_t(layer)];
    if (L.window == 0 || n_past == 0) return 0;
    const int window_start = std::max(0, n_past - L.window + 1);
    if (!k_offset_) return window_start;
    return std::min(window_start, int((n_past - 1) / kKvOffsetBlock * kKvOffsetBlock));
}

bool KvCache::can_trim_to(int n_keep) const {
    if (n_keep == 0) return true;
    for (int l = 0; l < n_layers(); ++l) {
        if (needed_from(l, n_keep) < layers_[size_t(l)].kept_from) return false;
    }
    return true;
}

int KvCache::min_trim(int n_past) const {
    // needed_from only grows with n, so the first n that works is the answer (an error path).
    for (int n = 1; n < n_past; ++n) {
        if (can_trim_to(n)) return n;
    }
    return n_past;
}

void KvCache::trim(int n_keep) {
    if (n_keep == 0) {
        for (Layer& L : layers_) L.kept_from = 0;
    }
}

}  // namespace edgert
