// kv_rows.cpp — encoding and decoding of KV-cache rows (layouts in kv_row_format.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention/kv_attention.h"
#include "kernels/attention/kv_hadamard.h"
#include "kernels/attention/kv_round.h"
#include "kernels/attention/kv_row_format.h"
#include "kernels/dtypes.h"

namespace edgert {

using attn::kQuantHeaderBytes;

const char* kv_type_label(KVType t) {
    switch (t) {
        case KVType::F32: return "f32";
        case KVType::F16: return "f16";
        case KVType::Q8: return "q8";
        case KVType::Q4: return "q4";
    }
    return "?";
}

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

bool kv_has_block_offset(KVType t, bool is_key) { return is_key && t == KVType::Q4; }

size_t kv_offset_bytes_per_row(KVType t, bool is_key, int64_t head_dim) {
    return kv_has_block_offset(t, is_key) ? static_cast<size_t>(2 * head_dim / kKvOffsetBlock) : 0;
}

namespace {

// Saturate rather than store inf: an overflowing row then decodes wrong but finite, and cannot
// turn a whole attention output into NaN.
uint16_t to_f16_saturated(float x) {
    return fp32_to_fp16(std::min(std::max(x, -65504.0f), 65504.0f));
}

// A code in [0, levels]: q clamped, NaN to 0, before the conversion, which would be undefined for
// NaN or out of range (a row holding NaN/Inf from a hostile model's weights). Equal to
// min(max(q, 0), levels) for every non-NaN q, so finite rows encode as before.
inline uint8_t clamp_code(float q, float levels) {
    return static_cast<uint8_t>(q > 0.0f ? (q < levels ? q : levels) : 0.0f);
}

void row_range(const float* x, int64_t n, float* lo, float* hi) {
    *lo = *hi = x[0];
    for (int64_t i = 1; i < n; ++i) {
        *lo = std::min(*lo, x[i]);
        *hi = std::max(*hi, x[i]);
    }
}

// Asymmetric min/max quantization to u in [0, levels]; d and m are rounded to f16 first so the
// codes are chosen against the scale the decoder will actually use.
void quantize_asym(const float* x, int64_t n, int levels, uint16_t* d16, uint16_t* m16,
                   uint8_t* u) {
    float lo, hi;
    row_range(x, n, &lo, &hi);
    *d16 = to_f16_saturated((hi - lo) / static_cast<float>(levels));
    *m16 = to_f16_saturated(lo);
    const float d = fp16_to_fp32(*d16), m = fp16_to_fp32(*m16);
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        const float q = std::nearbyint((x[i] - m) * inv);  // |q| may exceed 2^22 before clamping
        u[i] = clamp_code(q, static_cast<float>(levels));
    }
}

// Squared reconstruction error of x[0..n) (n % 8 == 0) under (d, m) with codes 0..levels. Eight
// partial sums so the compiler can vectorize the loop.
float quant_error(const float* x, int64_t n, float levels, float d, float m) {
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    float part[8] = {};
    for (int64_t i = 0; i < n; i += 8) {
        for (int k = 0; k < 8; ++k) {
            const float q = std::min(std::max(attn::round_even((x[i + k] - m) * inv), 0.0f), levels);
            const float e = d * q + m - x[i + k];
            part[k] += e * e;
        }
    }
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// int4 keys: the range is clipped at either end when that lowers the row's squared error (the
// extremes lose a little, every other value gets finer steps); measured on SmolLM2 it takes
// about a tenth off int4 K's perplexity cost on top of the block offset (+3.08% -> +2.76%; a
// cheaper coordinate search over the same clips gave +3.02%). The full 5 x 5 grid of clips in
// steps of 3% of the range costs ~1.5 us per row, at store time only.
void quantize_asym_mse(const float* x, int64_t n, int levels, uint16_t* d16, uint16_t* m16,
                       uint8_t* u) {
    float lo, hi;
    row_range(x, n, &lo, &hi);
    const float range = hi - lo, L = static_cast<float>(levels);
    auto params = [&](int clip_lo, int clip_hi, uint16_t* d, uint16_t* m) {
        const float a = 0.03f * static_cast<float>(clip_lo) * range;
        const float b = 0.03f * static_cast<float>(clip_hi) * range;
        *d = to_f16_saturated((range - a - b) / L);
        *m = to_f16_saturated(lo + a);
    };
    auto error = [&](int clip_lo, int clip_hi) {
        uint16_t d, m;
        params(clip_lo, clip_hi, &d, &m);
        return quant_error(x, n, L, fp16_to_fp32(d), fp16_to_fp32(m));
    };
    // A row with a spike (a key that a query may align with, such as an attention sink's) keeps
    // its full range: clipping the spike would cut exactly the part of q.k that matters.
    float mean = 0.0f, var = 0.0f;
    for (int64_t i = 0; i < n; ++i) mean += x[i];
    mean /= static_cast<float>(n);
    for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    const float dev = std::max(hi - mean, mean - lo);
    const bool spiky = dev * dev > 20.0f * var / static_cast<float>(n);  // beyond ~4.5 sigma
    int best_lo = 0, best_hi = 0;
    float best = error(0, 0);
    for (int a = 0; a <= 4 && !spiky; ++a)
        for (int b = 0; b <= 4; ++b) {
            if (a == 0 && b == 0) continue;
            const float e = error(a, b);
            if (e < best) best = e, best_lo = a, best_hi = b;
        }
    params(best_lo, best_hi, d16, m16);
    const float d = fp16_to_fp32(*d16), m = fp16_to_fp32(*m16);
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int64_t i = 0; i < n; ++i)
        u[i] = clamp_code(attn::round_even((x[i] - m) * inv), L);
}

void store_row(KVType t, bool is_key, const float* src, int64_t n, uint8_t* dst,
               const uint16_t* offset) {
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
    if (kv_has_block_offset(t, is_key)) {
        if (offset != nullptr)
            for (int64_t i = 0; i < n; ++i) x[i] -= fp16_to_fp32(offset[i]);
        quantize_asym_mse(x, n, 15, &d16, &m16, u);
    } else {
        quantize_asym(x, n, t == KVType::Q8 ? 255 : 15, &d16, &m16, u);
    }
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

void kv_block_offset(const float* src, int64_t src_stride, int64_t n_rows, int64_t head_dim,
                     uint16_t* offset) {
    float mean[kKvMaxHeadDim] = {};
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t i = 0; i < head_dim; ++i) mean[i] += src[r * src_stride + i];
    const float inv = n_rows > 0 ? 1.0f / static_cast<float>(n_rows) : 0.0f;
    for (int64_t i = 0; i < head_dim; ++i) mean[i] *= inv;
    attn::hadamard_inplace(mean, head_dim);
    for (int64_t i = 0; i < head_dim; ++i) offset[i] = to_f16_saturated(mean[i]);
}

void kv_sink_row(const float* src, int64_t head_dim, uint16_t* out) {
    kv_block_offset(src, head_dim, 1, head_dim, out);  // the mean of one row is that row
}

void kv_store_rows(KVType t, bool is_key, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t head_dim, void* dst, size_t dst_stride, const uint16_t* offset) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t r = 0; r < n_rows; ++r) {
        store_row(t, is_key, src + r * src_stride, head_dim, out + r * dst_stride, offset);
    }
}

void kv_load_row(KVType t, bool is_key, const void* row, int64_t head_dim, float* out,
                 const uint16_t* offset) {
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
    if (offset != nullptr && kv_has_block_offset(t, is_key))
        for (int64_t i = 0; i < n; ++i) out[i] += fp16_to_fp32(offset[i]);
    if (attn::kv_type_is_rotated(t, is_key)) attn::hadamard_inplace(out, n);
}

bool kv_head_dim_supported(KVType t, int64_t head_dim) {
    return attn::head_dim_supported(t, head_dim);
}

}  // namespace edgert
