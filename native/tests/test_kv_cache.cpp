// test_kv_cache.cpp — the runtime's KV cache over kv_attention.h rows: the layer attention
// (threads, token blocks, GQA slices) against attention_ref on the same rows; trim + re-feed =
// a fresh run for every KV type; Q8/Q4 logits close to F16's; true bytes per token; and the
// memory-budget refusal with a suggestion that really fits.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_attention.h"
#include "runtime/attention.h"
#include "runtime/kv_cache.h"
#include "runtime/thread_pool.h"
#include "test_kv_common.h"

using namespace edgert_test;
using edgert::KVType;

namespace {

const int32_t kTypes[] = {EDGERT_KV_F32, EDGERT_KV_F16, EDGERT_KV_Q8, EDGERT_KV_Q4};

// Whether attention() sums p * V in bf16 for V rows of type vt (quantized rows on AVX512_BF16
// CPUs, unless EDGERT_ATTN_BF16=0).
bool bf16_sum(int32_t vt) {
    return vt >= EDGERT_KV_Q8 && std::strcmp(edgert::attn::attention_isa(), "avx512bf16") == 0;
}

// gqa_attention over a filled cache vs attention_ref per (KV head, query head), for prefill
// (several token blocks) and decode (GQA slices across 3 threads). Tolerances as in
// test_kv_attention.cpp: the fast path quantizes q to int8 for quantized keys, and the bf16 sum
// of quantized V rows adds up to (2u + u^2) of max|V| (u = 2^-8).
void test_layer_attention_matches_ref() {
    const int n_heads = 6, n_kv = 2, D = 64, G = n_heads / n_kv, layers = 2;
    const int n_ctx = 160;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    edgert::ThreadPool pool(3);
    for (int32_t kt : kTypes) {
        for (int32_t vt : kTypes) {
            edgert::KvCache kv(layers, n_ctx, n_kv, D, KVType(kt), KVType(vt));
            std::vector<float> k(size_t(n_ctx) * n_kv * D), v(k.size());
            for (auto& x : k) x = nd(rng);
            for (auto& x : v) x = nd(rng);
            for (int l = 0; l < layers; ++l) kv.store(l, 0, n_ctx, k.data(), v.data());
            struct Shape { int n_tok, pos0; } shapes[] = {{71, 9}, {1, 130}, {1, 0}};
            for (const auto& s : shapes) {
                std::vector<float> q(size_t(s.n_tok) * n_heads * D), out(q.size()), ref(q.size());
                for (auto& x : q) x = nd(rng);
                edgert::gqa_attention(q.data(), s.n_tok, s.pos0, kv, 1,
                                      {n_heads, n_kv, D}, out.data(), &pool);
                for (int h = 0; h < n_kv; ++h) {
                    edgert::AttentionArgs a;
                    a.q = q.data() + h * G * D;
                    a.q_token_stride = n_heads * D;
                    a.n_group = G;
                    a.n_tokens = s.n_tok;
                    a.pos0 = s.pos0;
                    a.k = kv.k_head(1, h);
                    a.k_offset = kv.k_offset(1, h);
                    a.k_sink = kv.k_sink(1, h);
                    a.k_type = KVType(kt);
                    a.k_stride = kv.k_row_bytes();
                    a.v = kv.v_head(1, h);
                    a.v_type = KVType(vt);
                    a.v_stride = kv.v_row_bytes();
                    a.head_dim = D;
                    a.scale = 1.0f / std::sqrt(float(D));
                    a.out = ref.data() + h * G * D;
                    a.out_token_stride = n_heads * D;
                    edgert::attention_ref(a);
                }
                double err = 0;
                for (size_t i = 0; i < out.size(); ++i) err = std::fmax(err, std::fabs(out[i] - ref[i]));
                // |V| <= ~4.5 for these normal values; relative tolerances of test_kv_attention.
                const double rel = (kt >= EDGERT_KV_Q8 ? 2e-2 : 2e-5) + (bf16_sum(vt) ? 7.83e-3 : 0);
                const double tol = rel * 4.5;
                CHECK_MSG(err <= tol, "k %s v %s n_tok %d pos0 %d: max err %.3g > %.3g",
                          kv_name(kt), kv_name(vt), s.n_tok, s.pos0, err, tol);
            }
        }
    }
}

// Trim to 8 after junk, re-feed: every logit equals a run that never saw the junk, bit for bit
// (rows depend only on their own position, and the chunking is the same).
// A sliding-window layer's ring (n_batch small: 128 rows for 400 positions) holds exactly what
// a full-length layer with the same window holds where attention reads it: after every chunk
// (prefill chunks, then decode steps, wrapping the ring three times) the layer attention is
// bit-identical for every KV type, int4 keys' block offsets (one slot per ring block) included,
// and agrees with attention_ref's windowed softmax. Memory: the ring, not n_ctx, rows.
void test_sliding_window_ring_matches_full_rows() {
    const int n_heads = 4, n_kv = 2, D = 64, G = n_heads / n_kv, W = 40, n_batch = 24, n_ctx = 400;
    const std::vector<edgert::KvLayerSpec> specs{{n_kv, W}};
    std::mt19937 rng(17);
    std::normal_distribution<float> nd(0.f, 1.f);
    edgert::ThreadPool pool(2);
    for (int32_t kt : kTypes) {
        for (int32_t vt : {EDGERT_KV_F16, EDGERT_KV_Q4}) {
            edgert::KvCache ring(specs, n_ctx, n_batch, D, KVType(kt), KVType(vt));
            edgert::KvCache full(specs, n_ctx, n_ctx, D, KVType(kt), KVType(vt));
            CHECK(ring.ring(0) == 128 && full.ring(0) == 0);
            CHECK(ring.bytes_total() * n_ctx == full.bytes_total() * 128);
            int pos = 0;
            for (int step = 0; pos < n_ctx; ++step) {
                const int n = step < 6 ? (step % 2 ? 7 : n_batch) : 1 + step % 3;  // prefill, then decode
                const int n_tok = std::min(n, n_ctx - pos);
                std::vector<float> k(size_t(n_tok) * n_kv * D), v(k.size()), q(size_t(n_tok) * n_heads * D);
                for (auto* x : {&k, &v, &q})
                    for (auto& e : *x) e = nd(rng) + 0.5f;  // a shared mean: int4 keys take offsets
                ring.store(0, pos, n_tok, k.data(), v.data());
                full.store(0, pos, n_tok, k.data(), v.data());
                std::vector<float> a(q.size()), b(q.size()), ref(q.size());
                edgert::gqa_attention(q.data(), n_tok, pos, ring, 0, {n_heads, n_kv, D}, a.data(), &pool);
                edgert::gqa_attention(q.data(), n_tok, pos, full, 0, {n_heads, n_kv, D}, b.data(), &pool);
                CHECK_MSG(std::memcmp(a.data(), b.data(), a.size() * 4) == 0,
                          "k %s v %s: ring differs from full rows at pos %d", kv_name(kt), kv_name(vt), pos);
                for (int h = 0; h < n_kv; ++h) {
                    edgert::AttentionArgs r;
                    r.q = q.data() + h * G * D;
                    r.q_token_stride = n_heads * D;
                    r.n_group = G;
                    r.n_tokens = n_tok;
                    r.pos0 = pos;
                    r.window = W;
                    r.ring = ring.ring(0);
                    r.k = ring.k_head(0, h);
                    r.k_offset = ring.k_offset(0, h);
                    r.k_sink = ring.k_sink(0, h);
                    r.k_type = KVType(kt);
                    r.k_stride = ring.k_row_bytes();
                    r.v = ring.v_head(0, h);
                    r.v_type = KVType(vt);
                    r.v_stride = ring.v_row_bytes();
                    r.head_dim = D;
                    r.scale = 1.0f / std::sqrt(float(D));
                    r.out = ref.data() + h * G * D;
                    r.out_token_stride = n_heads * D;
                    edgert::attention_ref(r);
                }
                double err = 0;
                for (size_t i = 0; i < a.size(); ++i) err = std::fmax(err, std::fabs(a[i] - ref[i]));
                const double tol = ((kt >= EDGERT_KV_Q8 ? 2e-2 : 2e-5) + (bf16_sum(vt) ? 7.83e-3 : 0)) * 5.0;
                CHECK_MSG(err <= tol, "k %s v %s pos %d: ring vs attention_ref %.3g > %.3g", kv_name(kt),
                          kv_name(vt), pos, err, tol);
                pos += n_tok;
            }
            // What continuing reads is still held; far older positions are not.
            CHECK(ring.can_trim_to(n_ctx - 1) && !ring.can_trim_to(n_ctx - 200) && ring.can_trim_to(0));
            CHECK(full.can_trim_to(n_ctx - 200));
        }
    }
}

void test_trim_refeed_equals_fresh(edgert_model* m) {
    const std::vector<int32_t> toks = kv_tokens(40);
    const std::vector<int32_t> head(toks.begin(), toks.begin() + 8), rest(toks.begin() + 8, toks.end());
    const std::vector<int32_t> junk = kv_tokens(30, 3);
    for (int32_t t : kTypes) {
        edgert_context* a = new_kv_context(m, t, t);
        edgert_context* b = new_kv_context(m, t, t);
        eval_all(a, head);
        eval_all(a, junk);
        CHECK_STATUS(edgert_context_trim(a, 8), EDGERT_OK);
        CHECK(edgert_context_n_past(a) == 8);
        const std::vector<float> got = eval_all(a, rest);
        eval_all(b, head);
        const std::vector<float> want = eval_all(b, rest);
        CHECK_MSG(got == want, "kv %s: trim + re-feed differs from a fresh run", kv_name(t));
        // Token ids follow the trim too.
        std::vector<int32_t> held(64);
        CHECK(edgert_context_tokens(a, held.data(), 64) == 40);
        held.resize(40);
        CHECK(held == toks);
        CHECK_STATUS(edgert_context_trim(a, 41), EDGERT_ERR_INVALID_ARGUMENT);
        edgert_context_free(a);
        edgert_context_free(b);
    }
}

// edgert_eval_batch: contexts holding different histories (different lengths, so rows sit at
// different positions and int4 key blocks at different offsets) step together; every row must
// equal what a twin context gives from one-token edgert_eval, bit for bit, over several steps.
void test_eval_batch_equals_single(edgert_model* m) {
    const int vocab = 96;
    for (int32_t t : kTypes) {
        edgert_context* batch[3];
        edgert_context* twin[3];
        for (int i = 0; i < 3; ++i) {
            batch[i] = new_kv_context(m, t, t);
            twin[i] = new_kv_context(m, t, t);
            const std::vector<int32_t> prompt = kv_tokens(5 + 13 * i, i);
            eval_all(batch[i], prompt);
            eval_all(twin[i], prompt);
        }
        for (int step = 0; step < 20; ++step) {
            const int32_t toks[3] = {int32_t((step * 7 + 1) % vocab), int32_t((step * 5 + 2) % vocab),
                                     int32_t((step * 3 + 40) % vocab)};
            std::vector<float> got(3 * size_t(vocab));
            CHECK_STATUS(edgert_eval_batch(batch, toks, 3, got.data()), EDGERT_OK);
            for (int i = 0; i < 3; ++i) {
                std::vector<float> want(static_cast<size_t>(vocab));
                CHECK_STATUS(edgert_eval(twin[i], &toks[i], 1, want.data(), 0), EDGERT_OK);
                CHECK_MSG(std::equal(want.begin(), want.end(), got.begin() + i * vocab),
                          "kv %s: batched row %d differs from one-token eval at step %d", kv_name(t), i, step);
                CHECK(edgert_context_n_past(batch[i]) == edgert_context_n_past(twin[i]));
            }
        }
        std::vector<int32_t> held(256), want_held(256);
        const int32_t n_held = edgert_context_tokens(batch[2], held.data(), 256);
        CHECK(n_held == edgert_context_tokens(twin[2], want_held.data(), 256));
        CHECK(held == want_held);
        for (int i = 0; i < 3; ++i) {
            edgert_context_free(batch[i]);
            edgert_context_free(twin[i]);
        }
    }
}

// Bad batches fail before any cache changes: a context given twice, a full context, a token out
// of range, a context of another model, more contexts than ctxs[0]'s n_batch.
void test_eval_batch_refusals(edgert_model* m) {
    edgert_context* a = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8, 8);
    edgert_context* b = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8, 8);
    eval_all(a, kv_tokens(3));
    eval_all(b, kv_tokens(8));  // full
    std::vector<float> out(2 * 96);
    const int32_t toks[2] = {1, 2};
    edgert_context* dup[2] = {a, a};
    CHECK_STATUS(edgert_eval_batch(dup, toks, 2, out.data()), EDGERT_ERR_INVALID_ARGUMENT);
    edgert_context* full[2] = {a, b};
    CHECK_STATUS(edgert_eval_batch(full, toks, 2, out.data()), EDGERT_ERR_CONTEXT_OVERFLOW);
    const int32_t bad[2] = {1, 96};
    edgert_context* c = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8, 8);
    edgert_context* ok[2] = {a, c};
    CHECK_STATUS(edgert_eval_batch(ok, bad, 2, out.data()), EDGERT_ERR_TOKEN);
    CHECK(edgert_context_n_past(a) == 3 && edgert_context_n_past(c) == 0);
    edgert_model* other = load_kv_model(kv_spec(12));
    edgert_context* d = new_kv_context(other, EDGERT_KV_Q8, EDGERT_KV_Q8, 8);
    edgert_context* mixed[2] = {a, d};
    CHECK_STATUS(edgert_eval_batch(mixed, toks, 2, out.data()), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(std::string(edgert_last_error()).find("another model") != std::string::npos);
    std::vector<edgert_context*> many;
    for (int i = 0; i < 17; ++i) many.push_back(new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8, 16));
    std::vector<int32_t> many_toks(17, 1);
    std::vector<float> many_out(17 * 96);
    CHECK_STATUS(edgert_eval_batch(many.data(), many_toks.data(), 17, many_out.data()),
                 EDGERT_ERR_INVALID_ARGUMENT);  // n_batch is min(16, n_ctx 16)
    CHECK_STATUS(edgert_eval_batch(many.data(), many_toks.data(), 16, many_out.data()), EDGERT_OK);
    CHECK(edgert_context_n_past(a) == 3 && edgert_context_n_past(many[0]) == 1);
    CHECK_STATUS(edgert_eval_batch(nullptr, toks, 1, out.data()), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_eval_batch(ok, toks, 0, out.data()), EDGERT_ERR_INVALID_ARGUMENT);
    for (edgert_context* x : many) edgert_context_free(x);
    edgert_context_free(a);
    edgert_context_free(b);
    edgert_context_free(c);
    edgert_context_free(d);
    edgert_model_free(other);
}

