// attention_avx512_ops.h — the AVX-512 (F, BW, VL, DQ + VNNI) kernels of the position loop
// (attention-private): row decoding, quantized and float scores, softmax steps, the f32 weighted
// V sum. Shared by attention_avx512.cpp and attention_avx512_bf16.cpp, which includes it and
// replaces the V tile and the weighted sum; each file includes it inside its own anonymous
// namespace, so nothing compiled with one file's -m flags is shared with the other (the reason
// attention_tiled.h is included the same way).
// Needs <immintrin.h>, <math.h>, <cstring>, attention_pass.h and kv_row_format.h included before
// the anonymous namespace; head_dim % 16 == 0.

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

// Channels [i, i + 16) of a quantized row as floats (d * u + m; d, m the row's scale and zero
// point): decode_row's unit, and the bf16 loop's, which takes two rows to bf16 without a round
// trip through memory.
template <KVType T>
inline __m512 decode16(const uint8_t* row, int64_t D, int64_t i, __m512 d, __m512 m) {
    const uint8_t* u = row + kQuantHeaderBytes;
    __m128i c;
    if constexpr (T == KVType::Q8) {
        c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + i));
    } else {  // Q4: the first half of the elements in the low nibbles, the second in the high
        const bool hi = i >= D / 2;
        c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u + (hi ? i - D / 2 : i)));
        c = _mm_and_si128(hi ? _mm_srli_epi16(c, 4) : c, _mm_set1_epi8(15));
    }
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c)), m);
}

// Row to float values (d * u + m for the quantized types).
inline void decode_row(KVType t, const uint8_t* row, int64_t D, float* out) {
    switch (t) {
        case KVType::F32: std::memcpy(out, row, static_cast<size_t>(D) * 4); return;
        case KVType::F16:
            for (int64_t i = 0; i < D; i += 16)
                _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                              reinterpret_cast<const __m256i*>(row + 2 * i))));
            return;
        case KVType::Q8:
        case KVType::Q4: {
            float d, m;
            load_dm(row, &d, &m);
            const __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);
            if (t == KVType::Q8) {
                for (int64_t i = 0; i < D; i += 16)
                    _mm512_storeu_ps(out + i, decode16<KVType::Q8>(row, D, i, vd, vm));
                return;
            }
            // Both halves in one iteration: channels i and D/2 + i share their code bytes (one load).
            for (int64_t i = 0; i < D / 2; i += 16) {
                _mm512_storeu_ps(out + i, decode16<KVType::Q4>(row, D, i, vd, vm));
                _mm512_storeu_ps(out + D / 2 + i, decode16<KVType::Q4>(row, D, D / 2 + i, vd, vm));
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

// 16 x 16 transpose of 32-bit words: r[k] word c -> r[c] word k.
inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {  // u[g + k], lane L: word 4L + k of rows g..g+3
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int k = 0; k < 4; ++k) {  // 4 x 4 transpose of 128-bit lanes
        const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xee);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xee);
        r[k] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + k] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + k] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

