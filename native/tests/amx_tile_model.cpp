// amx_tile_model.cpp — the AMX prefill kernel (packed_amx.h) run on a scalar model of the tile
// unit, so its layout logic is tested on every AVX-512 CPU, AMX or not. Compiled with the AVX-512
// kernel file's flags; entered from test_kernels_amx.cpp only after the CPU check.
//
// The model follows the Intel SDM: LDTILECFG sets each tile's rows and bytes per row and zeroes
// the tiles; TILELOADD/TILESTORED move rows x colsb bytes at a stride; TDPBSSD computes
// C[m][n] += sum_k sum_i A[m][4k+i] * B[k][4n+i] (signed bytes, int32, wrapping) and faults
// unless C.rows == A.rows, C.colsb == B.colsb and A.colsb == 4 * B.rows — here a shape
// violation is a test failure. Checked: the AMX kernel equals the VNNI kernel bit for bit and
// the scalar oracle within the kernel tests' tolerance, on odd row counts, token counts that
// are not multiples of 16 (the tail runs on VNNI), token ranges not starting at 0, and extreme
// values.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernel_table.h"
#include "kernels/ref/ref_kernels.h"
#include "test_kernels_common.h"

namespace edgert {
namespace {
#include "kernels/x86/packed_avx512vnni.h"
#include "kernels/x86/packed_amx.h"
}  // namespace
}  // namespace edgert

using namespace edgert;
using namespace edgert_test;

namespace {

struct ModelTile {
    int rows, colsb;
    uint8_t b[16][64];
};

struct TileModel {
    using Tile = ModelTile;
    static inline Tile tiles[8];
    static inline bool configured = false;
    static inline int64_t products = 0;  // TDPBSSD executed (the test checks the tiles were used)

