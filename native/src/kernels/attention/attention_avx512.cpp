// attention_avx512.cpp — AVX-512 (F, BW, VL, DQ + VNNI) position loop; scalar twin:
// attention_scalar.cpp. Quantized keys take VPDPBUSD (u8 codes x s8 query); the codes need no
// re-centring because the zero point is applied through qsum.
// Handles head_dim % 16 == 0; anything else goes to the scalar loop.
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

inline void load_dm(const uint8_t* row, float* d, float* m) {
    uint16_t h[2];
    std::memcpy(h, row, 4);
    *d = _cvtsh_ss(h[0]);
    *m = _cvtsh_ss(h[1]);
}

// Q4 row body -> one code byte per element (element order of kv_row_format.h).
inline void unpack_q4(const uint8_t* body, int64_t D, uint8_t* out) {
    const __m128i lo_mask = _mm_set1_epi8(15);
    for (int64_t i = 0; i < D / 2; i += 16) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(body + i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_and_si128(b, lo_mask));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + D / 2 + i),
                         _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask));
    }
}

// Row to floats (F32/F16 values, Q8/Q4 codes with their scale and zero point).
inline void decode_codes(KVType t, const uint8_t* row, int64_t D, float* out, float* d, float* m) {
    *d = 1.0f;
    *m = 0.0f;
    switch (t) {
        case KVType::F32: std::memcpy(out, row, static_cast<size_t>(D) * 4); return;
        case KVType::F16:
            for (int64_t i = 0; i < D; i += 16)
                _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                              reinterpret_cast<const __m256i*>(row + 2 * i))));
            return;
        case KVType::Q8: {
            load_dm(row, d, m);
            const uint8_t* u = row + kQuantHeaderBytes;
            for (int64_t i = 0; i < D; i += 16)
                _mm512_storeu_ps(out + i, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + i)))));
            return;
        }
        case KVType::Q4: {
            load_dm(row, d, m);
            const uint8_t* u = row + kQuantHeaderBytes;
            const __m128i lo_mask = _mm_set1_epi8(15);
            for (int64_t i = 0; i < D / 2; i += 16) {
                const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + i));
                const __m128i lo = _mm_and_si128(b, lo_mask);
                const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask);
                _mm512_storeu_ps(out + i, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)));
                _mm512_storeu_ps(out + D / 2 + i, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)));
            }
            return;
        }
    }
}

// exp(x) for x <= 0 (Cephes expf polynomial, ~1 ulp); scalef turns very negative x into 0.
inline __m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Quantized-key scores with query rows in lanes: each 4-byte chunk of a key row is broadcast and
// met by the same chunk of 16 query rows (qt, transposed once per tile), so VPDPBUSD leaves each
// row's full dot product in its lane and no horizontal reduction is needed. Four positions run
// at once to hide the instruction's latency.
void quant_scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
    const int64_t D = p.head_dim, C = D / 4;
    const uint8_t* codes[kTile];
    float kd[kTile], km[kTile];
    for (int64_t j = 0; j < np; ++j) {
        const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
        load_dm(row, &kd[j], &km[j]);
        codes[j] = row + kQuantHeaderBytes;
        if (a.k_type == KVType::Q4) {
            unpack_q4(codes[j], D, p.ku + j * D);
            codes[j] = p.ku + j * D;
        }
    }
    alignas(64) int32_t qt[kMaxHeadDim / 4 * 16];
    alignas(64) float sc[4][16];
    for (int64_t r0 = 0; r0 < p.rows; r0 += 16) {
        const int64_t nr = p.rows - r0 < 16 ? p.rows - r0 : 16;
        const __mmask16 rm = tail_mask(nr);
        for (int64_t c = 0; c < C; ++c)
            for (int64_t l = 0; l < 16; ++l) {
                int32_t v = 0;
                if (l < nr) std::memcpy(&v, p.qi + (r0 + l) * D + 4 * c, 4);
                qt[c * 16 + l] = v;
            }
        const __m512 qd = _mm512_maskz_loadu_ps(rm, p.qd + r0);
        const __m512 qs = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(rm, p.qsum + r0));
        for (int64_t j = 0; j < np; j += 4) {
            const int64_t nj = np - j < 4 ? np - j : 4;
            __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(),
                              _mm512_setzero_si512(), _mm512_setzero_si512()};
            const uint8_t* u[4];
            for (int64_t k = 0; k < 4; ++k) u[k] = codes[j + (k < nj ? k : 0)];
            for (int64_t c = 0; c < C; ++c) {
                const __m512i q = _mm512_load_si512(qt + c * 16);
                int32_t w[4];
                for (int64_t k = 0; k < 4; ++k) std::memcpy(&w[k], u[k] + 4 * c, 4);
                for (int64_t k = 0; k < 4; ++k)
                    acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_set1_epi32(w[k]), q);
            }
            for (int64_t k = 0; k < nj; ++k) {
                const __m512 dot = _mm512_fmadd_ps(_mm512_set1_ps(kd[j + k]), _mm512_cvtepi32_ps(acc[k]),
                                                   _mm512_mul_ps(_mm512_set1_ps(km[j + k]), qs));
                _mm512_store_ps(sc[k], _mm512_mul_ps(qd, dot));
            }
            for (int64_t l = 0; l < nr; ++l)
                for (int64_t k = 0; k < nj; ++k) p.s[(r0 + l) * kTile + j + k] = sc[k][l];
        }
    }
}

