// attention_neon.cpp — AArch64 NEON + dotprod (armv8.2-a+dotprod) position loop; scalar twin:
// attention_scalar.cpp. SDOT is s8 x s8, so Q8 codes are re-centred (u ^ 0x80) and 128 * qsum
// restores sum(q * u) exactly; Q4 codes (<= 15) are already valid s8. Handles head_dim % 16 == 0;
// anything else goes to the scalar loop.
#include <arm_neon.h>
#include <math.h>

#include <cstring>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_row_format.h"

namespace edgert {
namespace attn {
namespace {

inline float half_to_float(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

inline void load_dm(const uint8_t* row, float* d, float* m) {
    uint16_t h[2];
    std::memcpy(h, row, 4);
    *d = half_to_float(h[0]);
    *m = half_to_float(h[1]);
}

inline void unpack_q4(const uint8_t* body, int64_t D, uint8_t* out) {
    const uint8x16_t lo_mask = vdupq_n_u8(15);
    for (int64_t i = 0; i < D / 2; i += 16) {
        const uint8x16_t b = vld1q_u8(body + i);
        vst1q_u8(out + i, vandq_u8(b, lo_mask));
        vst1q_u8(out + D / 2 + i, vshrq_n_u8(b, 4));
    }
}

// d * u + m for 16 codes.
inline void store_u8_as_f32(const uint8x16_t b, float d, float m, float* out) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(b)), hi = vmovl_u8(vget_high_u8(b));
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(out, vfmaq_n_f32(vm, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d));
    vst1q_f32(out + 4, vfmaq_n_f32(vm, vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo))), d));
    vst1q_f32(out + 8, vfmaq_n_f32(vm, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d));
    vst1q_f32(out + 12, vfmaq_n_f32(vm, vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi))), d));
}

// Row to float values (d * u + m for the quantized types).
inline void decode_row(KVType t, const uint8_t* row, int64_t D, float* out) {
    switch (t) {
        case KVType::F32: std::memcpy(out, row, static_cast<size_t>(D) * 4); return;
        case KVType::F16:
            for (int64_t i = 0; i < D; i += 4) {
                uint16_t h[4];
                std::memcpy(h, row + 2 * i, 8);
                vst1q_f32(out + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))));
            }
            return;
        case KVType::Q8: {
            float d, m;
            load_dm(row, &d, &m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D; i += 16) store_u8_as_f32(vld1q_u8(u + i), d, m, out + i);
            return;
        }
        case KVType::Q4: {
            float d, m;
            load_dm(row, &d, &m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D / 2; i += 16) {
                const uint8x16_t b = vld1q_u8(u + i);
                store_u8_as_f32(vandq_u8(b, vdupq_n_u8(15)), d, m, out + i);
                store_u8_as_f32(vshrq_n_u8(b, 4), d, m, out + D / 2 + i);
            }
            return;
        }
    }
}

// exp(x) for x <= 0 (Cephes expf polynomial); clamped at -87 so 2^n stays a normal float.
inline float32x4_t exp_ps(float32x4_t x) {
    x = vmaxq_f32(x, vdupq_n_f32(-87.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t y = vdupq_n_f32(1.9875691500e-4f);
    y = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), y, r);
    y = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), y, r);
    y = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), y, r);
    y = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), y, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), y, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

void quant_scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
    const int64_t D = p.head_dim;
    const bool q8 = a.k_type == KVType::Q8;
    int8x16_t ks[kMaxHeadDim / 16];
    for (int64_t j = 0; j < np; ++j) {
        const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
        float d, m;
        load_dm(row, &d, &m);
        const uint8_t* u = row + kQuantHeaderBytes;
        if (!q8) {
            unpack_q4(u, D, p.ku + j * D);
            u = p.ku + j * D;
        }
        for (int64_t c = 0; c < D / 16; ++c) {
            const uint8x16_t v = vld1q_u8(u + 16 * c);
            ks[c] = vreinterpretq_s8_u8(q8 ? veorq_u8(v, vdupq_n_u8(0x80)) : v);
        }
        for (int64_t r = 0; r < p.rows; ++r) {
            const int8_t* q = p.qi + r * D;
            int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
            int64_t c = 0;
            for (; c + 2 <= D / 16; c += 2) {
                acc0 = vdotq_s32(acc0, ks[c], vld1q_s8(q + 16 * c));
                acc1 = vdotq_s32(acc1, ks[c + 1], vld1q_s8(q + 16 * c + 16));
            }
            if (c < D / 16) acc0 = vdotq_s32(acc0, ks[c], vld1q_s8(q + 16 * c));
            const int32_t isum = vaddvq_s32(vaddq_s32(acc0, acc1)) + (q8 ? 128 * p.qsum[r] : 0);
            p.s[r * kTile + j] =
                p.qd[r] * (d * static_cast<float>(isum) + m * static_cast<float>(p.qsum[r]));
        }
    }
}

