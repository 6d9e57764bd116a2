// packed_qformat_avx2.h — the AVX2 / AVX-VNNI kernel of every qformat.h type on the
// packed_qformat.h layout, 8 rows per group (one ymm lane per row). Part of kernels_avx2_body.inc.
//
// Same scheme as the AVX-512 twin (packed_qformat_avx512.h): a block's code fields become 8
// quads once per group, its sub-scales float vectors D * sc once; per token, one int32 chain per
// sub-scale started from -Z * sum(q) and one FMA per chain. The u8 x s8 dot of a quad is VPDPBUSD
// with VNNI; without it VPMADDUBSW + VPMADDWD per quad (u8 codes <= 63 times |q| <= 127, two per
// int16 pair: <= 16002, no saturation). iq4's levels + 128 (up to 241) would saturate
// VPMADDUBSW, so the plain AVX2 table takes them signed with the sign trick
// (|v| x sign(q, v), <= 32258) and no offset.
//
// Only 16 ymm registers: the loop keeps the 8 quads and T float accumulators live and recomputes
// nothing per token but the dots; T = 4 (the compiler spills a few quads to L1 for the per-16
// types). A weight without the packed copy runs the scalar kernel.
#pragma once

#include "kernels/packed_qformat.h"
#include "kernels/qformat_offsets.h"

constexpr int kQfRows = 8;
constexpr size_t kQfPrefetchBytes = 2048;

template <DType QT>
constexpr bool qf_signed_table() {
#if defined(EDGERT_AVX_VNNI)
    return false;
#else
    return qformat(QT).table;
#endif
}

template <DType QT>
constexpr int qf_unsigned_zero() {
    return qf_signed_table<QT>() ? 0 : qformat(QT).table ? 128 : qformat(QT).zero;
}

template <DType QT>
inline __m256i qf_dot(__m256i acc, __m256i w, __m256i xq) {
    if constexpr (qf_signed_table<QT>()) {
        const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(xq, w));
        return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    } else {
        return dot_u8s8(acc, w, xq);
    }
}

template <DType QT>
inline void qf_decode_block(const uint8_t* q, __m256i w[8]) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t o_nib = pq_nib_offset(QT, kQfRows), o_two = pq_two_offset(QT, kQfRows),
                     o_one = pq_one_offset(QT, kQfRows);
    const __m256i m0f = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(static_cast<char>(3 << F.two_shift));
    if constexpr (F.nib) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + o_nib + 32 * c));
            w[c] = _mm256_and_si256(v, m0f);
            w[4 + c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
        }
    }
    if constexpr (F.two) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + o_two + 32 * h));
#pragma GCC unroll 4
            for (int m = 0; m < 4; ++m) {
                // Bits 2m..2m+1 of each byte straight to bits two_shift.. with one shift; the
                // 16-bit shift carries bits across bytes only into bits the mask drops.
                const int sh = F.two_shift - 2 * m;
                const __m256i moved = sh > 0 ? _mm256_slli_epi16(v, sh) : sh < 0 ? _mm256_srli_epi16(v, -sh) : v;
                const __m256i f = _mm256_and_si256(moved, m2);
                w[4 * h + m] = F.nib ? _mm256_or_si256(w[4 * h + m], f) : f;
            }
        }
    }
    if constexpr (F.one) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + o_one));
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << F.one_shift));
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
            const __m256i moved = c < F.one_shift ? _mm256_slli_epi16(v, F.one_shift - c)
                                  : c > F.one_shift ? _mm256_srli_epi16(v, c - F.one_shift)
                                                    : v;
            w[c] = _mm256_or_si256(w[c], _mm256_and_si256(moved, bit));
        }
    }
    if constexpr (F.table) {
        alignas(16) uint8_t lv[16];
        for (int i = 0; i < 16; ++i)
            lv[i] = static_cast<uint8_t>(qf_signed_table<QT>() ? kIQ4Values[i] : kIQ4Values[i] + 128);
        const __m256i tbl = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(lv)));
        for (int c = 0; c < 8; ++c) w[c] = _mm256_shuffle_epi8(tbl, w[c]);
    }
}

