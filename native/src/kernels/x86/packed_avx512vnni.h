// packed_avx512vnni.h — quantized weights re-laid out at load in groups of 16 rows, and their
// AVX-512 VNNI kernels (part of kernels_avx512vnni.cpp; included only there).
//
// Why: with the canonical layout every output needs its own per-block int->float conversion,
// scale multiply and final horizontal sum. With 16 rows interleaved, one zmm lane is one row:
// a block costs 8 VPDPBUSD (activation quads broadcast from memory) + 1 conversion + 2-3 float
// ops for 16 rows at once, and outputs are stored without a horizontal sum. Measured on Zen 5:
// q4_0 GEMM 512 tokens 55 -> 180 GFLOP/s (2 threads), GEMV 3 -> 12+ GB/s.
//
// Packed layout, per group of 16 rows (the last group zero-padded) and per block b:
//   32 bytes      the 16 rows' f16 scales d, row order
//   q4_1 only: 32 bytes of f16 offsets m, row order
//   q4_0 / q4_1:  4 x 64 bytes: chunk c holds, for row i, qs[4c .. 4c+3] at [4i, 4i+4); its low
//                 nibbles are elements 4c..4c+3, its high nibbles elements 16+4c..16+4c+3
//   q8_0:         8 x 64 bytes: chunk c holds, for row i, (q[4c .. 4c+3] + 128) as u8
// Sizes equal the canonical bytes (q4_0 18, q4_1 20, q8_0 34 per row-block) plus row padding to
// 16; the copy is held in addition to the mapped file.
//
// Integer offsets are exact: VPDPBUSD multiplies u8 weights by s8 activations, so q4_0's nibbles
// (n, not n - 8) and q8_0's (q + 128) need -8 * sum(q) and -128 * sum(q) per activation block,
// recovered exactly from s / d (s = d * sum(q) in float, |sum(q)| <= 4064).
#pragma once

constexpr int kPackRows = 16;
constexpr int64_t kPrefetchBlocks = 12;  // 3-6 KB ahead; of 4 / 12 / 24 blocks, 12 measured best

constexpr size_t packed_block_bytes(DType t) {
    return t == DType::Q4_0 ? 32 + 256 : t == DType::Q4_1 ? 64 + 256 : 32 + 512;
}

inline size_t packed_weight_bytes(DType t, int64_t rows, int64_t cols) {
    if (t != DType::Q4_0 && t != DType::Q4_1 && t != DType::Q8_0) return 0;
    const int64_t groups = (rows + kPackRows - 1) / kPackRows;
    return static_cast<size_t>(groups * (cols / kQK)) * packed_block_bytes(t);
}

// Byte shuffling, run once at load: 4-byte quads are moved whole (the file's blocks are only
// 2-byte aligned, hence memcpy).
inline void pack_rows16(DType t, const void* src, int64_t rows, int64_t cols, void* dst) {
    const int64_t nb = cols / kQK;
    const int64_t groups = (rows + kPackRows - 1) / kPackRows;
    const size_t row_bytes = dtype_row_bytes(t, cols), bb = dtype_block_bytes(t);
    const size_t pb = packed_block_bytes(t);
    const int n_quads = t == DType::Q8_0 ? 8 : 4;
    const int head = t == DType::Q4_1 ? 64 : 32;
    const uint8_t* in = static_cast<const uint8_t*>(src);
    uint8_t* out = static_cast<uint8_t*>(dst);
    __builtin_memset(out, 0, packed_weight_bytes(t, rows, cols));
    for (int64_t g = 0; g < groups; ++g) {
        for (int i = 0; i < kPackRows; ++i) {
            const int64_t r = g * kPackRows + i;
            for (int64_t b = 0; b < nb; ++b) {
                uint8_t* o = out + (g * nb + b) * pb;
                if (r >= rows) {  // padding row: zero scale; q8_0's zero is 0x80 after the bias
                    if (t == DType::Q8_0)
                        for (int c = 0; c < n_quads; ++c) __builtin_memset(o + head + c * 64 + 4 * i, 0x80, 4);
                    continue;
                }
                const uint8_t* blk = in + r * row_bytes + b * bb;
                __builtin_memcpy(o + 2 * i, blk, 2);
                if (t == DType::Q4_1) __builtin_memcpy(o + 32 + 2 * i, blk + 2, 2);
                const uint8_t* qs = blk + (t == DType::Q4_1 ? 4 : 2);
                for (int c = 0; c < n_quads; ++c) {
                    uint32_t q;
                    __builtin_memcpy(&q, qs + 4 * c, 4);
                    if (t == DType::Q8_0) q ^= 0x80808080u;
                    __builtin_memcpy(o + head + c * 64 + 4 * i, &q, 4);
                }
            }
        }
    }
}

template <DType QT>
inline int32_t packed_offset(const BlockQ8Act& x) {
    if (QT == DType::Q4_1 || x.d == 0.0f) return 0;
    const int32_t sum = static_cast<int32_t>(__builtin_nearbyintf(x.s / x.d));
    return QT == DType::Q4_0 ? -8 * sum : -128 * sum;
}

// Rows [r, r+16) x tokens [t, t+T) over all blocks; stores the rows in store_mask only.
template <DType QT, int T>
inline void packed_group(const uint8_t* grp, int64_t nb, const BlockQ8Act* x, int64_t t,
                         const int32_t* offs, float* y, int64_t ldy, int64_t r, __mmask16 store_mask) {
    constexpr size_t pb = packed_block_bytes(QT);
    constexpr int head = QT == DType::Q4_1 ? 64 : 32;
    __m512 acc[T];
    for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* p = grp + b * pb;
        for (size_t l = 0; l < pb; l += 64)  // a group is one sequential stream
            _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBlocks * pb + l), _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        __m512 mw = _mm512_setzero_ps();
        if constexpr (QT == DType::Q4_1)
            mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
        __m512i wq[8];  // quads 0..3 feed chain a0, 4..7 chain a1
        if constexpr (QT == DType::Q8_0) {
            for (int c = 0; c < 8; ++c) wq[c] = _mm512_loadu_si512(p + head + 64 * c);
        } else {
            for (int c = 0; c < 4; ++c) {
                const __m512i v = _mm512_loadu_si512(p + head + 64 * c);
                wq[c] = _mm512_and_si512(v, low);
                wq[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
        }
        for (int j = 0; j < T; ++j) {
            const BlockQ8Act& xb = x[(t + j) * nb + b];
            const int32_t* q4 = reinterpret_cast<const int32_t*>(xb.qs);
            // Element order of the quads: q4_x chunks c / 4+c are elements 4c.. / 16+4c..; q8_0
            // chunk c is elements 4c.. — the same activation quad index in both cases.
            __m512i a0 = _mm512_set1_epi32(offs[j * nb + b]);
            __m512i a1 = _mm512_setzero_si512();
            for (int c = 0; c < 4; ++c) {
                a0 = _mm512_dpbusd_epi32(a0, wq[c], _mm512_set1_epi32(q4[c]));
                a1 = _mm512_dpbusd_epi32(a1, wq[4 + c], _mm512_set1_epi32(q4[4 + c]));
            }
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(xb.d));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), scale, acc[j]);
            if constexpr (QT == DType::Q4_1) acc[j] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb.s), acc[j]);
        }
    }
    for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(y + (t + j) * ldy + r, store_mask, acc[j]);
}
