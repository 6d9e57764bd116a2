// matmul.cpp — the matmul driver: quantizes X once per call into a per-thread scratch buffer,
// cuts the output into row x token tiles and runs them on the pool.
//
// Tile bounds depend only on the shape (never on the thread count), and each output element is
// computed by exactly one tile, so results are bit-identical for any number of threads.
#include <algorithm>
#include <vector>

#include "kernels/kernel_table.h"
#include "kernels/kernels.h"
#include "runtime/thread_pool.h"

namespace edgert {

namespace {

// Decode: small row tiles so 2-8 threads balance on 576-row matrices. Prefill: tiles whose
// weight slice (64 rows) and activation slice (64 tokens x cols) both stay in L2 while reused.
constexpr int64_t kGemvRowTile = 32;
constexpr int64_t kGemmRowTile = 64;
constexpr int64_t kGemmTokTile = 64;
// Below this many tokens, X is quantized on the calling thread (a pool round trip costs more).
constexpr int64_t kParallelQuantizeMinTokens = 8;

bool is_quantized(DType t) { return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q8_0; }

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

}  // namespace

void matmul(const Weight& w, const float* X, int64_t n_tok, float* Y, ThreadPool* pool) {
    if (n_tok <= 0 || w.rows <= 0) return;
    const KernelTable& k = active_kernels();
    const bool packed_here = w.packed != nullptr && w.packed_isa == k.name;
    const WeightView view{w.type, w.data, packed_here ? w.packed.get() : nullptr, w.rows, w.cols};

    const int64_t align = packed_here ? std::max<int64_t>(k.pack_rows, 1) : 1;
    const int64_t row_tile = round_up(n_tok == 1 ? kGemvRowTile : kGemmRowTile, align);
    const int64_t tok_tile = n_tok == 1 ? 1 : kGemmTokTile;
    const int64_t n_row_tiles = (w.rows + row_tile - 1) / row_tile;
    const int64_t n_tok_tiles = (n_tok + tok_tile - 1) / tok_tile;
    const int64_t n_tasks = n_row_tiles * n_tok_tiles;

    auto tile_bounds = [&](int64_t task, int64_t& r0, int64_t& r1, int64_t& t0, int64_t& t1) {
        // Token tile outermost: concurrent tasks share one activation slice.
        const int64_t tt = task / n_row_tiles, rt = task % n_row_tiles;
        r0 = rt * row_tile;
        r1 = std::min(w.rows, r0 + row_tile);
        t0 = tt * tok_tile;
        t1 = std::min(n_tok, t0 + tok_tile);
    };

    if (!is_quantized(w.type)) {
        const FGemmFn gemm = w.type == DType::F32   ? k.gemm_f32
                             : w.type == DType::F16 ? k.gemm_f16
                                                    : k.gemm_bf16;
        run_tasks(pool, n_tasks, [&](int64_t task, int) {
            int64_t r0, r1, t0, t1;
            tile_bounds(task, r0, r1, t0, t1);
            gemm(view, X, r0, r1, t0, t1, Y, w.rows);
        });
        return;
    }

    if (w.exact) {
        // Dequantize a tile of weight rows once into floats, then run the float GEMM on it for
        // every token: the cost of dequantizing is shared across the prompt.
        run_tasks(pool, n_row_tiles, [&](int64_t rt, int) {
            const int64_t r0 = rt * row_tile, r1 = std::min(w.rows, r0 + row_tile);
            std::vector<float>& rows = exact_row_scratch();
            rows.resize(static_cast<size_t>((r1 - r0) * w.cols));
            for (int64_t r = r0; r < r1; ++r) {
                row_to_float(w.type, w.data, r, w.cols, rows.data() + (r - r0) * w.cols);
            }
            const WeightView tile{DType::F32, rows.data(), nullptr, r1 - r0, w.cols};
            k.gemm_f32(tile, X, 0, r1 - r0, 0, n_tok, Y + r0, w.rows);
        });
        return;
    }

    const int64_t nb = w.cols / kQK;
    std::vector<BlockQ8Act>& xq = q8act_scratch();
    if (xq.size() < static_cast<size_t>(n_tok * nb)) xq.resize(static_cast<size_t>(n_tok * nb));
    BlockQ8Act* xq_data = xq.data();
    if (n_tok < kParallelQuantizeMinTokens) {
        k.quantize_q8act(X, xq_data, n_tok * w.cols);
    } else {
        run_tasks(pool, n_tok, [&](int64_t t, int) {
            k.quantize_q8act(X + t * w.cols, xq_data + t * nb, w.cols);
        });
    }

    const QGemmFn gemm = w.type == DType::Q4_0   ? k.gemm_q4_0
                         : w.type == DType::Q4_1 ? k.gemm_q4_1
                                                 : k.gemm_q8_0;
    run_tasks(pool, n_tasks, [&](int64_t task, int) {
        int64_t r0, r1, t0, t1;
        tile_bounds(task, r0, r1, t0, t1);
        gemm(view, xq_data, r0, r1, t0, t1, Y, w.rows);
    });
}

}  // namespace edgert
