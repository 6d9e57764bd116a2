// packed_layout.h — the load-time re-layout of quantized weights shared by the SIMD tables, in
// groups of G rows (G = 16 for AVX-512, 8 for AVX2 / AVX-VNNI / NEON SDOT: one int32 lane per
// row), so one VPDPBUSD / VPMADDUBSW / SDOT-by-lane with one activation quad serves G rows and
// outputs are stored without a horizontal sum. Included only by ISA files, inside their
// anonymous namespace.
//
// Per group (the last zero-padded) and per block b:
//   2G bytes      the G rows' f16 scales d, row order
//   q4_1 only: 2G bytes of f16 offsets m, row order
//   q4_0 / q4_1:  4 chunks of 4G bytes: chunk c holds, for row i, qs[4c .. 4c+3] at [4i, 4i+4);
//                 its low nibbles are elements 4c..4c+3, its high nibbles elements 16+4c..16+4c+3
//   q8_0:         8 chunks of 4G bytes: chunk c holds, for row i, (q[4c .. 4c+3] + 128) as u8
// Sizes equal the canonical bytes (q4_0 18, q4_1 20, q8_0 34 per row-block) plus row padding to
// G; the copy is held in addition to the mapped file.
//
// Integer offsets are exact: the u8 x s8 products see q4_0's nibbles (n, not n - 8) and q8_0's
// (q + 128), so -8 * sum(q) and -128 * sum(q) per activation block are added, recovered exactly
// from s / d (s = d * sum(q) in float, |sum(q)| <= 4064).
#pragma once

constexpr size_t packed_head_bytes(DType t, int g) { return static_cast<size_t>(t == DType::Q4_1 ? 4 : 2) * g; }
constexpr size_t packed_block_bytes(DType t, int g) {
    return packed_head_bytes(t, g) + static_cast<size_t>(t == DType::Q8_0 ? 8 : 4) * 4 * g;
}

inline size_t packed_weight_bytes(DType t, int64_t rows, int64_t cols, int g) {
    if (t != DType::Q4_0 && t != DType::Q4_1 && t != DType::Q8_0) return 0;
    const int64_t groups = (rows + g - 1) / g;
    return static_cast<size_t>(groups * (cols / kQK)) * packed_block_bytes(t, g);
}

// Byte shuffling, run once at load: 4-byte quads are moved whole (the file's blocks are only
// 2-byte aligned, hence memcpy).
inline void pack_row_groups(DType t, const void* src, int64_t rows, int64_t cols, void* dst, int g) {
    const int64_t nb = cols / kQK;
    const int64_t groups = (rows + g - 1) / g;
    const size_t row_bytes = dtype_row_bytes(t, cols), bb = dtype_block_bytes(t);
    const size_t pb = packed_block_bytes(t, g), head = packed_head_bytes(t, g);
    const int n_quads = t == DType::Q8_0 ? 8 : 4;
    const uint8_t* in = static_cast<const uint8_t*>(src);
    uint8_t* out = static_cast<uint8_t*>(dst);
    __builtin_memset(out, 0, packed_weight_bytes(t, rows, cols, g));
    for (int64_t grp = 0; grp < groups; ++grp) {
        for (int i = 0; i < g; ++i) {
            const int64_t r = grp * g + i;
            for (int64_t b = 0; b < nb; ++b) {
                uint8_t* o = out + (grp * nb + b) * pb;
                if (r >= rows) {  // padding row: zero scale; q8_0's zero is 0x80 after the bias
                    if (t == DType::Q8_0)
                        for (int c = 0; c < n_quads; ++c) __builtin_memset(o + head + c * 4 * g + 4 * i, 0x80, 4);
                    continue;
                }
                const uint8_t* blk = in + r * row_bytes + b * bb;
                __builtin_memcpy(o + 2 * i, blk, 2);
                if (t == DType::Q4_1) __builtin_memcpy(o + 2 * g + 2 * i, blk + 2, 2);
                const uint8_t* qs = blk + (t == DType::Q4_1 ? 4 : 2);
                for (int c = 0; c < n_quads; ++c) {
                    uint32_t q;
                    __builtin_memcpy(&q, qs + 4 * c, 4);
                    if (t == DType::Q8_0) q ^= 0x80808080u;
                    __builtin_memcpy(o + head + c * 4 * g + 4 * i, &q, 4);
                }
            }
        }
    }
}

template <DType QT>
inline int32_t packed_offset(const BlockQ8Act& x) {
    // d is 0 (an all-zero block), NaN (a non-finite block: the product is NaN whatever the
    // offset) or positive with |s / d| <= 32 * 127 (q8act_limits.h), so the conversion is exact.
    if (QT == DType::Q4_1 || !(x.d > 0.0f)) return 0;
    const int32_t sum = static_cast<int32_t>(__builtin_nearbyintf(x.s / x.d));
    return QT == DType::Q4_0 ? -8 * sum : -128 * sum;
}

// Per-thread buffer for the activation offsets of one call, kept while the same activations
// come back for the next row tile (the driver walks row tiles inside each token tile): computing
// them costs a division per (token, block) and was ~8% of a long prefill when redone per tile.
struct OffsetScratch {
    int32_t* p = nullptr;
    size_t cap = 0;
    const BlockQ8Act* key_x = nullptr;
    int64_t key_nb = -1, key_t0 = -1, key_t1 = -1;
    int key_type = -1;
    uint64_t key_gen = 0;
    ~OffsetScratch() { __builtin_free(p); }
    int32_t* get(size_t n) {
        if (n > cap) {
            __builtin_free(p);
            p = static_cast<int32_t*>(__builtin_malloc(n * sizeof(int32_t)));
            cap = p ? n : 0;
        }
        return p;
    }
};
thread_local OffsetScratch t_offsets;

// Offsets of tokens [t0, t1) x nb blocks, or null when out of memory.
template <DType QT>
inline const int32_t* packed_offsets(const BlockQ8Act* xq, int64_t nb, int64_t t0, int64_t t1) {
    OffsetScratch& s = t_offsets;
    const uint64_t gen = __atomic_load_n(&g_q8act_generation, __ATOMIC_ACQUIRE);
    if (s.p != nullptr && s.key_x == xq && s.key_nb == nb && s.key_t0 == t0 && s.key_t1 == t1 &&
        s.key_type == static_cast<int>(QT) && s.key_gen == gen)
        return s.p;
    int32_t* offs = s.get(static_cast<size_t>((t1 - t0) * nb));
    if (offs == nullptr) __builtin_trap();  // out of memory for a few KB: nothing sane to do
    for (int64_t t = t0; t < t1; ++t)
        for (int64_t b = 0; b < nb; ++b) offs[(t - t0) * nb + b] = packed_offset<QT>(xq[t * nb + b]);
    s.key_x = xq;
    s.key_nb = nb;
    s.key_t0 = t0;
    s.key_t1 = t1;
    s.key_type = static_cast<int>(QT);
    s.key_gen = gen;
    return offs;
}
