// kernels_avx512vnni.cpp — AVX-512 (F/BW/VL/DQ) + VNNI + VBMI kernels: Zen 4/5, Ice Lake and later.
// Compiled with its own -m flags (no std:: inline code here: a flagged copy could be linked into
// generic callers); entered only after cpu_features() says the CPU and OS have them.
//
// Two layouts. prepare_weight() re-lays quantized weights out in 16-row groups (packed_avx512vnni.h)
// and the fast kernels run on that. Without it (a weight not prepared, or prepared for another
// ISA) the canonical-layout kernels below run: one zmm holds a pair of
// blocks: a masked 64-byte load of the pair, then VPERMB pulls the nibbles/bytes into element
// order and the f16 scales into lane order in one shuffle each. So the last pair never reads
// past the row, and an odd block count is a pair with a zero second half.
// Lanes 0-7 of every integer/float accumulator belong to the pair's first block, 8-15 to its
// second, so block scales are applied lane-wise and the horizontal sum happens once per output.
// q4_0's "-8" offset is exact: the int32 accumulator starts at -8 * sum(q) of the activations.
// q8_0 (s8 x s8) runs VPDPBUSD on (q + 128) x w and starts from -128 * sum(w).
// Numerics vs the scalar twin: identical integer block sums; fp32 accumulation order differs.
//
// The same file defines the "amx" table: these kernels plus AMX tiles for prefill on the packed
// layout (packed_amx.h; the tile instructions are inline asm, so no -mamx flags are needed).
#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kernels/packed_qformat.h"  // outside the namespace: the ISA headers below use it
#include "kernels/q8act_limits.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/tile_loops.h"

