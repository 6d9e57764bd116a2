// test_api_errors.cpp — the C API's contract on bad calls: exact statuses, out-parameters left
// untouched, state unchanged after a refused eval, NULL handling, and edgert_generate's stopping
// rules (stop tokens, callback, max tokens, full context).
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "check.h"
#include "edgt_writer.h"

using namespace edgert_test;

namespace {

TinyLlamaSpec spec() {
    TinyLlamaSpec s;
    s.vocab = 40;
    s.layers = 2;
    return s;
}

edgert_context* new_context(edgert_model* m, int32_t n_ctx, int32_t kv = EDGERT_KV_F16) {
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    p.kv_type_k = kv;
    p.kv_type_v = kv;
    edgert_context* ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    return ctx;
}

void test_status_and_versions() {
    CHECK(edgert_abi_version() == EDGERT_ABI_VERSION);
    CHECK(std::strcmp(edgert_version(), "0.1.0") == 0);
    CHECK(std::strcmp(edgert_status_string(EDGERT_ERR_FORMAT), "EDGERT_ERR_FORMAT") == 0);
    CHECK(std::strcmp(edgert_status_string(EDGERT_OK), "EDGERT_OK") == 0);
    CHECK(edgert_status_string(edgert_status(1234)) != nullptr);
    CHECK(edgert_isa() && std::strlen(edgert_isa()) > 0);
    CHECK(std::string(edgert_available_isas()).find("scalar") != std::string::npos);
    CHECK_STATUS(edgert_set_isa("no-such-isa"), EDGERT_ERR_UNSUPPORTED);
    CHECK_STATUS(edgert_set_isa(nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    // The last error belongs to the thread that failed.
    std::string other;
    std::thread([&other] { other = edgert_last_error(); }).join();
    CHECK(other.empty());
    CHECK(std::strlen(edgert_last_error()) > 0);
}

void test_model_calls(edgert_model* m) {
    edgert_model_info info;
    CHECK_STATUS(edgert_model_get_info(m, &info), EDGERT_OK);
    CHECK(std::strcmp(info.architecture, "llama") == 0);
    CHECK(std::strcmp(info.name, "tiny-llama \xC3\xA9\xF0\x9F\x98\x80") == 0);
    CHECK(info.vocab_size == 40 && info.hidden_size == 64 && info.num_layers == 2);
    CHECK(info.num_heads == 4 && info.num_kv_heads == 2 && info.head_dim == 16);
    CHECK(info.bos_token_id == 1 && info.eos_token_id == 2 && info.format_version == 1);
    const uint64_t expected_params = 40 * 64 + 64 + 2 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 96 * 64);
    CHECK(info.n_params == expected_params);
    CHECK(info.weights_size == expected_params * 4 && info.file_size > info.weights_size);
    CHECK_STATUS(edgert_model_get_info(nullptr, &info), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_model_get_info(m, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    edgert_model_layout layout;
    CHECK_STATUS(edgert_model_get_layout(nullptr, &layout), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_model_get_layout(m, nullptr), EDGERT_ERR_INVALID_ARGUMENT);

    size_t len = 0;
    const char* json = edgert_model_metadata_json(m, &len);
    CHECK(json && len == tiny_llama_metadata(spec()).size());
    CHECK(json && std::string(json, len) == tiny_llama_metadata(spec()));
    CHECK(edgert_model_metadata_json(nullptr, &len) == nullptr);
    edgert_model_free(nullptr);  // a no-op
}

void test_context_params(edgert_model* m) {
    edgert_context* const sentinel = reinterpret_cast<edgert_context*>(0x1);
    auto try_params = [&](edgert_context_params p) {
        edgert_context* ctx = sentinel;
        edgert_status st = edgert_context_new(m, &p, &ctx);
        if (st == EDGERT_OK) edgert_context_free(ctx);
        else CHECK(ctx == sentinel);
        return st;
    };
    edgert_context_params p = edgert_context_default_params();
    p.n_threads = 1;
    CHECK_STATUS(try_params(p), EDGERT_OK);
    auto bad = p;
    bad.n_ctx = -1;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.n_threads = -2;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.n_batch = -1;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.kv_type_k = EDGERT_KV_Q8;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_UNSUPPORTED);
    bad = p;
    bad.kv_type_v = EDGERT_KV_Q4;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_UNSUPPORTED);
    bad = p;
    bad.kv_type_v = 17;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_INVALID_ARGUMENT);

    // memory_budget: the KV cache alone fits in it, KV cache + scratch does not.
    edgert_context* ctx = new_context(m, 32);
    const uint64_t kv_total = edgert_context_kv_bytes_total(ctx);
    CHECK(edgert_context_kv_bytes_per_token(ctx) == 2 * 2 * 32 * 2);  // layers * (K+V) * kv_dim * f16
    CHECK(kv_total == 32 * edgert_context_kv_bytes_per_token(ctx));
    CHECK(edgert_context_n_ctx(ctx) == 32 && edgert_context_n_past(ctx) == 0);
    edgert_context_free(ctx);
    bad = p;
    bad.n_ctx = 32;
    bad.memory_budget = kv_total;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_OUT_OF_MEMORY);
    bad.memory_budget = kv_total * 100;
    CHECK_STATUS(try_params(bad), EDGERT_OK);
    // A window far beyond memory: refused cleanly, not a crash.
    bad = p;
    bad.n_ctx = 2000000000;
    bad.memory_budget = 1 << 30;
    CHECK_STATUS(try_params(bad), EDGERT_ERR_OUT_OF_MEMORY);

