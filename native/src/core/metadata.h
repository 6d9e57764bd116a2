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
    // Per-layer widths of a structurally pruned model (optional hparams.layer_intermediate_size,
    // layer_num_heads, layer_num_kv_heads; docs/format.md). Empty: every layer has the global
    // value. When present they have num_layers entries, each >= 1 and <= the global value, which
    // stays the maximum and sizes the per-token buffers.
    std::vector<int32_t> layer_intermediate_size, layer_num_heads, layer_num_kv_heads;

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
};

// Throws StatusError: EDGERT_ERR_FORMAT for malformed JSON or a missing/invalid key,
// EDGERT_ERR_VERSION for a newer format_version, EDGERT_ERR_UNSUPPORTED for an unknown
// architecture (the message names it).
ModelMetadata parse_metadata(std::string_view json);

}  // namespace edgert
