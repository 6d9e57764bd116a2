// test_kernels_ref.cpp — the scalar reference itself: fp16/bf16 conversions, activation
// quantization, the quantized matmul against the exact dequantize-then-dot reference (bounded by
// the activation rounding error), elementwise ops against their definitions, and the thread pool
// (1, 2, 3 threads bit-identical).
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "kernels/kernel_table.h"
#include "kernels/q8act_limits.h"
#include "kernels/ref/ref_kernels.h"
#include "runtime/thread_pool.h"
#include "test_kernels_common.h"

using namespace edgert;
using namespace edgert_test;

namespace {

uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

void test_fp16() {
    // Every half converts to float and back unchanged (NaN stays NaN).
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_fp32(static_cast<uint16_t>(h));
        const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
        if (nan) {
            if (!std::isnan(f)) fail("fp16 0x%04x should be NaN", h);
            continue;
        }
        const uint16_t back = fp32_to_fp16(f);
        if (back != h) fail("fp16 round trip 0x%04x -> %g -> 0x%04x", h, f, back);
    }
    // Rounding: compare against the compiler's correctly rounded _Float16 conversion.
#if defined(__aarch64__) || (defined(__x86_64__) && defined(__FLT16_MAX__))
#if defined(__aarch64__)
    using Half = __fp16;  // IEEE binary16 on AArch64
#else
    using Half = _Float16;
#endif
    std::mt19937 rng(1);
    std::uniform_int_distribution<uint32_t> u32;
    for (int i = 0; i < 200000; ++i) {
        // Exponents around the half range, including subnormal and overflow regions.
        uint32_t u = (u32(rng) & 0x807fffffu) | ((100u + u32(rng) % 50u) << 23);
        const float f = from_bits(u);
        const Half h = static_cast<Half>(f);
        uint16_t hb; std::memcpy(&hb, &h, 2);
        if (fp32_to_fp16(f) != hb) fail("fp32_to_fp16(%a) = 0x%04x, want 0x%04x", f, fp32_to_fp16(f), hb);
    }
#endif
    // Ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
    if (fp32_to_fp16(1.0f + 0x1p-11f) != 0x3c00) fail("fp16 tie did not round to even");
    if (fp32_to_fp16(1.0f + 3 * 0x1p-11f) != 0x3c02) fail("fp16 tie did not round to even (up)");
    if (fp32_to_fp16(65520.0f) != 0x7c00) fail("65520 should round to inf in fp16");
    if (fp32_to_fp16(65519.0f) != 0x7bff) fail("65519 should round to 65504 in fp16");
}

void test_bf16() {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_fp32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        if (fp32_to_bf16(f) != h) fail("bf16 round trip 0x%04x", h);
    }
    if (fp32_to_bf16(from_bits(0x3f808000u)) != 0x3f80) fail("bf16 tie should round to even (down)");
    if (fp32_to_bf16(from_bits(0x3f818000u)) != 0x3f82) fail("bf16 tie should round to even (up)");
    if (fp32_to_bf16(from_bits(0x3f808001u)) != 0x3f81) fail("bf16 above tie should round up");
    if (!std::isnan(bf16_to_fp32(fp32_to_bf16(NAN)))) fail("bf16 NaN must stay NaN");
    if (bits(bf16_to_fp32(fp32_to_bf16(-0.0f))) != 0x80000000u) fail("bf16 -0 lost its sign");
}

void test_quantize() {
    std::mt19937 rng(2);
    for (Profile p : kAllProfiles) {
        const int64_t n = 32 * 20;
        std::vector<float> x = make_activations(rng, p, n);
        std::vector<BlockQ8Act> q(n / 32);
        quantize_q8act_ref(x.data(), q.data(), n);
        for (int64_t b = 0; b < n / 32; ++b) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
            int sum = 0;
            for (int j = 0; j < 32; ++j) {
                const float xv = x[b * 32 + j];
                const float err = std::fabs(xv - q[b].d * q[b].qs[j]);
                // Half a step, plus float rounding of d * q.
                if (q[b].qs[j] < -127 || err > q[b].d * 0.5f * (1 + 1e-5f) + std::fabs(xv) * 1e-6f)
                    if (amax >= kQ8ActMinAmax)
                        fail("quantize %s block %lld elem %d: x=%g d=%g q=%d", profile_name(p),
                             (long long)b, j, xv, q[b].d, q[b].qs[j]);
                sum += q[b].qs[j];
            }
            if (q[b].s != q[b].d * static_cast<float>(sum)) fail("quantize %s: s != d*sum(q)", profile_name(p));
            if (amax >= kQ8ActMinAmax && std::fabs(q[b].d - amax / 127.0f) > 0)
                fail("quantize %s: d=%g, want %g", profile_name(p), q[b].d, amax / 127.0f);
        }
    }
}

