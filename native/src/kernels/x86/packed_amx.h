// packed_amx.h — the prefill GEMM on AMX int8 tiles (Sapphire Rapids and later), over the
// AVX-512 kernels' 16-row packed layout (part of kernels_avx512vnni.cpp; included only there,
// after packed_avx512vnni.h, and by the emulated-tile test).
//
// Why: one TDPBSSD multiplies 16 tokens x 32 activation bytes by 32 x 16 weight bytes (8192
// MACs), the work of 128 VPDPBUSD on zmm. The formats carry one scale per 32 elements on both
// sides, so each block's int32 tile is still scaled into float accumulators with AVX-512 (3
// vector ops per 16 outputs per block): this path is bound by that scaling, not by the tile
// unit, at roughly 2x the VNNI kernel's arithmetic. Its integer block sums and float operations
// are the VNNI kernel's, in the same order, so the two agree bit for bit.
//
// Tiles (palette 1): tmm0-3 = C, int32 sums of up to four 16-token subtiles x 16 rows;
// tmm4/5 = A, 16 tokens x one block's 32 activation bytes, loaded in place from the BlockQ8Act
// rows (stride nb blocks), alternating so a load need not wait for the previous product;
// tmm6 = B, one block of the group's 16 weight rows as 8 rows of 64 bytes, row c holding each
// weight row's elements 4c..4c+3 — the packed layout's chunk order, so B is the chunks with q4_x
// nibbles spread to bytes (n - 8 for q4_0) and q8_0's bias removed: all signed, one TDPBSSD, no
// zero-point offsets.
//
// The kernel is written against a Tiles policy: AmxTiles issues the instructions (inline asm, so
// no -mamx flags and no intrinsics whose asm omits memory clobbers); the test
// test_kernels_amx_emulated runs the same code on a scalar model of the tile unit, which checks
// the layout logic on CPUs without AMX. The OS must have granted tile state to the process
// first (cpu_features() asks Linux with arch_prctl(ARCH_REQ_XCOMP_PERM)).
#pragma once

struct alignas(64) AmxTileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};  // bytes per row of tile i
    uint8_t rows[16] = {};
};
static_assert(sizeof(AmxTileConfig) == 64, "LDTILECFG reads 64 bytes");

constexpr int kAmxSubtiles = 4;  // C tiles: 64 tokens per sweep over a group's weights
constexpr int kAmxTileA = 4;     // and 5
constexpr int kAmxTileB = 6;
constexpr int64_t kAmxTokens = 16;

inline AmxTileConfig amx_tile_config() {
    AmxTileConfig c;
    for (int i = 0; i < kAmxSubtiles; ++i) {
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    for (int i = kAmxTileA; i < kAmxTileA + 2; ++i) {
        c.rows[i] = 16;
        c.colsb[i] = kQK;
    }
    c.rows[kAmxTileB] = kQK / 4;
    c.colsb[kAmxTileB] = 64;
    return c;
}

struct AmxTiles {
    static void configure(const AmxTileConfig& c) { __asm__ volatile("ldtilecfg %0" ::"m"(c)); }
    static void release() { __asm__ volatile("tilerelease" ::: "memory"); }
    template <int T>
    static void zero() { __asm__ volatile("tilezero %%tmm%c0" ::"i"(T)); }
    template <int T>
    static void load(const void* p, int64_t stride) {
        __asm__ volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(p), "r"(stride), "i"(T) : "memory");
    }
    template <int T>
    static void store(void* p, int64_t stride) {
        __asm__ volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(p), "r"(stride), "i"(T) : "memory");
    }
    // C += A (s8) x B (s8), AT&T operand order as in GCC's _tile_dpbssd.
    template <int C, int A, int B>
    static void dpbssd() { __asm__ volatile("tdpbssd %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B)); }
};

// Subtile s of a sweep: its tokens' activations for the current block into an A tile, and
// C_s = A x B.
template <class Tiles, int S>
inline void amx_subtile(const BlockQ8Act* xs, int64_t stride) {
    constexpr int a = kAmxTileA + (S & 1);
    Tiles::template load<a>(xs->qs, stride);
    Tiles::template zero<S>();
    Tiles::template dpbssd<S, a, kAmxTileB>();
}

// One block of a 16-row group as a signed B tile in wq (8 rows x 64 bytes).
template <DType QT>
inline void amx_weight_tile(const uint8_t* chunks, uint8_t* wq) {
    if constexpr (QT == DType::Q8_0) {
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
        for (int c = 0; c < 8; ++c)
            _mm512_store_si512(wq + 64 * c, _mm512_xor_si512(_mm512_loadu_si512(chunks + 64 * c), bias));
    } else {
        const __m512i low = _mm512_set1_epi8(0x0f);
        const __m512i eight = _mm512_set1_epi8(QT == DType::Q4_0 ? 8 : 0);
        for (int c = 0; c < 4; ++c) {
            const __m512i v = _mm512_loadu_si512(chunks + 64 * c);
            _mm512_store_si512(wq + 64 * c, _mm512_sub_epi8(_mm512_and_si512(v, low), eight));
            _mm512_store_si512(wq + 64 * (4 + c), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low), eight));
        }
    }
}