// Logits over 100 positions with a quantized cache vs the F16 cache. This random model's logits
// reach |78|, far more peaked than a trained LM's, which would hide any difference in a plain KLD;
// at temperature 10 they span a trained LM's range. Attention moves this model's logits little, so
// the KLDs are small (measured f32 9e-11, q8 3e-8, q4 9e-6); the bounds give about 5x margin, and
// a cache that decoded wrong rows would exceed them by orders of magnitude (the bf16 sum of
// quantized V rows measured q8 5e-8).
void test_quantized_close_to_f16(edgert_model* m) {
    const std::vector<int32_t> toks = kv_tokens(100);
    edgert_context* ref_ctx = new_kv_context(m, EDGERT_KV_F16, EDGERT_KV_F16);
    const std::vector<float> ref = eval_all(ref_ctx, toks);
    edgert_context_free(ref_ctx);
    struct Case { int32_t k, v; double max_kld; } cases[] = {
        {EDGERT_KV_F32, EDGERT_KV_F32, 5e-10}, {EDGERT_KV_Q8, EDGERT_KV_Q8, 2e-7},
        {EDGERT_KV_Q8, EDGERT_KV_Q4, 5e-5}, {EDGERT_KV_Q4, EDGERT_KV_Q4, 5e-5}};
    double q8_kld = 0, q4_kld = 0;
    for (const auto& c : cases) {
        edgert_context* ctx = new_kv_context(m, c.k, c.v);
        const double kld = mean_kld(ref, eval_all(ctx, toks), 96, 10.0);
        std::printf("kv k %s v %s: mean KLD vs f16 %.3g\n", kv_name(c.k), kv_name(c.v), kld);
        CHECK_MSG(kld <= c.max_kld, "k %s v %s: KLD %.3g > %.3g", kv_name(c.k), kv_name(c.v), kld, c.max_kld);
        if (c.k == EDGERT_KV_Q8 && c.v == EDGERT_KV_Q8) q8_kld = kld;
        if (c.k == EDGERT_KV_Q4 && c.v == EDGERT_KV_Q4) q4_kld = kld;
        edgert_context_free(ctx);
    }
    // The quantized caches really are lossy, and int4 more so than int8: a cache silently kept
    // in f16 would pass the bounds above.
    CHECK(q8_kld > 0 && q4_kld > q8_kld);
}

