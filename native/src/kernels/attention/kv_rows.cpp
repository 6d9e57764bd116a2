// kv_rows.cpp — encoding and decoding of KV-cache rows (layouts in kv_row_format.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention/kv_attention.h"
#include "kernels/attention/kv_hadamard.h"
#include "kernels/attention/kv_row_format.h"
#include "kernels/dtypes.h"

namespace edgert {

using attn::kQuantHeaderBytes;

size_t kv_row_bytes(KVType t, int64_t head_dim) {
    const size_t n = static_cast<size_t>(head_dim);
    switch (t) {
        case KVType::F32: return 4 * n;
        case KVType::F16: return 2 * n;
        case KVType::Q8: return kQuantHeaderBytes + n;
        case KVType::Q4: return kQuantHeaderBytes + n / 2;
    }
    return 0;
}

namespace {

// Saturate rather than store inf: an overflowing row then decodes wrong but finite, and cannot
// turn a whole attention output into NaN.
uint16_t to_f16_saturated(float x) {
    return fp32_to_fp16(std::min(std::max(x, -65504.0f), 65504.0f));
}

// Asymmetric min/max quantization to u in [0, levels]; d and m are rounded to f16 first so the
// codes are chosen against the scale the decoder will actually use.
void quantize_asym(const float* x, int64_t n, int levels, uint16_t* d16, uint16_t* m16,
                   uint8_t* u) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    *d16 = to_f16_saturated((hi - lo) / static_cast<float>(levels));
    *m16 = to_f16_saturated(lo);
    const float d = fp16_to_fp32(*d16), m = fp16_to_fp32(*m16);
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        const float q = std::nearbyint((x[i] - m) * inv);  // |q| may exceed 2^22 before clamping
        u[i] = static_cast<uint8_t>(std::min(std::max(q, 0.0f), static_cast<float>(levels)));
    }
}

void store_row(KVType t, bool is_key, const float* src, int64_t n, uint8_t* dst) {
    switch (t) {
        case KVType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return;
        case KVType::F16:
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_fp16(src[i]);
                std::memcpy(dst + 2 * i, &h, 2);
            }
            return;
        case KVType::Q8:
        case KVType::Q4: break;
    }
    float x[attn::kMaxHeadDim];
    uint8_t u[attn::kMaxHeadDim];
    std::memcpy(x, src, static_cast<size_t>(n) * 4);
    if (attn::kv_type_is_rotated(t, is_key)) attn::hadamard_inplace(x, n);
    uint16_t d16, m16;
    quantize_asym(x, n, t == KVType::Q8 ? 255 : 15, &d16, &m16, u);
    std::memcpy(dst, &d16, 2);
    std::memcpy(dst + 2, &m16, 2);
    uint8_t* body = dst + kQuantHeaderBytes;
    if (t == KVType::Q8) {
        std::memcpy(body, u, static_cast<size_t>(n));
    } else {
        const int64_t h = n / 2;
        for (int64_t j = 0; j < h; ++j) body[j] = static_cast<uint8_t>(u[j] | (u[j + h] << 4));
    }
}

}  // namespace

void kv_store_rows(KVType t, bool is_key, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t head_dim, void* dst, size_t dst_stride) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t r = 0; r < n_rows; ++r) {
        store_row(t, is_key, src + r * src_stride, head_dim, out + r * dst_stride);
    }
}

void kv_load_row(KVType t, bool is_key, const void* row, int64_t head_dim, float* out) {
    const auto* b = static_cast<const uint8_t*>(row);
    const int64_t n = head_dim;
    switch (t) {
        case KVType::F32:
            std::memcpy(out, b, static_cast<size_t>(n) * 4);
            return;
        case KVType::F16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, b + 2 * i, 2);
                out[i] = fp16_to_fp32(h);
            }
            return;
        case KVType::Q8:
        case KVType::Q4: break;
    }
    uint16_t d16, m16;
    std::memcpy(&d16, b, 2);
    std::memcpy(&m16, b + 2, 2);
    const float d = fp16_to_fp32(d16), m = fp16_to_fp32(m16);
    const uint8_t* body = b + kQuantHeaderBytes;
    const int64_t h = n / 2;
    for (int64_t i = 0; i < n; ++i) {
        const int u = t == KVType::Q8 ? body[i] : (i < h ? body[i] & 15 : body[i - h] >> 4);
        out[i] = d * static_cast<float>(u) + m;
    }
    if (attn::kv_type_is_rotated(t, is_key)) attn::hadamard_inplace(out, n);
}

bool kv_head_dim_supported(KVType t, int64_t head_dim) {
    return attn::head_dim_supported(t, head_dim);
}

}  // namespace edgert
