// matmul.cpp — the matmul driver: quantizes X once per call into a per-thread scratch buffer,
// cuts the output into row x token tiles and runs them on the pool. matmul_multi does the same
// for several weights sharing X: one quantization, one pool round for all their tiles.
//
// Tile bounds depend only on the shape (never on the thread count), and each output element is
// computed by exactly one tile, so results are bit-identical for any number of threads. One-thread
// decode runs each weight as one call over all its rows, which gives the same bits because every
// kernel computes an output row the same way whatever rows its call covers.
#include <algorithm>
#include <vector>

#include "kernels/kernel_table.h"
#include "kernels/kernels.h"
#include "runtime/thread_pool.h"

namespace edgert {

namespace {

// Activations are quantized in 32-element blocks (kQK) whatever the weight type: a K-quant
// super-block of 256 (kQKK) spans 8 of them, and the loader guarantees cols % 256 == 0 there, so
// nb = cols / kQK below is whole for every type.
//
// Decode: small row tiles so 2-8 threads balance on 576-row matrices. Prefill: tiles whose
// weight slice (64 rows) and activation slice (64 tokens x cols) both stay in L2 while reused.
constexpr int64_t kGemvRowTile = 32;
constexpr int64_t kGemmRowTile = 64;
constexpr int64_t kGemmTokTile = 64;
// Below this many tokens, X is quantized on the calling thread (a pool round trip costs more).
constexpr int64_t kParallelQuantizeMinTokens = 8;
// matmul_multi's shared path plans on the stack; a model needs 3 (q/k/v) at most.
constexpr int kMaxTargets = 8;

bool is_quantized(DType t) { return dtype_is_quantized(t); }

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

void run_tasks(ThreadPool* pool, int64_t n_tasks,
               const std::function<void(int64_t task, int thread_id)>& fn) {
    if (pool == nullptr || pool->size() <= 1 || n_tasks <= 1) {
        for (int64_t i = 0; i < n_tasks; ++i) fn(i, 0);
    } else {
        pool->parallel_for(n_tasks, fn);
    }
}

std::vector<BlockQ8Act>& q8act_scratch() {
    // Per calling thread, so independent sessions on different threads never share it.
    thread_local std::vector<BlockQ8Act> buf;
    return buf;
}

std::vector<float>& exact_row_scratch() {
    thread_local std::vector<float> buf;
    return buf;
}

// One weight's share of a call: its view, tiling and kernel. Tiles depend only on its shape.
struct MatmulPlan {
    WeightView view{};
    int64_t row_tile = 1, tok_tile = 1, n_row_tiles = 0, n_tasks = 0;
    float* y = nullptr;
    int64_t ldy = 0;

