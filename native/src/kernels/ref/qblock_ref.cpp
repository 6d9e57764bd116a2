// qblock_ref.cpp — the file layouts of q5_0, q5_1, iq4_nl, q3_k, q4_k, q5_k, q6_k and iq4_xs
// (GGUF's, byte for byte; docs/format.md) read into QBlock: where each element's code bits and
// each block's scales live. Written field by field for clarity: this is the spec every kernel's
// result is checked against (the dequantized values equal gguf.quants.dequantize's).
#include <cstring>

#include "kernels/qformat.h"

namespace edgert {

namespace {

uint16_t u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

// q4_k / q5_k: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// q3_k: 6-bit scale k (0..15, elements 16k..16k+15) minus 32.
int8_t scale_q3_k(int k, const uint8_t* s) {
    const int low = k < 8 ? (s[k] & 0xF) : (s[k - 8] >> 4);
    const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    return static_cast<int8_t>((low | (high << 4)) - 32);
}

// Legacy nibble order: element j < 16 is the low nibble of qs[j], element j >= 16 the high one of qs[j-16].
uint8_t nibble_legacy(const uint8_t* qs, int j) { return j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4); }

}  // namespace

bool dtype_is_qformat(DType t) { return qformat(t).valid; }

void qblock_decode(DType t, const uint8_t* row, int64_t b, QBlock& out) {
    out.sc[0] = out.sc[1] = 1;
    out.m = 0;
    out.dm = 0;
    switch (t) {
        case DType::Q5_0: case DType::Q5_1: {
            const bool q51 = t == DType::Q5_1;
            const uint8_t* p = row + b * (q51 ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0));
            out.d = u16(p);
            if (q51) out.dm = u16(p + 2);
            uint32_t qh;
            std::memcpy(&qh, p + (q51 ? 4 : 2), 4);
            const uint8_t* qs = p + (q51 ? 8 : 6);
            for (int j = 0; j < kQK; ++j)
                out.code[j] = static_cast<uint8_t>(nibble_legacy(qs, j) | (((qh >> j) & 1) << 4));
            return;
        }
        case DType::Q3_0: {
            const BlockQ3_0* k = reinterpret_cast<const BlockQ3_0*>(row) + b;
            out.d = k->d;
            uint32_t qh;
            std::memcpy(&qh, k->qh, 4);
            for (int j = 0; j < kQK; ++j)
                out.code[j] = static_cast<uint8_t>(((k->qs[j % 8] >> (2 * (j / 8))) & 3) | (((qh >> j) & 1) << 2));
            return;
        }
        case DType::IQ4_NL: {
            const uint8_t* p = row + b * sizeof(BlockIQ4_NL);
            out.d = u16(p);
            for (int j = 0; j < kQK; ++j) out.code[j] = nibble_legacy(p + 2, j);
            return;
        }
        default: break;
    }
    // Super-block types: block b is sub-block bb of super-block s.
    const int64_t s = b / 8;
    const int bb = static_cast<int>(b % 8);
    switch (t) {
        case DType::Q3_K: {
            const BlockQ3_K* k = reinterpret_cast<const BlockQ3_K*>(row) + s;
            out.d = k->d;
            out.sc[0] = scale_q3_k(2 * bb, k->scales);
            out.sc[1] = scale_q3_k(2 * bb + 1, k->scales);
            for (int j = 0; j < kQK; ++j) {
                const int low = (k->qs[32 * (bb / 4) + j] >> (2 * (bb % 4))) & 3;
                const int high = (k->hmask[j] >> bb) & 1;  // set: q - 4 >= 0
                out.code[j] = static_cast<uint8_t>(low | (high << 2));
            }
            return;
        }
        case DType::Q4_K: case DType::Q5_K: {
            const bool q5 = t == DType::Q5_K;
            const uint8_t* p = row + s * (q5 ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K));
            out.d = u16(p);
            out.dm = u16(p + 2);
            uint8_t sc, m;
            scale_min_k4(bb, p + 4, sc, m);
            out.sc[0] = out.sc[1] = static_cast<int8_t>(sc);
            out.m = m;
            const uint8_t* qh = p + 16;
            const uint8_t* qs = p + (q5 ? 48 : 16);
            for (int j = 0; j < kQK; ++j) {
                int q = (qs[32 * (bb / 2) + j] >> (4 * (bb % 2))) & 0xF;
                if (q5) q |= ((qh[j] >> bb) & 1) << 4;
                out.code[j] = static_cast<uint8_t>(q);
            }
            return;
        }
        case DType::Q6_K: {
            const BlockQ6_K* k = reinterpret_cast<const BlockQ6_K*>(row) + s;
            out.d = k->d;
            out.sc[0] = k->scales[2 * bb];
            out.sc[1] = k->scales[2 * bb + 1];
            const int h = bb / 4, q = bb % 4;  // 128-element half, quarter within it
            for (int j = 0; j < kQK; ++j) {
                const int low = (k->ql[64 * h + 32 * (q % 2) + j] >> (4 * (q / 2))) & 0xF;
                const int high = (k->qh[32 * h + j] >> (2 * q)) & 3;
                out.code[j] = static_cast<uint8_t>(low | (high << 4));
            }
            return;
        }
        case DType::IQ4_XS: {
            const BlockIQ4_XS* k = reinterpret_cast<const BlockIQ4_XS*>(row) + s;
            out.d = k->d;
            const int ls = ((k->scales_l[bb / 2] >> (4 * (bb % 2))) & 0xF) | (((k->scales_h >> (2 * bb)) & 3) << 4);
            out.sc[0] = out.sc[1] = static_cast<int8_t>(ls - 32);
            for (int j = 0; j < kQK; ++j) out.code[j] = nibble_legacy(k->qs + 16 * bb, j);
            return;
        }
        default: break;
    }
    __builtin_trap();  // callers check qformat(t).valid
}

}  // namespace edgert
