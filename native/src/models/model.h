// model.h — a loaded model: the validated file, its metadata and the weights bound to it.
//
// Immutable after load and shared by every context made from it (edgert.h's threading contract),
// so nothing here may be written during inference.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/edgt_file.h"
#include "core/metadata.h"
#include "kernels/kernels.h"

namespace edgert {

struct LlamaLayer {
    const float* attn_norm = nullptr;  // [H]
    Weight wq, wk, wv, wo;
    const float* bq = nullptr;  // [Nh*Dh], null unless attention_bias
    const float* bk = nullptr;  // [Nkv*Dh]
    const float* bv = nullptr;  // [Nkv*Dh]
    const float* ffn_norm = nullptr;  // [H]
    Weight w_gate, w_up, w_down;
};

// What load spent re-laying weights out for the kernels (prepare_weight), for edgert_model_get_layout.
struct WeightLayoutStats {
    std::string isa;  // the kernel table the copies are for; empty if none was made
    uint64_t bytes = 0;
    double seconds = 0;
};

struct Model {
    std::unique_ptr<EdgtFile> file;
    ModelMetadata meta;
    Weight token_embd;         // [V, H]
    Weight output;             // [V, H]; a copy of token_embd when embeddings are tied
    const float* output_norm = nullptr;
    std::vector<float> inv_freq;  // [Dh/2] RoPE frequencies, already divided by rope_freqs
    std::vector<LlamaLayer> layers;
    uint64_t n_params = 0;
    uint64_t weights_size = 0;
    WeightLayoutStats layout;
};

}  // namespace edgert
