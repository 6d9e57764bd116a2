// packed_qformat.cpp — writes the packed_qformat.h layout from a weight's canonical rows, through
// qblock_decode (so the packed bytes hold exactly the file's codes and scales). Generic code, run
// once per weight at load; measured cost is reported with the other re-layouts (edgert info).
#include "kernels/packed_qformat.h"

#include <cstring>

namespace edgert {

size_t packed_qformat_bytes(DType t, int64_t rows, int64_t cols, int g) {
    const QFormat f = qformat(t);
    if (!f.valid) return 0;
    const int64_t groups = (rows + g - 1) / g;
    const int64_t supers = cols / (kQK * f.blocks_per_super);
    return static_cast<size_t>(groups * supers) * pq_super_bytes(t, g);
}

namespace {

// One instantiation per type, so the field layout is constant and the byte loops unroll.
template <DType t>
void pack_type(const void* src, int64_t rows, int64_t cols, void* dst, int g) {
    constexpr QFormat f = qformat(t);
    const int bps = f.blocks_per_super;
    const int64_t supers = cols / (kQK * bps);
    const int64_t groups = (rows + g - 1) / g;
    const size_t row_bytes = dtype_row_bytes(t, cols);
    const size_t head = pq_head_bytes(t, g), bb = pq_block_bytes(t, g), sb = pq_super_bytes(t, g);
    const size_t nib = pq_nib_offset(t, g), two = pq_two_offset(t, g), one = pq_one_offset(t, g);
    uint8_t* out = static_cast<uint8_t*>(dst);
    std::memset(out, 0, packed_qformat_bytes(t, rows, cols, g));  // padding rows: D = 0, codes 0
    QBlock qb;
    for (int64_t grp = 0; grp < groups; ++grp) {
        for (int i = 0; i < g; ++i) {
            const int64_t r = grp * g + i;
            if (r >= rows) break;
            const uint8_t* row = static_cast<const uint8_t*>(src) + r * row_bytes;
            for (int64_t s = 0; s < supers; ++s) {
                uint8_t* o = out + (grp * supers + s) * sb;
                for (int k = 0; k < bps; ++k) {
                    qblock_decode(t, row, s * bps + k, qb);
                    if (k == 0) {
                        std::memcpy(o + 2 * i, &qb.d, 2);
                        if (f.k_min || f.f_min) std::memcpy(o + 2 * g + 2 * i, &qb.dm, 2);
                    }
                    uint8_t* ob = o + head + k * bb;
                    for (int h = 0; h < f.n_sub; ++h) ob[h * g + i] = static_cast<uint8_t>(qb.sc[h]);
                    if (f.k_min) ob[f.n_sub * g + i] = qb.m;
                    // Whole bytes, each written once (no read-modify-write per element).
                    const uint8_t* c = qb.code;
                    if (f.nib) {
                        for (int q = 0; q < 4; ++q)
                            for (int k = 0; k < 4; ++k)
                                ob[nib + q * 4 * g + 4 * i + k] =
                                    static_cast<uint8_t>((c[4 * q + k] & 0xF) | (c[16 + 4 * q + k] & 0xF) << 4);
                    }
                    if (f.two) {
                        for (int h = 0; h < 2; ++h)
                            for (int k = 0; k < 4; ++k) {
                                int v = 0;
                                for (int m = 0; m < 4; ++m) v |= ((c[16 * h + 4 * m + k] >> f.two_shift) & 3) << (2 * m);
                                ob[two + h * 4 * g + 4 * i + k] = static_cast<uint8_t>(v);
                            }
                    }
                    if (f.one) {
                        for (int k = 0; k < 4; ++k) {
                            int v = 0;
                            for (int m = 0; m < 8; ++m) v |= ((c[4 * m + k] >> f.one_shift) & 1) << m;
                            ob[one + 4 * i + k] = static_cast<uint8_t>(v);
                        }
                    }
                }
            }
        }
    }
}

}  // namespace

void pack_qformat(DType t, const void* src, int64_t rows, int64_t cols, void* dst, int g) {
    switch (t) {
        case DType::Q5_0: pack_type<DType::Q5_0>(src, rows, cols, dst, g); return;
        case DType::Q5_1: pack_type<DType::Q5_1>(src, rows, cols, dst, g); return;
        case DType::IQ4_NL: pack_type<DType::IQ4_NL>(src, rows, cols, dst, g); return;
        case DType::Q3_0: pack_type<DType::Q3_0>(src, rows, cols, dst, g); return;
        case DType::Q3_K: pack_type<DType::Q3_K>(src, rows, cols, dst, g); return;
        case DType::Q4_K: pack_type<DType::Q4_K>(src, rows, cols, dst, g); return;
        case DType::Q5_K: pack_type<DType::Q5_K>(src, rows, cols, dst, g); return;
        case DType::Q6_K: pack_type<DType::Q6_K>(src, rows, cols, dst, g); return;
        case DType::IQ4_XS: pack_type<DType::IQ4_XS>(src, rows, cols, dst, g); return;
        default: return;
    }
}

}  // namespace edgert
