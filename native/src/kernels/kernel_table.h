// kernel_table.h — the per-ISA table of function pointers behind kernels.h (kernel-layer private).
//
// One KernelTable per ISA file, filled statically; dispatch.cpp picks one at start-up from the
// CPU's features or EDGERT_ISA. Tests reach every table through kernel_table_for() to compare each
// ISA against the scalar one.
//
// ISA files are compiled with their own -m flags. This header therefore includes nothing from the
// standard library beyond <cstdint>/<cstddef>: any inline template an ISA file instantiated could
// be picked by the linker for the whole program and fault on an older CPU.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dtypes.h"

namespace edgert {

// A weight as the kernels see it: plain pointers only (see banner).
struct WeightView {
    DType type;
    const void* data;    // canonical row-major blocks from the file
    const void* packed;  // this ISA's re-layout from pack_weight, or null
    int64_t rows;
    int64_t cols;
};

// Quantized weights: Y[t * ldy + r] for r in [r0, r1), t in [t0, t1). xq holds n_tok rows of
// cols/32 activation blocks each. An output element must not depend on the tile bounds (the
// driver tiles by shape, and one-thread decode passes a weight's whole row range at once), so
// results do not depend on the thread count.
using QGemmFn = void (*)(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1,
                         int64_t t0, int64_t t1, float* y, int64_t ldy);
// Float weights (f32/f16/bf16) with f32 activations X [n_tok, cols]; same tile contract.
using FGemmFn = void (*)(const WeightView& w, const float* x, int64_t r0, int64_t r1,
                         int64_t t0, int64_t t1, float* y, int64_t ldy);

struct KernelTable {
    const char* name;
    // Activations to int8 blocks; n is a multiple of 32.
    void (*quantize_q8act)(const float* x, BlockQ8Act* y, int64_t n);
    QGemmFn gemm_q4_0;
    QGemmFn gemm_q4_1;
    QGemmFn gemm_q8_0;
    // The qformat.h types: one scalar reference and one microkernel per ISA serve all of them.
    QGemmFn gemm_q5_0;
    QGemmFn gemm_q5_1;
    QGemmFn gemm_iq4_nl;
    QGemmFn gemm_q3_k;
    QGemmFn gemm_q4_k;
    QGemmFn gemm_q5_k;
    QGemmFn gemm_q6_k;
    QGemmFn gemm_iq4_xs;
    QGemmFn gemm_q3_0;
    FGemmFn gemm_f32;
    FGemmFn gemm_f16;
    FGemmFn gemm_bf16;
    // Re-layout for this ISA: bytes needed (0 = this ISA does not re-lay this type out) and the
    // packing itself. Row tiles handed to gemm start at multiples of pack_rows.
    size_t (*packed_bytes)(DType t, int64_t rows, int64_t cols);
    void (*pack_weight)(DType t, const void* src, int64_t rows, int64_t cols, void* dst);
    int pack_rows;
    // Elementwise (semantics in kernels.h).
    void (*rmsnorm)(float* y, const float* x, const float* weight, int64_t n, float eps);
    void (*silu_mul)(float* gate, const float* up, int64_t n);
    void (*add_inplace)(float* y, const float* x, int64_t n);
    void (*softmax_inplace)(float* x, int64_t n);
    void (*rope_inplace)(float* v, int64_t head_dim, int64_t n_heads, int64_t pos,
                         const float* inv_freq);
};

// The table's GEMM for a quantized weight type (dtype_is_quantized(t)); defined in dispatch.cpp,
// not inline here (see the banner).
QGemmFn qgemm_for(const KernelTable& k, DType t);

// The table compiled for an ISA name, or null if this build or this CPU lacks it.
const KernelTable* kernel_table_for(const char* name);
// The table in use now (set_isa / EDGERT_ISA / best for the CPU).
const KernelTable& active_kernels();

extern const KernelTable kScalarKernels;

}  // namespace edgert
