// kv_hadamard.h — the normalized fast Walsh–Hadamard transform used to rotate quantized KV rows.
//
// H/sqrt(n) is symmetric and orthogonal, so it is its own inverse and q·k = (Hq)·(Hk): attention
// rotates q instead of un-rotating every cached key, and un-rotates its output once when V is
// rotated. Run once per stored row and once per query/output vector (a plain loop the compiler
// vectorizes; it was 10-18% of attention time as a naive scalar loop).
#pragma once
#include <cstdint>

namespace edgert {
namespace attn {

// In place; n must be a power of two >= 4.
void hadamard_inplace(float* x, int64_t n);

}  // namespace attn
}  // namespace edgert
