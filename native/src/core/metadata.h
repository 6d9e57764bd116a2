// metadata.h — the required keys of a .edgt file's JSON metadata (docs/format.md), read and
// range-checked. Keys this runtime does not know are ignored, as the spec asks.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgert {

struct Hparams {
    int32_t vocab_size = 0;
    int32_t hidden_size = 0;
    int32_t intermediate_size = 0;
    int32_t num_layers = 0;
    int32_t num_heads = 0;
    int32_t num_kv_heads = 0;
    int32_t head_dim = 0;
    float rope_theta = 0.f;
    float rms_norm_eps = 0.f;
    int32_t context_length = 0;
    bool tie_embeddings = false;
    bool attention_bias = false;
    // Optional keys (docs/format.md); the defaults are Llama's.
    float query_pre_attn_scalar = 0.f;    // attention scale is its -1/2 power; 0: head_dim
    float attn_logit_softcapping = 0.f;   // scores -> c * tanh(scores / c); 0: none
    float final_logit_softcapping = 0.f;  // likewise for the logits
    int32_t sliding_window = 0;           // window of the layers layer_types marks sliding
    float rope_local_theta = 0.f;         // RoPE base of sliding layers; 0: rope_theta
    float rope_attn_factor = 1.f;         // LongRoPE: q and k scaled by it after RoPE
    int32_t rope_original_context_length = 0;  // LongRoPE: long factors when n_ctx exceeds it
    int32_t rope_dim = 0;  // RoPE rotates the first rope_dim dims of each head (Phi-4-mini); 0: head_dim
    // Per-layer lists (docs/format.md), read in one place (metadata.cpp). Empty: every layer has
    // the global value; never sized from num_layers alone (a header may claim 2^31 layers).
    std::vector<int32_t> layer_sliding_window;  // from layer_types: sliding_window or 0
    // Per-layer widths of a structurally pruned model (optional hparams.layer_intermediate_size,
    // layer_num_heads, layer_num_kv_heads; docs/format.md). Empty: every layer has the global
    // value. When present they have num_layers entries, each >= 1 and <= the global value, which
    // stays the maximum and sizes the per-token buffers.
    std::vector<int32_t> layer_intermediate_size, layer_num_heads, layer_num_kv_heads;

    int32_t rotary_dim() const { return rope_dim > 0 ? rope_dim : head_dim; }

    // > 0: the layer attends only to the last window(layer) positions.
    int32_t window(int layer) const {
        return layer_sliding_window.empty() ? sliding_window : layer_sliding_window[size_t(layer)];
    }

    int32_t ffn_dim(int layer) const {
        return layer_intermediate_size.empty() ? intermediate_size : layer_intermediate_size[size_t(layer)];
    }
    int32_t heads(int layer) const {
        return layer_num_heads.empty() ? num_heads : layer_num_heads[size_t(layer)];
    }
    int32_t kv_heads(int layer) const {
        return layer_num_kv_heads.empty() ? num_kv_heads : layer_num_kv_heads[size_t(layer)];
    }
    // KV heads summed over the layers: the cache holds this many rows per position.
    int64_t total_kv_heads() const {
        int64_t n = 0;
        for (int l = 0; l < num_layers; ++l) n += kv_heads(l);
        return n;
    }
};

struct ModelMetadata {
    uint32_t format_version = 0;
    std::string architecture;
    std::string name;  // "" if absent
    Hparams hparams;
    int32_t bos_token_id = -1;  // -1: none
    std::vector<int32_t> eos_token_ids;
    bool add_bos = false;          // tokenizer.add_bos (optional, default false)
    bool add_eos = false;          // tokenizer.add_eos (optional, default false)
    std::string tokenizer_json;    // tokenizer.json, the text the native tokenizer is built from
    bool has_chat_template = false;
    std::string chat_template;     // chat_template (optional)
    // chat_template present but not a string: the model still loads and runs on ids (as the
    // Python side opens it too); edgert_chat_format without a template of its own refuses it.
    bool chat_template_not_text = false;
};

// Throws StatusError: EDGERT_ERR_FORMAT for malformed JSON or a missing/invalid key,
// EDGERT_ERR_VERSION for a newer format_version, EDGERT_ERR_UNSUPPORTED for an unknown
// architecture (the message names it).
ModelMetadata parse_metadata(std::string_view json);

}  // namespace edgert
