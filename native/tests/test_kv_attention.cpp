// test_kv_attention.cpp — attention() and every ISA's position loop against attention_ref (decode
// then plain softmax) for every KV type, odd cache lengths, head_dim 64/128 (and 32/80/112),
// GQA groups 1/3/8, decode and causal prefill, extreme magnitudes and all-equal scores.
//
// Usage: test_kv_attention [--require=ISA]   (fail if that ISA's loop cannot run here)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_attention.h"
#include "test_kernels_common.h"

using edgert::AttentionArgs;
using edgert::KVType;
using edgert_test::fail;

namespace {

// Error = max |out - ref| / max |V| (attention outputs are convex combinations of V rows).
// Float keys: only summation order differs from the double oracle.
constexpr double kTolFloatKeys = 2e-5;
// Quantized keys: q is quantized to int8 (one scale per head) for the integer dot product, so
// scores carry ~0.4% relative error the oracle does not; on these outlier-heavy keys that moves
// outputs by up to 1.5e-2 of max|V| (measured, every ISA alike since the integer sums are exact).
constexpr double kTolQuantKeys = 2e-2;
// Each SIMD loop against the scalar loop (its twin): integer dot products are exact in both, so
// only float summation order and the vector exp differ.
constexpr double kTolVsScalar = 1e-4;
// One dominant key (scores differ by >> quantization error): the output is that V row.
constexpr double kTolDominant = 1e-3;
// Added for the bf16 weighted V sum (avx512bf16, quantized V rows): p and V rounded to bf16 (unit
// roundoff u = 2^-8) move each term p*v by at most (2u + u^2) of p|v|, and the weights sum to the
// f32 softmax sum, so an output moves by at most (2u + u^2) of max|V| on top of the f32 error.
constexpr double kTolBf16Sum = 2.0 / 256 + 1.0 / 65536;

enum class Data { Realistic, Extreme, EqualScores, ZeroQuery };
const char* data_name(Data d) {
    switch (d) {
        case Data::Realistic: return "realistic";
        case Data::Extreme: return "extreme";
        case Data::EqualScores: return "equal-scores";
        case Data::ZeroQuery: return "zero-query";
    }
    return "?";
}

struct Case {
    KVType kt, vt;
    int64_t len;  // positions the last query token sees
    int64_t D, G, T;
    Data data;
    int64_t window = 0;   // sliding window (0: full causal)
    float softcap = 0.f;  // score soft-capping (0: none)
};

struct Problem {
    std::vector<float> q, kf, vf;
    std::vector<uint8_t> k, v;
    std::vector<uint16_t> koff, ksink;  // Q4 keys' block offsets and exact position-0 key
    AttentionArgs a;
    double vmax = 0;
};

// Keys with a few large, biased channels (as real LLM keys have) and a per-token magnitude
// spread; values milder. Extreme: one key aligned with every query and magnitudes near the f16
// limit after rotation, so one softmax weight is ~1 and the rest underflow.
Problem make_problem(const Case& c, std::mt19937& rng) {
    Problem pr;
    const int64_t D = c.D;
    const int64_t pos0 = std::max<int64_t>(0, c.len - c.T), n = pos0 + c.T;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    pr.kf.resize(static_cast<size_t>(n * D));
    pr.vf.resize(pr.kf.size());
    pr.q.resize(static_cast<size_t>(c.T * c.G * D));
    const int64_t ch[3] = {5 % D, 17 % D, D - 9};
    for (int64_t p = 0; p < n; ++p) {
        const float mag = std::exp(0.3f * nd(rng));
        for (int64_t i = 0; i < D; ++i) {
            pr.kf[p * D + i] = nd(rng) * mag;
            pr.vf[p * D + i] = nd(rng);
        }
        for (int64_t o : ch) pr.kf[p * D + o] = 6.0f * pr.kf[p * D + o] + 8.0f;
    }
    for (auto& x : pr.q) x = nd(rng);
    for (int64_t r = 0; r < c.T * c.G; ++r)
        for (int64_t o : ch) pr.q[r * D + o] *= 0.5f;
    if (c.data == Data::Extreme) {
        const int64_t hot = n / 2;
        for (auto& x : pr.kf) x *= 0.01f;
        for (int64_t i = 0; i < D; ++i) pr.kf[hot * D + i] = (i % 2 ? 300.0f : -300.0f);
        for (auto& x : pr.vf) x *= 3000.0f;
        for (int64_t r = 0; r < c.T * c.G; ++r)
            for (int64_t i = 0; i < D; ++i) pr.q[r * D + i] = (i % 2 ? 250.0f : -250.0f);
    } else if (c.data == Data::EqualScores) {
        for (int64_t p = 1; p < n; ++p)
            std::copy(pr.kf.begin(), pr.kf.begin() + D, pr.kf.begin() + p * D);
    } else if (c.data == Data::ZeroQuery) {
        std::fill(pr.q.begin(), pr.q.end(), 0.0f);
    }
    // Odd strides catch kernels that assume packed rows or aligned loads.
    const size_t ks = edgert::kv_row_bytes(c.kt, D) + 6, vs = edgert::kv_row_bytes(c.vt, D) + 10;
    pr.k.assign(ks * n, 0);
    pr.v.assign(vs * n, 0);
    if (edgert::kv_has_block_offset(c.kt, true)) {
        // One offset per block of keys, as the runtime's cache keeps them (the biased channels
        // above are what the offset is for); a short block keeps a zero offset, as there.
        // Position 0 is kept exactly (the sink) and stays out of block 0's mean, as there.
        const int64_t B = edgert::kKvOffsetBlock;
        pr.koff.assign(static_cast<size_t>((n + B - 1) / B * D), 0);
        pr.ksink.assign(static_cast<size_t>(D), 0);
        edgert::kv_sink_row(pr.kf.data(), D, pr.ksink.data());
        for (int64_t b0 = 0; b0 < n; b0 += B) {
            const int64_t nb = std::min(B, n - b0), skip = b0 == 0 ? 1 : 0;
            uint16_t* off = pr.koff.data() + b0 / B * D;
            if (nb - skip >= edgert::kKvMinOffsetRows)
                edgert::kv_block_offset(pr.kf.data() + (b0 + skip) * D, D, nb - skip, D, off);
            edgert::kv_store_rows(c.kt, true, pr.kf.data() + b0 * D, D, nb, D, pr.k.data() + b0 * ks, ks, off);
        }
    } else {
        edgert::kv_store_rows(c.kt, true, pr.kf.data(), D, n, D, pr.k.data(), ks);
    }
    edgert::kv_store_rows(c.vt, false, pr.vf.data(), D, n, D, pr.v.data(), vs);
    std::vector<float> row(static_cast<size_t>(D));
    for (int64_t p = 0; p < n; ++p) {
        edgert::kv_load_row(c.vt, false, pr.v.data() + p * vs, D, row.data());
        for (float x : row) pr.vmax = std::max(pr.vmax, (double)std::fabs(x));
    }
    AttentionArgs& a = pr.a;
    a.q = pr.q.data();
    a.q_token_stride = c.G * D;
    a.n_group = c.G;
    a.n_tokens = c.T;
    a.pos0 = pos0;
    a.k = pr.k.data();
    a.k_offset = pr.koff.empty() ? nullptr : pr.koff.data();
    a.k_sink = pr.ksink.empty() ? nullptr : pr.ksink.data();
    a.k_type = c.kt;
    a.k_stride = ks;
    a.v = pr.v.data();
    a.v_type = c.vt;
    a.v_stride = vs;
    a.head_dim = D;
    a.scale = 1.0f / std::sqrt(static_cast<float>(D));
    a.window = c.window;
    a.softcap = c.softcap;
    a.out_token_stride = c.G * D + 5;
    return pr;
}

double tolerance_f32(const Case& c) {
    if (c.data == Data::Extreme) return kTolDominant;
    if (c.data == Data::ZeroQuery) return kTolFloatKeys;  // all scores 0: uniform weights
    // Equal keys shift every score alike, so the weights stay exactly uniform, except that Q4
    // keys keep position 0 exactly (the sink) while the others carry quantization error.
    if (c.data == Data::EqualScores)
        return edgert::kv_has_block_offset(c.kt, true) ? kTolQuantKeys : kTolFloatKeys;
    return (c.kt == KVType::Q8 || c.kt == KVType::Q4) ? kTolQuantKeys : kTolFloatKeys;
}

// The weighted V sum's own error for the loop named isa (F32/F16 V rows always take an f32 sum).
double sum_tolerance(const char* isa, KVType vt) {
    const bool quant_v = vt == KVType::Q8 || vt == KVType::Q4;
    return quant_v && std::strcmp(isa, "avx512bf16") == 0 ? kTolBf16Sum : 0.0;
}

}  // namespace

