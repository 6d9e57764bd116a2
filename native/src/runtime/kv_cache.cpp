// kv_cache.cpp — storage and f32→f16 conversion on append.
#include "runtime/kv_cache.h"

#include <cstring>

namespace edgert {

KvCache::KvCache(int n_layers, int n_ctx, int kv_dim, DType k_type, DType v_type)
    : n_layers_(n_layers), n_ctx_(n_ctx), kv_dim_(kv_dim), k_type_(k_type), v_type_(v_type) {
    const size_t rows = size_t(n_layers) * size_t(n_ctx);
    k_.reset(new uint8_t[rows * dtype_row_bytes(k_type, kv_dim)]);
    v_.reset(new uint8_t[rows * dtype_row_bytes(v_type, kv_dim)]);
}

uint64_t KvCache::bytes_per_token(int n_layers, int kv_dim, DType k_type, DType v_type) {
    return uint64_t(n_layers) * (dtype_row_bytes(k_type, kv_dim) + dtype_row_bytes(v_type, kv_dim));
}

size_t KvCache::layer_offset(int layer, DType t) const {
    return size_t(layer) * size_t(n_ctx_) * dtype_row_bytes(t, kv_dim_);
}

namespace {

void store_rows(uint8_t* dst, DType t, const float* src, size_t n) {
    if (t == DType::F32) {
        std::memcpy(dst, src, n * sizeof(float));
        return;
    }
    auto* h = reinterpret_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
}

}  // namespace

void KvCache::store(int layer, int pos, int n_tok, const float* k, const float* v) {
    const size_t n = size_t(n_tok) * size_t(kv_dim_);
    store_rows(const_cast<uint8_t*>(k_layer(layer)) + size_t(pos) * dtype_row_bytes(k_type_, kv_dim_),
               k_type_, k, n);
    store_rows(const_cast<uint8_t*>(v_layer(layer)) + size_t(pos) * dtype_row_bytes(v_type_, kv_dim_),
               v_type_, v, n);
}

}  // namespace edgert
