// kv_hadamard.cpp — scalar normalized fast Walsh–Hadamard transform (see kv_hadamard.h).
#include "kernels/attention/kv_hadamard.h"

#include <cmath>

namespace edgert {
namespace attn {

void hadamard_inplace(float* x, int64_t n) {
    for (int64_t h = 1; h < n; h *= 2) {
        for (int64_t i = 0; i < n; i += 2 * h) {
            for (int64_t j = i; j < i + h; ++j) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
    }
    const float norm = 1.0f / std::sqrt(static_cast<float>(n));
    for (int64_t i = 0; i < n; ++i) x[i] *= norm;
}

}  // namespace attn
}  // namespace edgert
