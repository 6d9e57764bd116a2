// attention.cpp — softmax(q·K^T / sqrt(Dh)) · V per query head, scalar loops around the kernel
// layer's conversion and softmax.
#include "runtime/attention.h"

#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "runtime/thread_pool.h"

namespace edgert {

AttentionScratch::AttentionScratch(int n_threads, int n_ctx, int head_dim)
    : n_threads_(n_threads), n_ctx_(n_ctx), head_dim_(head_dim),
      scores_(size_t(n_threads) * size_t(n_ctx)), rows_(size_t(n_threads) * 2 * size_t(head_dim)) {}

uint64_t AttentionScratch::bytes(int n_threads, int n_ctx, int head_dim) {
    return uint64_t(n_threads) * (uint64_t(n_ctx) + 2 * uint64_t(head_dim)) * sizeof(float);
}

namespace {

// Below this many multiply-adds a parallel region's wake-up and join cost more than they save
// (short decode steps).
constexpr int64_t kMinParallelWork = 1 << 15;

// Row `row` of a cache block viewed as [rows][head_dim]; converted into buf unless already f32.
const float* cache_row(DType t, const uint8_t* base, int64_t row, int head_dim, float* buf) {
    if (t == DType::F32) return reinterpret_cast<const float*>(base) + row * head_dim;
    row_to_float(t, base, row, head_dim, buf);
    return buf;
}

// Eight independent partial sums break the floating-point add latency chain and let the compiler
// vectorize without -ffast-math, in a fixed (deterministic) summation order.
float dot_f32(const float* a, const float* b, int n) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
    }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

void gqa_attention(const float* q, int n_tok, int pos0, const KvCache& kv, int layer,
                   const AttentionShape& shape, float* out, AttentionScratch& scratch,
                   ThreadPool* pool) {
    const int Dh = shape.head_dim;
    const int group = shape.n_heads / shape.n_kv_heads;
    const int64_t q_dim = int64_t(shape.n_heads) * Dh;
    const float scale = 1.0f / std::sqrt(float(Dh));
    const uint8_t* k_base = kv.k_layer(layer);
    const uint8_t* v_base = kv.v_layer(layer);

    auto head_task = [&](int64_t task, int thread) {
        const int t = int(task / shape.n_heads);
        const int h = int(task % shape.n_heads);
        const int kvh = h / group;
        const int n_pos = pos0 + t + 1;
        const float* qh = q + t * q_dim + int64_t(h) * Dh;
        float* scores = scratch.scores(thread);
        float* krow_buf = scratch.row(thread);
        float* vrow_buf = krow_buf + Dh;

        for (int j = 0; j < n_pos; ++j) {
            const float* k = cache_row(kv.k_type(), k_base, int64_t(j) * shape.n_kv_heads + kvh, Dh, krow_buf);
            scores[j] = dot_f32(qh, k, Dh) * scale;
        }
        softmax_inplace(scores, n_pos);

        float* o = out + t * q_dim + int64_t(h) * Dh;
        std::memset(o, 0, sizeof(float) * size_t(Dh));
        for (int j = 0; j < n_pos; ++j) {
            const float* v = cache_row(kv.v_type(), v_base, int64_t(j) * shape.n_kv_heads + kvh, Dh, vrow_buf);
            const float p = scores[j];
            for (int i = 0; i < Dh; ++i) o[i] += p * v[i];
        }
    };

    const int64_t n_tasks = int64_t(n_tok) * shape.n_heads;
    const int64_t work = n_tasks * (int64_t(pos0) + n_tok) * Dh * 2;
    if (pool && pool->size() > 1 && work >= kMinParallelWork) {
        pool->parallel_for(n_tasks, head_task);
    } else {
        for (int64_t task = 0; task < n_tasks; ++task) head_task(task, 0);
    }
}

}  // namespace edgert
