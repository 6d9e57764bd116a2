// packed_qformat_neon.h — the NEON kernel of every qformat.h type (q5_0, q5_1, iq4_nl, q3_k,
// q4_k, q5_k, q6_k, iq4_xs) on the packed_qformat.h layout, 8 rows per group, used by all three
// NEON tables. Part of kernels_neon_body.inc; included only there.
//
// Per block and group the code fields become 8 quads x 2 halves (rows 0-3 / 4-7) of signed int8
// values once (v = code - zero, or iq4's level via TBL), so the dots are s8 x s8 with no offset
// terms: SDOT by lane where the table has dotprod (neondot, neoni8mm), else VMULL + VPADD +
// VPADAL (|v q| <= 127 * 127, a pair sum fits int16). The neoni8mm table runs the SDOT kernel
// for these types: SMMLA would need the rows paired per sub-scale. Then per token and half one
// int32 chain per sub-scale and one FMA with (D * sc) * x.d, as the x86 twins.
// A weight without the packed copy runs the scalar kernel.
#pragma once

#include "kernels/packed_qformat.h"

constexpr int kQfRows = 8;

// acc += sum over the 4 bytes of each int32 lane of w times activation quad L of x.
template <int L>
inline int32x4_t qf_dot_lane(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if defined(EDGERT_NEON_DOTPROD)
    return vdotq_laneq_s32(acc, w, x, L);
#else
    const int8x16_t xq = vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(x), L));
    const int16x8_t pairs = vpaddq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(xq)), vmull_high_s8(w, xq));
    return vpadalq_s16(acc, pairs);
#endif
}

template <DType QT>
inline void qf_decode_block(const uint8_t* q, int8x16_t w[8][2]) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t o_nib = pq_nib_offset(QT, kQfRows), o_two = pq_two_offset(QT, kQfRows),
                     o_one = pq_one_offset(QT, kQfRows);
    uint8x16_t u[8][2];
    for (int c = 0; c < 8; ++c) u[c][0] = u[c][1] = vdupq_n_u8(0);
    for (int h = 0; h < 2; ++h) {
        if constexpr (F.nib) {
            for (int c = 0; c < 4; ++c) {
                const uint8x16_t v = vld1q_u8(q + o_nib + 32 * c + 16 * h);
                u[c][h] = vandq_u8(v, vdupq_n_u8(0x0f));
                u[4 + c][h] = vshrq_n_u8(v, 4);
            }
        }
        if constexpr (F.two) {
            for (int hh = 0; hh < 2; ++hh) {
                const uint8x16_t v = vld1q_u8(q + o_two + 32 * hh + 16 * h);
                for (int m = 0; m < 4; ++m) {
                    // Bits 2m..2m+1 straight to bits two_shift.. (one shift), then one bit-select
                    // into the code (whose bits there are clear): 2 ops per quad.
                    const uint8x16_t moved = vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(F.two_shift - 2 * m)));
                    u[4 * hh + m][h] = vbslq_u8(vdupq_n_u8(static_cast<uint8_t>(3 << F.two_shift)), moved, u[4 * hh + m][h]);
                }
            }
        }
        if constexpr (F.one) {
            const uint8x16_t v = vld1q_u8(q + o_one + 16 * h);
            for (int c = 0; c < 8; ++c) {
                // Bit c to bit one_shift (one shift), then one bit-select into the code.
                const uint8x16_t moved = vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(F.one_shift - c)));
                u[c][h] = vbslq_u8(vdupq_n_u8(static_cast<uint8_t>(1 << F.one_shift)), moved, u[c][h]);
            }
        }
    }
    if constexpr (F.table) {
        const int8x16_t tbl = vld1q_s8(kIQ4Values);
        for (int c = 0; c < 8; ++c)
            for (int h = 0; h < 2; ++h) w[c][h] = vqtbl1q_s8(tbl, u[c][h]);
    } else {
        for (int c = 0; c < 8; ++c)
            for (int h = 0; h < 2; ++h)
                w[c][h] = vsubq_s8(vreinterpretq_s8_u8(u[c][h]), vdupq_n_s8(static_cast<int8_t>(F.zero)));
    }
}

inline float32x4_t qf_scales(const uint8_t* p, int h, bool is_unsigned) {
    const int8x8_t raw = vld1_s8(reinterpret_cast<const int8_t*>(p));
    const int16x8_t wide = is_unsigned ? vreinterpretq_s16_u16(vmovl_u8(vreinterpret_u8_s8(raw))) : vmovl_s8(raw);
    return vcvtq_f32_s32(h == 0 ? vmovl_s16(vget_low_s16(wide)) : vmovl_high_s16(wide));
}

