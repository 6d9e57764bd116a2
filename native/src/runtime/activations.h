// activations.h — the per-context activation buffers of one forward chunk (n_batch tokens),
// allocated once so decode and prefill never allocate.
#pragma once
#include <cstdint>
#include <vector>

#include "core/metadata.h"

namespace edgert {

struct Activations {
    Activations(const Hparams& hp, int n_batch);
    static uint64_t bytes(const Hparams& hp, int n_batch);

    std::vector<float> x;     // [n_batch][H] residual stream
    std::vector<float> xb;    // [n_batch][H] normed input of a block
    std::vector<float> q;     // [n_batch][Nh*Dh]
    std::vector<float> k;     // [n_batch][Nkv*Dh]
    std::vector<float> v;     // [n_batch][Nkv*Dh]
    std::vector<float> att;   // [n_batch][Nh*Dh] attention output
    std::vector<float> proj;  // [n_batch][H] block output before the residual add
    std::vector<float> gate;  // [n_batch][F]
    std::vector<float> up;    // [n_batch][F]
};

}  // namespace edgert
