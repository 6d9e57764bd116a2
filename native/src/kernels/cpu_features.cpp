// cpu_features.cpp — runtime feature detection; compiled without ISA flags so it runs anywhere.
#include "kernels/cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace edgert {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
unsigned long long read_xcr0() {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// Linux keeps tile data disabled (XFD) until the process asks; the request is per process and
// only enlarges signal frames. Returns null on success, else why not.
const char* request_tile_permission() {
#if defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023, kArchGetXcompPerm = 0x1022, kXfeatureTileData = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureTileData) != 0)
        return "the kernel refused tile state (arch_prctl ARCH_REQ_XCOMP_PERM; Linux >= 5.16 needed)";
    unsigned long long granted = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &granted) != 0 || !((granted >> kXfeatureTileData) & 1))
        return "tile state not granted after ARCH_REQ_XCOMP_PERM";
    return nullptr;
#else
    return "AMX is enabled only on Linux (tile-state permission request)";
#endif
}

const char* amx_missing_reason(const CpuFeatures& f, unsigned int leaf7_edx, unsigned long long xcr0) {
    if (!((leaf7_edx >> 24) & 1) || !((leaf7_edx >> 25) & 1)) return "this CPU has no AMX-TILE/AMX-INT8 (CPUID.7.0:EDX[24,25])";
    if (!f.avx512_vnni || !f.avx512_vbmi || !f.gfni) return "AMX without AVX-512 VNNI/VBMI and GFNI (the AMX table shares those kernels)";
    if ((xcr0 & 0x60000) != 0x60000) return "the OS does not enable tile state (XCR0 bits 17-18)";
    unsigned int a, b, c, d;
    if (__get_cpuid_max(0, nullptr) < 0x1d) return "CPUID has no tile-information leaf 0x1D";
    __cpuid_count(0x1d, 1, a, b, c, d);  // palette 1: max names, bytes per row, max rows
    if ((b >> 16) < 8 || (b & 0xffff) < 64 || (c & 0xffff) < 16) return "tile palette 1 is smaller than 8 tiles of 16 x 64 bytes";
    return request_tile_permission();
}

CpuFeatures detect() {
    CpuFeatures f;
    f.amx_missing = "CPUID/XCR0 lack AVX";
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
               f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = read_xcr0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;             // SSE + AVX state
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;           // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!os_ymm) return f;
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = (b >> 5) & 1;
    const bool avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
               avx512vl = (b >> 31) & 1;
    const bool avx512vnni = (c >> 11) & 1, avx512vbmi = (c >> 1) & 1, gfni = (c >> 8) & 1;
    const unsigned int leaf7_edx = d;
    f.avx2 = avx2 && fma && f16c;
    f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
    f.avx512_vnni = f.avx512 && avx512vnni;
    f.avx512_vbmi = f.avx512 && avx512vbmi;
    f.gfni = f.avx2 && gfni;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = f.avx2 && ((a >> 4) & 1);
    f.avx512_bf16 = f.avx512 && ((a >> 5) & 1);
    f.amx_missing = amx_missing_reason(f, leaf7_edx, xcr0);
    f.amx_int8 = f.amx_missing == nullptr;
    return f;
}
#elif defined(__aarch64__)
CpuFeatures detect() {
    CpuFeatures f;
    f.neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    const unsigned long hw2 = getauxval(AT_HWCAP2);
    f.neon_dotprod = (hw >> 20) & 1;  // HWCAP_ASIMDDP
    f.neon_i8mm = (hw2 >> 13) & 1;    // HWCAP2_I8MM
#endif
    return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

}  // namespace edgert
