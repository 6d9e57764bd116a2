// quantize_ref.cpp — activations to BlockQ8Act, the scalar definition every ISA must reproduce.
//
// Per block of 32: d = max|x| / 127, q = round_to_nearest_even(x * (1/d)), s = d * sum(q).
// Multiplying by the reciprocal (not dividing) is what SIMD does, so results match bit for bit.
// Blocks whose max|x| is below kQ8ActMinAmax quantize to zero: 1/d would overflow to inf. Blocks
// holding NaN or a value beyond kQ8ActMaxAmax (Inf included) become the NaN block
// (q8act_limits.h), checked first.
#include <cmath>

#include "kernels/ref/ref_kernels.h"
#include "kernels/q8act_limits.h"

namespace edgert {

void quantize_q8act_ref(const float* x, BlockQ8Act* y, int64_t n) {
    EDGERT_BUMP_Q8ACT_GENERATION();
    for (int64_t b = 0; b < n / kQK; ++b) {
        const float* xb = x + b * kQK;
        float amax = 0.0f;
        bool representable = true;
        for (int j = 0; j < kQK; ++j) {
            amax = std::fmax(amax, std::fabs(xb[j]));
            representable = representable && std::fabs(xb[j]) <= kQ8ActMaxAmax;  // false for NaN
        }
        BlockQ8Act& out = y[b];
        if (!representable) {
            out.d = kQ8ActNaN;
            out.s = kQ8ActNaN;
            for (int j = 0; j < kQK; ++j) out.qs[j] = 0;
            continue;
        }
        if (!(amax >= kQ8ActMinAmax)) {
            out.d = 0.0f;
            out.s = 0.0f;
            for (int j = 0; j < kQK; ++j) out.qs[j] = 0;
            continue;
        }
        const float d = amax / 127.0f;
        const float id = 1.0f / d;
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            const int q = static_cast<int>(std::nearbyint(xb[j] * id));
            out.qs[j] = static_cast<int8_t>(q);
            sum += q;
        }
        out.d = d;
        out.s = d * static_cast<float>(sum);
    }
}

}  // namespace edgert
