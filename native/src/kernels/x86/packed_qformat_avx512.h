// packed_qformat_avx512.h — the AVX-512 VNNI kernel of every qformat.h type (q5_0, q5_1, iq4_nl,
// q3_k, q4_k, q5_k, q6_k, iq4_xs) on the packed_qformat.h layout, 16 rows per group (one zmm
// lane per row). Part of kernels_avx512vnni.cpp; included only there.
//
// Per 32-element block and group: the code fields are turned into 8 "quads" (4 codes of 16 rows
// each, one byte per code) with one shift and one mask per field (one GF2P8AFFINEQB for the
// 1-bit field and q3's 2-bit field), ORed together (iq4: then VPSHUFB through the 16 levels + 128); per-32 sub-scales
// become float vectors D * sc once per block, per-16 ones int32 vectors. Per token: 8 VPDPBUSD
// with activation quads broadcast from memory, into one int32 chain per sub-scale (two for the
// per-16 types), each started from the activations' -Z * sum(q) (qformat_offsets.h); the per-16
// types then combine sc0 * a0 + sc1 * a1 in int32; one int->float conversion and one FMA with the
// float scale times x.d; the min term M * x.s is one more FMA. Each output's operations and
// their order are the same for any tile size, so results do not depend on how a tile was cut.
//
// A weight without the packed copy (EDGERT_REPACK=0, or prepared for another ISA) runs the scalar
// kernel: these types have no canonical-layout SIMD kernel (the re-layout is what makes them fast).
#pragma once

#include "kernels/packed_qformat.h"
#include "kernels/qformat_offsets.h"

constexpr int kQfRows = 16;
// How far ahead of the loads the software prefetch runs. Decode reads each weight once from DRAM,
// one sequential stream per matrix; 8 KB (about bandwidth x latency of one core here) measured
// ~10% less GEMV time in SmolLM2 decode than 4 KB (q3_0, q3_k, q5_1; Zen 5, 1 thread), 12 KB no
// better than 8, 2 KB worse.
constexpr size_t kQfPrefetchBytes = 8192;

template <DType QT>
constexpr int qf_unsigned_zero() { return qformat(QT).table ? 128 : qformat(QT).zero; }

// The GF2P8AFFINEQB matrix that moves bits [src, src+n) of every byte to [dst, dst+n) and clears
// the others: result bit i of a byte is the parity of (matrix byte 7-i AND the source byte).
constexpr long long gf_bit_move(int src, int dst, int n) {
    unsigned long long a = 0;
    for (int i = 0; i < n; ++i) a |= (1ull << (src + i)) << (8 * (7 - (dst + i)));
    return static_cast<long long>(a);
}

// The 8 quads of one block's codes (unsigned bytes, iq4: table values + 128).
template <DType QT>
inline void qf_decode_block(const uint8_t* q, __m512i w[8]) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t o_nib = pq_nib_offset(QT, kQfRows), o_two = pq_two_offset(QT, kQfRows),
                     o_one = pq_one_offset(QT, kQfRows);
    const __m512i m0f = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(static_cast<char>(3 << F.two_shift));
    if constexpr (F.nib) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
            const __m512i v = _mm512_loadu_si512(q + o_nib + 64 * c);
            w[c] = _mm512_and_si512(v, m0f);
            w[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
        }
    }
    if constexpr (F.two && !F.nib) {
        // Types whose code starts at the 2-bit field (q3_0, q3_k): one GF2P8AFFINEQB per quad
        // moves bits 2m..2m+1 of each byte to bits two_shift.. and clears the rest (what a
        // shift and a mask do in two instructions); the decode is most of these types' GEMV work.
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m512i v = _mm512_loadu_si512(q + o_two + 64 * h);
#pragma GCC unroll 4
            for (int m = 0; m < 4; ++m)
                w[4 * h + m] = _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(gf_bit_move(2 * m, F.two_shift, 2)), 0);
        }
    } else if constexpr (F.two) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m512i v = _mm512_loadu_si512(q + o_two + 64 * h);
#pragma GCC unroll 4
            for (int m = 0; m < 4; ++m) {
                // Bits 2m..2m+1 of each byte straight to bits two_shift.. (one shift, then one
                // mask, or one ternary-logic OR-under-mask onto the nibble: 2 ops per quad). The
                // 16-bit shifts carry bits across bytes only into bits the mask drops.
                const int sh = F.two_shift - 2 * m;
                const __m512i moved = sh > 0 ? _mm512_slli_epi16(v, sh) : sh < 0 ? _mm512_srli_epi16(v, -sh) : v;
                if constexpr (F.nib)
                    w[4 * h + m] = _mm512_ternarylogic_epi32(w[4 * h + m], moved, m2, 0xF8);  // w | (moved & m2)
                else
                    w[4 * h + m] = _mm512_and_si512(moved, m2);
            }
        }
    }
    if constexpr (F.one) {
        const __m512i v = _mm512_loadu_si512(q + o_one);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
            // Bit c of each byte to bit one_shift, the others cleared (one GF2P8AFFINEQB), ORed in.
            w[c] = _mm512_or_si512(w[c], _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(gf_bit_move(c, F.one_shift, 1)), 0));
        }
    }
    if constexpr (F.table) {
        alignas(16) uint8_t lv[16];
        for (int i = 0; i < 16; ++i) lv[i] = static_cast<uint8_t>(kIQ4Values[i] + 128);
        const __m512i tbl = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(lv)));
        for (int c = 0; c < 8; ++c) w[c] = _mm512_shuffle_epi8(tbl, w[c]);
    }
}