struct Ops {
    static void scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        const int64_t D = p.head_dim;
        if (kv_type_is_quantized(a.k_type)) return quant_scores(a, p, p0, np);
        for (int64_t j = 0; j < np; ++j) {
            float* k = p.kf + j * D;
            decode_row(a.k_type, row_at(a.k, a.k_stride, p0 + j), D, k);
            for (int64_t r = 0; r < p.rows; ++r) {
                const float* q = p.qf + r * D;
                float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
                for (int64_t i = 0; i < D; i += 8) {
                    acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), vld1q_f32(k + i));
                    acc1 = vfmaq_f32(acc1, vld1q_f32(q + i + 4), vld1q_f32(k + i + 4));
                }
                p.s[r * kTile + j] = vaddvq_f32(vaddq_f32(acc0, acc1));
            }
        }
    }
    static void q_dot_half(const AttnPass& p, const uint16_t* h, float* out) {
        const int64_t D = p.head_dim;
        float o[kMaxHeadDim];
        for (int64_t i = 0; i < D; i += 4) vst1q_f32(o + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
        for (int64_t r = 0; r < p.rows; ++r) {
            float32x4_t acc = vdupq_n_f32(0.0f);
            for (int64_t i = 0; i < D; i += 4) acc = vfmaq_f32(acc, vld1q_f32(p.qf + r * D + i), vld1q_f32(o + i));
            out[r] = vaddvq_f32(acc);
        }
    }
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        for (int64_t j = 0; j < np; ++j) {
            decode_row(a.v_type, row_at(a.v, a.v_stride, p0 + j), p.head_dim, p.vf + j * p.head_dim);
        }
    }
    static float max_row(const float* s, int64_t n) {
        float32x4_t mx = vdupq_n_f32(-INFINITY);
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) mx = vmaxq_f32(mx, vld1q_f32(s + j));
        float r = vmaxvq_f32(mx);
        for (; j < n; ++j) r = s[j] > r ? s[j] : r;
        return r;
    }
    static float exp_sum(float* s, int64_t n, float m) {
        const float32x4_t vm = vdupq_n_f32(m);
        float32x4_t sum = vdupq_n_f32(0.0f);
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(s + j), vm));
            vst1q_f32(s + j, e);
            sum = vaddq_f32(sum, e);
        }
        float total = vaddvq_f32(sum);
        if (j < n) {
            float t[4];
            for (int k = 0; k < 4; ++k) t[k] = j + k < n ? s[j + k] - m : -INFINITY;
            vst1q_f32(t, exp_ps(vld1q_f32(t)));
            for (int64_t k = 0; j + k < n; ++k) total += (s[j + k] = t[k]);
        }
        return total;
    }
    static void scale_row(float* x, int64_t n, float c) {
        for (int64_t i = 0; i < n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), c));
    }
    // Two query rows at a time over 16 columns (8 accumulator chains); each V load feeds both
    // rows. head_dim % 16 == 0 here.
    static void axpy_rows(AttnPass& p, int64_t np) {
        const int64_t D = p.head_dim;
        int64_t r = 0;
        for (; r + 2 <= p.rows; r += 2) {
            const float* w0 = p.s + r * kTile;
            const float* w1 = w0 + kTile;
            float* c0 = p.acc + r * D;
            float* c1 = c0 + D;
            for (int64_t i = 0; i < D; i += 16) {
                float32x4_t a0 = vld1q_f32(c0 + i), a1 = vld1q_f32(c0 + i + 4);
                float32x4_t a2 = vld1q_f32(c0 + i + 8), a3 = vld1q_f32(c0 + i + 12);
                float32x4_t b0 = vld1q_f32(c1 + i), b1 = vld1q_f32(c1 + i + 4);
                float32x4_t b2 = vld1q_f32(c1 + i + 8), b3 = vld1q_f32(c1 + i + 12);
                for (int64_t j = 0; j < np; ++j) {
                    const float* v = p.vf + j * D + i;
                    const float x = w0[j], y = w1[j];
                    const float32x4_t v0 = vld1q_f32(v), v1 = vld1q_f32(v + 4);
                    const float32x4_t v2 = vld1q_f32(v + 8), v3 = vld1q_f32(v + 12);
                    a0 = vfmaq_n_f32(a0, v0, x);
                    a1 = vfmaq_n_f32(a1, v1, x);
                    a2 = vfmaq_n_f32(a2, v2, x);
                    a3 = vfmaq_n_f32(a3, v3, x);
                    b0 = vfmaq_n_f32(b0, v0, y);
                    b1 = vfmaq_n_f32(b1, v1, y);
                    b2 = vfmaq_n_f32(b2, v2, y);
                    b3 = vfmaq_n_f32(b3, v3, y);
                }
                vst1q_f32(c0 + i, a0);
                vst1q_f32(c0 + i + 4, a1);
                vst1q_f32(c0 + i + 8, a2);
                vst1q_f32(c0 + i + 12, a3);
                vst1q_f32(c1 + i, b0);
                vst1q_f32(c1 + i + 4, b1);
                vst1q_f32(c1 + i + 8, b2);
                vst1q_f32(c1 + i + 12, b3);
            }
        }
        for (; r < p.rows; ++r) {
            const float* w = p.s + r * kTile;
            float* acc = p.acc + r * D;
            for (int64_t i = 0; i < D; i += 16) {
                float32x4_t a0 = vld1q_f32(acc + i), a1 = vld1q_f32(acc + i + 4);
                float32x4_t a2 = vld1q_f32(acc + i + 8), a3 = vld1q_f32(acc + i + 12);
                for (int64_t j = 0; j < np; ++j) {
                    const float* v = p.vf + j * D + i;
                    a0 = vfmaq_n_f32(a0, vld1q_f32(v), w[j]);
                    a1 = vfmaq_n_f32(a1, vld1q_f32(v + 4), w[j]);
                    a2 = vfmaq_n_f32(a2, vld1q_f32(v + 8), w[j]);
                    a3 = vfmaq_n_f32(a3, vld1q_f32(v + 12), w[j]);
                }
                vst1q_f32(acc + i, a0);
                vst1q_f32(acc + i + 4, a1);
                vst1q_f32(acc + i + 8, a2);
                vst1q_f32(acc + i + 12, a3);
            }
        }
    }
};

#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_neon(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos) {
    if (p.head_dim % 16 != 0) return attention_pass_scalar(a, p, first, n_pos);
    run_tiled_pass<Ops>(a, p, first, n_pos);
}

}  // namespace attn
}  // namespace edgert
