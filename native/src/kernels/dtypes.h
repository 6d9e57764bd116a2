// dtypes.h — tensor element types of the edgert file format and their block layouts.
//
// The numeric ids are GGUF's ggml_type ids (docs/format.md), so GGUF tensors are carried byte for
// byte. Block types quantize 32 consecutive elements of a row (the contiguous, last dim).
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgert {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    BF16 = 30,
};

constexpr int kQK = 32;  // elements per quantization block

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

// Bumped (with __atomic_add_fetch, release) by every activation quantizer, whatever its ISA: a
// kernel that derives per-block data from BlockQ8Act (the packed GEMMs' zero-point offsets) may
// cache it per thread until the next bump instead of recomputing it for every row tile.
extern uint64_t g_q8act_generation;
#define EDGERT_BUMP_Q8ACT_GENERATION() __atomic_add_fetch(&::edgert::g_q8act_generation, 1, __ATOMIC_RELEASE)

// Known dtype? (Anything else in a file is refused by the loader.)
bool dtype_is_known(uint32_t id);
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