namespace edgert {
namespace {

inline __mmask64 first_bytes(int64_t n) {
    return n >= 64 ? ~__mmask64(0) : ((__mmask64(1) << n) - 1);
}

// Shuffle tables, built once (constexpr-friendly generators would need C++20 here).
struct Tables {
    alignas(64) uint8_t q4_0_qs[64];   // [qs0, qs0, qs1, qs1] from [d0 qs0 d1 qs1]
    alignas(64) uint8_t q4_0_d[64];    // words [d0 x8, d1 x8]
    alignas(64) uint8_t q4_1_qs[64];   // as q4_0 for [d0 m0 qs0 d1 m1 qs1]
    alignas(64) uint8_t q4_1_dm[64];   // low 32 bytes d pattern, high 32 bytes m pattern
    alignas(64) uint8_t q8_0_qs[64];   // two-source: [b0.qs, b1.qs]
    alignas(64) uint8_t q8_0_d[64];
    alignas(64) uint8_t x_qs[64];      // two-source over a BlockQ8Act pair (80 bytes)
    alignas(64) uint16_t nib_shift[32];
    alignas(64) int32_t x_d[16];       // float lanes [d0 x8, d1 x8] of a BlockQ8Act pair
    alignas(64) int32_t x_s[16];
    Tables() {
        for (int i = 0; i < 64; ++i) {
            const int chunk = i / 16, j = i % 16;
            q4_0_qs[i] = static_cast<uint8_t>((chunk < 2 ? 2 : 20) + j);
            q4_1_qs[i] = static_cast<uint8_t>((chunk < 2 ? 4 : 24) + j);
            q8_0_qs[i] = static_cast<uint8_t>(i < 32 ? 2 + i : 64 + 2 + (i - 32));
            x_qs[i] = static_cast<uint8_t>(i < 32 ? 8 + i : i < 48 ? 16 + i : 64 + (i - 48));
            const int w = (i % 32) / 2, byte = i % 2, second = w >= 8;
            q4_0_d[i] = static_cast<uint8_t>((second ? 18 : 0) + byte);
            q4_1_dm[i] = static_cast<uint8_t>((second ? 20 : 0) + (i >= 32 ? 2 : 0) + byte);
            q8_0_d[i] = static_cast<uint8_t>((second ? 64 : 0) + byte);
        }
        for (int w = 0; w < 32; ++w) nib_shift[w] = ((w / 8) % 2) ? 4 : 0;
        for (int l = 0; l < 16; ++l) {
            x_d[l] = l < 8 ? 0 : 10;
            x_s[l] = l < 8 ? 1 : 11;
        }
    }
};
const Tables& tables() {
    static const Tables t;
    return t;
}

inline __m512i ld(const void* p) { return _mm512_load_si512(p); }

// --- activations -------------------------------------------------------------------------------

// One BlockQ8Act pair (second block absent when !full) as the microkernels want it.
struct XPair {
    __m512i qs;
    __m512 d;
    __m512 s;  // q4_1 only: s spread over the block's 8 lanes (s / 8 each)
};

inline XPair load_x(const BlockQ8Act* x, bool full, bool want_s) {
    const Tables& tb = tables();
    const uint8_t* p = reinterpret_cast<const uint8_t*>(x);
    const __m512i a = _mm512_maskz_loadu_epi8(first_bytes(full ? 64 : 40), p);
    const __m512i b = full ? _mm512_maskz_loadu_epi8(first_bytes(16), p + 64) : _mm512_setzero_si512();
    XPair out;
    out.qs = _mm512_permutex2var_epi8(a, ld(tb.x_qs), b);
    out.d = _mm512_permutexvar_ps(ld(tb.x_d), _mm512_castsi512_ps(a));
    out.s = want_s ? _mm512_mul_ps(_mm512_permutexvar_ps(ld(tb.x_s), _mm512_castsi512_ps(a)),
                                   _mm512_set1_ps(0.125f))
                   : _mm512_setzero_ps();
    return out;
}

// --- weights -----------------------------------------------------------------------------------

struct QArgs {
    const uint8_t* w;
    size_t row_bytes;
    const BlockQ8Act* x;
    int64_t nb;  // blocks per row (and per token of x)
    float* y;
    int64_t ldy;
};

// Decode streams rows r..r+3 side by side; four short interleaved streams defeat the hardware
// prefetcher (measured: 3 GB/s instead of 24), so fetch the same offset of the next row group.
inline void prefetch_next_group(const uint8_t* p, size_t row_bytes) {
    _mm_prefetch(reinterpret_cast<const char*>(p + 4 * row_bytes), _MM_HINT_T0);
}

inline __m512i unpack_nibbles(__m512i raw) {
    return _mm512_and_si512(_mm512_srlv_epi16(raw, ld(tables().nib_shift)), _mm512_set1_epi8(0x0f));
}

struct Q4_0Kernel {
    using Args = QArgs;
    static constexpr int kR = 4, kT = 4;
    template <int R, int T>
    static void run(const Args& a, int64_t r, int64_t t) {
        const Tables& tb = tables();
        __m512 acc[R][T];
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
        const __m512i eights = _mm512_set1_epi8(8);
        for (int64_t b = 0; b < a.nb; b += 2) {
            const bool full = b + 1 < a.nb;
            XPair x[T];
            __m512i negc[T];
            for (int j = 0; j < T; ++j) {
                x[j] = load_x(a.x + (t + j) * a.nb + b, full, false);
                negc[j] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                           _mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, x[j].qs));
            }
            for (int i = 0; i < R; ++i) {
                const uint8_t* p = a.w + (r + i) * a.row_bytes + b * sizeof(BlockQ4_0);
                prefetch_next_group(p, a.row_bytes);
                const __m512i raw = _mm512_maskz_loadu_epi8(first_bytes(full ? 36 : 18), p);
                const __m512i wq = unpack_nibbles(_mm512_permutexvar_epi8(ld(tb.q4_0_qs), raw));
                const __m512 dw = _mm512_cvtph_ps(
                    _mm512_castsi512_si256(_mm512_permutexvar_epi8(ld(tb.q4_0_d), raw)));
                for (int j = 0; j < T; ++j) {
                    const __m512i isum = _mm512_dpbusd_epi32(negc[j], wq, x[j].qs);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, x[j].d), acc[i][j]);
                }
            }
        }
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
};

