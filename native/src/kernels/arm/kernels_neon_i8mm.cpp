// kernels_neon_i8mm.cpp — the "neoni8mm" table: the NEON body with SDOT and armv8.6-a SMMLA
// (prefill GEMM); entered only where getauxval reports both ASIMDDP and I8MM.
#define EDGERT_NEON_DOTPROD 1
#define EDGERT_NEON_I8MM 1
#define EDGERT_NEON_TABLE kNeonI8mmKernels
#define EDGERT_NEON_TABLE_NAME "neoni8mm"
#include "kernels/arm/kernels_neon_body.inc"
