// attention_ref.cpp — the oracle: decode every cache row to float (kv_load_row, which undoes any
// rotation), then plain softmax attention in double. Slow and obviously right.
#include <cmath>
#include <vector>

#include "kernels/attention/kv_attention.h"
#include "kernels/attention/kv_hadamard.h"
#include "kernels/dtypes.h"

namespace edgert {

void attention_ref(const AttentionArgs& a) {
    const int64_t D = a.head_dim;
    const int64_t n_pos = a.pos0 + a.n_tokens;
    // Positions before the first query's window are never read (a ring no longer holds them).
    const int64_t first = a.window > 0 && a.pos0 + 1 > a.window ? a.pos0 + 1 - a.window : 0;
    std::vector<float> K(static_cast<size_t>(n_pos * D)), V(K.size());
    for (int64_t p = first; p < n_pos; ++p) {
        const int64_t row = a.ring > 0 ? p % a.ring : p;
        const uint16_t* off = a.k_offset ? a.k_offset + (row / kKvOffsetBlock) * D : nullptr;
        kv_load_row(a.k_type, true, static_cast<const uint8_t*>(a.k) + row * a.k_stride, D,
                    &K[static_cast<size_t>(p * D)], off);
        if (p == 0 && a.k_offset != nullptr && a.k_sink != nullptr) {
            for (int64_t i = 0; i < D; ++i) K[static_cast<size_t>(i)] = fp16_to_fp32(a.k_sink[i]);
            attn::hadamard_inplace(K.data(), D);  // back to the original basis
        }
        kv_load_row(a.v_type, false, static_cast<const uint8_t*>(a.v) + row * a.v_stride, D,
                    &V[static_cast<size_t>(p * D)]);
    }
    std::vector<double> s(static_cast<size_t>(n_pos)), o(static_cast<size_t>(D));
    for (int64_t t = 0; t < a.n_tokens; ++t) {
        const int64_t n = a.pos0 + t + 1;
        const int64_t lo = a.window > 0 && n > a.window ? n - a.window : 0;
        for (int64_t g = 0; g < a.n_group; ++g) {
            const float* q = a.q + t * a.q_token_stride + g * D;
            double mx = -INFINITY;
            for (int64_t p = lo; p < n; ++p) {
                double d = 0.0;
                for (int64_t i = 0; i < D; ++i) d += static_cast<double>(q[i]) * K[p * D + i];
                s[p] = d * a.scale;
                if (a.softcap > 0.0f) s[p] = a.softcap * std::tanh(s[p] / a.softcap);
                mx = std::fmax(mx, s[p]);
            }
            double sum = 0.0;
            for (int64_t p = lo; p < n; ++p) sum += (s[p] = std::exp(s[p] - mx));
            for (int64_t i = 0; i < D; ++i) o[i] = 0.0;
            for (int64_t p = lo; p < n; ++p) {
                for (int64_t i = 0; i < D; ++i) o[i] += s[p] * V[p * D + i];
            }
            float* out = a.out + t * a.out_token_stride + g * D;
            for (int64_t i = 0; i < D; ++i) out[i] = static_cast<float>(o[i] / sum);
        }
    }
}

}  // namespace edgert
