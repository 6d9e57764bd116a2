// kernels_neon_dotprod.cpp — the "neondot" table: the NEON body with armv8.2-a SDOT.
#define EDGERT_NEON_DOTPROD 1
#define EDGERT_NEON_TABLE kNeonDotKernels
#define EDGERT_NEON_TABLE_NAME "neondot"
#include "kernels/arm/kernels_neon_body.inc"
