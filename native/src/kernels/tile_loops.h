// tile_loops.h — walks a driver tile (rows [r0,r1) x tokens [t0,t1)) with a register-blocked
// microkernel K::run<R, T>, covering row and token tails with smaller instantiations.
//
// Included only by ISA files; everything here has internal linkage (anonymous namespace) so an
// ISA-flagged copy can never be picked by the linker for generic code. Every instantiation does
// the same per-output operations in the same order, so results do not depend on R, T or where
// a tile starts.
#pragma once
#include <cstdint>

namespace edgert {
namespace {

template <class K, int T>
inline void tile_rows(const typename K::Args& a, int64_t r0, int64_t r1, int64_t t) {
    int64_t r = r0;
    for (; r + K::kR <= r1; r += K::kR) K::template run<K::kR, T>(a, r, t);
    switch (r1 - r) {
        case 1: K::template run<1, T>(a, r, t); break;
        case 2: if constexpr (K::kR > 2) K::template run<2, T>(a, r, t); break;
        case 3: if constexpr (K::kR > 3) K::template run<3, T>(a, r, t); break;
        default: break;
    }
}

template <class K>
inline void tile_walk(const typename K::Args& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    int64_t t = t0;
    for (; t + K::kT <= t1; t += K::kT) tile_rows<K, K::kT>(a, r0, r1, t);
    switch (t1 - t) {
        case 1: tile_rows<K, 1>(a, r0, r1, t); break;
        case 2: if constexpr (K::kT > 2) tile_rows<K, 2>(a, r0, r1, t); break;
        case 3: if constexpr (K::kT > 3) tile_rows<K, 3>(a, r0, r1, t); break;
        default: break;
    }
}

}  // namespace
}  // namespace edgert
