// dot_ref.cpp — scalar dot products and GEMM tiles: the reference every SIMD kernel is tested
// against. Integer sums per block, then fp32 accumulation of block scales, in block order.
#include <cstring>

#include "kernels/qformat.h"
#include "kernels/ref/ref_kernels.h"

namespace edgert {

float dot_q4_0_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n) {
    const BlockQ4_0* w = static_cast<const BlockQ4_0*>(w_row);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b) {
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            isum += ((w[b].qs[j] & 0x0f) - 8) * x[b].qs[j];
            isum += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + kQK / 2];
        }
        acc += fp16_to_fp32(w[b].d) * x[b].d * static_cast<float>(isum);
    }
    return acc;
}

float dot_q4_1_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n) {
    const BlockQ4_1* w = static_cast<const BlockQ4_1*>(w_row);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b) {
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            isum += (w[b].qs[j] & 0x0f) * x[b].qs[j];
            isum += (w[b].qs[j] >> 4) * x[b].qs[j + kQK / 2];
        }
        // The offset m contributes m * sum(x) = m * s, precomputed at quantization.
        acc += fp16_to_fp32(w[b].d) * x[b].d * static_cast<float>(isum) +
               fp16_to_fp32(w[b].m) * x[b].s;
    }
    return acc;
}

float dot_q8_0_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n) {
    const BlockQ8_0* w = static_cast<const BlockQ8_0*>(w_row);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / kQK; ++b) {
        int isum = 0;
        for (int j = 0; j < kQK; ++j) isum += w[b].qs[j] * x[b].qs[j];
        acc += fp16_to_fp32(w[b].d) * x[b].d * static_cast<float>(isum);
    }
    return acc;
}

// The QFormat types (qformat.h): integer sums per 16-element half, each half's sub-scale applied
// to its integer sum, block scale and activation scale in float, then the min term M * s.
template <DType T>
float dot_qformat_q8act_ref(const void* w_row, const BlockQ8Act* x, int64_t n) {
    constexpr QFormat f = qformat(T);
    const uint8_t* row = static_cast<const uint8_t*>(w_row);
    float acc = 0.0f;
    QBlock qb;
    for (int64_t b = 0; b < n / kQK; ++b) {
        qblock_decode(T, row, b, qb);
        int isum[2] = {0, 0};
        for (int j = 0; j < kQK; ++j) isum[j / 16] += qcode_value(f, qb.code[j]) * x[b].qs[j];
        const float d = fp16_to_fp32(qb.d);
        if (f.n_sub == 2) {
            acc += d * static_cast<float>(qb.sc[0]) * x[b].d * static_cast<float>(isum[0]);
            acc += d * static_cast<float>(qb.sc[1]) * x[b].d * static_cast<float>(isum[1]);
        } else {
            acc += d * static_cast<float>(qb.sc[0]) * x[b].d * static_cast<float>(isum[0] + isum[1]);
        }
        if (f.k_min) acc -= fp16_to_fp32(qb.dm) * static_cast<float>(qb.m) * x[b].s;
        if (f.f_min) acc += fp16_to_fp32(qb.dm) * x[b].s;
    }
    return acc;
}

float dot_f32_ref(const void* w_row, const float* x, int64_t n) {
    const float* w = static_cast<const float*>(w_row);
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += w[i] * x[i];
    return acc;
}

float dot_f16_ref(const void* w_row, const float* x, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(w_row);
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += fp16_to_fp32(w[i]) * x[i];
    return acc;
}

float dot_bf16_ref(const void* w_row, const float* x, int64_t n) {
    const uint16_t* w = static_cast<const uint16_t*>(w_row);
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) acc += bf16_to_fp32(w[i]) * x[i];
    return acc;
}

namespace {

template <typename Dot>
void gemm_q_tile(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                 int64_t t1, float* y, int64_t ldy, Dot dot) {
    const size_t row_bytes = dtype_row_bytes(w.type, w.cols);
    const int64_t nb = w.cols / kQK;
    for (int64_t t = t0; t < t1; ++t) {
        for (int64_t r = r0; r < r1; ++r) {
            const void* row = static_cast<const uint8_t*>(w.data) + r * row_bytes;
            y[t * ldy + r] = dot(row, xq + t * nb, w.cols);
        }
    }
}

template <typename Dot>
void gemm_f_tile(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                 int64_t t1, float* y, int64_t ldy, Dot dot) {
    const size_t row_bytes = dtype_row_bytes(w.type, w.cols);
    for (int64_t t = t0; t < t1; ++t) {
        for (int64_t r = r0; r < r1; ++r) {
            const void* row = static_cast<const uint8_t*>(w.data) + r * row_bytes;
            y[t * ldy + r] = dot(row, x + t * w.cols, w.cols);
        }
    }
}

}  // namespace

void gemm_q4_0_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy) {
    gemm_q_tile(w, xq, r0, r1, t0, t1, y, ldy, dot_q4_0_q8act_ref);
}
void gemm_q4_1_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy) {
    gemm_q_tile(w, xq, r0, r1, t0, t1, y, ldy, dot_q4_1_q8act_ref);
}
void gemm_q8_0_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy) {
    gemm_q_tile(w, xq, r0, r1, t0, t1, y, ldy, dot_q8_0_q8act_ref);
}
template <DType T>
void gemm_qformat_ref(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                      int64_t t1, float* y, int64_t ldy) {
    gemm_q_tile(w, xq, r0, r1, t0, t1, y, ldy, dot_qformat_q8act_ref<T>);
}
template void gemm_qformat_ref<DType::Q5_0>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q5_1>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::IQ4_NL>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q3_K>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q4_K>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q5_K>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q6_K>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::Q3_0>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);
template void gemm_qformat_ref<DType::IQ4_XS>(const WeightView&, const BlockQ8Act*, int64_t, int64_t, int64_t, int64_t, float*, int64_t);

void gemm_f32_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy) {
    gemm_f_tile(w, x, r0, r1, t0, t1, y, ldy, dot_f32_ref);
}
void gemm_f16_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                  int64_t t1, float* y, int64_t ldy) {
    gemm_f_tile(w, x, r0, r1, t0, t1, y, ldy, dot_f16_ref);
}
void gemm_bf16_ref(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0,
                   int64_t t1, float* y, int64_t ldy) {
    gemm_f_tile(w, x, r0, r1, t0, t1, y, ldy, dot_bf16_ref);
}

}  // namespace edgert
