// qformat_offsets.h — activation-side zero-point terms for the packed qformat.h kernels that feed
// unsigned codes to u8 x s8 dot products (VPDPBUSD / VPMADDUBSW): sum_j (code_j - Z) q_j is
// computed as sum_j code_j q_j started from -Z * sum_j q_j, per 16-element half when the type
// has per-16 sub-scales (q3_k, q6_k), else per 32-element block. Z is the kernel's unsigned zero
// (the type's zero; 128 for iq4's table values stored as v + 128).
//
// Included only by ISA files, inside their anonymous namespace. Cached per thread like
// packed_layout.h's offsets: the driver walks row tiles inside a token tile with the same
// activations, and every activation quantizer bumps g_q8act_generation.
#pragma once

struct QfOffsetScratch {
    int32_t* p = nullptr;
    size_t cap = 0;
    const BlockQ8Act* key_x = nullptr;
    int64_t key_nb = -1, key_t0 = -1, key_t1 = -1;
    int key_kind = -1;
    uint64_t key_gen = 0;
    ~QfOffsetScratch() { __builtin_free(p); }
    int32_t* get(size_t n) {
        if (n > cap) {
            __builtin_free(p);
            p = static_cast<int32_t*>(__builtin_malloc(n * sizeof(int32_t)));
            cap = p ? n : 0;
        }
        return p;
    }
};
thread_local QfOffsetScratch t_qf_offsets;

// Two int32 per (token, block), tokens [t0, t1): [0] = -Z * sum(q[0..15]), [1] = -Z * sum(q[16..31])
// when n_sub == 2; otherwise [0] = -Z * sum(q[0..31]) and [1] = 0.
template <int NSub, int Z>
inline const int32_t* qformat_offsets(const BlockQ8Act* xq, int64_t nb, int64_t t0, int64_t t1) {
    QfOffsetScratch& s = t_qf_offsets;
    constexpr int kind = NSub * 1024 + Z;
    const uint64_t gen = __atomic_load_n(&g_q8act_generation, __ATOMIC_ACQUIRE);
    if (s.p != nullptr && s.key_x == xq && s.key_nb == nb && s.key_t0 == t0 && s.key_t1 == t1 &&
        s.key_kind == kind && s.key_gen == gen)
        return s.p;
    int32_t* offs = s.get(static_cast<size_t>((t1 - t0) * nb * 2));
    if (offs == nullptr) __builtin_trap();  // out of memory for a few KB: nothing sane to do
    for (int64_t t = t0; t < t1; ++t) {
        for (int64_t b = 0; b < nb; ++b) {
            const int8_t* q = xq[t * nb + b].qs;
            int32_t h0 = 0, h1 = 0;
            for (int j = 0; j < 16; ++j) {
                h0 += q[j];
                h1 += q[16 + j];
            }
            int32_t* o = offs + ((t - t0) * nb + b) * 2;
            o[0] = NSub == 2 ? -Z * h0 : -Z * (h0 + h1);
            o[1] = NSub == 2 ? -Z * h1 : 0;
        }
    }
    s.key_x = xq;
    s.key_nb = nb;
    s.key_t0 = t0;
    s.key_t1 = t1;
    s.key_kind = kind;
    s.key_gen = gen;
    return offs;
}