void test_bytes_per_token(edgert_model* m) {
    const uint64_t layers = 2, kv_heads = 2, D = 32;
    struct Case { int32_t k, v; uint64_t row_k, row_v; } cases[] = {
        {EDGERT_KV_F32, EDGERT_KV_F32, 4 * D, 4 * D}, {EDGERT_KV_F16, EDGERT_KV_F16, 2 * D, 2 * D},
        // Q4 keys add one f16 offset vector per 64 positions: 2 * D / 64 bytes per row.
        {EDGERT_KV_Q8, EDGERT_KV_Q8, 4 + D, 4 + D},   {EDGERT_KV_Q4, EDGERT_KV_Q4, 4 + D / 2 + D / 32, 4 + D / 2},
        {EDGERT_KV_Q8, EDGERT_KV_Q4, 4 + D, 4 + D / 2}};
    for (const auto& c : cases) {
        edgert_context* ctx = new_kv_context(m, c.k, c.v, 100);
        CHECK(edgert_context_kv_bytes_per_token(ctx) == layers * kv_heads * (c.row_k + c.row_v));
        CHECK(edgert_context_kv_bytes_total(ctx) == 100 * edgert_context_kv_bytes_per_token(ctx));
        edgert_context_free(ctx);
    }
}

// First number after `key` in msg, or -1.
long long number_after(const std::string& msg, const std::string& key) {
    const size_t at = msg.find(key);
    if (at == std::string::npos) return -1;
    return std::atoll(msg.c_str() + at + key.size());
}

