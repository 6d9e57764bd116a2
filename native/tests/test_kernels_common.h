// test_kernels_common.h — shared by the kernel tests: a failure counter that prints what failed,
// random weight/activation generators, and the error bound of activation quantization.
#pragma once
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dtypes.h"
#include "kernels/kernel_table.h"
#include "kernels/kernels.h"
#include "kernels/qformat.h"

namespace edgert_test {

inline int& failures() {
    static int n = 0;
    return n;
}

// Records a failure (printf-style message) and returns false; stops printing after 50.
inline bool fail(const char* fmt, ...) {
    if (++failures() <= 50) {
        std::va_list ap;
        va_start(ap, fmt);
        std::fputs("FAIL: ", stderr);
        std::vfprintf(stderr, fmt, ap);
        std::fputc('\n', stderr);
        va_end(ap);
    }
    return false;
}

inline int finish(const char* name) {
    if (failures() == 0) {
        std::printf("%s: all checks passed\n", name);
        return 0;
    }
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
}

// Value profiles for weights and activations; the extreme ones are where SIMD kernels break.
enum class Profile { Random, HugeScale, TinyScale, AllEqual, Zeros, Outlier };
inline const char* profile_name(Profile p) {
    switch (p) {
        case Profile::Random: return "random";
        case Profile::HugeScale: return "huge";
        case Profile::TinyScale: return "tiny";
        case Profile::AllEqual: return "all-equal";
        case Profile::Zeros: return "zeros";
        case Profile::Outlier: return "outlier";
    }
    return "?";
}
constexpr Profile kAllProfiles[] = {Profile::Random,   Profile::HugeScale, Profile::TinyScale,
                                    Profile::AllEqual, Profile::Zeros,     Profile::Outlier};

inline std::vector<float> make_activations(std::mt19937& rng, Profile p, size_t n) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) {
        switch (p) {
            case Profile::Random: x[i] = nd(rng); break;
            case Profile::HugeScale: x[i] = nd(rng) * 1e12f; break;
            case Profile::TinyScale: x[i] = nd(rng) * 1e-25f; break;
            case Profile::AllEqual: x[i] = 0.75f; break;
            case Profile::Zeros: x[i] = 0.0f; break;
            case Profile::Outlier: x[i] = (i % 97 == 3) ? 300.0f : nd(rng) * 0.01f; break;
        }
    }
    return x;
}