struct Q4_1Kernel {
    using Args = QArgs;
    static constexpr int kR = 4, kT = 3;  // one more live register per output (the m term)
    template <int R, int T>
    static void run(const Args& a, int64_t r, int64_t t) {
        const Tables& tb = tables();
        __m512 acc[R][T];
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
        for (int64_t b = 0; b < a.nb; b += 2) {
            const bool full = b + 1 < a.nb;
            XPair x[T];
            for (int j = 0; j < T; ++j) x[j] = load_x(a.x + (t + j) * a.nb + b, full, true);
            for (int i = 0; i < R; ++i) {
                const uint8_t* p = a.w + (r + i) * a.row_bytes + b * sizeof(BlockQ4_1);
                prefetch_next_group(p, a.row_bytes);
                const __m512i raw = _mm512_maskz_loadu_epi8(first_bytes(full ? 40 : 20), p);
                const __m512i wq = unpack_nibbles(_mm512_permutexvar_epi8(ld(tb.q4_1_qs), raw));
                const __m512i dm = _mm512_permutexvar_epi8(ld(tb.q4_1_dm), raw);
                const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
                const __m512 mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1));
                for (int j = 0; j < T; ++j) {
                    const __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, x[j].qs);
                    __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, x[j].d), acc[i][j]);
                    acc[i][j] = _mm512_fmadd_ps(mw, x[j].s, v);
                }
            }
        }
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
};

struct Q8_0Kernel {
    using Args = QArgs;
    static constexpr int kR = 4, kT = 4;
    template <int R, int T>
    static void run(const Args& a, int64_t r, int64_t t) {
        const Tables& tb = tables();
        __m512 acc[R][T];
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
        for (int64_t b = 0; b < a.nb; b += 2) {
            const bool full = b + 1 < a.nb;
            XPair x[T];
            for (int j = 0; j < T; ++j) {
                x[j] = load_x(a.x + (t + j) * a.nb + b, full, false);
                x[j].qs = _mm512_xor_si512(x[j].qs, bias);  // q + 128 as u8
            }
            for (int i = 0; i < R; ++i) {
                const uint8_t* p = a.w + (r + i) * a.row_bytes + b * sizeof(BlockQ8_0);
                prefetch_next_group(p, a.row_bytes);
                const __m512i l0 = _mm512_maskz_loadu_epi8(first_bytes(34), p);
                const __m512i l1 = full ? _mm512_maskz_loadu_epi8(first_bytes(34), p + 34)
                                        : _mm512_setzero_si512();
                const __m512i wq = _mm512_permutex2var_epi8(l0, ld(tb.q8_0_qs), l1);
                const __m512 dw = _mm512_cvtph_ps(
                    _mm512_castsi512_si256(_mm512_permutex2var_epi8(l0, ld(tb.q8_0_d), l1)));
                const __m512i negw = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                      _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wq));
                for (int j = 0; j < T; ++j) {
                    const __m512i isum = _mm512_dpbusd_epi32(negw, x[j].qs, wq);
                    acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, x[j].d), acc[i][j]);
                }
            }
        }
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
};

#include "kernels/x86/packed_avx512vnni.h"
#include "kernels/x86/packed_amx.h"
#include "kernels/x86/packed_qformat_avx512.h"

static_assert(kQfRows == kPackRows, "one pack_rows for every type");

size_t packed_bytes(DType t, int64_t rows, int64_t cols) {
    if (dtype_is_qformat(t)) return packed_qformat_bytes(t, rows, cols, kQfRows);
    return packed_weight_bytes(t, rows, cols, kPackRows);
}

void pack_weight(DType t, const void* src, int64_t rows, int64_t cols, void* dst) {
    if (dtype_is_qformat(t)) pack_qformat(t, src, rows, cols, dst, kQfRows);
    else pack_row_groups(t, src, rows, cols, dst, kPackRows);
}

