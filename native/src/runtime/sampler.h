// sampler.h — logits → token, as llama.cpp's default chain does it:
// repetition penalty → top-k → top-p → min-p → temperature → draw; greedy (argmax after the
// penalty) when temperature <= 0. The RNG is seeded, so equal seeds give equal samples.
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "edgert.h"

namespace edgert {

// splitmix64: tiny, fast, and identical on every platform (std:: distributions are not).
class SplitMix64 {
public:
    explicit SplitMix64(uint64_t seed) : state_(seed) {}
    uint64_t next();
    double uniform();  // [0, 1) with 53 random bits

private:
    uint64_t state_;
};

class Sampler {
public:
    // Throws StatusError(EDGERT_ERR_INVALID_ARGUMENT) for NaN or out-of-range parameters.
    explicit Sampler(const edgert_sampler_params& params);

    void reset();
    void accept(int32_t token);
    // Throws StatusError(EDGERT_ERR_INVALID_ARGUMENT) for n_vocab < 1, NaN logits, or a mask
    // that allows no token. allowed (may be null: every token) is a bitmask, bit t % 32 of word
    // t / 32 set = token t may be chosen; n_words must cover n_vocab.
    int32_t sample(const float* logits, int32_t n_vocab, const uint32_t* allowed = nullptr,
                   int32_t n_words = 0);
    // The distribution sample() draws from, as n_vocab probabilities (0 for every token the mask
    // or a filter removed; one-hot at the greedy choice when temperature <= 0). Does not touch
    // the RNG, so it can be called before sample() without changing what sample() returns.
    void probs(const float* logits, int32_t n_vocab, const uint32_t* allowed, int32_t n_words,
               float* out);

    const edgert_sampler_params& params() const { return params_; }

private:
    struct Candidate {
        int32_t id;
        float logit;
        float p;
    };
    void apply_repeat_penalty(std::vector<Candidate>& c) const;
    // Fills candidates_ with the penalized, masked logits. Returns the token when the choice is
    // deterministic (temperature <= 0: the argmax; every logit -inf: the lowest id), else -1
    // with candidates_ filtered, sorted by logit and carrying their final probabilities in p.
    int32_t prepare(const float* logits, int32_t n_vocab, const uint32_t* allowed, int32_t n_words);

    edgert_sampler_params params_;
    SplitMix64 rng_;
    std::deque<int32_t> history_;  // the last repeat_last_n accepted tokens
    std::vector<Candidate> candidates_;
};

}  // namespace edgert
