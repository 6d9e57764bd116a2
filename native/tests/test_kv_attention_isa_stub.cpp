// test_kv_attention_isa_stub.cpp — current_isa() for the stand-alone AArch64 cross build of the
// KV-attention tests (tests/test_kv_attention_arm.py), which links the attention files without
// the rest of the kernel layer so the NEON check does not wait on, or break with, other ISA
// files. Mirrors dispatch.cpp's contract: EDGERT_ISA if set, else the best ISA ("neon").
#include <cstdlib>

#include "kernels/kernels.h"

namespace edgert {

const char* current_isa() {
    const char* env = std::getenv("EDGERT_ISA");
    if (env != nullptr && *env != '\0') return env;
#if defined(__aarch64__)
    return "neon";
#else
    return "scalar";
#endif
}

}  // namespace edgert
