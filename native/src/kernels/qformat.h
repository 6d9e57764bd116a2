// qformat.h — the weight types added after q4_0/q4_1/q8_0 (q5_0, q5_1, iq4_nl, edgert's q3_0 and
// the super-block types q3_k, q4_k, q5_k, q6_k, iq4_xs), described once as data so one scalar reference, one pack
// routine and one SIMD microkernel per ISA serve them all.
//
// Every one of these types is, per 32-element activation block b of a row:
//   x_j = D * sc_h * v(code_j) + M            (j in 0..31, h = j / 16)
// with an integer code per element, v(code) = code - zero or kIQ4Values[code] (iq4), D the f16
// scale of the block (legacy types) or of its 256-element super-block (K-quants, iq4_xs), sc_h
// small integer sub-scales (per 16 elements: q3_k, q6_k; per 32: q4_k, q5_k, iq4_xs; none: 1),
// and M an additive term: q5_1's f16 m, q4_k/q5_k's -dmin * m6 (dmin f16 per super-block, m6 a
// 6-bit integer per block), otherwise absent. A dot product with a BlockQ8Act block is then
//   D * x.d * sum_h sc_h * sum_{j in h} v_j q_j   +   M * x.s
// — integer sums per 16 or 32 elements, float scales per block, as for the legacy types.
//
// Header-only constexpr data with internal linkage (static): ISA files include it, and a copy
// they compiled with their -m flags can then never be linked into generic callers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dtypes.h"

namespace edgert {

struct QFormat {
    bool valid;            // one of the types described here
    int blocks_per_super;  // 32-element blocks sharing D (and dmin): 8, or 1 for legacy types
    int n_sub;             // integer sub-scales per 32-block: 0 (none), 1 (per 32), 2 (per 16)
    bool k_min;            // M = -dmin * m6 (q4_k, q5_k)
    bool f_min;            // M = m, f16 per block (q5_1)
    bool nib;              // code bits 0..3 come from a 4-bit field
    bool two;              // a 2-bit field at bits two_shift.. (q3_k: 0, q6_k: 4)
    bool one;              // a 1-bit field at bit one_shift (q3_k: 2, q5_*: 4)
    int two_shift;
    int one_shift;
    bool table;            // v = kIQ4Values[code]
    int zero;              // v = code - zero (non-table types)
};

static constexpr QFormat qformat(DType t) {
    //       valid  bps sub kmin  fmin   nib    two    one   2sh 1sh table  zero
    switch (t) {
        case DType::Q5_0:   return {true, 1, 0, false, false, true, false, true, 0, 4, false, 16};
        case DType::Q5_1:   return {true, 1, 0, false, true, true, false, true, 0, 4, false, 0};
        case DType::IQ4_NL: return {true, 1, 0, false, false, true, false, false, 0, 0, true, 0};
        case DType::Q3_0:   return {true, 1, 0, false, false, false, true, true, 0, 2, false, 4};
        case DType::Q3_K:   return {true, 8, 2, false, false, false, true, true, 0, 2, false, 4};
        case DType::Q4_K:   return {true, 8, 1, true, false, true, false, false, 0, 0, false, 0};
        case DType::Q5_K:   return {true, 8, 1, true, false, true, false, true, 0, 4, false, 0};
        case DType::Q6_K:   return {true, 8, 2, false, false, true, true, false, 4, 0, false, 32};
        case DType::IQ4_XS: return {true, 8, 1, false, false, true, false, false, 0, 0, true, 0};
        default: return {false, 0, 0, false, false, false, false, false, 0, 0, false, 0};
    }
}

// The signed integer weight a code stands for (fits int8 for every type here).
static constexpr int qcode_value(const QFormat& f, int code) { return f.table ? kIQ4Values[code & 15] : code - f.zero; }

// One 32-element block of a row, decoded from the file's bytes (ref/qblock_ref.cpp): the form the
// scalar kernels, the dequantizer and every ISA's pack routine read.
struct QBlock {
    uint8_t code[kQK];  // element order
    int8_t sc[2];       // sub-scales of elements 0..15 / 16..31 (1 and 1 when the type has none)
    uint8_t m;          // q4_k / q5_k min multiplier, else 0
    uint16_t d;         // f16 D
    uint16_t dm;        // f16 dmin (q4_k / q5_k) or m (q5_1), else 0
};

// qformat(t).valid for a run-time t (generic code; ISA files use qformat() on template arguments).
bool dtype_is_qformat(DType t);

// Block b (0-based 32-element block index along the row) of a row of type t, qformat(t).valid.
void qblock_decode(DType t, const uint8_t* row, int64_t b, QBlock& out);

}  // namespace edgert
