// kernels.h — the kernel layer as the model code sees it.
//
// The model code (models/, runtime/) calls only what is declared here. Behind it sits a dispatch
// table filled once from the CPU's features (cpuid / getauxval): the scalar reference kernels in
// kernels/ref/ (always built; the test oracle of every SIMD kernel) and one file per ISA.
//
// Numerics: quantized weights (q4_0, q4_1, q8_0) are multiplied with activations quantized on the
// fly to int8 blocks (BlockQ8Act), integer dot products per block and fp32 accumulation of the
// block scales, as llama.cpp does. f32/f16/bf16 weights take f32 activations.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtypes.h"

namespace edgert {

class ThreadPool;

// A weight matrix [rows, cols], row-major, as mapped from the file (`data` always points at the
// file's canonical bytes). prepare_weight() may attach an ISA-specific re-layout in `packed`.
struct Weight {
    DType type = DType::F32;
    const void* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    // Quantized types only: take f32 activations and dequantize each weight row in the kernel
    // instead of rounding activations to int8. Slower; the reference precision.
    bool exact = false;
    // Kernel-layer private: re-laid-out copy for the ISA named by packed_isa, or null.
    std::shared_ptr<const void> packed;
    std::string packed_isa;
    size_t packed_bytes = 0;
};

// Called once per weight at model load, after the ISA is fixed. May re-lay the weight out for the
// current ISA; the scalar path never needs it.
void prepare_weight(Weight& w);

// Y[t * w.rows + r] = sum_k W[r, k] * X[t * w.cols + k]   for t < n_tok, r < w.rows.
// n_tok == 1 is decode (GEMV); n_tok > 1 is prefill (GEMM). Work is split over pool (may be null).
void matmul(const Weight& w, const float* X, int64_t n_tok, float* Y, ThreadPool* pool);

// One weight of a matmul_multi call and where its output goes ([n_tok, w->rows], as matmul).
struct MatmulTarget {
    const Weight* w;
    float* y;
};
// Several weights applied to the same X [n_tok, cols] (q/k/v; gate/up): results are bit-identical
// to one matmul() per target, but X is quantized to int8 once and all tiles share one pool round.
// Weights must have the same cols. Example:
//   const MatmulTarget qkv[] = {{&L.wq, q}, {&L.wk, k}, {&L.wv, v}};
//   matmul_multi(qkv, 3, xb, n_tok, pool);
void matmul_multi(const MatmulTarget* targets, int n_targets, const float* X, int64_t n_tok,
                  ThreadPool* pool);

// Elementwise ops (dispatched too, so fused SIMD versions can replace them).
void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps);  // y may be x
void silu_mul(float* gate, const float* up, int64_t n);  // gate[i] = silu(gate[i]) * up[i]
// gate[i] = gelu_tanh(gate[i]) * up[i] (GeGLU; PyTorch's gelu(approximate="tanh")). Scalar only
// for now: it runs once per FFN element, next to two matmuls over the same rows.
void gelu_tanh_mul(float* gate, const float* up, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);  // y += x
void softmax_inplace(float* x, int64_t n);
// Hugging Face rotate_half RoPE on n_heads consecutive vectors of head_dim floats at position pos.
// inv_freq has head_dim/2 entries: theta^(-2i/head_dim), already divided by rope_freqs if any.
void rope_inplace(float* v, int64_t head_dim, int64_t n_heads, int64_t pos, const float* inv_freq);
// Row r of a [rows, n] tensor of any dtype, as floats (embedding lookup).
void row_to_float(DType t, const void* data, int64_t row, int64_t n, float* out);

// Dispatch control (process-wide). Names: "scalar", "avx2", "avx512", "neon", ...
const char* current_isa();
std::vector<std::string> available_isas();
bool set_isa(const std::string& name);  // false if the CPU or build lacks it

}  // namespace edgert