// Quantized-key scores with positions in lanes. The tile's key codes are transposed once
// (p.scratch[c * kTile + j] = 4-byte chunk c of position j), then each query row's chunk is
// broadcast against 16 positions: VPDPBUSD leaves 16 full dot products in lanes, every lane does
// useful work whatever the GQA group size, and the scores land in p.s without a transpose. Two
// rows x four 16-position groups give eight independent accumulator chains.
void quant_scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
    const int64_t D = p.head_dim, C = D / 4;
    int32_t* kt = p.scratch;
    alignas(64) float kd[kTile], km[kTile];
    for (int64_t j0 = 0; j0 < kTile; j0 += 16) {
        if (j0 >= np) {  // groups past the tile's end: zero codes and scales
            for (int64_t c = 0; c < C; ++c) _mm512_store_si512(kt + c * kTile + j0, _mm512_setzero_si512());
            _mm512_store_ps(kd + j0, _mm512_setzero_ps());
            _mm512_store_ps(km + j0, _mm512_setzero_ps());
            continue;
        }
        const uint8_t* codes[16];
        for (int64_t k = 0; k < 16; ++k) {
            const int64_t j = j0 + k;
            if (j >= np) {
                codes[k] = nullptr;
                kd[j] = km[j] = 0.0f;
                continue;
            }
            const uint8_t* row = row_at(a.k, a.k_stride, p0 + j);
            load_dm(row, &kd[j], &km[j]);
            codes[k] = row + kQuantHeaderBytes;
            if (a.k_type == KVType::Q4) {
                unpack_q4(codes[k], D, p.ku + j * D);
                codes[k] = p.ku + j * D;
            }
        }
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
            const __mmask16 cm = C - c0 < 16 ? tail_mask(C - c0) : static_cast<__mmask16>(0xffff);
            __m512i r[16];
            for (int64_t k = 0; k < 16; ++k)
                r[k] = codes[k] ? _mm512_maskz_loadu_epi32(cm, codes[k] + 4 * c0) : _mm512_setzero_si512();
            transpose16(r);
            for (int64_t c = 0; c < 16 && c0 + c < C; ++c)
                _mm512_store_si512(kt + (c0 + c) * kTile + j0, r[c]);
        }
    }
    const int64_t ng = (np + 15) / 16;
    const auto* qw = reinterpret_cast<const int32_t*>(p.qi);  // D % 4 == 0: rows stay word-aligned
    for (int64_t r = 0; r < p.rows; r += 2) {
        const int64_t r1 = r + 1 < p.rows ? r + 1 : r;
        const int32_t* q0 = qw + r * C;
        const int32_t* q1 = qw + r1 * C;
        __m512i a0[4], a1[4];
        for (int64_t g = 0; g < 4; ++g) a0[g] = a1[g] = _mm512_setzero_si512();
        for (int64_t c = 0; c < C; ++c) {
            const __m512i b0 = _mm512_set1_epi32(q0[c]), b1 = _mm512_set1_epi32(q1[c]);
            const int32_t* kc = kt + c * kTile;
            for (int64_t g = 0; g < 4; ++g) {
                if (g >= ng) break;
                const __m512i k = _mm512_load_si512(kc + 16 * g);
                a0[g] = _mm512_dpbusd_epi32(a0[g], k, b0);
                a1[g] = _mm512_dpbusd_epi32(a1[g], k, b1);
            }
        }
        const int64_t rr[2] = {r, r1};
        const __m512i* acc[2] = {a0, a1};
        for (int64_t h = 0; h < (r1 != r ? 2 : 1); ++h) {
            const __m512 qd = _mm512_set1_ps(p.qd[rr[h]]);
            const __m512 qs = _mm512_set1_ps(static_cast<float>(p.qsum[rr[h]]));
            float* out = p.s + rr[h] * kTile;
            for (int64_t g = 0; g < ng; ++g) {
                const __m512 dot = _mm512_fmadd_ps(_mm512_load_ps(kd + 16 * g), _mm512_cvtepi32_ps(acc[h][g]),
                                                   _mm512_mul_ps(_mm512_load_ps(km + 16 * g), qs));
                const __mmask16 m = np - 16 * g < 16 ? tail_mask(np - 16 * g) : static_cast<__mmask16>(0xffff);
                _mm512_mask_storeu_ps(out + 16 * g, m, _mm512_mul_ps(qd, dot));
            }
        }
    }
}

inline __mmask16 tail_mask16(int64_t n) {
    return n >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n);
}

// Lane k of the result = the sum of a[k]'s 16 lanes.
inline __m512 sum16(const __m512 a[16]) {
    __m512 t[8], u[4];
    for (int i = 0; i < 8; ++i)  // lane pairs: [a_2i, a_2i+1] partial sums per 128-bit lane
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; ++i) {  // per 128-bit lane: sums of a_4i .. a_4i+3 over that lane
        const __m512d x = _mm512_castps_pd(t[2 * i]), y = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    const __m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x44), _mm512_shuffle_f32x4(u[0], u[1], 0xee));
    const __m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x44), _mm512_shuffle_f32x4(u[2], u[3], 0xee));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, 0x88), _mm512_shuffle_f32x4(w01, w23, 0xdd));
}

