// packed_avx2.h — the prefill/decode kernel of the AVX2 and AVX-VNNI tables on quantized weights
// re-laid out at load in 8-row groups (packed_layout.h; part of kernels_avx2_body.inc).
//
// Why: the canonical-layout kernel pays, per row, block and token, an int->float conversion, a
// scale multiply and an FMA, plus a horizontal sum per output. With 8 rows interleaved one ymm
// lane is one row, so a block costs 8 u8 x s8 dots (activation quads broadcast from memory) and
// 3 float ops for 8 rows at once. Loop order: chunk outer, tokens inner, so each weight chunk is
// unpacked once per T tokens and only T int + T float accumulators stay live (16 ymm).
//
// Without VNNI the dot is VPMADDUBSW into int16, summed over the block before one VPMADDWD:
// q4 nibbles (<= 15) times |q| <= 127, 2 per pair and 8 pairs per lane, stay below 2^15
// (<= 30480). q8_0's biased bytes (<= 255) would overflow, so the plain AVX2 table does not
// re-lay q8_0 out (packed_bytes returns 0 and the canonical kernel runs).
#pragma once

#include "kernels/packed_layout.h"

constexpr int kPackRows = 8;
constexpr int64_t kPrefetchBlocks = 12;

template <DType QT>
constexpr bool packs_type() {
#if defined(EDGERT_AVX_VNNI)
    return true;
#else
    return QT != DType::Q8_0;
#endif
}

// Rows [r, r+8) x tokens [t, t+T) over all blocks; stores the first valid_rows rows.
template <DType QT, int T>
inline void packed8_tile(const uint8_t* grp, int64_t nb, const BlockQ8Act* x, int64_t t,
                         const int32_t* offs, float* y, int64_t ldy, int64_t r, int valid_rows) {
    constexpr size_t pb = packed_block_bytes(QT, kPackRows);
    constexpr size_t head = packed_head_bytes(QT, kPackRows);
    constexpr int n_chunks = QT == DType::Q8_0 ? 8 : 4;
    __m256 acc[T];
    for (int j = 0; j < T; ++j) acc[j] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* p = grp + b * pb;
        for (size_t l = 0; l < pb; l += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBlocks * pb + l), _MM_HINT_T0);
        __m256i isum[T];  // VNNI: int32 from the offset; AVX2: int16 pair sums from 0
        for (int j = 0; j < T; ++j) {
#if defined(EDGERT_AVX_VNNI)
            isum[j] = _mm256_set1_epi32(offs[j * nb + b]);
#else
            isum[j] = _mm256_setzero_si256();
#endif
        }
        for (int c = 0; c < n_chunks; ++c) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + head + 32 * c));
            const __m256i lo = QT == DType::Q8_0 ? v : _mm256_and_si256(v, low);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            for (int j = 0; j < T; ++j) {
                const int32_t* q4 = reinterpret_cast<const int32_t*>(x[(t + j) * nb + b].qs);
#if defined(EDGERT_AVX_VNNI)
                isum[j] = _mm256_dpbusd_avx_epi32(isum[j], lo, _mm256_set1_epi32(q4[c]));
                if constexpr (QT != DType::Q8_0)
                    isum[j] = _mm256_dpbusd_avx_epi32(isum[j], hi, _mm256_set1_epi32(q4[4 + c]));
#else
                isum[j] = _mm256_add_epi16(isum[j], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(q4[c])));
                isum[j] = _mm256_add_epi16(isum[j], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(q4[4 + c])));
#endif
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        __m256 mw = _mm256_setzero_ps();
        if constexpr (QT == DType::Q4_1)
            mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * kPackRows)));
        for (int j = 0; j < T; ++j) {
            const BlockQ8Act& xb = x[(t + j) * nb + b];
#if defined(EDGERT_AVX_VNNI)
            const __m256i i32 = isum[j];
#else
            const __m256i i32 = _mm256_add_epi32(_mm256_madd_epi16(isum[j], _mm256_set1_epi16(1)),
                                                 _mm256_set1_epi32(offs[j * nb + b]));
#endif
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[j]);
            if constexpr (QT == DType::Q4_1) acc[j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb.s), acc[j]);
        }
    }
    if (valid_rows == kPackRows) {
        for (int j = 0; j < T; ++j) _mm256_storeu_ps(y + (t + j) * ldy + r, acc[j]);
    } else {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid_rows), lane);
        for (int j = 0; j < T; ++j) _mm256_maskstore_ps(y + (t + j) * ldy + r, m, acc[j]);
    }
}

template <DType QT>
void packed8_gemm(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy) {
    constexpr int T = 4;  // 6 measured slower (spills: 16 ymm)
    const int64_t nb = w.cols / kQK;
    const int32_t* offs = packed_offsets<QT>(xq, nb, t0, t1);
    const uint8_t* base = static_cast<const uint8_t*>(w.packed);
    for (int64_t r = r0; r < r1; r += kPackRows) {  // r0 is a multiple of kPackRows (pack_rows)
        const int valid = static_cast<int>(r1 - r < kPackRows ? r1 - r : kPackRows);
        const uint8_t* grp = base + (r / kPackRows) * nb * packed_block_bytes(QT, kPackRows);
        int64_t t = t0;
        for (; t + T <= t1; t += T) packed8_tile<QT, T>(grp, nb, xq, t, offs + (t - t0) * nb, y, ldy, r, valid);
        const int32_t* o = offs + (t - t0) * nb;
        switch (t1 - t) {
            case 5: if constexpr (T > 5) packed8_tile<QT, 5>(grp, nb, xq, t, o, y, ldy, r, valid); break;
            case 4: if constexpr (T > 4) packed8_tile<QT, 4>(grp, nb, xq, t, o, y, ldy, r, valid); break;
            case 3: packed8_tile<QT, 3>(grp, nb, xq, t, o, y, ldy, r, valid); break;
            case 2: packed8_tile<QT, 2>(grp, nb, xq, t, o, y, ldy, r, valid); break;
            case 1: packed8_tile<QT, 1>(grp, nb, xq, t, o, y, ldy, r, valid); break;
            default: break;
        }
    }
}
