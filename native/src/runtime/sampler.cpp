// sampler.cpp — the sampling chain. Filters follow llama.cpp: top-p and min-p look at the
// softmax of the penalized logits before temperature, and each keeps at least one token.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/status_error.h"

namespace edgert {

uint64_t SplitMix64::next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double SplitMix64::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }

Sampler::Sampler(const edgert_sampler_params& p) : params_(p), rng_(p.seed) {
    if (std::isnan(p.temperature)) fail(EDGERT_ERR_INVALID_ARGUMENT, "temperature is NaN");
    if (std::isnan(p.top_p)) fail(EDGERT_ERR_INVALID_ARGUMENT, "top_p is NaN");
    if (std::isnan(p.min_p)) fail(EDGERT_ERR_INVALID_ARGUMENT, "min_p is NaN");
    if (!(p.repeat_penalty > 0.f) || !std::isfinite(p.repeat_penalty)) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "repeat_penalty must be a positive finite number (1 = off)");
    }
    if (p.repeat_last_n < 0) fail(EDGERT_ERR_INVALID_ARGUMENT, "repeat_last_n must be >= 0");
}

void Sampler::reset() {
    history_.clear();
    rng_ = SplitMix64(params_.seed);
}

void Sampler::accept(int32_t token) {
    if (params_.repeat_last_n == 0) return;
    history_.push_back(token);
    while (history_.size() > size_t(params_.repeat_last_n)) history_.pop_front();
}

void Sampler::apply_repeat_penalty(std::vector<Candidate>& c) const {
    if (params_.repeat_penalty == 1.0f || history_.empty()) return;
    // Each distinct recent token is penalized once, however often it occurred (llama.cpp).
    std::unordered_set<int32_t> seen(history_.begin(), history_.end());
    for (int32_t id : seen) {
        if (id < 0 || size_t(id) >= c.size()) continue;
        float& l = c[size_t(id)].logit;
        l = l > 0.f ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab) {
    if (!logits) fail(EDGERT_ERR_INVALID_ARGUMENT, "logits is NULL");
    if (n_vocab < 1) fail(EDGERT_ERR_INVALID_ARGUMENT, "n_vocab must be >= 1");
    for (int32_t i = 0; i < n_vocab; ++i) {
        // -inf is a legitimate mask; NaN and +inf would poison the softmax.
        if (std::isnan(logits[i]) || logits[i] == INFINITY) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "logit " + std::to_string(i) + " is NaN or +inf");
        }
    }
    candidates_.resize(size_t(n_vocab));
    for (int32_t i = 0; i < n_vocab; ++i) candidates_[size_t(i)] = {i, logits[i], 0.f};
    apply_repeat_penalty(candidates_);

    auto by_logit = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    if (!(params_.temperature > 0.f)) {
        return std::min_element(candidates_.begin(), candidates_.end(), by_logit)->id;
    }

    std::vector<Candidate>& c = candidates_;
    size_t n = c.size();
    if (params_.top_k > 0 && size_t(params_.top_k) < n) {
        n = size_t(params_.top_k);
        std::partial_sort(c.begin(), c.begin() + std::ptrdiff_t(n), c.end(), by_logit);
        c.resize(n);
    } else {
        std::sort(c.begin(), c.end(), by_logit);
    }

    if (c[0].logit == -INFINITY) return c[0].id;  // everything masked: nothing to weigh

    auto softmax = [&c]() {
        const float max_logit = c[0].logit;
        double sum = 0.0;
        for (auto& x : c) {
            // A tiny temperature can overflow logits to inf; then the maxima share all mass.
            x.p = std::isfinite(max_logit) ? std::exp(x.logit - max_logit)
                                           : float(x.logit == max_logit);
            sum += x.p;
        }
        for (auto& x : c) x.p = float(x.p / sum);
    };

    if (params_.top_p < 1.f) {
        softmax();
        double cum = 0.0;
        size_t keep = c.size();
        for (size_t i = 0; i < c.size(); ++i) {
            cum += c[i].p;
            if (cum >= params_.top_p) {
                keep = i + 1;
                break;
            }
        }
        c.resize(std::max<size_t>(keep, 1));
    }
    if (params_.min_p > 0.f) {
        softmax();
        const float threshold = params_.min_p * c[0].p;
        size_t keep = 1;
        while (keep < c.size() && c[keep].p >= threshold) ++keep;
        c.resize(keep);
    }

    for (auto& x : c) x.logit /= params_.temperature;
    softmax();
    const double r = rng_.uniform();
    double cum = 0.0;
    for (const auto& x : c) {
        cum += x.p;
        if (r < cum) return x.id;
    }
    return c.back().id;  // r landed in the rounding slack above the last cumulative sum
}

}  // namespace edgert