// Random weights in canonical layout. Block scales follow the profile (f16 range: the huge
// profile uses scales near 65504, the tiny one f16 subnormals).
inline std::vector<uint8_t> make_weights(std::mt19937& rng, edgert::DType t, Profile p,
                                         int64_t rows, int64_t cols) {
    using namespace edgert;
    std::vector<uint8_t> buf(dtype_row_bytes(t, cols) * rows);
    std::uniform_int_distribution<int> byte(0, 255);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto scale = [&]() -> float {
        switch (p) {
            case Profile::HugeScale: return 60000.0f * (0.5f + 0.5f * std::fabs(nd(rng)) / 4.0f);
            case Profile::TinyScale: return 3e-7f * (1.0f + std::fabs(nd(rng)));
            case Profile::Zeros: return 0.0f;
            case Profile::AllEqual: return 0.01f;
            default: return 0.02f * (0.1f + std::fabs(nd(rng)));
        }
    };
    auto nib = [&]() -> uint8_t {
        if (p == Profile::AllEqual) return 0xff;
        return static_cast<uint8_t>(byte(rng));
    };
    const int64_t n = rows * cols;
    switch (t) {
        case DType::Q4_0: {
            auto* b = reinterpret_cast<BlockQ4_0*>(buf.data());
            for (int64_t i = 0; i < n / kQK; ++i) {
                b[i].d = fp32_to_fp16(scale());
                for (auto& q : b[i].qs) q = nib();
            }
            break;
        }
        case DType::Q4_1: {
            auto* b = reinterpret_cast<BlockQ4_1*>(buf.data());
            for (int64_t i = 0; i < n / kQK; ++i) {
                b[i].d = fp32_to_fp16(scale());
                b[i].m = fp32_to_fp16(std::fmax(-8.0f * scale(), -65000.0f));  // stay finite in f16
                for (auto& q : b[i].qs) q = nib();
            }
            break;
        }
        case DType::Q8_0: {
            auto* b = reinterpret_cast<BlockQ8_0*>(buf.data());
            for (int64_t i = 0; i < n / kQK; ++i) {
                b[i].d = fp32_to_fp16(scale() / 8.0f);
                for (auto& q : b[i].qs) {
                    q = p == Profile::AllEqual ? int8_t{127} : static_cast<int8_t>(byte(rng) - 128);
                    if (q == -128) q = -127;  // the format's range is symmetric
                }
            }
            break;
        }
        case DType::Q5_0: case DType::Q5_1: case DType::IQ4_NL: case DType::Q3_K: case DType::Q4_K:
        case DType::Q5_K: case DType::Q6_K: case DType::IQ4_XS: case DType::Q3_0: {
            // Codes and integer sub-scales: random bytes (every value, the extremes included), or
            // all bits set; the f16 scales follow the profile.
            for (auto& v : buf) v = nib();
            const size_t bb = dtype_block_bytes(t);
            size_t d_at = 0, m_at = SIZE_MAX;
            if (t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K) m_at = 2;
            if (t == DType::Q3_K) d_at = 108;
            if (t == DType::Q6_K) d_at = 208;
            for (size_t i = 0; i < buf.size() / bb; ++i) {
                const uint16_t d = fp32_to_fp16(scale() / (t == DType::Q6_K ? 16.0f : 1.0f));
                std::memcpy(&buf[i * bb + d_at], &d, 2);
                if (m_at != SIZE_MAX) {
                    const float m = t == DType::Q5_1 ? std::fmax(-16.0f * scale(), -65000.0f) : scale();
                    const uint16_t mh = fp32_to_fp16(m);
                    std::memcpy(&buf[i * bb + m_at], &mh, 2);
                }
            }
            break;
        }
        case DType::F32: case DType::F16: case DType::BF16: {
            for (int64_t i = 0; i < n; ++i) {
                float v = p == Profile::AllEqual ? 0.5f : nd(rng) * scale() * 4.0f;
                v = std::fmax(-65000.0f, std::fmin(65000.0f, v));  // finite in f16
                if (t == DType::F32) reinterpret_cast<float*>(buf.data())[i] = v;
                else if (t == DType::F16) reinterpret_cast<uint16_t*>(buf.data())[i] = fp32_to_fp16(v);
                else reinterpret_cast<uint16_t*>(buf.data())[i] = fp32_to_bf16(v);
            }
            break;
        }
    }
    return buf;
}

inline bool is_quantized(edgert::DType t) { return edgert::dtype_is_quantized(t); }

// Every quantized weight type, legacy first.
constexpr edgert::DType kQuantTypes[] = {
    edgert::DType::Q4_0, edgert::DType::Q4_1, edgert::DType::Q8_0,   edgert::DType::Q5_0,
    edgert::DType::Q5_1, edgert::DType::IQ4_NL, edgert::DType::Q3_K, edgert::DType::Q4_K,
    edgert::DType::Q5_K, edgert::DType::Q6_K, edgert::DType::IQ4_XS, edgert::DType::Q3_0};
// Activation blocks the quantizers cannot represent, each beside ordinary values and at lanes
// that fall in different SIMD registers and halves: NaN (quiet, negative, signaling), +-Inf,
// beyond kQ8ActMaxAmax, -FLT_MAX; plus the boundary value itself (representable), an all-NaN
// block, NaN among zeros (max|x| 0 must not win) and an ordinary block. A multiple of 32 values.
inline std::vector<float> make_unrepresentable_activations(std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto from_bits = [](uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; };
    const float specials[] = {NAN, INFINITY, -INFINITY, 2e37f, -3.4028235e38f, 1e37f,
                              from_bits(0xffc00000u), from_bits(0x7f800001u)};
    std::vector<float> x;
    auto block = [&](float scale) {
        for (int j = 0; j < 32; ++j) x.push_back(nd(rng) * scale);
        return x.size() - 32;
    };
    for (float v : specials)
        for (int lane : {0, 7, 8, 15, 16, 31}) x[block(1.0f) + size_t(lane)] = v;
    const size_t all_nan = block(1.0f);
    for (int j = 0; j < 32; ++j) x[all_nan + size_t(j)] = NAN;
    x[block(0.0f) + 9] = NAN;
    block(1.0f);
    return x;
}

