// test_kernels_isa.cpp — every SIMD table this CPU can run against the scalar table, its twin:
// activation quantization (bit-exact), every weight type's GEMV/GEMM tile kernel (within
// kQuantDotRelTol / kFloatDotRelTol of the scalar result), the public matmul driver under each
// ISA with 1, 2 and 3 threads (bit-identical across thread counts), matmul_multi against one
// matmul per weight (bit-identical), and the elementwise ops.
// Shapes: odd row counts (R-tails), n_tok 1, 2, 3, 7, 64, 65 (T-tails, token tiles), cols 32, 64,
// 96 (odd block count), 4096+32; values random and extreme (see Profile).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/kernel_table.h"
#include "kernels/ref/ref_kernels.h"
#include "runtime/thread_pool.h"
#include "test_kernels_common.h"

using namespace edgert;
using namespace edgert_test;

namespace {

// Float weights: up to 4128 products summed in a different order (sequential vs 8/16 lanes).
constexpr double kFloatDotRelTol = 1e-4;
// Elementwise: the scalar twin reduces in double and calls libm exp.
constexpr double kElementwiseRelTol = 1e-5;

const int64_t kTokCounts[] = {1, 2, 3, 7, 64, 65};
const int64_t kCols[] = {32, 64, 96, 4096 + 32};
// Super-block types: one, three (odd) and 17 super-blocks.
const int64_t kColsK[] = {256, 768, 4096 + 256};

// EDGERT_KERNEL_TEST_EMULATED=1 (set by tests/test_kernels_arm.py, which runs this binary under
// qemu-aarch64, 10-50x slower than native): long rows (cols > 768) get only the random profile, 37
// rows (a 16-row group pair and a partial group) and token counts 1, 7 and 65, and the driver test
// skips 130 tokens. Every type, table, layout, short-row tail and extreme profile is still
// compared; the full matrix ran past 240 s under qemu on a busy 2-core machine.
bool emulated() {
    static const bool on = [] { const char* e = std::getenv("EDGERT_KERNEL_TEST_EMULATED"); return e && *e && *e != '0'; }();
    return on;
}

FGemmFn fgemm_of(const KernelTable& k, DType t) {
    return t == DType::F32 ? k.gemm_f32 : t == DType::F16 ? k.gemm_f16 : k.gemm_bf16;
}

void test_quantize(const KernelTable& k) {
    std::mt19937 rng(11);
    for (Profile p : kAllProfiles) {
        const int64_t n = 32 * 33;
        auto x = make_activations(rng, p, n);
        std::vector<BlockQ8Act> a(n / 32), b(n / 32);
        quantize_q8act_ref(x.data(), a.data(), n);
        k.quantize_q8act(x.data(), b.data(), n);
        for (int64_t i = 0; i < n / 32; ++i) {
            if (a[i].d != b[i].d || a[i].s != b[i].s || std::memcmp(a[i].qs, b[i].qs, 32) != 0) {
                fail("%s quantize_q8act (%s) block %lld differs from scalar (d %g vs %g, s %g vs %g)",
                     k.name, profile_name(p), (long long)i, b[i].d, a[i].d, b[i].s, a[i].s);
                break;
            }
        }
    }
}

// NaN, Inf and huge activations (from a model's non-finite or overflowing weights): the table
// quantizes them to the scalar table's blocks bit for bit (q8act_limits.h's NaN block), and every
// quantized GEMM, canonical and packed, is NaN exactly where the scalar one is and within
// tolerance elsewhere. Under the sanitizer build this also proves no path converts NaN/Inf to an
// integer or overflows an int32 (the packed kernels' zero-point offsets).
void test_unrepresentable_activations(const KernelTable& k) {
    std::mt19937 rng(17);
    const std::vector<float> x = make_unrepresentable_activations(rng);
    const int64_t n = int64_t(x.size());
    std::vector<BlockQ8Act> a(n / 32), b(n / 32);
    quantize_q8act_ref(x.data(), a.data(), n);
    k.quantize_q8act(x.data(), b.data(), n);
    for (int64_t i = 0; i < n / 32; ++i) {
        if (std::memcmp(&a[i], &b[i], sizeof(BlockQ8Act)) != 0) {
            fail("%s quantize_q8act: unrepresentable-input block %lld differs from scalar (d %g vs %g, s %g vs %g)",
                 k.name, (long long)i, b[i].d, a[i].d, b[i].s, a[i].s);
            break;
        }
    }
    // Every quantized type: legacy ones at 2 blocks per token (some tokens mix a NaN block and a
    // normal one), super-block types at one 256-block per token (8 activation blocks).
    for (DType t : kQuantTypes) {
        const int64_t cols = dtype_block_size(t) == 256 ? 256 : 64, nb = cols / 32, n_tok = n / cols, rows = 21;
        auto wb = make_weights(rng, t, Profile::Random, rows, cols);
        std::vector<uint8_t> packed(k.packed_bytes(t, rows, cols) + 64);
        const bool has_packed = packed.size() > 64;
        uint8_t* packed_at = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
        if (has_packed) k.pack_weight(t, wb.data(), rows, cols, packed_at);
        std::vector<float> ys(rows * n_tok);
        const WeightView vs{t, wb.data(), nullptr, rows, cols};
        qgemm_of(kScalarKernels, t)(vs, a.data(), 0, rows, 0, n_tok, ys.data(), rows);
        for (int layout = 0; layout < (has_packed ? 2 : 1); ++layout) {
            const WeightView vk{t, wb.data(), layout == 1 ? packed_at : nullptr, rows, cols};
            std::vector<float> yk(rows * n_tok, 0.0f);
            qgemm_of(k, t)(vk, b.data(), 0, rows, 0, n_tok, yk.data(), rows);
            for (int64_t o = 0; o < rows * n_tok; ++o) {
                const int64_t tk = o / rows;
                const bool want_nan = std::isnan(ys[o]);
                const bool ok = want_nan ? std::isnan(yk[o])
                                         : std::fabs(double(yk[o]) - ys[o]) <=
                                               kQuantDotRelTol * quant_abs_sum(t, wb.data() + (o % rows) * dtype_row_bytes(t, cols),
                                                                               b.data() + tk * nb, nb) + 1e-37;
                if (!ok) {
                    fail("%s gemm %s%s on unrepresentable activations: y[t=%lld,r=%lld] = %g, scalar %g",
                         k.name, dtype_name(t), layout == 1 ? " (packed)" : "", (long long)tk,
                         (long long)(o % rows), yk[o], ys[o]);
                    break;
                }
            }
        }
    }
}

// The packed kernels cache per-thread data derived from the activations (zero-point offsets)
// until the next quantization: new activations quantized into the same buffer, with the same
// token range, must not reuse the old data.
void test_packed_requantize_same_buffer(const KernelTable& k) {
    std::mt19937 rng(13);
    for (DType t : kQuantTypes) {
        const int64_t rows = 21, cols = dtype_block_size(t) == 256 ? 512 : 128, n_tok = 7, nb = cols / 32;
        std::vector<uint8_t> packed(k.packed_bytes(t, rows, cols) + 64);
        if (packed.size() <= 64) continue;  // no re-layout for this type on this ISA
        uint8_t* packed_at = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
        auto wb = make_weights(rng, t, Profile::Random, rows, cols);
        k.pack_weight(t, wb.data(), rows, cols, packed_at);
        const WeightView vp{t, wb.data(), packed_at, rows, cols}, vs{t, wb.data(), nullptr, rows, cols};
        std::vector<BlockQ8Act> xq(n_tok * nb);
        std::vector<float> y(rows * n_tok), ys(rows * n_tok);
        for (int round = 0; round < 3; ++round) {
            // Round 2 shifts every activation: the block sums (and so the offsets) change.
            auto x = make_activations(rng, Profile::Random, n_tok * cols);
            if (round == 2)
                for (float& v : x) v = std::fabs(v) + 1.0f;
            k.quantize_q8act(x.data(), xq.data(), n_tok * cols);
            qgemm_of(k, t)(vp, xq.data(), 0, rows, 0, n_tok, y.data(), rows);
            qgemm_of(kScalarKernels, t)(vs, xq.data(), 0, rows, 0, n_tok, ys.data(), rows);
            for (int64_t o = 0; o < rows * n_tok; ++o) {
                const double tol = kQuantDotRelTol * quant_abs_sum(t, wb.data() + (o % rows) * dtype_row_bytes(t, cols),
                                                                   xq.data() + (o / rows) * nb, nb);
                if (!(std::fabs(double(y[o]) - ys[o]) <= tol + 1e-37)) {
                    fail("%s packed %s after re-quantizing into the same buffer (round %d): y[%lld] = %.9g, scalar %.9g",
                         k.name, dtype_name(t), round, (long long)o, y[o], ys[o]);
                    break;
                }
            }
        }
    }
}

// Every SIMD table carries its own kernel and load-time re-layout for every quantized type: a
// table that pointed a type at the scalar reference (or had no packed copy for it) would still
// pass test_gemm, and silently run 10-50x slower.
void test_simd_for_every_type(const KernelTable& k) {
    for (DType t : kQuantTypes) {
        if (qgemm_of(k, t) == qgemm_of(kScalarKernels, t)) fail("%s: %s runs the scalar kernel", k.name, dtype_name(t));
        if (!dtype_is_qformat(t)) continue;  // legacy types: some tables keep the canonical layout
        const int64_t cols = dtype_block_size(t) == 256 ? 512 : 64;
        if (k.packed_bytes(t, 16, cols) == 0) fail("%s: no packed layout for %s (its kernel would fall back to scalar)", k.name, dtype_name(t));
    }
}

void test_gemm(const KernelTable& k) {
    std::mt19937 rng(12);
    std::vector<DType> types(std::begin(kQuantTypes), std::end(kQuantTypes));
    for (DType t : {DType::F32, DType::F16, DType::BF16}) types.push_back(t);
    for (DType t : types) {
        const std::vector<int64_t> col_list = dtype_block_size(t) == 256 ? std::vector<int64_t>(std::begin(kColsK), std::end(kColsK))
                                                                         : std::vector<int64_t>(std::begin(kCols), std::end(kCols));
        for (int64_t cols : col_list) {
            for (Profile p : kAllProfiles) {
                // Long rows only with the cheap profiles: the scalar oracle dominates run time.
                if (cols > 768 && p != Profile::Random && p != Profile::HugeScale && p != Profile::Zeros) continue;
                if (cols > 768 && emulated() && p != Profile::Random) continue;
                // 21 and 37: a 16-row group pair whose second group is partial, and pairs + a group.
                for (int64_t rows : {int64_t{3}, int64_t{21}, int64_t{37}}) {
                    if (cols > 768 && emulated() && rows != 37) continue;
                    const int64_t max_tok = 65;
                    auto wb = make_weights(rng, t, p, rows, cols);
                    auto x = make_activations(rng, p, max_tok * cols);
                    const int64_t nb = cols / 32;
                    std::vector<BlockQ8Act> xq(max_tok * nb);
                    if (is_quantized(t)) quantize_q8act_ref(x.data(), xq.data(), max_tok * cols);
                    const WeightView v{t, wb.data(), nullptr, rows, cols};
                    const size_t row_bytes = dtype_row_bytes(t, cols);
                    // The scalar oracle and the tolerances for all 65 tokens, once: token t's
                    // outputs do not depend on how many tokens follow it.
                    std::vector<float> ys(rows * max_tok);
                    std::vector<double> tol(rows * max_tok);
                    if (is_quantized(t)) {
                        qgemm_of(kScalarKernels, t)(v, xq.data(), 0, rows, 0, max_tok, ys.data(), rows);
                        for (int64_t tk = 0; tk < max_tok; ++tk)
                            for (int64_t r = 0; r < rows; ++r)
                                tol[tk * rows + r] = kQuantDotRelTol * quant_abs_sum(t, wb.data() + r * row_bytes, xq.data() + tk * nb, nb);
                    } else {
                        fgemm_of(kScalarKernels, t)(v, x.data(), 0, rows, 0, max_tok, ys.data(), rows);
                        const std::vector<double> fscale = abs_dot(t, wb.data(), rows, cols, x.data(), max_tok);
                        for (size_t o = 0; o < tol.size(); ++o) tol[o] = kFloatDotRelTol * fscale[o];
                    }
                    // The ISA's load-time re-layout, if it has one for this type, is tested too.
                    std::vector<uint8_t> packed(k.packed_bytes(t, rows, cols) + 64);
                    const bool has_packed = packed.size() > 64;
                    uint8_t* packed_at = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
                    if (has_packed) k.pack_weight(t, wb.data(), rows, cols, packed_at);
                    for (int layout = 0; layout < (has_packed ? 2 : 1); ++layout)
                    for (int64_t n_tok : kTokCounts) {
                        if (cols > 768 && emulated() && n_tok != 1 && n_tok != 7 && n_tok != 65) continue;
                        const WeightView vk{t, wb.data(), layout == 1 ? packed_at : nullptr, rows, cols};
                        std::vector<float> yk(rows * n_tok, NAN);
                        if (is_quantized(t)) qgemm_of(k, t)(vk, xq.data(), 0, rows, 0, n_tok, yk.data(), rows);
                        else fgemm_of(k, t)(vk, x.data(), 0, rows, 0, n_tok, yk.data(), rows);
                        for (int64_t o = 0; o < rows * n_tok; ++o) {
                            // + a floor for results that are exactly zero on both sides
                            const double err = std::fabs(double(yk[o]) - ys[o]);
                            if (!(err <= tol[o] + 1e-37)) {
                                fail("%s gemm %s%s cols=%lld rows=%lld n_tok=%lld %s: y[t=%lld,r=%lld] = %.9g, scalar %.9g (err %g > tol %g)",
                                     k.name, dtype_name(t), layout == 1 ? " (packed)" : "", (long long)cols, (long long)rows,
                                     (long long)n_tok, profile_name(p), (long long)(o / rows), (long long)(o % rows), yk[o], ys[o], err, tol[o]);
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

void test_driver(const KernelTable& k) {
    if (!set_isa(k.name)) {
        fail("set_isa(%s) refused an ISA that kernel_table_for() offers", k.name);
        return;
    }
    if (std::string(current_isa()) != k.name) fail("current_isa() is %s after set_isa(%s)", current_isa(), k.name);
    std::mt19937 rng(13);
    ThreadPool p2(2), p3(3);
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::F16, DType::Q5_0, DType::Q5_1, DType::IQ4_NL,
                    DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::Q3_0}) {
        for (int64_t n_tok : {int64_t{1}, int64_t{65}, int64_t{130}}) {
            if (emulated() && n_tok == 130) continue;  // 65 already spans a whole tile and a tail
            const int64_t rows = 203, cols = dtype_block_size(t) == 256 ? 512 : 320;
            auto wb = make_weights(rng, t, Profile::Random, rows, cols);
            auto x = make_activations(rng, Profile::Random, n_tok * cols);
            Weight w;
            w.type = t; w.data = wb.data(); w.rows = rows; w.cols = cols;
            prepare_weight(w);
            std::vector<float> y1(rows * n_tok), y2(rows * n_tok), y3(rows * n_tok), ye(rows * n_tok);
            matmul(w, x.data(), n_tok, y1.data(), nullptr);
            matmul(w, x.data(), n_tok, y2.data(), &p2);
            matmul(w, x.data(), n_tok, y3.data(), &p3);
            if (std::memcmp(y1.data(), y2.data(), y1.size() * 4) != 0 || std::memcmp(y1.data(), y3.data(), y1.size() * 4) != 0)
                fail("%s matmul %s n_tok=%lld: 1/2/3 threads differ", k.name, dtype_name(t), (long long)n_tok);
            matmul_dequant_ref(t, wb.data(), rows, cols, x.data(), n_tok, ye.data());
            std::vector<float> row(cols);
            for (int64_t r = 0; r < rows; ++r) {
                row_to_float(t, wb.data(), r, cols, row.data());
                for (int64_t tk = 0; tk < n_tok; ++tk) {
                    double bound = 0, absdot = 0;
                    for (int64_t b = 0; b < cols / 32; ++b) {
                        double amax = 0, wsum = 0;
                        for (int j = 0; j < 32; ++j) {
                            const double xv = x[tk * cols + b * 32 + j];
                            amax = std::fmax(amax, std::fabs(xv));
                            wsum += std::fabs(row[b * 32 + j]);
                            absdot += std::fabs(xv * row[b * 32 + j]);
                        }
                        if (is_quantized(t)) bound += amax / 254.0 * wsum;
                    }
                    bound = bound * (1 + 1e-4) + kQuantDotRelTol * absdot;
                    const double err = std::fabs(double(y1[tk * rows + r]) - ye[tk * rows + r]);
                    if (!(err <= bound)) {
                        fail("%s matmul %s vs dequant reference r=%lld t=%lld: err %g > bound %g", k.name,
                             dtype_name(t), (long long)r, (long long)tk, err, bound);
                        r = rows;
                        break;
                    }
                }
            }
        }
    }
}

// matmul_multi must equal one matmul() per target bit for bit: on the shared path (quantized
// weights of mixed types, packed and not, odd row counts) and on the per-weight fallback (a float
// weight and an exact one among them).
void test_matmul_multi(const KernelTable& k) {
    if (!set_isa(k.name)) return;  // test_driver reports it
    std::mt19937 rng(15);
    ThreadPool p2(2);
    const int64_t cols = 512;
    struct Case { DType t; int64_t rows; bool prepare, exact; };
    // cols = 512: whole super-blocks for the K-quants among them.
    const Case shared[] = {{DType::Q4_0, 203, true, false}, {DType::Q3_K, 37, true, false},
                           {DType::Q6_K, 21, false, false}};
    const Case mixed[] = {{DType::Q4_K, 67, true, false}, {DType::F16, 19, false, false},
                          {DType::Q3_K, 33, false, true}};
    for (const auto* cases : {shared, mixed}) {
        for (int64_t n_tok : {int64_t{1}, int64_t{7}, int64_t{130}}) {
            std::vector<std::vector<uint8_t>> bufs;
            std::vector<Weight> ws(3);
            auto x = make_activations(rng, Profile::Random, n_tok * cols);
            for (int i = 0; i < 3; ++i) {
                bufs.push_back(make_weights(rng, cases[i].t, Profile::Random, cases[i].rows, cols));
                ws[i].type = cases[i].t; ws[i].data = bufs[i].data(); ws[i].rows = cases[i].rows; ws[i].cols = cols;
                ws[i].exact = cases[i].exact;
                if (cases[i].prepare) prepare_weight(ws[i]);
            }
            for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &p2}) {
                std::vector<std::vector<float>> one(3), multi(3);
                MatmulTarget targets[3];
                for (int i = 0; i < 3; ++i) {
                    one[i].assign(ws[i].rows * n_tok, NAN);
                    multi[i].assign(ws[i].rows * n_tok, NAN);
                    matmul(ws[i], x.data(), n_tok, one[i].data(), pool);
                    targets[i] = MatmulTarget{&ws[i], multi[i].data()};
                }
                matmul_multi(targets, 3, x.data(), n_tok, pool);
                for (int i = 0; i < 3; ++i)
                    if (std::memcmp(one[i].data(), multi[i].data(), one[i].size() * 4) != 0)
                        fail("%s matmul_multi %s target %d (%s, %lld rows) n_tok=%lld differs from matmul", k.name,
                             cases == shared ? "shared" : "mixed", i, dtype_name(cases[i].t),
                             (long long)cases[i].rows, (long long)n_tok);
            }
        }
    }
}

void test_elementwise(const KernelTable& k) {
    std::mt19937 rng(14);
    std::normal_distribution<float> nd;
    for (int64_t n : {1, 15, 16, 17, 64, 576, 1001}) {
        std::vector<float> x(n), w(n), u(n);
        for (int64_t i = 0; i < n; ++i) { x[i] = nd(rng) * 4; w[i] = nd(rng); u[i] = nd(rng); }
        x[0] = -95.0f;  // exp underflow region for silu/softmax
        auto close = [&](const char* op, const std::vector<float>& a, const std::vector<float>& b, double abs_floor) {
            for (int64_t i = 0; i < n; ++i) {
                if (!(std::fabs(double(a[i]) - b[i]) <= kElementwiseRelTol * std::fabs(double(b[i])) + abs_floor)) {
                    fail("%s %s n=%lld [%lld]: %.9g vs scalar %.9g", k.name, op, (long long)n, (long long)i, a[i], b[i]);
                    return;
                }
            }
        };
        std::vector<float> a(n), b(n);
        k.rmsnorm(a.data(), x.data(), w.data(), n, 1e-5f);
        rmsnorm_ref(b.data(), x.data(), w.data(), n, 1e-5f);
        close("rmsnorm", a, b, 1e-30);
        a = x; b = x;
        k.silu_mul(a.data(), u.data(), n);
        silu_mul_ref(b.data(), u.data(), n);
        close("silu_mul", a, b, 1e-30);
        a = x; b = x;
        k.add_inplace(a.data(), w.data(), n);
        add_inplace_ref(b.data(), w.data(), n);
        close("add_inplace", a, b, 0);
        a = x; b = x;
        k.softmax_inplace(a.data(), n);
        softmax_inplace_ref(b.data(), n);
        close("softmax", a, b, 1e-12);
        const int64_t hd = 64, nh = 3;
        std::vector<float> inv(hd / 2), ra(hd * nh), rb;
        for (int64_t i = 0; i < hd / 2; ++i) inv[i] = std::pow(100000.0f, -2.0f * i / hd);
        for (auto& v : ra) v = nd(rng);
        rb = ra;
        k.rope_inplace(ra.data(), hd, nh, 1234, inv.data());
        rope_inplace_ref(rb.data(), hd, nh, 1234, inv.data());
        for (size_t i = 0; i < ra.size(); ++i)
            if (!(std::fabs(ra[i] - rb[i]) <= 1e-5)) { fail("%s rope [%zu]", k.name, i); break; }
    }
}

}  // namespace

int main() {
    int tested = 0;
    for (const std::string& name : available_isas()) {
        if (name == "scalar") continue;  // the oracle itself
        const KernelTable* k = kernel_table_for(name.c_str());
        if (k == nullptr) { fail("available_isas() lists %s but kernel_table_for() refuses it", name.c_str()); continue; }
        std::printf("testing %s against scalar\n", name.c_str());
        test_quantize(*k);
        test_simd_for_every_type(*k);
        test_unrepresentable_activations(*k);
        test_gemm(*k);
        test_packed_requantize_same_buffer(*k);
        test_driver(*k);
        test_matmul_multi(*k);
        test_elementwise(*k);
        ++tested;
    }
    // Never silently: every table this architecture's build carries is tested or said to be skipped.
#if defined(__x86_64__)
    const char* const carried[] = {"amx", "avx512vnni", "avxvnni", "avx2"};
#elif defined(__aarch64__)
    const char* const carried[] = {"neoni8mm", "neondot", "neon"};
#else
    const char* const carried[] = {"scalar"};
#endif
    for (const char* name : carried) {
        if (kernel_table_for(name) != nullptr) continue;
        if (std::strcmp(name, "amx") == 0) std::printf("SKIP amx: %s\n", cpu_features().amx_missing);
        else std::printf("SKIP %s: this CPU lacks its instructions\n", name);
    }
    if (set_isa("no-such-isa")) fail("set_isa accepted an unknown name");
    // On x86-64 and arm64 this build must offer at least one SIMD table besides scalar.
#if defined(__x86_64__) || defined(__aarch64__)
    if (tested < 1) fail("no SIMD table available; this build should carry one for this CPU");
#endif
    return finish("test_kernels_isa");
}