    p.n_ctx = 0;  // default: min(model context 64, 4096)
    ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    CHECK(edgert_context_n_ctx(ctx) == 64);
    edgert_context_free(ctx);
    CHECK_STATUS(edgert_context_new(nullptr, &p, &ctx), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_context_new(m, &p, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(edgert_context_n_past(nullptr) == 0 && edgert_context_n_ctx(nullptr) == 0);
    CHECK(edgert_context_kv_bytes_total(nullptr) == 0);
    edgert_context_free(nullptr);
}

void test_eval_refusals(edgert_model* m) {
    edgert_context* ctx = new_context(m, 8);
    std::vector<float> logits(40, 0.f);
    const int32_t ok[] = {1, 5, 39, 0, 7};
    CHECK_STATUS(edgert_eval(ctx, ok, 5, logits.data(), 0), EDGERT_OK);
    CHECK(edgert_context_n_past(ctx) == 5);

    std::vector<float> sentinel(40, 123.f);
    const int32_t bad_hi[] = {3, 40};
    const int32_t bad_lo[] = {-1};
    CHECK_STATUS(edgert_eval(ctx, bad_hi, 2, sentinel.data(), 0), EDGERT_ERR_TOKEN);
    CHECK_STATUS(edgert_eval(ctx, bad_lo, 1, sentinel.data(), 0), EDGERT_ERR_TOKEN);
    CHECK(std::string(edgert_last_error()).find("-1") != std::string::npos);
    CHECK_STATUS(edgert_eval(ctx, ok, 4, sentinel.data(), 0), EDGERT_ERR_CONTEXT_OVERFLOW);
    CHECK(edgert_context_n_past(ctx) == 5);
    CHECK(sentinel == std::vector<float>(40, 123.f));
    CHECK_STATUS(edgert_eval(ctx, ok, 0, nullptr, 0), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_eval(ctx, nullptr, 1, nullptr, 0), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_eval(nullptr, ok, 1, nullptr, 0), EDGERT_ERR_INVALID_ARGUMENT);

    // The refused calls left the cache intact: the next token sees the same history as before.
    std::vector<float> after(40), fresh(40);
    const int32_t next = 11;
    CHECK_STATUS(edgert_eval(ctx, &next, 1, after.data(), 0), EDGERT_OK);
    edgert_context* ctx2 = new_context(m, 8);
    const int32_t all[] = {1, 5, 39, 0, 7, 11};
    CHECK_STATUS(edgert_eval(ctx2, all, 6, fresh.data(), 0), EDGERT_OK);
    float max_diff = 0.f;
    for (int i = 0; i < 40; ++i) max_diff = std::fmax(max_diff, std::fabs(after[i] - fresh[i]));
    CHECK_MSG(max_diff < 1e-3f, "max diff %g", double(max_diff));
    edgert_context_free(ctx2);

    // Exactly filling the window is fine; one more is not.
    const int32_t two[] = {2, 3};
    CHECK_STATUS(edgert_eval(ctx, two, 2, nullptr, 0), EDGERT_OK);
    CHECK(edgert_context_n_past(ctx) == 8);
    CHECK_STATUS(edgert_eval(ctx, two, 1, nullptr, 0), EDGERT_ERR_CONTEXT_OVERFLOW);

    CHECK_STATUS(edgert_context_trim(ctx, -1), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_context_trim(ctx, 9), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(edgert_context_n_past(ctx) == 8);
    CHECK_STATUS(edgert_context_trim(ctx, 8), EDGERT_OK);
    CHECK_STATUS(edgert_context_trim(ctx, 3), EDGERT_OK);
    CHECK(edgert_context_n_past(ctx) == 3);
    CHECK_STATUS(edgert_context_trim(ctx, 4), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_context_trim(ctx, 0), EDGERT_OK);
    CHECK(edgert_context_n_past(ctx) == 0);
    CHECK_STATUS(edgert_context_trim(nullptr, 0), EDGERT_ERR_INVALID_ARGUMENT);
    edgert_context_free(ctx);
}

void test_sampler_calls() {
    edgert_sampler* const sentinel = reinterpret_cast<edgert_sampler*>(0x1);
    edgert_sampler_params p = edgert_sampler_default_params();
    CHECK(p.temperature == 0.f && p.repeat_penalty == 1.f && p.repeat_last_n == 64);
    edgert_sampler* s = sentinel;
    CHECK_STATUS(edgert_sampler_new(&p, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    auto bad = p;
    bad.repeat_penalty = 0.f;
    CHECK_STATUS(edgert_sampler_new(&bad, &s), EDGERT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.temperature = NAN;
    CHECK_STATUS(edgert_sampler_new(&bad, &s), EDGERT_ERR_INVALID_ARGUMENT);
    bad = p;
    bad.repeat_last_n = -1;
    CHECK_STATUS(edgert_sampler_new(&bad, &s), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(s == sentinel);
    CHECK_STATUS(edgert_sampler_new(nullptr, &s), EDGERT_OK);  // NULL params: defaults
    const float logits[3] = {0.f, 2.f, 1.f};
    int32_t tok = -7;
    CHECK_STATUS(edgert_sampler_sample(s, nullptr, 3, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample(s, logits, 0, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample(nullptr, logits, 3, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample(s, logits, 3, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    const float nan_logits[3] = {0.f, NAN, 1.f};
    CHECK_STATUS(edgert_sampler_sample(s, nan_logits, 3, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(tok == -7);
    CHECK_STATUS(edgert_sampler_sample(s, logits, 3, &tok), EDGERT_OK);
    CHECK(tok == 1);
    // Masked sampling and the distribution: NULL arguments, a mask too short or allowing nothing.
    const uint32_t only0 = 1u, none = 0u;
    float probs[3] = {-1.f, -1.f, -1.f};
    tok = -7;
    CHECK_STATUS(edgert_sampler_sample_masked(s, logits, 3, &none, 1, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample_masked(s, logits, 3, &only0, 0, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample_masked(nullptr, logits, 3, &only0, 1, &tok), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_sample_masked(s, logits, 3, &only0, 1, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(tok == -7);
    CHECK_STATUS(edgert_sampler_sample_masked(s, logits, 3, &only0, 1, &tok), EDGERT_OK);
    CHECK(tok == 0);
    CHECK_STATUS(edgert_sampler_sample_masked(s, logits, 3, nullptr, 0, &tok), EDGERT_OK);
    CHECK(tok == 1);
    CHECK_STATUS(edgert_sampler_probs(s, logits, 3, nullptr, 0, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_probs(s, nan_logits, 3, nullptr, 0, probs), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_sampler_probs(s, logits, 3, &only0, 1, probs), EDGERT_OK);
    CHECK(probs[0] == 1.f && probs[1] == 0.f && probs[2] == 0.f);
    edgert_sampler_accept(nullptr, 1);  // no-ops, not crashes
    edgert_sampler_reset(nullptr);
    edgert_sampler_free(s);
    edgert_sampler_free(nullptr);
}

void test_long_name_is_cut_at_a_character_boundary() {
    auto b = make_tiny_llama(spec());
    const std::string from = "\"name\": \"tiny-llama \\u00e9\\ud83d\\ude00\"";
    const size_t at = b.metadata.find(from);
    CHECK(at != std::string::npos);
    if (at == std::string::npos) return;
    // 126 ASCII bytes, then a 2-byte character straddling the 127-byte limit of info.name.
    b.metadata.replace(at, from.size(), "\"name\": \"" + std::string(126, 'a') + "\\u00e9\"");
    const std::string path = temp_path("name");
    write_file(path, b.build());
    edgert_model* m = nullptr;
    CHECK_STATUS(edgert_model_load(path.c_str(), nullptr, &m), EDGERT_OK);
    unlink(path.c_str());
    edgert_model_info info;
    CHECK_STATUS(edgert_model_get_info(m, &info), EDGERT_OK);
    CHECK(std::string(info.name) == std::string(126, 'a'));
    edgert_model_free(m);
}

struct Collected {
    std::vector<int32_t> tokens;
    int stop_after = -1;  // callback asks to stop after this many tokens
};

int32_t collect(int32_t token, void* user) {
    auto* c = static_cast<Collected*>(user);
    c->tokens.push_back(token);
    return (c->stop_after >= 0 && int(c->tokens.size()) >= c->stop_after) ? 1 : 0;
}

// Greedy continuation computed by hand with edgert_eval, the oracle for edgert_generate.
std::vector<int32_t> manual_greedy(edgert_model* m, const std::vector<int32_t>& prompt, int n) {
    edgert_context* ctx = new_context(m, 64);
    std::vector<float> logits(40);
    std::vector<int32_t> out;
    CHECK_STATUS(edgert_eval(ctx, prompt.data(), int32_t(prompt.size()), logits.data(), 0), EDGERT_OK);
    for (int i = 0; i < n; ++i) {
        int32_t best = 0;
        for (int32_t v = 1; v < 40; ++v) best = logits[size_t(v)] > logits[size_t(best)] ? v : best;
        out.push_back(best);
        CHECK_STATUS(edgert_eval(ctx, &best, 1, logits.data(), 0), EDGERT_OK);
    }
    edgert_context_free(ctx);
    return out;
}

void test_generate(edgert_model* m) {
    edgert_sampler* s = nullptr;
    CHECK_STATUS(edgert_sampler_new(nullptr, &s), EDGERT_OK);
    const std::vector<int32_t> prompt = {1, 9, 4, 22, 17, 30};
    const std::vector<int32_t> expected = manual_greedy(m, prompt, 6);

    edgert_context* ctx = new_context(m, 64);
    Collected c;
    int32_t n_gen = -1;
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 5, nullptr, 0, collect, &c, &n_gen), EDGERT_OK);
    CHECK(n_gen == 5);
    CHECK(c.tokens == std::vector<int32_t>(expected.begin(), expected.begin() + 5));
    CHECK(edgert_context_n_past(ctx) == 6 + 4);  // every generated token but the last is cached

    // A stop token ends generation and is neither reported nor counted.
    CHECK_STATUS(edgert_context_trim(ctx, 0), EDGERT_OK);
    c = Collected();
    const int32_t stop = expected[2];
    int first_stop = 0;
    while (expected[size_t(first_stop)] != stop) ++first_stop;
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 10, &stop, 1, collect, &c, &n_gen), EDGERT_OK);
    CHECK(n_gen == first_stop && int(c.tokens.size()) == first_stop);

    // The callback can stop early; that token counts.
    CHECK_STATUS(edgert_context_trim(ctx, 0), EDGERT_OK);
    c = Collected();
    c.stop_after = 2;
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 10, nullptr, 0, collect, &c, &n_gen), EDGERT_OK);
    CHECK(n_gen == 2 && c.tokens.size() == 2);

    // max_new_tokens == 0: only the prompt is evaluated.
    CHECK_STATUS(edgert_context_trim(ctx, 0), EDGERT_OK);
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 0, nullptr, 0, nullptr, nullptr, &n_gen), EDGERT_OK);
    CHECK(n_gen == 0 && edgert_context_n_past(ctx) == 6);
    edgert_context_free(ctx);

    // A full context ends generation without an error.
    ctx = new_context(m, 8);
    c = Collected();
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 10, nullptr, 0, collect, &c, &n_gen), EDGERT_OK);
    CHECK(n_gen == 3 && edgert_context_n_past(ctx) == 8);
    CHECK(c.tokens == std::vector<int32_t>(expected.begin(), expected.begin() + 3));

    // A prompt that does not fit fails before any work.
    CHECK_STATUS(edgert_context_trim(ctx, 4), EDGERT_OK);
    c = Collected();
    n_gen = -1;
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 6, 10, nullptr, 0, collect, &c, &n_gen),
                 EDGERT_ERR_CONTEXT_OVERFLOW);
    CHECK(n_gen == -1 && c.tokens.empty() && edgert_context_n_past(ctx) == 4);
    const int32_t bad_prompt[] = {1, 99};
    CHECK_STATUS(edgert_generate(ctx, s, bad_prompt, 2, 10, nullptr, 0, collect, &c, &n_gen), EDGERT_ERR_TOKEN);
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 0, 10, nullptr, 0, nullptr, nullptr, &n_gen),
                 EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 1, -1, nullptr, 0, nullptr, nullptr, &n_gen),
                 EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_generate(ctx, s, prompt.data(), 1, 1, nullptr, 2, nullptr, nullptr, &n_gen),
                 EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_generate(nullptr, s, prompt.data(), 1, 1, nullptr, 0, nullptr, nullptr, nullptr),
                 EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_generate(ctx, nullptr, prompt.data(), 1, 1, nullptr, 0, nullptr, nullptr, nullptr),
                 EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(n_gen == -1);
    edgert_context_free(ctx);
    edgert_sampler_free(s);
}

}  // namespace

int main() {
    const std::string path = temp_path("api");
    write_file(path, make_tiny_llama(spec()).build());
    edgert_model* m = nullptr;
    CHECK_STATUS(edgert_model_load(path.c_str(), nullptr, &m), EDGERT_OK);
    unlink(path.c_str());  // the mapping keeps the data
    if (!m) return edgert_test::finish("test_api_errors");

    test_status_and_versions();
    test_model_calls(m);
    test_context_params(m);
    test_eval_refusals(m);
    test_sampler_calls();
    test_generate(m);
    test_long_name_is_cut_at_a_character_boundary();
    edgert_model_free(m);
    return edgert_test::finish("test_api_errors");
}
