// packed_avx512vnni.h — quantized weights re-laid out at load in groups of 16 rows, and their
// AVX-512 VNNI kernels (part of kernels_avx512vnni.cpp; included only there).
//
// Why: with the canonical layout every output needs its own per-block int->float conversion,
// scale multiply and final horizontal sum. With 16 rows interleaved, one zmm lane is one row:
// a block costs 8 VPDPBUSD (activation quads broadcast from memory) + 1 conversion + 2-3 float
// ops for 16 rows at once, and outputs are stored without a horizontal sum. Measured on Zen 5:
// q4_0 GEMM 512 tokens 55 -> 180 GFLOP/s (2 threads), GEMV 3 -> 12+ GB/s. Prefill tiles pair two
// groups (32 rows x 6 tokens) so each activation broadcast feeds two VPDPBUSD: 1 thread, best of
// runs, 2048x2048 ~545 -> ~615 GFLOP/s.
//
// Layout: packed_layout.h with 16-row groups.
#pragma once

#include "kernels/packed_layout.h"

constexpr int kPackRows = 16;
// The AMX tile's prefetch distance (3-6 KB ahead; of 4 / 12 / 24 blocks, 12 measured best on the
// VNNI tile on an earlier machine).
constexpr int64_t kPrefetchBlocks = 12;
// The GEMV/GEMM tile's software prefetch distance in bytes, the same for every type: decode reads
// each weight once from DRAM, and a distance in blocks ran q4_0 (288-byte blocks) only 3.4 KB
// ahead. 8 KB took ~8% off the GEMV time of RTN q4_0 SmolLM2-135M decode (Zen 5, 1 thread), as it
// did for the qformat kernel (kQfPrefetchBytes).
constexpr size_t kPrefetchBytes = 8192;

constexpr size_t packed_block_bytes(DType t) { return packed_block_bytes(t, kPackRows); }

// Rows [r, r + 16G) x tokens [t, t+T) over all blocks: G consecutive 16-row groups share every
// activation broadcast, so one broadcast load feeds G VPDPBUSD (G = 1 was load-port bound: 10
// loads per 8 VPDPBUSD per token and block). Group g < G-1 is stored whole, the last through
// last_mask. Each output's operations and their order are the same for any G and T, so results
// do not depend on how a tile was cut.
template <DType QT, int G, int T>
inline void packed_tile(const uint8_t* grp, int64_t nb, const BlockQ8Act* x, int64_t t,
                        const int32_t* offs, float* y, int64_t ldy, int64_t r, __mmask16 last_mask) {
    constexpr size_t pb = packed_block_bytes(QT);
    constexpr size_t head = packed_head_bytes(QT, kPackRows);
    const size_t group_bytes = static_cast<size_t>(nb) * pb;
    __m512 acc[G][T];
    for (int g = 0; g < G; ++g)
        for (int j = 0; j < T; ++j) acc[g][j] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; ++b) {
        __m512 dw[G], mw[G];
        __m512i wq[G][8];  // quads 0..3 feed chain a0, 4..7 chain a1
        for (int g = 0; g < G; ++g) {
            const uint8_t* p = grp + g * group_bytes + b * pb;
            for (size_t l = 0; l < pb; l += 64)  // each group is one sequential stream
                _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + l), _MM_HINT_T0);
            dw[g] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
            mw[g] = _mm512_setzero_ps();
            if constexpr (QT == DType::Q4_1)
                mw[g] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
            if constexpr (QT == DType::Q8_0) {
                for (int c = 0; c < 8; ++c) wq[g][c] = _mm512_loadu_si512(p + head + 64 * c);
            } else {
                for (int c = 0; c < 4; ++c) {
                    const __m512i v = _mm512_loadu_si512(p + head + 64 * c);
                    wq[g][c] = _mm512_and_si512(v, low);
                    wq[g][4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                }
            }
        }
        for (int j = 0; j < T; ++j) {
            const BlockQ8Act& xb = x[(t + j) * nb + b];
            const int32_t* q4 = reinterpret_cast<const int32_t*>(xb.qs);
            // Element order of the quads: q4_x chunks c / 4+c are elements 4c.. / 16+4c..; q8_0
            // chunk c is elements 4c.. — the same activation quad index in both cases.
            const __m512i off = _mm512_set1_epi32(offs[j * nb + b]);
            __m512i a[G];
            for (int g = 0; g < G; ++g) a[g] = off;
            for (int c = 0; c < 4; ++c) {
                const __m512i xlo = _mm512_set1_epi32(q4[c]), xhi = _mm512_set1_epi32(q4[4 + c]);
                for (int g = 0; g < G; ++g) {
                    a[g] = _mm512_dpbusd_epi32(a[g], wq[g][c], xlo);
                    a[g] = _mm512_dpbusd_epi32(a[g], wq[g][4 + c], xhi);
                }
            }
            const __m512 xd = _mm512_set1_ps(xb.d);
            for (int g = 0; g < G; ++g) {
                const __m512 scale = _mm512_mul_ps(dw[g], xd);
                acc[g][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[g]), scale, acc[g][j]);
                if constexpr (QT == DType::Q4_1) acc[g][j] = _mm512_fmadd_ps(mw[g], _mm512_set1_ps(xb.s), acc[g][j]);
            }
        }
    }
    for (int g = 0; g < G; ++g) {
        const __mmask16 m = g + 1 < G ? __mmask16(0xffff) : last_mask;
        for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(y + (t + j) * ldy + r + 16 * g, m, acc[g][j]);
    }
}

