// kv_row_format.h — byte layout of one KV-cache row per KVType (attention-private).
//
// Chosen from measured attention-output error (README.md in this folder, measure_kv_formats.py):
//   F32: head_dim floats.           F16: head_dim IEEE halves.
//   Q8:  [f16 d][f16 m][head_dim x u8]          x = d * u + m   (asymmetric, one scale per row)
//   Q4:  [f16 d][f16 m][head_dim/2 bytes]       x = d * u + m,  u in 0..15; element j sits in the
//        low nibble of byte j, element j + head_dim/2 in its high nibble (one AND / one shift
//        unpacks a whole row on every ISA).
// Q8 and Q4 rows hold the head vector after a normalized Walsh–Hadamard rotation (K and V): the
// rotation spreads outlier channels over the whole row so one scale per row fits. One scale per
// row also makes q·k a single integer dot product over the row.
// Quantized rows need head_dim a power of two, 32..256; d and m must fit in f16 (|x| < 6e4 after
// rotation), the same range limit the F16 cache has.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/attention/kv_attention.h"

namespace edgert {
namespace attn {

constexpr size_t kQuantHeaderBytes = 4;  // f16 d, f16 m
constexpr int64_t kMaxHeadDim = kKvMaxHeadDim;

inline bool kv_type_is_quantized(KVType t) { return t == KVType::Q8 || t == KVType::Q4; }

// Rows of this type live in the Hadamard-rotated basis. The same answer for K and V today; kept
// per role because K is the more sensitive one and may diverge.
inline bool kv_type_is_rotated(KVType t, bool /*is_key*/) { return kv_type_is_quantized(t); }

// The row of position p in a cache laid out stride bytes per position (AttentionArgs::k/v).
inline const uint8_t* row_at(const void* base, size_t stride, int64_t p) {
    return static_cast<const uint8_t*>(base) + static_cast<size_t>(p) * stride;
}

inline bool head_dim_supported(KVType t, int64_t head_dim) {
    if (head_dim <= 0 || head_dim > kMaxHeadDim) return false;
    if (!kv_type_is_quantized(t)) return true;
    return head_dim >= 32 && (head_dim & (head_dim - 1)) == 0;
}

}  // namespace attn
}  // namespace edgert