// The rule of q8act_limits.h, stated here independently: a block with NaN or |x| > 1e37 is
// d = s = the default quiet NaN with zero codes; the boundary 1e37 itself quantizes normally.
void test_quantize_unrepresentable() {
    std::mt19937 rng(21);
    const std::vector<float> x = make_unrepresentable_activations(rng);
    std::vector<BlockQ8Act> q(x.size() / 32);
    quantize_q8act_ref(x.data(), q.data(), int64_t(x.size()));
    for (size_t b = 0; b < q.size(); ++b) {
        bool bad = false;
        for (int j = 0; j < 32; ++j) bad = bad || std::isnan(x[b * 32 + j]) || std::fabs(x[b * 32 + j]) > 1e37f;
        bool zero_codes = true;
        for (int j = 0; j < 32; ++j) zero_codes = zero_codes && q[b].qs[j] == 0;
        if (bad && !(bits(q[b].d) == 0x7fc00000u && bits(q[b].s) == 0x7fc00000u && zero_codes))
            fail("quantize: block %zu holds NaN/Inf/huge but d=%g s=%g (want the NaN block)", b, q[b].d, q[b].s);
        if (!bad && !(std::isfinite(q[b].d) && std::isfinite(q[b].s) && q[b].d > 0))
            fail("quantize: representable block %zu gave d=%g s=%g", b, q[b].d, q[b].s);
    }
}

// Quantized matmul (scalar table, through the public driver) against the exact reference: the
// difference is activation rounding, at most sum_b d_x,b / 2 * sum_j |w_bj|, plus accumulation.
void test_matmul_vs_dequant() {
    std::mt19937 rng(3);
    set_isa("scalar");
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::F32, DType::F16, DType::BF16, DType::Q5_0,
                    DType::Q5_1, DType::IQ4_NL, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::Q3_0}) {
        for (Profile p : {Profile::Random, Profile::Outlier, Profile::HugeScale, Profile::AllEqual}) {
            const int64_t rows = 37, cols = dtype_block_size(t) == 256 ? 512 : 96 + 32 * 4, n_tok = 3;
            auto wb = make_weights(rng, t, p, rows, cols);
            auto x = make_activations(rng, p, static_cast<size_t>(n_tok * cols));
            Weight w;
            w.type = t; w.data = wb.data(); w.rows = rows; w.cols = cols;
            std::vector<float> y(rows * n_tok), ye(rows * n_tok);
            matmul(w, x.data(), n_tok, y.data(), nullptr);
            matmul_dequant_ref(t, wb.data(), rows, cols, x.data(), n_tok, ye.data());
            std::vector<float> wrow(cols);
            for (int64_t r = 0; r < rows; ++r) {
                row_to_float(t, wb.data(), r, cols, wrow.data());
                for (int64_t tk = 0; tk < n_tok; ++tk) {
                    double bound = 0, absdot = 0;
                    for (int64_t b = 0; b < cols / 32; ++b) {
                        double amax = 0, wsum = 0;
                        for (int j = 0; j < 32; ++j) {
                            const double xv = x[tk * cols + b * 32 + j], wv = wrow[b * 32 + j];
                            amax = std::fmax(amax, std::fabs(xv));
                            wsum += std::fabs(wv);
                            absdot += std::fabs(xv * wv);
                        }
                        if (is_quantized(t)) bound += amax / 127.0 / 2.0 * wsum;
                    }
                    bound = bound * (1 + 1e-4) + 1e-5 * absdot;  // + fp32 accumulation
                    const double err = std::fabs(double(y[tk * rows + r]) - ye[tk * rows + r]);
                    if (!(err <= bound))
                        fail("matmul %s/%s r=%lld t=%lld: got %g, exact %g, err %g > bound %g",
                             dtype_name(t), profile_name(p), (long long)r, (long long)tk,
                             y[tk * rows + r], ye[tk * rows + r], err, bound);
                }
            }
        }
    }
}

