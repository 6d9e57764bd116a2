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
#include "models/family.h"

namespace edgert {

struct LlamaLayer {
    const float* attn_norm = nullptr;  // [H]
    Weight wq, wk, wv, wo;
    const float* bq = nullptr;  // [Nh*Dh], null unless attention_bias
    const float* bk = nullptr;  // [Nkv*Dh]
    const float* bv = nullptr;  // [Nkv*Dh]
    const float* q_norm = nullptr;  // [Dh], null unless the family has qk_norm
    const float* k_norm = nullptr;  // [Dh]
    const float* attn_post_norm = nullptr;  // [H], null unless the family has post_norms
    const float* ffn_norm = nullptr;  // [H]
    Weight w_gate, w_up, w_down;
    const float* ffn_post_norm = nullptr;  // [H]
    int32_t sliding_window = 0;  // 0: full causal attention
    // RoPE frequencies of this layer ([R/2], R = hparams.rotary_dim(), theta^(-2i/R) divided by
    // any factors): the model's own, or its local ones for a sliding layer of a family with a
    // local base.
    const float* inv_freq = nullptr;
    const float* inv_freq_long = nullptr;  // LongRoPE: used when n_ctx > the original context
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
    const FamilyTraits* family = nullptr;
    // [rotary_dim/2] RoPE frequencies, already divided by rope_freqs (or LongRoPE's short factors);
    // the local ones (sliding layers, rope_local_theta) and LongRoPE's long ones, or empty.
    std::vector<float> inv_freq, inv_freq_local, inv_freq_long;
    float attn_scale = 0.f;  // query_pre_attn_scalar^-1/2 (times rope_attn_factor^2)
    std::vector<LlamaLayer> layers;
    uint64_t n_params = 0;
    uint64_t weights_size = 0;
    WeightLayoutStats layout;
};

}  // namespace edgert
