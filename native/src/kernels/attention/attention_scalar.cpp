// attention_scalar.cpp — the scalar position loop: the fallback path and the structure every SIMD
// file mirrors (integer q.k for quantized keys, per-row scales applied after the dot product,
// V rows decoded to floats once per tile and shared by every query row).
#include <math.h>

#include <cstring>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_row_format.h"
#include "kernels/dtypes.h"

namespace edgert {
namespace attn {
namespace {

void load_dm(const uint8_t* row, float* d, float* m) {
    uint16_t h[2];
    std::memcpy(h, row, 4);
    *d = fp16_to_fp32(h[0]);
    *m = fp16_to_fp32(h[1]);
}

// Row to float values (d * u + m for the quantized types).
void decode_row(KVType t, const uint8_t* row, int64_t D, float* out) {
    switch (t) {
        case KVType::F32: std::memcpy(out, row, static_cast<size_t>(D) * 4); return;
        case KVType::F16:
            for (int64_t i = 0; i < D; ++i) {
                uint16_t h;
                std::memcpy(&h, row + 2 * i, 2);
                out[i] = fp16_to_fp32(h);
            }
            return;
        case KVType::Q8: {
            float d, m;
            load_dm(row, &d, &m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D; ++i) out[i] = d * static_cast<float>(u[i]) + m;
            return;
        }
        case KVType::Q4: {
            float d, m;
            load_dm(row, &d, &m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D / 2; ++i) {
                out[i] = d * static_cast<float>(u[i] & 15) + m;
                out[i + D / 2] = d * static_cast<float>(u[i] >> 4) + m;
            }
            return;
        }
    }
}

const uint8_t* key_codes(KVType t, const uint8_t* row, int64_t D, uint8_t* scratch) {
    const uint8_t* u = row + kQuantHeaderBytes;
    if (t == KVType::Q8) return u;
    for (int64_t i = 0; i < D / 2; ++i) {
        scratch[i] = u[i] & 15;
        scratch[i + D / 2] = u[i] >> 4;
    }
    return scratch;
}

struct Ops {
    static void scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        const int64_t D = p.head_dim;
        for (int64_t j = 0; j < np; ++j) {
            const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
            if (kv_type_is_quantized(a.k_type)) {
                float d, m;
                load_dm(row, &d, &m);
                const uint8_t* u = key_codes(a.k_type, row, D, p.ku + j * D);
                for (int64_t r = 0; r < p.rows; ++r) {
                    const int8_t* q = p.qi + r * D;
                    int32_t isum = 0;
                    for (int64_t i = 0; i < D; ++i) isum += q[i] * u[i];
                    p.s[r * kTile + j] =
                        p.qd[r] * (d * static_cast<float>(isum) + m * static_cast<float>(p.qsum[r]));
                }
            } else {
                float* k = p.kf + j * D;
                decode_row(a.k_type, row, D, k);
                for (int64_t r = 0; r < p.rows; ++r) {
                    const float* q = p.qf + r * D;
                    float dot = 0.0f;
                    for (int64_t i = 0; i < D; ++i) dot += q[i] * k[i];
                    p.s[r * kTile + j] = dot;
                }
            }
        }
    }
    static void q_dot_half(const AttnPass& p, const uint16_t* h, float* out) {
        const int64_t D = p.head_dim;
        float o[kMaxHeadDim];
        for (int64_t i = 0; i < D; ++i) o[i] = fp16_to_fp32(h[i]);
        for (int64_t r = 0; r < p.rows; ++r) {
            float c = 0.0f;
            for (int64_t i = 0; i < D; ++i) c += p.qf[r * D + i] * o[i];
            out[r] = c;
        }
    }
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        for (int64_t j = 0; j < np; ++j) {
            decode_row(a.v_type, row_at(a.v, a.v_stride, p0 + j), p.head_dim, p.vf + j * p.head_dim);
        }
    }
    static float max_row(const float* s, int64_t n) {
        float mx = s[0];
        for (int64_t j = 1; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
        return mx;
    }
    static float exp_sum(float* s, int64_t n, float m) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) sum += (s[j] = expf(s[j] - m));
        return sum;
    }
    static void scale_row(float* x, int64_t n, float c) {
        for (int64_t i = 0; i < n; ++i) x[i] *= c;
    }
    static void axpy_rows(AttnPass& p, int64_t np) {
        const int64_t D = p.head_dim;
        for (int64_t r = 0; r < p.rows; ++r) {
            float* acc = p.acc + r * D;
            for (int64_t j = 0; j < np; ++j) {
                const float c = p.s[r * kTile + j];
                for (int64_t i = 0; i < D; ++i) acc[i] += c * p.vf[j * D + i];
            }
        }
    }
};

#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_scalar(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos) {
    run_tiled_pass<Ops>(a, p, first, n_pos);
}

}  // namespace attn
}  // namespace edgert
