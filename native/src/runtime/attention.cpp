// attention.cpp — splits one layer's attention into kernel calls and spreads them over threads.
#include "runtime/attention.h"

#include <algorithm>
#include <cmath>

#include "kernels/attention/kv_attention.h"
#include "runtime/thread_pool.h"

namespace edgert {
namespace {

// Query tokens per prefill task: the kernel runs passes of up to 64 query rows, and a block of
// that order keeps one pass's K/V tile reads shared while leaving tasks for every thread.
constexpr int kTokenBlock = 32;
// Below this many multiply-adds a parallel region's wake-up and join cost more than they save
// (short decode steps).
constexpr int64_t kMinParallelWork = 1 << 15;
// Up to this many bytes of K and V rows are requested before the first head's kernel runs.
constexpr size_t kPrefetchMaxBytes = 256 << 10;

// Asks for every K and V row of the layer's KV heads that positions [0, n_pos) occupy. Between
// two decode steps the weights stream through every cache, so these rows come from DRAM, and
// each head's kernel finding them one short stream at a time was most of decode attention's
// time (SmolLM2-135M, f16 rows, 1 thread): all heads' requests in flight at once take about a
// third of it off. Larger reads (long contexts) are left to the kernel's per-tile requests, and
// ring layers too (their rows are not in position order).
void prefetch_layer_rows(const KvCache& kv, int layer, int64_t n_pos) {
    if (kv.ring(layer) > 0) return;
    const size_t k_bytes = size_t(n_pos) * kv.k_row_bytes(), v_bytes = size_t(n_pos) * kv.v_row_bytes();
    if ((k_bytes + v_bytes) * size_t(kv.n_kv_heads(layer)) > kPrefetchMaxBytes) return;
    for (int h = 0; h < kv.n_kv_heads(layer); ++h) {
        const uint8_t* k = kv.k_head(layer, h);
        const uint8_t* v = kv.v_head(layer, h);
        for (size_t off = 0; off < k_bytes; off += 64) __builtin_prefetch(k + off);
        for (size_t off = 0; off < v_bytes; off += 64) __builtin_prefetch(v + off);
    }
}

}  // namespace

void gqa_attention(const float* q, int n_tok, int pos0, const KvCache& kv, int layer,
                   const AttentionShape& shape, float* out, ThreadPool* pool) {
    const int Dh = shape.head_dim;
    const int group = shape.n_heads / shape.n_kv_heads;
    const int64_t q_dim = int64_t(shape.n_heads) * Dh;
    const int n_blocks = (n_tok + kTokenBlock - 1) / kTokenBlock;
    const int window = kv.sliding_window(layer);
    const int64_t seen = window > 0 ? std::min<int64_t>(int64_t(pos0) + n_tok, window + n_tok) : int64_t(pos0) + n_tok;
    const int64_t work = int64_t(n_tok) * shape.n_heads * seen * Dh * 2;
    const bool parallel = pool && pool->size() > 1 && work >= kMinParallelWork;
    int n_slices = 1;
    const int64_t head_tasks = int64_t(n_blocks) * shape.n_kv_heads;
    if (parallel && head_tasks < pool->size()) {
        n_slices = int(std::min<int64_t>(group, (pool->size() + head_tasks - 1) / head_tasks));
    }
    const int per_slice = (group + n_slices - 1) / n_slices;

    AttentionArgs base;
    base.q_token_stride = q_dim;
    base.k_type = kv.k_type();
    base.k_stride = kv.k_row_bytes();
    base.v_type = kv.v_type();
    base.v_stride = kv.v_row_bytes();
    base.head_dim = Dh;
    base.scale = shape.scale > 0.0f ? shape.scale : 1.0f / std::sqrt(float(Dh));
    base.softcap = shape.softcap;
    base.window = kv.sliding_window(layer);
    base.ring = kv.ring(layer);
    base.out_token_stride = q_dim;

    auto task_fn = [&](int64_t task, int /*thread*/) {
        const int slice = int(task % n_slices);
        const int kvh = int((task / n_slices) % shape.n_kv_heads);
        const int block = int(task / (int64_t(n_slices) * shape.n_kv_heads));
        const int t_begin = block * kTokenBlock, t_end = std::min(n_tok, t_begin + kTokenBlock);
        const int g_begin = slice * per_slice, g_end = std::min(group, g_begin + per_slice);
        if (g_begin >= g_end) return;
        AttentionArgs a = base;
        const int64_t offset = int64_t(t_begin) * q_dim + int64_t(kvh * group + g_begin) * Dh;
        a.q = q + offset;
        a.out = out + offset;
        a.n_group = g_end - g_begin;
        a.n_tokens = t_end - t_begin;
        a.pos0 = int64_t(pos0) + t_begin;
        a.k = kv.k_head(layer, kvh);
        a.k_offset = kv.k_offset(layer, kvh);
        a.k_sink = kv.k_sink(layer, kvh);
        a.v = kv.v_head(layer, kvh);
        attention(a);
    };

    const int64_t n_tasks = head_tasks * n_slices;
    prefetch_layer_rows(kv, layer, int64_t(pos0) + n_tok);
    if (parallel) {
        pool->parallel_for(n_tasks, task_fn);
    } else {
        for (int64_t task = 0; task < n_tasks; ++task) task_fn(task, 0);
    }
}

}  // namespace edgert