    MatmulPlan() = default;
    MatmulPlan(const Weight& w, const KernelTable& k, int64_t n_tok, float* y_out) : y(y_out), ldy(w.rows) {
        const bool packed_here = w.packed != nullptr && w.packed_isa == k.name;
        view = WeightView{w.type, w.data, packed_here ? w.packed.get() : nullptr, w.rows, w.cols};
        const int64_t align = packed_here ? std::max<int64_t>(k.pack_rows, 1) : 1;
        row_tile = round_up(n_tok == 1 ? kGemvRowTile : kGemmRowTile, align);
        tok_tile = n_tok == 1 ? 1 : kGemmTokTile;
        n_row_tiles = (w.rows + row_tile - 1) / row_tile;
        n_tasks = n_row_tiles * ((n_tok + tok_tile - 1) / tok_tile);
    }
    void tile_bounds(int64_t task, int64_t n_tok, int64_t& r0, int64_t& r1, int64_t& t0, int64_t& t1) const {
        // Token tile outermost: concurrent tasks share one activation slice.
        const int64_t tt = task / n_row_tiles, rt = task % n_row_tiles;
        r0 = rt * row_tile;
        r1 = std::min(view.rows, r0 + row_tile);
        t0 = tt * tok_tile;
        t1 = std::min(n_tok, t0 + tok_tile);
    }
};

void matmul_float(const Weight& w, const KernelTable& k, const float* X, int64_t n_tok, float* Y,
                  ThreadPool* pool) {
    const MatmulPlan plan(w, k, n_tok, Y);
    const FGemmFn gemm = w.type == DType::F32   ? k.gemm_f32
                         : w.type == DType::F16 ? k.gemm_f16
                                                : k.gemm_bf16;
    run_tasks(pool, plan.n_tasks, [&](int64_t task, int) {
        int64_t r0, r1, t0, t1;
        plan.tile_bounds(task, n_tok, r0, r1, t0, t1);
        gemm(plan.view, X, r0, r1, t0, t1, Y, w.rows);
    });
}

void matmul_exact(const Weight& w, const KernelTable& k, const float* X, int64_t n_tok, float* Y,
                  ThreadPool* pool) {
    // Dequantize a tile of weight rows once into floats, then run the float GEMM on it for
    // every token: the cost of dequantizing is shared across the prompt.
    const MatmulPlan plan(w, k, n_tok, Y);
    run_tasks(pool, plan.n_row_tiles, [&](int64_t rt, int) {
        const int64_t r0 = rt * plan.row_tile, r1 = std::min(w.rows, r0 + plan.row_tile);
        std::vector<float>& rows = exact_row_scratch();
        rows.resize(static_cast<size_t>((r1 - r0) * w.cols));
        for (int64_t r = r0; r < r1; ++r) {
            row_to_float(w.type, w.data, r, w.cols, rows.data() + (r - r0) * w.cols);
        }
        const WeightView tile{DType::F32, rows.data(), nullptr, r1 - r0, w.cols};
        k.gemm_f32(tile, X, 0, r1 - r0, 0, n_tok, Y + r0, w.rows);
    });
}

// Quantized weights sharing one input: X is quantized once, and all weights' tiles run in one
// pool round. Each output tile is computed exactly as a lone matmul would compute it.
void matmul_quantized(const MatmulTarget* targets, int n_targets, const KernelTable& k,
                      const float* X, int64_t n_tok, ThreadPool* pool) {
    const int64_t cols = targets[0].w->cols, nb = cols / kQK;
    std::vector<BlockQ8Act>& xq = q8act_scratch();
    if (xq.size() < static_cast<size_t>(n_tok * nb)) xq.resize(static_cast<size_t>(n_tok * nb));
    BlockQ8Act* xq_data = xq.data();
    if (n_tok < kParallelQuantizeMinTokens) {
        k.quantize_q8act(X, xq_data, n_tok * cols);
    } else {
        run_tasks(pool, n_tok, [&](int64_t t, int) {
            k.quantize_q8act(X + t * cols, xq_data + t * nb, cols);
        });
    }

    MatmulPlan plans[kMaxTargets];
    int64_t first_task[kMaxTargets + 1] = {0};
    for (int i = 0; i < n_targets; ++i) {
        plans[i] = MatmulPlan(*targets[i].w, k, n_tok, targets[i].y);
        first_task[i + 1] = first_task[i] + plans[i].n_tasks;
    }
    if (n_tok == 1 && (pool == nullptr || pool->size() <= 1)) {
        // Decode on one thread: one kernel call per weight instead of one per 32-row tile (a
        // SmolLM2-135M token made ~6400 calls, and their dispatch, tile arithmetic and offset
        // lookups were ~3% of its time). Every kernel computes each output row the same way
        // whatever rows its call covers (their banners), so the results are the tiled ones.
        for (int i = 0; i < n_targets; ++i)
            qgemm_for(k, plans[i].view.type)(plans[i].view, xq_data, 0, plans[i].view.rows, 0, 1, plans[i].y,
                                             plans[i].ldy);
        return;
    }
    run_tasks(pool, first_task[n_targets], [&](int64_t task, int) {
        int i = 0;
        while (task >= first_task[i + 1]) ++i;
        const MatmulPlan& plan = plans[i];
        int64_t r0, r1, t0, t1;
        plan.tile_bounds(task - first_task[i], n_tok, r0, r1, t0, t1);
        qgemm_for(k, plan.view.type)(plan.view, xq_data, r0, r1, t0, t1, plan.y, plan.ldy);
    });
}

}  // namespace

void matmul(const Weight& w, const float* X, int64_t n_tok, float* Y, ThreadPool* pool) {
    const MatmulTarget one{&w, Y};
    matmul_multi(&one, 1, X, n_tok, pool);
}

void matmul_multi(const MatmulTarget* targets, int n_targets, const float* X, int64_t n_tok,
                  ThreadPool* pool) {
    if (n_tok <= 0 || n_targets <= 0) return;
    const KernelTable& k = active_kernels();
    // The shared path needs quantized, non-exact weights of one width; anything else (and more
    // targets than the fixed task table holds) runs weight by weight, with the same results.
    bool shared = n_targets <= kMaxTargets;
    for (int i = 0; i < n_targets && shared; ++i) {
        const Weight& w = *targets[i].w;
        shared = is_quantized(w.type) && !w.exact && w.cols == targets[0].w->cols;
    }
    if (shared) {
        matmul_quantized(targets, n_targets, k, X, n_tok, pool);
        return;
    }
    for (int i = 0; i < n_targets; ++i) {
        const Weight& w = *targets[i].w;
        if (w.rows <= 0) continue;
        if (!is_quantized(w.type)) matmul_float(w, k, X, n_tok, targets[i].y, pool);
        else if (w.exact) matmul_exact(w, k, X, n_tok, targets[i].y, pool);
        else matmul_quantized(&targets[i], 1, k, X, n_tok, pool);
    }
}

}  // namespace edgert
