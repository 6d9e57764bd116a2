// test_kv_attention_rows.cpp — KV row formats: bytes per row against the size targets, and the
// encode/decode round trip within the error each format's scale admits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/attention/kv_attention.h"
#include "kernels/attention/kv_hadamard.h"
#include "kernels/attention/kv_row_format.h"
#include "test_kernels_common.h"

using edgert::KVType;
using edgert_test::fail;

namespace {

// Issue 4's memory targets, as a fraction of an F16 row.
constexpr double kQ8MaxBytesVsF16 = 0.55;
constexpr double kQ4MaxBytesVsF16 = 0.30;
// F16 rounding is to nearest: at most half an ulp, 2^-11 relative (normal range).
constexpr double kF16MaxRelErr = 1.0 / 2048.0;

void check_sizes() {
    for (int64_t D : {64, 128}) {
        const double f16 = static_cast<double>(edgert::kv_row_bytes(KVType::F16, D));
        const double q8 = static_cast<double>(edgert::kv_row_bytes(KVType::Q8, D)) / f16;
        const double q4 = static_cast<double>(edgert::kv_row_bytes(KVType::Q4, D)) / f16;
        std::printf("head_dim %3lld: q8 %.4f x f16, q4 %.4f x f16\n", static_cast<long long>(D), q8,
                    q4);
        if (q8 > kQ8MaxBytesVsF16) fail("q8 row D=%lld is %.4f x f16", (long long)D, q8);
        if (q4 > kQ4MaxBytesVsF16) fail("q4 row D=%lld is %.4f x f16", (long long)D, q4);
        if (edgert::kv_row_bytes(KVType::F32, D) != static_cast<size_t>(4 * D))
            fail("f32 row bytes");
    }
}

std::vector<float> make_row(std::mt19937& rng, int64_t D, int profile) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(D));
    for (auto& v : x) v = nd(rng);
    switch (profile) {
        case 1: x[3] = 40.0f; x[D - 1] = -25.0f; break;          // outlier channels
        case 2: for (auto& v : x) v *= 1000.0f; break;            // large but f16-safe
        case 3: for (auto& v : x) v *= 1e-3f; break;              // small
        case 4: std::fill(x.begin(), x.end(), 0.75f); break;      // constant row
        case 5: std::fill(x.begin(), x.end(), 0.0f); break;
        default: break;
    }
    return x;
}

void check_round_trip() {
    std::mt19937 rng(7);
    double worst[4] = {0, 0, 0, 0};
    for (KVType t : {KVType::F32, KVType::F16, KVType::Q8, KVType::Q4}) {
        for (int64_t D : {32, 64, 128, 256}) {
            for (int profile = 0; profile < 6; ++profile) {
                for (bool is_key : {true, false}) {
                    const auto x = make_row(rng, D, profile);
                    std::vector<uint8_t> row(edgert::kv_row_bytes(t, D));
                    std::vector<float> y(static_cast<size_t>(D));
                    edgert::kv_store_rows(t, is_key, x.data(), D, 1, D, row.data(), row.size());
                    edgert::kv_load_row(t, is_key, row.data(), D, y.data());
                    double err2 = 0, norm2 = 0, max_rel = 0;
                    for (int64_t i = 0; i < D; ++i) {
                        const double e = static_cast<double>(y[i]) - x[i];
                        err2 += e * e;
                        norm2 += static_cast<double>(x[i]) * x[i];
                        if (x[i] != 0) max_rel = std::max(max_rel, std::fabs(e / x[i]));
                        else if (e != 0) max_rel = 1e9;
                    }
                    const double err = std::sqrt(err2), norm = std::sqrt(norm2);
                    double bound = 0;
                    if (t == KVType::F16) {
                        if (max_rel > kF16MaxRelErr * 1.0001 && profile != 3)
                            fail("f16 D=%lld profile %d: rel err %g", (long long)D, profile,
                                 max_rel);
                        bound = kF16MaxRelErr * norm + 1e-7 * std::sqrt((double)D);
                    } else if (t == KVType::F32) {
                        bound = 0;
                    } else {
                        // Per element, in the rotated basis (orthogonal, so L2 norms carry over):
                        // half a step, plus what f16 rounding of d and m can push past the ends.
                        const int levels = t == KVType::Q8 ? 255 : 15;
                        std::vector<float> r = x;
                        edgert::attn::hadamard_inplace(r.data(), D);
                        const double lo = *std::min_element(r.begin(), r.end());
                        const double hi = *std::max_element(r.begin(), r.end());
                        uint16_t h[2];
                        std::memcpy(h, row.data(), 4);
                        const double d = edgert::fp16_to_fp32(h[0]), m = edgert::fp16_to_fp32(h[1]);
                        const double elem = d / 2 + std::fabs((hi - lo) / levels - d) * levels +
                                            std::fabs(lo - m);
                        bound = std::sqrt((double)D) * elem * 1.001 + 1e-6 * norm + 1e-30;
                    }
                    if (err > bound)
                        fail("%s D=%lld profile %d key=%d: round-trip L2 err %g > bound %g",
                             edgert::kv_type_label(t), (long long)D, profile, is_key, err, bound);
                    if (profile == 0 && norm > 0)
                        worst[static_cast<int>(t)] = std::max(worst[static_cast<int>(t)], err / norm);
                }
            }
        }
    }
    std::printf("round-trip relative L2 error, gaussian rows (worst): f32 %.2e f16 %.2e q8 %.2e "
                "q4 %.2e\n", worst[0], worst[1], worst[2], worst[3]);
}

// kv_store_rows must honour both strides (the cache interleaves heads and layers).
void check_strides() {
    std::mt19937 rng(3);
    const int64_t D = 64, n = 5, src_stride = D + 3;
    std::normal_distribution<float> nd;
    std::vector<float> src(static_cast<size_t>(n * src_stride));
    for (auto& v : src) v = nd(rng);
    for (KVType t : {KVType::F32, KVType::F16, KVType::Q8, KVType::Q4}) {
        const size_t rb = edgert::kv_row_bytes(t, D), dst_stride = rb + 13;
        std::vector<uint8_t> dst(dst_stride * n, 0xAB);
        edgert::kv_store_rows(t, true, src.data(), src_stride, n, D, dst.data(), dst_stride);
        for (int64_t r = 0; r < n; ++r) {
            std::vector<uint8_t> one(rb);
            edgert::kv_store_rows(t, true, src.data() + r * src_stride, D, 1, D, one.data(), rb);
            if (std::memcmp(one.data(), dst.data() + r * dst_stride, rb) != 0)
                fail("%s: strided row %lld differs from a single-row store", edgert::kv_type_label(t),
                     (long long)r);
            for (size_t b = rb; b < dst_stride; ++b)
                if (dst[r * dst_stride + b] != 0xAB) fail("%s: wrote past the row", edgert::kv_type_label(t));
        }
    }
}

}  // namespace

int main() {
    check_sizes();
    check_round_trip();
    check_strides();
    return edgert_test::finish("test_kv_attention_rows");
}