void test_memory_budget(edgert_model* m) {
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = 4096;
    p.n_threads = 1;
    p.n_batch = 16;
    p.kv_type_k = p.kv_type_v = EDGERT_KV_F16;
    p.memory_budget = 1 << 20;  // the f16 cache alone needs 2 MiB at this n_ctx
    edgert_context* ctx = reinterpret_cast<edgert_context*>(0x1);
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_ERR_OUT_OF_MEMORY);
    CHECK(ctx == reinterpret_cast<edgert_context*>(0x1));  // untouched on failure
    const std::string msg = edgert_last_error();
    std::printf("budget refusal: %s\n", msg.c_str());
    CHECK(number_after(msg, "needs ") > (1 << 20));
    CHECK(number_after(msg, "memory_budget is ") == (1 << 20));
    // The suggested n_ctx fits, one more does not.
    const long long n = number_after(msg, "n_ctx <= ");
    CHECK(n > 0 && n < 4096);
    edgert_context_params q = p;
    q.n_ctx = int32_t(n);
    CHECK_STATUS(edgert_context_new(m, &q, &ctx), EDGERT_OK);
    if (ctx != reinterpret_cast<edgert_context*>(0x1)) edgert_context_free(ctx);
    // The suggested smaller KV types fit at the requested n_ctx.
    CHECK(msg.find("kv_type_k EDGERT_KV_") != std::string::npos);
    const bool v_q8 = msg.find("kv_type_v EDGERT_KV_Q8") != std::string::npos;
    const bool v_q4 = msg.find("kv_type_v EDGERT_KV_Q4") != std::string::npos;
    CHECK(v_q8 || v_q4);
    q = p;
    q.kv_type_k = msg.find("kv_type_k EDGERT_KV_Q8") != std::string::npos ? EDGERT_KV_Q8
                  : msg.find("kv_type_k EDGERT_KV_Q4") != std::string::npos ? EDGERT_KV_Q4
                                                                             : EDGERT_KV_F16;
    q.kv_type_v = v_q8 ? EDGERT_KV_Q8 : EDGERT_KV_Q4;
    ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &q, &ctx), EDGERT_OK);
    edgert_context_free(ctx);
}

