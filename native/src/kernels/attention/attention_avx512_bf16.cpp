// attention_avx512_bf16.cpp — the AVX-512 position loop with the weighted V sum in bf16
// (AVX512_BF16 VDPBF16PS: two multiply-adds per f32 lane, so half the instructions of the f32
// FMAs). Scores, softmax and the f32 accumulator are attention_avx512.cpp's (shared through
// attention_avx512_ops.h); only the V tile and the weighted sum differ. Entered only on CPUs with
// AVX512_BF16 (attention_dispatch.cpp); scalar twin: attention_scalar.cpp, within the bound below.
//
// Quantized V rows only (Q8, Q4): their own rounding is as coarse as bf16's or coarser. F32 and
// F16 rows are the precise cache types (exact mode and the parity tests run on them), so they
// keep attention_avx512.cpp's f32 sum.
//
// Layout: a tile's V rows are decoded once into bf16 pairs of consecutive positions per channel
// (word [i][c] = v[2i][c], v[2i+1][c]), and each query row's weights into bf16 pairs
// (p[2i], p[2i+1]) broadcast as one 32-bit word. An odd tile pads with a row of weight zero.
//
// Numerics: p and V are rounded to bf16 (8-bit significand, unit roundoff u = 2^-8) and the
// products summed in f32. Each term is then off by at most (2u + u^2) of p|v|, and the softmax
// sum l stays the f32 one, so an output moves by at most 0.79% of max|V|; the roundings are
// independent, so in practice far less (perplexity: README.md).
// Quantized rows have a power-of-two head_dim >= 32 (kv_row_format.h): blocks of 64 channels, or
// one block of 32.
// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsic headers as
// maybe-uninitialized (GCC bug 105593); nothing in this file reads an uninitialized value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <math.h>

#include <cstring>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_row_format.h"

namespace edgert {
namespace attn {
namespace {

#include "kernels/attention/attention_avx512_ops.h"

// VCVTNE2PS2BF16 leaves row 2i's 16 values in words 0..15 and row 2i+1's in 16..31; this VPERMW
// index puts the two values of each channel side by side.
alignas(64) constexpr uint16_t kPairIndex[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                 21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

// The tile's V rows (Q8 or Q4) as bf16 pairs into vw ([kTile / 2][D] words).
template <KVType T>
void v_pairs(const AttentionArgs& a, int64_t D, int64_t p0, int64_t np, uint32_t* vw) {
    const __m512i idx = _mm512_load_si512(kPairIndex);
    for (int64_t j = 0; j < np; j += 2) {
        // An odd tile pads with a copy of its last row, which weights_bf16 gives weight zero.
        const uint8_t* r0 = row_at(a.v, a.v_stride, p0 + j);
        const uint8_t* r1 = j + 1 < np ? row_at(a.v, a.v_stride, p0 + j + 1) : r0;
        float d, m;
        load_dm(r0, &d, &m);
        const __m512 d0 = _mm512_set1_ps(d), m0 = _mm512_set1_ps(m);
        load_dm(r1, &d, &m);
        const __m512 d1 = _mm512_set1_ps(d), m1 = _mm512_set1_ps(m);
        uint32_t* out = vw + (j / 2) * D;
        for (int64_t i = 0; i < D; i += 16) {
            const __m512 v0 = decode16<T>(r0, D, i, d0, m0), v1 = decode16<T>(r1, D, i, d1, m1);
            const __m512bh b = _mm512_cvtne2ps_pbh(v1, v0);
            _mm512_storeu_si512(out + i, _mm512_permutexvar_epi16(idx, (__m512i)b));
        }
    }
}

// The first n lanes (none for n <= 0).
inline __mmask16 first_lanes(int64_t n) { return n <= 0 ? 0 : tail_mask16(n); }

// One query row's weights as bf16 pairs, w[i] = (p[2i], p[2i+1]); lanes from np on are zero (the
// odd tile's pad, and whatever lies in the scores past the tile's end).
inline void weights_bf16(const float* s, int64_t np, uint32_t* w) {
    for (int64_t j = 0; j < np; j += 32) {
        const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(np - j), s + j);
        const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(np - j - 16), s + j + 16);
        _mm512_store_si512(w + j / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

// R query rows (accumulators D floats apart, weights w[0..R)) x 16 * NV channels over n2 position
// pairs: R * NV accumulator chains, and each V load feeds R rows.
template <int R, int NV>
void pv_block(const uint32_t* vw, const uint32_t (*w)[kTile / 2], int64_t n2, int64_t D, float* acc) {
    __m512 a[R][NV];
    for (int k = 0; k < R; ++k)
        for (int v = 0; v < NV; ++v) a[k][v] = _mm512_loadu_ps(acc + k * D + 16 * v);
    for (int64_t j = 0; j < n2; ++j) {
        __m512bh x[NV];
        for (int v = 0; v < NV; ++v) x[v] = (__m512bh)_mm512_loadu_si512(vw + j * D + 16 * v);
        for (int k = 0; k < R; ++k) {
            const __m512bh c = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(w[k][j]));
            for (int v = 0; v < NV; ++v) a[k][v] = _mm512_dpbf16_ps(a[k][v], x[v], c);
        }
    }
    for (int k = 0; k < R; ++k)
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(acc + k * D + 16 * v, a[k][v]);
}

// R query rows over every channel.
template <int R>
void pv_rows(const uint32_t* vw, const uint32_t (*w)[kTile / 2], int64_t n2, int64_t D, float* acc) {
    if (D == 32) return pv_block<R, 2>(vw, w, n2, D, acc);
    for (int64_t i = 0; i < D; i += 64) pv_block<R, 4>(vw + i, w, n2, D, acc + i);
}

struct OpsBf16 : Ops {
    // p.vf holds [kTile / 2][head_dim] words of two bf16 (half of its room).
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        auto* vw = reinterpret_cast<uint32_t*>(p.vf);
        if (a.v_type == KVType::Q8) return v_pairs<KVType::Q8>(a, p.head_dim, p0, np, vw);
        v_pairs<KVType::Q4>(a, p.head_dim, p0, np, vw);
    }
    // Four query rows at a time, then the rest in one block.
    static void axpy_rows(AttnPass& p, int64_t np) {
        const int64_t D = p.head_dim, n2 = (np + 1) / 2;
        const auto* vw = reinterpret_cast<const uint32_t*>(p.vf);
        alignas(64) uint32_t w[kMaxRows][kTile / 2];
        for (int64_t r = 0; r < p.rows; ++r) weights_bf16(p.s + r * kTile, np, w[r]);
        int64_t r = 0;
        for (; r + 4 <= p.rows; r += 4) pv_rows<4>(vw, w + r, n2, D, p.acc + r * D);
        switch (p.rows - r) {
            case 3: pv_rows<3>(vw, w + r, n2, D, p.acc + r * D); break;
            case 2: pv_rows<2>(vw, w + r, n2, D, p.acc + r * D); break;
            case 1: pv_rows<1>(vw, w + r, n2, D, p.acc + r * D); break;
            default: break;
        }
    }
};

#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_avx512_bf16(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos) {
    if (!kv_type_is_quantized(a.v_type)) return attention_pass_avx512(a, p, first, n_pos);
    run_tiled_pass<OpsBf16>(a, p, first, n_pos);
}

}  // namespace attn
}  // namespace edgert
