// test_kv_state.cpp — edgert_context_save / _load: save → load → continue produces exactly the
// tokens (and logits) of continuing without the round trip, for every KV type; every damaged or
// mismatched file is refused with its typed error and leaves the context as it was.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "test_kv_common.h"

using namespace edgert_test;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int32_t collect(int32_t token, void* user) {
    static_cast<std::vector<int32_t>*>(user)->push_back(token);
    return 0;
}

// Sampled (not greedy) so that any change in the logits is likely to change the tokens.
std::vector<int32_t> continue_from(edgert_context* ctx, int32_t last_prompt_token) {
    edgert_sampler_params sp = edgert_sampler_default_params();
    sp.temperature = 0.9f;
    sp.seed = 1234;
    edgert_sampler* s = nullptr;
    CHECK_STATUS(edgert_sampler_new(&sp, &s), EDGERT_OK);
    std::vector<int32_t> out;
    int32_t n = 0;
    CHECK_STATUS(edgert_generate(ctx, s, &last_prompt_token, 1, 24, nullptr, 0, collect, &out, &n),
                 EDGERT_OK);
    edgert_sampler_free(s);
    return out;
}

void test_round_trip_continues_identically(edgert_model* m) {
    const int32_t types[][2] = {{EDGERT_KV_F32, EDGERT_KV_F32}, {EDGERT_KV_F16, EDGERT_KV_F16},
                                {EDGERT_KV_Q8, EDGERT_KV_Q8},   {EDGERT_KV_Q4, EDGERT_KV_Q4},
                                {EDGERT_KV_Q8, EDGERT_KV_Q4}};
    const std::vector<int32_t> prompt = kv_tokens(37);
    const std::vector<int32_t> head(prompt.begin(), prompt.end() - 1);
    for (const auto& t : types) {
        const std::string path = temp_path("kv_state");
        edgert_context* a = new_kv_context(m, t[0], t[1]);
        eval_all(a, head);
        CHECK_STATUS(edgert_context_save(a, path.c_str()), EDGERT_OK);
        const std::vector<int32_t> want = continue_from(a, prompt.back());

        // A fresh context that has seen other tokens: load must replace its state entirely.
        edgert_context* b = new_kv_context(m, t[0], t[1]);
        eval_all(b, kv_tokens(50, 7));
        CHECK_STATUS(edgert_context_load(b, path.c_str()), EDGERT_OK);
        CHECK(edgert_context_n_past(b) == int32_t(head.size()));
        std::vector<int32_t> held(100);
        CHECK(edgert_context_tokens(b, held.data(), 100) == int32_t(head.size()));
        held.resize(head.size());
        CHECK(held == head);
        const std::vector<int32_t> got = continue_from(b, prompt.back());
        CHECK_MSG(got == want && got.size() == 24, "k %s v %s: continuation after load differs",
                  kv_name(t[0]), kv_name(t[1]));

        // The logits after the round trip are bit-identical, not merely close.
        edgert_context* c = new_kv_context(m, t[0], t[1]);
        edgert_context* d = new_kv_context(m, t[0], t[1]);
        CHECK_STATUS(edgert_context_load(c, path.c_str()), EDGERT_OK);
        eval_all(d, head);
        CHECK(eval_all(c, {prompt.back(), 3, 9}) == eval_all(d, {prompt.back(), 3, 9}));
        for (edgert_context* x : {a, b, c, d}) edgert_context_free(x);
        std::remove(path.c_str());
    }
}

struct Refusal {
    const char* what;
    std::vector<uint8_t> bytes;
    edgert_status expected;
};

