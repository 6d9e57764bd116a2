// metadata.cpp — reads the metadata JSON into ModelMetadata with strict type and range checks.
#include "core/metadata.h"

#include <cmath>
#include <limits>

#include "core/edgt_file.h"
#include "core/json.h"
#include "core/message_text.h"
#include "core/status_error.h"

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

int32_t token_id(const JsonValue& v, const char* what, int32_t vocab_size) {
    if (!v.is_integer() || v.as_integer() < 0 || v.as_integer() >= vocab_size) {
        meta_error(std::string(what) + " must be a token id in [0, vocab_size)");
    }
    return int32_t(v.as_integer());
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
    // Products the forward pass forms must stay in int32 range.
    if (int64_t(h.num_heads) * h.head_dim > std::numeric_limits<int32_t>::max()) {
        meta_error("num_heads * head_dim is too large");
    }
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
    if (m.architecture != "llama") {
        fail(EDGERT_ERR_UNSUPPORTED, "unsupported architecture " + quote_bytes(m.architecture) +
                                         "; this runtime runs: llama");
    }
    if (const JsonValue* name = root.find("name")) {
        if (!name->is_string() && !name->is_null()) meta_error("'name' must be a string");
        if (name->is_string()) m.name = name->as_string();
    }
    m.hparams = read_hparams(require(root, "hparams", ""));

    const JsonValue& tok = require(root, "tokenizer", "");
    if (!tok.is_object()) meta_error("'tokenizer' must be an object");
    if (!require(tok, "json", "tokenizer.").is_string()) meta_error("'tokenizer.json' must be a string");
    const JsonValue& bos = require(tok, "bos_token_id", "tokenizer.");
    if (!bos.is_null()) m.bos_token_id = token_id(bos, "'tokenizer.bos_token_id'", m.hparams.vocab_size);
    const JsonValue& eos = require(tok, "eos_token_ids", "tokenizer.");
    if (!eos.is_array()) meta_error("'tokenizer.eos_token_ids' must be an array");
    for (const auto& e : eos.items()) {
        m.eos_token_ids.push_back(token_id(e, "every 'tokenizer.eos_token_ids' entry", m.hparams.vocab_size));
    }

    return m;
}

}  // namespace edgert
