// family.h — the model families the runtime runs, as declared in families.def: how each differs
// from Llama. The forward pass (llama.cpp) and the tensor binding (llama_weights.cpp) branch on
// these traits and on nothing else, so a new family is one table row plus its tests.
#pragma once
#include <string>

namespace edgert {

enum class FfnActivation { SILU, GELU_TANH };

struct FamilyTraits {
    const char* architecture;     // the metadata's "architecture" value
    FfnActivation ffn_activation;
    bool qk_norm;      // per-head RMSNorm of q and k before RoPE
    bool post_norms;   // RMSNorm of the attention and FFN outputs before the residual adds
    bool embed_scale;  // embedding rows multiplied by sqrt(hidden_size)
};

// The family of an architecture name, or null if this runtime has none.
const FamilyTraits* find_family(const std::string& architecture);
// "llama, qwen2, ..." (error messages).
std::string family_names();

}  // namespace edgert