template <class K>
void gemm_q(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
            int64_t t1, float* y, int64_t ldy) {
    const QArgs a{static_cast<const uint8_t*>(w.data), dtype_row_bytes(w.type, w.cols), xq,
                  w.cols / kQK, y, ldy};
    tile_walk<K>(a, r0, r1, t0, t1);
}

// The packed layout when prepare_weight made one, else the canonical-layout kernel.
template <DType QT, class K>
void gemm_q_any(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                int64_t t1, float* y, int64_t ldy) {
    if (w.packed != nullptr) gemm_packed<QT>(w, xq, r0, r1, t0, t1, y, ldy);
    else gemm_q<K>(w, xq, r0, r1, t0, t1, y, ldy);
}

// The AMX table's: tiles for prefill on packed weights, the VNNI kernels otherwise.
template <DType QT, class K>
void gemm_q_amx(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
                int64_t t1, float* y, int64_t ldy) {
    if (w.packed != nullptr) gemm_amx<AmxTiles, QT>(w, xq, r0, r1, t0, t1, y, ldy);
    else gemm_q<K>(w, xq, r0, r1, t0, t1, y, ldy);
}

// --- float weights -----------------------------------------------------------------------------

struct FArgs {
    const uint8_t* w;
    size_t row_bytes;
    const float* x;
    int64_t cols;
    float* y;
    int64_t ldy;
};

enum class FType { F32, F16, BF16 };

template <FType FT>
inline __m512 load_wf(const uint8_t* row, int64_t k, __mmask16 m) {
    if constexpr (FT == FType::F32) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
    } else {
        const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k);
        if constexpr (FT == FType::F16) return _mm512_cvtph_ps(h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
}

template <FType FT>
struct FKernel {
    using Args = FArgs;
    static constexpr int kR = 4, kT = 4;
    template <int R, int T>
    static void run(const Args& a, int64_t r, int64_t t) {
        __m512 acc[R][T];
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
        for (int64_t k = 0; k < a.cols; k += 16) {
            const __mmask16 m = a.cols - k >= 16 ? __mmask16(0xffff)
                                                 : static_cast<__mmask16>((1u << (a.cols - k)) - 1);
            __m512 x[T];
            for (int j = 0; j < T; ++j) x[j] = _mm512_maskz_loadu_ps(m, a.x + (t + j) * a.cols + k);
            for (int i = 0; i < R; ++i) {
                const __m512 wv = load_wf<FT>(a.w + (r + i) * a.row_bytes, k, m);
                for (int j = 0; j < T; ++j) acc[i][j] = _mm512_fmadd_ps(wv, x[j], acc[i][j]);
            }
        }
        for (int i = 0; i < R; ++i)
            for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
};

template <FType FT>
void gemm_f(const WeightView& w, const float* x, int64_t r0, int64_t r1, int64_t t0, int64_t t1,
            float* y, int64_t ldy) {
    const FArgs a{static_cast<const uint8_t*>(w.data), dtype_row_bytes(w.type, w.cols), x, w.cols, y, ldy};
    tile_walk<FKernel<FT>>(a, r0, r1, t0, t1);
}

// --- activation quantization -------------------------------------------------------------------

void quantize_q8act(const float* x, BlockQ8Act* y, int64_t n) {
    EDGERT_BUMP_Q8ACT_GENERATION();
    const __m512 sign_off = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / kQK; ++b) {
        const __m512 v0 = _mm512_loadu_ps(x + b * kQK);
        const __m512 v1 = _mm512_loadu_ps(x + b * kQK + 16);
        const float amax = _mm512_reduce_max_ps(
            _mm512_max_ps(_mm512_and_ps(v0, sign_off), _mm512_and_ps(v1, sign_off)));
        BlockQ8Act& out = y[b];
        // NaN compares unordered, so NLE_UQ flags it as well as |x| > kQ8ActMaxAmax (max_ps
        // alone would drop a NaN lane).
        const __m512 lim = _mm512_set1_ps(kQ8ActMaxAmax);
        if (_mm512_cmp_ps_mask(_mm512_and_ps(v0, sign_off), lim, _CMP_NLE_UQ) |
            _mm512_cmp_ps_mask(_mm512_and_ps(v1, sign_off), lim, _CMP_NLE_UQ)) {
            out.d = kQ8ActNaN;
            out.s = kQ8ActNaN;
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.qs), _mm256_setzero_si256());
            continue;
        }
        if (!(amax >= kQ8ActMinAmax)) {
            out.d = 0.0f;
            out.s = 0.0f;
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.qs), _mm256_setzero_si256());
            continue;
        }
        const float d = amax / 127.0f;
        const __m512 id = _mm512_set1_ps(1.0f / d);
        // Default MXCSR rounding is to nearest even, as nearbyint in the scalar twin.
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out.qs), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out.qs + 16), _mm512_cvtsepi32_epi8(q1));
        out.d = d;
        out.s = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
}

