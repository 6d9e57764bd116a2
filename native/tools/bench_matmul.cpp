// bench_matmul.cpp — GFLOP/s and GB/s of the quantized matmul per ISA on real model shapes, plus
// the machine's read bandwidth (the decode roofline) and a TinyLlama-1.1B matmul-only estimate.
//
//   bench_matmul [--threads N] [--isa NAME]... [--type q4_0|q4_1|q8_0|q3_k|q4_k|...]... [--gemm-only]
//                [--quick] [--no-model | --model-only] [--model tiny|smol]... [--multi]
//                [--model-type TYPE]...
//
// --model-type runs the model estimate with TYPE for every matrix (default q4_0; repeatable for an
// A/B in one run); a super-block type falls back where a matrix's rows are not whole 256-blocks
// (SmolLM2's 576) as the converter's recipes do: q3_k -> q3_0, q4_k -> q5_0, q5_k -> q5_1,
// q6_k -> q8_0, iq4_xs -> iq4_nl.
//
// GEMV (decode, n_tok = 1) rotates over enough copies of each weight to exceed the L3 cache, so
// GB/s is DRAM streaming as in real decode. GEMM is prefill with 512 tokens. The TinyLlama
// estimate runs every matmul of one decode step (22 layers + output head, all q4_0, distinct
// weights, 582 MB) and of one 512-token prefill, and the same for SmolLM2-135M; attention and
// elementwise work are excluded. --gemm-only skips the GEMV column (prefill work).
//
// BENCH_HOT=1 keeps one copy of each weight (GEMV from cache: the kernel's compute bound, not
// DRAM's); BENCH_CPU=1 times the GEMV column in process CPU seconds (a kernel A/B that other
// processes on a shared machine disturb less than wall time).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <time.h>

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
    // Sane scales (random bytes would give NaN/inf halves): every f16 field of the block.
    const size_t bb = dtype_block_bytes(t);
    const size_t d_at = t == DType::Q3_K ? 108 : t == DType::Q6_K ? 208 : 0;
    const bool second = t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K;
    for (size_t off = 0; off + bb <= buf.size(); off += bb) {
        const uint16_t d = fp32_to_fp16(0.01f);
        std::memcpy(&buf[off + d_at], &d, 2);
        if (second) std::memcpy(&buf[off + 2], &d, 2);
    }
}

// CPU time of the whole process: on a shared machine it excludes the time other jobs held the
// cores, so with --threads 1 it is the A/B figure to trust (wall clock is reported too).
double cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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
    const int copies = std::getenv("BENCH_HOT") ? 1 : static_cast<int>(std::max<size_t>(1, kColdBytes / wbytes + 1));
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
    const double gemv_c0 = cpu_seconds();
    while (!g_gemm_only && (seconds_since(t0) < (quick ? 0.15 : 0.5) || iters < copies)) {
        matmul(ws[iters % copies], x.data(), 1, y.data(), &pool);
        ++iters;
    }
    const double gemv_s = (std::getenv("BENCH_CPU") ? cpu_seconds() - gemv_c0 : seconds_since(t0)) / std::max(iters, 1);
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
DType fitting(DType t, int64_t cols) {
    if (cols % dtype_block_size(t) == 0) return t;
    switch (t) {
        case DType::Q3_K: return DType::Q3_0;
        case DType::Q4_K: return DType::Q5_0;
        case DType::Q5_K: return DType::Q5_1;
        case DType::Q6_K: return DType::Q8_0;
        case DType::IQ4_XS: return DType::IQ4_NL;
        default: return DType::F16;
    }
}

DType type_named(const std::string& name) {
    for (uint32_t id = 0; id < 2048; ++id)
        if (dtype_is_known(id) && name == dtype_name(static_cast<DType>(id))) return static_cast<DType>(id);
    std::fprintf(stderr, "unknown type %s\n", name.c_str());
    std::exit(2);
}

