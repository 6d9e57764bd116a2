// elementwise_ref.cpp — scalar RMSNorm, SwiGLU, GeGLU, residual add, softmax and RoPE (semantics in
// kernels.h). Reductions accumulate in double: this is the oracle, not the fast path.
#include <cmath>
#include <cstring>

#include "kernels/ref/ref_kernels.h"

namespace edgert {

void rmsnorm_ref(float* y, const float* x, const float* weight, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * weight[i];
}

void silu_mul_ref(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void gelu_tanh_mul_ref(float* gate, const float* up, int64_t n) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = 0.5f * g * (1.0f + std::tanh(k * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void add_inplace_ref(float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void softmax_inplace_ref(float* x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = std::fmax(mx, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

namespace {

// The cos/sin of the last position and frequencies a thread turned. A forward pass turns q and k
// of every layer (every head, with partial rotary) at one position with the same frequencies, and
// the double-precision cos/sin of each call were ~1.5% of a SmolLM2-135M decode step; the table
// holds the very values the loop below computed, keyed by the frequencies' values (not their
// address: another model may reuse it).
constexpr int64_t kRopeTableMax = 256;
struct RopeTable {
    int64_t pos = -1, half = 0;
    float freq[kRopeTableMax], c[kRopeTableMax], s[kRopeTableMax];
};
thread_local RopeTable t_rope;

const RopeTable* rope_table(int64_t pos, int64_t half, const float* inv_freq) {
    if (half > kRopeTableMax) return nullptr;
    RopeTable& t = t_rope;
    if (t.pos == pos && t.half == half && std::memcmp(t.freq, inv_freq, sizeof(float) * size_t(half)) == 0)
        return &t;
    for (int64_t i = 0; i < half; ++i) {
        // Angle in double: at long positions pos * inv_freq loses phase in float.
        const double angle = static_cast<double>(pos) * inv_freq[i];
        t.c[i] = static_cast<float>(std::cos(angle));
        t.s[i] = static_cast<float>(std::sin(angle));
    }
    std::memcpy(t.freq, inv_freq, sizeof(float) * size_t(half));
    t.pos = pos;
    t.half = half;
    return &t;
}

}  // namespace

void rope_inplace_ref(float* v, int64_t head_dim, int64_t n_heads, int64_t pos,
                      const float* inv_freq) {
    const int64_t half = head_dim / 2;
    const RopeTable* table = rope_table(pos, half, inv_freq);
    for (int64_t i = 0; i < half; ++i) {
        float c, s;
        if (table != nullptr) {
            c = table->c[i];
            s = table->s[i];
        } else {
            const double angle = static_cast<double>(pos) * inv_freq[i];
            c = static_cast<float>(std::cos(angle));
            s = static_cast<float>(std::sin(angle));
        }
        for (int64_t h = 0; h < n_heads; ++h) {
            float* x = v + h * head_dim;
            const float x0 = x[i];
            const float x1 = x[i + half];
            x[i] = x0 * c - x1 * s;
            x[i + half] = x0 * s + x1 * c;
        }
    }
}

}  // namespace edgert
