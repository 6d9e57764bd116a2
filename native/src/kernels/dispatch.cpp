// dispatch.cpp — picks the KernelTable once per process: EDGERT_ISA if set (and runnable), else
// the best table this build carries and this CPU supports. set_isa() switches later (tests,
// benchmarks); weights prepared for another ISA simply fall back to their canonical layout.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu_features.h"
#include "kernels/kernel_table.h"
#include "kernels/kernels.h"

namespace edgert {

#if defined(EDGERT_KERNELS_X86)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvxVnniKernels;
extern const KernelTable kAvx512VnniKernels;
extern const KernelTable kAmxKernels;
#endif
#if defined(EDGERT_KERNELS_NEON)
extern const KernelTable kNeonKernels;
extern const KernelTable kNeonDotKernels;
extern const KernelTable kNeonI8mmKernels;
#endif

namespace {

struct Candidate {
    const KernelTable* table;
    bool (*supported)();
};

// Best first.
const Candidate kCandidates[] = {
#if defined(EDGERT_KERNELS_X86)
    {&kAmxKernels, [] { return cpu_features().amx_int8; }},
    // AVX-512 without VNNI/VBMI/GFNI (Skylake-X, Cascade Lake) takes the AVX2 table.
    {&kAvx512VnniKernels, [] { return cpu_features().avx512_vnni && cpu_features().avx512_vbmi && cpu_features().gfni; }},
    {&kAvxVnniKernels, [] { return cpu_features().avx_vnni; }},
    {&kAvx2Kernels, [] { return cpu_features().avx2; }},
#endif
#if defined(EDGERT_KERNELS_NEON)
    {&kNeonI8mmKernels, [] { return cpu_features().neon_dotprod && cpu_features().neon_i8mm; }},
    {&kNeonDotKernels, [] { return cpu_features().neon_dotprod; }},
    {&kNeonKernels, [] { return cpu_features().neon; }},
#endif
    {&kScalarKernels, [] { return true; }},
};

const KernelTable* pick_initial() {
    if (const char* env = std::getenv("EDGERT_ISA"); env != nullptr && *env != '\0') {
        if (const KernelTable* t = kernel_table_for(env)) return t;
        std::fprintf(stderr, "edgert: EDGERT_ISA=%s is not available here; using the best ISA\n",
                     env);
    }
    for (const Candidate& c : kCandidates) {
        if (c.supported()) return c.table;
    }
    return &kScalarKernels;
}

std::atomic<const KernelTable*>& active_slot() {
    static std::atomic<const KernelTable*> slot{pick_initial()};
    return slot;
}

}  // namespace

const KernelTable* kernel_table_for(const char* name) {
    for (const Candidate& c : kCandidates) {
        if (std::strcmp(c.table->name, name) == 0) return c.supported() ? c.table : nullptr;
    }
    return nullptr;
}

QGemmFn qgemm_for(const KernelTable& k, DType t) {
    switch (t) {
        case DType::Q4_0: return k.gemm_q4_0;
        case DType::Q4_1: return k.gemm_q4_1;
        case DType::Q8_0: return k.gemm_q8_0;
        case DType::Q5_0: return k.gemm_q5_0;
        case DType::Q5_1: return k.gemm_q5_1;
        case DType::IQ4_NL: return k.gemm_iq4_nl;
        case DType::Q3_K: return k.gemm_q3_k;
        case DType::Q4_K: return k.gemm_q4_k;
        case DType::Q5_K: return k.gemm_q5_k;
        case DType::Q6_K: return k.gemm_q6_k;
        case DType::IQ4_XS: return k.gemm_iq4_xs;
        case DType::Q3_0: return k.gemm_q3_0;
        default: return nullptr;
    }
}

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

const char* current_isa() { return active_kernels().name; }

std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    for (const Candidate& c : kCandidates) {
        if (c.supported()) out.emplace_back(c.table->name);
    }
    return out;
}

bool set_isa(const std::string& name) {
    const KernelTable* t = kernel_table_for(name.c_str());
    if (t == nullptr) return false;
    active_slot().store(t, std::memory_order_release);
    return true;
}

}  // namespace edgert