    static bool usable(int t, const char* op) {
        if (!configured || tiles[t].rows == 0 || tiles[t].colsb == 0)
            return fail("amx model: %s on tile %d, which the configuration does not define", op, t);
        return true;
    }
    static void configure(const AmxTileConfig& c) {
        if (c.palette != 1 || c.start_row != 0) fail("amx model: palette %d start_row %d", c.palette, c.start_row);
        for (int i = 0; i < 16; ++i) {
            const bool bad = i >= 8 ? (c.rows[i] != 0 || c.colsb[i] != 0)
                                    : (c.rows[i] > 16 || c.colsb[i] > 64 || (c.rows[i] == 0) != (c.colsb[i] == 0));
            if (bad) fail("amx model: tile %d configured %d rows x %d bytes", i, c.rows[i], c.colsb[i]);
        }
        for (int i = 0; i < 8; ++i) {
            tiles[i].rows = c.rows[i];
            tiles[i].colsb = c.colsb[i];
            std::memset(tiles[i].b, 0, sizeof(tiles[i].b));
        }
        configured = true;
    }
    static void release() {
        configured = false;
        for (Tile& t : tiles) t.rows = t.colsb = 0;
    }
    template <int T>
    static void zero() {
        if (usable(T, "TILEZERO")) std::memset(tiles[T].b, 0, sizeof(tiles[T].b));
    }
    template <int T>
    static void load(const void* p, int64_t stride) {
        if (!usable(T, "TILELOADD")) return;
        Tile& t = tiles[T];
        std::memset(t.b, 0, sizeof(t.b));
        for (int r = 0; r < t.rows; ++r) std::memcpy(t.b[r], static_cast<const uint8_t*>(p) + r * stride, t.colsb);
    }
    template <int T>
    static void store(void* p, int64_t stride) {
        if (!usable(T, "TILESTORED")) return;
        const Tile& t = tiles[T];
        for (int r = 0; r < t.rows; ++r) std::memcpy(static_cast<uint8_t*>(p) + r * stride, t.b[r], t.colsb);
    }
    template <int C, int A, int B>
    static void dpbssd() {
        if (!usable(C, "TDPBSSD") || !usable(A, "TDPBSSD") || !usable(B, "TDPBSSD")) return;
        Tile &c = tiles[C], &a = tiles[A], &b = tiles[B];
        if (c.rows != a.rows || c.colsb != b.colsb || a.colsb != 4 * b.rows) {
            fail("amx model: TDPBSSD shapes C %dx%d, A %dx%d, B %dx%d would fault", c.rows, c.colsb, a.rows,
                 a.colsb, b.rows, b.colsb);
            return;
        }
        for (int m = 0; m < c.rows; ++m)
            for (int n = 0; n < c.colsb / 4; ++n) {
                int32_t acc;
                std::memcpy(&acc, c.b[m] + 4 * n, 4);
                uint32_t sum = static_cast<uint32_t>(acc);  // wraps like the hardware
                for (int k = 0; k < a.colsb / 4; ++k)
                    for (int i = 0; i < 4; ++i)
                        sum += static_cast<uint32_t>(int32_t{static_cast<int8_t>(a.b[m][4 * k + i])} *
                                                     static_cast<int8_t>(b.b[k][4 * n + i]));
                acc = static_cast<int32_t>(sum);
                std::memcpy(c.b[m] + 4 * n, &acc, 4);
            }
        ++products;
    }
};

template <DType QT>
void check_type(std::mt19937& rng) {
    for (int64_t cols : {int64_t{32}, int64_t{96}, int64_t{4096 + 32}}) {
        for (Profile p : kAllProfiles) {
            if (cols > 96 && p != Profile::Random && p != Profile::HugeScale) continue;
            for (int64_t rows : {int64_t{16}, int64_t{21}, int64_t{37}, int64_t{64}}) {
                const int64_t max_tok = 100, nb = cols / 32;
                auto wb = make_weights(rng, QT, p, rows, cols);
                auto x = make_activations(rng, p, max_tok * cols);
                std::vector<BlockQ8Act> xq(max_tok * nb);
                quantize_q8act_ref(x.data(), xq.data(), max_tok * cols);
                std::vector<uint8_t> packed(packed_weight_bytes(QT, rows, cols, kPackRows) + 64);
                uint8_t* at = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
                pack_row_groups(QT, wb.data(), rows, cols, at, kPackRows);
                const WeightView v{QT, wb.data(), at, rows, cols}, vs{QT, wb.data(), nullptr, rows, cols};
                std::vector<float> ys(rows * max_tok);
                qgemm_of(kScalarKernels, QT)(vs, xq.data(), 0, rows, 0, max_tok, ys.data(), rows);
                // (t0, t1): whole 16-token subtiles, a tail, a sweep of 64 + more, an odd start.
                const int64_t ranges[][2] = {{0, 16}, {0, 17}, {0, 48}, {0, 64}, {0, 100}, {5, 38}, {3, 70}};
                for (const auto& rg : ranges) {
                    const int64_t t0 = rg[0], t1 = rg[1];
                    std::vector<float> ya(rows * max_tok, NAN), yv(rows * max_tok, NAN);
                    gemm_amx<TileModel, QT>(v, xq.data(), 0, rows, t0, t1, ya.data(), rows);
                    gemm_packed<QT>(v, xq.data(), 0, rows, t0, t1, yv.data(), rows);
                    for (int64_t o = t0 * rows; o < t1 * rows; ++o) {
                        const int64_t tk = o / rows, r = o % rows;
                        const double tol = kQuantDotRelTol * quant_abs_sum(QT, wb.data() + r * dtype_row_bytes(QT, cols), xq.data() + tk * nb, nb);
                        const bool same = std::memcmp(&ya[o], &yv[o], sizeof(float)) == 0;
                        if (!same || !(std::fabs(double(ya[o]) - ys[o]) <= tol + 1e-37)) {
                            fail("amx model %s cols=%lld rows=%lld tokens [%lld,%lld) %s: y[t=%lld,r=%lld] = %.9g, vnni %.9g, scalar %.9g",
                                 dtype_name(QT), (long long)cols, (long long)rows, (long long)t0, (long long)t1,
                                 profile_name(p), (long long)tk, (long long)r, ya[o], yv[o], ys[o]);
                            break;
                        }
                    }
                }
            }
        }
    }
}

}  // namespace

// Returns the number of tile products run (0 would mean the tiles were never used).
int64_t run_amx_model_checks() {
    std::mt19937 rng(21);
    check_type<DType::Q4_0>(rng);
    check_type<DType::Q4_1>(rng);
    check_type<DType::Q8_0>(rng);
    if (TileModel::configured) fail("amx model: tiles still configured after the kernel returned (no TILERELEASE)");
    return TileModel::products;
}
