// dtypes.cpp — element-type metadata and the scalar fp16/bf16 conversions.
//
// The conversions are bit manipulation, not hardware instructions, so they are correct on every
// CPU the one build runs on (F16C and NEON fp16 conversions live in the ISA files).
#include "kernels/dtypes.h"

#include <cstring>

namespace edgert {

uint64_t g_q8act_generation = 0;

bool dtype_is_known(uint32_t id) {
    switch (static_cast<DType>(id)) {
        case DType::F32: case DType::F16: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
        case DType::Q5_1: case DType::Q8_0: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K:
        case DType::Q6_K: case DType::IQ4_NL: case DType::IQ4_XS: case DType::BF16: case DType::Q3_0:
            return true;
    }
    return false;
}

bool dtype_is_quantized(DType t) {
    return t != DType::F32 && t != DType::F16 && t != DType::BF16;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "f32";
        case DType::F16: return "f16";
        case DType::Q4_0: return "q4_0";
        case DType::Q4_1: return "q4_1";
        case DType::Q5_0: return "q5_0";
        case DType::Q5_1: return "q5_1";
        case DType::Q8_0: return "q8_0";
        case DType::Q3_K: return "q3_k";
        case DType::Q4_K: return "q4_k";
        case DType::Q5_K: return "q5_k";
        case DType::Q6_K: return "q6_k";
        case DType::IQ4_NL: return "iq4_nl";
        case DType::IQ4_XS: return "iq4_xs";
        case DType::BF16: return "bf16";
        case DType::Q3_0: return "q3_0";
    }
    return "unknown";
}

int dtype_block_size(DType t) {
    switch (t) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::IQ4_NL: case DType::Q3_0:
            return kQK;
        case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::IQ4_XS:
            return kQKK;
        default: return 1;
    }
}

size_t dtype_block_bytes(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::F16: case DType::BF16: return 2;
        case DType::Q4_0: return sizeof(BlockQ4_0);
        case DType::Q4_1: return sizeof(BlockQ4_1);
        case DType::Q8_0: return sizeof(BlockQ8_0);
        case DType::Q5_0: return sizeof(BlockQ5_0);
        case DType::Q5_1: return sizeof(BlockQ5_1);
        case DType::IQ4_NL: return sizeof(BlockIQ4_NL);
        case DType::Q3_0: return sizeof(BlockQ3_0);
        case DType::Q3_K: return sizeof(BlockQ3_K);
        case DType::Q4_K: return sizeof(BlockQ4_K);
        case DType::Q5_K: return sizeof(BlockQ5_K);
        case DType::Q6_K: return sizeof(BlockQ6_K);
        case DType::IQ4_XS: return sizeof(BlockIQ4_XS);
    }
    return 0;
}

size_t dtype_row_bytes(DType t, int64_t n) {
    return static_cast<size_t>(n / dtype_block_size(t)) * dtype_block_bytes(t);
}

static inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf / NaN
    if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return bits_f32(sign);
    // Subnormal half: exactly representable as a normal float; scale by 2^-24.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return (sign != 0) ? -v : v;
}

uint16_t fp32_to_fp16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) {  // inf or NaN (keep NaN quiet and non-zero)
        return static_cast<uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
    }
    if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
    if (absu < 0x38800000u) {
        // Result is subnormal or zero: add a magic number so the FPU does the round-to-even.
        const float r = bits_f32(absu) + 0.5f;  // 0.5 = 2^-1; ulp there is 2^-24 = half subnormal step
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(f32_bits(r) - 0x3f000000u));
    }
    // Normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even.
    const uint32_t odd = (absu >> 13) & 1u;
    const uint32_t r = absu + 0xfffu + odd - (112u << 23);
    return static_cast<uint16_t>(sign | (r >> 13));
}

float bf16_to_fp32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    const uint32_t odd = (u >> 16) & 1u;
    return static_cast<uint16_t>((u + 0x7fffu + odd) >> 16);
}

}  // namespace edgert
