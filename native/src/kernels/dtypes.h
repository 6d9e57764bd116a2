// dtypes.h — tensor element types of the edgert file format and their block layouts.
//
// The numeric ids are GGUF's ggml_type ids (docs/format.md), so GGUF tensors are carried byte for
// byte. Block types quantize consecutive elements of a row (the contiguous, last dim): 32 for the
// legacy types (q4_0 ... q5_1, iq4_nl, and edgert's q3_0), a super-block of 256 for the K-quants and iq4_xs, which
// carry one f16 scale per 256 and small integer sub-scales per 16 or 32 elements. Whatever the
// weight block, activations stay in 32-element BlockQ8Act blocks (kQK): a super-block is 8 of them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgert {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    IQ4_NL = 20,
    IQ4_XS = 23,
    BF16 = 30,
    // edgert's own (never GGUF ids): 3-bit codes, one f16 scale per 32 elements.
    Q3_0 = 1003,
};

constexpr int kQK = 32;   // elements per legacy quantization block, and per activation block
constexpr int kQKK = 256; // elements per K-quant / iq4_xs super-block (8 activation blocks)

// iq4_nl / iq4_xs: the 16 non-uniform levels a 4-bit code stands for (GGUF's kvalues_iq4nl).
constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

#pragma pack(push, 1)
struct BlockQ4_0 {  // x = d * (nibble - 8); element j: low nibble of qs[j], element j+16: high
    uint16_t d;     // f16
    uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {  // x = d * nibble + m; nibble order as BlockQ4_0
    uint16_t d;     // f16
    uint16_t m;     // f16
    uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {  // x = d * q
    uint16_t d;     // f16
    int8_t qs[kQK];
};
struct BlockQ5_0 {   // x = d * (q - 16), q = nibble | bit << 4; nibbles as BlockQ4_0
    uint16_t d;      // f16
    uint8_t qh[4];   // bit j (little-endian u32) = bit 4 of element j
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {   // x = d * q + m; q as BlockQ5_0
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
struct BlockQ3_0 {   // x = d * (q - 4), 3.5 bits per weight, for rows not made of 256-blocks
    uint16_t d;      // f16
    uint8_t qs[8];   // bits 0..1 of element j: qs[j % 8] >> 2 * (j / 8)
    uint8_t qh[4];   // bit j (little-endian u32) = bit 2 of element j
};
struct BlockIQ4_NL {  // x = d * kIQ4Values[nibble]; nibbles as BlockQ4_0
    uint16_t d;
    uint8_t qs[kQK / 2];
};
// K-quants: element e of the super-block lies in 32-block b = e / 32 at j = e % 32 (the field
// positions are spelled out in ref/qblock_ref.cpp and docs/format.md).
struct BlockQ3_K {            // x = d * (sc6 - 32) * (q - 4), 16 sub-blocks of 16
    uint8_t hmask[kQKK / 8];  // bit b of hmask[j]: bit 2 of q (block b, j)
    uint8_t qs[kQKK / 4];     // bits 0..1 of q: qs[32 * (b / 4) + j] >> 2 * (b % 4)
    uint8_t scales[12];       // 16 six-bit scales
    uint16_t d;
};
struct BlockQ4_K {            // x = d * sc6 * q - dmin * m6, 8 sub-blocks of 32
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];       // 8 six-bit scales and 8 six-bit mins
    uint8_t qs[kQKK / 2];     // q: qs[32 * (b / 2) + j] >> 4 * (b % 2)
};
struct BlockQ5_K {            // as Q4_K with a fifth bit: bit b of qh[j]
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQKK / 8];
    uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {            // x = d * sc8 * (q - 32), 16 sub-blocks of 16
    uint8_t ql[kQKK / 2];     // bits 0..3 of q
    uint8_t qh[kQKK / 4];     // bits 4..5 of q
    int8_t scales[kQKK / 16];
    uint16_t d;
};
struct BlockIQ4_XS {          // x = d * (sc6 - 32) * kIQ4Values[nibble], 8 sub-blocks of 32
    uint16_t d;
    uint16_t scales_h;        // bits 4..5 of sub-block b's scale at bits 2b..2b+1
    uint8_t scales_l[kQKK / 64];
    uint8_t qs[kQKK / 2];     // sub-block b: nibbles of qs[16 b ..] in BlockQ4_0 order
};
#pragma pack(pop)

// Runtime-only activation block for integer dot products (never stored in files): the float
// scale keeps activation quantization error below the f16 scale's, and s = d * sum(qs) lets
// q4_1's offset term be applied once per block.
struct BlockQ8Act {
    float d;
    float s;
    int8_t qs[kQK];
};

static_assert(sizeof(BlockQ4_0) == 18, "q4_0 block is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "q4_1 block is 20 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "q8_0 block is 34 bytes");
static_assert(sizeof(BlockQ8Act) == 40, "activation block is 40 bytes");
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockIQ4_NL) == 18 &&
              sizeof(BlockQ3_0) == 14, "legacy block sizes");
static_assert(sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_XS) == 136, "K-quant super-block sizes");

// Bumped (with __atomic_add_fetch, release) by every activation quantizer, whatever its ISA: a
// kernel that derives per-block data from BlockQ8Act (the packed GEMMs' zero-point offsets) may
// cache it per thread until the next bump instead of recomputing it for every row tile.
extern uint64_t g_q8act_generation;
#define EDGERT_BUMP_Q8ACT_GENERATION() __atomic_add_fetch(&::edgert::g_q8act_generation, 1, __ATOMIC_RELEASE)

// Known dtype? (Anything else in a file is refused by the loader.)
bool dtype_is_known(uint32_t id);
// Block types whose matmul takes int8 activations (everything but f32/f16/bf16).
bool dtype_is_quantized(DType t);
const char* dtype_name(DType t);
int dtype_block_size(DType t);     // elements per block (1 for plain types)
size_t dtype_block_bytes(DType t); // bytes per block
// Bytes of a row of n elements; n must be a multiple of the block size.
size_t dtype_row_bytes(DType t, int64_t n);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);  // round to nearest even
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);  // round to nearest even

}  // namespace edgert