// --- elementwise -------------------------------------------------------------------------------

inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}

// exp(x) for x <= 88.7: range reduction to 2^n * exp(r), |r| <= ln2/2, degree-6 polynomial
// (relative error ~2e-7); large negative x underflows cleanly to 0 through scalef.
inline __m512 exp_ps(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

void rmsnorm(float* y, const float* x, const float* weight, int64_t n, float eps) {
    __m512 ss = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        ss = _mm512_fmadd_ps(v, v, ss);
    }
    const float scale = 1.0f / __builtin_sqrtf(_mm512_reduce_add_ps(ss) / static_cast<float>(n) + eps);
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s),
                                       _mm512_maskz_loadu_ps(m, weight + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

void silu_mul(float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(gate + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

void add_inplace(float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                      _mm512_maskz_loadu_ps(m, x + i)));
    }
}

void softmax_inplace(float* x, int64_t n) {
    if (n <= 0) return;
    __m512 mx = _mm512_set1_ps(-__builtin_inff());
    for (int64_t i = 0; i < n; i += 16)
        mx = _mm512_mask_max_ps(mx, tail_mask(n - i), mx, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        sum = _mm512_mask_add_ps(sum, m, sum, e);
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

// Both tables share everything but the quantized GEMMs (constant-initialized: no start-up order).
constexpr KernelTable avx512_table(const char* name, QGemmFn q4_0, QGemmFn q4_1, QGemmFn q8_0) {
    return KernelTable{
        name,
        quantize_q8act,
        q4_0,
        q4_1,
        q8_0,
        // The qformat.h types: the packed kernel (no AMX path: their per-16/32 integer
        // sub-scales would need one tile product per sub-block).
        gemm_qformat<DType::Q5_0>,
        gemm_qformat<DType::Q5_1>,
        gemm_qformat<DType::IQ4_NL>,
        gemm_qformat<DType::Q3_K>,
        gemm_qformat<DType::Q4_K>,
        gemm_qformat<DType::Q5_K>,
        gemm_qformat<DType::Q6_K>,
        gemm_qformat<DType::IQ4_XS>,
        gemm_qformat<DType::Q3_0>,
        gemm_f<FType::F32>,
        gemm_f<FType::F16>,
        gemm_f<FType::BF16>,
        packed_bytes,
        pack_weight,
        kPackRows,
        rmsnorm,
        silu_mul,
        add_inplace,
        softmax_inplace,
        rope_inplace_ref,  // a few hundred flops per head per token: not worth a SIMD twin
    };
}

}  // namespace

extern const KernelTable kAvx512VnniKernels = avx512_table(
    "avx512vnni", gemm_q_any<DType::Q4_0, Q4_0Kernel>, gemm_q_any<DType::Q4_1, Q4_1Kernel>,
    gemm_q_any<DType::Q8_0, Q8_0Kernel>);

// Sapphire Rapids and later: the same kernels and packed layout, prefill GEMMs on AMX tiles.
extern const KernelTable kAmxKernels = avx512_table(
    "amx", gemm_q_amx<DType::Q4_0, Q4_0Kernel>, gemm_q_amx<DType::Q4_1, Q4_1Kernel>,
    gemm_q_amx<DType::Q8_0, Q8_0Kernel>);

}  // namespace edgert
