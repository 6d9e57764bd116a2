// kernels_avxvnni.cpp — the "avxvnni" table: the AVX2 body with VEX VPDPBUSD (Alder Lake, Zen 5).
#define EDGERT_AVX_VNNI 1
#define EDGERT_AVX2_TABLE kAvxVnniKernels
#define EDGERT_AVX2_TABLE_NAME "avxvnni"
#include "kernels/x86/kernels_avx2_body.inc"
