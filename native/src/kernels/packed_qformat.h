// packed_qformat.h — the load-time re-layout of the qformat.h types (q5_0, q5_1, iq4_nl, q3_k,
// q4_k, q5_k, q6_k, iq4_xs) shared by every SIMD table: G rows interleaved (G = 16 for AVX-512,
// 8 for AVX2 / AVX-VNNI / NEON) so one 32-bit lane is one row and four consecutive elements of
// it, as in packed_layout.h for the legacy types. Header-only sizes (ISA files include them);
// the byte shuffling runs once at load, in packed_qformat.cpp.
//
// Per group of G rows (the last zero-padded) and per super-block (8 blocks of 32 for q3_k..q6_k
// and iq4_xs, 1 block for q5_0, q5_1, iq4_nl):
//   head     G f16 D, row order; then G f16 dmin (q4_k, q5_k) or G f16 m (q5_1)
//   then per 32-element block:
//     n_sub x G int8 sub-scales, sub-scale h of row i at [h*G + i]        (q3_k, q6_k: 2; q4_k, q5_k, iq4_xs: 1)
//     G u8 min multipliers m6                                               (q4_k, q5_k)
//     4-bit field: 4 chunks of 4G bytes; chunk c, row i, byte k: low nibble = element 4c+k,
//                  high nibble = element 16+4c+k                            (all but q3_k)
//     2-bit field: 2 chunks of 4G bytes; chunk h, row i, byte k, bits 2m..2m+1 = element 16h+4m+k
//                                                                           (q3_k bits 0-1, q6_k bits 4-5)
//     1-bit field: 4G bytes; row i, byte k, bit m = element 4m+k             (q3_k bit 2, q5_* bit 4)
// So "quad" q (elements 4q..4q+3 of a row, one byte each) of any field is one shift and one mask
// of one 4G-byte load, and a code is the OR of its fields. Sizes per 256 elements and row: q3_k
// 114 bytes (file 110), q4_k 148 (144), q5_k 180 (176), q6_k 210 (210), iq4_xs 138 (136); the legacy
// three equal the file's. The sub-scales are widened to one byte each; nothing else is expanded,
// so decode (memory-bound) reads about as many bytes as from the file.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/qformat.h"

namespace edgert {

static constexpr size_t pq_head_bytes(DType t, int g) {
    return static_cast<size_t>(g) * 2 * ((qformat(t).k_min || qformat(t).f_min) ? 2 : 1);
}
static constexpr size_t pq_scale_bytes(DType t, int g) {  // sub-scales and mins of one block
    return static_cast<size_t>(g) * (qformat(t).n_sub + (qformat(t).k_min ? 1 : 0));
}
static constexpr size_t pq_block_bytes(DType t, int g) {
    return pq_scale_bytes(t, g) + static_cast<size_t>(g) * ((qformat(t).nib ? 16 : 0) + (qformat(t).two ? 8 : 0) +
                                                            (qformat(t).one ? 4 : 0));
}
static constexpr size_t pq_super_bytes(DType t, int g) {
    return pq_head_bytes(t, g) + static_cast<size_t>(qformat(t).blocks_per_super) * pq_block_bytes(t, g);
}
// Offsets of the fields inside a block.
static constexpr size_t pq_nib_offset(DType t, int g) { return pq_scale_bytes(t, g); }
static constexpr size_t pq_two_offset(DType t, int g) { return pq_nib_offset(t, g) + (qformat(t).nib ? 16 * static_cast<size_t>(g) : 0); }
static constexpr size_t pq_one_offset(DType t, int g) { return pq_two_offset(t, g) + (qformat(t).two ? 8 * static_cast<size_t>(g) : 0); }

// Bytes of the packed copy of a [rows, cols] weight, or 0 when t is not a qformat type.
size_t packed_qformat_bytes(DType t, int64_t rows, int64_t cols, int g);
// Writes the packed copy (packed_qformat_bytes(t, rows, cols, g) bytes) of the canonical rows.
void pack_qformat(DType t, const void* src, int64_t rows, int64_t cols, void* dst, int g);

}  // namespace edgert
