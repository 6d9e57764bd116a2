// dequant_ref.cpp — rows of any dtype to float, and the exact (unquantized-activation) matmul
// that bounds the error of activation quantization in tests.
//
// The QFormat types compute each value as gguf.quants.dequantize does, operation for operation in
// float32 — (D * sc) * v, then - dmin * m or + m — so the values are equal bit for bit (tested
// against the gguf package). This file is compiled with -ffp-contract=off: a fused multiply-add
// (AArch64 contracts by default) would round once where numpy rounds twice.
#include <vector>

#include "kernels/kernels.h"
#include "kernels/qformat.h"
#include "kernels/ref/ref_kernels.h"

namespace edgert {

void row_to_float(DType t, const void* data, int64_t row, int64_t n, float* out) {
    const uint8_t* base = static_cast<const uint8_t*>(data) + row * dtype_row_bytes(t, n);
    switch (t) {
        case DType::F32: {
            const float* p = reinterpret_cast<const float*>(base);
            for (int64_t i = 0; i < n; ++i) out[i] = p[i];
            return;
        }
        case DType::F16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(base);
            for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(p[i]);
            return;
        }
        case DType::BF16: {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(base);
            for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(p[i]);
            return;
        }
        case DType::Q4_0: {
            const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(base);
            for (int64_t k = 0; k < n / kQK; ++k) {
                const float d = fp16_to_fp32(b[k].d);
                for (int j = 0; j < kQK / 2; ++j) {
                    out[k * kQK + j] = d * static_cast<float>((b[k].qs[j] & 0x0f) - 8);
                    out[k * kQK + j + kQK / 2] = d * static_cast<float>((b[k].qs[j] >> 4) - 8);
                }
            }
            return;
        }
        case DType::Q4_1: {
            const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(base);
            for (int64_t k = 0; k < n / kQK; ++k) {
                const float d = fp16_to_fp32(b[k].d);
                const float m = fp16_to_fp32(b[k].m);
                for (int j = 0; j < kQK / 2; ++j) {
                    out[k * kQK + j] = d * static_cast<float>(b[k].qs[j] & 0x0f) + m;
                    out[k * kQK + j + kQK / 2] = d * static_cast<float>(b[k].qs[j] >> 4) + m;
                }
            }
            return;
        }
        case DType::Q8_0: {
            const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(base);
            for (int64_t k = 0; k < n / kQK; ++k) {
                const float d = fp16_to_fp32(b[k].d);
                for (int j = 0; j < kQK; ++j) out[k * kQK + j] = d * static_cast<float>(b[k].qs[j]);
            }
            return;
        }
        default: break;
    }
    const QFormat f = qformat(t);
    QBlock qb;
    for (int64_t k = 0; k < n / kQK; ++k) {
        qblock_decode(t, base, k, qb);
        const float d = fp16_to_fp32(qb.d);
        const float dm = fp16_to_fp32(qb.dm);
        for (int j = 0; j < kQK; ++j) {
            const float scale = f.n_sub > 0 ? d * static_cast<float>(qb.sc[j / 16]) : d;
            float v = scale * static_cast<float>(qcode_value(f, qb.code[j]));
            if (f.k_min) v = v - dm * static_cast<float>(qb.m);
            if (f.f_min) v = v + dm;
            out[k * kQK + j] = v;
        }
    }
}

void matmul_dequant_ref(DType type, const void* data, int64_t rows, int64_t cols, const float* x,
                        int64_t n_tok, float* y) {
    std::vector<float> wrow(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        row_to_float(type, data, r, cols, wrow.data());
        for (int64_t t = 0; t < n_tok; ++t) {
            double acc = 0.0;
            for (int64_t k = 0; k < cols; ++k) acc += static_cast<double>(wrow[k]) * x[t * cols + k];
            y[t * rows + r] = static_cast<float>(acc);
        }
    }
}

}  // namespace edgert