void bench_model(const ModelShape& ms, ThreadPool& pool, double bw_gbs, DType mt = DType::Q4_0) {
    struct M { int64_t rows, cols; };
    const M layer[] = {{ms.hidden, ms.hidden}, {ms.kv_dim, ms.hidden}, {ms.kv_dim, ms.hidden}, {ms.hidden, ms.hidden},
                       {ms.ffn, ms.hidden},    {ms.ffn, ms.hidden},    {ms.hidden, ms.ffn}};
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<Weight> ws;
    size_t total = 0;
    for (int64_t l = 0; l < ms.layers; ++l)
        for (const M& m : layer) {
            bufs.emplace_back();
            fill_weights(fitting(mt, m.cols), bufs.back(), m.rows, m.cols, bufs.size());
        }
    bufs.emplace_back();
    fill_weights(fitting(mt, ms.hidden), bufs.back(), ms.vocab, ms.hidden, 999);
    size_t i = 0;
    const auto tp = Clock::now();
    for (int64_t l = 0; l < ms.layers; ++l)
        for (const M& m : layer) {
            Weight w; w.type = fitting(mt, m.cols); w.data = bufs[i++].data(); w.rows = m.rows; w.cols = m.cols;
            prepare_weight(w);
            ws.push_back(w);
        }
    {
        Weight w; w.type = fitting(mt, ms.hidden); w.data = bufs[i].data(); w.rows = ms.vocab; w.cols = ms.hidden;
        prepare_weight(w);
        ws.push_back(w);
    }
    const double pack_s = seconds_since(tp);
    size_t packed = 0;
    for (auto& b : bufs) total += b.size();
    for (const Weight& w : ws) packed += w.packed_bytes;
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
    std::vector<double> dec, pf, dec_cpu, pf_cpu;
    for (int r = 0; r < 7; ++r) {
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        step(1);
        dec.push_back(seconds_since(t0));
        dec_cpu.push_back(cpu_seconds() - c0);
    }
    // Prefill is noisy on a shared machine: median of 3 (1 with --quick).
    for (int r = 0; r < (g_quick ? 1 : 3); ++r) {
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        step(n_pf);
        pf.push_back(seconds_since(t0));
        pf_cpu.push_back(cpu_seconds() - c0);
    }
    std::sort(dec.begin(), dec.end());
    std::sort(pf.begin(), pf.end());
    std::sort(dec_cpu.begin(), dec_cpu.end());
    std::sort(pf_cpu.begin(), pf_cpu.end());
    const double roof = bw_gbs * 1e9 / total;
    std::printf("%-11s %s %s matmuls only%s (%.0f MB): decode %.1f tok/s (%.0f%% of %.1f tok/s roofline), "
                "prefill-512 %.1f tok/s\n",
                current_isa(), ms.name, dtype_name(mt), g_multi ? " (multi)" : "", total / 1e6, 1.0 / dec[dec.size() / 2], 100.0 / dec[dec.size() / 2] / roof, roof,
                n_pf / pf[pf.size() / 2]);
    std::printf("%-11s %s %s per CPU second: decode %.1f tok/s, prefill-512 %.1f tok/s\n", current_isa(), ms.name,
                dtype_name(mt), 1.0 / dec_cpu[dec_cpu.size() / 2], n_pf / pf_cpu[pf_cpu.size() / 2]);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2;
    bool quick = false, tiny = true, shapes_too = true;
    std::vector<std::string> isas, types, models, model_types;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (a == "--isa" && i + 1 < argc) isas.push_back(argv[++i]);
        else if (a == "--type" && i + 1 < argc) types.push_back(argv[++i]);
        else if (a == "--model" && i + 1 < argc) models.push_back(argv[++i]);
        else if (a == "--model-type" && i + 1 < argc) model_types.push_back(argv[++i]);
        else if (a == "--gemm-only") g_gemm_only = true;
        else if (a == "--multi") g_multi = true;
        else if (a == "--quick") quick = g_quick = true;
        else if (a == "--no-model") tiny = false;
        else if (a == "--model-only") shapes_too = false;
        else { std::fprintf(stderr, "usage: %s [--threads N] [--isa NAME]... [--type T]... [--gemm-only] [--multi] [--quick] [--no-model | --model-only] [--model tiny|smol]... [--model-type T]...\n", argv[0]); return 2; }
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
            for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q5_0, DType::Q5_1, DType::IQ4_NL,
                            DType::Q3_0, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS}) {
                const bool legacy = t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q8_0;
                if (types.empty() ? !legacy : std::find(types.begin(), types.end(), dtype_name(t)) == types.end()) continue;
                for (const Shape& s : shapes)
                    if (s.cols % dtype_block_size(t) == 0) bench_shape(s, t, pool, quick);
            }
        if (model_types.empty()) model_types.push_back("q4_0");
        if (tiny) {
            // Types interleaved per model: an A/B on a shared machine.
            if (models.empty() || std::find(models.begin(), models.end(), "tiny") != models.end())
                for (const std::string& mt : model_types) bench_model(kTinyLlama, pool, bw, type_named(mt));
            if (models.empty() || std::find(models.begin(), models.end(), "smol") != models.end())
                for (const std::string& mt : model_types) bench_model(kSmolLM2, pool, bw, type_named(mt));
        }
    }
    return 0;
}