// Sum_k |W[r,k]| * |X[t,k]| per output: the natural scale of both rounding and accumulation
// error, so tolerances are relative to it rather than to a result that may cancel to ~0.
inline std::vector<double> abs_dot(edgert::DType t, const void* w, int64_t rows, int64_t cols,
                                   const float* x, int64_t n_tok) {
    std::vector<double> out(static_cast<size_t>(rows * n_tok));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        edgert::row_to_float(t, w, r, cols, row.data());
        for (int64_t tk = 0; tk < n_tok; ++tk) {
            double a = 0;
            for (int64_t k = 0; k < cols; ++k) a += std::fabs(static_cast<double>(row[k]) * x[tk * cols + k]);
            out[tk * rows + r] = a;
        }
    }
    return out;
}

// The table's GEMM for a quantized weight type.
inline edgert::QGemmFn qgemm_of(const edgert::KernelTable& k, edgert::DType t) { return edgert::qgemm_for(k, t); }

// SIMD and scalar share the integer block sums exactly; they differ only in fp32 rounding of
// block scales and in accumulation order. Relative to sum_b |d_w d_x| * sum_j |w_j q_j| (+ |m s|)
// the worst case is ~n_blocks * 2^-24 (129 blocks: 8e-6).
constexpr double kQuantDotRelTol = 2e-5;

// The error scale of one quantized output: sum over blocks of |d_w d_x| * sum_j |w_j q_j|.
inline double quant_abs_sum(edgert::DType t, const uint8_t* row, const edgert::BlockQ8Act* x, int64_t nb) {
    using namespace edgert;
    double total = 0;
    for (int64_t b = 0; b < nb; ++b) {
        double s = 0, dw = 0, extra = 0;
        if (t == DType::Q4_0) {
            const BlockQ4_0& w = reinterpret_cast<const BlockQ4_0*>(row)[b];
            dw = fp16_to_fp32(w.d);
            for (int j = 0; j < 16; ++j)
                s += std::abs(((w.qs[j] & 15) - 8) * x[b].qs[j]) + std::abs(((w.qs[j] >> 4) - 8) * x[b].qs[j + 16]);
        } else if (t == DType::Q4_1) {
            const BlockQ4_1& w = reinterpret_cast<const BlockQ4_1*>(row)[b];
            dw = fp16_to_fp32(w.d);
            for (int j = 0; j < 16; ++j)
                s += std::abs((w.qs[j] & 15) * x[b].qs[j]) + std::abs((w.qs[j] >> 4) * x[b].qs[j + 16]);
            extra = std::fabs(double(fp16_to_fp32(w.m)) * x[b].s);
        } else if (t == DType::Q8_0) {
            const BlockQ8_0& w = reinterpret_cast<const BlockQ8_0*>(row)[b];
            dw = fp16_to_fp32(w.d);
            for (int j = 0; j < 32; ++j) s += std::abs(w.qs[j] * x[b].qs[j]);
        } else {
            // qformat types: sum over halves of |sc_h| * sum |v q|, the min term as q4_1's.
            const QFormat f = qformat(t);
            QBlock qb;
            qblock_decode(t, row, b, qb);
            dw = fp16_to_fp32(qb.d);
            for (int j = 0; j < 32; ++j)
                s += std::abs(qb.sc[j / 16] * qcode_value(f, qb.code[j]) * x[b].qs[j]);
            if (f.k_min) extra = std::fabs(double(fp16_to_fp32(qb.dm)) * qb.m * x[b].s);
            if (f.f_min) extra = std::fabs(double(fp16_to_fp32(qb.dm)) * x[b].s);
        }
        total += std::fabs(dw * x[b].d) * s + extra;
    }
    return total;
}

}  // namespace edgert_test
