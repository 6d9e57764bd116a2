// kernels_neon.cpp — the "neon" table: baseline armv8-a Advanced SIMD (every arm64 CPU).
#define EDGERT_NEON_TABLE kNeonKernels
#define EDGERT_NEON_TABLE_NAME "neon"
#include "kernels/arm/kernels_neon_body.inc"