template <DType QT, int T>
inline void qf_tile(const uint8_t* grp, int64_t n_super, int64_t nb, const BlockQ8Act* x, int64_t t,
                    float* y, int64_t ldy, int64_t r, int valid_rows) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t head = pq_head_bytes(QT, kQfRows), bb = pq_block_bytes(QT, kQfRows),
                     sb = pq_super_bytes(QT, kQfRows);
    float32x4_t acc[T][2];
    for (int j = 0; j < T; ++j) acc[j][0] = acc[j][1] = vdupq_n_f32(0.0f);
    for (int64_t s = 0; s < n_super; ++s) {
        const uint8_t* p = grp + s * sb;
        const float16x8_t d16 = vreinterpretq_f16_u8(vld1q_u8(p));
        const float32x4_t d[2] = {vcvt_f32_f16(vget_low_f16(d16)), vcvt_high_f32_f16(d16)};
        float32x4_t dmin[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        if constexpr (F.k_min || F.f_min) {
            const float16x8_t m16 = vreinterpretq_f16_u8(vld1q_u8(p + 2 * kQfRows));
            dmin[0] = vcvt_f32_f16(vget_low_f16(m16));
            dmin[1] = vcvt_high_f32_f16(m16);
        }
        for (int k = 0; k < F.blocks_per_super; ++k) {
            const uint8_t* q = p + head + k * bb;
            const int64_t b = s * F.blocks_per_super + k;
            float32x4_t s0[2] = {d[0], d[1]}, s1[2] = {d[0], d[1]}, mn[2] = {dmin[0], dmin[1]};
            for (int h = 0; h < 2; ++h) {
                if constexpr (F.n_sub >= 1) s0[h] = vmulq_f32(d[h], qf_scales(q, h, false));
                if constexpr (F.n_sub == 2) s1[h] = vmulq_f32(d[h], qf_scales(q + kQfRows, h, false));
                if constexpr (F.k_min) mn[h] = vmulq_f32(dmin[h], qf_scales(q + kQfRows * F.n_sub, h, true));
            }
            int8x16_t w[8][2];
            qf_decode_block<QT>(q, w);
            for (int j = 0; j < T; ++j) {
                const BlockQ8Act& xb = x[(t + j) * nb + b];
                const int8x16_t x0 = vld1q_s8(xb.qs), x1 = vld1q_s8(xb.qs + 16);
                for (int h = 0; h < 2; ++h) {
                    int32x4_t a0 = vdupq_n_s32(0), a1 = vdupq_n_s32(0);
                    a0 = qf_dot_lane<0>(a0, w[0][h], x0);
                    a0 = qf_dot_lane<1>(a0, w[1][h], x0);
                    a0 = qf_dot_lane<2>(a0, w[2][h], x0);
                    a0 = qf_dot_lane<3>(a0, w[3][h], x0);
                    // per-16 types: a second chain; the others continue the first (exact)
                    int32x4_t& a = F.n_sub == 2 ? a1 : a0;
                    a = qf_dot_lane<0>(a, w[4][h], x1);
                    a = qf_dot_lane<1>(a, w[5][h], x1);
                    a = qf_dot_lane<2>(a, w[6][h], x1);
                    a = qf_dot_lane<3>(a, w[7][h], x1);
                    float32x4_t v = acc[j][h];
                    if constexpr (F.n_sub == 2) {
                        v = vfmaq_f32(v, vcvtq_f32_s32(a0), vmulq_n_f32(s0[h], xb.d));
                        v = vfmaq_f32(v, vcvtq_f32_s32(a1), vmulq_n_f32(s1[h], xb.d));
                    } else {
                        v = vfmaq_f32(v, vcvtq_f32_s32(a0), vmulq_n_f32(s0[h], xb.d));
                    }
                    if constexpr (F.k_min) v = vfmsq_n_f32(v, mn[h], xb.s);
                    if constexpr (F.f_min) v = vfmaq_n_f32(v, mn[h], xb.s);
                    acc[j][h] = v;
                }
            }
        }
    }
    for (int j = 0; j < T; ++j) {
        float* out = y + (t + j) * ldy + r;
        if (valid_rows == kQfRows) {
            vst1q_f32(out, acc[j][0]);
            vst1q_f32(out + 4, acc[j][1]);
        } else {
            float tmp[8];
            vst1q_f32(tmp, acc[j][0]);
            vst1q_f32(tmp + 4, acc[j][1]);
            for (int i = 0; i < valid_rows; ++i) out[i] = tmp[i];
        }
    }
}

template <DType QT>
void gemm_qformat(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy) {
    if (w.packed == nullptr) {
        gemm_qformat_ref<QT>(w, xq, r0, r1, t0, t1, y, ldy);
        return;
    }
    constexpr QFormat F = qformat(QT);
    constexpr int T = 4;
    constexpr size_t sb = pq_super_bytes(QT, kQfRows);
    const int64_t nb = w.cols / kQK, n_super = nb / F.blocks_per_super;
    const uint8_t* base = static_cast<const uint8_t*>(w.packed);
    for (int64_t r = r0; r < r1; r += kQfRows) {  // r0 is a multiple of kQfRows (pack_rows)
        const int valid = static_cast<int>(r1 - r < kQfRows ? r1 - r : kQfRows);
        const uint8_t* grp = base + (r / kQfRows) * n_super * sb;
        int64_t t = t0;
        for (; t + T <= t1; t += T) qf_tile<QT, T>(grp, n_super, nb, xq, t, y, ldy, r, valid);
        switch (t1 - t) {
            case 3: qf_tile<QT, 3>(grp, n_super, nb, xq, t, y, ldy, r, valid); break;
            case 2: qf_tile<QT, 2>(grp, n_super, nb, xq, t, y, ldy, r, valid); break;
            case 1: qf_tile<QT, 1>(grp, n_super, nb, xq, t, y, ldy, r, valid); break;
            default: break;
        }
    }
}
