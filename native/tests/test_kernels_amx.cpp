// test_kernels_amx.cpp — the AMX prefill GEMM (kernels/x86/packed_amx.h), two ways:
//   - on a scalar model of the tile unit (amx_tile_model.cpp), wherever AVX-512 VNNI/VBMI runs,
//     so its tile shapes, layouts and tails are checked on CPUs without AMX;
//   - on the real tiles, where the CPU and OS offer them: the "amx" table against "avx512vnni",
//     bit for bit, through the public matmul driver (test_kernels_isa also compares it with the
//     scalar table). Elsewhere it says why it skipped.
// This file is compiled without ISA flags: it decides what may run.
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "test_kernels_common.h"

using namespace edgert;
using namespace edgert_test;

int64_t run_amx_model_checks();

namespace {

void check_real_tiles() {
    std::mt19937 rng(22);
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
        for (int64_t n_tok : {int64_t{16}, int64_t{65}, int64_t{200}}) {
            const int64_t rows = 203, cols = 4096 + 32;
            auto wb = make_weights(rng, t, Profile::Random, rows, cols);
            auto x = make_activations(rng, Profile::Random, n_tok * cols);
            std::vector<float> y[2];
            const char* isas[2] = {"amx", "avx512vnni"};
            for (int i = 0; i < 2; ++i) {
                if (!set_isa(isas[i])) { fail("set_isa(%s) refused", isas[i]); return; }
                Weight w;
                w.type = t; w.data = wb.data(); w.rows = rows; w.cols = cols;
                prepare_weight(w);
                y[i].assign(rows * n_tok, NAN);
                matmul(w, x.data(), n_tok, y[i].data(), nullptr);
            }
            if (std::memcmp(y[0].data(), y[1].data(), y[0].size() * sizeof(float)) != 0)
                fail("amx %s n_tok=%lld differs from avx512vnni", dtype_name(t), (long long)n_tok);
        }
    }
}

}  // namespace

int main() {
#if defined(__x86_64__)
    const CpuFeatures& f = cpu_features();
    if (f.avx512_vnni && f.avx512_vbmi && f.gfni) {
        const int64_t products = run_amx_model_checks();
        std::printf("amx kernel on the tile model: %lld tile products checked\n", (long long)products);
        if (products == 0) fail("the AMX kernel never reached the tile unit");
    } else {
        std::printf("SKIP amx tile model: this CPU lacks AVX-512 VNNI/VBMI or GFNI, which the kernels use\n");
    }
    if (f.amx_int8) check_real_tiles();
    else std::printf("SKIP amx real tiles: %s\n", f.amx_missing);
#else
    std::printf("SKIP amx: not an x86-64 build\n");
#endif
    return finish("test_kernels_amx");
}
