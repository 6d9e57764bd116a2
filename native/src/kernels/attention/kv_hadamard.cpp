// kv_hadamard.cpp — scalar normalized fast Walsh–Hadamard transform (see kv_hadamard.h).
#include "kernels/attention/kv_hadamard.h"

#include <cmath>

namespace edgert {
namespace attn {

void hadamard_inplace(float* x, int64_t n) {
    // Stages h = 1 and 2 fused into one 4-point transform per group of four (same additions in
    // the same order as the plain butterflies); from h = 4 on, the inner loop runs over
    // contiguous elements, which the compiler vectorizes. n is a power of two >= 4 here.
    for (int64_t i = 0; i < n; i += 4) {
        const float s0 = x[i] + x[i + 1], d0 = x[i] - x[i + 1];
        const float s1 = x[i + 2] + x[i + 3], d1 = x[i + 2] - x[i + 3];
        x[i] = s0 + s1;
        x[i + 1] = d0 + d1;
        x[i + 2] = s0 - s1;
        x[i + 3] = d0 - d1;
    }
    for (int64_t h = 4; h < n; h *= 2) {
        for (int64_t i = 0; i < n; i += 2 * h) {
            float* lo = x + i;
            float* hi = x + i + h;
            for (int64_t j = 0; j < h; ++j) {
                const float a = lo[j], b = hi[j];
                lo[j] = a + b;
                hi[j] = a - b;
            }
        }
    }
    const float norm = 1.0f / std::sqrt(static_cast<float>(n));
    for (int64_t i = 0; i < n; ++i) x[i] *= norm;
}

}  // namespace attn
}  // namespace edgert