struct Ops {
    static void scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        const int64_t D = p.head_dim;
        if (kv_type_is_quantized(a.k_type)) return quant_scores(a, p, p0, np);
        for (int64_t j = 0; j < np; ++j) {
            const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
            {
                float* k = p.kf + j * D;
                float d, m;
                decode_codes(a.k_type, row, D, k, &d, &m);
                for (int64_t r = 0; r < p.rows; ++r) {
                    const float* q = p.qf + r * D;
                    __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(k));
                    for (int64_t i = 16; i < D; i += 16)
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(k + i), acc);
                    p.s[r * kTile + j] = _mm512_reduce_add_ps(acc);
                }
            }
        }
    }
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        for (int64_t j = 0; j < np; ++j) {
            decode_codes(a.v_type, row_at(a.v, a.v_stride, p0 + j), p.head_dim,
                         p.vf + j * p.head_dim, &p.vd[j], &p.vm[j]);
        }
    }
    static float max_row(const float* s, int64_t n) {
        __m512 mx = _mm512_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + j));
        if (j < n) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail_mask(n - j), s + j));
        return _mm512_reduce_max_ps(mx);
    }
    static float exp_sum(float* s, int64_t n, float m) {
        const __m512 vm = _mm512_set1_ps(m);
        __m512 sum = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
            _mm512_storeu_ps(s + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        if (j < n) {
            const __mmask16 k = tail_mask(n - j);
            const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vm));
            _mm512_mask_storeu_ps(s + j, k, e);
            sum = _mm512_mask_add_ps(sum, k, sum, e);
        }
        return _mm512_reduce_add_ps(sum);
    }
    static void scale_row(float* x, int64_t n, float c) {
        const __m512 vc = _mm512_set1_ps(c);
        for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vc));
    }
    static void axpy_tile(float* acc, const float* w, const float* vd, const float* vf, int64_t n,
                          int64_t D) {
        float c[kTile];
        for (int64_t j = 0; j < n; ++j) c[j] = w[j] * vd[j];
        int64_t i = 0;
        for (; i + 64 <= D; i += 64) {
            __m512 a0 = _mm512_loadu_ps(acc + i), a1 = _mm512_loadu_ps(acc + i + 16);
            __m512 a2 = _mm512_loadu_ps(acc + i + 32), a3 = _mm512_loadu_ps(acc + i + 48);
            for (int64_t j = 0; j < n; ++j) {
                const __m512 cj = _mm512_set1_ps(c[j]);
                const float* v = vf + j * D + i;
                a0 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(v), a0);
                a1 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(v + 16), a1);
                a2 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(v + 32), a2);
                a3 = _mm512_fmadd_ps(cj, _mm512_loadu_ps(v + 48), a3);
            }
            _mm512_storeu_ps(acc + i, a0);
            _mm512_storeu_ps(acc + i + 16, a1);
            _mm512_storeu_ps(acc + i + 32, a2);
            _mm512_storeu_ps(acc + i + 48, a3);
        }
        for (; i < D; i += 16) {
            __m512 a0 = _mm512_loadu_ps(acc + i);
            for (int64_t j = 0; j < n; ++j)
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(c[j]), _mm512_loadu_ps(vf + j * D + i), a0);
            _mm512_storeu_ps(acc + i, a0);
        }
    }
};

#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_avx512(const AttentionArgs& a, AttnPass& p, int64_t n_pos) {
    if (p.head_dim % 16 != 0) return attention_pass_scalar(a, p, n_pos);
    run_tiled_pass<Ops>(a, p, n_pos);
}

}  // namespace attn
}  // namespace edgert
