// family.cpp — families.def as a table of FamilyTraits.
#include "models/family.h"

namespace edgert {
namespace {

constexpr FfnActivation SILU = FfnActivation::SILU;
constexpr FfnActivation GELU_TANH = FfnActivation::GELU_TANH;

const FamilyTraits kFamilies[] = {
#define X(id, arch, act, qk_norm, post_norms, embed_scale, hf_norm_plus_one) \
    {arch, act, qk_norm, post_norms, embed_scale},
#include "models/families.def"
#undef X
};

}  // namespace

const FamilyTraits* find_family(const std::string& architecture) {
    for (const FamilyTraits& f : kFamilies) {
        if (architecture == f.architecture) return &f;
    }
    return nullptr;
}

std::string family_names() {
    std::string s;
    for (const FamilyTraits& f : kFamilies) s += (s.empty() ? "" : ", ") + std::string(f.architecture);
    return s;
}

}  // namespace edgert
