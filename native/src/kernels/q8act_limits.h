// q8act_limits.h — constants shared by every activation quantizer (scalar and SIMD), and the one
// rule for blocks that cannot be quantized, which every ISA table follows bit for bit:
//
//   max|x| below kQ8ActMinAmax      -> d = 0, s = 0, qs = 0 (the block contributes nothing)
//   any x NaN or |x| > kQ8ActMaxAmax -> d = NaN, s = NaN, qs = 0 (kQ8ActNaN), so every
//                                      dot product with the block is NaN, as the f32 product
//                                      would be (Inf * w, Inf - Inf); never a float-to-int
//                                      conversion of NaN/Inf or an int32 sum that overflows
//
// Non-finite activations come from non-finite or overflowing weights in a model file
// (edgert_model_params.verify_checksums refuses stored ones at load); the NaN then reaches the
// logits and edgert_sampler_sample / edgert_generate refuse them (EDGERT_ERR_INVALID_ARGUMENT).
#pragma once

namespace edgert {

// Below this max|x| a block quantizes to all zeros: 127/amax would overflow float (and the
// activations are then far below anything a model's output can resolve).
constexpr float kQ8ActMinAmax = 1e-30f;
// Above this max|x|, s = d * sum(qs) (|sum| <= 32 * 127) could overflow float, and with it the
// zero-point sum the packed kernels recover as s / d. 1e37 < FLT_MAX / 32.
constexpr float kQ8ActMaxAmax = 1e37f;
// The NaN every table stores in d and s of a block it cannot quantize: the default quiet NaN
// (bits 0x7fc00000), a compile-time constant, so the tables agree bit for bit.
constexpr float kQ8ActNaN = __builtin_nanf("");

}  // namespace edgert
