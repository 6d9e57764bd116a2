// elementwise.cpp — the public elementwise ops, forwarded to the active table.
#include "kernels/kernel_table.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace edgert {

void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps) {
    active_kernels().rmsnorm(y, x, weight, n, eps);
}
void silu_mul(float* gate, const float* up, int64_t n) { active_kernels().silu_mul(gate, up, n); }
void gelu_tanh_mul(float* gate, const float* up, int64_t n) { gelu_tanh_mul_ref(gate, up, n); }
void add_inplace(float* y, const float* x, int64_t n) { active_kernels().add_inplace(y, x, n); }
void softmax_inplace(float* x, int64_t n) { active_kernels().softmax_inplace(x, n); }
void rope_inplace(float* v, int64_t head_dim, int64_t n_heads, int64_t pos, const float* inv_freq) {
    active_kernels().rope_inplace(v, head_dim, n_heads, pos, inv_freq);
}

}  // namespace edgert
