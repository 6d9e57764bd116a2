// ref_kernels.h — the scalar reference kernels: the fallback path and the oracle of every SIMD
// kernel. Written for clarity, in the order of operations the SIMD kernels are meant to match
// (quantize with a multiply by 1/d, round to nearest even; integer block sums; fp32 block scales).
#pragma once
#include <cstdint>

#include "kernels/kernel_table.h"

namespace edgert {

void quantize_q8act_ref(const float* x, BlockQ8Act* y, int64_t n);

// Dot product of one weight row (n elements, n % 32 == 0) with quantized activations.
float dot_q4_0_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n);
float dot_q4_1_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n);
float dot_q8_0_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n);
// Dot product of one float-type weight row with f32 activations.
float dot_f32_ref(const void* w_row, const float* x, int64_t n);
float dot_f16_ref(const void* w_row, const float* x, int64_t n);
float dot_bf16_ref(const void* w_row, const float* x, int64_t n);

void gemm_q4_0_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy);
void gemm_q4_1_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy);
void gemm_q8_0_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy);
// q5_0, q5_1, iq4_nl, q3_k, q4_k, q5_k, q6_k, iq4_xs (qformat.h), one instantiation per type.
template <DType T>
void gemm_qformat_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                      int64_t t1, float* y, int64_t ldy);
void gemm_f32_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy);
void gemm_f16_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy);
void gemm_bf16_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy);

void rmsnorm_ref(float* y, const float* x, const float* weight, int64_t n, float eps);
void silu_mul_ref(float* gate, const float* up, int64_t n);
void gelu_tanh_mul_ref(float* gate, const float* up, int64_t n);
void add_inplace_ref(float* y, const float* x, int64_t n);
void softmax_inplace_ref(float* x, int64_t n);
void rope_inplace_ref(float* v, int64_t head_dim, int64_t n_heads, int64_t pos,
                      const float* inv_freq);

// Exact reference (no activation quantization): dequantize each weight row to float and take a
// double-accumulated dot with X. Tests bound the quantized kernels' error against this.
// Y[t * w.rows + r] for all r, t.
void matmul_dequant_ref(DType type, const void* data, int64_t rows, int64_t cols, const float* x,
                        int64_t n_tok, float* y);

}  // namespace edgert
