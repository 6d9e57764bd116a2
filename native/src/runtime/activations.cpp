// activations.cpp — sizes of the activation buffers; bytes() and the constructor must agree,
// since the context checks memory_budget with bytes() before allocating.
#include "runtime/activations.h"

#include "core/checked_size.h"

namespace edgert {
namespace {

struct Sizes {
    size_t h, q, kv, f;
};

Sizes row_sizes(const Hparams& hp) {
    return {size_t(hp.hidden_size), size_t(hp.num_heads) * size_t(hp.head_dim),
            size_t(hp.num_kv_heads) * size_t(hp.head_dim), size_t(hp.intermediate_size)};
}

}  // namespace

Activations::Activations(const Hparams& hp, int n_batch) {
    const Sizes s = row_sizes(hp);
    const size_t n = size_t(n_batch);
    x.resize(n * s.h);
    xb.resize(n * s.h);
    q.resize(n * s.q);
    k.resize(n * s.kv);
    v.resize(n * s.kv);
    att.resize(n * s.q);
    proj.resize(n * s.h);
    gate.resize(n * s.f);
    up.resize(n * s.f);
}

uint64_t Activations::bytes(const Hparams& hp, int n_batch) {
    const Sizes s = row_sizes(hp);
    // Each row size is below 2^62 (int32 * int32), so the sum stays in range; the product with
    // n_batch (a caller's number) may not.
    return size_mul(size_mul(uint64_t(n_batch), 3 * s.h + 2 * s.q + 2 * s.kv + 2 * s.f, "the activations"),
                    sizeof(float), "the activations");
}

}  // namespace edgert