// One 16-row group x S subtiles of 16 tokens from token t, all blocks; tiles configured.
template <class Tiles, DType QT, int S>
void amx_tokens(const uint8_t* grp, int64_t nb, const BlockQ8Act* x, int64_t t, float* y,
                int64_t ldy, int64_t r, __mmask16 m) {
    constexpr size_t pb = packed_block_bytes(QT);
    constexpr size_t head = packed_head_bytes(QT, kPackRows);
    constexpr int kTok = 16 * S;
    alignas(64) uint8_t wq[8 * 64];
    alignas(64) int32_t c[S][16 * 16];
    alignas(64) float acc[kTok][16];
    for (int j = 0; j < kTok; ++j) _mm512_store_ps(acc[j], _mm512_setzero_ps());
    const int64_t stride = nb * static_cast<int64_t>(sizeof(BlockQ8Act));
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* p = grp + b * pb;
        for (size_t l = 0; l < pb; l += 64)
            _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBlocks * pb + l), _MM_HINT_T0);
        amx_weight_tile<QT>(p + head, wq);
        Tiles::template load<kAmxTileB>(wq, 64);
        const BlockQ8Act* xb = x + t * nb + b;
        amx_subtile<Tiles, 0>(xb, stride);
        if constexpr (S > 1) amx_subtile<Tiles, 1>(xb + 16 * nb, stride);
        if constexpr (S > 2) amx_subtile<Tiles, 2>(xb + 32 * nb, stride);
        if constexpr (S > 3) amx_subtile<Tiles, 3>(xb + 48 * nb, stride);
        Tiles::template store<0>(c[0], 64);
        if constexpr (S > 1) Tiles::template store<1>(c[1], 64);
        if constexpr (S > 2) Tiles::template store<2>(c[2], 64);
        if constexpr (S > 3) Tiles::template store<3>(c[3], 64);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        __m512 mw = _mm512_setzero_ps();
        if constexpr (QT == DType::Q4_1)
            mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
        for (int j = 0; j < kTok; ++j) {
            const BlockQ8Act& xj = x[(t + j) * nb + b];
            const __m512i sums = _mm512_load_si512(c[j / 16] + 16 * (j % 16));
            __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw, _mm512_set1_ps(xj.d)),
                                       _mm512_load_ps(acc[j]));
            if constexpr (QT == DType::Q4_1) a = _mm512_fmadd_ps(mw, _mm512_set1_ps(xj.s), a);
            _mm512_store_ps(acc[j], a);
        }
    }
    for (int j = 0; j < kTok; ++j) _mm512_mask_storeu_ps(y + (t + j) * ldy + r, m, _mm512_load_ps(acc[j]));
}

// The driver tile rows [r0, r1) x tokens [t0, t1): whole 16-token subtiles on the tile unit, the
// remaining < 16 tokens (and decode) on the VNNI kernel.
template <class Tiles, DType QT>
void gemm_amx(const WeightView& w, const BlockQ8Act* xq, int64_t r0, int64_t r1, int64_t t0,
              int64_t t1, float* y, int64_t ldy) {
    const int64_t nb = w.cols / kQK;
    const uint8_t* base = static_cast<const uint8_t*>(w.packed);
    const int64_t tm = t0 + (t1 - t0) / kAmxTokens * kAmxTokens;
    if (tm > t0) {
        const AmxTileConfig cfg = amx_tile_config();
        Tiles::configure(cfg);
        for (int64_t r = r0; r < r1; r += kPackRows) {  // r0 is a multiple of kPackRows
            const int64_t valid = r1 - r < kPackRows ? r1 - r : kPackRows;
            const __mmask16 m = static_cast<__mmask16>((1u << valid) - 1);
            const uint8_t* grp = base + (r / kPackRows) * nb * packed_block_bytes(QT);
            int64_t t = t0;
            for (; t + kAmxSubtiles * kAmxTokens <= tm; t += kAmxSubtiles * kAmxTokens)
                amx_tokens<Tiles, QT, kAmxSubtiles>(grp, nb, xq, t, y, ldy, r, m);
            switch ((tm - t) / kAmxTokens) {
                case 3: amx_tokens<Tiles, QT, 3>(grp, nb, xq, t, y, ldy, r, m); break;
                case 2: amx_tokens<Tiles, QT, 2>(grp, nb, xq, t, y, ldy, r, m); break;
                case 1: amx_tokens<Tiles, QT, 1>(grp, nb, xq, t, y, ldy, r, m); break;
                default: break;
            }
        }
        Tiles::release();  // no tile state held between calls (context switches stay cheap)
    }
    if (tm < t1) packed_rows<QT>(base, nb, xq, r0, r1, tm, t1, packed_offsets<QT>(xq, nb, tm, t1), y, ldy);
}
