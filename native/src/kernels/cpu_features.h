// cpu_features.h — what this CPU and its OS can run, detected once (cpuid + xgetbv on x86-64,
// getauxval(AT_HWCAP/AT_HWCAP2) on arm64). An AVX/AVX-512/AMX feature counts only when the OS
// also saves its register state (XCR0), or using it faults.
#pragma once

namespace edgert {

struct CpuFeatures {
    bool avx2 = false;      // with FMA and F16C
    bool avx_vnni = false;  // VEX-encoded VPDPBUSD on ymm
    bool avx512 = false;    // F, BW, VL, DQ
    bool avx512_vnni = false;
    bool avx512_vbmi = false;  // VPERMB
    bool gfni = false;         // GF2P8AFFINEQB (on zmm with AVX-512)
    bool avx512_bf16 = false;
    // AMX int8 tiles (TDPBSSD): CPU (CPUID.7.0:EDX[24,25], palette 1 of at least 8 tiles of
    // 16 x 64 bytes), OS (XCR0 tile state) and, on Linux, the process's permission to use tile
    // state, requested once here (arch_prctl ARCH_REQ_XCOMP_PERM). With AVX-512 VNNI + VBMI,
    // whose kernels the AMX table shares.
    bool amx_int8 = false;
    const char* amx_missing = "not an x86-64 CPU";  // why amx_int8 is false (for test output)
    bool neon = false;
    bool neon_dotprod = false;
    bool neon_i8mm = false;
};

const CpuFeatures& cpu_features();

}  // namespace edgert
