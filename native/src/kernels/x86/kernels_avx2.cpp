// kernels_avx2.cpp — the "avx2" table (AVX2 + FMA + F16C); body in kernels_avx2_body.inc.
#define EDGERT_AVX2_TABLE kAvx2Kernels
#define EDGERT_AVX2_TABLE_NAME "avx2"
#include "kernels/x86/kernels_avx2_body.inc"
