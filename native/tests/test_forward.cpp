// test_forward.cpp — the Llama forward pass against a double-precision reference (every weight
// dtype, biases, untied output, rope_freqs, MHA/GQA/MQA), and its self-consistency: batched
// prefill = token-by-token, any n_batch and thread count agree, trim + re-feed = a fresh run.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "check.h"
#include "core/model_loader.h"
#include "edgt_writer.h"
#include "reference_llama.h"
#include "runtime/context.h"

using namespace edgert_test;
using edgert::DType;

namespace {

struct Loaded {
    std::unique_ptr<edgert::Model> model;
    EdgtBuilder builder;
};

Loaded load(const TinyLlamaSpec& spec, bool exact_matmul = false) {
    Loaded l;
    l.builder = make_tiny_llama(spec);
    l.model = edgert::load_model(edgert::MappedFile::from_bytes(l.builder.build()), true,
                                 exact_matmul);
    return l;
}

std::unique_ptr<edgert::Context> context(const edgert::Model& m, int n_batch, int threads,
                                         int32_t kv = EDGERT_KV_F32, int n_ctx = 64,
                                         int decode_threads = 1) {
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = decode_threads;
    p.n_threads_batch = threads;
    p.kv_type_k = kv;
    p.kv_type_v = kv;
    return std::make_unique<edgert::Context>(m, edgert::resolve_context_config(m, p));
}

std::vector<int32_t> tokens_for(const TinyLlamaSpec& s, int n) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(int32_t((i * 37 + 5) % s.vocab));
    return t;
}

// All-position logits in one eval call.
std::vector<float> eval_all(edgert::Context& ctx, const std::vector<int32_t>& toks) {
    const size_t V = size_t(ctx.model().meta.hparams.vocab_size);
    std::vector<float> out(toks.size() * V);
    ctx.eval(toks.data(), int32_t(toks.size()), out.data(), true);
    return out;
}

// One token per eval call, last-position logits each time.
std::vector<float> eval_one_by_one(edgert::Context& ctx, const std::vector<int32_t>& toks) {
    const size_t V = size_t(ctx.model().meta.hparams.vocab_size);
    std::vector<float> out(toks.size() * V);
    for (size_t t = 0; t < toks.size(); ++t) ctx.eval(&toks[t], 1, out.data() + t * V, false);
    return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(double(a[i]) - double(b[i])));
    return m;
}

const char* name_of(DType t) { return edgert::dtype_name(t); }

void test_against_reference() {
    struct Case {
        const char* what;
        TinyLlamaSpec spec;
        double tol;  // relative to the largest reference logit
        bool exact = false;  // edgert_model_params.exact_matmul
    };
    std::vector<Case> cases;
    TinyLlamaSpec base;
    cases.push_back({"f32 GQA tied", base, 1e-4});
    TinyLlamaSpec qwen = base;
    qwen.bias = true;
    qwen.tie = false;
    qwen.rope_freqs = true;
    qwen.rope_theta = 500000.f;
    cases.push_back({"f32 bias, untied, rope_freqs", qwen, 1e-4});
    TinyLlamaSpec mha = base;
    mha.kv_heads = mha.heads;
    cases.push_back({"f32 MHA", mha, 1e-4});
    TinyLlamaSpec mqa = base;
    mqa.kv_heads = 1;
    mqa.head_dim = 32;
    cases.push_back({"f32 MQA head_dim 32", mqa, 1e-4});
    for (DType t : {DType::F16, DType::BF16}) {
        TinyLlamaSpec s = base;
        s.weight_type = t;
        s.embd_type = t;
        s.tie = false;
        cases.push_back({name_of(t), s, 1e-4});
    }
    // Quantized weights meet int8-quantized activations (kernels.h): up to ~1% of the logit range.
    for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
        TinyLlamaSpec s = base;
        s.weight_type = t;
        s.embd_type = t;
        cases.push_back({name_of(t), s, t == DType::Q8_0 ? 0.01 : 0.02});
        // Exact mode keeps activations in f32: only f32 rounding separates it from the reference,
        // so it must meet the float-weight tolerance, 100x tighter than the int8 path.
        cases.push_back({name_of(t), s, 1e-4, true});
    }
    for (auto& c : cases) {
        Loaded l = load(c.spec, c.exact);
        const auto toks = tokens_for(c.spec, 12);
        const auto ref = reference_llama_logits(c.spec, l.builder, toks);
        auto ctx = context(*l.model, 512, 1);
        const auto got = eval_all(*ctx, toks);
        double max_ref = 0, max_diff = 0;
        for (size_t t = 0; t < toks.size(); ++t) {
            for (int v = 0; v < c.spec.vocab; ++v) {
                const double r = ref[t][size_t(v)];
                max_ref = std::fmax(max_ref, std::fabs(r));
                max_diff = std::fmax(max_diff, std::fabs(r - double(got[t * size_t(c.spec.vocab) + size_t(v)])));
            }
        }
        std::printf("%-26s%-6s max |logit - reference| = %.3g (max |logit| %.3g)\n", c.what,
                    c.exact ? "exact" : "", max_diff, max_ref);
        CHECK_MSG(max_diff <= c.tol * max_ref && max_ref > 0.1, "%s: diff %g vs tolerance %g", c.what,
                  max_diff, c.tol * max_ref);
    }
}

