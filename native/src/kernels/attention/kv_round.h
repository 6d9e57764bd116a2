// kv_round.h — round half to even without libm, for the generic (no ISA flags) attention files.
//
// nearbyint is a libm call in a baseline x86-64 build (no SSE4.1) and showed in decode time;
// adding and subtracting 1.5 * 2^23 rounds exactly for |x| < 2^22 in the default rounding mode
// and leaves loops vectorizable. -ffast-math would fold it to x, hence the guard. Not for ISA
// files (see the banner of kernels/kernel_table.h).
#pragma once

#if defined(__FAST_MATH__)
#error "kv_round.h: (x + 1.5 * 2^23) - 1.5 * 2^23 needs IEEE arithmetic; build without -ffast-math"
#endif

namespace edgert {
namespace attn {

inline float round_even(float x) { return (x + 12582912.0f) - 12582912.0f; }

}  // namespace attn
}  // namespace edgert
