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
