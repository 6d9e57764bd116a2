// test_sampler.cpp — greedy is the argmax; equal seeds give equal samples and different seeds
// different ones; each filter (top-k, top-p, min-p, repetition penalty, temperature) does what
// llama.cpp's does; sampled frequencies follow the softmax.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "check.h"
#include "runtime/sampler.h"

using edgert::Sampler;

namespace {

edgert_sampler_params params(float temperature, uint64_t seed = 1) {
    edgert_sampler_params p = edgert_sampler_default_params();
    p.temperature = temperature;
    p.seed = seed;
    return p;
}

std::vector<float> random_logits(int n, uint64_t seed) {
    edgert::SplitMix64 rng(seed);
    std::vector<float> l(static_cast<size_t>(n));
    for (auto& x : l) x = float(rng.uniform() * 8.0 - 4.0);
    return l;
}

std::vector<int32_t> draw(Sampler& s, const std::vector<float>& logits, int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(s.sample(logits.data(), int32_t(logits.size())));
    return out;
}

void test_greedy_is_argmax() {
    for (uint64_t seed = 0; seed < 50; ++seed) {
        const auto logits = random_logits(1000, seed);
        int32_t best = 0;
        for (int32_t i = 1; i < 1000; ++i) best = logits[size_t(i)] > logits[size_t(best)] ? i : best;
        for (float t : {0.f, -1.f}) {
            Sampler s(params(t, seed));
            CHECK(s.sample(logits.data(), 1000) == best);
        }
        // top_k = 1 is greedy at any temperature.
        auto p = params(1.5f, seed);
        p.top_k = 1;
        Sampler k1(p);
        CHECK(k1.sample(logits.data(), 1000) == best);
    }
    // Ties go to the lowest id, so greedy output never depends on sort stability.
    const std::vector<float> tie = {1.f, 3.f, 3.f, 2.f};
    Sampler s(params(0.f));
    CHECK(s.sample(tie.data(), 4) == 1);
}

void test_seed_determinism() {
    const auto logits = random_logits(50, 7);
    Sampler a(params(1.f, 42)), b(params(1.f, 42)), c(params(1.f, 43));
    const auto sa = draw(a, logits, 200), sb = draw(b, logits, 200), sc = draw(c, logits, 200);
    CHECK(sa == sb);
    CHECK(sa != sc);
    // reset() reseeds: the same sequence again.
    a.reset();
    CHECK(draw(a, logits, 200) == sa);
}

void test_frequencies_follow_softmax() {
    const std::vector<float> logits = {0.f, 1.f, 2.f, -1.f};
    for (float temp : {1.f, 0.5f}) {
        Sampler s(params(temp, 5));
        const int n = 40000;
        std::map<int32_t, int> counts;
        for (int32_t t : draw(s, logits, n)) counts[t]++;
        double z = 0;
        for (float l : logits) z += std::exp(double(l) / temp);
        for (int32_t i = 0; i < 4; ++i) {
            const double expected = std::exp(double(logits[size_t(i)]) / temp) / z;
            const double got = double(counts[i]) / n;
            CHECK_MSG(std::fabs(got - expected) < 0.015, "T=%g token %d: %.4f vs %.4f", double(temp), i,
                      got, expected);
        }
    }
}

void test_filters() {
    const std::vector<float> logits = {2.f, 1.f, 0.f, -1.f, 3.f};  // softmax ≈ .23 .086 .032 .012 .64
    auto seen = [&](const edgert_sampler_params& p) {
        Sampler s(p);
        std::map<int32_t, int> counts;
        for (int32_t t : draw(s, logits, 3000)) counts[t]++;
        return counts;
    };
    auto p = params(1.f);
    p.top_k = 2;
    auto c = seen(p);
    CHECK(c.size() == 2 && c.count(4) && c.count(0));

    p = params(1.f);
    p.top_p = 0.8f;  // .64 + .23 >= .8: two tokens
    c = seen(p);
    CHECK(c.size() == 2 && c.count(4) && c.count(0));
    p.top_p = 0.5f;  // the top token alone covers it
    CHECK(seen(p).size() == 1);

    p = params(1.f);
    p.min_p = 0.1f;  // keep p >= .064: tokens 4, 0, 1
    c = seen(p);
    CHECK(c.size() == 3 && c.count(4) && c.count(0) && c.count(1));

    // Repetition penalty, llama.cpp semantics: positive logits divided, negative multiplied.
    p = params(0.f);
    p.repeat_penalty = 4.f;
    Sampler s(p);
    s.accept(4);  // 3 -> 0.75: token 0 (2.0) now wins
    CHECK(s.sample(logits.data(), 5) == 0);
    s.accept(0);  // 2 -> 0.5: token 1 (1.0) wins
    CHECK(s.sample(logits.data(), 5) == 1);
    const std::vector<float> neg = {-1.f, -2.f};
    Sampler sn(p);
    sn.accept(0);  // -1 -> -4: token 1 wins
    CHECK(sn.sample(neg.data(), 2) == 1);
    // repeat_last_n bounds the history.
    p.repeat_last_n = 1;
    Sampler sl(p);
    sl.accept(4);
    sl.accept(2);  // pushes 4 out of the window
    CHECK(sl.sample(logits.data(), 5) == 4);
    // Out-of-range ids in the history are ignored, not written out of bounds.
    Sampler so(p);
    so.accept(1000);
    CHECK(so.sample(logits.data(), 5) == 4);

    // Masked logits (-inf) are never drawn.
    const std::vector<float> masked = {-INFINITY, 0.f, -INFINITY};
    Sampler sm(params(1.f));
    for (int32_t t : draw(sm, masked, 100)) CHECK(t == 1);
}

std::vector<uint32_t> mask_of(int n, const std::vector<int32_t>& allowed) {
    std::vector<uint32_t> m(size_t((n + 31) / 32), 0u);
    for (int32_t t : allowed) m[size_t(t >> 5)] |= 1u << (t & 31);
    return m;
}

// The token mask (edgert_sampler_sample_masked) and the distribution (edgert_sampler_probs).
void test_mask_and_probs() {
    const auto logits = random_logits(300, 3);
    const std::vector<int32_t> allowed = {2, 31, 32, 33, 150, 299};
    const auto mask = mask_of(300, allowed);
    auto is_allowed = [&](int32_t t) { return std::find(allowed.begin(), allowed.end(), t) != allowed.end(); };
    // greedy: the best allowed token, and probs is one-hot on it
    int32_t best = allowed[0];
    for (int32_t t : allowed) best = logits[size_t(t)] > logits[size_t(best)] ? t : best;
    Sampler g(params(0.f));
    CHECK(g.sample(logits.data(), 300, mask.data(), int32_t(mask.size())) == best);
    std::vector<float> p(300, -1.f);
    g.probs(logits.data(), 300, mask.data(), int32_t(mask.size()), p.data());
    for (int32_t t = 0; t < 300; ++t) CHECK(p[size_t(t)] == (t == best ? 1.f : 0.f));
    // sampled: only allowed tokens, at the softmax of the allowed logits; probs does not move
    // the RNG (the same seed draws the same tokens with or without probs calls in between)
    Sampler s(params(1.f, 9)), twin(params(1.f, 9));
    s.probs(logits.data(), 300, mask.data(), int32_t(mask.size()), p.data());
    double z = 0.0;
    for (int32_t t : allowed) z += std::exp(double(logits[size_t(t)]));
    double sum = 0.0;
    for (int32_t t = 0; t < 300; ++t) {
        sum += p[size_t(t)];
        if (!is_allowed(t)) CHECK(p[size_t(t)] == 0.f);
        else CHECK(std::fabs(p[size_t(t)] - std::exp(double(logits[size_t(t)])) / z) < 1e-5);
    }
    CHECK(std::fabs(sum - 1.0) < 1e-5);
    std::map<int32_t, int> counts;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const int32_t a = s.sample(logits.data(), 300, mask.data(), int32_t(mask.size()));
        if (i % 7 == 0) s.probs(logits.data(), 300, mask.data(), int32_t(mask.size()), p.data());
        CHECK(a == twin.sample(logits.data(), 300, mask.data(), int32_t(mask.size())));
        CHECK(is_allowed(a));
        ++counts[a];
    }
    s.probs(logits.data(), 300, mask.data(), int32_t(mask.size()), p.data());
    for (int32_t t : allowed) CHECK(std::fabs(counts[t] / double(n) - p[size_t(t)]) < 0.02);
    // filters see only the allowed tokens: top-k 2 keeps the best two allowed ones
    auto pk = params(1.f, 4);
    pk.top_k = 2;
    Sampler k2(pk);
    k2.probs(logits.data(), 300, mask.data(), int32_t(mask.size()), p.data());
    int kept = 0;
    for (int32_t t = 0; t < 300; ++t) kept += p[size_t(t)] > 0.f;
    CHECK(kept == 2 && p[size_t(best)] > 0.f);
    // a mask that allows nothing is an error, not a silent choice
    const std::vector<uint32_t> empty(mask.size(), 0u);
    bool threw = false;
    try {
        s.sample(logits.data(), 300, empty.data(), int32_t(empty.size()));
    } catch (const std::exception&) {
        threw = true;
    }
    CHECK(threw);
}

}  // namespace

int main() {
    test_mask_and_probs();
    test_greedy_is_argmax();
    test_seed_determinism();
    test_frequencies_follow_softmax();
    test_filters();
    return edgert_test::finish("test_sampler");
}