struct Ops {
    static void scores(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        const int64_t D = p.head_dim;
        if (kv_type_is_quantized(a.k_type)) return quant_scores(a, p, p0, np);
        for (int64_t j = 0; j < np; ++j) decode_row(a.k_type, row_at(a.k, a.k_stride, p0 + j), D, p.kf + j * D);
        // 16 positions per row at a time: 16 accumulators, then one transpose-and-add tree
        // instead of a horizontal reduction per score.
        for (int64_t r = 0; r < p.rows; ++r) {
            const float* q = p.qf + r * D;
            for (int64_t j0 = 0; j0 < np; j0 += 16) {
                const int64_t nj = np - j0 < 16 ? np - j0 : 16;
                __m512 acc[16];
                for (int64_t k = 0; k < 16; ++k) acc[k] = _mm512_setzero_ps();
                for (int64_t i = 0; i < D; i += 16) {
                    const __m512 qv = _mm512_loadu_ps(q + i);
                    for (int64_t k = 0; k < 16; ++k)
                        if (k < nj) acc[k] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(p.kf + (j0 + k) * D + i), acc[k]);
                }
                _mm512_mask_storeu_ps(p.s + r * kTile + j0, tail_mask16(nj), sum16(acc));
            }
        }
    }
    static void q_dot_half(const AttnPass& p, const uint16_t* h, float* out) {
        const int64_t D = p.head_dim;
        alignas(64) float o[kMaxHeadDim];
        for (int64_t i = 0; i < D; i += 16)
            _mm512_store_ps(o + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
        for (int64_t r = 0; r < p.rows; ++r) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t i = 0; i < D; i += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(p.qf + r * D + i), _mm512_load_ps(o + i), acc);
            out[r] = _mm512_reduce_add_ps(acc);
        }
    }
    static void v_tile(const AttentionArgs& a, AttnPass& p, int64_t p0, int64_t np) {
        for (int64_t j = 0; j < np; ++j) {
            decode_row(a.v_type, row_at(a.v, a.v_stride, p0 + j), p.head_dim, p.vf + j * p.head_dim);
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
    // Four query rows at a time over 64 columns: 16 accumulator chains hide the FMA latency and
    // each V load feeds four rows.
    static void axpy_rows(AttnPass& p, int64_t np) {
        const int64_t D = p.head_dim;
        int64_t r = 0;
        for (; r + 4 <= p.rows; r += 4) {
            const float* w0 = p.s + r * kTile;
            const float* w1 = w0 + kTile;
            const float* w2 = w1 + kTile;
            const float* w3 = w2 + kTile;
            for (int64_t i = 0; i < D; i += 64) {
                const int64_t nv = D - i < 64 ? (D - i) / 16 : 4;
                __m512 a[4][4];
                for (int64_t k = 0; k < 4; ++k)
                    for (int64_t v = 0; v < 4; ++v)
                        a[k][v] = v < nv ? _mm512_loadu_ps(p.acc + (r + k) * D + i + 16 * v)
                                         : _mm512_setzero_ps();
                if (nv == 4) {
                    for (int64_t j = 0; j < np; ++j) {
                        const float* vr = p.vf + j * D + i;
                        const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
                        const __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
                        const __m512 c[4] = {_mm512_set1_ps(w0[j]), _mm512_set1_ps(w1[j]),
                                             _mm512_set1_ps(w2[j]), _mm512_set1_ps(w3[j])};
                        for (int64_t k = 0; k < 4; ++k) {
                            a[k][0] = _mm512_fmadd_ps(c[k], v0, a[k][0]);
                            a[k][1] = _mm512_fmadd_ps(c[k], v1, a[k][1]);
                            a[k][2] = _mm512_fmadd_ps(c[k], v2, a[k][2]);
                            a[k][3] = _mm512_fmadd_ps(c[k], v3, a[k][3]);
                        }
                    }
                } else {
                    for (int64_t j = 0; j < np; ++j) {
                        const float* vr = p.vf + j * D + i;
                        const float c[4] = {w0[j], w1[j], w2[j], w3[j]};
                        for (int64_t v = 0; v < nv; ++v) {
                            const __m512 x = _mm512_loadu_ps(vr + 16 * v);
                            for (int64_t k = 0; k < 4; ++k)
                                a[k][v] = _mm512_fmadd_ps(_mm512_set1_ps(c[k]), x, a[k][v]);
                        }
                    }
                }
                for (int64_t k = 0; k < 4; ++k)
                    for (int64_t v = 0; v < nv; ++v)
                        _mm512_storeu_ps(p.acc + (r + k) * D + i + 16 * v, a[k][v]);
            }
        }
        // Leftover rows add their positions in the same order as the four-row loop (one chain
        // per column, positions ascending), so a query row's output does not depend on how many
        // rows share its pass: one-token decode and a batched pass (speculative verification)
        // give the same bits. Up to 64 columns run as 4 independent chains.
        for (; r < p.rows; ++r) {
            const float* w = p.s + r * kTile;
            float* acc = p.acc + r * D;
            for (int64_t i = 0; i < D; i += 64) {
                const int64_t nv = D - i < 64 ? (D - i) / 16 : 4;
                __m512 a[4];
                for (int64_t v = 0; v < 4; ++v)
                    a[v] = v < nv ? _mm512_loadu_ps(acc + i + 16 * v) : _mm512_setzero_ps();
                for (int64_t j = 0; j < np; ++j) {
                    const __m512 c = _mm512_set1_ps(w[j]);
                    const float* vr = p.vf + j * D + i;
                    for (int64_t v = 0; v < nv; ++v) a[v] = _mm512_fmadd_ps(c, _mm512_loadu_ps(vr + 16 * v), a[v]);
                }
                for (int64_t v = 0; v < nv; ++v) _mm512_storeu_ps(acc + i + 16 * v, a[v]);
            }
        }
    }
};