void test_refusals_leave_context_unchanged(edgert_model* m) {
    const std::string path = temp_path("kv_state_good");
    edgert_context* src = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8);
    eval_all(src, kv_tokens(20));
    CHECK_STATUS(edgert_context_save(src, path.c_str()), EDGERT_OK);
    edgert_context_free(src);
    const std::vector<uint8_t> good = read_bytes(path);
    CHECK(good.size() > 56);

    std::vector<Refusal> cases;
    cases.push_back({"empty", {}, EDGERT_ERR_FORMAT});
    cases.push_back({"truncated", {good.begin(), good.end() - 7}, EDGERT_ERR_FORMAT});
    cases.push_back({"header only", {good.begin(), good.begin() + 56}, EDGERT_ERR_FORMAT});
    auto extra = good;
    extra.push_back(0);
    cases.push_back({"trailing byte", extra, EDGERT_ERR_FORMAT});
    auto magic = good;
    magic[0] = 'X';
    cases.push_back({"bad magic", magic, EDGERT_ERR_FORMAT});
    auto version = good;
    version[8] = 9;
    cases.push_back({"newer version", version, EDGERT_ERR_VERSION});
    auto header = good;
    header[36] ^= 1;  // n_past, header CRC now wrong
    cases.push_back({"header bit flip", header, EDGERT_ERR_FORMAT});
    auto payload = good;
    payload[good.size() / 2] ^= 0x10;
    cases.push_back({"payload bit flip", payload, EDGERT_ERR_FORMAT});

    // The victim holds its own state; after every refusal it must still continue as before.
    edgert_context* victim = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8);
    const std::vector<int32_t> own = kv_tokens(11, 5);
    eval_all(victim, own);
    edgert_context* control = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8);
    eval_all(control, own);
    const std::string bad = temp_path("kv_state_bad");
    for (const Refusal& r : cases) {
        write_file(bad, r.bytes);
        const edgert_status st = edgert_context_load(victim, bad.c_str());
        CHECK_MSG(st == r.expected, "%s: got %s, expected %s (%s)", r.what, edgert_status_string(st),
                  edgert_status_string(r.expected), edgert_last_error());
        CHECK(edgert_context_n_past(victim) == 11);
    }
    CHECK_STATUS(edgert_context_load(victim, "/nonexistent/dir/state.kv"), EDGERT_ERR_IO);

    // Other KV types, another model with identical hparams, a context too small.
    edgert_context* other_types = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_F16);
    CHECK_STATUS(edgert_context_load(other_types, path.c_str()), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(std::string(edgert_last_error()).find("KV types") != std::string::npos);
    edgert_model* twin = load_kv_model(kv_spec(99));  // same shapes, other weights
    edgert_context* other_model = new_kv_context(twin, EDGERT_KV_Q8, EDGERT_KV_Q8);
    CHECK_STATUS(edgert_context_load(other_model, path.c_str()), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK(std::string(edgert_last_error()).find("another model") != std::string::npos);
    edgert_context* small = new_kv_context(m, EDGERT_KV_Q8, EDGERT_KV_Q8, 16);
    CHECK_STATUS(edgert_context_load(small, path.c_str()), EDGERT_ERR_CONTEXT_OVERFLOW);
    CHECK_STATUS(edgert_context_load(nullptr, path.c_str()), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_context_load(victim, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_context_save(victim, "/nonexistent/dir/state.kv"), EDGERT_ERR_IO);

    const std::vector<int32_t> next = {4, 8, 15};
    CHECK(eval_all(victim, next) == eval_all(control, next));
    // The good file still loads after all that.
    CHECK_STATUS(edgert_context_load(victim, path.c_str()), EDGERT_OK);
    CHECK(edgert_context_n_past(victim) == 20);

    for (edgert_context* x : {victim, control, other_types, other_model, small}) edgert_context_free(x);
    edgert_model_free(twin);
    std::remove(path.c_str());
    std::remove(bad.c_str());
}

void test_empty_state(edgert_model* m) {
    const std::string path = temp_path("kv_state_empty");
    edgert_context* a = new_kv_context(m, EDGERT_KV_F16, EDGERT_KV_F16);
    CHECK_STATUS(edgert_context_save(a, path.c_str()), EDGERT_OK);
    eval_all(a, kv_tokens(5));
    CHECK_STATUS(edgert_context_load(a, path.c_str()), EDGERT_OK);
    CHECK(edgert_context_n_past(a) == 0);
    CHECK(edgert_context_tokens(a, nullptr, 0) == 0);
    edgert_context_free(a);
    std::remove(path.c_str());
}

}  // namespace

int main() {
    edgert_model* m = load_kv_model(kv_spec());
    test_round_trip_continues_identically(m);
    test_refusals_leave_context_unchanged(m);
    test_empty_state(m);
    edgert_model_free(m);
    return finish("test_kv_state");
}
