// bench_matmul.cpp — GFLOP/s and GB/s of the quantized matmul per ISA on real model shapes, plus
// the machine's read bandwidth (the decode roofline) and a TinyLlama-1.1B matmul-only estimate.
//
//   bench_matmul [--threads N] [--isa NAME]... [--type q4_0|q4_1|q8_0]... [--gemm-only] [--quick]
//                [--no-model | --model-only] [--model tiny|smol]... [--multi]
//
// GEMV (decode, n_tok = 1) rotates over enough copies of each weight to exceed the L3 cache, so
// GB/s is DRAM streaming as in real decode. GEMM is prefill with 512 tokens. The TinyLlama
// estimate runs every matmul of one decode step (22 layers + output head, all q4_0, distinct
// weights, 582 MB) and of one 512-token prefill, and the same for SmolLM2-135M; attention and
// elementwise work are excluded. --gemm-only skips the GEMV column (prefill work).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "runtime/thread_pool.h"

using namespace edgert;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kColdBytes = 256u << 20;  // > L3 (32 MB here) many times over
bool g_quick = false;
bool g_gemm_only = false;
bool g_multi = false;

void fill_weights(DType t, std::vector<uint8_t>& buf, int64_t rows, int64_t cols, uint64_t seed) {
    buf.resize(dtype_row_bytes(t, cols) * rows);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        std::memcpy(&buf[i], &s, 8);
    }
    // Sane scales (random bytes would give NaN/inf halves).
    const size_t bb = dtype_block_bytes(t);
    for (size_t off = 0; off + bb <= buf.size(); off += bb) {
        const uint16_t d = fp32_to_fp16(0.01f);
        std::memcpy(&buf[off], &d, 2);
        if (t == DType::Q4_1) std::memcpy(&buf[off + 2], &d, 2);
    }
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Read bandwidth with the pool: each thread sums its slice of a cold buffer.
double read_bandwidth_gbs(ThreadPool& pool) {
    const size_t n = (512u << 20) / 8;
    std::vector<uint64_t> buf(n, 1);
    std::vector<uint64_t> sink(64 * 16, 0);
    double best = 0;
    for (int rep = 0; rep < 10; ++rep) {
        const int64_t chunks = 256;
        const auto t0 = Clock::now();
        pool.parallel_for(chunks, [&](int64_t c, int tid) {
            const size_t lo = n / chunks * c, hi = n / chunks * (c + 1);
            uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (size_t i = lo; i < hi; i += 4) { a0 += buf[i]; a1 += buf[i + 1]; a2 += buf[i + 2]; a3 += buf[i + 3]; }
            sink[tid * 16] += a0 + a1 + a2 + a3;
        });
        best = std::max(best, n * 8.0 / seconds_since(t0) / 1e9);
    }
    if (sink[0] == 42) std::printf(" ");
    return best;
}

struct Shape { const char* model; int64_t rows, cols; };

void bench_shape(const Shape& s, DType t, ThreadPool& pool, bool quick) {
    const size_t wbytes = dtype_row_bytes(t, s.cols) * s.rows;
    const int copies = static_cast<int>(std::max<size_t>(1, kColdBytes / wbytes + 1));
    std::vector<std::vector<uint8_t>> bufs(copies);
    std::vector<Weight> ws(copies);
    for (int c = 0; c < copies; ++c) {
        fill_weights(t, bufs[c], s.rows, s.cols, c + 1);
        ws[c].type = t; ws[c].data = bufs[c].data(); ws[c].rows = s.rows; ws[c].cols = s.cols;
        prepare_weight(ws[c]);
    }
    const int64_t n_pf = 512;
    std::vector<float> x(n_pf * s.cols), y(n_pf * s.rows);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;

    // GEMV: cycle through the copies so every call streams its weight from DRAM.
    int iters = 0;
    auto t0 = Clock::now();
    while (!g_gemm_only && (seconds_since(t0) < (quick ? 0.15 : 0.5) || iters < copies)) {
        matmul(ws[iters % copies], x.data(), 1, y.data(), &pool);
        ++iters;
    }
    const double gemv_s = seconds_since(t0) / std::max(iters, 1);
    // GEMM: 512 tokens, compute-bound; one copy is enough. Median of 5 timed calls: the machine
    // is shared and a mean drifts with other people's load.
    matmul(ws[0], x.data(), n_pf, y.data(), &pool);
    std::vector<double> runs;
    for (int gi = 0; gi < (quick ? 3 : 5); ++gi) {
        t0 = Clock::now();
        matmul(ws[gi % copies], x.data(), n_pf, y.data(), &pool);
        runs.push_back(seconds_since(t0));
    }
    std::sort(runs.begin(), runs.end());
    const double gemm_s = runs[runs.size() / 2];
    const double gemm_best_s = runs[0];
    const double flop = 2.0 * s.rows * s.cols;
    std::printf("%-11s %-6s %-5s %6lldx%-6lld  gemv %7.1f us %7.1f GB/s %6.1f GFLOP/s | gemm512 %8.2f ms %7.1f GFLOP/s (best %7.1f)\n",
                current_isa(), s.model, dtype_name(t), (long long)s.rows, (long long)s.cols, gemv_s * 1e6,
                wbytes / gemv_s / 1e9, flop / gemv_s / 1e9, gemm_s * 1e3, flop * n_pf / gemm_s / 1e9, flop * n_pf / gemm_best_s / 1e9);
    std::fflush(stdout);
}

