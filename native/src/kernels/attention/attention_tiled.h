// attention_tiled.h — the position loop shared by every ISA file: tiles of kTile positions, an
// online softmax per query row, then the weighted V sum. Each ISA file includes this inside its
// own anonymous namespace with an `Ops` struct of its kernels, so no instantiation is shared
// between files built with different -m flags. Uses no standard-library templates (same reason).
//
// Ops must provide (all static), where r0 is the cache row of the tile's first position (its
// position, or that modulo a.ring: a tile never straddles a ring's wrap):
//   scores(a, p, r0, np)         p.s[r*kTile + j] = q_r . (K row r0+j) (scaled), j < np
//   q_dot_half(p, h, out)        out[r] = p.qf_r . h (h: head_dim f16 values), r < p.rows
//   v_tile(a, p, r0, np)         p.vf[j*D..] = V row r0+j as floats, j < np
//   max_row(s, n)                max of s[0..n)
//   exp_sum(s, n, m)             s[j] = exp(s[j] - m); returns the sum
//   scale_row(x, n, c)           x[i] *= c
//   axpy_rows(p, np)             for every row r < p.rows:
//                                  p.acc[r*D + i] += sum_{j<np} p.s[r*kTile + j] * p.vf[j*D + i]
//                                (all rows at once, so V loads are shared and several
//                                accumulator chains hide FMA latency)
// Needs <math.h> (expf, tanhf) and attention_pass.h included before the anonymous namespace.

// Asks for the cache lines of rows [r0, r0 + n) of one head's K or V rows. In decode the weights
// stream through every cache between two tokens, so the tile's rows come from DRAM; the loops'
// own loads find them one short stream at a time (a row is two or four lines), which left most
// of a decode step's attention time waiting on memory. Requesting a whole tile up front keeps
// many misses in flight.
inline void prefetch_rows(const void* base, size_t stride, int64_t r0, int64_t n) {
    const char* b = static_cast<const char*>(base) + static_cast<size_t>(r0) * stride;
    const size_t bytes = static_cast<size_t>(n) * stride;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(b + off);
}

template <class Ops>
void run_tiled_pass(const ::edgert::AttentionArgs& a, ::edgert::attn::AttnPass& p, int64_t first,
                    int64_t n_pos) {
    using ::edgert::attn::kTile;
    const int64_t D = p.head_dim;
    for (int64_t p0 = first; p0 < n_pos; p0 += kTile) {
        const int64_t np = n_pos - p0 < kTile ? n_pos - p0 : kTile;
        const int64_t r0 = a.ring > 0 ? p0 % a.ring : p0;
        if (p0 == first) {
            prefetch_rows(a.k, a.k_stride, r0, np);
            prefetch_rows(a.v, a.v_stride, r0, np);
        }
        if (p0 + kTile < n_pos) {  // the next tile's rows arrive while this one is computed
            const int64_t p1 = p0 + kTile, n1 = n_pos - p1 < kTile ? n_pos - p1 : kTile;
            const int64_t r1 = a.ring > 0 ? p1 % a.ring : p1;
            prefetch_rows(a.k, a.k_stride, r1, n1);
            prefetch_rows(a.v, a.v_stride, r1, n1);
        }
        Ops::scores(a, p, r0, np);
        if (a.k_offset != nullptr) {
            // The block's offset comes back as q . offset on every score of the tile; position
            // 0's score is recomputed from its exact key when the cache keeps one.
            float c[::edgert::attn::kMaxRows];
            Ops::q_dot_half(p, a.k_offset + (r0 / kTile) * D, c);
            for (int64_t r = 0; r < p.rows; ++r)
                for (int64_t j = 0; j < np; ++j) p.s[r * kTile + j] += c[r];
            if (p0 == 0 && a.k_sink != nullptr) {
                Ops::q_dot_half(p, a.k_sink, c);
                for (int64_t r = 0; r < p.rows; ++r) p.s[r * kTile] = c[r];
            }
        }
        Ops::v_tile(a, p, r0, np);
        for (int64_t r = 0; r < p.rows; ++r) {
            int64_t nr = p.limit[r] - p0;  // causal limit of this row inside the tile
            if (nr > np) nr = np;
            int64_t lo = p.start[r] - p0;  // sliding-window start of this row inside the tile
            if (lo < 0) lo = 0;
            float* s = p.s + r * kTile;
            // Weights outside the row's range are zero, so axpy_rows can sweep every row over np.
            for (int64_t j = 0; j < lo && j < np; ++j) s[j] = 0.0f;
            for (int64_t j = nr < lo ? lo : nr; j < np; ++j) s[j] = 0.0f;
            if (nr <= lo) continue;
            if (a.softcap > 0.0f) {
                const float cap = a.softcap, inv = 1.0f / a.softcap;
                for (int64_t j = lo; j < nr; ++j) s[j] = cap * tanhf(s[j] * inv);
            }
            const float mt = Ops::max_row(s + lo, nr - lo);
            const float m_new = mt > p.m[r] ? mt : p.m[r];
            if (m_new > p.m[r]) {
                // First tile: m = -inf gives c = 0 on an all-zero state, which is harmless.
                const float c = expf(p.m[r] - m_new);
                p.l[r] *= c;
                Ops::scale_row(p.acc + r * D, D, c);
                p.m[r] = m_new;
            }
            p.l[r] += Ops::exp_sum(s + lo, nr - lo, m_new);
        }
        Ops::axpy_rows(p, np);
    }
}