namespace {

double max_err(const Problem& pr, const Case& c, const std::vector<float>& out,
               const std::vector<float>& ref) {
    double e = 0;
    for (int64_t t = 0; t < c.T; ++t)
        for (int64_t i = 0; i < c.G * c.D; ++i) {
            const size_t at = static_cast<size_t>(t * pr.a.out_token_stride + i);
            const double d = std::fabs(static_cast<double>(out[at]) - ref[at]);
            e = std::max(e, std::isfinite(d) ? d : 1e300);
        }
    return e / std::max(pr.vmax, 1e-30);
}

struct Stats {
    double worst[5][4] = {};  // [isa][k type]: worst error on realistic data
};

void run_case(const Case& c, std::mt19937& rng, const std::vector<std::string>& isas, Stats& st) {
    Problem pr = make_problem(c, rng);
    const size_t out_n = static_cast<size_t>(c.T * pr.a.out_token_stride);
    std::vector<float> ref(out_n, 0.0f), out(out_n);
    AttentionArgs a = pr.a;
    a.out = ref.data();
    edgert::attention_ref(a);
    std::vector<float> scalar(out_n, 0.0f);
    a.out = scalar.data();
    edgert::attn::attention_with(a, edgert::attn::attention_pass_scalar);
    for (size_t k = 0; k <= isas.size(); ++k) {
        std::fill(out.begin(), out.end(), 0.0f);
        a.out = out.data();
        const char* name = k < isas.size() ? isas[k].c_str() : "dispatch";
        if (k < isas.size()) edgert::attn::attention_with(a, edgert::attn::attention_pass_for(name));
        else edgert::attention(a);
        const double sum_tol = sum_tolerance(k < isas.size() ? name : edgert::attn::attention_isa(), c.vt);
        const double tol = tolerance_f32(c) + sum_tol;
        const double e = max_err(pr, c, out, ref);
        if (c.data == Data::Realistic && k < isas.size())
            st.worst[k][static_cast<int>(c.kt)] = std::max(st.worst[k][static_cast<int>(c.kt)], e);
        if (!(e <= tol))
            fail("%s k=%s v=%s len=%lld D=%lld G=%lld T=%lld %s: err %.3g > tol %.3g", name,
                 edgert::kv_type_label(c.kt), edgert::kv_type_label(c.vt), (long long)c.len, (long long)c.D,
                 (long long)c.G, (long long)c.T, data_name(c.data), e, tol);
        const double es = max_err(pr, c, out, scalar);
        if (!(es <= kTolVsScalar + sum_tol))
            fail("%s vs scalar k=%s v=%s len=%lld D=%lld G=%lld T=%lld %s: err %.3g > tol %.3g",
                 name, edgert::kv_type_label(c.kt), edgert::kv_type_label(c.vt), (long long)c.len, (long long)c.D,
                 (long long)c.G, (long long)c.T, data_name(c.data), es, kTolVsScalar + sum_tol);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string require;
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--require=", 10) == 0) require = argv[i] + 10;
    std::vector<std::string> isas;
    for (const char* n : {"scalar", "avx2", "avx512", "avx512bf16", "neon"})
        if (edgert::attn::attention_pass_for(n) != nullptr) isas.push_back(n);
    std::printf("ISAs tested:");
    for (auto& n : isas) std::printf(" %s", n.c_str());
    std::printf(" (+ dispatch via current_isa()=%s: %s)\n", edgert::current_isa(),
                edgert::attn::attention_isa());
    if (!require.empty() && std::find(isas.begin(), isas.end(), require) == isas.end())
        fail("required ISA %s is not available", require.c_str());

    // Every type in both roles, paired so the matrix stays small; float keys with each quantized
    // V type isolate the V side's error (the bf16 sum's, for one).
    const std::pair<KVType, KVType> kv[] = {
        {KVType::F32, KVType::F32}, {KVType::F16, KVType::F16}, {KVType::Q8, KVType::Q8},
        {KVType::Q4, KVType::Q4},   {KVType::Q8, KVType::F16},  {KVType::F16, KVType::Q4},
        {KVType::F32, KVType::Q8}};
    const int64_t lens[] = {1, 2, 31, 33, 100, 1000, 4097};
    std::mt19937 rng(1234);
    Stats st;
    for (auto [kt, vt] : kv)
        for (int64_t len : lens)
            for (int64_t D : {64, 128})
                for (int64_t G : {1, 3, 8})
                    for (int64_t T : {1, 7}) {
                        // The longest cache only for the widest group: it is about tiling, and
                        // the oracle's cost grows with G * T.
                        if (len == 4097 && (G != 8 || D != 64)) continue;
                        run_case({kt, vt, len, D, G, T, Data::Realistic}, rng, isas, st);
                    }
    // Head sizes that leave a partial block of 64 channels in the SIMD weighted sums (quantized
    // rows need a power of two; float rows take any size), with 1, 2 and 3 query rows left over
    // after the blocks of four rows.
    for (auto [kt, vt] : kv)
        for (int64_t D : {32, 80, 112})
            for (auto [G, T] : {std::pair<int64_t, int64_t>{2, 1}, {3, 2}, {1, 7}})
                if (edgert::kv_head_dim_supported(kt, D) && edgert::kv_head_dim_supported(vt, D))
                    run_case({kt, vt, 100, D, G, T, Data::Realistic}, rng, isas, st);
    for (auto [kt, vt] : kv)
        for (Data d : {Data::Extreme, Data::EqualScores, Data::ZeroQuery})
            for (int64_t len : {1, 33, 100})
                for (int64_t D : {64, 128})
                    run_case({kt, vt, len, D, 3, 7, d}, rng, isas, st);
    // Sliding windows (narrower than a tile, a tile, wider; prefill rows start in different
    // tiles) and soft-capped scores (Gemma 2), through every position loop.
    const std::pair<KVType, KVType> kv_window[] = {
        {KVType::F32, KVType::F32}, {KVType::Q8, KVType::Q8}, {KVType::Q4, KVType::Q4}, {KVType::F16, KVType::Q4}};
    for (auto [kt, vt] : kv_window)
        for (auto [window, cap] : {std::pair<int64_t, float>{5, 0.f}, {100, 2.f}, {0, 2.f}})
            for (int64_t T : {1, 70})
                run_case({kt, vt, 300, 64, 3, T, Data::Realistic, window, cap}, rng, isas, st);
    // More query heads than one pass holds (e.g. multi-query attention) must split correctly.
    const int64_t wide = edgert::attn::kMaxRows + 8;
    run_case({KVType::Q8, KVType::Q8, 70, 64, wide, 1, Data::Realistic}, rng, isas, st);
    run_case({KVType::F16, KVType::F16, 70, 64, wide, 2, Data::Realistic}, rng, isas, st);

    std::printf("worst error / max|V| on realistic caches (k type f32 f16 q8 q4):\n");
    for (size_t k = 0; k < isas.size(); ++k)
        std::printf("  %-10s %.2e %.2e %.2e %.2e\n", isas[k].c_str(), st.worst[k][0],
                    st.worst[k][1], st.worst[k][2], st.worst[k][3]);
    return edgert_test::finish("test_kv_attention");
}