void test_elementwise() {
    std::mt19937 rng(4);
    std::normal_distribution<float> nd;
    const int64_t n = 77;
    std::vector<float> x(n), wt(n), y(n);
    for (auto& v : x) v = nd(rng) * 3;
    for (auto& v : wt) v = nd(rng);
    rmsnorm_ref(y.data(), x.data(), wt.data(), n, 1e-5f);
    double ms = 0;
    for (float v : x) ms += double(v) * v;
    ms /= n;
    for (int64_t i = 0; i < n; ++i) {
        const double want = x[i] / std::sqrt(ms + 1e-5) * wt[i];
        if (std::fabs(y[i] - want) > 1e-5 * (1 + std::fabs(want))) fail("rmsnorm[%lld]", (long long)i);
    }
    std::vector<float> g = x, u = wt;
    silu_mul_ref(g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
        const double want = x[i] / (1 + std::exp(-double(x[i]))) * wt[i];
        if (std::fabs(g[i] - want) > 1e-5 * (1 + std::fabs(want))) fail("silu_mul[%lld]", (long long)i);
    }
    std::vector<float> s = x;
    softmax_inplace_ref(s.data(), n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += s[i];
    if (std::fabs(total - 1) > 1e-5) fail("softmax sums to %g", total);
    if (!(s[0] / s[1] > 0) || std::fabs(std::log(s[0] / s[1]) - (x[0] - x[1])) > 1e-4) fail("softmax ratio");
    // RoPE: identity at pos 0, norm-preserving per pair, exact rotation of a known pair.
    const int64_t hd = 8, nh = 3;
    std::vector<float> inv(hd / 2);
    for (int64_t i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
    std::vector<float> v(x.begin(), x.begin() + hd * nh), v0 = v;
    rope_inplace_ref(v.data(), hd, nh, 0, inv.data());
    if (v != v0) fail("rope at pos 0 is not the identity");
    rope_inplace_ref(v.data(), hd, nh, 5, inv.data());
    // out must be v0 with every (i, i + hd/2) pair of every head turned by 5 * inv[i].
    auto check_rotation = [&](const std::vector<float>& out, const char* what) {
        for (int64_t h = 0; h < nh; ++h)
            for (int64_t i = 0; i < hd / 2; ++i) {
                const float* a = &v0[h * hd];
                const float* b = &out[h * hd];
                const double ang = 5.0 * inv[i];
                const double w0 = a[i] * std::cos(ang) - a[i + hd / 2] * std::sin(ang);
                const double w1 = a[i] * std::sin(ang) + a[i + hd / 2] * std::cos(ang);
                if (std::fabs(b[i] - w0) > 1e-5 || std::fabs(b[i + hd / 2] - w1) > 1e-5)
                    fail("%s, head %lld pair %lld", what, (long long)h, (long long)i);
            }
    };
    check_rotation(v, "rope");
    // The cos/sin cache is keyed by the frequencies' values: the same position with other values
    // in the same array (another model, LongRoPE's long factors) must turn by the new angles, and
    // a repeated call must give the same bits as the first one.
    std::vector<float> again = v0;
    rope_inplace_ref(again.data(), hd, nh, 5, inv.data());
    if (again != v) fail("rope repeated at the same position differs");
    for (auto& f : inv) f *= 0.5f;
    std::vector<float> halved = v0;
    rope_inplace_ref(halved.data(), hd, nh, 5, inv.data());
    check_rotation(halved, "rope after a frequency change");
    std::vector<float> a = x;
    add_inplace_ref(a.data(), wt.data(), n);
    for (int64_t i = 0; i < n; ++i)
        if (a[i] != x[i] + wt[i]) fail("add_inplace[%lld]", (long long)i);
}

void test_row_to_float() {
    BlockQ4_0 b0{fp32_to_fp16(0.5f), {}};
    b0.qs[0] = 0x3f;  // element 0 = 15 - 8 = 7, element 16 = 3 - 8 = -5
    float out[32];
    row_to_float(DType::Q4_0, &b0, 0, 32, out);
    if (out[0] != 3.5f || out[16] != -2.5f || out[1] != -4.0f) fail("row_to_float q4_0 nibble order");
    BlockQ4_1 b1{fp32_to_fp16(0.25f), fp32_to_fp16(-1.0f), {}};
    b1.qs[2] = 0xa1;
    row_to_float(DType::Q4_1, &b1, 0, 32, out);
    if (out[2] != -0.75f || out[18] != 1.5f) fail("row_to_float q4_1");
    float rows[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}};
    row_to_float(DType::F32, rows, 1, 4, out);
    if (out[0] != 5 || out[3] != 8) fail("row_to_float f32 row offset");
}

// The driver's tiling is independent of the thread count, so results must match bit for bit.
void test_thread_pool() {
    std::mt19937 rng(5);
    for (int64_t n_tok : {1, 7, 65}) {
        const int64_t rows = 301, cols = 256;
        auto wb = make_weights(rng, DType::Q4_0, Profile::Random, rows, cols);
        auto x = make_activations(rng, Profile::Random, n_tok * cols);
        Weight w;
        w.type = DType::Q4_0; w.data = wb.data(); w.rows = rows; w.cols = cols;
        std::vector<float> y1(rows * n_tok);
        {
            ThreadPool pool(1);
            matmul(w, x.data(), n_tok, y1.data(), &pool);
        }
        for (int nt : {2, 3}) {
            ThreadPool pool(nt);
            std::vector<float> yn(rows * n_tok, -1.0f);
            for (int rep = 0; rep < 3; ++rep) matmul(w, x.data(), n_tok, yn.data(), &pool);
            if (std::memcmp(y1.data(), yn.data(), y1.size() * 4) != 0)
                fail("matmul with %d threads differs from 1 thread (n_tok=%lld)", nt, (long long)n_tok);
        }
    }
    // Every task runs exactly once, on a valid thread id.
    ThreadPool pool(3);
    for (int64_t n : {0, 1, 2, 5, 1000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad_id{0};
        pool.parallel_for(n, [&](int64_t t, int id) {
            hits[t].fetch_add(1);
            if (id < 0 || id >= 3) bad_id.fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
            if (hits[i].load() != 1) fail("parallel_for(%lld): task %lld ran %d times", (long long)n, (long long)i, hits[i].load());
        if (bad_id.load()) fail("parallel_for gave an out-of-range thread id");
    }
    // A worker that keeps arriving late (its tasks stall 2 ms, as a thread whose core another
    // process took does) sends the pool to the calling thread alone: then every task runs on
    // thread 0, still exactly once.
    {
        ThreadPool slow(2);
        int serial_run = 0;
        for (int region = 0; region < 200 && serial_run < 20; ++region) {
            std::vector<std::atomic<int>> hits(16);
            std::atomic<int> on_worker{0};
            slow.parallel_for(16, [&](int64_t t, int id) {
                hits[t].fetch_add(1);
                if (id != 0) {
                    on_worker.fetch_add(1);
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                }
            });
            for (auto& h : hits)
                if (h.load() != 1) fail("parallel_for with a late worker ran a task %d times", h.load());
            serial_run = on_worker.load() == 0 ? serial_run + 1 : 0;
        }
        if (serial_run < 20) fail("a pool whose worker is always late never fell back to the calling thread");
    }
    if (physical_core_count() < 1) fail("physical_core_count < 1");
}

}  // namespace

// Start-up choice: EDGERT_ISA when runnable, else the best table (available_isas() is best first).
void test_startup_isa() {
    const char* env = std::getenv("EDGERT_ISA");
    const std::string want = (env != nullptr && kernel_table_for(env) != nullptr) ? env : available_isas().front();
    if (want != current_isa()) fail("start-up ISA is %s, expected %s", current_isa(), want.c_str());
    std::printf("start-up ISA: %s\n", current_isa());
}

int main() {
    test_startup_isa();  // first: later tests call set_isa
    test_fp16();
    test_bf16();
    test_quantize();
    test_quantize_unrepresentable();
    test_matmul_vs_dequant();
    test_elementwise();
    test_row_to_float();
    test_thread_pool();
    return finish("test_kernels_ref");
}
