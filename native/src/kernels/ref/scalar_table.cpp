// scalar_table.cpp — the scalar KernelTable: always built, chosen when no SIMD path applies, and
// the oracle the tests compare every other table against.
#include "kernels/ref/ref_kernels.h"

namespace edgert {

namespace {
size_t no_packing(DType, int64_t, int64_t) { return 0; }
void no_pack(DType, const void*, int64_t, int64_t, void*) {}
}  // namespace

const KernelTable kScalarKernels = {
    "scalar",
    quantize_q8act_ref,
    gemm_q4_0_ref,
    gemm_q4_1_ref,
    gemm_q8_0_ref,
    gemm_qformat_ref<DType::Q5_0>,
    gemm_qformat_ref<DType::Q5_1>,
    gemm_qformat_ref<DType::IQ4_NL>,
    gemm_qformat_ref<DType::Q3_K>,
    gemm_qformat_ref<DType::Q4_K>,
    gemm_qformat_ref<DType::Q5_K>,
    gemm_qformat_ref<DType::Q6_K>,
    gemm_qformat_ref<DType::IQ4_XS>,
    gemm_qformat_ref<DType::Q3_0>,
    gemm_f32_ref,
    gemm_f16_ref,
    gemm_bf16_ref,
    no_packing,
    no_pack,
    1,
    rmsnorm_ref,
    silu_mul_ref,
    add_inplace_ref,
    softmax_inplace_ref,
    rope_inplace_ref,
};

}  // namespace edgert