void test_prefill_equals_token_by_token() {
    for (DType wt : {DType::F32, DType::Q4_1}) {
        for (int32_t kv : {EDGERT_KV_F32, EDGERT_KV_F16}) {
            TinyLlamaSpec spec;
            spec.weight_type = wt;
            spec.bias = true;
            Loaded l = load(spec);
            const auto toks = tokens_for(spec, 20);
            auto one = context(*l.model, 512, 1, kv);
            const auto stepwise = eval_one_by_one(*one, toks);
            auto batched = context(*l.model, 512, 1, kv);
            const auto all = eval_all(*batched, toks);
            auto chunked = context(*l.model, 3, 1, kv);  // 20 tokens in chunks of 3
            const auto by3 = eval_all(*chunked, toks);
            auto threaded = context(*l.model, 7, 2, kv);
            const auto par = eval_all(*threaded, toks);
            // The same numbers in a different accumulation order: only rounding may differ.
            const double tol = 2e-4;
            CHECK_MSG(max_abs_diff(stepwise, all) < tol, "%s kv %d: batched vs stepwise %g", name_of(wt),
                      kv, max_abs_diff(stepwise, all));
            CHECK_MSG(max_abs_diff(all, by3) < tol, "n_batch 3: %g", max_abs_diff(all, by3));
            CHECK_MSG(max_abs_diff(all, par) < tol, "2 threads: %g", max_abs_diff(all, par));
            CHECK(batched->n_past() == 20 && chunked->n_past() == 20);

            // Last-position logits alone equal the last row of all_logits.
            auto last_ctx = context(*l.model, 5, 1, kv);
            std::vector<float> last(size_t(spec.vocab));
            last_ctx->eval(toks.data(), int32_t(toks.size()), last.data(), false);
            std::vector<float> last_row(all.end() - spec.vocab, all.end());
            CHECK(max_abs_diff(last, last_row) < tol);
        }
    }
}

void test_trim_and_refeed() {
    TinyLlamaSpec spec;
    spec.tie = false;
    Loaded l = load(spec);
    auto toks = tokens_for(spec, 16);
    for (int32_t kv : {EDGERT_KV_F32, EDGERT_KV_F16}) {
        auto ctx = context(*l.model, 4, 1, kv);
        eval_all(*ctx, toks);
        // Rewind to 9 tokens and continue differently.
        std::vector<int32_t> tail = {3, 1, 4, 1, 5};
        ctx->trim(9);
        CHECK(ctx->n_past() == 9);
        const auto continued = eval_all(*ctx, tail);

        std::vector<int32_t> fresh_toks(toks.begin(), toks.begin() + 9);
        fresh_toks.insert(fresh_toks.end(), tail.begin(), tail.end());
        auto fresh = context(*l.model, 4, 1, kv);
        const auto all = eval_all(*fresh, fresh_toks);
        std::vector<float> fresh_tail(all.begin() + 9 * spec.vocab, all.end());
        CHECK_MSG(max_abs_diff(continued, fresh_tail) < 2e-4, "kv %d: %g", kv,
                  max_abs_diff(continued, fresh_tail));

        // trim(0) starts a new conversation: the first logits equal a fresh context's.
        ctx->trim(0);
        const auto again = eval_all(*ctx, fresh_toks);
        CHECK(max_abs_diff(again, all) < 2e-4);
    }
}

// Long enough that attention goes parallel (it stays inline below a work threshold), for MHA, GQA
// and MQA, so every task split (token blocks, KV heads, slices of a head group) is exercised.
void test_threaded_attention() {
    for (int kv_heads : {4, 2, 1}) {
        TinyLlamaSpec spec;
        spec.kv_heads = kv_heads;
        spec.context = 512;
        Loaded l = load(spec);
        const auto toks = tokens_for(spec, 300);
        for (int32_t kv : {EDGERT_KV_F32, EDGERT_KV_F16}) {
            auto serial = context(*l.model, 64, 1, kv, 512, 1);
            auto threaded = context(*l.model, 64, 2, kv, 512, 2);
            const auto a = eval_all(*serial, toks), b = eval_all(*threaded, toks);
            CHECK_MSG(max_abs_diff(a, b) < 2e-4, "kv_heads %d: prefill 1 vs 2 threads %g", kv_heads,
                      max_abs_diff(a, b));
            const std::vector<int32_t> more = {7, 8, 9, 10};
            const auto sa = eval_one_by_one(*serial, more), sb = eval_one_by_one(*threaded, more);
            CHECK_MSG(max_abs_diff(sa, sb) < 2e-4, "kv_heads %d: decode 1 vs 2 threads %g", kv_heads,
                      max_abs_diff(sa, sb));
        }
    }
}

void test_f16_cache_is_close_to_f32() {
    TinyLlamaSpec spec;
    Loaded l = load(spec);
    const auto toks = tokens_for(spec, 24);
    auto a = context(*l.model, 512, 1, EDGERT_KV_F32);
    auto b = context(*l.model, 512, 1, EDGERT_KV_F16);
    const auto la = eval_all(*a, toks), lb = eval_all(*b, toks);
    const double d = max_abs_diff(la, lb);
    // Not identical (f16 rounding), but close.
    CHECK_MSG(d > 0 && d < 2e-2, "f16 vs f32 cache: %g", d);
}

}  // namespace

int main() {
    test_against_reference();
    test_prefill_equals_token_by_token();
    test_trim_and_refeed();
    test_threaded_attention();
    test_f16_cache_is_close_to_f32();
    return edgert_test::finish("test_forward");
}