// Quantized rows need head_dim a power of two in [32, 256]: an explicit Q8 is refused, the
// default picks what the model allows.
void test_quantized_needs_supported_head_dim() {
    TinyLlamaSpec s = kv_spec();
    s.head_dim = 24;  // not a power of two
    s.hidden = 144;
    edgert_model* m = load_kv_model(s);
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = 32;
    p.kv_type_k = EDGERT_KV_Q8;
    edgert_context* ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_ERR_UNSUPPORTED);
    CHECK(std::string(edgert_last_error()).find("head_dim 24") != std::string::npos);
    p.kv_type_k = EDGERT_KV_F16;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    edgert_context_free(ctx);
    // The default (EDGERT_KV_AUTO) falls back to F16 on this head_dim...
    p = edgert_context_default_params();
    p.n_ctx = 32;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    CHECK(edgert_context_kv_bytes_per_token(ctx) == 2u * 2 * 2 * 24 * 2);
    edgert_context_free(ctx);
    edgert_model_free(m);
    // ...and is Q8 where head_dim allows it.
    m = load_kv_model(kv_spec());
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    CHECK(edgert_context_kv_bytes_per_token(ctx) == 2u * 2 * 2 * (4 + 32));
    edgert_context_free(ctx);
    edgert_model_free(m);
}

}  // namespace

int main() {
    test_layer_attention_matches_ref();
    test_sliding_window_ring_matches_full_rows();
    edgert_model* m = load_kv_model(kv_spec());
    test_trim_refeed_equals_fresh(m);
    test_eval_batch_equals_single(m);
    test_eval_batch_refusals(m);
    test_quantized_close_to_f16(m);
    test_bytes_per_token(m);
    test_memory_budget(m);
    edgert_model_free(m);
    test_quantized_needs_supported_head_dim();
    return finish("test_kv_cache");
}
