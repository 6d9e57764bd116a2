// attention_dispatch.cpp — the driver of the tiled attention: splits the query rows into passes,
// prepares each pass (rotate and quantize q, scratch), runs the ISA's position loop, finishes the
// outputs (divide by the softmax sum, rotate back). Built without ISA
// flags; the ISA is chosen per call from current_isa(), so set_isa()/EDGERT_ISA apply here too.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_hadamard.h"
#include "kernels/attention/kv_round.h"
#include "kernels/attention/kv_row_format.h"
#include "kernels/cpu_features.h"
#include "kernels/kernels.h"

namespace edgert {
namespace attn {

namespace {

// Grown on demand and kept per thread: the runtime calls attention once per layer and KV head,
// and a fresh allocation per call would page-fault on every large scratch.
struct Scratch {
    std::vector<float> f;
    std::vector<uint8_t> b;
};

template <class T>
T* aligned64(std::vector<T>& v, size_t n) {
    const size_t pad = 64 / sizeof(T);
    if (v.size() < n + pad) v.resize(n + pad);
    const auto addr = reinterpret_cast<uintptr_t>(v.data());
    return reinterpret_cast<T*>((addr + 63) & ~static_cast<uintptr_t>(63));
}

// Symmetric int8 with one scale per row (n % 8 == 0: quantized keys have a power-of-two head_dim
// of at least 32): keys carry one scale per row too, so q.k is a single
// integer dot product (the rotation has already removed the outlier channels).
void quantize_query(const float* x, int64_t n, int8_t* q, float* d, int32_t* sum) {
    // fabs is a mask, fmax a libm call here; eight partial maxima keep the loop free of branches
    // and of one long dependency chain (a branchy abs was 5% of a 2048-token prefill).
    float part[8] = {};
    for (int64_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; ++k) {
            const float a = std::fabs(x[i + k]);
            part[k] = a > part[k] ? a : part[k];
        }
    float amax = 0.0f;
    for (float m : part) amax = m > amax ? m : amax;
    const float dq = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int64_t i = 0; i < n; ++i) {
        // |r| <= 127 whenever the row is finite; a NaN or Inf element (NaN * inv, Inf * 0) is
        // stored as 0 instead of converted (undefined). d is then Inf or the scores NaN anyway.
        const float r = round_even(x[i] * inv);
        q[i] = static_cast<int8_t>(r >= -127.0f && r <= 127.0f ? r : 0.0f);
        s += q[i];
    }
    *d = dq;
    *sum = s;
}

void run_passes(const AttentionArgs& a, AttentionPassFn fn) {
    const int64_t D = a.head_dim, G = a.n_group, T = a.n_tokens;
    const int64_t tq = G <= kMaxRows ? kMaxRows / G : 1;
    const int64_t gchunk = G <= kMaxRows ? G : kMaxRows;
    const bool k_int = kv_type_is_quantized(a.k_type);
    const bool k_rot = kv_type_is_rotated(a.k_type, true);
    const bool v_rot = kv_type_is_rotated(a.v_type, false);

    static thread_local Scratch sc;
    const size_t rd = static_cast<size_t>(kMaxRows * D), td = static_cast<size_t>(kTile * D);
    float* fbase = aligned64(sc.f, 3 * rd + kMaxRows * kTile + 2 * td + 64);
    const size_t scratch_at = (rd + td + 63) & ~static_cast<size_t>(63);
    uint8_t* bbase = aligned64(sc.b, scratch_at + 4 * td + 64);
    AttnPass p;
    p.head_dim = D;
    float* qf = fbase;
    p.acc = qf + rd;
    p.s = p.acc + rd;
    p.kf = p.s + kMaxRows * kTile;
    p.vf = p.kf + td;
    auto* qi = reinterpret_cast<int8_t*>(bbase);
    p.ku = bbase + rd;
    p.scratch = reinterpret_cast<int32_t*>(bbase + scratch_at);
    p.qf = qf;
    p.qi = qi;

    for (int64_t t0 = 0; t0 < T; t0 += tq) {
        const int64_t t1 = t0 + tq < T ? t0 + tq : T;
        for (int64_t g0 = 0; g0 < G; g0 += gchunk) {
            const int64_t g1 = g0 + gchunk < G ? g0 + gchunk : G;
            const int64_t ng = g1 - g0;
            p.rows = (t1 - t0) * ng;
            for (int64_t r = 0; r < p.rows; ++r) {
                const int64_t t = t0 + r / ng, g = g0 + r % ng;
                float* qr = qf + r * D;
                std::memcpy(qr, a.q + t * a.q_token_stride + g * D, static_cast<size_t>(D) * 4);
                if (k_rot) hadamard_inplace(qr, D);
                if (k_int) {
                    quantize_query(qr, D, qi + r * D, &p.qd[r], &p.qsum[r]);
                    p.qd[r] *= a.scale;
                }
                for (int64_t i = 0; i < D; ++i) qr[i] *= a.scale;
                p.limit[r] = a.pos0 + t + 1;
                p.m[r] = -std::numeric_limits<float>::infinity();
                p.l[r] = 0.0f;
            }
            std::memset(p.acc, 0, static_cast<size_t>(p.rows * D) * 4);
            fn(a, p, a.pos0 + t1);
            for (int64_t r = 0; r < p.rows; ++r) {
                const int64_t t = t0 + r / ng, g = g0 + r % ng;
                float* o = a.out + t * a.out_token_stride + g * D;
                const float* acc = p.acc + r * D;
                const float inv = 1.0f / p.l[r];
                for (int64_t i = 0; i < D; ++i) o[i] = acc[i] * inv;
                if (v_rot) hadamard_inplace(o, D);
            }
        }
    }
}

}  // namespace

AttentionPassFn attention_pass_for(const char* isa) {
    const CpuFeatures& f = cpu_features();
    (void)f;
    if (std::strcmp(isa, "scalar") == 0) return attention_pass_scalar;
#if defined(__x86_64__) || defined(_M_X64)
    if (std::strcmp(isa, "avx2") == 0 && f.avx2) return attention_pass_avx2;
    if (std::strcmp(isa, "avx512") == 0 && f.avx512_vnni) return attention_pass_avx512;
    if (std::strcmp(isa, "avx512bf16") == 0 && f.avx512_vnni && f.avx512_bf16)
        return attention_pass_avx512_bf16;
#endif
#if defined(__aarch64__)
    if (std::strcmp(isa, "neon") == 0 && f.neon_dotprod) return attention_pass_neon;
#endif
    return nullptr;
}

const char* attention_isa() {
    // EDGERT_ATTN_BF16=0 keeps the f32 sum of quantized V rows on a CPU with AVX512_BF16, for A/B
    // checks of speed and perplexity against the bf16 one.
    static const bool bf16_allowed = [] {
        const char* env = std::getenv("EDGERT_ATTN_BF16");
        return env == nullptr || std::strcmp(env, "0") != 0;
    }();
    // The kernel layer names its tables by ISA family ("avx2", "avxvnni", "avx512vnni", "neon",
    // "neon_dotprod", ...); follow the family, so EDGERT_ISA=scalar and set_isa() apply here too.
    const char* isa = current_isa();
    if (std::strncmp(isa, "avx512", 6) == 0) {
        if (bf16_allowed && attention_pass_for("avx512bf16") != nullptr) return "avx512bf16";
        if (attention_pass_for("avx512") != nullptr) return "avx512";
    }
    if (std::strncmp(isa, "avx", 3) == 0 && attention_pass_for("avx2") != nullptr) return "avx2";
    if (std::strncmp(isa, "neon", 4) == 0 && attention_pass_for("neon") != nullptr) return "neon";
    return "scalar";
}

void attention_with(const AttentionArgs& a, AttentionPassFn fn) { run_passes(a, fn); }

}  // namespace attn

void attention(const AttentionArgs& a) {
    attn::run_passes(a, attn::attention_pass_for(attn::attention_isa()));
}

}  // namespace edgert
