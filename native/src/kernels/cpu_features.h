// cpu_features.h — what this CPU and its OS can run, detected once (cpuid + xgetbv on x86-64,
// getauxval(AT_HWCAP/AT_HWCAP2) on arm64). An AVX/AVX-512 feature counts only when the OS also
// saves its register state (XCR0), or using it faults.
#pragma once

namespace edgert {

struct CpuFeatures {
    bool avx2 = false;      // with FMA and F16C
    bool avx_vnni = false;  // VEX-encoded VPDPBUSD on ymm
    bool avx512 = false;    // F, BW, VL, DQ
    bool avx512_vnni = false;
    bool avx512_vbmi = false;  // VPERMB
    bool avx512_bf16 = false;
    bool neon = false;
    bool neon_dotprod = false;
    bool neon_i8mm = false;
};

const CpuFeatures& cpu_features();

}  // namespace edgert