// Rows [r, r+16) x tokens [t, t+T) of one group over all blocks; stores the rows in mask.
template <DType QT, int T>
inline void qf_tile(const uint8_t* grp, int64_t n_super, int64_t nb, const BlockQ8Act* x, int64_t t,
                    const int32_t* offs, float* y, int64_t ldy, int64_t r, __mmask16 mask) {
    constexpr QFormat F = qformat(QT);
    constexpr size_t head = pq_head_bytes(QT, kQfRows), bb = pq_block_bytes(QT, kQfRows),
                     sb = pq_super_bytes(QT, kQfRows);
    constexpr bool kOffsets = qf_unsigned_zero<QT>() != 0;
    __m512 acc[T];
    for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t s = 0; s < n_super; ++s) {
        const uint8_t* p = grp + s * sb;
        for (size_t l = 0; l < sb; l += 64)  // each group is one sequential stream
            _mm_prefetch(reinterpret_cast<const char*>(p + kQfPrefetchBytes + l), _MM_HINT_T0);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        __m512 dmin = _mm512_setzero_ps();
        if constexpr (F.k_min || F.f_min)
            dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * kQfRows)));
        for (int k = 0; k < F.blocks_per_super; ++k) {
            const uint8_t* q = p + head + k * bb;
            const int64_t b = s * F.blocks_per_super + k;
            __m512 s0 = d, mn = dmin;
            __m512i sc0 = _mm512_setzero_si512(), sc1 = _mm512_setzero_si512();
            if constexpr (F.n_sub == 1)
                s0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)))));
            if constexpr (F.n_sub == 2) {
                sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
                sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + kQfRows)));
            }
            if constexpr (F.k_min)
                mn = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                             _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + kQfRows * F.n_sub)))));
            __m512i w[8];
            qf_decode_block<QT>(q, w);
            for (int j = 0; j < T; ++j) {
                const BlockQ8Act& xb = x[(t + j) * nb + b];
                const int32_t* q4 = reinterpret_cast<const int32_t*>(xb.qs);
                const int32_t* o = offs + (j * nb + b) * 2;
                __m512i a0 = kOffsets ? _mm512_set1_epi32(o[0]) : _mm512_setzero_si512();
                __m512i a1 = (kOffsets && F.n_sub == 2) ? _mm512_set1_epi32(o[1]) : _mm512_setzero_si512();
                // One int32 chain per sub-scale: per-16 types two, the others one over all 8
                // quads (exact either way; a single chain saves the add).
#pragma GCC unroll 4
                for (int c = 0; c < 4; ++c) {
                    a0 = _mm512_dpbusd_epi32(a0, w[c], _mm512_set1_epi32(q4[c]));
                    if constexpr (F.n_sub == 2) a1 = _mm512_dpbusd_epi32(a1, w[4 + c], _mm512_set1_epi32(q4[4 + c]));
                }
                if constexpr (F.n_sub != 2) {
#pragma GCC unroll 4
                    for (int c = 4; c < 8; ++c) a0 = _mm512_dpbusd_epi32(a0, w[c], _mm512_set1_epi32(q4[c]));
                }
                const __m512 xd = _mm512_set1_ps(xb.d);
                if constexpr (F.n_sub == 2) {
                    // sc0 * a0 + sc1 * a1 in int32 (exact: |a| <= 16 * 32 * 128, |sc| <= 127),
                    // then one conversion and one FMA instead of two of each.
                    const __m512i a = _mm512_add_epi32(_mm512_mullo_epi32(a0, sc0), _mm512_mullo_epi32(a1, sc1));
                    acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(d, xd), acc[j]);
                } else {
                    acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_mul_ps(s0, xd), acc[j]);
                }
                if constexpr (F.k_min) acc[j] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(xb.s), acc[j]);
                if constexpr (F.f_min) acc[j] = _mm512_fmadd_ps(mn, _mm512_set1_ps(xb.s), acc[j]);
            }
        }
    }
    for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(y + (t + j) * ldy + r, mask, acc[j]);
}

template <DType QT>
void gemm_qformat(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy) {
    if (w.packed == nullptr) {
        gemm_qformat_ref<QT>(w, xq, r0, r1, t0, t1, y, ldy);
        return;
    }
    constexpr QFormat F = qformat(QT);
    constexpr int T = 8;
    constexpr size_t sb = pq_super_bytes(QT, kQfRows);
    const int64_t nb = w.cols / kQK, n_super = nb / F.blocks_per_super;
    const int32_t* offs = qformat_offsets<F.n_sub, qf_unsigned_zero<QT>()>(xq, nb, t0, t1);
    const uint8_t* base = static_cast<const uint8_t*>(w.packed);
    const size_t group_bytes = static_cast<size_t>(n_super) * sb;
    for (int64_t r = r0; r < r1; r += kQfRows) {  // r0 is a multiple of kQfRows (pack_rows)
        const int64_t valid = r1 - r < kQfRows ? r1 - r : kQfRows;
        const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1);
        const uint8_t* grp = base + (r / kQfRows) * group_bytes;
        int64_t t = t0;
        for (; t + T <= t1; t += T) qf_tile<QT, T>(grp, n_super, nb, xq, t, offs + (t - t0) * nb * 2, y, ldy, r, m);
        const int32_t* o = offs + (t - t0) * nb * 2;
        switch (t1 - t) {
            case 7: qf_tile<QT, 7>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 6: qf_tile<QT, 6>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 5: qf_tile<QT, 5>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 4: qf_tile<QT, 4>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 3: qf_tile<QT, 3>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 2: qf_tile<QT, 2>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            case 1: qf_tile<QT, 1>(grp, n_super, nb, xq, t, o, y, ldy, r, m); break;
            default: break;
        }
    }
}