// Register budget (32 zmm): G groups x 8 weight quads + G x T accumulators + 2G chain
// temporaries. q4_0 / q8_0 run 2 groups x 6 tokens (a few accumulators spill to L1); q4_1 needs
// 2G more registers for its offsets, so 2 x 4.
template <DType QT>
constexpr int pair_tokens() { return QT == DType::Q4_1 ? 4 : 6; }

template <DType QT, int G, int T>
void packed_tokens(const uint8_t* grp, int64_t nb, const BlockQ8Act* x, int64_t t0, int64_t t1,
                   const int32_t* offs, float* y, int64_t ldy, int64_t r, __mmask16 m) {
    int64_t t = t0;
    for (; t + T <= t1; t += T) packed_tile<QT, G, T>(grp, nb, x, t, offs + (t - t0) * nb, y, ldy, r, m);
    const int32_t* o = offs + (t - t0) * nb;
    switch (t1 - t) {
        case 7: if constexpr (T > 7) packed_tile<QT, G, 7>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 6: if constexpr (T > 6) packed_tile<QT, G, 6>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 5: if constexpr (T > 5) packed_tile<QT, G, 5>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 4: if constexpr (T > 4) packed_tile<QT, G, 4>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 3: if constexpr (T > 3) packed_tile<QT, G, 3>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 2: if constexpr (T > 2) packed_tile<QT, G, 2>(grp, nb, x, t, o, y, ldy, r, m); break;
        case 1: packed_tile<QT, G, 1>(grp, nb, x, t, o, y, ldy, r, m); break;
        default: break;
    }
}

// Rows [r0, r1) x tokens [t0, t1) of packed weights at base, given the tokens' offsets.
template <DType QT>
void packed_rows(const uint8_t* base, int64_t nb, const BlockQ8Act* xq, int64_t r0, int64_t r1,
                 int64_t t0, int64_t t1, const int32_t* offs, float* y, int64_t ldy) {
    // Pairs of groups while two remain (the second may be partial), then a single group. Decode
    // (one token) keeps single groups: it streams weights and has no broadcasts to share.
    const bool pairs = t1 - t0 > 1;
    int64_t r = r0;  // r0 is a multiple of kPackRows (pack_rows)
    for (; pairs && r + kPackRows < r1; r += 2 * kPackRows) {
        const int64_t valid = r1 - r - kPackRows < kPackRows ? r1 - r - kPackRows : kPackRows;
        const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1);
        const uint8_t* grp = base + (r / kPackRows) * nb * packed_block_bytes(QT);
        packed_tokens<QT, 2, pair_tokens<QT>()>(grp, nb, xq, t0, t1, offs, y, ldy, r, m);
    }
    for (; r < r1; r += kPackRows) {
        const int64_t valid = r1 - r < kPackRows ? r1 - r : kPackRows;
        const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1);
        const uint8_t* grp = base + (r / kPackRows) * nb * packed_block_bytes(QT);
        packed_tokens<QT, 1, 8>(grp, nb, xq, t0, t1, offs, y, ldy, r, m);
    }
}

template <DType QT>
void gemm_packed(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                 int64_t t1, float* y, int64_t ldy) {
    const int64_t nb = w.cols / kQK;
    packed_rows<QT>(static_cast<const uint8_t*>(w.packed), nb, xq, r0, r1, t0, t1,
                    packed_offsets<QT>(xq, nb, t0, t1), y, ldy);
}