// A Llama-style model's matmuls: per layer q, k, v, o, gate, up, down, plus the output head.
struct ModelShape {
    const char* name;
    int64_t hidden, kv_dim, ffn, layers, vocab;
};
const ModelShape kTinyLlama{"TinyLlama-1.1B", 2048, 256, 5632, 22, 32000};
const ModelShape kSmolLM2{"SmolLM2-135M", 576, 192, 1536, 30, 49152};

// All matmuls of one decode step and of a 512-token prefill, q4_0, distinct weights. The head runs
// over all 512 prompt tokens as well (an upper bound: a runtime needs only the last token's logits).
void bench_model(const ModelShape& ms, ThreadPool& pool, double bw_gbs) {
    struct M { int64_t rows, cols; };
    const M layer[] = {{ms.hidden, ms.hidden}, {ms.kv_dim, ms.hidden}, {ms.kv_dim, ms.hidden}, {ms.hidden, ms.hidden},
                       {ms.ffn, ms.hidden},    {ms.ffn, ms.hidden},    {ms.hidden, ms.ffn}};
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<Weight> ws;
    size_t total = 0;
    for (int64_t l = 0; l < ms.layers; ++l)
        for (const M& m : layer) {
            bufs.emplace_back();
            fill_weights(DType::Q4_0, bufs.back(), m.rows, m.cols, bufs.size());
        }
    bufs.emplace_back();
    fill_weights(DType::Q4_0, bufs.back(), ms.vocab, ms.hidden, 999);
    size_t i = 0;
    const auto tp = Clock::now();
    for (int64_t l = 0; l < ms.layers; ++l)
        for (const M& m : layer) {
            Weight w; w.type = DType::Q4_0; w.data = bufs[i++].data(); w.rows = m.rows; w.cols = m.cols;
            prepare_weight(w);
            ws.push_back(w);
        }
    {
        Weight w; w.type = DType::Q4_0; w.data = bufs[i].data(); w.rows = ms.vocab; w.cols = ms.hidden;
        prepare_weight(w);
        ws.push_back(w);
    }
    const double pack_s = seconds_since(tp);
    size_t packed = 0;
    for (auto& b : bufs) total += b.size();
    for (const Weight& w : ws) packed += w.packed ? dtype_row_bytes(w.type, w.cols) * ((w.rows + 15) / 16 * 16) : 0;
    std::printf("%-11s %s prepare_weight: %.2f s, %.0f MB re-laid-out copy (file %.0f MB)\n",
                current_isa(), ms.name, pack_s, packed / 1e6, total / 1e6);
    const int64_t n_pf = 512;
    std::vector<float> x(n_pf * std::max(ms.hidden, ms.ffn), 0.1f), y(n_pf * std::max(ms.vocab, ms.ffn));
    // --multi: q/k/v and gate/up through matmul_multi (one activation quantization each), as
    // the model code would call it.
    std::vector<float> y2(y.size()), y3(y.size());
    auto step = [&](int64_t n_tok) {
        if (!g_multi) {
            for (const Weight& w : ws) matmul(w, x.data(), n_tok, y.data(), &pool);
            return;
        }
        for (int64_t l = 0; l < ms.layers; ++l) {
            const Weight* L = &ws[static_cast<size_t>(l) * 7];
            const MatmulTarget qkv[] = {{&L[0], y.data()}, {&L[1], y2.data()}, {&L[2], y3.data()}};
            matmul_multi(qkv, 3, x.data(), n_tok, &pool);
            matmul(L[3], x.data(), n_tok, y.data(), &pool);
            const MatmulTarget gate_up[] = {{&L[4], y.data()}, {&L[5], y2.data()}};
            matmul_multi(gate_up, 2, x.data(), n_tok, &pool);
            matmul(L[6], x.data(), n_tok, y.data(), &pool);
        }
        matmul(ws.back(), x.data(), n_tok, y.data(), &pool);
    };
    step(1);
    std::vector<double> dec, pf;
    for (int r = 0; r < 7; ++r) {
        const auto t0 = Clock::now();
        step(1);
        dec.push_back(seconds_since(t0));
    }
    // Prefill is noisy on a shared machine: median of 3 (1 with --quick).
    for (int r = 0; r < (g_quick ? 1 : 3); ++r) {
        const auto t0 = Clock::now();
        step(n_pf);
        pf.push_back(seconds_since(t0));
    }
    std::sort(dec.begin(), dec.end());
    std::sort(pf.begin(), pf.end());
    const double roof = bw_gbs * 1e9 / total;
    std::printf("%-11s %s q4_0 matmuls only%s (%.0f MB): decode %.1f tok/s (%.0f%% of %.1f tok/s roofline), "
                "prefill-512 %.1f tok/s\n",
                current_isa(), ms.name, g_multi ? " (multi)" : "", total / 1e6, 1.0 / dec[dec.size() / 2], 100.0 / dec[dec.size() / 2] / roof, roof,
                n_pf / pf[pf.size() / 2]);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2;
    bool quick = false, tiny = true, shapes_too = true;
    std::vector<std::string> isas, types, models;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--isa" && i + 1 < argc) isas.push_back(argv[++i]);
        else if (a == "--type" && i + 1 < argc) types.push_back(argv[++i]);
        else if (a == "--model" && i + 1 < argc) models.push_back(argv[++i]);
        else if (a == "--gemm-only") g_gemm_only = true;
        else if (a == "--multi") g_multi = true;
        else if (a == "--quick") quick = g_quick = true;
        else if (a == "--no-model") tiny = false;
        else if (a == "--model-only") shapes_too = false;
        else { std::fprintf(stderr, "usage: %s [--threads N] [--isa NAME]... [--type T]... [--gemm-only] [--multi] [--quick] [--no-model | --model-only] [--model tiny|smol]...\n", argv[0]); return 2; }
    }
    if (isas.empty())
        for (const std::string& s : available_isas())
            if (s != "scalar") isas.push_back(s);
    ThreadPool pool(threads);
    const double bw = read_bandwidth_gbs(pool);
    std::printf("threads %d, read bandwidth %.1f GB/s\n", threads, bw);
    const Shape shapes[] = {{"smol", 576, 576},   {"smol", 1536, 576},  {"smol", 576, 1536}, {"smol", 49152, 576},
                            {"tiny", 2048, 2048}, {"tiny", 5632, 2048}, {"tiny", 2048, 5632}};
    for (const std::string& isa : isas) {
        if (!set_isa(isa)) { std::fprintf(stderr, "ISA %s not available\n", isa.c_str()); return 1; }
        if (shapes_too)
            for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
                if (!types.empty() && std::find(types.begin(), types.end(), dtype_name(t)) == types.end()) continue;
                for (const Shape& s : shapes) bench_shape(s, t, pool, quick);
            }
        if (tiny) {
            if (models.empty() || std::find(models.begin(), models.end(), "tiny") != models.end())
                bench_model(kTinyLlama, pool, bw);
            if (models.empty() || std::find(models.begin(), models.end(), "smol") != models.end())
                bench_model(kSmolLM2, pool, bw);
        }
    }
    return 0;
}
