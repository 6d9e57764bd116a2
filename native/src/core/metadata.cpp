// metadata.cpp — reads the metadata JSON into ModelMetadata with strict type and range checks.
#include "core/metadata.h"

#include <cmath>
#include <limits>

#include "core/edgt_file.h"
#include "core/json.h"
#include "core/message_text.h"
#include "core/status_error.h"
#include "models/family.h"

namespace edgert {
namespace {

constexpr int kMaxJsonDepth = 64;

[[noreturn]] void meta_error(const std::string& msg) {
    fail(EDGERT_ERR_FORMAT, "invalid .edgt metadata: " + msg);
}

const JsonValue& require(const JsonValue& obj, const char* key, const std::string& where) {
    const JsonValue* v = obj.find(key);
    if (!v) meta_error("missing required key '" + where + key + "'");
    return *v;
}

int32_t require_positive_int(const JsonValue& obj, const char* key, const std::string& where) {
    const JsonValue& v = require(obj, key, where);
    if (!v.is_integer() || v.as_integer() < 1 || v.as_integer() > std::numeric_limits<int32_t>::max()) {
        meta_error("'" + where + key + "' must be a positive integer below 2^31");
    }
    return int32_t(v.as_integer());
}

float require_positive_float(const JsonValue& obj, const char* key, const std::string& where) {
    const JsonValue& v = require(obj, key, where);
    if (!v.is_number() || !(v.as_number() > 0.0) ||
        !std::isfinite(float(v.as_number())) || float(v.as_number()) <= 0.f) {
        meta_error("'" + where + key + "' must be a positive finite number");
    }
    return float(v.as_number());
}

bool require_bool(const JsonValue& obj, const char* key, const std::string& where) {
    const JsonValue& v = require(obj, key, where);
    if (!v.is_bool()) meta_error("'" + where + key + "' must be true or false");
    return v.as_bool();
}

// An optional key: absent or null gives `fallback`.
float optional_float(const JsonValue& obj, const char* key, const std::string& where, float fallback,
                     bool allow_zero) {
    const JsonValue* v = obj.find(key);
    if (!v || v->is_null()) return fallback;
    const double x = v->is_number() ? v->as_number() : -1.0;
    if (!v->is_number() || !std::isfinite(float(x)) || x < 0.0 || (!allow_zero && x == 0.0)) {
        meta_error("'" + where + key + "' must be a " + (allow_zero ? "non-negative" : "positive") +
                   " finite number");
    }
    return float(x);
}

int32_t optional_int(const JsonValue& obj, const char* key, const std::string& where) {
    const JsonValue* v = obj.find(key);
    if (!v || v->is_null()) return 0;
    if (!v->is_integer() || v->as_integer() < 0 || v->as_integer() > std::numeric_limits<int32_t>::max()) {
        meta_error("'" + where + key + "' must be a non-negative integer below 2^31");
    }
    return int32_t(v->as_integer());
}

// The per-layer lists, all read here (one entry per layer each, bounded by the document's own
// size: nothing is allocated from num_layers alone). layer_types uses Hugging Face's names:
// "full_attention", or "sliding_attention" (which needs sliding_window). Without layer_types,
// sliding_window applies to every layer (Mistral, Phi-3).
void read_layer_hparams(const JsonValue& hp, const std::string& w, Hparams& h) {
    if (const JsonValue* types = hp.find("layer_types"); types && !types->is_null()) {
        if (!types->is_array() || types->items().size() != size_t(h.num_layers)) {
            meta_error("'" + w + "layer_types' must be a list of num_layers strings");
        }
        h.layer_sliding_window.reserve(types->items().size());
        for (const JsonValue& t : types->items()) {
            const bool sliding = t.is_string() && t.as_string() == "sliding_attention";
            if (!sliding && !(t.is_string() && t.as_string() == "full_attention")) {
                meta_error("'" + w + "layer_types' entries must be \"full_attention\" or "
                           "\"sliding_attention\"");
            }
            if (sliding && h.sliding_window == 0) {
                meta_error("'" + w + "layer_types' marks a sliding layer but sliding_window is not set");
            }
            h.layer_sliding_window.push_back(sliding ? h.sliding_window : 0);
        }
    }
}

int32_t token_id(const JsonValue& v, const char* what, int32_t vocab_size) {
    if (!v.is_integer() || v.as_integer() < 0 || v.as_integer() >= vocab_size) {
        meta_error(std::string(what) + " must be a token id in [0, vocab_size)");
    }
    return int32_t(v.as_integer());
}

// An optional per-layer list: absent or null leaves `out` empty (every layer has the global value).
void read_layer_list(const JsonValue& hp, const char* key, int32_t n_layers, int32_t max_value,
                     std::vector<int32_t>& out) {
    const JsonValue* v = hp.find(key);
    if (!v || v->is_null()) return;
    const std::string what = std::string("'hparams.") + key + "'";
    if (!v->is_array() || v->items().size() != size_t(n_layers)) {
        meta_error(what + " must be a list of num_layers (" + std::to_string(n_layers) + ") integers");
    }
    for (const auto& e : v->items()) {
        if (!e.is_integer() || e.as_integer() < 1 || e.as_integer() > max_value) {
            meta_error(what + " entries must be integers in [1, " + std::to_string(max_value) +
                       "] (the global value is the maximum)");
        }
        out.push_back(int32_t(e.as_integer()));
    }
}

Hparams read_hparams(const JsonValue& hp) {
    if (!hp.is_object()) meta_error("'hparams' must be an object");
    const std::string w = "hparams.";
    Hparams h;
    h.vocab_size = require_positive_int(hp, "vocab_size", w);
    h.hidden_size = require_positive_int(hp, "hidden_size", w);
    h.intermediate_size = require_positive_int(hp, "intermediate_size", w);
    h.num_layers = require_positive_int(hp, "num_layers", w);
    h.num_heads = require_positive_int(hp, "num_heads", w);
    h.num_kv_heads = require_positive_int(hp, "num_kv_heads", w);
    h.head_dim = require_positive_int(hp, "head_dim", w);
    h.rope_theta = require_positive_float(hp, "rope_theta", w);
    h.rms_norm_eps = require_positive_float(hp, "rms_norm_eps", w);
    h.context_length = require_positive_int(hp, "context_length", w);
    h.tie_embeddings = require_bool(hp, "tie_embeddings", w);
    h.attention_bias = require_bool(hp, "attention_bias", w);
    if (h.num_heads % h.num_kv_heads != 0) {
        meta_error("num_heads (" + std::to_string(h.num_heads) +
                   ") must be a multiple of num_kv_heads (" + std::to_string(h.num_kv_heads) + ")");
    }
    if (h.head_dim % 2 != 0) meta_error("head_dim must be even (RoPE rotates pairs)");
    read_layer_list(hp, "layer_intermediate_size", h.num_layers, h.intermediate_size, h.layer_intermediate_size);
    read_layer_list(hp, "layer_num_heads", h.num_layers, h.num_heads, h.layer_num_heads);
    read_layer_list(hp, "layer_num_kv_heads", h.num_layers, h.num_kv_heads, h.layer_num_kv_heads);
    for (int l = 0; l < h.num_layers; ++l) {
        if (h.heads(l) % h.kv_heads(l) != 0) {
            meta_error("layer " + std::to_string(l) + ": num_heads (" + std::to_string(h.heads(l)) +
                       ") must be a multiple of num_kv_heads (" + std::to_string(h.kv_heads(l)) + ")");
        }
    }
    // Products the forward pass forms must stay in int32 range.
    if (int64_t(h.num_heads) * h.head_dim > std::numeric_limits<int32_t>::max()) {
        meta_error("num_heads * head_dim is too large");
    }
    h.query_pre_attn_scalar = optional_float(hp, "query_pre_attn_scalar", w, float(h.head_dim), false);
    h.attn_logit_softcapping = optional_float(hp, "attn_logit_softcapping", w, 0.f, true);
    h.final_logit_softcapping = optional_float(hp, "final_logit_softcapping", w, 0.f, true);
    h.sliding_window = optional_int(hp, "sliding_window", w);
    h.rope_local_theta = optional_float(hp, "rope_local_theta", w, 0.f, true);
    h.rope_attn_factor = optional_float(hp, "rope_attn_factor", w, 1.f, false);
    h.rope_original_context_length = optional_int(hp, "rope_original_context_length", w);
    h.rope_dim = optional_int(hp, "rope_dim", w);
    if (h.rope_dim % 2 != 0 || h.rope_dim > h.head_dim) {
        meta_error("'hparams.rope_dim' must be even and at most head_dim (RoPE rotates pairs of a head)");
    }
    read_layer_hparams(hp, w, h);
    return h;
}

}  // namespace

ModelMetadata parse_metadata(std::string_view text) {
    JsonValue root;
    try {
        root = parse_json(text.data(), text.size(), kMaxJsonDepth);
    } catch (const JsonError& e) {
        meta_error(std::string("malformed JSON: ") + e.what());
    }
    if (!root.is_object()) meta_error("the metadata must be a JSON object");

    ModelMetadata m;
    const JsonValue& format = require(root, "format", "");
    if (!format.is_string() || format.as_string() != "edgert") meta_error("'format' must be \"edgert\"");
    const JsonValue& version = require(root, "format_version", "");
    if (!version.is_integer() || version.as_integer() < 1) {
        meta_error("'format_version' must be a positive integer");
    }
    if (version.as_integer() > int64_t(kFormatVersion)) {
        fail(EDGERT_ERR_VERSION, "the metadata has format_version " +
                                     std::to_string(version.as_integer()) +
                                     " but this runtime reads up to version " +
                                     std::to_string(kFormatVersion) + "; upgrade edgert");
    }
    m.format_version = uint32_t(version.as_integer());

    const JsonValue& arch = require(root, "architecture", "");
    if (!arch.is_string()) meta_error("'architecture' must be a string");
    m.architecture = arch.as_string();
    // Before hparams: another architecture may well use other hparams keys.
    if (!find_family(m.architecture)) {
        fail(EDGERT_ERR_UNSUPPORTED, "unsupported architecture " + quote_bytes(m.architecture) +
                                         "; this runtime runs: " + family_names());
    }
    if (const JsonValue* name = root.find("name")) {
        if (!name->is_string() && !name->is_null()) meta_error("'name' must be a string");
        if (name->is_string()) m.name = name->as_string();
    }
    m.hparams = read_hparams(require(root, "hparams", ""));

    const JsonValue& tok = require(root, "tokenizer", "");
    if (!tok.is_object()) meta_error("'tokenizer' must be an object");
    const JsonValue& tok_json = require(tok, "json", "tokenizer.");
    if (!tok_json.is_string()) meta_error("'tokenizer.json' must be a string");
    m.tokenizer_json = tok_json.as_string();
    for (const auto& [key, field] : {std::pair<const char*, bool*>{"add_bos", &m.add_bos},
                                     std::pair<const char*, bool*>{"add_eos", &m.add_eos}}) {
        const JsonValue* v = tok.find(key);
        if (v && !v->is_null() && !v->is_bool()) meta_error(std::string("'tokenizer.") + key + "' must be true or false");
        *field = v && v->is_bool() && v->as_bool();
    }
    const JsonValue& bos = require(tok, "bos_token_id", "tokenizer.");
    if (!bos.is_null()) m.bos_token_id = token_id(bos, "'tokenizer.bos_token_id'", m.hparams.vocab_size);
    const JsonValue& eos = require(tok, "eos_token_ids", "tokenizer.");
    if (!eos.is_array()) meta_error("'tokenizer.eos_token_ids' must be an array");
    for (const auto& e : eos.items()) {
        m.eos_token_ids.push_back(token_id(e, "every 'tokenizer.eos_token_ids' entry", m.hparams.vocab_size));
    }

    if (const JsonValue* t = root.find("chat_template"); t && !t->is_null()) {
        if (t->is_string()) {
            m.has_chat_template = true;
            m.chat_template = t->as_string();
        } else {
            m.chat_template_not_text = true;
        }
    }
    return m;
}

}  // namespace edgert
