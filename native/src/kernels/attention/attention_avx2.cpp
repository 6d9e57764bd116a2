// attention_avx2.cpp — AVX2 + FMA + F16C position loop; scalar twin: attention_scalar.cpp.
// Without VNNI, q.k of quantized keys uses VPMADDUBSW, which saturates at 16 bits: Q8 codes are
// re-centred to s8 (u ^ 0x80) and multiplied in the |k| x sign(q, k) form (at most
// 128 * 127 * 2 < 2^15), then 128 * qsum restores sum(q * u) exactly. Q4 codes (<= 15) go in
// directly. Handles head_dim % 32 == 0; anything else goes to the scalar loop.
#include <immintrin.h>
#include <math.h>

#include <cstring>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_row_format.h"

namespace edgert {
namespace attn {
namespace {

inline void load_dm(const uint8_t* row, float* d, float* m) {
    uint16_t h[2];
    std::memcpy(h, row, 4);
    *d = _cvtsh_ss(h[0]);
    *m = _cvtsh_ss(h[1]);
}

inline void unpack_q4(const uint8_t* body, int64_t D, uint8_t* out) {
    const __m128i lo_mask = _mm_set1_epi8(15);
    for (int64_t i = 0; i < D / 2; i += 16) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(body + i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_and_si128(b, lo_mask));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + D / 2 + i),
                         _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask));
    }
}

inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// Row to float values (d * u + m for the quantized types).
inline void decode_row(KVType t, const uint8_t* row, int64_t D, float* out) {
    switch (t) {
        case KVType::F32: std::memcpy(out, row, static_cast<size_t>(D) * 4); return;
        case KVType::F16:
            for (int64_t i = 0; i < D; i += 8)
                _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                              reinterpret_cast<const __m128i*>(row + 2 * i))));
            return;
        case KVType::Q8: {
            float d, m;
            load_dm(row, &d, &m);
            const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D; i += 8) {
                const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + i));
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), vm));
            }
            return;
        }
        case KVType::Q4: {
            float d, m;
            load_dm(row, &d, &m);
            const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
            const uint8_t* u = row + kQuantHeaderBytes;
            const __m128i lo_mask = _mm_set1_epi8(15);
            for (int64_t i = 0; i < D / 2; i += 8) {
                const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + i));
                const __m128i lo = _mm_and_si128(b, lo_mask);
                const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask);
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), vm));
                _mm256_storeu_ps(out + D / 2 + i,
                                 _mm256_fmadd_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), vm));
            }
            return;
        }
    }
}

// exp(x) for x <= 0 (Cephes expf polynomial); x is clamped at -87 so 2^n stays a normal float,
// which leaves ~1e-38 where the scalar loop has 0 (far below anything visible in the output).
inline __m256 exp_ps(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

void quant_scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
    const int64_t D = p.head_dim;
    const bool q8 = a.k_type == KVType::Q8;
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256i ku[kMaxHeadDim / 32], ks[kMaxHeadDim / 32];
    for (int64_t j = 0; j < np; ++j) {
        const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
        float d, m;
        load_dm(row, &d, &m);
        const uint8_t* u = row + kQuantHeaderBytes;
        if (!q8) {
            unpack_q4(u, D, p.ku + j * D);
            u = p.ku + j * D;
        }
        for (int64_t c = 0; c < D / 32; ++c) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + 32 * c));
            ks[c] = q8 ? _mm256_xor_si256(v, flip) : v;        // signed code
            ku[c] = q8 ? _mm256_abs_epi8(ks[c]) : v;           // its magnitude, as u8
        }
        for (int64_t r = 0; r < p.rows; ++r) {
            const int8_t* q = p.qi + r * D;
            __m256i acc = _mm256_setzero_si256();
            for (int64_t c = 0; c < D / 32; ++c) {
                __m256i qc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
                if (q8) qc = _mm256_sign_epi8(qc, ks[c]);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ku[c], qc), ones));
            }
            const int32_t isum = hsum_epi32(acc) + (q8 ? 128 * p.qsum[r] : 0);
            p.s[r * kTile + j] =
                p.qd[r] * (d * static_cast<float>(isum) + m * static_cast<float>(p.qsum[r]));
        }
    }
}

