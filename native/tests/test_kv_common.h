// test_kv_common.h — what the KV-cache tests share: a tiny random Llama whose head_dim (32) the
// quantized KV types accept, written to a temp file and loaded through the C API, and helpers to
// make contexts and read logits.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "check.h"
#include "edgt_writer.h"
#include "kernels/attention/kv_attention.h"

namespace edgert_test {

inline TinyLlamaSpec kv_spec(uint64_t seed = 11) {
    TinyLlamaSpec s;
    s.vocab = 96;
    s.hidden = 128;
    s.ffn = 192;
    s.layers = 2;
    s.heads = 6;
    s.kv_heads = 2;  // GQA group of 3: exercises n_group in the kernel calls
    s.head_dim = 32;
    s.context = 256;
    s.seed = seed;
    return s;
}

inline edgert_model* load_kv_model(const TinyLlamaSpec& s) {
    const std::string path = temp_path("kv_model");
    write_file(path, make_tiny_llama(s).build());
    edgert_model* m = nullptr;
    CHECK_STATUS(edgert_model_load(path.c_str(), nullptr, &m), EDGERT_OK);
    return m;
}

inline edgert_context* new_kv_context(edgert_model* m, int32_t k, int32_t v, int32_t n_ctx = 128,
                                      int32_t threads = 2) {
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = threads;
    p.n_batch = 16;  // several chunks per prefill
    p.kv_type_k = k;
    p.kv_type_v = v;
    edgert_context* ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &p, &ctx), EDGERT_OK);
    return ctx;
}

inline std::vector<int32_t> kv_tokens(int n, int salt = 0) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(int32_t((i * 37 + 5 + salt * 11) % 96));
    return t;
}

// Logits of every position of tokens appended to ctx.
inline std::vector<float> eval_all(edgert_context* ctx, const std::vector<int32_t>& toks, int vocab = 96) {
    std::vector<float> out(toks.size() * size_t(vocab));
    CHECK_STATUS(edgert_eval(ctx, toks.data(), int32_t(toks.size()), out.data(), 1), EDGERT_OK);
    return out;
}

// Mean over rows of KL(softmax(ref row / temp) || softmax(test row / temp)).
inline double mean_kld(const std::vector<float>& ref, const std::vector<float>& test, int vocab = 96,
                       double temp = 1.0) {
    const size_t rows = ref.size() / size_t(vocab);
    double total = 0;
    for (size_t r = 0; r < rows; ++r) {
        std::vector<double> a(static_cast<size_t>(vocab)), b(static_cast<size_t>(vocab));
        for (int i = 0; i < vocab; ++i) {
            a[size_t(i)] = ref[r * vocab + size_t(i)] / temp;
            b[size_t(i)] = test[r * vocab + size_t(i)] / temp;
        }
        double ma = a[0], mb = b[0];
        for (int i = 1; i < vocab; ++i) ma = std::fmax(ma, a[i]), mb = std::fmax(mb, b[i]);
        double za = 0, zb = 0;
        for (int i = 0; i < vocab; ++i) za += std::exp(a[i] - ma), zb += std::exp(b[i] - mb);
        double kl = 0;
        for (int i = 0; i < vocab; ++i) {
            const double la = a[i] - ma - std::log(za), lb = b[i] - mb - std::log(zb);
            kl += std::exp(la) * (la - lb);
        }
        total += kl;
    }
    return rows ? total / double(rows) : 0.0;
}

inline const char* kv_name(int32_t t) { return edgert::kv_type_label(static_cast<edgert::KVType>(t)); }

}  // namespace edgert_test