template <DType QT, int T>
inline void qf_tile(const uint8_t* grp, int64_t n_super, int64_t nb, const BlockQ8Act* x, int64_t t,
                    const int32_t* offs, float* y, int64_t ldy, int64_t r, int valid_rows) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t head = pq_head_bytes(QT, kQfRows), bb = pq_block_bytes(QT, kQfRows),
                     sb = pq_super_bytes(QT, kQfRows);
    constexpr bool kOffsets = qf_unsigned_zero<QT>() != 0;
    __m256 acc[T];
    for (int j = 0; j < T; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t s = 0; s < n_super; ++s) {
        const uint8_t* p = grp + s * sb;
        for (size_t l = 0; l < sb; l += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p + kQfPrefetchBytes + l), _MM_HINT_T0);
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        __m256 dmin = _mm256_setzero_ps();
        if constexpr (F.k_min || F.f_min)
            dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * kQfRows)));
        for (int k = 0; k < F.blocks_per_super; ++k) {
            const uint8_t* q = p + head + k * bb;
            const int64_t b = s * F.blocks_per_super + k;
            __m256 s0 = d, s1 = d, mn = dmin;
            if constexpr (F.n_sub >= 1)
                s0 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)))));
            if constexpr (F.n_sub == 2)
                s1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + kQfRows)))));
            if constexpr (F.k_min)
                mn = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                             _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + kQfRows * F.n_sub)))));
            __m256i w[8];
            qf_decode_block<QT>(q, w);
            for (int j = 0; j < T; ++j) {
                const BlockQ8Act& xb = x[(t + j) * nb + b];
                const int32_t* q4 = reinterpret_cast<const int32_t*>(xb.qs);
                const int32_t* o = offs + (j * nb + b) * 2;
                __m256i a0 = kOffsets ? _mm256_set1_epi32(o[0]) : _mm256_setzero_si256();
                __m256i a1 = (kOffsets && F.n_sub == 2) ? _mm256_set1_epi32(o[1]) : _mm256_setzero_si256();
                // One int32 chain per sub-scale (per-16 types two, the others one: exact, saves the add).
#pragma GCC unroll 4
                for (int c = 0; c < 4; ++c) {
                    a0 = qf_dot<QT>(a0, w[c], _mm256_set1_epi32(q4[c]));
                    if constexpr (F.n_sub == 2) a1 = qf_dot<QT>(a1, w[4 + c], _mm256_set1_epi32(q4[4 + c]));
                }
                if constexpr (F.n_sub != 2) {
#pragma GCC unroll 4
                    for (int c = 4; c < 8; ++c) a0 = qf_dot<QT>(a0, w[c], _mm256_set1_epi32(q4[c]));
                }
                const __m256 xd = _mm256_set1_ps(xb.d);
                if constexpr (F.n_sub == 2) {
                    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_mul_ps(s0, xd), acc[j]);
                    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), _mm256_mul_ps(s1, xd), acc[j]);
                } else {
                    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_mul_ps(s0, xd), acc[j]);
                }
                if constexpr (F.k_min) acc[j] = _mm256_fnmadd_ps(mn, _mm256_set1_ps(xb.s), acc[j]);
                if constexpr (F.f_min) acc[j] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xb.s), acc[j]);
            }
        }
    }
    if (valid_rows == kQfRows) {
        for (int j = 0; j < T; ++j) _mm256_storeu_ps(y + (t + j) * ldy + r, acc[j]);
    } else {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid_rows), lane);
        for (int j = 0; j < T; ++j) _mm256_maskstore_ps(y + (t + j) * ldy + r, m, acc[j]);
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
    const int32_t* offs = qformat_offsets<F.n_sub, qf_unsigned_zero<QT>()>(xq, nb, t0, t1);
    const uint8_t* base = static_cast<const uint8_t*>(w.packed);
    for (int64_t r = r0; r < r1; r += kQfRows) {  // r0 is a multiple of kQfRows (pack_rows)
        const int valid = static_cast<int>(r1 - r < kQfRows ? r1 - r : kQfRows);
        const uint8_t* grp = base + (r / kQfRows) * n_super * sb;
        int64_t t = t0;
        for (; t + T <= t1; t += T) qf_tile<QT, T>(grp, n_super, nb, xq, t, offs + (t - t0) * nb * 2, y, ldy, r, valid);
        const int32_t* o = offs + (t - t0) * nb * 2;
        switch (t1 - t) {
            case 3: qf_tile<QT, 3>(grp, n_super, nb, xq, t, o, y, ldy, r, valid); break;
            case 2: qf_tile<QT, 2>(grp, n_super, nb, xq, t, o, y, ldy, r, valid); break;
            case 1: qf_tile<QT, 1>(grp, n_super, nb, xq, t, o, y, ldy, r, valid); break;
            default: break;
        }
    }
}
