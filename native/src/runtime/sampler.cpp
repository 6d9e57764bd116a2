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

namespace {

bool is_allowed(const uint32_t* allowed, int32_t id) {
    return !allowed || ((allowed[id >> 5] >> (id & 31)) & 1u) != 0;
}

}  // namespace

int32_t Sampler::prepare(const float* logits, int32_t n_vocab, const uint32_t* allowed,
                         int32_t n_words) {
    if (!logits) fail(EDGERT_ERR_INVALID_ARGUMENT, "logits is NULL");
    if (n_vocab < 1) fail(EDGERT_ERR_INVALID_ARGUMENT, "n_vocab must be >= 1");
    if (allowed && int64_t(n_words) * 32 < n_vocab) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, "the token mask has " + std::to_string(n_words) +
                                              " words but n_vocab " + std::to_string(n_vocab) +
                                              " needs " + std::to_string((n_vocab + 31) / 32));
    }
    for (int32_t i = 0; i < n_vocab; ++i) {
        // -inf is a legitimate mask; NaN and +inf would poison the softmax.
        if (std::isnan(logits[i]) || logits[i] == INFINITY) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "logit " + std::to_string(i) + " is NaN or +inf");
        }
    }
    candidates_.resize(size_t(n_vocab));
    for (int32_t i = 0; i < n_vocab; ++i) candidates_[size_t(i)] = {i, logits[i], 0.f};
    apply_repeat_penalty(candidates_);
    if (allowed) {
        // The mask goes after the penalty (which indexes candidates by id) and before every
        // filter, so top-k/top-p/min-p choose among allowed tokens only.
        size_t n = 0;
        for (int32_t i = 0; i < n_vocab; ++i) {
            if (is_allowed(allowed, i)) candidates_[n++] = candidates_[size_t(i)];
        }
        if (n == 0) {
            fail(EDGERT_ERR_INVALID_ARGUMENT,
                 "the token mask allows no token: the grammar cannot be continued");
        }
        candidates_.resize(n);
    }

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
    // -inf logits (masked by the caller) have no mass: drop them, keeping at least one token.
    while (c.size() > 1 && c.back().logit == -INFINITY) c.pop_back();

    auto softmax = [&c]() {
        const float max_logit = c[0].logit;
        double sum = 0.0;
        for (auto& x : c) {
            // A tiny temperature can overflow logits to inf; then the maxima share all mass.
            // Everything -inf: the first (lowest id) token takes it all.
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

    if (c[0].logit == -INFINITY) return c[0].id;  // everything masked: nothing to weigh
    for (auto& x : c) x.logit /= params_.temperature;
    softmax();
    return -1;
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab, const uint32_t* allowed,
                        int32_t n_words) {
    const int32_t greedy = prepare(logits, n_vocab, allowed, n_words);
    if (greedy >= 0) return greedy;
    const std::vector<Candidate>& c = candidates_;
    const double r = rng_.uniform();
    double cum = 0.0;
    for (const auto& x : c) {
        cum += x.p;
        if (r < cum) return x.id;
    }
    return c.back().id;  // r landed in the rounding slack above the last cumulative sum
}

void Sampler::probs(const float* logits, int32_t n_vocab, const uint32_t* allowed,
                    int32_t n_words, float* out) {
    if (!out) fail(EDGERT_ERR_INVALID_ARGUMENT, "probs is NULL");
    const int32_t greedy = prepare(logits, n_vocab, allowed, n_words);
    std::fill(out, out + n_vocab, 0.f);
    if (greedy >= 0) {
        out[greedy] = 1.f;
        return;
    }
    for (const auto& x : candidates_) out[x.id] = x.p;
}

}  // namespace edgert
