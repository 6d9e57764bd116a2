// q8act_limits.h — constants shared by every activation quantizer (scalar and SIMD).
#pragma once

namespace edgert {

// Below this max|x| a block quantizes to all zeros: 127/amax would overflow float (and the
// activations are then far below anything a model's output can resolve).
constexpr float kQ8ActMinAmax = 1e-30f;

}  // namespace edgert