struct Ops {
    static void scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        const int64_t D = p.head_dim;
        if (kv_type_is_quantized(a.k_type)) return quant_scores(a, p, p0, np);
        for (int64_t j = 0; j < np; ++j) {
            float* k = p.kf + j * D;
            decode_row(a.k_type, row_at(a.k, a.k_stride, p0 + j), D, k);
            for (int64_t r = 0; r < p.rows; ++r) {
                const float* q = p.qf + r * D;
                __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
                for (int64_t i = 0; i < D; i += 16) {
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(k + i + 8), acc1);
                }
                p.s[r * kTile + j] = hsum_ps(_mm256_add_ps(acc0, acc1));
            }
        }
    }
    static void q_dot_half(const AttnPass& p, const uint16_t* h, float* out) {
        const int64_t D = p.head_dim;
        alignas(32) float o[kMaxHeadDim];
        for (int64_t i = 0; i < D; i += 8)
            _mm256_store_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
        for (int64_t r = 0; r < p.rows; ++r) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t i = 0; i < D; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(p.qf + r * D + i), _mm256_load_ps(o + i), acc);
            out[r] = hsum_ps(acc);
        }
    }
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        for (int64_t j = 0; j < np; ++j) {
            decode_row(a.v_type, row_at(a.v, a.v_stride, p0 + j), p.head_dim, p.vf + j * p.head_dim);
        }
    }
    static float max_row(const float* s, int64_t n) {
        __m256 mx = _mm256_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + j));
        alignas(32) float t[8];
        _mm256_store_ps(t, mx);
        float r = t[0];
        for (int k = 1; k < 8; ++k) r = t[k] > r ? t[k] : r;
        for (; j < n; ++j) r = s[j] > r ? s[j] : r;
        return r;
    }
    static float exp_sum(float* s, int64_t n, float m) {
        const __m256 vm = _mm256_set1_ps(m);
        __m256 sum = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
            const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
            _mm256_storeu_ps(s + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        float total = hsum_ps(sum);
        if (j < n) {
            alignas(32) float t[8];
            for (int k = 0; k < 8; ++k) t[k] = j + k < n ? s[j + k] - m : -INFINITY;
            _mm256_store_ps(t, exp_ps(_mm256_load_ps(t)));
            for (int64_t k = 0; j + k < n; ++k) total += (s[j + k] = t[k]);
        }
        return total;
    }
    static void scale_row(float* x, int64_t n, float c) {
        const __m256 vc = _mm256_set1_ps(c);
        for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vc));
    }
    // Two query rows at a time over 32 columns (8 accumulator chains in 16 registers); each V
    // load feeds both rows. head_dim % 32 == 0 here.
    static void axpy_rows(AttnPass& p, int64_t np) {
        const int64_t D = p.head_dim;
        int64_t r = 0;
        for (; r + 2 <= p.rows; r += 2) {
            const float* w0 = p.s + r * kTile;
            const float* w1 = w0 + kTile;
            float* c0 = p.acc + r * D;
            float* c1 = c0 + D;
            for (int64_t i = 0; i < D; i += 32) {
                __m256 a0 = _mm256_loadu_ps(c0 + i), a1 = _mm256_loadu_ps(c0 + i + 8);
                __m256 a2 = _mm256_loadu_ps(c0 + i + 16), a3 = _mm256_loadu_ps(c0 + i + 24);
                __m256 b0 = _mm256_loadu_ps(c1 + i), b1 = _mm256_loadu_ps(c1 + i + 8);
                __m256 b2 = _mm256_loadu_ps(c1 + i + 16), b3 = _mm256_loadu_ps(c1 + i + 24);
                for (int64_t j = 0; j < np; ++j) {
                    const float* v = p.vf + j * D + i;
                    const __m256 x = _mm256_set1_ps(w0[j]), y = _mm256_set1_ps(w1[j]);
                    const __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
                    const __m256 v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
                    a0 = _mm256_fmadd_ps(x, v0, a0);
                    a1 = _mm256_fmadd_ps(x, v1, a1);
                    a2 = _mm256_fmadd_ps(x, v2, a2);
                    a3 = _mm256_fmadd_ps(x, v3, a3);
                    b0 = _mm256_fmadd_ps(y, v0, b0);
                    b1 = _mm256_fmadd_ps(y, v1, b1);
                    b2 = _mm256_fmadd_ps(y, v2, b2);
                    b3 = _mm256_fmadd_ps(y, v3, b3);
                }
                _mm256_storeu_ps(c0 + i, a0);
                _mm256_storeu_ps(c0 + i + 8, a1);
                _mm256_storeu_ps(c0 + i + 16, a2);
                _mm256_storeu_ps(c0 + i + 24, a3);
                _mm256_storeu_ps(c1 + i, b0);
                _mm256_storeu_ps(c1 + i + 8, b1);
                _mm256_storeu_ps(c1 + i + 16, b2);
                _mm256_storeu_ps(c1 + i + 24, b3);
            }
        }
        for (; r < p.rows; ++r) {
            const float* w = p.s + r * kTile;
            float* acc = p.acc + r * D;
            for (int64_t i = 0; i < D; i += 32) {
                __m256 a0 = _mm256_loadu_ps(acc + i), a1 = _mm256_loadu_ps(acc + i + 8);
                __m256 a2 = _mm256_loadu_ps(acc + i + 16), a3 = _mm256_loadu_ps(acc + i + 24);
                for (int64_t j = 0; j < np; ++j) {
                    const __m256 cj = _mm256_set1_ps(w[j]);
                    const float* v = p.vf + j * D + i;
                    a0 = _mm256_fmadd_ps(cj, _mm256_loadu_ps(v), a0);
                    a1 = _mm256_fmadd_ps(cj, _mm256_loadu_ps(v + 8), a1);
                    a2 = _mm256_fmadd_ps(cj, _mm256_loadu_ps(v + 16), a2);
                    a3 = _mm256_fmadd_ps(cj, _mm256_loadu_ps(v + 24), a3);
                }
                _mm256_storeu_ps(acc + i, a0);
                _mm256_storeu_ps(acc + i + 8, a1);
                _mm256_storeu_ps(acc + i + 16, a2);
                _mm256_storeu_ps(acc + i + 24, a3);
            }
        }
    }
};

#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_avx2(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos) {
    if (p.head_dim % 32 != 0) return attention_pass_scalar(a, p, first, n_pos);
    run_tiled_pass<Ops>(a, p, first, n_pos);
}

}  // namespace attn
}  // namespace edgert
